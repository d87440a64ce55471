//! The harness: what runs many drivers' lives at once on top of the public API. Load/unload
//! scenarios with I/O, port clients, churn and unload races ([`scenario`]), the
//! fault-injection sweep ([`sweep`]), `fltmc`'s commands on one machine ([`fltmc`]), and all of
//! them at once with a Filter Verifier–style report ([`verify`]). Host
//! code; the crate root re-exports these modules, so their public paths are
//! `vigil_kernel_sim::scenario`, `vigil_kernel_sim::sweep` and `vigil_kernel_sim::fltmc`.

pub mod fltmc;
pub mod scenario;
pub mod sweep;
mod transacted;
pub mod verify;
