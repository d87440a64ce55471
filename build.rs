//! Build script of the driver package.
//!
//! * Windows-kernel target (`x86_64-pc-windows-msvc`), without the `wdk` feature (every Linux
//!   build): compiles the SEH user-copy helper with clang through the `cc` crate and emits the link
//!   arguments of a kernel driver for rust-lld (lld-link flavour). No SDK, no WDK: imports are
//!   `raw-dylib` declarations in `vigil-sys`.
//! * With `--features wdk` on a Windows host with the WDK: `wdk_build` configures the build
//!   (libraries, link arguments, packaging metadata); the SEH helper is then compiled by the
//!   WDK's own toolchain through the same `cc` call.
//! * Host targets (unit tests of the portable modules): nothing to link.
//! * Every target: the test-only build selected by `VIGIL_TWIN` or `VIGIL_BASELINE` (a broken
//!   twin or a benchmark baseline, `src/twins.rs`) becomes the cfg `vigil_twin` or
//!   `vigil_baseline`, checked against the catalog (`src/twins/catalog.rs`).

use std::env;
use std::fmt::Write as _;

#[macro_use]
#[path = "src/twins/catalog.rs"]
mod catalog;

use catalog::{Baseline, Twin};

/// Link arguments of a kernel-mode driver image.
///
/// * `/DRIVER`: a kernel driver (sets `IMAGE_DLLCHARACTERISTICS_WDM_DRIVER` checks and layout).
/// * `/SUBSYSTEM:NATIVE,10.00`: native subsystem, Windows 10 (the first with `ExAllocatePool2`
///   is 2004, whose subsystem version is still 10.0).
/// * `/ENTRY:DriverEntry`: the I/O manager calls DriverEntry directly; there is no CRT.
/// * `/NODEFAULTLIB`: no user-mode CRT or default libraries can slip in.
/// * `/RELEASE`: sets the PE checksum, which the loader verifies for drivers.
/// * `/INTEGRITYCHECK`: `FORCE_INTEGRITY`; the image must be signed to load (test signing on VMs).
/// * `/OPT:REF,ICF`: drop unreferenced code and fold identical functions.
/// * `/MERGE:.edata=.rdata`: the export directory lives in read-only data (DriverEntry is
///   exported by the cdylib; merging keeps the section list short and read-only).
const DRIVER_LINK_ARGS: &[&str] = &[
    "/DRIVER",
    "/SUBSYSTEM:NATIVE,10.00",
    "/ENTRY:DriverEntry",
    "/NODEFAULTLIB",
    "/RELEASE",
    "/INTEGRITYCHECK",
    "/OPT:REF,ICF",
    "/MERGE:.edata=.rdata",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/seh/user_copy.c");
    select_test_build();

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "windows" || target_env != "msvc" {
        return;
    }

    if env::var_os("CARGO_FEATURE_WDK").is_some() {
        configure_with_wdk();
    } else {
        for arg in DRIVER_LINK_ARGS {
            println!("cargo:rustc-cdylib-link-arg={arg}");
        }
    }
    compile_seh_helper();
}

/// Sets the cfg of the test-only build the environment asks for, if any, and declares the valid
/// names of both cfgs (an unknown name in source is then an `unexpected_cfgs` warning).
///
/// Two variables, not one: a twin and a baseline are different things (a bug a check must catch,
/// a yardstick for the benchmarks), each with its own cfg, so the source says which it means and
/// an unknown name is reported with the list of its own kind. One build is at most one of them:
/// both set at once is refused. An empty value means unset (production).
///
/// A name not in the catalog, both variables set, or a value that is not Unicode fails the build
/// with a message that says what is valid.
fn select_test_build() {
    declare_values(Twin::CFG, Twin::ALL.iter().map(|twin| twin.name()));
    declare_values(Baseline::CFG, Baseline::ALL.iter().map(|b| b.name()));
    let (Ok(twin), Ok(baseline)) = (selected(Twin::ENV), selected(Baseline::ENV)) else {
        return;
    };
    let twin = twin.as_deref().map(Twin::from_name);
    let baseline = baseline.as_deref().map(Baseline::from_name);
    match (twin, baseline) {
        (Some(Err(unknown)), _) | (_, Some(Err(unknown))) => fail(&unknown.to_string()),
        (Some(Ok(twin)), Some(Ok(baseline))) => fail(&format!(
            "{}={twin} and {}={baseline} are both set: a build is production, one broken twin \
             or one benchmark baseline",
            Twin::ENV,
            Baseline::ENV
        )),
        (Some(Ok(twin)), None) => println!("cargo::rustc-cfg={}=\"{twin}\"", Twin::CFG),
        (None, Some(Ok(baseline))) => {
            println!("cargo::rustc-cfg={}=\"{baseline}\"", Baseline::CFG);
        }
        (None, None) => {}
    }
}

/// Declares `cfg` with exactly `names` as its values (the cfg absent is valid too).
fn declare_values<'a>(cfg: &str, names: impl Iterator<Item = &'a str>) {
    let mut values = String::new();
    for name in names {
        let separator = if values.is_empty() { "" } else { ", " };
        let _ = write!(values, "{separator}\"{name}\"");
    }
    println!("cargo::rustc-check-cfg=cfg({cfg}, values({values}))");
}

/// The value of the environment variable `var`, watched for changes: `Ok(None)` when unset or
/// empty; `Err` (after failing the build) when not Unicode.
fn selected(var: &str) -> Result<Option<String>, ()> {
    println!("cargo::rerun-if-env-changed={var}");
    match env::var(var) {
        Ok(value) => Ok(Some(value).filter(|value| !value.is_empty())),
        Err(env::VarError::NotPresent) => Ok(None),
        Err(env::VarError::NotUnicode(value)) => {
            fail(&format!("{var}={} is not Unicode", value.display()));
            Err(())
        }
    }
}

/// Fails the build with `message` (one line; cargo prints it as an error of this package).
fn fail(message: &str) {
    println!("cargo::error={message}");
}

/// Compiles `src/seh/user_copy.c` for the kernel.
///
/// Kernel code generation: no stack protector (there is no `__security_cookie` here), no
/// builtins (the copy loop must stay a loop inside the image), freestanding (no CRT headers).
fn compile_seh_helper() {
    let mut build = cc::Build::new();
    // No frame pointers: `cc` forces them when debug information is on, and a `push rbp` in the
    // copy leaf would give it a prologue without unwind data, so an access violation there could
    // not be unwound to the `__except` (on Windows: a bug check instead of a status).
    build
        .file("src/seh/user_copy.c")
        .force_frame_pointer(false)
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true);
    if env::var_os("CARGO_FEATURE_WDK").is_some() {
        // The WDK's cl.exe: /kernel implies no C++ exceptions, /GS- drops the cookie check.
        build.flag("/kernel").flag("/GS-");
    } else {
        build
            .compiler("clang")
            .archiver("llvm-ar")
            .flag("-ffreestanding")
            .flag("-fno-builtin")
            .flag("-fno-stack-protector")
            .flag("-mno-red-zone");
    }
    build.compile("vigil_seh");
}

#[cfg(windows)]
fn configure_with_wdk() {
    #[cfg(feature = "wdk")]
    {
        if let Err(error) = wdk_build::configure_wdk_binary_build() {
            panic!("wdk-build could not configure the driver build: {error}");
        }
    }
}

#[cfg(not(windows))]
fn configure_with_wdk() {
    panic!(
        "the `wdk` feature needs a Windows host with the WDK installed; \
         on Linux build without it (the default)"
    );
}
