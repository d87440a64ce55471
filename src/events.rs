//! Building one event record and pushing it into the ring. Called from the operation callbacks
//! at IRQL <= APC_LEVEL (pre callbacks, post-create and synchronized posts; a post at
//! DISPATCH_LEVEL publishes nothing); never allocates, never waits (the ring is lock-free).

use core::sync::atomic::Ordering;

use vigil_core::DropReason;
use vigil_protocol::{EventFlags, EventKind, EventRecord, EventRepr, Utf16Str};

use crate::filter::file_id::FileId;
use crate::globals::Globals;
use crate::kernel::apc::NoSuspension;
use crate::kernel::time::system_time;
use crate::stats::bump;
use crate::twins::{self, Twin};

/// What a callback knows about an event, before the sequence number and timestamp.
pub struct EventFacts<'a> {
    /// What happened.
    pub kind: EventKind,
    /// Flags (name fallback, directory, ...).
    pub flags: EventFlags,
    /// The operation's status (`STATUS_PENDING` for a first write reported as it is issued).
    pub status: i32,
    /// Requestor process id.
    pub process_id: u64,
    /// Requestor thread id.
    pub thread_id: u64,
    /// Volume id.
    pub volume_id: u32,
    /// Desired access (create).
    pub desired_access: u32,
    /// Create disposition requested (create).
    pub create_disposition: u32,
    /// `IoStatus.Information` (create).
    pub information: u32,
    /// The file's path.
    pub path: &'a [u16],
    /// The target path (rename, link).
    pub target: &'a [u16],
    /// The file's ID (zeros: unknown), cached in the handle's context since its open.
    pub file_id: FileId,
}

/// Encodes `facts` straight into a ring reservation and wakes the delivery thread when a batch
/// is ready. Drops are counted by reason; the caller's I/O never waits for the service.
pub fn publish(globals: &Globals, facts: &EventFacts<'_>) {
    globals.counters.events_generated.bump(facts.thread_id);
    let mut flags = facts.flags;
    if facts.file_id.is_64_bit {
        flags |= EventFlags::FILE_ID_64;
    }
    let mut repr = EventRepr {
        kind: facts.kind,
        flags,
        status: facts.status,
        sequence: 0,
        timestamp: 0,
        process_id: facts.process_id,
        thread_id: facts.thread_id,
        volume_id: facts.volume_id,
        desired_access: facts.desired_access,
        create_disposition: facts.create_disposition,
        information: facts.information,
        file_id: facts.file_id.bytes,
        process_key: crate::process::key_for_event(globals, facts.process_id),
        path: Utf16Str::from_units(facts.path),
        target: Utf16Str::from_units(facts.target),
    };
    let len = repr.encoded_len();
    // The consumer stops at this reservation until it is committed: no normal kernel APC may
    // suspend the thread inside it (RULES.md rule 26).
    // `suspendable-producer` keeps the old bug: the window open to a SuspendThread APC.
    let no_suspension = (!twins::is(Twin::SuspendableProducer)).then(NoSuspension::begin);
    let pushed = globals.ring.push(len, |record| {
        // Stamped inside the reservation, so timestamps follow ring (and sequence) order.
        repr.timestamp = system_time();
        // The reservation is exactly `encoded_len` bytes, so emit cannot fail; if it ever did,
        // the zeroed record fails the service's checks rather than carrying stale bytes. The
        // sequence number is written by the delivery thread, which assigns it.
        let _ = EventRecord::emit(&repr, record);
    });
    drop(no_suspension);
    match pushed {
        Ok(()) => wake_if_batch_ready(globals, facts.thread_id),
        Err(DropReason::Full) => bump(&globals.counters.dropped_ring_full),
        Err(DropReason::TooLarge) => bump(&globals.counters.dropped_too_large),
    }
}

/// The delivery thread's wake-up rule (`Delivery::record_pushed`), with the current batch size
/// and connection state. The connection state is an atomic: this runs on the I/O path, which
/// never takes a lock a send or a disconnect can hold (RULES.md 27); `io-path-push-lock` keeps
/// the old read under the slot's push lock, which stalls behind a close queued behind a send.
fn wake_if_batch_ready(globals: &Globals, thread_id: u64) {
    globals.delivery.record_pushed(
        globals.settings.batch_size.load(Ordering::Relaxed),
        thread_id,
        || {
            if twins::is(Twin::IoPathPushLock) {
                globals.slot.is_connected_under_lock()
            } else {
                globals.slot.is_connected()
            }
        },
    );
}
