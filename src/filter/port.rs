//! The server communication port: created with a security descriptor that admits only
//! Administrators and SYSTEM (RULES.md, rule 18), one connection at a time.

use core::ptr::{self, NonNull};

use vigil_sys::{
    FLT_PORT_ALL_ACCESS, FltBuildDefaultSecurityDescriptor, FltCloseCommunicationPort,
    FltCreateCommunicationPort, FltFreeSecurityDescriptor, OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE,
    PFLT_CONNECT_NOTIFY, PFLT_DISCONNECT_NOTIFY, PFLT_MESSAGE_NOTIFY, PFLT_PORT,
    PSECURITY_DESCRIPTOR, UNICODE_STRING,
};

use crate::error::{NtStatus, Result, check};
use crate::filter::registration::RegisteredFilter;
use crate::twins::{self, Twin};

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
        // `port-open-to-all` leaves the descriptor out: any user could connect.
        let descriptor = if twins::is(Twin::PortOpenToAll) {
            ptr::null_mut()
        } else {
            sd.0
        };
        // A kernel handle: never usable from whichever process context we run in (rule 16).
        let mut attributes = crate::kernel::object_attributes(
            &raw mut unicode_name,
            OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
            descriptor,
        );
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

/// `FltSendMessage` through the slot's port variable (lent under the slot's shared lock as a
/// `SendPort`, the only way to reach this routine), with a finite timeout, mapping the status
/// the way `SendOutcome` documents: `STATUS_TIMEOUT` (a success code) is tested explicitly
/// (RULES.md, rule 7). IRQL <= APC_LEVEL; PASSIVE_LEVEL when a reply is awaited.
///
/// `reply`, when given, receives the reply and its length is updated to what arrived.
pub fn send_message(
    filter: vigil_sys::PFLT_FILTER,
    port: &vigil_core::SendPort<'_>,
    message: &mut [u8],
    reply: Option<(&mut [u8], &mut u32)>,
    timeout: vigil_core::Timeout,
) -> vigil_core::SendOutcome {
    use vigil_core::SendOutcome;
    use vigil_sys::{FltSendMessage, STATUS_PORT_DISCONNECTED, STATUS_SUCCESS, STATUS_TIMEOUT};

    let Ok(message_len) = u32::try_from(message.len()) else {
        return SendOutcome::Failed;
    };
    let mut interval = timeout.as_nt_relative();
    let (reply_ptr, reply_len) = match reply {
        Some((buffer, len)) => {
            *len = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
            (buffer.as_mut_ptr().cast(), ptr::from_mut(len))
        }
        None => (ptr::null_mut(), ptr::null_mut()),
    };
    // SAFETY: `port` is the slot's one port variable (PortHandle is a transparent PFLT_PORT),
    // lent under the slot's lock for this call (SendPort); the message and reply buffers are valid for
    // their lengths; the timeout is finite and outlives the call.
    let status = unsafe {
        FltSendMessage(
            filter,
            port.as_ptr().cast(),
            message.as_mut_ptr().cast(),
            message_len,
            reply_ptr,
            reply_len,
            if twins::is(Twin::SendInfinite) {
                ptr::null_mut()
            } else {
                &raw mut interval
            },
        )
    };
    match status {
        STATUS_SUCCESS => SendOutcome::Sent,
        STATUS_TIMEOUT => SendOutcome::TimedOut,
        STATUS_PORT_DISCONNECTED => SendOutcome::Disconnected,
        _ => SendOutcome::Failed,
    }
}

/// `FltCloseClientPort` on the slot's port variable (which it sets to null), lent under the
/// slot's exclusive lock as a `ClosePort`, the only way to reach this routine. PASSIVE_LEVEL.
pub fn close_client_port(filter: vigil_sys::PFLT_FILTER, mut port: vigil_core::ClosePort<'_>) {
    // SAFETY: `port` is the slot's one port variable, lent under its exclusive lock for this call.
    unsafe { vigil_sys::FltCloseClientPort(filter, port.as_ptr().cast()) };
}

/// `twin-port-second-copy`: `FltCloseClientPort` on a copy of the client port kept outside the
/// slot, without the slot's lock.
///
/// # Safety
///
/// None: this exists to be wrong, for the broken twin only. Closing a second copy races every
/// send through the slot's variable (RULES.md rule 5), which kernel-sim must catch. `copy` is a
/// valid pointer to a `PortHandle`.
#[cfg(vigil_twin = "port-second-copy")]
pub unsafe fn twin_close_port_copy(
    filter: vigil_sys::PFLT_FILTER,
    copy: *mut vigil_core::PortHandle,
) {
    // SAFETY: none by design (see above); `copy` is a valid pointer (contract).
    unsafe { vigil_sys::FltCloseClientPort(filter, copy.cast()) };
}
