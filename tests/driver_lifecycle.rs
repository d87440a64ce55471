//! Lifecycle of the real vigil.sys in kernel-sim beyond DriverEntry: a fault sweep over the
//! callbacks and the message handler (every failable call of a fixed workload failed in turn),
//! unload racing DriverEntry with I/O running, and mandatory and optional unloads with a
//! service connected, I/O in flight and a verdict pending.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use driver::{
    Answer, FILE_CREATE, GENERIC_WRITE, NTFS, STATUS_SUCCESS, Service, config, image, load, nt,
    registry_multi, requestor, send_held_config, volume,
};
use vigil_kernel_sim::{
    Driver, FaultPlan, PortConnection, RegistryValue, Report, Sim, SimConfig, UnloadKind,
    UnloadOutcome,
};
use vigil_protocol::{
    Config, EventKind, GetStats, Hello, HelloReply, Ping, Pong, SetConfigReply, Stats, StatsReply,
};
use vigil_sys::STATUS_INSUFFICIENT_RESOURCES;

/// A protected directory, so the workload's create there asks for a verdict.
/// A small ring: every run maps its pool in kernel-sim's special pool (pages per block, kept in
/// quarantine after free), so the default 4 MiB ring times hundreds of runs is gigabytes.
fn sweep_config() -> SimConfig {
    config(&[
        (
            "ProtectedPrefixes",
            registry_multi(&[&nt(NTFS, r"\Guarded")]),
        ),
        ("RingBytes", RegistryValue::Dword(64 * 1024)),
    ])
}

/// A command's status and reply, tolerating the one injected allocation failure.
fn command(port: &PortConnection, input: &[u8], output: usize) -> Option<Vec<u8>> {
    let result = port.send_command(input, output).expect("delivered");
    match result.status {
        STATUS_SUCCESS => Some(result.output),
        STATUS_INSUFFICIENT_RESOURCES => None,
        other => panic!("command failed with {other:#x}"),
    }
}

fn try_stats(port: &PortConnection) -> Option<Stats> {
    let mut request = [0u8; GetStats::LEN];
    GetStats.emit(&mut request).unwrap();
    command(port, &request, StatsReply::LEN).map(|out| StatsReply::parse(&out).unwrap().stats)
}

/// Hello, statistics, ping (set-configuration comes last in the workload: it clears the
/// protected prefix).
fn commands(port: &PortConnection) {
    let mut hello = [0u8; Hello::LEN];
    Hello {
        client_process_id: 1,
    }
    .emit(&mut hello)
    .unwrap();
    let _ = command(port, &hello, HelloReply::LEN);
    let _ = try_stats(port);
    let mut ping = [0u8; Ping::LEN];
    Ping { nonce: 7 }.emit(&mut ping).unwrap();
    if let Some(out) = command(port, &ping, Pong::LEN) {
        assert_eq!(Pong::parse(&out).unwrap().nonce, 7);
    }
}

/// The sweep's fixed workload: I/O of every kind, a verdict, commands. Every operation must
/// succeed whatever failed inside the driver (fail-open: a defaulted verdict allows).
fn workload(driver: &Driver, service: &Service) {
    let io = driver.io(requestor(700, 7));
    let ntfs = volume(driver, NTFS);
    let f = io
        .create(ntfs, r"\w.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("create");
    assert_eq!(io.write(&f, 0, b"one"), STATUS_SUCCESS);
    assert_eq!(io.write(&f, 3, b"two"), STATUS_SUCCESS);
    assert_eq!(io.rename(&f, "w2.txt", false), STATUS_SUCCESS);
    assert_eq!(io.link(&f, r"\w3.txt", false), STATUS_SUCCESS);
    assert_eq!(io.set_disposition(&f, true), STATUS_SUCCESS);
    assert_eq!(io.cleanup(&f), STATUS_SUCCESS);
    io.close(f);
    let g = io
        .create(ntfs, r"\Guarded", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("a protected create is allowed (by the service or by default)");
    assert_eq!(io.write(&g, 0, b"x"), STATUS_SUCCESS);
    io.cleanup(&g);
    io.close(g);
    commands(&service.port);
    let mut set = vec![0u8; Config::DEFAULT.encoded_len()];
    let len = Config::DEFAULT.emit(&mut set).unwrap();
    let _ = command(&service.port, &set[..len], SetConfigReply::LEN);
}

/// `generated = delivered + dropped`, the invariant issue 6 asks for.
fn adds_up(stats: &Stats) -> bool {
    stats.events_generated == stats.events_delivered + stats.dropped_total()
}

#[test]
fn every_failure_in_the_callbacks_and_the_message_handler_is_absorbed() {
    let mut depth = 0;
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for n in 1..=2_000 {
        let mut cfg = sweep_config();
        cfg.faults = FaultPlan {
            fail_nth: Some(n),
            random: None,
        };
        let sim = Sim::new(cfg);
        let mut driver = sim.load(image()).expect("loads");
        let mut stats = None;
        if driver.entry_status() == Some(0) {
            let service = Service::allowing(&driver);
            workload(&driver, &service);
            // Quiescence: everything generated is delivered or counted as dropped.
            let mut last = None;
            for _ in 0..1_000 {
                last = try_stats(&service.port).or(last);
                if let Some(s) = last
                    && adds_up(&s)
                {
                    stats = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert!(
                stats.is_some(),
                "n={n}: never quiescent: {last:?}, {:?}",
                driver.violations()
            );
            drop(service);
            assert_eq!(
                driver.unload(UnloadKind::Mandatory),
                Ok(UnloadOutcome::Unloaded),
                "n={n}"
            );
        }
        let report = driver.finish();
        assert!(report.is_clean(), "n={n}: {}", report.summary());
        if std::env::var_os("VIGIL_SWEEP_PROGRESS").is_some() {
            eprintln!("n={n}: {:?}", report.injected.first());
        }
        let Some(injected) = report.injected.first() else {
            depth = report.failable_calls;
            break;
        };
        *failed
            .entry(format!("{} in {}", injected.routine, injected.callback))
            .or_default() += 1;
        if let Some(stats) = stats {
            // The failure is visible in the counters where the driver absorbed it.
            if injected.routine == "FltAllocateContext" {
                assert!(stats.allocation_failures >= 1, "n={n}: {stats:?}");
                // A handle whose open could not attach its context gets one at its first
                // write: only a failure there loses (and counts) the first write.
                if injected.callback == "PreWrite" {
                    assert!(stats.dropped_no_memory >= 1, "n={n}: {stats:?}");
                }
            }
            if injected.callback == "MessageNotify" && injected.routine == "ExAllocatePool2" {
                assert!(stats.allocation_failures >= 1, "n={n}: {stats:?}");
            }
        }
    }
    println!("sweep depth {depth} failable calls; failed: {failed:#?}");
    assert!(depth > 0, "the sweep ended");
    for must in [
        "FltGetFileNameInformation in PostCreate",
        "FltAllocateContext in PostCreate",
        "FltQueryInformationFile in PostCreate",
        "ExAllocatePool2 in MessageNotify",
    ] {
        assert!(
            failed.contains_key(must),
            "{must} never failed: {failed:#?}"
        );
    }
    assert!(
        failed.keys().any(|k| k.starts_with("FltSendMessage")),
        "sends failed too: {failed:#?}"
    );
}

/// A context that cannot be allocated at the open (the file's ID is cached there) loses
/// nothing: the first write attaches one and is reported (without the file ID), and the failure
/// is counted. (With both allocations failing, the first write is generated and dropped for no
/// memory; the fault sweeps cover that path.)
#[test]
fn a_context_lost_at_the_open_still_reports_the_first_write() {
    let run = |n: u64| {
        let mut cfg = config(&[]);
        cfg.faults.fail_nth = Some(n);
        let sim = Sim::new(cfg);
        let driver = sim.load(image()).expect("loads");
        if driver.entry_status() == Some(0) {
            let io = driver.io(requestor(700, 7));
            let f = io
                .create(
                    volume(&driver, NTFS),
                    r"\m.txt",
                    FILE_CREATE,
                    0,
                    GENERIC_WRITE,
                )
                .expect("create");
            assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
            io.cleanup(&f);
            io.close(f);
        }
        driver
    };
    // Without a client the failable calls come in a fixed order: find the post-create's
    // handle-context allocation, its second (the first is the stream context's, which caches
    // the file ID: `tests/driver_file_ids.rs`).
    let n = (1..=200)
        .filter(|&n| {
            let report = run(n).finish();
            report
                .injected
                .first()
                .is_some_and(|f| f.routine == "FltAllocateContext" && f.callback == "PostCreate")
        })
        .nth(1)
        .expect("the post-create allocates a handle context");
    let driver = run(n);
    let service = Service::allowing(&driver);
    assert!(service.wait_for(|log| log.events.len() >= 3));
    std::thread::sleep(Duration::from_millis(50));
    let kinds: Vec<EventKind> = service.events().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::FirstWrite), "{kinds:?}");
    assert!(kinds.contains(&EventKind::CloseModified), "{kinds:?}");
    let stats = service.stats();
    assert_eq!(stats.allocation_failures, 1, "{stats:?}");
    assert_eq!(stats.dropped_no_memory, 0, "{stats:?}");
    assert!(
        adds_up(&stats),
        "generated = delivered + dropped: {stats:?}"
    );
    drop(service);
    driver::assert_clean(driver);
}

#[test]
fn unload_racing_driver_entry_with_io_running() {
    for kind in [UnloadKind::Mandatory, UnloadKind::Optional] {
        let sim = Sim::new(SimConfig {
            race_unload_on_register: Some(kind),
            ..config(&[])
        });
        let mut driver = sim.load(image()).expect("loads");
        assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
        // I/O starts the moment DriverEntry returns, while the racing unload runs.
        let done = AtomicBool::new(false);
        let ops = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let io = driver.io(requestor(800 + t, 810 + t));
                let ntfs = volume(&driver, NTFS);
                let (done, ops) = (&done, &ops);
                s.spawn(move || {
                    let mut i = 0u32;
                    while (!done.load(Ordering::Acquire) || i < 20) && i < 300 {
                        let f = io
                            .create(ntfs, &format!(r"\r{t}-{i}"), FILE_CREATE, 0, GENERIC_WRITE)
                            .expect("never blocked or failed");
                        assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
                        io.cleanup(&f);
                        io.close(f);
                        ops.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            match driver.unload(kind) {
                Ok(UnloadOutcome::Unloaded) => {}
                Ok(UnloadOutcome::Refused(_)) if kind == UnloadKind::Optional => {
                    assert_eq!(
                        driver.unload(UnloadKind::Mandatory),
                        Ok(UnloadOutcome::Unloaded)
                    );
                }
                other => panic!("{kind:?}: {other:?}"),
            }
            done.store(true, Ordering::Release);
        });
        assert!(ops.load(Ordering::Relaxed) >= 40);
        let report = driver.finish();
        assert!(report.is_clean(), "{kind:?}: {}", report.summary());
        assert_eq!(report.routine_calls.get("FltUnregisterFilter"), Some(&1));
    }
}

#[test]
fn unload_with_a_service_connected_io_in_flight_and_a_verdict_pending() {
    for kind in [UnloadKind::Optional, UnloadKind::Mandatory] {
        let (_sim, mut driver) = load(
            config(&[
                (
                    "ProtectedPrefixes",
                    registry_multi(&[&nt(NTFS, r"\Guarded")]),
                ),
                ("VerdictTimeoutMs", RegistryValue::Dword(1_000)),
            ]),
            &image(),
        );
        // The service takes verdict requests and never answers them.
        let service = Arc::new(Service::connect(&driver, |_| Answer::Ignore));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let ntfs = volume(&driver, NTFS);
            for t in 0..2u32 {
                let io = driver.io(requestor(900 + t, 910 + t));
                let stop = &stop;
                s.spawn(move || {
                    // Bounded: kernel-sim keeps every file object's memory in quarantine.
                    let mut i = 0;
                    while !stop.load(Ordering::Acquire) && i < 300 {
                        let f = io
                            .create(ntfs, &format!(r"\u{t}-{i}"), FILE_CREATE, 0, GENERIC_WRITE)
                            .expect("never blocked or failed");
                        assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
                        io.cleanup(&f);
                        io.close(f);
                        i += 1;
                    }
                });
            }
            let io = driver.io(requestor(950, 951));
            let verdict = s.spawn(move || {
                io.create(ntfs, r"\Guarded", FILE_CREATE, 0, GENERIC_WRITE)
                    .map(|f| io.close(f))
            });
            assert!(
                service.wait_for(|log| !log.requests.is_empty()),
                "the verdict request is pending"
            );
            let outcome = driver.unload(kind);
            match outcome {
                Ok(UnloadOutcome::Unloaded) => {}
                Ok(UnloadOutcome::Refused(_)) if kind == UnloadKind::Optional => {
                    assert_eq!(
                        driver.unload(UnloadKind::Mandatory),
                        Ok(UnloadOutcome::Unloaded)
                    );
                }
                other => panic!("{kind:?}: {other:?}"),
            }
            stop.store(true, Ordering::Release);
            // The pending verdict ended with the default (fail-open: allowed).
            assert_eq!(verdict.join().unwrap(), Ok(()), "{kind:?}");
        });
        assert!(
            !service.port.is_connected(),
            "unload closed the client port"
        );
        drop(service);
        let report = driver.finish();
        assert!(report.is_clean(), "{kind:?}: {}", report.summary());
    }
}

/// What the unload had done when it first blocked with a PreWrite held mid-flight.
#[derive(Debug)]
struct HeldCallbackUnload {
    /// The unload thread blocked in a wait while the callback was held.
    blocked: bool,
    /// Teardown routines already called at that moment (name, calls).
    teardown_begun: Vec<(String, u64)>,
}

/// On another thread: once the unload thread has blocked in a wait, records which teardown
/// routines it had called by then, and releases the held call.
fn release_when_unload_blocks(
    observer: &vigil_kernel_sim::Observer,
) -> std::thread::JoinHandle<HeldCallbackUnload> {
    let observer = observer.clone();
    std::thread::spawn(move || {
        let blocked = observer.wait_until_unload_blocked(1, Duration::from_secs(10));
        let calls = observer.routine_calls();
        observer.release();
        let teardown_begun = [
            "FltCloseCommunicationPort",
            "FltCloseClientPort",
            "FltUnregisterFilter",
        ]
        .iter()
        .filter_map(|r| calls.get(*r).map(|&n| ((*r).to_owned(), n)))
        .collect();
        HeldCallbackUnload {
            blocked,
            teardown_begun,
        }
    })
}

/// Holds a PreWrite inside its first routine call (kernel-sim's pause point), unloads on this
/// thread, and records what the unload had done by the time it blocked; then releases the
/// callback and lets everything finish. The report must be clean either way.
fn unload_with_a_callback_held(image: &std::path::Path) -> HeldCallbackUnload {
    let cfg = SimConfig {
        pause_at: Some(vigil_kernel_sim::PausePoint {
            routine: "FltGetRequestorProcessId",
            callback: "PreWrite",
        }),
        ..config(&[])
    };
    let (_sim, mut driver) = load(cfg, image);
    let io = driver.io(requestor(1, 1));
    let ntfs = volume(&driver, NTFS);
    let file = io
        .create(ntfs, r"\held.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("create");
    let observer = driver.observer();
    let writer = std::thread::spawn(move || {
        let status = io.write(&file, 0, b"held");
        io.cleanup(&file);
        io.close(file);
        status
    });
    assert!(
        observer.wait_until_paused(Duration::from_secs(10)),
        "the PreWrite reached the pause point"
    );
    // The unload runs until it blocks (a correct one in its wait for callbacks, before any
    // teardown; one that does not wait, in FltUnregisterFilter's drain).
    let watcher = release_when_unload_blocks(&observer);
    let outcome = driver.unload(UnloadKind::Mandatory);
    let held = watcher.join().expect("watcher");
    assert_eq!(writer.join().expect("writer"), STATUS_SUCCESS);
    assert_eq!(outcome, Ok(UnloadOutcome::Unloaded), "{held:?}");
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    held
}

/// Callbacks hold their unload-gate admission for their whole body: with a PreWrite held
/// mid-flight, FilterUnload blocks before tearing anything down, every run.
#[test]
fn unload_waits_for_a_callback_held_mid_flight_before_any_teardown() {
    let held = unload_with_a_callback_held(&image());
    assert!(
        held.blocked,
        "the unload blocked while the callback was held"
    );
    assert!(
        held.teardown_begun.is_empty(),
        "teardown began under an admitted callback: {:?}",
        held.teardown_begun
    );
}

/// The broken twin `unadmitted-callback` (PreWrite ends its admission at once) is caught by
/// the same test: its unload closes the port and unregisters while the callback still runs.
#[test]
fn a_callback_that_drops_its_admission_is_caught() {
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::UnadmittedCallback));
    let held = unload_with_a_callback_held(&twin);
    assert!(held.blocked, "{held:?}");
    assert!(
        held.teardown_begun
            .iter()
            .any(|(routine, _)| routine == "FltCloseCommunicationPort"),
        "the twin's unload tore down under the held callback: {held:?}"
    );
}

/// Holds the delivery thread inside its first `FltSendMessage` (a batch of one event, a service
/// connected), unloads on this thread, and records what the unload had done when it blocked;
/// then releases the send and lets everything finish. Returns that record and the report.
fn unload_with_a_send_held(image: &std::path::Path) -> (HeldCallbackUnload, Report) {
    let cfg = send_held_config();
    let (_sim, mut driver) = load(cfg, image);
    let service = Service::allowing(&driver);
    let io = driver.io(requestor(1, 1));
    let ntfs = volume(&driver, NTFS);
    let file = io
        .create(ntfs, r"\sent.txt", FILE_CREATE, 0, 0)
        .expect("create");
    io.close(file);
    let observer = driver.observer();
    assert!(
        observer.wait_until_paused(Duration::from_secs(10)),
        "the delivery thread reached FltSendMessage"
    );
    let watcher = release_when_unload_blocks(&observer);
    let outcome = driver.unload(UnloadKind::Mandatory);
    let held = watcher.join().expect("watcher");
    assert_eq!(outcome, Ok(UnloadOutcome::Unloaded), "{held:?}");
    drop(service);
    (held, driver.finish())
}

/// RULES.md 5 on the real image, deterministically: with the delivery thread's send held,
/// unload closes the server port and then waits for the send (the slot's exclusive lock) before
/// it closes the client port, through the slot's one variable.
#[test]
fn unload_closes_the_client_port_only_after_a_send_in_progress() {
    let (held, report) = unload_with_a_send_held(&image());
    assert!(held.blocked, "{held:?}");
    let closed = |routine: &str| held.teardown_begun.iter().any(|(r, _)| r == routine);
    assert!(closed("FltCloseCommunicationPort"), "{held:?}");
    assert!(
        !closed("FltCloseClientPort"),
        "the client port was closed under a send in progress: {held:?}"
    );
    assert!(report.is_clean(), "{}", report.summary());
}

/// The broken twin `port-second-copy` keeps the client port in a second variable and closes
/// that one at unload, outside the slot: the field crash of rule 5. kernel-sim catches the held
/// send going out through a port that is already closed.
#[test]
fn a_second_copy_of_the_client_port_is_caught() {
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::PortSecondCopy));
    let (held, report) = unload_with_a_send_held(&twin);
    assert!(
        held.teardown_begun
            .iter()
            .any(|(routine, _)| routine == "FltCloseClientPort"),
        "{held:?}"
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.rule.contains("RULES.md 5")),
        "{}",
        report.summary()
    );
}

/// Holds a PreWrite mid-flight, asks for an optional unload (which closes the gate and waits
/// for the held callback until its bound expires, then refuses), and mounts a new NTFS volume
/// while the gate is closed. Returns whether the new volume was attached, whether a file
/// created on it after the refusal was reported to the service, and the report.
fn mount_during_a_refused_unload(image: &std::path::Path) -> (bool, bool, Report) {
    const LATE: &str = r"\Device\HarddiskVolume7";
    let cfg = SimConfig {
        pause_at: Some(vigil_kernel_sim::PausePoint {
            routine: "FltGetRequestorProcessId",
            callback: "PreWrite",
        }),
        ..config(&[])
    };
    let (_sim, mut driver) = load(cfg, image);
    let service = Service::allowing(&driver);
    let io = driver.io(requestor(1, 1));
    let file = io
        .create(
            volume(&driver, NTFS),
            r"\held.txt",
            FILE_CREATE,
            0,
            GENERIC_WRITE,
        )
        .expect("create");
    let observer = driver.observer();
    let writer = std::thread::spawn(move || {
        let status = io.write(&file, 0, b"held");
        io.cleanup(&file);
        io.close(file);
        status
    });
    assert!(
        observer.wait_until_paused(Duration::from_secs(10)),
        "the PreWrite reached the pause point"
    );
    let mounter = driver.mounter();
    let mounting = std::thread::spawn({
        let observer = observer.clone();
        move || {
            // The unload has closed the gate and waits for the held PreWrite.
            assert!(observer.wait_until_unload_blocked(1, Duration::from_secs(10)));
            mounter.mount(vigil_kernel_sim::VolumeKind::Ntfs, LATE)
        }
    });
    let outcome = driver.unload(UnloadKind::Optional);
    let late = mounting.join().expect("mounting");
    assert!(
        matches!(outcome, Ok(UnloadOutcome::Refused(_))),
        "the held callback outlasts the unload's bound: {outcome:?}"
    );
    observer.release();
    assert_eq!(writer.join().expect("writer"), STATUS_SUCCESS);
    let attached = driver.is_attached(late);
    let io = driver.io(requestor(2, 2));
    if let Ok(file) = io.create(late, r"\late.txt", FILE_CREATE, 0, 0) {
        io.close(file);
    }
    let reported = service.wait_for(|log| {
        log.events
            .iter()
            .any(|e| e.path.starts_with(LATE) && e.path.ends_with("late.txt"))
    });
    drop(service);
    let _ = driver.unload(UnloadKind::Mandatory);
    (attached, reported, driver.finish())
}

/// Issue 13, defect 3: Filter Manager offers a volume once. A volume mounted while a refused
/// optional unload keeps the gate closed is attached, and watched once the gate reopens.
/// `unwatched-volume` (InstanceSetup answering `STATUS_FLT_DO_NOT_ATTACH` while the gate is
/// closed) leaves it unwatched, every run.
#[test]
fn a_volume_mounted_during_a_refused_unload_is_watched() {
    let (attached, reported, report) = mount_during_a_refused_unload(&image());
    assert!(
        attached && reported,
        "attached {attached}, reported {reported}"
    );
    assert!(report.is_clean(), "{}", report.summary());
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::UnwatchedVolume));
    let (attached, reported, _) = mount_during_a_refused_unload(&twin);
    assert!(
        !attached && !reported,
        "twin-unwatched-volume: the late volume was watched"
    );
}
