//! Normal kernel APCs: a critical region as an RAII guard.
//!
//! `SuspendThread` (and a debugger's freeze) reaches a thread as a normal kernel APC. A thread
//! inside a critical region keeps running until it leaves it, so code that others wait for (a
//! ring reservation the consumer stops at) runs there, and cannot be suspended half-way
//! (RULES.md rule 26). `KeEnterCriticalRegion` does not raise IRQL (rule 6): the thread can still
//! be preempted, but it is never parked indefinitely by another thread's request.

use vigil_sys::{KeEnterCriticalRegion, KeLeaveCriticalRegion};

/// Normal kernel APCs disabled for the current thread while this lives. IRQL <= APC_LEVEL (the
/// limit of `KeEnterCriticalRegion`'s reference page; kernel-sim checks it): every event is
/// published from a pre-operation callback or a post-operation callback that runs at
/// PASSIVE_LEVEL (post-create, a synchronized post), never at DISPATCH_LEVEL. The IRQL is not
/// read here: `KeGetCurrentIrql` is a CR8 read, cheap on Windows but a trapped instruction in
/// kernel-sim, and the callers' IRQL is already known. Not `Send`: it must end on the thread that
/// began it.
#[must_use = "APCs are disabled only while the guard lives"]
pub struct NoSuspension {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl NoSuspension {
    /// Disables normal kernel APCs (`KeEnterCriticalRegion`). IRQL <= APC_LEVEL.
    pub fn begin() -> Self {
        // SAFETY: IRQL <= APC_LEVEL (the caller's contract above, the routine's limit); paired
        // with the `KeLeaveCriticalRegion` in `drop`, on the same thread (the guard is not `Send`).
        unsafe { KeEnterCriticalRegion() };
        Self {
            _not_send: core::marker::PhantomData,
        }
    }
}

impl Drop for NoSuspension {
    fn drop(&mut self) {
        // SAFETY: leaves the region `begin` entered, on the same thread, at the IRQL it was
        // entered at (the holder does not change IRQL across the guard's life).
        unsafe { KeLeaveCriticalRegion() };
    }
}
