//! Process creation and exit notifications and what the driver reads about a process: the
//! registration of a `PCREATE_PROCESS_NOTIFY_ROUTINE_EX` (an RAII guard that removes it),
//! the process start key and the token's user SID and session. PASSIVE_LEVEL unless noted.

use vigil_protocol::MAX_SID_BYTES;
use vigil_sys::{
    ExFreePool, HANDLE, IoGetCurrentProcess, PCREATE_PROCESS_NOTIFY_ROUTINE_EX, PEPROCESS,
    PS_CREATE_NOTIFY_INFO, PVOID, PsDereferencePrimaryToken, PsGetCurrentProcessId,
    PsGetProcessExitStatus, PsGetProcessStartKey, PsReferencePrimaryToken,
    PsSetCreateProcessNotifyRoutineEx, SeQueryInformationToken, TOKEN_USER, TokenSessionId,
    TokenUser,
};

use crate::error::{Result, check};
use crate::twins::{self, Twin};

/// The driver's process-notify routine.
pub type NotifyRoutine = unsafe extern "win64" fn(PEPROCESS, HANDLE, *mut PS_CREATE_NOTIFY_INFO);

/// A registered process-notify routine; dropping it removes the routine, which waits for the
/// notifications in flight (`PsSetCreateProcessNotifyRoutineEx`'s documented removal).
#[must_use = "the routine is removed when the registration drops"]
pub struct NotifyRegistration(NotifyRoutine);

impl NotifyRegistration {
    /// Registers `routine`. PASSIVE_LEVEL.
    ///
    /// # Errors
    ///
    /// `ACCESS_DENIED` (the image lacks `/INTEGRITYCHECK`), `INVALID_PARAMETER` (already
    /// registered, or the system's limit reached).
    pub fn register(routine: NotifyRoutine) -> Result<Self> {
        let pointer: PCREATE_PROCESS_NOTIFY_ROUTINE_EX = Some(routine);
        // SAFETY: a routine of this image with the documented signature; PASSIVE_LEVEL (caller).
        check(unsafe { PsSetCreateProcessNotifyRoutineEx(pointer, 0) })?;
        Ok(Self(routine))
    }
}

impl Drop for NotifyRegistration {
    fn drop(&mut self) {
        // `leave-process-notify` keeps the routine registered into the unloaded image.
        if twins::is(Twin::LeaveProcessNotify) {
            return;
        }
        // SAFETY: the routine registered by `register`; the teardown runs at PASSIVE_LEVEL.
        // Removing a registered routine cannot fail.
        let _ = unsafe { PsSetCreateProcessNotifyRoutineEx(Some(self.0), 1) };
    }
}

/// The calling thread's process. IRQL <= DISPATCH_LEVEL.
pub fn current_process() -> PEPROCESS {
    // SAFETY: no arguments.
    unsafe { IoGetCurrentProcess() }
}

/// The calling thread's process id. Any IRQL.
pub fn current_process_id() -> u64 {
    // SAFETY: no arguments.
    unsafe { PsGetCurrentProcessId() }.addr() as u64
}

/// The process start key of `process`. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
///
/// `process` is a live process object (the notify routine's, or the current process).
pub unsafe fn start_key(process: PEPROCESS) -> u64 {
    // SAFETY: a live process object (contract).
    unsafe { PsGetProcessStartKey(process) }
}

/// The exit status of `process` (`STATUS_PENDING` while it runs). IRQL <= APC_LEVEL.
///
/// # Safety
///
/// `process` is a live process object (the exiting one, in its exit notification).
pub unsafe fn exit_status(process: PEPROCESS) -> i32 {
    // SAFETY: a live process object (contract).
    unsafe { PsGetProcessExitStatus(process) }
}

/// The user SID (copied into `sid`, its length returned; 0 when it cannot be read or is too
/// long) and the session id of `process`'s primary token. PASSIVE_LEVEL.
///
/// # Safety
///
/// `process` is a live process object.
pub unsafe fn token_user_and_session(
    process: PEPROCESS,
    sid: &mut [u8; MAX_SID_BYTES],
) -> (usize, u32) {
    // SAFETY: a live process object (contract); PASSIVE_LEVEL.
    let token = unsafe { PsReferencePrimaryToken(process) };
    if token.is_null() {
        return (0, 0);
    }
    let mut session: PVOID = core::ptr::null_mut();
    // SAFETY: a referenced token; the session id is written into the pointer-sized slot.
    let session_id =
        if check(unsafe { SeQueryInformationToken(token, TokenSessionId, &raw mut session) })
            .is_ok()
        {
            // The DWORD itself sits in the slot's low half.
            u32::try_from(session.addr() & 0xFFFF_FFFF).unwrap_or(0)
        } else {
            0
        };
    let mut user: PVOID = core::ptr::null_mut();
    // SAFETY: a referenced token and a valid out-pointer.
    let sid_len = if check(unsafe { SeQueryInformationToken(token, TokenUser, &raw mut user) })
        .is_ok()
        && !user.is_null()
    {
        // SAFETY: on success the routine returned a TOKEN_USER block, freed below.
        let len = unsafe { copy_sid(user.cast::<TOKEN_USER>(), sid) };
        // SAFETY: the block SeQueryInformationToken allocated for the caller, freed once.
        unsafe { ExFreePool(user) };
        len
    } else {
        0
    };
    // SAFETY: releases the reference taken above, once.
    unsafe { PsDereferencePrimaryToken(token) };
    (sid_len, session_id)
}

/// Copies the SID a `TOKEN_USER` points to; its length, or 0 when it is not a SID that fits.
///
/// # Safety
///
/// `user` is a `TOKEN_USER` from `SeQueryInformationToken` whose SID lies in kernel memory.
unsafe fn copy_sid(user: *const TOKEN_USER, out: &mut [u8; MAX_SID_BYTES]) -> usize {
    // SAFETY: a valid TOKEN_USER (contract).
    let sid = unsafe { (*user).User.Sid }.cast::<u8>();
    if sid.is_null() {
        return 0;
    }
    // A SID's second byte is its sub-authority count: 8 + 4 × count bytes.
    // SAFETY: a SID is at least 8 bytes (contract): its second byte is inside it.
    let count_at = unsafe { sid.add(1) };
    // SAFETY: as above; a byte has no alignment.
    let count = usize::from(unsafe { count_at.read() });
    let len = 8 + 4 * count;
    if len > MAX_SID_BYTES {
        return 0;
    }
    // SAFETY: the SID is `len` bytes long (its own count says so); `out` holds them.
    unsafe { core::ptr::copy_nonoverlapping(sid, out.as_mut_ptr(), len) };
    len
}
