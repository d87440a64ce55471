//! A referenced context of this driver, released on drop (RULES.md, rule 19), and the two steps
//! every per-file-object context goes through: allocate and initialize it, then set it unless
//! the object already has one (`FLT_SET_CONTEXT_KEEP_IF_EXISTS`). The stream context and the
//! stream-handle context share them; only their routine pair ([`FileObjectContext`]) differs.
//! IRQL <= APC_LEVEL (the context routines' limit).

use core::ptr::{self, NonNull};

use vigil_sys::{
    FILE_OBJECT, FLT_CONTEXT_TYPE, FLT_SET_CONTEXT_KEEP_IF_EXISTS, FLT_SET_CONTEXT_OPERATION,
    FLT_STREAM_CONTEXT, FLT_STREAMHANDLE_CONTEXT, FltAllocateContext, FltGetStreamContext,
    FltGetStreamHandleContext, FltReleaseContext, FltSetStreamContext, FltSetStreamHandleContext,
    NTSTATUS, NonPagedPoolNx, PFLT_CONTEXT, PFLT_FILTER, PFLT_INSTANCE,
    STATUS_FLT_CONTEXT_ALREADY_DEFINED,
};

use crate::error::{NtStatus, Result, check};

/// A kind of context that hangs off a file object: its type and its get/set routines, which
/// share one signature per role across the stream and stream-handle kinds.
pub struct FileObjectContext {
    context_type: FLT_CONTEXT_TYPE,
    get: unsafe extern "win64" fn(PFLT_INSTANCE, *mut FILE_OBJECT, *mut PFLT_CONTEXT) -> NTSTATUS,
    set: unsafe extern "win64" fn(
        PFLT_INSTANCE,
        *mut FILE_OBJECT,
        FLT_SET_CONTEXT_OPERATION,
        PFLT_CONTEXT,
        *mut PFLT_CONTEXT,
    ) -> NTSTATUS,
}

/// Per data stream (and instance): `FltGetStreamContext` / `FltSetStreamContext`.
pub const STREAM: FileObjectContext = FileObjectContext {
    context_type: FLT_STREAM_CONTEXT,
    get: FltGetStreamContext,
    set: FltSetStreamContext,
};

/// Per open handle: `FltGetStreamHandleContext` / `FltSetStreamHandleContext`.
pub const STREAM_HANDLE: FileObjectContext = FileObjectContext {
    context_type: FLT_STREAMHANDLE_CONTEXT,
    get: FltGetStreamHandleContext,
    set: FltSetStreamHandleContext,
};

/// Where [`ContextRef::attach`] left the object's context.
pub enum Attached<T> {
    /// Ours was set: the object holds its own reference, the caller gets the allocation's.
    Ours(ContextRef<T>),
    /// The object had one already (a concurrent open set it first): that one, referenced.
    /// Ours was released, which frees it (running its cleanup callback, if registered).
    Existing(ContextRef<T>),
}

/// One reference to a context of this driver holding a `T`.
///
/// # Invariants
///
/// `context` holds one reference and points to an initialized `T`, a context registered with
/// `size_of::<T>()` bytes.
#[must_use]
pub struct ContextRef<T> {
    context: NonNull<T>,
}

impl<T> ContextRef<T> {
    /// The object's context of `kind` if it has one (`STATUS_NOT_FOUND`, or a file system that
    /// keeps none of that kind: `None`).
    ///
    /// # Safety
    ///
    /// `instance` and `file` come from the current callback (an open file object of the
    /// instance's volume), and this driver registered `kind`'s contexts as holding a `T`.
    pub unsafe fn get(
        kind: &FileObjectContext,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
    ) -> Option<Self> {
        let mut context: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: instance and file object valid (contract); out-pointer valid.
        let status = unsafe { (kind.get)(instance, file, &raw mut context) };
        check(status).ok()?;
        // A context of `kind` holds a `T` (contract), referenced by the get.
        NonNull::new(context.cast()).map(|context| Self { context })
    }

    /// Allocates a context of `kind` (non-paged) and moves `value` into it. On failure `value`
    /// comes back, so whatever it owns can be released by the caller.
    ///
    /// # Safety
    ///
    /// This driver registered `kind`'s contexts as holding a `T` (`size_of::<T>()` bytes).
    pub unsafe fn allocate(
        filter: PFLT_FILTER,
        kind: &FileObjectContext,
        value: T,
    ) -> core::result::Result<Self, (NtStatus, T)> {
        let mut new: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: a registered context type and its size (contract); out-pointer valid.
        let status = unsafe {
            FltAllocateContext(
                filter,
                kind.context_type,
                size_of::<T>(),
                NonPagedPoolNx,
                &raw mut new,
            )
        };
        let allocated = check(status)
            .and_then(|_| NonNull::new(new.cast::<T>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES));
        match allocated {
            Ok(new) => {
                // SAFETY: freshly allocated, `size_of::<T>()` bytes, aligned by FltMgr (pool
                // alignment, 16 bytes, covers every `T` Vigil keeps).
                unsafe { new.as_ptr().write(value) };
                Ok(Self { context: new })
            }
            Err(error) => Err((error, value)),
        }
    }

    /// Sets this (newly allocated) context on the file object unless it has one of `kind`.
    ///
    /// # Errors
    ///
    /// `FltSet*Context`'s failure (`STATUS_NOT_SUPPORTED` where the file system keeps no
    /// contexts of that kind, `STATUS_FLT_DELETING_OBJECT` while the instance detaches); this
    /// context's reference is released on that path too.
    ///
    /// # Safety
    ///
    /// As [`ContextRef::get`], and `self` was allocated as `kind` and never set before.
    pub unsafe fn attach(
        self,
        kind: &FileObjectContext,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
    ) -> Result<Attached<T>> {
        let mut existing: PFLT_CONTEXT = ptr::null_mut();
        // SAFETY: valid instance, open file object and context (contract); out-pointer valid.
        let status = unsafe {
            (kind.set)(
                instance,
                file,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                self.context.as_ptr().cast(),
                &raw mut existing,
            )
        };
        if status == STATUS_FLT_CONTEXT_ALREADY_DEFINED {
            // The existing one came back referenced; ours is released as `self` drops.
            return NonNull::new(existing.cast())
                .map(|context| Attached::Existing(Self { context }))
                .ok_or(NtStatus::UNSUCCESSFUL);
        }
        check(status)?;
        Ok(Attached::Ours(self))
    }

    /// The context's data.
    pub fn data(&self) -> &T {
        // SAFETY: referenced and initialized (invariant).
        unsafe { self.context.as_ref() }
    }
}

impl<T> Drop for ContextRef<T> {
    fn drop(&mut self) {
        // SAFETY: releases the one reference held (invariant), exactly once.
        unsafe { FltReleaseContext(self.context.as_ptr().cast()) };
    }
}
