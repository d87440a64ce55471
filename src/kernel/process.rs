//! Who the current process is: its image name, its parent, and whether its token holds the
//! Administrators group. PASSIVE_LEVEL (the routines' limit), in the context of the process asked about (a
//! port's connect callback, a pre-operation callback in the requesting thread).

use vigil_sys::{
    IoGetCurrentProcess, NT_CURRENT_PROCESS, PROCESS_BASIC_INFORMATION, ProcessBasicInformation,
    ProcessImageFileName, PsDereferencePrimaryToken, PsReferencePrimaryToken,
    STATUS_INFO_LENGTH_MISMATCH, SeTokenIsAdmin, UNICODE_STRING, ZwQueryInformationProcess,
};

use crate::error::{NtStatus, Result, check};
use crate::kernel::pool::{PoolBuffer, tags};

/// Bytes first tried for the image name: a `UNICODE_STRING` and a long path. A longer one
/// gets a second, exact allocation.
const FIRST_TRY_BYTES: usize = 1024;
/// Longest image name accepted (`UNICODE_STRING` lengths are 16 bits).
const MAX_BYTES: usize = 64 * 1024 + 64;

/// Calls `compare` with the current process's image name (an NT path, from
/// `ZwQueryInformationProcess(ProcessImageFileName)`) and returns what it returns. PASSIVE_LEVEL.
///
/// # Errors
///
/// The query's failure, or `INSUFFICIENT_RESOURCES` for the buffer.
pub fn with_current_image<R>(compare: impl FnOnce(&[u16]) -> R) -> Result<R> {
    let mut size = FIRST_TRY_BYTES;
    loop {
        let mut buffer = PoolBuffer::try_zeroed(size, tags::MESSAGE)?;
        let length = u32::try_from(size).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut needed = 0u32;
        // SAFETY: the current-process pseudo-handle; a pool buffer of `length` bytes, aligned
        // for the UNICODE_STRING it receives; a valid out-pointer; PASSIVE_LEVEL (caller).
        let status = unsafe {
            ZwQueryInformationProcess(
                NT_CURRENT_PROCESS,
                ProcessImageFileName,
                buffer.as_mut_ptr().cast(),
                length,
                &raw mut needed,
            )
        };
        if status == STATUS_INFO_LENGTH_MISMATCH
            && (needed as usize) > size
            && (needed as usize) <= MAX_BYTES
        {
            size = needed as usize;
            continue;
        }
        check(status)?;
        let bytes = buffer.as_slice();
        let header = size_of::<UNICODE_STRING>();
        // The string's Length field, then its text right after the header (where the routine
        // puts it): read by offsets within the buffer, never through its Buffer pointer.
        let name_bytes = bytes
            .get(..2)
            .and_then(|b| b.first_chunk::<2>())
            .map_or(0, |b| usize::from(u16::from_le_bytes(*b)));
        let text = bytes
            .get(header..)
            .and_then(|rest| rest.get(..name_bytes))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        return Ok(compare_units(text, compare));
    }
}

/// Calls `compare` with the UTF-16 units of `text` (little-endian, as x64 stores them), viewed
/// in place: the text starts 16 bytes into a pool block, so it is 2-byte aligned (an unaligned
/// view would compare as an empty name, which matches no identity).
fn compare_units<R>(text: &[u8], compare: impl FnOnce(&[u16]) -> R) -> R {
    // SAFETY: u16 has no invalid bit patterns; align_to only views whole aligned units.
    let (prefix, units, suffix) = unsafe { text.align_to::<u16>() };
    if prefix.is_empty() && suffix.is_empty() {
        compare(units)
    } else {
        compare(&[])
    }
}

/// The id of the process that created the current one
/// (`ZwQueryInformationProcess(ProcessBasicInformation)`), 0 when the query fails. PASSIVE_LEVEL.
pub fn current_parent_pid() -> u64 {
    let mut info = core::mem::MaybeUninit::<PROCESS_BASIC_INFORMATION>::zeroed();
    let Ok(length) = u32::try_from(size_of::<PROCESS_BASIC_INFORMATION>()) else {
        return 0;
    };
    // SAFETY: the current-process pseudo-handle; a writable buffer of exactly the class's size,
    // aligned for it; ReturnLength is optional; PASSIVE_LEVEL (caller).
    let status = unsafe {
        ZwQueryInformationProcess(
            NT_CURRENT_PROCESS,
            ProcessBasicInformation,
            info.as_mut_ptr().cast(),
            length,
            core::ptr::null_mut(),
        )
    };
    if check(status).is_err() {
        return 0;
    }
    // SAFETY: zero-initialized plain data (all-zero is a valid value), written by the routine
    // on success.
    let info = unsafe { info.assume_init() };
    info.InheritedFromUniqueProcessId as u64
}

/// Whether the current process's primary token holds the local Administrators group
/// (`LocalSystem`'s does). PASSIVE_LEVEL.
pub fn current_process_is_admin() -> bool {
    // SAFETY: no arguments; valid at PASSIVE_LEVEL (caller).
    let process = unsafe { IoGetCurrentProcess() };
    // SAFETY: the current process, which outlives this call; PASSIVE_LEVEL (caller).
    let token = unsafe { PsReferencePrimaryToken(process) };
    if token.is_null() {
        return false;
    }
    // SAFETY: a referenced token; PASSIVE_LEVEL.
    let admin = unsafe { SeTokenIsAdmin(token) } != 0;
    if crate::twins::is(crate::twins::Twin::TokenLeak) {
        // The `token-leak` twin keeps the reference.
        return admin;
    }
    // SAFETY: releases the reference taken above, once.
    unsafe { PsDereferencePrimaryToken(token) };
    admin
}
