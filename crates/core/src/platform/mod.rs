//! The [`Platform`] trait: the few primitives the core's logic needs, with the contract every
//! implementation must meet. Implementations: [`StdPlatform`](crate::`StdPlatform`) (feature `std`),
//! `LoomPlatform` (`cfg(loom)`), and the kernel one in the driver crate (`KEVENT`, `KSPIN_LOCK`, `FltMgr`
//! push lock, `KeDelayExecutionThread`).
//!
//! Objects are initialized in place and never move afterwards (a `KEVENT`'s wait list points into the
//! object itself): each primitive has an `unsafe fn init(slot)` instead of a constructor, and the
//! core types that hold them are built in place too. Atomics are not part of the trait: the core
//! takes them from its facade module, which switches to loom's under `cfg(loom)`.

#[cfg(loom)]
pub(crate) mod loom;
#[cfg(feature = "std")]
pub(crate) mod std;

use crate::{Timeout, WaitOutcome};

/// The primitives of one execution environment.
///
/// # Safety
///
/// The core relies on this contract for memory safety (its `UnsafeCell` accesses and the ring's
/// byte ranges are justified by it), so an implementation must meet it exactly:
///
/// - [`Self::Event`] meets the contract of [`RawEvent`], [`Self::PassiveLock`] that of
///   [`RawPassiveLock`].
/// - [`Platform::sleep`] returns after roughly `interval` (early or late is allowed; the core never
///   relies on time for safety, only for progress). It may only be called where waiting is allowed
///   (kernel: IRQL `PASSIVE_LEVEL` or `APC_LEVEL`).
pub unsafe trait Platform: Sized + 'static {
    /// A notification event (kernel: `KEVENT`, `NotificationEvent`).
    type Event: RawEvent;
    /// A shared/exclusive lock for `PASSIVE_LEVEL` and `APC_LEVEL` (kernel: `FltMgr` push lock).
    /// Guards the client-port slot.
    type PassiveLock: RawPassiveLock;

    /// Sleeps for about `interval` (kernel: `KeDelayExecutionThread`, IRQL <= `APC_LEVEL`).
    fn sleep(interval: Timeout);

    /// The guard a loom twin removes (see `twin`); `None` for every real platform.
    #[cfg(loom)]
    #[doc(hidden)]
    const REMOVED_GUARD: Option<crate::twin::Guard> = None;
}

/// A notification event: once set it stays set, releasing every waiter, until cleared.
///
/// # Safety
///
/// - [`RawEvent::init`] leaves the event initialized and not signalled at `slot`.
/// - A call of [`RawEvent::set`] *happens before* every [`RawEvent::wait`] that returns
///   [`WaitOutcome::Signalled`] because of it (release/acquire, as the kernel dispatcher lock gives).
/// - `set` and `clear` calls on one event are totally ordered, and each *happens before* the ones
///   after it in that order (kernel: both run under the dispatcher lock).
/// - `wait` returns `Signalled` only if a `set` happened before it and no `clear` came between;
///   it returns [`WaitOutcome::TimedOut`] otherwise, after roughly the timeout (early or late is
///   allowed). It never waits without bound.
/// - `set` and `clear` may be called at IRQL <= `DISPATCH_LEVEL`, `wait` at IRQL <= `APC_LEVEL`.
/// - All methods may be called from any thread concurrently (hence `Send + Sync`).
pub unsafe trait RawEvent: Send + Sync {
    /// Initializes a not-signalled event at `slot`.
    ///
    /// # Safety
    /// `slot` is valid for writes and aligned. The object is never moved afterwards; it is dropped
    /// in place (or its memory freed, if it has no drop glue) only when no other reference remains.
    unsafe fn init(slot: *mut Self);
    /// Signals the event (kernel: `KeSetEvent`).
    fn set(&self);
    /// Resets the event (kernel: `KeClearEvent`).
    fn clear(&self);
    /// Waits until the event is signalled or `timeout` expires (kernel: `KeWaitForSingleObject`
    /// with a relative timeout, testing for `STATUS_TIMEOUT` explicitly).
    fn wait(&self, timeout: Timeout) -> WaitOutcome;
}

/// A shared/exclusive lock for `PASSIVE_LEVEL` and `APC_LEVEL`.
///
/// # Safety
///
/// - [`RawPassiveLock::init`] leaves the lock initialized and free at `slot`.
/// - While an exclusive guard lives, no other guard (shared or exclusive) of the lock exists; shared
///   guards may coexist. Dropping a guard releases it; every release *happens before* the
///   acquisitions it lets through.
/// - Both acquisitions may be called at IRQL <= `APC_LEVEL` and may wait (without a timeout: the core
///   bounds how long any holder keeps the lock). The core never moves a guard to another thread.
pub unsafe trait RawPassiveLock: Send + Sync {
    /// Proof that the lock is held shared; releases it on drop.
    type SharedGuard<'a>
    where
        Self: 'a;
    /// Proof that the lock is held exclusively; releases it on drop.
    type ExclusiveGuard<'a>
    where
        Self: 'a;
    /// Initializes a free lock at `slot`.
    ///
    /// # Safety
    /// As [`RawEvent::init`].
    unsafe fn init(slot: *mut Self);
    /// Acquires the lock shared (kernel: `FltAcquirePushLockSharedEx`, which also enters a critical
    /// region).
    fn lock_shared(&self) -> Self::SharedGuard<'_>;
    /// Acquires the lock exclusively (kernel: `FltAcquirePushLockExclusiveEx`).
    fn lock_exclusive(&self) -> Self::ExclusiveGuard<'_>;
}
