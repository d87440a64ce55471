//! `KSPIN_LOCK`, acquired at IRQL <= DISPATCH_LEVEL and held at DISPATCH_LEVEL. The event path
//! takes no lock (the ring is lock-free); only the `wrong-irql` twin holds one, to make a name
//! query at DISPATCH_LEVEL.

use core::cell::UnsafeCell;

use vigil_sys::{KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock};

/// A spin lock (`KSPIN_LOCK`), acquired at IRQL <= DISPATCH_LEVEL and held at DISPATCH_LEVEL.
pub struct SpinLock(UnsafeCell<KSPIN_LOCK>);

// SAFETY: the lock word is accessed only through the Ke spin-lock routines, built for concurrency.
unsafe impl Sync for SpinLock {}
// SAFETY: as above; the lock word is plain data.
unsafe impl Send for SpinLock {}

/// A held spin lock; releasing restores the IRQL saved at acquisition.
#[must_use = "the lock is released when the guard drops"]
pub struct SpinLockGuard<'a> {
    lock: &'a SpinLock,
    previous: KIRQL,
}

impl SpinLock {
    /// Initializes a free lock at `slot`: a zeroed word, which is what `KeInitializeSpinLock`
    /// writes on x64.
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes and aligned, in non-paged memory that outlives every use.
    pub unsafe fn init(slot: *mut Self) {
        // SAFETY: `slot` is valid for writes (contract).
        unsafe { slot.write(SpinLock(UnsafeCell::new(0))) };
    }

    /// Acquires the lock at IRQL <= DISPATCH_LEVEL, raising to DISPATCH_LEVEL and spinning
    /// until exclusive; the guard releases with the saved IRQL. The Ke routines are full
    /// barriers, giving the release/acquire order between holders.
    pub fn lock(&self) -> SpinLockGuard<'_> {
        // SAFETY: an initialized lock word in non-paged memory; IRQL <= DISPATCH_LEVEL (contract).
        let previous = unsafe { KeAcquireSpinLockRaiseToDpc(self.0.get()) };
        SpinLockGuard {
            lock: self,
            previous,
        }
    }
}

impl Drop for SpinLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: held by this guard; released once, restoring the IRQL from acquisition.
        unsafe { KeReleaseSpinLock(self.lock.0.get(), self.previous) };
    }
}
