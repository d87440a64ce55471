//! The fault sweep over a whole cycle of the real vigil.sys: load, volumes attached, the
//! workload's callbacks, the client's connect and commands, unload; the N-th failable call
//! failed for every N until a run reaches none. Every run must end cleanly.

mod common;

use vigil_kernel_sim::scenario::{ScenarioConfig, sweep_scenario};

#[test]
fn every_injected_failure_in_a_cycle_with_io_and_commands_unwinds_cleanly() {
    let mut config = ScenarioConfig::vigil();
    config.files_per_thread = 2;
    let report =
        sweep_scenario(&common::vigil_image(), &config, 5_000, |_| {}).expect("vigil.sys loads");
    let violations: Vec<String> = report
        .violations()
        .iter()
        .map(|(n, v)| format!("run {n}: {v}"))
        .collect();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let last = report.runs.last().expect("runs");
    assert!(last.injected.is_none(), "the sweep ended by reaching no N");
    let beyond_entry = report
        .runs
        .iter()
        .filter_map(|r| r.injected.as_ref())
        .filter(|f| f.callback != "DriverEntry")
        .count();
    assert!(
        beyond_entry > 0,
        "failures were injected in callbacks too (depth {})",
        report.depth
    );
}
