//! Filter registration: the `FLT_REGISTRATION` table and an owning handle for the filter.

use core::ptr::{self, NonNull};

use vigil_sys::{
    DRIVER_OBJECT, FLT_REGISTRATION, FltRegisterFilter, FltStartFiltering, FltUnregisterFilter,
    PFLT_FILTER,
};

use crate::error::{NtStatus, Result, check};

/// A registration table that may live in a `static`: FltMgr keeps pointers into the
/// registration (and the operation and context arrays it names) for the filter's lifetime.
#[repr(transparent)]
pub struct StaticTable<T>(pub T);

// SAFETY: the tables are immutable and their raw pointers name immutable statics and functions.
unsafe impl<T> Sync for StaticTable<T> {}

/// The registration itself.
pub type StaticRegistration = StaticTable<FLT_REGISTRATION>;

/// A registered filter, unregistered on drop (which waits for callbacks in flight and tears the
/// instances down).
///
/// # Invariants
///
/// `filter` is a filter handle returned by `FltRegisterFilter` and not yet unregistered.
pub struct RegisteredFilter {
    filter: NonNull<core::ffi::c_void>,
}

// SAFETY: a filter handle is used from any thread by design of the Filter Manager.
unsafe impl Send for RegisteredFilter {}
// SAFETY: as above; the handle is only passed to FltMgr routines.
unsafe impl Sync for RegisteredFilter {}

impl RegisteredFilter {
    /// Registers the filter. PASSIVE_LEVEL. FltMgr may call the filter's unload callback as soon
    /// as this returns: the lifecycle gate must already be initialized.
    ///
    /// # Safety
    ///
    /// `driver` is the driver object DriverEntry received.
    pub unsafe fn register(
        driver: *mut DRIVER_OBJECT,
        registration: &'static StaticRegistration,
    ) -> Result<Self> {
        let mut filter: PFLT_FILTER = ptr::null_mut();
        // SAFETY: `driver` is valid (contract); the registration is static; out-pointer valid.
        check(unsafe { FltRegisterFilter(driver, &raw const registration.0, &raw mut filter) })?;
        let filter = NonNull::new(filter).ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(Self { filter })
    }

    /// Starts filtering: instances attach from here on. PASSIVE_LEVEL.
    pub fn start(&self) -> Result {
        // SAFETY: the handle is registered (invariant).
        check(unsafe { FltStartFiltering(self.filter.as_ptr()) }).map(drop)
    }

    /// The raw handle, for FltMgr routines that take one.
    pub fn handle(&self) -> PFLT_FILTER {
        self.filter.as_ptr()
    }
}

impl Drop for RegisteredFilter {
    fn drop(&mut self) {
        // SAFETY: registered (invariant), unregistered exactly once. The caller closed every
        // communication port before dropping (the lifecycle's teardown order).
        unsafe { FltUnregisterFilter(self.filter.as_ptr()) };
    }
}
