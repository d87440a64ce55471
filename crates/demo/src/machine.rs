//! The simulated machine of `vigil-demo` and of the end-to-end tests: the real `vigil.sys` in
//! kernel-sim with two synthetic volumes ([`Machine`]), the service core on its own thread
//! connected through kernel-sim's client ([`ServiceHandle`]), and a scripted workload from
//! several processes and threads that knows which events the driver must report for it
//! ([`Actor`], [`phase_one`], [`phase_two`]). Feature `sim`, Linux only; user mode (host
//! threads).
//!
//! A driver instance owns its volumes in kernel-sim (they belong to the emulated FltMgr of
//! that load), so [`Machine::load`] mounts them again after each load: files made before an
//! unload are gone after it, which the workload's second phase allows for.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vigil_kernel_sim::{
    Driver, FileHandle, Io, Report, Requestor, Sim, SimConfig, UnloadKind, VolumeId, VolumeKind,
};
use vigil_protocol::{EventBatch, Stats};

use crate::client::{ClientError, Connector, Incoming, PortClient};
use crate::control::{ServiceControl, SystemClock};
use crate::policy::{Policy, ProcessNames};
use crate::sequence::ResumePoint;
use crate::service::{Level, Log, Service, ServiceError, ServiceOptions, Summary};
use crate::sim_client::{SharedConnection, SimConnector, SimPort};
use crate::sink::Sink;

/// The NTFS volume's device name.
pub const NTFS: &str = r"\Device\HarddiskVolume1";
/// The FAT volume's device name.
pub const FAT: &str = r"\Device\HarddiskVolume2";

/// `STATUS_ACCESS_DENIED`: a create or set-information the driver refused.
pub const STATUS_ACCESS_DENIED: i32 = 0xC000_0022_u32.cast_signed();
/// `FILE_OPEN`.
pub const FILE_OPEN: u32 = 1;
/// `FILE_CREATE`.
pub const FILE_CREATE: u32 = 2;
/// `FILE_OPEN_IF`.
pub const FILE_OPEN_IF: u32 = 3;
/// `FILE_DIRECTORY_FILE`.
pub const FILE_DIRECTORY_FILE: u32 = 0x1;
/// `FILE_DELETE_ON_CLOSE`.
pub const FILE_DELETE_ON_CLOSE: u32 = 0x1000;
/// `GENERIC_READ`.
pub const GENERIC_READ: u32 = 0x8000_0000;
/// `GENERIC_WRITE`.
pub const GENERIC_WRITE: u32 = 0x4000_0000;

/// The service's process id in the simulated machine (the driver exempts its own I/O).
pub const SERVICE_PID: u64 = 0x0F00;

/// One finished driver instance: its counters just before the unload and kernel-sim's report.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    /// `GetStats` before the unload (`None` when it could not be asked).
    pub stats: Option<Stats>,
    /// Violations, pool statistics, synthetic I/O counters.
    pub report: Report,
}

/// kernel-sim with the real `vigil.sys`, loaded and reloaded, and its two volumes.
pub struct Machine {
    sim: Sim,
    image: PathBuf,
    driver: Option<Driver>,
    finished: Vec<InstanceReport>,
}

/// The volumes of the current driver instance.
#[derive(Debug, Clone, Copy)]
pub struct Volumes {
    /// `\Device\HarddiskVolume1`, NTFS (hard links).
    pub ntfs: VolumeId,
    /// `\Device\HarddiskVolume2`, FAT.
    pub fat: VolumeId,
}

impl Machine {
    /// A machine that will load `image`; nothing is loaded yet.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        Self::with_config(image, SimConfig::default())
    }

    /// As [`new`](Self::new), with a kernel-sim configuration.
    pub fn with_config(image: impl Into<PathBuf>, config: SimConfig) -> Self {
        Self {
            sim: Sim::new(config),
            image: image.into(),
            driver: None,
            finished: Vec::new(),
        }
    }

    /// The simulator (for connecting clients).
    pub const fn sim(&self) -> &Sim {
        &self.sim
    }

    /// `fltmc load vigil`, then the volumes mounted and attached.
    ///
    /// # Errors
    ///
    /// The loader's refusal, DriverEntry's failure, or an instance not attached.
    pub fn load(&mut self) -> Result<Volumes, String> {
        let driver = self
            .sim
            .load(&self.image)
            .map_err(|e| format!("{}: {e}", self.image.display()))?;
        if driver.entry_status() != Some(0) {
            let report = driver.finish();
            return Err(format!("DriverEntry failed: {}", report.summary()));
        }
        let volumes = Volumes {
            ntfs: driver.mount(VolumeKind::Ntfs, NTFS),
            fat: driver.mount(VolumeKind::Fat, FAT),
        };
        for (name, volume) in [(NTFS, volumes.ntfs), (FAT, volumes.fat)] {
            if !driver.is_attached(volume) {
                return Err(format!("vigil did not attach to {name}"));
            }
        }
        self.driver = Some(driver);
        Ok(volumes)
    }

    /// The loaded driver.
    ///
    /// # Panics
    ///
    /// When none is loaded.
    pub fn driver(&self) -> &Driver {
        self.driver.as_ref().expect("a driver is loaded")
    }

    /// `fltmc unload vigil` (mandatory), then kernel-sim's checks; `stats` are the counters
    /// read just before, kept with the report.
    ///
    /// # Errors
    ///
    /// Nothing loaded, or the unload failed (the report is kept either way).
    pub fn unload(&mut self, stats: Option<Stats>) -> Result<&InstanceReport, String> {
        let mut driver = self.driver.take().ok_or("no driver loaded")?;
        let unloaded = driver.unload(UnloadKind::Mandatory);
        let report = driver.finish();
        self.finished.push(InstanceReport { stats, report });
        let last = self.finished.last().ok_or("no report")?;
        match unloaded {
            Ok(_) => Ok(last),
            Err(e) => Err(format!("unload: {e}: {}", last.report.summary())),
        }
    }

    /// Every finished instance, in load order (a driver still loaded is finished unloaded:
    /// kernel-sim then reports what it still holds).
    pub fn finish(mut self) -> Vec<InstanceReport> {
        if let Some(driver) = self.driver.take() {
            self.finished.push(InstanceReport {
                stats: None,
                report: driver.finish(),
            });
        }
        std::mem::take(&mut self.finished)
    }
}

// ----- the service on its thread -----------------------------------------------------------

/// The kept lines and their change signal.
type SharedLines = Arc<(Mutex<Vec<(Level, String)>>, Condvar)>;

/// Log lines kept for waiting on, and passed on to another [`Log`] (the terminal).
#[derive(Clone)]
pub struct WatchLog {
    lines: SharedLines,
    forward: Arc<Mutex<Option<Box<dyn Log + Send>>>>,
}

impl Default for WatchLog {
    fn default() -> Self {
        Self {
            lines: Arc::default(),
            forward: Arc::new(Mutex::new(None)),
        }
    }
}

impl WatchLog {
    /// Keeps lines and also hands each to `forward`.
    pub fn forwarding(forward: impl Log + Send + 'static) -> Self {
        Self {
            lines: Arc::default(),
            forward: Arc::new(Mutex::new(Some(Box::new(forward)))),
        }
    }

    /// Lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, line)| line.contains(needle))
            .count()
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `times` lines contain `needle`; `false` after `limit`.
    pub fn wait_for(&self, needle: &str, times: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (lines, changed) = &*self.lines;
        let mut guard = lines.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if guard.iter().filter(|(_, l)| l.contains(needle)).count() >= times {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Log for WatchLog {
    fn log(&mut self, level: Level, message: &str) {
        if let Some(forward) = self
            .forward
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            forward.log(level, message);
        }
        let (lines, changed) = &*self.lines;
        lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((level, message.to_owned()));
        changed.notify_all();
    }
}

/// Process names for `except_processes`, from a fixed table (the simulated machine's
/// processes).
#[derive(Debug, Clone, Default)]
pub struct NameTable(pub Vec<(u32, &'static str)>);

impl ProcessNames for NameTable {
    fn image_name(&self, pid: u64) -> Option<String> {
        self.0
            .iter()
            .find(|(p, _)| u64::from(*p) == pid)
            .map(|(_, name)| (*name).to_owned())
    }
}

/// What the test bench does to the service process: hang it, kill it.
#[derive(Default)]
struct Fate {
    killed: AtomicBool,
    hung: AtomicBool,
    /// Records in the one batch the hung service took and never wrote.
    swallowed: AtomicU64,
    swallowed_batch: AtomicBool,
}

/// A connector that a kill turns off (the process is gone, it connects no more), making
/// ports that a hang stops.
struct FatefulConnector {
    inner: SimConnector,
    fate: Arc<Fate>,
}

impl Connector for FatefulConnector {
    type Client = FatefulPort;

    fn connect(&mut self) -> Result<FatefulPort, ClientError> {
        if self.fate.killed.load(Ordering::Acquire) {
            return Err(ClientError::Unsupported);
        }
        Ok(FatefulPort {
            inner: self.inner.connect()?,
            fate: Arc::clone(&self.fate),
        })
    }
}

/// A port that, once the service hangs, takes one more message without handling it (the
/// process stuck while writing it), then takes nothing.
struct FatefulPort {
    inner: SimPort,
    fate: Arc<Fate>,
}

impl PortClient for FatefulPort {
    fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError> {
        if !self.fate.hung.load(Ordering::Acquire) {
            return self.inner.receive(buf, timeout);
        }
        if !self.fate.swallowed_batch.load(Ordering::Acquire)
            && let Some(incoming) = self.inner.receive(buf, timeout)?
        {
            let bytes = buf.get(..incoming.len).unwrap_or_default();
            if let Ok(batch) = EventBatch::new_checked(bytes) {
                let records = batch.records().count() as u64;
                self.fate.swallowed.fetch_add(records, Ordering::AcqRel);
                self.fate.swallowed_batch.store(true, Ordering::Release);
            }
            return Ok(None);
        }
        std::thread::sleep(timeout);
        Ok(None)
    }

    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError> {
        self.inner.reply(message_id, reply)
    }

    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError> {
        self.inner.send_command(command, reply)
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

/// The service core running on its own thread, as the service process of the machine.
pub struct ServiceHandle {
    log: WatchLog,
    control: ServiceControl,
    shared: SharedConnection,
    fate: Arc<Fate>,
    thread: JoinHandle<Result<Summary, ServiceError>>,
}

/// How [`ServiceHandle::start`] sets the service up.
pub struct ServiceSetup {
    /// The policy it pushes and answers from.
    pub policy: Policy,
    /// Where events go.
    pub sinks: Vec<Box<dyn Sink + Send>>,
    /// Its log (kept for waiting on).
    pub log: WatchLog,
    /// Process names for `except_processes`.
    pub names: NameTable,
    /// Continue a previous service's output.
    pub resume: Option<ResumePoint>,
}

impl ServiceSetup {
    /// `policy`, writing to `sinks`, no names, no resume, a fresh log.
    pub fn new(policy: Policy, sinks: Vec<Box<dyn Sink + Send>>) -> Self {
        Self {
            policy,
            sinks,
            log: WatchLog::default(),
            names: NameTable::default(),
            resume: None,
        }
    }
}

impl ServiceHandle {
    /// Starts the service core against whichever driver `sim` has loaded (it waits for one).
    ///
    /// # Panics
    ///
    /// When no thread can be spawned.
    pub fn start(sim: &Sim, setup: ServiceSetup) -> Self {
        let options = ServiceOptions {
            poll_interval: Duration::from_millis(20),
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            wait_for_driver: true,
            own_pid: SERVICE_PID,
            ..ServiceOptions::default()
        };
        let mut service = Service::new(setup.policy, setup.sinks, options)
            .with_log(setup.log.clone())
            .with_process_names(setup.names)
            .with_resume(setup.resume);
        let control = service.control();
        let inner = SimConnector::new(sim.clone(), SERVICE_PID);
        let shared = inner.shared();
        let fate = Arc::new(Fate::default());
        let mut connector = FatefulConnector {
            inner,
            fate: Arc::clone(&fate),
        };
        let thread = std::thread::Builder::new()
            .name("vigil-service".into())
            .spawn(move || service.run(&mut connector, &SystemClock))
            .expect("spawning the service thread");
        Self {
            log: setup.log,
            control,
            shared,
            fate,
            thread,
        }
    }

    /// Its log.
    pub const fn log(&self) -> &WatchLog {
        &self.log
    }

    /// Waits until the service has completed `n` connections (handshake and policy pushed).
    pub fn wait_connected(&self, n: usize, limit: Duration) -> bool {
        self.log.wait_for("connected:", n, limit)
    }

    /// The driver's counters, asked on the service's own connection from this thread.
    pub fn driver_stats(&self) -> Option<Stats> {
        let mut client = self.shared.client()?;
        crate::commands::stats(&mut client).ok()
    }

    /// Waits until the driver has no event left to send: every event it generated was
    /// delivered to the service or counted as dropped. Returns the counters then.
    pub fn wait_drained(&self, limit: Duration) -> Option<Stats> {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.driver_stats();
            if let Some(s) = stats
                && s.events_delivered + s.dropped_total() >= s.events_generated
            {
                return stats;
            }
            if Instant::now() >= deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Hangs the service (a stuck process: a disk that does not answer, a debugger): it takes
    /// one more event batch and never writes it, then takes no message at all, so the driver's
    /// sends time out. Commands on its connection still work.
    pub fn hang(&self) {
        self.fate.hung.store(true, Ordering::Release);
    }

    /// Records in the batch the hung service took and never wrote (0 until it took one).
    pub fn swallowed_records(&self) -> u64 {
        self.fate.swallowed.load(Ordering::Acquire)
    }

    /// A clean stop: drain, final counters, sinks closed.
    ///
    /// # Errors
    ///
    /// The run's error.
    ///
    /// # Panics
    ///
    /// When the service thread panicked.
    pub fn stop(self) -> Result<Summary, ServiceError> {
        self.control.request_stop();
        self.thread.join().expect("the service thread")
    }

    /// Kills the service: no clean stop; its connection is closed under it at once, as the OS
    /// closes a dead process's handles, whatever the driver is sending. (In one test process
    /// the thread still ends through the core's exit path, which flushes the JSON Lines
    /// buffer; a real crash loses that buffer too, at most the batch being written.)
    pub fn kill(self) {
        self.fate.killed.store(true, Ordering::Release);
        self.shared.close();
        self.control.request_stop();
        let _ = self.thread.join();
    }
}

// ----- the workload -------------------------------------------------------------------------

/// An event the driver must report for the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedEvent {
    /// `open`, `first_write`, `rename`, `hard_link`, `delete`, `close_modified`.
    pub kind: &'static str,
    /// Full NT path.
    pub path: String,
    /// The new name of a rename or link.
    pub target: Option<String>,
    /// Requesting process.
    pub pid: u32,
    /// Requesting thread.
    pub tid: u32,
}

/// A file the actor has open, with its current name.
pub struct OpenFile {
    handle: FileHandle,
    path: String,
}

/// One thread of a simulated process issuing I/O on one volume, recording the events the
/// driver must report and the operations it refused.
pub struct Actor {
    io: Io,
    volume: VolumeId,
    device: &'static str,
    pace: Duration,
    wrote: HashSet<usize>,
    /// Events the driver must report, in this thread's order.
    pub expected: Vec<ExpectedEvent>,
    /// Operations refused with `STATUS_ACCESS_DENIED`: `(operation, path)`.
    pub denied: Vec<(&'static str, String)>,
}

impl Actor {
    /// Thread `tid` of process `pid` on `volume` (`device` is its NT name), sleeping `pace`
    /// after each operation.
    pub fn new(
        driver: &Driver,
        (pid, tid): (u32, u32),
        volume: VolumeId,
        device: &'static str,
        pace: Duration,
    ) -> Self {
        Self {
            io: driver.io(Requestor { pid, tid }),
            volume,
            device,
            pace,
            wrote: HashSet::new(),
            expected: Vec::new(),
            denied: Vec::new(),
        }
    }

    fn full(&self, path: &str) -> String {
        format!("{}{path}", self.device)
    }

    fn expect(&mut self, kind: &'static str, path: String, target: Option<String>) {
        let Requestor { pid, tid } = self.io.requestor();
        self.expected.push(ExpectedEvent {
            kind,
            path,
            target,
            pid,
            tid,
        });
    }

    fn pause(&self) {
        if !self.pace.is_zero() {
            std::thread::sleep(self.pace);
        }
    }

    /// Creates or opens `path` (volume-relative).
    ///
    /// # Errors
    ///
    /// The create's status (a denied one is recorded).
    pub fn create(
        &mut self,
        path: &str,
        disposition: u32,
        options: u32,
        access: u32,
    ) -> Result<OpenFile, i32> {
        let result = self
            .io
            .create(self.volume, path, disposition, options, access);
        match &result {
            Ok(_) => self.expect("open", self.full(path), None),
            Err(status) if *status == STATUS_ACCESS_DENIED => {
                self.denied.push(("create", self.full(path)));
            }
            Err(_) => {}
        }
        self.pause();
        result.map(|handle| OpenFile {
            handle,
            path: path.to_owned(),
        })
    }

    /// Opens (or creates) directory `path`, and closes it.
    ///
    /// # Panics
    ///
    /// When the file system refuses.
    pub fn directory(&mut self, path: &str) {
        let dir = self
            .create(path, FILE_OPEN_IF, FILE_DIRECTORY_FILE, GENERIC_READ)
            .expect("directory");
        self.close(dir);
    }

    /// Writes `data` at `offset`: the handle's first write is an event.
    pub fn write(&mut self, file: &OpenFile, offset: u64, data: &[u8]) -> i32 {
        let status = self.io.write(&file.handle, offset, data);
        if status == 0 && self.wrote.insert(file.handle.file_object()) {
            self.expect("first_write", self.full(&file.path), None);
        }
        self.pause();
        status
    }

    /// Renames `file` to `target` (volume-relative).
    pub fn rename(&mut self, file: &mut OpenFile, target: &str) -> i32 {
        let status = self.io.rename(&file.handle, target, false);
        if status == 0 {
            self.expect("rename", self.full(&file.path), Some(self.full(target)));
            target.clone_into(&mut file.path);
        } else if status == STATUS_ACCESS_DENIED {
            self.denied.push((
                "rename",
                format!("{} -> {}", self.full(&file.path), self.full(target)),
            ));
        }
        self.pause();
        status
    }

    /// A hard link `target` to `file` (NTFS).
    pub fn link(&mut self, file: &OpenFile, target: &str) -> i32 {
        let status = self.io.link(&file.handle, target, false);
        if status == 0 {
            self.expect("hard_link", self.full(&file.path), Some(self.full(target)));
        }
        self.pause();
        status
    }

    /// Marks `file` for deletion (`FileDispositionInformation`).
    pub fn delete(&mut self, file: &OpenFile) -> i32 {
        let status = self.io.set_disposition(&file.handle, true);
        if status == 0 {
            self.expect("delete", self.full(&file.path), None);
        } else if status == STATUS_ACCESS_DENIED {
            self.denied.push(("delete", self.full(&file.path)));
        }
        self.pause();
        status
    }

    /// Cleanup and close: a handle that wrote reports `close_modified`.
    pub fn close(&mut self, file: OpenFile) {
        let status = self.io.cleanup(&file.handle);
        if status == 0 && self.wrote.remove(&file.handle.file_object()) {
            self.expect("close_modified", self.full(&file.path), None);
        }
        self.io.close(file.handle);
        self.pause();
    }
}

/// What a workload phase did.
#[derive(Debug, Default)]
pub struct WorkloadOutcome {
    /// Per thread, the events the driver must report, in that thread's order.
    pub expected: Vec<Vec<ExpectedEvent>>,
    /// Operations refused: `(pid, operation, path)`.
    pub denied: Vec<(u32, &'static str, String)>,
}

impl WorkloadOutcome {
    fn add(&mut self, actor: Actor) {
        let pid = actor.io.requestor().pid;
        self.denied
            .extend(actor.denied.into_iter().map(|(op, path)| (pid, op, path)));
        self.expected.push(actor.expected);
    }

    /// Every expected event.
    pub fn event_count(&self) -> usize {
        self.expected.iter().map(Vec::len).sum()
    }

    fn merge(&mut self, other: Self) {
        self.expected.extend(other.expected);
        self.denied.extend(other.denied);
    }
}

/// The processes of the workload: `(pid, image name, thread ids)`.
pub const PROCESSES: &[(u32, &str, &[u32])] = &[
    (1204, "editor.exe", &[1210, 1211]),
    (2310, "build.exe", &[2311, 2312]),
    (3100, "backup.exe", &[3101]),
    (6660, "intruder.exe", &[6661]),
];

/// The image names of [`PROCESSES`], for the service's `except_processes`.
pub fn process_names() -> NameTable {
    NameTable(
        PROCESSES
            .iter()
            .map(|&(pid, name, _)| (pid, name))
            .collect(),
    )
}

/// The protected tree of the demo's policy.
pub const SECRET: &str = r"\Secret";

/// The demo's policy: `\Device\HarddiskVolume1\Secret` denied to everyone but `backup.exe`.
pub fn demo_policy_toml(default_verdict: &str) -> String {
    format!(
        r#"# vigil-demo's policy (written by the demo).
[driver]
default_verdict = "{default_verdict}"   # no answer from the service: "allow" = fail-open
verdict_timeout_ms = 1000
send_timeout_ms = 1000
batch_size = 8

[[rule]]
prefix = '{NTFS}{SECRET}'
verdict = "deny"
except_processes = ["backup.exe"]
"#
    )
}

/// Phase one: an editor (two threads) on NTFS, a build (two threads) on FAT, and a backup
/// that fills `\Secret` before an intruder tries to get into it (denied three ways), all at
/// once.
///
/// # Panics
///
/// When the file system refuses an operation the script expects to succeed.
pub fn phase_one(driver: &Driver, volumes: Volumes, pace: Duration) -> WorkloadOutcome {
    let mut outcome = WorkloadOutcome::default();
    std::thread::scope(|s| {
        let editor_a = s.spawn(|| {
            let mut a = Actor::new(driver, (1204, 1210), volumes.ntfs, NTFS, pace);
            a.directory(r"\Docs");
            let mut f = a
                .create(r"\Docs\report.docx", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            for n in 0..3u64 {
                a.write(&f, n * 512, &[b'r'; 512]);
            }
            a.rename(&mut f, r"\Docs\report-final.docx");
            a.close(f);
            a
        });
        let editor_b = s.spawn(|| {
            let mut a = Actor::new(driver, (1204, 1211), volumes.ntfs, NTFS, pace);
            a.directory(r"\Notes");
            let f = a
                .create(r"\Notes\todo.txt", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            a.write(&f, 0, b"- ship the demo\n");
            a.link(&f, r"\Notes\todo-link.txt");
            a.close(f);
            let g = a
                .create(r"\Notes\todo-link.txt", FILE_OPEN, 0, GENERIC_WRITE)
                .expect("open the link");
            a.delete(&g);
            a.close(g);
            a
        });
        let build_a = s.spawn(|| {
            let mut a = Actor::new(driver, (2310, 2311), volumes.fat, FAT, pace);
            a.directory(r"\obj");
            for n in 0..3 {
                let f = a
                    .create(&format!(r"\obj\unit{n}.o"), FILE_CREATE, 0, GENERIC_WRITE)
                    .expect("create");
                a.write(&f, 0, &[0x7f; 64]);
                a.close(f);
            }
            a
        });
        let build_b = s.spawn(|| {
            let mut a = Actor::new(driver, (2310, 2312), volumes.fat, FAT, pace);
            a.directory(r"\bin");
            let mut f = a
                .create(r"\bin\app.tmp", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            a.write(&f, 0, &[0x4d; 256]);
            a.write(&f, 256, &[0x5a; 256]);
            a.rename(&mut f, r"\bin\app.exe");
            a.close(f);
            let t = a
                .create(
                    r"\bin\scratch.tmp",
                    FILE_CREATE,
                    FILE_DELETE_ON_CLOSE,
                    GENERIC_WRITE,
                )
                .expect("create");
            a.close(t);
            a
        });
        let secret = s.spawn(|| {
            let mut backup = Actor::new(driver, (3100, 3101), volumes.ntfs, NTFS, pace);
            backup.directory(SECRET);
            let f = backup
                .create(r"\Secret\vault.kdbx", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("backup.exe is excepted");
            backup.write(&f, 0, &[0xAA; 128]);
            backup.close(f);
            let mut intruder = Actor::new(driver, (6660, 6661), volumes.ntfs, NTFS, pace);
            intruder.directory(r"\Temp");
            let _ = intruder.create(r"\Secret\vault.kdbx", FILE_OPEN, 0, GENERIC_READ);
            let _ = intruder.create(r"\Secret\backdoor.txt", FILE_CREATE, 0, GENERIC_WRITE);
            let mut loot = intruder
                .create(r"\Temp\loot.txt", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("outside the protected tree");
            intruder.rename(&mut loot, r"\Secret\loot.txt");
            intruder.close(loot);
            (backup, intruder)
        });
        for handle in [editor_a, editor_b, build_a, build_b] {
            outcome.add(handle.join().expect("workload thread"));
        }
        let (backup, intruder) = secret.join().expect("workload thread");
        outcome.add(backup);
        outcome.add(intruder);
    });
    outcome
}

/// Phase two, after a reload (fresh volumes): the editor and the build again, and the intruder
/// tries once more.
///
/// # Panics
///
/// When the file system refuses an operation the script expects to succeed.
pub fn phase_two(driver: &Driver, volumes: Volumes, pace: Duration) -> WorkloadOutcome {
    let mut outcome = WorkloadOutcome::default();
    std::thread::scope(|s| {
        let editor = s.spawn(|| {
            let mut a = Actor::new(driver, (1204, 1210), volumes.ntfs, NTFS, pace);
            a.directory(r"\Docs");
            let mut f = a
                .create(r"\Docs\draft.md", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            a.write(&f, 0, b"# after the reload\n");
            a.rename(&mut f, r"\Docs\published.md");
            a.close(f);
            let g = a
                .create(r"\Docs\published.md", FILE_OPEN, 0, GENERIC_WRITE)
                .expect("open");
            a.delete(&g);
            a.close(g);
            a
        });
        let build = s.spawn(|| {
            let mut a = Actor::new(driver, (2310, 2311), volumes.fat, FAT, pace);
            a.directory(r"\obj");
            for n in 0..2 {
                let f = a
                    .create(&format!(r"\obj\unit{n}.o"), FILE_CREATE, 0, GENERIC_WRITE)
                    .expect("create");
                a.write(&f, 0, &[0x7f; 64]);
                a.close(f);
            }
            a
        });
        let intruder = s.spawn(|| {
            let mut a = Actor::new(driver, (6660, 6661), volumes.ntfs, NTFS, pace);
            let _ = a.create(r"\Secret\backdoor.txt", FILE_CREATE, 0, GENERIC_WRITE);
            a
        });
        for handle in [editor, build, intruder] {
            outcome.add(handle.join().expect("workload thread"));
        }
    });
    outcome
}

/// Both phases' outcomes together.
pub fn combined(first: WorkloadOutcome, second: WorkloadOutcome) -> WorkloadOutcome {
    let mut all = first;
    all.merge(second);
    all
}

// ----- reading the output back --------------------------------------------------------------

/// What a JSON Lines file holds.
#[derive(Debug, Default, Clone)]
pub struct JsonlContents {
    /// Event records, in file order.
    pub events: Vec<serde_json::Value>,
    /// Gap records, in file order.
    pub gaps: Vec<serde_json::Value>,
    /// Lines that did not parse.
    pub malformed: usize,
}

/// Reads a JSON Lines file back.
///
/// # Errors
///
/// Reading the file.
pub fn read_jsonl(path: &Path) -> std::io::Result<JsonlContents> {
    let text = std::fs::read_to_string(path)?;
    let mut contents = JsonlContents::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.get("gap").is_some() => contents.gaps.push(value),
            Ok(value) => contents.events.push(value),
            Err(_) => contents.malformed += 1,
        }
    }
    Ok(contents)
}

/// The event records of thread `tid` in `epoch` as [`ExpectedEvent`]s, in file order.
pub fn events_of_thread(contents: &JsonlContents, epoch: u32, tid: u32) -> Vec<ExpectedEvent> {
    contents
        .events
        .iter()
        .filter(|e| {
            e["tid"].as_u64() == Some(u64::from(tid)) && e["epoch"].as_u64() == Some(epoch.into())
        })
        .map(|e| ExpectedEvent {
            kind: match e["kind"].as_str() {
                Some("open") => "open",
                Some("first_write") => "first_write",
                Some("rename") => "rename",
                Some("hard_link") => "hard_link",
                Some("delete") => "delete",
                Some("close_modified") => "close_modified",
                _ => "?",
            },
            path: e["path"].as_str().unwrap_or_default().to_owned(),
            target: e["target"].as_str().map(str::to_owned),
            pid: e["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_default(),
            tid,
        })
        .collect()
}
