//! Volumes as a filter queries them: `FltGetVolumeFromInstance` (a rundown reference on the
//! volume), `FltObjectDereference` (drops one), `FltGetVolumeProperties`; references still
//! held when the filter unregisters are reported.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumefrominstance>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltobjectdereference>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumeproperties>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_volume_properties>):
//! - `FltGetVolumeFromInstance`: IRQL <= APC_LEVEL; adds a rundown reference to the volume it
//!   returns, which the caller releases with `FltObjectDereference`; `STATUS_FLT_DELETING_OBJECT`
//!   for an instance being torn down;
//! - `FltObjectDereference`: IRQL <= DISPATCH_LEVEL; removes one rundown reference from a
//!   filter, instance or volume (kernel-sim hands out references on volumes only, so any other
//!   dereference, or one more than was referenced, is reported);
//! - `FltGetVolumeProperties`: IRQL <= APC_LEVEL; `Volume` and `LengthReturned` required;
//!   `Length` 0 (or below the fixed part) is `STATUS_BUFFER_TOO_SMALL` with the size needed; a
//!   buffer that holds the fixed part but not the three names gets the fixed part and
//!   `STATUS_BUFFER_OVERFLOW`; otherwise the names follow the structure in the buffer.

// Fx hashing: kernel-sim's own addresses as keys.
use rustc_hash::FxHashMap as HashMap;
use vigil_sys::{
    FLT_VOLUME_PROPERTIES, NTSTATUS, PFLT_INSTANCE, PVOID, STATUS_BUFFER_OVERFLOW,
    STATUS_BUFFER_TOO_SMALL, STATUS_FLT_DELETING_OBJECT, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
    UNICODE_STRING,
};

use crate::config::VolumeKind;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::fltmgr::instances::InstanceState;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::machine::state;
use crate::report::ViolationKind;

/// Rundown references the driver holds on volumes: volume handle -> where each was taken.
#[derive(Default)]
pub(crate) struct VolumeRefs {
    held: HashMap<usize, Vec<&'static str>>,
}

/// `FltGetVolumeFromInstance`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_get_volume_from_instance(
    instance: PFLT_INSTANCE,
    volume_out: *mut PVOID,
) -> NTSTATUS {
    emulate(Routine::FltGetVolumeFromInstance, |k| {
        if volume_out.is_null() {
            k.parameter_violation("a RetVolume out-pointer", "RetVolume is NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        guest::write(volume_out, std::ptr::null_mut());
        let taken_in = state::with(|s| s.callback.get());
        let mut flt = flt_write(k);
        let volume = match flt.io.instance(instance as usize) {
            Some((_, InstanceState::TearingDown)) => return STATUS_FLT_DELETING_OBJECT,
            Some((volume, _)) => flt.io.volumes[volume.0].handle.address(),
            None => {
                drop(flt);
                k.parameter_violation(
                    "an instance of the caller",
                    format!("{instance:p} is not a live instance"),
                );
                return STATUS_INVALID_PARAMETER;
            }
        };
        flt.io
            .volume_refs
            .held
            .entry(volume)
            .or_default()
            .push(taken_in);
        drop(flt);
        guest::write(volume_out, volume as PVOID);
        STATUS_SUCCESS
    })
}

/// `FltObjectDereference`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn flt_object_dereference(object: PVOID) {
    emulate(Routine::FltObjectDereference, |k| {
        let mut flt = flt_write(k);
        let released = flt
            .io
            .volume_refs
            .held
            .get_mut(&(object as usize))
            .and_then(Vec::pop)
            .is_some();
        drop(flt);
        if !released {
            k.violation(
                ViolationKind::OverRelease,
                "FltObjectDereference: one dereference per rundown reference",
                format!("{object:p} holds no rundown reference of the driver"),
            );
        }
    });
}

/// The names `FltGetVolumeProperties` gives a volume of `kind` on `device`: file system driver,
/// file system device, real device.
fn volume_names(kind: VolumeKind, device: &str) -> [String; 3] {
    let driver = match kind {
        VolumeKind::Ntfs => "Ntfs",
        VolumeKind::Refs => "ReFS",
        VolumeKind::Fat => "Fastfat",
        VolumeKind::ExFat => "exfat",
        VolumeKind::Network => "Mup",
        VolumeKind::Lanman => "MRxSmb",
        VolumeKind::NamedPipe => "Npfs",
        VolumeKind::Mailslot => "Msfs",
    };
    [
        format!("\\FileSystem\\{driver}"),
        format!("\\{driver}"),
        device.to_owned(),
    ]
}

/// `FltGetVolumeProperties`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_get_volume_properties(
    volume: PVOID,
    properties: *mut FLT_VOLUME_PROPERTIES,
    length: u32,
    length_returned: *mut u32,
) -> NTSTATUS {
    emulate(Routine::FltGetVolumeProperties, |k| {
        let invalid = STATUS_INVALID_PARAMETER;
        if length_returned.is_null() {
            k.parameter_violation("a LengthReturned", "LengthReturned is NULL".to_owned());
            return invalid;
        }
        let found = {
            let flt = flt_write(k);
            flt.io
                .volumes
                .iter()
                .find(|v| v.handle.address() == volume as usize)
                .map(|v| (v.kind, v.device_name.clone()))
        };
        let Some((kind, device)) = found else {
            k.parameter_violation("a volume", format!("{volume:p} is not a volume"));
            return invalid;
        };
        let names: Vec<Vec<u8>> = volume_names(kind, &device)
            .iter()
            .map(|n| n.encode_utf16().flat_map(u16::to_le_bytes).collect())
            .collect();
        let fixed = size_of::<FLT_VOLUME_PROPERTIES>();
        let full = fixed + names.iter().map(Vec::len).sum::<usize>();
        let length = length as usize;
        if length < fixed {
            guest::write(length_returned, u32::try_from(full).unwrap_or(u32::MAX));
            return STATUS_BUFFER_TOO_SMALL;
        }
        if properties.is_null() {
            k.parameter_violation(
                "VolumeProperties when Length is non-zero",
                "NULL".to_owned(),
            );
            return invalid;
        }
        let disk = kind.device_type() == vigil_sys::FILE_DEVICE_DISK_FILE_SYSTEM;
        let empty = UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        };
        let mut value = FLT_VOLUME_PROPERTIES {
            DeviceType: kind.device_type(),
            DeviceCharacteristics: 0,
            DeviceObjectFlags: 0,
            // FILE_512_BYTE_ALIGNMENT on disks (what the aligned pool gives), byte otherwise.
            AlignmentRequirement: if disk { 0x1ff } else { 0 },
            SectorSize: if disk {
                u16::try_from(crate::fltmgr::aligned_pool::SECTOR_SIZE).unwrap_or(512)
            } else {
                0
            },
            Flags: 0,
            FileSystemDriverName: empty,
            FileSystemDeviceName: empty,
            RealDeviceName: empty,
        };
        let status = if length < full {
            STATUS_BUFFER_OVERFLOW
        } else {
            let mut at = properties as usize + fixed;
            let mut strings = [empty; 3];
            for (string, bytes) in strings.iter_mut().zip(&names) {
                guest::write_bytes(at as *mut u8, bytes);
                let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
                *string = UNICODE_STRING {
                    Length: len,
                    MaximumLength: len,
                    Buffer: at as *mut u16,
                };
                at += bytes.len();
            }
            [
                value.FileSystemDriverName,
                value.FileSystemDeviceName,
                value.RealDeviceName,
            ] = strings;
            STATUS_SUCCESS
        };
        guest::write(properties, value);
        let returned = if status == STATUS_SUCCESS {
            full
        } else {
            fixed
        };
        guest::write(length_returned, u32::try_from(returned).unwrap_or(u32::MAX));
        status
    })
}

/// The kind of the volume `object` is (a volume, or an instance on one); `None` for anything
/// else.
fn kind_of(k: &Kernel, object: usize) -> Option<VolumeKind> {
    let flt = flt_write(k);
    if let Some((volume, _)) = flt.io.instance(object) {
        return Some(flt.io.volumes[volume.0].kind);
    }
    flt.io
        .volumes
        .iter()
        .find(|v| v.handle.address() == object)
        .map(|v| v.kind)
}

/// `FltIsVolumeWritable`: PASSIVE_LEVEL. Every synthetic local volume is writable; the
/// request behind the routine (`IOCTL_DISK_IS_WRITABLE`) is a disk's, so a network, pipe or
/// mailslot volume answers `STATUS_INVALID_DEVICE_REQUEST`
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltisvolumewritable>).
/// Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_is_volume_writable(object: PVOID, writable: *mut u8) -> NTSTATUS {
    emulate(Routine::FltIsVolumeWritable, |k| {
        if writable.is_null() {
            k.parameter_violation("an IsWritable out-pointer", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let Some(kind) = kind_of(k, object as usize) else {
            k.parameter_violation(
                "FltObject, a volume or an instance",
                format!("{object:p} is neither"),
            );
            return STATUS_INVALID_PARAMETER;
        };
        if kind.device_type() != vigil_sys::FILE_DEVICE_DISK_FILE_SYSTEM {
            return vigil_sys::STATUS_INVALID_DEVICE_REQUEST;
        }
        if k.inject_failure("FltIsVolumeWritable", "STATUS_INSUFFICIENT_RESOURCES") {
            return vigil_sys::STATUS_INSUFFICIENT_RESOURCES;
        }
        guest::write(writable, 1);
        STATUS_SUCCESS
    })
}

/// `FltGetFileSystemType`: IRQL <= APC_LEVEL. Anything but a volume or an instance is
/// `STATUS_INVALID_PARAMETER` with `FLT_FSTYPE_UNKNOWN`
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilesystemtype>).
pub(crate) extern "win64" fn flt_get_file_system_type(
    object: PVOID,
    out: *mut vigil_sys::FLT_FILESYSTEM_TYPE,
) -> NTSTATUS {
    emulate(Routine::FltGetFileSystemType, |k| {
        if out.is_null() {
            k.parameter_violation("a FileSystemType out-pointer", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let Some(kind) = kind_of(k, object as usize) else {
            guest::write(out, vigil_sys::FLT_FSTYPE_UNKNOWN);
            k.parameter_violation(
                "FltObject, a volume or an instance",
                format!("{object:p} is neither"),
            );
            return STATUS_INVALID_PARAMETER;
        };
        guest::write(out, kind.filesystem_type());
        STATUS_SUCCESS
    })
}

/// Rundown references on volumes still held when the filter unregisters (`when`).
pub(crate) fn report_leaks(k: &Kernel, when: &str) {
    let held: Vec<(usize, Vec<&'static str>)> = {
        let mut flt = flt_write(k);
        flt.io.volume_refs.held.drain().collect()
    };
    for (volume, taken) in held.into_iter().filter(|(_, t)| !t.is_empty()) {
        k.violation(
            ViolationKind::ReferenceLeak,
            "every rundown reference from FltGetVolumeFromInstance is released (FltObjectDereference)",
            format!(
                "at {when}: volume {volume:#x} still has {} reference(s) (taken in {})",
                taken.len(),
                taken.join(", ")
            ),
        );
    }
}
