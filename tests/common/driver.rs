//! Shared by the `driver_*` integration tests: the real vigil.sys (and its test-only builds) in
//! kernel-sim, with a small service on its port that collects event batches and answers
//! verdict requests by a policy. Linux only (kernel-sim runs the image natively).
//!
//! Included with `#[path = "common/driver.rs"] mod driver;` by each test file.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a subset of these helpers and re-exported constants"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vigil_kernel_sim::{
    ConnectOptions, Driver, IoConfig, PortConnection, PortError, RegistryValue, Report, Requestor,
    Sim, SimConfig, VolumeId, VolumeKind,
};
use vigil_protocol::{
    Config, EventFlags, EventKind, GetStats, MAX_MESSAGE_SIZE, Message, ProcessEvent, Stats,
    StatsReply, Verdict, VerdictOperation, VerdictReply,
};

pub const PORT: &str = vigil_protocol::PORT_NAME;
pub use vigil_kernel_sim::fixtures::{FAT, NETWORK, NTFS, PIPE};
pub use vigil_sys::{
    DELETE, FILE_CREATE, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_DISPOSITION_DELETE,
    FILE_DISPOSITION_POSIX_SEMANTICS, FILE_OPEN, FILE_OPEN_IF, FILE_OVERWRITE_IF, GENERIC_READ,
    GENERIC_WRITE, STATUS_ACCESS_DENIED, STATUS_OBJECT_NAME_COLLISION,
    STATUS_OBJECT_NAME_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS,
};

/// `FILE_OPENED` as an event record carries it (`u32`; vigil-sys has the `usize` of
/// `IoStatus.Information`).
#[expect(clippy::cast_possible_truncation, reason = "the value is 1")]
pub const FILE_OPENED: u32 = vigil_sys::FILE_OPENED as u32;
/// `FILE_CREATED`, as [`FILE_OPENED`].
#[expect(clippy::cast_possible_truncation, reason = "the value is 2")]
pub const FILE_CREATED: u32 = vigil_sys::FILE_CREATED as u32;

/// The process id the service connects as.
pub const SERVICE_PID: u32 = 0x2468;

/// How long a test waits for something the driver does on its own (delivery, timeouts).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The production image, built once per test binary.
pub fn image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys")
        })
        .clone()
}

/// A test-only build (`xtask::Variant::twin`/`baseline`).
pub fn build(variant: &xtask::Variant) -> PathBuf {
    xtask::build_driver(variant).unwrap_or_else(|e| panic!("building {}: {e}", variant.name()))
}

/// NTFS, FAT and named-pipe volumes mounted before load; a 10 ms flush interval (events
/// arrive quickly); `registry` added to the Parameters key.
pub fn config(registry: &[(&str, RegistryValue)]) -> SimConfig {
    let mut values = vec![("FlushIntervalMs".to_owned(), RegistryValue::Dword(10))];
    values.extend(registry.iter().map(|(n, v)| ((*n).to_owned(), v.clone())));
    SimConfig {
        registry: values,
        io: IoConfig {
            volumes: vec![
                (VolumeKind::Ntfs, NTFS.to_owned()),
                (VolumeKind::Fat, FAT.to_owned()),
                (VolumeKind::NamedPipe, PIPE.to_owned()),
            ],
            ..IoConfig::default()
        },
        ..SimConfig::default()
    }
}

/// [`config`] with a batch of one event, and the delivery thread held inside its first
/// `FltSendMessage` until the test releases it through the driver's observer.
pub fn send_held_config() -> SimConfig {
    SimConfig {
        pause_at: Some(vigil_kernel_sim::PausePoint {
            routine: "FltSendMessage",
            callback: "system thread",
        }),
        ..config(&[("BatchSize", RegistryValue::Dword(1))])
    }
}

/// Loads `image` with `config` and asserts DriverEntry succeeded.
pub fn load(config: SimConfig, image: &std::path::Path) -> (Sim, Driver) {
    let sim = Sim::new(config);
    let driver = sim.load(image).expect("the image loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    (sim, driver)
}

pub fn volume(driver: &Driver, name: &str) -> VolumeId {
    driver.volume(name).expect("mounted")
}

pub fn requestor(pid: u32, tid: u32) -> Requestor {
    Requestor { pid, tid }
}

/// Finishes the run and asserts no rule was broken.
pub fn assert_clean(driver: Driver) -> Report {
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    report
}

/// The full NT path of `path` on the volume `device`.
pub fn nt(device: &str, path: &str) -> String {
    format!("{device}{path}")
}

/// One event as the service decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub flags: EventFlags,
    pub status: i32,
    pub sequence: u64,
    pub process_id: u64,
    pub thread_id: u64,
    pub volume_id: u32,
    pub desired_access: u32,
    pub create_disposition: u32,
    pub information: u32,
    pub path: String,
    pub target: String,
}

/// One verdict request as the service decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictAsked {
    pub request_id: u64,
    pub operation: VerdictOperation,
    pub flags: EventFlags,
    pub process_id: u64,
    pub path: String,
    pub target: String,
}

/// What the service does with a verdict request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Reply with this verdict.
    Reply(Verdict),
    /// Take the request and never answer (the driver's wait times out).
    Ignore,
    /// Close the connection while the driver waits.
    Vanish,
}

/// Everything the service received.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<Event>,
    /// Each batch's header sequence and record count.
    pub batches: Vec<(u64, usize)>,
    pub requests: Vec<VerdictAsked>,
    /// Messages that did not decode (must stay empty).
    pub malformed: Vec<String>,
    /// Each event's process key and file id, index for index with `events` (kept apart so
    /// that the expected [`Event`]s of the older tests need not name them).
    pub identities: Vec<(u64, [u8; 16])>,
    /// Process records, in arrival order.
    pub processes: Vec<ProcessSeen>,
}

/// One process record as the service decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSeen {
    pub event: ProcessEvent,
    pub key: u64,
    pub pid: u64,
    pub parent_pid: u64,
    pub session_id: u32,
    pub exit_status: i32,
    pub image: String,
    pub user_sid: Option<String>,
}

type Policy = dyn Fn(&VerdictAsked) -> Answer + Send + Sync;

/// A client on `\VigilPort` with a reader thread, as the real service has.
pub struct Service {
    pub port: Arc<PortConnection>,
    /// Events delivered to earlier connections (the counters are per load, the log per
    /// connection): [`Service::quiesce`] expects `events_delivered - already_delivered`.
    pub already_delivered: u64,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Service {
    /// Connects as [`SERVICE_PID`] and starts reading; verdict requests get `policy`'s answer.
    pub fn connect(
        driver: &Driver,
        policy: impl Fn(&VerdictAsked) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::connect_as(driver, u64::from(SERVICE_PID), policy)
    }

    /// Connects as process `pid`.
    pub fn connect_as(
        driver: &Driver,
        pid: u64,
        policy: impl Fn(&VerdictAsked) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let port = Arc::new(
            driver
                .connect(
                    PORT,
                    &ConnectOptions {
                        process_id: pid,
                        context: Vec::new(),
                        account: vigil_kernel_sim::Account::System,
                    },
                )
                .expect("the service connects"),
        );
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let policy: Arc<Policy> = Arc::new(policy);
        let reader = {
            let (port, log, stop) = (Arc::clone(&port), Arc::clone(&log), Arc::clone(&stop));
            std::thread::spawn(move || read_until_stopped(&port, &log, &stop, &*policy))
        };
        Self {
            port,
            already_delivered: 0,
            log,
            stop,
            reader: Some(reader),
        }
    }

    /// Connects and allows every verdict request.
    pub fn allowing(driver: &Driver) -> Self {
        Self::connect(driver, |_| Answer::Reply(Verdict::Allow))
    }

    /// Waits until `done` holds for the log (true) or [`PATIENCE`] passes (false).
    pub fn wait_for(&self, done: impl Fn(&Log) -> bool) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if done(&self.log.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for at least `n` events and returns all of them.
    pub fn wait_events(&self, n: usize) -> Vec<Event> {
        let ok = self.wait_for(|log| log.events.len() >= n);
        let events = self.events();
        assert!(ok, "expected {n} events, got {}: {events:#?}", events.len());
        events
    }

    /// Everything received so far.
    pub fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().events.clone()
    }

    pub fn requests(&self) -> Vec<VerdictAsked> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn batches(&self) -> Vec<(u64, usize)> {
        self.log.lock().unwrap().batches.clone()
    }

    pub fn malformed(&self) -> Vec<String> {
        self.log.lock().unwrap().malformed.clone()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        let mut log = self.log.lock().unwrap();
        log.events.clear();
        log.identities.clear();
        log.batches.clear();
        log.requests.clear();
    }

    /// The driver's statistics (get-statistics command).
    pub fn stats(&self) -> Stats {
        stats(&self.port)
    }

    /// Sends a set-configuration; returns the command's status.
    pub fn set_config(&self, config: &Config<'_>) -> i32 {
        set_config(&self.port, config)
    }

    /// Waits until every event generated so far is delivered or counted as dropped, and
    /// the service has all delivered ones; returns the statistics then.
    pub fn quiesce(&self) -> Stats {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = self.stats();
            let received = self.log.lock().unwrap().events.len() as u64;
            if stats.events_generated == stats.events_delivered + stats.dropped_total()
                && received + self.already_delivered >= stats.events_delivered
            {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "never quiescent: {stats:?}, {received} received"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the reader and closes the connection.
    pub fn close(mut self) -> Log {
        self.shutdown();
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.port.close();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread ends");
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_until_stopped(port: &PortConnection, log: &Mutex<Log>, stop: &AtomicBool, policy: &Policy) {
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
    while !stop.load(Ordering::Acquire) {
        let received = match port.get_message(&mut buf, Duration::from_millis(20)) {
            Ok(received) => received,
            Err(PortError::Timeout) => continue,
            Err(_) => return,
        };
        let bytes = &buf[..received.len];
        match Message::parse(bytes) {
            Ok(Message::EventBatch(batch)) => {
                let mut events = Vec::with_capacity(batch.record_count());
                let mut identities = Vec::with_capacity(batch.record_count());
                for record in batch.records() {
                    identities.push((record.process_key(), record.file_id()));
                    events.push(Event {
                        kind: record.kind(),
                        flags: record.flags(),
                        status: record.status(),
                        sequence: record.sequence(),
                        process_id: record.process_id(),
                        thread_id: record.thread_id(),
                        volume_id: record.volume_id(),
                        desired_access: record.desired_access(),
                        create_disposition: record.create_disposition(),
                        information: record.information(),
                        path: record.path().chars().collect(),
                        target: record.target().chars().collect(),
                    });
                }
                let mut log = log.lock().unwrap();
                if events.len() != batch.record_count() {
                    log.malformed.push(format!(
                        "batch of {} records yields {}",
                        batch.record_count(),
                        events.len()
                    ));
                }
                log.batches.push((batch.sequence(), events.len()));
                log.events.extend(events);
                log.identities.extend(identities);
            }
            Ok(Message::ProcessRecord(record)) => {
                log.lock().unwrap().processes.push(ProcessSeen {
                    event: record.event(),
                    key: record.process_key(),
                    pid: record.process_id(),
                    parent_pid: record.parent_process_id(),
                    session_id: record.session_id(),
                    exit_status: record.exit_status(),
                    image: record.image().chars().collect(),
                    user_sid: record.user_sid().map(|sid| sid.to_string()),
                });
            }
            Ok(Message::VerdictRequest(request)) => {
                let request = VerdictAsked {
                    request_id: request.request_id(),
                    operation: request.operation(),
                    flags: request.flags(),
                    process_id: request.process_id(),
                    path: request.path().chars().collect(),
                    target: request.target().chars().collect(),
                };
                let answer = policy(&request);
                log.lock().unwrap().requests.push(request.clone());
                match answer {
                    Answer::Reply(verdict) => {
                        let mut reply = [0u8; VerdictReply::LEN];
                        VerdictReply {
                            request_id: request.request_id,
                            verdict,
                            reason: 0,
                        }
                        .emit(&mut reply)
                        .expect("a reply fits");
                        // The driver may have given up already (timeout): not an error here.
                        let _ = port.reply(received.message_id, &reply);
                    }
                    Answer::Ignore => {}
                    Answer::Vanish => {
                        port.close();
                        return;
                    }
                }
            }
            Ok(other) => log
                .lock()
                .unwrap()
                .malformed
                .push(format!("unexpected {:?}", other.kind())),
            Err(e) => log
                .lock()
                .unwrap()
                .malformed
                .push(format!("undecodable message: {e:?}")),
        }
    }
}

/// Get-statistics on `port`.
pub fn stats(port: &PortConnection) -> Stats {
    let mut request = [0u8; GetStats::LEN];
    GetStats.emit(&mut request).expect("fits");
    let result = port
        .send_command(&request, StatsReply::LEN)
        .expect("the command is delivered");
    assert_eq!(result.status, STATUS_SUCCESS, "get-statistics");
    StatsReply::parse(&result.output)
        .expect("a stats reply")
        .stats
}

/// Set-configuration on `port`; the command's status.
pub fn set_config(port: &PortConnection, config: &Config<'_>) -> i32 {
    let mut buf = vec![0u8; config.encoded_len()];
    let len = config.emit(&mut buf).expect("encodes");
    port.send_command(&buf[..len], vigil_protocol::SetConfigReply::LEN)
        .expect("the command is delivered")
        .status
}

/// A `REG_MULTI_SZ` value.
pub fn registry_multi(values: &[&str]) -> RegistryValue {
    RegistryValue::MultiSz(values.iter().map(|s| (*s).to_owned()).collect())
}
