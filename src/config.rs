//! The driver's configuration: what DriverEntry reads from the `Parameters` registry key, with a
//! default and a valid range for every value, and what the service may change at run time with
//! the set-configuration command. Portable: validation is unit-tested on the host.
//!
//! An out-of-range registry value is ignored (the default applies) and counted, never clamped
//! silently into something the administrator did not write.

use core::ops::RangeInclusive;

use vigil_protocol::{
    BATCH_SIZE_RANGE, DEFAULT_BATCH_SIZE, DEFAULT_SEND_TIMEOUT_MS, DEFAULT_VERDICT,
    DEFAULT_VERDICT_TIMEOUT_MS, SEND_TIMEOUT_MS_RANGE, VERDICT_TIMEOUT_MS_RANGE, Verdict,
};

/// Builds a UTF-16 value name from ASCII at compile time (a non-ASCII byte fails the build).
const fn utf16<const N: usize>(ascii: &[u8; N]) -> [u16; N] {
    let mut units = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(ascii[i].is_ascii(), "value names are ASCII");
        units[i] = ascii[i] as u16;
        i += 1;
    }
    units
}

/// Registry value names (`REG_DWORD` unless noted).
pub mod names {
    use super::utf16;
    /// Event ring size in bytes.
    pub const RING_BYTES: [u16; 9] = utf16(b"RingBytes");
    /// Records that trigger an immediate delivery.
    pub const BATCH_SIZE: [u16; 9] = utf16(b"BatchSize");
    /// Longest time an event waits in the ring before delivery, in ms.
    pub const FLUSH_INTERVAL_MS: [u16; 15] = utf16(b"FlushIntervalMs");
    /// Send timeout, in ms.
    pub const SEND_TIMEOUT_MS: [u16; 13] = utf16(b"SendTimeoutMs");
    /// Verdict timeout, in ms.
    pub const VERDICT_TIMEOUT_MS: [u16; 16] = utf16(b"VerdictTimeoutMs");
    /// 1 to fail closed (deny) when no verdict arrives, 0 to fail open (the default).
    pub const FAIL_CLOSED: [u16; 10] = utf16(b"FailClosed");
    /// 1: attach to network volumes too.
    pub const ATTACH_NETWORK: [u16; 20] = utf16(b"AttachNetworkVolumes");
    /// Verdict requests in flight at once (load time).
    pub const VERDICT_SLOTS: [u16; 12] = utf16(b"VerdictSlots");
    /// `REG_SZ`: the NT path of the service's image (`\Device\HarddiskVolume3\Program
    /// Files\Vigil\vigil.exe`): only an administrator's process running it may connect, and
    /// it is exempt before it connects.
    pub const SERVICE_IMAGE: [u16; 12] = utf16(b"ServiceImage");
    /// `REG_MULTI_SZ`: protected path prefixes (normalized NT paths).
    pub const PROTECTED_PREFIXES: [u16; 17] = utf16(b"ProtectedPrefixes");
    /// Process table entries (load time).
    pub const PROCESS_TABLE_ENTRIES: [u16; 19] = utf16(b"ProcessTableEntries");
}

/// Ring sizes accepted: at least 64 KiB (a handful of maximal records), at most 64 MiB of
/// non-paged pool, which is all a burst of activity needs between two deliveries.
pub const RING_BYTES_RANGE: RangeInclusive<u32> = 64 * 1024..=64 * 1024 * 1024;
/// Default ring: 4 MiB holds tens of thousands of typical records, a second of heavy activity.
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;
/// Flush intervals accepted, in ms: below 10 ms the thread spins for nothing; above 5 s events
/// arrive too late to be useful on a live console.
pub const FLUSH_INTERVAL_MS_RANGE: RangeInclusive<u32> = 10..=5_000;
/// Default flush interval: a tenth of a second, so a quiet system still streams promptly.
pub const DEFAULT_FLUSH_INTERVAL_MS: u32 = 100;

/// Verdict request slots accepted: one at least; at most 64 (one bit each in the claim map),
/// 64 maximal requests of about 16 KiB each, 1 MiB of pool.
pub const VERDICT_SLOTS_RANGE: RangeInclusive<u32> = 1..=64;
/// Default slots: 16 verdicts in flight, twice the cores of a typical machine; more operations
/// wait for a slot within the verdict timeout, so parallel load (a build, a backup) is never
/// denied for want of a buffer.
pub const DEFAULT_VERDICT_SLOTS: u32 = 16;
/// Process table sizes accepted: 16 entries at least (a test machine), 8,192 at most (the
/// service's own table), about 650 bytes each of non-paged pool (an image path of 260 units
/// and a SID).
pub const PROCESS_TABLE_ENTRIES_RANGE: RangeInclusive<u32> = 16..=8192;
/// Default: 1,024 processes (about 650 KiB), several times what a busy workstation runs.
pub const DEFAULT_PROCESS_TABLE_ENTRIES: u32 = 1024;

/// Everything DriverEntry configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Event ring size in bytes (load time only).
    pub ring_bytes: u32,
    /// Records that trigger an immediate delivery.
    pub batch_size: u32,
    /// Longest delay before pending records are delivered, in ms.
    pub flush_interval_ms: u32,
    /// `FltSendMessage` timeout for batches, in ms.
    pub send_timeout_ms: u32,
    /// How long a protected operation waits for a verdict, in ms.
    pub verdict_timeout_ms: u32,
    /// The verdict applied on timeout, disconnect or no service.
    pub default_verdict: Verdict,
    /// Whether network volumes are attached (load time, and volumes mounted later).
    pub attach_network: bool,
    /// Verdict requests in flight at once (load time: the buffers are allocated then).
    pub verdict_slots: u32,
    /// Process table entries (load time: the table is allocated then).
    pub process_table_entries: u32,
}

impl DriverConfig {
    /// The defaults, each explained where its constant is defined.
    pub const DEFAULT: Self = Self {
        ring_bytes: DEFAULT_RING_BYTES,
        batch_size: DEFAULT_BATCH_SIZE,
        flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
        send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
        verdict_timeout_ms: DEFAULT_VERDICT_TIMEOUT_MS,
        default_verdict: DEFAULT_VERDICT,
        attach_network: false,
        verdict_slots: DEFAULT_VERDICT_SLOTS,
        process_table_entries: DEFAULT_PROCESS_TABLE_ENTRIES,
    };
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One registry value: which setting it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// [`DriverConfig::ring_bytes`].
    RingBytes,
    /// [`DriverConfig::batch_size`].
    BatchSize,
    /// [`DriverConfig::flush_interval_ms`].
    FlushIntervalMs,
    /// [`DriverConfig::send_timeout_ms`].
    SendTimeoutMs,
    /// [`DriverConfig::verdict_timeout_ms`].
    VerdictTimeoutMs,
    /// [`DriverConfig::default_verdict`] (0 = open, 1 = closed).
    FailClosed,
    /// [`DriverConfig::attach_network`] (0 or 1).
    AttachNetwork,
    /// [`DriverConfig::verdict_slots`].
    VerdictSlots,
    /// [`DriverConfig::process_table_entries`].
    ProcessTableEntries,
}

impl Setting {
    /// Every DWORD setting with its registry name.
    pub const ALL: [(Self, &'static [u16]); 9] = [
        (Self::RingBytes, &names::RING_BYTES),
        (Self::BatchSize, &names::BATCH_SIZE),
        (Self::FlushIntervalMs, &names::FLUSH_INTERVAL_MS),
        (Self::SendTimeoutMs, &names::SEND_TIMEOUT_MS),
        (Self::VerdictTimeoutMs, &names::VERDICT_TIMEOUT_MS),
        (Self::FailClosed, &names::FAIL_CLOSED),
        (Self::AttachNetwork, &names::ATTACH_NETWORK),
        (Self::VerdictSlots, &names::VERDICT_SLOTS),
        (Self::ProcessTableEntries, &names::PROCESS_TABLE_ENTRIES),
    ];
}

/// A value outside its setting's range (the default stays in force).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange(pub Setting, pub u32);

impl DriverConfig {
    /// Applies one registry DWORD, if it is in range.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`] when `value` is outside the setting's range; the configuration is unchanged.
    pub fn apply(&mut self, setting: Setting, value: u32) -> Result<(), OutOfRange> {
        let in_range = |range: RangeInclusive<u32>| {
            range
                .contains(&value)
                .then_some(value)
                .ok_or(OutOfRange(setting, value))
        };
        match setting {
            Setting::RingBytes => self.ring_bytes = in_range(RING_BYTES_RANGE)?,
            Setting::BatchSize => self.batch_size = in_range(BATCH_SIZE_RANGE)?,
            Setting::FlushIntervalMs => self.flush_interval_ms = in_range(FLUSH_INTERVAL_MS_RANGE)?,
            Setting::SendTimeoutMs => self.send_timeout_ms = in_range(SEND_TIMEOUT_MS_RANGE)?,
            Setting::VerdictTimeoutMs => {
                self.verdict_timeout_ms = in_range(VERDICT_TIMEOUT_MS_RANGE)?;
            }
            Setting::FailClosed => {
                self.default_verdict = match in_range(0..=1)? {
                    0 => Verdict::Allow,
                    _ => Verdict::Deny,
                };
            }
            Setting::AttachNetwork => self.attach_network = in_range(0..=1)? == 1,
            Setting::VerdictSlots => self.verdict_slots = in_range(VERDICT_SLOTS_RANGE)?,
            Setting::ProcessTableEntries => {
                self.process_table_entries = in_range(PROCESS_TABLE_ENTRIES_RANGE)?;
            }
        }
        Ok(())
    }
}

/// Calls `each` with the code units of every non-empty string of `REG_MULTI_SZ` data
/// (little-endian UTF-16, strings separated and ended by NUL units). An odd trailing byte, or a
/// missing final terminator, is tolerated: only whole code units are read.
pub fn split_multi_sz(data: &[u8], each: &mut dyn FnMut(&mut dyn Iterator<Item = u16>)) {
    let mut rest = data;
    while !rest.is_empty() {
        let string_units = rest
            .chunks_exact(2)
            .take_while(|pair| pair != &[0, 0])
            .count();
        let (string, tail) = rest
            .split_at_checked(string_units * 2)
            .unwrap_or((rest, &[]));
        if !string.is_empty() {
            each(
                &mut string
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]])),
            );
        }
        // Skip the terminator (or the odd byte, or nothing at the end).
        rest = tail.get(2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_in_range() {
        let mut config = DriverConfig::DEFAULT;
        let d = DriverConfig::DEFAULT;
        for (setting, value) in [
            (Setting::RingBytes, d.ring_bytes),
            (Setting::BatchSize, d.batch_size),
            (Setting::FlushIntervalMs, d.flush_interval_ms),
            (Setting::SendTimeoutMs, d.send_timeout_ms),
            (Setting::VerdictTimeoutMs, d.verdict_timeout_ms),
            (Setting::FailClosed, 0),
            (Setting::AttachNetwork, 0),
            (Setting::VerdictSlots, d.verdict_slots),
            (Setting::ProcessTableEntries, d.process_table_entries),
        ] {
            assert_eq!(config.apply(setting, value), Ok(()), "{setting:?}");
        }
        assert_eq!(config, DriverConfig::DEFAULT);
        assert_eq!(
            DriverConfig::DEFAULT.default_verdict,
            Verdict::Allow,
            "fail-open by default"
        );
    }

    #[test]
    fn out_of_range_keeps_the_default() {
        let mut config = DriverConfig::DEFAULT;
        assert_eq!(
            config.apply(Setting::RingBytes, 1),
            Err(OutOfRange(Setting::RingBytes, 1))
        );
        assert_eq!(
            config.apply(Setting::SendTimeoutMs, 0),
            Err(OutOfRange(Setting::SendTimeoutMs, 0))
        );
        assert_eq!(
            config.apply(Setting::FailClosed, 2),
            Err(OutOfRange(Setting::FailClosed, 2))
        );
        assert_eq!(
            config.apply(Setting::AttachNetwork, u32::MAX),
            Err(OutOfRange(Setting::AttachNetwork, u32::MAX))
        );
        for slots in [0, 65] {
            assert_eq!(
                config.apply(Setting::VerdictSlots, slots),
                Err(OutOfRange(Setting::VerdictSlots, slots))
            );
        }
        assert_eq!(config, DriverConfig::DEFAULT);
    }

    #[test]
    fn in_range_values_apply() {
        let mut config = DriverConfig::DEFAULT;
        config.apply(Setting::FailClosed, 1).unwrap();
        config.apply(Setting::AttachNetwork, 1).unwrap();
        config.apply(Setting::VerdictTimeoutMs, 250).unwrap();
        config.apply(Setting::RingBytes, 64 * 1024).unwrap();
        config.apply(Setting::VerdictSlots, 64).unwrap();
        assert_eq!(config.verdict_slots, 64);
        assert_eq!(config.default_verdict, Verdict::Deny);
        assert!(config.attach_network);
        assert_eq!(config.verdict_timeout_ms, 250);
        assert_eq!(config.ring_bytes, 64 * 1024);
    }

    fn multi_sz(strings: &[&str], terminated: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        for s in strings {
            bytes.extend(s.encode_utf16().chain([0]).flat_map(u16::to_le_bytes));
        }
        if terminated {
            bytes.extend([0, 0]);
        }
        bytes
    }

    fn split(data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        split_multi_sz(data, &mut |units| {
            out.push(String::from_utf16_lossy(&units.collect::<Vec<_>>()));
        });
        out
    }

    #[test]
    fn multi_sz_splits_on_nul_units() {
        assert_eq!(
            split(&multi_sz(&[r"\Device\A", "B"], true)),
            [r"\Device\A", "B"]
        );
        assert_eq!(split(&multi_sz(&["only"], false)), ["only"]);
        assert_eq!(split(&[]), Vec::<String>::new());
        assert_eq!(
            split(&[0, 0, 0, 0]),
            Vec::<String>::new(),
            "empty strings are skipped"
        );
    }

    #[test]
    fn multi_sz_tolerates_malformed_tails() {
        let mut data = multi_sz(&["ab"], false);
        data.push(b'x'); // an odd byte: not a whole code unit
        assert_eq!(split(&data), ["ab"]);
        let mut data = multi_sz(&["ab"], false);
        data.truncate(data.len() - 2); // no terminator at all
        assert_eq!(split(&data), ["ab"]);
    }

    #[test]
    fn names_are_utf16_of_their_ascii() {
        let name: Vec<u16> = "AttachNetworkVolumes".encode_utf16().collect();
        assert_eq!(&names::ATTACH_NETWORK[..], &name[..]);
    }
}
