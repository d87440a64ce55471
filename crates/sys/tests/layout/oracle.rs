//! The layout oracles of `tests/layout.rs`: Debian's Wine and mingw-w64 DDK headers, compiled by
//! clang for `x86_64-pc-windows-msvc`. Runs on the Linux host, never runs Windows code.
//!
//! * The headers come from three Debian packages (`libwine-dev`, `mingw-w64-x86-64-dev` and
//!   `mingw-w64-common`), fetched by `xtask::ddk::fetch_headers` (`apt-get download`, `dpkg -x`)
//!   into `<target>/ddk-headers`, once; the C minifilters of `tests/minifilters` share that
//!   helper. `VIGIL_DDK_HEADERS=<dir>` names an already unpacked tree instead.
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
    xtask::ddk::fetch_headers(&target_dir().join("ddk-headers"))
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
