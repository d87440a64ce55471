//! Vigil: a Windows file-system minifilter that reports file activity to a user-mode service.
//!
//! The crate is two things at once:
//! * on `x86_64-pc-windows-msvc`, a `no_std` kernel driver image (`cdylib`, renamed `vigil.sys`
//!   by `cargo xtask build`): the kernel modules below, compiled for Windows only;
//! * on the host, an `rlib` of the portable modules (errors, configuration rules), unit-tested
//!   like any Rust library.
//!
//! Raw FFI comes from `vigil-sys` and is called only inside `kernel` and `filter`, which wrap it
//! in safe types.

#![cfg_attr(target_os = "windows", no_std)]

pub mod attach;
pub mod config;
pub mod error;
pub mod prefix;
pub mod process_table;
pub mod stats;

#[cfg(target_os = "windows")]
mod callbacks;
#[cfg(target_os = "windows")]
mod commands;
#[cfg(target_os = "windows")]
mod delivery;
#[cfg(target_os = "windows")]
mod entry;
#[cfg(target_os = "windows")]
mod events;
#[cfg(target_os = "windows")]
mod filter;
#[cfg(target_os = "windows")]
mod globals;
#[cfg(target_os = "windows")]
mod identity;
#[cfg(target_os = "windows")]
mod kernel;
#[cfg(target_os = "windows")]
mod platform;
#[cfg(target_os = "windows")]
mod port;
#[cfg(target_os = "windows")]
mod process;
#[cfg(target_os = "windows")]
mod protection;
#[cfg(all(target_os = "windows", not(feature = "wdk")))]
mod runtime;
#[cfg(target_os = "windows")]
mod twins;
#[cfg(target_os = "windows")]
mod verdict;
#[cfg(all(target_os = "windows", feature = "wdk"))]
mod wdk_runtime;
