//! Driver-created system threads, waited on through the thread object itself (RULES.md, rule 2:
//! an event set by the thread just before it exits does not prove it stopped running driver
//! code). PASSIVE_LEVEL. Also the current process and thread ids (any IRQL).
//!
//! Once `PsCreateSystemThread` has succeeded the thread runs, so nothing after it may fail: if
//! the handle cannot be turned into a referenced thread object (with its type checked, rule 17),
//! the value keeps the kernel handle instead and waits through it (`ZwWaitForSingleObject`), so
//! the owner can always stop the thread and wait for it before freeing what it uses.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use vigil_core::{Timeout, WaitOutcome};
use vigil_sys::{
    Executive, FALSE, HANDLE, KeWaitForSingleObject, KernelMode, NTSTATUS, OBJ_KERNEL_HANDLE,
    ObReferenceObjectByHandle, ObfDereferenceObject, PsCreateSystemThread, PsGetCurrentProcessId,
    PsGetCurrentThreadId, PsTerminateSystemThread, PsThreadType, STATUS_SUCCESS, SYNCHRONIZE,
    THREAD_ALL_ACCESS, ZwClose, ZwWaitForSingleObject,
};

use crate::error::{NtStatus, Result, check, wait_outcome};

/// How the thread is held.
enum Waitable {
    /// A referenced thread object (the normal case).
    Object(NonNull<c_void>),
    /// Our kernel handle, when referencing the object failed.
    Handle(HANDLE),
}

/// A thread this driver created, held until it has been waited for.
///
/// # Invariants
///
/// `Object` holds one reference (from `ObReferenceObjectByHandle`); `Handle` holds our open
/// kernel handle. Either is released exactly once, on drop.
#[must_use = "a thread must be waited for before the driver unloads"]
pub struct SystemThread {
    waitable: Waitable,
}

// SAFETY: a referenced thread object, or a kernel handle, may be waited on and released from any
// thread.
unsafe impl Send for SystemThread {}
// SAFETY: as above; shared use only waits.
unsafe impl Sync for SystemThread {}

impl SystemThread {
    /// Starts `start(context)` on a new system thread. PASSIVE_LEVEL. Fails only if the thread
    /// could not be created (then it never runs).
    ///
    /// # Safety
    ///
    /// `context` stays valid until the thread has terminated (the caller waits on the returned
    /// value before freeing it), and `start` ends with `PsTerminateSystemThread`.
    pub unsafe fn spawn(
        start: unsafe extern "win64" fn(*mut c_void),
        context: *mut c_void,
    ) -> Result<Self> {
        // A kernel handle: not visible in whichever process we were called from (rule 16).
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
        let waitable = match reference_thread(handle) {
            Ok(object) => {
                // SAFETY: our own kernel handle, closed once; the reference keeps the object.
                unsafe { ZwClose(handle) };
                Waitable::Object(object)
            }
            Err(_) => Waitable::Handle(handle),
        };
        Ok(Self { waitable })
    }

    /// Waits until the thread has terminated or `timeout` expires. PASSIVE_LEVEL.
    pub fn wait(&self, timeout: Timeout) -> Result<WaitOutcome> {
        let mut interval = timeout.as_nt_relative();
        let status: NTSTATUS = match self.waitable {
            // SAFETY: a referenced thread object (invariant) is a dispatcher object; finite
            // timeout; kernel mode, not alertable.
            Waitable::Object(object) => unsafe {
                KeWaitForSingleObject(
                    object.as_ptr(),
                    Executive,
                    KernelMode,
                    FALSE,
                    &raw mut interval,
                )
            },
            // SAFETY: our open kernel handle (invariant); finite timeout; not alertable.
            Waitable::Handle(handle) => unsafe {
                ZwWaitForSingleObject(handle, FALSE, &raw mut interval)
            },
        };
        wait_outcome(status)
    }
}

impl Drop for SystemThread {
    fn drop(&mut self) {
        match self.waitable {
            // SAFETY: releases the one reference held (invariant).
            Waitable::Object(object) => unsafe {
                ObfDereferenceObject(object.as_ptr());
            },
            // SAFETY: closes our kernel handle, once (invariant).
            Waitable::Handle(handle) => unsafe {
                ZwClose(handle);
            },
        }
    }
}

/// Ends the current system thread (`PsTerminateSystemThread` with `STATUS_SUCCESS`); never
/// returns. PASSIVE_LEVEL.
///
/// # Safety
///
/// Called by a thread started with [`SystemThread::spawn`], as the last thing its start routine
/// does: it holds no lock, guard or other value whose drop must run (none will), and nothing it
/// borrowed is used after this call.
pub unsafe fn exit_current_system_thread() {
    // SAFETY: a system thread ending itself at PASSIVE_LEVEL, holding nothing (contract).
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

/// The current process's id (`PsGetCurrentProcessId`, a handle-sized number). Any IRQL.
pub fn current_process_id() -> u64 {
    // SAFETY: no arguments; callable at any IRQL from any thread.
    unsafe { PsGetCurrentProcessId() as u64 }
}

/// The current thread's id (`PsGetCurrentThreadId`, a handle-sized number). Any IRQL.
pub fn current_thread_id() -> u64 {
    // SAFETY: no arguments; callable at any IRQL from any thread.
    unsafe { PsGetCurrentThreadId() as u64 }
}

/// Turns our thread handle into a referenced thread object, checking its type (rule 17).
fn reference_thread(handle: HANDLE) -> Result<NonNull<c_void>> {
    let mut object = ptr::null_mut();
    // SAFETY: PsThreadType is the kernel's exported thread type, readable at any IRQL.
    let thread_type = unsafe { PsThreadType };
    // SAFETY: `handle` is our valid kernel handle; kernel-mode access; out-pointer valid.
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
