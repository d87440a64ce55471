//! The service core: connect, handshake, push the policy, then receive — event batches to the
//! sinks with their sequence numbers checked, verdict requests answered from the policy — and
//! reconnect with bounded backoff when the port closes. User mode, portable: the same code runs
//! over the Windows port client, kernel-sim's client, and the in-memory fake.
//!
//! # One connection
//!
//! 1. `Hello`: a driver of another major version is refused ([`ClientError::VersionMismatch`],
//!    fatal: reconnecting cannot fix it).
//! 2. `SetConfig` with the policy's settings and protected prefixes (a refusal is fatal too).
//! 3. `GetStats`: the driver's counters are logged (its drop counters say why events were lost)
//!    and its `connections` counter tells a new driver instance from the same one: counters
//!    are monotonic since the driver loaded and every connection increments that one, so a
//!    value not above the last one seen means the driver was unloaded and loaded again — its
//!    sequence numbers restart at 0, and the core starts a new epoch
//!    ([`SequenceTracker::new_driver_instance`]).
//! 4. Receive until the port closes or a stop is requested (see "Two threads"). A message
//!    larger than the receive buffer, or one that does not decode, is counted as malformed and
//!    the connection goes on. The driver's `max_message_size` is bounded by the protocol's
//!    `MAX_MESSAGE_SIZE`: a larger claim is logged, never allocated.
//!
//! # Two threads
//!
//! A verdict timeout can be as short as 10 ms, after which the driver applies its default;
//! an `fsync` (`FlushFileBuffers`), a rotation with up to a thousand renames, a policy file read
//! or a log line can take longer. So no verdict waits for the disk: during a connection the
//! calling thread only receives, answering each verdict request at once and queuing each event
//! batch (a copy of its bytes) and each log line in a [`crate::backlog`]; a writer thread,
//! scoped to the connection, checks sequence numbers, writes to the sinks, syncs and rotates,
//! reads policy files and writes the log. Order is kept: the writer takes the queue in arrival
//! order. The queue is bounded in bytes; past the bound the receiver waits (a received batch is
//! never dropped), and counts the wait.
//!
//! # When the sinks fail
//!
//! A sink that cannot write (a full disk) keeps what it was given; the writer logs the reason
//! at once, counts it, and retries with backoff (100 ms doubling to 5 s) while the receiver goes
//! on answering verdicts and queuing batches. Auditing pauses; it is not turned off, and nothing
//! received is lost. Only at a stop does the writer give up, after the drain limit: the run
//! then fails with [`ServiceError::Sink`], the reason and the batches left unwritten logged.
//!
//! # Restarting
//!
//! A new service process knows nothing of what the last one wrote unless told:
//! [`Service::with_resume`] gives it the last `(epoch, seq)` of its output
//! ([`crate::record::last_event_position`]). At the first connection, if the driver is still
//! the instance that numbered that record (it had clients before, and has generated more
//! events than that number), the core continues that epoch from the next number, so records
//! lost while no service ran (the batch a crashed service never wrote, sends that failed) show
//! as a gap in band; otherwise the driver was reloaded meanwhile, and the core starts the next
//! epoch. Left out: a reload followed by another client (`vigil status`) and more events than
//! the old instance ever numbered looks like the same instance; its first records would then
//! be counted as duplicates or a false gap.
//!
//! # Reconnecting
//!
//! A transient failure (port closed, driver not loaded yet, port busy) leads to a new attempt:
//! immediately after the close of a healthy connection (one that carried a message or lasted
//! the backoff's cap), then after [`Backoff`] delays (100 ms doubling to 5 s), reset only by a
//! healthy connection: one that closes at once backs off like a failed connect instead of
//! reconnecting in a hot loop. A policy reload whose push is lost to the close is pushed at the
//! next connection. What was written stays written: the sequence tracker lives
//! across connections, so a record delivered again is skipped and a record lost is reported.
//! The first connection of a run gives up at once on a missing driver unless
//! [`ServiceOptions::wait_for_driver`] is set (the Windows service sets it; `vigil run` sets it
//! with `--wait`).
//!
//! # Stopping
//!
//! [`ServiceControl::request_stop`] is noticed within one poll interval (a receive waits at
//! most [`ServiceOptions::poll_interval`], a backoff sleep is woken at once). The core then
//! drains what the port already holds (bounded by [`ServiceOptions::drain_limit`] and a message
//! count), then cancels the outstanding receives ([`PortClient::cancel_receives`]) and takes
//! what completes anyway (the driver counted it as delivered), answering verdicts and writing
//! batches; waits for the writer to finish the queue; reads the driver's counters for the
//! summary, closes the connection and closes the sinks (flush and sync, a failure retried until
//! the drain limit).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use vigil_protocol::{
    Header, MAX_MESSAGE_SIZE, Message, MessageKind, Stats, VerdictReply, VerdictRequestRepr,
};

use crate::backlog::{Backlog, Job, Next};
use crate::client::{ClientError, Connector, Incoming, PortClient};
use crate::commands::{self, DriverHello};
use crate::control::{Backoff, Clock, ServiceControl};
use crate::policy::{NoProcessNames, Policy, PolicyError, ProcessNames};
use crate::process_table::{ProcessTable, TableFirst};
use crate::sequence::{Check, ResumePoint, SequenceTracker};
use crate::sink::Sink;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Normal operation worth a line (connections, counters).
    Info,
    /// Something was lost or refused, and the service goes on.
    Warn,
    /// The service stops because of it.
    Error,
}

/// Where the core's log lines go.
pub trait Log {
    /// One line.
    fn log(&mut self, level: Level, message: &str);
}

impl<L: Log + ?Sized> Log for Box<L> {
    fn log(&mut self, level: Level, message: &str) {
        (**self).log(level, message);
    }
}

/// Every line to both logs (the service's file and the Windows Event Log).
#[derive(Debug, Default, Clone)]
pub struct TeeLog<A, B>(pub A, pub B);

impl<A: Log, B: Log> Log for TeeLog<A, B> {
    fn log(&mut self, level: Level, message: &str) {
        self.0.log(level, message);
        self.1.log(level, message);
    }
}

/// Log lines to standard error, prefixed with their level.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrLog;

impl Log for StderrLog {
    fn log(&mut self, level: Level, message: &str) {
        let tag = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        eprintln!("vigil: {tag}: {message}");
    }
}

/// Keeps log lines, for tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    /// The lines, in order.
    pub lines: Vec<(Level, String)>,
}

impl Log for MemoryLog {
    fn log(&mut self, level: Level, message: &str) {
        self.lines.push((level, message.to_owned()));
    }
}

/// How the core runs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Longest wait in one receive: bounds how long a stop request waits to be noticed.
    pub poll_interval: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Keep trying the first connection while the driver is not loaded (or the port busy).
    pub wait_for_driver: bool,
    /// Longest time spent draining the port at a stop.
    pub drain_limit: Duration,
    /// The service's own process id (exempt from verdicts).
    pub own_pid: u64,
    /// Most bytes of received batches waiting for the writer before the receiver waits too
    /// (see [`crate::backlog`]'s policy).
    pub backlog_bytes: usize,
    /// How often the driver's counters are read and written to the sinks as a record.
    pub stats_interval: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            // 100 ms: a stop is noticed within a tenth of a second; the cost of an idle wake
            // is one completion-port wait.
            poll_interval: Duration::from_millis(100),
            backoff_initial: Backoff::DEFAULT_INITIAL,
            backoff_max: Backoff::DEFAULT_MAX,
            wait_for_driver: false,
            // 2 s: a service stop is expected within a few seconds (the SCM's wait hint is
            // set accordingly), and the port holds at most a few batches.
            drain_limit: Duration::from_secs(2),
            own_pid: u64::from(std::process::id()),
            // 64 MiB: about two seconds of the heaviest stream measured, longer than a
            // rotation or an `fsync` takes; bounded so that a dead disk cannot eat the memory.
            backlog_bytes: 64 * 1024 * 1024,
            // A minute: a SIEM reading only the file sees drops within a minute, for one
            // command round trip a minute.
            stats_interval: Duration::from_mins(1),
        }
    }
}

/// Most messages drained at a stop, whatever the clock says.
const DRAIN_MESSAGES: usize = 4096;

/// What the core did; also the run's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events written to the sinks.
    pub events_written: u64,
    /// Event batches received.
    pub batches: u64,
    /// Gaps in sequence numbers (each logged and written in band).
    pub gaps: u64,
    /// Events missing in those gaps.
    pub events_missing: u64,
    /// Records received again and skipped.
    pub duplicates: u64,
    /// Verdict requests answered allow.
    pub verdicts_allowed: u64,
    /// Verdict requests answered deny.
    pub verdicts_denied: u64,
    /// Verdict replies the driver no longer waited for, or that failed.
    pub verdict_reply_failures: u64,
    /// Messages that did not decode, or of a kind the driver does not send.
    pub malformed_messages: u64,
    /// Successful connections (handshake and configuration done).
    pub connections: u64,
    /// Connections that ended with the port closing.
    pub disconnects: u64,
    /// Driver instances seen (1 + reloads detected).
    pub driver_instances: u64,
    /// Policy reloads applied.
    pub policy_reloads: u64,
    /// Policy reloads refused (the old policy kept).
    pub policy_reload_failures: u64,
    /// Failed writes or syncs of the sinks (each retried; nothing was dropped).
    pub sink_failures: u64,
    /// Times the receiver waited because the writer was a whole backlog behind.
    pub backlog_waits: u64,
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The core's counters.
    pub counters: Counters,
    /// The driver's counters at the stop (when it could still be asked).
    pub driver_stats: Option<Stats>,
    /// The last handshake's answer.
    pub driver: Option<DriverHello>,
}

/// Why a run failed.
#[derive(Debug)]
pub enum ServiceError {
    /// The driver refused us, or is not there and we were not to wait.
    Client(ClientError),
    /// A sink could not write: stopping is better than losing events silently.
    Sink(io::Error),
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(e) => e.fmt(f),
            Self::Sink(e) => write!(f, "cannot write events: {e}"),
        }
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(e) => Some(e),
            Self::Sink(e) => Some(e),
        }
    }
}

impl From<ClientError> for ServiceError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// How one connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// A stop was requested and the port drained.
    Stopped,
    /// The port closed (or failed transiently).
    Closed(ClientError),
}

/// Why a policy change was not applied.
#[derive(Debug)]
pub enum ReloadError {
    /// The file was refused; the running policy is unchanged.
    Policy(PolicyError),
    /// The driver refused the configuration (it keeps its old one, and so does the service).
    Driver(ClientError),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Policy(e) => write!(f, "policy refused, running policy kept: {e}"),
            Self::Driver(e) => write!(f, "driver refused the policy, running policy kept: {e}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// The service core. Build it with [`Service::new`], then [`run`](Service::run) it with a
/// connector and a clock.
///
/// ```
/// use vigil_service::{
///     ClientError, MemorySink, Policy, PortClient, Service, ServiceError, ServiceOptions,
///     SystemClock,
/// };
///
/// let mut service = Service::new(Policy::default(), MemorySink::default(), ServiceOptions::default());
/// // Another thread may keep `service.control()` to stop the run. The connector here finds no
/// // driver, as the Windows one does before `fltmc load vigil`.
/// let mut connector = || Err::<Box<dyn PortClient>, _>(ClientError::DriverNotLoaded);
/// let result = service.run(&mut connector, &SystemClock);
/// // Without `wait_for_driver`, the first connection gives up at once.
/// assert!(matches!(result, Err(ServiceError::Client(ClientError::DriverNotLoaded))));
/// ```
pub struct Service<S: Sink> {
    policy: Policy,
    policy_path: Option<PathBuf>,
    sinks: S,
    options: ServiceOptions,
    control: ServiceControl,
    tracker: SequenceTracker,
    counters: Counters,
    names: Box<dyn ProcessNames + Send>,
    log: Box<dyn Log + Send>,
    last_driver_connections: Option<u64>,
    resume: Option<ResumePoint>,
    driver: Option<DriverHello>,
    buf: Vec<u8>,
    /// A policy whose push was lost to a disconnect: pushed at the next connection.
    pending_policy: Option<Policy>,
    /// Reads a policy file for a reload.
    policy_loader: Box<PolicyLoader>,
    /// The writer's process table: gives each event written its process. Kept across
    /// connections, since the driver sends each process's record once.
    processes: ProcessTable,
    /// The receiver's copy, fed by the same records as they arrive: verdicts look the
    /// requester up here without waiting for the writer.
    verdict_processes: ProcessTable,
}

/// Reads a policy file: [`Policy::load`] by default; the Windows service checks who owns the
/// file first ([`Service::with_policy_loader`]).
pub type PolicyLoader = dyn Fn(&Path) -> Result<Policy, PolicyError> + Send + Sync;

impl<S: Sink + Send> Service<S> {
    /// A core with this policy, writing to `sinks`.
    pub fn new(policy: Policy, sinks: S, options: ServiceOptions) -> Self {
        Self {
            policy,
            policy_path: None,
            sinks,
            options,
            control: ServiceControl::new(),
            tracker: SequenceTracker::new(),
            counters: Counters::default(),
            names: Box::new(NoProcessNames),
            log: Box::new(StderrLog),
            last_driver_connections: None,
            resume: None,
            driver: None,
            buf: vec![0; MAX_MESSAGE_SIZE],
            pending_policy: None,
            policy_loader: Box::new(Policy::load),
            processes: ProcessTable::default(),
            verdict_processes: ProcessTable::default(),
        }
    }

    /// The writer's process table, as the driver's process records built it.
    pub const fn processes(&self) -> &ProcessTable {
        &self.processes
    }

    /// The file a reload reads (see [`ServiceControl::request_reload`]).
    #[must_use]
    pub fn with_policy_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy_path = Some(path.into());
        self
    }

    /// Continues the output of a previous service process that stopped at `point` (see the
    /// module documentation, "Restarting"); `None` starts afresh.
    #[must_use]
    pub const fn with_resume(mut self, point: Option<ResumePoint>) -> Self {
        self.resume = point;
        self
    }

    /// How a reload reads the policy file (the Windows service refuses a file an ordinary
    /// user could have written, as it does at start).
    #[must_use]
    pub fn with_policy_loader(
        mut self,
        loader: impl Fn(&Path) -> Result<Policy, PolicyError> + Send + Sync + 'static,
    ) -> Self {
        self.policy_loader = Box::new(loader);
        self
    }

    /// Where `except_processes` looks process names up.
    #[must_use]
    pub fn with_process_names(mut self, names: impl ProcessNames + Send + 'static) -> Self {
        self.names = Box::new(names);
        self
    }

    /// Where log lines go (standard error by default).
    #[must_use]
    pub fn with_log(mut self, log: impl Log + Send + 'static) -> Self {
        self.log = Box::new(log);
        self
    }

    /// Uses `control` (shared with a signal handler or the service control handler).
    #[must_use]
    pub fn with_control(mut self, control: ServiceControl) -> Self {
        self.control = control;
        self
    }

    /// The control to stop or reload this core from another thread.
    pub fn control(&self) -> ServiceControl {
        self.control.clone()
    }

    /// The running policy.
    pub const fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The core's counters so far.
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The sequence tracker (epoch, expected number).
    pub const fn tracker(&self) -> &SequenceTracker {
        &self.tracker
    }

    /// The sinks.
    pub const fn sinks(&self) -> &S {
        &self.sinks
    }

    /// The sinks, mutably.
    pub const fn sinks_mut(&mut self) -> &mut S {
        &mut self.sinks
    }

    /// The sinks back.
    pub fn into_sinks(self) -> S {
        self.sinks
    }

    fn info(&mut self, message: &str) {
        self.log.log(Level::Info, message);
    }

    fn warn(&mut self, message: &str) {
        self.log.log(Level::Warn, message);
    }

    /// Runs until a stop is requested (`Ok` with the summary) or a fatal error; reconnects
    /// after transient ones. The sinks are closed at the end either way.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Client`] for a refusal that reconnecting cannot fix (version mismatch,
    /// access denied, configuration refused), or a missing driver on the first attempt without
    /// [`ServiceOptions::wait_for_driver`]; [`ServiceError::Sink`] when a sink fails.
    pub fn run<C: Connector + ?Sized>(
        &mut self,
        connector: &mut C,
        clock: &dyn Clock,
    ) -> Result<Summary, ServiceError> {
        let result = self.run_connections(connector, clock);
        let closed = self.close_sinks(clock);
        let driver_stats = result?;
        closed?;
        let counters = self.counters_with_tracker();
        self.info(&format!(
            "stopped: {} events written in {} batches, {} gaps ({} events missing), {} \
             duplicates skipped, {} verdicts allowed, {} denied",
            counters.events_written,
            counters.batches,
            counters.gaps,
            counters.events_missing,
            counters.duplicates,
            counters.verdicts_allowed,
            counters.verdicts_denied
        ));
        Ok(Summary {
            counters,
            driver_stats,
            driver: self.driver,
        })
    }

    /// Closes the sinks, retrying a failure (a full disk) until the drain limit: what they
    /// hold is the last of the output.
    fn close_sinks(&mut self, clock: &dyn Clock) -> Result<(), ServiceError> {
        let deadline = clock.now() + self.options.drain_limit;
        let mut backoff = Backoff::new(self.options.backoff_initial, self.options.backoff_max);
        let never_stopped = ServiceControl::new();
        loop {
            match self.sinks.close() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.counters.sink_failures += 1;
                    if clock.now() >= deadline {
                        let line = format!("cannot write the last events at the stop: {e}");
                        self.log.log(Level::Error, &line);
                        return Err(ServiceError::Sink(e));
                    }
                    clock.sleep(backoff.next_delay(), &never_stopped);
                }
            }
        }
    }

    /// Messages taken off the port so far, of any kind.
    const fn messages_seen(&self) -> u64 {
        self.counters.batches
            + self.counters.verdicts_allowed
            + self.counters.verdicts_denied
            + self.counters.verdict_reply_failures
            + self.counters.malformed_messages
    }

    fn counters_with_tracker(&self) -> Counters {
        Counters {
            gaps: self.tracker.gaps(),
            events_missing: self.tracker.missing(),
            duplicates: self.tracker.duplicates(),
            ..self.counters.clone()
        }
    }

    fn run_connections<C: Connector + ?Sized>(
        &mut self,
        connector: &mut C,
        clock: &dyn Clock,
    ) -> Result<Option<Stats>, ServiceError> {
        let mut backoff = Backoff::new(self.options.backoff_initial, self.options.backoff_max);
        let mut ever_connected = false;
        let mut last_failure: Option<ClientError> = None;
        let mut final_stats = None;
        while !self.control.stop_requested() {
            let attempt = connector.connect().and_then(|mut client| {
                match self.start_connection(&mut client) {
                    Ok(()) => Ok(client),
                    Err(e) => {
                        client.close();
                        Err(e)
                    }
                }
            });
            match attempt {
                Ok(mut client) => {
                    ever_connected = true;
                    last_failure = None;
                    let started = clock.now();
                    let received_before = self.messages_seen();
                    let end = self.serve(&mut client, clock);
                    if matches!(end, Ok(ConnectionEnd::Stopped)) {
                        final_stats = commands::stats(&mut client).ok();
                    }
                    client.close();
                    match end? {
                        ConnectionEnd::Stopped => break,
                        ConnectionEnd::Closed(e) => {
                            self.counters.disconnects += 1;
                            // A connection that carried messages or lasted is healthy: straight
                            // back (an `fltmc unload`/`load`). One that closed at once backs
                            // off like a failed connect, or it would reconnect in a hot loop.
                            let healthy = self.messages_seen() > received_before
                                || clock.now().saturating_duration_since(started)
                                    >= self.options.backoff_max;
                            if healthy {
                                backoff.reset();
                                self.warn(&format!("{e}; reconnecting"));
                                continue;
                            }
                            self.warn(&format!(
                                "{e} at once after connecting; reconnecting with backoff"
                            ));
                        }
                    }
                }
                Err(e) if !e.is_transient() => {
                    self.log.log(Level::Error, &e.to_string());
                    return Err(e.into());
                }
                Err(e) if !ever_connected && !self.options.wait_for_driver => {
                    self.log.log(Level::Error, &e.to_string());
                    return Err(e.into());
                }
                Err(e) => {
                    // One line per kind of failure, not one per attempt.
                    if last_failure.as_ref() != Some(&e) {
                        self.warn(&format!("{e}; retrying with backoff"));
                        last_failure = Some(e);
                    }
                }
            }
            if clock.sleep(backoff.next_delay(), &self.control) {
                break;
            }
        }
        Ok(final_stats)
    }

    /// The start of a connection: handshake, configuration, counters (see the module
    /// documentation). Public for callers that manage connections themselves.
    ///
    /// # Errors
    ///
    /// The handshake's and the commands' errors.
    pub fn start_connection<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
    ) -> Result<(), ClientError> {
        let hello = commands::hello(client, self.options.own_pid)?;
        // A reload lost to the last disconnect is pushed now, in place of the running policy.
        let policy = self.pending_policy.as_ref().unwrap_or(&self.policy);
        let prefixes = policy.protected_prefixes();
        let config = policy.driver_config(&prefixes);
        commands::set_config(client, &config)?;
        drop(prefixes);
        if let Some(policy) = self.pending_policy.take() {
            self.policy = policy;
            self.counters.policy_reloads += 1;
            self.info("policy reloaded: the reload lost to the last disconnect reached the driver");
        }
        let stats = commands::stats(client)?;
        // The driver's word bounds nothing: the protocol's limit does. Every driver of this
        // major version sends at most MAX_MESSAGE_SIZE bytes (the Windows client's receive
        // slots are that size), so a larger claim is refused rather than allocated.
        let max = usize::try_from(hello.max_message_size).unwrap_or(usize::MAX);
        if max > MAX_MESSAGE_SIZE {
            self.warn(&format!(
                "the driver claims messages of up to {max} bytes, larger than the protocol's                  limit of {MAX_MESSAGE_SIZE}: larger messages will be counted as malformed"
            ));
        }
        let max = max.min(MAX_MESSAGE_SIZE);
        if max > self.buf.len() {
            self.buf.resize(max, 0);
        }
        let new_instance = self
            .last_driver_connections
            .is_some_and(|last| stats.connections <= last);
        if self.last_driver_connections.is_none() {
            self.counters.driver_instances = 1;
            match self.resume.take() {
                // Still the driver instance that numbered the last record written: continue.
                Some(at) if stats.connections > 1 && stats.events_generated > at.seq => {
                    self.tracker.resume(at.epoch, Some(at.seq + 1));
                    self.info(&format!(
                        "resuming the output after epoch {} sequence {}",
                        at.epoch, at.seq
                    ));
                }
                // Reloaded since: the next epoch, from 0 when we are its first client.
                Some(at) => {
                    let next = (stats.connections == 1).then_some(0);
                    self.tracker.resume(at.epoch.saturating_add(1), next);
                    self.info(&format!(
                        "the driver was reloaded since the output's last record (epoch {}): \
                         new epoch {}",
                        at.epoch,
                        self.tracker.epoch()
                    ));
                }
                // The first client of this driver instance: nothing was consumed before us,
                // so numbering starts at 0 and earlier drops show as a gap.
                None if stats.connections == 1 => self.tracker.expect_next(0),
                None => {}
            }
        } else if new_instance {
            self.counters.driver_instances += 1;
            self.tracker.new_driver_instance();
            self.warn(&format!(
                "the driver was reloaded (connection count {} after {}): new epoch {}, \
                 sequence numbers restart at 0",
                stats.connections,
                self.last_driver_connections.unwrap_or_default(),
                self.tracker.epoch()
            ));
        }
        self.last_driver_connections = Some(stats.connections);
        self.driver = Some(hello);
        self.counters.connections += 1;
        self.info(&format!(
            "connected: driver protocol {}.{}, ring {} KiB; driver counters since load: {} \
             generated, {} delivered, {} dropped (ring full {}, too large {}, no memory {}, \
             send timeout {}, no service {})",
            hello.version.major,
            hello.version.minor,
            hello.ring_capacity_bytes / 1024,
            stats.events_generated,
            stats.events_delivered,
            stats.dropped_total(),
            stats.dropped_ring_full,
            stats.dropped_too_large,
            stats.dropped_no_memory,
            stats.dropped_send_timeout,
            stats.dropped_disconnected
        ));
        Ok(())
    }

    /// Serves one connection (after [`start_connection`](Self::start_connection)) until the
    /// port closes or a stop is requested.
    ///
    /// Two threads share the work (see the module documentation, "Two threads"): this one
    /// receives and answers verdicts; a writer thread, alive for the call, writes batches to
    /// the sinks, syncs, rotates, reads policy files and writes the log.
    ///
    /// # Errors
    ///
    /// [`ServiceError::Sink`] when the sinks still fail after a stop was requested and the drain
    /// limit passed, or a client error that is not transient.
    pub fn serve<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        clock: &dyn Clock,
    ) -> Result<ConnectionEnd, ServiceError> {
        let backlog = &Backlog::new(self.options.backlog_bytes);
        let (policy_tx, policy_rx) = mpsc::channel();
        let Self {
            policy,
            policy_path,
            sinks,
            options,
            control,
            tracker,
            counters,
            names,
            log,
            buf,
            pending_policy,
            policy_loader,
            processes,
            verdict_processes,
            ..
        } = self;
        let (outcome, written) = std::thread::scope(|scope| {
            let writer = Writer {
                sinks,
                tracker,
                log,
                control: control.clone(),
                clock,
                options: options.clone(),
                backlog,
                policy_tx,
                policy_loader: &**policy_loader,
                counters: Counters::default(),
                last_tick_error: None,
                processes,
            };
            let writer = std::thread::Builder::new()
                .name("vigil-writer".into())
                .spawn_scoped(scope, move || {
                    let result = writer.run();
                    // Release a receiver waiting for room, whatever happened.
                    let left = backlog.writer_gone();
                    (result, left)
                });
            let mut receiver = Receiver {
                policy,
                policy_path: policy_path.as_deref(),
                options,
                control,
                counters,
                names: &**names,
                buf,
                backlog,
                pending_policy,
                policy_rx,
                load_in_flight: false,
                processes: verdict_processes,
            };
            let outcome = match &writer {
                Ok(_) => receiver.serve(client, clock),
                Err(e) => Err(ServiceError::Sink(io::Error::other(format!(
                    "cannot start the writer thread: {e}"
                )))),
            };
            backlog.finish();
            let written = writer.map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| (Err(writer_panicked()), 0))
            });
            (outcome, written)
        });
        let (written, left) = written.unwrap_or((Ok(Counters::default()), 0));
        match written {
            Ok(done) => {
                self.counters.events_written += done.events_written;
                self.counters.batches += done.batches;
                self.counters.sink_failures += done.sink_failures;
                self.counters.policy_reload_failures += done.policy_reload_failures;
            }
            Err(e) => {
                // Counted when the writer gave up; a batch received after that (at most the
                // one in hand) is not in the count.
                let message = format!(
                    "{e}: the service stops; {left} received batch(es) were left unwritten"
                );
                self.log.log(Level::Error, &message);
                return Err(e);
            }
        }
        outcome
    }

    /// Replaces the running policy: pushes its configuration to the driver first, and keeps
    /// the old policy (in the service and, by the driver's own rule, in the driver) when the
    /// driver refuses it. When the connection is lost first, the new policy is kept pending and
    /// pushed at the next connection ([`start_connection`](Self::start_connection)), so a
    /// reload is never lost to a disconnect. Output settings take effect at the next start.
    ///
    /// # Errors
    ///
    /// [`ReloadError::Driver`].
    pub fn apply_policy<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        policy: Policy,
    ) -> Result<(), ReloadError> {
        apply_policy(
            &mut self.policy,
            &mut self.pending_policy,
            &mut self.counters,
            client,
            policy,
        )
    }

    /// Counts a reload refused before it reached the driver (a bad file).
    pub fn note_policy_refused(&mut self, error: &PolicyError) {
        self.counters.policy_reload_failures += 1;
        self.log.log(
            Level::Error,
            &format!("policy refused, running policy kept: {error}"),
        );
    }
}

fn writer_panicked() -> ServiceError {
    ServiceError::Sink(io::Error::other("the writer thread panicked"))
}

/// Pushes `policy` to the driver and adopts it; see [`Service::apply_policy`].
fn apply_policy<P: PortClient + ?Sized>(
    running: &mut Policy,
    pending: &mut Option<Policy>,
    counters: &mut Counters,
    client: &mut P,
    policy: Policy,
) -> Result<(), ReloadError> {
    let prefixes = policy.protected_prefixes();
    let config = policy.driver_config(&prefixes);
    let pushed = commands::set_config(client, &config);
    drop(prefixes);
    match pushed {
        Ok(()) => {
            *running = policy;
            *pending = None;
            counters.policy_reloads += 1;
            Ok(())
        }
        Err(e) if e.is_transient() => {
            // Lost to a disconnect: the next connection pushes it.
            *pending = Some(policy);
            Err(ReloadError::Driver(e))
        }
        Err(e) => {
            counters.policy_reload_failures += 1;
            Err(ReloadError::Driver(e))
        }
    }
}

/// The receiving half of a connection: takes each message off the port, answers verdict
/// requests at once, and queues everything that needs the disk for the [`Writer`].
struct Receiver<'a> {
    policy: &'a mut Policy,
    policy_path: Option<&'a Path>,
    options: &'a ServiceOptions,
    control: &'a ServiceControl,
    counters: &'a mut Counters,
    names: &'a (dyn ProcessNames + Send),
    buf: &'a mut Vec<u8>,
    backlog: &'a Backlog,
    pending_policy: &'a mut Option<Policy>,
    policy_rx: mpsc::Receiver<Result<Policy, PolicyError>>,
    /// A policy file is being read by the writer.
    load_in_flight: bool,
    /// The requesters of verdicts, by pid (see [`Service`]'s `verdict_processes`).
    processes: &'a mut ProcessTable,
}

/// How long a stop waits for a policy file the writer is reading.
const POLICY_LOAD_WAIT: Duration = Duration::from_secs(5);

impl Receiver<'_> {
    fn log(&self, level: Level, message: String) {
        let _ = self.backlog.push(Job::Log(level, message));
    }

    fn serve<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        clock: &dyn Clock,
    ) -> Result<ConnectionEnd, ServiceError> {
        // The connection's start has just read (and logged) the counters.
        let mut next_stats = clock.now() + self.options.stats_interval;
        loop {
            if clock.now() >= next_stats {
                next_stats = clock.now() + self.options.stats_interval;
                match commands::stats(client) {
                    Ok(stats) => {
                        let _ = self.backlog.push(Job::DriverStats(Box::new(stats)));
                    }
                    Err(e) if e.is_transient() => return Ok(ConnectionEnd::Closed(e)),
                    Err(e) => self.log(
                        Level::Warn,
                        format!("cannot read the driver's counters: {e}"),
                    ),
                }
            }
            if self.backlog.is_writer_gone() {
                return Ok(ConnectionEnd::Stopped);
            }
            if self.control.stop_requested() {
                return Ok(self.drain(client, clock));
            }
            if self.control.take_reload() {
                self.request_reload();
            }
            if let Ok(loaded) = self.policy_rx.try_recv()
                && let Some(end) = self.apply_loaded(client, loaded)
            {
                return Ok(end);
            }
            match client.receive(self.buf, self.options.poll_interval) {
                Ok(Some(incoming)) => {
                    if let Some(end) = self.handle(client, incoming) {
                        return Ok(end);
                    }
                }
                Ok(None) => {}
                Err(ClientError::MessageTooLarge { len }) => self.count_oversized(len),
                Err(e) if e.is_transient() => return Ok(ConnectionEnd::Closed(e)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A message longer than the receive buffer is one bad message, not a broken connection:
    /// the client has already taken it off the port.
    fn count_oversized(&mut self, len: Option<usize>) {
        self.counters.malformed_messages += 1;
        let size = len.map_or_else(|| "unknown size".to_owned(), |n| format!("{n} bytes"));
        self.log(
            Level::Warn,
            format!("message from the driver larger than the protocol's limit ({size}), ignored"),
        );
    }

    fn drain<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        clock: &dyn Clock,
    ) -> ConnectionEnd {
        let deadline = clock.now() + self.options.drain_limit;
        let mut drained = 0;
        // What the port already holds, then what completes after the outstanding receives are
        // cancelled: the driver counted those as delivered too.
        for cancelled in [false, true] {
            if cancelled {
                client.cancel_receives();
            }
            while drained < DRAIN_MESSAGES && clock.now() < deadline {
                match client.receive(self.buf, Duration::ZERO) {
                    Ok(Some(incoming)) => {
                        drained += 1;
                        if self.handle(client, incoming).is_some() {
                            break;
                        }
                    }
                    Err(ClientError::MessageTooLarge { len }) => self.count_oversized(len),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if self.load_in_flight {
            // A reload asked for before the stop still reaches the driver.
            if let Ok(loaded) = self.policy_rx.recv_timeout(POLICY_LOAD_WAIT) {
                let _ = self.apply_loaded(client, loaded);
            }
        }
        ConnectionEnd::Stopped
    }

    fn request_reload(&mut self) {
        match self.policy_path {
            Some(path) => {
                self.load_in_flight = true;
                let _ = self.backlog.push(Job::LoadPolicy(path.to_path_buf()));
            }
            None => self.log(
                Level::Warn,
                "reload requested, but the service runs without a policy file".to_owned(),
            ),
        }
    }

    fn apply_loaded<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        loaded: Result<Policy, PolicyError>,
    ) -> Option<ConnectionEnd> {
        self.load_in_flight = false;
        let path = self
            .policy_path
            .map_or_else(String::new, |p| p.display().to_string());
        // A file the writer refused was counted and logged there.
        let policy = loaded.ok()?;
        match apply_policy(
            self.policy,
            self.pending_policy,
            self.counters,
            client,
            policy,
        ) {
            Ok(()) => {
                self.log(Level::Info, format!("policy reloaded from {path}"));
                None
            }
            Err(ReloadError::Driver(e)) if e.is_transient() => {
                self.log(
                    Level::Warn,
                    format!(
                        "{path}: the connection closed before the policy reached the driver; \
                         it is pushed at the next connection"
                    ),
                );
                Some(ConnectionEnd::Closed(e))
            }
            Err(e) => {
                self.log(Level::Error, format!("{path}: {e}"));
                None
            }
        }
    }

    /// Handles one message; `Some` when the connection ended while answering it.
    fn handle<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        incoming: Incoming,
    ) -> Option<ConnectionEnd> {
        let len = incoming.len.min(self.buf.len());
        let bytes = self.buf.get(..len).unwrap_or(&[]);
        // Decoded once here with the protocol's own parser, to route it; the writer decodes a
        // batch again (a checked view: no copy, a few comparisons).
        match Message::parse(bytes) {
            Ok(Message::ProcessRecord(record)) => {
                self.processes.apply(&record);
                // The writer applies it too, in order with the batches around it, so every
                // event after a start is written with its process.
                let job = Job::Batch(self.backlog.copy_of(bytes));
                if let Ok(true) = self.backlog.push(job) {
                    self.counters.backlog_waits += 1;
                }
                None
            }
            Ok(Message::EventBatch(_)) => {
                let job = Job::Batch(self.backlog.copy_of(bytes));
                if let Ok(true) = self.backlog.push(job) {
                    self.counters.backlog_waits += 1;
                }
                None
            }
            Ok(Message::VerdictRequest(request)) => {
                let request = request.repr();
                let names = TableFirst {
                    table: self.processes,
                    fallback: self.names,
                };
                let (end, line) = answer_verdict(
                    self.policy,
                    self.options.own_pid,
                    &names,
                    self.counters,
                    client,
                    incoming,
                    &request,
                );
                if let Some((level, line)) = line {
                    self.log(level, line);
                }
                end
            }
            Ok(other) => {
                self.counters.malformed_messages += 1;
                let line = format!(
                    "unexpected {:?} message from the driver ({} bytes), ignored",
                    other.kind(),
                    bytes.len()
                );
                self.log(Level::Warn, line);
                None
            }
            Err(e) => {
                self.counters.malformed_messages += 1;
                let line = malformed_line(bytes, e);
                self.log(Level::Warn, line);
                None
            }
        }
    }
}

/// Answers one verdict request; returns how the connection ended, if it did, and the line to
/// log.
fn answer_verdict<P: PortClient + ?Sized>(
    policy: &Policy,
    own_pid: u64,
    names: &dyn ProcessNames,
    counters: &mut Counters,
    client: &mut P,
    incoming: Incoming,
    request: &VerdictRequestRepr<'_>,
) -> (Option<ConnectionEnd>, Option<(Level, String)>) {
    let decision = policy.decide(request, own_pid, names);
    if incoming.reply_len == 0 {
        // The driver waits for no reply: nothing can deliver the verdict.
        counters.verdict_reply_failures += 1;
        let line = format!(
            "verdict request {} came without a reply buffer: not answered",
            request.request_id
        );
        return (None, Some((Level::Warn, line)));
    }
    let mut reply = [0u8; VerdictReply::LEN];
    let emitted = VerdictReply {
        request_id: request.request_id,
        verdict: decision.verdict,
        reason: decision.reason,
    }
    .emit(&mut reply);
    if emitted.is_err() {
        return (None, None);
    }
    match client.reply(incoming.message_id, &reply) {
        Ok(()) => match decision.verdict {
            vigil_protocol::Verdict::Allow => {
                counters.verdicts_allowed += 1;
                (None, None)
            }
            vigil_protocol::Verdict::Deny => {
                counters.verdicts_denied += 1;
                // Every deny is worth a line: it is what an administrator audits.
                (
                    None,
                    Some((Level::Info, denied_line(request, decision.reason))),
                )
            }
        },
        Err(ClientError::Disconnected) => {
            (Some(ConnectionEnd::Closed(ClientError::Disconnected)), None)
        }
        Err(e) => {
            // Typically the driver's wait ended first (its verdict timeout): it applied its
            // default, and counted it.
            counters.verdict_reply_failures += 1;
            let line = format!(
                "verdict reply for request {} not delivered: {e}",
                request.request_id
            );
            (None, Some((Level::Warn, line)))
        }
    }
}

/// The writing half: owns the sinks, the sequence tracker and the log for the length of a
/// connection, on its own thread, so that no disk work (a write, an `fsync`, a rotation with
/// its renames, a policy file read, a log line) ever delays a verdict.
struct Writer<'a, S: Sink> {
    sinks: &'a mut S,
    tracker: &'a mut SequenceTracker,
    log: &'a mut Box<dyn Log + Send>,
    control: ServiceControl,
    clock: &'a dyn Clock,
    options: ServiceOptions,
    backlog: &'a Backlog,
    policy_tx: mpsc::Sender<Result<Policy, PolicyError>>,
    policy_loader: &'a PolicyLoader,
    /// What this writer did, added to the core's counters at the end.
    counters: Counters,
    /// The last sync failure reported (each kind once, not every poll).
    last_tick_error: Option<String>,
    processes: &'a mut ProcessTable,
}

impl<S: Sink> Writer<'_, S> {
    fn run(mut self) -> Result<Counters, ServiceError> {
        loop {
            match self.backlog.next(self.options.poll_interval) {
                Next::Job(Job::Batch(bytes)) => {
                    let written = self.write_batch(&bytes);
                    self.backlog.recycle(bytes);
                    written?;
                }
                Next::Job(Job::Log(level, line)) => self.log.log(level, &line),
                Next::Job(Job::LoadPolicy(path)) => {
                    let loaded = (self.policy_loader)(&path);
                    if let Err(e) = &loaded {
                        self.counters.policy_reload_failures += 1;
                        let line = format!("{}: {e}", path.display());
                        self.log.log(Level::Error, &line);
                    }
                    let _ = self.policy_tx.send(loaded);
                }
                Next::Job(Job::DriverStats(stats)) => {
                    let time = crate::record::now_filetime();
                    let written = self.sinks.driver_stats(self.tracker.epoch(), &stats, time);
                    let ended = self.sinks.end_batch();
                    if let Some(error) = written.err().or(ended.err()) {
                        self.retry_until_written(&error)?;
                    }
                }
                Next::Idle => {}
                Next::Finished => return Ok(self.counters),
            }
            self.tick();
        }
    }

    fn tick(&mut self) {
        match self.sinks.tick(self.clock.now()) {
            Ok(()) => self.last_tick_error = None,
            Err(e) => {
                let text = e.to_string();
                if self.last_tick_error.as_ref() != Some(&text) {
                    self.counters.sink_failures += 1;
                    let line =
                        format!("cannot sync the output ({text}); retrying at the next interval");
                    self.log.log(Level::Error, &line);
                    self.last_tick_error = Some(text);
                }
            }
        }
        for warning in self.sinks.take_warnings() {
            self.log.log(Level::Warn, &warning);
        }
    }

    fn write_batch(&mut self, bytes: &[u8]) -> Result<(), ServiceError> {
        // The receiver routed it here because it decodes as a batch or a process record.
        let batch = match Message::parse(bytes) {
            Ok(Message::EventBatch(batch)) => batch,
            Ok(Message::ProcessRecord(record)) => {
                self.processes.apply(&record);
                return Ok(());
            }
            _ => return Ok(()),
        };
        self.counters.batches += 1;
        let epoch_before = self.tracker.epoch();
        let mut gaps = Vec::new();
        let mut failure = None;
        for record in batch.records() {
            match self.tracker.check(record.sequence()) {
                Check::Duplicate => continue,
                Check::AfterGap(gap) => {
                    if let Err(e) = self.sinks.gap(&gap, record.timestamp()) {
                        failure.get_or_insert(e);
                    }
                    gaps.push(gap);
                }
                Check::InOrder => {}
            }
            // Key 0: the driver had none; the event is written with its pid alone.
            let process = match record.process_key() {
                0 => None,
                key => self.processes.get(key),
            };
            if let Err(e) = self.sinks.event(self.tracker.epoch(), &record, process) {
                failure.get_or_insert(e);
            }
            self.counters.events_written += 1;
        }
        let ended = self.sinks.end_batch();
        if let Some(error) = failure.or(ended.err()) {
            self.retry_until_written(&error)?;
        }
        debug_assert_eq!(epoch_before, self.tracker.epoch());
        for gap in gaps {
            let line = format!(
                "{} event(s) lost: sequence {}..={} of driver instance {} never arrived (the \
                 driver's drop counters say why)",
                gap.missing(),
                gap.from,
                gap.to,
                gap.epoch
            );
            self.log.log(Level::Warn, &line);
        }
        Ok(())
    }

    /// The sinks failed (a full disk, a disk gone): they keep what they were given, and this
    /// retries with backoff until they have written it. Received batches wait in the backlog
    /// meanwhile; nothing is dropped. Only a stop ends the wait, after the drain limit.
    fn retry_until_written(&mut self, first: &io::Error) -> Result<(), ServiceError> {
        self.counters.sink_failures += 1;
        let line = format!(
            "cannot write events ({first}); the service keeps running and retries with \
             backoff, keeping what it receives meanwhile ({} KiB queued)",
            self.backlog.queued_bytes() / 1024
        );
        self.log.log(Level::Error, &line);
        let mut backoff = Backoff::new(self.options.backoff_initial, self.options.backoff_max);
        let mut give_up_at = None;
        let mut attempts = 1u64;
        let mut last = first.to_string();
        // Sleeps on a control that is never stopped: after a stop, the retries go on at their
        // pace until the drain limit instead of spinning.
        let never_stopped = ServiceControl::new();
        loop {
            if self.control.stop_requested() && give_up_at.is_none() {
                give_up_at = Some(self.clock.now() + self.options.drain_limit);
            }
            let control = if give_up_at.is_some() {
                &never_stopped
            } else {
                &self.control
            };
            // After a stop, no sleep past the drain limit: the SCM's wait hint counts on it.
            let delay = backoff.next_delay();
            let delay = give_up_at.map_or(delay, |at| {
                delay.min(at.saturating_duration_since(self.clock.now()))
            });
            self.clock.sleep(delay, control);
            match self.sinks.end_batch() {
                Ok(()) => {
                    let line =
                        format!("events are written again, after {attempts} failed attempt(s)");
                    self.log.log(Level::Info, &line);
                    return Ok(());
                }
                Err(e) => {
                    attempts += 1;
                    self.counters.sink_failures += 1;
                    if e.to_string() != last {
                        last = e.to_string();
                        let line = format!("still cannot write events: {e}");
                        self.log.log(Level::Error, &line);
                    }
                    if give_up_at.is_some_and(|at| self.clock.now() >= at) {
                        return Err(ServiceError::Sink(e));
                    }
                }
            }
        }
    }
}

/// The log line for a message that did not decode, named by the kind its header claims when
/// the header itself is sound (read only to word the line: [`Message::parse`] decided). A
/// malformed verdict request goes unanswered: without a valid request id no reply can match,
/// and the driver applies its default when its wait ends.
fn malformed_line(bytes: &[u8], error: vigil_protocol::Error) -> String {
    let len = bytes.len();
    match Header::parse(bytes).map(|header| header.kind) {
        Ok(MessageKind::EventBatch) => {
            format!("malformed event batch ({len} bytes): {error}, ignored")
        }
        Ok(MessageKind::VerdictRequest) => {
            format!("malformed verdict request ({len} bytes): {error}, not answered")
        }
        Ok(kind) => {
            format!("malformed {kind:?} message from the driver ({len} bytes): {error}, ignored")
        }
        Err(_) => format!("malformed message from the driver ({len} bytes): {error}, ignored"),
    }
}

/// The log line for a denied request: `denied: rename \a -> \b by pid 7 (rule 1)`.
fn denied_line(request: &vigil_protocol::VerdictRequestRepr<'_>, reason: u32) -> String {
    use std::fmt::Write as _;
    let operation = match request.operation {
        vigil_protocol::VerdictOperation::Create => "create",
        vigil_protocol::VerdictOperation::Rename => "rename",
        vigil_protocol::VerdictOperation::Link => "link",
        vigil_protocol::VerdictOperation::Delete => "delete",
    };
    let mut line = format!("denied: {operation} {}", request.path);
    if request.target.len_units() > 0 {
        let _ = write!(line, " -> {}", request.target);
    }
    let _ = write!(line, " by pid {} (rule {reason})", request.process_id);
    line
}
