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

use vigil_sys::{FILE_OBJECT, PFLT_FILTER, PFLT_INSTANCE};

use crate::error::Result;
use crate::filter::context_ref::{Attached, ContextRef, STREAM};
use crate::filter::file_id::FileId;

/// What Vigil keeps per stream. Never changed after the context is set.
#[repr(C)]
pub struct StreamIdentity {
    /// The file's ID (never zeros: only a successful query is cached).
    pub file_id: FileId,
}

/// A referenced stream context (released on drop).
pub struct StreamContext(ContextRef<StreamIdentity>);

impl StreamContext {
    /// The stream's context if one is set (`STATUS_NOT_FOUND`, or a file system without stream
    /// contexts: `None`). IRQL <= APC_LEVEL; `instance` and `file` from the callback.
    pub fn get(instance: PFLT_INSTANCE, file: *mut FILE_OBJECT) -> Option<Self> {
        // SAFETY: instance and open file object come from the callback (caller); Vigil's stream
        // contexts hold a StreamIdentity (`context::REGISTRATION`).
        unsafe { ContextRef::get(&STREAM, instance, file) }.map(Self)
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
        // SAFETY: Vigil's stream contexts are registered as holding a StreamIdentity.
        let ours = unsafe { ContextRef::allocate(filter, &STREAM, StreamIdentity { file_id }) }
            .map_err(|(error, _)| error)?;
        // SAFETY: instance and open file object from the callback (caller); just allocated.
        match unsafe { ours.attach(&STREAM, instance, file) }? {
            Attached::Ours(context) | Attached::Existing(context) => Ok(Self(context)),
        }
    }

    /// The file ID the stream's first open cached.
    pub fn file_id(&self) -> FileId {
        self.0.data().file_id
    }
}
