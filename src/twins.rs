//! Broken twins and benchmark baselines: test-only builds of `vigil.sys`. A twin carries one
//! deliberate bug, so that kernel-sim's tests can show that each of its checks catches the bug
//! it is meant for; a baseline is a simplified driver the benchmarks measure beside the real
//! one. Kernel: [`is`] and [`is_baseline`] are constants (any IRQL); the other functions run at
//! the IRQL of the one call site each has.
//!
//! One build is at most one of them, chosen by build.rs from the environment (`VIGIL_TWIN`,
//! `VIGIL_BASELINE`; the names are in [`catalog`]) and visible here as the cfg `vigil_twin` or
//! `vigil_baseline`. In code, a twin's bug is an ordinary branch on [`is`]`(Twin::…)`, written
//! at the site it breaks: every twin's code is then type-checked and linted in every build, and
//! in production the constant `false` removes it. `#[cfg(vigil_twin = "…")]` is kept for the
//! few items that must not exist at all in production (a field of the globals, a static), each
//! with its reason; build.rs declares the valid names, so a misspelt one is an
//! `unexpected_cfgs` warning (denied in CI). The bugs that add a wrong action live here.

#[macro_use]
mod catalog;

pub use catalog::{Baseline, Twin};

use crate::kernel::pool::{PoolBuffer, tags};

/// Defines `is_built` on each kind: true only in the build whose cfg names that variant.
macro_rules! define_is_built {
    ($(
        $(#[$kind_doc:meta])*
        $kind:ident($called:literal: $env:ident => $cfg:ident) {
            $( $(#[$doc:meta])* $variant:ident = $name:literal, )*
        }
    )*) => {$(
        impl $kind {
            const fn is_built(self) -> bool {
                match self {
                    $( Self::$variant => cfg!($cfg = $name), )*
                }
            }
        }
    )*};
}

with_catalog!(define_is_built);

/// Whether this image is the broken twin `twin` (false in production and in every other build).
pub const fn is(twin: Twin) -> bool {
    twin.is_built()
}

/// Whether this image is the benchmark baseline `baseline` (false in production).
pub const fn is_baseline(baseline: Baseline) -> bool {
    baseline.is_built()
}

/// `leak`: a pool block allocated at load and never freed (the leak check by tag).
pub fn after_load() {
    if is(Twin::Leak)
        && let Ok(block) = PoolBuffer::try_zeroed(64, tags::GLOBALS)
    {
        core::mem::forget(block);
    }
}

/// `irql-not-restored`: a callback that returns at APC_LEVEL (the IRQL-restored check).
/// `bad-preop-status`: an invalid pre-operation status (the return-status check).
pub fn corrupt_pre_cleanup_return(status: i32) -> i32 {
    if is(Twin::IrqlNotRestored) {
        crate::kernel::irql::twin_raise_to_apc();
    }
    if is(Twin::BadPreopStatus) { 42 } else { status }
}

/// `port-second-copy`: the field crash of RULES.md rule 5. The client port is also kept in a
/// second variable outside the slot, and unload closes that copy, without the slot's lock,
/// before retiring the slot: a send in progress through the slot's variable then uses a port
/// that is already closed.
///
/// A cfg, not [`is`]: production must hold no second copy of the port anywhere, not even an
/// unused static.
#[cfg(vigil_twin = "port-second-copy")]
static PORT_COPY: core::sync::atomic::AtomicPtr<core::ffi::c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// `port-second-copy`: remembers the connected client port a second time.
pub fn remember_client_port(port: vigil_sys::PFLT_PORT) {
    #[cfg(vigil_twin = "port-second-copy")]
    PORT_COPY.store(port.cast(), core::sync::atomic::Ordering::Release);
    let _ = port;
}

/// `port-second-copy`: closes the second copy, outside the slot, at unload.
pub fn close_second_port_copy(filter: vigil_sys::PFLT_FILTER) {
    #[cfg(vigil_twin = "port-second-copy")]
    {
        let mut copy = vigil_core::PortHandle::from_raw(
            PORT_COPY.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel),
        );
        if !copy.is_null() {
            // SAFETY: the broken twin's deliberate bug (a second copy closed outside the slot);
            // `copy` is a live local.
            unsafe { crate::filter::port::twin_close_port_copy(filter, &raw mut copy) };
        }
    }
    let _ = filter;
}
