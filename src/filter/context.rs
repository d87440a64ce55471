//! The stream-handle context: one per open handle that has written, so that a file written many
//! times through one handle reports its first write once, and its cleanup reports "closed after
//! modification". IRQL <= APC_LEVEL (the context routines' limit).
//!
//! The context's presence *is* the state: FltMgr frees it when the handle closes.

use core::ptr::{self, NonNull};

use vigil_sys::{
    FILE_OBJECT, FLT_CONTEXT_END, FLT_CONTEXT_REGISTRATION, FLT_SET_CONTEXT_KEEP_IF_EXISTS,
    FLT_STREAMHANDLE_CONTEXT, FltAllocateContext, FltGetStreamHandleContext, FltReleaseContext,
    FltSetStreamHandleContext, NonPagedPoolNx, PFLT_CONTEXT, PFLT_FILTER, PFLT_INSTANCE,
    STATUS_FLT_CONTEXT_ALREADY_DEFINED,
};

use crate::error::{NtStatus, Result, check};
use crate::kernel::pool::tags;

/// What Vigil keeps per written handle.
#[repr(C)]
pub struct WrittenHandle {
    /// The volume id the handle's events carry.
    pub volume_id: u32,
}

/// The context registration table entries (terminated by `FLT_CONTEXT_END`).
pub const REGISTRATION: [FLT_CONTEXT_REGISTRATION; 2] = [
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_STREAMHANDLE_CONTEXT,
        Flags: 0,
        // Plain data: nothing to release before FltMgr frees the memory.
        ContextCleanupCallback: None,
        Size: size_of::<WrittenHandle>(),
        PoolTag: tags::CONTEXT,
        ContextAllocateCallback: ptr::null_mut(),
        ContextFreeCallback: ptr::null_mut(),
        Reserved1: ptr::null_mut(),
    },
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_CONTEXT_END,
        Flags: 0,
        ContextCleanupCallback: None,
        Size: 0,
        PoolTag: 0,
        ContextAllocateCallback: ptr::null_mut(),
        ContextFreeCallback: ptr::null_mut(),
        Reserved1: ptr::null_mut(),
    },
];

/// A referenced stream-handle context, released on drop (RULES.md, rule 19).
///
/// # Invariants
///
/// `context` holds one reference and points to an initialized `WrittenHandle`.
pub struct HandleContext {
    context: NonNull<WrittenHandle>,
}

/// Outcome of marking a handle as written.
pub enum MarkOutcome {
    /// This call attached the context: the caller reports the first write.
    FirstWrite,
    /// Another write (possibly concurrent) got there first.
    AlreadyWritten,
}

impl HandleContext {
    /// The handle's context if it has one (i.e. it has written).
    pub fn get(instance: PFLT_INSTANCE, file: *mut FILE_OBJECT) -> Option<Self> {
        let mut context: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: instance and file object come from the callback; out-pointer valid.
        let status = unsafe { FltGetStreamHandleContext(instance, file, &raw mut context) };
        check(status).ok()?;
        NonNull::new(context.cast()).map(|context| Self { context })
    }

    /// Attaches a context to the handle unless one exists.
    pub fn mark_written(
        filter: PFLT_FILTER,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
        volume_id: u32,
    ) -> Result<MarkOutcome> {
        let mut new: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: registered context type and size; out-pointer valid; IRQL <= APC (contract).
        check(unsafe {
            FltAllocateContext(
                filter,
                FLT_STREAMHANDLE_CONTEXT,
                size_of::<WrittenHandle>(),
                NonPagedPoolNx,
                &raw mut new,
            )
        })?;
        let new =
            NonNull::new(new.cast::<WrittenHandle>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // SAFETY: freshly allocated, correctly sized and aligned for WrittenHandle.
        unsafe { new.as_ptr().write(WrittenHandle { volume_id }) };
        // Our allocation reference is released when `ours` drops, whatever happens below.
        let ours = Self { context: new };
        let mut existing: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: valid instance, file object and context; out-pointer valid.
        let status = unsafe {
            FltSetStreamHandleContext(
                instance,
                file,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                ours.context.as_ptr().cast(),
                &raw mut existing,
            )
        };
        if status == STATUS_FLT_CONTEXT_ALREADY_DEFINED {
            // The existing context came back referenced: release that reference too.
            if let Some(existing) = NonNull::new(existing.cast()) {
                drop(Self { context: existing });
            }
            return Ok(MarkOutcome::AlreadyWritten);
        }
        check(status)?;
        Ok(MarkOutcome::FirstWrite)
    }

    /// The context's data.
    pub fn state(&self) -> &WrittenHandle {
        // SAFETY: referenced and initialized (invariant).
        unsafe { self.context.as_ref() }
    }
}

impl Drop for HandleContext {
    fn drop(&mut self) {
        // SAFETY: releases the one reference held (invariant), exactly once.
        unsafe { FltReleaseContext(self.context.as_ptr().cast()) };
    }
}
