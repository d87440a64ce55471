//! `FltGetTunneledName`: whether file-name tunneling changed the final component of a normalized
//! name a filter took in a pre-operation callback, from its reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgettunneledname>).
//!
//! - IRQL <= APC_LEVEL; `CallbackData` and `RetTunneledFileNameInformation` required (NULL: a
//!   violation, `STATUS_INVALID_PARAMETER`); the output is set to NULL first.
//! - `CallbackData` is an operation in progress, and the call comes from its post-operation
//!   processing of `IRP_MJ_CREATE` or `IRP_MJ_SET_INFORMATION`: the page calls any other use (a
//!   pre-operation callback, another operation) a programming error, reported (a call from a
//!   pre-operation callback by the callback's name; post-processing that continues in a
//!   safe-post callback or a worker is not reported).
//! - `FileNameInformation` is a live structure from a name routine holding a normalized name
//!   (only normalized names are tunneled; the page says filters with opened or short names
//!   should not call the routine): anything else is reported.
//! - Failable: `STATUS_INSUFFICIENT_RESOURCES`, the documented pool failure.
//! - The synthetic file systems keep no tunnel cache, so no name is ever tunneled: the
//!   routine succeeds with a NULL `RetTunneledFileNameInformation`, which the page documents
//!   as the answer when there is no tunneled name.

use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_FILE_NAME_NORMALIZED, IRP_MJ_CREATE, IRP_MJ_SET_INFORMATION, NTSTATUS,
    PFLT_FILE_NAME_INFORMATION, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::names::with_record;
use crate::kernel::emulate;
use crate::machine::{guest, state};

/// `FltGetTunneledName`: IRQL <= APC_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_get_tunneled_name(
    data: *mut FLT_CALLBACK_DATA,
    info: PFLT_FILE_NAME_INFORMATION,
    out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    emulate(Routine::FltGetTunneledName, |k| {
        if data.is_null() || out.is_null() {
            k.parameter_violation(
                "CallbackData and RetTunneledFileNameInformation are required",
                "a NULL pointer".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        guest::write(out, std::ptr::null_mut());
        if !flt_read(k).io.in_flight.contains(data as usize) {
            k.parameter_violation(
                "the CallbackData of an operation in progress",
                format!("{data:p} is not the callback data of an operation in progress"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let major = guest::read(guest::read(data).Iopb).MajorFunction;
        // A pre-operation callback, or an operation other than a create or set-information, is
        // the page's programming error. (Post-processing may go on in a safe-post callback or a
        // worker completing a pended post: not reported.)
        let callback = state::with(|s| s.callback.get());
        let in_pre = callback.starts_with("Pre");
        if in_pre || !(major == IRP_MJ_CREATE || major == IRP_MJ_SET_INFORMATION) {
            k.parameter_violation(
                "called only from the post-operation callback of IRP_MJ_CREATE or IRP_MJ_SET_INFORMATION",
                format!("called in {callback} for major function {major:#04x}"),
            );
        }
        let (shape, retired) = with_record(k, info as usize, |r| r.map(|r| r.shape));
        match shape {
            Some(shape) if shape.format == FLT_FILE_NAME_NORMALIZED => {}
            Some(shape) => k.parameter_violation(
                "a FileNameInformation holding a normalized name",
                format!("{info:p} holds a name of format {}", shape.format),
            ),
            None => {
                k.parameter_violation(
                    "a FileNameInformation a name routine returned and not yet released",
                    retired.map_or_else(
                        || format!("{info:p} is not name information FltMgr returned"),
                        |name| format!("'{name}' ({info:p}) was already released"),
                    ),
                );
                return STATUS_INVALID_PARAMETER;
            }
        }
        if k.inject_failure("FltGetTunneledName", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        // No tunnel cache: never a tunneled name (module comment).
        STATUS_SUCCESS
    })
}
