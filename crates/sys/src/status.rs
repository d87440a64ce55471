//! The `NTSTATUS` values Vigil returns, tests for, or that kernel-sim produces, with the values
//! `ntstatus.h` gives them.

#![expect(
    clippy::cast_possible_wrap,
    reason = "NTSTATUS values are written as their u32 bit patterns"
)]

use crate::NTSTATUS;

/// `STATUS_SUCCESS`: The operation succeeded.
pub const STATUS_SUCCESS: NTSTATUS = 0x0000_0000_u32 as i32;
/// `STATUS_ALERTED`: A wait was alerted (success code).
pub const STATUS_ALERTED: NTSTATUS = 0x0000_0101_u32 as i32;
/// `STATUS_TIMEOUT`: A wait or `FltSendMessage` timed out. A *success* code: test for it explicitly.
pub const STATUS_TIMEOUT: NTSTATUS = 0x0000_0102_u32 as i32;
/// `STATUS_PENDING`: The operation is pending.
pub const STATUS_PENDING: NTSTATUS = 0x0000_0103_u32 as i32;
/// `STATUS_REPARSE`: The create must be reissued at a reparse point (success code).
pub const STATUS_REPARSE: NTSTATUS = 0x0000_0104_u32 as i32;
/// `STATUS_DATATYPE_MISALIGNMENT`: A misaligned access (warning code).
pub const STATUS_DATATYPE_MISALIGNMENT: NTSTATUS = 0x8000_0002_u32 as i32;
/// `STATUS_BUFFER_OVERFLOW`: The data did not fit; partial data returned (warning code).
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = 0x8000_0005_u32 as i32;
/// `STATUS_UNSUCCESSFUL`: Generic failure.
pub const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC000_0001_u32 as i32;
/// `STATUS_NOT_IMPLEMENTED`: The request is not implemented.
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = 0xC000_0002_u32 as i32;
/// `STATUS_ACCESS_VIOLATION`: An invalid memory access.
pub const STATUS_ACCESS_VIOLATION: NTSTATUS = 0xC000_0005_u32 as i32;
/// `STATUS_INVALID_PARAMETER`: A parameter is invalid.
pub const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
/// `STATUS_INVALID_DEVICE_REQUEST`: The request is not valid for this device: Vigil's answer to an unknown command.
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32 as i32;
/// `STATUS_ACCESS_DENIED`: Access denied: how a deny verdict completes an operation.
pub const STATUS_ACCESS_DENIED: NTSTATUS = 0xC000_0022_u32 as i32;
/// `STATUS_INFO_LENGTH_MISMATCH`: the buffer is too small for the information class.
pub const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = 0xC000_0004_u32 as i32;
/// `STATUS_BUFFER_TOO_SMALL`: The output buffer is too small for the reply.
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32 as i32;
/// `STATUS_OBJECT_NAME_NOT_FOUND`: The named object (registry key or value) does not exist.
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32 as i32;
/// `STATUS_OBJECT_NAME_COLLISION`: A create with `FILE_CREATE` (or a rename or link without
/// replace) found the name already taken.
pub const STATUS_OBJECT_NAME_COLLISION: NTSTATUS = 0xC000_0035_u32 as i32;
/// `STATUS_PORT_DISCONNECTED`: The communication port's client disconnected.
pub const STATUS_PORT_DISCONNECTED: NTSTATUS = 0xC000_0037_u32 as i32;
/// `STATUS_DELETE_PENDING`: The file is marked for deletion; no new open of it succeeds.
pub const STATUS_DELETE_PENDING: NTSTATUS = 0xC000_0056_u32 as i32;
/// `STATUS_REVISION_MISMATCH`: The peer speaks an incompatible protocol (major version mismatch).
pub const STATUS_REVISION_MISMATCH: NTSTATUS = 0xC000_0059_u32 as i32;
/// `STATUS_INSUFFICIENT_RESOURCES`: An allocation or other resource failed.
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
/// `STATUS_DEVICE_NOT_READY`: The device (driver state) is not ready.
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = 0xC000_00A3_u32 as i32;
/// `STATUS_NOT_SUPPORTED`: The request is not supported.
pub const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BB_u32 as i32;
/// `STATUS_INVALID_USER_BUFFER`: A user buffer is invalid (bad pointer or range).
pub const STATUS_INVALID_USER_BUFFER: NTSTATUS = 0xC000_00E8_u32 as i32;
/// `STATUS_INVALID_DEVICE_STATE`: The request is not valid in the current state.
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = 0xC000_0184_u32 as i32;
/// `STATUS_INVALID_BUFFER_SIZE`: A buffer's size is invalid for the request.
pub const STATUS_INVALID_BUFFER_SIZE: NTSTATUS = 0xC000_0206_u32 as i32;
/// `STATUS_NOT_FOUND`: The object was not found.
pub const STATUS_NOT_FOUND: NTSTATUS = 0xC000_0225_u32 as i32;
/// `STATUS_CONNECTION_COUNT_LIMIT`: The port's connection limit is reached.
pub const STATUS_CONNECTION_COUNT_LIMIT: NTSTATUS = 0xC000_0246_u32 as i32;
/// `STATUS_FLT_CONTEXT_ALREADY_DEFINED`: A context is already set on the object.
pub const STATUS_FLT_CONTEXT_ALREADY_DEFINED: NTSTATUS = 0xC01C_0002_u32 as i32;
/// `STATUS_END_OF_FILE`: A read started at or beyond the end of the file.
pub const STATUS_END_OF_FILE: NTSTATUS = 0xC000_0011_u32 as i32;
/// `STATUS_OBJECT_PATH_SYNTAX_BAD`: An object path with no separator, or empty.
pub const STATUS_OBJECT_PATH_SYNTAX_BAD: NTSTATUS = 0xC000_003B_u32 as i32;
/// `STATUS_MOUNT_POINT_NOT_RESOLVED`: A name that leads to a volume other than the instance's.
pub const STATUS_MOUNT_POINT_NOT_RESOLVED: NTSTATUS = 0xC000_0368_u32 as i32;
/// `STATUS_FLT_NOT_SAFE_TO_POST_OPERATION`: The operation cannot be posted to a worker thread.
pub const STATUS_FLT_NOT_SAFE_TO_POST_OPERATION: NTSTATUS = 0xC01C_0006_u32 as i32;
/// `STATUS_FLT_DELETING_OBJECT`: The object is being torn down.
pub const STATUS_FLT_DELETING_OBJECT: NTSTATUS = 0xC01C_000B_u32 as i32;
/// `STATUS_FLT_DO_NOT_ATTACH`: InstanceSetup's refusal to attach to a volume.
pub const STATUS_FLT_DO_NOT_ATTACH: NTSTATUS = 0xC01C_000F_u32 as i32;
/// `STATUS_FLT_DO_NOT_DETACH`: InstanceQueryTeardown's refusal to detach.
pub const STATUS_FLT_DO_NOT_DETACH: NTSTATUS = 0xC01C_0010_u32 as i32;
/// `STATUS_FLT_NO_WAITER_FOR_REPLY`: `FltReplyMessage` found no sender waiting for the reply.
pub const STATUS_FLT_NO_WAITER_FOR_REPLY: NTSTATUS = 0xC01C_0020_u32 as i32;

// File-system statuses kernel-sim's synthetic file system answers with (values from `ntstatus.h`).
/// `STATUS_INVALID_HANDLE`: The handle is not valid.
pub const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
/// `STATUS_OBJECT_TYPE_MISMATCH`: The object is not of the type the caller asked for.
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as i32;
/// `STATUS_OBJECT_NAME_INVALID`: The name is not a valid name.
pub const STATUS_OBJECT_NAME_INVALID: NTSTATUS = 0xC000_0033_u32 as i32;
/// `STATUS_OBJECT_PATH_NOT_FOUND`: A directory on the path does not exist.
pub const STATUS_OBJECT_PATH_NOT_FOUND: NTSTATUS = 0xC000_003A_u32 as i32;
/// `STATUS_FILE_IS_A_DIRECTORY`: A file operation on a directory.
pub const STATUS_FILE_IS_A_DIRECTORY: NTSTATUS = 0xC000_00BA_u32 as i32;
/// `STATUS_DIRECTORY_NOT_EMPTY`: A directory with entries cannot be deleted.
pub const STATUS_DIRECTORY_NOT_EMPTY: NTSTATUS = 0xC000_0101_u32 as i32;
/// `STATUS_NOT_A_DIRECTORY`: A directory operation on a file.
pub const STATUS_NOT_A_DIRECTORY: NTSTATUS = 0xC000_0103_u32 as i32;
/// `STATUS_CANNOT_DELETE`: The file cannot be deleted (for example, open without delete sharing).
pub const STATUS_CANNOT_DELETE: NTSTATUS = 0xC000_0121_u32 as i32;
/// `STATUS_FILE_CLOSED`: The file object has been closed (cleanup already ran).
pub const STATUS_FILE_CLOSED: NTSTATUS = 0xC000_0128_u32 as i32;
/// `STATUS_VOLUME_DISMOUNTED`: The volume is no longer mounted.
pub const STATUS_VOLUME_DISMOUNTED: NTSTATUS = 0xC000_026E_u32 as i32;

// Filter Manager statuses kernel-sim answers with.
/// `STATUS_FLT_INVALID_NAME_REQUEST`: A name cannot be queried now (paging I/O, all APCs
/// disabled without the name in the cache).
pub const STATUS_FLT_INVALID_NAME_REQUEST: NTSTATUS = 0xC01C_0005_u32 as i32;
/// `STATUS_FLT_CONTEXT_ALLOCATION_NOT_FOUND`: No context registration matches the allocation.
pub const STATUS_FLT_CONTEXT_ALLOCATION_NOT_FOUND: NTSTATUS = 0xC01C_0016_u32 as i32;
/// `STATUS_FLT_NAME_CACHE_MISS`: A cache-only name query found nothing in the cache.
pub const STATUS_FLT_NAME_CACHE_MISS: NTSTATUS = 0xC01C_0018_u32 as i32;
/// `STATUS_FLT_CONTEXT_ALREADY_LINKED`: The context is already set on an object.
pub const STATUS_FLT_CONTEXT_ALREADY_LINKED: NTSTATUS = 0xC01C_001C_u32 as i32;
