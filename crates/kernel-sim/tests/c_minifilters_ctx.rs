//! kernel-sim on the context-heavy C minifilter's explicit context deletion
//! (`FltDelete*Context`, `FltDeleteContext`), disk device objects (`FltGetDiskDeviceObject`)
//! and self-detach (`FltDetachVolume` from a work item), and on the delete/rename tracker's
//! transactions (transaction contexts, `FltEnlistInTransaction`, the
//! `TransactionNotificationCallback`): both filters stay clean through `kernel-sim verify` and
//! `bench`, and each broken twin is caught with its rule, routine and driver function.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set).

mod c_filters;
mod io_workload;

use std::process::Command;

use io_workload::{FAT, FILE_CREATE, GENERIC_WRITE, NTFS, config, requestor, volume, workload};
use vigil_kernel_sim::{Io, Sim, VolumeId};

use c_filters::{Caught, assert_clean, build, twin_caught, wait_for_calls};

/// The context filter, now deleting its contexts, asking for disk device objects and detaching
/// itself from a volume after 24 creates, is clean through verify (load/unload, stress, both
/// sweeps) and bench.
#[test]
fn handlectx_with_deletes_and_detach_is_clean_through_verify_and_bench() {
    let Some(image) = build("handlectx", None) else {
        return;
    };
    assert_clean(&image, None);
    let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("bench")
        .arg("--image")
        .arg(&image)
        .output()
        .expect("kernel-sim runs");
    assert!(output.status.success(), "{output:?}");
}

/// Driven directly: the deletes run where the filter calls them (cleanup, set-information,
/// every 16th open on an instance), the disk device object is asked for on NTFS and FAT, and
/// after 24 creates the work item detaches the filter from the volume of the last one through
/// InstanceQueryTeardown: creates there no longer reach it. The run ends clean.
#[test]
fn handlectx_deletes_its_contexts_and_detaches_itself() {
    let Some(image) = build("handlectx", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let fat = volume(&driver, FAT);
    workload(&io, fat, "Fat", 10, false);
    workload(&io, ntfs, "Work", 10, true);
    wait_for_calls(&driver, "FltDetachVolume", 1);
    wait_for_calls(&driver, "FltObjectDereference", 1);
    let detached: Vec<_> = [ntfs, fat]
        .into_iter()
        .filter(|&v| !driver.is_attached(v))
        .collect();
    assert_eq!(detached.len(), 1, "one volume detached after 24 creates");
    // Creates on the detached volume no longer reach the filter.
    let disk_calls = driver
        .routine_calls()
        .get("FltGetDiskDeviceObject")
        .copied();
    let f = io
        .create(detached[0], r"\after.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    io.cleanup(&f);
    io.close(f);
    assert_eq!(
        driver
            .routine_calls()
            .get("FltGetDiskDeviceObject")
            .copied(),
        disk_calls
    );
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    for routine in [
        "FltDeleteStreamHandleContext",
        "FltDeleteInstanceContext",
        "FltDeleteStreamContext",
        "FltDeleteFileContext",
        "FltDeleteContext",
        "FltDeleteVolumeContext",
        "FltGetDiskDeviceObject",
        "ObfDereferenceObject",
    ] {
        assert!(
            report.routine_calls.get(routine).copied().unwrap_or(0) > 0,
            "{routine}: {:?}",
            report.routine_calls
        );
    }
    assert_eq!(report.routine_calls.get("FltDetachVolume"), Some(&1));
}

/// The twin that never releases the context `FltDeleteStreamHandleContext` handed it through
/// `OldContext` is caught when `FilterUnload` unregisters, naming the handle context, where it
/// was allocated and which delete in which callback took it off its file object.
#[test]
fn handlectx_deleted_context_not_released_twin_is_caught() {
    let Some(stdout) = twin_caught(
        "handlectx",
        None,
        "deleted-context-not-released",
        Caught {
            kind: "ReferenceLeak",
            routine: "FltUnregisterFilter",
            caller: "FilterUnload",
            rule: "every context reference is released",
        },
    ) else {
        return;
    };
    assert!(
        stdout.contains("tag 'Cctx'")
            && stdout.contains(
                "allocated in PostCreate; deleted by FltDeleteStreamHandleContext in PreCleanup"
            ),
        "{stdout}"
    );
}

/// The twin that never dereferences the disk device object `FltGetDiskDeviceObject` referenced
/// for its post create is caught when the driver is gone, naming where each reference was
/// taken.
#[test]
fn handlectx_disk_device_not_dereferenced_twin_is_caught() {
    let Some(stdout) = twin_caught(
        "handlectx",
        None,
        "disk-device-not-dereferenced",
        Caught {
            kind: "HandleLeak",
            routine: "FltGetDiskDeviceObject",
            caller: "PostCreate",
            rule: "every reference from FltGetDiskDeviceObject is released (ObDereferenceObject)",
        },
    ) else {
        return;
    };
    assert!(stdout.contains("taken in PostCreate"), "{stdout}");
}

/// `STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED`: a transacted create for write access on a volume
/// without transactions.
const STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED: i32 = 0xC019_003F_u32.cast_signed();

/// A file created in `transaction` on `volume`, written, renamed and deleted through the
/// transacted handle, then closed.
fn transacted_changes(
    io: &Io,
    volume: VolumeId,
    name: &str,
    transaction: &vigil_kernel_sim::Transaction,
) {
    io.set_current_transaction(Some(transaction));
    let f = io
        .create(
            volume,
            &format!(r"\{name}.txt"),
            FILE_CREATE,
            0,
            GENERIC_WRITE,
        )
        .expect("created in the transaction");
    io.set_current_transaction(None);
    assert_eq!(io.write(&f, 0, b"data"), 0);
    assert_eq!(io.rename(&f, &format!("{name}-renamed.txt"), false), 0);
    assert_eq!(io.set_disposition(&f, true), 0);
    assert_eq!(io.cleanup(&f), 0);
    io.close(f);
}

/// The tracker with transactions, driven directly: a committed transaction's rename and
/// delete reach its `TransactionNotificationCallback` as one commit with two changes, a rolled
/// back one as one rollback; each transaction got one context (set once, found on the second
/// change), one enlistment and one delete of its context; a transacted create for write
/// access on FAT is refused before any filter sees it. The run ends clean, with the counts in
/// the filter's own trace.
#[test]
fn tracker_counts_committed_and_rolled_back_transactions() {
    let Some(image) = build("tracker", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let fat = volume(&driver, FAT);
    let committed = io.begin_transaction();
    transacted_changes(&io, ntfs, "kept", &committed);
    assert_eq!(io.commit_transaction(committed), 0);
    let rolled_back = io.begin_transaction();
    transacted_changes(&io, ntfs, "undone", &rolled_back);
    assert_eq!(io.rollback_transaction(rolled_back), 0);
    let refused = io.begin_transaction();
    io.set_current_transaction(Some(&refused));
    let calls_before = driver.routine_calls();
    assert_eq!(
        io.create(fat, r"\fat.txt", FILE_CREATE, 0, GENERIC_WRITE)
            .map(|_| ())
            .expect_err("FAT has no transactions"),
        STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED
    );
    assert_eq!(driver.routine_calls(), calls_before, "no filter saw it");
    io.set_current_transaction(None);
    assert_eq!(io.commit_transaction(refused), 0);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    c_filters::assert_calls(
        &report,
        &[
            ("FltGetTransactionContext", 4),
            ("FltSetTransactionContext", 2),
            ("FltEnlistInTransaction", 2),
            ("FltDeleteTransactionContext", 2),
        ],
    );
    assert!(
        report
            .debug_output
            .iter()
            .any(|p| p.text == "tracker: 1 commit(s) with 2 change(s), 1 rollback(s)\n"),
        "{:?}",
        report.debug_output
    );
}

/// The tracker (now enlisting in transactions) stays clean through verify, whose stress
/// workload commits and rolls back transacted files on NTFS, and through bench.
#[test]
fn tracker_with_transactions_is_clean_through_verify_and_bench() {
    let Some(image) = build("tracker", None) else {
        return;
    };
    assert_clean(&image, None);
    let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("bench")
        .arg("--image")
        .arg(&image)
        .output()
        .expect("kernel-sim runs");
    assert!(output.status.success(), "{output:?}");
}

/// The twin that never releases the transaction context its pre set-information found or set
/// is caught when `FilterUnload` unregisters, naming the transaction context and where it was
/// allocated: the stress workload's transacted renames and deletes reach it.
#[test]
fn tracker_transaction_context_leak_twin_is_caught() {
    let Some(stdout) = twin_caught(
        "tracker",
        None,
        "transaction-context-leak",
        Caught {
            kind: "ReferenceLeak",
            routine: "FltUnregisterFilter",
            caller: "FilterUnload",
            rule: "every context reference is released",
        },
    ) else {
        return;
    };
    assert!(
        stdout.contains("transaction context (4 bytes, tag 'Ctrx')")
            && stdout.contains("allocated in PreSetInformation"),
        "{stdout}"
    );
}

/// A transacted rename whose destination name cannot be had (the injected failure of
/// `FltGetDestinationFileNameInformation`) makes the tracker roll the transaction back
/// (`FltRollbackEnlistment`): the commit returns `STATUS_TRANSACTION_ABORTED` and the tracker's
/// own notification callback sees a rollback instead of the commit. The failure is found by
/// failing each failable call in turn.
#[test]
fn tracker_rolls_back_a_transaction_it_cannot_track() {
    let Some(image) = build("tracker", None) else {
        return;
    };
    let aborted: i32 = 0xC000_020F_u32.cast_signed();
    for nth in 1..=20 {
        let mut sim_config = config();
        sim_config.faults = vigil_kernel_sim::FaultPlan {
            fail_nth: Some(nth),
            random: None,
        };
        let sim = Sim::new(sim_config);
        let driver = sim.load(&image).expect("loads");
        let io = driver.io(requestor(1));
        let ntfs = volume(&driver, NTFS);
        let transaction = io.begin_transaction();
        transacted_changes(&io, ntfs, "vetoed", &transaction);
        let status = io.commit_transaction(transaction);
        let vetoed = driver.routine_calls().contains_key("FltRollbackEnlistment");
        let report = driver.finish();
        if !vetoed {
            continue;
        }
        assert_eq!(status, aborted);
        assert!(report.is_clean(), "{}", report.summary());
        assert!(
            report
                .debug_output
                .iter()
                .any(|p| p.text == "tracker: 0 commit(s) with 0 change(s), 1 rollback(s)\n"),
            "{:?}",
            report.debug_output
        );
        return;
    }
    panic!("no injected failure made the tracker roll back");
}
