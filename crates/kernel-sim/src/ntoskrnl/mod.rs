//! Emulations of the `ntoskrnl.exe` routines a driver imports, each an `extern "win64"`
//! function bound into the image's import table by the loader.
//!
//! Each routine goes through [`crate::kernel::emulate`] with the IRQL limit of its reference
//! page, checks its documented parameter rules, and answers as the kernel does (statuses,
//! out-parameters). Failable routines ask the fault injector first.

pub(crate) mod debug;
pub(crate) mod event;
pub(crate) mod exports;
pub(crate) mod fast_mutex;
pub(crate) mod io;
pub(crate) mod lookaside;
pub(crate) mod mdl;
pub(crate) mod misc;
pub(crate) mod name_expression;
pub(crate) mod pool;
pub(crate) mod pool_with_tag;
pub(crate) mod process;
pub(crate) mod process_notify;
#[cfg(test)]
mod process_notify_tests;
pub(crate) mod registry;
pub(crate) mod resource;
pub(crate) mod rtl;
#[cfg(test)]
mod rtl_lock_tests;
pub(crate) mod rtl_strings;
pub(crate) mod slist;
pub(crate) mod sync;
pub(crate) mod system_routine;
pub(crate) mod thread;
pub(crate) mod upcase;

/// The file-system statuses kernel-sim answers with, by short names; the values are `vigil-sys`'s.
pub(crate) mod status {
    pub(crate) use vigil_sys::{
        STATUS_CANNOT_DELETE as CANNOT_DELETE, STATUS_DELETE_PENDING as DELETE_PENDING,
        STATUS_DIRECTORY_NOT_EMPTY as DIRECTORY_NOT_EMPTY, STATUS_FILE_CLOSED as FILE_CLOSED,
        STATUS_FILE_IS_A_DIRECTORY as FILE_IS_A_DIRECTORY,
        STATUS_INVALID_DEVICE_REQUEST as INVALID_DEVICE_REQUEST,
        STATUS_INVALID_HANDLE as INVALID_HANDLE, STATUS_NOT_A_DIRECTORY as NOT_A_DIRECTORY,
        STATUS_OBJECT_NAME_COLLISION as OBJECT_NAME_COLLISION,
        STATUS_OBJECT_NAME_INVALID as OBJECT_NAME_INVALID,
        STATUS_OBJECT_PATH_NOT_FOUND as OBJECT_PATH_NOT_FOUND,
        STATUS_OBJECT_TYPE_MISMATCH as OBJECT_TYPE_MISMATCH,
        STATUS_VOLUME_DISMOUNTED as VOLUME_DISMOUNTED,
    };
}

/// Lookaside lists never deleted and fast mutexes still owned when the driver is gone (`why`).
pub(crate) fn report_list_and_mutex_leaks(k: &crate::kernel::Kernel, why: &str) {
    lookaside::report_leaks(k, why);
    fast_mutex::report_leaks(k, why);
}

/// An NTSTATUS as `0x%08X`.
pub(crate) fn status_text(status: i32) -> String {
    format!("{:#010x}", status.cast_unsigned())
}
