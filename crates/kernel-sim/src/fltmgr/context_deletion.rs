//! Context deletion: `FltDeleteContext`, `FltDeleteInstanceContext`, `FltDeleteVolumeContext`,
//! `FltDeleteStreamContext`, `FltDeleteFileContext` and `FltDeleteStreamHandleContext`, on the
//! contexts and links of `fltmgr::contexts`.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeleteinstancecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletevolumecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletestreamcontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletefilecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletestreamhandlecontext>):
//! - all at IRQL <= APC_LEVEL;
//! - a delete unlinks the context from its object, so no get finds it any more, and the
//!   object's reference goes: to the caller through `OldContext` when it is given (the caller
//!   releases it with `FltReleaseContext`), dropped otherwise; the memory is freed, and the
//!   cleanup callback called, when the last reference goes;
//! - `STATUS_NOT_FOUND` when no context is set (a second delete of the same one included),
//!   `STATUS_FLT_DELETING_OBJECT` for an instance (or volume) being torn down, and
//!   `STATUS_NOT_SUPPORTED` for stream and file contexts where the file system keeps none (as
//!   their set routines, `fltmgr::stream_contexts`);
//! - `FltDeleteContext` takes the context itself: the caller "must already have a reference"
//!   and keeps it (it still releases it). A linked context whose only reference is its link's
//!   is deleted by a caller that holds none: reported, as the delete frees it under the caller.
//!   A context already unlinked (deleted, replaced, or never set) is left alone. A section
//!   context is never deleted this way (kernel-sim emulates no section contexts, so it is only
//!   reported).
//!
//! `FltDeleteTransactionContext` is in `fltmgr::transactions`, on the same steps.
//!
//! Every delete that unlinks a context records the routine and the driver callback that called
//! it, which the leak report at `FltUnregisterFilter` names: the usual bug is an `OldContext`
//! never released.

use vigil_sys::{
    FILE_OBJECT, FLT_CONTEXT_TYPE, FLT_FILE_CONTEXT, FLT_INSTANCE_CONTEXT, FLT_STREAM_CONTEXT,
    FLT_STREAMHANDLE_CONTEXT, FLT_TRANSACTION_CONTEXT, FLT_VOLUME_CONTEXT, NTSTATUS, PFLT_CONTEXT,
    PFLT_FILTER, PFLT_INSTANCE, PVOID, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_SUCCESS,
};

use crate::fltmgr::contexts::{LinkKey, check_target, drop_reference_locked, settle};
use crate::fltmgr::exports::Routine;
use crate::fltmgr::files::IoState;
use crate::fltmgr::instance_contexts::check_instance;
use crate::fltmgr::stream_contexts::object_key;
use crate::fltmgr::volume_contexts::check_volume;
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::check::check;
use crate::kernel::{Kernel, emulate};
use crate::machine::{guest, state};

/// `FLT_SECTION_CONTEXT`: never deleted with `FltDeleteContext`.
const FLT_SECTION_CONTEXT: FLT_CONTEXT_TYPE = 0x0040;

/// The routine in progress and the driver callback it was called from.
fn deleted_in() -> (&'static str, &'static str) {
    state::with(|s| (s.routine.get(), s.callback.get()))
}

/// Unlinks the context `unlink` takes off its object (under the exclusive lock) and hands the
/// object's reference to `old`, or drops it in the same critical section (see
/// `contexts::detach_and_release`). `STATUS_NOT_FOUND` when there is none.
pub(crate) fn unlink_and_hand_over(
    k: &Kernel,
    unlink: impl FnOnce(&mut IoState) -> Option<usize>,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    let (routine, callback) = deleted_in();
    let mut flt = flt_write(k);
    let Some(context) = unlink(&mut flt.io) else {
        return STATUS_NOT_FOUND;
    };
    if let Some(c) = flt.io.contexts.live_mut(context) {
        c.attached = None;
        c.deleted_in = Some((routine, callback));
    }
    if old.is_null() {
        let dropped = drop_reference_locked(&flt.io, context);
        drop(flt);
        settle(k, context, routine, dropped);
    } else {
        drop(flt);
        guest::write(old, context as PFLT_CONTEXT);
    }
    STATUS_SUCCESS
}

/// Clears an optional `OldContext` before anything can fail (`FltDeleteFileContext`'s page: it
/// receives `NULL_CONTEXT` when no context is found; the others are given the same).
pub(crate) fn clear(old: *mut PFLT_CONTEXT) {
    if !old.is_null() {
        guest::write(old, std::ptr::null_mut());
    }
}

/// `FltDeleteInstanceContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_instance_context(
    instance: PFLT_INSTANCE,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltDeleteInstanceContext, |k| {
        clear(old);
        if let Err(status) = check_instance(k, instance) {
            return status;
        }
        let key = LinkKey::Instance(instance as usize);
        unlink_and_hand_over(k, |io| io.contexts.unlink(&key), old)
    })
}

/// `FltDeleteVolumeContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_volume_context(
    filter: PFLT_FILTER,
    volume: PVOID,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltDeleteVolumeContext, |k| {
        clear(old);
        let registered = flt_read(k).filters.contains_key(&(filter as usize));
        check!(k, registered, "Filter from FltRegisterFilter" => STATUS_INVALID_PARAMETER,
            "Filter {filter:p}");
        if let Err(status) = check_volume(k, volume) {
            return status;
        }
        let key = LinkKey::Volume(volume as usize);
        unlink_and_hand_over(k, |io| io.contexts.unlink(&key), old)
    })
}

/// `FltDelete{Stream,File}Context` for `context_type`.
fn delete_object_context(
    k: &Kernel,
    context_type: FLT_CONTEXT_TYPE,
    (instance, file): (PFLT_INSTANCE, *mut FILE_OBJECT),
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    let routine = if context_type == FLT_STREAM_CONTEXT {
        "FltDeleteStreamContext"
    } else {
        "FltDeleteFileContext"
    };
    clear(old);
    if let Err(status) = check_target(k, routine, instance, file) {
        return status;
    }
    let key = match object_key(k, context_type, instance as usize, file as usize) {
        Ok(key) => LinkKey::Object(key),
        Err(status) => return status,
    };
    unlink_and_hand_over(k, |io| io.contexts.unlink(&key), old)
}

/// `FltDeleteStreamContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_stream_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltDeleteStreamContext, |k| {
        delete_object_context(k, FLT_STREAM_CONTEXT, (instance, file), old)
    })
}

/// `FltDeleteFileContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_file_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltDeleteFileContext, |k| {
        delete_object_context(k, FLT_FILE_CONTEXT, (instance, file), old)
    })
}

/// Takes `instance`'s stream-handle context off the file object `file`.
fn unlink_stream_handle(io: &mut IoState, instance: usize, file: usize) -> Option<usize> {
    let record = io.files.get_mut(file)?;
    let at = record.contexts.iter().position(|&(i, _)| i == instance)?;
    Some(record.contexts.remove(at).1)
}

/// `FltDeleteStreamHandleContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_stream_handle_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltDeleteStreamHandleContext, |k| {
        clear(old);
        if let Err(status) = check_target(k, "FltDeleteStreamHandleContext", instance, file) {
            return status;
        }
        let (instance, file) = (instance as usize, file as usize);
        unlink_and_hand_over(k, |io| unlink_stream_handle(io, instance, file), old)
    })
}

/// Takes `context` (a `context_type` context attached to `(file, owner)`) off its object;
/// false if it is no longer linked there.
fn unlink_context(
    io: &mut IoState,
    context: usize,
    context_type: FLT_CONTEXT_TYPE,
    (file, owner): (usize, usize),
) -> bool {
    let links = &mut io.contexts;
    match context_type {
        FLT_INSTANCE_CONTEXT if links.by_instance.get(&owner) == Some(&context) => {
            links.by_instance.remove(&owner).is_some()
        }
        FLT_VOLUME_CONTEXT if links.by_volume.get(&owner) == Some(&context) => {
            links.by_volume.remove(&owner).is_some()
        }
        FLT_STREAM_CONTEXT | FLT_FILE_CONTEXT => {
            // The stream's or file's identity is not kept with the context: FltDeleteContext
            // is rare, a scan of the links is cheap enough.
            let before = links.by_object.len();
            links.by_object.retain(|_, &mut c| c != context);
            links.by_object.len() != before
        }
        FLT_STREAMHANDLE_CONTEXT => {
            unlink_stream_handle(io, owner, file).is_some_and(|c| c == context)
        }
        // Attached to (transaction, instance), linked by (instance, transaction).
        FLT_TRANSACTION_CONTEXT if links.by_transaction.get(&(owner, file)) == Some(&context) => {
            links.by_transaction.remove(&(owner, file)).is_some()
        }
        _ => false,
    }
}

/// `FltDeleteContext`: IRQL <= APC_LEVEL. No return value.
pub(crate) extern "win64" fn flt_delete_context(context: PFLT_CONTEXT) {
    emulate(Routine::FltDeleteContext, |k| {
        if context.is_null() {
            k.parameter_violation("a Context (required)", "NULL".to_owned());
            return;
        }
        let address = context as usize;
        let (routine, callback) = deleted_in();
        let mut flt = flt_write(k);
        let io = &mut flt.io;
        let found = io
            .contexts
            .live_mut(address)
            .map(|c| (c.context_type, c.attached, c.references));
        let Some((context_type, attached, references)) = found else {
            let known = io.contexts.freed.find_map(|f| f.get(address).cloned());
            drop(flt);
            let what = match known {
                Some(freed) => format!("{context:p} is a freed {}", freed.describe()),
                None => format!("{context:p} is not a context"),
            };
            k.parameter_violation("a context the caller holds a reference to", what);
            return;
        };
        if context_type == FLT_SECTION_CONTEXT {
            drop(flt);
            k.parameter_violation(
                "not a section context (released with FltReleaseContext instead)",
                format!("{context:p} is a section context"),
            );
            return;
        }
        // Not linked (never set, deleted or replaced already): nothing to remove.
        let Some(attached) = attached else {
            return;
        };
        let unlinked = unlink_context(io, address, context_type, attached);
        if !unlinked {
            return;
        }
        if let Some(c) = io.contexts.live_mut(address) {
            c.attached = None;
            c.deleted_in = Some((routine, callback));
        }
        let dropped = drop_reference_locked(io, address);
        drop(flt);
        if references <= 1 {
            k.parameter_violation(
                "the caller holds a reference to the context (from a get, or its allocation)",
                format!(
                    "only its object held the {} context at {context:p}: the delete freed it",
                    crate::fltmgr::contexts::type_name(context_type)
                ),
            );
        }
        settle(k, address, routine, dropped);
    });
}
