//! The protocol's one error type: why a buffer was refused or could not be written.
//!
//! Runs in both the kernel (any IRQL: no allocation, no formatting unless asked) and user mode.
//! The driver maps each variant to an NTSTATUS itself and the service maps it to `io::Error`, so
//! this crate depends on neither.

use core::fmt;

/// A result whose error is the protocol's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Why a message was refused by a decoder, or could not be written by an encoder.
///
/// Each failure has its own variant so that a test (or a log line) can say exactly what was
/// wrong with a buffer. Variants may be added in later versions.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the fixed part of the message, or before the total length its
    /// header declares.
    Truncated,
    /// The first four bytes are not [`MAGIC`](crate::MAGIC): this is not a Vigil message.
    BadMagic,
    /// The major version is not [`VERSION_MAJOR`](crate::VERSION_MAJOR); the layout cannot be read.
    UnsupportedVersion,
    /// The message kind is not one this version defines.
    UnknownKind,
    /// The message kind is valid, but not the kind the caller asked to decode.
    WrongKind,
    /// A message is longer than [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE) (declared by a
    /// header, or about to be written by an encoder).
    MessageTooLarge,
    /// A declared length disagrees with the content: a fixed-size message of another size, a
    /// total length shorter than the fixed part, or a length that is not exactly the fixed part
    /// plus its strings and padding.
    BadLength,
    /// An offset or length field points past the end of the record or message that holds it.
    LengthPastEnd,
    /// A string's offset is not where the layout places it (strings follow the fixed part back to
    /// back, in field order; gaps and overlaps are refused).
    BadOffset,
    /// A UTF-16 string has an odd number of bytes.
    OddUtf16Length,
    /// A path is longer than [`MAX_PATH_BYTES`](crate::MAX_PATH_BYTES), or a protected prefix
    /// longer than [`MAX_PREFIX_BYTES`](crate::MAX_PREFIX_BYTES).
    PathTooLong,
    /// A record length, or the run of records in a batch, is not a multiple of 8 bytes.
    Misaligned,
    /// A reserved field, padding byte, or a header sequence number of a kind that carries none,
    /// is not zero.
    NonZeroReserved,
    /// An event record's kind is not one this version defines.
    UnknownEventKind,
    /// A verdict is neither allow nor deny.
    UnknownVerdict,
    /// A verdict request's operation is not one this version defines.
    UnknownOperation,
    /// A flags field has bits set that this version does not define, where unknown bits cannot be
    /// ignored (configuration).
    UnknownFlags,
    /// An event batch holds no records.
    EmptyBatch,
    /// A count cannot fit: more records than the batch has room for, more protected prefixes
    /// than [`MAX_PROTECTED_PREFIXES`](crate::MAX_PROTECTED_PREFIXES), or a prefix table past the
    /// end of the message.
    CountTooLarge,
    /// A batch's record count disagrees with the records it holds.
    CountMismatch,
    /// A batch header's sequence number is not the sequence number of its first record.
    SequenceMismatch,
    /// A user SID is not a SID: under 8 bytes, a revision other than 1, more than 15
    /// sub-authorities, or a length that disagrees with its sub-authority count.
    BadSid,
    /// The output buffer is too small for the message being encoded.
    BufferTooSmall,
    /// A configuration value is outside its documented range.
    ConfigOutOfRange(ConfigField),
}

/// The configuration value that [`Error::ConfigOutOfRange`] refers to.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigField {
    /// `batch_size`: see [`BATCH_SIZE_RANGE`](crate::BATCH_SIZE_RANGE).
    BatchSize,
    /// `verdict_timeout_ms`: see [`VERDICT_TIMEOUT_MS_RANGE`](crate::VERDICT_TIMEOUT_MS_RANGE).
    VerdictTimeout,
    /// `send_timeout_ms`: see [`SEND_TIMEOUT_MS_RANGE`](crate::SEND_TIMEOUT_MS_RANGE).
    SendTimeout,
    /// A protected prefix is empty (it would protect every path).
    ProtectedPrefix,
}

impl fmt::Display for ConfigField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BatchSize => "batch size",
            Self::VerdictTimeout => "verdict timeout",
            Self::SendTimeout => "send timeout",
            Self::ProtectedPrefix => "protected prefix",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("message truncated: the buffer ends before the message"),
            Self::BadMagic => f.write_str("bad magic: not a Vigil message"),
            Self::UnsupportedVersion => f.write_str("unsupported protocol major version"),
            Self::UnknownKind => f.write_str("unknown message kind"),
            Self::WrongKind => f.write_str("message is not of the expected kind"),
            Self::MessageTooLarge => f.write_str("message larger than the maximum message size"),
            Self::BadLength => f.write_str("declared length does not match the message content"),
            Self::LengthPastEnd => f.write_str("offset or length field points past the end"),
            Self::BadOffset => f.write_str("string offset is not where the layout places it"),
            Self::OddUtf16Length => f.write_str("UTF-16 string has an odd byte length"),
            Self::PathTooLong => f.write_str("path or prefix longer than the protocol maximum"),
            Self::Misaligned => f.write_str("record length is not a multiple of 8 bytes"),
            Self::NonZeroReserved => f.write_str("reserved field or padding is not zero"),
            Self::UnknownEventKind => f.write_str("unknown event kind"),
            Self::UnknownVerdict => f.write_str("verdict is neither allow nor deny"),
            Self::UnknownOperation => f.write_str("unknown verdict operation"),
            Self::UnknownFlags => f.write_str("undefined flag bits set"),
            Self::EmptyBatch => f.write_str("event batch holds no records"),
            Self::CountTooLarge => f.write_str("count does not fit in the message"),
            Self::CountMismatch => f.write_str("record count does not match the records present"),
            Self::SequenceMismatch => {
                f.write_str("batch sequence number is not its first record's sequence number")
            }
            Self::BadSid => f.write_str("user SID is malformed"),
            Self::BufferTooSmall => f.write_str("output buffer too small for the message"),
            Self::ConfigOutOfRange(field) => write!(f, "configuration {field} out of range"),
        }
    }
}

impl core::error::Error for Error {}
