//! Process records (driver to service): who a process key stands for.
//!
//! Runs in the kernel (the driver encodes one from its process-notify routine at
//! `PASSIVE_LEVEL`, and when it first sees a process that was running before the load) and in
//! user mode (the service's process table). Event records carry only the process key, which
//! keeps every event small; the process's image, parent, user and session come once, here.
//!
//! One record per message: processes start far less often than files are touched, so batching
//! them would save little, and a message of its own keeps the event batch a single record
//! shape (the driver's ring and delivery code are unchanged by it).

use crate::bytes::{i32_at, put_i32, put_u16, put_u32, put_u64, range, u16_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, MessageKind, Version, parse_kind, start_message};
use crate::paths::{PathLayout, PathLens, clamp_path, clamped_bytes};
use crate::sid::{MAX_SID_BYTES, Sid};
use crate::utf16::Utf16Str;

/// Size of a process record's fixed part (header included), in bytes.
pub const PROCESS_RECORD_FIXED_LEN: usize = 88;

/// Largest process record: an image path of [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) and the
/// longest SID.
pub const MAX_PROCESS_RECORD_LEN: usize = ProcessRepr::encoded_len_for(usize::MAX, MAX_SID_BYTES);

/// Byte offsets of the fields, from the message start.
mod field {
    pub const PROCESS_KEY: usize = super::HEADER_LEN;
    pub const PROCESS_ID: usize = 32;
    pub const PARENT_PROCESS_ID: usize = 40;
    pub const TIMESTAMP: usize = 48;
    pub const EVENT: usize = 56;
    pub const RESERVED: usize = 58;
    pub const SESSION_ID: usize = 60;
    pub const EXIT_STATUS: usize = 64;
    pub const FLAGS: usize = 68;
    pub const STRINGS: usize = 72;
}

/// The image path and the SID sit where an event's path and target do, with the same
/// canonical-layout checks; the SID is then checked as a SID.
const LAYOUT: PathLayout = PathLayout {
    fields_at: field::STRINGS,
    fixed_len: PROCESS_RECORD_FIXED_LEN,
};

/// Why a process record was sent. Zero is never one, so a zeroed record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ProcessEvent {
    /// The process was created (process-notify routine, creation).
    Start = 1,
    /// The process exited (process-notify routine, exit); no event carries its key afterwards.
    Exit = 2,
    /// The process was running before the driver loaded; sent the first time the driver saw it.
    Seen = 3,
}

impl ProcessEvent {
    /// Every value this version defines.
    pub const ALL: [ProcessEvent; 3] = [Self::Start, Self::Exit, Self::Seen];

    /// The value with wire value `value`.
    pub const fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::Start,
            2 => Self::Exit,
            3 => Self::Seen,
            _ => return None,
        })
    }

    /// The wire value.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }
}

/// Flag bits of a process record. Unknown bits are carried through, as for
/// [`EventFlags`](crate::EventFlags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProcessFlags(u32);

impl ProcessFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// The image path was longer than [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) and was cut.
    pub const IMAGE_TRUNCATED: Self = Self(1 << 0);
    /// Every bit this version defines.
    pub const ALL_DEFINED: Self = Self(1);

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
}

/// A process record, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRepr<'a> {
    /// Why it was sent.
    pub event: ProcessEvent,
    /// Never reused while the machine runs (the kernel's process start key); what events carry.
    pub process_key: u64,
    /// The process id (reused by Windows once the process is gone).
    pub process_id: u64,
    /// The creating process's id (for [`ProcessEvent::Seen`], the one recorded at its start).
    pub parent_process_id: u64,
    /// For a start, when the driver learned of the creation; for an exit, when it happened; for
    /// a sighting, when the driver sent the record. 100 ns units since 1601-01-01 UTC.
    pub timestamp: u64,
    /// The Terminal Services session id.
    pub session_id: u32,
    /// The exit status (NTSTATUS) of an [`ProcessEvent::Exit`]; zero otherwise.
    pub exit_status: i32,
    /// Flag bits.
    pub flags: ProcessFlags,
    /// The image file's NT path (`\Device\HarddiskVolume3\Windows\System32\cmd.exe`); empty
    /// when the kernel gave none.
    pub image: Utf16Str<'a>,
    /// The token user's SID; `None` when the driver could not read the token.
    pub user_sid: Option<Sid<'a>>,
}

impl ProcessRepr<'_> {
    /// Bytes a record with an image path of `image_units` code units and a SID of `sid_bytes`
    /// bytes takes, once the image is clamped.
    pub const fn encoded_len_for(image_units: usize, sid_bytes: usize) -> usize {
        LAYOUT.container_len(clamped_bytes(image_units), sid_bytes)
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn encoded_len(&self) -> usize {
        Self::encoded_len_for(self.image.len_units(), self.sid_len())
    }

    fn sid_len(&self) -> usize {
        self.user_sid.map_or(0, |sid| sid.as_bytes().len())
    }

    /// Encodes the record as a whole message at the start of `out`; returns its length. An
    /// image path longer than [`MAX_PATH_UNITS`](crate::MAX_PATH_UNITS) is cut and
    /// [`ProcessFlags::IMAGE_TRUNCATED`] set.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`]; nothing is written then.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let (image, cut) = clamp_path(self.image);
        let sid = self.user_sid.map_or(&[][..], |sid| sid.as_bytes());
        let len = LAYOUT.container_len(image.len_bytes(), sid.len());
        let msg = start_message(out, MessageKind::ProcessRecord, len, 0)?;
        let mut flags = self.flags.bits();
        if cut {
            flags |= ProcessFlags::IMAGE_TRUNCATED.bits();
        }
        put_u64(msg, field::PROCESS_KEY, self.process_key);
        put_u64(msg, field::PROCESS_ID, self.process_id);
        put_u64(msg, field::PARENT_PROCESS_ID, self.parent_process_id);
        put_u64(msg, field::TIMESTAMP, self.timestamp);
        put_u16(msg, field::EVENT, self.event.to_u16());
        put_u32(msg, field::SESSION_ID, self.session_id);
        put_i32(msg, field::EXIT_STATUS, self.exit_status);
        put_u32(msg, field::FLAGS, flags);
        // A SID has an even length (8 + 4n), so it travels in the second string slot as is.
        LAYOUT.emit(msg, image, Utf16Str::from_checked_le(sid));
        Ok(len)
    }
}

/// A checked process record message.
///
/// # Invariants
///
/// `buf` is exactly the message, every check of [`ProcessRecord::new_checked`] passed (the
/// SID, when present, is a valid SID), so no accessor can fail.
#[derive(Debug, Clone, Copy)]
pub struct ProcessRecord<'a> {
    buf: &'a [u8],
    version: Version,
    event: ProcessEvent,
    lens: PathLens,
}

impl<'a> ProcessRecord<'a> {
    /// Checks a process record: the header (see [`Header::parse`](crate::Header::parse)), then
    /// [`Error::WrongKind`], [`Error::BadLength`] under [`PROCESS_RECORD_FIXED_LEN`],
    /// [`Error::UnknownEventKind`] for the event, [`Error::NonZeroReserved`]; the image path
    /// and the SID exactly as an event's two paths (see
    /// [`EventRecord::new_checked`](crate::EventRecord::new_checked)); finally the SID, when
    /// not empty ([`Error::BadSid`]).
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        let (header, buf) = parse_kind(buf, MessageKind::ProcessRecord)?;
        if buf.len() < PROCESS_RECORD_FIXED_LEN {
            return Err(Error::BadLength);
        }
        let event =
            ProcessEvent::from_u16(u16_at(buf, field::EVENT)).ok_or(Error::UnknownEventKind)?;
        if u16_at(buf, field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        let lens = LAYOUT.check(buf)?;
        if lens.target != 0 {
            Sid::new_checked(Self::sid_bytes(buf, lens))?;
        }
        Ok(Self {
            buf,
            version: header.version,
            event,
            lens,
        })
    }

    fn sid_bytes(buf: &[u8], lens: PathLens) -> &[u8] {
        let start = PROCESS_RECORD_FIXED_LEN.saturating_add(lens.path);
        range(buf, start, start.saturating_add(lens.target))
    }

    /// The sender's protocol version.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// The message's bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Why it was sent.
    pub const fn event(&self) -> ProcessEvent {
        self.event
    }

    /// The process key.
    pub fn process_key(&self) -> u64 {
        u64_at(self.buf, field::PROCESS_KEY)
    }

    /// The process id.
    pub fn process_id(&self) -> u64 {
        u64_at(self.buf, field::PROCESS_ID)
    }

    /// The parent's process id.
    pub fn parent_process_id(&self) -> u64 {
        u64_at(self.buf, field::PARENT_PROCESS_ID)
    }

    /// 100 ns units since 1601-01-01 UTC.
    pub fn timestamp(&self) -> u64 {
        u64_at(self.buf, field::TIMESTAMP)
    }

    /// The session id.
    pub fn session_id(&self) -> u32 {
        u32_at(self.buf, field::SESSION_ID)
    }

    /// The exit status.
    pub fn exit_status(&self) -> i32 {
        i32_at(self.buf, field::EXIT_STATUS)
    }

    /// Flag bits.
    pub fn flags(&self) -> ProcessFlags {
        ProcessFlags::from_bits_retain(u32_at(self.buf, field::FLAGS))
    }

    /// The image path.
    pub fn image(&self) -> Utf16Str<'a> {
        LAYOUT.path(self.buf, self.lens)
    }

    /// The user's SID, when the record has one.
    pub fn user_sid(&self) -> Option<Sid<'a>> {
        // Checked in new_checked (an empty slot fails the check: no SID); `ok()` keeps this
        // accessor free of a panic path.
        Sid::new_checked(Self::sid_bytes(self.buf, self.lens)).ok()
    }

    /// The parsed record.
    pub fn repr(&self) -> ProcessRepr<'a> {
        ProcessRepr {
            event: self.event,
            process_key: self.process_key(),
            process_id: self.process_id(),
            parent_process_id: self.parent_process_id(),
            timestamp: self.timestamp(),
            session_id: self.session_id(),
            exit_status: self.exit_status(),
            flags: self.flags(),
            image: self.image(),
            user_sid: self.user_sid(),
        }
    }
}
