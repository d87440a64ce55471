//! The service core on its own thread, as the service process of the simulated machine
//! ([`ServiceHandle`]), connected through kernel-sim's client ([`crate::sim_client`]), with a
//! log to wait on ([`WatchLog`]) and what a test bench does to a process: hang it, kill it.
//! Linux only; user mode (host threads).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vigil_kernel_sim::Sim;
use vigil_protocol::{EventBatch, Stats};
use vigil_service::{
    ClientError, Connector, Incoming, Level, Log, Policy, PortClient, ProcessNames, ResumePoint,
    Service, ServiceControl, ServiceError, ServiceOptions, Sink, Summary, SystemClock,
};

use crate::sim_client::{SharedConnection, SimConnector, SimPort};

/// The service's process id in the simulated machine (the driver exempts its own I/O).
pub const SERVICE_PID: u64 = 0x0F00;

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

/// Process images for `except_processes`, from a fixed table (the simulated machine's
/// processes, file names): each is installed in [`IMAGE_DIR`], and its full path is what the
/// service compares (a bare file name is anyone's to choose).
#[derive(Debug, Clone, Default)]
pub struct NameTable(pub Vec<(u32, &'static str)>);

/// Where the simulated machine's programs live, in NT form.
pub const IMAGE_DIR: &str = "\\Device\\HarddiskVolume1\\Program Files\\Vigil Demo";

impl ProcessNames for NameTable {
    fn image_name(&self, pid: u64) -> Option<String> {
        self.0
            .iter()
            .find(|(p, _)| u64::from(*p) == pid)
            .map(|(_, name)| format!("{IMAGE_DIR}\\{name}"))
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
        vigil_service::commands::stats(&mut client).ok()
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
