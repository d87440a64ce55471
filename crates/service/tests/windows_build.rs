//! The Windows build of `vigil.exe`: cross-compiled here for `x86_64-pc-windows-gnu` (linker
//! `x86_64-w64-mingw32-gcc`), then its import table read with the `object` crate. It must import
//! the Filter Manager client routines from `fltlib.dll`, the completion-port routines, and the
//! service-control routines from `advapi32.dll`: proof that the Windows-only code is compiled
//! in and linked, not just that the portable core builds.
//!
//! The `windows` crate declares its imports through `windows-link` (raw-dylib), so no
//! `fltlib.lib` import library is needed, only the mingw-w64 linker for the C runtime.
//!
//! Needs: `rustup target add x86_64-pc-windows-gnu` and Debian's `gcc-mingw-w64-x86-64`.
//! Without them the test fails and says so; `VIGIL_SKIP_WINDOWS_BUILD=1` skips it on a machine
//! that cannot have them (CI installs both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::pe::{IMAGE_FILE_MACHINE_AMD64, IMAGE_SUBSYSTEM_WINDOWS_CUI};
use object::read::pe::{ImageNtHeaders, PeFile64};

const TARGET: &str = "x86_64-pc-windows-gnu";
const LINKER: &str = "x86_64-w64-mingw32-gcc";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/service has a grandparent")
        .to_path_buf()
}

fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output();
    match targets {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        _ => missing.push(format!("the Rust target (rustup target add {TARGET})")),
    }
    if Command::new(LINKER).arg("--version").output().is_err() {
        missing.push(format!(
            "the linker {LINKER} (apt-get install gcc-mingw-w64-x86-64)"
        ));
    }
    missing
}

/// Builds `vigil.exe` in its own target directory (so the outer cargo's lock is not waited
/// for) and returns its path.
fn build_exe() -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target").join("windows-service");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--package",
            "vigil-service",
            "--bin",
            "vigil",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "cross-build of vigil.exe failed: {status}"
    );
    target_dir.join(TARGET).join("debug").join("vigil.exe")
}

#[test]
fn vigil_exe_imports_fltlib_and_the_service_control_routines() {
    if std::env::var_os("VIGIL_SKIP_WINDOWS_BUILD").is_some() {
        eprintln!("skipped: VIGIL_SKIP_WINDOWS_BUILD is set");
        return;
    }
    let missing = missing_prerequisites();
    assert!(
        missing.is_empty(),
        "the Windows cross-build needs {} (or set VIGIL_SKIP_WINDOWS_BUILD=1)",
        missing.join(" and ")
    );
    let exe = build_exe();
    let data = std::fs::read(&exe).unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let pe = PeFile64::parse(&*data).expect("vigil.exe is a PE32+ image");
    let headers = pe.nt_headers();
    assert_eq!(
        headers.file_header().machine.get(object::LittleEndian),
        IMAGE_FILE_MACHINE_AMD64
    );
    assert_eq!(
        headers
            .optional_header()
            .subsystem
            .get(object::LittleEndian),
        IMAGE_SUBSYSTEM_WINDOWS_CUI,
        "a console program (the SCM starts console programs as services)"
    );
    let imports: BTreeSet<(String, String)> = object::Object::imports(&pe)
        .expect("import table")
        .map(|i| {
            let i = i.expect("import entry");
            (
                String::from_utf8_lossy(i.library()).to_ascii_lowercase(),
                match i.name() {
                    object::read::NameOrOrdinal::Name(name) => {
                        String::from_utf8_lossy(name).into_owned()
                    }
                    object::read::NameOrOrdinal::Ordinal(ordinal) => format!("#{ordinal}"),
                },
            )
        })
        .collect();
    let expected = [
        ("fltlib.dll", "FilterConnectCommunicationPort"),
        ("fltlib.dll", "FilterGetMessage"),
        ("fltlib.dll", "FilterReplyMessage"),
        ("fltlib.dll", "FilterSendMessage"),
        ("kernel32.dll", "CreateIoCompletionPort"),
        ("kernel32.dll", "GetQueuedCompletionStatus"),
        ("kernel32.dll", "CancelIoEx"),
        ("kernel32.dll", "QueryFullProcessImageNameW"),
        ("advapi32.dll", "StartServiceCtrlDispatcherW"),
        ("advapi32.dll", "RegisterServiceCtrlHandlerExW"),
        ("advapi32.dll", "SetServiceStatus"),
        ("advapi32.dll", "OpenSCManagerW"),
        ("advapi32.dll", "CreateServiceW"),
        ("advapi32.dll", "DeleteService"),
        ("advapi32.dll", "ControlService"),
    ];
    let absent: Vec<String> = expected
        .iter()
        .filter(|(lib, name)| !imports.contains(&((*lib).to_owned(), (*name).to_owned())))
        .map(|(lib, name)| format!("{lib}!{name}"))
        .collect();
    assert!(
        absent.is_empty(),
        "vigil.exe does not import {absent:?}; fltlib/advapi32 imports present: {:?}",
        imports
            .iter()
            .filter(|(lib, _)| lib == "fltlib.dll" || lib == "advapi32.dll")
            .collect::<Vec<_>>()
    );
}
