//! The service core against the in-memory fake driver, through the public API only (as
//! kernel-sim's adapter in `vigil-demo` uses it): handshake, event flow, gaps, duplicates after a
//! reconnect, driver reloads, the reconnect backoff (with an injected clock: no wall-clock
//! time is measured or asserted), verdicts, malformed input, stop and drain, policy reloads.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake::FakeDriver;
use vigil_protocol::{
    EventFlags, EventRecord, Message, MessageKind, Utf16Str, Verdict, VerdictOperation,
    VerdictReply, VerdictRequestRepr, Version,
};
use vigil_service::{
    ClientError, Gap, Level, Log, ManualClock, MemorySink, Policy, Service, ServiceControl,
    ServiceError, ServiceOptions, Sink,
};

/// Log lines shared with the test after the service took its logger.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<(Level, String)>>>);

impl Log for SharedLog {
    fn log(&mut self, level: Level, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

impl SharedLog {
    fn contains(&self, level: Level, needle: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|(l, m)| *l == level && m.contains(needle))
    }
}

fn options() -> ServiceOptions {
    ServiceOptions {
        own_pid: 4242,
        ..ServiceOptions::default()
    }
}

struct Run {
    service: Service<MemorySink>,
    log: SharedLog,
    clock: ManualClock,
}

fn service_for(driver: &FakeDriver, policy: Policy, options: ServiceOptions) -> Run {
    let log = SharedLog::default();
    let service = Service::new(policy, MemorySink::default(), options).with_log(log.clone());
    driver.stop_when_idle(&service.control());
    Run {
        service,
        log,
        clock: ManualClock::new(),
    }
}

fn run(driver: &FakeDriver) -> (Run, vigil_service::Summary) {
    let mut r = service_for(driver, Policy::default(), options());
    let summary = r
        .service
        .run(&mut driver.connector(), &r.clock)
        .expect("the run ends with a stop");
    (r, summary)
}

fn seqs(epoch: u32, range: std::ops::Range<u64>) -> Vec<(u32, u64)> {
    range.map(|s| (epoch, s)).collect()
}

fn kinds(driver: &FakeDriver) -> Vec<MessageKind> {
    driver
        .commands()
        .iter()
        .map(|c| Message::parse(c).unwrap().kind())
        .collect()
}

#[test]
fn events_reach_the_sink_in_order_after_the_handshake() {
    let driver = FakeDriver::new();
    driver.push_events(0..100, 7);
    let (r, summary) = run(&driver);
    assert_eq!(r.service.sinks().events, seqs(1, 0..100));
    assert!(r.service.sinks().gaps.is_empty());
    assert_eq!(r.service.sinks().batches, 15);
    assert!(r.service.sinks().closed, "the sinks are closed at the stop");
    assert_eq!(summary.counters.events_written, 100);
    assert_eq!(summary.counters.connections, 1);
    // Hello first, then the configuration, then the counters; the final counters at the stop.
    assert_eq!(
        kinds(&driver),
        [
            MessageKind::Hello,
            MessageKind::SetConfig,
            MessageKind::GetStats,
            MessageKind::GetStats
        ]
    );
    assert!(summary.driver_stats.is_some());
    assert_eq!(summary.driver.unwrap().version, Version::CURRENT);
    assert_eq!(driver.closes(), 1, "the connection is closed at the stop");
    // Every line the sink wrote is one JSON object with the event's sequence number.
    let text = String::from_utf8(r.service.sinks().json.clone()).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert!(
        text.lines()
            .nth(42)
            .unwrap()
            .starts_with("{\"epoch\":1,\"seq\":42,")
    );
}

#[test]
fn a_gap_is_written_in_band_logged_and_counted() {
    let driver = FakeDriver::new();
    driver.push_events((0..10).chain(15..20), 64);
    driver.push_events(25..26, 64);
    let (r, summary) = run(&driver);
    let sink = r.service.sinks();
    assert_eq!(
        sink.gaps,
        [
            Gap {
                epoch: 1,
                from: 10,
                to: 14
            },
            Gap {
                epoch: 1,
                from: 20,
                to: 24
            }
        ]
    );
    assert_eq!(
        (summary.counters.gaps, summary.counters.events_missing),
        (2, 10)
    );
    assert_eq!(summary.counters.events_written, 16);
    // In band: the gap line comes right before the first event after the loss.
    let text = String::from_utf8(sink.json.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[10].starts_with("{\"gap\":{\"from\":10,\"to\":14,\"missing\":5}"));
    assert!(lines[11].contains("\"seq\":15,"));
    assert!(
        r.log
            .contains(Level::Warn, "5 event(s) lost: sequence 10..=14")
    );
}

#[test]
fn the_first_client_of_a_fresh_driver_sees_drops_before_it_as_a_gap() {
    let driver = FakeDriver::new();
    // The driver dropped records 0..=2 (ring full) before the service connected.
    driver.push_events(3..6, 64);
    let (r, _) = run(&driver);
    assert_eq!(
        r.service.sinks().gaps,
        [Gap {
            epoch: 1,
            from: 0,
            to: 2
        }]
    );
}

#[test]
fn after_a_port_close_the_core_reconnects_and_writes_nothing_twice() {
    let driver = FakeDriver::new();
    driver.push_events(0..10, 4);
    driver.push_disconnect();
    // The same driver instance delivers 5..=9 again, then new records.
    driver.push_events(5..15, 4);
    let (r, summary) = run(&driver);
    assert_eq!(r.service.sinks().events, seqs(1, 0..15));
    assert!(r.service.sinks().gaps.is_empty());
    assert_eq!(summary.counters.duplicates, 5);
    assert_eq!(
        (summary.counters.connections, summary.counters.disconnects),
        (2, 1)
    );
    assert_eq!(summary.counters.driver_instances, 1);
    assert!(
        r.clock.sleeps().is_empty(),
        "the first attempt after a close is immediate"
    );
    assert!(r.log.contains(Level::Warn, "port closed by the driver"));
}

#[test]
fn records_lost_while_disconnected_are_a_gap_in_the_same_epoch() {
    let driver = FakeDriver::new();
    driver.push_events(0..10, 64);
    driver.push_disconnect();
    driver.push_events(12..14, 64);
    let (r, _) = run(&driver);
    assert_eq!(
        r.service.sinks().gaps,
        [Gap {
            epoch: 1,
            from: 10,
            to: 11
        }]
    );
}

#[test]
fn a_reordered_record_behind_the_highest_written_is_skipped_not_written_twice() {
    let driver = FakeDriver::new();
    driver.push_events(0..10, 64);
    driver.push_disconnect();
    // 12 arrives before 10 and 11: the gap is reported when 12 is written; 10 and 11 are then
    // behind the highest number written and are counted as duplicates, never written out of
    // order (the driver sends in order; this is the defensive path).
    driver.push_events([12, 10, 11, 13], 64);
    let (r, summary) = run(&driver);
    let written: Vec<u64> = r.service.sinks().events.iter().map(|e| e.1).collect();
    assert_eq!(written, (0..10).chain([12, 13]).collect::<Vec<_>>());
    assert_eq!(summary.counters.duplicates, 2);
    assert_eq!(r.service.sinks().gaps.len(), 1);
}

#[test]
fn a_driver_reload_starts_a_new_epoch_and_numbering_from_zero() {
    let driver = FakeDriver::new();
    driver.push_events(0..10, 4);
    driver.push_reload();
    driver.push_events(0..5, 4);
    driver.push_reload();
    // The third instance dropped 0..=1 before the service came back.
    driver.push_events(2..4, 4);
    let (r, summary) = run(&driver);
    let mut expected = seqs(1, 0..10);
    expected.extend(seqs(2, 0..5));
    expected.extend(seqs(3, 2..4));
    assert_eq!(r.service.sinks().events, expected);
    assert_eq!(
        r.service.sinks().gaps,
        [Gap {
            epoch: 3,
            from: 0,
            to: 1
        }]
    );
    assert_eq!(summary.counters.duplicates, 0);
    assert_eq!(summary.counters.driver_instances, 3);
    assert!(r.log.contains(Level::Warn, "the driver was reloaded"));
}

#[test]
fn reconnect_backoff_doubles_to_its_bound_and_resets_after_a_connection() {
    let driver = FakeDriver::new();
    driver.fail_connects(vec![ClientError::DriverNotLoaded; 8]);
    driver.push_events(0..3, 64);
    driver.push_reload();
    driver.push_events(0..3, 64);
    let r = service_for(
        &driver,
        Policy::default(),
        ServiceOptions {
            wait_for_driver: true,
            ..options()
        },
    );
    let Run {
        mut service,
        log,
        clock,
    } = r;
    // When the first connection has ended, make the reconnection fail twice.
    let mut injected = false;
    let mut inner = driver.connector();
    let handle = driver.clone();
    let mut connector = move || {
        if handle.connections_made() == 1 && !injected {
            injected = true;
            handle.fail_connects([ClientError::DriverNotLoaded, ClientError::Busy]);
        }
        vigil_service::Connector::connect(&mut inner)
    };
    let summary = service.run(&mut connector, &clock).unwrap();
    let ms: Vec<u128> = clock.sleeps().iter().map(Duration::as_millis).collect();
    assert_eq!(
        ms,
        [100, 200, 400, 800, 1600, 3200, 5000, 5000, 100, 200],
        "doubling from 100 ms, capped at 5 s, reset by the connection in between"
    );
    assert_eq!(summary.counters.connections, 2);
    assert_eq!(summary.counters.events_written, 6);
    // One log line per kind of failure, not one per attempt.
    let lines = log.0.lock().unwrap();
    let not_loaded = lines
        .iter()
        .filter(|(_, m)| m.contains("driver not loaded"))
        .count();
    assert_eq!(not_loaded, 2, "{lines:?}");
}

#[test]
fn without_wait_a_missing_driver_fails_the_first_connection_at_once() {
    let driver = FakeDriver::new();
    driver.fail_connects([ClientError::DriverNotLoaded]);
    let mut r = service_for(&driver, Policy::default(), options());
    let error = r
        .service
        .run(&mut driver.connector(), &r.clock)
        .unwrap_err();
    assert!(matches!(
        error,
        ServiceError::Client(ClientError::DriverNotLoaded)
    ));
    assert_eq!(
        error.to_string(),
        "driver not loaded (port \\VigilPort not found): load it with `fltmc load vigil`"
    );
    assert!(r.clock.sleeps().is_empty());
    assert!(r.service.sinks().closed, "sinks are closed on failure too");
}

#[test]
fn access_denied_is_not_retried_even_when_waiting() {
    let driver = FakeDriver::new();
    driver.fail_connects([ClientError::AccessDenied]);
    let mut r = service_for(
        &driver,
        Policy::default(),
        ServiceOptions {
            wait_for_driver: true,
            ..options()
        },
    );
    let error = r
        .service
        .run(&mut driver.connector(), &r.clock)
        .unwrap_err();
    assert!(
        error.to_string().contains("run as Administrator"),
        "{error}"
    );
    assert!(r.clock.sleeps().is_empty());
}

#[test]
fn a_driver_of_another_major_version_is_refused_naming_both() {
    let driver = FakeDriver::new();
    // Version 1 is the layout before process identity: an old driver, refused before any of
    // its batches is read.
    driver.set_hello_version(Version { major: 1, minor: 0 });
    driver.push_events(0..3, 64);
    let mut r = service_for(
        &driver,
        Policy::default(),
        ServiceOptions {
            wait_for_driver: true,
            ..options()
        },
    );
    let error = r
        .service
        .run(&mut driver.connector(), &r.clock)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "driver speaks protocol 1.0, this service 2.0: install matching versions"
    );
    assert!(r.service.sinks().events.is_empty());
    assert!(!driver.is_connected(), "the refused connection is closed");
    assert_eq!(kinds(&driver), [MessageKind::Hello], "nothing after Hello");
}

#[test]
fn a_driver_refusing_our_version_is_a_version_mismatch() {
    let driver = FakeDriver::new();
    driver.refuse_hello(vigil_service::commands::STATUS_REVISION_MISMATCH);
    let mut r = service_for(&driver, Policy::default(), options());
    let error = r
        .service
        .run(&mut driver.connector(), &r.clock)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("driver refused this service's protocol 2.0"),
        "{error}"
    );
}

#[test]
fn another_minor_version_is_accepted() {
    let driver = FakeDriver::new();
    driver.set_hello_version(Version { major: 2, minor: 7 });
    driver.push_events(0..3, 64);
    let (_, summary) = run(&driver);
    assert_eq!(summary.counters.events_written, 3);
    assert_eq!(
        summary.driver.unwrap().version,
        Version { major: 2, minor: 7 }
    );
}

fn units(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

const POLICY: &str = r#"
[driver]
default_verdict = "deny"

[[rule]]
prefix = '\Device\HarddiskVolume1\Secret'
verdict = "deny"
"#;

fn verdict_request(id: u64, pid: u64, path: &[u16]) -> VerdictRequestRepr<'_> {
    VerdictRequestRepr {
        request_id: id,
        operation: VerdictOperation::Create,
        flags: EventFlags::NONE,
        process_id: pid,
        path: Utf16Str::from_units(path),
        target: Utf16Str::EMPTY,
    }
}

#[test]
fn verdict_requests_are_answered_from_the_policy_with_their_request_id() {
    let driver = FakeDriver::new();
    let secret = units("\\Device\\HarddiskVolume1\\secret\\plans.txt");
    let open = units("\\Device\\HarddiskVolume1\\public\\a.txt");
    let denied = driver.push_verdict_request(&verdict_request(11, 100, &secret));
    driver.push_events(0..2, 64);
    let allowed = driver.push_verdict_request(&verdict_request(12, 100, &open));
    // The service's own process is allowed even under a protected prefix.
    let own = driver.push_verdict_request(&verdict_request(13, 4242, &secret));
    let mut r = service_for(&driver, Policy::parse(POLICY).unwrap(), options());
    let summary = r.service.run(&mut driver.connector(), &r.clock).unwrap();
    let replies = driver.replies();
    let parsed: Vec<(u64, VerdictReply)> = replies
        .iter()
        .map(|(id, bytes)| (*id, VerdictReply::parse(bytes).unwrap()))
        .collect();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[0].0, denied);
    assert_eq!(
        parsed[0].1,
        VerdictReply {
            request_id: 11,
            verdict: Verdict::Deny,
            reason: 1
        }
    );
    assert_eq!(parsed[1].0, allowed);
    assert_eq!(
        (parsed[1].1.request_id, parsed[1].1.verdict),
        (12, Verdict::Allow)
    );
    assert_eq!(parsed[2].0, own);
    assert_eq!(
        parsed[2].1,
        VerdictReply {
            request_id: 13,
            verdict: Verdict::Allow,
            reason: vigil_service::policy::REASON_OWN_PROCESS
        }
    );
    assert_eq!(
        (
            summary.counters.verdicts_allowed,
            summary.counters.verdicts_denied
        ),
        (2, 1)
    );
    assert_eq!(summary.counters.events_written, 2);
    // The policy reached the driver: fail-closed and the one prefix.
    let commands = driver.commands();
    let Message::SetConfig(set) = Message::parse(&commands[1]).unwrap() else {
        panic!("the second command is the configuration");
    };
    assert_eq!(set.config().default_verdict, Verdict::Deny);
    assert_eq!(set.prefix_count(), 1);
}

#[test]
fn a_reply_the_driver_no_longer_waits_for_is_counted_and_the_service_goes_on() {
    let driver = FakeDriver::new();
    let path = units("\\Device\\HarddiskVolume1\\Secret\\x");
    let mut bytes = vec![0u8; 256];
    let n = verdict_request(5, 1, &path).emit(&mut bytes).unwrap();
    bytes.truncate(n);
    // Queued raw: the fake does not wait for its reply (the driver's wait timed out).
    driver.push_raw(bytes, u32::try_from(VerdictReply::LEN).unwrap());
    driver.push_events(0..4, 64);
    let mut r = service_for(&driver, Policy::parse(POLICY).unwrap(), options());
    let summary = r.service.run(&mut driver.connector(), &r.clock).unwrap();
    assert_eq!(summary.counters.verdict_reply_failures, 1);
    assert_eq!(summary.counters.events_written, 4);
    assert!(
        r.log
            .contains(Level::Warn, "verdict reply for request 5 not delivered")
    );
}

#[test]
fn malformed_and_unexpected_messages_are_counted_and_skipped() {
    let driver = FakeDriver::new();
    driver.push_raw(vec![0xAB; 40], 0);
    let mut hello = vec![0u8; vigil_protocol::Hello::LEN];
    vigil_protocol::Hello {
        client_process_id: 1,
    }
    .emit(&mut hello)
    .unwrap();
    driver.push_raw(hello, 0);
    // A batch whose header sequence disagrees with its first record.
    let mut batch = Vec::new();
    {
        let d2 = FakeDriver::new();
        d2.push_events(0..1, 64);
        let mut buf = vec![0u8; 65536];
        let mut port = vigil_service::Connector::connect(&mut d2.connector()).unwrap();
        let got = vigil_service::PortClient::receive(&mut port, &mut buf, Duration::ZERO)
            .unwrap()
            .unwrap();
        batch.extend_from_slice(&buf[..got.len]);
        batch[16] ^= 1;
    }
    driver.push_raw(batch, 0);
    driver.push_events(0..3, 64);
    let (r, summary) = run(&driver);
    assert_eq!(summary.counters.malformed_messages, 3);
    assert_eq!(r.service.sinks().events, seqs(1, 0..3));
    assert!(
        r.log
            .contains(Level::Warn, "malformed message from the driver")
    );
    assert!(r.log.contains(Level::Warn, "unexpected Hello message"));
    assert!(r.log.contains(Level::Warn, "malformed event batch"));
}

/// A sink that asks for a stop at the end of its first batch.
struct StopAfterFirstBatch {
    inner: MemorySink,
    control: ServiceControl,
}

impl Sink for StopAfterFirstBatch {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&vigil_service::ProcessInfo>,
    ) -> io::Result<()> {
        self.inner.event(epoch, record, process)
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.inner.gap(gap, time)
    }
    fn end_batch(&mut self) -> io::Result<()> {
        self.control.request_stop();
        self.inner.end_batch()
    }
    fn close(&mut self) -> io::Result<()> {
        self.inner.close()
    }
}

#[test]
fn a_stop_drains_what_the_port_already_holds() {
    let driver = FakeDriver::new();
    driver.push_events(0..50, 10);
    let path = units("\\Device\\HarddiskVolume1\\Secret\\x");
    driver.push_verdict_request(&verdict_request(1, 7, &path));
    let control = ServiceControl::new();
    let sink = StopAfterFirstBatch {
        inner: MemorySink::default(),
        control: control.clone(),
    };
    let mut service = Service::new(Policy::parse(POLICY).unwrap(), sink, options())
        .with_control(control)
        .with_log(SharedLog::default());
    let clock = ManualClock::new();
    let summary = service.run(&mut driver.connector(), &clock).unwrap();
    assert_eq!(summary.counters.events_written, 50, "all five batches");
    assert_eq!(
        summary.counters.verdicts_denied, 1,
        "the queued verdict too"
    );
    assert_eq!(driver.pending_steps(), 0);
    assert!(service.sinks().inner.closed);
    assert!(!driver.is_connected());
}

// A clock whose third sleep is interrupted by a stop.
struct StopOnThirdSleep(ManualClock, ServiceControl);
impl vigil_service::Clock for StopOnThirdSleep {
    fn now(&self) -> std::time::Instant {
        self.0.now()
    }
    fn sleep(&self, d: Duration, c: &ServiceControl) -> bool {
        if self.0.sleeps().len() == 2 {
            self.1.request_stop();
        }
        self.0.sleep(d, c)
    }
}

#[test]
fn a_stop_during_backoff_ends_the_run_cleanly() {
    let driver = FakeDriver::new();
    driver.fail_connects(vec![ClientError::DriverNotLoaded; 100]);
    let control = ServiceControl::new();
    let mut service = Service::new(
        Policy::default(),
        MemorySink::default(),
        ServiceOptions {
            wait_for_driver: true,
            ..options()
        },
    )
    .with_control(control.clone())
    .with_log(SharedLog::default());
    let clock = StopOnThirdSleep(ManualClock::new(), control);
    let summary = service.run(&mut driver.connector(), &clock).unwrap();
    assert_eq!(clock.0.sleeps().len(), 3);
    assert_eq!(summary.counters.connections, 0);
    assert!(service.sinks().closed);
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("core-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_reload_with_a_bad_file_keeps_the_running_policy() {
    let path = temp_file("reload-bad.toml", POLICY);
    let driver = FakeDriver::new();
    driver.push_events(0..2, 64);
    let log = SharedLog::default();
    let mut service = Service::new(
        Policy::load(&path).unwrap(),
        MemorySink::default(),
        options(),
    )
    .with_policy_path(&path)
    .with_log(log.clone());
    driver.stop_when_idle(&service.control());
    std::fs::write(&path, "[driver]\nbatch_size = 100000\n").unwrap();
    service.control().request_reload();
    let before = service.policy().clone();
    let summary = service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    assert_eq!(service.policy(), &before);
    assert_eq!(summary.counters.policy_reload_failures, 1);
    assert_eq!(summary.counters.policy_reloads, 0);
    assert!(log.contains(Level::Error, "line 2, column 14: field `driver.batch_size`"));
    // Only the connection's own configuration was sent.
    let sent = kinds(&driver)
        .iter()
        .filter(|k| **k == MessageKind::SetConfig)
        .count();
    assert_eq!(sent, 1);
}

#[test]
fn a_good_reload_reaches_the_driver_and_replaces_the_policy() {
    let path = temp_file("reload-good.toml", POLICY);
    let driver = FakeDriver::new();
    driver.push_events(0..2, 64);
    let mut service = Service::new(Policy::default(), MemorySink::default(), options())
        .with_policy_path(&path)
        .with_log(SharedLog::default());
    driver.stop_when_idle(&service.control());
    service.control().request_reload();
    let summary = service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    assert_eq!(summary.counters.policy_reloads, 1);
    assert_eq!(service.policy().rules.len(), 1);
    let configs: Vec<Vec<u8>> = driver
        .commands()
        .into_iter()
        .filter(|c| Message::parse(c).unwrap().kind() == MessageKind::SetConfig)
        .collect();
    assert_eq!(configs.len(), 2);
    let Message::SetConfig(set) = Message::parse(&configs[1]).unwrap() else {
        unreachable!()
    };
    assert_eq!(set.prefix_count(), 1);
}

#[test]
fn a_configuration_the_driver_refuses_leaves_the_old_policy_in_place() {
    let driver = FakeDriver::new();
    let mut port = vigil_service::Connector::connect(&mut driver.connector()).unwrap();
    let mut service = Service::new(
        Policy::parse(POLICY).unwrap(),
        MemorySink::default(),
        options(),
    )
    .with_log(SharedLog::default());
    let before = service.policy().clone();
    // Out of range on purpose: the fields are public, validation is bypassed.
    let bad = Policy {
        verdict_timeout_ms: 1,
        ..Policy::default()
    };
    let error = service.apply_policy(&mut port, bad).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("driver refused set-configuration"),
        "{error}"
    );
    assert_eq!(service.policy(), &before);
    assert_eq!(service.counters().policy_reload_failures, 1);
}

#[test]
fn gap_records_stay_in_sequence_with_events_across_a_reload() {
    let driver = FakeDriver::new();
    driver.push_events(0..3, 64);
    driver.push_reload();
    driver.push_events(1..2, 64);
    let (r, _) = run(&driver);
    let text = String::from_utf8(r.service.sinks().json.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[3].starts_with("{\"gap\":{\"from\":0,\"to\":0,\"missing\":1},\"epoch\":2"));
    assert!(lines[4].starts_with("{\"epoch\":2,\"seq\":1,"));
}

#[test]
fn a_verdict_request_without_a_reply_buffer_is_counted_not_answered() {
    let driver = FakeDriver::new();
    let path = units("\\Device\\HarddiskVolume1\\Secret\\x");
    let mut bytes = vec![0u8; 256];
    let n = verdict_request(9, 1, &path).emit(&mut bytes).unwrap();
    bytes.truncate(n);
    driver.push_raw(bytes, 0);
    let mut r = service_for(&driver, Policy::parse(POLICY).unwrap(), options());
    let summary = r.service.run(&mut driver.connector(), &r.clock).unwrap();
    assert_eq!(summary.counters.verdict_reply_failures, 1);
    assert!(driver.replies().is_empty());
    assert!(r.log.contains(Level::Warn, "without a reply buffer"));
}

#[test]
fn a_malformed_verdict_request_or_command_reply_is_counted_and_not_answered() {
    let driver = FakeDriver::new();
    let path = units("\\Device\\HarddiskVolume1\\Secret\\x");
    let mut request = vec![0u8; 256];
    let n = verdict_request(7, 1, &path).emit(&mut request).unwrap();
    request.truncate(n);
    // The reserved field after the operation set: a sound header, a request that is not.
    request[vigil_protocol::HEADER_LEN + 10] = 1;
    driver.push_raw(request, u32::try_from(VerdictReply::LEN).unwrap());
    // A kind the driver never sends, malformed as well (its reserved field set).
    let mut reply = vec![0u8; vigil_protocol::HelloReply::LEN];
    vigil_protocol::HelloReply {
        status: 0,
        max_message_size: 4096,
        ring_capacity_bytes: 4096,
    }
    .emit(&mut reply)
    .unwrap();
    reply[vigil_protocol::HEADER_LEN + 12] = 1;
    driver.push_raw(reply, 0);
    driver.push_events(0..2, 64);
    let (r, summary) = run(&driver);
    assert_eq!(summary.counters.malformed_messages, 2);
    assert_eq!(summary.counters.verdict_reply_failures, 0);
    assert_eq!(
        (
            summary.counters.verdicts_allowed,
            summary.counters.verdicts_denied
        ),
        (0, 0)
    );
    assert!(driver.replies().is_empty(), "nothing answers a bad request");
    assert_eq!(r.service.sinks().events, seqs(1, 0..2));
    assert!(r.log.contains(Level::Warn, "malformed verdict request ("));
    assert!(r.log.contains(Level::Warn, "not answered"));
    assert!(
        r.log
            .contains(Level::Warn, "malformed HelloReply message from the driver")
    );
}

/// A sink whose `end_batch` blocks until the test opens its gate (as a slow `fsync` or a
/// rotation with many renames would), giving up after a long bound so that a core which
/// waits for it (verdicts behind the disk) fails the test instead of hanging it.
struct GatedSink {
    inner: MemorySink,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    gave_up: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink for GatedSink {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&vigil_service::ProcessInfo>,
    ) -> io::Result<()> {
        self.inner.event(epoch, record, process)
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.inner.gap(gap, time)
    }
    fn end_batch(&mut self) -> io::Result<()> {
        let (open, changed) = &*self.gate;
        let guard = open.lock().unwrap();
        let (guard, result) = changed
            .wait_timeout_while(guard, Duration::from_secs(20), |open| !*open)
            .unwrap();
        drop(guard);
        if result.timed_out() {
            self.gave_up
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.end_batch()
    }
    fn close(&mut self) -> io::Result<()> {
        self.inner.close()
    }
}

#[test]
fn verdicts_are_answered_while_the_sink_is_stuck_in_disk_work() {
    let driver = FakeDriver::new();
    driver.push_events(0..10, 10);
    let path = units("\\Device\\HarddiskVolume1\\Secret\\x");
    for id in 1..=3 {
        driver.push_verdict_request(&verdict_request(id, 7, &path));
    }
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let gave_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = GatedSink {
        inner: MemorySink::default(),
        gate: gate.clone(),
        gave_up: gave_up.clone(),
    };
    // The gate opens only once every verdict has been answered: a core that answers verdicts
    // behind the sink's disk work never gets there, and the sink gives up after its bound.
    let watcher = {
        let driver = driver.clone();
        let gate = gate.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while driver.replies().len() < 3 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            *gate.0.lock().unwrap() = true;
            gate.1.notify_all();
        })
    };
    let mut service = Service::new(Policy::parse(POLICY).unwrap(), sink, options())
        .with_log(SharedLog::default());
    driver.stop_when_idle(&service.control());
    let summary = service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    watcher.join().unwrap();
    assert!(
        !gave_up.load(std::sync::atomic::Ordering::SeqCst),
        "the verdicts waited for the sink"
    );
    assert_eq!(summary.counters.verdicts_denied, 3);
    assert_eq!(
        summary.counters.events_written, 10,
        "the batch was written too"
    );
    assert_eq!(service.sinks().inner.events, seqs(1, 0..10));
}

/// A sink that fails its first `failures` batch ends (a full disk) and keeps what it was
/// given, as the JSON Lines sink does.
struct DiskFullFor {
    inner: MemorySink,
    failures: u32,
}

impl Sink for DiskFullFor {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&vigil_service::ProcessInfo>,
    ) -> io::Result<()> {
        self.inner.event(epoch, record, process)
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.inner.gap(gap, time)
    }
    fn end_batch(&mut self) -> io::Result<()> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"));
        }
        self.inner.end_batch()
    }
    fn close(&mut self) -> io::Result<()> {
        self.inner.close()
    }
}

#[test]
fn a_full_disk_pauses_the_output_without_stopping_the_service_or_losing_a_batch() {
    let driver = FakeDriver::new();
    driver.push_events(0..30, 10);
    let log = SharedLog::default();
    let sink = DiskFullFor {
        inner: MemorySink::default(),
        failures: 3,
    };
    let mut service = Service::new(Policy::default(), sink, options()).with_log(log.clone());
    driver.stop_when_idle(&service.control());
    let clock = ManualClock::new();
    let summary = service
        .run(&mut driver.connector(), &clock)
        .expect("a sink failure is retried, not fatal");
    assert_eq!(summary.counters.events_written, 30);
    assert_eq!(service.sinks().inner.events, seqs(1, 0..30));
    assert_eq!(summary.counters.sink_failures, 3);
    assert!(log.contains(Level::Error, "cannot write events (no space left)"));
    assert!(log.contains(
        Level::Info,
        "events are written again, after 3 failed attempt(s)"
    ));
    // Retried with backoff, not in a loop.
    let ms: Vec<u128> = clock.sleeps().iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 200, 400]);
}

#[test]
fn a_sink_that_never_recovers_fails_the_run_after_the_stop_with_its_reason_logged() {
    let driver = FakeDriver::new();
    driver.push_events(0..10, 10);
    let log = SharedLog::default();
    let sink = DiskFullFor {
        inner: MemorySink::default(),
        failures: u32::MAX,
    };
    let mut service = Service::new(Policy::default(), sink, options()).with_log(log.clone());
    driver.stop_when_idle(&service.control());
    let error = service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap_err();
    assert!(matches!(error, ServiceError::Sink(_)), "{error}");
    assert!(log.contains(Level::Error, "cannot write events (no space left)"));
    assert!(log.contains(Level::Error, "the service stops"));
}

#[test]
fn messages_that_complete_while_the_receives_are_cancelled_are_still_written() {
    let driver = FakeDriver::new();
    driver.push_events(0..5, 5);
    driver.push_events_completing_at_cancel(5..8, 3);
    let (r, summary) = run(&driver);
    assert_eq!(driver.cancels(), 1);
    assert_eq!(summary.counters.events_written, 8);
    assert_eq!(r.service.sinks().events, seqs(1, 0..8));
}

#[test]
fn an_oversized_message_is_counted_as_malformed_and_the_connection_goes_on() {
    let driver = FakeDriver::new();
    driver.push_events(0..2, 64);
    driver.push_raw(vec![0; vigil_protocol::MAX_MESSAGE_SIZE + 1], 0);
    driver.push_events(2..4, 64);
    let (r, summary) = run(&driver);
    assert_eq!(summary.counters.malformed_messages, 1);
    assert_eq!(summary.counters.connections, 1);
    assert_eq!(r.service.sinks().events, seqs(1, 0..4));
    assert!(
        r.log
            .contains(Level::Warn, "larger than the protocol's limit")
    );
}

#[test]
fn a_driver_claiming_huge_messages_is_bounded_by_the_protocol_limit() {
    let driver = FakeDriver::new();
    driver.set_hello_max_message_size(u32::MAX);
    driver.push_events(0..2, 64);
    let (r, summary) = run(&driver);
    assert_eq!(summary.counters.events_written, 2);
    assert!(
        r.log
            .contains(Level::Warn, "claims messages of up to 4294967295 bytes")
    );
}

#[test]
fn a_policy_push_lost_to_a_disconnect_reaches_the_driver_at_the_next_connection() {
    let driver = FakeDriver::new();
    let mut service = Service::new(Policy::default(), MemorySink::default(), options())
        .with_log(SharedLog::default());
    // The connection is gone by the time the reload is pushed.
    let mut port = vigil_service::Connector::connect(&mut driver.connector()).unwrap();
    driver.push_disconnect();
    assert!(vigil_service::PortClient::receive(&mut port, &mut [0; 64], Duration::ZERO).is_err());
    let error = service
        .apply_policy(&mut port, Policy::parse(POLICY).unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("port closed"), "{error}");
    drop(port);
    assert_eq!(
        service.policy().rules.len(),
        0,
        "not adopted before the driver has it"
    );
    driver.push_events(0..1, 64);
    driver.stop_when_idle(&service.control());
    let summary = service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    assert_eq!(service.policy().rules.len(), 1);
    assert_eq!(summary.counters.policy_reloads, 1);
    let last_config = driver
        .commands()
        .into_iter()
        .rfind(|c| Message::parse(c).unwrap().kind() == MessageKind::SetConfig)
        .unwrap();
    let Message::SetConfig(set) = Message::parse(&last_config).unwrap() else {
        unreachable!()
    };
    assert_eq!(set.prefix_count(), 1, "the reloaded policy's prefix");
}

#[test]
fn a_connection_that_closes_at_once_reconnects_with_backoff_not_in_a_hot_loop() {
    let driver = FakeDriver::new();
    for _ in 0..4 {
        driver.push_disconnect();
    }
    driver.push_events(0..1, 64);
    let (r, summary) = run(&driver);
    assert_eq!(summary.counters.connections, 5);
    let ms: Vec<u128> = r.clock.sleeps().iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [100, 200, 400, 800]);
    assert!(r.log.contains(Level::Warn, "at once after connecting"));
}

#[test]
fn the_drivers_counters_are_written_to_the_output_periodically() {
    let driver = FakeDriver::new();
    driver.push_events(0..3, 64);
    let mut r = service_for(
        &driver,
        Policy::default(),
        ServiceOptions {
            // Every receive loop: the manual clock does not move while receiving.
            stats_interval: Duration::ZERO,
            ..options()
        },
    );
    let summary = r.service.run(&mut driver.connector(), &r.clock).unwrap();
    assert_eq!(summary.counters.events_written, 3);
    let sink = r.service.sinks();
    assert!(!sink.driver_stats.is_empty());
    assert_eq!(sink.driver_stats[0].connections, 1);
    let text = String::from_utf8(sink.json.clone()).unwrap();
    let record: serde_json::Value = serde_json::from_str(
        text.lines()
            .find(|l| l.starts_with("{\"driver_stats\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["driver_stats"]["connections"], 1);
    assert_eq!(record["driver_stats"]["dropped_total"], 0);
    assert_eq!(record["epoch"], 1);
    assert!(record["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_reload_reads_the_file_through_the_services_loader() {
    let path = temp_file("reload-untrusted.toml", POLICY);
    let driver = FakeDriver::new();
    driver.push_events(0..2, 64);
    let log = SharedLog::default();
    let mut service = Service::new(Policy::default(), MemorySink::default(), options())
        .with_policy_path(&path)
        .with_policy_loader(|_| {
            Err(vigil_service::PolicyError {
                line: 0,
                column: 0,
                field: String::new(),
                reason: "owned by an ordinary user: refused".into(),
            })
        })
        .with_log(log.clone());
    driver.stop_when_idle(&service.control());
    service.control().request_reload();
    let summary = service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    assert_eq!(summary.counters.policy_reloads, 0);
    assert_eq!(summary.counters.policy_reload_failures, 1);
    assert_eq!(
        service.policy().rules.len(),
        0,
        "the running policy is kept"
    );
    assert!(log.contains(Level::Error, "owned by an ordinary user"));
}
