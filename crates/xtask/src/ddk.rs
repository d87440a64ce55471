//! Debian's Wine and mingw-w64 DDK headers, unpacked on the Linux host: the layout oracles of
//! `crates/sys/tests/layout.rs` and the headers the C minifilters under `tests/minifilters` are
//! compiled against ([`crate::minifilter`]). Nothing here runs Windows code.
//!
//! The headers come from three Debian packages (`libwine-dev`, `mingw-w64-x86-64-dev` and
//! `mingw-w64-common`, where the mingw `ddk/` links point). They are fetched with
//! `apt-get download` (no install, none of Wine's runtime) and unpacked with `dpkg -x` into a
//! cache directory, once: later runs reuse the tree. `VIGIL_DDK_HEADERS=<dir>` names an already
//! unpacked tree instead (a machine without apt). A missing tool, package or header is an error
//! naming it, never a silent pass.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian packages whose headers are fetched.
pub const PACKAGES: &[&str] = &["libwine-dev", "mingw-w64-x86-64-dev", "mingw-w64-common"];

/// Wine's include tree below the unpacked root (`msvcrt/`, `windows/`, `windows/ddk/`).
pub const WINE_INCLUDE: &str = "usr/include/wine/wine";

/// The unpacked header tree (with `usr/` below it): `$VIGIL_DDK_HEADERS` if set, else
/// `<cache>/root`, fetched into `cache` on first use.
///
/// # Errors
///
/// The headers cannot be obtained; the message says what is missing and how to fix it.
pub fn fetch_headers(cache: &Path) -> Result<PathBuf, String> {
    // One fetch at a time in this process: the staging directory is named by process id, so
    // two threads (parallel tests) must not unpack into it at once. Other processes have their
    // own staging directory and the rename settles the race.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(dir) = std::env::var_os("VIGIL_DDK_HEADERS") {
        let root = PathBuf::from(dir);
        check_tree(&root)?;
        return Ok(root);
    }
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

/// Checks that the headers every user includes are present below `root`.
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
