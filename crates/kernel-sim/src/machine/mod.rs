//! The machine: what a driver's code runs on, below any kernel object. Page mappings
//! ([`pages`]), the special and standard pools ([`pool`]), typed access to driver-provided
//! pointers ([`guest`]), the per-thread CPU state and IRQL ([`state`]), the driver stacks and
//! the stack switch ([`switch`]), and the fault handlers ([`signals`]).
//!
//! This layer holds most of kernel-sim's `unsafe`; it knows nothing of kernels, objects or
//! Filter Manager. The kernel layer above calls into the driver through
//! `Kernel::call_driver`, which is safe to use given a function pointer the driver itself
//! provided. Host code, every driver thread; the signal handlers are async-signal-safe.

pub(crate) mod guest;
pub(crate) mod pages;
pub(crate) mod pool;
pub(crate) mod signals;
pub(crate) mod special;
pub(crate) mod state;
pub(crate) mod switch;
