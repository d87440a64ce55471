//! The common message header: magic, version, kind, total length, sequence number.
//!
//! Runs in the kernel at any IRQL and in user mode. Every message starts with this header, and
//! every decoder checks it first; see the crate documentation for the field table.

use crate::bytes::{put_len, put_u16, put_u32, put_u64, u16_at, u32_at, u64_at, usize_at};
use crate::consts::{MAGIC, MAX_MESSAGE_SIZE, VERSION_MAJOR, VERSION_MINOR};
use crate::error::{Error, Result};

/// Size of the common header, in bytes.
pub const HEADER_LEN: usize = 24;

/// Byte offsets of the header fields.
mod field {
    pub const MAGIC: usize = 0;
    pub const VERSION_MAJOR: usize = 4;
    pub const VERSION_MINOR: usize = 6;
    pub const KIND: usize = 8;
    pub const RESERVED: usize = 10;
    pub const TOTAL_LENGTH: usize = 12;
    pub const SEQUENCE: usize = 16;
}

/// `true` when a peer speaking protocol major version `major` can talk to this build.
pub const fn is_compatible(major: u16) -> bool {
    major == VERSION_MAJOR
}

/// A protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Major version: layouts differ between majors.
    pub major: u16,
    /// Minor version: same layout, more meaning.
    pub minor: u16,
}

impl Version {
    /// The version this build speaks.
    pub const CURRENT: Version = Version {
        major: VERSION_MAJOR,
        minor: VERSION_MINOR,
    };

    /// `true` when this version can talk to this build (same major).
    pub const fn is_compatible(self) -> bool {
        is_compatible(self.major)
    }
}

/// What a message is. The value is the `kind` field; values not listed are refused with
/// [`Error::UnknownKind`], so new kinds can be added without old peers misreading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum MessageKind {
    /// Driver to service: event records. Carries a sequence number (its first record's).
    EventBatch = 0x0001,
    /// Driver to service, expects a [`VerdictReply`](MessageKind::VerdictReply).
    VerdictRequest = 0x0002,
    /// Service to driver: the answer to a verdict request.
    VerdictReply = 0x0003,
    /// Driver to service: a process started, exited or was first seen; no reply.
    ProcessRecord = 0x0004,
    /// Service to driver: version handshake.
    Hello = 0x0010,
    /// Driver to service: reply to [`Hello`](MessageKind::Hello).
    HelloReply = 0x0011,
    /// Service to driver: ask for the counters.
    GetStats = 0x0012,
    /// Driver to service: reply to [`GetStats`](MessageKind::GetStats).
    StatsReply = 0x0013,
    /// Service to driver: replace the configuration.
    SetConfig = 0x0014,
    /// Driver to service: reply to [`SetConfig`](MessageKind::SetConfig).
    SetConfigReply = 0x0015,
    /// Service to driver: liveness check.
    Ping = 0x0016,
    /// Driver to service: reply to [`Ping`](MessageKind::Ping), echoing its nonce.
    Pong = 0x0017,
}

impl MessageKind {
    /// Every kind this version defines.
    pub const ALL: [MessageKind; 12] = [
        Self::EventBatch,
        Self::VerdictRequest,
        Self::VerdictReply,
        Self::ProcessRecord,
        Self::Hello,
        Self::HelloReply,
        Self::GetStats,
        Self::StatsReply,
        Self::SetConfig,
        Self::SetConfigReply,
        Self::Ping,
        Self::Pong,
    ];

    /// The kind with wire value `value`, matched on the full value (rule 14).
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            0x0001 => Self::EventBatch,
            0x0002 => Self::VerdictRequest,
            0x0003 => Self::VerdictReply,
            0x0004 => Self::ProcessRecord,
            0x0010 => Self::Hello,
            0x0011 => Self::HelloReply,
            0x0012 => Self::GetStats,
            0x0013 => Self::StatsReply,
            0x0014 => Self::SetConfig,
            0x0015 => Self::SetConfigReply,
            0x0016 => Self::Ping,
            0x0017 => Self::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// The kind that answers this one, for requests that expect an answer.
    pub const fn reply_kind(self) -> Option<Self> {
        match self {
            Self::VerdictRequest => Some(Self::VerdictReply),
            Self::Hello => Some(Self::HelloReply),
            Self::GetStats => Some(Self::StatsReply),
            Self::SetConfig => Some(Self::SetConfigReply),
            Self::Ping => Some(Self::Pong),
            _ => None,
        }
    }

    /// `true` for the kinds whose header carries a sequence number; every other kind has zero
    /// there.
    pub const fn carries_sequence(self) -> bool {
        matches!(self, Self::EventBatch)
    }
}

/// A checked common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message kind.
    pub kind: MessageKind,
    /// The sender's protocol version (always of a compatible major once parsed).
    pub version: Version,
    /// Total message length in bytes, header included.
    pub total_length: usize,
    /// The sequence number, for kinds that carry one; zero otherwise.
    pub sequence: u64,
}

impl Header {
    /// Reads the magic and the version only, whatever the major: lets a peer report "the driver
    /// speaks 2.1, this service 1.0" instead of a bare refusal.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] under 8 bytes, [`Error::BadMagic`].
    pub fn peek_version(buf: &[u8]) -> Result<Version> {
        if buf.len() < field::KIND {
            return Err(Error::Truncated);
        }
        if u32_at(buf, field::MAGIC) != MAGIC {
            return Err(Error::BadMagic);
        }
        Ok(Version {
            major: u16_at(buf, field::VERSION_MAJOR),
            minor: u16_at(buf, field::VERSION_MINOR),
        })
    }

    /// Checks the header at the start of `buf`. Bytes past the declared total length are
    /// ignored (a receive buffer is usually larger than the message in it).
    ///
    /// Checks, in order: at least [`HEADER_LEN`] bytes ([`Error::Truncated`]), magic
    /// ([`Error::BadMagic`]), major version ([`Error::UnsupportedVersion`]), kind
    /// ([`Error::UnknownKind`]), reserved field ([`Error::NonZeroReserved`]), total length at
    /// least the header ([`Error::BadLength`]), at most [`MAX_MESSAGE_SIZE`]
    /// ([`Error::MessageTooLarge`]) and within `buf` ([`Error::Truncated`]), and a zero
    /// sequence number for kinds that carry none ([`Error::NonZeroReserved`]).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let version = Self::peek_version(buf)?;
        if !version.is_compatible() {
            return Err(Error::UnsupportedVersion);
        }
        let kind = MessageKind::from_u16(u16_at(buf, field::KIND)).ok_or(Error::UnknownKind)?;
        if u16_at(buf, field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        let total_length = usize_at(buf, field::TOTAL_LENGTH);
        if total_length < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if total_length > MAX_MESSAGE_SIZE {
            return Err(Error::MessageTooLarge);
        }
        if total_length > buf.len() {
            return Err(Error::Truncated);
        }
        let sequence = u64_at(buf, field::SEQUENCE);
        if sequence != 0 && !kind.carries_sequence() {
            return Err(Error::NonZeroReserved);
        }
        Ok(Self {
            kind,
            version,
            total_length,
            sequence,
        })
    }
}

/// Checks the header of a message that must be of kind `kind`, and returns it with the message
/// bytes (exactly `total_length` of them).
pub(crate) fn parse_kind(buf: &[u8], kind: MessageKind) -> Result<(Header, &[u8])> {
    let header = Header::parse(buf)?;
    if header.kind != kind {
        return Err(Error::WrongKind);
    }
    let msg = buf.get(..header.total_length).ok_or(Error::Truncated)?;
    Ok((header, msg))
}

/// Checks a fixed-size message of kind `kind` and length `len`; returns its bytes.
pub(crate) fn parse_fixed(buf: &[u8], kind: MessageKind, len: usize) -> Result<&[u8]> {
    let (header, msg) = parse_kind(buf, kind)?;
    if header.total_length != len {
        return Err(Error::BadLength);
    }
    Ok(msg)
}

/// Claims the first `len` bytes of `out` for a message, zeroes them and writes the header with
/// this build's version. Everything the caller does not write afterwards stays zero (rule 11).
pub(crate) fn start_message(
    out: &mut [u8],
    kind: MessageKind,
    len: usize,
    sequence: u64,
) -> Result<&mut [u8]> {
    if len > MAX_MESSAGE_SIZE {
        return Err(Error::MessageTooLarge);
    }
    let msg = out.get_mut(..len).ok_or(Error::BufferTooSmall)?;
    msg.fill(0);
    write_header(msg, kind, len, sequence);
    Ok(msg)
}

/// Writes a header with this build's version over the first [`HEADER_LEN`] bytes of `out`,
/// including its reserved field (zero). `total_length` is the whole message's length.
pub(crate) fn write_header(out: &mut [u8], kind: MessageKind, total_length: usize, sequence: u64) {
    put_u32(out, field::MAGIC, MAGIC);
    put_u16(out, field::VERSION_MAJOR, VERSION_MAJOR);
    put_u16(out, field::VERSION_MINOR, VERSION_MINOR);
    put_u16(out, field::KIND, kind.to_u16());
    put_u16(out, field::RESERVED, 0);
    put_len(out, field::TOTAL_LENGTH, total_length);
    put_u64(out, field::SEQUENCE, sequence);
}
