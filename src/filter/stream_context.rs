//! The stream context: one per file data stream and instance, shared by every handle opened on
//! it, holding the file's ID, so that the file system is asked for the ID once per file rather
//! than once per open. IRQL <= APC_LEVEL (the context routines' limit); the query itself, made
//! by the caller when no context exists yet, needs PASSIVE_LEVEL (post-create).
//!
//! Only a successful query is cached: a failed one leaves no context, so the next open asks
//! again. FltMgr frees the context when the stream is torn down (or the instance detaches); it
//! holds no references to anything, so it needs no cleanup callback. On FAT the 64-bit ID comes
//! from the directory entry and a rename can change it; the context keeps the ID seen at the
//! stream's first open for as long as the file system keeps the stream.

use core::ptr::{self, NonNull};

use vigil_sys::{
    FILE_OBJECT, FLT_SET_CONTEXT_KEEP_IF_EXISTS, FLT_STREAM_CONTEXT, FltAllocateContext,
    FltGetStreamContext, FltReleaseContext, FltSetStreamContext, NonPagedPoolNx, PFLT_CONTEXT,
    PFLT_FILTER, PFLT_INSTANCE, STATUS_FLT_CONTEXT_ALREADY_DEFINED,
};

use crate::error::{NtStatus, Result, check};
use crate::filter::file_id::FileId;

/// What Vigil keeps per stream. Never changed after the context is set.
#[repr(C)]
pub struct StreamIdentity {
    /// The file's ID (never zeros: only a successful query is cached).
    pub file_id: FileId,
}

/// A referenced stream context, released on drop (RULES.md, rule 19).
///
/// # Invariants
///
/// `context` holds one reference and points to an initialized `StreamIdentity`.
#[must_use]
pub struct StreamContext {
    context: NonNull<StreamIdentity>,
}

impl StreamContext {
    /// The stream's context if one is set (`STATUS_NOT_FOUND`, or a file system without stream
    /// contexts: `None`). IRQL <= APC_LEVEL.
    pub fn get(instance: PFLT_INSTANCE, file: *mut FILE_OBJECT) -> Option<Self> {
        let mut context: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: instance and open file object come from the callback; out-pointer valid.
        let status = unsafe { FltGetStreamContext(instance, file, &raw mut context) };
        check(status).ok()?;
        NonNull::new(context.cast()).map(|context| Self { context })
    }

    /// Sets a context holding `file_id` on the stream unless it has one, and returns the one the
    /// stream keeps: this one, or the one another open set first (its ID wins, so that every
    /// handle reports the same). IRQL <= APC_LEVEL.
    ///
    /// # Errors
    ///
    /// The allocation's failure (`STATUS_INSUFFICIENT_RESOURCES`) or `FltSetStreamContext`'s
    /// (`STATUS_NOT_SUPPORTED` where the file system keeps no stream contexts,
    /// `STATUS_FLT_DELETING_OBJECT` while the instance detaches). Nothing is leaked: the
    /// allocation's reference is released on every path.
    pub fn attach(
        filter: PFLT_FILTER,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
        file_id: FileId,
    ) -> Result<Self> {
        let mut new: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: registered context type and size; out-pointer valid; IRQL <= APC (caller).
        check(unsafe {
            FltAllocateContext(
                filter,
                FLT_STREAM_CONTEXT,
                size_of::<StreamIdentity>(),
                NonPagedPoolNx,
                &raw mut new,
            )
        })?;
        let new =
            NonNull::new(new.cast::<StreamIdentity>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // SAFETY: freshly allocated, correctly sized and aligned for StreamIdentity.
        unsafe { new.as_ptr().write(StreamIdentity { file_id }) };
        // The allocation's reference, released when `ours` drops unless it is returned.
        let ours = Self { context: new };
        let mut existing: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: valid instance, open file object and context; out-pointer valid.
        let status = unsafe {
            FltSetStreamContext(
                instance,
                file,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                ours.context.as_ptr().cast(),
                &raw mut existing,
            )
        };
        if status == STATUS_FLT_CONTEXT_ALREADY_DEFINED {
            // Another open of the stream set one first; it came back referenced, and ours is
            // released (and freed) as `ours` drops.
            return NonNull::new(existing.cast())
                .map(|context| Self { context })
                .ok_or(NtStatus::UNSUCCESSFUL);
        }
        check(status)?;
        // Set: the stream holds its own reference, and the caller gets the allocation's.
        Ok(ours)
    }

    /// The file ID the stream's first open cached.
    pub fn file_id(&self) -> FileId {
        // SAFETY: referenced and initialized (invariant).
        unsafe { self.context.as_ref() }.file_id
    }
}

impl Drop for StreamContext {
    fn drop(&mut self) {
        // SAFETY: releases the one reference held (invariant), exactly once.
        unsafe { FltReleaseContext(self.context.as_ptr().cast()) };
    }
}
