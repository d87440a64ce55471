//! The broken twins of vigil.sys that the I/O-side checks are meant for: each twin's run
//! through the same synthetic workload reports the violation kind of its bug, and the
//! production image's run reports none of them.

mod common;
mod io_workload;

use io_workload::{FILE_CREATE, GENERIC_WRITE, NTFS, STATUS_SUCCESS, config, requestor, volume};
use vigil_kernel_sim::{Report, Sim, ViolationKind};
use xtask::Twin;

/// The kinds the I/O-side checks report.
const IO_KINDS: [ViolationKind; 5] = [
    ViolationKind::OverRelease,
    ViolationKind::ReferenceLeak,
    ViolationKind::Irql,
    ViolationKind::CallbackContract,
    ViolationKind::CallbackStatus,
];

/// Loads `image`, writes twice through one handle (the second write finds the handle's
/// context), renames it (name queries), cleans up (the close-after-modify path), closes, and
/// unloads.
fn run(image: &std::path::Path) -> Report {
    let sim = Sim::new(config());
    let driver = sim.load(image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\twin.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"first"), STATUS_SUCCESS);
    assert_eq!(io.write(&f, 5, b"second"), STATUS_SUCCESS);
    assert_eq!(io.rename(&f, "renamed.txt", false), STATUS_SUCCESS);
    io.cleanup(&f);
    io.close(f);
    driver.finish()
}

fn kinds(report: &Report) -> Vec<ViolationKind> {
    report.violations.iter().map(|v| v.kind).collect()
}

fn twin(twin: Twin) -> Report {
    let image = xtask::build_driver(&xtask::Variant::twin(twin)).expect("building the twin");
    run(&image)
}

#[test]
fn production_vigil_trips_none_of_the_io_checks() {
    let report = run(&common::vigil_image());
    assert!(report.is_clean(), "{}", report.summary());
    assert!(kinds(&report).iter().all(|k| !IO_KINDS.contains(k)));
    assert_eq!(report.io.names_acquired, report.io.names_released);
    assert_eq!(report.io.contexts_allocated, report.io.contexts_freed);
}

#[test]
fn twin_double_release_is_an_over_release_of_a_name() {
    let report = twin(Twin::DoubleRelease);
    let v = report
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::OverRelease)
        .unwrap_or_else(|| panic!("{}", report.summary()));
    // The workload's file, under its first name or the one a rename gave it (the driver keeps
    // the open's name until the handle's cleanup, so the first double release may be later).
    assert!(
        v.message.contains(r"\twin.txt") || v.message.contains(r"\renamed.txt"),
        "names the file: {}",
        v.message
    );
    assert_eq!(v.routine, "FltReleaseFileNameInformation");
}

#[test]
fn twin_context_leak_is_a_reference_leak_at_unregister() {
    let report = twin(Twin::ContextLeak);
    let v = report
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::ReferenceLeak)
        .unwrap_or_else(|| panic!("{}", report.summary()));
    assert!(v.message.contains("stream-handle context"), "{}", v.message);
    assert!(
        v.message.contains("tag 'VgCx'"),
        "the driver's context tag: {}",
        v.message
    );
}

#[test]
fn twin_wrong_irql_queries_a_name_at_dispatch_level() {
    let report = twin(Twin::WrongIrql);
    let v = report
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::Irql)
        .unwrap_or_else(|| panic!("{}", report.summary()));
    assert!(v.rule.contains("FltGetFileNameInformation"), "{v}");
    assert_eq!(v.callback, "PreCleanup");
}

#[test]
fn twin_irql_not_restored_breaks_the_callback_contract() {
    let report = twin(Twin::IrqlNotRestored);
    let v = report
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::CallbackContract)
        .unwrap_or_else(|| panic!("{}", report.summary()));
    assert!(v.message.contains("PreCleanup"), "{v}");
}

#[test]
fn twin_bad_preop_status_is_an_invalid_callback_status() {
    let report = twin(Twin::BadPreopStatus);
    let v = report
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::CallbackStatus)
        .unwrap_or_else(|| panic!("{}", report.summary()));
    assert!(v.message.contains("0x2a"), "{v}");
    assert_eq!(v.callback, "PreCleanup");
}
