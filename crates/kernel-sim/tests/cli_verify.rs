//! `kernel-sim verify`, the one command a minifilter developer runs: load/unload cycles, stress
//! and both fault sweeps, then a Filter Verifier–style report. Production vigil.sys comes out
//! clean (exit 0); a broken twin that releases a name twice comes out with the rule, the
//! routine that caught it and the callers, counted (exit 1).

mod common;

use std::process::{Command, Output};

fn verify(image: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("verify")
        .arg("--image")
        .arg(image)
        .args(["--port", r"\VigilPort", "--cycles", "5", "--max-runs", "40"])
        .output()
        .expect("kernel-sim runs")
}

#[test]
fn production_is_clean_and_a_double_release_is_reported_by_rule_routine_and_caller() {
    let clean = verify(&common::vigil_image());
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{clean:?}");
    for stage in [
        "load-unload",
        "stress",
        "sweep (load + unload)",
        "sweep (cycle)",
    ] {
        assert!(stdout.contains(stage), "{stage}: {stdout}");
    }
    assert!(stdout.contains("no rule broken"), "{stdout}");

    let twin = xtask::build_driver(&xtask::Variant::twin(xtask::Twin::DoubleRelease))
        .expect("building the double-release twin");
    let broken = verify(&twin);
    let stdout = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    let row = stdout
        .lines()
        .find(|line| line.contains("FltReleaseFileNameInformation") && line.contains("RULES.md 19"))
        .unwrap_or_else(|| panic!("no row for the over-release: {stdout}"));
    let count: u64 = row
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count first: {row}"));
    assert!(count > 0, "{row}");
    assert!(row.contains("OverRelease"), "{row}");
    assert!(stdout.contains("RULES BROKEN"), "{stdout}");
}
