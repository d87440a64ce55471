//! The delivery thread: drains the event ring into batches and sends each through the client
//! port slot with a finite timeout. A system thread at PASSIVE_LEVEL; the driver waits on its
//! thread object at unload (RULES.md, rule 2).
//!
//! The thread's control block ([`Delivery`]: its wake-up rule, batch buffer, stop flag and
//! thread object) is owned here; the rest of the driver starts, wakes and stops it through its
//! methods.
//!
//! Policy: while no service is connected, records stay in the ring (a service that connects
//! gets the backlog); when the ring is full, new records are dropped and counted. A batch whose
//! send times out or finds the client gone is dropped and counted by that reason: the service
//! sees the gap in sequence numbers and the counters explain it.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{self, addr_of_mut};
use core::sync::atomic::{AtomicBool, Ordering};

use vigil_core::{RawEvent, RingConsumer, SendOutcome, Timeout, wait_until_signalled};
use vigil_protocol::{BATCH_HEADER_LEN, EventBatch, EventRecord};

use crate::error::Result;
use crate::filter::port::send_message;
use crate::globals::{Globals, timeout_ms};
use crate::kernel::event::KernelEvent;
use crate::kernel::pool::PoolBuffer;
use crate::kernel::thread::{SystemThread, exit_current_system_thread};
use crate::platform::KernelPlatform;
use crate::stats::{ShardedCounter, add, bump};
use crate::twins::{self, Baseline, Twin};

/// Policy: a slice of the teardown's wait for the thread's exit; the thread checks its stop flag
/// at least every send timeout plus flush interval.
const THREAD_WAIT: Timeout = match Timeout::from_millis(70_000) {
    Some(timeout) => timeout,
    None => panic!("policy timeouts are in range"),
};

/// The delivery thread's control block.
///
/// # Invariants
///
/// `batch` is touched only by the delivery thread; `thread` only by [`Delivery::start`]
/// (DriverEntry, before the globals are published) and [`Delivery::stop_and_join`] (the
/// teardown, once no callback is admitted).
pub struct Delivery {
    /// Signalled to wake the thread early (a batch is ready, or stop).
    wake: KernelEvent,
    /// Set to ask the thread to exit.
    stop: AtomicBool,
    /// Records pushed since the last wake-up, per producer shard (each compared with the batch
    /// size): a counter every event updates, so sharded like `events_generated`, sharing no
    /// cache line between producers on different processors.
    pending: ShardedCounter,
    /// The one batch buffer, `MAX_MESSAGE_SIZE` bytes.
    batch: UnsafeCell<PoolBuffer>,
    /// The thread object.
    thread: UnsafeCell<Option<SystemThread>>,
}

// SAFETY: the cells are accessed as the invariants say (one thread at a time each); the other
// fields are Sync.
unsafe impl Sync for Delivery {}
// SAFETY: nothing in it is bound to a thread.
unsafe impl Send for Delivery {}

impl Delivery {
    /// Builds the control block in place with its batch buffer; no thread yet.
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes, aligned, and never moves afterwards.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "in-place construction: each block computes one field's address and initializes it"
    )]
    pub unsafe fn init_in_place(slot: *mut Self, batch: PoolBuffer) {
        // SAFETY: a field of the writable, pinned slot (contract).
        unsafe { RawEvent::init(addr_of_mut!((*slot).wake)) };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*slot).stop).write(AtomicBool::new(false)) };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*slot).pending).write(ShardedCounter::default()) };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*slot).batch).write(UnsafeCell::new(batch)) };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*slot).thread).write(UnsafeCell::new(None)) };
    }

    /// Starts the thread on `globals`. PASSIVE_LEVEL.
    ///
    /// # Safety
    ///
    /// `globals` holds this `Delivery` and outlives the thread: every path that frees it first
    /// calls [`Delivery::stop_and_join`]. Called once, by DriverEntry, before publication.
    pub unsafe fn start(&self, globals: &Globals) -> Result {
        let context = ptr::from_ref(globals).cast_mut().cast::<c_void>();
        // SAFETY: the globals outlive the thread (contract); `run` ends with
        // PsTerminateSystemThread.
        let thread = unsafe { SystemThread::spawn(run, context) }?;
        // SAFETY: only `start` (before publication) and `stop_and_join` touch the slot
        // (invariant), and this is `start`.
        unsafe { *self.thread.get() = Some(thread) };
        Ok(())
    }

    /// The wake-up rule, per record pushed by thread `thread_id`: wakes the thread once per
    /// `batch_size` records of the producers sharing a shard while `connected()` says a client is
    /// there; otherwise the flush interval bounds the latency. Setting a KEVENT per event would
    /// cost more than the event itself, and with no client the thread would only find nobody to
    /// send to. Counting per shard keeps producers off one another's cache lines; a lone
    /// producer wakes the thread exactly as a single counter would. IRQL <= DISPATCH_LEVEL.
    pub fn record_pushed(&self, batch_size: u32, thread_id: u64, connected: impl FnOnce() -> bool) {
        let batch = u64::from(batch_size.max(1));
        let pending = self.pending.bump(thread_id);
        if pending.is_multiple_of(batch) && connected() {
            self.wake.set();
        }
    }

    /// Stops the thread and waits on its thread object (RULES.md, rule 2). PASSIVE_LEVEL.
    ///
    /// # Safety
    ///
    /// Called by the teardown only, once no callback can reach the globals (the thread slot's
    /// invariant).
    pub unsafe fn stop_and_join(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.set();
        // SAFETY: only `start` and `stop_and_join` touch the thread slot (invariant; contract).
        let Some(thread) = (unsafe { (*self.thread.get()).take() }) else {
            return;
        };
        // Each slice is bounded; the thread exits within one send timeout plus one flush
        // interval. Only the signalled thread object ends the join: a wait that failed proves
        // nothing about the thread, which may still run driver code (RULES.md 2).
        if !twins::is(Twin::ThreadRunning) {
            let _waits = wait_until_signalled(|| thread.wait(THREAD_WAIT));
        }
        drop(thread);
    }
}

/// The thread's entry point. `context` is the published `Globals`.
///
/// # Safety
///
/// Started by `Delivery::start` through `SystemThread::spawn`, with a `Globals` that outlives the
/// thread (the teardown waits on the thread object before freeing it).
unsafe extern "win64" fn run(context: *mut c_void) {
    // SAFETY: the globals outlive this thread (contract).
    let globals = unsafe { &*context.cast::<Globals>() };
    if let Some(mut consumer) = globals.ring.consumer() {
        deliver_until_stopped(globals, &mut consumer);
    }
    // SAFETY: started by SystemThread::spawn; the consumer and every other borrow of the
    // globals ended above, so nothing needs a drop or is used after this.
    unsafe { exit_current_system_thread() };
}

fn deliver_until_stopped(globals: &Globals, consumer: &mut RingConsumer<'_, KernelPlatform>) {
    let delivery = &globals.delivery;
    while !delivery.stop.load(Ordering::Acquire) {
        let _ = delivery
            .wake
            .wait(timeout_ms(&globals.settings.flush_interval_ms));
        delivery.wake.clear();
        if delivery.stop.load(Ordering::Acquire) {
            break;
        }
        delivery.pending.reset();
        // Each wake-up sends what is there; it keeps going only while a backlog remains (the last
        // batch held at least `batch_size` records) and a client takes them. A short batch ends
        // the round: the records that arrive meanwhile wait for the next batch-size wake-up or
        // the flush interval, rather than going out a few at a time, one round trip each.
        // At least 1, or an empty drain (0 records) would never end the round.
        let batch_size = usize::try_from(globals.settings.batch_size.load(Ordering::Relaxed))
            .unwrap_or(1)
            .max(1);
        if globals.slot.is_connected() {
            send_process_records(globals);
        }
        while globals.slot.is_connected() && send_one_batch(globals, consumer) >= batch_size {}
    }
}

/// Sends the pending process records (start, exit, first sight), one message each, before the
/// round's events, so that the service knows a key before the events that carry it.
fn send_process_records(globals: &Globals) {
    // SAFETY: only this thread touches the batch buffer (Delivery invariant).
    let batch = unsafe { &mut *globals.delivery.batch.get() };
    crate::process::send_pending(globals, batch.as_mut_slice(), |message| {
        let outcome = globals.slot.send(
            timeout_ms(&globals.settings.send_timeout_ms),
            |port, timeout| send_message(globals.filter_handle(), &port, message, None, timeout),
        );
        outcome == SendOutcome::Sent
    });
}

/// Drains one batch and sends it; returns how many records it delivered (0 when there was
/// nothing to send or the send failed).
fn send_one_batch(globals: &Globals, consumer: &mut RingConsumer<'_, KernelPlatform>) -> usize {
    // SAFETY: only this thread touches the batch buffer (Delivery invariant).
    let batch = unsafe { &mut *globals.delivery.batch.get() };
    let buffer = batch.as_mut_slice();
    let Some(records_area) = buffer.get_mut(BATCH_HEADER_LEN..) else {
        return 0;
    };
    // The ring numbers the records as they leave it (total, gap-free but for counted drops).
    let drained = consumer.drain_stamped(records_area, |sequence, record| {
        // Each record was encoded whole by its producer: it always has a sequence field.
        let _ = EventRecord::set_sequence(record, sequence);
    });
    if drained.records == 0 {
        return 0;
    }
    let records = drained.records as u64;
    if EventBatch::emit_header(buffer, drained.first_seq, drained.records, drained.bytes).is_err() {
        // Cannot happen for records the ring accepted (each fits a message); counted, not hidden.
        add(&globals.counters.dropped_too_large, records);
        return 0;
    }
    if twins::is_baseline(Baseline::MessagePerEvent) {
        return if send_one_message_per_event(globals, buffer, drained.bytes) {
            drained.records
        } else {
            0
        };
    }
    // `uninit-send` sends 64 bytes past the batch: stale pool bytes reach user mode.
    let extra = if twins::is(Twin::UninitSend) { 64 } else { 0 };
    let Some(message) = buffer.get_mut(..BATCH_HEADER_LEN + drained.bytes + extra) else {
        return 0;
    };
    let outcome = globals.slot.send(
        timeout_ms(&globals.settings.send_timeout_ms),
        |port, timeout| send_message(globals.filter_handle(), &port, message, None, timeout),
    );
    if account(globals, outcome, records) {
        drained.records
    } else {
        0
    }
}

/// Counts a batch's outcome; `true` when it was delivered.
fn account(globals: &Globals, outcome: SendOutcome, records: u64) -> bool {
    match outcome {
        SendOutcome::Sent => {
            add(&globals.counters.events_delivered, records);
            bump(&globals.counters.batches_sent);
            true
        }
        SendOutcome::TimedOut => {
            add(&globals.counters.dropped_send_timeout, records);
            false
        }
        SendOutcome::Disconnected | SendOutcome::NoClient | SendOutcome::Failed => {
            add(&globals.counters.dropped_disconnected, records);
            false
        }
    }
}

/// The `message-per-event` baseline: every drained record goes out in its own message,
/// one `FltSendMessage` per event, as Microsoft's scanner sample sends. The records lie back to
/// back after the batch header; each one's header is written over the (already sent) bytes just
/// before it.
/// Every record is accounted for (a failed send counts that record only, and the next is tried).
fn send_one_message_per_event(globals: &Globals, buffer: &mut [u8], records_len: usize) -> bool {
    let mut all_sent = true;
    let mut offset = 0;
    while offset < records_len {
        let Some(record) = buffer.get(BATCH_HEADER_LEN + offset..BATCH_HEADER_LEN + records_len)
        else {
            return false;
        };
        let Ok(view) = EventRecord::new_checked(record) else {
            return false;
        };
        let (len, sequence) = (view.record_len(), view.sequence());
        let Some(message) = buffer.get_mut(offset..BATCH_HEADER_LEN + offset + len) else {
            return false;
        };
        if EventBatch::emit_header(message, sequence, 1, len).is_err() {
            return false;
        }
        let outcome = globals.slot.send(
            timeout_ms(&globals.settings.send_timeout_ms),
            |port, timeout| send_message(globals.filter_handle(), &port, message, None, timeout),
        );
        all_sent &= account(globals, outcome, 1);
        offset += len;
    }
    all_sent
}
