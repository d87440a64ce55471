//! The communication port's callbacks: connect (one client: the service), disconnect (closes
//! the client port through the slot, RULES.md rule 5), and message (the service's commands).
//! All at PASSIVE_LEVEL, in the context of the service's process.
//!
//! Commands arrive in user-mode buffers: the input is copied under SEH into a kernel buffer,
//! then decoded and validated; the reply is built zeroed in kernel memory, size-checked against
//! the output buffer, and copied out under SEH (rules 8 to 11).

use vigil_core::PortHandle;
use vigil_protocol::{
    HEADER_LEN, HelloReply, MAX_MESSAGE_SIZE, Message, Pong, SetConfigReply, StatsReply,
};
use vigil_sys::{
    NTSTATUS, PFLT_PORT, PVOID, STATUS_ACCESS_DENIED, STATUS_BUFFER_TOO_SMALL,
    STATUS_CONNECTION_COUNT_LIMIT, STATUS_FLT_DELETING_OBJECT, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_BUFFER_SIZE, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_REVISION_MISMATCH, STATUS_SUCCESS,
};

use crate::commands::{self, CommandError};
use crate::entry::{globals_for_teardown, try_access};
use crate::filter::port::close_client_port;
use crate::kernel::pool::{PoolBuffer, tags};
use crate::kernel::user_buffer;
use crate::stats::bump;
use crate::twins::{self, Twin};

/// Connect: admits the service, by its identity when one is configured (the port's security
/// descriptor already limited who may try to Administrators and SYSTEM).
///
/// # Safety
///
/// Called only by FltMgr, as the connect callback of the server port `ServerPort::create`
/// made, in the connecting process at PASSIVE_LEVEL, with `client` the new client port and
/// `connection_cookie` a valid out-pointer (or null).
pub unsafe extern "win64" fn connect(
    client: PFLT_PORT,
    _server_cookie: PVOID,
    _context: PVOID,
    _context_size: u32,
    connection_cookie: *mut PVOID,
) -> NTSTATUS {
    let Some(globals) = try_access() else {
        return STATUS_FLT_DELETING_OBJECT;
    };
    // The connect callback runs in the connecting process: it is the service only if it has
    // the configured identity (rule 29); an administrator's other process connecting first is
    // refused and leaves the port to the real service.
    if globals.identity.is_configured()
        && !twins::is(Twin::FirstComeService)
        && !globals.identity.is_current_process()
    {
        return STATUS_ACCESS_DENIED;
    }
    // Recorded before the connection is published, so that none of the service's I/O runs
    // unexempt once it is connected; put back if the slot is taken.
    let pid = crate::kernel::thread::current_process_id();
    let previous = globals.swap_service_pid(pid);
    if globals.slot.connect(PortHandle::from_raw(client)).is_err() {
        globals.set_service_pid(previous);
        // One connection at a time (FltMgr's limit is the same; this keeps the slot honest).
        return STATUS_CONNECTION_COUNT_LIMIT;
    }
    crate::twins::remember_client_port(client);
    bump(&globals.counters.connections);
    // A (re)connecting service learns every live process from "seen" records.
    globals.processes.announce_all();
    if !connection_cookie.is_null() {
        // SAFETY: FltMgr passes a valid out-pointer.
        unsafe { *connection_cookie = core::ptr::null_mut() };
    }
    STATUS_SUCCESS
}

/// Disconnect: closes the client port through the slot, always (even during unload: this is what
/// lets FltMgr finish tearing the port down).
///
/// # Safety
///
/// Called only by FltMgr, as the disconnect callback of that server port, once per successful
/// connect, at PASSIVE_LEVEL, before `FltUnregisterFilter` returns (so the globals are alive).
pub unsafe extern "win64" fn disconnect(_connection_cookie: PVOID) {
    let Some(globals) = globals_for_teardown() else {
        return;
    };
    globals.set_service_pid(0);
    let filter = globals.filter_handle();
    let _ = globals.slot.close(|port| {
        // `port-not-closed` forgets the close (the disconnect check).
        if !twins::is(Twin::PortNotClosed) {
            close_client_port(filter, port);
        }
    });
    bump(&globals.counters.disconnects);
}

/// Message: one command from the service.
///
/// # Safety
///
/// Called only by FltMgr, as the message callback of that server port, at PASSIVE_LEVEL in the
/// service's process: `input` and `output` are user-mode addresses of the given lengths (only
/// ever touched under SEH, through `crate::kernel::user_buffer`), `returned` a valid kernel
/// pointer or null.
pub unsafe extern "win64" fn message(
    _cookie: PVOID,
    input: PVOID,
    input_len: u32,
    output: PVOID,
    output_len: u32,
    returned: *mut u32,
) -> NTSTATUS {
    if !returned.is_null() {
        // SAFETY: FltMgr passes a valid kernel pointer for the returned length.
        unsafe { *returned = 0 };
    }
    let Some(globals) = try_access() else {
        return STATUS_FLT_DELETING_OBJECT;
    };
    match handle_message(
        &globals,
        input.cast(),
        input_len as usize,
        output.cast(),
        output_len as usize,
    ) {
        Ok(written) => {
            if !returned.is_null() {
                // Never larger than the output buffer: `written <= output_len` was checked.
                // SAFETY: as above.
                unsafe { *returned = u32::try_from(written).unwrap_or(0) };
            }
            STATUS_SUCCESS
        }
        Err(error) => status_of_command_error(error),
    }
}

fn status_of_command_error(error: CommandError) -> NTSTATUS {
    match error {
        CommandError::InputSize => STATUS_INVALID_BUFFER_SIZE,
        CommandError::OutputTooSmall => STATUS_BUFFER_TOO_SMALL,
        CommandError::BadUserBuffer(status) => status,
        CommandError::NoMemory => STATUS_INSUFFICIENT_RESOURCES,
        CommandError::Malformed(_) | CommandError::BadConfig => STATUS_INVALID_PARAMETER,
        CommandError::VersionMismatch => STATUS_REVISION_MISMATCH,
        CommandError::NotACommand => STATUS_INVALID_DEVICE_REQUEST,
    }
}

/// The largest command reply (the statistics).
const REPLY_CAPACITY: usize = {
    let lens = [
        StatsReply::LEN,
        HelloReply::LEN,
        SetConfigReply::LEN,
        Pong::LEN,
    ];
    let mut max = 0;
    let mut i = 0;
    while i < lens.len() {
        if lens[i] > max {
            max = lens[i];
        }
        i += 1;
    }
    max
};

fn handle_message(
    globals: &crate::globals::Globals,
    input: *const u8,
    input_len: usize,
    output: *mut u8,
    output_len: usize,
) -> Result<usize, CommandError> {
    // Sizes first, before any byte is read (rule 9).
    if !(HEADER_LEN..=MAX_MESSAGE_SIZE).contains(&input_len) {
        return Err(CommandError::InputSize);
    }
    // One copy into kernel memory, then only the copy is looked at (rule 8).
    let mut copy = PoolBuffer::try_zeroed(input_len, tags::MESSAGE).map_err(|_| {
        bump(&globals.counters.allocation_failures);
        CommandError::NoMemory
    })?;
    user_buffer::copy_from_user(copy.as_mut_slice(), input)
        .map_err(|e| CommandError::BadUserBuffer(e.code()))?;
    let request = Message::parse(copy.as_slice()).map_err(CommandError::from)?;
    let mut reply = [0u8; REPLY_CAPACITY];
    let written = commands::execute(globals, &request, &mut reply)?;
    if written > output_len {
        return Err(CommandError::OutputTooSmall);
    }
    // Zero the whole output, then write the reply (rule 11).
    user_buffer::zero_user(output, output_len)
        .map_err(|e| CommandError::BadUserBuffer(e.code()))?;
    let reply = reply.get(..written).ok_or(CommandError::OutputTooSmall)?;
    user_buffer::copy_to_user(output, reply).map_err(|e| CommandError::BadUserBuffer(e.code()))?;
    Ok(written)
}
