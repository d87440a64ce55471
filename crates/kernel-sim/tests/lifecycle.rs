//! Load and unload of the real vigil.sys: a clean cycle, many cycles in one process, optional
//! unload, and unload racing DriverEntry.

mod common;

use vigil_kernel_sim::{Sim, SimConfig, UnloadKind, UnloadOutcome};

#[test]
fn vigil_loads_creates_its_port_and_unloads_cleanly() {
    let sim = Sim::new(SimConfig::default());
    let mut driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    assert!(
        driver.has_port("\\VigilPort"),
        "DriverEntry creates \\VigilPort"
    );
    assert_eq!(
        driver.unload(UnloadKind::Mandatory),
        Ok(UnloadOutcome::Unloaded)
    );
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert!(
        report.pool.allocations >= 1,
        "the globals come from pool: {}",
        report.summary()
    );
    assert_eq!(report.pool.allocations, report.pool.frees);
    for routine in [
        "FltRegisterFilter",
        "FltCreateCommunicationPort",
        "FltStartFiltering",
        "FltUnregisterFilter",
        "IoDeleteDevice",
    ] {
        assert_eq!(
            report.routine_calls.get(routine),
            Some(&1),
            "{routine} once: {:?}",
            report.routine_calls
        );
    }
}

#[test]
fn a_hundred_load_unload_cycles_in_one_process() {
    let sim = Sim::new(SimConfig::default());
    let image = common::vigil_image();
    let mut bases = std::collections::HashSet::new();
    for cycle in 0..100 {
        let mut driver = sim.load(&image).expect("vigil.sys loads");
        assert_eq!(
            driver.entry_status(),
            Some(0),
            "cycle {cycle}: {:#?}",
            driver.violations()
        );
        assert_eq!(
            driver.unload(UnloadKind::Mandatory),
            Ok(UnloadOutcome::Unloaded),
            "cycle {cycle}"
        );
        let report = driver.finish();
        assert!(report.is_clean(), "cycle {cycle}: {}", report.summary());
        bases.insert(report.image.clone());
    }
}

#[test]
fn finish_without_unload_unloads_mandatorily() {
    let sim = Sim::new(SimConfig::default());
    let driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert!(
        report
            .unload
            .as_deref()
            .is_some_and(|u| u.starts_with("unloaded")),
        "{}",
        report.summary()
    );
}

#[test]
fn optional_unload_is_accepted_or_refused_with_an_error_status() {
    let sim = Sim::new(SimConfig::default());
    let mut driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    match driver.unload(UnloadKind::Optional) {
        Ok(UnloadOutcome::Unloaded) => {}
        Ok(UnloadOutcome::Refused(status)) => {
            assert!(status < 0, "a refusal is an error status");
            assert!(driver.is_loaded());
            assert_eq!(
                driver.unload(UnloadKind::Mandatory),
                Ok(UnloadOutcome::Unloaded)
            );
        }
        Err(e) => panic!("unload failed: {e}"),
    }
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn unload_racing_driver_entry_waits_for_it() {
    for kind in [UnloadKind::Mandatory, UnloadKind::Optional] {
        let sim = Sim::new(SimConfig {
            race_unload_on_register: Some(kind),
            ..SimConfig::default()
        });
        let mut driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
        assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
        // The racing unload already ran (or is running); unload() collects its outcome.
        match driver.unload(kind) {
            Ok(UnloadOutcome::Unloaded) => {}
            Ok(UnloadOutcome::Refused(_)) if kind == UnloadKind::Optional => {
                assert_eq!(
                    driver.unload(UnloadKind::Mandatory),
                    Ok(UnloadOutcome::Unloaded)
                );
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        let report = driver.finish();
        assert!(report.is_clean(), "{kind:?}: {}", report.summary());
        assert_eq!(
            report.routine_calls.get("FltUnregisterFilter"),
            Some(&1),
            "{kind:?}: {:?}",
            report.routine_calls
        );
    }
}
