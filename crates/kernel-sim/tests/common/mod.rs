//! Shared by the integration tests: the real vigil.sys, built once per test binary.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Builds (once) and returns the production vigil.sys.
pub fn vigil_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys"))
        .clone()
}
