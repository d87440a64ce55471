//! Event batches: the driver's delivery thread sends event records to the service in these.
//!
//! Runs in the kernel (the delivery thread, `PASSIVE_LEVEL`; [`EventBatch::emit_header`] and
//! [`BatchWriter`] are usable at any IRQL) and in user mode (the service's receive loop).
//! A batch is the common header, a record count, and the records back to back.

use crate::bytes::{put_u32, u32_at};
use crate::consts::MAX_MESSAGE_SIZE;
use crate::error::{Error, Result};
use crate::event::{EVENT_FIXED_LEN, EventRecord, EventRepr};
use crate::header::{HEADER_LEN, Header, MessageKind, Version, parse_kind, write_header};

/// Size of a batch's fixed part (common header, record count, reserved), in bytes. Records start
/// here, 8-byte aligned.
pub const BATCH_HEADER_LEN: usize = 32;

/// Most records one batch can hold: as many minimal records as fit in [`MAX_MESSAGE_SIZE`].
pub const MAX_BATCH_RECORDS: usize = (MAX_MESSAGE_SIZE - BATCH_HEADER_LEN) / EVENT_FIXED_LEN;

/// Most record bytes one batch can hold.
pub const MAX_BATCH_RECORDS_LEN: usize = MAX_MESSAGE_SIZE - BATCH_HEADER_LEN;

/// Byte offsets of the batch fields after the common header.
mod field {
    pub const RECORD_COUNT: usize = super::HEADER_LEN;
    pub const RESERVED: usize = super::HEADER_LEN + 4;
}

/// A checked view of an event batch.
///
/// The header's sequence number is the sequence number of the batch's first record, so the
/// service checks continuity from the header alone; a batch is never empty.
///
/// # Invariants
///
/// `buf` is exactly the message, and every check in [`EventBatch::new_checked`] passed: `count`
/// records, each valid, fill the bytes after [`BATCH_HEADER_LEN`] exactly.
#[derive(Debug, Clone, Copy)]
pub struct EventBatch<'a> {
    buf: &'a [u8],
    header: Header,
    count: usize,
}

impl<'a> EventBatch<'a> {
    /// Checks a whole batch: the header (see [`Header::parse`]), then
    /// [`Error::WrongKind`] for another kind, [`Error::BadLength`] under [`BATCH_HEADER_LEN`],
    /// [`Error::Misaligned`] when the records' bytes are not a multiple of 8,
    /// [`Error::NonZeroReserved`], [`Error::EmptyBatch`], [`Error::CountTooLarge`] when the count
    /// cannot fit in the bytes even with minimal records, then every record (see
    /// [`EventRecord::new_checked`]; a record that runs past the batch gives
    /// [`Error::LengthPastEnd`]), [`Error::CountMismatch`] when the bytes run out before the
    /// count or remain after it, and [`Error::SequenceMismatch`] when the header's sequence
    /// number is not the first record's.
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        let (header, buf) = parse_kind(buf, MessageKind::EventBatch)?;
        if buf.len() < BATCH_HEADER_LEN {
            return Err(Error::BadLength);
        }
        let records_len = buf.len() - BATCH_HEADER_LEN;
        if !records_len.is_multiple_of(8) {
            return Err(Error::Misaligned);
        }
        if u32_at(buf, field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        let count = usize::try_from(u32_at(buf, field::RECORD_COUNT)).unwrap_or(usize::MAX);
        if count == 0 {
            return Err(Error::EmptyBatch);
        }
        if count > records_len / EVENT_FIXED_LEN {
            return Err(Error::CountTooLarge);
        }
        let mut rest = buf.get(BATCH_HEADER_LEN..).unwrap_or(&[]);
        let mut first_sequence = None;
        for _ in 0..count {
            if rest.len() < EVENT_FIXED_LEN {
                return Err(Error::CountMismatch);
            }
            let record = EventRecord::new_checked(rest)?;
            first_sequence.get_or_insert(record.sequence());
            rest = rest.get(record.record_len()..).unwrap_or(&[]);
        }
        if !rest.is_empty() {
            return Err(Error::CountMismatch);
        }
        if first_sequence != Some(header.sequence) {
            return Err(Error::SequenceMismatch);
        }
        Ok(Self { buf, header, count })
    }

    /// Writes a batch header at the start of `out` for `record_count` records taking
    /// `records_len` bytes, which the caller copies right after it (at [`BATCH_HEADER_LEN`]).
    /// `first_sequence` is the first record's sequence number. Returns [`BATCH_HEADER_LEN`].
    ///
    /// # Errors
    ///
    /// [`Error::EmptyBatch`] for no records, [`Error::Misaligned`] when `records_len` is not a
    /// multiple of 8, [`Error::MessageTooLarge`] over [`MAX_BATCH_RECORDS_LEN`],
    /// [`Error::CountTooLarge`] when that many records cannot fit in `records_len` bytes,
    /// [`Error::BufferTooSmall`] when `out` is shorter than [`BATCH_HEADER_LEN`].
    pub fn emit_header(
        out: &mut [u8],
        first_sequence: u64,
        record_count: usize,
        records_len: usize,
    ) -> Result<usize> {
        if record_count == 0 {
            return Err(Error::EmptyBatch);
        }
        if !records_len.is_multiple_of(8) {
            return Err(Error::Misaligned);
        }
        if records_len > MAX_BATCH_RECORDS_LEN {
            return Err(Error::MessageTooLarge);
        }
        if record_count > records_len / EVENT_FIXED_LEN {
            return Err(Error::CountTooLarge);
        }
        let head = out
            .get_mut(..BATCH_HEADER_LEN)
            .ok_or(Error::BufferTooSmall)?;
        write_header(
            head,
            MessageKind::EventBatch,
            BATCH_HEADER_LEN + records_len,
            first_sequence,
        );
        // Bounded by MAX_BATCH_RECORDS above, so it fits a u32.
        put_u32(
            head,
            field::RECORD_COUNT,
            u32::try_from(record_count).unwrap_or(u32::MAX),
        );
        put_u32(head, field::RESERVED, 0);
        Ok(BATCH_HEADER_LEN)
    }

    /// The sequence number of the first record.
    pub const fn sequence(&self) -> u64 {
        self.header.sequence
    }

    /// The sender's protocol version.
    pub const fn version(&self) -> Version {
        self.header.version
    }

    /// Number of records (at least one).
    pub const fn record_count(&self) -> usize {
        self.count
    }

    /// The whole message.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The records, in order.
    pub fn records(&self) -> Records<'a> {
        Records {
            rest: self.buf.get(BATCH_HEADER_LEN..).unwrap_or(&[]),
            remaining: self.count,
        }
    }
}

/// Iterator over the records of a checked [`EventBatch`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = EventRecord<'a>;

    fn next(&mut self) -> Option<EventRecord<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let Some(record) = EventRecord::from_validated(self.rest) else {
            // Unreachable for a checked batch; ending early is the panic-free answer.
            self.remaining = 0;
            return None;
        };
        self.rest = self.rest.get(record.record_len()..).unwrap_or(&[]);
        self.remaining -= 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Records<'_> {}

/// Builds a batch in a caller's buffer, one record at a time.
///
/// For code that has [`EventRepr`]s or checked records in hand (the service's tests, kernel-sim,
/// the driver when it drains its ring into a send buffer). Usable at any IRQL: it only writes
/// into `out`.
#[derive(Debug)]
pub struct BatchWriter<'a> {
    out: &'a mut [u8],
    len: usize,
    count: usize,
    first_sequence: u64,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch in `out`; at most [`MAX_MESSAGE_SIZE`] bytes of it are used.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when `out` cannot hold the batch header and one minimal record.
    pub fn new(out: &'a mut [u8]) -> Result<Self> {
        if out.len() < BATCH_HEADER_LEN + EVENT_FIXED_LEN {
            return Err(Error::BufferTooSmall);
        }
        let cap = out.len().min(MAX_MESSAGE_SIZE);
        let out = out.get_mut(..cap).ok_or(Error::BufferTooSmall)?;
        Ok(Self {
            out,
            len: BATCH_HEADER_LEN,
            count: 0,
            first_sequence: 0,
        })
    }

    /// Encodes `event` after the records already written.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when it does not fit (the batch is full); the batch is unchanged.
    pub fn push(&mut self, event: &EventRepr<'_>) -> Result<()> {
        let dst = self.out.get_mut(self.len..).ok_or(Error::BufferTooSmall)?;
        let n = EventRecord::emit(event, dst)?;
        self.record_pushed(event.sequence, n);
        Ok(())
    }

    /// Copies an already-encoded, checked record after the records already written.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when it does not fit (the batch is full); the batch is unchanged.
    pub fn push_record(&mut self, record: EventRecord<'_>) -> Result<()> {
        let bytes = record.as_bytes();
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(Error::BufferTooSmall)?;
        let dst = self
            .out
            .get_mut(self.len..end)
            .ok_or(Error::BufferTooSmall)?;
        dst.copy_from_slice(bytes);
        self.record_pushed(record.sequence(), bytes.len());
        Ok(())
    }

    fn record_pushed(&mut self, sequence: u64, len: usize) {
        if self.count == 0 {
            self.first_sequence = sequence;
        }
        self.count = self.count.saturating_add(1);
        self.len = self.len.saturating_add(len);
    }

    /// Number of records written so far.
    pub const fn record_count(&self) -> usize {
        self.count
    }

    /// `true` before the first record.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch takes so far, header included.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Writes the header and returns the batch's total length.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyBatch`] when no record was pushed.
    pub fn finish(self) -> Result<usize> {
        EventBatch::emit_header(
            self.out,
            self.first_sequence,
            self.count,
            self.len.saturating_sub(BATCH_HEADER_LEN),
        )?;
        Ok(self.len)
    }
}
