//! FltMgr push locks: the kernel's `vigil_core::RawPassiveLock`, for IRQL <= APC_LEVEL. The Flt
//! acquire routines enter a critical region and the release leaves it.

use core::cell::UnsafeCell;

use vigil_core::RawPassiveLock;
use vigil_sys::{
    EX_PUSH_LOCK, FltAcquirePushLockExclusive, FltAcquirePushLockShared, FltDeletePushLock,
    FltInitializePushLock, FltReleasePushLock,
};

/// A FltMgr push lock (shared/exclusive), for IRQL <= APC_LEVEL.
pub struct PushLock(UnsafeCell<EX_PUSH_LOCK>);

// SAFETY: the lock word is accessed only through the Flt push-lock routines.
unsafe impl Sync for PushLock {}
// SAFETY: as above.
unsafe impl Send for PushLock {}

/// A held push lock (either mode); released on drop.
#[must_use = "the lock is released when the guard drops"]
pub struct PushLockGuard<'a>(&'a PushLock);

// SAFETY: FltInitializePushLock leaves it free; shared and exclusive acquisition follow push-lock
// semantics (exclusive excludes all others), release orders before later acquisitions; all at
// IRQL <= APC_LEVEL.
unsafe impl RawPassiveLock for PushLock {
    type SharedGuard<'a> = PushLockGuard<'a>;
    type ExclusiveGuard<'a> = PushLockGuard<'a>;

    unsafe fn init(slot: *mut Self) {
        // SAFETY: `slot` is valid for writes (contract).
        unsafe { slot.write(PushLock(UnsafeCell::new(0))) };
        // SAFETY: just written; shared access to initialize the word in place.
        let lock = unsafe { &*slot };
        // SAFETY: initialized in place before any use.
        unsafe { FltInitializePushLock(lock.0.get()) };
    }

    fn lock_shared(&self) -> PushLockGuard<'_> {
        // SAFETY: an initialized push lock; IRQL <= APC_LEVEL (contract).
        unsafe { FltAcquirePushLockShared(self.0.get()) };
        PushLockGuard(self)
    }

    fn lock_exclusive(&self) -> PushLockGuard<'_> {
        // SAFETY: as above.
        unsafe { FltAcquirePushLockExclusive(self.0.get()) };
        PushLockGuard(self)
    }
}

impl Drop for PushLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: held by this guard (either mode); released once.
        unsafe { FltReleasePushLock(self.0.0.get()) };
    }
}

impl Drop for PushLock {
    fn drop(&mut self) {
        // SAFETY: no guard can outlive the lock (borrowed); deleted once, when its owner drops.
        unsafe { FltDeletePushLock(self.0.get()) };
    }
}
