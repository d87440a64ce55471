//! kernel-sim on the C minifilter that issues its own I/O through callback data, `FltCreateFileEx2`,
//! `FltFsControlFile` and `FltSetInformationFile` (`tests/minifilters/issuer.c`): clean
//! through `kernel-sim verify` and `bench`, its requests answered by the file system below its
//! instance (never its own callbacks) with the right sizes and statuses, and its broken twins
//! caught with the rule, the routine and the driver function that broke it.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set).

mod c_filters;
mod io_workload;

use std::process::Command;

use io_workload::{FAT, FILE_CREATE, GENERIC_WRITE, NTFS, config, requestor, volume};
use vigil_kernel_sim::Sim;

use c_filters::{Caught, assert_clean, build, twin_caught, wait_for_calls};

/// The issuer is clean through verify (load/unload cycles, stress, both fault sweeps: every
/// failable routine it calls fails once, the asynchronous I/O's completion included) and runs
/// in bench with operations made and no violation.
#[test]
fn issuer_is_clean_in_verify_and_bench() {
    let Some(image) = build("issuer", None) else {
        return;
    };
    assert_clean(&image, None);
    for configuration in [&[][..], &["--measurement"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
            .arg("bench")
            .arg("--image")
            .arg(&image)
            .args(["--threads", "2", "--seconds", "0.2"])
            .args(configuration)
            .output()
            .expect("kernel-sim runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{configuration:?}: {output:?}");
        assert!(stdout.contains(", 0 violation(s)"), "{stdout}");
        assert!(!stdout.contains(" 0 operations"), "{stdout}");
    }
}

/// What the issuer does at each cleanup reaches the file systems below it: its reads (one
/// asynchronous, one synchronous, through one callback data, and an asynchronous `FltReadFile`)
/// see each file's size (11 and 3
/// bytes on NTFS, 2 on FAT), NTFS says no reparse point (FAT has none and refuses the control
/// code), the `.pad` file grows to 4096 bytes, the documented failures come back as documented,
/// a canceled read completes canceled,
/// and none of these requests reaches the issuer's own callbacks: its pre-read,
/// pre-set-information and pre-file-system-control counted nothing, and each test cleanup gave
/// exactly one scan (the worker's own close did not come back through the pre-cleanup).
#[test]
fn issuer_io_goes_below_itself_with_the_right_sizes_and_statuses() {
    let Some(image) = build("issuer", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let fat = volume(&driver, FAT);
    for (on, path, bytes) in [
        (ntfs, r"\scanned.txt", &b"hello world"[..]),
        (ntfs, r"\grow.pad", &b"abc"[..]),
        (fat, r"\fat.txt", &b"hi"[..]),
    ] {
        let f = io
            .create(on, path, FILE_CREATE, 0, GENERIC_WRITE)
            .expect("created");
        assert_eq!(io.write(&f, 0, bytes), 0);
        assert_eq!(io.cleanup(&f), 0);
        io.close(f);
    }
    // The scans run on work items: let them finish before looking and before the unload.
    wait_for_calls(&driver, "FltClose", 3);
    assert_eq!(driver.file_size(ntfs, r"\grow.pad"), Some(4096));
    assert_eq!(driver.file_size(ntfs, r"\scanned.txt"), Some(11));
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    c_filters::assert_calls(
        &report,
        &[
            ("FltCreateFileEx2", 3),
            // One for the reads and reparse point, one for the create probe, one for the canceled
            // read, per file.
            ("FltAllocateCallbackData", 9),
            ("FltFreeCallbackData", 9),
            ("FltPerformAsynchronousIo", 9),
            ("FltCancelIo", 3),
            // Every asynchronous completion: FltPerformAsynchronousIo's and FltReadFile's.
            ("FltIsIoCanceled", 12),
            ("FltPerformSynchronousIo", 6),
            ("FltReuseCallbackData", 6),
            ("FltFsControlFile", 6),
            // Basic information, the two probes, and the end of file of the .pad file.
            ("FltSetInformationFile", 10),
            ("FltClose", 3),
            ("FltReadFile", 3),
            ("FltQueryInformationFile", 1),
        ],
    );
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace,
        [
            "issuer: 3 scan(s), 16 byte(s) read, 2 not a reparse point, 1 padded, 0 unexpected, 0 request(s) seen\n"
        ]
    );
}

/// The twin that never frees its callback data is caught when the driver is gone, against the
/// pre-cleanup that allocated it.
#[test]
fn issuer_callback_data_leak_twin_is_caught() {
    twin_caught(
        "issuer",
        None,
        "callback-data-leak",
        Caught {
            kind: "ResourceLeak",
            routine: "FltAllocateCallbackData",
            caller: "PreCleanup",
            rule: "every callback data from FltAllocateCallbackData is freed (FltFreeCallbackData) before the driver is gone",
        },
    );
}

/// The twin that frees its callback data as soon as `FltPerformAsynchronousIo` returns, before
/// the completion routine has been called, is caught by `FltFreeCallbackData` in the
/// pre-cleanup.
#[test]
fn issuer_free_before_completion_twin_is_caught() {
    twin_caught(
        "issuer",
        None,
        "free-before-completion",
        Caught {
            kind: "Parameter",
            routine: "FltFreeCallbackData",
            caller: "PreCleanup",
            rule: "freed once, after its asynchronous I/O's CallbackRoutine has been called",
        },
    );
}

/// With completions at DISPATCH_LEVEL (`post_ops_at_dispatch`: Windows may call an
/// asynchronous I/O's completion routine there), the issuer's completion routine still only
/// reads the status, asks `FltIsIoCanceled` and sets an event: the run is clean and the reads
/// agree.
#[test]
fn issuer_completion_routine_is_safe_at_dispatch_level() {
    let Some(image) = build("issuer", None) else {
        return;
    };
    let mut configuration = config();
    configuration.io.post_ops_at_dispatch = true;
    let sim = Sim::new(configuration);
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\dispatch.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"dispatch"), 0);
    assert_eq!(io.cleanup(&f), 0);
    io.close(f);
    wait_for_calls(&driver, "FltClose", 1);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace,
        [
            "issuer: 1 scan(s), 8 byte(s) read, 1 not a reparse point, 0 padded, 0 unexpected, 0 request(s) seen\n"
        ]
    );
}

/// The twin that fills its `IO_DRIVER_CREATE_CONTEXT` by hand, leaving `Size` as the stack had
/// it, is caught by `FltCreateFileEx2` in the work item (which then fails the create, so the
/// scan is skipped, fail-open).
#[test]
fn issuer_create_context_not_initialized_twin_is_caught() {
    twin_caught(
        "issuer",
        None,
        "create-context-not-initialized",
        Caught {
            kind: "Parameter",
            routine: "FltCreateFileEx2",
            caller: "GenericWorkItem",
            rule: "DriverContext initialized by IoInitializeDriverCreateContext",
        },
    );
}
