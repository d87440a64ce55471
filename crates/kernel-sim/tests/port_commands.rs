//! The real vigil.sys behind its communication port, through kernel-sim's client side:
//! connections (one at a time, SYSTEM and Administrators only), every command with good input, bad buffers of every kind
//! (each with its own status, none changing the driver's state), unknown command kinds,
//! disconnect and reconnect.

mod common;

use vigil_kernel_sim::{
    ConnectError, ConnectOptions, Driver, PortConnection, RawCommand, Sim, SimConfig, UserPointer,
    ViolationKind,
};
use vigil_protocol::{
    BatchWriter, Config, EventFlags, EventKind, EventRepr, GetStats, HEADER_LEN, Hello, HelloReply,
    MAX_MESSAGE_SIZE, Ping, Pong, PrefixList, SetConfigReply, Stats, StatsReply, Utf16Str, Verdict,
    VerdictReply, Version,
};
use vigil_sys::{
    STATUS_BUFFER_TOO_SMALL, STATUS_CONNECTION_COUNT_LIMIT, STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_INVALID_USER_BUFFER,
    STATUS_REVISION_MISMATCH, STATUS_SUCCESS,
};

const PORT: &str = vigil_protocol::PORT_NAME;
const SERVICE_PID: u64 = 0x2468;

fn load() -> (Sim, Driver) {
    let sim = Sim::new(SimConfig::default());
    let driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    (sim, driver)
}

fn service() -> ConnectOptions {
    ConnectOptions {
        process_id: SERVICE_PID,
        context: Vec::new(),
        account: vigil_kernel_sim::Account::Administrator,
    }
}

fn hello() -> Vec<u8> {
    let mut buf = vec![0u8; Hello::LEN];
    Hello {
        client_process_id: SERVICE_PID,
    }
    .emit(&mut buf)
    .unwrap();
    buf
}

fn ping(nonce: u64) -> Vec<u8> {
    let mut buf = vec![0u8; Ping::LEN];
    Ping { nonce }.emit(&mut buf).unwrap();
    buf
}

fn set_config(config: &Config<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; config.encoded_len()];
    let len = config.emit(&mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn stats(client: &PortConnection) -> Stats {
    let mut request = [0u8; GetStats::LEN];
    GetStats.emit(&mut request).unwrap();
    let result = client.send_command(&request, StatsReply::LEN).unwrap();
    assert_eq!(result.status, STATUS_SUCCESS);
    assert_eq!(result.returned_len as usize, StatsReply::LEN);
    StatsReply::parse(&result.output).unwrap().stats
}

fn assert_clean(driver: Driver) {
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn one_client_at_a_time_and_the_connect_runs_in_the_clients_process() {
    let (sim, driver) = load();
    let first = sim.connect(PORT, &service()).expect("the service connects");
    assert!(first.is_connected());
    // MaxConnections is 1: FltMgr refuses the second client before the driver is asked.
    let second = sim.connect(PORT, &ConnectOptions::default());
    assert_eq!(second.unwrap_err(), ConnectError::ConnectionLimit);
    assert_eq!(
        ConnectError::ConnectionLimit.status(),
        STATUS_CONNECTION_COUNT_LIMIT
    );
    assert_eq!(stats(&first).connections, 1);
    assert_eq!(first.process_id(), SERVICE_PID);
    drop(first);
    let again = driver
        .connect(PORT, &service())
        .expect("reconnect after close");
    let counters = stats(&again);
    assert_eq!((counters.connections, counters.disconnects), (2, 1));
    drop(again);
    assert_eq!(
        sim.connect("\\NoSuchPort", &service()).unwrap_err(),
        ConnectError::NotFound
    );
    assert_clean(driver);
}

/// RULES.md 18: the port's descriptor (`FltBuildDefaultSecurityDescriptor(FLT_PORT_ALL_ACCESS)`)
/// admits SYSTEM and Administrators only; any other account is refused before the driver's
/// ConnectNotify runs.
#[test]
fn the_port_admits_system_and_administrators_only() {
    let (sim, driver) = load();
    let as_account = |account| ConnectOptions {
        account,
        ..service()
    };
    let user = sim.connect(PORT, &as_account(vigil_kernel_sim::Account::User));
    assert_eq!(user.unwrap_err(), ConnectError::AccessDenied);
    let system = sim
        .connect(PORT, &as_account(vigil_kernel_sim::Account::System))
        .expect("SYSTEM connects");
    // The refused user never reached ConnectNotify: this is the first connection.
    assert_eq!(stats(&system).connections, 1);
    drop(system);
    let admin = sim
        .connect(PORT, &as_account(vigil_kernel_sim::Account::Administrator))
        .expect("an administrator connects");
    assert_eq!(stats(&admin).connections, 2);
    drop(admin);
    assert_clean(driver);
}

#[test]
fn hello_stats_ping_and_set_config_round_trip() {
    let (sim, driver) = load();
    let client = sim.connect(PORT, &service()).unwrap();

    let reply = client.send_command(&hello(), HelloReply::LEN).unwrap();
    assert_eq!(reply.status, STATUS_SUCCESS);
    assert_eq!(reply.returned_len as usize, HelloReply::LEN);
    let parsed = HelloReply::parse(&reply.output).unwrap();
    assert_eq!(parsed.status, 0);
    assert_eq!(parsed.max_message_size as usize, MAX_MESSAGE_SIZE);
    assert!(parsed.ring_capacity_bytes > 0);

    let pong = client.send_command(&ping(0xDEAD_BEEF), Pong::LEN).unwrap();
    assert_eq!(pong.status, STATUS_SUCCESS);
    assert_eq!(Pong::parse(&pong.output).unwrap().nonce, 0xDEAD_BEEF);

    let prefix: Vec<u16> = "\\Device\\HarddiskVolume1\\secret".encode_utf16().collect();
    let prefixes = [Utf16Str::from_units(&prefix)];
    let config = Config {
        batch_size: 32,
        verdict_timeout_ms: 250,
        send_timeout_ms: 500,
        default_verdict: Verdict::Deny,
        attach_network_volumes: true,
        protected_prefixes: PrefixList::from_slice(&prefixes).unwrap(),
    };
    let set = client
        .send_command(&set_config(&config), SetConfigReply::LEN)
        .unwrap();
    assert_eq!(set.status, STATUS_SUCCESS);
    assert_eq!(SetConfigReply::parse(&set.output).unwrap().status, 0);

    let counters = stats(&client);
    assert_eq!(counters.connections, 1);
    assert_eq!(counters.disconnects, 0);
    assert_eq!(counters.events_generated, 0);
    drop(client);
    assert_clean(driver);
}

/// Every malformed request gets its own status, and none of them changes the driver.
#[test]
fn bad_buffers_get_clear_statuses_and_change_nothing() {
    let (sim, driver) = load();
    let client = sim.connect(PORT, &service()).unwrap();
    let before = stats(&client);

    let run = |command: RawCommand| {
        client
            .send_command_raw(&command)
            .unwrap_or_else(|e| panic!("{e}: {:#?}", driver.violations()))
    };
    let good = RawCommand::new(&ping(7), Pong::LEN);

    // Truncated: shorter than the header.
    let truncated = run(RawCommand::new(&ping(7)[..HEADER_LEN - 1], Pong::LEN));
    assert_eq!(truncated.status, STATUS_INVALID_BUFFER_SIZE);
    // Oversized: longer than the largest message.
    let oversized = run(RawCommand::new(&vec![0u8; MAX_MESSAGE_SIZE + 1], Pong::LEN));
    assert_eq!(oversized.status, STATUS_INVALID_BUFFER_SIZE);
    // A header that lies about its length, or a SetConfig out of range: malformed.
    let mut lying_header = ping(7);
    lying_header[12..16].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(
        run(RawCommand::new(&lying_header, Pong::LEN)).status,
        STATUS_INVALID_PARAMETER
    );
    let bad_config = Config {
        batch_size: 0,
        ..Config::DEFAULT
    };
    let mut bad_config_bytes = set_config(&Config::DEFAULT);
    bad_config_bytes[HEADER_LEN..HEADER_LEN + 4]
        .copy_from_slice(&bad_config.batch_size.to_le_bytes());
    let refused = run(RawCommand::new(&bad_config_bytes, SetConfigReply::LEN));
    assert_eq!(refused.status, STATUS_INVALID_PARAMETER);
    assert_eq!(refused.returned_len, 0);

    // Input pointers: NULL, unmapped (the copy faults inside the SEH helper), a kernel
    // address (refused by the probe, never touched), a length past the mapping (the copy runs
    // into the guard page).
    for (pointer, lie) in [
        (UserPointer::Null, None),
        (UserPointer::Unmapped, None),
        (UserPointer::Kernel, None),
        (UserPointer::Valid, Some(4096)),
    ] {
        let result = run(RawCommand {
            input_pointer: pointer,
            input_len: lie,
            ..good.clone()
        });
        assert_eq!(
            (result.status, result.returned_len),
            (STATUS_INVALID_USER_BUFFER, 0),
            "input {pointer:?} length {lie:?}"
        );
    }
    // Output pointers, the same set, and an output buffer too small for the reply.
    for (pointer, lie) in [
        (UserPointer::Null, None),
        (UserPointer::Unmapped, None),
        (UserPointer::Kernel, None),
        (UserPointer::Valid, Some(4096)),
    ] {
        let result = run(RawCommand {
            output_pointer: pointer,
            output_len: lie,
            ..good.clone()
        });
        assert_eq!(
            (result.status, result.returned_len),
            (STATUS_INVALID_USER_BUFFER, 0),
            "output {pointer:?} length {lie:?}"
        );
    }
    let small = run(RawCommand::new(&ping(7), Pong::LEN - 1));
    assert_eq!(
        (small.status, small.returned_len),
        (STATUS_BUFFER_TOO_SMALL, 0)
    );
    let none = run(RawCommand::new(&ping(7), 0));
    assert_eq!(none.status, STATUS_BUFFER_TOO_SMALL);

    // Misaligned buffers are fine: the driver copies, it never dereferences them in place
    // (RULES.md 12: SEH would not catch an alignment fault).
    let misaligned = run(RawCommand {
        input_pointer: UserPointer::Misaligned,
        output_pointer: UserPointer::Misaligned,
        ..good.clone()
    });
    assert_eq!(misaligned.status, STATUS_SUCCESS);
    assert_eq!(Pong::parse(&misaligned.output).unwrap().nonce, 7);

    // Nothing changed: the counters, and a good command still works.
    assert_eq!(stats(&client), before);
    assert_eq!(run(good).status, STATUS_SUCCESS);
    drop(client);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert!(
        report.seh_dispatches >= 4,
        "unmapped and overlong buffers went to the driver's __except: {}",
        report.seh_dispatches
    );
}

#[test]
fn messages_that_are_not_commands_are_refused() {
    let (sim, driver) = load();
    let client = sim.connect(PORT, &service()).unwrap();
    let path: Vec<u16> = "\\Device\\HarddiskVolume1\\a.txt".encode_utf16().collect();
    let mut batch = vec![0u8; 4096];
    let mut writer = BatchWriter::new(&mut batch).unwrap();
    writer
        .push(&EventRepr {
            kind: EventKind::FirstWrite,
            flags: EventFlags::NONE,
            status: 0,
            sequence: 0,
            timestamp: 0,
            process_id: 1,
            process_key: 0,
            thread_id: 2,
            volume_id: 3,
            desired_access: 0,
            create_disposition: 0,
            information: 0,
            file_id: [0; 16],
            path: Utf16Str::from_units(&path),
            target: Utf16Str::EMPTY,
        })
        .unwrap();
    let len = writer.finish().unwrap();
    let refused = client.send_command(&batch[..len], 256).unwrap();
    assert_eq!(refused.status, STATUS_INVALID_DEVICE_REQUEST);
    let mut verdict = vec![0u8; VerdictReply::LEN];
    VerdictReply {
        request_id: 1,
        verdict: Verdict::Allow,
        reason: 0,
    }
    .emit(&mut verdict)
    .unwrap();
    assert_eq!(
        client.send_command(&verdict, 256).unwrap().status,
        STATUS_INVALID_DEVICE_REQUEST
    );
    // Another major version: refused by the handshake's own status.
    let mut future = hello();
    future[4..6].copy_from_slice(&(Version::CURRENT.major + 1).to_le_bytes());
    assert_eq!(
        client
            .send_command(&future, HelloReply::LEN)
            .unwrap()
            .status,
        STATUS_REVISION_MISMATCH
    );
    drop(client);
    assert_clean(driver);
}

#[test]
fn disconnect_closes_the_client_port_and_reconnect_works() {
    let (sim, driver) = load();
    for round in 1..=3u64 {
        let client = sim.connect(PORT, &service()).unwrap();
        let counters = stats(&client);
        assert_eq!(counters.connections, round);
        assert_eq!(counters.disconnects, round - 1);
        client.close();
        assert!(!client.is_connected());
        let mut buf = [0u8; 64];
        assert_eq!(
            client.get_message(&mut buf, std::time::Duration::ZERO),
            Err(vigil_kernel_sim::PortError::Disconnected)
        );
        assert!(
            client.send_command(&ping(1), Pong::LEN).is_err(),
            "a closed connection sends nothing"
        );
    }
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert!(
        !report
            .violations
            .iter()
            .any(|v| v.kind == ViolationKind::PortNotClosed)
    );
    assert_eq!(report.routine_calls.get("FltCloseClientPort"), Some(&3));
}

#[test]
fn unload_with_a_client_connected_closes_its_port() {
    let (sim, mut driver) = load();
    let client = sim.connect(PORT, &service()).unwrap();
    driver
        .unload(vigil_kernel_sim::UnloadKind::Mandatory)
        .expect("unloads");
    assert!(!client.is_connected(), "the driver closed the client port");
    assert!(client.send_command(&ping(1), Pong::LEN).is_err());
    assert_eq!(
        sim.connect(PORT, &service()).unwrap_err(),
        ConnectError::NotFound
    );
    // Reload: the same Sim finds the new instance's port.
    let reloaded = sim.load(common::vigil_image()).unwrap();
    let again = sim
        .connect(PORT, &service())
        .expect("connects to the new driver");
    assert_eq!(stats(&again).connections, 1, "a new driver instance");
    drop(client);
    drop(again);
    assert_clean(driver);
    assert_clean(reloaded);
}
