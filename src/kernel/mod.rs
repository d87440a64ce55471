//! Safe wrappers over the kernel routines declared in `vigil-sys`. Runs in the kernel; each
//! wrapper states the IRQL it may be called at.
//!
//! Raw FFI is called only here (and in `crate::filter`, for the Filter Manager); the rest of the
//! driver uses these types.

pub mod apc;
pub mod device;
pub mod event;
pub mod irql;
pub mod once;
pub mod pool;
pub mod process;
pub mod process_notify;
pub mod registry;
pub mod rtl;
// Only the `wrong-irql` twin holds a spin lock (the event path takes none): production must
// not carry its imports.
#[cfg(vigil_twin = "wrong-irql")]
pub mod spin_lock;
pub mod thread;
pub mod time;
pub mod user_buffer;

use vigil_sys::{OBJECT_ATTRIBUTES, PSECURITY_DESCRIPTOR, UNICODE_STRING};

/// `sizeof(OBJECT_ATTRIBUTES)` for its `ULONG Length` field.
const OBJECT_ATTRIBUTES_LENGTH: u32 = {
    assert!(size_of::<OBJECT_ATTRIBUTES>() <= u32::MAX as usize);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked by the assertion above"
    )]
    let length = size_of::<OBJECT_ATTRIBUTES>() as u32;
    length
};

/// What `InitializeObjectAttributes` builds: no root directory, no quality of service.
pub fn object_attributes(
    name: *mut UNICODE_STRING,
    attributes: u32,
    security: PSECURITY_DESCRIPTOR,
) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: OBJECT_ATTRIBUTES_LENGTH,
        RootDirectory: core::ptr::null_mut(),
        ObjectName: name,
        Attributes: attributes,
        SecurityDescriptor: security,
        SecurityQualityOfService: core::ptr::null_mut(),
    }
}
