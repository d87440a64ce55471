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
    /// `STATUS_INVALID_DEVICE_REQUEST`.
    pub(crate) const INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32 as i32;
    /// `STATUS_OBJECT_NAME_INVALID`.
    pub(crate) const OBJECT_NAME_INVALID: i32 = 0xC000_0033_u32 as i32;
    /// `STATUS_OBJECT_PATH_NOT_FOUND`.
    pub(crate) const OBJECT_PATH_NOT_FOUND: i32 = 0xC000_003A_u32 as i32;
    /// `STATUS_DELETE_PENDING`.
    pub(crate) const DELETE_PENDING: i32 = 0xC000_0056_u32 as i32;
    /// `STATUS_FILE_IS_A_DIRECTORY`.
    pub(crate) const FILE_IS_A_DIRECTORY: i32 = 0xC000_00BA_u32 as i32;
    /// `STATUS_DIRECTORY_NOT_EMPTY`.
    pub(crate) const DIRECTORY_NOT_EMPTY: i32 = 0xC000_0101_u32 as i32;
    /// `STATUS_NOT_A_DIRECTORY`.
    pub(crate) const NOT_A_DIRECTORY: i32 = 0xC000_0103_u32 as i32;
    /// `STATUS_CANNOT_DELETE`.
    pub(crate) const CANNOT_DELETE: i32 = 0xC000_0121_u32 as i32;
    /// `STATUS_FILE_CLOSED`.
    pub(crate) const FILE_CLOSED: i32 = 0xC000_0128_u32 as i32;
    /// `STATUS_VOLUME_DISMOUNTED`.
    pub(crate) const VOLUME_DISMOUNTED: i32 = 0xC000_026E_u32 as i32;
}

/// An NTSTATUS as `0x%08X`.
pub(crate) fn status_text(status: i32) -> String {
    format!("{:#010x}", status.cast_unsigned())
}
