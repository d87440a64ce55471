//! Broken twins: test-only builds of `vigil.sys`, each with one deliberate bug behind a
//! `twin-*` cargo feature, so that kernel-sim's tests can show that each of its checks catches
//! the bug it is meant for. A production build enables none of them, and then every function
//! here compiles to nothing.
//!
//! The bugs that replace a call (a missing wait, a missing close) are written at their call
//! site as `cfg!(feature = "twin-...")` conditions, next to the code they break; the ones that
//! add a wrong action live here.

#[cfg(feature = "twin-leak")]
use crate::kernel::pool::{PoolBuffer, tags};

/// `twin-leak`: a pool block allocated at load and never freed (the leak check by tag).
pub fn after_load() {
    #[cfg(feature = "twin-leak")]
    if let Ok(block) = PoolBuffer::try_zeroed(64, tags::GLOBALS) {
        core::mem::forget(block);
    }
}

/// `twin-irql-not-restored`: a callback that returns at APC_LEVEL (the IRQL-restored check).
/// `twin-bad-preop-status`: an invalid pre-operation status (the return-status check).
pub fn corrupt_pre_cleanup_return(status: i32) -> i32 {
    #[cfg(feature = "twin-irql-not-restored")]
    crate::kernel::irql::twin_raise_to_apc();
    #[cfg(feature = "twin-bad-preop-status")]
    let status = {
        let _ = status;
        42
    };
    status
}
