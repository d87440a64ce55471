//! The scenario runner: many load/unload cycles of one image, each with volumes, synthetic I/O
//! from several threads and requestor processes, a port client that drains messages, sends
//! commands, disconnects and reconnects during the I/O (service churn) and may vanish while
//! sends are pending, then a mandatory or optional unload; optionally the unload raced against
//! DriverEntry and seeded random failures. Every cycle's [`Report`] is checked and folded into
//! a [`ScenarioSummary`]. Also the fault sweep over a whole cycle ([`sweep_scenario`]) and the
//! callback-rate benchmark ([`bench()`]). Host side (user mode); the driver runs as for
//! [`Sim::load`].
//!
//! ```no_run
//! use vigil_kernel_sim::scenario::{ScenarioConfig, run_scenario};
//!
//! let mut config = ScenarioConfig::vigil();
//! config.cycles = 100;
//! let summary = run_scenario("target/driver/vigil/vigil.sys".as_ref(), &config, |_| {})?;
//! assert!(summary.is_clean(), "{}", summary.text());
//! # Ok::<(), vigil_kernel_sim::LoadError>(())
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_sys::{
    FILE_CREATE, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_DISPOSITION_DELETE,
    FILE_DISPOSITION_ON_CLOSE, FILE_DISPOSITION_POSIX_SEMANTICS, FILE_OPEN_IF, FILE_OVERWRITE_IF,
    GENERIC_WRITE,
};

use crate::config::VolumeKind;
use crate::config::{PoolKind, RegistryValue, SimConfig, UnloadKind};
use crate::faults::RandomFailures;
use crate::fltmgr::instances::VolumeId;
use crate::harness::sweep::{SweepReport, SweepRun};
use crate::image::LoadError;
use crate::kernel::lock;
use crate::report::{Report, Violation};
use crate::sim::Mounter;
use crate::sim::{Driver, Sim, UnloadOutcome};
use crate::world::client::{ConnectError, ConnectOptions, PortConnection, PortError};
use crate::world::io::{Io, Requestor};

/// Largest message a client buffer takes (FltMgr messages are far smaller in practice).
const MESSAGE_BUFFER: usize = 64 * 1024;

/// A command the client sends (`FilterSendMessage`): raw input bytes and an output buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioCommand {
    /// A name for the summary.
    pub name: String,
    /// The input bytes.
    pub input: Vec<u8>,
    /// The output buffer's size.
    pub output_capacity: usize,
}

/// Which unload each cycle ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnloadPlan {
    /// Always `FLTFL_FILTER_UNLOAD_MANDATORY`.
    Mandatory,
    /// Always optional (a refusal is followed by a mandatory unload).
    Optional,
    /// Mandatory on odd cycles, optional on even ones.
    Alternate,
}

/// How a scenario runs.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// Everything but the per-cycle fault plan and unload race (volumes, registry, policies).
    /// When `base.io.volumes` is empty an NTFS and a FAT volume are mounted.
    pub base: SimConfig,
    /// Load/unload cycles.
    pub cycles: u64,
    /// Stop starting cycles after this long.
    pub duration: Option<Duration>,
    /// I/O threads per cycle.
    pub threads: usize,
    /// Files each thread creates, writes, renames, links, deletes per volume per cycle.
    pub files_per_thread: usize,
    /// Requestor processes each thread rotates through.
    pub requestors_per_thread: u32,
    /// The driver's server port; `None`: no client.
    pub port_name: Option<String>,
    /// The client's process id.
    pub client_process_id: u64,
    /// Commands sent on every connection.
    pub commands: Vec<ScenarioCommand>,
    /// Extra disconnect/reconnect rounds of the client per cycle, during the I/O.
    pub reconnects: u32,
    /// Every k-th cycle the client's first connection reads nothing and is closed while the
    /// driver's sends are pending (0: never).
    pub vanish_every: u64,
    /// Every k-th cycle the unload is requested the moment the filter registers
    /// ([`SimConfig::race_unload_on_register`]; 0: never).
    pub race_every: u64,
    /// Which unload ends each cycle.
    pub unload: UnloadPlan,
    /// Seeded random failures (the cycle index is added to the seed).
    pub random_failures: Option<RandomFailures>,
    /// How long the client waits for one message before checking whether the I/O is done.
    pub message_wait: Duration,
    /// Processes started and exited per cycle by a thread of their own, beside the I/O and on
    /// through the unload (the process-notify routine's lifecycle race); 0: none.
    pub processes_per_cycle: u32,
}

impl Default for ScenarioConfig {
    /// One cycle, two threads, two files per thread and volume, no client.
    fn default() -> Self {
        Self {
            base: SimConfig::default(),
            cycles: 1,
            duration: None,
            threads: 2,
            files_per_thread: 2,
            requestors_per_thread: 2,
            port_name: None,
            client_process_id: 0x2468,
            commands: Vec::new(),
            reconnects: 0,
            vanish_every: 0,
            race_every: 0,
            unload: UnloadPlan::Alternate,
            random_failures: None,
            message_wait: Duration::from_millis(5),
            processes_per_cycle: 8,
        }
    }
}

impl ScenarioConfig {
    /// Vigil's scenario: its port, `Ping` and `GetStats` as commands, one reconnect per cycle, a
    /// vanishing client every 4th cycle, an unload race every 8th, and registry values that
    /// keep cycles short (10 ms flush interval, batches of 16, 256 KiB ring, 200 ms send
    /// timeout).
    pub fn vigil() -> Self {
        let mut ping = vec![0u8; vigil_protocol::Ping::LEN];
        let mut stats = vec![0u8; vigil_protocol::GetStats::LEN];
        let encoded = vigil_protocol::Ping { nonce: 0x5EED }
            .emit(&mut ping)
            .and_then(|_| vigil_protocol::GetStats.emit(&mut stats));
        debug_assert!(encoded.is_ok(), "fixed-size commands encode");
        let base = SimConfig {
            registry: vec![
                ("FlushIntervalMs".into(), RegistryValue::Dword(10)),
                ("RingBytes".into(), RegistryValue::Dword(256 * 1024)),
                ("SendTimeoutMs".into(), RegistryValue::Dword(200)),
                ("BatchSize".into(), RegistryValue::Dword(16)),
            ],
            ..SimConfig::default()
        };
        Self {
            base,
            port_name: Some(vigil_protocol::PORT_NAME.to_owned()),
            commands: vec![
                ScenarioCommand {
                    name: "Ping".into(),
                    input: ping,
                    output_capacity: vigil_protocol::Pong::LEN,
                },
                ScenarioCommand {
                    name: "GetStats".into(),
                    input: stats,
                    output_capacity: vigil_protocol::StatsReply::LEN,
                },
            ],
            reconnects: 1,
            vanish_every: 4,
            race_every: 8,
            ..Self::default()
        }
    }

    fn sim_config(&self, cycle: u64) -> SimConfig {
        let mut config = self.base.clone();
        if let Some(plan) = config.suspend.as_mut() {
            plan.seed = plan.seed.wrapping_add(cycle);
        }
        // Some pended operations are canceled by their requestors, so cancel paths run.
        if config.io.cancel_pended.is_none() {
            config.io.cancel_pended = Some(crate::config::CancelPolicy::STRESS);
        }
        if config.io.volumes.is_empty() {
            config.io.volumes = vec![
                (VolumeKind::Ntfs, r"\Device\HarddiskVolume1".into()),
                (VolumeKind::Fat, r"\Device\HarddiskVolume2".into()),
            ];
        }
        if let Some(random) = self.random_failures {
            config.faults.random = Some(RandomFailures {
                seed: random.seed.wrapping_add(cycle),
                ..random
            });
        }
        if self.race_every > 0 && cycle.is_multiple_of(self.race_every) {
            config.race_unload_on_register = Some(self.unload_kind(cycle));
        }
        config
    }

    fn unload_kind(&self, cycle: u64) -> UnloadKind {
        match self.unload {
            UnloadPlan::Mandatory => UnloadKind::Mandatory,
            UnloadPlan::Alternate if cycle % 2 == 1 => UnloadKind::Mandatory,
            UnloadPlan::Optional | UnloadPlan::Alternate => UnloadKind::Optional,
        }
    }
}

/// A violation with the cycle it happened in.
#[derive(Clone, Debug, Serialize)]
pub struct CycleViolation {
    /// 1-based cycle.
    pub cycle: u64,
    /// The violation.
    #[serde(flatten)]
    pub violation: Violation,
}

/// What a scenario did and found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScenarioSummary {
    /// The image.
    pub image: String,
    /// Cycles run.
    pub cycles: u64,
    /// Cycles whose DriverEntry failed or crashed (expected only with injected failures).
    pub entry_failures: u64,
    /// Cycles with the unload raced against DriverEntry.
    pub race_cycles: u64,
    /// Optional unloads requested, and how many were refused (then done mandatorily).
    pub optional_unloads: u64,
    /// See `optional_unloads`.
    pub refused_unloads: u64,
    /// Synthetic operations issued.
    pub operations: u64,
    /// Operations that did not return the status the workload expects (expected only with
    /// injected failures or a filter that denies).
    pub unexpected_statuses: u64,
    /// Pre- and post-operation callbacks called.
    pub callbacks: u64,
    /// Client connections made, refused or failed, and reconnects (churn).
    pub connections: u64,
    /// See `connections`.
    pub connect_failures: u64,
    /// Messages the client received, and their bytes.
    pub messages: u64,
    /// See `messages`.
    pub message_bytes: u64,
    /// Commands sent; those that failed (transport error or error status).
    pub commands: u64,
    /// See `commands`.
    pub command_failures: u64,
    /// Cycles in which the client vanished, and how many of those with sends pending.
    pub vanish_cycles: u64,
    /// See `vanish_cycles`.
    pub vanished_with_pending_sends: u64,
    /// Failures injected (random failures).
    pub injected_failures: u64,
    /// Pool blocks and bytes leaked over all cycles.
    pub leaked_blocks: u64,
    /// See `leaked_blocks`.
    pub leaked_bytes: u64,
    /// Suspensions of I/O threads (`SimConfig::suspend`), and how many of those were never
    /// resumed by their "application" (only at the end of their cycle).
    pub suspensions: u64,
    /// See `suspensions`.
    pub suspensions_never_resumed: u64,
    /// The longest suspension, in microseconds.
    pub longest_suspension_us: u64,
    /// Cycles with suspension that checked delivery: once the I/O threads that were not
    /// suspended for good are done, a marker file is created by an unsuspended thread while the
    /// others stay suspended; its event must reach the client. (Not in race cycles, whose
    /// unload tears the driver down under the I/O.)
    pub delivery_checks: u64,
    /// Delivery checks whose marker never reached the client (a suspended producer held the
    /// consumer back, or a loss): the run is not clean.
    pub markers_missed: u64,
    /// The longest time from a marker's creation to its delivery, in microseconds: how long
    /// the suspended producers held the consumer back, at worst, as an unsuspended producer
    /// sees it (the flush interval included).
    pub longest_marker_delay_us: u64,
    /// Every violation, with its cycle.
    pub violations: Vec<CycleViolation>,
    /// Wall-clock time of the run.
    pub duration_secs: f64,
}

impl ScenarioSummary {
    /// No violation and no leak.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
            && self.leaked_bytes == 0
            && self.leaked_blocks == 0
            && self.markers_missed == 0
    }

    /// Cycles per second.
    pub fn cycle_rate(&self) -> f64 {
        rate(self.cycles, self.duration_secs)
    }

    /// A human-readable summary naming every violation.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: {} cycle(s) in {:.1}s ({:.1}/s): {} op(s), {} callback(s), {} message(s) ({} B), \
             {} command(s) ({} failed), {} connection(s) ({} failed), {} race cycle(s), \
             {} vanish cycle(s) ({} with sends pending), {} optional unload(s) ({} refused), \
             {} entry failure(s), {} injected failure(s), {} unexpected status(es), \
             leaked {} block(s) / {} B, {} violation(s)",
            self.image,
            self.cycles,
            self.duration_secs,
            self.cycle_rate(),
            self.operations,
            self.callbacks,
            self.messages,
            self.message_bytes,
            self.commands,
            self.command_failures,
            self.connections,
            self.connect_failures,
            self.race_cycles,
            self.vanish_cycles,
            self.vanished_with_pending_sends,
            self.optional_unloads,
            self.refused_unloads,
            self.entry_failures,
            self.injected_failures,
            self.unexpected_statuses,
            self.leaked_blocks,
            self.leaked_bytes,
            self.violations.len(),
        );
        if self.suspensions > 0 || self.delivery_checks > 0 {
            let _ = write!(
                out,
                "\n  suspension: {} suspension(s) ({} never resumed), longest {:.1} ms; \
                 {} delivery check(s), {} marker(s) missed, longest marker delay {:.1} ms",
                self.suspensions,
                self.suspensions_never_resumed,
                millis(self.longest_suspension_us),
                self.delivery_checks,
                self.markers_missed,
                millis(self.longest_marker_delay_us),
            );
        }
        for v in &self.violations {
            let _ = write!(out, "\n  cycle {}: {}", v.cycle, v.violation);
        }
        out
    }

    fn add_report(&mut self, cycle: u64, report: &Report) {
        self.operations += report.io.operations;
        self.callbacks += report.io.pre_callbacks + report.io.post_callbacks;
        self.injected_failures += report.injected.len() as u64;
        self.leaked_blocks += report.pool.leaked_blocks;
        self.leaked_bytes += report.pool.leaked_bytes;
        self.violations
            .extend(report.violations.iter().map(|v| CycleViolation {
                cycle,
                violation: v.clone(),
            }));
    }
}

/// Reported after each cycle.
#[derive(Debug)]
pub struct CycleProgress<'a> {
    /// The cycle just finished (1-based).
    pub cycle: u64,
    /// Its report.
    pub report: &'a Report,
    /// The totals so far.
    pub summary: &'a ScenarioSummary,
    /// When the run started.
    pub started: Instant,
}

/// Counters shared by the threads of one cycle.
#[derive(Default)]
struct Tally {
    unexpected: AtomicU64,
    connections: AtomicU64,
    connect_failures: AtomicU64,
    messages: AtomicU64,
    message_bytes: AtomicU64,
    commands: AtomicU64,
    command_failures: AtomicU64,
    vanished_with_pending: AtomicU64,
    /// The marker's UTF-16LE bytes, searched for in every message the client receives; and
    /// when it was first seen.
    marker: Mutex<(Vec<u8>, Option<Instant>)>,
}

impl Tally {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn fold(&self, summary: &mut ScenarioSummary) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        summary.unexpected_statuses += get(&self.unexpected);
        summary.connections += get(&self.connections);
        summary.connect_failures += get(&self.connect_failures);
        summary.messages += get(&self.messages);
        summary.message_bytes += get(&self.message_bytes);
        summary.commands += get(&self.commands);
        summary.command_failures += get(&self.command_failures);
        summary.vanished_with_pending_sends += get(&self.vanished_with_pending);
    }
}

/// An image read once, loaded many times.
struct Image {
    path: PathBuf,
    bytes: Vec<u8>,
    pdb: Option<PathBuf>,
}

impl Image {
    fn read(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(LoadError::Io)?;
        let pdb = path.with_extension("pdb");
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            pdb: pdb.exists().then_some(pdb),
        })
    }

    fn load(&self, sim: &Sim) -> Result<Driver, LoadError> {
        sim.load_bytes(&self.path, &self.bytes, self.pdb.as_deref())
    }
}

/// Runs `config.cycles` cycles of `image` (see the module docs); `progress` is called after
/// each. Stops early when `config.duration` has elapsed.
///
/// # Errors
///
/// The image cannot be read or the loader refuses it.
pub fn run_scenario(
    image: &Path,
    config: &ScenarioConfig,
    mut progress: impl FnMut(&CycleProgress<'_>),
) -> Result<ScenarioSummary, LoadError> {
    let image = Image::read(image)?;
    let started = Instant::now();
    let mut summary = ScenarioSummary {
        image: image.path.display().to_string(),
        ..ScenarioSummary::default()
    };
    for cycle in 1..=config.cycles {
        if config.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let report = run_cycle(&image, config, cycle, &mut summary)?;
        summary.cycles = cycle;
        summary.add_report(cycle, &report);
        summary.duration_secs = started.elapsed().as_secs_f64();
        progress(&CycleProgress {
            cycle,
            report: &report,
            summary: &summary,
            started,
        });
    }
    summary.duration_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn run_cycle(
    image: &Image,
    config: &ScenarioConfig,
    cycle: u64,
    summary: &mut ScenarioSummary,
) -> Result<Report, LoadError> {
    let sim_config = config.sim_config(cycle);
    let raced = sim_config.race_unload_on_register.is_some();
    let sim = Sim::new(sim_config);
    let mut driver = image.load(&sim)?;
    summary.race_cycles += u64::from(raced);
    if !driver.is_loaded() {
        summary.entry_failures += 1;
        return Ok(driver.finish());
    }
    let vanish = config.port_name.is_some()
        && config.vanish_every > 0
        && cycle.is_multiple_of(config.vanish_every);
    summary.vanish_cycles += u64::from(vanish);
    let kind = config.unload_kind(cycle);
    // Odd cycles keep the client connected (and reading) through the unload.
    let through_unload = cycle % 2 == 1;
    let volumes = cycle_volumes(&driver);
    let mounter = driver.mounter();
    let workers: Vec<Vec<Io>> = (0..config.threads)
        .map(|t| {
            (0..config.requestors_per_thread.max(1))
                .map(|r| driver.io(requestor(t, r)))
                .collect()
        })
        .collect();
    let tally = Tally::default();
    let io_done = AtomicBool::new(false);
    let unloaded = AtomicBool::new(false);
    let settled = AtomicBool::new(config.port_name.is_none());
    let mut outcome = None;
    let finished = AtomicU64::new(0);
    let churn_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        if config.processes_per_cycle > 0 {
            let (kernel, churn_done) = (std::sync::Arc::clone(driver.kernel()), &churn_done);
            s.spawn(move || churn_processes(&kernel, config.processes_per_cycle, churn_done));
        }
        let client = config.port_name.as_deref().map(|port| {
            let flags = Flags {
                io_done: &io_done,
                settled: &settled,
                unloaded: &unloaded,
            };
            let (sim, tally) = (&sim, &tally);
            s.spawn(move || {
                let plan = ClientPlan {
                    port,
                    config,
                    vanish,
                    through_unload,
                };
                plan.run(sim, tally, &flags);
                flags.settled.store(true, Ordering::Release);
            })
        });
        let handles: Vec<_> = workers
            .iter()
            .enumerate()
            .map(|(t, ios)| {
                let (volumes, tally, finished, mounter) = (&volumes, &tally, &finished, &mounter);
                s.spawn(move || {
                    crate::machine::state::mark_application_thread();
                    thread_workload(ios, (volumes, mounter), t, config.files_per_thread, tally);
                    finished.fetch_add(1, Ordering::AcqRel);
                })
            })
            .collect();
        if driver.kernel().config.suspend.is_some() {
            check_delivery_past_suspended(
                &driver, &volumes, &finished, config, cycle, &tally, summary,
            );
        }
        for handle in handles {
            let _ = handle.join();
        }
        io_done.store(true, Ordering::Release);
        if !through_unload && let Some(client) = client {
            let _ = client.join();
            outcome = Some(unload(&mut driver, kind, summary));
        } else {
            // The client's churn is over: it reads through the unload on its last connection.
            while !settled.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_micros(200));
            }
            outcome = Some(unload(&mut driver, kind, summary));
            unloaded.store(true, Ordering::Release);
        }
        churn_done.store(true, Ordering::Release);
    });
    debug_assert!(outcome.is_some());
    tally.fold(summary);
    let suspensions = &driver.kernel().suspensions;
    summary.suspensions += suspensions.count.load(Ordering::Relaxed);
    summary.suspensions_never_resumed += suspensions.never.load(Ordering::Relaxed);
    summary.longest_suspension_us = summary
        .longest_suspension_us
        .max(suspensions.longest_us.load(Ordering::Relaxed));
    Ok(driver.finish())
}

/// Starts and exits `count` processes in turn (each created by the system process, pid 4),
/// then keeps one starting and exiting until `done` (set after the unload): notifications run
/// beside the I/O and race the unload's removal of the driver's notify routine.
fn churn_processes(k: &std::sync::Arc<crate::kernel::Kernel>, count: u32, done: &AtomicBool) {
    use crate::kernel::processes::{SimProcess, sid_bytes};
    use crate::ntoskrnl::process_notify::{create_process, exit_process};
    // Pids the workload's requestors and configured processes never use.
    const FIRST_PID: u32 = 40_000;
    let churn = |pid: u32| {
        let spec = SimProcess {
            pid,
            parent_pid: 4,
            image: r"\Device\HarddiskVolume1\Tools\churn.exe".to_owned(),
            admin: false,
            user_sid: sid_bytes(false, 1001),
            session_id: 1,
            start_key: 0,
            exit_status: None,
        };
        if create_process(k, spec).is_ok() {
            exit_process(k, pid, 0);
        }
    };
    for n in 0..count {
        churn(FIRST_PID + n * 4);
    }
    while !done.load(Ordering::Acquire) {
        churn(FIRST_PID);
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// With suspension: waits until every I/O thread has finished or is suspended for good, then,
/// with those still suspended, creates a marker file from this (never suspended) thread and
/// waits for its event to reach the client: a suspended producer must not hold the consumer
/// back (RULES.md rule 26). Then resumes every suspended thread.
fn check_delivery_past_suspended(
    driver: &Driver,
    volumes: &[(VolumeId, bool)],
    finished: &AtomicU64,
    config: &ScenarioConfig,
    cycle: u64,
    tally: &Tally,
    summary: &mut ScenarioSummary,
) {
    let suspensions = &driver.kernel().suspensions;
    let threads = config.threads as u64;
    while finished.load(Ordering::Acquire) + suspensions.parked() < threads {
        std::thread::sleep(Duration::from_micros(200));
    }
    // A race cycle's unload runs while DriverEntry does and tears the driver down under the
    // I/O: no client stays connected to receive a marker, so there is no delivery to check.
    let raced = driver.kernel().config.race_unload_on_register.is_some();
    if !raced && let (Some(_), Some(&(volume, _))) = (&config.port_name, volumes.first()) {
        let name = format!("\\vigil-marker-{cycle}-{}.txt", std::process::id());
        let pattern: Vec<u8> = name[1..]
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        *lock(&tally.marker) = (pattern, None);
        let io = driver.io(Requestor {
            pid: 4242,
            tid: 4243,
        });
        let created = Instant::now();
        if let Ok(file) = io.create(volume, &name, FILE_CREATE, 0, 0) {
            io.close(file);
            summary.delivery_checks += 1;
            let deadline = created + MARKER_PATIENCE;
            let seen = loop {
                if let Some(seen) = lock(&tally.marker).1 {
                    break Some(seen);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            match seen {
                Some(seen) => {
                    let us = u64::try_from(seen.saturating_duration_since(created).as_micros())
                        .unwrap_or(u64::MAX);
                    summary.longest_marker_delay_us = summary.longest_marker_delay_us.max(us);
                }
                None => summary.markers_missed += 1,
            }
        }
    }
    suspensions.resume_all();
}

/// How long a marker may take to reach the client (flush interval and send timeout are
/// milliseconds in the stress configuration; a producer held back by a suspended one never
/// arrives).
const MARKER_PATIENCE: Duration = Duration::from_secs(5);

fn millis(us: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a figure to print")]
    let ms = us as f64 / 1000.0;
    ms
}

/// Unloads as planned; a refused optional unload is followed by a mandatory one.
fn unload(driver: &mut Driver, kind: UnloadKind, summary: &mut ScenarioSummary) -> bool {
    if !driver.is_loaded() {
        return false;
    }
    if kind == UnloadKind::Optional {
        summary.optional_unloads += 1;
    }
    match driver.unload(kind) {
        Ok(UnloadOutcome::Refused(_)) => {
            summary.refused_unloads += 1;
            driver.unload(UnloadKind::Mandatory) == Ok(UnloadOutcome::Unloaded)
        }
        Ok(UnloadOutcome::Unloaded) => true,
        Err(_) => false,
    }
}

/// The configured volumes of a cycle, with whether they take hard links (not FAT/exFAT).
fn cycle_volumes(driver: &Driver) -> Vec<(VolumeId, bool)> {
    driver
        .kernel()
        .config
        .io
        .volumes
        .iter()
        .filter_map(|(kind, name)| {
            let links = !matches!(kind, VolumeKind::Fat | VolumeKind::ExFat);
            driver.volume(name).map(|v| (v, links))
        })
        .collect()
}

fn requestor(thread: usize, n: u32) -> Requestor {
    let thread = u32::try_from(thread).unwrap_or(u32::MAX);
    Requestor {
        pid: 1000 + thread * 16 + n,
        tid: 5000 + thread * 16 + n,
    }
}

/// One thread's mixed workload on `volume` under `\t<thread>`: a directory query, then per
/// file, create, two writes (on the first file, every other operation: [`Io::workout`]),
/// rename, hard link (where supported), delete (by each disposition class in turn), cleanup
/// and close, then a delete-on-close overwrite; requestors rotate per file; then one file in a
/// transaction ([`crate::harness::transacted`]). Statuses other
/// than the expected ones are counted, not fatal (injected failures cause them).
fn workload(ios: &[Io], volume: VolumeId, links: bool, thread: usize, files: usize, tally: &Tally) {
    let check = |status: i32| {
        if status != 0 {
            Tally::bump(&tally.unexpected);
        }
    };
    let dir = format!(r"\t{thread}");
    if let Some(io) = ios.first() {
        match io.create(volume, &dir, FILE_OPEN_IF, FILE_DIRECTORY_FILE, 0) {
            Ok(d) => {
                tally_workout(tally, io.workout_directory(&d));
                if !notify_once(io, volume, &d, &dir) {
                    Tally::bump(&tally.unexpected);
                }
                io.close(d);
            }
            Err(status) => check(status),
        }
    }
    for n in 0..files {
        let Some(io) = ios.get(n % ios.len().max(1)) else {
            return;
        };
        let path = format!(r"{dir}\File{n}.txt");
        match io.create(volume, &path, FILE_CREATE, 0, GENERIC_WRITE) {
            Ok(f) => {
                check(io.write(&f, 0, b"hello"));
                check(io.write(&f, 5, b" world"));
                if n == 0 {
                    // Every other operation, once per thread and cycle.
                    tally_workout(tally, io.workout(&f));
                }
                check(io.rename(&f, &format!("Renamed{n}.txt"), false));
                if links {
                    check(io.link(&f, &format!(r"{dir}\Link{n}.txt"), true));
                }
                check(match n % 3 {
                    0 => io.set_disposition(&f, true),
                    1 => io.set_disposition_ex(
                        &f,
                        FILE_DISPOSITION_DELETE | FILE_DISPOSITION_POSIX_SEMANTICS,
                    ),
                    _ => io.set_disposition_ex(
                        &f,
                        FILE_DISPOSITION_DELETE | FILE_DISPOSITION_ON_CLOSE,
                    ),
                });
                check(io.cleanup(&f));
                io.close(f);
            }
            Err(status) => check(status),
        }
        match io.create(
            volume,
            &path,
            FILE_OVERWRITE_IF,
            FILE_DELETE_ON_CLOSE,
            GENERIC_WRITE,
        ) {
            Ok(g) => {
                check(io.write(&g, 0, b"x"));
                check(io.cleanup(&g));
                io.close(g);
            }
            Err(status) => check(status),
        }
    }
    if let Some(io) = ios.first() {
        for _ in 0..crate::harness::transacted::transacted_file(io, volume, &dir, thread) {
            Tally::bump(&tally.unexpected);
        }
    }
}

/// One I/O thread's cycle: [`workload`] on each volume, then (the first thread only)
/// [`scratch_volume`].
fn thread_workload(
    ios: &[Io],
    (volumes, mounter): (&[(VolumeId, bool)], &Mounter),
    thread: usize,
    files: usize,
    tally: &Tally,
) {
    for (volume, links) in volumes {
        workload(ios, *volume, *links, thread, files, tally);
    }
    if let (0, Some(io)) = (thread, ios.first()) {
        scratch_volume(mounter, io, tally);
    }
}

/// A volume that comes and goes during a cycle: mounted while the filter runs (InstanceSetup
/// for a newly mounted volume, then `IRP_MJ_VOLUME_MOUNT`), a file written on it, dismounted
/// (`IRP_MJ_VOLUME_DISMOUNT`, then the dismount's teardown). Once per cycle, by the first I/O
/// thread after its workload.
fn scratch_volume(mounter: &Mounter, io: &Io, tally: &Tally) {
    let check = |status: i32| {
        if status != 0 {
            Tally::bump(&tally.unexpected);
        }
    };
    let volume = mounter.mount(VolumeKind::Ntfs, SCRATCH_VOLUME);
    match io.create(volume, r"\scratch.txt", FILE_CREATE, 0, GENERIC_WRITE) {
        Ok(f) => {
            check(io.write(&f, 0, b"scratch"));
            check(io.cleanup(&f));
            io.close(f);
        }
        Err(status) => check(status),
    }
    mounter.dismount(volume);
}

/// The device name of [`scratch_volume`]'s volume (no configured volume has it).
const SCRATCH_VOLUME: &str = r"\Device\HarddiskVolume64";

/// A change notification on the open directory `d` (`dir`), completed by a file another
/// thread of the requestor creates in it (deleted on close); `d` is cleaned up after. Whether
/// the outcome is one the file system gives: the file's name added, or the cleanup's
/// completion when the create failed (an injected failure, a filter's refusal).
fn notify_once(io: &Io, volume: VolumeId, d: &crate::world::io::FileHandle, dir: &str) -> bool {
    use crate::world::fs::notify::{FILE_ACTION_ADDED, FILE_NOTIFY_CHANGE_FILE_NAME};
    let path = format!(r"{dir}\notify.tmp");
    let result = io.notify_change_directory(d, 4096, FILE_NOTIFY_CHANGE_FILE_NAME, |other| {
        match other.create(
            volume,
            &path,
            FILE_CREATE,
            FILE_DELETE_ON_CLOSE,
            GENERIC_WRITE,
        ) {
            Ok(f) => {
                let _ = other.cleanup(&f);
                other.close(f);
                true
            }
            Err(_) => false,
        }
    });
    match result {
        Ok(records) => records
            .first()
            .is_some_and(|r| r.action == FILE_ACTION_ADDED && r.name == "notify.tmp"),
        Err(status) => status == crate::world::fs::STATUS_NOTIFY_CLEANUP,
    }
}

/// Counts the unexpected statuses of an [`Io::workout`].
fn tally_workout(tally: &Tally, workout: crate::world::io::Workout) {
    for _ in 0..workout.unexpected {
        Tally::bump(&tally.unexpected);
    }
}

/// How the client and the cycle's other threads signal each other.
struct Flags<'a> {
    /// Every I/O thread has finished.
    io_done: &'a AtomicBool,
    /// The client is on its last connection (or gave up): the unload may begin.
    settled: &'a AtomicBool,
    /// The unload has returned.
    unloaded: &'a AtomicBool,
}

/// What the client does in one cycle.
struct ClientPlan<'a> {
    port: &'a str,
    config: &'a ScenarioConfig,
    vanish: bool,
    through_unload: bool,
}

impl ClientPlan<'_> {
    fn options(&self) -> ConnectOptions {
        ConnectOptions {
            process_id: self.config.client_process_id,
            context: Vec::new(),
            account: crate::fltmgr::security::Account::Administrator,
        }
    }

    /// Connects; a refusal because the previous connection is still being torn down is
    /// retried briefly, as a service does.
    fn connect(&self, sim: &Sim, tally: &Tally) -> Option<PortConnection> {
        for attempt in 0..20 {
            match sim.connect(self.port, &self.options()) {
                Ok(c) => {
                    Tally::bump(&tally.connections);
                    return Some(c);
                }
                Err(ConnectError::ConnectionLimit) if attempt < 19 => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => break,
            }
        }
        Tally::bump(&tally.connect_failures);
        None
    }

    /// Connects, reads, sends commands, churns, vanishes, as planned.
    fn run(&self, sim: &Sim, tally: &Tally, flags: &Flags<'_>) {
        let Flags {
            io_done,
            settled,
            unloaded,
        } = *flags;
        let mut buf = vec![0u8; MESSAGE_BUFFER];
        if self.vanish
            && let Some(connection) = self.connect(sim, tally)
        {
            // Read nothing: the driver's next batch blocks in FltSendMessage. Close while it
            // does (or, if no
            // events come, give up 100 ms after the I/O is done).
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut quiet_since = None;
            while connection.queued_messages() == 0
                && Instant::now() < deadline
                && connection.is_connected()
                && quiet_since.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(100))
            {
                if quiet_since.is_none() && io_done.load(Ordering::Acquire) {
                    quiet_since = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if connection.queued_messages() > 0 {
                Tally::bump(&tally.vanished_with_pending);
            }
            drop(connection);
        }
        for round in 0..=self.config.reconnects {
            let last = round == self.config.reconnects;
            let Some(connection) = self.connect(sim, tally) else {
                continue;
            };
            self.send_commands(&connection, tally);
            if last {
                settled.store(true, Ordering::Release);
            }
            // Churn rounds read a couple of messages (or until the I/O is done); the last one
            // reads until the I/O is done, then (when it stays through the unload) until the
            // driver closes the port.
            let mut read = 0;
            loop {
                let done = io_done.load(Ordering::Acquire);
                if !last && (read >= 2 || done) {
                    break;
                }
                match Self::read_one(&connection, &mut buf, self.config.message_wait, tally) {
                    Ok(()) => read += 1,
                    // Drained: the I/O is done and nothing came for a while.
                    Err(PortError::Timeout) if last && done && !self.through_unload => break,
                    Err(PortError::Timeout) => {
                        if unloaded.load(Ordering::Acquire) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            // (Not when reading through the unload: the driver closes the port meanwhile.)
            if last && !self.through_unload && connection.is_connected() {
                self.send_commands(&connection, tally);
            }
        }
    }

    fn read_one(
        connection: &PortConnection,
        buf: &mut [u8],
        wait: Duration,
        tally: &Tally,
    ) -> Result<(), PortError> {
        let message = connection.get_message(buf, wait)?;
        Tally::bump(&tally.messages);
        {
            let mut marker = lock(&tally.marker);
            let (pattern, seen) = &mut *marker;
            if seen.is_none()
                && !pattern.is_empty()
                && buf
                    .get(..message.len)
                    .is_some_and(|bytes| bytes.windows(pattern.len()).any(|w| w == pattern))
            {
                *seen = Some(Instant::now());
            }
        }
        tally
            .message_bytes
            .fetch_add(message.len as u64, Ordering::Relaxed);
        if message.reply_len > 0 {
            // A request (a verdict): answer with zeroes, the protocol's neutral reply.
            let reply = vec![0u8; message.reply_len as usize];
            let _ = connection.reply(message.message_id, &reply);
        }
        Ok(())
    }

    fn send_commands(&self, connection: &PortConnection, tally: &Tally) {
        for command in &self.config.commands {
            Tally::bump(&tally.commands);
            match connection.send_command(&command.input, command.output_capacity) {
                Ok(result) if result.status >= 0 => {}
                _ => Tally::bump(&tally.command_failures),
            }
        }
    }
}

// ----- fault sweep over a whole cycle -------------------------------------------------------

/// The fault sweep over a whole cycle (DriverEntry, volume attach, the workload's callbacks,
/// the client's connect and commands, unload): for N = 1, 2, ... one cycle with the N-th
/// failable call failed, until a run completes without reaching N. One I/O thread and one
/// requestor so that call order is as repeatable as the driver's own threads allow; no churn,
/// no vanishing, no race, no random failures.
///
/// # Errors
///
/// The image cannot be read or the loader refuses it.
pub fn sweep_scenario(
    image: &Path,
    config: &ScenarioConfig,
    max_runs: u64,
    progress: impl FnMut(&SweepRun),
) -> Result<SweepReport, LoadError> {
    let image = Image::read(image)?;
    let mut single = config.clone();
    single.threads = 1;
    single.requestors_per_thread = 1;
    single.reconnects = 0;
    single.vanish_every = 0;
    single.race_every = 0;
    single.random_failures = None;
    single.unload = UnloadPlan::Mandatory;
    crate::harness::sweep::sweep_runs(max_runs, progress, |n| {
        single.base.faults.fail_nth = Some(n);
        single.base.faults.random = None;
        let mut summary = ScenarioSummary::default();
        // Cycle 2: even, so the client disconnects before the unload (fully sequential).
        run_cycle(&image, &single, 2, &mut summary)
    })
}

// ----- benchmark ----------------------------------------------------------------------------

/// What [`bench()`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// The image.
    pub image: String,
    /// I/O threads.
    pub threads: usize,
    /// Operations issued.
    pub operations: u64,
    /// Pre- and post-operation callbacks called.
    pub callbacks: u64,
    /// Measured time.
    pub seconds: f64,
    /// Callbacks per second.
    pub callbacks_per_sec: f64,
    /// Operations per second.
    pub operations_per_sec: f64,
    /// Violations of the run (a benchmark of a broken run means nothing).
    pub violations: Vec<Violation>,
    /// The pool the run used: [`PoolKind::Standard`] in the measurement configuration.
    pub pool: PoolKind,
}

/// [`bench_in`] in the test configuration (`SimConfig::default()`).
///
/// # Errors
///
/// The image does not load.
pub fn bench(image: &Path, threads: usize, duration: Duration) -> Result<BenchResult, LoadError> {
    bench_in(SimConfig::default(), image, threads, duration)
}

/// Loads `image` in `config` with an NTFS volume, no client, and issues
/// open/write/cleanup/close of one file per thread in a loop for `duration`, with every other
/// operation ([`Io::workout`]) once in 64 rounds; counts the callbacks.
///
/// # Errors
///
/// The image cannot be read or the loader refuses it.
pub fn bench_in(
    mut config: SimConfig,
    image: &Path,
    threads: usize,
    duration: Duration,
) -> Result<BenchResult, LoadError> {
    let pool = config.pool;
    config.io.volumes = vec![(VolumeKind::Ntfs, r"\Device\HarddiskVolume1".into())];
    let sim = Sim::new(config);
    let mut driver = sim.load(image)?;
    let volume = driver.volume(r"\Device\HarddiskVolume1");
    let before = driver.io_stats();
    let started = Instant::now();
    if let Some(volume) = volume.filter(|_| driver.is_loaded()) {
        let ios: Vec<Io> = (0..threads.max(1))
            .map(|t| driver.io(requestor(t, 0)))
            .collect();
        std::thread::scope(|s| {
            for (t, io) in ios.iter().enumerate() {
                s.spawn(move || {
                    let path = format!(r"\bench{t}.dat");
                    while started.elapsed() < duration {
                        for round in 0..64 {
                            if let Ok(f) = io.create(volume, &path, FILE_OPEN_IF, 0, GENERIC_WRITE)
                            {
                                let _ = io.write(&f, 0, b"bench");
                                if round == 0 {
                                    // Every other operation, once in 64 rounds.
                                    let _ = io.workout(&f);
                                }
                                let _ = io.cleanup(&f);
                                io.close(f);
                            }
                        }
                    }
                });
            }
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = driver.io_stats();
    if driver.is_loaded() {
        // Outside the figures: a volume that comes and goes, so that a filter registered for
        // the volume pseudo-operations gets them in bench too.
        scratch_volume(
            &driver.mounter(),
            &driver.io(requestor(0, 0)),
            &Tally::default(),
        );
    }
    let _ = driver.unload(UnloadKind::Mandatory);
    let report = driver.finish();
    let callbacks = (after.pre_callbacks + after.post_callbacks)
        - (before.pre_callbacks + before.post_callbacks);
    let operations = after.operations - before.operations;
    Ok(BenchResult {
        image: image.display().to_string(),
        threads: threads.max(1),
        operations,
        callbacks,
        seconds,
        callbacks_per_sec: rate(callbacks, seconds),
        operations_per_sec: rate(operations, seconds),
        violations: report.violations,
        pool,
    })
}

#[expect(
    clippy::cast_precision_loss,
    reason = "a rate for display; counts stay far below 2^52"
)]
fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
