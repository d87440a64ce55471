//! kernel-sim on minifilters that are not Vigil: the C minifilters of `tests/minifilters`, built
//! on Linux with clang and rust-lld against the Wine DDK headers (`xtask::build_c_minifilter`),
//! each put through `kernel-sim verify` (load/unload cycles, stress, both fault sweeps). Each
//! production build comes out clean; each broken twin comes out with the rule that catches its
//! bug, the routine that caught it and the driver function that was running.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set), where .ci/run installs
//! clang and a missing compiler is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::CBuildError;

/// Builds `name` (or its `twin`); `None` when clang is missing outside CI.
fn build(name: &str, twin: Option<&str>) -> Option<PathBuf> {
    let built = match twin {
        None => xtask::build_c_minifilter(name),
        Some(twin) => xtask::build_c_minifilter_twin(name, twin),
    };
    match built {
        Ok(image) => Some(image),
        Err(error @ CBuildError::ToolMissing { .. }) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: cannot build the C minifilter {name}: {error}");
            None
        }
        Err(error) => panic!("building the C minifilter {name} ({twin:?}): {error}"),
    }
}

fn verify(image: &Path, port: Option<&str>) -> Output {
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
fn assert_clean(image: &Path, port: Option<&str>) {
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
/// counted at least once.
fn assert_caught(
    image: &Path,
    port: Option<&str>,
    kind: &str,
    routine: &str,
    caller: &str,
    rule: &str,
) {
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
}

/// The scanner-lite filter (create/cleanup callbacks, normalized names, a port with the
/// default security descriptor) is clean with a client on its port; its twin that releases a
/// name twice is caught in its post create by `FltReleaseFileNameInformation`.
#[test]
fn passthrough_is_clean_and_its_double_release_twin_is_caught() {
    let port = Some(r"\CPassthroughPort");
    let Some(image) = build("passthrough", None) else {
        return;
    };
    assert_clean(&image, port);
    let twin = build("passthrough", Some("double-release")).expect("clang was found above");
    assert_caught(
        &twin,
        port,
        "OverRelease",
        "FltReleaseFileNameInformation",
        "PostCreate",
        "name information is released exactly once per reference",
    );
}

/// The stream-handle context filter is clean; its twin that never releases the context its
/// pre write got is caught when `FilterUnload` unregisters, with the context's tag and where it
/// was allocated.
#[test]
fn handlectx_is_clean_and_its_context_leak_twin_is_caught() {
    let Some(image) = build("handlectx", None) else {
        return;
    };
    assert_clean(&image, None);
    let twin = build("handlectx", Some("context-leak")).expect("clang was found above");
    assert_caught(
        &twin,
        None,
        "ReferenceLeak",
        "FltUnregisterFilter",
        "FilterUnload",
        "every context reference is released",
    );
    let output = verify(&twin, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("tag 'Cctx'") && stdout.contains("allocated in PostCreate"),
        "{stdout}"
    );
}

/// A twin the source does not define fails the build instead of building production.
#[test]
fn an_unknown_twin_fails_the_build() {
    match xtask::build_c_minifilter_twin("passthrough", "no-such-bug") {
        Err(CBuildError::UnknownTwin { define, .. }) => assert_eq!(define, "TWIN_NO_SUCH_BUG"),
        other => panic!("expected UnknownTwin, got {other:?}"),
    }
}
