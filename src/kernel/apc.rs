//! Normal kernel APCs: a critical region as an RAII guard.
//!
//! `SuspendThread` (and a debugger's freeze) reaches a thread as a normal kernel APC. A thread
//! inside a critical region keeps running until it leaves it, so code that others wait for (a
//! ring reservation the consumer stops at) runs there, and cannot be suspended half-way
//! (RULES.md rule 26). `KeEnterCriticalRegion` does not raise IRQL (rule 6): the thread can still
//! be preempted, but it is never parked indefinitely by another thread's request.

use vigil_sys::{APC_LEVEL, KeEnterCriticalRegion, KeLeaveCriticalRegion, PASSIVE_LEVEL};

use crate::kernel::irql;

/// Normal kernel APCs disabled for the current thread while this lives (a no-op above
/// PASSIVE_LEVEL, where they are not delivered anyway). Not `Send`: it must end on the thread
/// that began it.
#[must_use = "APCs are disabled only while the guard lives"]
pub struct NoSuspension {
    entered: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl NoSuspension {
    /// Disables normal kernel APCs at PASSIVE_LEVEL (`KeEnterCriticalRegion`; IRQL <= APC_LEVEL
    /// per its reference page). At APC_LEVEL and above normal kernel APCs are already held back,
    /// and at DISPATCH_LEVEL the routine may not be called: nothing to do.
    pub fn begin() -> Self {
        let entered = irql::current() == PASSIVE_LEVEL;
        if entered {
            // SAFETY: IRQL is PASSIVE_LEVEL (<= APC_LEVEL, the routine's limit); paired with the
            // `KeLeaveCriticalRegion` in `drop`, on the same thread (the guard is not `Send`).
            unsafe { KeEnterCriticalRegion() };
        }
        Self {
            entered,
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for NoSuspension {
    fn drop(&mut self) {
        if self.entered {
            debug_assert!(irql::current() <= APC_LEVEL);
            // SAFETY: leaves the region `begin` entered, on the same thread, at the IRQL it was
            // entered at (the holder does not change IRQL across the guard's life).
            unsafe { KeLeaveCriticalRegion() };
        }
    }
}
