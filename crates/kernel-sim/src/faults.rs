//! Fault injection: fail the N-th failable call, or fail calls at a seeded random rate.
//!
//! A *failable call* is a call of a routine that can fail for lack of resources on Windows:
//! pool allocation, device creation, thread creation, registry opens, filter registration,
//! security descriptors, port creation (and, in phase 2, context allocation and name queries).
//! Each emulated routine of that kind asks `FaultInjector::should_fail` first; a failed call
//! returns the routine's documented failure (null, `STATUS_INSUFFICIENT_RESOURCES`) without
//! side effects.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::report::InjectedFault;

/// Which failable calls to fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Fail the N-th failable call of the run (1-based).
    pub fail_nth: Option<u64>,
    /// Fail calls at random.
    pub random: Option<RandomFailures>,
}

/// Seeded random failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomFailures {
    /// The seed: the same seed and driver give the same failures.
    pub seed: u64,
    /// Probability of failing each failable call, per million.
    pub per_million: u32,
}

/// The per-run state of the plan.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    plan: FaultPlan,
    calls: AtomicU64,
    rng: Mutex<u64>,
    injected: Mutex<Vec<InjectedFault>>,
}

impl FaultInjector {
    pub(crate) fn new(plan: FaultPlan) -> Self {
        let seed = plan.random.map_or(0, |r| r.seed);
        Self {
            plan,
            calls: AtomicU64::new(0),
            rng: Mutex::new(seed ^ 0x9E37_79B9_7F4A_7C15),
            injected: Mutex::new(Vec::new()),
        }
    }

    /// Counts one failable call of `routine` and decides whether it fails; `status` describes
    /// the failure it will return, `callback` the driver entry point in progress.
    pub(crate) fn should_fail(&self, routine: &str, status: &str, callback: &str) -> bool {
        let ordinal = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = self.plan.fail_nth == Some(ordinal)
            || self.plan.random.is_some_and(|r| {
                let mut state = self
                    .rng
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // xorshift64*: deterministic for a seed and a call order.
                *state ^= *state >> 12;
                *state ^= *state << 25;
                *state ^= *state >> 27;
                let value = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                value % 1_000_000 < u64::from(r.per_million)
            });
        if fail {
            self.injected
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(InjectedFault {
                    ordinal,
                    routine: routine.to_owned(),
                    status: status.to_owned(),
                    callback: callback.to_owned(),
                });
        }
        fail
    }

    /// Failable calls made so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Failures injected so far.
    pub(crate) fn injected(&self) -> Vec<InjectedFault> {
        self.injected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
