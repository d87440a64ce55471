//! FltMgr imports not emulated yet (phase 2: name information, contexts, requestor ids). Each
//! records a `NotEmulated` violation naming itself and fails in the way its caller must already
//! handle.

use std::ffi::c_void;

use vigil_sys::{
    FILE_OBJECT, FLT_CALLBACK_DATA, FLT_CONTEXT_TYPE, FLT_FILE_NAME_OPTIONS,
    FLT_SET_CONTEXT_OPERATION, HANDLE, NTSTATUS, PFLT_CONTEXT, PFLT_FILE_NAME_INFORMATION,
    PFLT_FILTER, PFLT_INSTANCE, POOL_TYPE, STATUS_NOT_IMPLEMENTED,
};

use crate::kernel::{IrqlRule, emulate};
use crate::report::ViolationKind;

fn not_yet(routine: &'static str) {
    emulate(routine, IrqlRule::Any, |k| {
        k.violation(
            ViolationKind::NotEmulated,
            routine,
            format!("{routine} is not emulated yet (kernel-sim phase 2)"),
        );
    });
}

/// `FltGetFileNameInformation` (not emulated yet).
pub(crate) extern "win64" fn flt_get_file_name_information(
    _data: *mut FLT_CALLBACK_DATA,
    _options: FLT_FILE_NAME_OPTIONS,
    _out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    not_yet("FltGetFileNameInformation");
    STATUS_NOT_IMPLEMENTED
}

/// `FltGetDestinationFileNameInformation` (not emulated yet).
pub(crate) extern "win64" fn flt_get_destination_file_name_information(
    _instance: PFLT_INSTANCE,
    _file: *mut FILE_OBJECT,
    _root: HANDLE,
    _name: *mut u16,
    _name_length: u32,
    _options: FLT_FILE_NAME_OPTIONS,
    _out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    not_yet("FltGetDestinationFileNameInformation");
    STATUS_NOT_IMPLEMENTED
}

/// `FltReleaseFileNameInformation` (not emulated yet).
pub(crate) extern "win64" fn flt_release_file_name_information(_info: PFLT_FILE_NAME_INFORMATION) {
    not_yet("FltReleaseFileNameInformation");
}

/// `FltGetRequestorProcessId` (not emulated yet).
pub(crate) extern "win64" fn flt_get_requestor_process_id(_data: *mut FLT_CALLBACK_DATA) -> u32 {
    not_yet("FltGetRequestorProcessId");
    0
}

/// `FltAllocateContext` (not emulated yet).
pub(crate) extern "win64" fn flt_allocate_context(
    _filter: PFLT_FILTER,
    _kind: FLT_CONTEXT_TYPE,
    _size: usize,
    _pool: POOL_TYPE,
    _out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    not_yet("FltAllocateContext");
    STATUS_NOT_IMPLEMENTED
}

/// `FltSetStreamHandleContext` (not emulated yet).
pub(crate) extern "win64" fn flt_set_stream_handle_context(
    _instance: PFLT_INSTANCE,
    _file: *mut FILE_OBJECT,
    _operation: FLT_SET_CONTEXT_OPERATION,
    _new: PFLT_CONTEXT,
    _old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    not_yet("FltSetStreamHandleContext");
    STATUS_NOT_IMPLEMENTED
}

/// `FltGetStreamHandleContext` (not emulated yet).
pub(crate) extern "win64" fn flt_get_stream_handle_context(
    _instance: PFLT_INSTANCE,
    _file: *mut FILE_OBJECT,
    _out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    not_yet("FltGetStreamHandleContext");
    STATUS_NOT_IMPLEMENTED
}

/// `FltReleaseContext` (not emulated yet).
pub(crate) extern "win64" fn flt_release_context(_context: *mut c_void) {
    not_yet("FltReleaseContext");
}
