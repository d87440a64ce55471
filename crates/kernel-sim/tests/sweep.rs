//! The fault sweep over DriverEntry (and unload): every failable call failed in turn.

mod common;

use vigil_kernel_sim::{SimConfig, sweep};

#[test]
fn every_injected_failure_unwinds_cleanly() {
    let report = sweep(&common::vigil_image(), &SimConfig::default(), 1_000, |_| {})
        .expect("vigil.sys loads");
    let violations: Vec<String> = report
        .violations()
        .iter()
        .map(|(n, v)| format!("run {n}: {v}"))
        .collect();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    assert!(
        report.depth >= 5,
        "DriverEntry makes several failable calls (depth {})",
        report.depth
    );
    assert_eq!(
        report.runs.len() as u64,
        report.depth + 1,
        "one run per failable call, then a clean one"
    );
    for run in &report.runs[..report.runs.len() - 1] {
        let injected = run.injected.as_ref().expect("an injected failure");
        if injected.callback == "DriverEntry" {
            // A failure DriverEntry cannot absorb must fail the load; one it absorbs (a
            // registry read falling back to defaults) may not. Either way nothing leaked.
            assert!(
                run.entry_status.is_some(),
                "run {}: DriverEntry returned",
                run.n
            );
        }
    }
    let last = report.runs.last().expect("runs");
    assert!(last.injected.is_none() && last.entry_status.as_deref() == Some("0x00000000"));
}
