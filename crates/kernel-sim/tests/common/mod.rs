//! Shared by the integration tests: the driver image under test.

#![allow(dead_code, reason = "each test binary uses a subset of these helpers")]

use std::path::PathBuf;
use std::sync::OnceLock;

/// The image under test: `$KERNEL_SIM_IMAGE` if set (another build, another minifilter),
/// otherwise the production vigil.sys, built once per test binary with `xtask::build_driver`.
pub fn vigil_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| match std::env::var_os("KERNEL_SIM_IMAGE") {
            Some(path) => PathBuf::from(path),
            None => xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys"),
        })
        .clone()
}
