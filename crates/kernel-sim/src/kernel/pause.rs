//! Holding a driver callback mid-flight, for tests that need a callback to be running while
//! something else happens (an unload, a disconnect), every run rather than when the scheduler
//! allows.
//!
//! [`SimConfig::pause_at`](crate::SimConfig::pause_at) names a routine and the driver entry
//! point calling it; the first such call blocks inside the emulation, before the routine does
//! anything, until the test releases it through an [`Observer`]. The observer also tells when
//! the unload thread has blocked in a wait, and what the driver has called so far.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::kernel::routine::Routine;
use crate::kernel::{Kernel, lock};
use crate::report::ViolationKind;

/// Where the pause stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Stage {
    /// Waiting for the first matching call.
    #[default]
    Armed,
    /// A call is held.
    Holding,
    /// Released (or never armed): calls go through.
    Released,
}

/// The pause of one kernel.
#[derive(Default)]
pub(crate) struct Pause {
    /// The routine `SimConfig::pause_at` names, once the layer that knows the routine tables
    /// has looked it up ([`Pause::arm`]); unset, nothing is held.
    routine: OnceLock<Routine>,
    stage: Mutex<Stage>,
    changed: Condvar,
}

impl Pause {
    /// Holds this call if it is the first one at the configured point (called by `emulate`).
    pub(crate) fn check(k: &Kernel, routine: Routine) {
        let Some(point) = k.config.pause_at else {
            return;
        };
        if k.pause.routine.get() != Some(&routine) {
            return;
        }
        let callback = crate::machine::state::with(|s| s.callback.get());
        if point.callback != callback {
            return;
        }
        let routine = routine.name();
        let pause = &k.pause;
        let mut stage = lock(&pause.stage);
        if *stage != Stage::Armed {
            return;
        }
        *stage = Stage::Holding;
        pause.changed.notify_all();
        let (mut stage, outcome) = pause
            .changed
            .wait_timeout_while(stage, k.config.hang_timeout, |s| *s == Stage::Holding)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if outcome.timed_out() {
            *stage = Stage::Released;
            drop(stage);
            k.violation(
                ViolationKind::Internal,
                "kernel-sim",
                format!(
                    "the test never released {routine} held in {callback} (after {:?})",
                    k.config.hang_timeout
                ),
            );
        }
    }

    /// Arms the pause at `routine` (the routine `SimConfig::pause_at` names; `None` when no
    /// emulated routine has that name, which never holds anything, as before).
    pub(crate) fn arm(&self, routine: Option<Routine>) {
        if let Some(routine) = routine {
            let _ = self.routine.set(routine);
        }
    }

    fn wait_for(&self, wanted: Stage, limit: Duration) -> bool {
        let (guard, outcome) = self
            .changed
            .wait_timeout_while(lock(&self.stage), limit, |stage| *stage != wanted)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(guard);
        !outcome.timed_out()
    }

    fn release(&self) {
        *lock(&self.stage) = Stage::Released;
        self.changed.notify_all();
    }
}

/// A handle on a loaded driver's kernel for another thread of a test: the pause, the unload
/// thread's waits, the routine calls so far. See [`Driver::observer`](crate::Driver::observer).
#[derive(Clone)]
pub struct Observer {
    kernel: Arc<Kernel>,
}

impl Observer {
    pub(crate) fn new(kernel: Arc<Kernel>) -> Self {
        Self { kernel }
    }

    /// Waits until a call is held at the configured pause point; false after `limit`.
    pub fn wait_until_paused(&self, limit: Duration) -> bool {
        self.kernel.pause.wait_for(Stage::Holding, limit)
    }

    /// Lets the held call (and every later one) go on.
    pub fn release(&self) {
        self.kernel.pause.release();
    }

    /// Waits until the unload callback's thread has blocked in a wait at least `count` times in
    /// all (a wait that is satisfied at once does not count); false after `limit`.
    pub fn wait_until_unload_blocked(&self, count: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.kernel.lifecycle.unload_blocks.load(Ordering::Acquire) < count {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Calls per emulated routine so far.
    pub fn routine_calls(&self) -> BTreeMap<String, u64> {
        self.kernel.routine_calls()
    }
}
