//! Time and control for the core: the [`Clock`] it reads and sleeps on (injected, so tests run
//! the reconnect state machine without waiting), the [`Backoff`] between connection attempts,
//! and the [`ServiceControl`] through which Ctrl-C, the service control manager or a test asks
//! it to stop or to reload its policy. User mode, portable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Requests to a running core, shared between threads (clone it freely).
#[derive(Debug, Clone, Default)]
pub struct ServiceControl {
    inner: Arc<ControlInner>,
}

#[derive(Debug, Default)]
struct ControlInner {
    stop: AtomicBool,
    reload: AtomicBool,
    /// Wakes a sleeping backoff when a stop arrives.
    lock: Mutex<()>,
    wake: Condvar,
}

impl ServiceControl {
    /// A control with nothing requested.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the core to drain and stop. Safe from any thread (a signal handler thread, the
    /// service control handler).
    pub fn request_stop(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let _guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.wake.notify_all();
    }

    /// `true` once a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.inner.stop.load(Ordering::Acquire)
    }

    /// Asks the core to read its policy file again.
    pub fn request_reload(&self) {
        self.inner.reload.store(true, Ordering::Release);
    }

    /// Takes a pending reload request.
    pub fn take_reload(&self) -> bool {
        self.inner.reload.swap(false, Ordering::AcqRel)
    }

    /// Sleeps for `duration` or until a stop is requested; `true` when stopped.
    pub fn sleep_unless_stopped(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut guard = self
            .inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !self.stop_requested() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .inner
                .wake
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// The core's time source; `Sync` because the core's writer thread reads it too.
pub trait Clock: Sync {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Sleeps `duration`, returning early (with `true`) when `control` asks for a stop.
    fn sleep(&self, duration: Duration, control: &ServiceControl) -> bool;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration, control: &ServiceControl) -> bool {
        control.sleep_unless_stopped(duration)
    }
}

/// A clock that moves only when slept on, and remembers every sleep: lets a test check the
/// backoff sequence exactly, with no wall-clock time involved.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    state: Mutex<(Duration, Vec<Duration>)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock at an arbitrary start instant.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            state: Mutex::new((Duration::ZERO, Vec::new())),
        }
    }

    /// Moves time forward without a sleep.
    pub fn advance(&self, by: Duration) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 += by;
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    fn sleep(&self, duration: Duration, control: &ServiceControl) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 += duration;
        state.1.push(duration);
        control.stop_requested()
    }
}

/// Bounded exponential backoff between connection attempts: `initial`, doubling, capped at
/// `max`; reset after a successful connection.
///
/// Policy: 100 ms first, because an `fltmc unload`/`load` cycle takes a fraction of a second
/// and the driver keeps events in its ring meanwhile; 5 s at most, because every second the
/// service is away is a second of events filling (then overflowing) that ring, and a connect
/// attempt to an absent port costs next to nothing.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Default first delay.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
    /// Default cap.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(5);

    /// A backoff from `initial` to `max` (a `max` below `initial` is raised to it).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The delay before the next attempt; each call doubles the following one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the first delay (after a successful connection).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INITIAL, Self::DEFAULT_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let ms: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 700, 700, 700]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_stop_wakes_a_sleeper() {
        let control = ServiceControl::new();
        let other = control.clone();
        let sleeper =
            std::thread::spawn(move || other.sleep_unless_stopped(Duration::from_mins(10)));
        control.request_stop();
        assert!(
            sleeper.join().unwrap(),
            "the sleep ends because of the stop"
        );
    }

    #[test]
    fn reload_requests_are_taken_once() {
        let control = ServiceControl::new();
        assert!(!control.take_reload());
        control.request_reload();
        assert!(control.take_reload());
        assert!(!control.take_reload());
    }
}
