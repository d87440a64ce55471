//! loom model: unload racing `DriverEntry` (RULES.md rule 1). Unload must never tear down before
//! `DriverEntry` has signalled entry-complete *and* the probe says it has returned (the I/O manager
//! clears `DO_DEVICE_INITIALIZING` on the device object after `DriverEntry` returns, touching the
//! device object as it does). The unload thread runs `UnloadGate::unload`, the function the
//! driver's FilterUnload calls, as an optional unload (a refusal is an expired wait). Twin: unload
//! that skips the probe.
#![cfg(loom)]

mod common;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use std::num::NonZeroU32;
use std::pin::Pin;
use vigil_core::twin::{Removal, Sound, WithoutEntryProbe};
use vigil_core::{
    EntryWait, LoomPlatform, Timeout, UnloadBounds, UnloadDecision, UnloadError, UnloadGate,
    UnloadKind,
};

const BOUNDS: UnloadBounds = UnloadBounds {
    entry: EntryWait {
        event: Timeout::from_millis(1).unwrap(),
        probe_interval: Timeout::from_millis(1).unwrap(),
        probe_attempts: NonZeroU32::new(1).unwrap(),
    },
    callbacks: Timeout::from_millis(1).unwrap(),
};

struct Driver<R: Removal> {
    gate: Pin<Box<UnloadGate<LoomPlatform<R>>>>,
    /// A global DriverEntry sets up and unload tears down.
    globals: UnsafeCell<u32>,
    /// The device object: the I/O manager writes its flags after DriverEntry returns.
    device: UnsafeCell<u32>,
    /// `DO_DEVICE_INITIALIZING`, as the probe reads it.
    initializing: AtomicBool,
}

fn model<R: Removal>() {
    let driver = common::Shared::new(Driver::<R> {
        gate: UnloadGate::new_boxed(),
        globals: UnsafeCell::new(0),
        device: UnsafeCell::new(1),
        initializing: AtomicBool::new(true),
    });

    let entry = {
        let driver = driver.clone();
        thread::spawn(move || {
            driver.globals.with_mut(|globals| unsafe { *globals = 1 });
            driver.gate.signal_entry_complete();
            // DriverEntry returns; the I/O manager clears DO_DEVICE_INITIALIZING.
            driver.device.with_mut(|flags| unsafe { *flags = 0 });
            driver.initializing.store(false, Ordering::Release);
        })
    };

    let probe = || !driver.initializing.load(Ordering::Acquire);
    // DriverEntry succeeds in this model; its failure path is the gate's unit tests'.
    match driver
        .gate
        .unload(UnloadKind::Optional, probe, || true, BOUNDS)
    {
        UnloadDecision::TearDown => {
            // Teardown: free the globals, delete the device object.
            driver.globals.with_mut(|globals| unsafe {
                assert_eq!(
                    *globals, 1,
                    "teardown before DriverEntry set up the globals"
                );
                *globals = 0;
            });
            driver.device.with_mut(|flags| unsafe { *flags = u32::MAX });
        }
        UnloadDecision::Refused(
            UnloadError::EntryNotComplete | UnloadError::DriverEntryStillRunning,
        ) => {}
        other => panic!("unexpected {other:?}"),
    }
    entry.join().unwrap();
}

#[test]
fn unload_never_tears_down_before_driver_entry_returned() {
    let iterations = common::explore("unload_vs_entry", common::EXHAUSTIVE, model::<Sound>);
    assert!(iterations > 1);
}

#[test]
fn twin_without_probe_is_rejected() {
    common::expect_rejected(
        "unload_vs_entry/without_entry_probe",
        common::EXHAUSTIVE,
        &["Causality violation"],
        model::<WithoutEntryProbe>,
    );
}
