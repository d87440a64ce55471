//! The Windows service under Wine's service control manager (Debian's `wine64`): the
//! cross-built `vigil.exe` installed, started (`START_PENDING`, then `RUNNING`: `vigil service
//! start` returns only then), stopped, uninstalled; started again with a policy that has gone
//! bad (it stops before running, with its service-specific exit code, which `vigil service
//! start` reports); and `vigil status` without a driver. Its own stage of `cargo xtask test`
//! (`#[ignore]`d in the ordinary test run): `cargo test -p vigil-service --test wine --
//! --ignored`.
//!
//! What Wine cannot show: the real `FltLib` (Wine's `FilterConnectCommunicationPort` is a stub
//! that fails with `E_NOTIMPL`, so the driver is always absent here), ACL enforcement (Wine
//! reports every file as owned by the Unix user and enforces no DACL: the exe is built with
//! the test-only `wine-harness` feature, which trusts any owner), and the
//! `failure_actions_on_non_crash_failures` flag (Wine's SCM refuses that configuration level;
//! install reports it as a warning).
//!
//! Wine 8.0 lacks `bcryptprimitives.dll`, whose `ProcessPrng` Rust's standard library imports:
//! the test builds a shim (`tests/wine/bcryptprimitives.c`, over `RtlGenRandom`) into the Wine
//! prefix's `system32`.
//!
//! Needs: `wine64`, `x86_64-w64-mingw32-gcc` and the `x86_64-pc-windows-gnu` target (`.ci/run`
//! installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TARGET: &str = "x86_64-pc-windows-gnu";
const WINE: &str = "/usr/lib/wine/wine64";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/service has a grandparent")
        .to_path_buf()
}

fn build_exe(target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args([
            "build",
            "--quiet",
            "--package",
            "vigil-service",
            "--bin",
            "vigil",
            "--features",
            "wine-harness",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cross-build of vigil.exe failed: {status}"
    );
    target_dir.join(TARGET).join("debug").join("vigil.exe")
}

struct Prefix {
    path: PathBuf,
}

impl Prefix {
    fn wine(&self, args: &[&str]) -> Output {
        Command::new(WINE)
            .args(args)
            .env("WINEPREFIX", &self.path)
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY")
            .output()
            .expect("wine64 runs")
    }

    fn vigil(&self, exe: &Path, args: &[&str]) -> (i32, String) {
        let mut all = vec![exe.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        let out = self.wine(&all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn data_dir(&self) -> PathBuf {
        self.path.join("drive_c/ProgramData/Vigil")
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", &self.path)
            .status();
    }
}

fn prefix(target_dir: &Path) -> Prefix {
    let path = target_dir.join("prefix");
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("prefix directory");
    let prefix = Prefix { path };
    let boot = prefix.wine(&["wineboot", "-i"]);
    assert!(boot.status.success(), "wineboot failed: {boot:?}");
    let shim = prefix
        .path
        .join("drive_c/windows/system32/bcryptprimitives.dll");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine");
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(&shim)
        .arg(dir.join("bcryptprimitives.c"))
        .arg(dir.join("bcryptprimitives.def"))
        .arg("-ladvapi32")
        .status()
        .expect("x86_64-w64-mingw32-gcc runs");
    assert!(status.success(), "the bcryptprimitives shim did not build");
    prefix
}

#[test]
#[ignore = "its own stage of cargo xtask test: needs wine64 (cargo test -p vigil-service --test wine -- --ignored)"]
fn the_service_runs_under_wines_service_control_manager() {
    assert!(
        Path::new(WINE).exists(),
        "{WINE} is missing: apt-get install wine64 (.ci/run does)"
    );
    let target_dir = root().join("target").join("wine");
    let exe = build_exe(&target_dir);
    let prefix = prefix(&target_dir);

    let (code, text) = prefix.vigil(&exe, &["--version"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("vigil 0.1.0"), "{text}");

    // No driver (Wine's FltLib is a stub): a clear failure, exit 1.
    let (code, text) = prefix.vigil(&exe, &["status"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("service: VigilService not installed"),
        "{text}"
    );

    std::fs::create_dir_all(prefix.data_dir()).expect("data directory");
    let policy = prefix.data_dir().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nprefix = '\\Device\\HarddiskVolume1\\Secret'\nverdict = \"deny\"\n",
    )
    .expect("policy");
    let (code, text) = prefix.vigil(&exe, &["service", "install"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("installed VigilService"), "{text}");
    // The driver's `ServiceImage` (rule 29): the NT path of this vigil.exe, through Wine's
    // drive-letter devices.
    let image = service_image(&prefix);
    assert!(
        image.contains(r"\Device\") && image.to_ascii_lowercase().ends_with("vigil.exe"),
        "{image:?}"
    );

    // `start` returns once the service reports RUNNING (after START_PENDING). Wine's SCM may
    // have started the automatic service on its own already.
    let (code, text) = prefix.vigil(&exe, &["service", "start"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("started VigilService") || text.contains("already running VigilService"),
        "{text}"
    );
    let (_, text) = prefix.vigil(&exe, &["status"]);
    assert!(text.contains("service: vigilservice running"), "{text}");

    let (code, text) = prefix.vigil(&exe, &["service", "stop"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("stopped VigilService"), "{text}");

    // A policy gone bad: the service stops before RUNNING with exit code 1, and `start` says so.
    std::fs::write(&policy, "[driver]\nbatch_size = 100000\n").expect("policy");
    let (code, text) = prefix.vigil(&exe, &["service", "start"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("stopped while starting: the policy file was refused (exit code 1)"),
        "{text}"
    );

    let (code, text) = prefix.vigil(&exe, &["service", "uninstall"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(service_image(&prefix), "", "uninstall removes ServiceImage");
    let (_, text) = prefix.vigil(&exe, &["status"]);
    assert!(
        text.contains("service: VigilService not installed"),
        "{text}"
    );
}

/// The driver's `ServiceImage` value as Wine's `reg query` prints it (empty when absent).
fn service_image(prefix: &Prefix) -> String {
    let out = prefix.wine(&[
        "reg",
        "query",
        r"HKLM\SYSTEM\CurrentControlSet\Services\vigil\Parameters",
        "/v",
        "ServiceImage",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("ServiceImage") && fields.next() == Some("REG_SZ"))
                .then(|| fields.collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_default()
}
