//! Kernel time values: relative timeouts for waits and the system time for event stamps.

use vigil_sys::{KeQuerySystemTimePrecise, LARGE_INTEGER};

/// A finite, non-zero relative timeout, as the kernel's waits take it (negative 100 ns units).
///
/// There is deliberately no way to express "wait forever" (RULES.md, rule 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(LARGE_INTEGER);

impl Timeout {
    /// `ms` milliseconds; zero is raised to one millisecond so that the value stays a wait.
    pub const fn from_millis(ms: u32) -> Self {
        let ms = if ms == 0 { 1 } else { ms as i64 };
        Self(-(ms * 10_000))
    }

    /// The value for a `PLARGE_INTEGER` parameter (relative: negative).
    pub const fn as_large_integer(self) -> LARGE_INTEGER {
        self.0
    }
}

/// The system time in 100 ns units since 1601-01-01 UTC. Any IRQL.
pub fn system_time() -> u64 {
    let mut now: LARGE_INTEGER = 0;
    // SAFETY: `now` is a valid out-pointer; the routine may be called at any IRQL.
    unsafe { KeQuerySystemTimePrecise(&raw mut now) };
    now.cast_unsigned()
}

/// Sleeps the current thread for about `ms` milliseconds. IRQL <= APC_LEVEL.
pub fn sleep(ms: u32) {
    let mut interval = Timeout::from_millis(ms).as_large_integer();
    // SAFETY: `interval` is a valid relative interval; kernel mode, not alertable. The status is
    // STATUS_SUCCESS for a non-alertable kernel-mode delay.
    unsafe { vigil_sys::KeDelayExecutionThread(vigil_sys::KernelMode, vigil_sys::FALSE, &raw mut interval) };
}
