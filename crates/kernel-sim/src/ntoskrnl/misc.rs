//! `KeBugCheckEx` and `__C_specific_handler`.

use std::ffi::c_void;

use crate::kernel::emulate;
use crate::machine::state::{self, Abandon};
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// `KeBugCheckEx`: any IRQL; never returns. The driver call is abandoned and reported as a
/// fatal violation with the code and parameters.
pub(crate) extern "win64" fn ke_bug_check_ex(
    code: u32,
    p1: usize,
    p2: usize,
    p3: usize,
    p4: usize,
) -> ! {
    emulate(Routine::KeBugCheckEx, |_| {
        state::with(|s| {
            let params = [u64::from(code), p1 as u64, p2 as u64, p3 as u64, p4 as u64];
            for (cell, value) in s.fault.params.iter().zip(params) {
                cell.set(value);
            }
        });
        abandon_current_call(Abandon::BugCheck)
    })
}

/// `__C_specific_handler`: the exception dispatcher calls it, never the driver. kernel-sim
/// dispatches the SEH helper's exceptions itself (see `machine::signals`); a direct call is a
/// violation. Returns `ExceptionContinueSearch`.
pub(crate) extern "win64" fn c_specific_handler(
    _record: *mut c_void,
    _frame: *mut c_void,
    _context: *mut c_void,
    _dispatcher: *mut c_void,
) -> i32 {
    emulate(Routine::__C_specific_handler, |k| {
        k.violation(
            ViolationKind::Parameter,
            "__C_specific_handler: called only by the exception dispatcher",
            "the driver called __C_specific_handler directly".to_owned(),
        );
        1
    })
}
