//! Volume names: `FltGetVolumeName` (the volume's device name) and `FltGetVolumeGuidName` (its
//! mount manager name, `\??\Volume{GUID}`).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumename>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumeguidname>):
//! - `FltGetVolumeName`: IRQL <= APC_LEVEL; `VolumeName` and `BufferSizeNeeded` optional but
//!   not both NULL (`STATUS_INVALID_PARAMETER`); a `VolumeName` whose `MaximumLength` is too
//!   small (or none, to learn the size) is `STATUS_BUFFER_TOO_SMALL` with the bytes needed;
//!   else the name, `Length` set;
//! - `FltGetVolumeGuidName`: PASSIVE_LEVEL; `VolumeGuidName` required; a local file system
//!   volume: a network volume is `STATUS_INVALID_DEVICE_REQUEST` (as are the pipe and mailslot
//!   file systems here, which have no mount manager name); an unknown volume
//!   `STATUS_FLT_VOLUME_NOT_FOUND`; pool failure `STATUS_INSUFFICIENT_RESOURCES`; the same
//!   buffer rule. Each synthetic volume has a GUID of its own, fixed by its index in the run.

use vigil_sys::{
    NTSTATUS, PVOID, STATUS_BUFFER_TOO_SMALL, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::config::VolumeKind;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::fltmgr::instances::STATUS_FLT_VOLUME_NOT_FOUND;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;

/// The volume at `volume`: its index in the run, kind and device name.
fn find(k: &Kernel, volume: PVOID) -> Option<(usize, VolumeKind, String)> {
    let flt = flt_write(k);
    flt.io
        .volumes
        .iter()
        .enumerate()
        .find(|(_, v)| v.handle.address() == volume as usize)
        .map(|(index, v)| (index, v.kind, v.device_name.clone()))
}

/// Copies `name` into the caller's string when it fits (`STATUS_BUFFER_TOO_SMALL` when it
/// does not, or when there is no string), and the size into `needed` when given.
fn hand_out(name: &str, out: *mut UNICODE_STRING, needed: *mut u32) -> NTSTATUS {
    let bytes: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let size = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    if !needed.is_null() {
        guest::write(needed, u32::from(size));
    }
    if out.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let mut string = guest::read(out);
    if string.MaximumLength < size || string.Buffer.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    guest::write_bytes(string.Buffer.cast(), &bytes);
    string.Length = size;
    guest::write(out, string);
    STATUS_SUCCESS
}

/// `FltGetVolumeName`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_get_volume_name(
    volume: PVOID,
    name: *mut UNICODE_STRING,
    needed: *mut u32,
) -> NTSTATUS {
    emulate(Routine::FltGetVolumeName, |k| {
        if name.is_null() && needed.is_null() {
            k.parameter_violation("VolumeName or BufferSizeNeeded", "both are NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let Some((_, _, device)) = find(k, volume) else {
            k.parameter_violation("a volume", format!("{volume:p} is not a volume"));
            return STATUS_INVALID_PARAMETER;
        };
        hand_out(&device, name, needed)
    })
}

/// `FltGetVolumeGuidName`: PASSIVE_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_get_volume_guid_name(
    volume: PVOID,
    name: *mut UNICODE_STRING,
    needed: *mut u32,
) -> NTSTATUS {
    emulate(Routine::FltGetVolumeGuidName, |k| {
        if name.is_null() {
            k.parameter_violation("a VolumeGuidName", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let Some((index, kind, _)) = find(k, volume) else {
            return STATUS_FLT_VOLUME_NOT_FOUND;
        };
        if kind.device_type() != vigil_sys::FILE_DEVICE_DISK_FILE_SYSTEM {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        if k.inject_failure("FltGetVolumeGuidName", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let guid = format!("\\??\\Volume{{6b76736d-0000-0000-0000-{index:012x}}}");
        hand_out(&guid, name, needed)
    })
}
