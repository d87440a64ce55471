//! `FltQueryInformationFile` for the file-identity classes, `FileInternalInformation` (the
//! 64-bit file ID) and `FileIdInformation` (volume serial number and 128-bit file ID), and for
//! `FileStandardInformation` (end of file, and an allocation size rounded up to a 4 KiB
//! cluster; links; delete pending; directory) and `FilePositionInformation` (the file object's
//! current offset), answered from the synthetic file system under the instance's volume (what
//! a filter's `FltSetInformationFile` changed included).
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltqueryinformationfile>):
//! PASSIVE_LEVEL with APCs enabled (a call inside a critical region is reported); `Instance`,
//! `FileObject` and `FileInformation` are required; the file must be open;
//! `STATUS_VOLUME_DISMOUNTED` when its volume is not mounted; members a file system does not
//! support are returned as zero. From the classes' pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/ns-ntifs-file_id_information>,
//! <https://learn.microsoft.com/openspecs/windows_protocols/ms-fscc/7d796611-2fa5-41ac-8178-b6fea3a017b3>):
//! a buffer shorter than the class's structure gets `STATUS_INFO_LENGTH_MISMATCH`; a file
//! system without 128-bit file IDs sets `FileId` to zero. Per file system, as Windows' do:
//! NTFS (and the network volumes, which pass the server's NTFS IDs through) answer their 64-bit
//! file reference number widened with zeros; ReFS a full 128-bit ID; FAT and exFAT, which have
//! no 128-bit IDs, a zero `FileId` and their 64-bit ID in `FileInternalInformation`.
//!
//! Failable: the query is an IRP Filter Manager allocates (`STATUS_INSUFFICIENT_RESOURCES`).
//! Other information classes are reported as not emulated.

use vigil_sys::{
    FILE_ID_INFORMATION, FILE_INFORMATION_CLASS, FILE_INTERNAL_INFORMATION, FILE_OBJECT,
    FileIdInformation, FileInternalInformation, NT_SUCCESS, NTSTATUS, PFLT_INSTANCE, PVOID,
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED, STATUS_SUCCESS, STATUS_VOLUME_DISMOUNTED,
};

use crate::config::VolumeKind;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate};
use crate::machine::{guest, state};
use crate::report::ViolationKind;

/// What the file system under a volume says about one open file.
struct Identity {
    kind: VolumeKind,
    volume_serial: u64,
    file_id: u64,
    /// What `FileStandardInformation` reports (`None`: the handle is gone).
    standard: Option<StandardInfo>,
}

/// `FILE_STANDARD_INFORMATION`'s members, as the file system below keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StandardInfo {
    pub end_of_file: u64,
    pub links: u32,
    pub delete_pending: bool,
    pub directory: bool,
}

/// `FileStandardInformation`.
const FILE_STANDARD_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 5;
/// `FilePositionInformation`.
const FILE_POSITION_INFORMATION_CLASS: FILE_INFORMATION_CLASS = 14;
/// `sizeof(FILE_STANDARD_INFORMATION)`: two `LARGE_INTEGER`s, a `ULONG`, two `BOOLEAN`s,
/// padded to 8.
const FILE_STANDARD_INFORMATION_SIZE: usize = 24;
/// The allocation unit the model's disk volumes report in `AllocationSize` (a 4 KiB cluster).
const CLUSTER_SIZE: u64 = 4096;

/// `FILE_STANDARD_INFORMATION` for `info`: `AllocationSize` is the end of file rounded up to
/// the cluster.
fn standard_bytes(info: StandardInfo) -> [u8; FILE_STANDARD_INFORMATION_SIZE] {
    let allocation = info.end_of_file.div_ceil(CLUSTER_SIZE) * CLUSTER_SIZE;
    let mut bytes = [0u8; FILE_STANDARD_INFORMATION_SIZE];
    bytes[..8].copy_from_slice(&allocation.to_le_bytes());
    bytes[8..16].copy_from_slice(&info.end_of_file.to_le_bytes());
    bytes[16..20].copy_from_slice(&info.links.to_le_bytes());
    bytes[20] = u8::from(info.delete_pending);
    bytes[21] = u8::from(info.directory);
    bytes
}

/// The 128-bit ID a file system of `kind` gives file `id` (zero: it has none).
fn id_128(kind: VolumeKind, id: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    match kind {
        VolumeKind::Ntfs | VolumeKind::Network | VolumeKind::Lanman => {
            bytes[..8].copy_from_slice(&id.to_le_bytes());
        }
        VolumeKind::Refs => {
            bytes[..8].copy_from_slice(&id.to_le_bytes());
            // ReFS IDs use all 128 bits; the upper half here is the file's container, derived
            // from the node so that it is stable per file.
            bytes[8..].copy_from_slice(&(id.rotate_left(17) ^ 0x5265_4653).to_le_bytes());
        }
        VolumeKind::Fat | VolumeKind::ExFat | VolumeKind::NamedPipe | VolumeKind::Mailslot => {}
    }
    bytes
}

fn identity(
    k: &Kernel,
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
) -> Result<Identity, NTSTATUS> {
    let flt = flt_read(k);
    let record = flt.io.files.with(file as usize, |r| {
        r.map(|r| (r.volume, r.fs_handle.filter(|_| r.open)))
    });
    let Some((record_volume, fs_handle)) = record else {
        drop(flt);
        k.parameter_violation(
            "a FileObject of an open file",
            format!("{file:p} is not an open file object"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    };
    let Some((index, volume)) = flt.io.volumes.iter().enumerate().find(|(_, v)| {
        v.instance
            .as_ref()
            .is_some_and(|i| i.handle.address() == instance as usize)
    }) else {
        drop(flt);
        k.parameter_violation(
            "an Instance of this filter",
            format!("{instance:p} is not an instance"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    };
    if record_volume.0 != index {
        drop(flt);
        k.parameter_violation(
            "the Instance on the FileObject's volume",
            format!("{instance:p} is attached to another volume than {file:p}"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    if !volume.mounted {
        return Err(STATUS_VOLUME_DISMOUNTED);
    }
    let Some(file_id) = fs_handle.and_then(|handle| volume.files().file_id_of(handle)) else {
        drop(flt);
        k.parameter_violation(
            "a FileObject of an open file",
            format!("{file:p} is not open (yet, or any more)"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    };
    let standard = fs_handle.and_then(|handle| volume.files().standard_of(handle));
    Ok(Identity {
        kind: volume.kind,
        volume_serial: 0x5649_0000 | index as u64,
        file_id,
        standard,
    })
}

/// `FltQueryInformationFile`: PASSIVE_LEVEL, APCs enabled (see the module documentation).
pub(crate) extern "win64" fn flt_query_information_file(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    information: PVOID,
    length: u32,
    class: FILE_INFORMATION_CLASS,
    returned: *mut u32,
) -> NTSTATUS {
    emulate(Routine::FltQueryInformationFile, |k| {
        if state::with(|s| s.critical_regions.get()) != 0 {
            k.violation(
                ViolationKind::Irql,
                "FltQueryInformationFile: the caller runs at PASSIVE_LEVEL with APCs enabled",
                "called inside a critical region (normal kernel APCs disabled)".to_owned(),
            );
        }
        if instance.is_null() || file.is_null() || information.is_null() {
            k.parameter_violation(
                "Instance, FileObject and FileInformation (required, not NULL)",
                format!("{instance:p}, {file:p}, {information:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let (status, length_returned) = query_below(
            k,
            (instance as usize, file as usize),
            class,
            (information, length),
            true,
        );
        if NT_SUCCESS(status) && !returned.is_null() {
            guest::write(returned, length_returned);
        }
        status
    })
}

/// Answers `class` for `file` below `instance` into `information` (`length` bytes): the status
/// and the length returned. Shared by `FltQueryInformationFile` (which `inject`s its fault)
/// and `IRP_MJ_QUERY_INFORMATION` through `FltPerform*Io` (whose routine takes it instead).
pub(crate) fn query_below(
    k: &Kernel,
    (instance, file): (usize, usize),
    class: FILE_INFORMATION_CLASS,
    (information, length): (PVOID, u32),
    inject: bool,
) -> (NTSTATUS, u32) {
    let (instance, file) = (instance as PFLT_INSTANCE, file as *mut FILE_OBJECT);
    if information.is_null() {
        k.parameter_violation(
            "a FileInformation buffer (InfoBuffer), not NULL",
            "the buffer is NULL".to_owned(),
        );
        return (STATUS_INVALID_PARAMETER, 0);
    }
    let needed = match class {
        c if c == FileIdInformation => size_of::<FILE_ID_INFORMATION>(),
        c if c == FileInternalInformation => size_of::<FILE_INTERNAL_INFORMATION>(),
        FILE_STANDARD_INFORMATION_CLASS => FILE_STANDARD_INFORMATION_SIZE,
        FILE_POSITION_INFORMATION_CLASS => size_of::<i64>(),
        other => {
            k.violation(
                ViolationKind::NotEmulated,
                "FltQueryInformationFile",
                format!("class {other}: only FileInternalInformation, FileIdInformation, FileStandardInformation and FilePositionInformation are emulated"),
            );
            return (STATUS_NOT_SUPPORTED, 0);
        }
    };
    let identity = match identity(k, instance, file) {
        Ok(identity) => identity,
        Err(status) => return (status, 0),
    };
    if (length as usize) < needed {
        return (STATUS_INFO_LENGTH_MISMATCH, 0);
    }
    if inject && k.inject_failure("FltQueryInformationFile", "STATUS_INSUFFICIENT_RESOURCES") {
        return (STATUS_INSUFFICIENT_RESOURCES, 0);
    }
    if class == FILE_STANDARD_INFORMATION_CLASS {
        let Some(standard) = identity.standard else {
            return (vigil_sys::STATUS_FILE_CLOSED, 0);
        };
        guest::write_bytes(information.cast(), &standard_bytes(standard));
    } else if class == FILE_POSITION_INFORMATION_CLASS {
        let at =
            (file as usize + std::mem::offset_of!(FILE_OBJECT, CurrentByteOffset)) as *const i64;
        guest::write(information.cast::<i64>(), guest::read(at));
    } else if class == FileIdInformation {
        guest::write(
            information.cast::<FILE_ID_INFORMATION>(),
            FILE_ID_INFORMATION {
                VolumeSerialNumber: identity.volume_serial,
                FileId: vigil_sys::FILE_ID_128 {
                    Identifier: id_128(identity.kind, identity.file_id),
                },
            },
        );
    } else {
        guest::write(
            information.cast::<FILE_INTERNAL_INFORMATION>(),
            FILE_INTERNAL_INFORMATION {
                IndexNumber: i64::from_ne_bytes(identity.file_id.to_ne_bytes()),
            },
        );
    }
    (STATUS_SUCCESS, u32::try_from(needed).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_information_rounds_the_allocation_up_to_a_cluster() {
        let bytes = standard_bytes(StandardInfo {
            end_of_file: 4097,
            links: 3,
            delete_pending: true,
            directory: false,
        });
        assert_eq!(bytes[..8], 8192u64.to_le_bytes());
        assert_eq!(bytes[8..16], 4097u64.to_le_bytes());
        assert_eq!(bytes[16..], [3, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn only_ntfs_like_and_refs_volumes_have_128_bit_ids() {
        assert_eq!(id_128(VolumeKind::Fat, 7), [0; 16]);
        assert_eq!(id_128(VolumeKind::ExFat, 7), [0; 16]);
        assert_eq!(id_128(VolumeKind::Ntfs, 7)[..8], 7u64.to_le_bytes());
        assert_eq!(id_128(VolumeKind::Ntfs, 7)[8..], [0; 8]);
        assert_ne!(id_128(VolumeKind::Refs, 7)[8..], [0; 8]);
    }
}
