//! `FltGetDiskDeviceObject`: the storage device object under a volume, referenced for the
//! caller, who drops the reference with `ObDereferenceObject` (`ntoskrnl::thread`); references
//! still held when the driver is gone are reported (`sim::report_leaks`).
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetdiskdeviceobject>):
//! IRQL <= DISPATCH_LEVEL; `Volume` is required; every success adds a reference that a
//! later `ObDereferenceObject` must match; `STATUS_FLT_NO_DEVICE_OBJECT` when the volume has no
//! such device (here the network, named-pipe and mailslot volumes, which lie on no storage
//! device); on any error `*DiskDeviceObject` is left as it was. The routine belongs in
//! I/O-related callbacks: in `InstanceTeardownStart` or `InstanceTeardownComplete` the fields of
//! the device it returns may no longer be valid, so a call there is reported.

use vigil_sys::{
    DEVICE_OBJECT, DEVICE_TYPE, NTSTATUS, PVOID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;

/// `STATUS_FLT_NO_DEVICE_OBJECT`.
pub(crate) const STATUS_FLT_NO_DEVICE_OBJECT: NTSTATUS = 0xC01C_0019_u32.cast_signed();
/// `FILE_DEVICE_DISK`: the device type of the storage device under a local volume.
const FILE_DEVICE_DISK: DEVICE_TYPE = 0x0000_0007;
/// `IO_TYPE_DEVICE`.
const IO_TYPE_DEVICE: i16 = 3;

/// Whether the volume at `volume` lies on a storage device: `Err` for an address that is no
/// volume.
fn has_disk(k: &Kernel, volume: usize) -> Result<bool, ()> {
    let flt = flt_read(k);
    flt.io
        .volumes
        .iter()
        .find(|v| v.handle.address() == volume)
        .map(|v| v.kind.device_type() == vigil_sys::FILE_DEVICE_DISK_FILE_SYSTEM)
        .ok_or(())
}

/// The disk device object under `volume` (made on first use), referenced for `taken_in`.
fn reference_disk_device(k: &Kernel, volume: usize, taken_in: &'static str) -> usize {
    let mut objects = lock(&k.objects);
    let device = objects
        .disk_devices
        .entry(volume)
        .or_insert_with(|| {
            let device = GuestAlloc::for_type::<DEVICE_OBJECT>(0);
            guest::write(
                (device.address() + std::mem::offset_of!(DEVICE_OBJECT, Type)) as *mut i16,
                IO_TYPE_DEVICE,
            );
            guest::write(
                (device.address() + std::mem::offset_of!(DEVICE_OBJECT, DeviceType))
                    as *mut DEVICE_TYPE,
                FILE_DEVICE_DISK,
            );
            device
        })
        .address();
    objects
        .device_references
        .entry(device)
        .or_default()
        .push(taken_in);
    device
}

/// `FltGetDiskDeviceObject`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn flt_get_disk_device_object(
    volume: PVOID,
    out: *mut *mut DEVICE_OBJECT,
) -> NTSTATUS {
    emulate(Routine::FltGetDiskDeviceObject, |k| {
        if out.is_null() {
            k.parameter_violation("a DiskDeviceObject out-pointer", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let Ok(disk) = has_disk(k, volume as usize) else {
            k.parameter_violation(
                "Volume, an opaque volume pointer (required)",
                format!("{volume:p} is not a volume"),
            );
            return STATUS_INVALID_PARAMETER;
        };
        let callback = state::with(|s| s.callback.get());
        if matches!(
            callback,
            "InstanceTeardownStart" | "InstanceTeardownComplete"
        ) {
            k.parameter_violation(
                "called from I/O-related callbacks only (not instance teardown callbacks, where the device's fields may be invalid)",
                format!("called from {callback}"),
            );
        }
        if !disk {
            return STATUS_FLT_NO_DEVICE_OBJECT;
        }
        let device = reference_disk_device(k, volume as usize, callback);
        guest::write(out, device as *mut DEVICE_OBJECT);
        STATUS_SUCCESS
    })
}
