//! The harness: what runs many drivers' lives at once on top of the public API. Load/unload
//! scenarios with I/O, port clients, churn and unload races ([`scenario`]), and the
//! fault-injection sweep ([`sweep`]). Host code; the crate root re-exports both modules, so
//! their public paths are `vigil_kernel_sim::scenario` and `vigil_kernel_sim::sweep`.

pub mod scenario;
pub mod sweep;
