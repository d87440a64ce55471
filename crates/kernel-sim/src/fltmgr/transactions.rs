//! Transactions as a minifilter sees them: transaction contexts (`FltSetTransactionContext`,
//! `FltGetTransactionContext`, `FltDeleteTransactionContext`), enlistments
//! (`FltEnlistInTransaction`, `FltRollbackEnlistment`) and the `TransactionNotificationCallback`
//! of `FLT_REGISTRATION`, over kernel-sim's own transaction objects.
//!
//! The model, kept small: the synthetic workload ([`crate::world::io`]) begins a transaction,
//! makes it its current one for some creates (only NTFS supports transactions), and later
//! commits or rolls it back. Operations on a file object opened in the transaction carry it in
//! `FLT_RELATED_OBJECTS::Transaction`; `TransactionContext` (the `TxF` miniversion) stays 0, as
//! the workload opens no miniversions. A commit sends the enlisted instances, in enlistment
//! order and each only for the notifications its mask asked for, `TRANSACTION_NOTIFY_PREPREPARE`,
//! `TRANSACTION_NOTIFY_PREPARE`, `TRANSACTION_NOTIFY_COMMIT` and
//! `TRANSACTION_NOTIFY_COMMIT_FINALIZE`; a rollback (the workload's, or one a filter asked
//! for with `FltRollbackEnlistment` before the commit phase) sends `TRANSACTION_NOTIFY_ROLLBACK`.
//! Each notification runs at PASSIVE_LEVEL with the instance's related objects and the
//! enlistment's transaction context, and counts as an operation in flight on the instance (a
//! teardown waits for it). When the transaction is over Filter Manager deletes the contexts
//! set on it (the object they are attached to is gone) and drops the enlistments. Left out:
//! the file system's isolation and undo (a rollback does not undo the workload's changes; no
//! filter here depends on them) and `STATUS_PENDING` from the notification callback with
//! `FltCommitComplete` and its kin (reported as not emulated, then treated as done).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsettransactioncontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgettransactioncontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletetransactioncontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltenlistintransaction>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltrollbackenlistment>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_transaction_notification_callback>):
//! - all five at IRQL <= APC_LEVEL; the notification callback at PASSIVE_LEVEL, returning
//!   `STATUS_SUCCESS` or `STATUS_PENDING`;
//! - the set/get/delete rules of every context type (`fltmgr::contexts`), one context per
//!   transaction and instance; `STATUS_FLT_DELETING_OBJECT` for an instance being torn down;
//! - `FltEnlistInTransaction`: `STATUS_INVALID_PARAMETER` when the filter registered no
//!   `TransactionNotificationCallback`, `STATUS_INVALID_PARAMETER_4` for a zero or unknown
//!   `NotificationMask`, `STATUS_FLT_ALREADY_ENLISTED` for a second enlistment,
//!   `STATUS_INSUFFICIENT_RESOURCES` (fault-injectable); `TransactionContext` is required (a
//!   live transaction context of the caller, referenced by the enlistment until the
//!   transaction is over);
//! - `FltRollbackEnlistment`: `STATUS_NOT_FOUND` when the filter set no context on the
//!   transaction, `STATUS_TRANSACTION_REQUEST_NOT_VALID` when it is not enlisted or the
//!   transaction is past its prepare phase.
//!
//! A transaction pointer kernel-sim did not hand out (or one whose transaction is over) is a
//! parameter violation. Transaction contexts the driver still references at `FltUnregisterFilter`
//! are reported with the other contexts.

// Fx hashing: kernel-sim's own addresses as keys.
use rustc_hash::FxHashMap as HashMap;
use vigil_sys::{
    FLT_RELATED_OBJECTS, FLT_SET_CONTEXT_KEEP_IF_EXISTS, FLT_SET_CONTEXT_OPERATION,
    FLT_SET_CONTEXT_REPLACE_IF_EXISTS, FLT_TRANSACTION_CONTEXT, NTSTATUS, PASSIVE_LEVEL,
    PFLT_CONTEXT, PFLT_INSTANCE, PVOID, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS,
};

use crate::fltmgr::context_deletion::{clear, unlink_and_hand_over};
use crate::fltmgr::contexts::{LinkKey, detach_and_release, get_linked, set_linked, settle};
use crate::fltmgr::exports::Routine;
use crate::fltmgr::instance_contexts::check_instance;
use crate::fltmgr::instances::InstanceState;
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::check::{check, reject};
use crate::kernel::{Kernel, emulate};
use crate::machine::guest::{self, GuestAlloc};
use crate::report::ViolationKind;

/// `TRANSACTION_NOTIFY_PREPREPARE`.
pub(crate) const NOTIFY_PREPREPARE: u32 = 0x0000_0001;
/// `TRANSACTION_NOTIFY_PREPARE`.
pub(crate) const NOTIFY_PREPARE: u32 = 0x0000_0002;
/// `TRANSACTION_NOTIFY_COMMIT`.
pub(crate) const NOTIFY_COMMIT: u32 = 0x0000_0004;
/// `TRANSACTION_NOTIFY_ROLLBACK`.
pub(crate) const NOTIFY_ROLLBACK: u32 = 0x0000_0008;
/// `TRANSACTION_NOTIFY_COMMIT_FINALIZE`.
pub(crate) const NOTIFY_COMMIT_FINALIZE: u32 = 0x4000_0000;
/// What `FltEnlistInTransaction` accepts: `FLT_MAX_TRANSACTION_NOTIFICATIONS` and
/// `TRANSACTION_NOTIFY_COMMIT_FINALIZE`.
const VALID_MASK: u32 =
    NOTIFY_PREPREPARE | NOTIFY_PREPARE | NOTIFY_COMMIT | NOTIFY_ROLLBACK | NOTIFY_COMMIT_FINALIZE;
/// `STATUS_FLT_ALREADY_ENLISTED`.
pub(crate) const STATUS_FLT_ALREADY_ENLISTED: NTSTATUS = 0xC01C_001B_u32.cast_signed();
/// `STATUS_INVALID_PARAMETER_4`.
pub(crate) const STATUS_INVALID_PARAMETER_4: NTSTATUS = 0xC000_00F2_u32.cast_signed();
/// `STATUS_TRANSACTION_REQUEST_NOT_VALID`.
pub(crate) const STATUS_TRANSACTION_REQUEST_NOT_VALID: NTSTATUS = 0xC019_0013_u32.cast_signed();
/// `STATUS_TRANSACTION_ABORTED`: what a commit returns once an enlisted filter rolled the
/// transaction back.
pub(crate) const STATUS_TRANSACTION_ABORTED: NTSTATUS = 0xC000_020F_u32.cast_signed();

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Work goes on in it; filters may enlist.
    Active,
    /// Committing: the pre-prepare and prepare notifications (a rollback may still be asked).
    Preparing,
    /// Committing past the prepare phase, or rolling back: no rollback may be asked any more.
    Ending,
}

/// One filter instance's enlistment.
#[derive(Clone, Copy)]
struct Enlistment {
    instance: usize,
    /// The transaction context given, referenced for the enlistment.
    context: usize,
    mask: u32,
}

/// A transaction (the `KTRANSACTION` a filter sees is `handle`).
struct TransactionRecord {
    handle: GuestAlloc,
    phase: Phase,
    rollback_requested: bool,
    enlistments: Vec<Enlistment>,
}

/// The run's transactions.
#[derive(Default)]
pub(crate) struct Transactions {
    live: HashMap<usize, TransactionRecord>,
    /// Objects of finished transactions, kept so their addresses are not reused in the run.
    graveyard: Vec<GuestAlloc>,
}

impl Transactions {
    /// Whether `transaction` is a transaction still going on (or being ended).
    pub(crate) fn is_live(&self, transaction: usize) -> bool {
        self.live.contains_key(&transaction)
    }
}

/// Begins a transaction; its object's address (the `PKTRANSACTION` filters see).
pub(crate) fn begin(k: &Kernel) -> usize {
    let handle = GuestAlloc::zeroed(64);
    let address = handle.address();
    flt_write(k).io.transactions.live.insert(
        address,
        TransactionRecord {
            handle,
            phase: Phase::Active,
            rollback_requested: false,
            enlistments: Vec::new(),
        },
    );
    address
}

/// `Ok(())` for a transaction kernel-sim handed out that is not over; a violation and
/// `STATUS_INVALID_PARAMETER` otherwise.
fn check_transaction(k: &Kernel, transaction: PVOID) -> Result<(), NTSTATUS> {
    if flt_read(k).io.transactions.is_live(transaction as usize) {
        return Ok(());
    }
    k.parameter_violation(
        "Transaction, a transaction in progress (FltObjects->Transaction)",
        format!("{transaction:p} is no transaction in progress"),
    );
    Err(STATUS_INVALID_PARAMETER)
}

/// `FltSetTransactionContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_set_transaction_context(
    instance: PFLT_INSTANCE,
    transaction: PVOID,
    operation: FLT_SET_CONTEXT_OPERATION,
    new: PFLT_CONTEXT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltSetTransactionContext, |k| {
        clear(old);
        if let Err(status) = check_instance(k, instance) {
            return status;
        }
        if let Err(status) = check_transaction(k, transaction) {
            return status;
        }
        check!(k, operation == FLT_SET_CONTEXT_KEEP_IF_EXISTS
            || operation == FLT_SET_CONTEXT_REPLACE_IF_EXISTS,
            "Operation KEEP_IF_EXISTS or REPLACE_IF_EXISTS" => STATUS_INVALID_PARAMETER,
            "Operation {operation}");
        let (instance, transaction) = (instance as usize, transaction as usize);
        set_linked(
            k,
            (
                LinkKey::Transaction((instance, transaction)),
                FLT_TRANSACTION_CONTEXT,
                (transaction, instance),
            ),
            operation,
            (new as usize, old),
            "FltSetTransactionContext (replaced)",
        )
    })
}

/// `FltGetTransactionContext`: IRQL <= APC_LEVEL. `STATUS_NOT_FOUND` when none is set.
pub(crate) extern "win64" fn flt_get_transaction_context(
    instance: PFLT_INSTANCE,
    transaction: PVOID,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltGetTransactionContext, |k| {
        check!(k, !out.is_null(), "a Context out-pointer" => STATUS_INVALID_PARAMETER, "NULL");
        guest::write(out, std::ptr::null_mut());
        if let Err(status) = check_instance(k, instance) {
            return if status == STATUS_INVALID_PARAMETER {
                status
            } else {
                STATUS_NOT_FOUND
            };
        }
        if let Err(status) = check_transaction(k, transaction) {
            return status;
        }
        let key = LinkKey::Transaction((instance as usize, transaction as usize));
        match get_linked(k, &key) {
            Some(context) => {
                guest::write(out, context as PFLT_CONTEXT);
                STATUS_SUCCESS
            }
            None => STATUS_NOT_FOUND,
        }
    })
}

/// `FltDeleteTransactionContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_transaction_context(
    instance: PFLT_INSTANCE,
    transaction: PVOID,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltDeleteTransactionContext, |k| {
        clear(old);
        if let Err(status) = check_instance(k, instance) {
            return status;
        }
        if let Err(status) = check_transaction(k, transaction) {
            return status;
        }
        let key = LinkKey::Transaction((instance as usize, transaction as usize));
        unlink_and_hand_over(k, |io| io.contexts.unlink(&key), old)
    })
}

/// Whether the filter owning `instance` registered a `TransactionNotificationCallback`.
fn has_notification_callback(k: &Kernel, instance: usize) -> bool {
    let flt = flt_read(k);
    let filter = flt
        .io
        .volumes
        .iter()
        .filter_map(|v| v.instance.as_ref())
        .find(|i| i.handle.address() == instance)
        .map(|i| i.filter);
    filter
        .and_then(|f| flt.filters.get(&f))
        .is_some_and(|f| f.transaction_notification != 0)
}

/// `FltEnlistInTransaction`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_enlist_in_transaction(
    instance: PFLT_INSTANCE,
    transaction: PVOID,
    context: PFLT_CONTEXT,
    mask: u32,
) -> NTSTATUS {
    emulate(Routine::FltEnlistInTransaction, |k| {
        if let Err(status) = check_instance(k, instance) {
            return status;
        }
        if let Err(status) = check_transaction(k, transaction) {
            return status;
        }
        if !has_notification_callback(k, instance as usize) {
            return STATUS_INVALID_PARAMETER;
        }
        if mask == 0 || mask & !VALID_MASK != 0 {
            return STATUS_INVALID_PARAMETER_4;
        }
        let context_type = flt_read(k)
            .io
            .contexts
            .live
            .with(context as usize, |c| c.map(|c| c.context_type));
        match context_type {
            Some(FLT_TRANSACTION_CONTEXT) => {}
            Some(other) => reject!(k, "TransactionContext, a transaction context (required)"
                => STATUS_INVALID_PARAMETER,
                "{context:p} is a {} context", crate::fltmgr::contexts::type_name(other)),
            None => reject!(k, "TransactionContext, a transaction context (required)"
                => STATUS_INVALID_PARAMETER, "{context:p} is no live context"),
        }
        let (instance, transaction) = (instance as usize, transaction as usize);
        let enlisted = flt_read(k)
            .io
            .transactions
            .live
            .get(&transaction)
            .is_some_and(|t| t.enlistments.iter().any(|e| e.instance == instance));
        if enlisted {
            return STATUS_FLT_ALREADY_ENLISTED;
        }
        if k.inject_failure("FltEnlistInTransaction", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let mut flt = flt_write(k);
        let io = &mut flt.io;
        let Some(record) = io.transactions.live.get_mut(&transaction) else {
            return STATUS_INVALID_PARAMETER;
        };
        if record.enlistments.iter().any(|e| e.instance == instance) {
            return STATUS_FLT_ALREADY_ENLISTED;
        }
        record.enlistments.push(Enlistment {
            instance,
            context: context as usize,
            mask,
        });
        io.contexts.reference(context as usize);
        STATUS_SUCCESS
    })
}

/// `FltRollbackEnlistment`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_rollback_enlistment(
    instance: PFLT_INSTANCE,
    transaction: PVOID,
    _context: PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltRollbackEnlistment, |k| {
        if let Err(status) = check_instance(k, instance) {
            return status;
        }
        if let Err(status) = check_transaction(k, transaction) {
            return status;
        }
        let (instance, transaction) = (instance as usize, transaction as usize);
        let mut flt = flt_write(k);
        let io = &mut flt.io;
        if !io
            .contexts
            .by_transaction
            .contains_key(&(instance, transaction))
        {
            return STATUS_NOT_FOUND;
        }
        let Some(record) = io.transactions.live.get_mut(&transaction) else {
            return STATUS_INVALID_PARAMETER;
        };
        if record.phase == Phase::Ending
            || !record.enlistments.iter().any(|e| e.instance == instance)
        {
            return STATUS_TRANSACTION_REQUEST_NOT_VALID;
        }
        record.rollback_requested = true;
        STATUS_SUCCESS
    })
}

/// Sends `notification` to the enlistments of `transaction` that asked for it.
fn notify(k: &Kernel, transaction: usize, enlistments: &[Enlistment], notification: u32) {
    for enlistment in enlistments.iter().filter(|e| e.mask & notification != 0) {
        // The instance, live, and its filter's callback; the notification counts as an
        // operation in flight on it, so a teardown waits for it.
        let target = {
            let flt = flt_read(k);
            flt.io.volumes.iter().find_map(|v| {
                let i = v.instance.as_ref()?;
                if i.handle.address() != enlistment.instance || i.state != InstanceState::Live {
                    return None;
                }
                let callback = flt.filters.get(&i.filter)?.transaction_notification;
                i.in_flight.add(1);
                Some((i.filter, v.handle.address(), callback))
            })
        };
        let Some((filter, volume, callback)) = target else {
            continue;
        };
        let objects = GuestAlloc::for_type::<FLT_RELATED_OBJECTS>(0);
        guest::write(
            objects.as_ptr::<FLT_RELATED_OBJECTS>(),
            FLT_RELATED_OBJECTS {
                Size: u16::try_from(size_of::<FLT_RELATED_OBJECTS>()).unwrap_or(u16::MAX),
                TransactionContext: 0,
                Filter: filter as PVOID,
                Volume: volume as PVOID,
                Instance: enlistment.instance as PVOID,
                FileObject: std::ptr::null_mut(),
                Transaction: transaction as PVOID,
            },
        );
        let status = if callback == 0 || k.crashed.load(std::sync::atomic::Ordering::Acquire) {
            None
        } else {
            // SAFETY: the TransactionNotificationCallback the driver registered (its image is
            // mapped while the instance lives); FltMgr calls it at PASSIVE_LEVEL with the
            // instance's related objects, the enlistment's context and one notification.
            let callback: unsafe extern "win64" fn(
                *const FLT_RELATED_OBJECTS,
                PFLT_CONTEXT,
                u32,
            ) -> NTSTATUS = unsafe { std::mem::transmute(callback) };
            // SAFETY: see above.
            k.call_driver("TransactionNotify", Some(PASSIVE_LEVEL), || unsafe {
                callback(
                    objects.as_ptr(),
                    enlistment.context as PFLT_CONTEXT,
                    notification,
                )
            })
        };
        let tearing_down = {
            let flt = flt_read(k);
            flt.io
                .volumes
                .iter()
                .filter_map(|v| v.instance.as_ref())
                .find(|i| i.handle.address() == enlistment.instance)
                .is_none_or(|i| {
                    i.in_flight.add(-1);
                    i.state == InstanceState::TearingDown
                })
        };
        if tearing_down {
            k.notify_waiters();
        }
        match status {
            None | Some(STATUS_SUCCESS) => {}
            Some(STATUS_PENDING) => k.violation(
                ViolationKind::NotEmulated,
                "TransactionNotificationCallback",
                format!(
                    "STATUS_PENDING for notification {notification:#x} (FltCommitComplete and its kin are not emulated): treated as done"
                ),
            ),
            Some(other) => k.violation(
                ViolationKind::CallbackStatus,
                "TransactionNotificationCallback returns STATUS_SUCCESS or STATUS_PENDING",
                format!("returned {other:#x} for notification {notification:#x}"),
            ),
        }
    }
}

/// Sets the phase of `transaction`; its enlistments and whether a rollback was asked.
fn enter(k: &Kernel, transaction: usize, phase: Phase) -> Option<(Vec<Enlistment>, bool)> {
    let mut flt = flt_write(k);
    let record = flt.io.transactions.live.get_mut(&transaction)?;
    record.phase = phase;
    Some((record.enlistments.clone(), record.rollback_requested))
}

/// Ends `transaction`: commits it (`commit`) unless an enlisted filter rolled it back first,
/// or rolls it back; then deletes the contexts set on it and drops the enlistments. The
/// commit's status: `STATUS_SUCCESS`, or `STATUS_TRANSACTION_ABORTED` when it was rolled back
/// instead; `STATUS_INVALID_PARAMETER` for a transaction that is not in progress.
pub(crate) fn end(k: &Kernel, transaction: usize, commit: bool) -> NTSTATUS {
    let Some((enlistments, mut rolled_back)) = enter(k, transaction, Phase::Preparing) else {
        return STATUS_INVALID_PARAMETER;
    };
    let mut status = STATUS_SUCCESS;
    if commit && !rolled_back {
        for phase in [NOTIFY_PREPREPARE, NOTIFY_PREPARE] {
            notify(k, transaction, &enlistments, phase);
            rolled_back = enter(k, transaction, Phase::Preparing).is_some_and(|(_, r)| r);
            if rolled_back {
                break;
            }
        }
    }
    let _ = enter(k, transaction, Phase::Ending);
    if commit && !rolled_back {
        notify(k, transaction, &enlistments, NOTIFY_COMMIT);
        notify(k, transaction, &enlistments, NOTIFY_COMMIT_FINALIZE);
    } else {
        notify(k, transaction, &enlistments, NOTIFY_ROLLBACK);
        if commit {
            status = STATUS_TRANSACTION_ABORTED;
        }
    }
    let record = flt_write(k).io.transactions.live.remove(&transaction);
    if let Some(record) = record {
        // The enlistments' references, including those of enlistments made meanwhile.
        for enlistment in &record.enlistments {
            let dropped =
                crate::fltmgr::contexts::drop_reference_locked(&flt_read(k).io, enlistment.context);
            settle(k, enlistment.context, "the end of a transaction", dropped);
        }
        flt_write(k).io.transactions.graveyard.push(record.handle);
    }
    // The transaction object is gone: so are the contexts set on it.
    detach_and_release(k, "the end of a transaction", |io| {
        let mut contexts = Vec::new();
        io.contexts.by_transaction.retain(|&(_, t), &mut c| {
            if t == transaction {
                contexts.push(c);
            }
            t != transaction
        });
        contexts
    });
    status
}

/// The instance `instance` is torn down: its enlistments go (no notification reaches it any
/// more) with the references they held; its transaction contexts go with its other contexts
/// (`contexts::release_instance_contexts`).
pub(crate) fn forget_instance(k: &Kernel, instance: usize) {
    let dropped: Vec<usize> = {
        let mut flt = flt_write(k);
        let mut dropped = Vec::new();
        for record in flt.io.transactions.live.values_mut() {
            record.enlistments.retain(|e| {
                if e.instance == instance {
                    dropped.push(e.context);
                }
                e.instance != instance
            });
        }
        dropped
    };
    for context in dropped {
        let result = crate::fltmgr::contexts::drop_reference_locked(&flt_read(k).io, context);
        settle(k, context, "instance teardown (enlistment)", result);
    }
}
