//! The unload gate: the two unload races of `RULES.md` rule 1 and 2, in one object.
//!
//! - Unload against `DriverEntry`: `DriverEntry` calls [`UnloadGate::signal_entry_complete`] as its
//!   last step; unload calls [`UnloadGate::wait_until_entry_complete`], which waits (bounded) for
//!   that signal and then polls (bounded, with a short sleep) a probe the driver supplies: "has
//!   `DriverEntry` really returned?", i.e. is `DO_DEVICE_INITIALIZING` clear on the driver's device
//!   object. The I/O manager clears that bit only after `DriverEntry` has returned.
//! - Unload against callbacks in flight: every callback that touches the driver's globals outside the
//!   Filter Manager's own rundown (port callbacks, the delivery thread, work items) holds a
//!   [`GateGuard`] from [`UnloadGate::try_enter`]; [`UnloadGate::wait_for_callbacks`] refuses new
//!   guards and waits (bounded) until the last one is dropped (the shape of Rust-for-Linux's
//!   `Revocable`, and of the kernel's rundown protection).
//!
//! A wait that expires returns an [`UnloadError`]: the driver refuses a non-mandatory unload or, for
//! a mandatory one, waits again; it never tears down on an expired wait.
//!
//! IRQL: `try_enter`, guard drop and `signal_entry_complete` at <= `DISPATCH_LEVEL`; the waits at
//! `PASSIVE_LEVEL`.

use crate::sync::{AtomicUsize, Ordering, model_unwinding};
use crate::twin::{Guard, keeps};
use crate::{Platform, RawEvent, Timeout, WaitOutcome};
use core::marker::PhantomPinned;
use core::num::NonZeroU32;

/// Bit 0 of `rundown`: no new guard is admitted.
const CLOSED: usize = 1;
/// One guard in `rundown` (the count lives above bit 0).
const ONE_GUARD: usize = 2;

/// How many waits `wait_for_callbacks` makes at most (see there).
const STALE_SIGNAL_ROUNDS: usize = 3;

/// How long unload waits for `DriverEntry` to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryWait {
    /// Bound on the wait for the entry-complete event.
    pub event: Timeout,
    /// Sleep between two polls of the `DriverEntry`-returned probe.
    pub probe_interval: Timeout,
    /// How many times the probe is polled before unload gives up.
    pub probe_attempts: NonZeroU32,
}

impl EntryWait {
    /// Policy: 30 s for the event (`DriverEntry` does registry reads and allocations, nothing
    /// slower), then 10 ms polls for up to 5 s (the I/O manager clears `DO_DEVICE_INITIALIZING` a
    /// few instructions after `DriverEntry` returns).
    pub const DEFAULT: EntryWait = EntryWait {
        event: Timeout::from_millis(30_000).unwrap(),
        probe_interval: Timeout::from_millis(10).unwrap(),
        probe_attempts: NonZeroU32::new(500).unwrap(),
    };
}

/// Whether the Filter Manager lets the driver refuse an unload (`FLTFL_FILTER_UNLOAD_MANDATORY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnloadKind {
    /// May be refused (`STATUS_FLT_DO_NOT_DETACH`).
    Optional,
    /// Must not be refused: the driver waits instead.
    Mandatory,
}

impl UnloadKind {
    /// From the unload callback's flags test.
    pub const fn from_mandatory(mandatory: bool) -> Self {
        if mandatory {
            Self::Mandatory
        } else {
            Self::Optional
        }
    }
}

/// The bounds of one slice of each of the unload's waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnloadBounds {
    /// The waits for `DriverEntry`.
    pub entry: EntryWait,
    /// One wait for the callbacks in flight (see [`UnloadGate::wait_for_callbacks`]).
    pub callbacks: Timeout,
}

/// What [`UnloadGate::unload`] decided.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnloadDecision {
    /// `DriverEntry` completed, returned and succeeded; the gate is closed and no callback is in
    /// flight: tear down.
    TearDown,
    /// `DriverEntry` failed and unwinds itself: touch nothing, and report success.
    EntryFailed,
    /// An optional unload, refused because this wait expired; nothing has changed (the gate is
    /// open again).
    Refused(UnloadError),
}

/// Why unload may not proceed to teardown yet. Each is the result of a bounded wait that expired.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnloadError {
    /// `DriverEntry` has not signalled entry-complete within the bound.
    EntryNotComplete,
    /// `DriverEntry` signalled, but the probe still says it has not returned.
    DriverEntryStillRunning,
    /// Callbacks still hold guards; `remaining` of them when the wait expired.
    CallbacksInFlight {
        /// Guards alive when the wait expired.
        remaining: usize,
    },
}

/// The unload gate. Build it in place with [`UnloadGate::init_in_place`] (driver) or
/// `UnloadGate::new_boxed` (user mode); it never moves afterwards.
///
/// # Invariants
/// - `rundown` holds `2 * guards | closed`: `guards` is the number of live [`GateGuard`]s, `closed`
///   is set by `wait_for_callbacks` and cleared only by `reopen`.
/// - `callbacks_drained` is set by the guard whose drop takes `guards` to 0 while `closed`; it may
///   also be stale from an earlier closed period, so waiters re-check `rundown` after it fires.
/// - `entry_complete` is never cleared once set.
pub struct UnloadGate<P: Platform> {
    entry_complete: P::Event,
    callbacks_drained: P::Event,
    rundown: AtomicUsize,
    _pinned: PhantomPinned,
}

// SAFETY: every field is `Sync` (platform events by their contract, the atomic); the gate holds no
// thread-bound state.
unsafe impl<P: Platform> Sync for UnloadGate<P> {}
// SAFETY: as above, every field is `Send`.
unsafe impl<P: Platform> Send for UnloadGate<P> {}

impl<P: Platform> UnloadGate<P> {
    /// Initializes a gate at `slot`: entry not complete, no guard, open.
    ///
    /// # Safety
    /// `slot` is valid for writes and aligned for `Self`. The gate is never moved afterwards and is
    /// dropped in place (or its memory freed) only when no reference to it remains.
    pub unsafe fn init_in_place(slot: *mut Self) {
        // SAFETY: the caller gives a writable slot that will not move; the field is inside it.
        unsafe { P::Event::init(field_of!(slot.entry_complete)) };
        // SAFETY: as above.
        unsafe { P::Event::init(field_of!(slot.callbacks_drained)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.rundown), AtomicUsize::new(0)) };
        // `_pinned` is a zero-sized marker: nothing to write.
    }

    /// A gate in a pinned box (user mode).
    #[cfg(any(feature = "std", loom))]
    pub fn new_boxed() -> core::pin::Pin<std::boxed::Box<Self>> {
        let init = |slot| {
            // SAFETY: `boxed_in_place` passes a fresh, aligned, writable heap slot that it pins.
            unsafe { Self::init_in_place(slot) }
        };
        // SAFETY: `init` initializes the whole gate.
        unsafe { crate::boxed_in_place(init) }
    }

    /// Signals that `DriverEntry` has finished its work: its last statement (DESIGN step 6).
    pub fn signal_entry_complete(&self) {
        self.entry_complete.set();
    }

    /// Waits until `DriverEntry` has signalled entry-complete and `driver_entry_returned` says it has
    /// returned (`DO_DEVICE_INITIALIZING` clear), each bounded by `bounds`. `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`UnloadError::EntryNotComplete`] or [`UnloadError::DriverEntryStillRunning`] when the
    /// respective bound expires. Teardown must not start then.
    pub fn wait_until_entry_complete(
        &self,
        driver_entry_returned: impl Fn() -> bool,
        bounds: EntryWait,
    ) -> Result<(), UnloadError> {
        if self.entry_complete.wait(bounds.event) == WaitOutcome::TimedOut {
            return Err(UnloadError::EntryNotComplete);
        }
        if !keeps::<P>(Guard::EntryProbe) {
            return Ok(());
        }
        for _ in 0..bounds.probe_attempts.get() {
            if driver_entry_returned() {
                return Ok(());
            }
            P::sleep(bounds.probe_interval);
        }
        if driver_entry_returned() {
            Ok(())
        } else {
            Err(UnloadError::DriverEntryStillRunning)
        }
    }

    /// Admits a callback: a guard while the gate is open, `None` once rundown has begun.
    /// IRQL <= `DISPATCH_LEVEL`; never waits.
    pub fn try_enter(&self) -> Option<GateGuard<'_, P>> {
        let mut current = self.rundown.load(Ordering::Relaxed);
        loop {
            if current & CLOSED != 0 && keeps::<P>(Guard::RundownRefuse) {
                return None;
            }
            let next = current.checked_add(ONE_GUARD)?;
            match self.rundown.compare_exchange_weak(
                current,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(GateGuard { gate: self }),
                Err(seen) => current = seen,
            }
        }
    }

    /// Begins rundown (no new guard is admitted from now on) and waits until every guard has been
    /// dropped, for at most three waits of `bound`. Everything the guards' holders did *happens before* an `Ok`
    /// return. `PASSIVE_LEVEL`.
    ///
    /// # Errors
    /// [`UnloadError::CallbacksInFlight`] if guards remain when the bound expires. The gate stays
    /// closed; call [`UnloadGate::reopen`] to refuse the unload, or wait again.
    pub fn wait_for_callbacks(&self, bound: Timeout) -> Result<(), UnloadError> {
        self.rundown.fetch_or(CLOSED, Ordering::AcqRel);
        if !keeps::<P>(Guard::RundownWait) {
            return Ok(());
        }
        // A stale signal from an earlier closed period (a last guard that left before `reopen`) can
        // end a wait early: clear, re-check, wait again. The last guard sets the event only after
        // its count reached 0, and set/clear are ordered, so the clear cannot hide its signal from
        // the re-check. At most `STALE_SIGNAL_ROUNDS` waits of `bound`; more stale signals than that end in an
        // error, never in a wrong `Ok`.
        for _ in 0..STALE_SIGNAL_ROUNDS {
            if self.rundown.load(Ordering::Acquire) < ONE_GUARD {
                return Ok(());
            }
            if self.callbacks_drained.wait(bound) == WaitOutcome::TimedOut {
                break;
            }
            self.callbacks_drained.clear();
        }
        let remaining = self.rundown.load(Ordering::Acquire) / ONE_GUARD;
        if remaining == 0 {
            Ok(())
        } else {
            Err(UnloadError::CallbacksInFlight { remaining })
        }
    }

    /// Reopens the gate after a refused unload: callbacks are admitted again.
    pub fn reopen(&self) {
        self.rundown.fetch_and(!CLOSED, Ordering::AcqRel);
    }

    /// The unload sequence of DESIGN.md ("FilterUnload", steps 1 and 2, and the callbacks'
    /// rundown), as the driver runs it and the loom models check it:
    ///
    /// 1. [`UnloadGate::wait_until_entry_complete`] with `driver_entry_returned`;
    /// 2. if `entry_succeeded()` says `DriverEntry` failed, [`UnloadDecision::EntryFailed`]: it
    ///    unwinds (and unregisters) itself, so unload touches nothing;
    /// 3. [`UnloadGate::wait_for_callbacks`].
    ///
    /// Policy: an expired wait refuses an [`UnloadKind::Optional`] unload (the gate is reopened
    /// when it had been closed, so nothing has changed); a [`UnloadKind::Mandatory`] one is never
    /// refused: it waits again, in bounded slices, for conditions that `DriverEntry` and the
    /// callbacks reach in bounded time. `PASSIVE_LEVEL`.
    pub fn unload(
        &self,
        kind: UnloadKind,
        driver_entry_returned: impl Fn() -> bool,
        entry_succeeded: impl FnOnce() -> bool,
        bounds: UnloadBounds,
    ) -> UnloadDecision {
        loop {
            match self.wait_until_entry_complete(&driver_entry_returned, bounds.entry) {
                Ok(()) => break,
                Err(error) if kind == UnloadKind::Optional => {
                    return UnloadDecision::Refused(error);
                }
                Err(_) => {}
            }
        }
        self.unload_after_entry(kind, entry_succeeded, bounds.callbacks)
    }

    /// Steps 2 and 3 of [`UnloadGate::unload`] alone, for a caller that has already waited for
    /// `DriverEntry` (and for the driver's `twin-unload-no-wait` broken twin, which skips that
    /// wait). `PASSIVE_LEVEL`.
    pub fn unload_after_entry(
        &self,
        kind: UnloadKind,
        entry_succeeded: impl FnOnce() -> bool,
        callbacks: Timeout,
    ) -> UnloadDecision {
        if !entry_succeeded() {
            return UnloadDecision::EntryFailed;
        }
        loop {
            match self.wait_for_callbacks(callbacks) {
                Ok(()) => return UnloadDecision::TearDown,
                Err(error) if kind == UnloadKind::Optional => {
                    self.reopen();
                    return UnloadDecision::Refused(error);
                }
                Err(_) => {}
            }
        }
    }

    /// Number of guards alive now (statistics only: it may change at once).
    pub fn callbacks_in_flight(&self) -> usize {
        self.rundown.load(Ordering::Relaxed) / ONE_GUARD
    }
}

/// A callback's admission through the gate; the gate's rundown waits until it is dropped.
/// Keep it for as long as the callback touches driver globals.
#[must_use = "the callback is admitted only while the guard lives"]
pub struct GateGuard<'a, P: Platform> {
    gate: &'a UnloadGate<P>,
}

impl<P: Platform> core::fmt::Debug for UnloadGate<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UnloadGate")
            .field("rundown", &self.rundown)
            .finish_non_exhaustive()
    }
}

impl<P: Platform> core::fmt::Debug for GateGuard<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GateGuard").finish_non_exhaustive()
    }
}

impl<P: Platform> Drop for GateGuard<'_, P> {
    fn drop(&mut self) {
        if model_unwinding() {
            return;
        }
        let before = self.gate.rundown.fetch_sub(ONE_GUARD, Ordering::AcqRel);
        if before == CLOSED | ONE_GUARD {
            self.gate.callbacks_drained.set();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{EntryWait, UnloadBounds, UnloadDecision, UnloadError, UnloadGate, UnloadKind};
    use crate::{StdPlatform, Timeout};
    use core::num::NonZeroU32;
    use core::sync::atomic::{AtomicU32, Ordering};

    const SHORT: Timeout = Timeout::from_millis(5).unwrap();
    const QUICK: EntryWait = EntryWait {
        event: SHORT,
        probe_interval: Timeout::from_millis(1).unwrap(),
        probe_attempts: NonZeroU32::new(3).unwrap(),
    };

    #[test]
    fn unload_before_entry_complete_is_refused() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        assert_eq!(
            gate.wait_until_entry_complete(|| true, QUICK),
            Err(UnloadError::EntryNotComplete)
        );
        gate.signal_entry_complete();
        assert_eq!(gate.wait_until_entry_complete(|| true, QUICK), Ok(()));
    }

    #[test]
    fn probe_is_polled_until_it_clears_and_bounded() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        gate.signal_entry_complete();
        let polls = AtomicU32::new(0);
        let never = || {
            polls.fetch_add(1, Ordering::Relaxed);
            false
        };
        assert_eq!(
            gate.wait_until_entry_complete(never, QUICK),
            Err(UnloadError::DriverEntryStillRunning)
        );
        assert_eq!(
            polls.load(Ordering::Relaxed),
            4,
            "three polls with sleeps, then a last look"
        );
        polls.store(0, Ordering::Relaxed);
        let third = || polls.fetch_add(1, Ordering::Relaxed) >= 2;
        assert_eq!(gate.wait_until_entry_complete(third, QUICK), Ok(()));
        assert_eq!(polls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn rundown_refuses_new_guards_and_waits_for_old_ones() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        let first = gate.try_enter().expect("open");
        let second = gate.try_enter().expect("open");
        assert_eq!(gate.callbacks_in_flight(), 2);
        assert_eq!(
            gate.wait_for_callbacks(SHORT),
            Err(UnloadError::CallbacksInFlight { remaining: 2 })
        );
        assert!(
            gate.try_enter().is_none(),
            "closed while rundown is pending"
        );
        drop(first);
        assert_eq!(
            gate.wait_for_callbacks(SHORT),
            Err(UnloadError::CallbacksInFlight { remaining: 1 })
        );
        drop(second);
        assert_eq!(gate.wait_for_callbacks(SHORT), Ok(()));
        assert!(gate.try_enter().is_none());
    }

    #[test]
    fn reopen_after_refused_unload_and_stale_signal() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        let first = gate.try_enter().expect("open");
        assert!(gate.wait_for_callbacks(SHORT).is_err());
        // The last guard leaves while closed: it signals, and nobody consumes the signal.
        drop(first);
        gate.reopen();
        let late = gate.try_enter().expect("reopened");
        // The stale signal must not let rundown pass `late`.
        assert_eq!(
            gate.wait_for_callbacks(SHORT),
            Err(UnloadError::CallbacksInFlight { remaining: 1 })
        );
        gate.reopen();
        let other = gate.try_enter().expect("reopened");
        drop(late);
        assert_eq!(
            gate.wait_for_callbacks(SHORT),
            Err(UnloadError::CallbacksInFlight { remaining: 1 })
        );
        drop(other);
        assert_eq!(gate.wait_for_callbacks(SHORT), Ok(()));
    }

    const BOUNDS: UnloadBounds = UnloadBounds {
        entry: QUICK,
        callbacks: SHORT,
    };

    #[test]
    fn optional_unload_is_refused_by_each_expired_wait_and_changes_nothing() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        let optional = UnloadKind::Optional;
        assert_eq!(
            gate.unload(optional, || true, || true, BOUNDS),
            UnloadDecision::Refused(UnloadError::EntryNotComplete)
        );
        gate.signal_entry_complete();
        assert_eq!(
            gate.unload(optional, || false, || true, BOUNDS),
            UnloadDecision::Refused(UnloadError::DriverEntryStillRunning)
        );
        let guard = gate.try_enter().expect("open");
        assert_eq!(
            gate.unload(optional, || true, || true, BOUNDS),
            UnloadDecision::Refused(UnloadError::CallbacksInFlight { remaining: 1 })
        );
        let reopened = gate.try_enter();
        assert!(reopened.is_some(), "a refused unload reopens the gate");
        drop((guard, reopened));
        assert_eq!(
            gate.unload(optional, || true, || true, BOUNDS),
            UnloadDecision::TearDown
        );
        assert!(gate.try_enter().is_none(), "closed for the teardown");
    }

    #[test]
    fn failed_entry_is_left_to_unwind_itself() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        gate.signal_entry_complete();
        assert_eq!(
            gate.unload(UnloadKind::Mandatory, || true, || false, BOUNDS),
            UnloadDecision::EntryFailed
        );
        assert!(gate.try_enter().is_some(), "the gate was not closed");
    }

    #[test]
    fn mandatory_unload_is_never_refused_it_waits() {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        let returned = std::sync::atomic::AtomicBool::new(false);
        let guard = gate.try_enter().expect("open");
        let (gate, returned) = (&*gate, &returned);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                // Several expired slices of each wait pass before DriverEntry ends and the
                // callback leaves.
                std::thread::sleep(std::time::Duration::from_millis(30));
                gate.signal_entry_complete();
                std::thread::sleep(std::time::Duration::from_millis(30));
                returned.store(true, Ordering::Release);
                std::thread::sleep(std::time::Duration::from_millis(30));
                drop(guard);
            });
            let decision = gate.unload(
                UnloadKind::Mandatory,
                || returned.load(Ordering::Acquire),
                || true,
                BOUNDS,
            );
            assert_eq!(decision, UnloadDecision::TearDown);
            assert!(returned.load(Ordering::Acquire));
            assert_eq!(gate.callbacks_in_flight(), 0);
        });
        assert_eq!(UnloadKind::from_mandatory(true), UnloadKind::Mandatory);
        assert_eq!(UnloadKind::from_mandatory(false), UnloadKind::Optional);
    }

    /// A std platform whose event records every wait's outcome, per thread, so tests can check that
    /// the gate waits exactly when it must (a missing wake-up would otherwise only cost time).
    mod counted {
        use crate::platform::std::{StdEvent, StdSharedLock};
        use crate::{Platform, RawEvent, StdPlatform, Timeout, WaitOutcome};
        use std::cell::RefCell;
        use std::vec::Vec;

        std::thread_local! {
            static WAITS: RefCell<Vec<WaitOutcome>> = const { RefCell::new(Vec::new()) };
        }

        /// The waits this thread made since the last call.
        pub fn take_waits() -> Vec<WaitOutcome> {
            WAITS.with(|waits| core::mem::take(&mut *waits.borrow_mut()))
        }

        pub enum Counted {}

        // SAFETY: delegates to `StdPlatform`'s primitives, which meet the contract.
        unsafe impl Platform for Counted {
            type Event = CountedEvent;
            type PassiveLock = StdSharedLock;

            fn sleep(interval: Timeout) {
                StdPlatform::sleep(interval);
            }
        }

        #[repr(transparent)]
        pub struct CountedEvent(StdEvent);

        // SAFETY: delegates to `StdEvent`, which meets the contract; recording changes nothing.
        unsafe impl RawEvent for CountedEvent {
            unsafe fn init(slot: *mut Self) {
                // SAFETY: `CountedEvent` is a transparent wrapper: same layout, same slot contract.
                unsafe { StdEvent::init(slot.cast()) };
            }

            fn set(&self) {
                self.0.set();
            }

            fn clear(&self) {
                self.0.clear();
            }

            fn wait(&self, timeout: Timeout) -> WaitOutcome {
                let outcome = self.0.wait(timeout);
                WAITS.with(|waits| waits.borrow_mut().push(outcome));
                outcome
            }
        }
    }

    #[test]
    fn rundown_waits_only_when_it_must() {
        use crate::WaitOutcome::{Signalled, TimedOut};
        use counted::{Counted, take_waits};
        let gate = UnloadGate::<Counted>::new_boxed();
        assert_eq!(gate.wait_for_callbacks(SHORT), Ok(()));
        assert_eq!(take_waits(), [], "no guard: no wait");

        gate.reopen();
        let guard = gate.try_enter().unwrap();
        assert_eq!(
            gate.wait_for_callbacks(SHORT),
            Err(UnloadError::CallbacksInFlight { remaining: 1 })
        );
        assert_eq!(take_waits(), [TimedOut], "one bounded wait, then the error");

        // The last guard leaving wakes the waiter: no timeout needed.
        let long = Timeout::from_millis(60_000).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                std::thread::sleep(core::time::Duration::from_millis(20));
                drop(guard);
            });
            assert_eq!(gate.wait_for_callbacks(long), Ok(()));
        });
        assert_eq!(take_waits(), [Signalled]);

        // A stale signal (the last guard left, while closed, after the wait gave up) ends one wait
        // early; the gate re-checks and waits again.
        gate.reopen();
        let first = gate.try_enter().unwrap();
        assert!(gate.wait_for_callbacks(SHORT).is_err());
        drop(first);
        gate.reopen();
        let late = gate.try_enter().unwrap();
        let _ = take_waits();
        assert_eq!(
            gate.wait_for_callbacks(SHORT),
            Err(UnloadError::CallbacksInFlight { remaining: 1 })
        );
        assert_eq!(take_waits(), [Signalled, TimedOut]);
        drop(late);
        assert_eq!(gate.wait_for_callbacks(SHORT), Ok(()));
    }
}
