//! Verdict requests (driver to service) and verdict replies (service to driver).
//!
//! Runs in the kernel (the pre-operation callback encodes the request and decodes the reply at
//! `PASSIVE_LEVEL`, the only level where it may wait for one) and in user mode (the service's
//! policy). A request carries the operation, the requesting process and the path(s); the reply
//! carries allow or deny and a reason code.

use crate::bytes::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::event::EventFlags;
use crate::header::{HEADER_LEN, MessageKind, Version, parse_fixed, parse_kind, start_message};
use crate::paths::{PathLayout, PathLens, clamp_path, clamped_bytes};
use crate::utf16::Utf16Str;

/// Allow or deny. Zero is neither, so a zeroed reply is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Verdict {
    /// Let the operation proceed.
    Allow = 1,
    /// Fail the operation with `STATUS_ACCESS_DENIED`.
    Deny = 2,
}

impl Verdict {
    /// The verdict with wire value `value`.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Allow),
            2 => Some(Self::Deny),
            _ => None,
        }
    }

    /// The wire value.
    pub const fn to_u32(self) -> u32 {
        self as u32
    }
}

/// The operation a verdict is asked for. Zero is never an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum VerdictOperation {
    /// A create or open.
    Create = 1,
    /// A rename; the target path is the new name.
    Rename = 2,
    /// A hard link; the target path is the new link.
    Link = 3,
    /// A delete.
    Delete = 4,
}

impl VerdictOperation {
    /// Every operation this version defines.
    pub const ALL: [VerdictOperation; 4] = [Self::Create, Self::Rename, Self::Link, Self::Delete];

    /// The operation with wire value `value`.
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::Create,
            2 => Self::Rename,
            3 => Self::Link,
            4 => Self::Delete,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }
}

/// Size of a verdict request's fixed part (header included), in bytes.
pub const VERDICT_REQUEST_FIXED_LEN: usize = 64;

/// Byte offsets of the verdict request fields, relative to the start of the message.
mod request_field {
    use super::HEADER_LEN;
    pub const REQUEST_ID: usize = HEADER_LEN;
    pub const OPERATION: usize = HEADER_LEN + 8;
    pub const RESERVED: usize = HEADER_LEN + 10;
    pub const FLAGS: usize = HEADER_LEN + 12;
    pub const PROCESS_ID: usize = HEADER_LEN + 16;
    pub const PATHS: usize = HEADER_LEN + 24;
}

const REQUEST_LAYOUT: PathLayout = PathLayout {
    fields_at: request_field::PATHS,
    fixed_len: VERDICT_REQUEST_FIXED_LEN,
};

/// A verdict request, parsed.
///
/// Paths longer than [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) are cut by the encoder, which
/// sets [`EventFlags::PATH_TRUNCATED`] or [`EventFlags::TARGET_TRUNCATED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictRequestRepr<'a> {
    /// Chosen by the driver, unique among outstanding requests; echoed by the reply.
    pub request_id: u64,
    /// The operation awaiting the verdict.
    pub operation: VerdictOperation,
    /// Flag bits, with the meanings of [`EventFlags`].
    pub flags: EventFlags,
    /// Process id of the requestor.
    pub process_id: u64,
    /// The file's path.
    pub path: Utf16Str<'a>,
    /// The new name for rename and link; empty otherwise.
    pub target: Utf16Str<'a>,
}

impl VerdictRequestRepr<'_> {
    /// Bytes [`emit`](Self::emit) writes for a request with paths of these lengths (in code
    /// units, clamped to [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS)).
    pub const fn encoded_len_for(path_units: usize, target_units: usize) -> usize {
        REQUEST_LAYOUT.container_len(clamped_bytes(path_units), clamped_bytes(target_units))
    }

    /// Bytes [`emit`](Self::emit) writes for this request.
    pub fn encoded_len(&self) -> usize {
        Self::encoded_len_for(self.path.len_units(), self.target.len_units())
    }

    /// Encodes the request at the start of `out`; returns the bytes written. Every byte of the
    /// message is written (reserved fields and padding as zero).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `out` is shorter than [`encoded_len`](Self::encoded_len).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let (path, path_cut) = clamp_path(self.path);
        let (target, target_cut) = clamp_path(self.target);
        let len = REQUEST_LAYOUT.container_len(path.len_bytes(), target.len_bytes());
        let mut flags = self.flags;
        if path_cut {
            flags |= EventFlags::PATH_TRUNCATED;
        }
        if target_cut {
            flags |= EventFlags::TARGET_TRUNCATED;
        }
        let msg = start_message(out, MessageKind::VerdictRequest, len, 0)?;
        put_u64(msg, request_field::REQUEST_ID, self.request_id);
        put_u16(msg, request_field::OPERATION, self.operation.to_u16());
        put_u16(msg, request_field::RESERVED, 0);
        put_u32(msg, request_field::FLAGS, flags.bits());
        put_u64(msg, request_field::PROCESS_ID, self.process_id);
        REQUEST_LAYOUT.emit(msg, path, target);
        Ok(len)
    }
}

/// A checked view of a verdict request.
///
/// # Invariants
///
/// `buf` is exactly the message, and every check in [`VerdictRequest::new_checked`] passed.
#[derive(Debug, Clone, Copy)]
pub struct VerdictRequest<'a> {
    buf: &'a [u8],
    version: Version,
    operation: VerdictOperation,
    lens: PathLens,
}

impl<'a> VerdictRequest<'a> {
    /// Checks a verdict request: the header (see [`Header::parse`](crate::Header::parse)), then
    /// [`Error::WrongKind`], [`Error::BadLength`] under [`VERDICT_REQUEST_FIXED_LEN`],
    /// [`Error::UnknownOperation`], [`Error::NonZeroReserved`], and the two paths exactly as an
    /// event record's (see [`EventRecord::new_checked`](crate::EventRecord::new_checked)).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        let (header, buf) = parse_kind(buf, MessageKind::VerdictRequest)?;
        if buf.len() < VERDICT_REQUEST_FIXED_LEN {
            return Err(Error::BadLength);
        }
        let operation = VerdictOperation::from_u16(u16_at(buf, request_field::OPERATION))
            .ok_or(Error::UnknownOperation)?;
        if u16_at(buf, request_field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        let lens = REQUEST_LAYOUT.check(buf)?;
        Ok(Self {
            buf,
            version: header.version,
            operation,
            lens,
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

    /// The request id the reply must echo.
    pub fn request_id(&self) -> u64 {
        u64_at(self.buf, request_field::REQUEST_ID)
    }

    /// The operation awaiting the verdict.
    pub const fn operation(&self) -> VerdictOperation {
        self.operation
    }

    /// Flag bits.
    pub fn flags(&self) -> EventFlags {
        EventFlags::from_bits_retain(u32_at(self.buf, request_field::FLAGS))
    }

    /// Process id of the requestor.
    pub fn process_id(&self) -> u64 {
        u64_at(self.buf, request_field::PROCESS_ID)
    }

    /// The file's path.
    pub fn path(&self) -> Utf16Str<'a> {
        REQUEST_LAYOUT.path(self.buf, self.lens)
    }

    /// The new name for rename and link; empty otherwise.
    pub fn target(&self) -> Utf16Str<'a> {
        REQUEST_LAYOUT.target(self.buf, self.lens)
    }

    /// The parsed request.
    pub fn repr(&self) -> VerdictRequestRepr<'a> {
        VerdictRequestRepr {
            request_id: self.request_id(),
            operation: self.operation,
            flags: self.flags(),
            process_id: self.process_id(),
            path: self.path(),
            target: self.target(),
        }
    }
}

/// Byte offsets of the verdict reply fields.
mod reply_field {
    use super::HEADER_LEN;
    pub const REQUEST_ID: usize = HEADER_LEN;
    pub const VERDICT: usize = HEADER_LEN + 8;
    pub const REASON: usize = HEADER_LEN + 12;
}

/// The service's answer to a verdict request.
///
/// The service sends it with `FilterReplyMessage`, behind Filter Manager's
/// `FILTER_REPLY_HEADER` (whose size the service adds to the length it passes); the driver gives
/// `FltSendMessage` a reply buffer of [`VerdictReply::LEN`] bytes and decodes what it receives.
/// A reply whose request id is not the one the driver is waiting for is the driver's to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictReply {
    /// The request id being answered.
    pub request_id: u64,
    /// Allow or deny.
    pub verdict: Verdict,
    /// The policy's reason code (for example the rule number), logged by the driver; zero when
    /// there is none.
    pub reason: u32,
}

impl VerdictReply {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 16;

    /// Checks and parses a verdict reply: the header, [`Error::WrongKind`],
    /// [`Error::BadLength`] for any length but [`LEN`](Self::LEN), [`Error::UnknownVerdict`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::VerdictReply, Self::LEN)?;
        let verdict =
            Verdict::from_u32(u32_at(msg, reply_field::VERDICT)).ok_or(Error::UnknownVerdict)?;
        Ok(Self {
            request_id: u64_at(msg, reply_field::REQUEST_ID),
            verdict,
            reason: u32_at(msg, reply_field::REASON),
        })
    }

    /// Encodes the reply at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::VerdictReply, Self::LEN, 0)?;
        put_u64(msg, reply_field::REQUEST_ID, self.request_id);
        put_u32(msg, reply_field::VERDICT, self.verdict.to_u32());
        put_u32(msg, reply_field::REASON, self.reason);
        Ok(Self::LEN)
    }
}
