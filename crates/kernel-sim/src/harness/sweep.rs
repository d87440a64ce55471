//! The systematic fault sweep: for N = 1, 2, ... load the driver with the N-th failable call
//! failed, unload it if DriverEntry succeeded, and check that every run ends cleanly (an error
//! status or a normal load, no leak, no violation), until a run completes without reaching N.

use std::path::Path;

use serde::Serialize;

use crate::config::{SimConfig, UnloadKind};
use crate::image::LoadError;
use crate::report::{InjectedFault, Report, Violation};
use crate::sim::Sim;

/// One run of the sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRun {
    /// The failable call that was failed.
    pub n: u64,
    /// What was failed (None if the run never reached call N: the end of the sweep).
    pub injected: Option<InjectedFault>,
    /// DriverEntry's status.
    pub entry_status: Option<String>,
    /// The unload outcome.
    pub unload: Option<String>,
    /// Violations of the run.
    pub violations: Vec<Violation>,
}

/// The sweep's result.
#[derive(Clone, Debug, Serialize)]
pub struct SweepReport {
    /// Every run, in order; the last one reached no injection.
    pub runs: Vec<SweepRun>,
    /// Failable calls of an uninjected run (the sweep depth).
    pub depth: u64,
}

impl SweepReport {
    /// True when every run ended without violations.
    pub fn is_clean(&self) -> bool {
        self.runs.iter().all(|r| r.violations.is_empty())
    }

    /// Violations of all runs, with the run's N.
    pub fn violations(&self) -> Vec<(u64, &Violation)> {
        self.runs
            .iter()
            .flat_map(|r| r.violations.iter().map(move |v| (r.n, v)))
            .collect()
    }
}

/// Runs the sweep over load + mandatory unload of `image`, with `base` for everything but the
/// fault plan. `progress` is called after each run. Stops at `max_runs` at the latest.
///
/// # Errors
///
/// The loader refuses the image (see [`LoadError`]).
pub fn sweep(
    image: &Path,
    base: &SimConfig,
    max_runs: u64,
    progress: impl FnMut(&SweepRun),
) -> Result<SweepReport, LoadError> {
    sweep_runs(max_runs, progress, |n| {
        let mut config = base.clone();
        config.faults.fail_nth = Some(n);
        config.faults.random = None;
        let sim = Sim::new(config);
        let mut driver = sim.load(image)?;
        if driver.is_loaded() {
            let _ = driver.unload(UnloadKind::Mandatory);
        }
        Ok(driver.finish())
    })
}

/// The sweep's loop, shared by every kind of sweep: `run_nth(n)` runs once with the N-th
/// failable call failed and returns its report; the sweep stops at the first run whose
/// injection was never reached (its depth is that run's failable-call count), or after
/// `max_runs` (depth = runs made).
pub(crate) fn sweep_runs<E>(
    max_runs: u64,
    mut progress: impl FnMut(&SweepRun),
    mut run_nth: impl FnMut(u64) -> Result<Report, E>,
) -> Result<SweepReport, E> {
    let mut runs = Vec::new();
    for n in 1..=max_runs {
        let report = run_nth(n)?;
        let run = SweepRun {
            n,
            injected: report.injected.first().cloned(),
            entry_status: report.entry_status.clone(),
            unload: report.unload.clone(),
            violations: report.violations.clone(),
        };
        progress(&run);
        let done = run.injected.is_none();
        runs.push(run);
        if done {
            return Ok(SweepReport {
                runs,
                depth: report.failable_calls,
            });
        }
    }
    let depth = runs.len() as u64;
    Ok(SweepReport { runs, depth })
}
