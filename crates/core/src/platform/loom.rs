//! The loom [`Platform`] (`cfg(loom)` only): loom's mutex and rwlock, an event whose bounded wait
//! may either see the signal or time out (so models explore both), and a sleep that yields.
//! `LoomPlatform<R>` with `R` other than `Sound` is a broken twin (see `twin`).

use crate::sync::model::{RwLock, RwLockReadGuard, RwLockWriteGuard, yield_now};
use crate::sync::{AtomicBool, AtomicUsize, Ordering};
use crate::twin::{Guard, Removal, Sound};
use crate::{Platform, RawEvent, RawPassiveLock, Timeout, WaitOutcome};
use core::marker::PhantomData;

/// The loom platform; `R` names the guard a broken twin removes.
#[derive(Debug)]
pub struct LoomPlatform<R: Removal = Sound>(PhantomData<R>);

// SAFETY: the primitives below meet their contracts under loom's model; `sleep` yields, which loom
// treats as "let the others run".
unsafe impl<R: Removal> Platform for LoomPlatform<R> {
    type Event = LoomEvent;
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

/// loom's rwlock, with the one property of a Windows push lock that loom's lacks made checkable:
/// a new shared acquirer waits as soon as an exclusive acquirer is queued (fairness,
/// <https://learn.microsoft.com/windows-hardware/drivers/kernel/push-locks>). The slot promises
/// that no shared acquire ever meets a writer (waiting or holding: RULES.md rule 27, a send never
/// waits behind a close), so a shared acquire that does is a failed model.
#[derive(Debug)]
pub struct LoomSharedLock {
    lock: RwLock<()>,
    /// Exclusive acquirers waiting or holding.
    writers: AtomicUsize,
}

/// An exclusive hold; counts its writer until dropped.
#[derive(Debug)]
pub struct LoomExclusiveGuard<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
    writers: &'a AtomicUsize,
}

impl Drop for LoomExclusiveGuard<'_> {
    fn drop(&mut self) {
        self.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

// SAFETY: loom's rwlock models shared/exclusive exclusion with release/acquire between holders;
// the writer count only adds a check.
unsafe impl RawPassiveLock for LoomSharedLock {
    type SharedGuard<'a> = RwLockReadGuard<'a, ()>;
    type ExclusiveGuard<'a> = LoomExclusiveGuard<'a>;

    unsafe fn init(slot: *mut Self) {
        let lock = LoomSharedLock {
            lock: RwLock::new(()),
            writers: AtomicUsize::new(0),
        };
        // SAFETY: the caller gives a writable, aligned slot.
        unsafe { slot.write(lock) };
    }

    fn lock_shared(&self) -> RwLockReadGuard<'_, ()> {
        assert_eq!(
            self.writers.load(Ordering::SeqCst),
            0,
            "a shared acquire met a writer: on Windows it waits behind it (push-lock fairness)"
        );
        self.lock.read().expect("loom rwlock never poisons")
    }

    fn lock_exclusive(&self) -> LoomExclusiveGuard<'_> {
        self.writers.fetch_add(1, Ordering::SeqCst);
        LoomExclusiveGuard {
            _guard: self.lock.write().expect("loom rwlock never poisons"),
            writers: &self.writers,
        }
    }
}
