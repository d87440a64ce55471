//! The driver's unsafe boundary, checked: raw FFI (a routine declared in `vigil-sys`) is named
//! only in `src/kernel/`, `src/filter/` and `src/runtime.rs`, the modules that wrap it in safe
//! types; every other driver file uses those wrappers. Host-only, reads the sources.
//!
//! The scanner collects every routine declared inside an `extern` block of `crates/sys/src`, then
//! looks for each name, as a whole identifier outside comments, in the driver's other files:
//! importing or calling one is a finding. Its own tests run it on synthetic sources that break
//! the rule in each way it must catch (the broken twins), and on ones it must let pass.
//!
//! A second check: every `unsafe extern` function the driver defines (the entry points FltMgr,
//! the I/O manager and the kernel call) says in a `# Safety` section what its caller promises.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Where raw FFI may be named: the wrapper modules.
const ALLOWED: &[&str] = &["src/kernel/", "src/filter/", "src/runtime.rs"];

/// One use of a raw routine outside the wrapper modules.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    file: String,
    line: usize,
    routine: String,
}

/// A line without its `//` comment (`//`, `///` and `//!` alike). Good enough for this code
/// base: no string literal in the driver contains `//`.
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

/// The identifiers of a line of code.
fn identifiers(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| {
            word.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        })
}

/// The routines (and imported data, such as `PsThreadType`) declared inside `extern` blocks of
/// one source file of `vigil-sys`.
fn declared_routines(source: &str) -> BTreeSet<String> {
    let mut routines = BTreeSet::new();
    // Brace depth inside the current extern block; `None` outside one.
    let mut depth: Option<usize> = None;
    for line in source.lines() {
        let code = code_of(line);
        let trimmed = code.trim_start();
        if depth.is_none() {
            let starts_block = (trimmed.starts_with("extern")
                || trimmed.starts_with("unsafe extern"))
                && trimmed.trim_end().ends_with('{');
            if starts_block {
                depth = Some(1);
            }
            continue;
        }
        if let Some(rest) = trimmed
            .strip_prefix("pub ")
            .map(|rest| rest.strip_prefix("safe ").unwrap_or(rest))
            .and_then(|rest| {
                rest.strip_prefix("fn ")
                    .or_else(|| rest.strip_prefix("static mut "))
                    .or_else(|| rest.strip_prefix("static "))
            })
        {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                routines.insert(name);
            }
        }
        let current = depth.unwrap_or(0) + code.matches('{').count();
        let closed = code.matches('}').count();
        depth = current.checked_sub(closed).filter(|&d| d > 0);
    }
    routines
}

/// The findings in one driver source file (`file` is its path relative to the package root).
fn scan(file: &str, source: &str, routines: &BTreeSet<String>) -> Vec<Finding> {
    if ALLOWED.iter().any(|allowed| file.starts_with(allowed)) {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for (index, line) in source.lines().enumerate() {
        for word in identifiers(code_of(line)) {
            if routines.contains(word) {
                findings.push(Finding {
                    file: file.to_owned(),
                    line: index + 1,
                    routine: word.to_owned(),
                });
            }
        }
    }
    findings
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every routine `vigil-sys` declares.
fn sys_routines() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("crates/sys/src"), &mut files);
    files
        .iter()
        .flat_map(|path| declared_routines(&fs::read_to_string(path).expect("sys source")))
        .collect()
}

/// `(file, source)` for every driver source file, paths relative to the package root.
fn driver_sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files
        .iter()
        .map(|path| {
            let relative = path
                .strip_prefix(root())
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            (relative, fs::read_to_string(path).expect("driver source"))
        })
        .collect()
}

#[test]
fn raw_ffi_is_named_only_in_the_wrapper_modules() {
    let routines = sys_routines();
    // The scanner must see the routines it guards, or it passes by finding nothing to look for.
    for known in [
        "ExAllocatePool2",
        "FltSendMessage",
        "PsGetCurrentThreadId",
        "KeSetEvent",
    ] {
        assert!(
            routines.contains(known),
            "vigil-sys routine {known} not collected"
        );
    }
    let sources = driver_sources();
    let mut in_wrappers = 0;
    let mut findings = Vec::new();
    for (file, source) in &sources {
        let everywhere = scan("<any>", source, &routines).len();
        let outside = scan(file, source, &routines);
        if outside.is_empty() {
            in_wrappers += everywhere;
        }
        findings.extend(outside);
    }
    println!(
        "{} vigil-sys routines; {in_wrappers} uses in src/kernel, src/filter and src/runtime.rs; \
         {} elsewhere",
        routines.len(),
        findings.len()
    );
    assert!(
        in_wrappers > 0,
        "the scan found no use at all: it is not looking"
    );
    assert!(
        findings.is_empty(),
        "raw vigil-sys routines named outside src/kernel, src/filter and src/runtime.rs (wrap them \
         there): {findings:#?}"
    );
}

/// The `unsafe extern` functions defined in `source` whose doc comment has no `# Safety`
/// section, as `(line, name)`.
fn callbacks_without_safety(source: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut missing = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code = code_of(line).trim_start();
        let code = code.strip_prefix("pub ").unwrap_or(code);
        let Some(rest) = code.strip_prefix("unsafe extern ") else {
            continue;
        };
        let Some(after_fn) = rest.split_once(" fn ").map(|(_, after)| after) else {
            continue;
        };
        let name: String = after_fn
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let documented = lines[..index]
            .iter()
            .rev()
            .map(|line| line.trim_start())
            .take_while(|line| line.starts_with("///") || line.starts_with("#["))
            .any(|line| line.trim_end() == "/// # Safety");
        if !documented {
            missing.push((index + 1, name));
        }
    }
    missing
}

#[test]
fn every_unsafe_extern_function_documents_its_safety_contract() {
    let mut missing = Vec::new();
    let mut seen = 0;
    for (file, source) in driver_sources() {
        seen += source.matches("unsafe extern \"win64\" fn ").count();
        for (line, name) in callbacks_without_safety(&source) {
            missing.push(format!("{file}:{line} {name}"));
        }
    }
    assert!(
        seen >= 10,
        "found only {seen} unsafe extern functions: the scan is not looking"
    );
    assert!(missing.is_empty(), "no `# Safety` section: {missing:#?}");
}

/// Broken twin of the check above: a callback documented without its contract.
#[test]
fn twin_callback_without_safety_section_is_caught() {
    let source = "/// Pre-write.\n\
                  pub unsafe extern \"win64\" fn pre_write(data: *mut u8) -> i32 { 0 }\n\
                  /// Unload.\n\
                  ///\n\
                  /// # Safety\n\
                  ///\n\
                  /// Called by FltMgr only.\n\
                  #[unsafe(no_mangle)]\n\
                  unsafe extern \"win64\" fn unload(flags: u32) -> i32 { 0 }\n";
    assert_eq!(
        callbacks_without_safety(source),
        [(2, "pre_write".to_owned())]
    );
}

fn routines_of_sys(source: &str) -> BTreeSet<String> {
    declared_routines(source)
}

const SYNTHETIC_SYS: &str = r#"
pub const fn NT_SUCCESS(status: i32) -> bool { status >= 0 }
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "win64" {
    /// Ends the current system thread.
    pub fn PsTerminateSystemThread(ExitStatus: i32) -> i32;
    pub fn KeWaitForSingleObject(
        Object: PVOID,
        Timeout: *mut i64,
    ) -> i32;
    pub static PsThreadType: *mut PVOID;
}
pub struct NotARoutine { pub field: u32 }
"#;

#[test]
fn scanner_collects_routines_from_extern_blocks_only() {
    let routines = routines_of_sys(SYNTHETIC_SYS);
    assert_eq!(
        routines.into_iter().collect::<Vec<_>>(),
        [
            "KeWaitForSingleObject",
            "PsTerminateSystemThread",
            "PsThreadType"
        ]
    );
}

/// Broken twin: a driver file outside the wrapper modules that imports and calls a raw routine.
#[test]
fn twin_raw_call_outside_the_wrappers_is_caught() {
    let routines = routines_of_sys(SYNTHETIC_SYS);
    let source = "use vigil_sys::{PsTerminateSystemThread, STATUS_SUCCESS};\n\
                  fn stop() {\n    \
                      // SAFETY: ends the thread.\n    \
                      unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };\n\
                  }\n\
                  fn wait() { unsafe { vigil_sys::KeWaitForSingleObject(p, t) }; }\n";
    let findings = scan("src/delivery.rs", source, &routines);
    let lines: Vec<(usize, &str)> = findings
        .iter()
        .map(|f| (f.line, f.routine.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (1, "PsTerminateSystemThread"),
            (4, "PsTerminateSystemThread"),
            (6, "KeWaitForSingleObject")
        ]
    );
}

#[test]
fn scanner_lets_comments_and_wrapper_modules_pass() {
    let routines = routines_of_sys(SYNTHETIC_SYS);
    let commented = "//! Wraps PsTerminateSystemThread.\n\
                     /// Like KeWaitForSingleObject, bounded.\n\
                     fn f() {} // not PsTerminateSystemThread\n\
                     let KeWaitForSingleObjectish = 1;\n";
    assert_eq!(scan("src/delivery.rs", commented, &routines), []);
    let call = "unsafe { PsTerminateSystemThread(0) };\n";
    assert_eq!(scan("src/kernel/thread.rs", call, &routines), []);
    assert_eq!(scan("src/filter/port.rs", call, &routines), []);
    assert_eq!(scan("src/runtime.rs", call, &routines), []);
    assert_eq!(scan("src/kernel_like.rs", call, &routines).len(), 1);
}
