//! Instance contexts: `FltSetInstanceContext` and `FltGetInstanceContext`, on the contexts of
//! `fltmgr::contexts` (allocated by `FltAllocateContext` with `FLT_INSTANCE_CONTEXT`).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetinstancecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetinstancecontext>):
//! IRQL <= APC_LEVEL; one context per instance; a successful set gives the instance a
//! reference (dropped when the instance is torn down, or when InstanceSetup declines to
//! attach); `FLT_SET_CONTEXT_KEEP_IF_EXISTS` with a context set returns
//! `STATUS_FLT_CONTEXT_ALREADY_DEFINED` (and the existing context, referenced, in `OldContext`
//! when given); `FLT_SET_CONTEXT_REPLACE_IF_EXISTS` hands the replaced context's reference to
//! the caller through `OldContext` (or drops it); `NewContext` already set on an object is
//! `STATUS_FLT_CONTEXT_ALREADY_LINKED`; an instance being torn down is
//! `STATUS_FLT_DELETING_OBJECT`; a get gives the caller a reference, or `STATUS_NOT_FOUND`.
//! InstanceSetup may set the context: the instance exists from the moment it is called.

use vigil_sys::{
    FLT_INSTANCE_CONTEXT, FLT_SET_CONTEXT_KEEP_IF_EXISTS, FLT_SET_CONTEXT_OPERATION,
    FLT_SET_CONTEXT_REPLACE_IF_EXISTS, NTSTATUS, PFLT_CONTEXT, PFLT_INSTANCE,
    STATUS_FLT_DELETING_OBJECT, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_SUCCESS,
};

use crate::fltmgr::contexts::{LinkKey, get_linked, set_linked};
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::InstanceState;
use crate::kernel::check::check;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;

/// Whether `instance` may carry a context: `Err` with the status to return (a violation is
/// recorded for an address that is no instance).
pub(crate) fn check_instance(k: &Kernel, instance: PFLT_INSTANCE) -> Result<(), NTSTATUS> {
    let state = flt_read(k).io.instance(instance as usize);
    match state {
        Some((_, InstanceState::TearingDown)) => Err(STATUS_FLT_DELETING_OBJECT),
        Some(_) => Ok(()),
        None => {
            k.parameter_violation(
                "a live instance",
                format!("{instance:p} is not a live instance"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
    }
}

/// `FltSetInstanceContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_set_instance_context(
    instance: PFLT_INSTANCE,
    operation: FLT_SET_CONTEXT_OPERATION,
    new: PFLT_CONTEXT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltSetInstanceContext, |k| {
        let invalid = STATUS_INVALID_PARAMETER;
        if !old.is_null() {
            guest::write(old, std::ptr::null_mut());
        }
        if let Err(status) = check_instance(k, instance) {
            return status;
        }
        check!(k, operation == FLT_SET_CONTEXT_KEEP_IF_EXISTS
            || operation == FLT_SET_CONTEXT_REPLACE_IF_EXISTS,
            "Operation KEEP_IF_EXISTS or REPLACE_IF_EXISTS" => invalid, "Operation {operation}");
        let instance = instance as usize;
        set_linked(
            k,
            (
                LinkKey::Instance(instance),
                FLT_INSTANCE_CONTEXT,
                (0, instance),
            ),
            operation,
            (new as usize, old),
            "FltSetInstanceContext (replaced)",
        )
    })
}

/// `FltGetInstanceContext`: IRQL <= APC_LEVEL. `STATUS_NOT_FOUND` when none is set.
pub(crate) extern "win64" fn flt_get_instance_context(
    instance: PFLT_INSTANCE,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltGetInstanceContext, |k| {
        check!(k, !out.is_null(), "a Context out-pointer" => STATUS_INVALID_PARAMETER, "NULL");
        guest::write(out, std::ptr::null_mut());
        if let Err(status) = check_instance(k, instance) {
            return if status == STATUS_INVALID_PARAMETER {
                status
            } else {
                STATUS_NOT_FOUND
            };
        }
        let found = get_linked(k, &LinkKey::Instance(instance as usize));
        match found {
            Some(context) => {
                guest::write(out, context as PFLT_CONTEXT);
                STATUS_SUCCESS
            }
            None => STATUS_NOT_FOUND,
        }
    })
}
