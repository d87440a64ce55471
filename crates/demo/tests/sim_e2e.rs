//! End to end in kernel-sim: the real vigil.sys, the service core through
//! kernel-sim's client, a scripted workload from several processes and threads, and the JSON
//! Lines file read back. The field cases: the service killed while the driver sends, the driver
//! unloaded and reloaded under a running service, a denied path, fail-open and fail-closed.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vigil_demo::jsonl::{JsonlContents, events_of_thread, read_jsonl};
use vigil_demo::machine::{InstanceReport, Machine, Volumes};
use vigil_demo::service_thread::{ServiceHandle, ServiceSetup};
use vigil_demo::sim_client::SimConnector;
use vigil_demo::workload::{
    Actor, WorkloadOutcome, demo_policy_toml, phase_one, phase_two, process_names,
};
use vigil_kernel_sim::fixtures::NTFS;
use vigil_service::{JsonlOptions, JsonlSink, Policy, PortClient, Sink, record};
use vigil_sys::{FILE_CREATE, GENERIC_WRITE, STATUS_ACCESS_DENIED};

const WAIT: Duration = Duration::from_secs(20);

fn vigil_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys")
        })
        .clone()
}

/// A fresh JSON Lines path for one test.
fn jsonl_path(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim_e2e");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(format!("{test}.jsonl"));
    let _ = std::fs::remove_file(&path);
    path
}

fn jsonl_sinks(path: &Path) -> Vec<Box<dyn Sink + Send>> {
    vec![Box::new(
        JsonlSink::open(JsonlOptions::new(path)).expect("opening the JSON Lines file"),
    )]
}

fn demo_policy(default_verdict: &str) -> Policy {
    Policy::parse(&demo_policy_toml(default_verdict)).expect("the demo policy parses")
}

fn start_service(machine: &Machine, policy: Policy, path: &Path) -> ServiceHandle {
    let mut setup = ServiceSetup::new(policy, jsonl_sinks(path));
    setup.names = process_names();
    setup.resume = record::last_event_position(path).expect("reading the file's end");
    let service = ServiceHandle::start(machine.sim(), setup);
    assert!(
        service.wait_connected(1, WAIT),
        "{:#?}",
        service.log().lines()
    );
    service
}

fn assert_clean(reports: &[InstanceReport]) {
    for instance in reports {
        let report = &instance.report;
        assert!(report.is_clean(), "{}", report.summary());
        assert_eq!(report.pool.leaked_bytes, 0, "{}", report.summary());
    }
}

/// Each thread's events, in the file, are exactly what it caused, in its order.
fn assert_events_match(contents: &JsonlContents, epoch: u32, outcome: &WorkloadOutcome) {
    for expected in &outcome.expected {
        let Some(first) = expected.first() else {
            continue;
        };
        assert_eq!(
            &events_of_thread(contents, epoch, first.tid),
            expected,
            "thread {} in epoch {epoch}",
            first.tid
        );
    }
}

/// `seq` of the events of `epoch`, in file order.
fn sequence_of(contents: &JsonlContents, epoch: u32) -> Vec<u64> {
    contents
        .events
        .iter()
        .filter(|e| e["epoch"].as_u64() == Some(epoch.into()))
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[test]
fn events_reach_the_jsonl_file_complete_and_in_order_across_a_reload() {
    let path = jsonl_path("complete");
    let mut machine = Machine::new(vigil_image());
    let volumes = machine.load().expect("loads");
    let service = start_service(&machine, demo_policy("allow"), &path);

    let first = phase_one(machine.driver(), volumes, Duration::ZERO);
    let stats_1 = service.wait_drained(WAIT).expect("stats");
    machine.unload(Some(stats_1)).expect("unloads");
    let volumes = machine.load().expect("loads again");
    assert!(
        service.wait_connected(2, WAIT),
        "{:#?}",
        service.log().lines()
    );
    let second = phase_two(machine.driver(), volumes, Duration::ZERO);
    let stats_2 = service.wait_drained(WAIT).expect("stats");
    let summary = service.stop().expect("the service ran");
    machine.unload(Some(stats_2)).expect("unloads");
    assert_clean(&machine.finish());

    let contents = read_jsonl(&path).expect("the file");
    assert_eq!(contents.malformed, 0);
    assert!(contents.gaps.is_empty(), "{:?}", contents.gaps);
    // Every event of each driver instance, numbered 0.. without a hole, in the file's order.
    let generated_1 = stats_1.events_generated;
    let generated_2 = stats_2.events_generated;
    assert_eq!(
        sequence_of(&contents, 1),
        (0..generated_1).collect::<Vec<_>>()
    );
    assert_eq!(
        sequence_of(&contents, 2),
        (0..generated_2).collect::<Vec<_>>()
    );
    assert_eq!(generated_1, first.event_count() as u64);
    assert_eq!(generated_2, second.event_count() as u64);
    assert_events_match(&contents, 1, &first);
    assert_events_match(&contents, 2, &second);
    for stats in [stats_1, stats_2] {
        assert_eq!(stats.events_delivered, stats.events_generated);
        assert_eq!(stats.dropped_total(), 0);
    }
    let c = &summary.counters;
    assert_eq!(c.events_written, generated_1 + generated_2);
    assert_eq!(
        (c.connections, c.disconnects, c.driver_instances),
        (2, 1, 2)
    );
    assert_eq!((c.gaps, c.duplicates), (0, 0));
    // Issue 16: every event of a process the workload created names its file by ID (the 64-bit
    // one, flagged, on the FAT volume) and its process by image.
    for event in &contents.events {
        let file_id = event["file_id"].as_str().unwrap_or_default();
        assert_eq!(file_id.len(), 32, "{event}");
        assert_ne!(file_id, "0".repeat(32), "{event}");
        let fat = event["volume"] == 2;
        let flagged = event["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "file_id_64"));
        assert_eq!(flagged, fat, "{event}");
        let image = event["process"]["image"].as_str().unwrap_or_default();
        assert!(
            image.starts_with(r"\Device\HarddiskVolume1\Program Files\Vigil Demo\"),
            "{event}"
        );
    }
}

#[test]
fn a_denied_path_stays_denied_across_a_reload_once_the_policy_is_pushed_again() {
    let path = jsonl_path("denied");
    let mut machine = Machine::new(vigil_image());
    let volumes = machine.load().expect("loads");
    let service = start_service(&machine, demo_policy("allow"), &path);

    let first = phase_one(machine.driver(), volumes, Duration::ZERO);
    let denied: BTreeSet<_> = first
        .denied
        .iter()
        .map(|(_, op, p)| (*op, p.clone()))
        .collect();
    let secret = format!(r"{NTFS}\Secret");
    assert_eq!(
        denied,
        BTreeSet::from([
            ("create", format!(r"{secret}\vault.kdbx")),
            ("create", format!(r"{secret}\backdoor.txt")),
            ("create", format!(r"{secret}\vault.kdbx::$DATA")),
            ("create", format!(r"{secret}\vault.kdbx:hidden")),
            (
                "link",
                format!(r"{NTFS}\Temp\loot.txt -> {secret}\loot-link.txt")
            ),
            (
                "rename",
                format!(r"{NTFS}\Temp\loot.txt -> {secret}\loot.txt")
            ),
        ])
    );
    assert!(
        first.denied.iter().all(|(pid, ..)| *pid == 6660),
        "only the intruder"
    );
    let stats_1 = service.wait_drained(WAIT).expect("stats");
    assert_eq!(stats_1.verdicts_denied, 6);
    assert_eq!(
        stats_1.verdicts_allowed, 2,
        "backup.exe's two creates, excepted"
    );
    // The driver counts a deny when the reply reaches it; the service logs it just after its
    // reply call returns, on its own thread: wait for the lines, then count them.
    assert!(
        service.log().wait_for("denied: ", 6, WAIT),
        "six deny lines"
    );
    assert_eq!(service.log().count("denied: "), 6);
    assert_eq!(service.log().count("denied: rename"), 1);

    machine.unload(Some(stats_1)).expect("unloads");
    let volumes = machine.load().expect("loads again");
    assert!(service.wait_connected(2, WAIT));
    let second = phase_two(machine.driver(), volumes, Duration::ZERO);
    assert_eq!(second.denied.len(), 1, "{:?}", second.denied);
    let stats_2 = service.wait_drained(WAIT).expect("stats");
    assert_eq!(
        (stats_2.verdicts_denied, stats_2.verdicts_defaulted_open),
        (1, 0)
    );
    let summary = service.stop().expect("the service ran");
    assert_eq!(summary.counters.verdicts_denied, 7);
    machine.unload(Some(stats_2)).expect("unloads");
    assert_clean(&machine.finish());
}

/// The service's fate, and the driver's default, for a protected create.
fn protected_create_after_service_death(default_verdict: &str) -> (i32, vigil_protocol::Stats) {
    let path = jsonl_path(&format!("death-{default_verdict}"));
    let mut machine = Machine::new(vigil_image());
    let volumes = machine.load().expect("loads");
    let service = start_service(&machine, demo_policy(default_verdict), &path);
    let mut backup = Actor::new(
        machine.driver(),
        (3100, 3101),
        volumes.ntfs,
        NTFS,
        Duration::ZERO,
    );
    backup.directory(r"\Secret");
    let mut a = Actor::new(
        machine.driver(),
        (6660, 6661),
        volumes.ntfs,
        NTFS,
        Duration::ZERO,
    );
    assert_eq!(
        a.create(r"\Secret\x.txt", FILE_CREATE, 0, GENERIC_WRITE)
            .err(),
        Some(STATUS_ACCESS_DENIED),
        "the service denies"
    );
    service.kill();
    // No service: the driver answers with its configured default, at once.
    let status = match a.create(r"\Secret\y.txt", FILE_CREATE, 0, GENERIC_WRITE) {
        Ok(file) => {
            a.close(file);
            0
        }
        Err(status) => status,
    };
    // An unprotected create is never asked about.
    let other = a
        .create(r"\open.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("unprotected");
    a.close(other);
    // Read the counters as a bare client (after the creates: a client would be asked).
    let mut client = SimConnector::new(machine.sim().clone(), 0x77);
    let mut port = vigil_service::Connector::connect(&mut client).expect("connects");
    let counters = vigil_service::commands::stats(&mut port).expect("stats");
    port.close();
    machine.unload(Some(counters)).expect("unloads");
    assert_clean(&machine.finish());
    (status, counters)
}

#[test]
fn fail_open_allows_a_protected_create_when_the_service_is_dead() {
    let (outcome, counters) = protected_create_after_service_death("allow");
    assert_eq!(outcome, 0, "fail-open");
    assert_eq!(
        (counters.verdicts_denied, counters.verdicts_defaulted_open),
        (1, 1)
    );
    assert_eq!(counters.verdicts_allowed, 1, "backup.exe's directory");
    assert_eq!(counters.verdicts_defaulted_closed, 0);
}

#[test]
fn fail_closed_denies_a_protected_create_when_the_service_is_dead() {
    let (outcome, counters) = protected_create_after_service_death("deny");
    assert_eq!(outcome, STATUS_ACCESS_DENIED, "fail-closed");
    assert_eq!(
        (counters.verdicts_denied, counters.verdicts_defaulted_closed),
        (1, 1)
    );
    assert_eq!(counters.verdicts_defaulted_open, 0);
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn file_events(path: &Path) -> usize {
    read_jsonl(path).map_or(0, |c| c.events.len())
}

/// Thread `t` of process 4000 + `t` creates, writes and closes files until `stop`.
fn churn(machine: &Machine, volumes: Volumes, t: u32, stop: &AtomicBool) {
    let mut a = Actor::new(
        machine.driver(),
        (4000 + t, 4100 + t),
        volumes.ntfs,
        NTFS,
        Duration::ZERO,
    );
    let dir = format!(r"\churn{t}");
    a.directory(&dir);
    let mut n = 0u32;
    while !stop.load(Ordering::Acquire) {
        let f = a
            .create(&format!(r"{dir}\f{n}.txt"), FILE_CREATE, 0, GENERIC_WRITE)
            .expect("create");
        a.write(&f, 0, b"churn");
        a.close(f);
        n += 1;
    }
}

/// A service that stops taking messages (hung), then is killed while the driver is sending
/// (the field crash); a new service resumes from the file.
#[test]
fn a_service_killed_mid_send_costs_counted_events_and_the_next_one_reports_the_gap() {
    let path = jsonl_path("killed");
    let mut machine = Machine::new(vigil_image());
    let volumes = machine.load().expect("loads");
    let policy =
        Policy::parse("[driver]\nsend_timeout_ms = 100\nbatch_size = 4\n").expect("policy");
    let first = start_service(&machine, policy.clone(), &path);
    let stop = AtomicBool::new(false);
    let (swallowed, second) = std::thread::scope(|s| {
        for t in 0..4u32 {
            let (machine, stop) = (&machine, &stop);
            s.spawn(move || churn(machine, volumes, t, stop));
        }
        wait_until("the first service's events", || file_events(&path) >= 40);
        // It hangs: takes one more batch and never writes it, then takes nothing; the
        // driver's sends time out (counted).
        first.hang();
        wait_until("send timeouts", || {
            first
                .driver_stats()
                .is_some_and(|s| s.dropped_send_timeout >= 8)
        });
        let swallowed = first.swallowed_records();
        // Killed with the driver sending: its connection closes under the send.
        first.kill();
        let written = file_events(&path);
        let second = start_service(&machine, policy.clone(), &path);
        wait_until("the second service's events", || {
            file_events(&path) >= written + 40
        });
        stop.store(true, Ordering::Release);
        (swallowed, second)
    });
    let stats = second.wait_drained(WAIT).expect("stats");
    let log = second.log().clone();
    let summary = second.stop().expect("the new service ran");
    assert_eq!(log.count("resuming the output after epoch 1 sequence"), 1);
    machine.unload(Some(stats)).expect("unloads");
    assert_clean(&machine.finish());

    assert!(
        swallowed > 0,
        "the hung service took a batch it never wrote"
    );
    assert!(stats.dropped_send_timeout >= 8, "{stats:?}");
    let contents = read_jsonl(&path).expect("the file");
    // Every number the driver gave out is in the file once: as an event or inside a gap.
    let mut seen = BTreeSet::new();
    for seq in sequence_of(&contents, 1) {
        assert!(seen.insert(seq), "seq {seq} written twice");
    }
    let written = seen.len() as u64;
    let mut missing = 0;
    for gap in &contents.gaps {
        assert_eq!(
            gap["epoch"].as_u64(),
            Some(1),
            "same driver instance: {gap}"
        );
        let (from, to) = (
            gap["gap"]["from"].as_u64().unwrap(),
            gap["gap"]["to"].as_u64().unwrap(),
        );
        for seq in from..=to {
            assert!(seen.insert(seq), "seq {seq} both written and missing");
        }
        missing += to - from + 1;
    }
    assert_eq!(
        seen,
        (0..stats.events_generated).collect(),
        "every number accounted for"
    );
    assert_eq!(written + missing, stats.events_generated);
    // What is missing is what the driver counted as dropped, plus the batch the killed
    // service took and never wrote (the driver counted it delivered: only the gap shows it).
    assert_eq!(missing, stats.dropped_total() + swallowed);
    assert!(summary.counters.gaps >= 1);
    // The new service reported the hang's loss (a slow moment before the hang could have
    // cost the first service a timed-out batch too: that gap is in the file as well).
    assert!(summary.counters.events_missing >= swallowed);
    assert!(summary.counters.events_missing <= missing);
    assert_eq!(summary.counters.duplicates, 0);
}
