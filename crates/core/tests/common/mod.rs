//! Shared by the loom model files: run a model with a preemption bound and count its iterations,
//! and run a broken twin expecting loom to reject it for a named reason.

#![allow(dead_code, reason = "each model file uses part of this module")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Preemption bound of the larger models, unless `LOOM_MAX_PREEMPTIONS` says otherwise.
pub const PREEMPTIONS: Option<usize> = Some(3);
/// A deeper bound, for the send-vs-close model.
pub const DEEP: Option<usize> = Some(4);
/// No preemption bound: the small models are explored exhaustively.
pub const EXHAUSTIVE: Option<usize> = None;

fn builder(preemptions: Option<usize>) -> loom::model::Builder {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = preemptions;
    }
    builder
}

/// Wraps `model` so that it counts its executions (a std atomic: it counts outside loom's view).
fn counted<F: Fn() + Sync + Send + 'static>(
    model: F,
) -> (Arc<AtomicUsize>, impl Fn() + Sync + Send + 'static) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    (count, move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    })
}

/// Runs `model` under loom; returns the number of executions explored. Panics if loom finds a bug.
pub fn explore<F>(name: &str, preemptions: Option<usize>, model: F) -> usize
where
    F: Fn() + Sync + Send + 'static,
{
    let (count, model) = counted(model);
    let started = Instant::now();
    builder(preemptions).check(model);
    let iterations = count.load(Ordering::SeqCst);
    eprintln!(
        "loom model {name}: {iterations} executions explored (preemption bound {:?}) in {:.1?}",
        builder(preemptions).preemption_bound,
        started.elapsed()
    );
    iterations
}

/// Runs a broken twin of a model; asserts loom rejects it with a panic whose message contains one
/// of `reasons`. Returns the number of executions before the rejection.
pub fn expect_rejected<F>(
    name: &str,
    preemptions: Option<usize>,
    reasons: &[&str],
    model: F,
) -> usize
where
    F: Fn() + Sync + Send + 'static,
{
    let (count, model) = counted(model);
    let outcome = catch_unwind(AssertUnwindSafe(|| builder(preemptions).check(model)));
    let iterations = count.load(Ordering::SeqCst);
    let payload = match outcome {
        Ok(()) => {
            panic!("broken twin {name} passed {iterations} executions: the model cannot fail")
        }
        Err(payload) => payload,
    };
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("<non-string panic>");
    assert!(
        reasons.iter().any(|reason| message.contains(reason)),
        "broken twin {name} failed for an unexpected reason: {message}"
    );
    eprintln!(
        "loom twin {name}: rejected after {iterations} executions: {}",
        message.lines().next().unwrap_or_default()
    );
    iterations
}

/// A model's shared state: `Arc`, except that a reference dropped while a thread unwinds from a
/// failure loom found leaks the state instead of dropping it (loom's objects inside cannot be
/// touched then; dropping them would abort the process instead of reporting the failure).
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::mem::forget(Arc::clone(&self.0));
        }
    }
}
