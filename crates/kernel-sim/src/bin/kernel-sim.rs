//! `kernel-sim`: run a minifilter image on Linux from the command line.
//!
//! * `kernel-sim stress --image PATH --cycles N --threads T [--duration SECS]
//!   [--random-failures RATE --seed S] [--json FILE]`: load/unload cycles with volumes, I/O
//!   from T threads, a port client (messages, commands, churn, vanishing with sends pending),
//!   mandatory and optional unloads and unload races (see `vigil_kernel_sim::scenario`).
//!   `--suspend-rate R` suspends I/O threads at routine boundaries (probability R) as
//!   `SuspendThread` does and checks delivery past them.
//! * `kernel-sim soak --image PATH [--cycles 10000]`: `stress` with defaults for a long run.
//!   Both take `--inf INF --windows-build N` too: each cycle then loads the driver installed
//!   from the INF, through the same load and unload as `load-unload` and `fltmc`.
//! * `kernel-sim sweep --image PATH [--json FILE]`: the fault sweep over load + unload, then
//!   over a whole cycle (callbacks and the message handler included).
//! * `kernel-sim bench --image PATH`: callbacks per second for an open/write/cleanup/close loop.
//! * `kernel-sim load-unload --image PATH [--inf INF --windows-build N] --cycles K`: bare
//!   load/unload cycles; with `--inf`, the INF is installed first for build N (19041, 22621,
//!   26100, or `10.0.N`), as `pnputil /add-driver INF /install` then `fltmc load` would. A load
//!   that fails prints DriverEntry's NTSTATUS by name and exits non-zero.
//! * `kernel-sim fltmc --image PATH [--inf INF --windows-build N] [--volume KIND:DEVICE]...
//!   COMMAND [; COMMAND]...`: `fltmc`'s `load NAME`, `unload NAME [--mandatory]`, `filters`,
//!   `instances`, `attach NAME VOLUME [-i INSTANCE] [-a ALTITUDE]` and `detach NAME VOLUME`
//!   in order on one emulated machine (see `vigil_kernel_sim::fltmc`); exit 0 when every
//!   command succeeded and every driver instance was clean, 1 otherwise (each failure printed
//!   with its NTSTATUS).
//!
//! * `kernel-sim verify --image PATH [--inf INF --windows-build N] [--cycles K] [--port NAME]
//!   [--max-runs N]`: load/unload cycles, stress and both fault sweeps in one run, then a Filter
//!   Verifier–style report: one line per rule broken, with the routine that caught it, the
//!   driver entry point running (the caller) and the count. Exit 0 only if nothing broke.
//!
//! Progress goes to stderr every few seconds on long runs; the summary names every violation;
//! `--json FILE` writes the report. Exit status: 0 clean, 1 a violation or a leak, 2 the image
//! could not be loaded (or the report not written).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use vigil_kernel_sim::fltmc::Fltmc;
use vigil_kernel_sim::scenario::{self, CycleProgress, ScenarioConfig, UnloadPlan};
use vigil_kernel_sim::{
    PoolKind, RandomFailures, Report, Sim, SimConfig, SuspendPlan, UnloadKind, VolumeKind,
    WindowsBuild, inf, status_name, sweep, verify,
};
use vigil_sys::NT_SUCCESS;

/// How often progress lines are printed on long runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

#[derive(Parser)]
#[command(
    name = "kernel-sim",
    about = "Run a Windows minifilter .sys on Linux with Driver-Verifier-style checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load/unload cycles with I/O, a churning port client and unload races.
    Stress(StressArgs),
    /// `stress` tuned for a long run (10,000 cycles, 2 threads, progress every few seconds).
    Soak(StressArgs),
    /// Fault sweep: fail the N-th failable call for N = 1, 2, ... until a run reaches none;
    /// over load + unload, then over a whole cycle with I/O and commands.
    Sweep {
        #[command(flatten)]
        common: Common,
        /// Upper bound on the runs of each sweep.
        #[arg(long, default_value_t = 10_000)]
        max_runs: u64,
        /// Only the load + unload sweep.
        #[arg(long)]
        entry_only: bool,
    },
    /// Callbacks per second for an open/write/cleanup/close loop on one NTFS volume.
    Bench {
        #[command(flatten)]
        common: Common,
        /// I/O threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seconds to measure.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// `fltmc` load, unload, filters, instances, attach and detach on one emulated machine.
    Fltmc(FltmcArgs),
    /// Load/unload cycles, stress and both fault sweeps, then one Filter Verifier-style report
    /// (rule, routine, caller, count).
    Verify(VerifyArgs),
    /// Bare load/unload cycles, each with its own report.
    LoadUnload {
        #[command(flatten)]
        common: Common,
        /// Number of load/unload cycles.
        #[arg(long, default_value_t = 1)]
        cycles: u64,
        #[command(flatten)]
        install: InstallArgs,
    },
}

/// `fltmc` on one emulated machine.
#[derive(Args)]
struct FltmcArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    install: InstallArgs,
    /// A volume mounted before the first command, as KIND:DEVICE (kind ntfs, refs, fat,
    /// exfat, network); default one NTFS volume, `\Device\HarddiskVolume1`.
    #[arg(long = "volume")]
    volumes: Vec<String>,
    /// The commands, separated by `;` (a word of its own or ending a word): `load NAME`,
    /// `unload NAME [--mandatory]`, `filters`, `instances`,
    /// `attach NAME VOLUME [-i INSTANCE] [-a ALTITUDE]`, `detach NAME VOLUME`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    commands: Vec<String>,
}

/// Installing from an INF before loading.
#[derive(Args)]
struct InstallArgs {
    /// Install this INF (its `DefaultInstall` for the build) into the registry first.
    #[arg(long)]
    inf: Option<PathBuf>,
    /// The Windows build to emulate: 19041, 22621, 26100 (or 10.0.N). Default 26100.
    #[arg(long, value_parser = parse_build)]
    windows_build: Option<WindowsBuild>,
}

/// `19041` or `10.0.19041`.
fn parse_build(text: &str) -> Result<WindowsBuild, String> {
    let number = text.strip_prefix("10.0.").unwrap_or(text);
    number
        .parse()
        .map(WindowsBuild)
        .map_err(|_| format!("{text:?} is not a Windows build number (19041, 10.0.22621...)"))
}

/// Applies `--windows-build` and installs `--inf` into `config`; false (with a message) if
/// the INF cannot be read or installed.
fn apply_install(config: &mut SimConfig, install: &InstallArgs) -> bool {
    if let Some(build) = install.windows_build {
        config.windows_build = build;
    }
    let Some(path) = &install.inf else {
        return true;
    };
    let build = config.windows_build;
    let installed = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| inf::Inf::parse(&text).map_err(|e| e.to_string()))
        .and_then(|parsed| inf::install(config, &parsed, build).map_err(|e| e.to_string()));
    match installed {
        Ok(plan) => {
            eprintln!(
                "kernel-sim: installed {} on {build}: [{}], service {}",
                path.display(),
                plan.install_section,
                plan.service
            );
            true
        }
        Err(error) => {
            eprintln!("kernel-sim: {}: {error}", path.display());
            false
        }
    }
}

#[derive(Args)]
struct Common {
    /// The driver image (.sys); a .pdb beside it gives symbols.
    #[arg(long)]
    image: PathBuf,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Do not flag waits without a timeout (a Vigil policy).
    #[arg(long)]
    allow_infinite_waits: bool,
    /// Run in the measurement configuration (standard pool, no stack poisoning; every other
    /// check stays): faster, and other timings than the default's, for hunting races.
    #[arg(long)]
    measurement: bool,
}

#[derive(Args)]
struct StressArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    install: InstallArgs,
    /// Load/unload cycles (default: 100 for stress, 10,000 for soak; unbounded with
    /// --duration alone).
    #[arg(long)]
    cycles: Option<u64>,
    /// I/O threads per cycle.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Files per thread and volume per cycle.
    #[arg(long, default_value_t = 2)]
    files: usize,
    /// Stop starting cycles after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Fail each failable call with this probability (0..1), seeded by --seed.
    #[arg(long)]
    random_failures: Option<f64>,
    /// Seed of the random failures (the cycle index is added).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client disconnect/reconnect rounds per cycle.
    #[arg(long, default_value_t = 1)]
    reconnects: u32,
    /// The client vanishes with sends pending every k-th cycle (0: never).
    #[arg(long, default_value_t = 4)]
    vanish_every: u64,
    /// The unload races DriverEntry every k-th cycle (0: never).
    #[arg(long, default_value_t = 8)]
    race_every: u64,
    /// Which unload ends each cycle.
    #[arg(long, value_enum, default_value_t = Unload::Alternate)]
    unload: Unload,
    /// The driver's server port (default: Vigil's); "none" for no client.
    #[arg(long)]
    port: Option<String>,
    /// Probability (0..1) that an I/O thread is suspended, as `SuspendThread` does, at an
    /// emulated routine boundary where a normal kernel APC reaches it (PASSIVE_LEVEL, outside a
    /// critical region); resumed after a random delay below 50 ms or, one time in four, only
    /// at the end of its cycle. Each cycle then checks that an unsuspended thread's event is
    /// delivered while the others stay suspended (client churn is off: --reconnects 0,
    /// --vanish-every 0). Seeded by --seed.
    #[arg(long)]
    suspend_rate: Option<f64>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    install: InstallArgs,
    /// Load/unload cycles, and stress cycles.
    #[arg(long, default_value_t = 100)]
    cycles: u64,
    /// The driver's server port for the stress client (default: none, no client; Vigil's is
    /// `\\VigilPort`).
    #[arg(long)]
    port: Option<String>,
    /// Upper bound on the runs of each fault sweep.
    #[arg(long, default_value_t = 10_000)]
    max_runs: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Unload {
    Mandatory,
    Optional,
    Alternate,
}

fn base_config(common: &Common) -> SimConfig {
    let mut config = SimConfig::default();
    apply_common(&mut config, common);
    config
}

/// The options every command shares, applied to `config`.
fn apply_common(config: &mut SimConfig, common: &Common) {
    config.flag_infinite_waits = !common.allow_infinite_waits;
    if common.measurement {
        config.use_measurement_checks();
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Stress(args) => stress(&args, 100),
        Command::Soak(args) => stress(&args, 10_000),
        Command::Sweep {
            common,
            max_runs,
            entry_only,
        } => run_sweep(&common, max_runs, entry_only),
        Command::Bench {
            common,
            threads,
            seconds,
        } => run_bench(&common, threads, seconds),
        Command::Fltmc(args) => run_fltmc(&args),
        Command::Verify(args) => run_verify(&args),
        Command::LoadUnload {
            common,
            cycles,
            install,
        } => load_unload(&common, cycles, &install),
    }
}

/// Writes `value` as JSON to `path` if given; false (with a message) if it cannot.
fn write_json(path: Option<&Path>, value: &impl Serialize) -> bool {
    let Some(path) = path else { return true };
    let text = match serde_json::to_string_pretty(value) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("kernel-sim: JSON: {error}");
            return false;
        }
    };
    if let Err(error) = std::fs::write(path, text + "\n") {
        eprintln!("kernel-sim: {}: {error}", path.display());
        return false;
    }
    eprintln!("kernel-sim: report written to {}", path.display());
    true
}

fn exit(clean: bool, written: bool) -> ExitCode {
    if !written {
        ExitCode::from(2)
    } else if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn stress(args: &StressArgs, default_cycles: u64) -> ExitCode {
    let mut config = ScenarioConfig::vigil();
    apply_common(&mut config.base, &args.common);
    if !apply_install(&mut config.base, &args.install) {
        return ExitCode::from(2);
    }
    let parameters = format!("{}\\Parameters", config.base.service_key_path());
    if let Some(registry) = config.base.machine_registry.as_mut() {
        // The scenario's short timeouts and small ring, set over the INF's values as an
        // administrator would, so that installed runs cycle as fast as the others.
        for (name, value) in &config.base.registry {
            registry.set_value(&parameters, name, value.clone());
        }
    }
    config.duration = args.duration.map(Duration::from_secs_f64);
    config.cycles = match (args.cycles, config.duration) {
        (Some(cycles), _) => cycles,
        (None, Some(_)) => u64::MAX,
        (None, None) => default_cycles,
    };
    config.threads = args.threads;
    config.files_per_thread = args.files;
    config.reconnects = args.reconnects;
    config.vanish_every = args.vanish_every;
    config.race_every = args.race_every;
    config.unload = match args.unload {
        Unload::Mandatory => UnloadPlan::Mandatory,
        Unload::Optional => UnloadPlan::Optional,
        Unload::Alternate => UnloadPlan::Alternate,
    };
    match args.port.as_deref() {
        Some("none") => {
            config.port_name = None;
            config.commands.clear();
        }
        Some(port) => config.port_name = Some(port.to_owned()),
        None => {}
    }
    config.random_failures = args.random_failures.map(|rate| RandomFailures {
        seed: args.seed,
        per_million: per_million(rate),
    });
    if let Some(rate) = args.suspend_rate.filter(|rate| *rate > 0.0) {
        config.base.suspend = Some(SuspendPlan {
            rate: rate.min(1.0),
            seed: args.seed,
            max_delay: Duration::from_millis(50),
            never_share: 0.25,
            only_at: None,
        });
        config.reconnects = 0;
        config.vanish_every = 0;
    }
    let mut last_progress = Instant::now();
    let result = scenario::run_scenario(&args.common.image, &config, |p: &CycleProgress<'_>| {
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            let total = if config.cycles == u64::MAX {
                String::new()
            } else {
                format!("/{}", config.cycles)
            };
            eprintln!(
                "kernel-sim: cycle {}{total}, {:.1} cycles/s, {} callbacks, {} messages, {} violation(s) so far ({:.0?})",
                p.cycle,
                p.summary.cycle_rate(),
                p.summary.callbacks,
                p.summary.messages,
                p.summary.violations.len(),
                p.started.elapsed(),
            );
        }
    });
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("kernel-sim: {}: {error}", args.common.image.display());
            return ExitCode::from(2);
        }
    };
    println!("{}", summary.text());
    println!(
        "{}",
        if summary.is_clean() {
            "stress: clean"
        } else {
            "stress: VIOLATIONS"
        }
    );
    let written = write_json(args.common.json.as_deref(), &summary);
    exit(summary.is_clean(), written)
}

/// A probability in 0..1 as failures per million calls.
fn per_million(rate: f64) -> u32 {
    let scaled = (rate.clamp(0.0, 1.0) * 1_000_000.0).round();
    // In 0..=1e6 after the clamp: the conversion is exact.
    format!("{scaled:.0}").parse().unwrap_or(0)
}

#[derive(Serialize)]
struct SweepOutput {
    entry: vigil_kernel_sim::SweepReport,
    cycle: Option<vigil_kernel_sim::SweepReport>,
}

fn run_sweep(common: &Common, max_runs: u64, entry_only: bool) -> ExitCode {
    let started = Instant::now();
    let progress = |label: &'static str| {
        move |run: &vigil_kernel_sim::SweepRun| {
            let what = run.injected.as_ref().map_or_else(
                || "no failure reached: done".to_owned(),
                |f| format!("{} failed in {}", f.routine, f.callback),
            );
            eprintln!(
                "kernel-sim: {label} run {} ({what}): entry {}, {} violation(s)",
                run.n,
                run.entry_status.as_deref().unwrap_or("crashed"),
                run.violations.len()
            );
        }
    };
    let entry = match sweep(
        &common.image,
        &base_config(common),
        max_runs,
        progress("entry"),
    ) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("kernel-sim: {}: {error}", common.image.display());
            return ExitCode::from(2);
        }
    };
    let cycle = if entry_only {
        None
    } else {
        let mut config = ScenarioConfig::vigil();
        apply_common(&mut config.base, common);
        match scenario::sweep_scenario(&common.image, &config, max_runs, progress("cycle")) {
            Ok(report) => Some(report),
            Err(error) => {
                eprintln!("kernel-sim: {}: {error}", common.image.display());
                return ExitCode::from(2);
            }
        }
    };
    let mut clean = true;
    for (label, report) in [("entry", Some(&entry)), ("cycle", cycle.as_ref())] {
        let Some(report) = report else { continue };
        for (n, violation) in report.violations() {
            println!("{label} sweep, run {n}: {violation}");
        }
        println!(
            "{label} sweep: {} run(s), depth {} failable call(s), {}",
            report.runs.len(),
            report.depth,
            if report.is_clean() {
                "every run clean"
            } else {
                "VIOLATIONS"
            },
        );
        clean &= report.is_clean();
    }
    println!("sweep: {:.1?}", started.elapsed());
    let written = write_json(common.json.as_deref(), &SweepOutput { entry, cycle });
    exit(clean, written)
}

fn run_bench(common: &Common, threads: usize, seconds: f64) -> ExitCode {
    let duration = Duration::from_secs_f64(seconds.max(0.1));
    // The command's options (`--measurement` above all) apply to the bench as to every command.
    match scenario::bench_in(base_config(common), &common.image, threads, duration) {
        Ok(result) => {
            println!(
                "bench configuration: {}",
                match result.pool {
                    PoolKind::Standard => "measurement (standard pool, no stack poisoning)",
                    PoolKind::Special => "test (special pool, poisoned stacks)",
                }
            );
            println!(
                "bench: {} thread(s), {:.2}s: {} callbacks ({:.0}/s), {} operations ({:.0}/s), {} violation(s)",
                result.threads,
                result.seconds,
                result.callbacks,
                result.callbacks_per_sec,
                result.operations,
                result.operations_per_sec,
                result.violations.len()
            );
            for violation in &result.violations {
                println!("  {violation}");
            }
            let written = write_json(common.json.as_deref(), &result);
            exit(result.violations.is_empty(), written)
        }
        Err(error) => {
            eprintln!("kernel-sim: {}: {error}", common.image.display());
            ExitCode::from(2)
        }
    }
}

fn run_verify(args: &VerifyArgs) -> ExitCode {
    // Vigil's scenario is the one with a port client and commands; any other driver gets the
    // generic one (no client unless --port names its port).
    let vigil_port = args.port.as_deref() == Some(vigil_protocol::PORT_NAME);
    let mut scenario = if vigil_port {
        ScenarioConfig::vigil()
    } else {
        ScenarioConfig {
            port_name: args.port.clone(),
            ..ScenarioConfig::default()
        }
    };
    apply_common(&mut scenario.base, &args.common);
    if !apply_install(&mut scenario.base, &args.install) {
        return ExitCode::from(2);
    }
    let config = verify::VerifyConfig {
        scenario,
        load_unload_cycles: args.cycles,
        stress_cycles: args.cycles,
        max_sweep_runs: args.max_runs,
    };
    let started = Instant::now();
    let result = verify::verify(&args.common.image, &config, |stage| {
        eprintln!("kernel-sim: verify: {stage} ({:.1?})", started.elapsed());
    });
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("kernel-sim: {}: {error}", args.common.image.display());
            return ExitCode::from(2);
        }
    };
    print!("{}", report.text());
    println!(
        "verify: {} in {:.1?}",
        if report.is_clean() {
            "clean"
        } else {
            "RULES BROKEN"
        },
        started.elapsed()
    );
    let written = write_json(args.common.json.as_deref(), &report);
    exit(report.is_clean(), written)
}

fn load_unload(common: &Common, cycles: u64, install: &InstallArgs) -> ExitCode {
    let mut config = base_config(common);
    if !apply_install(&mut config, install) {
        return ExitCode::from(2);
    }
    let sim = Sim::new(config);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for cycle in 1..=cycles {
        let mut driver = match sim.load(&common.image) {
            Ok(driver) => driver,
            Err(error) => {
                eprintln!("kernel-sim: {}: {error}", common.image.display());
                return ExitCode::from(2);
            }
        };
        if let Some(status) = driver.entry_status().filter(|s| !NT_SUCCESS(*s)) {
            // The load failed: what `fltmc load` reports, by name, for people and tools.
            println!(
                "cycle {cycle}: load failed: DriverEntry returned {} ({:#010x})",
                status_name(status),
                status.cast_unsigned()
            );
            let report = driver.finish();
            println!("cycle {cycle}: {}", report.summary());
            let _ = write_json(common.json.as_deref(), &[report]);
            return ExitCode::from(1);
        }
        if driver.is_loaded() {
            let _ = driver.unload(UnloadKind::Mandatory);
        }
        let report = driver.finish();
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            eprintln!(
                "kernel-sim: cycle {cycle}/{cycles} ({:.1?})",
                started.elapsed()
            );
        }
        reports.push(report);
    }
    let broken = reports.iter().filter(|r| !r.is_clean()).count();
    for (index, report) in reports.iter().enumerate().filter(|(_, r)| !r.is_clean()) {
        println!("cycle {}: {}", index + 1, report.summary());
    }
    if let Some(last) = reports.last() {
        println!("last cycle: {}", last.summary());
    }
    println!(
        "{cycles} cycle(s) in {:.1?}: {} clean, {broken} with violations",
        started.elapsed(),
        reports.len() - broken
    );
    let written = write_json(common.json.as_deref(), &reports);
    exit(broken == 0, written)
}

/// `KIND:DEVICE` as a volume.
fn parse_volume(text: &str) -> Option<(VolumeKind, String)> {
    let (kind, device) = text.split_once(':')?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "ntfs" => VolumeKind::Ntfs,
        "refs" => VolumeKind::Refs,
        "fat" => VolumeKind::Fat,
        "exfat" => VolumeKind::ExFat,
        "network" => VolumeKind::Network,
        _ => return None,
    };
    Some((kind, device.to_owned()))
}

/// The commands as word lists: split at `;` words and at words ending with `;`.
fn split_commands(words: &[String]) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    for word in words {
        let (word, ends) = match word.strip_suffix(';') {
            Some(rest) => (rest, true),
            None => (word.as_str(), false),
        };
        if !word.is_empty() {
            commands
                .last_mut()
                .expect("never empty")
                .push(word.to_owned());
        }
        if ends {
            commands.push(Vec::new());
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// Runs one `fltmc` command; its failure as text.
fn fltmc_command(machine: &mut Fltmc, words: &[String]) -> Result<(), String> {
    let word = |i: usize| words.get(i).map(String::as_str);
    let usage = || format!("cannot read {:?}", words.join(" "));
    match (word(0), word(1), word(2)) {
        (Some("load"), Some(name), None) => machine.load(name).map_err(|e| e.to_string()),
        (Some("unload"), Some(name), option) => {
            let kind = match option {
                None => UnloadKind::Optional,
                Some("--mandatory" | "-m") => UnloadKind::Mandatory,
                Some(_) => return Err(usage()),
            };
            machine.unload(name, kind).map_err(|e| e.to_string())
        }
        (Some("filters"), None, None) => {
            println!("Filter Name                     Num Instances    Altitude    Frame");
            for row in machine.filters() {
                println!(
                    "{:<32}{:>13}    {:>8}    {:>5}",
                    row.name, row.instances, row.altitude, 0
                );
            }
            Ok(())
        }
        (Some("instances"), None, None) => {
            println!("Filter      Volume Name                       Altitude    Instance Name");
            for row in machine.instances() {
                println!(
                    "{:<12}{:<34}{:>8}    {}",
                    row.filter, row.volume, row.altitude, row.instance
                );
            }
            Ok(())
        }
        (Some("attach"), Some(name), Some(volume)) => {
            let (mut instance, mut altitude) = (None, None);
            for pair in words[3..].chunks(2) {
                match pair {
                    [flag, value] if flag == "-i" => instance = Some(value.as_str()),
                    [flag, value] if flag == "-a" => altitude = Some(value.as_str()),
                    _ => return Err(usage()),
                }
            }
            machine
                .attach(name, volume, instance, altitude)
                .map_err(|e| e.to_string())
        }
        (Some("detach"), Some(name), Some(volume)) if words.len() == 3 => {
            machine.detach(name, volume).map_err(|e| e.to_string())
        }
        _ => Err(usage()),
    }
}

fn run_fltmc(args: &FltmcArgs) -> ExitCode {
    let mut config = base_config(&args.common);
    if !apply_install(&mut config, &args.install) {
        return ExitCode::from(2);
    }
    if args.volumes.is_empty() {
        config.io.volumes.push((
            VolumeKind::Ntfs,
            vigil_kernel_sim::fixtures::NTFS.to_owned(),
        ));
    }
    for text in &args.volumes {
        let Some(volume) = parse_volume(text) else {
            eprintln!(
                "kernel-sim: --volume {text}: expected KIND:DEVICE (ntfs:\\Device\\HarddiskVolume1)"
            );
            return ExitCode::from(2);
        };
        config.io.volumes.push(volume);
    }
    let mut machine = Fltmc::new(config, &args.common.image);
    let mut failures = 0_usize;
    for words in split_commands(&args.commands) {
        println!("> fltmc {}", words.join(" "));
        if let Err(error) = fltmc_command(&mut machine, &words) {
            failures += 1;
            println!("{} failed: {error}", words[0]);
        }
    }
    let reports = machine.finish();
    let broken = reports.iter().filter(|r| !r.is_clean()).count();
    for report in &reports {
        println!("{}", report.summary());
    }
    let written = write_json(args.common.json.as_deref(), &reports);
    exit(failures == 0 && broken == 0, written)
}
