//! Shared by the C minifilter test binaries: building a filter or one of its broken twins
//! (skipping with a message when clang is missing outside CI), running `kernel-sim verify` on
//! it, and reading its report.

#![allow(dead_code, reason = "each test binary uses a subset of these helpers")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::CBuildError;

/// Builds `name` (or its `twin`); `None` when clang is missing outside CI.
pub fn build(name: &str, twin: Option<&str>) -> Option<PathBuf> {
    let built = match twin {
        None => xtask::build_c_minifilter(name),
        Some(twin) => xtask::build_c_minifilter_twin(name, twin),
    };
    match built {
        Ok(image) => Some(image),
        Err(error @ CBuildError::ToolMissing { .. }) if std::env::var_os("CI").is_none() => {
            // Straight to stderr, past the test harness's capture: a skip is never silent.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: cannot build the C minifilter {name}: {error} (set CI to make this a failure)"
            );
            None
        }
        Err(error) => panic!("building the C minifilter {name} ({twin:?}): {error}"),
    }
}

pub fn verify(image: &Path, port: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kernel-sim"));
    command
        .arg("verify")
        .arg("--image")
        .arg(image)
        .args(["--cycles", "4", "--max-runs", "40"]);
    if let Some(port) = port {
        command.args(["--port", port]);
    }
    command.output().expect("kernel-sim runs")
}

/// Asserts a clean verify: exit 0, every stage ran, no rule broken.
pub fn assert_clean(image: &Path, port: Option<&str>) {
    let output = verify(image, port);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for stage in [
        "load-unload",
        "stress",
        "sweep (load + unload)",
        "sweep (cycle)",
    ] {
        assert!(stdout.contains(stage), "{stage}: {stdout}");
    }
    assert!(stdout.contains("no rule broken"), "{stdout}");
}

/// Asserts that verify fails (exit 1) with a row naming `kind`, `routine`, `caller` and `rule`,
/// counted at least once. Returns the report, for the details a test checks beyond the row.
pub fn assert_caught(
    image: &Path,
    port: Option<&str>,
    kind: &str,
    routine: &str,
    caller: &str,
    rule: &str,
) -> String {
    let output = verify(image, port);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let row = stdout
        .lines()
        .find(|line| line.contains(routine) && line.contains(rule))
        .unwrap_or_else(|| panic!("no row for {routine} / {rule}: {stdout}"));
    let count: u64 = row
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count first: {row}"));
    assert!(count > 0, "{row}");
    assert!(row.contains(kind), "{kind}: {row}");
    assert!(row.contains(caller), "{caller}: {row}");
    assert!(stdout.contains("RULES BROKEN"), "{stdout}");
    stdout.into_owned()
}

/// What `verify` must report for a broken twin: the row's violation kind, the routine that
/// caught it, the driver function that was running and the rule.
#[derive(Clone, Copy)]
pub struct Caught<'a> {
    pub kind: &'a str,
    pub routine: &'a str,
    pub caller: &'a str,
    pub rule: &'a str,
}

/// Builds C minifilter `name`, asserts that it verifies clean, then builds its `twin` and
/// asserts that verify catches it as `caught`. Returns the twin's report, or `None` when clang
/// is missing outside CI (see [`build`]).
pub fn clean_and_caught(
    name: &str,
    port: Option<&str>,
    twin: &str,
    caught: Caught<'_>,
) -> Option<String> {
    let image = build(name, None)?;
    assert_clean(&image, port);
    twin_caught(name, port, twin, caught)
}

/// Builds `twin` of C minifilter `name` and asserts that verify catches it as `caught`.
/// Returns the report, or `None` when clang is missing outside CI (see [`build`]).
pub fn twin_caught(
    name: &str,
    port: Option<&str>,
    twin: &str,
    caught: Caught<'_>,
) -> Option<String> {
    let image = build(name, Some(twin))?;
    Some(assert_caught(
        &image,
        port,
        caught.kind,
        caught.routine,
        caught.caller,
        caught.rule,
    ))
}

/// Waits (at most 10 s) until the driver has called `routine` `calls` times: the C filters
/// do some of their work on work-item threads, which a test must let finish before it unloads.
pub fn wait_for_calls(driver: &vigil_kernel_sim::Driver, routine: &str, calls: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while driver.routine_calls().get(routine).copied().unwrap_or(0) < calls
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// What the driver printed (`DbgPrint`), line by line.
pub fn trace(report: &vigil_kernel_sim::Report) -> Vec<&str> {
    report
        .debug_output
        .iter()
        .map(|line| line.text.as_str())
        .collect()
}

/// Asserts how many times the driver called each routine.
pub fn assert_calls(report: &vigil_kernel_sim::Report, expected: &[(&str, u64)]) {
    for &(routine, calls) in expected {
        assert_eq!(report.routine_calls.get(routine), Some(&calls), "{routine}");
    }
}
