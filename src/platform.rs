//! The kernel implementation of `vigil_core::Platform`: `KEVENT` (`crate::kernel::event`),
//! `KSPIN_LOCK` (`crate::kernel::spin_lock`), FltMgr push locks (`crate::filter::push_lock`)
//! and `KeDelayExecutionThread` (`crate::kernel::time::sleep`). Runs in the kernel; each
//! primitive's IRQL limits are those of the trait it implements. No FFI here: each primitive
//! is a wrapper of its own module.

use vigil_core::{Platform, Timeout};

pub use crate::filter::push_lock::PushLock;
use crate::kernel::event::KernelEvent;
// Only the `wrong-irql` twin holds a spin lock (the event path takes none).
#[cfg(vigil_twin = "wrong-irql")]
pub use crate::kernel::spin_lock::SpinLock;

/// The kernel platform.
pub struct KernelPlatform;

// SAFETY: each associated type meets its trait's contract (see their impls); `sleep` is
// KeDelayExecutionThread, which returns after about the interval and is called only at
// IRQL <= APC_LEVEL by the core (the trait's contract on callers).
unsafe impl Platform for KernelPlatform {
    type Event = KernelEvent;
    type PassiveLock = PushLock;

    fn sleep(interval: Timeout) {
        crate::kernel::time::sleep(interval);
    }
}
