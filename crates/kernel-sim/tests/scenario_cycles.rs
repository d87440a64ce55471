//! Scenarios on the real vigil.sys (see `vigil_kernel_sim::scenario`): a thousand load/unload
//! cycles with I/O and a port client (in the test and in the measurement configuration),
//! service churn during I/O, the client vanishing while sends are pending, seeded random
//! failures, and unload requested the moment the filter registers, with I/O.

mod common;

use vigil_kernel_sim::RandomFailures;
use vigil_kernel_sim::scenario::{ScenarioConfig, ScenarioSummary, UnloadPlan, run_scenario};

fn run(config: &ScenarioConfig) -> ScenarioSummary {
    let summary = run_scenario(&common::vigil_image(), config, |_| {}).expect("vigil.sys loads");
    assert!(summary.is_clean(), "{}", summary.text());
    assert_eq!(summary.cycles, config.cycles, "{}", summary.text());
    summary
}

/// Every cycle's I/O reached the driver, its events reached the client, its commands worked.
fn assert_busy(summary: &ScenarioSummary) {
    assert!(
        summary.operations > 0 && summary.callbacks > 0,
        "{}",
        summary.text()
    );
    assert!(
        summary.messages > 0 && summary.message_bytes > 0,
        "{}",
        summary.text()
    );
    assert!(summary.commands > 0, "{}", summary.text());
}

/// A thousand load/unload cycles with I/O from two threads and a client, in the configuration
/// `base` starts from: every cycle busy, every race, vanish and optional unload where planned.
fn a_thousand_cycles(base: &mut ScenarioConfig) {
    base.cycles = 1_000;
    base.threads = 2;
    base.files_per_thread = 1;
    let summary = run(base);
    assert_busy(&summary);
    assert_eq!(summary.unexpected_statuses, 0, "{}", summary.text());
    assert_eq!(summary.entry_failures, 0, "{}", summary.text());
    assert_eq!(summary.race_cycles, 1_000 / 8, "{}", summary.text());
    assert!(
        summary.vanished_with_pending_sends > 0,
        "{}",
        summary.text()
    );
    assert_eq!(summary.optional_unloads, 500, "{}", summary.text());
}

#[test]
fn a_thousand_load_unload_cycles_with_io_and_a_client() {
    a_thousand_cycles(&mut ScenarioConfig::vigil());
}

/// The same cycles in the benchmarks' measurement configuration (standard pool, no stack
/// poisoning): everything runs faster, so the threads interleave differently.
#[test]
fn a_thousand_cycles_in_the_measurement_configuration() {
    let mut config = ScenarioConfig::vigil();
    config.base.use_measurement_checks();
    a_thousand_cycles(&mut config);
}

#[test]
fn service_churn_during_io() {
    let mut config = ScenarioConfig::vigil();
    config.cycles = 20;
    config.threads = 3;
    config.files_per_thread = 4;
    config.reconnects = 5;
    config.vanish_every = 0;
    config.race_every = 0;
    let summary = run(&config);
    assert_busy(&summary);
    assert_eq!(summary.connect_failures, 0, "{}", summary.text());
    assert_eq!(summary.connections, 20 * 6, "{}", summary.text());
    assert_eq!(summary.command_failures, 0, "{}", summary.text());
}

#[test]
fn the_client_vanishes_while_sends_are_pending() {
    let mut config = ScenarioConfig::vigil();
    config.cycles = 12;
    config.files_per_thread = 4;
    config.vanish_every = 1;
    config.race_every = 0;
    let summary = run(&config);
    assert_eq!(summary.vanish_cycles, 12, "{}", summary.text());
    assert!(
        summary.vanished_with_pending_sends >= 10,
        "the driver had a send blocked when the client went: {}",
        summary.text()
    );
}

#[test]
fn seeded_random_failures_end_every_cycle_cleanly() {
    for seed in [1, 2] {
        let mut config = ScenarioConfig::vigil();
        config.cycles = 60;
        config.random_failures = Some(RandomFailures {
            seed,
            per_million: 20_000,
        });
        let summary = run(&config);
        assert!(summary.injected_failures > 0, "{}", summary.text());
    }
}

#[test]
fn unload_racing_driver_entry_with_io() {
    for unload in [UnloadPlan::Mandatory, UnloadPlan::Optional] {
        let mut config = ScenarioConfig::vigil();
        config.cycles = 16;
        config.race_every = 1;
        config.unload = unload;
        config.files_per_thread = 3;
        let summary = run(&config);
        assert_eq!(summary.race_cycles, 16, "{}", summary.text());
        assert_eq!(summary.entry_failures, 0, "{}", summary.text());
        assert!(summary.operations > 0, "{}", summary.text());
    }
}
