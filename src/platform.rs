//! The kernel implementation of `vigil_core::Platform`: `KEVENT`, `KSPIN_LOCK`, FltMgr push locks and
//! `KeDelayExecutionThread`. Runs in the kernel; each primitive's IRQL limits are those of the
//! trait it implements.

use core::cell::UnsafeCell;

use vigil_core::{Platform, RawDispatchLock, RawEvent, RawPassiveLock, Timeout, WaitOutcome};
use vigil_sys::{
    EX_PUSH_LOCK, FALSE, FltAcquirePushLockExclusive, FltAcquirePushLockShared, FltDeletePushLock,
    FltInitializePushLock, FltReleasePushLock, KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc,
    KeDelayExecutionThread, KeReleaseSpinLock, KernelMode,
};

use crate::kernel::event::KernelEvent;

/// The kernel platform.
pub struct KernelPlatform;

// SAFETY: each associated type meets its trait's contract (see the impls below); `sleep` is
// KeDelayExecutionThread, which returns after about the interval and is called only at
// IRQL <= APC_LEVEL by the core (the trait's contract on callers).
unsafe impl Platform for KernelPlatform {
    type Event = KernelEvent;
    type DispatchLock = SpinLock;
    type PassiveLock = PushLock;

    fn sleep(interval: Timeout) {
        let mut relative = interval.as_nt_relative();
        // SAFETY: a valid relative interval; kernel mode, not alertable, so the only status is
        // STATUS_SUCCESS.
        unsafe { KeDelayExecutionThread(KernelMode, FALSE, &raw mut relative) };
    }
}

// SAFETY: KeInitializeEvent / KeSetEvent / KeClearEvent / KeWaitForSingleObject give exactly the
// contract: set and clear are serialized by the dispatcher lock and synchronize with waiters;
// `wait` uses a finite relative timeout and maps STATUS_TIMEOUT to TimedOut explicitly.
unsafe impl RawEvent for KernelEvent {
    unsafe fn init(slot: *mut Self) {
        // SAFETY: `slot` is valid for writes (contract); KernelEvent is a transparent KEVENT cell.
        unsafe { slot.write(KernelEvent::zeroed()) };
        // SAFETY: just written, and not yet shared.
        unsafe { &*slot }.init();
    }

    fn set(&self) {
        KernelEvent::set(self);
    }

    fn clear(&self) {
        KernelEvent::clear(self);
    }

    fn wait(&self, timeout: Timeout) -> WaitOutcome {
        // A kernel-mode, non-alertable wait on an event returns STATUS_SUCCESS or STATUS_TIMEOUT;
        // anything else is reported as "not signalled", which never claims an unmet condition.
        KernelEvent::wait(self, timeout).unwrap_or(WaitOutcome::TimedOut)
    }
}

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

// SAFETY: `init` zeroes the word (what KeInitializeSpinLock does on x64); acquisition raises to
// DISPATCH_LEVEL and spins until exclusive; the guard releases with the saved IRQL. The Ke
// routines are full barriers, giving the release/acquire order.
unsafe impl RawDispatchLock for SpinLock {
    type Guard<'a> = SpinLockGuard<'a>;

    unsafe fn init(slot: *mut Self) {
        // SAFETY: `slot` is valid for writes (contract).
        unsafe { slot.write(SpinLock(UnsafeCell::new(0))) };
    }

    fn lock(&self) -> SpinLockGuard<'_> {
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

/// A FltMgr push lock (shared/exclusive), for IRQL <= APC_LEVEL. The Flt acquire routines enter
/// a critical region and the release leaves it.
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
