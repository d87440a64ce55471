//! FltMgr push locks: the kernel's `vigil_core::RawPassiveLock`, and `PushLocked<T>`, a push
//! lock that owns the data it guards. For IRQL <= APC_LEVEL. The Flt acquire routines enter a
//! critical region and the release leaves it.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::addr_of_mut;

use vigil_core::RawPassiveLock;
use vigil_sys::{
    EX_PUSH_LOCK, FltAcquirePushLockExclusiveEx, FltAcquirePushLockSharedEx, FltDeletePushLock,
    FltInitializePushLock, FltReleasePushLockEx,
};

/// The push-lock routines' `Flags`: none (auto-boost stays as the system sets it), which is what
/// the WDK's plain-name macros pass.
const NO_FLAGS: u32 = 0;

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
        unsafe { FltAcquirePushLockSharedEx(self.0.get(), NO_FLAGS) };
        PushLockGuard(self)
    }

    fn lock_exclusive(&self) -> PushLockGuard<'_> {
        // SAFETY: as above.
        unsafe { FltAcquirePushLockExclusiveEx(self.0.get(), NO_FLAGS) };
        PushLockGuard(self)
    }
}

impl Drop for PushLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: held by this guard (either mode); released once.
        unsafe { FltReleasePushLockEx(self.0.0.get(), NO_FLAGS) };
    }
}

impl Drop for PushLock {
    fn drop(&mut self) {
        // SAFETY: no guard can outlive the lock (borrowed); deleted once, when its owner drops.
        unsafe { FltDeletePushLock(self.0.get()) };
    }
}

/// Data behind a push lock that owns it: read under the lock shared, written under it
/// exclusively, reachable only through the guards. IRQL <= APC_LEVEL.
///
/// # Invariants
///
/// `data` is read only while `lock` is held (either mode) and written only while it is held
/// exclusively.
pub struct PushLocked<T> {
    lock: PushLock,
    data: UnsafeCell<T>,
}

// SAFETY: shared access to `data` is under the lock (invariant): readers share `&T` (so `T:
// Sync`), a writer gets `&mut T` from any thread (so `T: Send`).
unsafe impl<T: Send + Sync> Sync for PushLocked<T> {}
// SAFETY: moving the owner moves the `T`.
unsafe impl<T: Send> Send for PushLocked<T> {}

impl<T> PushLocked<T> {
    /// Builds the lock in place and lets `init` build the data in place (for data too large for
    /// a kernel stack).
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes, aligned, and never moves afterwards; `init` initializes every
    /// byte of the `T` it is given.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "in-place construction: each block computes one field's address and initializes it"
    )]
    pub unsafe fn init_in_place(slot: *mut Self, init: impl FnOnce(*mut T)) {
        // SAFETY: a field of the writable slot (contract).
        unsafe { RawPassiveLock::init(addr_of_mut!((*slot).lock)) };
        // SAFETY: a field of the writable slot; only its address is computed.
        let data = unsafe { addr_of_mut!((*slot).data) };
        init(UnsafeCell::raw_get(data));
    }

    /// The data, shared. IRQL <= APC_LEVEL.
    pub fn read(&self) -> PushLockedRead<'_, T> {
        let guard = self.lock.lock_shared();
        // SAFETY: the lock is held shared (invariant): no writer exists while the guard lives.
        let data = unsafe { &*self.data.get() };
        PushLockedRead {
            data,
            _guard: guard,
        }
    }

    /// The data, exclusively. IRQL <= APC_LEVEL.
    pub fn write(&self) -> PushLockedWrite<'_, T> {
        let guard = self.lock.lock_exclusive();
        // SAFETY: the lock is held exclusively (invariant): no other access exists.
        let data = unsafe { &mut *self.data.get() };
        PushLockedWrite {
            data,
            _guard: guard,
        }
    }
}

/// Shared access to a [`PushLocked`]'s data; the lock is released on drop.
#[must_use = "the lock is released when the guard drops"]
pub struct PushLockedRead<'a, T> {
    data: &'a T,
    _guard: PushLockGuard<'a>,
}

impl<T> Deref for PushLockedRead<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

/// Exclusive access to a [`PushLocked`]'s data; the lock is released on drop.
#[must_use = "the lock is released when the guard drops"]
pub struct PushLockedWrite<'a, T> {
    data: &'a mut T,
    _guard: PushLockGuard<'a>,
}

impl<T> Deref for PushLockedWrite<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T> DerefMut for PushLockedWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data
    }
}
