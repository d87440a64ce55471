//! A safe view over one operation's `FLT_CALLBACK_DATA` and `FLT_RELATED_OBJECTS`, as the
//! callbacks receive them. Any IRQL the callback runs at; the accessors only read fields.

use core::ptr;

use vigil_sys::{
    FILE_OBJECT, FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK, FLT_RELATED_OBJECTS, FltCancelFileOpen,
    FltGetRequestorProcessId, IRP_PAGING_IO, NTSTATUS, PFLT_FILTER, PFLT_INSTANCE, PFLT_VOLUME,
};

/// One operation, as a callback sees it.
///
/// # Invariants
///
/// `data`, its `Iopb` and `objects` are the valid pointers FltMgr passed to the callback, valid
/// for the callback's duration (which bounds this value's lifetime `'a`).
pub struct Operation<'a> {
    data: &'a mut FLT_CALLBACK_DATA,
    iopb: &'a FLT_IO_PARAMETER_BLOCK,
    objects: &'a FLT_RELATED_OBJECTS,
}

impl Operation<'_> {
    /// Wraps the callback's arguments; `None` if FltMgr passed a null pointer (never expected).
    ///
    /// # Safety
    ///
    /// The pointers are a callback's `Data` and `FltObjects` arguments, used only during it.
    pub unsafe fn from_callback(
        data: *mut FLT_CALLBACK_DATA,
        objects: *const FLT_RELATED_OBJECTS,
    ) -> Option<Self> {
        // SAFETY: valid or null (contract); checked for null here.
        let data = unsafe { data.as_mut() }?;
        // SAFETY: as above.
        let objects = unsafe { objects.as_ref() }?;
        // SAFETY: Iopb is valid for the callback whenever Data is.
        let iopb = unsafe { data.Iopb.as_ref() }?;
        Some(Self {
            data,
            iopb,
            objects,
        })
    }

    /// The parameter block.
    pub fn iopb(&self) -> &FLT_IO_PARAMETER_BLOCK {
        self.iopb
    }

    /// The file object, or null.
    pub fn file_object(&self) -> *mut FILE_OBJECT {
        self.objects.FileObject
    }

    /// The instance.
    pub fn instance(&self) -> PFLT_INSTANCE {
        self.objects.Instance
    }

    /// The volume.
    pub fn volume(&self) -> PFLT_VOLUME {
        self.objects.Volume
    }

    /// The filter.
    pub fn filter(&self) -> PFLT_FILTER {
        self.objects.Filter
    }

    /// Whether this is paging I/O (never reported).
    pub fn is_paging_io(&self) -> bool {
        self.iopb.IrpFlags & IRP_PAGING_IO != 0
    }

    /// The operation's final status (meaningful in post-operation callbacks).
    pub fn status(&self) -> NTSTATUS {
        self.data.IoStatus.Status
    }

    /// `IoStatus.Information` (for create: what the file system did).
    pub fn information(&self) -> usize {
        self.data.IoStatus.Information
    }

    /// The process that issued the operation. IRQL <= DISPATCH_LEVEL.
    pub fn requestor_process_id(&mut self) -> u32 {
        // SAFETY: the callback data is valid (invariant).
        unsafe { FltGetRequestorProcessId(ptr::from_mut(self.data)) }
    }

    /// Completes the operation in a pre-operation callback with `status` (and no information);
    /// the caller then returns `FLT_PREOP_COMPLETE`.
    pub fn complete_with(&mut self, status: NTSTATUS) {
        self.data.IoStatus.Status = status;
        self.data.IoStatus.Information = 0;
    }

    /// Undoes a successful create from its post-create callback (`FltCancelFileOpen`: the file
    /// system closes the file; what the create changed stays) and fails it with `status`.
    /// PASSIVE_LEVEL, post-create only (where FltMgr guarantees PASSIVE_LEVEL).
    pub fn cancel_open(&mut self, status: NTSTATUS) {
        // SAFETY: the operation's own instance and file object, from FltMgr (invariant); the
        // caller is the post-create callback of this successful create, at PASSIVE_LEVEL.
        unsafe { FltCancelFileOpen(self.objects.Instance, self.iopb.TargetFileObject) };
        if crate::twins::is(crate::twins::Twin::CancelKeepsSuccess) {
            return;
        }
        self.data.IoStatus.Status = status;
        self.data.IoStatus.Information = 0;
    }

    /// Whether a create names its file relative to another open file (`RootDirectory`: the
    /// file object's `RelatedFileObject`). Pre-create only (the file object is FltMgr's then).
    pub fn is_relative_open(&self) -> bool {
        let file = self.iopb.TargetFileObject;
        // SAFETY: in pre-create the target file object is valid for the callback (invariant);
        // only a pointer field is read.
        !file.is_null() && !unsafe { (*file).RelatedFileObject }.is_null()
    }

    /// The raw callback data, for FltMgr routines that take it.
    pub fn raw(&mut self) -> *mut FLT_CALLBACK_DATA {
        ptr::from_mut(self.data)
    }
}
