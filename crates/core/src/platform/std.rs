//! The user-mode [`Platform`]: `std::sync` locks and a condition-variable event. Used by the service
//! and by the tests and benchmarks. Lock poisoning is ignored: the locks guard no data of their own.

use crate::{Platform, RawEvent, RawPassiveLock, Timeout, WaitOutcome};
use std::sync::{
    Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// The `std` platform.
#[derive(Debug)]
pub enum StdPlatform {}

// SAFETY: the three primitives below meet their traits' contracts (see each impl), and `sleep` is
// `std::thread::sleep`, which returns after at least `interval`.
unsafe impl Platform for StdPlatform {
    type Event = StdEvent;
    type PassiveLock = StdSharedLock;

    fn sleep(interval: Timeout) {
        std::thread::sleep(interval.as_duration());
    }
}

/// A notification event on `Mutex<bool>` and `Condvar`.
#[derive(Debug)]
pub struct StdEvent {
    signalled: Mutex<bool>,
    changed: Condvar,
}

impl StdEvent {
    fn state(&self) -> MutexGuard<'_, bool> {
        self.signalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// SAFETY: the state lives under a mutex, so `set` (unlock after writing `true`) happens before a
// `wait` that reads `true` (lock); `wait` returns `Signalled` only after reading `true` and
// otherwise returns after `wait_timeout_while` gives up, which is bounded by the timeout.
unsafe impl RawEvent for StdEvent {
    unsafe fn init(slot: *mut Self) {
        let event = StdEvent {
            signalled: Mutex::new(false),
            changed: Condvar::new(),
        };
        // SAFETY: the caller gives a writable, aligned slot.
        unsafe { slot.write(event) };
    }

    fn set(&self) {
        *self.state() = true;
        self.changed.notify_all();
    }

    fn clear(&self) {
        *self.state() = false;
    }

    fn wait(&self, timeout: Timeout) -> WaitOutcome {
        let state = self.state();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout.as_duration(), |signalled| !*signalled)
            .unwrap_or_else(PoisonError::into_inner);
        if *state {
            WaitOutcome::Signalled
        } else {
            WaitOutcome::TimedOut
        }
    }
}

/// The slot's lock: an `RwLock<()>`.
#[derive(Debug)]
pub struct StdSharedLock(RwLock<()>);

// SAFETY: `RwLock` excludes writers from everyone and lets readers coexist, with release/acquire
// between holders; its guards release on drop.
unsafe impl RawPassiveLock for StdSharedLock {
    type SharedGuard<'a> = RwLockReadGuard<'a, ()>;
    type ExclusiveGuard<'a> = RwLockWriteGuard<'a, ()>;

    unsafe fn init(slot: *mut Self) {
        // SAFETY: the caller gives a writable, aligned slot.
        unsafe { slot.write(StdSharedLock(RwLock::new(()))) };
    }

    fn lock_shared(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::StdEvent;
    use crate::{RawEvent, Timeout, WaitOutcome};
    use core::mem::MaybeUninit;

    #[test]
    fn event_is_a_notification_event() {
        let mut slot = MaybeUninit::<StdEvent>::uninit();
        // SAFETY: a local slot, never moved while initialized, dropped below.
        unsafe { StdEvent::init(slot.as_mut_ptr()) };
        // SAFETY: initialized just above.
        let event = unsafe { slot.assume_init_ref() };
        let short = Timeout::from_millis(1).unwrap();
        assert_eq!(event.wait(short), WaitOutcome::TimedOut);
        event.set();
        assert_eq!(event.wait(short), WaitOutcome::Signalled);
        assert_eq!(
            event.wait(short),
            WaitOutcome::Signalled,
            "stays set for every waiter"
        );
        event.clear();
        assert_eq!(event.wait(short), WaitOutcome::TimedOut);
        // A waiter is released by a `set` from another thread well before its timeout.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(core::time::Duration::from_millis(10));
                event.set();
            });
            assert_eq!(
                event.wait(Timeout::from_millis(60_000).unwrap()),
                WaitOutcome::Signalled
            );
        });
        // SAFETY: initialized, no reference remains.
        unsafe { slot.assume_init_drop() };
    }
}
