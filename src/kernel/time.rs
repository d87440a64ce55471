//! The system time, for event timestamps, and a plain delay. (Timeouts are `vigil_core::Timeout`:
//! finite by type.)

use vigil_core::Timeout;
use vigil_sys::{
    FALSE, KeDelayExecutionThread, KeQuerySystemTimePrecise, KernelMode, LARGE_INTEGER,
};

/// The system time in 100 ns units since 1601-01-01 UTC. Any IRQL.
pub fn system_time() -> u64 {
    let mut now: LARGE_INTEGER = 0;
    // SAFETY: `now` is a valid out-pointer; the routine may be called at any IRQL.
    unsafe { KeQuerySystemTimePrecise(&raw mut now) };
    now.cast_unsigned()
}

/// Sleeps for about `interval` (kernel mode, not alertable). IRQL <= APC_LEVEL.
pub fn sleep(interval: Timeout) {
    let mut relative = interval.as_nt_relative();
    // SAFETY: a valid relative interval that outlives the call; kernel mode, not alertable, so
    // the only status is STATUS_SUCCESS.
    unsafe { KeDelayExecutionThread(KernelMode, FALSE, &raw mut relative) };
}
