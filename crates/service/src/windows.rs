//! The Windows-only parts: the `fltlib.dll` port client, the service control manager plumbing,
//! and process image names. User mode, `cfg(windows)`; cross-built on Linux for
//! `x86_64-pc-windows-gnu`, never run there.

pub mod eventlog;
pub mod identity;
pub mod paths;
pub mod port;
pub mod process;
pub mod registry;
pub mod scm;
pub mod security;
