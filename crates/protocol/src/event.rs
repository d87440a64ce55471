//! Event records: one file-system event, self-describing and 8-byte aligned.
//!
//! Runs in the kernel at any IRQL (the driver encodes records straight into its event ring from
//! pre/post-operation callbacks) and in user mode (the service reads them out of batches).
//! A record begins with its own length, so a reader steps through a batch record by record;
//! its strings are addressed by offsets relative to the record, so a record is copied into a
//! batch unchanged.

use core::ops::{BitOr, BitOrAssign};

use crate::bytes::{
    bytes16_at, i32_at, put_bytes16, put_i32, put_len, put_u16, put_u32, put_u64, u16_at, u32_at,
    u64_at, usize_at,
};
use crate::error::{Error, Result};
use crate::paths::{PathLayout, PathLens, clamp_path, clamped_bytes};
use crate::utf16::Utf16Str;

/// Size of a record's fixed part, in bytes: the smallest possible record.
pub const EVENT_FIXED_LEN: usize = 104;

/// Byte offsets of the record fields, relative to the start of the record.
mod field {
    pub const LENGTH: usize = 0;
    pub const KIND: usize = 4;
    pub const RESERVED: usize = 6;
    pub const FLAGS: usize = 8;
    pub const STATUS: usize = 12;
    pub const SEQUENCE: usize = 16;
    pub const TIMESTAMP: usize = 24;
    pub const PROCESS_ID: usize = 32;
    pub const THREAD_ID: usize = 40;
    pub const VOLUME_ID: usize = 48;
    pub const DESIRED_ACCESS: usize = 52;
    pub const CREATE_DISPOSITION: usize = 56;
    pub const INFORMATION: usize = 60;
    pub const FILE_ID: usize = 64;
    pub const PROCESS_KEY: usize = 80;
    pub const PATHS: usize = 88;
}

const LAYOUT: PathLayout = PathLayout {
    fields_at: field::PATHS,
    fixed_len: EVENT_FIXED_LEN,
};

/// What happened to the file. Zero is never a kind, so a zeroed record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum EventKind {
    /// A create or open completed (`IRP_MJ_CREATE` post-operation).
    Open = 1,
    /// The first write through a file object.
    FirstWrite = 2,
    /// A rename; the target path is the new name.
    Rename = 3,
    /// A hard link was created; the target path is the new link.
    HardLink = 4,
    /// A delete (disposition set, or delete-on-close honoured).
    Delete = 5,
    /// The last handle to a file that was written was closed (cleanup after modification).
    CloseModified = 6,
}

impl EventKind {
    /// Every kind this version defines.
    pub const ALL: [EventKind; 6] = [
        Self::Open,
        Self::FirstWrite,
        Self::Rename,
        Self::HardLink,
        Self::Delete,
        Self::CloseModified,
    ];

    /// The kind with wire value `value`.
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::Open,
            2 => Self::FirstWrite,
            3 => Self::Rename,
            4 => Self::HardLink,
            5 => Self::Delete,
            6 => Self::CloseModified,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }
}

/// Flag bits of an event record (also used by verdict requests).
///
/// Bits this version does not define are carried through unchanged: the driver sets only
/// defined bits, and a reader ignores the ones it does not know (a newer minor version may
/// define more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventFlags(u32);

impl EventFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The normalized name could not be had; the path is the opened name (less canonical).
    pub const NAME_NOT_NORMALIZED: Self = Self(1 << 0);
    /// The path was longer than [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) and was cut.
    pub const PATH_TRUNCATED: Self = Self(1 << 1);
    /// The target path was longer than [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) and was cut.
    pub const TARGET_TRUNCATED: Self = Self(1 << 2);
    /// The file is a directory.
    pub const DIRECTORY: Self = Self(1 << 3);
    /// The file was opened with `FILE_DELETE_ON_CLOSE`.
    pub const DELETE_ON_CLOSE: Self = Self(1 << 4);
    /// No name could be had at all; the path is empty.
    pub const NAME_UNAVAILABLE: Self = Self(1 << 5);
    /// The file id is the file system's 64-bit id, zero-extended into the 16 bytes (the volume
    /// has no 128-bit `FileIdInformation`, FAT for example): such ids are unique only per volume
    /// and may be reused after a delete. Clear with a non-zero id: a 128-bit `FILE_ID_128`.
    pub const FILE_ID_64: Self = Self(1 << 6);
    /// Every bit this version defines.
    pub const ALL_DEFINED: Self = Self((1 << 7) - 1);

    /// Flags with exactly these bits, defined or not.
    pub const fn from_bits_retain(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// `true` when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set too.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOr for EventFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitOrAssign for EventFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(rhs);
    }
}

/// An event, parsed: what [`EventRecord::emit`] writes and [`EventRecord::repr`] reads back.
///
/// Paths longer than [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) are cut by the encoder, which
/// then sets [`EventFlags::PATH_TRUNCATED`] or [`EventFlags::TARGET_TRUNCATED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRepr<'a> {
    /// What happened.
    pub kind: EventKind,
    /// Flag bits.
    pub flags: EventFlags,
    /// The operation's NTSTATUS (post-operation), or `STATUS_SUCCESS` (0) where there is none.
    pub status: i32,
    /// Per-record sequence number, assigned by the driver in ring push order; may instead be
    /// patched in after encoding with [`EventRecord::set_sequence`].
    pub sequence: u64,
    /// When it happened: 100 ns units since 1601-01-01 UTC (`KeQuerySystemTimePrecise`).
    pub timestamp: u64,
    /// Process id of the requestor.
    pub process_id: u64,
    /// Thread id of the requestor.
    pub thread_id: u64,
    /// Volume identifier (the volume serial number).
    pub volume_id: u32,
    /// `DesiredAccess` of the create; zero for other operations.
    pub desired_access: u32,
    /// Create disposition requested (`FILE_OPEN`, `FILE_CREATE`, ...); zero for other operations.
    pub create_disposition: u32,
    /// `IoStatus.Information` of the create (`FILE_OPENED`, `FILE_CREATED`, ...), cut to 32 bits.
    pub information: u32,
    /// 128-bit file id (`FILE_ID_128`, little-endian); all zero when unknown. A 64-bit id
    /// widened with zeros when [`EventFlags::FILE_ID_64`] is set.
    pub file_id: [u8; 16],
    /// The requesting process's key, as in its [`ProcessRepr`](crate::ProcessRepr): unlike the
    /// process id, never reused while the machine runs. Zero when the driver has none for it.
    pub process_key: u64,
    /// The file's path (normalized name unless [`EventFlags::NAME_NOT_NORMALIZED`]).
    pub path: Utf16Str<'a>,
    /// The new name for [`EventKind::Rename`] and [`EventKind::HardLink`]; empty otherwise.
    pub target: Utf16Str<'a>,
}

impl EventRepr<'_> {
    /// Bytes [`EventRecord::emit`] will write for this event.
    pub fn encoded_len(&self) -> usize {
        EventRecord::encoded_len(self.path.len_units(), self.target.len_units())
    }
}

/// A checked view of one event record.
///
/// # Invariants
///
/// `buf` is exactly one record, whose every check in [`EventRecord::new_checked`] passed, so no
/// accessor can fail.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    buf: &'a [u8],
    kind: EventKind,
    lens: PathLens,
}

impl<'a> EventRecord<'a> {
    /// Checks the record at the start of `buf`; bytes after it (the rest of a batch) are not
    /// looked at.
    ///
    /// Checks, in order: at least [`EVENT_FIXED_LEN`] bytes ([`Error::Truncated`]); the length
    /// field at least the fixed part ([`Error::BadLength`]), a multiple of 8
    /// ([`Error::Misaligned`]) and within `buf` ([`Error::LengthPastEnd`]); the kind
    /// ([`Error::UnknownEventKind`]); the reserved field ([`Error::NonZeroReserved`]); then each
    /// string: inside the record ([`Error::LengthPastEnd`]), even length
    /// ([`Error::OddUtf16Length`]), at most [`MAX_PATH_BYTES`](crate::MAX_PATH_BYTES)
    /// ([`Error::PathTooLong`]), at its canonical offset ([`Error::BadOffset`]); finally the
    /// length equals fixed part plus strings plus padding ([`Error::BadLength`]) and the padding
    /// is zero ([`Error::NonZeroReserved`]).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < EVENT_FIXED_LEN {
            return Err(Error::Truncated);
        }
        let len = usize_at(buf, field::LENGTH);
        if len < EVENT_FIXED_LEN {
            return Err(Error::BadLength);
        }
        if !len.is_multiple_of(8) {
            return Err(Error::Misaligned);
        }
        let buf = buf.get(..len).ok_or(Error::LengthPastEnd)?;
        let kind = EventKind::from_u16(u16_at(buf, field::KIND)).ok_or(Error::UnknownEventKind)?;
        if u16_at(buf, field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        let lens = LAYOUT.check(buf)?;
        Ok(Self { buf, kind, lens })
    }

    /// Bytes a record with paths of these lengths (in code units) takes, after the encoder
    /// clamps each to [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS): what the driver reserves in its
    /// ring before calling [`emit`](Self::emit). Always a multiple of 8, at least
    /// [`EVENT_FIXED_LEN`], and at most [`MAX_EVENT_LEN`].
    pub const fn encoded_len(path_units: usize, target_units: usize) -> usize {
        LAYOUT.container_len(clamped_bytes(path_units), clamped_bytes(target_units))
    }

    /// Encodes `repr` at the start of `out` and returns the bytes written
    /// ([`encoded_len`](Self::encoded_len)). Every byte of the record is written: fields, both
    /// strings, and zeros for the reserved field and the padding. Bytes after it are untouched.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `out` is shorter than the record; nothing is written then.
    pub fn emit(repr: &EventRepr<'_>, out: &mut [u8]) -> Result<usize> {
        let (path, path_cut) = clamp_path(repr.path);
        let (target, target_cut) = clamp_path(repr.target);
        let len = LAYOUT.container_len(path.len_bytes(), target.len_bytes());
        let out = out.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut flags = repr.flags;
        if path_cut {
            flags |= EventFlags::PATH_TRUNCATED;
        }
        if target_cut {
            flags |= EventFlags::TARGET_TRUNCATED;
        }
        put_len(out, field::LENGTH, len);
        put_u16(out, field::KIND, repr.kind.to_u16());
        put_u16(out, field::RESERVED, 0);
        put_u32(out, field::FLAGS, flags.bits());
        put_i32(out, field::STATUS, repr.status);
        put_u64(out, field::SEQUENCE, repr.sequence);
        put_u64(out, field::TIMESTAMP, repr.timestamp);
        put_u64(out, field::PROCESS_ID, repr.process_id);
        put_u64(out, field::THREAD_ID, repr.thread_id);
        put_u32(out, field::VOLUME_ID, repr.volume_id);
        put_u32(out, field::DESIRED_ACCESS, repr.desired_access);
        put_u32(out, field::CREATE_DISPOSITION, repr.create_disposition);
        put_u32(out, field::INFORMATION, repr.information);
        put_bytes16(out, field::FILE_ID, repr.file_id);
        put_u64(out, field::PROCESS_KEY, repr.process_key);
        LAYOUT.emit(out, path, target);
        Ok(len)
    }

    /// Overwrites the sequence number of an encoded record in place: lets the driver encode a
    /// record first and number it when it is pushed into the ring, in push order.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `record` is shorter than the fixed part.
    pub fn set_sequence(record: &mut [u8], sequence: u64) -> Result<()> {
        if record.len() < EVENT_FIXED_LEN {
            return Err(Error::BufferTooSmall);
        }
        put_u64(record, field::SEQUENCE, sequence);
        Ok(())
    }

    /// The record's bytes: exactly its length, ready to copy into a batch.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The record's length in bytes (a multiple of 8).
    pub const fn record_len(&self) -> usize {
        self.buf.len()
    }

    /// What happened.
    pub const fn kind(&self) -> EventKind {
        self.kind
    }

    /// Flag bits.
    pub fn flags(&self) -> EventFlags {
        EventFlags::from_bits_retain(u32_at(self.buf, field::FLAGS))
    }

    /// The operation's NTSTATUS.
    pub fn status(&self) -> i32 {
        i32_at(self.buf, field::STATUS)
    }

    /// Per-record sequence number.
    pub fn sequence(&self) -> u64 {
        u64_at(self.buf, field::SEQUENCE)
    }

    /// 100 ns units since 1601-01-01 UTC.
    pub fn timestamp(&self) -> u64 {
        u64_at(self.buf, field::TIMESTAMP)
    }

    /// Requestor's process id.
    pub fn process_id(&self) -> u64 {
        u64_at(self.buf, field::PROCESS_ID)
    }

    /// Requestor's thread id.
    pub fn thread_id(&self) -> u64 {
        u64_at(self.buf, field::THREAD_ID)
    }

    /// Volume identifier.
    pub fn volume_id(&self) -> u32 {
        u32_at(self.buf, field::VOLUME_ID)
    }

    /// `DesiredAccess` of the create.
    pub fn desired_access(&self) -> u32 {
        u32_at(self.buf, field::DESIRED_ACCESS)
    }

    /// Create disposition requested.
    pub fn create_disposition(&self) -> u32 {
        u32_at(self.buf, field::CREATE_DISPOSITION)
    }

    /// `IoStatus.Information` of the create.
    pub fn information(&self) -> u32 {
        u32_at(self.buf, field::INFORMATION)
    }

    /// 128-bit file id; all zero when unknown.
    pub fn file_id(&self) -> [u8; 16] {
        bytes16_at(self.buf, field::FILE_ID)
    }

    /// The requesting process's key; zero when the driver had none.
    pub fn process_key(&self) -> u64 {
        u64_at(self.buf, field::PROCESS_KEY)
    }

    /// The file's path.
    pub fn path(&self) -> Utf16Str<'a> {
        LAYOUT.path(self.buf, self.lens)
    }

    /// The target path (rename and hard link); empty otherwise.
    pub fn target(&self) -> Utf16Str<'a> {
        LAYOUT.target(self.buf, self.lens)
    }

    /// The parsed event.
    pub fn repr(&self) -> EventRepr<'a> {
        EventRepr {
            kind: self.kind,
            flags: self.flags(),
            status: self.status(),
            sequence: self.sequence(),
            timestamp: self.timestamp(),
            process_id: self.process_id(),
            thread_id: self.thread_id(),
            volume_id: self.volume_id(),
            desired_access: self.desired_access(),
            create_disposition: self.create_disposition(),
            information: self.information(),
            file_id: self.file_id(),
            process_key: self.process_key(),
            path: self.path(),
            target: self.target(),
        }
    }

    /// The first `len` bytes of `buf` as a record that the batch check already validated.
    pub(crate) fn from_validated(buf: &'a [u8]) -> Option<Self> {
        // Re-running the checks costs a few compares and keeps this constructor safe to call
        // with anything: a batch that passed its check always yields the same records here.
        Self::new_checked(buf).ok()
    }
}

/// Largest record the encoder can produce: both paths at
/// [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS).
pub const MAX_EVENT_LEN: usize = EventRecord::encoded_len(usize::MAX, usize::MAX);
