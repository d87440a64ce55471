//! Changed callback data: `FltSetCallbackDataDirty`, and the check the dispatch makes after a
//! pre-operation callback (or the completion of one it pended): a callback that changed the
//! operation's parameter block without marking the callback data dirty has its change ignored,
//! the file system below gets the parameters as they were, and the broken rule is reported.
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetcallbackdatadirty>):
//! any IRQL; a pre- or post-operation callback that modifies the callback data "must then call
//! `FltSetCallbackDataDirty`" unless only `IoStatus` changed; the routine sets
//! `FLTFL_CALLBACK_DATA_DIRTY`. The MDL left in a dirty write's `MdlAddress` is the I/O
//! system's to free when the operation completes
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltlockuserbuffer>,
//! Remarks), which [`complete_write_mdl`] does.

use std::mem::offset_of;

use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK, FLT_PARAMETERS, FLT_PARAMETERS_WRITE,
    FLTFL_CALLBACK_DATA_DIRTY,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::{guest, state};
use crate::report::ViolationKind;

/// The address of the `Flags` of the callback data at `data`.
fn flags_at(data: usize) -> *mut u32 {
    (data + offset_of!(FLT_CALLBACK_DATA, Flags)) as *mut u32
}

/// `FltSetCallbackDataDirty`: any IRQL.
pub(crate) extern "win64" fn flt_set_callback_data_dirty(data: *mut FLT_CALLBACK_DATA) {
    emulate(Routine::FltSetCallbackDataDirty, |k| {
        let in_flight = flt_read(k).io.in_flight.contains(data as usize);
        if !in_flight {
            if crate::fltmgr::draining::misuse_of_drained_copy(
                k,
                "FltSetCallbackDataDirty",
                data as usize,
            ) {
                return;
            }
            k.parameter_violation(
                "the callback data of an operation in progress",
                format!("{data:p} is not the callback data of an operation in progress"),
            );
            return;
        }
        let at = flags_at(data as usize);
        guest::write(at, guest::read(at) | FLTFL_CALLBACK_DATA_DIRTY);
    });
}

/// The bytes of the parameter block at `iopb`, to compare after the pre-operation callback.
pub(crate) fn snapshot(iopb: usize) -> Vec<u8> {
    guest::read_bytes(iopb as *const u8, size_of::<FLT_IO_PARAMETER_BLOCK>())
}

/// After `callback` (a pre-operation callback, or the completion of the operation it pended):
/// if the parameter block at `iopb` differs from `before` while the callback data at `data` is
/// not dirty, reports it and puts the old parameters back, which is what the file system then
/// sees.
pub(crate) fn check_parameters(
    k: &Kernel,
    data: usize,
    iopb: usize,
    before: &[u8],
    callback: &'static str,
) {
    if guest::read(flags_at(data)) & FLTFL_CALLBACK_DATA_DIRTY != 0 {
        return;
    }
    if snapshot(iopb) == before {
        return;
    }
    let previous = state::with(|s| s.callback.replace(callback));
    k.violation(
        ViolationKind::CallbackContract,
        "a callback that changes the callback data's parameters calls FltSetCallbackDataDirty",
        format!("{callback} changed the parameter block without FltSetCallbackDataDirty: the file system gets the old parameters"),
    );
    state::with(|s| s.callback.set(previous));
    guest::write_bytes(iopb as *mut u8, before);
}

/// At the end of a write whose callback data is at `data` with its parameter block at `iopb`:
/// the MDL in its `MdlAddress`, if the driver allocated it, is freed as the I/O system frees an
/// IRP's MDL at completion.
pub(crate) fn complete_write_mdl(k: &Kernel, iopb: usize) {
    let at = iopb
        + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters)
        + offset_of!(FLT_PARAMETERS, Write)
        + offset_of!(FLT_PARAMETERS_WRITE, MdlAddress);
    let mdl = guest::read(at as *const usize);
    if mdl != 0 && lock(&k.objects).mdls.contains_key(&mdl) {
        // Cannot fail: checked live just above, and only this thread completes the operation.
        let _ = crate::ntoskrnl::mdl::free(k, mdl, "the I/O system (operation completed)");
    }
}
