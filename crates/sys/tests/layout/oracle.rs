//! The layout oracles of `tests/layout.rs`: Debian's Wine and mingw-w64 DDK headers, compiled by
//! clang for `x86_64-pc-windows-msvc`. Runs on the Linux host, never runs Windows code.
//!
//! * The headers come from three Debian packages (`libwine-dev`, `mingw-w64-x86-64-dev` and
//!   `mingw-w64-common`, where the mingw `ddk/` links point). They are fetched with
//!   `apt-get download` (no install, none of Wine's runtime) and unpacked with `dpkg -x` into
//!   `<target>/ddk-headers`, once: later runs reuse the tree. `VIGIL_DDK_HEADERS=<dir>` names an
//!   already unpacked tree instead (a machine without apt).
//! * A probe is a C file of `const long long vigil_probe_N = <expression>;` lines after the
//!   oracle's includes. clang compiles it to LLVM IR (`-S -emit-llvm`), where each constant is
//!   one `@vigil_probe_N = ... constant i64 VALUE` line: the values are read back without running
//!   anything.
//! * Nothing here passes silently: a missing tool, package or header is an error naming it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Debian packages whose headers are the oracles.
const PACKAGES: &[&str] = &["libwine-dev", "mingw-w64-x86-64-dev", "mingw-w64-common"];

/// One header set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Oracle {
    /// Wine's DDK (`include/wine/wine/windows/ddk`): wdm.h, ntddk.h, ntifs.h and fltkernel.h.
    Wine,
    /// mingw-w64's DDK (`x86_64-w64-mingw32/include/ddk`): wdm.h, ntddk.h, ntifs.h (no
    /// fltkernel.h).
    Mingw,
    /// Microsoft's documented declarations (`documented.h`, each citing its reference page),
    /// compiled with Wine's base types: for the types neither header set declares.
    Documented,
}

impl fmt::Display for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wine => "Wine DDK headers (libwine-dev)",
            Self::Mingw => "mingw-w64 DDK headers (mingw-w64-x86-64-dev)",
            Self::Documented => "documented declarations (layout/documented.h)",
        })
    }
}

impl Oracle {
    /// The two header sets (the oracles of constants).
    pub const HEADERS: [Self; 2] = [Self::Wine, Self::Mingw];

    fn short_name(self) -> &'static str {
        match self {
            Self::Wine => "wine",
            Self::Mingw => "mingw",
            Self::Documented => "documented",
        }
    }

    /// The `#include` lines that start every probe of this oracle.
    fn prelude(self) -> String {
        match self {
            Self::Wine => include_str!("wine_prelude.h").to_owned(),
            Self::Mingw => include_str!("mingw_prelude.h").to_owned(),
            Self::Documented => {
                [include_str!("wine_prelude.h"), include_str!("documented.h")].concat()
            }
        }
    }

    /// clang's arguments besides the input: the msvc target, the include directories.
    fn clang_args(self, root: &Path) -> Vec<String> {
        let mut args = vec![
            "--target=x86_64-pc-windows-msvc".to_owned(),
            // clang's own headers (stddef.h, intrinsics) stay; no host system directory does.
            "-nostdlibinc".to_owned(),
            "-ferror-limit=0".to_owned(),
            "-fno-spell-checking".to_owned(),
            "-w".to_owned(),
        ];
        match self {
            Self::Wine | Self::Documented => {
                let wine = root.join("usr/include/wine/wine");
                args.push("-fms-extensions".to_owned());
                args.push(format!("-isystem{}", wine.join("msvcrt").display()));
                args.push(format!("-isystem{}", wine.join("windows").display()));
            }
            Self::Mingw => {
                let mingw = root.join("usr/x86_64-w64-mingw32/include");
                // mingw-w64's headers expect a GNU-compatible compiler (their MSVC branch pulls in
                // intrinsics clang rejects); record layout still follows the msvc target.
                args.push("-fgnuc-version=4.2.1".to_owned());
                args.push(format!("-isystem{}", mingw.display()));
                args.push(format!("-isystem{}", mingw.join("ddk").display()));
            }
        }
        args
    }
}

/// The target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// The unpacked header tree (with `usr/` below it), fetched on first use.
///
/// # Panics
///
/// When the headers cannot be obtained: the message says what is missing and how to fix it.
pub fn headers_root() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ROOT.get_or_init(fetch_headers) {
        Ok(root) => root,
        Err(message) => panic!("DDK layout oracle headers unavailable: {message}"),
    }
}

fn fetch_headers() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("VIGIL_DDK_HEADERS") {
        let root = PathBuf::from(dir);
        check_tree(&root)?;
        return Ok(root);
    }
    let cache = target_dir().join("ddk-headers");
    let root = cache.join("root");
    let marker = cache.join("unpacked.ok");
    if marker.exists() && check_tree(&root).is_ok() {
        return Ok(root);
    }
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    let output = Command::new("apt-get")
        .arg("download")
        .args(PACKAGES)
        .current_dir(&debs)
        .output()
        .map_err(|e| {
            format!(
                "could not run apt-get ({e}); on a non-Debian machine unpack the .debs of {} \
                 with `dpkg -x` (or any ar/tar) and set VIGIL_DDK_HEADERS to that directory",
                PACKAGES.join(", ")
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`apt-get download {}` failed ({}); run `apt-get update` first (as .ci/run does):\n{}",
            PACKAGES.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Unpack into a private directory, then rename: a concurrent run never sees half a tree.
    let staging = cache.join(format!("root.{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    for package in PACKAGES {
        let deb = newest_deb(&debs, package)?;
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&staging)
            .status()
            .map_err(|e| format!("could not run dpkg -x ({e})"))?;
        if !status.success() {
            return Err(format!("dpkg -x {} failed ({status})", deb.display()));
        }
    }
    check_tree(&staging)?;
    let _ = fs::remove_dir_all(&root);
    if fs::rename(&staging, &root).is_err() {
        // Another process won the race; its tree is as good as ours.
        let _ = fs::remove_dir_all(&staging);
    }
    check_tree(&root)?;
    fs::write(&marker, PACKAGES.join("\n")).map_err(|e| format!("{}: {e}", marker.display()))?;
    Ok(root)
}

/// The `.deb` of `package` in `dir` (the newest by name, should several versions be cached).
fn newest_deb(dir: &Path, package: &str) -> Result<PathBuf, String> {
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name.starts_with(&prefix)
                        && Path::new(name).extension().is_some_and(|ext| ext == "deb")
                })
        })
        .collect();
    found.sort();
    found.pop().ok_or_else(|| {
        format!(
            "apt-get download left no {package}_*.deb in {}",
            dir.display()
        )
    })
}

/// Checks that the headers every probe includes are present below `root`.
fn check_tree(root: &Path) -> Result<(), String> {
    for header in [
        "usr/include/wine/wine/windows/ddk/fltkernel.h",
        "usr/include/wine/wine/windows/ddk/ntifs.h",
        "usr/include/wine/wine/msvcrt/stddef.h",
        "usr/x86_64-w64-mingw32/include/ddk/ntifs.h",
        "usr/x86_64-w64-mingw32/include/ddk/wdm.h",
    ] {
        let path = root.join(header);
        // `exists` follows the mingw ddk symlinks into mingw-w64-common's tree.
        if !path.exists() {
            return Err(format!(
                "{} is missing (or a dangling link)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// What clang reported for one probe.
pub struct ProbeOutput {
    /// The value of each expression that compiled, by its index in the probe.
    pub values: BTreeMap<usize, i128>,
    /// Identifiers clang reported as undeclared (`use of undeclared identifier 'X'`).
    pub undeclared: Vec<String>,
    /// Every error line, for messages.
    pub errors: Vec<String>,
}

/// Compiles `expressions` (C integer constant expressions) against `oracle`'s headers and
/// returns their values. Each expression becomes `const long long vigil_probe_<index>`.
///
/// # Panics
///
/// When clang cannot be run.
pub fn probe(oracle: Oracle, name: &str, expressions: &[String]) -> ProbeOutput {
    let root = headers_root();
    let mut source = oracle.prelude();
    source.push_str("\n/* Generated by crates/sys/tests/layout.rs. */\n");
    for (index, expression) in expressions.iter().enumerate() {
        writeln!(
            source,
            "const long long vigil_probe_{index} = (long long)({expression});"
        )
        .expect("writing to a String");
    }
    let dir = target_dir().join("ddk-headers").join("probes");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(format!("{}-{name}.c", oracle.short_name()));
    fs::write(&path, &source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let output = Command::new("clang")
        .args(oracle.clang_args(root))
        .args(["-S", "-emit-llvm", "-o", "-"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run clang ({e}): install it (`apt-get install clang`)")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<String> = stderr
        .lines()
        .filter(|line| line.contains("error:"))
        .map(str::to_owned)
        .collect();
    let undeclared = errors
        .iter()
        .filter_map(|line| {
            let rest = line.split("use of undeclared identifier '").nth(1)?;
            Some(rest.split('\'').next()?.to_owned())
        })
        .collect();
    let values = parse_ir(&String::from_utf8_lossy(&output.stdout));
    ProbeOutput {
        values,
        undeclared,
        errors,
    }
}

/// Reads `@vigil_probe_N = ... constant i64 VALUE, align 8` lines.
fn parse_ir(ir: &str) -> BTreeMap<usize, i128> {
    let mut values = BTreeMap::new();
    for line in ir.lines() {
        let Some(rest) = line.strip_prefix("@vigil_probe_") else {
            continue;
        };
        let Some((index, definition)) = rest.split_once(" = ") else {
            continue;
        };
        let Some(value) = definition.split("constant i64 ").nth(1) else {
            continue;
        };
        let value = value.split(',').next().unwrap_or(value).trim();
        if let (Ok(index), Ok(value)) = (index.parse(), value.parse()) {
            values.insert(index, value);
        }
    }
    values
}
