//! The loom [`Platform`] (`cfg(loom)` only): loom's mutex and rwlock, an event whose bounded wait
//! may either see the signal or time out (so models explore both), and a sleep that yields.
//! `LoomPlatform<R>` with `R` other than `Sound` is a broken twin (see `twin`).

use crate::sync::model::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, yield_now};
use crate::sync::{AtomicBool, Ordering};
use crate::twin::{Guard, Removal, Sound};
use crate::{Platform, RawDispatchLock, RawEvent, RawPassiveLock, Timeout, WaitOutcome};
use core::marker::PhantomData;

/// The loom platform; `R` names the guard a broken twin removes.
#[derive(Debug)]
pub struct LoomPlatform<R: Removal = Sound>(PhantomData<R>);

// SAFETY: the primitives below meet their contracts under loom's model; `sleep` yields, which loom
// treats as "let the others run".
unsafe impl<R: Removal> Platform for LoomPlatform<R> {
    type Event = LoomEvent;
    type DispatchLock = LoomLock;
    type PassiveLock = LoomSharedLock;

    fn sleep(_interval: Timeout) {
        yield_now();
    }

    const REMOVED_GUARD: Option<Guard> = R::GUARD;
}

/// An event on an atomic flag: `wait` checks, yields once, checks again, then times out.
#[derive(Debug)]
pub struct LoomEvent(AtomicBool);

// SAFETY: `set` and `clear` are read-modify-writes (so totally ordered, release and acquire), `wait` returns `Signalled` only after an acquire load reads
// `true`; the wait is two loads and a yield, so bounded.
unsafe impl RawEvent for LoomEvent {
    unsafe fn init(slot: *mut Self) {
        // SAFETY: the caller gives a writable, aligned slot.
        unsafe { slot.write(LoomEvent(AtomicBool::new(false))) };
    }

    fn set(&self) {
        self.0.swap(true, Ordering::AcqRel);
    }

    fn clear(&self) {
        self.0.swap(false, Ordering::AcqRel);
    }

    fn wait(&self, _timeout: Timeout) -> WaitOutcome {
        if self.0.load(Ordering::Acquire) {
            return WaitOutcome::Signalled;
        }
        yield_now();
        if self.0.load(Ordering::Acquire) {
            WaitOutcome::Signalled
        } else {
            WaitOutcome::TimedOut
        }
    }
}

/// loom's mutex.
#[derive(Debug)]
pub struct LoomLock(Mutex<()>);

// SAFETY: loom's mutex models mutual exclusion with release/acquire between holders.
unsafe impl RawDispatchLock for LoomLock {
    type Guard<'a> = MutexGuard<'a, ()>;

    unsafe fn init(slot: *mut Self) {
        // SAFETY: the caller gives a writable, aligned slot.
        unsafe { slot.write(LoomLock(Mutex::new(()))) };
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.0.lock().expect("loom mutex never poisons")
    }
}

/// loom's rwlock.
#[derive(Debug)]
pub struct LoomSharedLock(RwLock<()>);

// SAFETY: loom's rwlock models shared/exclusive exclusion with release/acquire between holders.
unsafe impl RawPassiveLock for LoomSharedLock {
    type SharedGuard<'a> = RwLockReadGuard<'a, ()>;
    type ExclusiveGuard<'a> = RwLockWriteGuard<'a, ()>;

    unsafe fn init(slot: *mut Self) {
        // SAFETY: the caller gives a writable, aligned slot.
        unsafe { slot.write(LoomSharedLock(RwLock::new(()))) };
    }

    fn lock_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().expect("loom rwlock never poisons")
    }

    fn lock_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().expect("loom rwlock never poisons")
    }
}
