//! Emulations of the `ntoskrnl.exe` routines a driver imports, each an `extern "win64"`
//! function bound into the image's import table by the loader.
//!
//! Each routine goes through [`crate::kernel::emulate`] with the IRQL limit of its reference
//! page, checks its documented parameter rules, and answers as the kernel does (statuses,
//! out-parameters). Failable routines ask the fault injector first.

pub(crate) mod event;
pub(crate) mod exports;
pub(crate) mod io;
pub(crate) mod misc;
pub(crate) mod pool;
pub(crate) mod registry;
pub(crate) mod rtl;
pub(crate) mod sync;
pub(crate) mod thread;

/// NTSTATUS values kernel-sim returns that `vigil-sys` does not declare.
pub(crate) mod status {
    #![expect(
        clippy::cast_possible_wrap,
        reason = "NTSTATUS values are written as their u32 bit patterns"
    )]
    /// `STATUS_INVALID_HANDLE`.
    pub(crate) const INVALID_HANDLE: i32 = 0xC000_0008_u32 as i32;
    /// `STATUS_OBJECT_TYPE_MISMATCH`.
    pub(crate) const OBJECT_TYPE_MISMATCH: i32 = 0xC000_0024_u32 as i32;
    /// `STATUS_OBJECT_NAME_COLLISION`.
    pub(crate) const OBJECT_NAME_COLLISION: i32 = 0xC000_0035_u32 as i32;
}

/// An NTSTATUS as `0x%08X`.
pub(crate) fn status_text(status: i32) -> String {
    format!("{:#010x}", status.cast_unsigned())
}
