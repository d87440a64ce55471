//! `kernel-sim bench`, the command line other tools call: its options apply (`--measurement`
//! selects the measurement configuration), and its last line keeps the shape they parse:
//! `bench: T thread(s), ...: N callbacks (R/s), ...`.

mod common;

use std::process::Command;

/// Runs `kernel-sim bench` on vigil.sys with `extra` options; returns its standard output.
fn bench(extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
        .arg("bench")
        .arg("--image")
        .arg(common::vigil_image())
        .args(["--threads", "1", "--seconds", "0.2"])
        .args(extra)
        .output()
        .expect("kernel-sim runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn bench_runs_in_the_configuration_asked_for_and_keeps_its_last_line() {
    for (extra, configuration) in [
        (&[][..], "bench configuration: test"),
        (&["--measurement"][..], "bench configuration: measurement"),
    ] {
        let stdout = bench(extra);
        assert!(stdout.contains(configuration), "{extra:?}: {stdout}");
        let last = stdout.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("bench: 1 thread(s), ") && last.contains(" callbacks ("),
            "{extra:?}: last line {last:?}"
        );
    }
}
