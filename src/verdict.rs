//! Verdict requests for protected paths: sent synchronously from a pre-operation callback at
//! PASSIVE_LEVEL, waited for with a finite timeout, and defaulted (fail-open unless configured
//! fail-closed) on timeout, disconnect, no service, malformed reply, or no free buffer.
//!
//! Policy, fail-open by default: a dead or hung service must not make the machine unusable,
//! including for the administrator who comes to repair it. Fail-closed is for deployments that
//! prefer a stalled operation to an unchecked one.
//!
//! Buffers: a request carries up to two maximal paths (about 16 KiB), too large for a kernel
//! stack, and callbacks never allocate per operation; so a fixed set of request buffers is
//! allocated at load and claimed with an atomic bitmap. When all are busy, the default verdict
//! applies (counted as a defaulted verdict). The reply is received into the same slot, never
//! into a stack buffer: `FltSendMessage` waits in user mode (it can end with
//! `STATUS_THREAD_IS_TERMINATING`), and during such a wait the kernel stack can be paged out
//! while the reply is written; Microsoft's scanner sample receives its reply into pool too.

use core::sync::atomic::{AtomicU32, Ordering};

use vigil_core::SendOutcome;
use vigil_protocol::{
    EventFlags, MAX_PATH_UNITS, Utf16Str, VERDICT_REQUEST_FIXED_LEN, Verdict, VerdictOperation,
    VerdictReply, VerdictRequestRepr,
};
use vigil_sys::PASSIVE_LEVEL;

use crate::error::Result;
use crate::filter::port::send_message;
use crate::globals::{Globals, timeout_ms};
use crate::kernel::irql;
use crate::kernel::pool::{PoolBuffer, tags};
use crate::stats::bump;
use crate::twins::{self, Twin};

/// Policy: concurrent verdict requests in flight. More wait for nobody: they get the default.
pub const VERDICT_SLOTS: usize = 8;
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
/// Slot `i` (bytes `i * SLOT_BYTES ..`) is used only by the holder of bit `i` of `busy`.
pub struct VerdictBuffers {
    storage: core::cell::UnsafeCell<PoolBuffer>,
    busy: AtomicU32,
}

// SAFETY: slots are handed out exclusively through the `busy` bitmap (invariant).
unsafe impl Sync for VerdictBuffers {}
// SAFETY: plain owned memory.
unsafe impl Send for VerdictBuffers {}

const _: () = assert!(VERDICT_SLOTS <= 32, "the bitmap is one u32");

impl VerdictBuffers {
    /// Allocates every slot. PASSIVE_LEVEL (DriverEntry).
    pub fn allocate() -> Result<Self> {
        let storage = PoolBuffer::try_zeroed(VERDICT_SLOTS * SLOT_BYTES, tags::MESSAGE)?;
        Ok(Self {
            storage: core::cell::UnsafeCell::new(storage),
            busy: AtomicU32::new(0),
        })
    }

    fn claim(&self) -> Option<SlotGuard<'_>> {
        let mut busy = self.busy.load(Ordering::Relaxed);
        loop {
            let free = (!busy).trailing_zeros() as usize;
            if free >= VERDICT_SLOTS {
                return None;
            }
            let bit = 1u32 << free;
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
            .fetch_and(!(1u32 << self.index), Ordering::Release);
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
    bump(match verdict {
        Verdict::Allow => &globals.counters.verdicts_defaulted_open,
        Verdict::Deny => &globals.counters.verdicts_defaulted_closed,
    });
    verdict
}

/// Asks the service; returns its verdict or the configured default. PASSIVE_LEVEL (anything
/// else gets the default without waiting: a send above PASSIVE must not wait, rule 7).
pub fn decide(globals: &Globals, buffers: &VerdictBuffers, question: &Question<'_>) -> Verdict {
    let settings = &globals.settings;
    let fallback = || default_verdict(globals);
    if irql::current() != PASSIVE_LEVEL {
        return fallback();
    }
    let Some(mut slot) = buffers.claim() else {
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
    let outcome = globals
        .slot
        .send(timeout_ms(&settings.verdict_timeout_ms), |port, timeout| {
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
