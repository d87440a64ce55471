//! kernel-sim on `tests/minifilters/queue.c`, a C minifilter that pends writes to files whose
//! names match a wildcard expression (`FsRtlIsNameInExpression` with DOS wildcards) into a
//! cancel-safe callback data queue (`FltCbdq*`, its lock a fast mutex), with entries from a
//! lookaside list, an `SList` of done entries and the Rtl string routines; requestors cancel
//! some of the pended writes: the production build runs clean through
//! `kernel-sim verify` and `kernel-sim bench`, and each broken twin is caught with the rule,
//! the routine and the driver function that was running.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set).

mod c_filters;
mod io_workload;

use std::process::Command;

use std::time::Duration;

use io_workload::{FILE_CREATE, GENERIC_WRITE, NTFS, config, requestor, volume};
use vigil_kernel_sim::{CancelPolicy, Sim, ViolationKind};

/// `STATUS_CANCELLED`.
const STATUS_CANCELLED: i32 = 0xC000_0120_u32.cast_signed();

use c_filters::{assert_caught, assert_clean, build, wait_for_calls};

/// The production build: clean through load/unload, stress and both sweeps (the sweeps fail
/// the lookaside list's allocations, the name queries and the work items).
#[test]
fn queue_is_clean_in_verify() {
    let Some(image) = build("queue", None) else {
        return;
    };
    assert_clean(&image, None);
}

/// Writes to a file whose name matches `*\FILE<"TXT` (case-insensitively) are pended and
/// completed by the worker; writes to another file go through; the worker's Rtl checks find no
/// mismatch and every entry goes back to the lookaside list.
#[test]
fn queue_pends_writes_to_matching_files_and_completes_them() {
    let Some(image) = build("queue", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    for name in [r"\File7.txt", r"\notes.txt", r"\File1.txt"] {
        let f = io
            .create(ntfs, name, FILE_CREATE, 0, GENERIC_WRITE)
            .unwrap_or_else(|status| panic!("{name}: {status:#x}"));
        assert_eq!(io.write(&f, 0, b"hello"), 0);
        assert_eq!(io.write(&f, 5, b" world"), 0);
        io.cleanup(&f);
        io.close(f);
    }
    wait_for_calls(&driver, "FltFreeGenericWorkItem", 2);
    wait_for_calls(&driver, "FltFreeDeferredIoWorkItem", 2);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    c_filters::assert_calls(
        &report,
        &[
            ("FltCompletePendedPreOperation", 4),
            ("FltCbdqInsertIo", 2),
            ("FltCbdqRemoveNextIo", 4),
            ("FltSetCancelCompletion", 2),
            ("FltClearCancelCompletion", 2),
            // Per matching write: the match, the posted-or-queued choice, the worker's check.
            ("FsRtlIsNameInExpression", 14),
            ("RtlUpcaseUnicodeString", 4),
            ("RtlFreeUnicodeString", 4),
            ("ExInitializeNPagedLookasideList", 1),
            ("ExDeleteNPagedLookasideList", 1),
        ],
    );
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace.last().copied(),
        Some("queue: 4 pended (2 posted), 4 completed, 0 canceled, 4 recycled, 0 mismatch(es)\n"),
        "{trace:?}"
    );
    assert!(
        trace[0]
            .starts_with("queue: first pended write: \\DEVICE\\HARDDISKVOLUME1\\FILE7.TXTpended: "),
        "{trace:?}"
    );
}

/// A lookaside list still live when the driver is gone is reported at unload.
#[test]
fn queue_twin_lookaside_not_deleted_is_caught() {
    let Some(twin) = build("queue", Some("lookaside-not-deleted")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "ResourceLeak",
        "-",
        "-",
        "every lookaside list is deleted (ExDeleteNPagedLookasideList) before the driver is gone",
    );
}

/// The queue's fast mutex taken at DISPATCH_LEVEL (an insert under a spin lock) breaks
/// `ExTryToAcquireFastMutex`'s IRQL rule.
#[test]
fn queue_twin_fast_mutex_at_dispatch_is_caught() {
    let Some(twin) = build("queue", Some("fast-mutex-at-dispatch")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Irql",
        "ExTryToAcquireFastMutex",
        "PreWrite",
        "ExTryToAcquireFastMutex: IRQL <= APC_LEVEL",
    );
}

/// A lower-case expression matched with `IgnoreCase` TRUE is reported (it can never match).
#[test]
fn queue_twin_expression_not_upcased_is_caught() {
    let Some(twin) = build("queue", Some("expression-not-upcased")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Parameter",
        "FsRtlIsNameInExpression",
        "PreWrite",
        "Expression in upper case when IgnoreCase is TRUE",
    );
}

/// `RtlFreeUnicodeString` of a buffer no Rtl routine allocated is reported and frees nothing.
#[test]
fn queue_twin_free_not_rtl_string_is_caught() {
    let Some(twin) = build("queue", Some("free-not-rtl-string")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "PoolBadFree",
        "RtlFreeUnicodeString",
        "GenericWorkItem",
        "RtlFreeUnicodeString: a buffer allocated by RtlUpcaseUnicodeString",
    );
}

/// An entry freed to another lookaside list (of other blocks) is reported when it is pushed.
#[test]
fn queue_twin_wrong_lookaside_is_caught() {
    let Some(twin) = build("queue", Some("wrong-lookaside")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "PoolBadFree",
        "ExpInterlockedPushEntrySList",
        "GenericWorkItem",
        "ExFreeToNPagedLookasideList: an entry allocated from the same list",
    );
}

/// Requestors that cancel every pended write (at once): Filter Manager takes each queued one out
/// of the queue and calls the filter's `CompleteCanceledIo`, and calls the cancel routine of
/// each posted one; both complete with `STATUS_CANCELLED`; the queue's workers find it empty,
/// the posted ones find the cancel under way (`FltClearCancelCompletion`); the run is clean.
#[test]
fn queue_completes_canceled_writes_with_status_cancelled() {
    let Some(image) = build("queue", None) else {
        return;
    };
    let mut configuration = config();
    configuration.io.cancel_pended = Some(CancelPolicy {
        every: 1,
        after: Duration::ZERO,
    });
    let sim = Sim::new(configuration);
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    for name in [r"\File2.txt", r"\File1.txt"] {
        let f = io
            .create(ntfs, name, FILE_CREATE, 0, GENERIC_WRITE)
            .expect("created");
        assert_eq!(io.write(&f, 0, b"hello"), STATUS_CANCELLED);
        assert_eq!(io.write(&f, 5, b" world"), STATUS_CANCELLED);
        io.cleanup(&f);
        io.close(f);
    }
    wait_for_calls(&driver, "FltFreeGenericWorkItem", 2);
    wait_for_calls(&driver, "FltFreeDeferredIoWorkItem", 2);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert_eq!(report.routine_calls.get("FltCbdqRemoveNextIo"), Some(&2));
    assert_eq!(
        report.routine_calls.get("FltClearCancelCompletion"),
        Some(&2)
    );
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace,
        ["queue: 4 pended (2 posted), 0 completed, 4 canceled, 4 recycled, 0 mismatch(es)\n"]
    );
}

/// A `CompleteCanceledIo` that does not complete the canceled write leaves its requestor
/// waiting: reported as a pended operation never completed, against the pre-write that pended
/// it. (Driven directly with a short pend limit: under `verify`, whose stress workload cancels
/// every third pended write, each lost write costs the 5 s pend limit.)
#[test]
fn queue_twin_canceled_not_completed_is_caught() {
    let Some(twin) = build("queue", Some("canceled-not-completed")) else {
        return;
    };
    let mut configuration = config();
    configuration.pend_limit = Duration::from_millis(200);
    configuration.io.cancel_pended = Some(CancelPolicy {
        every: 1,
        after: Duration::ZERO,
    });
    let sim = Sim::new(configuration);
    let driver = sim.load(&twin).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\File2.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    // Never completed: kernel-sim stops waiting after the pend limit and fails the write.
    assert_ne!(io.write(&f, 0, b"hello"), 0);
    io.cleanup(&f);
    io.close(f);
    wait_for_calls(&driver, "FltFreeGenericWorkItem", 1);
    let report = driver.finish();
    let lost = report
        .violations
        .iter()
        .find(|v| {
            v.rule == "an operation pended with FLT_PREOP_PENDING is completed with FltCompletePendedPreOperation"
        })
        .unwrap_or_else(|| panic!("{}", report.summary()));
    assert_eq!(lost.callback, "PreWrite", "{lost:?}");
    assert_eq!(lost.kind, ViolationKind::CallbackContract);
}

/// A deferred worker that completes its write without asking `FltClearCancelCompletion`
/// completes a write its cancel routine already completed.
#[test]
fn queue_twin_cancel_not_cleared_is_caught() {
    let Some(twin) = build("queue", Some("cancel-not-cleared")) else {
        return;
    };
    let mut configuration = config();
    configuration.io.cancel_pended = Some(CancelPolicy {
        every: 1,
        after: Duration::ZERO,
    });
    let sim = Sim::new(configuration);
    let driver = sim.load(&twin).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\File1.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"hello"), STATUS_CANCELLED);
    io.cleanup(&f);
    io.close(f);
    wait_for_calls(&driver, "FltFreeDeferredIoWorkItem", 1);
    let report = driver.finish();
    let twice = report
        .violations
        .iter()
        .find(|v| v.routine == "FltCompletePendedPreOperation")
        .unwrap_or_else(|| panic!("{}", report.summary()));
    assert_eq!(twice.callback, "DeferredIoWorkItem", "{twice:?}");
}

/// The production build runs through `kernel-sim bench` with operations made and no violation.
#[test]
fn queue_runs_in_bench() {
    let Some(image) = build("queue", None) else {
        return;
    };
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
    }
}
