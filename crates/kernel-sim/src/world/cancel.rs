//! Requestors that cancel their pended operations: the synthetic I/O's side of `CancelIoEx`.
//! When a pre-operation callback pends an operation and the run's
//! [`CancelPolicy`](crate::config::CancelPolicy) picks it, the requestor waits `after` for the
//! completion and then cancels the operation, as `CancelIoEx` reaches `IoCancelIrp`: Filter
//! Manager runs the operation's cancel routine (its callback data queue's, or the one
//! `FltSetCancelCompletion` set), or only marks it canceled ([`crate::fltmgr::cbdq`]). The
//! requestor then waits for the completion as before, so an operation whose cancel routine
//! does not complete it is reported as a pended operation never completed.
//! Host code, on the requestor's thread, outside any driver call.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::fltmgr::flt_read;
use crate::fltmgr::pending::Pend;
use crate::kernel::Kernel;

/// Cancels the pended operation `data` if the policy picks it and it is not completed within
/// the policy's wait (never past `deadline`).
pub(crate) fn maybe_cancel(k: &Kernel, data: usize, deadline: Instant) {
    let Some(policy) = k.config.io.cancel_pended else {
        return;
    };
    let seen = flt_read(k)
        .cancel
        .pended_seen
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    if policy.every == 0 || !seen.is_multiple_of(policy.every) {
        return;
    }
    let until = (Instant::now() + policy.after).min(deadline);
    let completed = k.wait_until(Some(until), "a pended operation before its cancel", || {
        matches!(flt_read(k).io.pended.get(data), Some(Pend::Completed(..)))
    });
    if !completed {
        crate::fltmgr::cbdq::cancel_pended(k, data);
    }
}
