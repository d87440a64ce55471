//! `cargo xtask`: Vigil's developer commands.
//!
//! * `cargo xtask build [--twin NAME | --baseline NAME]`: cross-builds `vigil.sys` (or a
//!   test-only build: a broken twin, a benchmark baseline), lints it, and prints its path.
//! * `cargo xtask imports`: builds `vigil.sys` and prints its size and import table.
//! * `cargo xtask demo`: builds `vigil.sys`, then runs it in kernel-sim with the service
//!   (`vigil-demo`, see the README).
//! * `cargo xtask test`: every test and check, in the order CI runs them (see README).

use std::process::{Command, ExitCode};

use xtask::{Baseline, Twin, Variant, build_driver, workspace_root};

mod stages;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(&args[1..]),
        Some("imports") => imports(),
        Some("demo") => demo(&args[1..]),
        Some("test") => stages::run_all(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <build [--twin NAME | --baseline NAME] | imports | demo | test \
                 [--quick]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build(args: &[String]) -> Result<(), String> {
    let variant = match args {
        [] => Variant::production(),
        [flag, name] if flag == "--twin" => {
            Variant::twin(Twin::from_name(name).map_err(|e| e.to_string())?)
        }
        [flag, name] if flag == "--baseline" => {
            Variant::baseline(Baseline::from_name(name).map_err(|e| e.to_string())?)
        }
        _ => return Err("build takes no argument, --twin NAME or --baseline NAME".into()),
    };
    let image = build_driver(&variant).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    let findings = xtask::lint::lint_driver_image(&bytes);
    for finding in &findings {
        eprintln!("lint: {finding}");
    }
    if !findings.is_empty() {
        return Err(format!(
            "{} lint finding(s) in {}",
            findings.len(),
            image.display()
        ));
    }
    println!("{}", image.display());
    Ok(())
}

/// Builds vigil.sys, then runs `vigil-demo` on it (extra arguments are passed on).
fn demo(args: &[String]) -> Result<(), String> {
    let image = build_driver(&Variant::production()).map_err(|e| e.to_string())?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "vigil-demo",
            "--bin",
            "vigil-demo",
            "--",
            "--image",
        ])
        .arg(&image)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cargo run vigil-demo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the demo failed ({status})"))
    }
}

fn imports() -> Result<(), String> {
    let image = build_driver(&Variant::production()).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    println!("{} ({} bytes)", image.display(), bytes.len());
    for (module, routines) in xtask::lint::imports_of(&bytes)? {
        println!("{module}");
        for routine in routines {
            println!("    {routine}");
        }
    }
    Ok(())
}
