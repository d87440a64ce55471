//! `FltDoCompletionProcessingWhenSafe`: runs a post-operation callback's work where IRQL allows
//! it, at once below DISPATCH_LEVEL, else on a worker thread with the operation pended
//! (`FLT_POSTOP_MORE_PROCESSING_REQUIRED`) until the safe callback is done.
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdocompletionprocessingwhensafe>):
//! any IRQL; only from a post-operation callback, never while draining
//! (`FLTFL_POST_OPERATION_DRAINING`), only for IRP-based operations, and never for
//! `IRP_MJ_READ`, `IRP_MJ_WRITE` or `IRP_MJ_FLUSH_BUFFERS` (deadlocks). Below DISPATCH_LEVEL
//! the `SafePostCallback` runs at once, its status goes to `RetPostOperationStatus`, TRUE. At
//! DISPATCH_LEVEL or above the operation is posted: `FLT_POSTOP_MORE_PROCESSING_REQUIRED`, TRUE,
//! and Filter Manager resumes completion after the callback unless it returned
//! `FLT_POSTOP_MORE_PROCESSING_REQUIRED` itself (then `FltCompletePendedPostOperation` does);
//! paging I/O cannot be posted: `FLT_POSTOP_FINISHED_PROCESSING`, FALSE.

use vigil_sys::{
    DISPATCH_LEVEL, FLT_CALLBACK_DATA, FLT_POSTOP_FINISHED_PROCESSING,
    FLT_POSTOP_MORE_PROCESSING_REQUIRED, FLT_RELATED_OBJECTS, FLTFL_CALLBACK_DATA_IRP_OPERATION,
    FLTFL_CALLBACK_DATA_POST_OPERATION, FLTFL_POST_OPERATION_DRAINING, IRP_MJ_READ, IRP_MJ_WRITE,
    IRP_PAGING_IO, PASSIVE_LEVEL, PVOID,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::fltmgr::pending::complete_post;
use crate::kernel::{Kernel, allocate_thread_id, emulate};
use crate::machine::{guest, state};
use crate::ntoskrnl::thread::SYSTEM_PROCESS_ID;
use crate::report::ViolationKind;

/// `IRP_MJ_FLUSH_BUFFERS`.
const IRP_MJ_FLUSH_BUFFERS: u8 = 0x09;

/// A post-operation callback's type (`PFLT_POST_OPERATION_CALLBACK`).
type PostCallback =
    unsafe extern "win64" fn(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, PVOID, u32) -> i32;

/// The checks on the operation: `Some(paging)` when it may be processed, `None` (reported)
/// otherwise.
fn check_operation(k: &Kernel, data: usize, flags: u32) -> Option<bool> {
    let in_flight = flt_write(k).io.in_flight.contains(data);
    let value = in_flight.then(|| guest::read(data as *const FLT_CALLBACK_DATA));
    let Some(value) = value.filter(|v| v.Flags & FLTFL_CALLBACK_DATA_POST_OPERATION != 0) else {
        k.parameter_violation(
            "called from a post-operation callback, with its callback data",
            format!("{data:#x} is not an operation in its post-operation callback"),
        );
        return None;
    };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        k.parameter_violation(
            "never while draining (FLTFL_POST_OPERATION_DRAINING)",
            "Flags has FLTFL_POST_OPERATION_DRAINING".to_owned(),
        );
        return None;
    }
    if value.Flags & FLTFL_CALLBACK_DATA_IRP_OPERATION == 0 {
        k.parameter_violation(
            "an IRP-based operation",
            format!("Flags {:#x}", value.Flags),
        );
        return None;
    }
    let iopb = guest::read(value.Iopb);
    if matches!(
        iopb.MajorFunction,
        IRP_MJ_READ | IRP_MJ_WRITE | IRP_MJ_FLUSH_BUFFERS
    ) {
        k.parameter_violation(
            "not for IRP_MJ_READ, IRP_MJ_WRITE or IRP_MJ_FLUSH_BUFFERS (deadlocks)",
            format!("major function {:#x}", iopb.MajorFunction),
        );
        return None;
    }
    Some(iopb.IrpFlags & IRP_PAGING_IO != 0)
}

/// `FltDoCompletionProcessingWhenSafe`: any IRQL.
pub(crate) extern "win64" fn flt_do_completion_processing_when_safe(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    context: PVOID,
    flags: u32,
    safe: Option<PostCallback>,
    ret: *mut i32,
) -> u8 {
    emulate(Routine::FltDoCompletionProcessingWhenSafe, |k| {
        if ret.is_null() {
            k.parameter_violation("a RetPostOperationStatus", "NULL".to_owned());
            return 0;
        }
        guest::write(ret, FLT_POSTOP_FINISHED_PROCESSING);
        let Some(safe) = safe else {
            k.parameter_violation("a SafePostCallback", "NULL".to_owned());
            return 0;
        };
        let Some(paging) = check_operation(k, data as usize, flags) else {
            return 0;
        };
        if state::current_irql() < DISPATCH_LEVEL {
            // SAFETY: `safe` is the driver's PFLT_POST_OPERATION_CALLBACK; the arguments are the
            // operation's own, alive while its post-operation callback (our caller) runs.
            let status = k.call_driver("SafePostCallback", None, || unsafe {
                safe(data, objects, context, flags)
            });
            guest::write(ret, status.unwrap_or(FLT_POSTOP_FINISHED_PROCESSING));
            return 1;
        }
        if paging {
            return 0;
        }
        post(
            k,
            safe,
            (data as usize, objects as usize, context as usize),
            flags,
        );
        guest::write(ret, FLT_POSTOP_MORE_PROCESSING_REQUIRED);
        1
    })
}

/// Runs `safe` on a worker thread at PASSIVE_LEVEL, then resumes the operation's completion
/// unless the callback pended it again.
fn post(
    k: &Kernel,
    safe: PostCallback,
    (data, objects, context): (usize, usize, usize),
    flags: u32,
) {
    let kernel = k.arc();
    let latency = k.config.work_item_latency;
    let spawned = std::thread::Builder::new()
        .name(format!("kernel-sim safe completion {data:#x}"))
        .spawn(move || {
            state::with(|s| {
                s.thread_id.set(allocate_thread_id());
                s.process_id.set(SYSTEM_PROCESS_ID);
                s.system_thread.set(true);
            });
            std::thread::sleep(latency);
            // SAFETY: as in the direct call; the operation stays pended (its block alive) until
            // `complete_post` below or the driver's own FltCompletePendedPostOperation.
            let status = kernel.call_driver("SafePostCallback", Some(PASSIVE_LEVEL), || unsafe {
                safe(
                    data as *mut FLT_CALLBACK_DATA,
                    objects as *const FLT_RELATED_OBJECTS,
                    context as PVOID,
                    flags,
                )
            });
            if status != Some(FLT_POSTOP_MORE_PROCESSING_REQUIRED) {
                complete_post(&kernel, data);
            }
        });
    match spawned {
        Ok(join) => flt_write(k).io.work_items.adopt(join),
        Err(error) => k.violation(
            ViolationKind::Internal,
            "kernel-sim",
            format!("no worker thread for a posted completion: {error}"),
        ),
    }
}
