//! Communication ports, kernel side: server ports (`FltCreateCommunicationPort`,
//! `FltCloseCommunicationPort`), client ports (`FltSendMessage`, `FltCloseClientPort`), the
//! DisconnectNotify contract (the callback closes the client port, RULES.md rule 5), the scan of
//! every message for uninitialized bytes (rule 11), and what `FltUnregisterFilter` and the end
//! of a run do with client ports left open. The client end (connect, get message, reply,
//! commands, close) is in [`crate::world::client`].
//!
//! State is in [`crate::fltmgr::FltState`]: `client_ports` holds one [`ClientPortRecord`] per
//! connection, each with the messages sent through it. Senders and clients wait on the
//! kernel's dispatcher (`Kernel::wait_until`) and every change is followed by
//! `Kernel::notify_waiters`.

use std::collections::BTreeMap;

use vigil_sys::{
    LARGE_INTEGER, NTSTATUS, OBJECT_ATTRIBUTES, PASSIVE_LEVEL, PFLT_CONNECT_NOTIFY,
    PFLT_DISCONNECT_NOTIFY, PFLT_FILTER, PFLT_MESSAGE_NOTIFY, PFLT_PORT, PVOID,
    STATUS_BUFFER_OVERFLOW, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_PORT_DISCONNECTED, STATUS_SUCCESS, STATUS_TIMEOUT,
};

use crate::fltmgr::ServerPortRecord;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::kernel::check::reject;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::status;
use crate::ntoskrnl::thread::check_kernel_handle;
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
    emulate(Routine::FltCreateCommunicationPort, |k| {
        if flt_write(k).live_filter(filter as usize).is_none() {
            reject!(k, "a registered filter" => STATUS_INVALID_PARAMETER, "Filter {filter:p}");
        }
        if port_out.is_null() {
            reject!(k, "a ServerPort out-pointer" => STATUS_INVALID_PARAMETER,
                "ServerPort is NULL");
        }
        let Some(attrs) = check_kernel_handle(k, "FltCreateCommunicationPort", attributes) else {
            reject!(k, "ObjectAttributes is required" => STATUS_INVALID_PARAMETER,
                "ObjectAttributes is NULL");
        };
        // ObjectAttributes' Attributes flags "must include OBJ_KERNEL_HANDLE"; without it the port
        // is refused with STATUS_INVALID_PARAMETER (reported by `check_kernel_handle` above)
        // (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatecommunicationport>).
        if attrs.Attributes & vigil_sys::OBJ_KERNEL_HANDLE == 0 {
            return STATUS_INVALID_PARAMETER;
        }
        let name = match guest::unicode_string(attrs.ObjectName) {
            Some(Ok(name)) if !name.is_empty() => name,
            Some(Err(why)) => {
                reject!(k, "a well-formed ObjectName" => STATUS_INVALID_PARAMETER, "{why}")
            }
            _ => reject!(k, "a port name in ObjectName" => STATUS_INVALID_PARAMETER, "no name"),
        };
        if attrs.SecurityDescriptor.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "RULES.md 18: the port admits Administrators and SYSTEM only (a security descriptor is required)",
                format!("port {name} created without a security descriptor"),
            );
        }
        let access = match crate::fltmgr::security::port_access(
            &flt_write(k),
            attrs.SecurityDescriptor,
        ) {
            Ok(access) => access,
            Err(problem) => {
                reject!(k, "ObjectAttributes.SecurityDescriptor is a live security descriptor" => STATUS_INVALID_PARAMETER,
                    "{problem}");
            }
        };
        let (Some(connect), Some(disconnect)) = (connect, disconnect) else {
            reject!(k, "ConnectNotifyCallback and DisconnectNotifyCallback" => STATUS_INVALID_PARAMETER,
                "a NULL callback");
        };
        if max_connections <= 0 {
            reject!(k, "MaxConnections > 0" => STATUS_INVALID_PARAMETER,
                "MaxConnections {max_connections}");
        }
        if flt_write(k)
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
        flt_write(k).ports.insert(
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
                access,
            },
        );
        guest::write(port_out, address as PFLT_PORT);
        STATUS_SUCCESS
    })
}

/// `FltCloseCommunicationPort`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn flt_close_communication_port(port: PFLT_PORT) {
    emulate(Routine::FltCloseCommunicationPort, |k| {
        k.check_teardown_race("FltCloseCommunicationPort");
        let problem = {
            let mut flt = flt_write(k);
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
    });
}

// ----- client ports -------------------------------------------------------------------------

/// One message a driver sent with `FltSendMessage`, from the send to the sender's return.
#[derive(Debug)]
pub(crate) struct PendingMessage {
    /// A copy of the sender's buffer, taken at the call.
    pub bytes: Vec<u8>,
    /// The sender's `*ReplyLength` when it passed a reply buffer: the client must answer.
    pub reply_capacity: Option<u32>,
    /// Where the message is.
    pub state: MessageState,
}

/// Where a sent message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MessageState {
    /// Queued: no client has received it yet.
    Queued,
    /// Received by the client; the sender waits for its reply.
    AwaitingReply,
    /// Received, and no reply was expected: the send is complete.
    Delivered,
    /// The client replied with these bytes.
    Replied(Vec<u8>),
}

/// A client port: the kernel end of one connection, created by a client's connect.
///
/// Kept (marked closed) until the end of the run, like server ports, so that a stale handle
/// is recognized.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts of a port's life: connecting, closed by either end, notified"
)]
pub(crate) struct ClientPortRecord {
    /// The `PFLT_PORT` the driver's ConnectNotify received (its address is the handle).
    #[expect(dead_code, reason = "kept alive for its address, never read")]
    pub handle: GuestAlloc,
    /// The server port it connected through.
    pub server: usize,
    /// The filter owning that server port.
    pub filter: usize,
    /// The server port's name, for messages.
    pub name: String,
    /// The connecting process.
    pub process_id: usize,
    /// `*ConnectionPortCookie` as ConnectNotify left it.
    pub cookie: usize,
    /// The server port's callbacks.
    pub disconnect: usize,
    /// See `disconnect`.
    pub message: usize,
    /// The driver closed it (`FltCloseClientPort`), or FltMgr did (refused connect, unload).
    pub closed_by_driver: bool,
    /// The client closed its end (the user-mode handle).
    pub client_closed: bool,
    /// DisconnectNotify has been called for it.
    pub disconnect_notified: bool,
    /// Port callbacks (connect, message, disconnect) running on it now.
    pub callbacks_in_flight: u32,
    /// Its ConnectNotify has not returned yet: not a connection FltUnregisterFilter
    /// disconnects (it waits for the answer first).
    pub connecting: bool,
    /// Messages sent through it, by message id (ids grow: the map's order is the send order).
    pub messages: BTreeMap<u64, PendingMessage>,
}

// SAFETY: plain data and kernel-sim-owned memory; the driver's pointers are only handed back to
// the driver.
unsafe impl Send for ClientPortRecord {}

impl ClientPortRecord {
    /// Neither end has closed it.
    pub(crate) fn is_connected(&self) -> bool {
        !self.closed_by_driver && !self.client_closed
    }

    /// Ends every pending send: their senders see the port disconnected.
    fn drop_messages(&mut self) {
        self.messages.clear();
    }
}

/// How long a run of one poison byte must be before a message is called uninitialized.
///
/// 16 bytes is two whole 64-bit fields of `0xA5A5…` or `0xC5C5…`, or eight UTF-16 units
/// `U+A5A5`/`U+C5C5` (a Vai syllable, a Hangul syllable) in a row. Vigil's messages hold
/// little-endian counters, ids and timestamps, flags and UTF-16 paths: none of them produce
/// such a run from real data, while a buffer left uninitialized is poisoned in whole blocks
/// (pool) or whole frames (stack), far longer than 16 bytes.
pub const POISON_RUN: usize = 16;

/// The first run of [`POISON_RUN`] or more pool or stack poison bytes in `bytes`:
/// (offset, length, poison byte).
///
/// Every message is scanned, so this looks at whole 8-byte words: a run of [`POISON_RUN`] (16)
/// equal bytes always covers at least one 8-aligned word of that byte, so only such words need a
/// closer look (the run around them is measured bytewise).
pub(crate) fn find_poison(bytes: &[u8]) -> Option<(usize, usize, u8)> {
    const _: () = assert!(POISON_RUN >= 15, "a shorter run may cover no aligned word");
    let poisons = [
        crate::machine::pool::POOL_POISON,
        crate::machine::switch::STACK_POISON,
    ];
    let mut word_start = 0;
    while word_start + 8 <= bytes.len() {
        let word = &bytes[word_start..word_start + 8];
        let byte = word[0];
        if poisons.contains(&byte) && word.iter().all(|&b| b == byte) {
            let start = bytes[..word_start]
                .iter()
                .rev()
                .take_while(|&&b| b == byte)
                .count();
            let start = word_start - start;
            let run = bytes[start..].iter().take_while(|&&b| b == byte).count();
            if run >= POISON_RUN {
                return Some((start, run, byte));
            }
            // A shorter run: nothing before its end can start a qualifying one.
            word_start = (start + run).next_multiple_of(8);
        } else {
            word_start += 8;
        }
    }
    None
}

/// Reports uninitialized bytes in what `what` carries to user mode (RULES.md, rule 11).
pub(crate) fn scan_for_poison(k: &Kernel, what: &str, bytes: &[u8]) {
    if let Some((offset, run, byte)) = find_poison(bytes) {
        let source = if byte == crate::machine::pool::POOL_POISON {
            "pool poison: pool allocated uninitialized and never written"
        } else {
            "driver-stack poison: a stack buffer never written"
        };
        k.violation(
            ViolationKind::UninitializedBytes,
            "RULES.md 11: uninitialized bytes sent to user mode",
            format!(
                "{what} of {} bytes carries {run} bytes of {byte:#04x} at offset {offset} ({source})",
                bytes.len()
            ),
        );
    }
}

/// RULES.md 7 (a Vigil policy, switched with `flag_infinite_waits`): a send waits only with a
/// finite timeout, and not at all above PASSIVE_LEVEL.
fn check_send_policy(k: &Kernel, timeout_value: Option<LARGE_INTEGER>) {
    let irql = crate::machine::state::current_irql();
    if k.config.flag_infinite_waits {
        if timeout_value.is_none() {
            k.violation(
                ViolationKind::Policy,
                "RULES.md 7: a send waits only with a finite timeout",
                "FltSendMessage with a NULL Timeout (waits forever for the client)".to_owned(),
            );
        } else if irql > PASSIVE_LEVEL && timeout_value != Some(0) {
            k.violation(
                ViolationKind::Policy,
                "RULES.md 7: a send above PASSIVE_LEVEL must not wait",
                format!(
                    "FltSendMessage at {} with a non-zero Timeout",
                    crate::kernel::irql_name(irql)
                ),
            );
        }
    }
}

/// Queues `message` on the client port `*port_variable` holds, read under the lock
/// `FltCloseClientPort` writes it under; returns (port, message id) or the status to return.
fn queue_message(
    k: &Kernel,
    port_variable: *mut PFLT_PORT,
    message: PendingMessage,
) -> Result<(usize, u64), NTSTATUS> {
    let target = {
        let mut guard = flt_write(k);
        let flt = &mut *guard;
        // Read again under the lock: FltCloseClientPort writes NULL under it.
        let port = guest::read(port_variable) as usize;
        match flt.client_ports.get_mut(&port) {
            _ if port == 0 => SendTarget::NullVariable,
            None => SendTarget::NotAPort(port),
            Some(record) if record.closed_by_driver => {
                SendTarget::ClosedPort(port, record.name.clone())
            }
            Some(record) if record.client_closed => SendTarget::Status(STATUS_PORT_DISCONNECTED),
            Some(record) => {
                flt.next_message_id += 1;
                let id = flt.next_message_id;
                record.messages.insert(id, message);
                SendTarget::Queued(port, id)
            }
        }
    };
    match target {
        SendTarget::Queued(port, id) => {
            k.notify_waiters();
            Ok((port, id))
        }
        SendTarget::Status(status) => Err(status),
        SendTarget::NullVariable => {
            // The driver checks its slot first (KERNEL-SIM-NOTES, "Waits and time"); the
            // answer is that of a closed port, which is what the NULL a close leaves means.
            k.violation(
                ViolationKind::Parameter,
                "FltSendMessage: send through a NULL client port variable (check the slot first)",
                "*ClientPort is NULL".to_owned(),
            );
            Err(STATUS_PORT_DISCONNECTED)
        }
        SendTarget::NotAPort(port) => {
            k.violation(
                ViolationKind::InvalidHandle,
                "FltSendMessage: *ClientPort is a client port from ConnectNotify",
                format!("{port:#x} is not a client port"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
        SendTarget::ClosedPort(port, name) => {
            k.violation(
                ViolationKind::InvalidHandle,
                "RULES.md 5: FltSendMessage and FltCloseClientPort are given the same port variable",
                format!(
                    "send through client port {port:#x} ({name}) after it was closed: a second \
                     copy of the port variable (on Windows, a reference to a closed handle)"
                ),
            );
            Err(STATUS_PORT_DISCONNECTED)
        }
    }
}

/// Waits until message `id` on `port` is received (and replied to, if a reply is expected),
/// the port closes, or `deadline` passes. `Ok(Some(reply))`, `Ok(None)` (delivered), or the
/// status to return.
fn wait_for_delivery(
    k: &Kernel,
    port: usize,
    id: u64,
    deadline: Option<std::time::Instant>,
) -> Result<Option<Vec<u8>>, NTSTATUS> {
    let mut outcome = None;
    let completed = k.wait_until(deadline, "FltSendMessage", || {
        let mut flt = flt_write(k);
        let Some(record) = flt.client_ports.get_mut(&port) else {
            outcome = Some(Err(STATUS_PORT_DISCONNECTED));
            return true;
        };
        let done = match record.messages.get(&id).map(|m| &m.state) {
            None => Some(Err(STATUS_PORT_DISCONNECTED)),
            Some(MessageState::Delivered) => Some(Ok(None)),
            Some(MessageState::Replied(bytes)) => Some(Ok(Some(bytes.clone()))),
            Some(MessageState::Queued | MessageState::AwaitingReply) => None,
        };
        if done.is_some() {
            record.messages.remove(&id);
            outcome = done;
        }
        outcome.is_some()
    });
    if !completed {
        // Too late: the message is withdrawn, and a reply to it finds no waiter.
        if let Some(record) = flt_write(k).client_ports.get_mut(&port) {
            record.messages.remove(&id);
        }
        k.notify_waiters();
        return Err(STATUS_TIMEOUT);
    }
    outcome.unwrap_or(Err(STATUS_PORT_DISCONNECTED))
}

/// What `FltSendMessage` found behind the port variable.
enum SendTarget {
    /// A connected client port: the message was queued under this id.
    Queued(usize, u64),
    /// Return this status without waiting (the client closed its end).
    Status(NTSTATUS),
    /// The variable holds NULL.
    NullVariable,
    /// The variable holds something that is not a client port.
    NotAPort(usize),
    /// The variable holds a port the driver closed already.
    ClosedPort(usize, String),
}

/// `FltSendMessage`'s wait can end with `STATUS_THREAD_IS_TERMINATING` ("the wait was
/// interrupted because the thread was terminated by an application or the user",
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsendmessage>):
/// it is a user-mode wait, and during a user-mode wait the kernel stack may be paged out
/// (KeWaitForSingleObject, Remarks: "If the `WaitMode` parameter is `UserMode`, the kernel stack can
/// be swapped out during the wait",
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kewaitforsingleobject>).
/// The reply is written into `ReplyBuffer` when it arrives, so a reply buffer on the caller's
/// kernel stack can be written while that stack is not resident; Microsoft's scanner sample
/// receives its reply into pool. Reported, so that a reply on the stack is never missed.
fn check_reply_not_on_stack(k: &Kernel, reply: PVOID) {
    let address = reply as usize;
    let on_stack = state::with(|s| {
        s.depth.get() > 0 && (s.stack_low.get()..s.stack_high.get()).contains(&address)
    });
    if on_stack {
        k.violation(
            ViolationKind::Parameter,
            "FltSendMessage: a ReplyBuffer that stays resident during the (user-mode) wait",
            format!("ReplyBuffer {reply:p} is on the calling thread's kernel stack"),
        );
    }
}

/// `FltSendMessage`: IRQL <= APC_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
///
/// Reads the port through `*port_variable` at the call (under the same lock
/// `FltCloseClientPort` takes to set it to NULL, so a send through the variable a close is
/// clearing sees NULL or a live port, never a closed one), copies and scans the message, then
/// waits until the client has received it and, with a reply buffer, replied; or the timeout
/// expires (`STATUS_TIMEOUT`, a success code); or either end closes the port
/// (`STATUS_PORT_DISCONNECTED`). A reply longer than `*ReplyLength` is truncated to it and the
/// send returns `STATUS_BUFFER_OVERFLOW`; `*ReplyLength` receives the bytes copied.
pub(crate) extern "win64" fn flt_send_message(
    filter: PFLT_FILTER,
    port_variable: *mut PFLT_PORT,
    buffer: PVOID,
    length: u32,
    reply: PVOID,
    reply_length: *mut u32,
    timeout: *mut LARGE_INTEGER,
) -> NTSTATUS {
    emulate(Routine::FltSendMessage, |k| {
        // A callback that FltUnregisterFilter is draining may still send: the handle is valid
        // until the unregister returns (its ports are closed by then, so the send fails with
        // the port's status, not as a bad handle).
        if flt_write(k).valid_filter(filter as usize).is_none() {
            k.violation(
                ViolationKind::InvalidHandle,
                "FltSendMessage: a registered filter",
                format!("Filter {filter:p} is not a registered filter"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if port_variable.is_null() {
            reject!(k, "ClientPort is the address of the port variable" => STATUS_INVALID_PARAMETER,
                "ClientPort is NULL");
        }
        if buffer.is_null() || length == 0 {
            reject!(k, "a SenderBuffer and a non-zero SenderBufferLength" => STATUS_INVALID_PARAMETER,
                "SenderBuffer {buffer:p}, SenderBufferLength {length}");
        }
        if !reply.is_null() && reply_length.is_null() {
            reject!(k, "ReplyLength is required with a ReplyBuffer" => STATUS_INVALID_PARAMETER,
                "ReplyBuffer given, ReplyLength NULL");
        }
        check_reply_not_on_stack(k, reply);
        // Every driver pointer is read before any lock is taken: a wild one faults here,
        // holding nothing (see `machine::guest`).
        let _ = guest::read(port_variable);
        let bytes = guest::read_bytes(buffer.cast::<u8>(), length as usize);
        let reply_capacity = (!reply.is_null()).then(|| guest::read(reply_length));
        let timeout_value = (!timeout.is_null()).then(|| guest::read(timeout));
        check_send_policy(k, timeout_value);
        scan_for_poison(k, "a message sent with FltSendMessage", &bytes);
        if k.inject_failure("FltSendMessage", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let message = PendingMessage {
            bytes,
            reply_capacity,
            state: MessageState::Queued,
        };
        let (port, id) = match queue_message(k, port_variable, message) {
            Ok(queued) => queued,
            Err(status) => return status,
        };
        let deadline = timeout_value.map(crate::ntoskrnl::event::deadline_of);
        match wait_for_delivery(k, port, id, deadline) {
            Ok(Some(answer)) => {
                let capacity = reply_capacity.unwrap_or(0) as usize;
                let copied = answer.len().min(capacity);
                guest::write_bytes(reply.cast::<u8>(), &answer[..copied]);
                guest::write(reply_length, u32::try_from(copied).unwrap_or(u32::MAX));
                if answer.len() > capacity {
                    STATUS_BUFFER_OVERFLOW
                } else {
                    STATUS_SUCCESS
                }
            }
            Ok(None) => STATUS_SUCCESS,
            Err(status) => status,
        }
    })
}

/// `FltCloseClientPort`: PASSIVE_LEVEL. Sets `*port_variable` to NULL, then closes the port:
/// senders waiting on it return `STATUS_PORT_DISCONNECTED`, the client sees the port closed.
pub(crate) extern "win64" fn flt_close_client_port(
    filter: PFLT_FILTER,
    port_variable: *mut PFLT_PORT,
) {
    emulate(Routine::FltCloseClientPort, |k| {
        if port_variable.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "FltCloseClientPort: ClientPort is the address of the port variable",
                "ClientPort is NULL".to_owned(),
            );
            return;
        }
        let _ = guest::read(port_variable);
        let problem = {
            let mut flt = flt_write(k);
            let filter_known = flt.filters.contains_key(&(filter as usize));
            let port = guest::read(port_variable) as usize;
            match flt.client_ports.get_mut(&port) {
                _ if port == 0 => Some("*ClientPort is NULL (closed already?)".to_owned()),
                None => Some(format!("{port:#x} is not a client port")),
                Some(record) if record.closed_by_driver => Some(format!(
                    "client port {port:#x} ({}) was already closed",
                    record.name
                )),
                Some(record) => {
                    guest::write(port_variable, std::ptr::null_mut());
                    record.closed_by_driver = true;
                    record.drop_messages();
                    (!filter_known || record.filter != filter as usize)
                        .then(|| format!("Filter {filter:p} does not own client port {port:#x}"))
                }
            }
        };
        k.notify_waiters();
        if let Some(message) = problem {
            k.violation(
                ViolationKind::InvalidHandle,
                "FltCloseClientPort: an open client port of this filter, closed once",
                message,
            );
        }
    });
}

/// Calls the driver's DisconnectNotify for a client port (PASSIVE_LEVEL, in the client's
/// process), once, then checks that the callback closed the port (RULES.md, rule 5).
pub(crate) fn notify_disconnect(k: &Kernel, port: usize) {
    let call = {
        let mut flt = flt_write(k);
        let unregistered = flt
            .client_ports
            .get(&port)
            .is_none_or(|r| flt.filters.get(&r.filter).is_none_or(|f| f.unregistered));
        match flt.client_ports.get_mut(&port) {
            Some(record)
                if !record.closed_by_driver
                    && !record.disconnect_notified
                    && !unregistered
                    && record.disconnect != 0 =>
            {
                record.disconnect_notified = true;
                record.callbacks_in_flight += 1;
                Some((record.disconnect, record.cookie, record.process_id))
            }
            _ => None,
        }
    };
    let Some((disconnect, cookie, pid)) = call else {
        return;
    };
    if !k.crashed.load(std::sync::atomic::Ordering::Acquire) {
        // SAFETY: the driver registered this address as its PFLT_DISCONNECT_NOTIFY; the filter
        // is registered, so the image is mapped.
        let callback: unsafe extern "win64" fn(PVOID) = unsafe { std::mem::transmute(disconnect) };
        let returned = in_process(pid, || {
            // SAFETY: as above; the cookie is the driver's own, from ConnectNotify.
            k.call_driver("DisconnectNotify", Some(PASSIVE_LEVEL), || unsafe {
                callback(cookie as PVOID);
            })
        });
        let open = {
            let mut flt = flt_write(k);
            let record = flt.client_ports.get_mut(&port);
            let open = record.as_ref().is_some_and(|r| !r.closed_by_driver);
            if let Some(record) = record {
                record.callbacks_in_flight -= 1;
            }
            open
        };
        if returned.is_some() && open {
            k.violation(
                ViolationKind::PortNotClosed,
                "RULES.md 5: the disconnect callback closes the client port (FltCloseClientPort)",
                format!("client port {port:#x}: client port not closed by the disconnect callback"),
            );
        }
    } else if let Some(record) = flt_write(k).client_ports.get_mut(&port) {
        record.callbacks_in_flight -= 1;
    }
    k.notify_waiters();
}

/// Runs `f` with the emulated current process set to `pid` (port callbacks run in the
/// client's process context).
pub(crate) fn in_process<R>(pid: usize, f: impl FnOnce() -> R) -> R {
    let saved = crate::machine::state::with(|s| s.process_id.replace(pid));
    let result = f();
    crate::machine::state::with(|s| s.process_id.set(saved));
    result
}

/// `FltUnregisterFilter`'s part for client ports: FltMgr calls DisconnectNotify for every
/// client port still open (the filter is about to be unloaded); a port the callback leaves
/// open is reported and closed. Then waits for port callbacks still running on this filter's
/// ports (the unregister drains them).
pub(crate) fn unregister_client_ports(k: &Kernel, filter: usize) {
    // A connect racing the unload: its ConnectNotify answers first (the driver refuses it, or
    // accepts it and must then close it in DisconnectNotify below).
    k.wait_until(
        None,
        "FltUnregisterFilter waiting for ConnectNotify calls in flight",
        || {
            flt_write(k)
                .client_ports
                .values()
                .all(|r| r.filter != filter || !r.connecting)
        },
    );
    let open: Vec<usize> = flt_write(k)
        .client_ports
        .iter()
        .filter(|(_, r)| r.filter == filter && !r.closed_by_driver)
        .map(|(&port, _)| port)
        .collect();
    for &port in &open {
        notify_disconnect_at_unregister(k, port);
    }
    // A DisconnectNotify the client's own close started before the unregister may still be
    // running (waiting for the driver's port lock, say): it closes the port, so the check
    // below waits for it, as Filter Manager's rundown of the port does.
    k.wait_until(
        None,
        "FltUnregisterFilter waiting for DisconnectNotify calls in flight",
        || {
            flt_write(k)
                .client_ports
                .values()
                .filter(|r| r.filter == filter && r.disconnect_notified && !r.closed_by_driver)
                .all(|r| r.callbacks_in_flight == 0)
        },
    );
    let still_open: Vec<String> = {
        let mut flt = flt_write(k);
        let mut names = Vec::new();
        for (port, record) in flt
            .client_ports
            .iter_mut()
            .filter(|(_, r)| r.filter == filter && !r.closed_by_driver)
        {
            record.closed_by_driver = true;
            record.drop_messages();
            names.push(format!("{port:#x} ({})", record.name));
        }
        names
    };
    k.notify_waiters();
    if !still_open.is_empty() {
        k.violation(
            ViolationKind::PortNotClosed,
            "FltUnregisterFilter: every client port is closed first (the disconnect callback closes it)",
            format!("client port(s) still open at FltUnregisterFilter: {}", still_open.join(", ")),
        );
    }
    k.wait_until(None, "FltUnregisterFilter draining port callbacks", || {
        flt_write(k)
            .client_ports
            .values()
            .filter(|r| r.filter == filter)
            .all(|r| r.callbacks_in_flight == 0)
    });
}

/// DisconnectNotify at unregister: called even if the client has not closed its end.
fn notify_disconnect_at_unregister(k: &Kernel, port: usize) {
    // At unregister the filter is already marked unregistered; the callback is still called
    // (FltMgr calls it "when the minifilter is about to be unloaded").
    let call = {
        let mut flt = flt_write(k);
        match flt.client_ports.get_mut(&port) {
            Some(record)
                if !record.closed_by_driver
                    && !record.disconnect_notified
                    && record.disconnect != 0 =>
            {
                record.disconnect_notified = true;
                Some((record.disconnect, record.cookie, record.process_id))
            }
            _ => None,
        }
    };
    let Some((disconnect, cookie, pid)) = call else {
        return;
    };
    // SAFETY: the driver's registered PFLT_DISCONNECT_NOTIFY; the image is mapped (the driver
    // is inside FltUnregisterFilter).
    let callback: unsafe extern "win64" fn(PVOID) = unsafe { std::mem::transmute(disconnect) };
    in_process(pid, || {
        // SAFETY: as above; the cookie is the driver's own.
        k.call_driver("DisconnectNotify", Some(PASSIVE_LEVEL), || unsafe {
            callback(cookie as PVOID);
        })
    });
}

/// The driver is gone: every client port still open is closed (its client sees the port
/// closed); returns their descriptions for the leak report.
pub(crate) fn close_client_ports_of_gone_driver(k: &Kernel) -> Vec<String> {
    let names = {
        let mut flt = flt_write(k);
        let mut names = Vec::new();
        for (port, record) in flt
            .client_ports
            .iter_mut()
            .filter(|(_, r)| !r.closed_by_driver)
        {
            record.closed_by_driver = true;
            record.drop_messages();
            names.push(format!("client port {port:#x} ({})", record.name));
        }
        names
    };
    k.notify_waiters();
    names
}
