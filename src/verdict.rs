//! Verdict requests for protected paths: sent synchronously from a pre-operation callback at
//! PASSIVE_LEVEL, waited for with a finite timeout, and defaulted (fail-open unless configured
//! fail-closed) on timeout, disconnect, no service, malformed reply, or no free buffer.
//!
//! Policy, fail-open by default: a dead or hung service must not make the machine unusable,
//! including for the administrator who comes to repair it. Fail-closed is for deployments that
//! prefer a stalled operation to an unchecked one.
//!
//! Buffers: a request carries up to two maximal paths (about 16 KiB), too large for a kernel
//! stack, and callbacks never allocate per operation; so a fixed set of request buffers (the
//! `VerdictSlots` setting, 16 by default, up to 64) is allocated at load and claimed with an
//! atomic bitmap. When all are busy, the operation waits for one to be freed (a synchronization
//! event set at each release), within the same verdict timeout that bounds the whole decision:
//! a healthy service under parallel load (a build, a backup) answers every request, and only a
//! slot still busy at the deadline gets the default (counted as a defaulted verdict). The reply is received into the same slot, never
//! into a stack buffer: `FltSendMessage` waits in user mode (it can end with
//! `STATUS_THREAD_IS_TERMINATING`), and during such a wait the kernel stack can be paged out
//! while the reply is written; Microsoft's scanner sample receives its reply into pool too.

use core::sync::atomic::{AtomicU64, Ordering};

use vigil_core::{SendOutcome, Timeout};
use vigil_protocol::{
    EventFlags, MAX_PATH_UNITS, Utf16Str, VERDICT_REQUEST_FIXED_LEN, Verdict, VerdictOperation,
    VerdictReply, VerdictRequestRepr,
};
use vigil_sys::PASSIVE_LEVEL;

use crate::error::Result;
use crate::filter::port::send_message;
use crate::globals::{Globals, timeout_ms};
use crate::kernel::event::KernelEvent;
use crate::kernel::irql;
use crate::kernel::pool::{PoolBox, PoolBuffer, UninitPoolBox, tags};
use crate::kernel::time::system_time;
use crate::stats::bump;
use crate::twins::{self, Twin};

/// The claim map is one `u64`: at most 64 slots (the setting's range).
pub const MAX_VERDICT_SLOTS: usize = 64;
/// Bytes of a slot's request: the fixed part and two maximal paths, 8-byte aligned.
pub const REQUEST_BYTES: usize = (VERDICT_REQUEST_FIXED_LEN + 4 * MAX_PATH_UNITS + 7) & !7;
/// Bytes of a slot's reply area, after its request, 8-byte aligned.
pub const REPLY_BYTES: usize = (VerdictReply::LEN + 7) & !7;
/// Bytes per slot: the request, then the reply area.
pub const SLOT_BYTES: usize = REQUEST_BYTES + REPLY_BYTES;

/// The preallocated request buffers.
///
/// # Invariants
///
/// Slot `i` (bytes `i * SLOT_BYTES ..`) is used only by the holder of bit `i` of `busy`;
/// `capacity <= MAX_VERDICT_SLOTS` slots fit `storage`; `freed` is an initialized
/// synchronization event in pool (it never moves).
pub struct VerdictBuffers {
    storage: core::cell::UnsafeCell<PoolBuffer>,
    busy: AtomicU64,
    capacity: usize,
    freed: PoolBox<KernelEvent>,
}

// SAFETY: slots are handed out exclusively through the `busy` bitmap (invariant); the event is
// used only through the Ke routines.
unsafe impl Sync for VerdictBuffers {}
// SAFETY: plain owned memory.
unsafe impl Send for VerdictBuffers {}

impl VerdictBuffers {
    /// Allocates `slots` slots (clamped to `1..=MAX_VERDICT_SLOTS`). PASSIVE_LEVEL (DriverEntry).
    pub fn allocate(slots: u32) -> Result<Self> {
        let capacity = (slots as usize).clamp(1, MAX_VERDICT_SLOTS);
        let storage = PoolBuffer::try_zeroed(capacity * SLOT_BYTES, tags::MESSAGE)?;
        let mut block = UninitPoolBox::<KernelEvent>::try_new(tags::MESSAGE)?;
        let event = block.as_mut_ptr();
        // SAFETY: a fresh, aligned block for one KernelEvent, written once.
        unsafe { event.write(KernelEvent::zeroed()) };
        // SAFETY: just written; in pool, where it stays; not yet shared.
        unsafe { &*event }.init_synchronization();
        // SAFETY: the KernelEvent's only field was written above.
        let freed = unsafe { block.assume_init() };
        Ok(Self {
            storage: core::cell::UnsafeCell::new(storage),
            busy: AtomicU64::new(0),
            capacity,
            freed,
        })
    }

    /// Claims a free slot now, if there is one.
    fn try_claim(&self) -> Option<SlotGuard<'_>> {
        let mut busy = self.busy.load(Ordering::Relaxed);
        loop {
            let free = (!busy).trailing_zeros() as usize;
            if free >= self.capacity {
                return None;
            }
            let bit = 1u64 << free;
            match self.busy.compare_exchange_weak(
                busy,
                busy | bit,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(SlotGuard {
                        buffers: self,
                        index: free,
                    });
                }
                Err(seen) => busy = seen,
            }
        }
    }

    /// Claims a slot, waiting for one to be freed until `deadline` (system time, 100 ns
    /// units). PASSIVE_LEVEL (it waits).
    fn claim_before(&self, deadline: u64) -> Option<SlotGuard<'_>> {
        let mut waited = false;
        loop {
            if let Some(slot) = self.try_claim() {
                // A synchronization event wakes one waiter per set: if more slots were freed
                // than waiters woke, pass the wake on.
                let busy = self.busy.load(Ordering::Relaxed).count_ones() as usize;
                if waited && busy < self.capacity {
                    self.freed.set();
                }
                return Some(slot);
            }
            let left_ms = deadline.saturating_sub(system_time()) / 10_000;
            let wait = Timeout::from_millis(u32::try_from(left_ms).unwrap_or(u32::MAX))?;
            waited = true;
            let _ = self.freed.wait(wait);
        }
    }
}

/// A claimed slot, released on drop.
struct SlotGuard<'a> {
    buffers: &'a VerdictBuffers,
    index: usize,
}

impl SlotGuard<'_> {
    /// The slot's request bytes and its reply area (both empty only if the storage were
    /// shorter than built, which it is not).
    fn bytes(&mut self) -> (&mut [u8], &mut [u8]) {
        // SAFETY: this guard holds bit `index` (invariant), so the slot's bytes are ours alone.
        let storage = unsafe { &mut *self.buffers.storage.get() };
        let start = self.index * SLOT_BYTES;
        storage
            .as_mut_slice()
            .get_mut(start..start + SLOT_BYTES)
            .map_or((&mut [][..], &mut [][..]), |slot| {
                slot.split_at_mut(REQUEST_BYTES)
            })
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.buffers
            .busy
            .fetch_and(!(1u64 << self.index), Ordering::Release);
        // Wakes one operation waiting for a slot (IRQL <= DISPATCH_LEVEL).
        self.buffers.freed.set();
    }
}

/// One protected operation to decide.
pub struct Question<'a> {
    /// What the operation does.
    pub operation: VerdictOperation,
    /// Who asks.
    pub process_id: u64,
    /// The path (normalized unless `flags` says otherwise).
    pub path: &'a [u16],
    /// The target path (rename, link).
    pub target: &'a [u16],
    /// Event flags describing the paths.
    pub flags: EventFlags,
}

/// The configured default, counted as a defaulted verdict: for an operation that may be
/// protected but cannot be put to the service (no name to ask about).
pub fn default_verdict(globals: &Globals) -> Verdict {
    let verdict = globals.settings.default_verdict();
    if verdict == Verdict::Deny && service_by_identity(globals) {
        // The service itself before it connects (its start-up I/O): exempt by identity.
        return Verdict::Allow;
    }
    bump(match verdict {
        Verdict::Allow => &globals.counters.verdicts_defaulted_open,
        Verdict::Deny => &globals.counters.verdicts_defaulted_closed,
    });
    verdict
}

/// Whether the current process is the service by its identity; only asked at PASSIVE_LEVEL
/// (the process and token routines' limit): above it, no exemption.
fn service_by_identity(globals: &Globals) -> bool {
    irql::current() == PASSIVE_LEVEL && globals.identity.is_current_process()
}

/// Deny, whatever the default, for an operation that may be protected, cannot be put to the
/// service and cannot be judged afterwards (counted with the fail-closed defaults).
pub fn deny_unjudged(globals: &Globals) -> Verdict {
    if service_by_identity(globals) {
        return Verdict::Allow;
    }
    bump(&globals.counters.verdicts_defaulted_closed);
    Verdict::Deny
}

/// Asks the service; returns its verdict or the configured default. PASSIVE_LEVEL (anything
/// else gets the default without waiting: a send above PASSIVE must not wait, rule 7).
pub fn decide(globals: &Globals, buffers: &VerdictBuffers, question: &Question<'_>) -> Verdict {
    let settings = &globals.settings;
    let fallback = || default_verdict(globals);
    if irql::current() != PASSIVE_LEVEL {
        return fallback();
    }
    // One deadline for the whole decision: waiting for a slot, then for the reply.
    let timeout = timeout_ms(&settings.verdict_timeout_ms);
    let deadline = system_time().saturating_add(u64::from(timeout.as_millis()) * 10_000);
    let Some(mut slot) = buffers.claim_before(deadline) else {
        bump(&globals.counters.verdict_timeouts);
        return fallback();
    };
    let left_ms = deadline.saturating_sub(system_time()) / 10_000;
    let Some(send_timeout) = Timeout::from_millis(u32::try_from(left_ms).unwrap_or(u32::MAX))
    else {
        bump(&globals.counters.verdict_timeouts);
        return fallback();
    };
    let request_id = globals.next_request_id();
    let repr = VerdictRequestRepr {
        request_id,
        operation: question.operation,
        flags: question.flags,
        process_id: question.process_id,
        path: Utf16Str::from_units(question.path),
        target: Utf16Str::from_units(question.target),
    };
    let (buffer, pool_reply) = slot.bytes();
    let Some(request) = repr.emit(buffer).ok().and_then(|len| buffer.get_mut(..len)) else {
        return fallback();
    };
    // `verdict-reply-on-stack` keeps the old bug: the reply received into a stack buffer.
    let mut stack_reply = [0u8; VerdictReply::LEN];
    let reply: &mut [u8] = if twins::is(Twin::VerdictReplyOnStack) {
        &mut stack_reply
    } else {
        match pool_reply.get_mut(..VerdictReply::LEN) {
            Some(reply) => reply,
            None => return fallback(),
        }
    };
    reply.fill(0);
    let mut reply_len = 0u32;
    let outcome = globals.slot.send(send_timeout, |port, timeout| {
        send_message(
            globals.filter_handle(),
            &port,
            request,
            Some((&mut *reply, &mut reply_len)),
            timeout,
        )
    });
    match outcome {
        SendOutcome::Sent => {
            let answer = reply
                .get(..reply_len as usize)
                .and_then(|bytes| VerdictReply::parse(bytes).ok());
            match answer {
                Some(answer) if answer.request_id == request_id => {
                    bump(match answer.verdict {
                        Verdict::Allow => &globals.counters.verdicts_allowed,
                        Verdict::Deny => &globals.counters.verdicts_denied,
                    });
                    answer.verdict
                }
                // A reply for another request, or malformed: not an answer to this question.
                _ => fallback(),
            }
        }
        SendOutcome::TimedOut => {
            bump(&globals.counters.verdict_timeouts);
            fallback()
        }
        SendOutcome::Disconnected | SendOutcome::NoClient | SendOutcome::Failed => fallback(),
    }
}
