//! kernel-sim's every operation on a C minifilter registered for all of them
//! (`tests/minifilters/allops.c`): each IRP major function a file system stack gets and each
//! pseudo-operation reaches its callbacks from the synthetic workload with the parameters its
//! `FLT_PARAMETERS` page describes (the filter checks them and breaks a rule on any anomaly),
//! `FltLockUserBuffer` and `FltRequestOperationStatusCallback` work as documented, and the
//! filter runs clean through `kernel-sim verify` and `bench`; its twin that frees the MDL
//! `FltLockUserBuffer` gave it, the one that asks for a status callback on a fast I/O query and
//! the one that disallows fast I/O on an IRP read are caught.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set).

mod c_filters;
mod io_workload;

use std::collections::BTreeMap;
use std::process::Command;

use io_workload::{
    FILE_CREATE, FILE_DIRECTORY_FILE, GENERIC_WRITE, NTFS, PIPE, config, requestor, volume,
};

/// The mailslot file system's volume.
const MAILSLOT: &str = r"\Device\Mailslot";
/// `STATUS_OBJECT_NAME_NOT_FOUND`.
const STATUS_OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32.cast_signed();
/// `STATUS_INVALID_DEVICE_REQUEST`.
const STATUS_INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32.cast_signed();
use vigil_kernel_sim::{FILE_ACTION_ADDED, FILE_NOTIFY_CHANGE_FILE_NAME, Report, Sim, VolumeKind};

use c_filters::{assert_caught, assert_clean, build};

/// The operations the synthetic workload issues, by the name `FltGetIrpName` gives them (the
/// volume mount and dismount by the volume each cycle mounts and dismounts, and below). Not
/// issued by the workloads: `IRP_MJ_CREATE_NAMED_PIPE`, `IRP_MJ_CREATE_MAILSLOT` (no pipe or
/// mailslot volume in them; issued directly below), `IRP_MJ_POWER` and
/// `IRP_MJ_DEVICE_CHANGE` (file system stacks do not get them).
const ISSUED: &[&str] = &[
    "IRP_MJ_CREATE",
    "IRP_MJ_CREATE_NAMED_PIPE",
    "IRP_MJ_CREATE_MAILSLOT",
    "IRP_MJ_CLOSE",
    "IRP_MJ_READ",
    "IRP_MJ_WRITE",
    "IRP_MJ_QUERY_INFORMATION",
    "IRP_MJ_SET_INFORMATION",
    "IRP_MJ_QUERY_EA",
    "IRP_MJ_SET_EA",
    "IRP_MJ_FLUSH_BUFFERS",
    "IRP_MJ_QUERY_VOLUME_INFORMATION",
    "IRP_MJ_SET_VOLUME_INFORMATION",
    "IRP_MJ_DIRECTORY_CONTROL",
    "IRP_MJ_FILE_SYSTEM_CONTROL",
    "IRP_MJ_DEVICE_CONTROL",
    "IRP_MJ_INTERNAL_DEVICE_CONTROL",
    "IRP_MJ_SHUTDOWN",
    "IRP_MJ_LOCK_CONTROL",
    "IRP_MJ_CLEANUP",
    "IRP_MJ_QUERY_SECURITY",
    "IRP_MJ_SET_SECURITY",
    "IRP_MJ_SYSTEM_CONTROL",
    "IRP_MJ_QUERY_QUOTA",
    "IRP_MJ_SET_QUOTA",
    "IRP_MJ_PNP",
    "IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION",
    "IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION",
    "IRP_MJ_ACQUIRE_FOR_MOD_WRITE",
    "IRP_MJ_RELEASE_FOR_MOD_WRITE",
    "IRP_MJ_ACQUIRE_FOR_CC_FLUSH",
    "IRP_MJ_RELEASE_FOR_CC_FLUSH",
    "IRP_MJ_QUERY_OPEN",
    "IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE",
    "IRP_MJ_NETWORK_QUERY_OPEN",
    "IRP_MJ_MDL_READ",
    "IRP_MJ_MDL_READ_COMPLETE",
    "IRP_MJ_PREPARE_MDL_WRITE",
    "IRP_MJ_MDL_WRITE_COMPLETE",
    "IRP_MJ_VOLUME_MOUNT",
    "IRP_MJ_VOLUME_DISMOUNT",
];

/// The filter's totals at unload: operation name -> (pre, post), and the summary line's
/// numbers (`anomalies`, `locked`, `status` called/requested, `disallowed`).
fn totals(report: &Report) -> (BTreeMap<String, (u64, u64)>, Vec<u64>) {
    let mut per_operation = BTreeMap::new();
    let mut summary = Vec::new();
    for line in &report.debug_output {
        let Some(text) = line.text.strip_prefix("allops: ") else {
            continue;
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.first() == Some(&"anomalies") {
            summary = text
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
        } else if let [name, "pre", pre, "post", post] = words[..] {
            per_operation.insert(
                name.to_owned(),
                (pre.parse().unwrap_or(0), post.parse().unwrap_or(0)),
            );
        }
    }
    (per_operation, summary)
}

/// A change notification on `\allops`, completed by a file another thread creates there.
fn a_change_notification(io: &vigil_kernel_sim::Io, ntfs: vigil_kernel_sim::VolumeId) {
    let watched = io
        .create(ntfs, r"\allops", 1, FILE_DIRECTORY_FILE, 0)
        .expect("directory");
    let notified =
        io.notify_change_directory(&watched, 4096, FILE_NOTIFY_CHANGE_FILE_NAME, |other| {
            other
                .create(ntfs, r"\allops\new.txt", FILE_CREATE, 0, GENERIC_WRITE)
                .map(|f| {
                    other.cleanup(&f);
                    other.close(f);
                })
                .is_ok()
        });
    assert_eq!(
        notified.map(|records| records
            .into_iter()
            .map(|r| (r.action, r.name))
            .collect::<Vec<_>>()),
        Ok(vec![(FILE_ACTION_ADDED, "new.txt".to_owned())])
    );
    io.close(watched);
}

/// Volumes that come and go: the mount after its InstanceSetup, the dismount before its
/// teardown; a network volume's mount carries the network device type.
fn volumes_that_come_and_go(driver: &vigil_kernel_sim::Driver) {
    let scratch = driver.mount(VolumeKind::Ntfs, r"\Device\HarddiskVolume9");
    assert!(driver.is_attached(scratch));
    driver.dismount(scratch);
    assert!(!driver.is_attached(scratch));
    let share = driver.mount(VolumeKind::Network, r"\Device\Mup\scratch");
    driver.dismount(share);
}

/// Creates a pipe and a mailslot on their volumes (and fails a pipe on NTFS), then cleans
/// them up and closes them.
fn pipes_and_mailslots(driver: &vigil_kernel_sim::Driver, io: &vigil_kernel_sim::Io) {
    let ntfs = volume(driver, NTFS);
    // Pipes and mailslots, on their volumes only.
    let pipe = io
        .create_named_pipe(volume(driver, PIPE), r"\allops-pipe")
        .expect("pipe");
    let mailslot = io
        .create_mailslot(volume(driver, MAILSLOT), r"\allops-slot")
        .expect("mailslot");
    assert_eq!(
        io.create_named_pipe(ntfs, r"\not-a-pipe").err(),
        Some(STATUS_INVALID_DEVICE_REQUEST)
    );
    for handle in [pipe, mailslot] {
        io.cleanup(&handle);
        io.close(handle);
    }
}

/// Every operation the workload issues reaches the filter's pre- and post-operation callbacks
/// with valid parameters (no anomaly), on one file and its directory; the buffers of IRP reads,
/// directory and security queries are locked, each status callback asked for runs once, fast
/// I/O query-information disallowed by the filter is reissued as an IRP; the file system's
/// answers are the data it holds.
#[test]
fn every_operation_reaches_the_filter_with_valid_parameters() {
    let Some(image) = build("allops", None) else {
        return;
    };
    let mut configuration = config();
    configuration
        .io
        .volumes
        .push((VolumeKind::Mailslot, MAILSLOT.to_owned()));
    let sim = Sim::new(configuration);
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    pipes_and_mailslots(&driver, &io);
    let d = io
        .create(ntfs, r"\allops", FILE_CREATE, FILE_DIRECTORY_FILE, 0)
        .expect("directory");
    let f = io
        .create(ntfs, r"\allops\data.bin", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"hello world"), 0);
    // What the file system answers is what it holds.
    assert_eq!(io.read(&f, 6, 5).expect("read"), b"world");
    assert_eq!(
        io.fast_io_read(&f, 0, 64).expect("fast read"),
        b"hello world"
    );
    assert_eq!(
        io.read_paging(&f, 0, 4096).expect("paging read"),
        b"hello world"
    );
    let standard = io.query_standard_information(&f).expect("standard");
    assert_eq!(
        (standard.end_of_file, standard.links, standard.directory),
        (11, 1, false)
    );
    assert_eq!(
        io.query_directory(&d, 4096).expect("listing"),
        [".", "..", "data.bin"]
    );
    // Queries by name: the first two query opens are refused by the filter (in the pre, then
    // in the post) and served by an open/query/close; the answers are the file system's
    // either way.
    for _ in 0..2 {
        let stat = io
            .query_open(ntfs, r"\allops\data.bin")
            .expect("query open");
        assert_eq!((stat.end_of_file, stat.directory), (11, false));
    }
    let stat = io
        .network_query_open(ntfs, r"\allops")
        .expect("network query open");
    assert!(stat.directory);
    assert_eq!(
        io.query_open(ntfs, r"\allops\missing").err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    let workout = io.workout(&f);
    assert_eq!(workout.unexpected, 0, "{workout:?}");
    assert!(workout.operations > 30, "{workout:?}");
    assert_eq!(io.mdl_read(&f, 0, 5).expect("mdl read"), b"!ello");
    let workout = io.workout_directory(&d);
    assert_eq!(workout.unexpected, 0, "{workout:?}");
    assert_eq!(io.rename(&f, "renamed.bin", false), 0);
    io.cleanup(&f);
    io.close(f);
    io.cleanup(&d);
    io.close(d);
    volumes_that_come_and_go(&driver);
    a_change_notification(&io, ntfs);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    let (per_operation, summary) = totals(&report);
    for name in ISSUED {
        let (pre, post) = per_operation.get(*name).copied().unwrap_or_default();
        assert!(
            pre > 0 && post > 0,
            "{name}: pre {pre} post {post}: {per_operation:#?}"
        );
    }
    let [anomalies, locked, called, requested, disallowed] = summary[..] else {
        panic!("the summary line: {:?}", report.debug_output);
    };
    assert_eq!(anomalies, 0, "{:?}", report.debug_output);
    assert!(locked >= 3, "{summary:?}");
    assert!(requested >= 2 && called == requested, "{summary:?}");
    // A fast I/O query, two query opens in their pre and one in its post.
    assert!(disallowed >= 4, "{summary:?}");
    // The filter's own read below itself (at the first cleanup of a file with data: the
    // open/query/close of the refused query open) gets the bytes written.
    for printed in ["allops: head hello wo\n", "allops: notified 1\n"] {
        assert!(
            report.debug_output.iter().any(|line| line.text == printed),
            "{printed:?}: {:?}",
            report.debug_output
        );
    }
    for routine in ["FltLockUserBuffer", "FltRequestOperationStatusCallback"] {
        assert!(
            report.routine_calls.get(routine).copied().unwrap_or(0) > 0,
            "{routine}"
        );
    }
}

/// The filter runs clean through verify (load/unload cycles, stress and both fault sweeps:
/// the injected failures of `FltLockUserBuffer` and `FltRequestOperationStatusCallback` included)
/// and through bench, whose workload gives it callbacks.
#[test]
fn allops_is_clean_in_verify_and_bench() {
    let Some(image) = build("allops", None) else {
        return;
    };
    assert_clean(&image, None);
    let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("bench")
        .arg("--image")
        .arg(&image)
        .args(["--threads", "2", "--seconds", "0.2"])
        .output()
        .expect("kernel-sim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains(", 0 violation(s)"), "{stdout}");
    // An unload racing DriverEntry in every cycle (the filter's entry gate holds it back).
    let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("stress")
        .arg("--image")
        .arg(&image)
        .args(["--cycles", "16", "--race-every", "1", "--port", "none"])
        .output()
        .expect("kernel-sim runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" 16 race cycle(s)"), "{stdout}");
}

/// The twin that frees the MDL `FltLockUserBuffer` gave it is caught by `IoFreeMdl` in its
/// pre-read: that MDL is the I/O system's to free when the operation completes.
#[test]
fn allops_free_locked_mdl_twin_is_caught() {
    let Some(image) = build("allops", Some("free-locked-mdl")) else {
        return;
    };
    assert_caught(
        &image,
        None,
        "Parameter",
        "IoFreeMdl",
        "PreRead",
        "an MDL the caller allocated with IoAllocateMdl",
    );
}

/// The twin that asks for a status callback on a fast I/O query is caught by
/// `FltRequestOperationStatusCallback` in its pre-query-information.
#[test]
fn allops_status_callback_fast_io_twin_is_caught() {
    let Some(image) = build("allops", Some("status-callback-fast-io")) else {
        return;
    };
    assert_caught(
        &image,
        None,
        "Parameter",
        "FltRequestOperationStatusCallback",
        "PreQueryInformation",
        "IRP-based operations only",
    );
}

/// The twin that disallows fast I/O on an IRP read is caught by the dispatch: its pre-read
/// returned a status that is only for fast I/O operations.
#[test]
fn allops_disallow_fastio_on_irp_twin_is_caught() {
    let Some(image) = build("allops", Some("disallow-fastio-on-irp")) else {
        return;
    };
    assert_caught(
        &image,
        None,
        "CallbackStatus",
        "-",
        "PreRead",
        "a pre-operation callback returns a valid FLT_PREOP_CALLBACK_STATUS",
    );
}

/// Each stress cycle mounts a volume and dismounts it while the filter runs: the filter's own
/// totals at every unload count the volume mount and dismount.
#[test]
fn every_stress_cycle_brings_a_volume_mount_and_dismount() {
    let Some(image) = build("allops", None) else {
        return;
    };
    let config = vigil_kernel_sim::scenario::ScenarioConfig {
        cycles: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let summary = vigil_kernel_sim::scenario::run_scenario(&image, &config, |progress| {
        let (per_operation, _) = totals(progress.report);
        seen.push(
            ["IRP_MJ_VOLUME_MOUNT", "IRP_MJ_VOLUME_DISMOUNT"]
                .map(|name| per_operation.get(name).copied().unwrap_or_default()),
        );
    })
    .expect("allops loads");
    assert!(summary.is_clean(), "{}", summary.text());
    assert_eq!(seen, [[(1, 1), (1, 1)], [(1, 1), (1, 1)]]);
}

/// The twin that reads every directory control's search expression as a query's faults on a
/// change notification, whose member at that place is the completion filter: kernel-sim
/// dispatches the notification with the parameters of its own minor function.
#[test]
fn allops_notify_read_as_query_twin_is_caught() {
    let Some(image) = build("allops", Some("notify-read-as-query")) else {
        return;
    };
    assert_caught(
        &image,
        None,
        "Fault",
        "-",
        "PreDirectoryControl",
        "no faults in driver code",
    );
}
