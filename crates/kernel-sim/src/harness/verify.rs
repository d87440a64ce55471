//! `verify`: one command that puts a minifilter through everything kernel-sim knows how to do
//! to it (bare load/unload cycles, the stress scenario with I/O and unload races, and the two
//! fault sweeps) and reports what broke the way Driver Verifier's Filter Verifier does: one
//! line per rule, with the routine that caught it, the driver entry point that was running
//! (the caller) and how often it happened.
//!
//! Every stage runs whatever the earlier ones found, so one report names every rule the driver
//! breaks; a stage whose image cannot be loaded ends the run with the loader's error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::config::UnloadKind;
use crate::harness::scenario::{self, ScenarioConfig};
use crate::harness::sweep::{self, SweepReport};
use crate::image::LoadError;
use crate::report::{Violation, ViolationKind};
use crate::sim::Sim;

/// What `verify` runs.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// The scenario of the stress stage and of the cycle sweep; its `base` is the machine of
    /// every stage (registry, volumes, checks).
    pub scenario: ScenarioConfig,
    /// Bare load/unload cycles.
    pub load_unload_cycles: u64,
    /// Stress cycles.
    pub stress_cycles: u64,
    /// Upper bound on the runs of each fault sweep.
    pub max_sweep_runs: u64,
}

/// One stage's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct StageOutcome {
    /// `load-unload`, `stress`, `sweep (load + unload)` or `sweep (cycle)`.
    pub name: &'static str,
    /// Cycles or runs made.
    pub runs: u64,
    /// Violations found (each counted once per run it occurred in).
    pub violations: u64,
    /// Pool blocks still allocated at the end of some run (stress only).
    pub leaked_blocks: u64,
}

/// One line of the report: a rule broken, where, and how often.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The check's class.
    pub kind: ViolationKind,
    /// The rule, as the check states it.
    pub rule: String,
    /// The emulated routine that caught it (empty when no routine was running).
    pub routine: String,
    /// The driver entry point that was running (DriverEntry, a callback, a system thread...).
    pub caller: String,
    /// Occurrences over all stages.
    pub count: u64,
    /// The first occurrence's message.
    pub example: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The image.
    pub image: String,
    /// The stages in the order they ran.
    pub stages: Vec<StageOutcome>,
    /// The rules broken, most frequent first.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// No rule broken and nothing leaked.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.stages.iter().all(|s| s.leaked_blocks == 0)
    }

    /// The report as text: the stages, then the Filter Verifier–style table.
    pub fn text(&self) -> String {
        // Writing into a String cannot fail.
        let mut out = String::new();
        let _ = writeln!(out, "kernel-sim verify: {}", self.image);
        for stage in &self.stages {
            let leaked = if stage.leaked_blocks > 0 {
                format!(", {} block(s) leaked", stage.leaked_blocks)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<22} {:>6} run(s), {} violation(s){leaked}",
                stage.name, stage.runs, stage.violations
            );
        }
        if self.findings.is_empty() {
            out.push_str("no rule broken\n");
            return out;
        }
        let _ = writeln!(
            out,
            "{} rule(s) broken:\n{:>7}  {:<18} {:<28} {:<24} rule",
            self.findings.len(),
            "count",
            "kind",
            "routine",
            "caller"
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:>7}  {:<18} {:<28} {:<24} {}\n{:>9}e.g. {}",
                f.count,
                format!("{:?}", f.kind),
                dash_if_empty(&f.routine),
                dash_if_empty(&f.caller),
                f.rule,
                "",
                f.example
            );
        }
        out
    }
}

fn dash_if_empty(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

/// Tallies violations by (kind, rule, routine, caller).
#[derive(Default)]
struct Tally {
    findings: BTreeMap<(String, String, String, String), Finding>,
}

impl Tally {
    fn add(&mut self, violation: &Violation) {
        let key = (
            format!("{:?}", violation.kind),
            violation.rule.clone(),
            violation.routine.clone(),
            violation.callback.clone(),
        );
        self.findings
            .entry(key)
            .and_modify(|f| f.count += 1)
            .or_insert_with(|| Finding {
                kind: violation.kind,
                rule: violation.rule.clone(),
                routine: violation.routine.clone(),
                caller: violation.callback.clone(),
                count: 1,
                example: violation.message.clone(),
            });
    }

    fn into_findings(self) -> Vec<Finding> {
        let mut findings: Vec<Finding> = self.findings.into_values().collect();
        findings.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
        findings
    }
}

/// Runs every stage on `image`; `progress` hears each stage's name as it starts.
///
/// # Errors
///
/// The loader refuses the image (an import kernel-sim does not emulate, a bad PE...).
pub fn verify(
    image: &Path,
    config: &VerifyConfig,
    mut progress: impl FnMut(&str),
) -> Result<VerifyReport, LoadError> {
    let mut tally = Tally::default();
    let mut stages = Vec::new();

    progress("load-unload");
    let sim = Sim::new(config.scenario.base.clone());
    let mut found = 0;
    for _ in 0..config.load_unload_cycles {
        let mut driver = sim.load(image)?;
        if driver.is_loaded() {
            let _ = driver.unload(UnloadKind::Mandatory);
        }
        for violation in &driver.finish().violations {
            tally.add(violation);
            found += 1;
        }
    }
    stages.push(StageOutcome {
        name: "load-unload",
        runs: config.load_unload_cycles,
        violations: found,
        leaked_blocks: 0,
    });

    progress("stress");
    let mut stress = config.scenario.clone();
    stress.cycles = config.stress_cycles;
    stress.duration = None;
    let summary = scenario::run_scenario(image, &stress, |_| {})?;
    for v in &summary.violations {
        tally.add(&v.violation);
    }
    stages.push(StageOutcome {
        name: "stress",
        runs: summary.cycles,
        violations: summary.violations.len() as u64,
        leaked_blocks: summary.leaked_blocks,
    });

    progress("sweep (load + unload)");
    let entry = sweep::sweep(image, &config.scenario.base, config.max_sweep_runs, |_| {})?;
    stages.push(sweep_stage("sweep (load + unload)", &entry, &mut tally));

    progress("sweep (cycle)");
    let cycle = scenario::sweep_scenario(image, &config.scenario, config.max_sweep_runs, |_| {})?;
    stages.push(sweep_stage("sweep (cycle)", &cycle, &mut tally));

    Ok(VerifyReport {
        image: image.display().to_string(),
        stages,
        findings: tally.into_findings(),
    })
}

fn sweep_stage(name: &'static str, report: &SweepReport, tally: &mut Tally) -> StageOutcome {
    let violations = report.violations();
    for (_, violation) in &violations {
        tally.add(violation);
    }
    StageOutcome {
        name,
        runs: report.runs.len() as u64,
        violations: violations.len() as u64,
        leaked_blocks: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(rule: &str, routine: &str, callback: &str) -> Violation {
        Violation {
            kind: ViolationKind::Irql,
            rule: rule.into(),
            message: format!("{rule} broken"),
            routine: routine.into(),
            callback: callback.into(),
            fatal: false,
        }
    }

    #[test]
    fn findings_are_one_line_per_rule_routine_and_caller_most_frequent_first() {
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.add(&violation("B: IRQL <= APC_LEVEL", "FltB", "PreWrite"));
        }
        tally.add(&violation("A: IRQL <= APC_LEVEL", "FltA", "PreCreate"));
        tally.add(&violation("B: IRQL <= APC_LEVEL", "FltB", "PostCreate"));
        let findings = tally.into_findings();
        let lines: Vec<(u64, &str, &str)> = findings
            .iter()
            .map(|f| (f.count, f.rule.as_str(), f.caller.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (3, "B: IRQL <= APC_LEVEL", "PreWrite"),
                (1, "A: IRQL <= APC_LEVEL", "PreCreate"),
                (1, "B: IRQL <= APC_LEVEL", "PostCreate"),
            ]
        );
        let report = VerifyReport {
            image: "x.sys".into(),
            stages: Vec::new(),
            findings,
        };
        assert!(!report.is_clean());
        assert!(
            report.text().contains("3 rule(s) broken"),
            "{}",
            report.text()
        );
    }
}
