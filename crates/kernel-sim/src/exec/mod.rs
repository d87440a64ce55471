//! Execution of driver code: the per-thread state, the stack switch and the fault handler.
//!
//! This module and [`crate::mem`] hold most of kernel-sim's `unsafe`: the rest of the crate
//! calls into the driver through [`crate::kernel::Kernel::call_driver`], which is safe to use
//! given a function pointer the driver itself provided.

pub(crate) mod signals;
pub(crate) mod state;
pub(crate) mod switch;
