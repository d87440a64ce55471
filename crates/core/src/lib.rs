//! Vigil's portable synchronization core: the unload gate, the client-port slot and the event ring.
//!
//! Where it runs: in the kernel (inside `vigil.sys`, at the IRQL each type documents), in user mode
//! (the service and the tests, through `StdPlatform` with the `std` feature) and under the loom
//! model checker (`RUSTFLAGS="--cfg loom"`, through `LoomPlatform`).
//!
//! The logic of the three races of `RULES.md` (unload against `DriverEntry`, send against close of
//! the client port, unload against callbacks in flight) and the event ring is written once here,
//! against the [`Platform`] trait. The driver supplies the kernel implementation (`KEVENT`, spin lock,
//! `FltMgr` push lock, `KeDelayExecutionThread`).
//!
//! Every type that holds a platform object is built in place ([`UnloadGate::init_in_place`] and the
//! like) and never moves afterwards, because a `KEVENT` cannot move once initialized. User mode gets
//! pinned boxes instead (`new_boxed`).
//!
//! Nothing here allocates after construction, blocks without a bound, or panics on any input.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "std", loom))]
extern crate std;

/// The address of `$field` inside the `Self` being built in place at `$slot`, computed without a
/// dereference (so outside `unsafe`); its pointee type is inferred from the use.
macro_rules! field_of {
    ($slot:ident . $field:ident) => {
        $slot
            .wrapping_byte_add(core::mem::offset_of!(Self, $field))
            .cast()
    };
}

mod gate;
mod platform;
mod ring;
mod slot;
mod sync;
mod time;

#[cfg(loom)]
#[doc(hidden)]
pub mod twin;
#[cfg(not(loom))]
mod twin;

pub use gate::{
    EntryWait, GateGuard, UnloadBounds, UnloadDecision, UnloadError, UnloadGate, UnloadKind,
};
#[cfg(loom)]
pub use platform::loom::LoomPlatform;
#[cfg(feature = "std")]
pub use platform::std::StdPlatform;
pub use platform::{Platform, RawEvent, RawPassiveLock};
#[cfg(any(feature = "std", loom))]
pub use ring::BoxedRing;
pub use ring::{Drained, DropReason, EventRing, RingConsumer, RingStats};
pub use slot::{
    ClientPortSlot, CloseOutcome, ClosePort, ConnectError, PortHandle, PortStats, SendOutcome,
    SendPort,
};
pub use time::{Timeout, WaitOutcome, wait_until_signalled};

/// A value built in place in a fresh heap slot, then pinned (user mode).
///
/// # Safety
/// `init` initializes the whole value at the pointer it is given.
#[cfg(any(feature = "std", loom))]
unsafe fn boxed_in_place<T>(init: impl FnOnce(*mut T)) -> core::pin::Pin<std::boxed::Box<T>> {
    let mut slot = std::boxed::Box::<T>::new_uninit();
    init(slot.as_mut_ptr());
    // SAFETY: `init` initialized the value (caller's contract).
    let value = unsafe { slot.assume_init() };
    std::boxed::Box::into_pin(value)
}
