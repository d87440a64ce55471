//! `kernel-sim`: run a minifilter image on Linux from the command line.
//!
//! * `kernel-sim load-unload --image PATH --cycles N [--json]`: N load/unload cycles in one
//!   process, each with its own report.
//! * `kernel-sim sweep --image PATH [--json]`: the fault-injection sweep over load + unload.
//!
//! Progress goes to stderr on long runs; the summary names every violation; the exit status is
//! 1 when any rule was broken, 2 when the image could not be loaded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use vigil_kernel_sim::{Report, Sim, SimConfig, UnloadKind, sweep};

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
    /// Load and unload the image repeatedly.
    LoadUnload {
        /// The driver image (.sys); a .pdb beside it gives symbols.
        #[arg(long)]
        image: PathBuf,
        /// Number of load/unload cycles.
        #[arg(long, default_value_t = 1)]
        cycles: u64,
        /// Print the reports as JSON (one array) instead of a summary.
        #[arg(long)]
        json: bool,
        /// Do not flag waits without a timeout (a Vigil policy).
        #[arg(long)]
        allow_infinite_waits: bool,
    },
    /// Fail the N-th failable call for N = 1, 2, ... until a run reaches no failure.
    Sweep {
        /// The driver image (.sys).
        #[arg(long)]
        image: PathBuf,
        /// Upper bound on the number of runs.
        #[arg(long, default_value_t = 10_000)]
        max_runs: u64,
        /// Print the sweep report as JSON.
        #[arg(long)]
        json: bool,
        /// Do not flag waits without a timeout (a Vigil policy).
        #[arg(long)]
        allow_infinite_waits: bool,
    },
}

fn config(allow_infinite_waits: bool) -> SimConfig {
    SimConfig {
        flag_infinite_waits: !allow_infinite_waits,
        ..SimConfig::default()
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::LoadUnload {
            image,
            cycles,
            json,
            allow_infinite_waits,
        } => load_unload(&image, cycles, json, allow_infinite_waits),
        Command::Sweep {
            image,
            max_runs,
            json,
            allow_infinite_waits,
        } => run_sweep(&image, max_runs, json, allow_infinite_waits),
    }
}

fn load_unload(image: &Path, cycles: u64, json: bool, allow_infinite_waits: bool) -> ExitCode {
    let sim = Sim::new(config(allow_infinite_waits));
    let started = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for cycle in 1..=cycles {
        let mut driver = match sim.load(image) {
            Ok(driver) => driver,
            Err(error) => {
                eprintln!("kernel-sim: {}: {error}", image.display());
                return ExitCode::from(2);
            }
        };
        if driver.is_loaded() {
            let _ = driver.unload(UnloadKind::Mandatory);
        }
        let report = driver.finish();
        if cycles >= 10 && (cycle % (cycles / 10).max(1) == 0 || cycle == cycles) {
            eprintln!(
                "kernel-sim: cycle {cycle}/{cycles} ({:.1?})",
                started.elapsed()
            );
        }
        reports.push(report);
    }
    let broken = reports.iter().filter(|r| !r.is_clean()).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
    } else {
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
    }
    if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_sweep(image: &Path, max_runs: u64, json: bool, allow_infinite_waits: bool) -> ExitCode {
    let started = Instant::now();
    let result = sweep(image, &config(allow_infinite_waits), max_runs, |run| {
        if !json {
            let what = run.injected.as_ref().map_or_else(
                || "no failure reached: done".to_owned(),
                |f| format!("{} failed in {}", f.routine, f.callback),
            );
            eprintln!(
                "kernel-sim: run {} ({what}): entry {}, {} violation(s)",
                run.n,
                run.entry_status.as_deref().unwrap_or("crashed"),
                run.violations.len()
            );
        }
    });
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("kernel-sim: {}: {error}", image.display());
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for (n, violation) in report.violations() {
            println!("run {n}: {violation}");
        }
        println!(
            "sweep: {} run(s), depth {} failable call(s), {} in {:.1?}",
            report.runs.len(),
            report.depth,
            if report.is_clean() {
                "every run clean"
            } else {
                "VIOLATIONS"
            },
            started.elapsed()
        );
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
