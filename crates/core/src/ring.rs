//! The event ring: bounded, multi-producer (file-system callbacks, up to `DISPATCH_LEVEL`),
//! single-consumer (the delivery thread) ring of variable-length records, in one byte region that
//! the caller allocates once (driver: non-paged pool; user mode: the heap).
//!
//! Reserve under the lock, fill outside it, commit with a release store (the scheme of Linux's BPF
//! ring buffer). A producer takes the DISPATCH-level lock only to take a sequence number, check free
//! space and advance `head` (a few dozen instructions, no loop); it fills its record with the lock
//! released and commits it by storing the record's header word. The consumer walks from `tail`
//! towards `head` and stops at the first record not yet committed, so records leave in sequence
//! order even when producers finish out of order.
//!
//! Layout: each record is an 8-byte header word (state and payload length), the 8-byte sequence
//! number, then the payload padded to 8 bytes. A record never wraps: when it does not fit before the
//! end, a padding record (state `SKIP`) fills the end and the record starts at offset 0. A record
//! takes at most half the ring, so an empty ring always accepts a record that is not too large.
//!
//! Sequence numbers are taken by every push, accepted or dropped, in lock order: a drop leaves a gap
//! the service sees in-band, beside the drop counters. Nothing is ever blocked or allocated: a push
//! that does not fit is dropped and counted by reason.

use crate::sync::{AtomicBool, AtomicU64, Ordering, RingMemory, model_unwinding};
use crate::twin::{Guard, keeps};
use crate::{Platform, RawDispatchLock};
use core::marker::PhantomPinned;
use core::ptr::NonNull;

/// Header word and sequence number.
const HEADER: usize = 16;
/// State bits of a header word (above the 32-bit length).
const STATE_MASK: u64 = 0b11 << 32;
/// Reserved, being filled: the consumer stops here.
const BUSY: u64 = 0;
/// Filled: the consumer copies it.
const COMMITTED: u64 = 1 << 32;
/// Padding to the end of the storage: the length is the padding's.
const SKIP: u64 = 2 << 32;
/// Reserved, but its filler unwound: the consumer skips it (counted as dropped, aborted).
const DISCARDED: u64 = 3 << 32;

/// The bytes a record of `len` payload bytes takes in the ring, or `None` on overflow.
fn record_size(len: usize) -> Option<usize> {
    len.checked_add(7).map(|n| n & !7)?.checked_add(HEADER)
}

/// A header word: `state` and the 32-bit `len` (lengths are bounded by half the ring, which the
/// constructor caps below 4 GiB).
fn header_word(state: u64, len: usize) -> u64 {
    state | (len as u64 & 0xffff_ffff)
}

/// Why a push was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not enough free space now.
    Full,
    /// Larger than the largest record the ring takes ([`EventRing::max_payload`]).
    TooLarge,
}

/// What one [`RingConsumer::drain`] copied out.
#[must_use]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Bytes written at the start of the output: the payloads back to back, no ring framing.
    pub bytes: usize,
    /// Records copied.
    pub records: usize,
    /// Sequence number of the first record copied (0 if none).
    pub first_seq: u64,
    /// Sequence number of the last record copied (0 if none).
    pub last_seq: u64,
}

/// Ring counters. When no push or drain is in progress,
/// `pushed == drained + dropped_full + dropped_too_large + dropped_aborted + (records not yet drained)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Pushes, accepted or dropped (also the next sequence number).
    pub pushed: u64,
    /// Dropped for lack of space.
    pub dropped_full: u64,
    /// Dropped as larger than the ring takes.
    pub dropped_too_large: u64,
    /// Reserved, but their filler panicked (user mode only; a kernel panic is a bug check).
    pub dropped_aborted: u64,
    /// Copied out by the consumer.
    pub drained: u64,
}

impl RingStats {
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_too_large + self.dropped_aborted
    }
}

/// The ring. Build it in place with [`EventRing::init_in_place`] over storage the caller owns
/// (driver), or with `EventRing::with_capacity` (user mode); it never moves afterwards.
///
/// # Invariants
/// - Positions (`head`, `tail`) count bytes since the start and only grow; the byte at position `p`
///   is at offset `p % capacity`. `tail <= head <= tail + capacity`, and both are multiples of 8.
/// - `head` and `next_seq` change only under `lock`; `tail` changes only by the consumer, and at
///   most one [`RingConsumer`] exists (`consumer_claimed`).
/// - Between `tail` and `head` lie whole records and padding, each starting with its header word;
///   a record in state `BUSY` belongs to the producer that reserved it, which alone writes its bytes
///   until it stores `COMMITTED` or `DISCARDED` (release); records before the first `BUSY` one
///   belong to the consumer.
/// - `max_record <= capacity / 2`, a multiple of 8 below 4 GiB.
pub struct EventRing<P: Platform> {
    lock: P::DispatchLock,
    memory: RingMemory,
    capacity: usize,
    max_record: usize,
    head: AtomicU64,
    tail: AtomicU64,
    next_seq: AtomicU64,
    dropped_full: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_aborted: AtomicU64,
    drained: AtomicU64,
    consumer_claimed: AtomicBool,
    _pinned: PhantomPinned,
}

// SAFETY: the storage is accessed only as the invariants allow (a byte range has one writer at a
// time, and the hand-overs are release/acquire through `head`, `tail`, the header words and the
// lock); the other fields are atomics or a `Sync` platform lock.
unsafe impl<P: Platform> Sync for EventRing<P> {}
// SAFETY: nothing in the ring is bound to a thread; the storage is owned for the ring's life.
unsafe impl<P: Platform> Send for EventRing<P> {}

impl<P: Platform> EventRing<P> {
    /// Initializes a ring at `slot` over `len` bytes at `storage`. The usable capacity is the
    /// 8-aligned part of the storage, capped at 4 GiB; the storage is zeroed here (so no stale pool
    /// bytes can ever reach a record).
    ///
    /// # Safety
    /// - `slot` is valid for writes and aligned for `Self`; the ring is never moved afterwards and is
    ///   dropped in place (or its memory freed) only when no reference to it remains.
    /// - `storage` is valid for reads and writes of `len` bytes, used by nothing else while the ring
    ///   lives, and outlives it.
    pub unsafe fn init_in_place(slot: *mut Self, storage: NonNull<u8>, len: usize) {
        let skip = storage.as_ptr().align_offset(8).min(len);
        let capacity = (len - skip).min(1 << 32) & !7;
        // SAFETY: `skip <= len`, so the result stays inside (or one past) the storage.
        let base = unsafe { storage.add(skip) };
        // SAFETY: `base` is 8-aligned (or `capacity` is 0), and the caller gives the ring `capacity`
        // bytes there for its whole life.
        let memory = unsafe { RingMemory::new(base, capacity) };
        // SAFETY: the caller gives a writable slot that will not move; the field is inside it.
        unsafe { P::DispatchLock::init(field_of!(slot.lock)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.memory), memory) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.capacity), capacity) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.max_record), (capacity / 2) & !7) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.head), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.tail), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.next_seq), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.dropped_full), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.dropped_too_large), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.dropped_aborted), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.drained), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.consumer_claimed), AtomicBool::new(false)) };
    }

    /// A ring over `bytes` bytes of heap storage (user mode).
    #[cfg(any(feature = "std", loom))]
    pub fn with_capacity(bytes: usize) -> BoxedRing<P> {
        BoxedRing::new(bytes)
    }

    /// Usable bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest payload a push accepts. A drain buffer at least this long always makes progress.
    pub fn max_payload(&self) -> usize {
        self.max_record.saturating_sub(HEADER)
    }

    fn offset(&self, position: u64) -> usize {
        // `checked_rem`: a zero-capacity ring (storage shorter than 8 bytes) has no offsets, and
        // the kernel image must hold no panic path, not even an unreachable division by zero.
        let offset = position.checked_rem(self.capacity as u64).unwrap_or(0);
        // Below `capacity`, a `usize`: never truncated.
        usize::try_from(offset).unwrap_or(0)
    }

    /// Pushes a record of `len` bytes: takes the next sequence number, reserves the space, then calls
    /// `fill(seq, record)` with the lock released and the record's `len` bytes zeroed, and commits.
    /// Returns the sequence number, or why the record was dropped (counted, and `fill` not called).
    ///
    /// Never allocates, never waits except for the short DISPATCH-level lock. IRQL <= `DISPATCH_LEVEL`;
    /// `fill` runs at the caller's IRQL. `fill` must not panic (in the kernel a panic is a bug check;
    /// in user mode the record is discarded and counted as `dropped_aborted`, and the ring stays
    /// sound).
    ///
    /// # Errors
    /// [`DropReason`] when the record is dropped.
    pub fn push<F: FnOnce(u64, &mut [u8])>(&self, len: usize, fill: F) -> Result<u64, DropReason> {
        let size = record_size(len);
        let locked = self.lock.lock();
        let seq = self.next_seq.load(Ordering::Relaxed);
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        let Some(size) = size.filter(|&size| size <= self.max_record) else {
            bump_locked(&self.dropped_too_large);
            return Err(DropReason::TooLarge);
        };
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let offset = self.offset(head);
        let to_end = self.capacity - offset;
        let (start, padding) = if size <= to_end {
            (offset, 0)
        } else {
            (0, to_end)
        };
        let end = head + (padding + size) as u64;
        if end - tail > self.capacity as u64 {
            bump_locked(&self.dropped_full);
            return Err(DropReason::Full);
        }
        if padding != 0 {
            self.memory.track_write(offset, 8);
            self.memory
                .header(offset)
                .store(header_word(SKIP, padding), Ordering::Relaxed);
        }
        self.memory.track_write(start, size);
        self.memory
            .header(start)
            .store(header_word(BUSY, len), Ordering::Relaxed);
        self.head.store(end, Ordering::Release);
        drop(locked);

        let commit = Commit {
            ring: self,
            start,
            len,
            state: DISCARDED,
        };
        // SAFETY: `start + 8 .. start + size` is inside the storage and reserved for this producer
        // alone until it commits (invariant); nothing else references it.
        let sequence = unsafe { self.memory.bytes_mut(start + 8, 8) };
        sequence.copy_from_slice(&seq.to_le_bytes());
        // SAFETY: as above, the payload part of the same reservation.
        let record = unsafe { self.memory.bytes_mut(start + HEADER, len) };
        record.fill(0);
        self.memory.track_write(start + 8, size - 8);
        let mut commit = commit;
        fill(seq, record);
        commit.state = COMMITTED;
        drop(commit);
        Ok(seq)
    }

    /// Claims the consumer side: `None` while another [`RingConsumer`] exists.
    pub fn consumer(&self) -> Option<RingConsumer<'_, P>> {
        let taken = self.consumer_claimed.swap(true, Ordering::Acquire);
        (!taken).then_some(RingConsumer { ring: self })
    }

    /// The counters (see [`RingStats`]). IRQL <= `DISPATCH_LEVEL` (takes the ring's lock briefly, so
    /// `pushed` and the producers' drop counters agree with each other).
    pub fn stats(&self) -> RingStats {
        let locked = self.lock.lock();
        let pushed = self.next_seq.load(Ordering::Relaxed);
        let dropped_full = self.dropped_full.load(Ordering::Relaxed);
        let dropped_too_large = self.dropped_too_large.load(Ordering::Relaxed);
        drop(locked);
        RingStats {
            pushed,
            dropped_full,
            dropped_too_large,
            dropped_aborted: self.dropped_aborted.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
        }
    }
}

impl<P: Platform> core::fmt::Debug for EventRing<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventRing")
            .field("capacity", &self.capacity)
            .field("head", &self.head)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

impl<P: Platform> core::fmt::Debug for RingConsumer<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RingConsumer").finish_non_exhaustive()
    }
}

#[cfg(any(feature = "std", loom))]
impl<P: Platform> core::fmt::Debug for BoxedRing<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&**self.ring, f)
    }
}

/// Adds one to a counter that only changes under the ring's lock (a plain load and store suffice).
fn bump_locked(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Commits a reservation when dropped: `COMMITTED` after a normal fill, `DISCARDED` if the filler
/// unwound.
struct Commit<'a, P: Platform> {
    ring: &'a EventRing<P>,
    start: usize,
    len: usize,
    state: u64,
}

impl<P: Platform> Drop for Commit<'_, P> {
    fn drop(&mut self) {
        if model_unwinding() {
            return;
        }
        if self.state == DISCARDED {
            self.ring.dropped_aborted.fetch_add(1, Ordering::Relaxed);
        }
        let order = if keeps::<P>(Guard::RingCommitRelease) {
            Ordering::Release
        } else {
            Ordering::Relaxed
        };
        self.ring
            .memory
            .header(self.start)
            .store(header_word(self.state, self.len), order);
    }
}

/// The consumer side of a ring (the delivery thread). One at a time: see [`EventRing::consumer`].
pub struct RingConsumer<'a, P: Platform> {
    ring: &'a EventRing<P>,
}

impl<P: Platform> RingConsumer<'_, P> {
    /// Copies whole committed records, in sequence order, into `out` (payloads back to back) until
    /// the next record would not fit or is not committed yet, and frees their space.
    /// `out.len() >= max_payload()` guarantees progress when a record is committed. Never waits.
    pub fn drain(&mut self, out: &mut [u8]) -> Drained {
        let ring = self.ring;
        let head = ring.head.load(Ordering::Acquire);
        let mut tail = ring.tail.load(Ordering::Relaxed);
        let mut drained = Drained::default();
        while tail != head {
            let offset = ring.offset(tail);
            ring.memory.track_read(offset, 8);
            let word = ring.memory.header(offset).load(Ordering::Acquire);
            let len = (word & 0xffff_ffff) as usize;
            let state = word & STATE_MASK;
            if state == SKIP {
                tail += len as u64;
                continue;
            }
            // Lengths come from this ring's own headers: bounded by `max_record`.
            let size = record_size(len).unwrap_or(usize::MAX);
            if state == DISCARDED {
                tail += size as u64;
                continue;
            }
            if state == BUSY && keeps::<P>(Guard::RingStopAtBusy) {
                break;
            }
            if len > out.len() - drained.bytes {
                break;
            }
            if !keeps::<P>(Guard::RingTailAfterCopy) {
                ring.tail.store(tail + size as u64, Ordering::Release);
            }
            ring.memory.track_read(offset + 8, size - 8);
            // SAFETY: the record is committed (acquire above), so it belongs to the consumer until
            // `tail` moves past it (invariant); it lies inside the storage.
            let sequence = unsafe { ring.memory.bytes(offset + 8, 8) };
            let seq = u64::from_le_bytes(sequence.try_into().unwrap_or_default());
            // SAFETY: as above.
            let payload = unsafe { ring.memory.bytes(offset + HEADER, len) };
            // `len <= out.len() - drained.bytes` was checked above; `get_mut` keeps that proof
            // local, so the kernel image carries no panic path for it.
            let Some(destination) = out.get_mut(drained.bytes..drained.bytes + len) else {
                break;
            };
            destination.copy_from_slice(payload);
            if drained.records == 0 {
                drained.first_seq = seq;
            }
            drained.last_seq = seq;
            drained.records += 1;
            drained.bytes += len;
            tail += size as u64;
        }
        ring.tail.store(tail, Ordering::Release);
        ring.drained
            .fetch_add(drained.records as u64, Ordering::Relaxed);
        drained
    }
}

impl<P: Platform> Drop for RingConsumer<'_, P> {
    fn drop(&mut self) {
        self.ring.consumer_claimed.store(false, Ordering::Release);
    }
}

/// A ring with its heap storage (user mode). Dereferences to the [`EventRing`].
///
/// # Invariants
/// `storage` is a leaked `Box<[u64]>` that `ring` uses; it is freed only after `ring` is dropped.
#[cfg(any(feature = "std", loom))]
pub struct BoxedRing<P: Platform> {
    ring: core::mem::ManuallyDrop<core::pin::Pin<std::boxed::Box<EventRing<P>>>>,
    storage: NonNull<[u64]>,
}

#[cfg(any(feature = "std", loom))]
impl<P: Platform> BoxedRing<P> {
    fn new(bytes: usize) -> Self {
        let words = std::vec![0u64; bytes.div_ceil(8)].into_boxed_slice();
        let storage = NonNull::from(std::boxed::Box::leak(words));
        let base = storage.cast::<u8>();
        let len = storage.len() * 8;
        let init = |slot| {
            // SAFETY: a fresh heap slot that `boxed_in_place` pins; `storage` is ours, `len` bytes
            // long, and outlives the ring (freed in `drop` after it).
            unsafe { EventRing::init_in_place(slot, base, len) }
        };
        // SAFETY: `init` initializes the whole ring.
        let ring = unsafe { crate::boxed_in_place(init) };
        BoxedRing {
            ring: core::mem::ManuallyDrop::new(ring),
            storage,
        }
    }
}

#[cfg(any(feature = "std", loom))]
impl<P: Platform> core::ops::Deref for BoxedRing<P> {
    type Target = EventRing<P>;

    fn deref(&self) -> &EventRing<P> {
        &self.ring
    }
}

#[cfg(any(feature = "std", loom))]
impl<P: Platform> Drop for BoxedRing<P> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.ring) };
        // SAFETY: `storage` came from `Box::leak` and the ring that used it is gone (invariant).
        drop(unsafe { std::boxed::Box::from_raw(self.storage.as_ptr()) });
    }
}

// SAFETY: the ring is `Send` and `Sync`; the storage is owned by this value alone.
#[cfg(any(feature = "std", loom))]
unsafe impl<P: Platform> Send for BoxedRing<P> {}
// SAFETY: as above; shared access goes through the ring's own synchronization.
#[cfg(any(feature = "std", loom))]
unsafe impl<P: Platform> Sync for BoxedRing<P> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Drained, DropReason, EventRing, HEADER, RingStats};
    use crate::StdPlatform;
    use std::vec;

    fn record(seq: u64, buf: &mut [u8]) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = seq.to_le_bytes()[0].wrapping_add(i.to_le_bytes()[0]);
        }
    }

    #[test]
    fn records_come_out_in_order_without_framing() {
        let ring = EventRing::<StdPlatform>::with_capacity(256);
        assert_eq!(ring.capacity(), 256);
        assert_eq!(ring.max_payload(), 128 - HEADER);
        assert_eq!(ring.push(3, record), Ok(0));
        assert_eq!(ring.push(0, record), Ok(1));
        assert_eq!(ring.push(9, record), Ok(2));
        let mut consumer = ring.consumer().expect("first consumer");
        assert!(ring.consumer().is_none(), "one consumer at a time");
        let mut out = [0xAAu8; 64];
        let drained = consumer.drain(&mut out);
        assert_eq!(
            drained,
            Drained {
                bytes: 12,
                records: 3,
                first_seq: 0,
                last_seq: 2
            }
        );
        assert_eq!(&out[..3], &[0, 1, 2]);
        assert_eq!(&out[3..12], &[2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(out[12], 0xAA, "nothing written past `bytes`");
        assert_eq!(consumer.drain(&mut out), Drained::default());
        drop(consumer);
        assert!(ring.consumer().is_some(), "released on drop");
    }

    #[test]
    fn full_and_too_large_are_dropped_counted_and_take_a_sequence_number() {
        let ring = EventRing::<StdPlatform>::with_capacity(128);
        assert_eq!(
            ring.push(ring.max_payload() + 1, |_, _| panic!("dropped")),
            Err(DropReason::TooLarge)
        );
        assert_eq!(
            ring.push(usize::MAX, |_, _| panic!("dropped")),
            Err(DropReason::TooLarge)
        );
        assert_eq!(ring.push(40, record), Ok(2)); // 56 bytes
        assert_eq!(ring.push(40, record), Ok(3)); // 112 bytes
        assert_eq!(
            ring.push(1, |_, _| panic!("dropped")),
            Err(DropReason::Full)
        ); // would be 136
        assert_eq!(ring.push(40, record), Err(DropReason::Full));
        assert_eq!(
            ring.push(0, record),
            Ok(6),
            "exactly full (128 bytes) still fits"
        );
        assert_eq!(ring.push(0, record), Err(DropReason::Full));
        let mut out = [0u8; 128];
        let drained = ring.consumer().unwrap().drain(&mut out);
        assert_eq!(
            (drained.records, drained.first_seq, drained.last_seq),
            (3, 2, 6)
        );
        let stats = ring.stats();
        assert_eq!(
            stats,
            RingStats {
                pushed: 8,
                dropped_full: 3,
                dropped_too_large: 2,
                dropped_aborted: 0,
                drained: 3
            }
        );
        assert_eq!(stats.pushed, stats.drained + stats.dropped());
    }

    #[test]
    fn wraps_with_padding_and_reuses_space() {
        let ring = EventRing::<StdPlatform>::with_capacity(128);
        let mut consumer = ring.consumer().unwrap();
        let mut out = vec![0u8; 128];
        for (round, expected) in (0..200usize).zip(0u64..) {
            let len = (round * 7) % 40;
            let seq = ring
                .push(len, record)
                .expect("drained each round: always room");
            assert_eq!(seq, expected);
            let drained = consumer.drain(&mut out);
            assert_eq!(
                (drained.records, drained.bytes, drained.first_seq),
                (1, len, expected)
            );
            let mut want = vec![0u8; len];
            record(seq, &mut want);
            assert_eq!(&out[..len], &want[..]);
        }
    }

    #[test]
    fn drain_stops_at_the_byte_budget_and_resumes() {
        let ring = EventRing::<StdPlatform>::with_capacity(1024);
        for _ in 0..6 {
            ring.push(10, record).unwrap();
        }
        let mut consumer = ring.consumer().unwrap();
        let mut out = [0u8; 25];
        let first = consumer.drain(&mut out);
        assert_eq!(
            (first.records, first.bytes, first.first_seq, first.last_seq),
            (2, 20, 0, 1)
        );
        let second = consumer.drain(&mut out[..9]);
        assert_eq!(second.records, 0, "the next record does not fit");
        let third = consumer.drain(&mut out);
        assert_eq!((third.records, third.first_seq, third.last_seq), (2, 2, 3));
    }

    #[test]
    fn a_record_being_filled_holds_back_later_ones() {
        let ring = EventRing::<StdPlatform>::with_capacity(1024);
        let mut out = [0u8; 64];
        ring.push(8, |_, _| {
            // Pushed and committed while the first is still being filled.
            ring.push(8, record).unwrap();
            let drained = ring.consumer().unwrap().drain(&mut out);
            assert_eq!(drained.records, 0, "seq 1 must wait for seq 0");
        })
        .unwrap();
        let drained = ring.consumer().unwrap().drain(&mut out);
        assert_eq!(
            (drained.records, drained.first_seq, drained.last_seq),
            (2, 0, 1)
        );
    }

    #[test]
    fn a_panicking_filler_is_discarded_and_the_ring_goes_on() {
        let ring = EventRing::<StdPlatform>::with_capacity(256);
        ring.push(4, record).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = ring.push(8, |_, _| panic!("filler bug"));
        }));
        assert!(result.is_err());
        ring.push(4, record).unwrap();
        let mut out = [0u8; 64];
        let drained = ring.consumer().unwrap().drain(&mut out);
        assert_eq!(
            (drained.records, drained.first_seq, drained.last_seq),
            (2, 0, 2)
        );
        let stats = ring.stats();
        assert_eq!(stats.dropped_aborted, 1);
        assert_eq!(stats.pushed, stats.drained + stats.dropped());
    }

    #[test]
    fn filler_sees_zeroed_bytes_even_after_reuse() {
        let ring = EventRing::<StdPlatform>::with_capacity(64);
        let mut consumer = ring.consumer().unwrap();
        let mut out = [0u8; 32];
        for _ in 0..10 {
            ring.push(16, |_, buf| {
                assert!(buf.iter().all(|&b| b == 0));
                buf.fill(0xFF);
            })
            .unwrap();
            assert_eq!(consumer.drain(&mut out).records, 1);
        }
    }

    #[test]
    fn unaligned_and_tiny_storage() {
        let mut words = vec![0u64; 9];
        let base = core::ptr::NonNull::new(words.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: one byte in, 71 bytes of the vector, which outlives the ring.
        let unaligned = unsafe { base.add(1) };
        let mut slot = core::mem::MaybeUninit::<EventRing<StdPlatform>>::uninit();
        // SAFETY: local slot and storage, both outlive every use; dropped below.
        unsafe { EventRing::init_in_place(slot.as_mut_ptr(), unaligned, 71) };
        // SAFETY: initialized just above.
        let ring = unsafe { slot.assume_init_ref() };
        assert_eq!(ring.capacity(), 64, "aligned up by 7, rounded down to 8");
        ring.push(8, record).unwrap();
        assert_eq!(ring.consumer().unwrap().drain(&mut [0u8; 8]).records, 1);
        // SAFETY: initialized, no reference remains.
        unsafe { slot.assume_init_drop() };

        let tiny = EventRing::<StdPlatform>::with_capacity(16);
        assert_eq!(tiny.max_payload(), 0);
        assert_eq!(tiny.push(1, record), Err(DropReason::TooLarge));
        let empty = EventRing::<StdPlatform>::with_capacity(0);
        assert_eq!(empty.push(0, record), Err(DropReason::TooLarge));
        assert_eq!(empty.consumer().unwrap().drain(&mut []), Drained::default());
    }
}
