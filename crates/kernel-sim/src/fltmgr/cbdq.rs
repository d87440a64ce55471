//! Cancel-safe callback data queues and cancel routines for pended operations:
//! `FltCbdqInitialize`, `FltCbdqInsertIo`, `FltCbdqRemoveIo`, `FltCbdqRemoveNextIo`,
//! `FltCbdqDisable`, `FltCbdqEnable`, `FltSetCancelCompletion`, `FltClearCancelCompletion`, and
//! the cancel of a pended operation ([`cancel_pended`], which the world layer's requestors call
//! as `CancelIoEx` would reach `IoCancelIrp`).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqinitialize>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqinsertio>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqremoveio>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqremovenextio>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqdisable>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqenable>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetcancelcompletion>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltclearcancelcompletion>):
//! - the queue is the driver's; Filter Manager reaches it only through the six routines given
//!   to `FltCbdqInitialize` (any IRQL), and takes the driver's lock (`CbdqAcquire` /
//!   `CbdqRelease`) around every insert, remove and peek, so those three take no lock
//!   themselves. The other routines run at <= DISPATCH_LEVEL with a spin lock, <= APC_LEVEL
//!   with a mutex or resource: the table allows DISPATCH_LEVEL, and the driver's own lock
//!   routines are what breaks at a wrong IRQL;
//! - only IRP-based operations (`FLT_IS_IRP_OPERATION`) are queued (another is reported and
//!   refused with `STATUS_INVALID_PARAMETER`: the page names no status for it); an insert into a disabled queue is refused with
//!   `STATUS_FLT_CBDQ_DISABLED`; on success the insert returns what `CbdqInsertIo` returned, and
//!   `Context`, when given, identifies the item for `FltCbdqRemoveIo`; an operation canceled
//!   before it is inserted is taken out again at once and handed to `CbdqCompleteCanceledIo`
//!   (the race the insert page's Remarks describe);
//! - a queued operation is cancel-safe: when it is canceled, Filter Manager removes it
//!   (`CbdqRemoveIo` under the lock) and calls `CbdqCompleteCanceledIo`, which must complete it
//!   (normally `FltCompletePendedPreOperation` with `FLT_PREOP_COMPLETE`); a remove that races
//!   with the cancel loses: `FltCbdqRemoveIo` returns NULL and `FltCbdqRemoveNextIo` skips the
//!   item (the peek may still see it, the queue holds it until the cancel's remove);
//! - `FltSetCancelCompletion` (<= DISPATCH_LEVEL) gives an IRP-based, non-paging operation a
//!   cancel routine, called without any lock when the operation is canceled (never for an
//!   operation in a callback data queue); the page promises only "an appropriate NTSTATUS"
//!   for a failure: kernel-sim answers `STATUS_CANCELLED` for an operation canceled already;
//!   `FltClearCancelCompletion` (any IRQL) returns `STATUS_CANCELLED` when no routine was set or
//!   the cancel is in progress;
//! - an operation still in a queue must not be completed (the queue would keep a completed
//!   operation): `FltCompletePendedPreOperation` on one is reported ([`check_completed`]).
//!
//! The cancel routines run on the canceling requestor's thread at PASSIVE_LEVEL (as
//! `CancelIoEx` reaches `IoCancelIrp`, whose cancel routines continue at the canceler's IRQL
//! once the cancel spin lock is released); an operation canceled with neither a queue nor a
//! cancel routine is only marked canceled, and stays pended until the filter completes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use vigil_sys::{
    FLT_CALLBACK_DATA, FLTFL_CALLBACK_DATA_IRP_OPERATION, IRP_PAGING_IO, NTSTATUS, PASSIVE_LEVEL,
    PFLT_INSTANCE, PVOID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest;
use crate::machine::state;
use crate::report::ViolationKind;

/// `STATUS_CANCELLED`.
pub(crate) const STATUS_CANCELLED: NTSTATUS = 0xC000_0120_u32.cast_signed();
/// `STATUS_FLT_CBDQ_DISABLED`.
pub(crate) const STATUS_FLT_CBDQ_DISABLED: NTSTATUS = 0xC01C_000E_u32.cast_signed();

type InsertIo = unsafe extern "win64" fn(PVOID, PVOID, PVOID) -> NTSTATUS;
type RemoveIo = unsafe extern "win64" fn(PVOID, PVOID);
type PeekNextIo = unsafe extern "win64" fn(PVOID, PVOID, PVOID) -> PVOID;
type Acquire = unsafe extern "win64" fn(PVOID, *mut u8);
type Release = unsafe extern "win64" fn(PVOID, u8);
type CompleteCanceledIo = unsafe extern "win64" fn(PVOID, PVOID);
type CanceledCallback = unsafe extern "win64" fn(PVOID);

/// A queue the driver initialized: its six routines.
#[derive(Clone, Copy, Debug)]
struct Queue {
    insert: usize,
    remove: usize,
    peek: usize,
    acquire: usize,
    release: usize,
    complete_canceled: usize,
    disabled: bool,
}

/// The cancel state of a run: queues, what is queued, what is canceled.
#[derive(Default)]
pub(crate) struct CancelTable {
    inner: Mutex<CancelInner>,
    /// Pended operations seen by the cancel policy (every n-th is canceled).
    pub pended_seen: AtomicU64,
}

#[derive(Default)]
struct CancelInner {
    /// Initialized queues, by the address of their `FLT_CALLBACK_DATA_QUEUE`.
    queues: BTreeMap<usize, Queue>,
    /// Operations in a queue: callback data -> (queue, the driver's `Context` or 0).
    queued: BTreeMap<usize, (usize, usize)>,
    /// Operations a requestor canceled (the IRP's `Cancel` flag).
    canceled: BTreeSet<usize>,
    /// `FltSetCancelCompletion` routines: callback data -> routine.
    cancel_routines: BTreeMap<usize, usize>,
}

fn table<R>(k: &Kernel, f: impl FnOnce(&mut CancelInner) -> R) -> R {
    let flt = flt_read(k);
    let mut inner = lock(&flt.cancel.inner);
    f(&mut inner)
}

/// The queue at `cbdq`, reported when it is not initialized.
fn queue_of(k: &Kernel, cbdq: PVOID) -> Option<Queue> {
    let queue = table(k, |t| t.queues.get(&(cbdq as usize)).copied());
    if queue.is_none() {
        k.parameter_violation(
            "a callback data queue initialized by FltCbdqInitialize",
            format!("Cbdq {cbdq:p} is not an initialized queue"),
        );
    }
    queue
}

/// Whether `data` is an IRP-based operation (and, with `no_paging`, not paging I/O).
fn is_irp_operation(data: *mut FLT_CALLBACK_DATA, no_paging: bool) -> bool {
    let value = guest::read(data);
    if value.Flags & FLTFL_CALLBACK_DATA_IRP_OPERATION == 0 {
        return false;
    }
    !no_paging
        || value.Iopb.is_null()
        || guest::read(value.Iopb.cast_const()).IrpFlags & IRP_PAGING_IO == 0
}

/// Runs `f` under the driver's queue lock (its `CbdqAcquire` / `CbdqRelease`), called from an
/// emulated routine on the driver's thread: the driver's lock routine may raise the IRQL, so
/// they are called directly, not as separate driver calls.
fn locked<R>(queue: &Queue, cbdq: PVOID, f: impl FnOnce() -> R) -> R {
    // SAFETY: the routines the driver gave FltCbdqInitialize (its image is mapped while it
    // calls Filter Manager), called with the queue and a variable for the IRQL, as documented.
    let acquire = unsafe { std::mem::transmute::<usize, Acquire>(queue.acquire) };
    // SAFETY: as above.
    let release = unsafe { std::mem::transmute::<usize, Release>(queue.release) };
    let mut irql: u8 = state::current_irql();
    // SAFETY: as above; `irql` outlives the call.
    unsafe { acquire(cbdq, &raw mut irql) };
    let result = f();
    // SAFETY: as above, with the IRQL the acquire stored.
    unsafe { release(cbdq, irql) };
    result
}

fn remove_io(queue: &Queue, cbdq: PVOID, data: usize) {
    // SAFETY: the driver's CbdqRemoveIo (see `locked`), for an item of its queue.
    let remove = unsafe { std::mem::transmute::<usize, RemoveIo>(queue.remove) };
    // SAFETY: as above.
    unsafe { remove(cbdq, data as PVOID) };
}

/// `FltCbdqInitialize`: any IRQL.
pub(crate) extern "win64" fn flt_cbdq_initialize(
    instance: PFLT_INSTANCE,
    cbdq: PVOID,
    insert: PVOID,
    remove: PVOID,
    peek: PVOID,
    acquire: PVOID,
    release: PVOID,
    complete_canceled: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltCbdqInitialize, |k| {
        let routines = [insert, remove, peek, acquire, release, complete_canceled];
        if cbdq.is_null() || routines.iter().any(|r| r.is_null()) {
            k.parameter_violation(
                "a Cbdq and all six queue routines",
                format!("Cbdq {cbdq:p}, routines {routines:?}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if flt_read(k).io.instance(instance as usize).is_none() {
            k.parameter_violation(
                "the Instance whose queue it is",
                format!("{instance:p} is not a live instance"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        table(k, |t| {
            t.queues.insert(
                cbdq as usize,
                Queue {
                    insert: insert as usize,
                    remove: remove as usize,
                    peek: peek as usize,
                    acquire: acquire as usize,
                    release: release as usize,
                    complete_canceled: complete_canceled as usize,
                    disabled: false,
                },
            );
        });
        STATUS_SUCCESS
    })
}

/// `FltCbdqInsertIo`: IRQL <= DISPATCH_LEVEL (<= APC_LEVEL with a mutex as the queue lock).
pub(crate) extern "win64" fn flt_cbdq_insert_io(
    cbdq: PVOID,
    data: *mut FLT_CALLBACK_DATA,
    context: PVOID,
    insert_context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltCbdqInsertIo, |k| {
        let Some(queue) = queue_of(k, cbdq) else {
            return STATUS_INVALID_PARAMETER;
        };
        if data.is_null() || !is_irp_operation(data, false) {
            k.parameter_violation(
                "the callback data of an IRP-based operation (FLT_IS_IRP_OPERATION)",
                format!("Cbd {data:p} is not an IRP-based operation"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let at = data as usize;
        if table(k, |t| t.queued.contains_key(&at)) {
            k.parameter_violation(
                "an operation that is in no callback data queue",
                format!("Cbd {data:p} is queued already"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let (status, canceled) = locked(&queue, cbdq, || {
            if table(k, |t| {
                t.queues.get(&(cbdq as usize)).is_some_and(|q| q.disabled)
            }) {
                return (STATUS_FLT_CBDQ_DISABLED, false);
            }
            // SAFETY: the driver's CbdqInsertIo (see `locked`), under its lock.
            let insert = unsafe { std::mem::transmute::<usize, InsertIo>(queue.insert) };
            // SAFETY: as above; the arguments are the driver's, passed through.
            let status = unsafe { insert(cbdq, data.cast(), insert_context) };
            if status < 0 {
                return (status, false);
            }
            if !context.is_null() {
                // The IO_CSQ_IRP_CONTEXT the driver keeps: its Irp field stands for the
                // operation (kernel-sim's marker: the callback data).
                guest::write((context as usize + 8) as *mut usize, at);
                guest::write((context as usize + 16) as *mut usize, cbdq as usize);
            }
            // Canceled before it was queued (the race the insert page describes): the
            // queue's cancel runs at once, it never stays queued.
            let canceled = table(k, |t| {
                let canceled = t.canceled.contains(&at);
                if !canceled {
                    t.queued.insert(at, (cbdq as usize, context as usize));
                }
                canceled
            });
            if canceled {
                remove_io(&queue, cbdq, at);
            }
            (status, canceled)
        });
        if canceled {
            // SAFETY: the driver's CbdqCompleteCanceledIo (see `locked`), for the operation
            // just taken out of its queue.
            let complete = unsafe {
                std::mem::transmute::<usize, CompleteCanceledIo>(queue.complete_canceled)
            };
            // SAFETY: as above.
            unsafe { complete(cbdq, data.cast()) };
        }
        status
    })
}

/// `FltCbdqRemoveIo`: IRQL as `FltCbdqInsertIo`; the operation `Context` identifies, or NULL
/// when it was canceled (or removed) already.
pub(crate) extern "win64" fn flt_cbdq_remove_io(cbdq: PVOID, context: PVOID) -> PVOID {
    emulate(Routine::FltCbdqRemoveIo, |k| {
        let Some(queue) = queue_of(k, cbdq) else {
            return std::ptr::null_mut();
        };
        if context.is_null() {
            k.parameter_violation(
                "the Context FltCbdqInsertIo filled",
                "Context is NULL".to_owned(),
            );
            return std::ptr::null_mut();
        }
        locked(&queue, cbdq, || {
            let found = table(k, |t| {
                let data = t
                    .queued
                    .iter()
                    .find(|&(_, &(q, c))| q == cbdq as usize && c == context as usize)
                    .map(|(&data, _)| data)?;
                t.queued.remove(&data);
                Some(data)
            });
            match found {
                Some(data) => {
                    remove_io(&queue, cbdq, data);
                    data as PVOID
                }
                None => std::ptr::null_mut(),
            }
        })
    })
}

/// `FltCbdqRemoveNextIo`: IRQL as `FltCbdqInsertIo`; the first queued operation matching
/// `PeekContext` that is not being canceled, removed, or NULL.
pub(crate) extern "win64" fn flt_cbdq_remove_next_io(cbdq: PVOID, peek_context: PVOID) -> PVOID {
    emulate(Routine::FltCbdqRemoveNextIo, |k| {
        let Some(queue) = queue_of(k, cbdq) else {
            return std::ptr::null_mut();
        };
        // SAFETY: the driver's CbdqPeekNextIo (see `locked`), called under its lock.
        let peek = unsafe { std::mem::transmute::<usize, PeekNextIo>(queue.peek) };
        locked(&queue, cbdq, || {
            let mut after: PVOID = std::ptr::null_mut();
            loop {
                // SAFETY: as above; `after` is NULL or an item the peek returned.
                let next = unsafe { peek(cbdq, after, peek_context) };
                if next.is_null() {
                    return std::ptr::null_mut();
                }
                let taken = table(k, |t| match t.queued.get(&(next as usize)) {
                    Some(&(q, _)) if q == cbdq as usize => {
                        t.queued.remove(&(next as usize));
                        true
                    }
                    _ => false,
                });
                if taken {
                    remove_io(&queue, cbdq, next as usize);
                    return next;
                }
                if next == after {
                    k.parameter_violation(
                        "a CbdqPeekNextIo that moves past the Cbd it is given",
                        format!("CbdqPeekNextIo returned {next:p} again"),
                    );
                    return std::ptr::null_mut();
                }
                // Being canceled (its cancel removes it), or never inserted: skipped.
                after = next;
            }
        })
    })
}

fn set_disabled(k: &Kernel, cbdq: PVOID, disabled: bool) {
    let Some(queue) = queue_of(k, cbdq) else {
        return;
    };
    locked(&queue, cbdq, || {
        table(k, |t| {
            if let Some(q) = t.queues.get_mut(&(cbdq as usize)) {
                q.disabled = disabled;
            }
        });
    });
}

/// `FltCbdqDisable`: IRQL as `FltCbdqInsertIo`; later inserts get `STATUS_FLT_CBDQ_DISABLED`.
pub(crate) extern "win64" fn flt_cbdq_disable(cbdq: PVOID) {
    emulate(Routine::FltCbdqDisable, |k| set_disabled(k, cbdq, true));
}

/// `FltCbdqEnable`: IRQL as `FltCbdqInsertIo`.
pub(crate) extern "win64" fn flt_cbdq_enable(cbdq: PVOID) {
    emulate(Routine::FltCbdqEnable, |k| set_disabled(k, cbdq, false));
}

/// `FltSetCancelCompletion`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn flt_set_cancel_completion(
    data: *mut FLT_CALLBACK_DATA,
    canceled: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltSetCancelCompletion, |k| {
        if data.is_null() || canceled.is_null() || !is_irp_operation(data, true) {
            k.parameter_violation(
                "the callback data of an IRP-based, non-paging operation and a CanceledCallback",
                format!("CallbackData {data:p}, CanceledCallback {canceled:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let at = data as usize;
        let outcome = table(k, |t| {
            if t.queued.contains_key(&at) {
                Err(())
            } else if t.canceled.contains(&at) {
                Ok(STATUS_CANCELLED)
            } else {
                t.cancel_routines.insert(at, canceled as usize);
                Ok(STATUS_SUCCESS)
            }
        });
        outcome.unwrap_or_else(|()| {
            k.parameter_violation(
                "no cancel routine for an operation in a callback data queue (the queue cancels it)",
                format!("CallbackData {data:p} is in a callback data queue"),
            );
            STATUS_INVALID_PARAMETER
        })
    })
}

/// `FltClearCancelCompletion`: any IRQL; `STATUS_CANCELLED` when no routine was set or the
/// cancel is in progress.
pub(crate) extern "win64" fn flt_clear_cancel_completion(data: *mut FLT_CALLBACK_DATA) -> NTSTATUS {
    emulate(Routine::FltClearCancelCompletion, |k| {
        if data.is_null() {
            k.parameter_violation("a CallbackData", "CallbackData is NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let at = data as usize;
        table(k, |t| {
            if t.cancel_routines.remove(&at).is_some() && !t.canceled.contains(&at) {
                STATUS_SUCCESS
            } else {
                STATUS_CANCELLED
            }
        })
    })
}

/// `FltCompletePendedPreOperation` is completing `data`: an operation still in a callback
/// data queue is reported (the queue keeps it, and would complete it again on a cancel); its
/// cancel state is forgotten.
pub(crate) fn check_completed(k: &Kernel, data: usize) {
    let queued = table(k, |t| {
        t.canceled.remove(&data);
        t.cancel_routines.remove(&data);
        t.queued.remove(&data)
    });
    if let Some((cbdq, _)) = queued {
        k.violation(
            ViolationKind::CallbackContract,
            "FltCompletePendedPreOperation: an operation in a callback data queue is removed (FltCbdqRemoveIo / FltCbdqRemoveNextIo) before it is completed",
            format!("{data:#x} completed while in the queue at {cbdq:#x}"),
        );
    }
}

/// Whether a requestor canceled the pended operation `data` (the IRP's `Cancel` flag), for a
/// routine such as `FltIsIoCanceled`.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "for FltIsIoCanceled, emulated elsewhere")
)]
pub(crate) fn is_canceled(k: &Kernel, data: usize) -> bool {
    table(k, |t| t.canceled.contains(&data))
}

/// What a cancel does to an operation.
enum CancelAction {
    /// Remove it from its queue and call the queue's `CbdqCompleteCanceledIo`.
    Queue(usize, Queue),
    /// Call the routine `FltSetCancelCompletion` gave.
    Routine(usize),
    /// Only mark it canceled.
    Mark,
}

/// Cancels the pended operation `data` (a requestor's `CancelIoEx`): marks it canceled and
/// runs its cancel routine, if it has one, on this thread at PASSIVE_LEVEL. Host code for the
/// world layer; this thread is in no driver call.
pub(crate) fn cancel_pended(k: &Kernel, data: usize) {
    let action = table(k, |t| {
        if !t.canceled.insert(data) {
            return None;
        }
        if let Some((cbdq, _)) = t.queued.remove(&data) {
            return t.queues.get(&cbdq).map(|q| CancelAction::Queue(cbdq, *q));
        }
        Some(match t.cancel_routines.remove(&data) {
            Some(routine) => CancelAction::Routine(routine),
            None => CancelAction::Mark,
        })
    });
    match action {
        None | Some(CancelAction::Mark) => {}
        Some(CancelAction::Queue(cbdq, queue)) => {
            let q = cbdq as PVOID;
            k.call_driver("CbdqCancel", Some(PASSIVE_LEVEL), || {
                locked(&queue, q, || remove_io(&queue, q, data));
            });
            // SAFETY: the driver's CbdqCompleteCanceledIo (see `locked`), for the operation
            // just removed from its queue.
            let complete = unsafe {
                std::mem::transmute::<usize, CompleteCanceledIo>(queue.complete_canceled)
            };
            k.call_driver("CbdqCompleteCanceledIo", Some(PASSIVE_LEVEL), || {
                // SAFETY: as above.
                unsafe { complete(q, data as PVOID) };
            });
        }
        Some(CancelAction::Routine(routine)) => {
            // SAFETY: the routine the driver gave FltSetCancelCompletion for this operation.
            let canceled = unsafe { std::mem::transmute::<usize, CanceledCallback>(routine) };
            k.call_driver("CanceledCallback", Some(PASSIVE_LEVEL), || {
                // SAFETY: as above.
                unsafe { canceled(data as PVOID) };
            });
        }
    }
}
