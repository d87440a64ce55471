//! A typed view of an `IRP_MJ_SET_INFORMATION` request: its class and, for renames and links,
//! the target name, parsed from the operation's system buffer with every length checked before a
//! byte is read (RULES.md, rules 9 and 10). The buffer is FltMgr's kernel copy of the caller's
//! input, valid for the callback. Any IRQL the callback runs at; only reads.

use core::mem::offset_of;

use vigil_sys::{
    FILE_DISPOSITION_DELETE, FILE_DISPOSITION_INFORMATION, FILE_DISPOSITION_INFORMATION_EX,
    FILE_RENAME_INFORMATION, FLT_PARAMETERS_SET_FILE_INFORMATION, FileDispositionInformation,
    FileDispositionInformationEx, FileLinkInformation, FileLinkInformationEx,
    FileRenameInformation, FileRenameInformationEx, HANDLE, IRP_MJ_SET_INFORMATION,
};

use crate::error::{NtStatus, Result};
use crate::filter::operation::Operation;

/// What a set-information request does, as far as Vigil cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SetInformationRequest {
    /// `FileRenameInformation` or its `Ex` form.
    Rename,
    /// `FileLinkInformation` or its `Ex` form.
    Link,
    /// A disposition (either form) that sets delete-on-close.
    Delete,
}

impl SetInformationRequest {
    /// Classifies the operation's request; `None` for any other class, a disposition that clears
    /// (rather than sets) the delete, a disposition buffer too short for its structure, and any
    /// operation other than set information.
    pub fn parse(operation: &Operation<'_>) -> Option<Self> {
        let parameters = parameters(operation)?;
        let class = parameters.FileInformationClass;
        if class == FileRenameInformation || class == FileRenameInformationEx {
            Some(Self::Rename)
        } else if class == FileLinkInformation || class == FileLinkInformationEx {
            Some(Self::Link)
        } else if class == FileDispositionInformation {
            let info = buffer_as::<FILE_DISPOSITION_INFORMATION>(&parameters)?;
            (info.DeleteFile != 0).then_some(Self::Delete)
        } else if class == FileDispositionInformationEx {
            let info = buffer_as::<FILE_DISPOSITION_INFORMATION_EX>(&parameters)?;
            (info.Flags & FILE_DISPOSITION_DELETE != 0).then_some(Self::Delete)
        } else {
            None
        }
    }
}

/// The target of a rename or link: `FILE_RENAME_INFORMATION` (the same layout as
/// `FILE_LINK_INFORMATION`), its name length checked against the buffer by subtraction.
pub struct LinkTarget<'a> {
    /// The directory the name is relative to, or null.
    pub root_directory: HANDLE,
    /// The target name, in UTF-16 (even byte length, inside the buffer).
    pub name: &'a [u16],
}

impl<'a> LinkTarget<'a> {
    /// The target named by a rename or link request.
    ///
    /// # Errors
    ///
    /// `INVALID_PARAMETER` when the operation is not set information, the buffer is missing or
    /// shorter than the fixed part, or the name length is odd or runs past the buffer.
    pub fn parse(operation: &'a Operation<'_>) -> Result<Self> {
        let parameters = parameters(operation).ok_or(NtStatus::INVALID_PARAMETER)?;
        let buffer = parameters.InfoBuffer;
        let length = parameters.Length as usize;
        let name_offset = offset_of!(FILE_RENAME_INFORMATION, FileName);
        if buffer.is_null() || length < name_offset {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // SAFETY: the system buffer holds at least the fixed part (checked above) and is
        // pointer-aligned; it is valid for the callback, which bounds `'a`.
        let info = unsafe { &*buffer.cast::<FILE_RENAME_INFORMATION>() };
        let name_bytes = info.FileNameLength as usize;
        if name_bytes > length - name_offset || !name_bytes.is_multiple_of(2) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // SAFETY: `name_offset <= length`: still inside the buffer.
        let name = unsafe { buffer.cast::<u8>().add(name_offset) };
        // The name sits at offset 20 of a pointer-aligned system buffer: 2-byte aligned.
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "FileName is at an even offset of an aligned buffer"
        )]
        let name = name.cast::<u16>();
        // SAFETY: `name_bytes / 2` code units from `name` lie inside the buffer (checked above),
        // 2-byte aligned, valid and not written by anyone for the callback (`'a`).
        let name = unsafe { core::slice::from_raw_parts(name, name_bytes / 2) };
        Ok(Self {
            root_directory: info.RootDirectory,
            name,
        })
    }
}

/// The parameters of a set-information operation; `None` for any other operation.
fn parameters(operation: &Operation<'_>) -> Option<FLT_PARAMETERS_SET_FILE_INFORMATION> {
    let iopb = operation.iopb();
    if iopb.MajorFunction != IRP_MJ_SET_INFORMATION {
        return None;
    }
    // SAFETY: for IRP_MJ_SET_INFORMATION (checked above) the SetFileInformation member is the
    // valid one.
    Some(unsafe { iopb.Parameters.SetFileInformation })
}

/// The system buffer as a `T`, when it is present and long enough for one.
fn buffer_as<T>(parameters: &FLT_PARAMETERS_SET_FILE_INFORMATION) -> Option<&T> {
    let buffer = parameters.InfoBuffer;
    if buffer.is_null() || (parameters.Length as usize) < size_of::<T>() {
        return None;
    }
    // The system buffer is pointer-aligned, enough for the disposition structures.
    let info = buffer.cast::<T>();
    // SAFETY: a system buffer of `Length` bytes, checked above to hold a `T` (a plain C struct
    // of integers, valid for any bits); pointer-aligned; valid for the callback.
    Some(unsafe { &*info })
}
