//! kernel-sim on minifilters that are not Vigil: the C minifilters of `tests/minifilters`, built
//! on Linux with clang and rust-lld against the Wine DDK headers (`xtask::build_c_minifilter`),
//! each put through `kernel-sim verify` (load/unload cycles, stress, both fault sweeps) and
//! `kernel-sim bench`. Each production build comes out clean; each broken twin comes out with
//! the rule that catches its bug, the routine that caught it and the driver function that was
//! running.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set), where .ci/run installs
//! clang and a missing compiler is a failure.

mod c_filters;
mod io_workload;

use std::process::Command;

use io_workload::{FILE_CREATE, FILE_OPEN, GENERIC_WRITE, NTFS, config, requestor, volume};
use vigil_kernel_sim::{DebugPrint, Sim, WriteOptions};
use xtask::CBuildError;

use c_filters::{
    Caught, assert_caught, assert_clean, build, clean_and_caught, twin_caught, verify,
    wait_for_calls,
};

/// The scanner-lite filter (create/cleanup callbacks, normalized names, a port with the
/// default security descriptor) is clean with a client on its port; its twin that releases a
/// name twice is caught in its post create by `FltReleaseFileNameInformation`.
#[test]
fn passthrough_is_clean_and_its_double_release_twin_is_caught() {
    let port = Some(r"\CPassthroughPort");
    clean_and_caught(
        "passthrough",
        port,
        "double-release",
        Caught {
            kind: "OverRelease",
            routine: "FltReleaseFileNameInformation",
            caller: "PostCreate",
            rule: "name information is released exactly once per reference",
        },
    );
}

/// The scanner-style filter (each create sent to the port's client, which the scenario's
/// client answers) is clean, vanishing clients with sends pending included; its twin that
/// receives the verdict into a stack buffer is caught by `FltSendMessage`'s reply-buffer rule.
#[test]
fn scanner_is_clean_and_its_reply_on_stack_twin_is_caught() {
    let port = Some(r"\CScannerPort");
    let Some(image) = build("scanner", None) else {
        return;
    };
    assert_clean(&image, port);
    let stress = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("stress")
        .arg("--image")
        .arg(&image)
        .args(["--port", r"\CScannerPort", "--cycles", "4"])
        .output()
        .expect("kernel-sim runs");
    let stdout = String::from_utf8_lossy(&stress.stdout);
    assert!(stress.status.success(), "{stress:?}");
    let messages: u64 = stdout
        .split(" message(s)")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a message count: {stdout}"));
    assert!(
        messages > 0,
        "the client received no scan request: {stdout}"
    );
    let twin = build("scanner", Some("reply-on-stack")).expect("clang was found above");
    assert_caught(
        &twin,
        port,
        "Parameter",
        "FltSendMessage",
        "PostCreate",
        "a ReplyBuffer that stays resident during the (user-mode) wait",
    );
}

/// The delete/rename tracker (set-information parameters read through Wine's
/// `FLT_PARAMETERS`, destination names for renames passed to the post as its completion
/// context) is clean; its twin that returns from the post before releasing the destination
/// name is caught when `FilterUnload` unregisters, naming the destination, which proves the
/// parameters were read where kernel-sim wrote them.
#[test]
fn tracker_is_clean_and_its_destination_leak_twin_is_caught() {
    let Some(stdout) = clean_and_caught(
        "tracker",
        None,
        "destination-leak",
        Caught {
            kind: "ReferenceLeak",
            routine: "FltUnregisterFilter",
            caller: "FilterUnload",
            rule: "every name information reference is released",
        },
    ) else {
        return;
    };
    // The example is the first leak found: a plain rename's destination (`\Renamed...`) or a
    // transacted one's (`\TxRenamed...`), whichever thread got there first.
    assert!(
        stdout.contains("Renamed") && stdout.contains("acquired in PreSetInformation"),
        "{stdout}"
    );
}

/// The tracker's twin that takes its executive resource exclusive without a critical region is
/// caught by `ExAcquireResourceExclusiveLite` in its post set-information (and the release
/// after it by `ExReleaseResourceLite`).
#[test]
fn tracker_lock_without_critical_region_twin_is_caught() {
    let Some(_) = twin_caught(
        "tracker",
        None,
        "lock-without-critical-region",
        Caught {
            kind: "CallbackContract",
            routine: "ExAcquireResourceExclusiveLite",
            caller: "PostSetInformation",
            rule: "ExAcquireResourceExclusiveLite: normal kernel APCs disabled (KeEnterCriticalRegion) until the release",
        },
    ) else {
        return;
    };
}

/// The context filter (instance, volume and stream-handle contexts) is clean; its twin that
/// never releases the context its pre write got is caught when `FilterUnload` unregisters,
/// with the context's tag and where it was allocated.
#[test]
fn handlectx_is_clean_and_its_context_leak_twin_is_caught() {
    let Some(stdout) = clean_and_caught(
        "handlectx",
        None,
        "context-leak",
        Caught {
            kind: "ReferenceLeak",
            routine: "FltUnregisterFilter",
            caller: "FilterUnload",
            rule: "every context reference is released",
        },
    ) else {
        return;
    };
    // The leaked handle context never runs its cleanup, so the volume context it referenced
    // leaks with it: the row's example names one or the other (the table is unordered).
    assert!(
        (stdout.contains("tag 'Cctx'") && stdout.contains("allocated in PostCreate"))
            || (stdout.contains("tag 'Cvol'") && stdout.contains("allocated in InstanceSetup")),
        "{stdout}"
    );
}

/// The instance context twins: one never releases the reference `FltAllocateContext` gave
/// InstanceSetup (caught when `FilterUnload` unregisters, with the tag and where it was
/// allocated), one releases the context `FltGetInstanceContext` gave its post create twice,
/// which drops the instance's own reference and frees the context while the instance still
/// has it set: the next create's post touches freed pool, caught as a use after free of the
/// block with the context's tag.
#[test]
fn handlectx_instance_context_twins_are_caught() {
    let Some(stdout) = twin_caught(
        "handlectx",
        None,
        "instance-context-leak",
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
        stdout.contains("instance context (4 bytes, tag 'Cins')")
            && stdout.contains("allocated in InstanceSetup"),
        "{stdout}"
    );
    let over = build("handlectx", Some("instance-context-over-release")).expect("clang was found");
    assert_caught(
        &over,
        None,
        "Fault",
        "PostCreate",
        "PostCreate",
        "no faults in driver code",
    );
    let output = verify(&over, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("use after free of a 4-byte pool block tagged 'Cins' freed in PostCreate"),
        "{stdout}"
    );
}

/// The volume-context twin: each handle context references its volume's context
/// (`FltReferenceContext`) and its cleanup callback never releases it, so the volume context
/// outlives the registration: caught when `FilterUnload` unregisters, with the tag and where it
/// was allocated (InstanceSetup, after `FltGetFileSystemType` and `FltIsVolumeWritable`).
#[test]
fn handlectx_volume_context_leak_twin_is_caught() {
    let Some(stdout) = twin_caught(
        "handlectx",
        None,
        "volume-context-leak",
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
        stdout.contains("volume context (12 bytes, tag 'Cvol')")
            && stdout.contains("allocated in InstanceSetup"),
        "{stdout}"
    );
}

/// The stream-context twin releases the stream context its post create found or created only
/// when it created it: the one found on a second open of a stream leaks, caught when the
/// filter unregisters, with the stream context's tag and where it was allocated. (The stress
/// workload never opens a stream twice, so the twin is driven directly.)
#[test]
fn handlectx_found_stream_context_leak_twin_is_caught() {
    let Some(leak) = build("handlectx", Some("found-stream-context-leak")) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&leak).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    for disposition in [FILE_CREATE, FILE_OPEN] {
        let f = io
            .create(ntfs, r"\same.txt", disposition, 0, GENERIC_WRITE)
            .expect("opened");
        io.cleanup(&f);
        io.close(f);
    }
    let report = driver.finish();
    let leaks: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.rule.contains("every context reference is released"))
        .collect();
    assert_eq!(leaks.len(), 1, "{}", report.summary());
    assert_eq!(leaks[0].routine, "FltUnregisterFilter");
    assert_eq!(leaks[0].callback, "FilterUnload");
    assert!(
        leaks[0]
            .message
            .contains("stream context (4 bytes, tag 'Cstr')")
            && leaks[0].message.contains("allocated in PostCreate"),
        "{}",
        leaks[0].message
    );
}

/// Stream and file contexts are the stream's and the file's, not the handle's: a second open
/// of the same file finds the stream context the first one set, and writes through either
/// handle count in it.
#[test]
fn handlectx_stream_context_is_shared_by_the_opens_of_a_stream() {
    let Some(image) = build("handlectx", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let first = io
        .create(ntfs, r"\shared.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    let second = io
        .create(ntfs, r"\shared.txt", FILE_OPEN, 0, GENERIC_WRITE)
        .expect("opened");
    assert_eq!(io.write(&first, 0, b"one"), 0);
    assert_eq!(io.write(&second, 3, b"two"), 0);
    for f in [first, second] {
        io.cleanup(&f);
        io.close(f);
    }
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    // One stream context and one file context set (by the first open), found by the second.
    assert_eq!(report.routine_calls.get("FltSetStreamContext"), Some(&1));
    assert_eq!(report.routine_calls.get("FltSetFileContext"), Some(&1));
    assert_eq!(report.routine_calls.get("FltGetStreamContext"), Some(&4));
}

/// The twin that never frees the block its DriverEntry took with `ExAllocatePoolWithTag`
/// (freed with `ExFreePool` in production) is caught as a pool leak with the block's tag.
#[test]
fn handlectx_pool_leak_twin_is_caught_with_its_tag() {
    let Some(twin) = build("handlectx", Some("pool-leak")) else {
        return;
    };
    let output = verify(&twin, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let row = stdout
        .lines()
        .find(|line| line.contains("PoolLeak"))
        .unwrap_or_else(|| panic!("no pool leak row: {stdout}"));
    assert!(row.contains("every pool block is freed"), "{row}");
    assert!(
        stdout.contains("tag 'Ccnt'") && stdout.contains("from DriverEntry"),
        "{stdout}"
    );
}

/// What the passthrough filter prints with `DbgPrint` (DriverEntry, `%ws`) and `DbgPrintEx`
/// (its post create: `FltGetIrpName` through `%s`, the name through `%wZ`, a count through
/// `%ld`) lands in the report, formatted, with the component, level and caller.
#[test]
fn debug_prints_are_captured_formatted_with_their_caller() {
    let Some(image) = build("passthrough", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\printed.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    io.cleanup(&f);
    io.close(f);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    let line = |routine: &str, filter: Option<(u32, u32)>, callback: &str, text: &str| DebugPrint {
        routine: routine.into(),
        component: filter.map(|(component, _)| component),
        level: filter.map(|(_, level)| level),
        callback: callback.into(),
        text: text.into(),
    };
    assert_eq!(
        report.debug_output,
        [
            line(
                "DbgPrint",
                None,
                "DriverEntry",
                "passthrough: filtering, port \\CPassthroughPort\n"
            ),
            // DPFLTR_IHVDRIVER_ID (77), DPFLTR_TRACE_LEVEL (2).
            line(
                "DbgPrintEx",
                Some((77, 2)),
                "PostCreate",
                &format!("passthrough: IRP_MJ_CREATE {NTFS}\\printed.txt (open 1)\n")
            ),
        ]
    );
    assert_eq!(report.debug_output_dropped, 0);
}

/// The twin that prints the name with `%wZ` under a spin lock is caught by `DbgPrintEx`'s
/// rule that Unicode format codes are for PASSIVE_LEVEL only.
#[test]
fn passthrough_print_under_spin_lock_twin_is_caught() {
    let Some(_) = twin_caught(
        "passthrough",
        Some(r"\CPassthroughPort"),
        "print-under-spin-lock",
        Caught {
            kind: "Irql",
            routine: "DbgPrintEx",
            caller: "PostCreate",
            rule: "Unicode format codes (%C, %S, %lc, %ls, %wc, %ws, %wZ) only at PASSIVE_LEVEL",
        },
    ) else {
        return;
    };
}

/// The reader (post-create scans through a generic work item that opens the file itself with
/// `FltCreateFileEx`, reads it with `FltReadFile` and closes it; every write pended to a work
/// item and completed with `FltCompletePendedPreOperation`) is clean; its twin that unloads
/// without waiting for its queued work items is caught when the driver is gone, naming the
/// callback that queued the item.
#[test]
fn reader_is_clean_and_its_unload_without_drain_twin_is_caught() {
    clean_and_caught(
        "reader",
        None,
        "unload-without-drain",
        Caught {
            kind: "ThreadStillRunning",
            routine: "FltQueueGenericWorkItem",
            caller: "PostCreate",
            rule: "every queued work item has finished running before the driver is gone",
        },
    );
}

/// The reader's own I/O reaches the file system and not its own callbacks: one create by the
/// test gives one post-create (no recursion from the worker's `FltCreateFileEx`) and one scan;
/// both writes are pended to deferred-I/O work items and complete with the file system's
/// status, a paging write is refused by `FltQueueDeferredIoWorkItem` and goes through
/// unpended; what the driver counted is in its unload trace.
#[test]
fn reader_issues_its_own_io_below_itself_and_completes_pended_writes() {
    let Some(image) = build("reader", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\scanned.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"hello"), 0);
    assert_eq!(io.write(&f, 5, b" world"), 0);
    // Paging I/O cannot be posted (STATUS_FLT_NOT_SAFE_TO_POST_OPERATION): it goes through
    // unpended.
    let paging = WriteOptions {
        paging_io: true,
        ..WriteOptions::default()
    };
    assert_eq!(io.write_with(&f, 0, b"paged", paging), 0);
    io.cleanup(&f);
    io.close(f);
    // The scan runs on a work item: let it finish before the unload tears the instance down.
    wait_for_calls(&driver, "FltClose", 1);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    c_filters::assert_calls(
        &report,
        &[
            ("FltCreateFileEx", 1),
            ("FltReadFile", 1),
            ("FltClose", 1),
            ("FltQueueDeferredIoWorkItem", 3),
            ("FltFreeDeferredIoWorkItem", 3),
            ("FltCompletePendedPreOperation", 2),
        ],
    );
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace,
        ["reader: 1 scan(s), 2 pended write(s), 1 cleanup(s)\n"]
    );
}

/// With post-operation callbacks at DISPATCH_LEVEL (as Windows may call them), the reader's
/// post-cleanup cannot count there: `FltDoCompletionProcessingWhenSafe` posts it to a worker
/// thread, the operation stays pended until the safe callback has run, and the run is clean.
#[test]
fn reader_posts_its_cleanup_processing_when_called_at_dispatch() {
    let Some(image) = build("reader", None) else {
        return;
    };
    let mut configuration = config();
    configuration.io.post_ops_at_dispatch = true;
    let sim = Sim::new(configuration);
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    for name in [r"\one.txt", r"\two.txt"] {
        let f = io
            .create(ntfs, name, FILE_CREATE, 0, GENERIC_WRITE)
            .expect("created");
        assert_eq!(io.cleanup(&f), 0);
        io.close(f);
    }
    wait_for_calls(&driver, "FltClose", 2);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert_eq!(
        report
            .routine_calls
            .get("FltDoCompletionProcessingWhenSafe"),
        Some(&2)
    );
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace,
        ["reader: 2 scan(s), 0 pended write(s), 2 cleanup(s)\n"]
    );
}

/// The twin whose write worker loses the first write it is given: the pended write is never
/// completed; kernel-sim stops waiting after its pend limit, reports it against the pre-write
/// that pended it, and the run goes on (the harness does not hang).
#[test]
fn reader_pend_never_completed_twin_is_caught() {
    let Some(twin) = build("reader", Some("pend-never-completed")) else {
        return;
    };
    let mut configuration = config();
    configuration.pend_limit = std::time::Duration::from_millis(300);
    let sim = Sim::new(configuration);
    let driver = sim.load(&twin).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\lost.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_ne!(io.write(&f, 0, b"lost"), 0, "the lost write cannot succeed");
    assert_eq!(io.write(&f, 4, b"kept"), 0);
    io.cleanup(&f);
    io.close(f);
    let report = driver.finish();
    let lost: Vec<_> = report
        .violations
        .iter()
        .filter(|v| {
            v.rule == "an operation pended with FLT_PREOP_PENDING is completed with FltCompletePendedPreOperation"
        })
        .collect();
    assert_eq!(lost.len(), 1, "{}", report.summary());
    assert_eq!(lost[0].callback, "PreWrite");
}

/// The buffer swapper (sector size from the volume's properties through an instance context,
/// each write's data copied into a device-aligned buffer described by an MDL, swapped into the
/// parameter block and marked dirty, the buffer freed in post-write, the MDL left to the I/O
/// system) is clean; its twin that swaps without `FltSetCallbackDataDirty` is caught after its
/// pre-write (the file system got the old parameters, and the swapped MDL, never handed on,
/// leaks).
#[test]
fn swapper_is_clean_and_its_not_dirty_twin_is_caught() {
    let Some(stdout) = clean_and_caught(
        "swapper",
        None,
        "not-dirty",
        Caught {
            kind: "CallbackContract",
            routine: "PreWrite",
            caller: "PreWrite",
            rule: "a callback that changes the callback data's parameters calls FltSetCallbackDataDirty",
        },
    ) else {
        return;
    };
    assert!(
        stdout.contains("every MDL is freed (IoFreeMdl)")
            && stdout.contains("from IoAllocateMdl in PreWrite"),
        "{stdout}"
    );
}

/// The swapper's twin that frees the aligned buffer with `ExFreePool` is caught by
/// `ExFreePool`, naming the allocator and the tag, in its post-write.
#[test]
fn swapper_aligned_buffer_freed_with_ex_free_pool_twin_is_caught() {
    let Some(stdout) = twin_caught(
        "swapper",
        None,
        "freed-with-ex-free-pool",
        Caught {
            kind: "PoolBadFree",
            routine: "ExFreePool",
            caller: "PostWrite",
            rule: "ExFreePool: a block of the allocator it pairs with",
        },
    ) else {
        return;
    };
    assert!(
        stdout.contains("tag 'Cswb') came from FltAllocatePoolAlignedWithTag"),
        "{stdout}"
    );
}

/// What the swapper hands the file system is its own buffer: sector-aligned, described by an
/// MDL whose mapping is the buffer itself, and gone (MDL freed by the I/O system, buffer by the
/// post-write) once the write completes; the writes still reach the file.
#[test]
fn swapper_hands_the_file_system_an_aligned_buffer_and_an_mdl() {
    let Some(image) = build("swapper", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\swapped.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"hello"), 0);
    assert_eq!(io.write(&f, 5, &[7; 700]), 0);
    io.cleanup(&f);
    io.close(f);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    for routine in [
        "FltAllocatePoolAlignedWithTag",
        "FltFreePoolAlignedWithTag",
        "IoAllocateMdl",
        "MmBuildMdlForNonPagedPool",
        "FltSetCallbackDataDirty",
    ] {
        assert_eq!(report.routine_calls.get(routine), Some(&2), "{routine}");
    }
    assert_eq!(report.routine_calls.get("IoFreeMdl"), None);
    // InstanceSetup traced each disk volume's names; the NTFS one among them.
    let volume_line = format!("swapper: {NTFS} is \\??\\Volume{{6b76736d-");
    assert!(
        report
            .debug_output
            .iter()
            .any(|line| line.text.starts_with(&volume_line)
                && line.text.ends_with(", sectors of 512 bytes\n")),
        "{:?}",
        report.debug_output
    );
}

/// Every production filter runs through `kernel-sim bench` (two I/O threads, in the test and
/// the measurement configuration) with operations made and no violation, and callbacks made
/// in every filter but the tracker: bench's workload (creates, writes, cleanups, closes) sets
/// no information, which is all the tracker watches. Rates are printed by the command, never
/// asserted.
#[test]
fn production_filters_run_in_bench() {
    for (name, called) in [
        ("passthrough", true),
        ("handlectx", true),
        ("scanner", true),
        ("tracker", false),
        ("reader", true),
        ("swapper", true),
    ] {
        let Some(image) = build(name, None) else {
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
            assert!(
                output.status.success(),
                "{name} {configuration:?}: {output:?}"
            );
            let count_before = |unit: &str| -> u64 {
                stdout
                    .split(unit)
                    .next()
                    .and_then(|before| before.rsplit(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("a count of{unit}: {stdout}"))
            };
            assert!(count_before(" operations") > 0, "{name}: {stdout}");
            assert_eq!(count_before(" callbacks") > 0, called, "{name}: {stdout}");
            assert!(stdout.contains(", 0 violation(s)"), "{name}: {stdout}");
        }
    }
}

/// A twin the source does not define fails the build instead of building production.
#[test]
fn an_unknown_twin_fails_the_build() {
    match xtask::build_c_minifilter_twin("passthrough", "no-such-bug") {
        Err(CBuildError::UnknownTwin { define, .. }) => assert_eq!(define, "TWIN_NO_SUCH_BUG"),
        other => panic!("expected UnknownTwin, got {other:?}"),
    }
}

/// Every production C filter survives its unload racing DriverEntry: `stress` with the race in
/// every cycle (the unload requested the moment `FltRegisterFilter` returns) reports nothing,
/// because each FilterUnload waits for DriverEntry to have returned (`entry_gate.h`). Without
/// the gate, `tracker` and `reader` were caught tearing down under a running DriverEntry.
#[test]
fn production_filters_survive_an_unload_racing_driver_entry() {
    for (name, port) in [
        ("passthrough", Some(r"\CPassthroughPort")),
        ("scanner", Some(r"\CScannerPort")),
        ("handlectx", None),
        ("tracker", None),
        ("reader", None),
        ("swapper", None),
        ("namer", None),
        ("issuer", None),
        ("queue", None),
    ] {
        let Some(image) = build(name, None) else {
            return;
        };
        let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
            .arg("stress")
            .arg("--image")
            .arg(&image)
            .args(["--cycles", "16", "--race-every", "1"])
            .args(["--port", port.unwrap_or("none")])
            .output()
            .expect("kernel-sim runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name}: {stdout}");
        assert!(stdout.contains(" 16 race cycle(s)"), "{name}: {stdout}");
    }
}
