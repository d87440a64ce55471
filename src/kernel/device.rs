//! The driver's device object. A minifilter needs none for I/O; Vigil creates one only for its
//! `DO_DEVICE_INITIALIZING` flag, which the I/O manager clears once DriverEntry has returned
//! (RULES.md, rule 1). PASSIVE_LEVEL.

use core::ptr::{self, NonNull};

use vigil_sys::{
    DEVICE_OBJECT, DO_DEVICE_INITIALIZING, DRIVER_OBJECT, FALSE, FILE_DEVICE_SECURE_OPEN,
    FILE_DEVICE_UNKNOWN, IoCreateDevice, IoDeleteDevice,
};

use crate::error::{NtStatus, Result, check};

/// An unnamed device object, deleted on drop.
///
/// # Invariants
///
/// `device` is a live device object created by `IoCreateDevice` and owned by this value.
pub struct DeviceObject {
    device: NonNull<DEVICE_OBJECT>,
}

// SAFETY: the device object is a kernel object usable from any thread; only its Flags word is
// read (with a volatile load) after creation.
unsafe impl Send for DeviceObject {}
// SAFETY: as above: shared access reads Flags only.
unsafe impl Sync for DeviceObject {}

impl DeviceObject {
    /// Creates the device. PASSIVE_LEVEL, from DriverEntry.
    ///
    /// # Safety
    ///
    /// `driver` is the driver object DriverEntry received.
    pub unsafe fn create(driver: *mut DRIVER_OBJECT) -> Result<Self> {
        let mut device = ptr::null_mut();
        // SAFETY: `driver` is valid (contract); no name, no extension; `device` is an out-pointer.
        let status = unsafe {
            IoCreateDevice(
                driver,
                0,
                ptr::null_mut(),
                FILE_DEVICE_UNKNOWN,
                FILE_DEVICE_SECURE_OPEN,
                FALSE,
                &raw mut device,
            )
        };
        check(status)?;
        let device = NonNull::new(device).ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(Self { device })
    }

    /// Whether `DO_DEVICE_INITIALIZING` is still set, i.e. DriverEntry has not returned yet.
    /// Any IRQL.
    pub fn is_initializing(&self) -> bool {
        let device = self.device.as_ptr();
        // SAFETY: the device is live (invariant): the field address is in bounds.
        let flags_field = unsafe { &raw const (*device).Flags };
        // SAFETY: the I/O manager writes Flags concurrently, so it is read with a volatile load
        // (and never written).
        let flags = unsafe { ptr::read_volatile(flags_field) };
        flags & DO_DEVICE_INITIALIZING != 0
    }
}

impl Drop for DeviceObject {
    fn drop(&mut self) {
        // SAFETY: the device is live and owned (invariant); deleted exactly once.
        unsafe { IoDeleteDevice(self.device.as_ptr()) };
    }
}
