//! The command line: `check-policy`, the Linux behaviour of commands that need the driver or
//! Windows, and `run`, `status`, `stats` with a supplied port client (the fake driver), as an
//! embedding program such as the kernel-sim demo supplies one. Plus the real binary's exit codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fake::FakeDriver;
use vigil_service::cli::{BoxedClient, Cli, Context, execute};
use vigil_service::{ClientError, Connector, ServiceControl};

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn no_driver() -> Context {
    Context {
        connector: None,
        control: ServiceControl::new(),
        handle_ctrl_c: false,
    }
}

fn fake_context(driver: &FakeDriver) -> Context {
    let mut connector = driver.connector();
    Context {
        connector: Some(Box::new(move || {
            connector.connect().map(|p| Box::new(p) as BoxedClient)
        })),
        control: ServiceControl::new(),
        handle_ctrl_c: false,
    }
}

/// Runs `vigil ARGS` in-process; returns (exit code, stdout, stderr).
fn vigil(args: &[&str], context: &mut Context) -> (u8, String, String) {
    let cli: Cli =
        clap::Parser::try_parse_from(std::iter::once("vigil").chain(args.iter().copied()))
            .expect("valid arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = execute(cli, context, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn check_policy_says_ok_with_a_summary() {
    let file = tmp("ok.toml");
    std::fs::write(
        &file,
        "[driver]\ndefault_verdict = \"deny\"\n[[rule]]\nprefix = '\\Device\\X'\nverdict = \"deny\"\n",
    )
    .unwrap();
    let (code, out, _) = vigil(&["check-policy", file.to_str().unwrap()], &mut no_driver());
    assert_eq!(code, 0);
    assert!(
        out.contains(": OK (1 rule(s), 1 protected prefix(es), default verdict deny (fail-closed)"),
        "{out}"
    );
}

#[test]
fn check_policy_gives_the_line_field_and_reason_and_fails() {
    let file = tmp("bad.toml");
    std::fs::write(&file, "[driver]\nbatch_size = 0\n").unwrap();
    let (code, out, err) = vigil(&["check-policy", file.to_str().unwrap()], &mut no_driver());
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.ends_with(
            "bad.toml: line 2, column 14: field `driver.batch_size`: 0 is out of range 1..=629 \
             (records per batch)\n"
        ),
        "{err}"
    );
    let (code, _, err) = vigil(
        &["check-policy", "/nonexistent/policy.toml"],
        &mut no_driver(),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read /nonexistent/policy.toml"),
        "{err}"
    );
}

#[test]
fn without_a_port_client_driver_commands_explain_why() {
    for args in [&["run", "--stdout"][..], &["status"], &["stats"]] {
        let (code, _, err) = vigil(args, &mut no_driver());
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("runs on Windows only"), "{args:?}: {err}");
    }
}

#[cfg(not(windows))]
#[test]
fn service_management_is_windows_only() {
    for action in ["install", "uninstall", "start", "stop"] {
        let (code, _, err) = vigil(&["service", action], &mut no_driver());
        assert_eq!(code, 1);
        assert!(err.contains("works only on Windows"), "{err}");
    }
}

#[test]
fn run_writes_the_events_to_the_output_file_and_stops_cleanly() {
    let output = tmp("run.jsonl");
    let _ = std::fs::remove_file(&output);
    let driver = FakeDriver::new();
    driver.push_events(0..25, 10);
    let mut context = fake_context(&driver);
    driver.stop_when_idle(&context.control);
    let (code, _, err) = vigil(&["run", "--output", output.to_str().unwrap()], &mut context);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("summary: 25 events written (3 batches)"),
        "{err}"
    );
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(text.lines().count(), 25);
}

#[test]
fn run_refuses_a_bad_policy_before_connecting() {
    let policy = tmp("run-bad.toml");
    std::fs::write(&policy, "[driver]\nsend_timeout_ms = 5\n").unwrap();
    let driver = FakeDriver::new();
    let mut context = fake_context(&driver);
    let (code, _, err) = vigil(
        &["run", "--stdout", "--policy", policy.to_str().unwrap()],
        &mut context,
    );
    assert_eq!(code, 2);
    assert!(err.contains("field `driver.send_timeout_ms`"), "{err}");
    assert_eq!(driver.connections_made(), 0);
}

#[test]
fn run_needs_somewhere_to_write() {
    let driver = FakeDriver::new();
    let (code, _, err) = vigil(&["run"], &mut fake_context(&driver));
    assert_eq!(code, 2);
    assert!(err.contains("nothing to write events to"), "{err}");
}

#[test]
fn status_reports_versions_and_the_connection() {
    let driver = FakeDriver::new();
    let (code, out, err) = vigil(&["status"], &mut fake_context(&driver));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("driver: reachable (port \\VigilPort)"),
        "{out}"
    );
    assert!(
        out.contains("protocol: driver 2.0, service 2.0 (compatible)"),
        "{out}"
    );
    assert!(out.contains("connections since load: 1"), "{out}");
    assert!(!driver.is_connected(), "the command's connection is closed");
}

#[test]
fn status_explains_a_busy_port_and_a_version_mismatch() {
    let driver = FakeDriver::new();
    driver.fail_connects([ClientError::Busy]);
    let (code, _, err) = vigil(&["status"], &mut fake_context(&driver));
    assert_eq!(code, 1);
    assert!(err.contains("the port admits one client"), "{err}");
    driver.set_hello_version(vigil_protocol::Version { major: 3, minor: 1 });
    let (code, _, err) = vigil(&["status"], &mut fake_context(&driver));
    assert_eq!(code, 1);
    assert!(
        err.contains("driver speaks protocol 3.1, this service 2.0"),
        "{err}"
    );
    // A driver of the previous layout (version 1, before process identity) is refused by name,
    // not misread.
    driver.set_hello_version(vigil_protocol::Version { major: 1, minor: 0 });
    let (code, _, err) = vigil(&["status"], &mut fake_context(&driver));
    assert_eq!(code, 1);
    assert!(
        err.contains("driver speaks protocol 1.0, this service 2.0"),
        "{err}"
    );
}

#[test]
fn stats_prints_every_counter() {
    let driver = FakeDriver::new();
    let (code, out, err) = vigil(&["stats"], &mut fake_context(&driver));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 20);
    assert!(
        out.lines()
            .any(|l| l.starts_with("connections") && l.ends_with(" 1")),
        "{out}"
    );
    assert!(out.contains("dropped: total"), "{out}");
}

#[test]
fn the_binary_exits_with_its_documented_codes() {
    let bad = tmp("bin-bad.toml");
    std::fs::write(&bad, "[driver]\nbogus = 1\n").unwrap();
    let exe = env!("CARGO_BIN_EXE_vigil");
    let out = Command::new(exe)
        .args(["check-policy", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2, column 1: field `driver.bogus`: unknown field `bogus`"),
        "{stderr}"
    );
    let out = Command::new(exe).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = Command::new(exe).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    if cfg!(not(windows)) {
        let out = Command::new(exe)
            .args(["run", "--stdout"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("runs on Windows only"));
    }
}

/// Where `run` (and the Windows service) continue the numbering of an existing output file:
/// nothing for a missing file, the last record's position for a written one, and a warning that
/// names the file when it cannot be read.
#[test]
fn the_resume_point_comes_from_the_output_file_or_a_named_warning() {
    use vigil_service::cli::resume_point;
    let mut warnings = Vec::new();
    let missing = tmp("resume-missing.jsonl");
    let _ = std::fs::remove_file(&missing);
    assert_eq!(resume_point(Some(&missing), |w| warnings.push(w)), None);
    assert_eq!(resume_point(None, |w| warnings.push(w)), None);
    assert!(warnings.is_empty(), "{warnings:?}");

    let written = tmp("resume-written.jsonl");
    std::fs::write(
        &written,
        "{\"epoch\":2,\"seq\":40,\"kind\":\"open\"}\n{\"epoch\":2,\"seq\":41,\"kind\":\"open\"}\n",
    )
    .unwrap();
    let point = resume_point(Some(&written), |w| warnings.push(w)).expect("a position");
    assert_eq!((point.epoch, point.seq), (2, 41));

    // A directory where the file should be cannot be read as one.
    let unreadable = tmp("resume-a-directory.jsonl");
    std::fs::create_dir_all(&unreadable).unwrap();
    assert_eq!(resume_point(Some(&unreadable), |w| warnings.push(w)), None);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("resume-a-directory.jsonl")
            && warnings[0].contains("sequence checks start afresh"),
        "{}",
        warnings[0]
    );
}
