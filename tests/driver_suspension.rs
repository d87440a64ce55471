//! RULES.md rule 26 on the real vigil.sys: I/O threads suspended as `SuspendThread` does (a
//! normal kernel APC at every emulated routine boundary where one reaches the thread: PASSIVE_LEVEL,
//! outside a critical region), resumed after a random delay or only at the end of their cycle.
//! Every cycle an unsuspended thread's event must reach the client while the others stay
//! suspended (`ScenarioSummary::markers_missed`). Production delivers every marker, in the test
//! and in the measurement configuration; `suspendable-producer` (ring pushes outside a critical
//! region, the old driver) is held back by a producer suspended inside its reservation: with the
//! suspension placed exactly there (`SuspendPlan::only_at`), in every cycle. The
//! summary's longest marker delay is how long suspended producers held the consumer back at
//! worst: printed, a figure, never asserted as a time.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use std::path::Path;
use std::time::Duration;

use vigil_kernel_sim::SuspendPlan;
use vigil_kernel_sim::scenario::{ScenarioConfig, ScenarioSummary, run_scenario};

/// Suspensions at random routine boundaries: 5 % of the eligible ones, a quarter of them for
/// good.
const RANDOM: SuspendPlan = SuspendPlan {
    rate: 0.05,
    seed: 13,
    max_delay: Duration::from_millis(50),
    never_share: 0.25,
    only_at: None,
};

/// One suspension point, placed exactly: every I/O thread that reads the event timestamp
/// (`KeQuerySystemTimePrecise`, which the producer calls between reserving its record and
/// committing it) with normal kernel APCs enabled is suspended there for good. Production reads
/// it inside its critical region, so no APC reaches it there; the old driver did not.
const INSIDE_THE_RESERVATION: SuspendPlan = SuspendPlan {
    rate: 1.0,
    seed: 1,
    max_delay: Duration::from_millis(50),
    never_share: 1.0,
    only_at: Some("KeQuerySystemTimePrecise"),
};

fn suspended_cycles(
    image: &Path,
    cycles: u64,
    measurement: bool,
    plan: SuspendPlan,
) -> ScenarioSummary {
    let mut config = ScenarioConfig::vigil();
    if measurement {
        config.base.use_measurement_checks();
    }
    config.cycles = cycles;
    config.threads = 3;
    config.files_per_thread = 1;
    config.reconnects = 0;
    config.vanish_every = 0;
    // Race cycles tear the driver down under the I/O: no delivery to check there.
    config.race_every = 0;
    config.base.suspend = Some(plan);
    let summary = run_scenario(image, &config, |_| {}).expect("vigil.sys loads");
    println!("{}", summary.text());
    summary
}

fn assert_delivered_past_suspension(measurement: bool) {
    let summary = suspended_cycles(&driver::image(), 40, measurement, RANDOM);
    assert!(summary.is_clean(), "{}", summary.text());
    assert_eq!(summary.delivery_checks, 40, "{}", summary.text());
    assert!(summary.suspensions > 0, "{}", summary.text());
    assert!(summary.suspensions_never_resumed > 0, "{}", summary.text());
}

#[test]
fn events_of_unsuspended_threads_are_delivered_past_suspended_producers() {
    assert_delivered_past_suspension(false);
}

#[test]
fn the_same_in_the_measurement_configuration() {
    assert_delivered_past_suspension(true);
}

/// The suspension placed inside the reservation: production delivers every marker, in both
/// configurations; the old driver (`suspendable-producer`, pushes with normal kernel APCs
/// enabled) has a producer suspended for good between reservation and commit in every cycle,
/// so every marker behind it is missed: caught on every run, not by chance.
#[test]
fn a_producer_suspended_inside_its_reservation_is_caught_every_cycle() {
    for measurement in [false, true] {
        let summary = suspended_cycles(&driver::image(), 10, measurement, INSIDE_THE_RESERVATION);
        assert!(summary.is_clean(), "{}", summary.text());
        assert_eq!(summary.delivery_checks, 10, "{}", summary.text());
    }
    // Each missed marker costs the harness its patience (5 s): three cycles per configuration.
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::SuspendableProducer));
    for measurement in [false, true] {
        let summary = suspended_cycles(&twin, 3, measurement, INSIDE_THE_RESERVATION);
        assert!(summary.suspensions_never_resumed >= 3, "{}", summary.text());
        assert_eq!(
            summary.markers_missed,
            3,
            "twin-suspendable-producer: a marker got past a producer suspended inside its \
             reservation: {}",
            summary.text()
        );
    }
}
