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
//! 4. Receive until the port closes or a stop is requested. Messages are handled in arrival
//!    order on one thread: writing a batch to the sinks takes tens of microseconds, far below
//!    the smallest verdict timeout (10 ms), so a verdict request never waits long behind one.
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
//! immediately after a close, then after [`Backoff`] delays (100 ms doubling to 5 s), reset by
//! each successful connection. What was written stays written: the sequence tracker lives
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
//! count), answering verdicts and writing batches, reads the driver's counters for the summary,
//! closes the connection and closes the sinks (flush and sync).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use vigil_protocol::{
    EventBatch, Header, MAX_MESSAGE_SIZE, Message, MessageKind, Stats, VerdictReply,
    VerdictRequestRepr,
};

use crate::client::{ClientError, Connector, Incoming, PortClient};
use crate::commands::{self, DriverHello};
use crate::control::{Backoff, Clock, ServiceControl};
use crate::policy::{NoProcessNames, Policy, PolicyError, ProcessNames};
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
}

impl<S: Sink> Service<S> {
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
        }
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
        let closed = self.sinks.close().map_err(ServiceError::Sink);
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
                    backoff.reset();
                    let end = self.serve(&mut client, clock);
                    if matches!(end, Ok(ConnectionEnd::Stopped)) {
                        final_stats = commands::stats(&mut client).ok();
                    }
                    client.close();
                    match end? {
                        ConnectionEnd::Stopped => break,
                        ConnectionEnd::Closed(e) => {
                            self.counters.disconnects += 1;
                            self.warn(&format!("{e}; reconnecting"));
                            // Straight back: the first attempt after a close is immediate.
                            continue;
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
        let prefixes = self.policy.protected_prefixes();
        let config = self.policy.driver_config(&prefixes);
        commands::set_config(client, &config)?;
        let stats = commands::stats(client)?;
        let max = usize::try_from(hello.max_message_size).unwrap_or(MAX_MESSAGE_SIZE);
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
    /// # Errors
    ///
    /// [`ServiceError::Sink`], or a client error that is not transient.
    pub fn serve<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        clock: &dyn Clock,
    ) -> Result<ConnectionEnd, ServiceError> {
        loop {
            if self.control.stop_requested() {
                return self.drain(client, clock);
            }
            if self.control.take_reload() {
                self.reload_from_file(client);
            }
            match client.receive(&mut self.buf, self.options.poll_interval) {
                Ok(Some(incoming)) => {
                    if let Some(end) = self.handle(client, incoming)? {
                        return Ok(end);
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_transient() => return Ok(ConnectionEnd::Closed(e)),
                Err(e) => return Err(e.into()),
            }
            self.sinks.tick(clock.now()).map_err(ServiceError::Sink)?;
        }
    }

    fn drain<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        clock: &dyn Clock,
    ) -> Result<ConnectionEnd, ServiceError> {
        let deadline = clock.now() + self.options.drain_limit;
        for _ in 0..DRAIN_MESSAGES {
            if clock.now() >= deadline {
                break;
            }
            match client.receive(&mut self.buf, Duration::ZERO) {
                Ok(Some(incoming)) => {
                    if self.handle(client, incoming)?.is_some() {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(ConnectionEnd::Stopped)
    }

    /// Handles one message; `Some` when the connection ended while answering it.
    fn handle<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        incoming: Incoming,
    ) -> Result<Option<ConnectionEnd>, ServiceError> {
        let len = incoming.len.min(self.buf.len());
        // The parsed message borrows the buffer while the sinks and counters change: take the
        // buffer out for that time (a move, not a copy) and put it back.
        let buf = std::mem::take(&mut self.buf);
        let handled = self.dispatch(client, incoming, buf.get(..len).unwrap_or(&[]));
        self.buf = buf;
        handled
    }

    /// Decodes one message with the protocol's own [`Message::parse`] (header, then the whole
    /// message by its kind) and acts on the kinds the driver sends the service.
    fn dispatch<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        incoming: Incoming,
        bytes: &[u8],
    ) -> Result<Option<ConnectionEnd>, ServiceError> {
        match Message::parse(bytes) {
            Ok(Message::EventBatch(batch)) => {
                self.write_batch(&batch)?;
                Ok(None)
            }
            Ok(Message::VerdictRequest(request)) => {
                Ok(self.answer_verdict(client, incoming, &request.repr()))
            }
            Ok(other) => {
                self.counters.malformed_messages += 1;
                self.warn(&format!(
                    "unexpected {:?} message from the driver ({} bytes), ignored",
                    other.kind(),
                    bytes.len()
                ));
                Ok(None)
            }
            Err(e) => {
                self.counters.malformed_messages += 1;
                self.warn(&malformed_line(bytes, e));
                Ok(None)
            }
        }
    }

    fn write_batch(&mut self, batch: &EventBatch<'_>) -> Result<(), ServiceError> {
        self.counters.batches += 1;
        let epoch_before = self.tracker.epoch();
        let mut gaps = Vec::new();
        for record in batch.records() {
            match self.tracker.check(record.sequence()) {
                Check::Duplicate => continue,
                Check::AfterGap(gap) => {
                    self.sinks
                        .gap(&gap, record.timestamp())
                        .map_err(ServiceError::Sink)?;
                    gaps.push(gap);
                }
                Check::InOrder => {}
            }
            self.sinks
                .event(self.tracker.epoch(), &record)
                .map_err(ServiceError::Sink)?;
            self.counters.events_written += 1;
        }
        self.sinks.end_batch().map_err(ServiceError::Sink)?;
        debug_assert_eq!(epoch_before, self.tracker.epoch());
        for gap in gaps {
            self.warn(&format!(
                "{} event(s) lost: sequence {}..={} of driver instance {} never arrived (the \
                 driver's drop counters say why)",
                gap.missing(),
                gap.from,
                gap.to,
                gap.epoch
            ));
        }
        Ok(())
    }

    fn answer_verdict<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        incoming: Incoming,
        request: &VerdictRequestRepr<'_>,
    ) -> Option<ConnectionEnd> {
        let decision = self
            .policy
            .decide(request, self.options.own_pid, &*self.names);
        if incoming.reply_len == 0 {
            // The driver waits for no reply: nothing can deliver the verdict.
            self.counters.verdict_reply_failures += 1;
            let message = format!(
                "verdict request {} came without a reply buffer: not answered",
                request.request_id
            );
            self.log.log(Level::Warn, &message);
            return None;
        }
        let mut reply = [0u8; VerdictReply::LEN];
        let emitted = VerdictReply {
            request_id: request.request_id,
            verdict: decision.verdict,
            reason: decision.reason,
        }
        .emit(&mut reply);
        if emitted.is_err() {
            return None;
        }
        match client.reply(incoming.message_id, &reply) {
            Ok(()) => {
                match decision.verdict {
                    vigil_protocol::Verdict::Allow => self.counters.verdicts_allowed += 1,
                    vigil_protocol::Verdict::Deny => {
                        self.counters.verdicts_denied += 1;
                        // Every deny is worth a line: it is what an administrator audits.
                        let message = denied_line(request, decision.reason);
                        self.log.log(Level::Info, &message);
                    }
                }
                None
            }
            Err(ClientError::Disconnected) => {
                Some(ConnectionEnd::Closed(ClientError::Disconnected))
            }
            Err(e) => {
                // Typically the driver's wait ended first (its verdict timeout): it applied
                // its default, and counted it.
                self.counters.verdict_reply_failures += 1;
                self.warn(&format!(
                    "verdict reply for request {} not delivered: {e}",
                    request.request_id
                ));
                None
            }
        }
    }

    fn reload_from_file<P: PortClient + ?Sized>(&mut self, client: &mut P) {
        let Some(path) = self.policy_path.clone() else {
            self.warn("reload requested, but the service runs without a policy file");
            return;
        };
        let result = Policy::load(&path)
            .map_err(ReloadError::Policy)
            .and_then(|policy| self.apply_policy(client, policy));
        match result {
            Ok(()) => self.info(&format!("policy reloaded from {}", path.display())),
            Err(e) => {
                if matches!(e, ReloadError::Policy(_)) {
                    self.counters.policy_reload_failures += 1;
                }
                let message = format!("{}: {e}", path.display());
                self.log.log(Level::Error, &message);
            }
        }
    }

    /// Replaces the running policy: pushes its configuration to the driver first, and keeps
    /// the old policy (in the service and, by the driver's own rule, in the driver) when the
    /// driver refuses it. Output settings take effect at the next start.
    ///
    /// # Errors
    ///
    /// [`ReloadError::Driver`].
    pub fn apply_policy<P: PortClient + ?Sized>(
        &mut self,
        client: &mut P,
        policy: Policy,
    ) -> Result<(), ReloadError> {
        let prefixes = policy.protected_prefixes();
        let config = policy.driver_config(&prefixes);
        let pushed = commands::set_config(client, &config);
        drop(prefixes);
        match pushed {
            Ok(()) => {
                self.policy = policy;
                self.counters.policy_reloads += 1;
                Ok(())
            }
            Err(e) => {
                self.counters.policy_reload_failures += 1;
                Err(ReloadError::Driver(e))
            }
        }
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
