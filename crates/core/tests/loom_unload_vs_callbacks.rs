//! loom model: unload racing callbacks in flight (RULES.md rule 2). Teardown (freeing the globals)
//! must come after every callback admitted by `try_enter` has dropped its guard, and no callback is
//! admitted after rundown has begun. The unload thread runs `UnloadGate::unload`, the function the
//! driver's FilterUnload calls, as an optional unload: it may be refused once (its bounded wait
//! expired, and the gate reopened) and tries again, so the stale-signal path is explored too.
//! Twins: `try_enter` that admits after rundown began; rundown that does not wait.
#![cfg(loom)]

mod common;

use loom::cell::UnsafeCell;
use loom::thread;
use std::num::NonZeroU32;
use std::pin::Pin;
use vigil_core::twin::{Removal, Sound, WithoutRundownRefuse, WithoutRundownWait};
use vigil_core::{
    EntryWait, LoomPlatform, Timeout, UnloadBounds, UnloadDecision, UnloadError, UnloadGate,
    UnloadKind,
};

const LIVE: u32 = 1;
const FREED: u32 = 0;
const BOUND: Timeout = Timeout::from_millis(1).unwrap();
const BOUNDS: UnloadBounds = UnloadBounds {
    entry: EntryWait {
        event: BOUND,
        probe_interval: BOUND,
        probe_attempts: NonZeroU32::new(1).unwrap(),
    },
    callbacks: BOUND,
};

struct Driver<R: Removal> {
    gate: Pin<Box<UnloadGate<LoomPlatform<R>>>>,
    globals: UnsafeCell<u32>,
}

fn callback<R: Removal>(driver: &Driver<R>) {
    if let Some(_guard) = driver.gate.try_enter() {
        driver.globals.with(|globals| {
            assert_eq!(unsafe { *globals }, LIVE, "callback ran after teardown");
        });
    }
}

fn model<R: Removal>(callbacks: usize) {
    let driver = common::Shared::new(Driver::<R> {
        gate: UnloadGate::new_boxed(),
        globals: UnsafeCell::new(LIVE),
    });
    // DriverEntry has completed and returned (its race with unload is the other model's).
    driver.gate.signal_entry_complete();
    let threads: Vec<_> = (0..callbacks)
        .map(|_| {
            let driver = driver.clone();
            thread::spawn(move || callback(&driver))
        })
        .collect();

    let mut attempts = 0;
    loop {
        attempts += 1;
        match driver
            .gate
            .unload(UnloadKind::Optional, || true, || true, BOUNDS)
        {
            UnloadDecision::TearDown => {
                driver
                    .globals
                    .with_mut(|globals| unsafe { *globals = FREED });
                assert!(driver.gate.try_enter().is_none(), "admitted after rundown");
                break;
            }
            UnloadDecision::Refused(UnloadError::CallbacksInFlight { remaining }) => {
                assert!(remaining > 0);
                if attempts == 2 {
                    break; // refused twice: the driver stays loaded
                }
                // Refused: `unload` has reopened the gate; try again.
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn teardown_waits_for_every_callback_in_flight() {
    let iterations = common::explore("unload_vs_callbacks/1_callback", common::EXHAUSTIVE, || {
        model::<Sound>(1)
    });
    assert!(iterations > 1);
    let iterations = common::explore(
        "unload_vs_callbacks/2_callbacks",
        common::EXHAUSTIVE,
        || model::<Sound>(2),
    );
    assert!(iterations > 1);
}

#[test]
fn twin_admitting_after_rundown_is_rejected() {
    common::expect_rejected(
        "unload_vs_callbacks/without_rundown_refuse",
        common::EXHAUSTIVE,
        &[
            "Causality violation",
            "callback ran after teardown",
            "admitted after rundown",
        ],
        || model::<WithoutRundownRefuse>(1),
    );
}

#[test]
fn twin_not_waiting_for_callbacks_is_rejected() {
    common::expect_rejected(
        "unload_vs_callbacks/without_rundown_wait",
        common::EXHAUSTIVE,
        &["Causality violation", "callback ran after teardown"],
        || model::<WithoutRundownWait>(1),
    );
}
