//! Raw declarations of the Windows kernel (ntoskrnl, HAL) and Filter Manager (FltMgr) routines,
//! types and constants that Vigil uses, under their C names.
//!
//! This is a `-sys` crate: declarations only, no logic. Safe wrappers live in the driver.
//!
//! * **Types and constants compile on every target.** kernel-sim (a Linux process) builds the very
//!   structures it hands to the driver from these definitions, so there is one source of truth,
//!   checked once by the layout tests in `tests/layout.rs` against the Wine and mingw-w64 DDK
//!   headers compiled by clang for `x86_64-pc-windows-msvc`, or against Microsoft's documented
//!   layout where neither header defines the type.
//! * **Routines exist only for `target_os = "windows"`**, as `raw-dylib` imports with
//!   `modifiers = "+verbatim"`, so the image imports from `ntoskrnl.exe` and `FLTMGR.SYS` exactly
//!   (never `ntoskrnl.exe.dll`), and no WDK import library is needed to link.
//! * **Every function pointer type is `extern "win64"`.** On x86-64 Windows that is the system ABI;
//!   spelled out, it stays right when kernel-sim calls the same pointers from Linux, where
//!   `extern "system"` would mean the System V ABI.
//! * Windows `LONG`/`ULONG` are 32-bit on every target here, so they are `i32`/`u32`, never
//!   `c_long`, which is 64-bit on Linux.
//!
//! Only x86-64 is supported: every layout below is the x64 layout.

#![no_std]
#![expect(
    non_camel_case_types,
    reason = "kernel types keep their C names in this crate"
)]
#![expect(
    non_snake_case,
    reason = "kernel fields and routines keep their C names in this crate"
)]
#![expect(
    non_upper_case_globals,
    reason = "kernel enumerators keep their C names in this crate"
)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("vigil-sys declares the x86-64 layouts only");

mod basic;
mod flt;
mod flt_ops;
mod io;
mod process;
mod status;

#[cfg(target_os = "windows")]
mod fltmgr;
#[cfg(target_os = "windows")]
mod ntoskrnl;

pub use basic::*;
pub use flt::*;
pub use flt_ops::*;
pub use io::*;
pub use process::*;
pub use status::*;

#[cfg(target_os = "windows")]
pub use fltmgr::*;
#[cfg(target_os = "windows")]
pub use ntoskrnl::*;
