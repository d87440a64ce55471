//! `FltGetRoutineAddress`: a routine of Filter Manager's export table by name.
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetroutineaddress>):
//! PASSIVE_LEVEL; `FltMgrRoutineName` an ANSI name of a routine FltMgr exports; NULL when it
//! cannot be found. As for `MmGetSystemRoutineAddress`, a name kernel-sim does not emulate is
//! reported rather than silently answered NULL.

use vigil_sys::PVOID;

use crate::fltmgr::exports::{EXPORTS, Routine};
use crate::kernel::emulate;
use crate::machine::guest;
use crate::ntoskrnl::system_routine::look_up;

/// The longest name read (FltMgr's exports are far shorter).
const MAX_NAME: usize = 256;

/// `FltGetRoutineAddress`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn flt_get_routine_address(name: *const u8) -> PVOID {
    emulate(Routine::FltGetRoutineAddress, |k| {
        if name.is_null() {
            k.parameter_violation("a FltMgrRoutineName", "NULL".to_owned());
            return std::ptr::null_mut();
        }
        let mut bytes = Vec::new();
        while bytes.len() < MAX_NAME {
            let byte = guest::read(name.wrapping_add(bytes.len()));
            if byte == 0 {
                break;
            }
            bytes.push(byte);
        }
        let name = String::from_utf8_lossy(&bytes).into_owned();
        look_up(k, EXPORTS, &name, "FLTMGR.SYS")
    })
}
