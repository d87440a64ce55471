//! A file's identity: the file system's 128-bit file ID (`FileIdInformation`), or, where the file
//! system has only a 64-bit one (FAT, exFAT: a zero or refused 128-bit ID), the 64-bit internal
//! ID (`FileInternalInformation`) widened with zeros and flagged. PASSIVE_LEVEL with APCs enabled
//! (`FltQueryInformationFile`): called from post-create, outside any lock.

use vigil_sys::{
    FILE_ID_INFORMATION, FILE_INTERNAL_INFORMATION, FILE_OBJECT, FileIdInformation,
    FileInternalInformation, FltQueryInformationFile, PFLT_INSTANCE,
};

use crate::error::check;

/// A file ID as an event carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileId {
    /// The ID, little-endian; a 64-bit one in the first 8 bytes.
    pub bytes: [u8; 16],
    /// Only the 64-bit internal ID was available (`EventFlags::FILE_ID_64`).
    pub is_64_bit: bool,
}

/// `sizeof` a query's structure, for its `ULONG Length`.
fn length_of<T>() -> u32 {
    u32::try_from(size_of::<T>()).unwrap_or(0)
}

/// The file's ID, or `None` when the file system gives neither (or the query fails: the event
/// then carries zeros, which the service writes as no file ID).
pub fn query(instance: PFLT_INSTANCE, file: *mut FILE_OBJECT) -> Option<FileId> {
    let mut id = FILE_ID_INFORMATION::default();
    // SAFETY: the callback's instance and open file object; a buffer of the class's size;
    // PASSIVE_LEVEL with APCs enabled (caller).
    let status = unsafe {
        FltQueryInformationFile(
            instance,
            file,
            (&raw mut id).cast(),
            length_of::<FILE_ID_INFORMATION>(),
            FileIdInformation,
            core::ptr::null_mut(),
        )
    };
    if check(status).is_ok() && id.FileId.Identifier != [0; 16] {
        return Some(FileId {
            bytes: id.FileId.Identifier,
            is_64_bit: false,
        });
    }
    let mut internal = FILE_INTERNAL_INFORMATION::default();
    // SAFETY: as above, for FileInternalInformation.
    let status = unsafe {
        FltQueryInformationFile(
            instance,
            file,
            (&raw mut internal).cast(),
            length_of::<FILE_INTERNAL_INFORMATION>(),
            FileInternalInformation,
            core::ptr::null_mut(),
        )
    };
    if check(status).is_err() || internal.IndexNumber == 0 {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&internal.IndexNumber.to_le_bytes());
    Some(FileId {
        bytes,
        is_64_bit: true,
    })
}
