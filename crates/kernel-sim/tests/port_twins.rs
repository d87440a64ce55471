//! Broken twins of vigil.sys for the port checks: each build carries one deliberate bug
//! (`src/twins.rs`, selected by `xtask::Twin`) and its run must report the violation the check
//! is for.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use vigil_kernel_sim::fixtures::NTFS;
use vigil_kernel_sim::{
    ConnectOptions, IoConfig, PortError, RawCommand, RegistryValue, Report, Requestor, Sim,
    SimConfig, UserPointer, ViolationKind, VolumeKind,
};
use vigil_protocol::{Ping, Pong};
use vigil_sys::{FILE_CREATE, GENERIC_WRITE};
use xtask::Twin;

fn twin(twin: Twin) -> PathBuf {
    xtask::build_driver(&xtask::Variant::twin(twin)).expect("building the twin")
}

fn ping() -> Vec<u8> {
    let mut buf = vec![0u8; Ping::LEN];
    Ping { nonce: 1 }.emit(&mut buf).unwrap();
    buf
}

fn assert_reports(report: &Report, kind: ViolationKind, text: &str) {
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.kind == kind && (v.message.contains(text) || v.rule.contains(text))),
        "expected {kind:?} \"{text}\": {}",
        report.summary()
    );
}

/// `port-not-closed`: the disconnect callback forgets `FltCloseClientPort`.
#[test]
fn port_not_closed_is_caught_by_the_disconnect_check() {
    let sim = Sim::new(SimConfig::default());
    let driver = sim.load(twin(Twin::PortNotClosed)).unwrap();
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let client = sim
        .connect(vigil_protocol::PORT_NAME, &ConnectOptions::default())
        .unwrap();
    client.close();
    let report = driver.finish();
    assert_reports(
        &report,
        ViolationKind::PortNotClosed,
        "client port not closed by the disconnect callback",
    );
}

/// `no-seh`: the command input is read without SEH, so a bad user pointer crashes the
/// message callback instead of failing it with a status.
#[test]
fn no_seh_is_caught_as_a_fault_on_a_bad_user_buffer() {
    let sim = Sim::new(SimConfig::default());
    let driver = sim.load(twin(Twin::NoSeh)).unwrap();
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let client = sim
        .connect(vigil_protocol::PORT_NAME, &ConnectOptions::default())
        .unwrap();
    // Good input still works: the twin differs only on a fault.
    let good = client.send_command(&ping(), Pong::LEN).unwrap();
    assert_eq!(good.status, 0);
    let bad = client.send_command_raw(&RawCommand {
        input_pointer: UserPointer::Unmapped,
        ..RawCommand::new(&ping(), Pong::LEN)
    });
    assert_eq!(bad.unwrap_err(), PortError::DriverCrashed);
    drop(client);
    let report = driver.finish();
    assert_reports(&report, ViolationKind::Fault, "MessageNotify");
}

/// Loads `image` with an NTFS volume, connects, runs one create, write, cleanup and close
/// (three events), takes the batch the delivery thread sends, and finishes the run.
fn one_batch(image: PathBuf) -> Report {
    let sim = Sim::new(SimConfig {
        registry: vec![("FlushIntervalMs".into(), RegistryValue::Dword(10))],
        io: IoConfig {
            volumes: vec![(VolumeKind::Ntfs, NTFS.to_owned())],
            ..IoConfig::default()
        },
        ..SimConfig::default()
    });
    let driver = sim.load(image).unwrap();
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let client = sim
        .connect(vigil_protocol::PORT_NAME, &ConnectOptions::default())
        .unwrap();
    let io = driver.io(Requestor { pid: 10, tid: 11 });
    let volume = driver.volume(NTFS).unwrap();
    let file = io
        .create(volume, r"\batch.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("FILE_CREATE");
    assert_eq!(io.write(&file, 0, b"data"), 0);
    io.cleanup(&file);
    io.close(file);
    let mut buf = vec![0u8; vigil_protocol::MAX_MESSAGE_SIZE];
    // The process record of the requestor (first seen here) comes first; then the batch.
    loop {
        let message = client
            .get_message(&mut buf, Duration::from_secs(10))
            .expect("a batch arrives");
        assert!(message.len > 0);
        let kind = vigil_protocol::Message::parse(&buf[..message.len]).map(|m| m.kind());
        if kind == Ok(vigil_protocol::MessageKind::EventBatch) {
            break;
        }
    }
    drop(client);
    driver.finish()
}

/// `uninit-send`: each batch carries 64 bytes of never-written pool past its records.
#[test]
fn uninit_send_is_caught_by_the_message_scan() {
    let report = one_batch(twin(Twin::UninitSend));
    assert_reports(&report, ViolationKind::UninitializedBytes, "RULES.md 11");
}

/// `send-infinite`: the delivery thread sends with a NULL timeout.
#[test]
fn send_infinite_is_caught_by_the_timeout_policy() {
    let report = one_batch(twin(Twin::SendInfinite));
    assert_reports(
        &report,
        ViolationKind::Policy,
        "RULES.md 7: a send waits only with a finite timeout",
    );
}

/// The production image through the same scenario: neither check fires.
#[test]
fn production_batches_trip_neither_check() {
    let report = one_batch(common::vigil_image());
    assert!(report.is_clean(), "{}", report.summary());
}
