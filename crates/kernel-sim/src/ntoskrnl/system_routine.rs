//! `MmGetSystemRoutineAddress`: a routine of the kernel's export table by name.
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-mmgetsystemroutineaddress>):
//! PASSIVE_LEVEL; `SystemRoutineName` a Unicode name of a routine the kernel or the HAL
//! exports (never a driver's); NULL when no such routine exists. kernel-sim exports only what
//! it emulates: a name it does not emulate may well exist on Windows, so NULL there is not
//! Windows' answer and is reported (not emulated), the run-time form of the refusal at load.

use vigil_sys::{PVOID, UNICODE_STRING};

use crate::kernel::{Export, Kernel, emulate};
use crate::machine::guest;
use crate::ntoskrnl::exports::{EXPORTS, Routine};
use crate::report::ViolationKind;

/// The address of `name` in `exports`, or NULL with a not-emulated report.
pub(crate) fn look_up(k: &Kernel, exports: &[Export], name: &str, module: &str) -> PVOID {
    if let Some((_, address)) = exports.iter().find(|(n, _)| *n == name) {
        return address() as PVOID;
    }
    k.violation(
        ViolationKind::NotEmulated,
        format!("{module} routines kernel-sim does not emulate cannot be looked up"),
        format!("{name} is not emulated: kernel-sim answers NULL, which Windows may not"),
    );
    std::ptr::null_mut()
}

/// `MmGetSystemRoutineAddress`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn mm_get_system_routine_address(name: *const UNICODE_STRING) -> PVOID {
    emulate(
        Routine::MmGetSystemRoutineAddress,
        |k| match guest::unicode_string(name) {
            Some(Ok(name)) => look_up(k, EXPORTS, &name, "ntoskrnl.exe"),
            Some(Err(problem)) => {
                k.parameter_violation("SystemRoutineName a valid UNICODE_STRING", problem);
                std::ptr::null_mut()
            }
            None => {
                k.parameter_violation("a SystemRoutineName", "NULL".to_owned());
                std::ptr::null_mut()
            }
        },
    )
}
