//! Server communication ports: `FltCreateCommunicationPort`, `FltCloseCommunicationPort`.
//! (The client side, connect/disconnect and messages come with phase 2.)

use vigil_sys::{
    NTSTATUS, OBJECT_ATTRIBUTES, PASSIVE_LEVEL, PFLT_CONNECT_NOTIFY, PFLT_DISCONNECT_NOTIFY,
    PFLT_FILTER, PFLT_MESSAGE_NOTIFY, PFLT_PORT, PVOID, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::flt::ServerPortRecord;
use crate::kernel::{IrqlRule, emulate, lock};
use crate::mem::guest::{self, GuestAlloc};
use crate::ntos::status;
use crate::ntos::thread::check_kernel_handle;
use crate::report::ViolationKind;

/// `FltCreateCommunicationPort`: PASSIVE_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_create_communication_port(
    filter: PFLT_FILTER,
    port_out: *mut PFLT_PORT,
    attributes: *mut OBJECT_ATTRIBUTES,
    cookie: PVOID,
    connect: PFLT_CONNECT_NOTIFY,
    disconnect: PFLT_DISCONNECT_NOTIFY,
    message: PFLT_MESSAGE_NOTIFY,
    max_connections: i32,
) -> NTSTATUS {
    emulate(
        "FltCreateCommunicationPort",
        IrqlRule::AtMost(PASSIVE_LEVEL),
        |k| {
            let bad = |rule: &str, message: String| {
                k.violation(
                    ViolationKind::Parameter,
                    format!("FltCreateCommunicationPort: {rule}"),
                    message,
                );
                STATUS_INVALID_PARAMETER
            };
            if lock(&k.flt).live_filter(filter as usize).is_none() {
                return bad("a registered filter", format!("Filter {filter:p}"));
            }
            if port_out.is_null() {
                return bad("a ServerPort out-pointer", "ServerPort is NULL".to_owned());
            }
            let Some(attrs) = check_kernel_handle(k, "FltCreateCommunicationPort", attributes)
            else {
                return bad(
                    "ObjectAttributes is required",
                    "ObjectAttributes is NULL".to_owned(),
                );
            };
            let name = match guest::unicode_string(attrs.ObjectName) {
                Some(Ok(name)) if !name.is_empty() => name,
                Some(Err(why)) => return bad("a well-formed ObjectName", why),
                _ => return bad("a port name in ObjectName", "no name".to_owned()),
            };
            if attrs.SecurityDescriptor.is_null() {
                k.violation(
                ViolationKind::Parameter,
                "RULES.md 18: the port admits Administrators and SYSTEM only (a security descriptor is required)",
                format!("port {name} created without a security descriptor"),
            );
            }
            let (Some(connect), Some(disconnect)) = (connect, disconnect) else {
                return bad(
                    "ConnectNotifyCallback and DisconnectNotifyCallback",
                    "a NULL callback".to_owned(),
                );
            };
            if max_connections <= 0 {
                return bad(
                    "MaxConnections > 0",
                    format!("MaxConnections {max_connections}"),
                );
            }
            if lock(&k.flt)
                .ports
                .values()
                .any(|p| !p.closed && p.name.eq_ignore_ascii_case(&name))
            {
                return status::OBJECT_NAME_COLLISION;
            }
            if k.inject_failure(
                "FltCreateCommunicationPort",
                "STATUS_INSUFFICIENT_RESOURCES",
            ) {
                return STATUS_INSUFFICIENT_RESOURCES;
            }
            let handle = GuestAlloc::zeroed(64);
            let address = handle.address();
            lock(&k.flt).ports.insert(
                address,
                ServerPortRecord {
                    handle,
                    filter: filter as usize,
                    name,
                    cookie,
                    connect: connect as usize,
                    disconnect: disconnect as usize,
                    message: message.map_or(0, |f| f as usize),
                    max_connections,
                    closed: false,
                },
            );
            guest::write(port_out, address as PFLT_PORT);
            STATUS_SUCCESS
        },
    )
}

/// `FltCloseCommunicationPort`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn flt_close_communication_port(port: PFLT_PORT) {
    emulate(
        "FltCloseCommunicationPort",
        IrqlRule::AtMost(PASSIVE_LEVEL),
        |k| {
            k.check_teardown_race("FltCloseCommunicationPort");
            let problem = {
                let mut flt = lock(&k.flt);
                match flt.ports.get_mut(&(port as usize)) {
                    None => Some(format!("{port:p} is not a server port")),
                    Some(record) if record.closed => {
                        Some(format!("server port {} was already closed", record.name))
                    }
                    Some(record) => {
                        record.closed = true;
                        None
                    }
                }
            };
            if let Some(message) = problem {
                k.violation(
                    ViolationKind::InvalidHandle,
                    "FltCloseCommunicationPort: an open server port, closed once",
                    message,
                );
            }
        },
    );
}
