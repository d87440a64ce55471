//! Load and unload of the real vigil.sys.

mod common;

use vigil_kernel_sim::{Sim, SimConfig, UnloadKind, UnloadOutcome};

#[test]
fn vigil_loads_creates_its_port_and_unloads_cleanly() {
    let sim = Sim::new(SimConfig::default());
    let mut driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    assert_eq!(driver.entry_status(), Some(0), "{:?}", driver.violations());
    assert!(driver.has_port("\\VigilPort"), "DriverEntry creates \\VigilPort");
    assert_eq!(driver.unload(UnloadKind::Mandatory), Ok(UnloadOutcome::Unloaded));
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert!(report.pool.allocations >= 1, "the globals come from pool: {}", report.summary());
    assert_eq!(report.pool.allocations, report.pool.frees);
    for routine in ["FltRegisterFilter", "FltCreateCommunicationPort", "FltStartFiltering", "FltUnregisterFilter", "IoDeleteDevice"] {
        assert_eq!(report.routine_calls.get(routine), Some(&1), "{routine} once: {:?}", report.routine_calls);
    }
}
