//! The event ring: bounded, multi-producer (file-system callbacks, up to `DISPATCH_LEVEL`),
//! single-consumer (the delivery thread) ring of variable-length records, in one byte region that
//! the caller allocates once (driver: non-paged pool; user mode: the heap).
//!
//! Lock-free: a producer reserves its record with one compare-and-swap on `head` (retried only when
//! another producer moved `head` meanwhile), fills it, and commits it by storing the record's header
//! word with release. No lock, no shared counter on the accepting path: producers meet only on the
//! `head` word, as in any bounded multi-producer queue. The consumer walks from `tail` towards
//! `head`, stops at the first record not yet committed, copies records out, zeroes the space it
//! read and only then gives it back (release store of `tail`), so a reservation always starts over
//! zeroed bytes: a header word nobody has written yet reads as "being filled" (state 0), and no stale
//! byte of an earlier record can reach a new one.
//!
//! Sequence numbers are assigned by the consumer, in ring order: total and gap-free, with a gap for
//! every record dropped. A drop (full, too large) is counted by reason and added to `pending_gap`;
//! the next record reserved takes that gap into its header (a load of a word that is almost never
//! written, then a swap only when there is a gap), and the consumer skips that many numbers before
//! it. A record whose filler unwound (user mode only) is skipped with its number. So the service
//! sees every loss in-band as a gap, beside the drop counters, and the accepting path shares no
//! counter between producers.
//!
//! A producer between its reservation and its commit holds the consumer back (records leave in
//! ring order). That window must therefore be bounded: the driver runs it with normal kernel APCs
//! disabled, so a producer cannot be suspended inside it (RULES.md rule 26), and fills it only from
//! memory already resident.
//!
//! Layout: each record is an 8-byte header word (state and payload length), an 8-byte gap count,
//! then the payload padded to 8 bytes. A record never wraps: when it does not fit before the end, a
//! padding record (state `SKIP`) fills the end and the record starts at offset 0. A record takes at
//! most half the ring, so an empty ring always accepts a record that is not too large.

use crate::Platform;
use crate::sync::{AtomicBool, AtomicU64, Ordering, RingMemory, model_unwinding};
use crate::twin::{Guard, keeps};
use core::marker::{PhantomData, PhantomPinned};
use core::ptr::NonNull;

/// Header word and gap count.
const HEADER: usize = 16;
/// State bits of a header word (above the 32-bit length).
const STATE_MASK: u64 = 0b11 << 32;
/// Reserved, being filled (or never written: zeroed space reads so): the consumer stops here.
const BUSY: u64 = 0;
/// Filled: the consumer copies it.
const COMMITTED: u64 = 1 << 32;
/// Padding to the end of the storage: the length is the padding's.
const SKIP: u64 = 2 << 32;
/// Reserved, but its filler unwound: the consumer skips it and its sequence number.
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

/// Ring counters. Once every push has returned and the ring has been drained empty,
/// `pushed == drained + dropped_full + dropped_too_large + dropped_aborted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Sequence numbers given out: records drained or discarded, and every drop (placed in the
    /// sequence or still pending). Records still in the ring are counted once drained.
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

/// A value alone on its 64-byte cache line, so that producers' `head` and the consumer's `tail`
/// share none, nor with their neighbours. Padding rather than `align(64)`: the ring lives inside
/// pool blocks, which are 16-byte aligned.
#[repr(C)]
struct CacheLine<T> {
    _before: [u64; 7],
    value: T,
    _after: [u64; 7],
}

impl<T> CacheLine<T> {
    fn new(value: T) -> Self {
        Self {
            _before: [0; 7],
            value,
            _after: [0; 7],
        }
    }
}

impl<T> core::ops::Deref for CacheLine<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// The ring. Build it in place with [`EventRing::init_in_place`] over storage the caller owns
/// (driver), or with `EventRing::with_capacity` (user mode); it never moves afterwards.
///
/// # Invariants
/// - Positions (`head`, `tail`) count bytes since the start and only grow; the byte at position `p`
///   is at offset `p % capacity`. `tail <= head <= tail + capacity`, and both are multiples of 8.
/// - `head` changes only by a producer's compare-and-swap that reserves `[old head, new head)`;
///   `tail` changes only by the consumer, and at most one [`RingConsumer`] exists
///   (`consumer_claimed`).
/// - Every byte between `head` and `tail + capacity` (the free space) is zero.
/// - Between `tail` and `head` lie reservations, each starting with its header word; a reservation
///   whose header is `BUSY` belongs to the producer that made it, which alone writes its bytes
///   until it stores `SKIP`, `COMMITTED` or `DISCARDED` (release); records before the first `BUSY`
///   one belong to the consumer.
/// - `max_record <= capacity / 2`, a multiple of 8 below 4 GiB.
/// - `next_seq` is written by the consumer alone.
pub struct EventRing<P: Platform> {
    head: CacheLine<AtomicU64>,
    tail: CacheLine<AtomicU64>,
    memory: RingMemory,
    capacity: usize,
    max_record: usize,
    pending_gap: AtomicU64,
    dropped_full: AtomicU64,
    dropped_too_large: AtomicU64,
    dropped_aborted: AtomicU64,
    next_seq: AtomicU64,
    drained: AtomicU64,
    consumer_claimed: AtomicBool,
    _platform: PhantomData<fn() -> P>,
    _pinned: PhantomPinned,
}

// SAFETY: the storage is accessed only as the invariants allow (a byte range has one writer at a
// time, and the hand-overs are release/acquire through `tail` and the header words); the other
// fields are atomics.
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
        let ring = Self {
            head: CacheLine::new(AtomicU64::new(0)),
            tail: CacheLine::new(AtomicU64::new(0)),
            memory,
            capacity,
            max_record: (capacity / 2) & !7,
            pending_gap: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_too_large: AtomicU64::new(0),
            dropped_aborted: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            consumer_claimed: AtomicBool::new(false),
            _platform: PhantomData,
            _pinned: PhantomPinned,
        };
        // SAFETY: the caller gives a writable, aligned slot that will not move.
        unsafe { slot.write(ring) };
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

    /// Pushes a record of `len` bytes: reserves the space, then calls `fill(record)` with the
    /// record's `len` bytes zeroed, and commits. The record's sequence number is given by the
    /// consumer ([`RingConsumer::drain_stamped`]). Returns why the record was dropped (counted,
    /// and `fill` not called).
    ///
    /// Lock-free: never allocates, never waits; it retries its reservation only when another
    /// producer reserved first. IRQL <= `DISPATCH_LEVEL`; `fill` runs at the caller's IRQL, and
    /// holds the consumer back until it returns, so in the kernel it must run where the thread
    /// cannot be suspended (see the module documentation). `fill` must not panic (in the kernel a
    /// panic is a bug check; in user mode the record is discarded and counted as
    /// `dropped_aborted`, and the ring stays sound).
    ///
    /// # Errors
    /// [`DropReason`] when the record is dropped.
    pub fn push<F: FnOnce(&mut [u8])>(&self, len: usize, fill: F) -> Result<(), DropReason> {
        let Some(size) = record_size(len).filter(|&size| size <= self.max_record) else {
            self.count_drop(&self.dropped_too_large);
            return Err(DropReason::TooLarge);
        };
        let Some((start, padding, head)) = self.reserve(size) else {
            self.count_drop(&self.dropped_full);
            return Err(DropReason::Full);
        };
        if padding != 0 {
            let offset = self.offset(head);
            self.memory
                .header(offset)
                .store(header_word(SKIP, padding), Ordering::Release);
        }
        let commit = Commit {
            ring: self,
            start,
            len,
            state: DISCARDED,
        };
        // A drop since the last reservation: place it in the sequence just before this record.
        // The load keeps the word shared in every cache while no drop happens.
        let gap = if self.pending_gap.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.pending_gap.swap(0, Ordering::Relaxed)
        };
        self.memory.track_write(start + 8, size - 8);
        // SAFETY: `start + 8 .. start + size` is inside the storage and reserved for this producer
        // alone until it commits (invariant); nothing else references it.
        let gap_word = unsafe { self.memory.bytes_mut(start + 8, 8) };
        gap_word.copy_from_slice(&gap.to_le_bytes());
        // SAFETY: as above, the payload part of the same reservation; zeroed (invariant).
        let record = unsafe { self.memory.bytes_mut(start + HEADER, len) };
        let mut commit = commit;
        fill(record);
        commit.state = COMMITTED;
        drop(commit);
        Ok(())
    }

    /// Reserves `size` bytes (plus padding to the end when they do not fit before it): returns the
    /// record's offset, the padding and the position the reservation starts at, or `None` when the
    /// ring is full.
    fn reserve(&self, size: usize) -> Option<(usize, usize, u64)> {
        let tail_order = if keeps::<P>(Guard::RingTailAcquire) {
            Ordering::Acquire
        } else {
            Ordering::Relaxed
        };
        let mut head = self.head_hint();
        loop {
            let tail = self.tail.load(tail_order);
            let offset = self.offset(head);
            let to_end = self.capacity - offset;
            let (start, padding) = if size <= to_end {
                (offset, 0)
            } else {
                (0, to_end)
            };
            let end = head + (padding + size) as u64;
            if tail > head || end - tail > self.capacity as u64 {
                // `head` is stale (the consumer is already past it), or the ring looks full. Full
                // only if `head` is still current: then `tail <= head` as well (`head` never
                // moves back and the consumer never passes the current head), so a stale `head`
                // always fails here and is refreshed.
                match self
                    .head
                    .compare_exchange(head, head, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => return None,
                    Err(current) => head = current,
                }
                continue;
            }
            match self
                .head
                .compare_exchange_weak(head, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((start, padding, head)),
                Err(current) => head = current,
            }
        }
    }

    /// Where a reservation's first compare-and-swap expects `head` to be. Any value is correct (a
    /// wrong one only costs a failed compare-and-swap, which returns the current value); the
    /// kernel and user mode read `head`. Under loom the hint is 0 instead: loom's partial-order
    /// reduction keeps only a location's last access, so a producer's own read of `head` just
    /// before its compare-and-swap would hide the consumer's read from it, and loom would never
    /// run the consumer between two producers.
    fn head_hint(&self) -> u64 {
        #[cfg(loom)]
        {
            0
        }
        #[cfg(not(loom))]
        {
            self.head.load(Ordering::Relaxed)
        }
    }

    /// Counts a drop by its reason and leaves a gap for the next record to place.
    fn count_drop(&self, reason: &AtomicU64) {
        reason.fetch_add(1, Ordering::Relaxed);
        self.pending_gap.fetch_add(1, Ordering::Relaxed);
    }

    /// Claims the consumer side: `None` while another [`RingConsumer`] exists.
    pub fn consumer(&self) -> Option<RingConsumer<'_, P>> {
        let taken = self.consumer_claimed.swap(true, Ordering::Acquire);
        (!taken).then(|| RingConsumer {
            ring: self,
            // The consumer alone writes `tail` and `next_seq`; the claim's acquire orders these
            // reads after the previous consumer's last writes.
            tail: self.tail.load(Ordering::Relaxed),
            next_seq: self.next_seq.load(Ordering::Relaxed),
        })
    }

    /// The counters (see [`RingStats`]). Any IRQL: plain atomic loads.
    pub fn stats(&self) -> RingStats {
        RingStats {
            pushed: self.next_seq.load(Ordering::Relaxed)
                + self.pending_gap.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_too_large: self.dropped_too_large.load(Ordering::Relaxed),
            dropped_aborted: self.dropped_aborted.load(Ordering::Relaxed),
            drained: self.drained.load(Ordering::Relaxed),
        }
    }
}

impl<P: Platform> core::fmt::Debug for EventRing<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventRing")
            .field("capacity", &self.capacity)
            .field("head", &*self.head)
            .field("tail", &*self.tail)
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
///
/// It keeps its own copies of `tail` and the next sequence number, which only it writes: the
/// shared words are stores for it, never reads (and loom sees every producer's read of `tail` race
/// with the consumer's store).
pub struct RingConsumer<'a, P: Platform> {
    ring: &'a EventRing<P>,
    tail: u64,
    next_seq: u64,
}

impl<P: Platform> RingConsumer<'_, P> {
    /// [`drain_stamped`](Self::drain_stamped) without a stamp.
    pub fn drain(&mut self, out: &mut [u8]) -> Drained {
        self.drain_stamped(out, |_, _| {})
    }

    /// Copies whole committed records, in ring order, into `out` (payloads back to back) until the
    /// next record would not fit or is not committed yet, gives their space back, and numbers
    /// them: `stamp(sequence, payload)` runs on each copied payload in `out`, so the caller can
    /// write the number into the record. `out.len() >= max_payload()` guarantees progress when a
    /// record is committed. Never waits.
    pub fn drain_stamped(
        &mut self,
        out: &mut [u8],
        mut stamp: impl FnMut(u64, &mut [u8]),
    ) -> Drained {
        let ring = self.ring;
        let head = ring.head.load(Ordering::Acquire);
        let start = self.tail;
        let mut tail = start;
        let mut seq = self.next_seq;
        let mut drained = Drained::default();
        while tail != head {
            let offset = ring.offset(tail);
            // The header word is an atomic (loom: not one of the shadowed granules).
            let word = ring.memory.header(offset).load(Ordering::Acquire);
            let len = (word & 0xffff_ffff) as usize;
            let state = word & STATE_MASK;
            if state == SKIP {
                tail += len as u64;
                continue;
            }
            if state == BUSY && keeps::<P>(Guard::RingStopAtBusy) {
                break;
            }
            // Lengths come from this ring's own headers: bounded by `max_record`.
            let size = record_size(len).unwrap_or(usize::MAX);
            if state == COMMITTED && len > out.len() - drained.bytes {
                break;
            }
            if !keeps::<P>(Guard::RingTailAfterCopy) {
                ring.tail.store(tail + size as u64, Ordering::Release);
            }
            ring.memory.track_read(offset + 8, size - 8);
            // SAFETY: the record is committed or discarded (acquire above), so it belongs to the
            // consumer until `tail` moves past it (invariant); it lies inside the storage.
            let gap_word = unsafe { ring.memory.bytes(offset + 8, 8) };
            seq += u64::from_le_bytes(gap_word.try_into().unwrap_or_default());
            if state == DISCARDED {
                seq += 1;
                tail += size as u64;
                continue;
            }
            // SAFETY: as above.
            let payload = unsafe { ring.memory.bytes(offset + HEADER, len) };
            // `len <= out.len() - drained.bytes` was checked above; `get_mut` keeps that proof
            // local, so the kernel image carries no panic path for it.
            let Some(destination) = out.get_mut(drained.bytes..drained.bytes + len) else {
                break;
            };
            destination.copy_from_slice(payload);
            stamp(seq, destination);
            if drained.records == 0 {
                drained.first_seq = seq;
            }
            drained.last_seq = seq;
            seq += 1;
            drained.records += 1;
            drained.bytes += len;
            tail += size as u64;
        }
        self.release(start, tail);
        if tail == head && ring.pending_gap.load(Ordering::Relaxed) != 0 {
            // Nothing left to carry the gap: place it after what was drained now.
            seq += ring.pending_gap.swap(0, Ordering::Relaxed);
        }
        self.next_seq = seq;
        ring.next_seq.store(seq, Ordering::Relaxed);
        ring.drained
            .fetch_add(drained.records as u64, Ordering::Relaxed);
        drained
    }

    /// Zeroes the space from `start` to `end` (positions) and gives it back to the producers.
    fn release(&mut self, start: u64, end: u64) {
        let ring = self.ring;
        self.tail = end;
        if start == end {
            return;
        }
        if keeps::<P>(Guard::RingZeroBeforeRelease) {
            let mut position = start;
            while position < end {
                let offset = ring.offset(position);
                let run = usize::try_from(end - position)
                    .unwrap_or(usize::MAX)
                    .min(ring.capacity - offset);
                ring.memory.zero(offset, run);
                position += run as u64;
            }
        }
        ring.tail.store(end, Ordering::Release);
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
    use std::vec::Vec;

    /// Fills a record with bytes derived from `tag`.
    fn tagged(tag: u8) -> impl FnOnce(&mut [u8]) {
        move |buf| {
            for (i, byte) in buf.iter_mut().enumerate() {
                *byte = tag.wrapping_add(i.to_le_bytes()[0]);
            }
        }
    }

    /// Drains everything, returning each record's sequence number and first byte.
    fn drain_all(ring: &EventRing<StdPlatform>) -> Vec<(u64, Option<u8>)> {
        let mut consumer = ring.consumer().expect("consumer");
        let mut out = vec![0u8; ring.capacity()];
        let mut records = Vec::new();
        loop {
            let drained = consumer.drain_stamped(&mut out, |seq, payload| {
                records.push((seq, payload.first().copied()));
            });
            if drained.records == 0 {
                return records;
            }
        }
    }

    #[test]
    fn records_come_out_in_order_without_framing_and_numbered() {
        let ring = EventRing::<StdPlatform>::with_capacity(256);
        assert_eq!(ring.capacity(), 256);
        assert_eq!(ring.max_payload(), 128 - HEADER);
        assert_eq!(ring.push(3, tagged(0)), Ok(()));
        assert_eq!(ring.push(0, tagged(1)), Ok(()));
        assert_eq!(ring.push(9, tagged(2)), Ok(()));
        let mut consumer = ring.consumer().expect("first consumer");
        assert!(ring.consumer().is_none(), "one consumer at a time");
        let mut out = [0xAAu8; 64];
        let mut stamps = Vec::new();
        let drained =
            consumer.drain_stamped(&mut out, |seq, payload| stamps.push((seq, payload.len())));
        assert_eq!(
            drained,
            Drained {
                bytes: 12,
                records: 3,
                first_seq: 0,
                last_seq: 2
            }
        );
        assert_eq!(stamps, [(0, 3), (1, 0), (2, 9)]);
        assert_eq!(&out[..3], &[0, 1, 2]);
        assert_eq!(&out[3..12], &[2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(out[12], 0xAA, "nothing written past `bytes`");
        assert_eq!(consumer.drain(&mut out), Drained::default());
        drop(consumer);
        assert!(ring.consumer().is_some(), "released on drop");
    }

    #[test]
    fn drops_are_counted_and_leave_a_gap_in_the_sequence() {
        let ring = EventRing::<StdPlatform>::with_capacity(128);
        assert_eq!(
            ring.push(ring.max_payload() + 1, |_| panic!("dropped")),
            Err(DropReason::TooLarge)
        );
        assert_eq!(
            ring.push(usize::MAX, |_| panic!("dropped")),
            Err(DropReason::TooLarge)
        );
        assert_eq!(ring.push(40, tagged(2)), Ok(())); // 56 bytes
        assert_eq!(ring.push(40, tagged(3)), Ok(())); // 112 bytes
        assert_eq!(ring.push(1, |_| panic!("dropped")), Err(DropReason::Full)); // would be 136
        assert_eq!(ring.push(40, tagged(0)), Err(DropReason::Full));
        assert_eq!(
            drain_all(&ring),
            [(2, Some(2)), (3, Some(3))],
            "the two too-large drops took numbers 0 and 1"
        );
        assert_eq!(ring.push(0, tagged(0)), Ok(()));
        assert_eq!(ring.push(48, tagged(7)), Ok(()));
        assert_eq!(ring.push(40, tagged(0)), Err(DropReason::Full));
        assert_eq!(
            drain_all(&ring),
            [(6, None), (7, Some(7))],
            "the two full drops took 4 and 5"
        );
        let stats = ring.stats();
        assert_eq!(
            stats,
            RingStats {
                pushed: 9,
                dropped_full: 3,
                dropped_too_large: 2,
                dropped_aborted: 0,
                drained: 4
            }
        );
        assert_eq!(stats.pushed, stats.drained + stats.dropped());
        // A drop with nothing after it: placed once the ring is seen empty.
        drop(drain_all(&ring));
        assert_eq!(ring.push(0, tagged(0)), Ok(()));
        assert_eq!(
            drain_all(&ring),
            [(9, None)],
            "seq 8 was the last full drop"
        );
    }

    #[test]
    fn wraps_with_padding_and_reuses_space() {
        let ring = EventRing::<StdPlatform>::with_capacity(128);
        let mut consumer = ring.consumer().unwrap();
        let mut out = vec![0u8; 128];
        for (round, expected) in (0..200usize).zip(0u64..) {
            let len = (round * 7) % 40;
            ring.push(len, tagged(round.to_le_bytes()[0]))
                .expect("drained each round: always room");
            let drained = consumer.drain(&mut out);
            assert_eq!(
                (drained.records, drained.bytes, drained.first_seq),
                (1, len, expected)
            );
            let mut want = vec![0u8; len];
            tagged(round.to_le_bytes()[0])(&mut want);
            assert_eq!(&out[..len], &want[..]);
        }
    }

    #[test]
    fn drain_stops_at_the_byte_budget_and_resumes() {
        let ring = EventRing::<StdPlatform>::with_capacity(1024);
        for _ in 0..6 {
            ring.push(10, tagged(0)).unwrap();
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
        ring.push(8, |_| {
            // Pushed and committed while the first is still being filled.
            ring.push(8, tagged(0)).unwrap();
            let drained = ring.consumer().unwrap().drain(&mut out);
            assert_eq!(drained.records, 0, "the second must wait for the first");
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
        ring.push(4, tagged(0)).unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = ring.push(8, |_| panic!("filler bug"));
        }));
        assert!(result.is_err());
        ring.push(4, tagged(0)).unwrap();
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
        for len in [16, 8, 16, 0, 8, 16, 16, 8, 0, 16] {
            ring.push(len, |buf| {
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
        ring.push(8, tagged(0)).unwrap();
        assert_eq!(ring.consumer().unwrap().drain(&mut [0u8; 8]).records, 1);
        // SAFETY: initialized, no reference remains.
        unsafe { slot.assume_init_drop() };

        let tiny = EventRing::<StdPlatform>::with_capacity(16);
        assert_eq!(tiny.max_payload(), 0);
        assert_eq!(tiny.push(1, tagged(0)), Err(DropReason::TooLarge));
        let empty = EventRing::<StdPlatform>::with_capacity(0);
        assert_eq!(empty.push(0, tagged(0)), Err(DropReason::TooLarge));
        assert_eq!(empty.consumer().unwrap().drain(&mut []), Drained::default());
    }
}
