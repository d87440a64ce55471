//! Every broken twin of vigil.sys (`xtask::Twin`, from `src/twins/catalog.rs`) is
//! caught by the kernel-sim check meant for it, and the production image under the same
//! scenario trips none of them. One table, one build per twin.
//!
//! Three scenarios: `Workload` (connect a service, I/O that queries names, writes twice through a
//! handle and cleans up, take the batch, commands including a bad user pointer, disconnect,
//! unload), `UnloadRace` (FilterUnload called the moment `FltRegisterFilter` returns, while
//! DriverEntry continues, with the same workload after load) and `Draining` (a create and a
//! rename held in the file system after their pre-operation callbacks while the volume is
//! detached, as `fltmc detach` does, so that FltMgr drains both posts with
//! `FLTFL_POST_OPERATION_DRAINING`; then unload).

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use std::path::Path;
use std::time::Duration;

use driver::{FILE_CREATE, GENERIC_WRITE, NTFS, STATUS_SUCCESS, Service, config, requestor};
use vigil_kernel_sim::{
    PortError, RawCommand, RegistryValue, Report, Sim, SimConfig, UnloadKind, UserPointer,
    ViolationKind,
};
use vigil_protocol::{Ping, Pong};
use xtask::Twin;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Workload,
    UnloadRace,
    Draining,
}

/// One row: the twin, the scenario that exercises its bug, and the violation kind the check
/// reports with a text its rule or message contains. Every twin must be caught on its first
/// run: the scenarios make the buggy interleaving certain (kernel-sim holds DriverEntry for the
/// racing unload; system threads take 50 ms to be signalled), not a matter of scheduling.
struct Row {
    twin: Twin,
    scenario: Scenario,
    kind: ViolationKind,
    text: &'static str,
}

/// Twins whose bug shows as an ordering rather than a kernel-sim violation, each rejected by its
/// own test: (twin, where).
const CHECKED_ELSEWHERE: [(Twin, &str); 16] = [
    (
        Twin::UnadmittedCallback,
        "tests/driver_lifecycle.rs: a_callback_that_drops_its_admission_is_caught",
    ),
    (
        Twin::PortSecondCopy,
        "tests/driver_lifecycle.rs: a_second_copy_of_the_client_port_is_caught",
    ),
    (
        Twin::VerdictReplyOnStack,
        "tests/driver_verdicts.rs: the_verdict_reply_is_received_into_pool_not_onto_the_stack",
    ),
    (
        Twin::SuspendableProducer,
        "tests/driver_suspension.rs: a_producer_suspended_inside_its_reservation_is_caught_every_cycle",
    ),
    (
        Twin::UnwatchedVolume,
        "tests/driver_lifecycle.rs: a_volume_mounted_during_a_refused_unload_is_watched",
    ),
    (
        Twin::IoPathPushLock,
        "tests/driver_overload.rs: the_io_path_never_waits_behind_a_close_queued_behind_a_send",
    ),
    (
        Twin::Latin1Fold,
        "tests/driver_paths.rs: each_hole_reopened_by_a_broken_twin_is_caught_by_its_row",
    ),
    (
        Twin::StreamEscape,
        "tests/driver_paths.rs: each_hole_reopened_by_a_broken_twin_is_caught_by_its_row",
    ),
    (
        Twin::AncestorUnchecked,
        "tests/driver_paths.rs: each_hole_reopened_by_a_broken_twin_is_caught_by_its_row",
    ),
    (
        Twin::NameFailureAllows,
        "tests/driver_paths.rs: each_hole_reopened_by_a_broken_twin_is_caught_by_its_row",
    ),
    (
        Twin::OpenedNameOnly,
        "tests/driver_paths.rs: each_hole_reopened_by_a_broken_twin_is_caught_by_its_row",
    ),
    (
        Twin::CancelKeepsSuccess,
        "tests/driver_paths.rs: a_canceled_open_left_successful_is_caught_by_kernel_sim",
    ),
    (
        Twin::IdentityImageOnly,
        "tests/driver_identity.rs: the_twins_reopen_the_holes_and_are_caught",
    ),
    (
        Twin::FirstComeService,
        "tests/driver_identity.rs: the_twins_reopen_the_holes_and_are_caught",
    ),
    (
        Twin::RelativeNameOnly,
        "tests/driver_paths.rs: each_hole_reopened_by_a_broken_twin_is_caught_by_its_row",
    ),
    (
        Twin::TokenLeak,
        "tests/driver_identity.rs: a_token_reference_kept_is_reported_at_unload",
    ),
];

/// Runs of the production image per scenario: it must be clean in every one (scheduling still
/// varies from run to run).
const PRODUCTION_RUNS: usize = 100;

const TWINS: [Row; 19] = [
    Row {
        twin: Twin::Leak,
        scenario: Scenario::Workload,
        kind: ViolationKind::PoolLeak,
        text: "every pool block is freed",
    },
    Row {
        twin: Twin::DoubleRelease,
        scenario: Scenario::Workload,
        kind: ViolationKind::OverRelease,
        text: "FltReleaseFileNameInformation",
    },
    Row {
        twin: Twin::PortNotClosed,
        scenario: Scenario::Workload,
        kind: ViolationKind::PortNotClosed,
        text: "client port not closed by the disconnect callback",
    },
    Row {
        twin: Twin::UnloadNoWait,
        scenario: Scenario::UnloadRace,
        // The twin's unload does not wait: kernel-sim runs the racing unload before DriverEntry
        // goes on past FltRegisterFilter (it resumes DriverEntry only once the unload returns or
        // blocks), so the unload finds no completed entry and returns success with the filter
        // registered (the unload contract check), every run.
        kind: ViolationKind::CallbackContract,
        text: "filter still registered",
    },
    Row {
        twin: Twin::UninitSend,
        scenario: Scenario::Workload,
        kind: ViolationKind::UninitializedBytes,
        text: "RULES.md 11",
    },
    Row {
        twin: Twin::WrongIrql,
        scenario: Scenario::Workload,
        kind: ViolationKind::Irql,
        text: "FltGetFileNameInformation",
    },
    Row {
        twin: Twin::LeaveRegistered,
        scenario: Scenario::Workload,
        kind: ViolationKind::ResourceLeak,
        text: "still registered",
    },
    Row {
        twin: Twin::LeaveProcessNotify,
        scenario: Scenario::Workload,
        kind: ViolationKind::ResourceLeak,
        text: "still registered in the unloaded image",
    },
    Row {
        twin: Twin::FileIdUnderLock,
        scenario: Scenario::Workload,
        kind: ViolationKind::Irql,
        text: "APCs enabled",
    },
    Row {
        twin: Twin::ThreadRunning,
        scenario: Scenario::Workload,
        kind: ViolationKind::ThreadStillRunning,
        text: "still running",
    },
    Row {
        twin: Twin::IrqlNotRestored,
        scenario: Scenario::Workload,
        kind: ViolationKind::CallbackContract,
        text: "PreCleanup",
    },
    Row {
        twin: Twin::BadPreopStatus,
        scenario: Scenario::Workload,
        kind: ViolationKind::CallbackStatus,
        text: "0x2a",
    },
    Row {
        twin: Twin::SendInfinite,
        scenario: Scenario::Workload,
        kind: ViolationKind::Policy,
        text: "RULES.md 7: a send waits only with a finite timeout",
    },
    Row {
        twin: Twin::ContextLeak,
        scenario: Scenario::Workload,
        kind: ViolationKind::ReferenceLeak,
        text: "stream-handle context",
    },
    Row {
        twin: Twin::StreamContextLeak,
        scenario: Scenario::Workload,
        kind: ViolationKind::ReferenceLeak,
        text: "tag 'VgSt'",
    },
    Row {
        twin: Twin::PortOpenToAll,
        scenario: Scenario::Workload,
        kind: ViolationKind::Parameter,
        text: "RULES.md 18",
    },
    Row {
        twin: Twin::DrainingIgnored,
        scenario: Scenario::Draining,
        kind: ViolationKind::CallbackContract,
        text: "FLTFL_POST_OPERATION_DRAINING does no normal completion processing",
    },
    Row {
        twin: Twin::DrainingLeaksName,
        scenario: Scenario::Draining,
        kind: ViolationKind::ReferenceLeak,
        text: "every name information reference is released",
    },
    Row {
        twin: Twin::NoSeh,
        scenario: Scenario::Workload,
        kind: ViolationKind::Fault,
        text: "MessageNotify",
    },
];

fn ping() -> Vec<u8> {
    let mut buf = vec![0u8; Ping::LEN];
    Ping { nonce: 1 }.emit(&mut buf).unwrap();
    buf
}

/// The kernel-sim configuration of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checks {
    /// The test configuration: special pool, poisoned driver stacks.
    Full,
    /// `SimConfig::for_measurement()`'s pool and stack (what the benchmarks run under).
    Measurement,
}

/// Runs `scenario` on `image` and returns the report (whatever broke).
fn run(image: &Path, scenario: Scenario) -> Report {
    run_with(image, scenario, Checks::Full)
}

fn run_with(image: &Path, scenario: Scenario, checks: Checks) -> Report {
    let mut cfg = SimConfig {
        race_unload_on_register: (scenario == Scenario::UnloadRace)
            .then_some(UnloadKind::Mandatory),
        // A thread still running when unload returns is reported at once, not forgiven for
        // finishing soon after; and every system thread takes 50 ms from the end of its start
        // routine to its object being signalled, so an unload that does not wait on the object
        // returns with the thread still running every time (a correct unload waits it out).
        thread_exit_timeout: Duration::ZERO,
        thread_exit_latency: Duration::from_millis(50),
        // A small ring keeps hundreds of runs' special pool small.
        ..config(&[("RingBytes", RegistryValue::Dword(64 * 1024))])
    };
    if checks == Checks::Measurement {
        cfg.use_measurement_checks();
    }
    let sim = Sim::new(cfg);
    let mut driver = sim.load(image).expect("the image loads");
    if driver.entry_status() != Some(0) {
        return driver.finish();
    }
    if scenario == Scenario::Workload {
        let service = Service::allowing(&driver);
        let io = driver.io(requestor(1, 1));
        let ntfs = driver.volume(NTFS).expect("mounted");
        let f = io
            .create(ntfs, r"\twin.txt", FILE_CREATE, 0, GENERIC_WRITE)
            .expect("create");
        assert_eq!(io.write(&f, 0, b"first"), STATUS_SUCCESS);
        assert_eq!(io.write(&f, 5, b"second"), STATUS_SUCCESS);
        let _ = io.rename(&f, "renamed.txt", false);
        let _ = io.cleanup(&f);
        io.close(f);
        // The batch reaches the service (the message scan and the send checks see it).
        let _ = service.wait_for(|log| log.events.len() >= 4);
        // Commands: good input, then a bad user pointer (a status, never a fault).
        if let Ok(good) = service.port.send_command(&ping(), Pong::LEN) {
            assert_eq!(good.status, STATUS_SUCCESS);
        }
        let bad = service.port.send_command_raw(&RawCommand {
            input_pointer: UserPointer::Unmapped,
            ..RawCommand::new(&ping(), Pong::LEN)
        });
        assert!(
            !matches!(bad, Ok(ref r) if r.status == STATUS_SUCCESS),
            "a bad pointer never succeeds: {bad:?}"
        );
        if !matches!(bad, Err(PortError::DriverCrashed)) {
            drop(service);
        }
    }
    if scenario == Scenario::Draining {
        drain_on_detach(&driver);
    }
    if driver.is_loaded() {
        let _ = driver.unload(UnloadKind::Mandatory);
    }
    driver.finish()
}

/// The `Draining` scenario: a create and a rename stop in the file system after their
/// pre-operation callbacks (both asked for a post: the open event, the synchronized rename),
/// the volume is detached meanwhile, and FltMgr drains both posts; then the I/O completes
/// without the filter. A detach, not an unload: during an unload the driver's gate is already
/// closed, so a post that ignored the flag would find the gate shut and do nothing; a detach
/// leaves the driver running, which is where ignoring the flag does harm.
fn drain_on_detach(driver: &vigil_kernel_sim::Driver) {
    let ntfs = driver.volume(NTFS).expect("mounted");
    let renamer = driver.io(requestor(1, 1));
    let source = renamer
        .create(ntfs, r"\drain-source.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("create");
    let creator = driver.io(requestor(2, 2));
    let hold = driver.hold_file_system();
    let create = std::thread::spawn(move || {
        creator
            .create(ntfs, r"\drain-new.txt", FILE_CREATE, 0, GENERIC_WRITE)
            .map(|file| creator.close(file))
            .is_ok()
    });
    let rename = std::thread::spawn(move || {
        let status = renamer.rename(&source, "drain-renamed.txt", false);
        renamer.close(source);
        status
    });
    assert!(
        hold.wait_for_awaiting_posts(2, Duration::from_secs(30)),
        "the create and the rename reach the file system"
    );
    assert_eq!(driver.detach(ntfs), Ok(()), "the volume detaches");
    drop(hold);
    assert!(
        create.join().expect("create thread"),
        "the held create completes"
    );
    assert_eq!(rename.join().expect("rename thread"), STATUS_SUCCESS);
}

fn has(report: &Report, kind: ViolationKind, text: &str) -> bool {
    let found = |kind: ViolationKind, text: &str| {
        report
            .violations
            .iter()
            .any(|v| v.kind == kind && (v.message.contains(text) || v.rule.contains(text)))
    };
    found(kind, text)
        || (kind == ViolationKind::CallbackContract
            && found(
                ViolationKind::UnloadRace,
                "while DriverEntry was still running",
            ))
}

#[test]
fn every_twin_is_caught_by_its_check_and_production_by_none() {
    let production = driver::image();
    for scenario in [Scenario::Workload, Scenario::UnloadRace, Scenario::Draining] {
        for _ in 0..PRODUCTION_RUNS {
            let report = run(&production, scenario);
            assert!(
                report.is_clean(),
                "production, {scenario:?}: {}",
                report.summary()
            );
            if scenario == Scenario::Draining {
                assert_eq!(report.io.draining_posts, 2, "both posts drained");
            }
        }
    }
    let mut table = Vec::new();
    let mut missed = Vec::new();
    for row in &TWINS {
        let image = driver::build(&xtask::Variant::twin(row.twin));
        let report = run(&image, row.scenario);
        let caught = has(&report, row.kind, row.text);
        let kinds: Vec<ViolationKind> = report.violations.iter().map(|v| v.kind).collect();
        table.push(format!(
            "twin-{:<18} {:<11?} {:<17?} {} (reported {kinds:?})",
            row.twin,
            row.scenario,
            row.kind,
            if caught { "caught" } else { "MISSED" }
        ));
        if !caught {
            missed.push(format!("twin-{}: {}", row.twin, report.summary()));
        }
    }
    println!("{}", table.join("\n"));
    assert!(missed.is_empty(), "{}", missed.join("\n\n"));
}

/// Every twin of the catalog is either in the table above or rejected by a test of its own,
/// exactly once, so that a new twin cannot go untested.
#[test]
fn every_twin_is_in_the_table_or_checked_elsewhere() {
    for &twin in Twin::ALL {
        let rows = TWINS.iter().filter(|row| row.twin == twin).count();
        let elsewhere = CHECKED_ELSEWHERE.iter().filter(|(t, _)| *t == twin).count();
        assert_eq!(
            rows + elsewhere,
            1,
            "twin `{twin}` is in the table {rows} time(s) and checked elsewhere {elsewhere} \
             time(s): it must be listed exactly once"
        );
    }
}

/// The benchmarks measure in `SimConfig::for_measurement()` (standard pool, no stack poisoning):
/// every twin is still caught there, so the figures come from a configuration whose checks bite.
#[test]
fn the_measurement_configuration_catches_every_twin_too() {
    let production = driver::image();
    for scenario in [Scenario::Workload, Scenario::UnloadRace, Scenario::Draining] {
        for _ in 0..10 {
            let report = run_with(&production, scenario, Checks::Measurement);
            assert!(
                report.is_clean(),
                "production, {scenario:?}: {}",
                report.summary()
            );
        }
    }
    let missed: Vec<String> = TWINS
        .iter()
        .filter_map(|row| {
            let image = driver::build(&xtask::Variant::twin(row.twin));
            let report = run_with(&image, row.scenario, Checks::Measurement);
            (!has(&report, row.kind, row.text))
                .then(|| format!("twin-{}: {}", row.twin, report.summary()))
        })
        .collect();
    assert!(missed.is_empty(), "{}", missed.join("\n\n"));
}
