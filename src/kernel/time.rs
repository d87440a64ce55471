//! The system time, for event timestamps. (Timeouts are `vigil_core::Timeout`: finite by type.)

use vigil_sys::{KeQuerySystemTimePrecise, LARGE_INTEGER};

/// The system time in 100 ns units since 1601-01-01 UTC. Any IRQL.
pub fn system_time() -> u64 {
    let mut now: LARGE_INTEGER = 0;
    // SAFETY: `now` is a valid out-pointer; the routine may be called at any IRQL.
    unsafe { KeQuerySystemTimePrecise(&raw mut now) };
    now.cast_unsigned()
}
