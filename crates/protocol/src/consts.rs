//! Names, limits, versions and defaults shared by the driver and the service.
//!
//! Compile-time constants only; usable in the kernel at any IRQL and in user mode. Nothing else
//! in Vigil defines a port name, a limit or a protocol version (STYLE.md practice 1).

use core::ops::RangeInclusive;

use crate::batch::MAX_BATCH_RECORDS;
use crate::verdict::Verdict;

/// Name of the Filter Manager communication port, as the service passes it to
/// `FilterConnectCommunicationPort`. A root-directory object name, like Microsoft's samples.
pub const PORT_NAME: &str = "\\VigilPort";

/// [`PORT_NAME`] as UTF-16 code units, computed at compile time: the driver builds its
/// `UNICODE_STRING` over this array, with no allocation and no conversion at run time.
pub const PORT_NAME_UTF16: [u16; PORT_NAME.len()] = ascii_to_utf16(PORT_NAME);

/// Widens an ASCII string to UTF-16 at compile time; a non-ASCII byte fails the build.
const fn ascii_to_utf16<const N: usize>(s: &str) -> [u16; N] {
    let bytes = s.as_bytes();
    assert!(bytes.len() == N, "length mismatch");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        assert!(bytes[i].is_ascii(), "port name must be ASCII");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// First four bytes of every message (`"VGIL"` in memory): refuses a buffer that is not ours
/// before any other field is trusted.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VGIL");

/// Protocol major version: a different major means a different layout, and the peer is refused.
/// The magic and the version (the first 8 bytes) keep their place in every major version, so a
/// peer can always read the other side's version; see [`Header::peek_version`](crate::Header::peek_version).
///
/// History: 1, the first layout; 2, event records gain the process key (104-byte fixed part,
/// paths at 88) and the process record message appears. A version-1 peer is refused with
/// [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion) by [`Header::parse`](crate::Header::parse)
/// before any field of a changed layout is read, on both sides.
pub const VERSION_MAJOR: u16 = 2;

/// Protocol minor version: same layout, more meaning (new flag bits, new counters' semantics).
/// Peers with the same major talk whatever their minors; each learns the other's from the
/// headers exchanged in the handshake.
pub const VERSION_MINOR: u16 = 0;

/// Largest message in either direction, header included: bounds every buffer both sides allocate
/// (one batch fills at most this much), and keeps a batch well under what `FltSendMessage` copies
/// comfortably in one call.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Longest path carried, in UTF-16 code units. NTFS allows 32 767; 4 096 covers real paths while
/// keeping a record with two paths (about 16 KiB) far below [`MAX_MESSAGE_SIZE`], so every event
/// fits in a batch. Longer paths are cut by the encoder, which sets `PATH_TRUNCATED` or
/// `TARGET_TRUNCATED` in the record's flags.
pub const MAX_PATH_UNITS: usize = 4096;

/// [`MAX_PATH_UNITS`] in bytes, as the length fields count.
pub const MAX_PATH_BYTES: usize = MAX_PATH_UNITS * 2;

/// Most protected path prefixes in one configuration: the driver compares every protected
/// operation's path against each, on the I/O path, so the list stays short.
pub const MAX_PROTECTED_PREFIXES: usize = 16;

/// Longest protected prefix, in UTF-16 code units: a full list of maximal prefixes still fits in
/// one message (16 x 2 KiB), and real protected directories are far shorter.
pub const MAX_PREFIX_UNITS: usize = 1024;

/// [`MAX_PREFIX_UNITS`] in bytes, as the length fields count.
pub const MAX_PREFIX_BYTES: usize = MAX_PREFIX_UNITS * 2;

/// Records per batch by default: large enough to amortise a `FltSendMessage` round trip, small
/// enough that the service sees events within one delivery interval.
pub const DEFAULT_BATCH_SIZE: u32 = 64;

/// Valid batch sizes (records per batch): at least one, and no more than the smallest records
/// can fill in one message ([`MAX_BATCH_RECORDS`]).
pub const BATCH_SIZE_RANGE: RangeInclusive<u32> = 1..=MAX_BATCH_RECORDS_U32;

#[expect(
    clippy::cast_possible_truncation,
    reason = "629 records; the assert makes a truncation a build error"
)]
const MAX_BATCH_RECORDS_U32: u32 = {
    assert!(MAX_BATCH_RECORDS <= u32::MAX as usize);
    MAX_BATCH_RECORDS as u32
};

/// How long a pre-operation callback waits for a verdict by default, in milliseconds: the
/// caller's I/O is blocked meanwhile, so a hung service may stall it for at most one second.
pub const DEFAULT_VERDICT_TIMEOUT_MS: u32 = 1_000;

/// Valid verdict timeouts, in milliseconds: below 10 ms a busy service misses most verdicts;
/// above 10 s a blocked open looks like a hung machine.
pub const VERDICT_TIMEOUT_MS_RANGE: RangeInclusive<u32> = 10..=10_000;

/// How long the delivery thread waits for the service to take a batch by default, in
/// milliseconds: events queue in the ring meanwhile, and unload waits at most this long for a send.
pub const DEFAULT_SEND_TIMEOUT_MS: u32 = 1_000;

/// Valid send timeouts, in milliseconds: a send must never wait without bound (rule 7), and a
/// minute is the longest an unload may reasonably be held up.
pub const SEND_TIMEOUT_MS_RANGE: RangeInclusive<u32> = 10..=60_000;

/// The verdict applied when none arrives (timeout, disconnect, no service): allow. Fail-open,
/// because a dead or hung service must never make the machine unusable, including for the
/// administrator who comes to repair it; fail-closed is a configuration choice.
pub const DEFAULT_VERDICT: Verdict = Verdict::Allow;

/// Network volumes are not attached by default (rule 23): their latency and failure modes are a
/// separate policy decision.
pub const DEFAULT_ATTACH_NETWORK_VOLUMES: bool = false;
