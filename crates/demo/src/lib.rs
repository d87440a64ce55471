//! Vigil's driver and service together on Linux: the real `vigil.sys` loaded in kernel-sim, the
//! service core (`vigil-service`) connected to it through kernel-sim's client side, and a
//! scripted workload that knows which events the driver must report. The `vigil-demo` binary
//! (`cargo xtask demo`), the end-to-end tests (`tests/sim_*.rs`) and the end-to-end bench
//! (`benches/end_to_end.rs`) are built from these parts. Linux only (kernel-sim runs the image
//! natively); user mode.
//!
//! - [`sim_client`]: the service's [`PortClient`](vigil_service::PortClient) and
//!   [`Connector`](vigil_service::Connector) over kernel-sim's client side.
//! - [`machine`]: kernel-sim with the driver loaded and reloaded, and its two volumes (the
//!   names are `vigil_kernel_sim::fixtures`).
//! - [`service_thread`]: the service core on its own thread, as the machine's service process.
//! - [`workload`]: the processes, threads and operations, and the demo's policy.
//! - [`jsonl`]: the JSON Lines output read back.
//!
//! Windows constants (statuses, dispositions, access masks) come from `vigil-sys`.

#[cfg(target_os = "linux")]
pub mod jsonl;
#[cfg(target_os = "linux")]
pub mod machine;
#[cfg(target_os = "linux")]
pub mod service_thread;
#[cfg(target_os = "linux")]
pub mod sim_client;
#[cfg(target_os = "linux")]
pub mod workload;
