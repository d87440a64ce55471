//! The stream-handle context: attached to each open file handle in post-create with the file's
//! ID (from the stream context, `super::stream_context`, queried once per file; copied here so
//! that the first write and the close carry it without another lookup), and marked written by
//! the first write, so that a file written many times through one handle reports its first
//! write once, and its cleanup reports "closed after modification". IRQL <= APC_LEVEL (the
//! context routines' limit).
//!
//! A handle whose context could not be attached at open gets one, already marked written, at
//! its first write (as before file IDs were kept): its events then carry no file ID. FltMgr
//! frees the context when the handle closes.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use vigil_sys::{
    FILE_OBJECT, FLT_CONTEXT_END, FLT_CONTEXT_REGISTRATION, FLT_CONTEXT_TYPE, FLT_STREAM_CONTEXT,
    FLT_STREAMHANDLE_CONTEXT, PFLT_CONTEXT, PFLT_FILTER, PFLT_INSTANCE,
};

use crate::error::Result;
use crate::filter::context_ref::{Attached, ContextRef, STREAM_HANDLE};
use crate::filter::file_id::FileId;
use crate::filter::name::FileName;
use crate::filter::stream_context::StreamIdentity;
use crate::kernel::pool::tags;

/// What Vigil keeps per open handle.
#[repr(C)]
pub struct WrittenHandle {
    /// The volume id the handle's events carry.
    pub volume_id: u32,
    /// Set by the first write through the handle.
    pub written: AtomicBool,
    /// The file's ID (zeros: unknown).
    pub file_id: FileId,
    /// The name the open was reported under: a name reference (`FileName::into_raw`), or null.
    /// Never changed after the context is attached; released by [`cleanup_handle`].
    name: *mut c_void,
    /// The rename generation (`Globals::name_generation`) when the name was queried: once any
    /// rename has begun since, the name may be stale and is queried again.
    name_generation: u64,
}

/// `ContextCleanupCallback`: releases the cached name reference. IRQL <= APC_LEVEL.
///
/// # Safety
///
/// Called only by FltMgr, once, for a stream-handle context of this driver whose last
/// reference is gone.
unsafe extern "win64" fn cleanup_handle(context: PFLT_CONTEXT, _context_type: FLT_CONTEXT_TYPE) {
    // SAFETY: one of this driver's WrittenHandle contexts (contract), initialized at allocation.
    let name = unsafe { (*context.cast::<WrittenHandle>()).name };
    if !name.is_null() {
        // SAFETY: the reference the context held, taken back exactly once, here.
        drop(unsafe { FileName::from_raw(name) });
    }
}

/// The context registration table entries (terminated by `FLT_CONTEXT_END`): the
/// stream-handle context here and the stream context of [`super::stream_context`].
pub const REGISTRATION: [FLT_CONTEXT_REGISTRATION; 3] = [
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_STREAMHANDLE_CONTEXT,
        Flags: 0,
        // The cached name reference is released before FltMgr frees the memory.
        ContextCleanupCallback: Some(cleanup_handle),
        Size: size_of::<WrittenHandle>(),
        PoolTag: tags::CONTEXT,
        ContextAllocateCallback: ptr::null_mut(),
        ContextFreeCallback: ptr::null_mut(),
        Reserved1: ptr::null_mut(),
    },
    FLT_CONTEXT_REGISTRATION {
        ContextType: FLT_STREAM_CONTEXT,
        Flags: 0,
        // It holds only the file ID: nothing to release before FltMgr frees it.
        ContextCleanupCallback: None,
        Size: size_of::<StreamIdentity>(),
        PoolTag: tags::STREAM_CONTEXT,
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

/// A referenced stream-handle context (released on drop).
pub struct HandleContext(ContextRef<WrittenHandle>);

/// Outcome of marking a handle as written.
pub enum MarkOutcome {
    /// This call attached the context: the caller reports the first write.
    FirstWrite,
    /// Another write (possibly concurrent) got there first.
    AlreadyWritten,
}

impl HandleContext {
    /// The handle's context if it has one. IRQL <= APC_LEVEL; `instance` and `file` from the
    /// callback.
    pub fn get(instance: PFLT_INSTANCE, file: *mut FILE_OBJECT) -> Option<Self> {
        // SAFETY: instance and file object come from the callback (caller); Vigil's
        // stream-handle contexts hold a WrittenHandle (REGISTRATION).
        unsafe { ContextRef::get(&STREAM_HANDLE, instance, file) }.map(Self)
    }

    /// Attaches a context to a handle just opened (post-create), not yet written.
    ///
    /// # Errors
    ///
    /// The allocation's or `FltSetStreamHandleContext`'s failure (the first write then attaches
    /// one, without the file ID).
    pub fn attach_at_open(
        filter: PFLT_FILTER,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
        volume_id: u32,
        file_id: FileId,
        name: Option<(FileName, u64)>,
    ) -> Result<()> {
        let (name, name_generation) = name.map_or((ptr::null_mut(), 0), |(name, generation)| {
            (name.into_raw(), generation)
        });
        let state = WrittenHandle {
            volume_id,
            written: AtomicBool::new(false),
            file_id,
            name,
            name_generation,
        };
        Self::attach(filter, instance, file, state).map(|_| ())
    }

    /// The name the open cached, when no rename has begun since (`generation` is the current
    /// `Globals::name_generation`): its units and whether it is normalized.
    pub fn cached_name(&self, generation: u64) -> Option<(&[u16], bool)> {
        let state = self.state();
        if state.name.is_null() || state.name_generation != generation {
            return None;
        }
        // SAFETY: the context's reference, released only by its cleanup callback, after the
        // last context reference (this one included) is gone.
        Some(unsafe { FileName::view_raw(state.name) })
    }

    /// The first write through a handle whose context was attached at open: `FirstWrite` once.
    pub fn mark_written_now(&self) -> MarkOutcome {
        if self.state().written.swap(true, Ordering::AcqRel) {
            MarkOutcome::AlreadyWritten
        } else {
            MarkOutcome::FirstWrite
        }
    }

    /// Whether the handle has written.
    pub fn has_written(&self) -> bool {
        self.state().written.load(Ordering::Acquire)
    }

    /// Attaches a context, already written, to a handle that has none (its open could not
    /// attach one).
    pub fn mark_written(
        filter: PFLT_FILTER,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
        volume_id: u32,
    ) -> Result<MarkOutcome> {
        Self::attach(
            filter,
            instance,
            file,
            WrittenHandle {
                volume_id,
                written: AtomicBool::new(true),
                file_id: FileId::default(),
                name: ptr::null_mut(),
                name_generation: 0,
            },
        )
    }

    /// Allocates a context holding `state` and attaches it unless the handle has one:
    /// `FirstWrite` when this call attached it, `AlreadyWritten` when one existed. The name
    /// reference in `state` is always consumed: stored, or released (by the context's cleanup
    /// callback once the context exists, here when it could not be allocated).
    fn attach(
        filter: PFLT_FILTER,
        instance: PFLT_INSTANCE,
        file: *mut FILE_OBJECT,
        state: WrittenHandle,
    ) -> Result<MarkOutcome> {
        // SAFETY: Vigil's stream-handle contexts are registered as holding a WrittenHandle.
        let ours = match unsafe { ContextRef::allocate(filter, &STREAM_HANDLE, state) } {
            Ok(ours) => ours,
            Err((error, state)) => {
                if !state.name.is_null() {
                    // SAFETY: the reference `state` carried, stored nowhere: released once.
                    drop(unsafe { FileName::from_raw(state.name) });
                }
                return Err(error);
            }
        };
        // SAFETY: instance and file object from the callback (caller); just allocated. Either
        // way our allocation reference is released here (the handle keeps its own when set).
        match unsafe { ours.attach(&STREAM_HANDLE, instance, file) }? {
            Attached::Ours(_) => Ok(MarkOutcome::FirstWrite),
            Attached::Existing(_) => Ok(MarkOutcome::AlreadyWritten),
        }
    }

    /// The context's data.
    pub fn state(&self) -> &WrittenHandle {
        self.0.data()
    }
}
