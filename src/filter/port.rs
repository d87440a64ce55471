//! The server communication port: created with a security descriptor that admits only
//! Administrators and SYSTEM (RULES.md, rule 18), one connection at a time.

use core::ptr::{self, NonNull};

use vigil_sys::{
    FLT_PORT_ALL_ACCESS, FltBuildDefaultSecurityDescriptor, FltCloseCommunicationPort,
    FltCreateCommunicationPort, FltFreeSecurityDescriptor, OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE,
    OBJECT_ATTRIBUTES, PFLT_CONNECT_NOTIFY, PFLT_DISCONNECT_NOTIFY, PFLT_MESSAGE_NOTIFY, PFLT_PORT,
    PSECURITY_DESCRIPTOR, UNICODE_STRING,
};

use crate::error::{NtStatus, Result, check};
use crate::filter::registration::RegisteredFilter;

/// The port's notification callbacks.
pub struct PortCallbacks {
    /// A client connects.
    pub connect: PFLT_CONNECT_NOTIFY,
    /// The client disconnects.
    pub disconnect: PFLT_DISCONNECT_NOTIFY,
    /// The client sends a command.
    pub message: PFLT_MESSAGE_NOTIFY,
}

/// Policy: one client at a time. The service is a single process; a second connection would
/// split the event stream and the verdict answers between two readers.
pub const MAX_CONNECTIONS: i32 = 1;

/// The security descriptor from `FltBuildDefaultSecurityDescriptor`, freed on drop.
struct DefaultSecurityDescriptor(PSECURITY_DESCRIPTOR);

impl DefaultSecurityDescriptor {
    fn build() -> Result<Self> {
        let mut sd: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: out-pointer valid; PASSIVE_LEVEL is the caller's (port creation's) IRQL.
        check(unsafe { FltBuildDefaultSecurityDescriptor(&raw mut sd, FLT_PORT_ALL_ACCESS) })?;
        if sd.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok(Self(sd))
    }
}

impl Drop for DefaultSecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: built by FltBuildDefaultSecurityDescriptor, freed once. The port keeps its own
        // copy of the descriptor, so freeing right after creation is the documented pattern.
        unsafe { FltFreeSecurityDescriptor(self.0) };
    }
}

/// The server port, closed on drop.
///
/// # Invariants
///
/// `port` was returned by `FltCreateCommunicationPort` and is not yet closed.
pub struct ServerPort {
    port: NonNull<core::ffi::c_void>,
}

// SAFETY: a port handle is used from any thread by design of the Filter Manager.
unsafe impl Send for ServerPort {}
// SAFETY: as above; only passed to FltMgr routines.
unsafe impl Sync for ServerPort {}

impl ServerPort {
    /// Creates the named server port. PASSIVE_LEVEL.
    ///
    /// `name` is the port name in UTF-16 (no terminator). `cookie` is handed back to the connect
    /// callback.
    pub fn create(
        filter: &RegisteredFilter,
        name: &'static [u16],
        callbacks: &PortCallbacks,
        cookie: *mut core::ffi::c_void,
    ) -> Result<Self> {
        let sd = DefaultSecurityDescriptor::build()?;
        let byte_len = u16::try_from(size_of_val(name)).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut unicode_name = UNICODE_STRING {
            Length: byte_len,
            MaximumLength: byte_len,
            Buffer: name.as_ptr().cast_mut(),
        };
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: ptr::null_mut(),
            ObjectName: &raw mut unicode_name,
            // Kernel handle: never usable from whichever process context we run in (rule 16).
            Attributes: OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
            SecurityDescriptor: sd.0,
            SecurityQualityOfService: ptr::null_mut(),
        };
        let mut port: PFLT_PORT = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; FltMgr copies the name and descriptor.
        let status = unsafe {
            FltCreateCommunicationPort(
                filter.handle(),
                &raw mut port,
                &raw mut attributes,
                cookie,
                callbacks.connect,
                callbacks.disconnect,
                callbacks.message,
                MAX_CONNECTIONS,
            )
        };
        check(status)?;
        let port = NonNull::new(port).ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(Self { port })
    }
}

impl Drop for ServerPort {
    fn drop(&mut self) {
        // SAFETY: open (invariant), closed exactly once. Existing client connections survive
        // this; the lifecycle closes the client port separately, through its slot.
        unsafe { FltCloseCommunicationPort(self.port.as_ptr()) };
    }
}
