//! Process notification and token query types (`ntddk.h`, `ntifs.h`, `winnt.h`): what the
//! driver's process table reads.

use crate::basic::{CLIENT_ID, HANDLE, NTSTATUS, PEPROCESS, UNICODE_STRING};
use crate::io::FILE_OBJECT;
use core::ffi::c_void;

/// `PS_CREATE_NOTIFY_INFO`: what a process-notify routine learns of a process being created.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PS_CREATE_NOTIFY_INFO {
    /// `sizeof(PS_CREATE_NOTIFY_INFO)`.
    pub Size: usize,
    /// Bit 0: `FileOpenNameAvailable` (`ImageFileName` is the exact name the image was opened by).
    pub Flags: u32,
    /// The parent process's id.
    pub ParentProcessId: HANDLE,
    /// The process and thread ids of the creating thread.
    pub CreatingThreadId: CLIENT_ID,
    /// The image file's object.
    pub FileObject: *mut FILE_OBJECT,
    /// The image file's name (may be NULL).
    pub ImageFileName: *const UNICODE_STRING,
    /// The command line (may be NULL).
    pub CommandLine: *const UNICODE_STRING,
    /// What creation returns; the routine may set a failure to veto it.
    pub CreationStatus: NTSTATUS,
}

/// `PCREATE_PROCESS_NOTIFY_ROUTINE_EX`: called at PASSIVE_LEVEL; `CreateInfo` NULL on exit.
pub type PCREATE_PROCESS_NOTIFY_ROUTINE_EX = Option<
    unsafe extern "win64" fn(
        Process: PEPROCESS,
        ProcessId: HANDLE,
        CreateInfo: *mut PS_CREATE_NOTIFY_INFO,
    ),
>;

/// `SID_AND_ATTRIBUTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SID_AND_ATTRIBUTES {
    /// The SID (variable length, in the same buffer).
    pub Sid: *mut c_void,
    /// Its attributes.
    pub Attributes: u32,
}

/// `TOKEN_USER`: what `SeQueryInformationToken(TokenUser)` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TOKEN_USER {
    /// The token's user.
    pub User: SID_AND_ATTRIBUTES,
}

/// `TOKEN_INFORMATION_CLASS`: `TokenUser` (a `TOKEN_USER`).
pub const TokenUser: u32 = 1;
/// `TOKEN_INFORMATION_CLASS`: `TokenSessionId` (a `ULONG`).
pub const TokenSessionId: u32 = 12;

/// `IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY` (`/INTEGRITYCHECK`): required of an image that
/// registers a process-notify routine.
pub const IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY: u16 = 0x0080;
