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

/// `twin-port-second-copy`: the field crash of RULES.md rule 5. The client port is also kept in
/// a second variable outside the slot, and unload closes that copy, without the slot's lock,
/// before retiring the slot: a send in progress through the slot's variable then uses a port
/// that is already closed.
#[cfg(feature = "twin-port-second-copy")]
static PORT_COPY: core::sync::atomic::AtomicPtr<core::ffi::c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// `twin-port-second-copy`: remembers the connected client port a second time.
pub fn remember_client_port(port: vigil_sys::PFLT_PORT) {
    #[cfg(feature = "twin-port-second-copy")]
    PORT_COPY.store(port.cast(), core::sync::atomic::Ordering::Release);
    let _ = port;
}

/// `twin-port-second-copy`: closes the second copy, outside the slot, at unload.
pub fn close_second_port_copy(filter: vigil_sys::PFLT_FILTER) {
    #[cfg(feature = "twin-port-second-copy")]
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
