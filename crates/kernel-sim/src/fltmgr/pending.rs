//! Pended pre-operations: the table of operations whose pre-operation callback is running or
//! returned `FLT_PREOP_PENDING`, and `FltCompletePendedPreOperation`, which hands such an
//! operation back to Filter Manager. The world layer's dispatch registers each operation before
//! its pre-operation callback runs (a work item may complete it before the callback has even
//! returned), then waits for the completion, bounded by `SimConfig::pend_limit`.
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcompletependedpreoperation>):
//! `CallbackData` is required; `CallbackStatus` is `FLT_PREOP_COMPLETE`,
//! `FLT_PREOP_SUCCESS_NO_CALLBACK` or `FLT_PREOP_SUCCESS_WITH_CALLBACK` (never `PENDING`,
//! `SYNCHRONIZE` or `DISALLOW_FASTIO`); `Context` only with `SUCCESS_WITH_CALLBACK` (NULL
//! otherwise); IRQL <= DISPATCH_LEVEL for `FLT_PREOP_COMPLETE`, <= APC_LEVEL otherwise.
//! Host code for the table; the routine runs on driver threads.

// Fx hashing: looked up on every operation; keys are kernel-sim's own addresses.
use vigil_sys::{
    APC_LEVEL, FLT_CALLBACK_DATA, FLT_PREOP_CALLBACK_STATUS, FLT_PREOP_COMPLETE,
    FLT_PREOP_SUCCESS_NO_CALLBACK, FLT_PREOP_SUCCESS_WITH_CALLBACK, PVOID,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::kernel::sharded::ShardedMap;
use crate::kernel::{Kernel, emulate, irql_name};
use crate::machine::state;
use crate::report::ViolationKind;

/// Where a pendable operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pend {
    /// Its pre-operation callback is running (or returned `FLT_PREOP_PENDING`) and it has not
    /// been completed.
    Open,
    /// `FltCompletePendedPreOperation` gave it back: the status and the completion context.
    Completed(FLT_PREOP_CALLBACK_STATUS, usize),
    /// kernel-sim gave up waiting (reported); a late completion is ignored.
    Abandoned,
    /// Its post-operation callback is running (or returned
    /// `FLT_POSTOP_MORE_PROCESSING_REQUIRED`) and it has not been completed.
    PostOpen,
}

/// Operations that may be, or are, pended, by callback data address: sharded, since every
/// operation with a callback opens and closes a slot (under the Filter Manager lock shared).
#[derive(Default)]
pub(crate) struct PendTable {
    slots: ShardedMap<Pend>,
}

impl PendTable {
    /// Opens the slot of the operation whose callback data is `data`, before its pre runs.
    pub(crate) fn open(&self, data: usize) {
        self.slots.insert(data, Pend::Open);
    }

    /// The slot of `data`, if open.
    pub(crate) fn get(&self, data: usize) -> Option<Pend> {
        self.slots.with(data, |slot| slot.map(|s| *s))
    }

    /// Opens the slot of the operation whose post-operation callback is about to run (a
    /// post-operation completion is recorded as `Completed(0, 0)`).
    pub(crate) fn open_post(&self, data: usize) {
        self.slots.insert(data, Pend::PostOpen);
    }

    /// Closes the slot of `data` and returns what it held.
    pub(crate) fn close(&self, data: usize) -> Option<Pend> {
        self.slots.remove(data)
    }

    /// Marks `data` abandoned (its requestor stopped waiting).
    pub(crate) fn abandon(&self, data: usize) {
        self.slots.insert(data, Pend::Abandoned);
    }

    /// Completes the slot of `data` if it is `expected`, with `completed`; returns what the
    /// slot held before.
    fn complete(&self, data: usize, expected: Pend, completed: Pend) -> Option<Pend> {
        self.slots.with(data, |slot| {
            let slot = slot?;
            let before = *slot;
            if before == expected {
                *slot = completed;
            }
            Some(before)
        })
    }
}

/// `FltCompletePendedPreOperation`: IRQL <= DISPATCH_LEVEL for `FLT_PREOP_COMPLETE`, else
/// <= APC_LEVEL (checked here; the table allows DISPATCH_LEVEL).
pub(crate) extern "win64" fn flt_complete_pended_pre_operation(
    data: *mut FLT_CALLBACK_DATA,
    status: FLT_PREOP_CALLBACK_STATUS,
    context: PVOID,
) {
    emulate(Routine::FltCompletePendedPreOperation, |k| {
        let irql = state::current_irql();
        if status != FLT_PREOP_COMPLETE && irql > APC_LEVEL {
            k.violation(
                ViolationKind::Irql,
                "FltCompletePendedPreOperation: IRQL <= APC_LEVEL unless CallbackStatus is FLT_PREOP_COMPLETE",
                format!("called at {} with CallbackStatus {status}", irql_name(irql)),
            );
        }
        let valid = [
            FLT_PREOP_COMPLETE,
            FLT_PREOP_SUCCESS_NO_CALLBACK,
            FLT_PREOP_SUCCESS_WITH_CALLBACK,
        ];
        if !valid.contains(&status) {
            k.parameter_violation(
                "CallbackStatus FLT_PREOP_COMPLETE, FLT_PREOP_SUCCESS_NO_CALLBACK or FLT_PREOP_SUCCESS_WITH_CALLBACK",
                format!("CallbackStatus {status}; the operation continues as SUCCESS_NO_CALLBACK"),
            );
        }
        let status = if valid.contains(&status) {
            status
        } else {
            FLT_PREOP_SUCCESS_NO_CALLBACK
        };
        if status != FLT_PREOP_SUCCESS_WITH_CALLBACK && !context.is_null() {
            k.parameter_violation(
                "Context NULL unless CallbackStatus is FLT_PREOP_SUCCESS_WITH_CALLBACK",
                format!(
                    "Context {context:p} with CallbackStatus {status}: never passed on (leaked)"
                ),
            );
        }
        crate::fltmgr::cbdq::check_completed(k, data as usize);
        let before = flt_read(k).io.pended.complete(
            data as usize,
            Pend::Open,
            Pend::Completed(status, context as usize),
        );
        match before {
            Some(Pend::Open) => k.notify_waiters(),
            // Already reported when the requestor stopped waiting.
            Some(Pend::Abandoned) => {}
            Some(Pend::Completed(..)) => {
                k.violation(
                    ViolationKind::OverRelease,
                    "FltCompletePendedPreOperation: a pended operation is completed exactly once",
                    format!("{data:p} completed twice"),
                );
            }
            Some(Pend::PostOpen) | None => {
                k.parameter_violation(
                    "the callback data of an operation its pre-operation callback pended",
                    format!("{data:p} is not an operation in a pre-operation callback or pended"),
                );
            }
        }
    });
}

/// `FltCompletePendedPostOperation`: IRQL <= DISPATCH_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcompletependedpostoperation>):
/// hands back an operation whose post-operation callback returned
/// `FLT_POSTOP_MORE_PROCESSING_REQUIRED`; Filter Manager resumes its completion.
pub(crate) extern "win64" fn flt_complete_pended_post_operation(data: *mut FLT_CALLBACK_DATA) {
    emulate(Routine::FltCompletePendedPostOperation, |k| {
        complete_post(k, data as usize);
    });
}

/// Completes the pended post-operation of `data` (the routine, or Filter Manager itself after
/// a posted `SafePostCallback`); reports one that is not pended.
pub(crate) fn complete_post(k: &Kernel, data: usize) {
    let before = flt_read(k)
        .io
        .pended
        .complete(data, Pend::PostOpen, Pend::Completed(0, 0));
    match before {
        Some(Pend::PostOpen) => k.notify_waiters(),
        Some(Pend::Abandoned) => {}
        Some(Pend::Completed(..)) => {
            k.violation(
                ViolationKind::OverRelease,
                "FltCompletePendedPostOperation: a pended operation is completed exactly once",
                format!("{data:#x} completed twice"),
            );
        }
        Some(Pend::Open) | None => {
            k.parameter_violation(
                "the callback data of an operation its post-operation callback pended",
                format!("{data:#x} is not an operation in a post-operation callback or pended"),
            );
        }
    }
}
