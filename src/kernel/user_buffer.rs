//! Fault-safe access to buffers that may be user-mode addresses (RULES.md, rules 8 and 11).
//!
//! A range is first checked against `MmUserProbeAddress` (a kernel address is refused with a
//! status, never touched), then copied by the SEH helper in `src/seh/user_copy.c`, which turns
//! an access violation into a status instead of a bug check. Any IRQL at which the memory may be
//! touched: PASSIVE_LEVEL for pageable user memory.

use vigil_sys::{MmUserProbeAddress, NTSTATUS};

use crate::error::{NtStatus, Result};
use crate::twins::{self, Twin};

unsafe extern "C" {
    /// Copies `len` bytes under `__try/__except`; 0 or the exception code.
    fn vigil_seh_copy(dst: *mut u8, src: *const u8, len: usize) -> NTSTATUS;
    /// Zeroes `len` bytes under `__try/__except`; 0 or the exception code.
    fn vigil_seh_zero(dst: *mut u8, len: usize) -> NTSTATUS;
}

/// Checks that `[address, address + len)` lies in the user-mode range.
fn check_user_range(address: usize, len: usize) -> Result {
    // SAFETY: MmUserProbeAddress is an exported constant of the kernel, readable at any IRQL.
    let limit = unsafe { MmUserProbeAddress };
    let end = address
        .checked_add(len)
        .ok_or(NtStatus::INVALID_USER_BUFFER)?;
    if address == 0 || end > limit {
        return Err(NtStatus::INVALID_USER_BUFFER);
    }
    Ok(())
}

fn seh_status(status: NTSTATUS) -> Result {
    match NtStatus::from_failure(status) {
        None => Ok(()),
        // Whatever the fault, the caller sees one clear status for a bad user buffer.
        Some(_) => Err(NtStatus::INVALID_USER_BUFFER),
    }
}

/// Copies `dst.len()` bytes from the user address `src` into kernel memory.
pub fn copy_from_user(dst: &mut [u8], src: *const u8) -> Result {
    if dst.is_empty() {
        return Ok(());
    }
    check_user_range(src as usize, dst.len())?;
    if twins::is(Twin::NoSeh) {
        // SAFETY: none: the `no-seh` broken twin reads the user buffer without SEH, so a
        // bad pointer faults instead of failing with a status.
        unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        return Ok(());
    }
    // SAFETY: `dst` is valid kernel memory for its length; `src` is a user-range address that
    // the helper touches only inside __try, so a bad page becomes a status.
    seh_status(unsafe { vigil_seh_copy(dst.as_mut_ptr(), src, dst.len()) })
}

/// Copies `src` to the user address `dst`.
pub fn copy_to_user(dst: *mut u8, src: &[u8]) -> Result {
    if src.is_empty() {
        return Ok(());
    }
    check_user_range(dst as usize, src.len())?;
    // SAFETY: as in copy_from_user, with the roles swapped.
    seh_status(unsafe { vigil_seh_copy(dst, src.as_ptr(), src.len()) })
}

/// Zeroes `len` bytes at the user address `dst` (RULES.md, rule 11).
pub fn zero_user(dst: *mut u8, len: usize) -> Result {
    if len == 0 {
        return Ok(());
    }
    check_user_range(dst as usize, len)?;
    // SAFETY: a user-range address touched only inside __try.
    seh_status(unsafe { vigil_seh_zero(dst, len) })
}
