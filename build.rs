//! Build script of the driver package.
//!
//! * Windows-kernel target (`x86_64-pc-windows-msvc`), without the `wdk` feature (every Linux
//!   build): compiles the SEH user-copy helper with clang through the `cc` crate and emits the link
//!   arguments of a kernel driver for rust-lld (lld-link flavour). No SDK, no WDK: imports are
//!   `raw-dylib` declarations in `vigil-sys`.
//! * With `--features wdk` on a Windows host with the WDK: `wdk_build` configures the build
//!   (libraries, link arguments, packaging metadata); the SEH helper is then compiled by the
//!   WDK's own toolchain through the same `cc` call.
//! * Host targets (unit tests of the portable modules): nothing to do.

use std::env;

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
