//! Process identity from the real vigil.sys in kernel-sim: the process-notify routine feeds the
//! driver's process table, events carry the process key, and the service gets a process record
//! (start, exit, first sight) with the image, parent, user SID and session. A reused pid stays
//! distinguishable by key; a process running before the load is announced once, the first time
//! it is seen; a full table is counted; a reconnecting service learns every live process.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;
#[path = "common/pe_patch.rs"]
#[expect(dead_code, reason = "this test uses the header offsets only")]
mod pe_patch;

use driver::{
    FILE_OPEN_IF, GENERIC_WRITE, NTFS, ProcessSeen, Service, assert_clean, config, image, load, nt,
    requestor, volume,
};
use vigil_kernel_sim::{Driver, NewProcess, ProcessConfig, RegistryValue, SimConfig};
use vigil_protocol::ProcessEvent;

/// `S-1-5-21-…-1001`, the user kernel-sim gives an ordinary process.
const USER_1001: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";

/// Opens, writes and closes `path` on NTFS as process `pid`.
fn touch(driver: &Driver, pid: u32, path: &str) {
    let io = driver.io(requestor(pid, pid + 1));
    let v = volume(driver, NTFS);
    let file = io
        .create(v, path, FILE_OPEN_IF, 0, GENERIC_WRITE)
        .expect("open");
    assert_eq!(io.write(&file, 0, b"data"), 0);
    io.cleanup(&file);
    io.close(file);
}

fn records_of(service: &Service, pid: u64) -> Vec<ProcessSeen> {
    service
        .log()
        .processes
        .iter()
        .filter(|p| p.pid == pid)
        .cloned()
        .collect()
}

/// Waits until the service has `n` records of `pid`.
fn wait_records(service: &Service, pid: u64, n: usize) -> Vec<ProcessSeen> {
    assert!(
        service.wait_for(|log| log.processes.iter().filter(|p| p.pid == pid).count() >= n),
        "{n} record(s) of {pid}: {:#?}",
        service.log().processes
    );
    records_of(service, pid)
}

/// The keys events of `pid` carried.
fn event_keys(service: &Service, pid: u64) -> Vec<u64> {
    let log = service.log();
    log.events
        .iter()
        .zip(&log.identities)
        .filter(|(e, _)| e.process_id == pid)
        .map(|(_, (key, _))| *key)
        .collect()
}

#[test]
fn a_started_process_is_announced_and_its_events_carry_its_key() {
    let (_sim, driver) = load(config(&[]), &image());
    let service = Service::allowing(&driver);
    let image_path = nt(NTFS, r"\Tools\editor.exe");
    let key = driver
        .start_process(&NewProcess::new(1204, 700, &image_path))
        .expect("created");
    touch(&driver, 1204, r"\notes.txt");
    let events = service.wait_events(2);
    assert!(events.len() >= 2, "{events:#?}");
    let keys = event_keys(&service, 1204);
    assert!(
        !keys.is_empty() && keys.iter().all(|&k| k == key),
        "{keys:?} vs {key}"
    );
    let start = wait_records(&service, 1204, 1);
    assert_eq!(
        start[0],
        ProcessSeen {
            event: ProcessEvent::Start,
            key,
            pid: 1204,
            parent_pid: 700,
            session_id: 1,
            exit_status: 0,
            image: image_path.clone(),
            user_sid: Some(USER_1001.to_owned()),
        }
    );
    // STATUS_ACCESS_VIOLATION, as a crashed process exits: PsGetProcessExitStatus reports it.
    let crashed = 0xC000_0005_u32.cast_signed();
    assert!(driver.exit_process_with_status(1204, crashed));
    let both = wait_records(&service, 1204, 2);
    assert_eq!(both[1].event, ProcessEvent::Exit);
    assert_eq!(both[1].key, key);
    assert_eq!(both[1].exit_status, crashed);
    drop(service);
    assert_clean(driver);
}

#[test]
fn a_reused_pid_gets_a_new_key() {
    let (_sim, driver) = load(config(&[]), &image());
    let service = Service::allowing(&driver);
    let first_image = nt(NTFS, r"\first.exe");
    let second_image = nt(NTFS, r"\second.exe");
    let first = driver
        .start_process(&NewProcess::new(3100, 4, &first_image))
        .unwrap();
    touch(&driver, 3100, r"\a.txt");
    // The start record is out before the exit (an exit record replaces an unsent start).
    wait_records(&service, 3100, 1);
    assert!(driver.exit_process(3100));
    let second = driver
        .start_process(&NewProcess::new(3100, 4, &second_image))
        .unwrap();
    assert_ne!(first, second, "start keys never repeat");
    touch(&driver, 3100, r"\b.txt");
    service.wait_events(4);
    let records = wait_records(&service, 3100, 3);
    let by_key = |key: u64| -> Vec<ProcessEvent> {
        records
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.event)
            .collect()
    };
    assert_eq!(by_key(first), [ProcessEvent::Start, ProcessEvent::Exit]);
    assert_eq!(by_key(second), [ProcessEvent::Start]);
    assert!(
        records
            .iter()
            .any(|r| r.key == second && r.image == second_image)
    );
    // Each file's events carry the key of the process that touched it.
    let log = service.log();
    for (event, (key, _)) in log.events.iter().zip(&log.identities) {
        if event.path.ends_with(r"\a.txt") {
            assert_eq!(*key, first, "{event:?}");
        }
        if event.path.ends_with(r"\b.txt") {
            assert_eq!(*key, second, "{event:?}");
        }
    }
    drop(log);
    drop(service);
    assert_clean(driver);
}

#[test]
fn a_process_running_before_the_load_is_announced_once_at_first_sight() {
    let mut sim_config = config(&[]);
    sim_config.processes.push(ProcessConfig {
        pid: 2310,
        image: nt(NTFS, r"\Tools\build.exe"),
        admin: false,
        parent_pid: 1876,
    });
    let (_sim, driver) = load(sim_config, &image());
    let service = Service::allowing(&driver);
    let key = driver.process_start_key(2310);
    touch(&driver, 2310, r"\one.txt");
    touch(&driver, 2310, r"\two.txt");
    service.wait_events(4);
    let records = wait_records(&service, 2310, 1);
    assert_eq!(records.len(), 1, "once: {records:#?}");
    assert_eq!(records[0].event, ProcessEvent::Seen);
    assert_eq!(records[0].key, key);
    assert_eq!(records[0].image, nt(NTFS, r"\Tools\build.exe"));
    assert_eq!(
        records[0].parent_pid, 1876,
        "read with ZwQueryInformationProcess(ProcessBasicInformation) at first sight"
    );
    assert!(event_keys(&service, 2310).iter().all(|&k| k == key));
    drop(service);
    assert_clean(driver);
}

#[test]
fn a_reconnecting_service_learns_every_live_process() {
    let (_sim, driver) = load(config(&[]), &image());
    let image_path = nt(NTFS, r"\backup.exe");
    let key = driver
        .start_process(&NewProcess::new(5000, 4, &image_path))
        .unwrap();
    let first = Service::allowing(&driver);
    wait_records(&first, 5000, 1);
    drop(first);
    let second = Service::allowing(&driver);
    let records = wait_records(&second, 5000, 1);
    assert_eq!(records[0].event, ProcessEvent::Seen);
    assert_eq!(records[0].key, key);
    assert_eq!(records[0].image, image_path);
    drop(second);
    assert_clean(driver);
}

#[test]
fn a_full_table_is_counted_and_keys_still_flow() {
    let registry = [("ProcessTableEntries", RegistryValue::Dword(16))];
    let (_sim, driver) = load(config(&registry), &image());
    let service = Service::allowing(&driver);
    let mut keys = Vec::new();
    for i in 0..20u32 {
        let pid = 10_000 + 4 * i;
        keys.push(
            driver
                .start_process(&NewProcess::new(pid, 4, &nt(NTFS, r"\worker.exe")))
                .unwrap(),
        );
    }
    // The service's own process (connected before) takes no entry; 16 fit, 4 overflow.
    let stats = service.stats();
    assert_eq!(stats.process_table_overflows, 4, "{stats:?}");
    // A process with no entry still has its key on its events, and its events do not count
    // (nor look the process up) again while the table stays full.
    let last = 10_000 + 4 * 19;
    touch(&driver, last, r"\overflow.txt");
    service.wait_events(2);
    assert!(
        event_keys(&service, u64::from(last))
            .iter()
            .all(|&k| k == keys[19])
    );
    assert_eq!(service.stats().process_table_overflows, 4);
    // Room again once the exit record is out (its entry is freed with it): the next first
    // sight gets its entry and its record.
    assert!(driver.exit_process(10_000));
    wait_records(&service, 10_000, 2);
    touch(&driver, 4242, r"\late.txt");
    assert_eq!(wait_records(&service, 4242, 1)[0].event, ProcessEvent::Seen);
    drop(service);
    assert_clean(driver);
}

#[test]
fn the_notify_routine_is_removed_at_unload_and_not_called_afterwards() {
    let sim_config: SimConfig = config(&[]);
    let (_sim, mut driver) = load(sim_config, &image());
    driver
        .start_process(&NewProcess::new(600, 4, r"\x.exe"))
        .unwrap();
    assert!(driver.exit_process(600));
    let outcome = driver.unload(vigil_kernel_sim::UnloadKind::Mandatory);
    assert_eq!(outcome, Ok(vigil_kernel_sim::UnloadOutcome::Unloaded));
    // The routine is gone: a process starting now notifies nobody.
    driver
        .start_process(&NewProcess::new(604, 4, r"\y.exe"))
        .unwrap();
    assert_clean(driver);
}

/// `leave-process-notify`: the routine stays registered into the unloaded image. kernel-sim
/// reports it at unload, and the next process creation calls into the unmapped image, which
/// faults and is reported as a call into unloaded memory.
#[test]
fn a_notify_routine_left_registered_is_reported_and_faults_when_called() {
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::LeaveProcessNotify));
    let (_sim, mut driver) = load(config(&[]), &twin);
    assert_eq!(
        driver.unload(vigil_kernel_sim::UnloadKind::Mandatory),
        Ok(vigil_kernel_sim::UnloadOutcome::Unloaded)
    );
    let _ = driver.start_process(&NewProcess::new(608, 4, r"\z.exe"));
    let report = driver.finish();
    let kinds: Vec<_> = report
        .violations
        .iter()
        .map(|v| (v.kind, v.message.clone()))
        .collect();
    assert!(
        report.violations.iter().any(|v| {
            v.kind == vigil_kernel_sim::ViolationKind::ResourceLeak
                && v.message.contains("still registered in the unloaded image")
        }),
        "{kinds:#?}"
    );
    assert!(
        report.violations.iter().any(|v| {
            v.kind == vigil_kernel_sim::ViolationKind::Fault
                && v.message.contains("ProcessNotify")
                && v.message.contains("unloaded")
        }),
        "{kinds:#?}"
    );
}

/// `PsSetCreateProcessNotifyRoutineEx` refuses an image linked without `/INTEGRITYCHECK`
/// (`STATUS_ACCESS_DENIED`), and DriverEntry fails with that status, leaving nothing behind.
/// The production image has the flag (build.rs links with `/INTEGRITYCHECK`).
#[test]
fn an_image_without_force_integrity_cannot_register_and_fails_its_load_cleanly() {
    let mut bytes = std::fs::read(image()).unwrap();
    let layout = pe_patch::Layout::of(&bytes);
    let at = layout.optional() + 70;
    let characteristics = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    assert_ne!(characteristics & 0x80, 0, "vigil.sys has FORCE_INTEGRITY");
    pe_patch::set_u16(&mut bytes, at, characteristics & !0x80);
    xtask::stamp_pe_checksum(&mut bytes).unwrap();
    let sim = vigil_kernel_sim::Sim::new(config(&[]));
    let driver = sim
        .load_bytes(std::path::Path::new("no-integrity.sys"), &bytes, None)
        .expect("the loader maps it");
    assert_eq!(driver.entry_status(), Some(driver::STATUS_ACCESS_DENIED));
    assert_clean(driver);
}

/// A process record whose send fails is counted, not lost silently: with a client that never
/// reads and a 10 ms send timeout, the start record times out and `process_records_dropped`
/// counts it (not the events' drop counters, which account for events only).
#[test]
fn a_process_record_whose_send_fails_is_counted() {
    let (_sim, driver) = load(
        config(&[("SendTimeoutMs", RegistryValue::Dword(10))]),
        &image(),
    );
    let silent = driver
        .connect(
            driver::PORT,
            &vigil_kernel_sim::ConnectOptions {
                process_id: u64::from(driver::SERVICE_PID),
                context: Vec::new(),
                account: vigil_kernel_sim::Account::System,
            },
        )
        .expect("connects");
    driver
        .start_process(&NewProcess::new(2600, 4, &nt(NTFS, r"\quiet.exe")))
        .expect("created");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stats = driver::stats(&silent);
    while stats.process_records_dropped == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        stats = driver::stats(&silent);
    }
    assert_eq!(stats.process_records_dropped, 1, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
    drop(silent);
    assert_clean(driver);
}
