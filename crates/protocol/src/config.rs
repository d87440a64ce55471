//! Set-configuration: the one service-to-driver command of variable length, and the
//! configuration it carries, with its valid ranges.
//!
//! Runs in the kernel (the message-notify callback, `PASSIVE_LEVEL`, decodes its kernel copy of
//! the user buffer, then calls [`Config::validate`] and answers with a
//! [`SetConfigReply`](crate::SetConfigReply)) and in user mode (the service encodes it). Decoding
//! checks structure only; ranges are [`Config::validate`]'s job, so the driver can answer an
//! out-of-range value with a status rather than a malformed-message error.

use crate::bytes::{align8, all_zero, put_len, put_u32, range, range_mut, u32_at, usize_at};
use crate::consts::{
    BATCH_SIZE_RANGE, DEFAULT_ATTACH_NETWORK_VOLUMES, DEFAULT_BATCH_SIZE, DEFAULT_SEND_TIMEOUT_MS,
    DEFAULT_VERDICT, DEFAULT_VERDICT_TIMEOUT_MS, MAX_PREFIX_BYTES, MAX_PREFIX_UNITS,
    MAX_PROTECTED_PREFIXES, SEND_TIMEOUT_MS_RANGE, VERDICT_TIMEOUT_MS_RANGE,
};
use crate::error::{ConfigField, Error, Result};
use crate::header::{HEADER_LEN, MessageKind, Version, parse_kind, start_message};
use crate::utf16::Utf16Str;
use crate::verdict::Verdict;

/// Size of a set-configuration message's fixed part (header included), before the prefix table.
pub const SET_CONFIG_FIXED_LEN: usize = HEADER_LEN + 24;

/// Size of one prefix table entry (offset, length).
const PREFIX_ENTRY_LEN: usize = 8;

/// Byte offsets of the set-configuration fields, relative to the start of the message.
mod field {
    use super::HEADER_LEN;
    pub const BATCH_SIZE: usize = HEADER_LEN;
    pub const VERDICT_TIMEOUT_MS: usize = HEADER_LEN + 4;
    pub const SEND_TIMEOUT_MS: usize = HEADER_LEN + 8;
    pub const DEFAULT_VERDICT: usize = HEADER_LEN + 12;
    pub const FLAGS: usize = HEADER_LEN + 16;
    pub const PREFIX_COUNT: usize = HEADER_LEN + 20;
    pub const PREFIX_TABLE: usize = HEADER_LEN + 24;
}

/// Configuration flag: attach to network volumes too.
pub const CONFIG_ATTACH_NETWORK_VOLUMES: u32 = 1 << 0;

/// Every configuration flag this version defines. Unknown bits are refused
/// ([`Error::UnknownFlags`]): a setting the driver does not understand must not be silently
/// ignored.
pub const CONFIG_FLAGS_DEFINED: u32 = CONFIG_ATTACH_NETWORK_VOLUMES;

/// Offset of prefix table entry `index`, which is also where a table of `index` entries ends.
const fn table_end(index: usize) -> usize {
    field::PREFIX_TABLE.saturating_add(PREFIX_ENTRY_LEN.saturating_mul(index))
}

/// A bounded list of protected path prefixes, without allocation.
///
/// # Invariants
///
/// `len <= MAX_PROTECTED_PREFIXES`, and the slots past `len` hold the empty string.
#[derive(Clone, Copy)]
pub struct PrefixList<'a> {
    items: [Utf16Str<'a>; MAX_PROTECTED_PREFIXES],
    len: usize,
}

impl<'a> PrefixList<'a> {
    /// The empty list.
    pub const EMPTY: PrefixList<'static> = PrefixList {
        items: [Utf16Str::EMPTY; MAX_PROTECTED_PREFIXES],
        len: 0,
    };

    /// A list holding `prefixes`.
    ///
    /// # Errors
    ///
    /// [`Error::CountTooLarge`] for more than [`MAX_PROTECTED_PREFIXES`].
    pub fn from_slice(prefixes: &[Utf16Str<'a>]) -> Result<Self> {
        let mut list: PrefixList<'a> = PrefixList::EMPTY;
        for &p in prefixes {
            list.push(p)?;
        }
        Ok(list)
    }

    /// Appends a prefix.
    ///
    /// # Errors
    ///
    /// [`Error::CountTooLarge`] when the list already holds [`MAX_PROTECTED_PREFIXES`].
    pub fn push(&mut self, prefix: Utf16Str<'a>) -> Result<()> {
        let slot = self.items.get_mut(self.len).ok_or(Error::CountTooLarge)?;
        *slot = prefix;
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// The prefixes.
    pub fn as_slice(&self) -> &[Utf16Str<'a>] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Number of prefixes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// `true` when no prefix is protected.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for PrefixList<'_> {
    fn default() -> Self {
        PrefixList::EMPTY
    }
}

impl PartialEq for PrefixList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for PrefixList<'_> {}

impl core::fmt::Debug for PrefixList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The driver's run-time configuration, as set-configuration carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config<'a> {
    /// Most records per batch; [`BATCH_SIZE_RANGE`].
    pub batch_size: u32,
    /// How long a pre-operation callback waits for a verdict, in ms;
    /// [`VERDICT_TIMEOUT_MS_RANGE`].
    pub verdict_timeout_ms: u32,
    /// How long the delivery thread waits for the service to take a batch, in ms;
    /// [`SEND_TIMEOUT_MS_RANGE`].
    pub send_timeout_ms: u32,
    /// The verdict applied when none arrives ([`DEFAULT_VERDICT`] says why allow by default).
    pub default_verdict: Verdict,
    /// Attach to network volumes too.
    pub attach_network_volumes: bool,
    /// Paths under these prefixes get verdict requests; each non-empty, at most
    /// [`MAX_PREFIX_UNITS`] code units. Matching (case, normalization) is the driver's.
    pub protected_prefixes: PrefixList<'a>,
}

impl Config<'static> {
    /// The defaults, as the driver starts with before any set-configuration (and before the
    /// registry is read): no protected prefixes.
    pub const DEFAULT: Config<'static> = Config {
        batch_size: DEFAULT_BATCH_SIZE,
        verdict_timeout_ms: DEFAULT_VERDICT_TIMEOUT_MS,
        send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
        default_verdict: DEFAULT_VERDICT,
        attach_network_volumes: DEFAULT_ATTACH_NETWORK_VOLUMES,
        protected_prefixes: PrefixList::EMPTY,
    };
}

impl Default for Config<'_> {
    fn default() -> Self {
        Config::DEFAULT
    }
}

impl Config<'_> {
    /// Checks every value against its documented range: what the driver calls before applying
    /// a configuration, refusing it whole on the first error.
    ///
    /// # Errors
    ///
    /// [`Error::ConfigOutOfRange`] naming the field, or [`Error::PathTooLong`] for a prefix over
    /// [`MAX_PREFIX_UNITS`] (only possible for a configuration that was never encoded).
    pub fn validate(&self) -> Result<()> {
        if !BATCH_SIZE_RANGE.contains(&self.batch_size) {
            return Err(Error::ConfigOutOfRange(ConfigField::BatchSize));
        }
        if !VERDICT_TIMEOUT_MS_RANGE.contains(&self.verdict_timeout_ms) {
            return Err(Error::ConfigOutOfRange(ConfigField::VerdictTimeout));
        }
        if !SEND_TIMEOUT_MS_RANGE.contains(&self.send_timeout_ms) {
            return Err(Error::ConfigOutOfRange(ConfigField::SendTimeout));
        }
        for prefix in self.protected_prefixes.as_slice() {
            if prefix.is_empty() {
                return Err(Error::ConfigOutOfRange(ConfigField::ProtectedPrefix));
            }
            if prefix.len_units() > MAX_PREFIX_UNITS {
                return Err(Error::PathTooLong);
            }
        }
        Ok(())
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn encoded_len(&self) -> usize {
        let prefixes = self.protected_prefixes.as_slice();
        let strings = prefixes
            .iter()
            .fold(0_usize, |sum, p| sum.saturating_add(p.len_bytes()));
        align8(table_end(prefixes.len()).saturating_add(strings))
    }

    /// Encodes a set-configuration message at the start of `out`; returns the bytes written.
    /// Values are not range-checked here (see [`validate`](Self::validate)), so tests can send
    /// the driver out-of-range values; the structure always is.
    ///
    /// # Errors
    ///
    /// [`Error::PathTooLong`] for a prefix over [`MAX_PREFIX_UNITS`] (prefixes are never cut:
    /// a cut prefix would protect more than asked), [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let prefixes = self.protected_prefixes.as_slice();
        if prefixes.iter().any(|p| p.len_units() > MAX_PREFIX_UNITS) {
            return Err(Error::PathTooLong);
        }
        let len = self.encoded_len();
        let msg = start_message(out, MessageKind::SetConfig, len, 0)?;
        put_u32(msg, field::BATCH_SIZE, self.batch_size);
        put_u32(msg, field::VERDICT_TIMEOUT_MS, self.verdict_timeout_ms);
        put_u32(msg, field::SEND_TIMEOUT_MS, self.send_timeout_ms);
        put_u32(msg, field::DEFAULT_VERDICT, self.default_verdict.to_u32());
        let flags = if self.attach_network_volumes {
            CONFIG_ATTACH_NETWORK_VOLUMES
        } else {
            0
        };
        put_u32(msg, field::FLAGS, flags);
        put_len(msg, field::PREFIX_COUNT, prefixes.len());
        let mut at = table_end(prefixes.len());
        for (i, prefix) in prefixes.iter().enumerate() {
            let entry = table_end(i);
            let end = at.saturating_add(prefix.len_bytes());
            put_len(msg, entry, at);
            put_len(msg, entry.saturating_add(4), prefix.len_bytes());
            prefix.write_le(range_mut(msg, at, end));
            at = end;
        }
        // Padding after the last string is already zero (start_message zeroed the message).
        Ok(len)
    }
}

/// A checked view of a set-configuration message.
///
/// # Invariants
///
/// `buf` is exactly the message, and every check in [`SetConfig::new_checked`] passed.
#[derive(Debug, Clone, Copy)]
pub struct SetConfig<'a> {
    buf: &'a [u8],
    version: Version,
    default_verdict: Verdict,
    prefix_count: usize,
}

impl<'a> SetConfig<'a> {
    /// Checks the structure of a set-configuration message: the header (see
    /// [`Header::parse`](crate::Header::parse)), then [`Error::WrongKind`], [`Error::BadLength`]
    /// under [`SET_CONFIG_FIXED_LEN`], [`Error::UnknownVerdict`], [`Error::UnknownFlags`],
    /// [`Error::CountTooLarge`] for more than [`MAX_PROTECTED_PREFIXES`] prefixes or a table
    /// past the end; for each prefix: inside the message ([`Error::LengthPastEnd`]), even
    /// length ([`Error::OddUtf16Length`]), at most [`MAX_PREFIX_BYTES`]
    /// ([`Error::PathTooLong`]), right after the previous one ([`Error::BadOffset`]); finally
    /// the total length is the table, strings and padding ([`Error::BadLength`]) and the
    /// padding is zero ([`Error::NonZeroReserved`]). Value ranges are not checked here: call
    /// [`Config::validate`] on [`config`](Self::config).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        let (header, buf) = parse_kind(buf, MessageKind::SetConfig)?;
        if buf.len() < SET_CONFIG_FIXED_LEN {
            return Err(Error::BadLength);
        }
        let default_verdict =
            Verdict::from_u32(u32_at(buf, field::DEFAULT_VERDICT)).ok_or(Error::UnknownVerdict)?;
        if u32_at(buf, field::FLAGS) & !CONFIG_FLAGS_DEFINED != 0 {
            return Err(Error::UnknownFlags);
        }
        let count = usize_at(buf, field::PREFIX_COUNT);
        if count > MAX_PROTECTED_PREFIXES {
            return Err(Error::CountTooLarge);
        }
        // The table must fit; the subtraction is exact (checked above).
        if PREFIX_ENTRY_LEN.saturating_mul(count) > buf.len() - SET_CONFIG_FIXED_LEN {
            return Err(Error::CountTooLarge);
        }
        let mut expected = table_end(count);
        for i in 0..count {
            let entry = table_end(i);
            let offset = usize_at(buf, entry);
            let len = usize_at(buf, entry.saturating_add(4));
            if offset > buf.len() || len > buf.len() - offset {
                return Err(Error::LengthPastEnd);
            }
            if !len.is_multiple_of(2) {
                return Err(Error::OddUtf16Length);
            }
            if len > MAX_PREFIX_BYTES {
                return Err(Error::PathTooLong);
            }
            if offset != expected {
                return Err(Error::BadOffset);
            }
            // offset + len <= buf.len(), checked above.
            expected = offset.saturating_add(len);
        }
        if buf.len() != align8(expected) {
            return Err(Error::BadLength);
        }
        if !all_zero(range(buf, expected, buf.len())) {
            return Err(Error::NonZeroReserved);
        }
        Ok(Self {
            buf,
            version: header.version,
            default_verdict,
            prefix_count: count,
        })
    }

    /// The sender's protocol version.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// The whole message.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Number of protected prefixes.
    pub const fn prefix_count(&self) -> usize {
        self.prefix_count
    }

    /// The `index`-th protected prefix, if there is one.
    pub fn prefix(&self, index: usize) -> Option<Utf16Str<'a>> {
        if index >= self.prefix_count {
            return None;
        }
        let entry = table_end(index);
        let offset = usize_at(self.buf, entry);
        let len = usize_at(self.buf, entry.saturating_add(4));
        let end = offset.saturating_add(len);
        Some(Utf16Str::from_checked_le(range(self.buf, offset, end)))
    }

    /// The configuration carried, not yet range-checked.
    pub fn config(&self) -> Config<'a> {
        let mut protected_prefixes: PrefixList<'a> = PrefixList::EMPTY;
        for i in 0..self.prefix_count {
            if let Some(p) = self.prefix(i) {
                // Cannot fail: prefix_count <= MAX_PROTECTED_PREFIXES.
                let _ = protected_prefixes.push(p);
            }
        }
        Config {
            batch_size: u32_at(self.buf, field::BATCH_SIZE),
            verdict_timeout_ms: u32_at(self.buf, field::VERDICT_TIMEOUT_MS),
            send_timeout_ms: u32_at(self.buf, field::SEND_TIMEOUT_MS),
            default_verdict: self.default_verdict,
            attach_network_volumes: u32_at(self.buf, field::FLAGS) & CONFIG_ATTACH_NETWORK_VOLUMES
                != 0,
            protected_prefixes,
        }
    }
}
