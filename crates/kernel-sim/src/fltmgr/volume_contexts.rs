//! Volume contexts: `FltSetVolumeContext` and `FltGetVolumeContext`, on the contexts of
//! `fltmgr::contexts` (allocated by `FltAllocateContext` with `FLT_VOLUME_CONTEXT`, from
//! nonpaged pool only).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetvolumecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumecontext>):
//! IRQL <= APC_LEVEL; one context per volume (and filter); a successful set gives the volume a
//! reference, which Filter Manager drops when the filter unregisters; `KEEP_IF_EXISTS` with a
//! context set is `STATUS_FLT_CONTEXT_ALREADY_DEFINED` (and the existing context, referenced,
//! in `OldContext` when given); `REPLACE_IF_EXISTS` hands the replaced context's reference to
//! the caller through `OldContext` (or drops it); a `NewContext` already set on an object is
//! `STATUS_FLT_CONTEXT_ALREADY_LINKED`, one that is no volume context or an invalid `Operation`
//! `STATUS_INVALID_PARAMETER`; a volume being torn down (here: dismounted) is
//! `STATUS_FLT_DELETING_OBJECT`; a get gives the caller a reference, or `STATUS_NOT_FOUND`.

use vigil_sys::{
    FLT_SET_CONTEXT_KEEP_IF_EXISTS, FLT_SET_CONTEXT_OPERATION, FLT_SET_CONTEXT_REPLACE_IF_EXISTS,
    FLT_VOLUME_CONTEXT, NTSTATUS, PFLT_CONTEXT, PFLT_FILTER, PVOID,
    STATUS_FLT_CONTEXT_ALREADY_DEFINED, STATUS_FLT_CONTEXT_ALREADY_LINKED,
    STATUS_FLT_DELETING_OBJECT, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_SUCCESS,
};

use crate::fltmgr::contexts::{drop_reference_locked, settle, type_name};
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::kernel::check::{check, reject};
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;

/// Whether `volume` may carry a context: `Err` with the status to return (a violation is
/// recorded for an address that is no volume).
fn check_volume(k: &Kernel, volume: PVOID) -> Result<(), NTSTATUS> {
    let mounted = flt_write(k)
        .io
        .volumes
        .iter()
        .find(|v| v.handle.address() == volume as usize)
        .map(|v| v.mounted);
    match mounted {
        Some(true) => Ok(()),
        Some(false) => Err(STATUS_FLT_DELETING_OBJECT),
        None => {
            k.parameter_violation("a volume", format!("{volume:p} is not a volume"));
            Err(STATUS_INVALID_PARAMETER)
        }
    }
}

/// `FltSetVolumeContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_set_volume_context(
    volume: PVOID,
    operation: FLT_SET_CONTEXT_OPERATION,
    new: PFLT_CONTEXT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltSetVolumeContext, |k| {
        let invalid = STATUS_INVALID_PARAMETER;
        if !old.is_null() {
            guest::write(old, std::ptr::null_mut());
        }
        if let Err(status) = check_volume(k, volume) {
            return status;
        }
        check!(k, operation == FLT_SET_CONTEXT_KEEP_IF_EXISTS
            || operation == FLT_SET_CONTEXT_REPLACE_IF_EXISTS,
            "Operation KEEP_IF_EXISTS or REPLACE_IF_EXISTS" => invalid, "Operation {operation}");
        let (volume, new) = (volume as usize, new as usize);
        let mut flt = flt_write(k);
        let io = &mut flt.io;
        let problem = match io.contexts.live_mut(new) {
            None => Some("NewContext is not a live context".to_owned()),
            Some(c) if c.context_type != FLT_VOLUME_CONTEXT => Some(format!(
                "NewContext is a {} context",
                type_name(c.context_type)
            )),
            Some(c) if c.attached.is_some() => return STATUS_FLT_CONTEXT_ALREADY_LINKED,
            Some(_) => None,
        };
        if let Some(problem) = problem {
            drop(flt);
            reject!(k, "NewContext is a volume context from FltAllocateContext" => invalid, "{problem}");
        }
        let existing = io.contexts.by_volume.get(&volume).copied();
        if let Some(existing) = existing
            && operation == FLT_SET_CONTEXT_KEEP_IF_EXISTS
        {
            if !old.is_null() {
                if let Some(c) = io.contexts.live_mut(existing) {
                    c.references += 1;
                }
                drop(flt);
                guest::write(old, existing as PFLT_CONTEXT);
            }
            return STATUS_FLT_CONTEXT_ALREADY_DEFINED;
        }
        io.contexts.by_volume.insert(volume, new);
        if let Some(c) = io.contexts.live_mut(new) {
            c.attached = Some((0, volume));
            c.references += 1;
        }
        let Some(existing) = existing else {
            return STATUS_SUCCESS;
        };
        if let Some(c) = io.contexts.live_mut(existing) {
            c.attached = None;
        }
        if old.is_null() {
            // Detached and released in one critical section (see `contexts::detach_and_release`).
            let dropped = drop_reference_locked(io, existing);
            drop(flt);
            settle(k, existing, "FltSetVolumeContext (replaced)", dropped);
        } else {
            // The replaced context's reference goes to the caller.
            drop(flt);
            guest::write(old, existing as PFLT_CONTEXT);
        }
        STATUS_SUCCESS
    })
}

/// `FltGetVolumeContext`: IRQL <= APC_LEVEL. `STATUS_NOT_FOUND` when none is set.
pub(crate) extern "win64" fn flt_get_volume_context(
    filter: PFLT_FILTER,
    volume: PVOID,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltGetVolumeContext, |k| {
        let invalid = STATUS_INVALID_PARAMETER;
        check!(k, !out.is_null(), "a Context out-pointer" => invalid, "NULL");
        guest::write(out, std::ptr::null_mut());
        let registered = flt_write(k).filters.contains_key(&(filter as usize));
        check!(k, registered, "Filter from FltRegisterFilter" => invalid, "Filter {filter:p}");
        if let Err(status) = check_volume(k, volume) {
            return if status == invalid {
                status
            } else {
                STATUS_NOT_FOUND
            };
        }
        let found = {
            let mut flt = flt_write(k);
            let io = &mut flt.io;
            let context = io.contexts.by_volume.get(&(volume as usize)).copied();
            if let Some(c) = context.and_then(|c| io.contexts.live_mut(c)) {
                c.references += 1;
            }
            context
        };
        match found {
            Some(context) => {
                guest::write(out, context as PFLT_CONTEXT);
                STATUS_SUCCESS
            }
            None => STATUS_NOT_FOUND,
        }
    })
}
