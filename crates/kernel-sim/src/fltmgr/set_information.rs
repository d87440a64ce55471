//! `FltSetInformationFile`: a change of file information a filter sends below its instance,
//! to the volume's file system (never to the filter's own callbacks). Shared with
//! `IRP_MJ_SET_INFORMATION` through `FltPerformSynchronousIo`/`FltPerformAsynchronousIo`
//! ([`crate::fltmgr::callback_data`]).
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetinformationfile>):
//! PASSIVE_LEVEL; `Instance`, `FileObject` and `FileInformation` are required; the file must be
//! open; the classes a filter may set are `FileAllocationInformation`, `FileBasicInformation`,
//! `FileDispositionInformation`, `FileEndOfFileInformation`, `FileLinkInformation`,
//! `FilePositionInformation`, `FileRenameInformation` and `FileValidDataLengthInformation`
//! (and the `Ex` forms of disposition, rename and link that file systems accept since Windows
//! 10); a rename stays on the volume, and `FltSetInformationFile` does not check that, so the
//! caller must (a target on another volume is reported and fails with
//! `STATUS_NOT_SAME_DEVICE`, as the I/O manager fails such a rename for `ZwSetInformationFile`).
//! A buffer shorter than the class's structure is `STATUS_INFO_LENGTH_MISMATCH`, a class
//! outside that list `STATUS_INVALID_INFO_CLASS` (`NtSetInformationFile`'s statuses,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-ntsetinformationfile>).
//!
//! What the model keeps: sizes (end of file; an allocation below the end truncates), the
//! namespace (rename, link, delete dispositions) and the file object's current offset
//! (`FilePositionInformation`). Attributes and times are not kept: `FileBasicInformation` is
//! checked and accepted without effect. `FileValidDataLengthInformation`, a rename relative to
//! a `RootDirectory` and a target named through `\??\` are reported as not emulated.
//!
//! Failable: the request is an IRP Filter Manager allocates (`STATUS_INSUFFICIENT_RESOURCES`).

use std::mem::offset_of;

use vigil_sys::{
    FILE_DISPOSITION_INFORMATION, FILE_DISPOSITION_INFORMATION_EX, FILE_INFORMATION_CLASS,
    FILE_OBJECT, FILE_RENAME_INFORMATION, FileDispositionInformation, FileDispositionInformationEx,
    FileLinkInformation, FileLinkInformationEx, FileRenameInformation, FileRenameInformationEx,
    LARGE_INTEGER, NTSTATUS, PFLT_INSTANCE, PVOID, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_NOT_IMPLEMENTED,
    STATUS_SUCCESS, STATUS_VOLUME_DISMOUNTED,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::filter_io::open_file;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::report::ViolationKind;

/// `FileBasicInformation`.
pub(crate) const FILE_BASIC_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 4;
/// `FilePositionInformation`.
pub(crate) const FILE_POSITION_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 14;
/// `FileAllocationInformation`.
pub(crate) const FILE_ALLOCATION_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 19;
/// `FileEndOfFileInformation`.
pub(crate) const FILE_END_OF_FILE_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 20;
/// `FileValidDataLengthInformation`.
pub(crate) const FILE_VALID_DATA_LENGTH_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 39;
/// `sizeof(FILE_BASIC_INFORMATION)`: four `LARGE_INTEGER` times and a `ULONG` of attributes,
/// padded to 8.
const FILE_BASIC_INFORMATION_SIZE: usize = 40;
/// `STATUS_INVALID_INFO_CLASS`.
pub(crate) const STATUS_INVALID_INFO_CLASS: NTSTATUS = 0xC000_0003_u32.cast_signed();
/// `STATUS_NOT_SAME_DEVICE`.
pub(crate) const STATUS_NOT_SAME_DEVICE: NTSTATUS = 0xC000_00D4_u32.cast_signed();
/// `FILE_RENAME_REPLACE_IF_EXISTS` / `FILE_LINK_REPLACE_IF_EXISTS` (the `Ex` classes' flag).
const REPLACE_IF_EXISTS: u32 = 0x1;

/// A change the file system makes (what the model keeps of each class).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InfoChange {
    /// `FileEndOfFileInformation`.
    EndOfFile(u64),
    /// `FileAllocationInformation`.
    Allocation(u64),
    /// `FileRenameInformation(Ex)`: a volume-relative or directory-relative target.
    Rename { target: String, replace: bool },
    /// `FileLinkInformation(Ex)`.
    Link { target: String, replace: bool },
    /// `FileDispositionInformation`.
    Delete(bool),
    /// `FileDispositionInformationEx` flags.
    DispositionEx(u32),
}

/// What a set-information request comes to once its buffer is read.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// Sent to the file system.
    FileSystem(InfoChange),
    /// `FilePositionInformation`: the file object's current offset.
    Position(i64),
    /// Checked and accepted without effect (not kept by the model).
    NoEffect,
}

/// The fixed size of `class`'s structure, `None` for a class a filter cannot set.
fn minimum_length(class: FILE_INFORMATION_CLASS) -> Option<usize> {
    Some(match class {
        FILE_BASIC_INFORMATION_CLASS => FILE_BASIC_INFORMATION_SIZE,
        FILE_POSITION_INFORMATION_CLASS
        | FILE_ALLOCATION_INFORMATION_CLASS
        | FILE_END_OF_FILE_INFORMATION_CLASS
        | FILE_VALID_DATA_LENGTH_INFORMATION_CLASS => size_of::<LARGE_INTEGER>(),
        c if c == FileDispositionInformation => size_of::<FILE_DISPOSITION_INFORMATION>(),
        c if c == FileDispositionInformationEx => size_of::<FILE_DISPOSITION_INFORMATION_EX>(),
        c if c == FileRenameInformation
            || c == FileRenameInformationEx
            || c == FileLinkInformation
            || c == FileLinkInformationEx =>
        {
            offset_of!(FILE_RENAME_INFORMATION, FileName)
        }
        _ => return None,
    })
}

/// Reads a rename or link target: its volume-relative or directory-relative name and whether
/// it replaces an existing file. `device_name` is the volume's (a fully qualified target on it
/// is made volume-relative).
fn rename_target(
    k: &Kernel,
    class: FILE_INFORMATION_CLASS,
    (buffer, length): (PVOID, usize),
    device_name: &str,
) -> Result<(String, bool), NTSTATUS> {
    let header = guest::read(buffer.cast::<FILE_RENAME_INFORMATION>());
    let name_offset = offset_of!(FILE_RENAME_INFORMATION, FileName);
    let name_length = header.FileNameLength as usize;
    if name_length > length - name_offset || !name_length.is_multiple_of(2) {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if !header.RootDirectory.is_null() {
        k.violation(
            ViolationKind::NotEmulated,
            "a rename or link relative to a RootDirectory is not emulated",
            format!("RootDirectory {:p}", header.RootDirectory),
        );
        return Err(STATUS_NOT_IMPLEMENTED);
    }
    let bytes = guest::read_bytes(buffer.cast::<u8>().wrapping_add(name_offset), name_length);
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let name = String::from_utf16_lossy(&units);
    let replace = if class == FileRenameInformation || class == FileLinkInformation {
        // `ReplaceIfExists` is a BOOLEAN: its first byte.
        header.Flags & 0xFF != 0
    } else {
        header.Flags & REPLACE_IF_EXISTS != 0
    };
    if !name.starts_with('\\') {
        // A name without a path: a sibling in the file's directory.
        return Ok((name, replace));
    }
    if name.starts_with("\\??\\") {
        k.violation(
            ViolationKind::NotEmulated,
            "a rename or link target named through \\??\\ (a DOS device name) is not emulated",
            name,
        );
        return Err(STATUS_NOT_IMPLEMENTED);
    }
    let on_volume = name
        .get(..device_name.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(device_name))
        && name[device_name.len()..].starts_with('\\');
    if !on_volume {
        k.parameter_violation(
            "a rename or link target on the file's own volume (FltSetInformationFile does not check it)",
            format!("target {name} is not on {device_name}"),
        );
        return Err(STATUS_NOT_SAME_DEVICE);
    }
    Ok((name[device_name.len()..].to_owned(), replace))
}

/// Reads `class`'s structure from `buffer` (`length` bytes, at least its fixed size).
fn decode(
    k: &Kernel,
    class: FILE_INFORMATION_CLASS,
    (buffer, length): (PVOID, usize),
    device_name: &str,
) -> Result<Decoded, NTSTATUS> {
    let change = match class {
        FILE_BASIC_INFORMATION_CLASS => return Ok(Decoded::NoEffect),
        FILE_POSITION_INFORMATION_CLASS => {
            let offset = guest::read(buffer.cast::<i64>());
            return if offset < 0 {
                Err(STATUS_INVALID_PARAMETER)
            } else {
                Ok(Decoded::Position(offset))
            };
        }
        FILE_ALLOCATION_INFORMATION_CLASS | FILE_END_OF_FILE_INFORMATION_CLASS => {
            let size = u64::try_from(guest::read(buffer.cast::<i64>()))
                .map_err(|_| STATUS_INVALID_PARAMETER)?;
            if class == FILE_END_OF_FILE_INFORMATION_CLASS {
                InfoChange::EndOfFile(size)
            } else {
                InfoChange::Allocation(size)
            }
        }
        FILE_VALID_DATA_LENGTH_INFORMATION_CLASS => {
            k.violation(
                ViolationKind::NotEmulated,
                "FileValidDataLengthInformation (valid data length is not kept) is not emulated",
                String::new(),
            );
            return Err(STATUS_NOT_IMPLEMENTED);
        }
        c if c == FileDispositionInformation => {
            let info = guest::read(buffer.cast::<FILE_DISPOSITION_INFORMATION>());
            InfoChange::Delete(info.DeleteFile != 0)
        }
        c if c == FileDispositionInformationEx => {
            let info = guest::read(buffer.cast::<FILE_DISPOSITION_INFORMATION_EX>());
            InfoChange::DispositionEx(info.Flags)
        }
        c if c == FileRenameInformation || c == FileRenameInformationEx => {
            let (target, replace) = rename_target(k, class, (buffer, length), device_name)?;
            InfoChange::Rename { target, replace }
        }
        _ => {
            let (target, replace) = rename_target(k, class, (buffer, length), device_name)?;
            InfoChange::Link { target, replace }
        }
    };
    Ok(Decoded::FileSystem(change))
}

/// Sets `class` information from `buffer` (`length` bytes) on `file_object`, below
/// `instance`: the status. The checks every path shares (no fault injection: the caller's
/// routine takes that).
pub(crate) fn set_below(
    k: &Kernel,
    (instance, file_object): (usize, usize),
    class: FILE_INFORMATION_CLASS,
    (buffer, length): (PVOID, u32),
) -> NTSTATUS {
    let Some(needed) = minimum_length(class) else {
        return STATUS_INVALID_INFO_CLASS;
    };
    let (volume, handle) = match open_file(k, instance, file_object) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let (mounted, device_name) = {
        let flt = flt_read(k);
        let v = &flt.io.volumes[volume.0];
        (v.mounted, v.device_name.clone())
    };
    if !mounted {
        return STATUS_VOLUME_DISMOUNTED;
    }
    let length = length as usize;
    if length < needed {
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    if buffer.is_null() {
        k.parameter_violation(
            "FileInformation (required, not NULL)",
            "FileInformation is NULL".to_owned(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let change = match decode(k, class, (buffer, length), &device_name) {
        Ok(Decoded::FileSystem(change)) => change,
        Ok(Decoded::Position(offset)) => {
            let at = (file_object + offset_of!(FILE_OBJECT, CurrentByteOffset)) as *mut i64;
            guest::write(at, offset);
            return STATUS_SUCCESS;
        }
        Ok(Decoded::NoEffect) => return STATUS_SUCCESS,
        Err(status) => return status,
    };
    if matches!(change, InfoChange::Rename { .. } | InfoChange::Link { .. }) {
        // Names change: FltMgr's cache of them goes, as for a rename a filter sees.
        crate::fltmgr::names::purge_name_cache(k, None);
    }
    let result = flt_read(k).io.volumes[volume.0]
        .files_mut()
        .set_information_below(handle, &change);
    result.err().unwrap_or(STATUS_SUCCESS)
}

/// `FltSetInformationFile`: PASSIVE_LEVEL (see the module documentation).
pub(crate) extern "win64" fn flt_set_information_file(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    information: PVOID,
    length: u32,
    class: FILE_INFORMATION_CLASS,
) -> NTSTATUS {
    emulate(Routine::FltSetInformationFile, |k| {
        if instance.is_null() || file_object.is_null() || information.is_null() {
            k.parameter_violation(
                "Instance, FileObject and FileInformation (required, not NULL)",
                format!("{instance:p}, {file_object:p}, {information:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if k.inject_failure("FltSetInformationFile", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        set_below(
            k,
            (instance as usize, file_object as usize),
            class,
            (information, length),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settable_class_has_a_fixed_size_and_others_none() {
        assert_eq!(minimum_length(FILE_BASIC_INFORMATION_CLASS), Some(40));
        assert_eq!(minimum_length(FILE_END_OF_FILE_INFORMATION_CLASS), Some(8));
        assert_eq!(minimum_length(FILE_POSITION_INFORMATION_CLASS), Some(8));
        assert_eq!(minimum_length(FileDispositionInformation), Some(1));
        assert_eq!(minimum_length(FileDispositionInformationEx), Some(4));
        assert_eq!(minimum_length(FileRenameInformation), Some(20));
        assert_eq!(minimum_length(FileLinkInformationEx), Some(20));
        // FileNameInformation (9) and FileInternalInformation (6) are query-only.
        assert_eq!(minimum_length(9), None);
        assert_eq!(minimum_length(6), None);
    }
}
