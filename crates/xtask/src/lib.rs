//! Vigil's developer tasks as a library, so that tests build the driver the same way the
//! `cargo xtask` command does. Runs on the Linux development host.
//!
//! * [`build_driver`]: cross-builds the driver package for `x86_64-pc-windows-msvc` and
//!   produces `vigil.sys` (the linker's `vigil.dll`, renamed, with its PE checksum stamped:
//!   lld-link does not implement `/RELEASE`, and the kernel loader verifies driver checksums).
//! * [`pe_checksum`]: the PE image checksum algorithm (what `/RELEASE` and `editbin` compute).
//! * [`build_c_minifilter`]: builds a C minifilter of `tests/minifilters` (or a broken twin of
//!   one, [`build_c_minifilter_twin`]) with clang and rust-lld, against the Wine DDK headers
//!   that [`ddk`] fetches: kernel-sim's proof on drivers other than Vigil.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod ddk;
pub mod inf;
pub mod lint;
pub mod minifilter;
pub mod pe;

pub use minifilter::{CBuildError, build_c_minifilter, build_c_minifilter_twin};
pub use pe::{pe_checksum, stamp_pe_checksum};

/// The Windows kernel target the driver is built for.
pub const DRIVER_TARGET: &str = "x86_64-pc-windows-msvc";

/// The repository root (this crate lives in `crates/xtask`).
///
/// # Panics
///
/// Never in practice: the manifest directory of `crates/xtask` always has two ancestors.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask has a grandparent")
        .to_path_buf()
}

/// The catalog of the driver's test-only builds (`src/twins/catalog.rs`), compiled here too:
/// xtask cannot depend on the driver package, and this keeps one list for both.
#[macro_use]
#[path = "../../../src/twins/catalog.rs"]
mod catalog;

pub use catalog::{Baseline, Twin, UnknownName};

/// One build of the driver: the production image, a broken twin or a benchmark baseline.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The image users install.
    Production,
    /// A broken twin: one deliberate bug, test-only.
    Twin(Twin),
    /// A benchmark baseline, test-only.
    Baseline(Baseline),
}

impl Variant {
    /// The image users install.
    pub const fn production() -> Self {
        Self::Production
    }

    /// A broken twin: the driver built with `VIGIL_TWIN=<name>`.
    pub const fn twin(twin: Twin) -> Self {
        Self::Twin(twin)
    }

    /// A benchmark baseline: the driver built with `VIGIL_BASELINE=<name>`.
    pub const fn baseline(baseline: Baseline) -> Self {
        Self::Baseline(baseline)
    }

    /// Its output directory's name (`target/driver/<name>/vigil.sys`): `vigil`, `twin-<name>`
    /// or `bench-<name>`.
    pub fn name(&self) -> String {
        match *self {
            Self::Production => "vigil".into(),
            Self::Twin(twin) => format!("twin-{twin}"),
            Self::Baseline(baseline) => format!("bench-{baseline}"),
        }
    }

    /// The environment variable and value that select it in build.rs (none for production).
    pub const fn selection(&self) -> Option<(&'static str, &'static str)> {
        match *self {
            Self::Production => None,
            Self::Twin(twin) => Some((Twin::ENV, twin.name())),
            Self::Baseline(baseline) => Some((Baseline::ENV, baseline.name())),
        }
    }
}

/// Why a driver build failed.
#[derive(Debug)]
pub enum BuildError {
    /// Cargo could not be started.
    Spawn(io::Error),
    /// Cargo ran and failed (its output went to the terminal).
    Cargo(std::process::ExitStatus),
    /// The linker output is missing or could not be copied or stamped.
    Output(PathBuf, io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawn(e) => write!(f, "could not run cargo: {e}"),
            Self::Cargo(status) => write!(f, "cargo build of the driver failed ({status})"),
            Self::Output(path, e) => write!(f, "driver image {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builds `variant` in release mode and returns the path of its `vigil.sys`.
///
/// # Errors
///
/// [`BuildError`]: cargo could not run or failed, or the image could not be installed.
///
/// Each variant has its own target directory, so that concurrent tests building different
/// twins never overwrite each other's linker output, and a `RUSTFLAGS` meant for the host (such
/// as `--cfg loom`) never leaks into the kernel image. The variant's selection variable is set
/// for the cargo invocation, and both are removed otherwise, so that a `VIGIL_TWIN` left in the
/// shell never turns the production build into a twin.
pub fn build_driver(variant: &Variant) -> Result<PathBuf, BuildError> {
    let root = workspace_root();
    let out_dir = root.join("target").join("driver").join(variant.name());
    let target_dir = out_dir.join("cargo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            "vigil",
            "--lib",
            "--release",
            "--target",
            DRIVER_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove(Twin::ENV)
        .env_remove(Baseline::ENV);
    if let Some((var, name)) = variant.selection() {
        command.env(var, name);
    }
    let status = command.status().map_err(BuildError::Spawn)?;
    if !status.success() {
        return Err(BuildError::Cargo(status));
    }
    let built = target_dir.join(DRIVER_TARGET).join("release");
    let image = out_dir.join("vigil.sys");
    install_image(&built.join("vigil.dll"), &image)
        .map_err(|e| BuildError::Output(image.clone(), e))?;
    // The PDB beside the image lets kernel-sim name the function a fault happened in.
    let pdb = built.join("vigil.pdb");
    if pdb.exists() {
        fs::read(&pdb)
            .and_then(|bytes| replace_atomically(&out_dir.join("vigil.pdb"), &bytes))
            .map_err(|e| BuildError::Output(pdb.clone(), e))?;
    }
    // The stamped INF beside the image: what users install from, and what kernel-sim installs
    // from, so the install step is tested with the very file that ships.
    let inf = out_dir.join("vigil.inf");
    let template = root.join("driver.inx");
    let stamped = fs::read_to_string(&template)
        .map_err(|e| BuildError::Output(template.clone(), e))
        .and_then(|text| {
            inf::stamp_inf(
                &text,
                &inf::InfStamp::for_crate_version(&driver_version(&root)),
            )
            .map_err(|e| {
                BuildError::Output(
                    template.clone(),
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )
            })
        })?;
    replace_atomically(&inf, stamped.as_bytes()).map_err(|e| BuildError::Output(inf.clone(), e))?;
    Ok(image)
}

/// The `vigil` package's version, from the root `Cargo.toml` (`0.0.0` if it cannot be read, so
/// that a stamped INF never blocks a build; the INF test checks the version separately).
fn driver_version(root: &Path) -> String {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("version").map(str::trim_start)
            && let Some(value) = value.strip_prefix('=')
        {
            return value.trim().trim_matches('"').to_owned();
        }
    }
    "0.0.0".to_owned()
}

/// Copies the linker output to `image` with its checksum stamped, atomically (write a temporary
/// file, then rename) so that a concurrent reader never sees a half-written image.
///
/// The temporary name is unique per call, not only per process: two tests of one binary may
/// build the same variant at once, and with a shared name one rename took the file the other
/// was about to rename (seen on a fresh clone, where nothing was built yet).
fn install_image(linked: &Path, image: &Path) -> io::Result<()> {
    let mut bytes = fs::read(linked)?;
    stamp_pe_checksum(&mut bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    replace_atomically(image, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, named uniquely for this call, and renames
/// it over `path`.
fn replace_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{call}.tmp", std::process::id()));
    let temporary = PathBuf::from(name);
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name parses back to its variant, names are unique, and a variant's output
    /// directory and selection variable follow from its name.
    #[test]
    fn catalog_names_round_trip_and_are_unique() {
        for &twin in Twin::ALL {
            assert_eq!(Twin::from_name(twin.name()), Ok(twin));
            assert_eq!(Variant::twin(twin).name(), format!("twin-{}", twin.name()));
            assert_eq!(
                Variant::twin(twin).selection(),
                Some(("VIGIL_TWIN", twin.name()))
            );
        }
        for &baseline in Baseline::ALL {
            assert_eq!(Baseline::from_name(baseline.name()), Ok(baseline));
            assert_eq!(
                Variant::baseline(baseline).selection(),
                Some(("VIGIL_BASELINE", baseline.name()))
            );
        }
        let mut names: Vec<&str> = Twin::ALL.iter().map(|t| t.name()).collect();
        names.extend(Baseline::ALL.iter().map(|b| b.name()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name is listed twice");
        assert_eq!(Variant::production().name(), "vigil");
        assert_eq!(Variant::production().selection(), None);
    }

    /// Runs `cargo check` of the driver package (host target: build.rs validates the name
    /// before anything target-specific) with `env`, in its own target directory (the test's
    /// cargo holds the workspace one), and returns its stderr if it failed.
    fn check_driver_with(env: &[(&str, &str)]) -> Option<String> {
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(&root)
            .args(["check", "--quiet", "--package", "vigil", "--lib"])
            .arg("--target-dir")
            .arg(root.join("target").join("xtask-name-check"))
            .env_remove(Twin::ENV)
            .env_remove(Baseline::ENV)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .envs(env.iter().copied())
            .output()
            .expect("cargo runs");
        (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// A misspelt `VIGIL_TWIN` or `VIGIL_BASELINE` fails the driver's build, and the message
    /// lists every valid name; both set at once fails too. (A misspelt `cfg(vigil_twin = "…")`
    /// in source is rustc's `unexpected_cfgs`, from the values build.rs declares.)
    #[test]
    fn an_unknown_name_fails_the_build_listing_the_valid_names() {
        let list = |names: Vec<&str>| names.join(", ");
        let stderr = check_driver_with(&[("VIGIL_TWIN", "port-not-clsoed")])
            .expect("an unknown twin fails the build");
        let expected = format!(
            "unknown broken twin `port-not-clsoed`; the valid names are: {}",
            list(Twin::ALL.iter().map(|t| t.name()).collect())
        );
        assert!(stderr.contains(&expected), "{stderr}");

        let stderr = check_driver_with(&[("VIGIL_BASELINE", "noop")])
            .expect("an unknown baseline fails the build");
        let expected = format!(
            "unknown benchmark baseline `noop`; the valid names are: {}",
            list(Baseline::ALL.iter().map(|b| b.name()).collect())
        );
        assert!(stderr.contains(&expected), "{stderr}");

        let stderr =
            check_driver_with(&[("VIGIL_TWIN", "leak"), ("VIGIL_BASELINE", "noop-filter")])
                .expect("a twin and a baseline at once fail the build");
        assert!(stderr.contains("are both set"), "{stderr}");
    }

    /// Many threads installing the same image at once all succeed, and the result is one whole
    /// image with its checksum stamped (the fresh-clone race of two tests building one twin).
    #[test]
    fn concurrent_installs_of_one_image_all_succeed() {
        let dir = std::env::temp_dir().join(format!("xtask-install-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // A minimal PE header (MZ, e_lfanew 0x40, "PE\0\0", zeroed headers) and some body.
        let mut linked = vec![0u8; 4096];
        linked[..2].copy_from_slice(b"MZ");
        linked[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        linked[0x40..0x44].copy_from_slice(b"PE\0\0");
        linked[1024..].fill(0x5a);
        let source = dir.join("vigil.dll");
        fs::write(&source, &linked).unwrap();
        let image = dir.join("vigil.sys");
        std::thread::scope(|s| {
            let installs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..20).try_for_each(|_| install_image(&source, &image))))
                .collect();
            for install in installs {
                install.join().unwrap().expect("every install succeeds");
            }
        });
        let installed = fs::read(&image).unwrap();
        let mut expected = linked.clone();
        stamp_pe_checksum(&mut expected).unwrap();
        assert_eq!(installed, expected);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
