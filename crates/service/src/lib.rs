//! Vigil's user-mode service: the companion of the `vigil.sys` minifilter. It connects to the
//! driver's communication port, checks the protocol version, pushes the policy, writes every
//! event the driver reports to its sinks (JSON Lines, terminal) with sequence numbers checked,
//! answers verdict requests for protected paths, and rides through driver unloads and reloads.
//! User mode; the core is portable (tested on Linux), the port client and the Windows service
//! plumbing are Windows-only (`cfg(windows)`).
//!
//! # Using the core with any port client
//!
//! 1. Implement [`PortClient`] for one connection and [`Connector`] to make them (a closure
//!    `FnMut() -> Result<C, ClientError>` is a connector).
//! 2. Build a [`Service`] from a [`Policy`] ([`Policy::parse`], [`Policy::load`] or
//!    `Policy::default()`), a [`Sink`] (or a `Vec` of boxed sinks: [`JsonlSink`], [`HumanSink`],
//!    [`MemorySink`], [`NullSink`]) and [`ServiceOptions`].
//! 3. Keep [`Service::control`] to stop it from another thread, then call [`Service::run`]
//!    with the connector and a [`Clock`] ([`SystemClock`]); it returns a [`Summary`].
//!
//! The service's tests drive the core with an in-memory fake driver (`tests/common/fake.rs`,
//! not part of the library). The `vigil-demo` crate
//! (`crates/demo`, Linux) implements them over kernel-sim's client side, so the core runs
//! against the real vigil.sys loaded in kernel-sim.
//!
//! The JSON Lines field table is in [`record`]; the ECS output in [`ecs`] (mapping table in
//! `docs/ecs.md`); the process table that gives each event its process in [`process_table`];
//! the policy format in [`policy`]; the flush and
//! rotation policies in [`sink`]; the connection, reconnection and stop rules in [`service`].

pub mod backlog;
pub mod cli;
pub mod client;
pub mod commands;
pub mod control;
pub mod datadir;
pub mod ecs;
pub mod eventlog;
pub mod lifecycle;
pub mod logfile;
pub mod paths;
pub mod policy;
pub mod process_table;
pub mod record;
pub mod sequence;
pub mod service;
pub mod sink;
pub mod tail;
#[cfg(windows)]
pub mod windows;

pub use client::{ClientError, Connector, Incoming, PortClient};
pub use control::{Backoff, Clock, ManualClock, ServiceControl, SystemClock};
pub use policy::{Decision, Policy, PolicyError, ProcessNames};
pub use process_table::{ProcessInfo, ProcessTable};
pub use record::RecordFormat;
pub use sequence::{Check, Gap, ResumePoint, SequenceTracker};
pub use service::{
    ConnectionEnd, Counters, Level, Log, MemoryLog, PolicyLoader, ReloadError, Service,
    ServiceError, ServiceOptions, StderrLog, Summary, TeeLog,
};
pub use sink::{HumanSink, JsonlOptions, JsonlSink, MemorySink, NullSink, Sink};
