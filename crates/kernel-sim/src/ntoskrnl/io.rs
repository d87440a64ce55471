//! Device objects: `IoCreateDevice`, `IoDeleteDevice`.
//!
//! A new device object has `DO_DEVICE_INITIALIZING` set; for devices created in DriverEntry,
//! kernel-sim clears it only after DriverEntry has returned, as the I/O manager does (the bit
//! is what Vigil's unload polls, RULES.md rule 1). Each device object lives on its own pages,
//! which become inaccessible when it is deleted.

use std::sync::atomic::Ordering;

use vigil_sys::{
    BOOLEAN, DEVICE_OBJECT, DEVICE_TYPE, DO_DEVICE_INITIALIZING, DRIVER_OBJECT, NTSTATUS,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::kernel::objects::DeviceRecord;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest;
use crate::machine::pages::Region;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;

/// `DO_EXCLUSIVE`.
const DO_EXCLUSIVE: u32 = 0x0000_0008;
/// `IO_TYPE_DEVICE`.
const IO_TYPE_DEVICE: i16 = 3;

fn flags_of(device: usize) -> *mut u32 {
    (device + std::mem::offset_of!(DEVICE_OBJECT, Flags)) as *mut u32
}

/// `IoCreateDevice`: PASSIVE_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn io_create_device(
    driver: *mut DRIVER_OBJECT,
    extension_size: u32,
    name: *mut UNICODE_STRING,
    device_type: DEVICE_TYPE,
    characteristics: u32,
    exclusive: BOOLEAN,
    device_out: *mut *mut DEVICE_OBJECT,
) -> NTSTATUS {
    emulate(Routine::IoCreateDevice, |k| {
        if driver as usize != k.driver_object.address() {
            k.violation(
                ViolationKind::Parameter,
                "IoCreateDevice: the caller's driver object",
                format!("DriverObject {driver:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if device_out.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "IoCreateDevice: a DeviceObject out-pointer",
                "DeviceObject is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let name = match guest::unicode_string(name) {
            None => None,
            Some(Ok(n)) => Some(n),
            Some(Err(why)) => {
                k.violation(
                    ViolationKind::Parameter,
                    "IoCreateDevice: a well-formed DeviceName",
                    why,
                );
                return STATUS_INVALID_PARAMETER;
            }
        };
        if let Some(n) = &name
            && lock(&k.objects)
                .devices
                .values()
                .any(|d| d.name.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(n)))
        {
            return status::OBJECT_NAME_COLLISION;
        }
        if k.inject_failure("IoCreateDevice", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let object_size = size_of::<DEVICE_OBJECT>();
        let Ok(region) = Region::map(object_size + extension_size as usize) else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        let device = region.base() as *mut DEVICE_OBJECT;
        let head_of_list = (k.driver_object.address()
            + std::mem::offset_of!(DRIVER_OBJECT, DeviceObject))
            as *mut *mut DEVICE_OBJECT;
        let previous_head = guest::read(head_of_list);
        let mut flags = DO_DEVICE_INITIALIZING;
        if exclusive != 0 {
            flags |= DO_EXCLUSIVE;
        }
        // SAFETY: DEVICE_OBJECT is plain data (integers, raw pointers, opaque words): all
        // zeroes is a valid value.
        let mut value: DEVICE_OBJECT = unsafe { std::mem::zeroed() };
        value.Type = IO_TYPE_DEVICE;
        value.Size = u16::try_from(object_size + extension_size as usize).unwrap_or(u16::MAX);
        value.DriverObject = driver;
        value.NextDevice = previous_head;
        value.Flags = flags;
        value.Characteristics = characteristics;
        value.DeviceType = device_type;
        value.StackSize = 1;
        if extension_size > 0 {
            value.DeviceExtension = (region.base() + object_size) as *mut _;
        }
        // SAFETY: `device` is the start of a fresh page-aligned read-write mapping at least
        // size_of::<DEVICE_OBJECT>() bytes long, owned by the record created below; no other
        // thread knows its address yet.
        unsafe { device.write(value) };
        let during_entry = k.lifecycle.in_entry.load(Ordering::Acquire)
            && crate::machine::state::with(|s| s.callback.get()) == "DriverEntry";
        lock(&k.objects).devices.insert(
            device as usize,
            DeviceRecord {
                region,
                created_during_entry: during_entry,
                name,
            },
        );
        guest::write(head_of_list, device);
        guest::write(device_out, device);
        STATUS_SUCCESS
    })
}

/// `IoDeleteDevice`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn io_delete_device(device: *mut DEVICE_OBJECT) {
    emulate(Routine::IoDeleteDevice, |k| {
        k.check_teardown_race("IoDeleteDevice");
        let record = lock(&k.objects).devices.remove(&(device as usize));
        let Some(record) = record else {
            let deleted = lock(&k.objects)
                .deleted_devices
                .get(&(device as usize))
                .copied();
            k.violation(
                ViolationKind::InvalidHandle,
                "IoDeleteDevice: a device object the driver created, deleted once",
                match deleted {
                    Some(by) => format!("device {device:p} was already deleted in {by}"),
                    None => format!("{device:p} is not a device object of this driver"),
                },
            );
            return;
        };
        unlink(k, device);
        let by = crate::machine::state::with(|s| s.callback.get());
        lock(&k.objects).deleted_devices.insert(device as usize, by);
        record.region.leak_into_quarantine();
    });
}

/// Removes `device` from the driver object's device list.
fn unlink(k: &Kernel, device: *mut DEVICE_OBJECT) {
    let next = guest::read(
        (device as usize + std::mem::offset_of!(DEVICE_OBJECT, NextDevice))
            as *const *mut DEVICE_OBJECT,
    );
    let mut link = (k.driver_object.address() + std::mem::offset_of!(DRIVER_OBJECT, DeviceObject))
        as *mut *mut DEVICE_OBJECT;
    for _ in 0..1024 {
        let current = guest::read(link);
        if current.is_null() {
            return;
        }
        if current == device {
            guest::write(link, next);
            return;
        }
        link = (current as usize + std::mem::offset_of!(DEVICE_OBJECT, NextDevice))
            as *mut *mut DEVICE_OBJECT;
    }
}

/// What the I/O manager does when DriverEntry returns: clears `DO_DEVICE_INITIALIZING` on the
/// devices it created.
pub(crate) fn finish_initializing(k: &Kernel) {
    let objects = lock(&k.objects);
    for (&address, record) in &objects.devices {
        if record.created_during_entry
            && let Some(flags) = guest::atomic_u32(flags_of(address))
        {
            flags.fetch_and(!DO_DEVICE_INITIALIZING, Ordering::AcqRel);
        }
    }
}
