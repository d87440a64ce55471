//! Builds the C minifilters under `tests/minifilters` into `.sys` images on the Linux host, with
//! no WDK: clang compiles for `x86_64-pc-windows-msvc` against Debian's Wine DDK headers
//! ([`crate::ddk`]) plus the project's own `flt_documented.h` (declarations Wine lacks,
//! transcribed from Microsoft's reference pages), and the Rust toolchain's `rust-lld` links
//! them as a native driver against import libraries it makes from `tests/minifilters/lib/*.def`
//! (`ntoskrnl.exe`, `FLTMGR.SYS`). The images are what kernel-sim loads to prove that it runs
//! minifilters other than Vigil (`crates/kernel-sim/tests/c_minifilters.rs`).
//!
//! A minifilter `NAME` is one file, `tests/minifilters/NAME.c`; a broken twin is the same file
//! built with `-DTWIN_<NAME>` (`double-release` selects `TWIN_DOUBLE_RELEASE`), which the source
//! must mention, so a misspelt twin fails the build instead of building production.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{stamp_pe_checksum, workspace_root};

/// clang's code generation flags for a kernel image: no host headers or builtins, no red zone
/// (interrupts use the kernel stack below RSP), no `/GS` cookie or `__chkstk` probes (neither
/// is imported; frames stay under a page), `CodeView` debug information for the PDB.
pub const CLANG_FLAGS: &[&str] = &[
    "--target=x86_64-pc-windows-msvc",
    "-nostdlibinc",
    "-fms-extensions",
    "-ffreestanding",
    "-fno-builtin",
    "-mno-red-zone",
    "-fno-stack-protector",
    "-mno-stack-arg-probe",
    "-O2",
    "-g",
    "-gcodeview",
    "-Wall",
    "-Wextra",
    "-Werror",
];

/// `rust-lld -flavor link`'s flags: a native-subsystem driver entered at `DriverEntry`, with no
/// C runtime, a PDB, unreferenced code dropped and a reproducible timestamp.
pub const LINK_FLAGS: &[&str] = &[
    "/nologo",
    "/driver",
    "/subsystem:native",
    "/entry:DriverEntry",
    "/nodefaultlib",
    "/machine:x64",
    "/debug",
    "/opt:ref",
    "/opt:icf",
    "/Brepro",
];

/// The import libraries, one per module: `tests/minifilters/lib/<stem>.def`.
const IMPORT_DEFS: &[&str] = &["ntoskrnl", "fltmgr"];

/// Builds started by this process, to name each one's private work directory.
static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why a C minifilter build failed.
#[derive(Debug)]
pub enum CBuildError {
    /// A tool is not installed (`clang`, `rust-lld`).
    ToolMissing {
        /// The tool.
        tool: String,
        /// How to install it.
        hint: String,
    },
    /// The DDK headers could not be fetched.
    Headers(String),
    /// The twin is not mentioned in the source (`TWIN_<NAME>`).
    UnknownTwin {
        /// The source file.
        source: PathBuf,
        /// The define looked for.
        define: String,
    },
    /// A step ran and failed.
    Step {
        /// The command line.
        command: String,
        /// Its stderr.
        stderr: String,
    },
    /// A file could not be read or written.
    Io(PathBuf, io::Error),
}

impl CBuildError {
    /// Whether the failure is a missing compiler or linker (tests may skip outside CI).
    pub fn is_tool_missing(&self) -> bool {
        matches!(self, Self::ToolMissing { .. })
    }
}

impl fmt::Display for CBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ToolMissing { tool, hint } => write!(f, "{tool} is missing: {hint}"),
            Self::Headers(message) => write!(f, "DDK headers unavailable: {message}"),
            Self::UnknownTwin { source, define } => {
                write!(f, "{} never mentions {define}", source.display())
            }
            Self::Step { command, stderr } => write!(f, "`{command}` failed:\n{stderr}"),
            Self::Io(path, e) => write!(f, "{}: {e}", path.display()),
        }
    }
}

impl std::error::Error for CBuildError {}

/// Builds `tests/minifilters/NAME.c` and returns `target/minifilters/NAME/NAME.sys` (its PDB
/// beside it).
///
/// # Errors
///
/// [`CBuildError`]: a tool or the headers are missing, or a step failed.
pub fn build_c_minifilter(name: &str) -> Result<PathBuf, CBuildError> {
    build(name, None)
}

/// Builds the broken twin `twin` of `tests/minifilters/NAME.c` (`-DTWIN_<TWIN>`, dashes as
/// underscores, upper case) and returns `target/minifilters/NAME-twin-TWIN/NAME.sys`.
///
/// # Errors
///
/// [`CBuildError`], including [`CBuildError::UnknownTwin`] when the source never mentions the
/// define.
pub fn build_c_minifilter_twin(name: &str, twin: &str) -> Result<PathBuf, CBuildError> {
    build(name, Some(twin))
}

/// The define that selects `twin`: `double-release` gives `TWIN_DOUBLE_RELEASE`.
pub fn twin_define(twin: &str) -> String {
    format!("TWIN_{}", twin.replace('-', "_").to_ascii_uppercase())
}

fn build(name: &str, twin: Option<&str>) -> Result<PathBuf, CBuildError> {
    let root = workspace_root();
    let sources = root.join("tests").join("minifilters");
    let source = sources.join(format!("{name}.c"));
    let text = fs::read_to_string(&source).map_err(|e| CBuildError::Io(source.clone(), e))?;
    let define = twin.map(twin_define);
    if let Some(define) = &define
        && !text.contains(define.as_str())
    {
        return Err(CBuildError::UnknownTwin {
            source,
            define: define.clone(),
        });
    }
    let target = root.join("target");
    let headers =
        crate::ddk::fetch_headers(&target.join("ddk-headers")).map_err(CBuildError::Headers)?;
    let lld = rust_lld(&root)?;
    let out_dir = target.join("minifilters").join(match twin {
        None => name.to_owned(),
        Some(twin) => format!("{name}-twin-{twin}"),
    });
    // A private directory per call: concurrent tests may build the same image.
    let call = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = out_dir.join(format!("build.{}.{call}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| CBuildError::Io(work.clone(), e))?;

    let built = compile_and_link(&CBuild {
        name,
        source: &source,
        sources: &sources,
        wine: &headers.join(crate::ddk::WINE_INCLUDE),
        define: define.as_deref(),
        lld: &lld,
        work: &work,
    });
    // Removed whatever happened: a failed build leaves nothing behind but its message.
    let _ = fs::remove_dir_all(&work);
    let (mut linked_image, linked_pdb) = built?;
    let image = out_dir.join(format!("{name}.sys"));
    // lld-link has no /RELEASE: the checksum the kernel loader verifies is stamped here.
    stamp_pe_checksum(&mut linked_image).map_err(|e| {
        CBuildError::Io(image.clone(), io::Error::new(io::ErrorKind::InvalidData, e))
    })?;
    crate::replace_atomically(&image, &linked_image)
        .map_err(|e| CBuildError::Io(image.clone(), e))?;
    // kernel-sim reads the PDB beside the image for function names.
    let installed_pdb = out_dir.join(format!("{name}.pdb"));
    crate::replace_atomically(&installed_pdb, &linked_pdb)
        .map_err(|e| CBuildError::Io(installed_pdb, e))?;
    Ok(image)
}

/// One build's inputs.
struct CBuild<'a> {
    name: &'a str,
    source: &'a Path,
    sources: &'a Path,
    wine: &'a Path,
    define: Option<&'a str>,
    lld: &'a Path,
    work: &'a Path,
}

/// Compiles and links in `build.work`; returns the linked image's and the PDB's bytes.
fn compile_and_link(build: &CBuild<'_>) -> Result<(Vec<u8>, Vec<u8>), CBuildError> {
    let CBuild {
        name,
        source,
        sources,
        wine,
        define,
        lld,
        work,
    } = *build;
    let object = work.join(format!("{name}.obj"));
    let mut clang = Command::new("clang");
    clang
        .args(CLANG_FLAGS)
        .arg("-isystem")
        .arg(wine.join("msvcrt"))
        .arg("-isystem")
        .arg(wine.join("windows"))
        .arg("-I")
        .arg(sources.join("include"));
    if let Some(define) = define {
        clang.arg(format!("-D{define}"));
    }
    clang.arg("-c").arg(source).arg("-o").arg(&object);
    run(&mut clang, "clang", "apt-get install clang (.ci/run does)")?;

    let mut libs = Vec::new();
    for stem in IMPORT_DEFS {
        let lib = work.join(format!("{stem}.lib"));
        let mut make_lib = Command::new(lld);
        make_lib
            .args(["-flavor", "link", "/lib", "/machine:x64"])
            .arg(format!(
                "/def:{}",
                sources.join("lib").join(format!("{stem}.def")).display()
            ))
            .arg(format!("/out:{}", lib.display()));
        run(&mut make_lib, "rust-lld", RUST_LLD_HINT)?;
        libs.push(lib);
    }

    let linked = work.join(format!("{name}.sys"));
    let pdb = work.join(format!("{name}.pdb"));
    let mut link = Command::new(lld);
    link.args(["-flavor", "link"])
        .args(LINK_FLAGS)
        .arg(format!("/out:{}", linked.display()))
        .arg(format!("/pdb:{}", pdb.display()))
        .arg(&object)
        .args(&libs);
    run(&mut link, "rust-lld", RUST_LLD_HINT)?;

    let image = fs::read(&linked).map_err(|e| CBuildError::Io(linked.clone(), e))?;
    let pdb = fs::read(&pdb).map_err(|e| CBuildError::Io(pdb.clone(), e))?;
    Ok((image, pdb))
}

const RUST_LLD_HINT: &str = "it ships with the Rust toolchain (rust-toolchain.toml)";

/// Runs `command`; a spawn failure of kind `NotFound` is [`CBuildError::ToolMissing`].
fn run(command: &mut Command, tool: &str, hint: &str) -> Result<(), CBuildError> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            CBuildError::ToolMissing {
                tool: tool.to_owned(),
                hint: hint.to_owned(),
            }
        } else {
            CBuildError::Step {
                command: line.clone(),
                stderr: e.to_string(),
            }
        }
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CBuildError::Step {
            command: line,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// The toolchain's `rust-lld` (`<sysroot>/lib/rustlib/<host>/bin/rust-lld`), for the toolchain
/// `rust-toolchain.toml` selects in `root`.
fn rust_lld(root: &Path) -> Result<PathBuf, CBuildError> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let missing = |why: String| CBuildError::ToolMissing {
        tool: "rust-lld".into(),
        hint: format!("{why}; {RUST_LLD_HINT}"),
    };
    let output = Command::new(rustc)
        .current_dir(root)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| missing(format!("rustc --print sysroot: {e}")))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let rustlib = sysroot.join("lib").join("rustlib");
    let entries =
        fs::read_dir(&rustlib).map_err(|e| missing(format!("{}: {e}", rustlib.display())))?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin").join("rust-lld"))
        .find(|path| path.is_file())
        .ok_or_else(|| missing(format!("no rust-lld below {}", rustlib.display())))
}
