//! Normal kernel APCs and thread suspension, as far as a driver can tell them apart.
//!
//! `SuspendThread` (and a debugger's freeze) queues a normal kernel APC to the target thread;
//! the APC runs, and the thread blocks, as soon as normal kernel APCs are enabled for it: at
//! `PASSIVE_LEVEL` outside a critical region. A critical region (`KeEnterCriticalRegion`, and
//! the push-lock and resource routines that enter one) or an IRQL of `APC_LEVEL` or above keeps
//! them out (<https://learn.microsoft.com/windows-hardware/drivers/kernel/types-of-apcs>,
//! <https://learn.microsoft.com/windows-hardware/drivers/kernel/critical-regions-and-guarded-regions>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-keentercriticalregion>).
//!
//! With [`SimConfig::suspend`](crate::config::SimConfig::suspend) set, every emulated routine
//! boundary (a call's entry and its exit) of an application thread inside a filter callback is
//! a point where such an APC may be delivered: with the plan's probability the thread is
//! suspended there, for a random time or until the harness resumes everything at the end of
//! the cycle. Only application threads (`machine::state::mark_application_thread`) are
//! suspended: system threads and the unload thread belong to no application.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use vigil_sys::PASSIVE_LEVEL;

use crate::kernel::{Kernel, lock};
use crate::machine::state;

/// The run's suspensions.
#[derive(Debug, Default)]
pub(crate) struct Suspensions {
    /// The draws' state (xorshift), seeded from the plan.
    rng: Mutex<Option<u64>>,
    /// Set by [`Suspensions::resume_all`]: every suspended thread goes on, and no new one waits.
    resumed: Mutex<bool>,
    changed: Condvar,
    /// Suspensions so far.
    pub count: AtomicU64,
    /// Of those, the ones never resumed by their application (resumed by `resume_all`).
    pub never: AtomicU64,
    /// Threads suspended now until `resume_all`.
    pub parked: AtomicU64,
    /// The longest suspension so far, in microseconds.
    pub longest_us: AtomicU64,
}

/// What one draw decided.
enum Draw {
    Run,
    Suspend(Duration),
    Park,
}

impl Suspensions {
    fn draw(&self, k: &Kernel) -> Draw {
        let Some(plan) = k.config.suspend else {
            return Draw::Run;
        };
        let mut rng = lock(&self.rng);
        let mut next = || {
            let mut x = rng.unwrap_or(plan.seed | 1);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *rng = Some(x);
            // The top 53 bits as a fraction in [0, 1).
            #[expect(
                clippy::cast_precision_loss,
                reason = "53 bits fit an f64's mantissa exactly"
            )]
            let fraction = (x >> 11) as f64 / (1u64 << 53) as f64;
            fraction
        };
        if next() >= plan.rate {
            return Draw::Run;
        }
        if next() < plan.never_share {
            return Draw::Park;
        }
        Draw::Suspend(plan.max_delay.mul_f64(next()))
    }

    /// Resumes every suspended thread and lets no new suspension wait (end of a cycle).
    pub(crate) fn resume_all(&self) {
        *lock(&self.resumed) = true;
        self.changed.notify_all();
    }

    /// Threads suspended now until [`Suspensions::resume_all`].
    pub(crate) fn parked(&self) -> u64 {
        self.parked.load(Ordering::Acquire)
    }

    fn wait(&self, limit: Option<Duration>) {
        let started = Instant::now();
        let mut resumed = lock(&self.resumed);
        while !*resumed {
            let left = match limit {
                Some(limit) => match limit.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                },
                None => Duration::from_millis(50),
            };
            resumed = self
                .changed
                .wait_timeout(resumed, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(resumed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.longest_us.fetch_max(micros, Ordering::AcqRel);
    }
}

/// Whether a normal kernel APC would be delivered to the calling thread now: `PASSIVE_LEVEL`
/// and no critical region.
pub(crate) fn normal_kernel_apcs_enabled() -> bool {
    state::with(|s| s.irql.get() == PASSIVE_LEVEL && s.critical_regions.get() == 0)
}

/// Whether every APC (special kernel ones too) is disabled for the calling thread: IRQL at
/// `APC_LEVEL` or above (kernel-sim emulates no guarded region).
pub(crate) fn all_apcs_disabled() -> bool {
    state::with(|s| s.irql.get() >= vigil_sys::APC_LEVEL)
}

/// A boundary of `routine` on the calling thread: delivers a suspension drawn by the plan, if
/// the thread is an application thread inside a filter callback with normal kernel APCs enabled
/// (and `routine` is the plan's `only_at`, when it names one).
pub(crate) fn boundary(k: &Kernel, routine: &str) {
    let Some(plan) = k.config.suspend else {
        return;
    };
    if plan.only_at.is_some_and(|only| only != routine) {
        return;
    }
    let eligible = state::with(|s| {
        s.application_thread.get() && !s.system_thread.get() && !s.unload_thread.get() && {
            let callback = s.callback.get();
            callback.starts_with("Pre") || callback.starts_with("Post")
        }
    });
    if !eligible || !normal_kernel_apcs_enabled() {
        return;
    }
    let suspensions = &k.suspensions;
    match suspensions.draw(k) {
        Draw::Run => {}
        Draw::Suspend(delay) => {
            suspensions.count.fetch_add(1, Ordering::Relaxed);
            suspensions.wait(Some(delay));
        }
        Draw::Park => {
            suspensions.count.fetch_add(1, Ordering::Relaxed);
            suspensions.never.fetch_add(1, Ordering::Relaxed);
            suspensions.parked.fetch_add(1, Ordering::AcqRel);
            suspensions.wait(None);
            suspensions.parked.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
