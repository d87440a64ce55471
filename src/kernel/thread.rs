//! Driver-created system threads, waited on through the thread object itself (RULES.md, rule 2:
//! an event set by the thread just before it exits does not prove it stopped running driver
//! code). PASSIVE_LEVEL.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use vigil_sys::{
    Executive, FALSE, HANDLE, KeWaitForSingleObject, KernelMode, OBJ_KERNEL_HANDLE,
    ObReferenceObjectByHandle, ObfDereferenceObject, PsCreateSystemThread, PsThreadType,
    STATUS_SUCCESS, STATUS_TIMEOUT, SYNCHRONIZE, THREAD_ALL_ACCESS, ZwClose,
};

use vigil_core::{Timeout, WaitOutcome};

use crate::error::{NtStatus, Result, check};

/// A referenced thread object of a thread this driver created.
///
/// # Invariants
///
/// `thread` holds one reference (from `ObReferenceObjectByHandle`), released on drop.
#[must_use = "a thread must be waited for before the driver unloads"]
pub struct SystemThread {
    thread: NonNull<c_void>,
}

// SAFETY: a referenced thread object may be waited on and dereferenced from any thread.
unsafe impl Send for SystemThread {}
// SAFETY: as above; shared use only waits.
unsafe impl Sync for SystemThread {}

impl SystemThread {
    /// Starts `start(context)` on a new system thread. PASSIVE_LEVEL.
    ///
    /// # Safety
    ///
    /// `context` stays valid until the thread has terminated (the caller waits on the returned
    /// object before freeing it), and `start` ends with `PsTerminateSystemThread`.
    pub unsafe fn spawn(
        start: unsafe extern "win64" fn(*mut c_void),
        context: *mut c_void,
    ) -> Result<Self> {
        let mut attributes =
            crate::kernel::object_attributes(ptr::null_mut(), OBJ_KERNEL_HANDLE, ptr::null_mut());
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: out-pointers valid; a system-process thread (no process handle); `context`
        // outlives the thread (contract).
        check(unsafe {
            PsCreateSystemThread(
                &raw mut handle,
                THREAD_ALL_ACCESS,
                &raw mut attributes,
                ptr::null_mut(),
                ptr::null_mut(),
                Some(start),
                context,
            )
        })?;
        let referenced = reference_thread(handle);
        // SAFETY: our own kernel handle, closed exactly once; the object reference (if taken)
        // keeps the thread object alive.
        unsafe { ZwClose(handle) };
        referenced.map(|thread| Self { thread })
    }

    /// Waits until the thread has terminated or `timeout` expires. PASSIVE_LEVEL.
    pub fn wait(&self, timeout: Timeout) -> Result<WaitOutcome> {
        let mut interval = timeout.as_nt_relative();
        // SAFETY: a referenced thread object (invariant) is a dispatcher object; finite timeout.
        let status = unsafe {
            KeWaitForSingleObject(
                self.thread.as_ptr(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut interval,
            )
        };
        match check(status)? {
            STATUS_SUCCESS => Ok(WaitOutcome::Signalled),
            STATUS_TIMEOUT => Ok(WaitOutcome::TimedOut),
            _ => Err(NtStatus::UNSUCCESSFUL),
        }
    }
}

impl Drop for SystemThread {
    fn drop(&mut self) {
        // SAFETY: releases the one reference this value holds (invariant).
        unsafe { ObfDereferenceObject(self.thread.as_ptr()) };
    }
}

/// Turns our thread handle into a referenced thread object, checking its type (rule 17).
fn reference_thread(handle: HANDLE) -> Result<NonNull<c_void>> {
    let mut object = ptr::null_mut();
    // SAFETY: PsThreadType is the kernel's exported thread type; reading the pointer is valid at
    // any IRQL.
    let thread_type = unsafe { *PsThreadType };
    // SAFETY: `handle` is our valid kernel handle; kernel-mode access check; out-pointer valid.
    check(unsafe {
        ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            thread_type,
            KernelMode,
            &raw mut object,
            ptr::null_mut(),
        )
    })?;
    NonNull::new(object).ok_or(NtStatus::UNSUCCESSFUL)
}
