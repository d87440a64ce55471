//! `cargo xtask test`: the README's test command. Runs every check in sequence, stops at the
//! first failure, and prints a line per stage with its duration.

use std::process::Command;
use std::time::Instant;

use xtask::{Baseline, DRIVER_TARGET, Twin, Variant, build_driver, workspace_root};

/// One step of the test run.
struct Stage {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    /// Extra environment, e.g. `RUSTFLAGS` for loom.
    env: &'static [(&'static str, &'static str)],
}

/// Crates that compile for the Windows kernel target (the driver and its `no_std` dependencies).
const KERNEL_CRATES: &[&str] = &[
    "-p",
    "vigil",
    "-p",
    "vigil-sys",
    "-p",
    "vigil-protocol",
    "-p",
    "vigil-core",
];

fn stages() -> Vec<Stage> {
    vec![
        Stage {
            name: "format",
            program: "cargo",
            args: &["fmt", "--all", "--check"],
            env: &[],
        },
        Stage {
            // Every crate with every target, the demo crate (`vigil-demo`: the service with
            // kernel-sim, its tests and bench) included.
            name: "clippy (host)",
            program: "cargo",
            args: &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            env: &[],
        },
        Stage {
            // The service's Windows half (fltlib client, SCM service) only compiles there.
            name: "clippy (service for Windows: x86_64-pc-windows-gnu)",
            program: "cargo",
            args: &[
                "clippy",
                "-p",
                "vigil-service",
                "--target",
                "x86_64-pc-windows-gnu",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            env: &[],
        },
        Stage {
            // Broken intra-doc links and malformed doc comments fail the run.
            name: "docs (rustdoc, warnings denied)",
            program: "cargo",
            args: &["doc", "--workspace", "--no-deps", "--locked"],
            env: &[("RUSTDOCFLAGS", "-D warnings")],
        },
        Stage {
            name: "tests (host, including kernel-sim and PE lint)",
            program: "cargo",
            // The demo crate's tests have their own stage, next.
            args: &["test", "--workspace", "--exclude", "vigil-demo", "--locked"],
            env: &[],
        },
        Stage {
            // The end-to-end tests of the service against the real vigil.sys in kernel-sim
            // (crates/demo/tests/sim_*.rs), and the demo crate's own.
            name: "tests (service end to end in kernel-sim: vigil-demo)",
            program: "cargo",
            args: &["test", "-p", "vigil-demo", "--locked"],
            env: &[],
        },
        Stage {
            // The cross-built vigil.exe under Wine's service control manager (wine64, which
            // .ci/run installs): install, start to RUNNING, stop, uninstall, a bad policy's exit
            // code, no driver. Wine cannot show the real FltLib or ACL enforcement.
            name: "service under Wine's service control manager (crates/service/tests/wine.rs)",
            program: "cargo",
            args: &[
                "test",
                "-p",
                "vigil-service",
                "--test",
                "wine",
                "--locked",
                "--",
                "--ignored",
            ],
            env: &[],
        },
        Stage {
            name: "loom models of vigil-core (each with broken twins loom must reject)",
            program: "cargo",
            args: &[
                "test",
                "-p",
                "vigil-core",
                "--release",
                "--locked",
                "--test",
                "loom_*",
            ],
            // Its own target directory: `--cfg loom` rebuilds everything differently.
            env: &[
                ("RUSTFLAGS", "--cfg loom"),
                ("CARGO_TARGET_DIR", "target/loom"),
            ],
        },
    ]
}

/// Runs every stage; `--quick` skips nothing today but is accepted for local use.
pub fn run_all(_args: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let root = workspace_root();
    let stage_started = Instant::now();
    let image = build_driver(&Variant::production()).map_err(|e| e.to_string())?;
    println!(
        "==> vigil.sys: {} ({:.1}s)",
        image.display(),
        stage_started.elapsed().as_secs_f64()
    );

    let kernel_clippy = {
        let mut args = vec!["clippy", "--lib", "--locked", "--target", DRIVER_TARGET];
        args.extend_from_slice(KERNEL_CRATES);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        args
    };
    run(
        "clippy (windows kernel target)",
        "cargo",
        &kernel_clippy,
        &[],
        &root,
    )?;
    // Each test-only build once more: a twin's branches on `twins::is` are linted above, but its
    // `#[cfg(vigil_twin = ...)]` items exist only in its own build. Only the driver package is
    // checked again (its dependencies do not see the variable).
    let test_builds = Twin::ALL
        .iter()
        .map(|twin| (Twin::ENV, twin.name()))
        .chain(Baseline::ALL.iter().map(|b| (Baseline::ENV, b.name())));
    for (var, name) in test_builds {
        run(
            &format!("clippy (windows kernel target, {var}={name})"),
            "cargo",
            &[
                "clippy",
                "--lib",
                "--locked",
                "--quiet",
                "--target",
                DRIVER_TARGET,
                "-p",
                "vigil",
                "--",
                "-D",
                "warnings",
            ],
            &[(var, name)],
            &root,
        )?;
    }
    for stage in stages() {
        run(stage.name, stage.program, stage.args, stage.env, &root)?;
    }
    println!(
        "==> all stages passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run(
    name: &str,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    root: &std::path::Path,
) -> Result<(), String> {
    println!("==> {name}: {program} {}", args.join(" "));
    let started = Instant::now();
    // A twin or baseline selected in the shell never leaks into a stage: each selects its own.
    let status = Command::new(program)
        .args(args)
        .env_remove(Twin::ENV)
        .env_remove(Baseline::ENV)
        .envs(env.iter().copied())
        .current_dir(root)
        .status()
        .map_err(|e| format!("{name}: could not run {program}: {e}"))?;
    if !status.success() {
        return Err(format!("stage '{name}' failed ({status})"));
    }
    println!("==> {name}: ok ({:.1}s)", started.elapsed().as_secs_f64());
    Ok(())
}
