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
    FLT_VOLUME_CONTEXT, NTSTATUS, PFLT_CONTEXT, PFLT_FILTER, PVOID, STATUS_FLT_DELETING_OBJECT,
    STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_SUCCESS,
};

use crate::fltmgr::contexts::{LinkKey, get_linked, set_linked};
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::kernel::check::check;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;

/// Whether `volume` may carry a context: `Err` with the status to return (a violation is
/// recorded for an address that is no volume).
pub(crate) fn check_volume(k: &Kernel, volume: PVOID) -> Result<(), NTSTATUS> {
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
        let volume = volume as usize;
        set_linked(
            k,
            (LinkKey::Volume(volume), FLT_VOLUME_CONTEXT, (0, volume)),
            operation,
            (new as usize, old),
            "FltSetVolumeContext (replaced)",
        )
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
        let found = get_linked(k, &LinkKey::Volume(volume as usize));
        match found {
            Some(context) => {
                guest::write(out, context as PFLT_CONTEXT);
                STATUS_SUCCESS
            }
            None => STATUS_NOT_FOUND,
        }
    })
}
