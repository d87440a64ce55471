//! The user-mode end of a communication port: what `FilterConnectCommunicationPort`,
//! `FilterGetMessage`, `FilterReplyMessage`, `FilterSendMessage` and closing the port handle do,
//! as a Rust API for tests and for the service's port client (`vigil-demo`).
//! Host threads; every method may be called from several threads at once.
//!
//! * [`Sim::connect`](crate::Sim::connect) / [`Driver::connect`](crate::Driver::connect) find
//!   the open server port by name, enforce its `MaxConnections`
//!   (`STATUS_CONNECTION_COUNT_LIMIT`), create the client port object and run the driver's
//!   ConnectNotify at PASSIVE_LEVEL on a driver stack, in the client's process
//!   (`PsGetCurrentProcessId` returns [`ConnectOptions::process_id`]), with a kernel copy of the
//!   connection context. A failure status from the callback refuses the connection and comes
//!   back as [`ConnectError::Refused`].
//! * [`PortConnection::get_message`] takes the oldest message a sender queued with
//!   `FltSendMessage` (`FILTER_MESSAGE_HEADER`'s `MessageId` and `ReplyLength`, then the bytes);
//!   [`PortConnection::reply`] answers one (the reply's bytes without `FILTER_REPLY_HEADER`).
//!   A reply to a message whose sender stopped waiting fails with
//!   `STATUS_FLT_NO_WAITER_FOR_REPLY`; a reply longer than the sender's `*ReplyLength` is
//!   delivered truncated and the sender's `FltSendMessage` returns `STATUS_BUFFER_OVERFLOW`
//!   (what the `FilterReplyMessage` reference page says of a reply sized past the sender's
//!   buffer).
//! * [`PortConnection::send_command`] runs the driver's MessageNotify at PASSIVE_LEVEL in the
//!   client's process, with the input and output in *user-range* memory (mapped below
//!   [`MM_USER_PROBE_ADDRESS`], each buffer ending against an inaccessible page so a read or
//!   write past its length faults into the driver's `__except`).
//!   [`PortConnection::send_command_raw`] passes NULL, unmapped, misaligned or kernel pointers
//!   and lengths that lie. A returned length larger than the output buffer is a violation
//!   (RULES.md rule 9); the returned bytes are scanned for uninitialized memory (rule 11).
//! * [`PortConnection::close`] (and drop) closes the client's end: senders waiting on the port
//!   return `STATUS_PORT_DISCONNECTED`, then the driver's DisconnectNotify runs at PASSIVE_LEVEL
//!   and must close the client port with `FltCloseClientPort` (rule 5; a violation otherwise).
//!   DisconnectNotify is called once per port, and not for a port the driver has closed itself.
//!
//! * The port's security descriptor is evaluated against the client's [`Account`]: a port
//!   created with `FltBuildDefaultSecurityDescriptor(FLT_PORT_CONNECT or more)` admits SYSTEM
//!   and Administrators; anyone else gets [`ConnectError::AccessDenied`] before ConnectNotify
//!   runs, as the object manager's access check comes first.
//!
//! Not emulated: `FilterGetMessage` has no overlapped form (a finite timeout stands in for
//! cancelling a request).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use vigil_sys::{
    NT_SUCCESS, PASSIVE_LEVEL, PFLT_PORT, PVOID, STATUS_CONNECTION_COUNT_LIMIT,
    STATUS_FLT_NO_WAITER_FOR_REPLY, STATUS_INVALID_DEVICE_REQUEST, STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_PORT_DISCONNECTED, STATUS_TIMEOUT,
};

use crate::fltmgr::flt_write;
use crate::fltmgr::ports::{self, ClientPortRecord, MessageState, in_process, scan_for_poison};
use crate::fltmgr::security::Account;
use crate::kernel::{Kernel, lock};
use crate::machine::guest::GuestAlloc;
use crate::machine::pages::page_size;
use crate::machine::signals::MM_USER_PROBE_ADDRESS;
use crate::report::ViolationKind;

/// `STATUS_BUFFER_TOO_SMALL`'s user-mode cousin for `FilterGetMessage`: the caller's buffer
/// cannot hold the message (`HRESULT_FROM_WIN32(ERROR_INSUFFICIENT_BUFFER)` in fltlib).
const STATUS_BUFFER_TOO_SMALL: i32 = vigil_sys::STATUS_BUFFER_TOO_SMALL;

// ----- the namespace ------------------------------------------------------------------------

/// The object namespace of a [`Sim`](crate::Sim): every driver loaded through it, so that a
/// client connects by port name whichever driver instance (a reload is a new one) owns it.
#[derive(Clone, Default)]
pub(crate) struct Namespace {
    kernels: Arc<Mutex<Vec<Weak<Kernel>>>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("drivers", &lock(&self.kernels).len())
            .finish()
    }
}

impl Namespace {
    /// Adds a loaded driver's kernel (dead ones are forgotten on the way).
    pub(crate) fn register(&self, kernel: &Arc<Kernel>) {
        let mut kernels = lock(&self.kernels);
        kernels.retain(|k| k.strong_count() > 0);
        kernels.push(Arc::downgrade(kernel));
    }

    /// Connects to the open server port `name` of whichever live driver has one.
    pub(crate) fn connect(
        &self,
        name: &str,
        options: &ConnectOptions,
    ) -> Result<PortConnection, ConnectError> {
        let kernels: Vec<Arc<Kernel>> = lock(&self.kernels)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let owner = kernels.into_iter().rev().find(|k| {
            flt_write(k)
                .ports
                .values()
                .any(|p| !p.closed && p.name.eq_ignore_ascii_case(name))
        });
        match owner {
            Some(kernel) => connect(&kernel, name, options),
            None => Err(ConnectError::NotFound),
        }
    }
}

// ----- public types -------------------------------------------------------------------------

/// How a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The client's process id: what `PsGetCurrentProcessId` returns in the port's callbacks.
    pub process_id: u64,
    /// The connection context (`lpContext` of `FilterConnectCommunicationPort`), handed to
    /// ConnectNotify as a kernel copy; empty = NULL.
    pub context: Vec<u8>,
    /// Who the client runs as.
    pub account: Account,
}

impl Default for ConnectOptions {
    /// Process 0x1234, no context, an administrator.
    fn default() -> Self {
        Self {
            process_id: 0x1234,
            context: Vec::new(),
            account: Account::Administrator,
        }
    }
}

/// Why a connection was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// No open server port has that name (`STATUS_OBJECT_NAME_NOT_FOUND`): the driver is not
    /// loaded, or closed its server port.
    NotFound,
    /// The port's `MaxConnections` are in use (`STATUS_CONNECTION_COUNT_LIMIT`).
    ConnectionLimit,
    /// ConnectNotify refused with this status.
    Refused(i32),
    /// ConnectNotify crashed (see the report).
    Crashed,
    /// The port's security descriptor does not let this account connect
    /// (`STATUS_ACCESS_DENIED`); ConnectNotify was not called.
    AccessDenied,
}

impl ConnectError {
    /// The NTSTATUS the client's connect would see.
    pub fn status(self) -> i32 {
        match self {
            Self::NotFound => STATUS_OBJECT_NAME_NOT_FOUND,
            Self::ConnectionLimit => STATUS_CONNECTION_COUNT_LIMIT,
            Self::Refused(status) => status,
            Self::Crashed => STATUS_PORT_DISCONNECTED,
            Self::AccessDenied => vigil_sys::STATUS_ACCESS_DENIED,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("no open server port of that name"),
            Self::ConnectionLimit => f.write_str("the port's connection limit is reached"),
            Self::Refused(status) => {
                write!(
                    f,
                    "ConnectNotify refused with {:#010x}",
                    status.cast_unsigned()
                )
            }
            Self::Crashed => f.write_str("ConnectNotify crashed"),
            Self::AccessDenied => {
                f.write_str("the port's security descriptor does not admit this account")
            }
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why a port operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortError {
    /// Nothing arrived within the timeout.
    Timeout,
    /// The port is closed (by the driver, by FltMgr at unload, or by this client).
    Disconnected,
    /// The caller's buffer cannot hold the message (it stays queued).
    MessageTooLarge {
        /// The message's length.
        len: usize,
    },
    /// No sender waits for a reply to that message id (`STATUS_FLT_NO_WAITER_FOR_REPLY`):
    /// its timeout expired, it was never a request, or it was answered already.
    NoWaiter,
    /// The server port has no MessageNotify callback.
    NotSupported,
    /// The driver's callback crashed (see the report).
    DriverCrashed,
    /// kernel-sim could not map user-range memory for the buffers.
    NoUserMemory,
}

impl PortError {
    /// The NTSTATUS a user-mode caller would see.
    pub fn status(self) -> i32 {
        match self {
            Self::Timeout => STATUS_TIMEOUT,
            Self::Disconnected | Self::DriverCrashed => STATUS_PORT_DISCONNECTED,
            Self::MessageTooLarge { .. } => STATUS_BUFFER_TOO_SMALL,
            Self::NoWaiter => STATUS_FLT_NO_WAITER_FOR_REPLY,
            Self::NotSupported => STATUS_INVALID_DEVICE_REQUEST,
            Self::NoUserMemory => vigil_sys::STATUS_INSUFFICIENT_RESOURCES,
        }
    }
}

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Disconnected => f.write_str("port disconnected"),
            Self::MessageTooLarge { len } => {
                write!(f, "a {len}-byte message does not fit the buffer")
            }
            Self::NoWaiter => f.write_str("no sender waits for that reply"),
            Self::NotSupported => f.write_str("the port has no message callback"),
            Self::DriverCrashed => f.write_str("the driver's callback crashed"),
            Self::NoUserMemory => f.write_str("no user-range memory"),
        }
    }
}

impl std::error::Error for PortError {}

/// One message taken by [`PortConnection::get_message`]; its bytes are at the start of the
/// caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// `FILTER_MESSAGE_HEADER.MessageId`: what [`PortConnection::reply`] is given.
    pub message_id: u64,
    /// `FILTER_MESSAGE_HEADER.ReplyLength`: the sender's reply buffer in bytes (without
    /// `FILTER_REPLY_HEADER`); 0 when it waits for no reply.
    pub reply_len: u32,
    /// The message's length.
    pub len: usize,
}

/// What one MessageNotify call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandResult {
    /// The callback's status.
    pub status: i32,
    /// The output buffer's first `min(returned_len, capacity)` bytes.
    pub output: Vec<u8>,
    /// `*ReturnOutputBufferLength` as the callback set it.
    pub returned_len: u32,
}

/// What a raw command passes for a buffer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserPointer {
    /// A user-range buffer holding the data (16-byte aligned, ending against a no-access page).
    Valid,
    /// A user-range buffer one byte past 16-byte alignment.
    Misaligned,
    /// NULL.
    Null,
    /// A user-range address with nothing accessible behind it.
    Unmapped,
    /// A kernel-range address (above `MmUserProbeAddress`), mapped and readable: a driver that
    /// does not probe reads or writes kernel memory on the client's behalf.
    Kernel,
}

/// A command with every MessageNotify argument under the caller's control (test hooks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCommand {
    /// The input bytes (placed as `input_pointer` says).
    pub input: Vec<u8>,
    /// Where the input is.
    pub input_pointer: UserPointer,
    /// `InputBufferLength`, when it lies (default: `input.len()`).
    pub input_len: Option<u32>,
    /// The output buffer's real size.
    pub output_capacity: usize,
    /// Where the output buffer is.
    pub output_pointer: UserPointer,
    /// `OutputBufferLength`, when it lies (default: `output_capacity`).
    pub output_len: Option<u32>,
}

impl RawCommand {
    /// A well-formed command: valid buffers, true lengths.
    pub fn new(input: &[u8], output_capacity: usize) -> Self {
        Self {
            input: input.to_vec(),
            input_pointer: UserPointer::Valid,
            input_len: None,
            output_capacity,
            output_pointer: UserPointer::Valid,
            output_len: None,
        }
    }
}

/// The byte kernel-sim fills a command's output buffer with before the call: what a driver
/// leaves unwritten shows as this.
pub const USER_OUTPUT_FILL: u8 = 0xEE;

// ----- user-range memory --------------------------------------------------------------------

/// Where user-range mappings go: above the address the faults tests use as "unmapped"
/// (`0x100_0000_0000`), below [`MM_USER_PROBE_ADDRESS`].
const USER_ARENA: usize = 0x0000_0400_0000_0000;
static NEXT_USER_ADDRESS: AtomicUsize = AtomicUsize::new(USER_ARENA);

/// A mapping in the emulated user range: `len` readable and writable bytes at `data`, followed
/// by an inaccessible page. Unmapped on drop.
///
/// # Invariants
///
/// `[base, base + map_len)` is a mapping this value owns; `[data, data + len)` lies inside its
/// accessible part.
struct UserMemory {
    base: usize,
    map_len: usize,
    data: usize,
    len: usize,
}

impl UserMemory {
    /// Maps `len` bytes holding `bytes` (zero-padded or `fill`ed past them), aligned to 16 or
    /// one past it, ending as close to the guard page as the alignment allows.
    fn new(bytes: &[u8], len: usize, fill: u8, misaligned: bool) -> Option<Self> {
        let page = page_size();
        let accessible = (len + 32).next_multiple_of(page);
        let map_len = accessible + page;
        let base = map_user_range(map_len, libc::PROT_READ | libc::PROT_WRITE)?;
        let guard = base + accessible;
        // SAFETY: the last page of the mapping this function just made, page-aligned.
        let rc = unsafe { libc::mprotect(guard as *mut libc::c_void, page, libc::PROT_NONE) };
        let data = if misaligned {
            ((guard - len - 1) & !15) + 1
        } else {
            (guard - len) & !15
        };
        // Owned from here: dropped (unmapped) on every path.
        let memory = Self {
            base,
            map_len,
            data,
            len,
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: `[data, data + len)` lies in the accessible part of the fresh mapping
        // (`data >= base` since `len + 32 <= accessible`); nothing else refers to it yet.
        let view = unsafe { std::slice::from_raw_parts_mut(data as *mut u8, len) };
        view.fill(fill);
        let n = bytes.len().min(len);
        view[..n].copy_from_slice(&bytes[..n]);
        Some(memory)
    }

    /// A user-range page nobody can touch.
    fn inaccessible() -> Option<Self> {
        let page = page_size();
        let base = map_user_range(page, libc::PROT_NONE)?;
        Some(Self {
            base,
            map_len: page,
            data: base,
            len: 0,
        })
    }

    /// The bytes now (the driver may have written them).
    fn read(&self, len: usize) -> Vec<u8> {
        let len = len.min(self.len);
        // SAFETY: `[data, data + len)` is accessible memory of this mapping (invariant); the
        // driver call that could write it has returned.
        unsafe { std::slice::from_raw_parts(self.data as *const u8, len) }.to_vec()
    }
}

impl Drop for UserMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping this value owns (invariant), unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.map_len) };
    }
}

/// Maps `len` bytes (page multiple) with `prot` at a fresh address of the user arena.
fn map_user_range(len: usize, prot: i32) -> Option<usize> {
    for _ in 0..64 {
        // A page of distance between mappings, and no address reused within the process.
        let hint = NEXT_USER_ADDRESS.fetch_add(len + page_size(), Ordering::Relaxed);
        if hint + len > MM_USER_PROBE_ADDRESS {
            return None;
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; an anonymous private
        // mapping has no other preconditions. The result is checked.
        let base = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                len,
                prot,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            continue;
        }
        if base as usize != hint {
            // An old kernel took the flag as a hint and placed it elsewhere.
            // SAFETY: the mapping just made, not shared.
            unsafe { libc::munmap(base, len) };
            continue;
        }
        return Some(hint);
    }
    None
}

// ----- waiting on a host thread -------------------------------------------------------------

/// Waits on the kernel's dispatcher until `ready` or `deadline` (host threads: no hang limit,
/// the deadline is the caller's). Returns false on timeout.
fn host_wait(k: &Kernel, deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
    loop {
        let generation = *lock(&k.dispatcher.lock);
        if ready() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let guard = lock(&k.dispatcher.lock);
        if *guard != generation {
            continue;
        }
        let _ = k
            .dispatcher
            .changed
            .wait_timeout(guard, deadline - now)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

// ----- connect ------------------------------------------------------------------------------

/// Finds the open server port `name`, checks its connection limit and creates the client port
/// record (with a callback in flight: ConnectNotify); returns (port, ConnectNotify, cookie).
fn create_client_port(
    k: &Kernel,
    name: &str,
    pid: usize,
    account: Account,
) -> Result<(usize, usize, usize), ConnectError> {
    let mut guard = flt_write(k);
    let flt = &mut *guard;
    let Some((&server, record)) = flt
        .ports
        .iter()
        .find(|(_, p)| !p.closed && p.name.eq_ignore_ascii_case(name))
    else {
        return Err(ConnectError::NotFound);
    };
    if flt
        .filters
        .get(&record.filter)
        .is_none_or(|f| f.unregistered)
    {
        return Err(ConnectError::NotFound);
    }
    if !record.access.admits(account) {
        return Err(ConnectError::AccessDenied);
    }
    let live = flt
        .client_ports
        .values()
        .filter(|c| c.server == server && !c.closed_by_driver)
        .count();
    if live >= usize::try_from(record.max_connections).unwrap_or(0) {
        return Err(ConnectError::ConnectionLimit);
    }
    let handle = GuestAlloc::zeroed(64);
    let port = handle.address();
    let client = ClientPortRecord {
        handle,
        server,
        filter: record.filter,
        name: record.name.clone(),
        process_id: pid,
        cookie: 0,
        disconnect: record.disconnect,
        message: record.message,
        closed_by_driver: false,
        client_closed: false,
        disconnect_notified: false,
        callbacks_in_flight: 1,
        connecting: true,
        messages: std::collections::BTreeMap::new(),
    };
    let connect_routine = record.connect;
    let server_cookie = record.cookie as usize;
    flt.client_ports.insert(port, client);
    Ok((port, connect_routine, server_cookie))
}

/// Connects to server port `name` of kernel `k` (see the module docs).
pub(crate) fn connect(
    k: &Arc<Kernel>,
    name: &str,
    options: &ConnectOptions,
) -> Result<PortConnection, ConnectError> {
    if k.crashed.load(Ordering::Acquire) {
        return Err(ConnectError::NotFound);
    }
    let pid = usize::try_from(options.process_id).unwrap_or(usize::MAX);
    let (port, connect_routine, server_cookie) = create_client_port(k, name, pid, options.account)?;
    let context = (!options.context.is_empty()).then(|| {
        let copy = GuestAlloc::zeroed(options.context.len());
        crate::machine::guest::write_bytes(copy.as_ptr::<u8>(), &options.context);
        copy
    });
    let (context_ptr, context_len) = context.as_ref().map_or((0, 0), |c| {
        (
            c.address(),
            u32::try_from(options.context.len()).unwrap_or(u32::MAX),
        )
    });
    let cookie_out = GuestAlloc::zeroed(8);
    let cookie_ptr = cookie_out.as_ptr::<PVOID>();
    // SAFETY: the driver registered this address as its PFLT_CONNECT_NOTIFY; the filter is
    // registered (checked above), so the image is mapped.
    let callback: unsafe extern "win64" fn(PFLT_PORT, PVOID, PVOID, u32, *mut PVOID) -> i32 =
        unsafe { std::mem::transmute(connect_routine) };
    let status = in_process(pid, || {
        // SAFETY: as above; the arguments are a fresh client port, the driver's own cookie, a
        // kernel copy of the context valid for the call, and a kernel out-pointer.
        k.call_driver("ConnectNotify", Some(PASSIVE_LEVEL), || unsafe {
            callback(
                port as PFLT_PORT,
                server_cookie as PVOID,
                context_ptr as PVOID,
                context_len,
                cookie_ptr,
            )
        })
    });
    let cookie = crate::machine::guest::read(cookie_ptr) as usize;
    let refused = {
        let mut flt = flt_write(k);
        let record = flt
            .client_ports
            .get_mut(&port)
            .expect("client ports are never removed");
        record.callbacks_in_flight -= 1;
        record.connecting = false;
        record.cookie = cookie;
        match status {
            Some(s) if NT_SUCCESS(s) && !record.closed_by_driver => None,
            other => {
                // FltMgr closes a refused port itself.
                record.closed_by_driver = true;
                Some(other)
            }
        }
    };
    k.notify_waiters();
    match refused {
        None => Ok(PortConnection {
            kernel: Arc::clone(k),
            port,
            process_id: pid,
            closed: AtomicBool::new(false),
        }),
        Some(None) => Err(ConnectError::Crashed),
        Some(Some(status)) if NT_SUCCESS(status) => {
            Err(ConnectError::Refused(STATUS_PORT_DISCONNECTED))
        }
        Some(Some(status)) => Err(ConnectError::Refused(status)),
    }
}

// ----- the connection -----------------------------------------------------------------------

/// One client connection to a driver's communication port: the user-mode handle of
/// `FilterConnectCommunicationPort`. `Send + Sync`: a reader thread can wait in
/// [`get_message`](Self::get_message) while another sends commands. Dropping it closes it.
pub struct PortConnection {
    kernel: Arc<Kernel>,
    port: usize,
    process_id: usize,
    closed: AtomicBool,
}

impl std::fmt::Debug for PortConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortConnection")
            .field("port", &format_args!("{:#x}", self.port))
            .field("process_id", &self.process_id)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PortConnection {
    /// The `PFLT_PORT` the driver received in ConnectNotify.
    pub fn client_port(&self) -> usize {
        self.port
    }

    /// The client's process id.
    pub fn process_id(&self) -> u64 {
        self.process_id as u64
    }

    /// Whether both ends are still open.
    pub fn is_connected(&self) -> bool {
        flt_write(&self.kernel)
            .client_ports
            .get(&self.port)
            .is_some_and(ClientPortRecord::is_connected)
    }

    /// Messages sent to this client and not yet taken by [`get_message`](Self::get_message):
    /// each is a driver thread blocked in `FltSendMessage` (scenarios use it to close the
    /// client while sends are pending).
    pub fn queued_messages(&self) -> usize {
        flt_write(&self.kernel)
            .client_ports
            .get(&self.port)
            .map_or(0, |r| {
                r.messages
                    .values()
                    .filter(|m| m.state == MessageState::Queued)
                    .count()
            })
    }

    /// Takes the next message a driver sent with `FltSendMessage`, waiting at most `timeout`,
    /// and copies its bytes to the start of `buf`. The sender's wait for delivery ends here;
    /// if it passed a reply buffer, it now waits for [`reply`](Self::reply).
    ///
    /// # Errors
    ///
    /// [`PortError::Timeout`], [`PortError::Disconnected`], or
    /// [`PortError::MessageTooLarge`] (the message stays queued).
    pub fn get_message(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<ReceivedMessage, PortError> {
        let k = &*self.kernel;
        let deadline = Instant::now() + timeout;
        let mut result = None;
        host_wait(k, deadline, || {
            let mut flt = flt_write(k);
            let Some(record) = flt.client_ports.get_mut(&self.port) else {
                result = Some(Err(PortError::Disconnected));
                return true;
            };
            if !record.is_connected() {
                result = Some(Err(PortError::Disconnected));
                return true;
            }
            let Some((&id, message)) = record
                .messages
                .iter_mut()
                .find(|(_, m)| m.state == MessageState::Queued)
            else {
                return false;
            };
            let len = message.bytes.len();
            if len > buf.len() {
                result = Some(Err(PortError::MessageTooLarge { len }));
                return true;
            }
            message.state = if message.reply_capacity.is_some() {
                MessageState::AwaitingReply
            } else {
                MessageState::Delivered
            };
            // The bytes are copied out once the lock is dropped: the I/O path needs it.
            result = Some(Ok((
                ReceivedMessage {
                    message_id: id,
                    reply_len: message.reply_capacity.unwrap_or(0),
                    len,
                },
                std::mem::take(&mut message.bytes),
            )));
            true
        });
        match result {
            Some(Ok((message, bytes))) => {
                k.notify_waiters();
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(message)
            }
            Some(Err(e)) => Err(e),
            None => Err(PortError::Timeout),
        }
    }

    /// Answers message `message_id` with `reply` (the bytes after `FILTER_REPLY_HEADER`).
    ///
    /// # Errors
    ///
    /// [`PortError::Disconnected`]; [`PortError::NoWaiter`] when no sender waits for that
    /// reply (timed out, answered already, or not a request).
    pub fn reply(&self, message_id: u64, reply: &[u8]) -> Result<(), PortError> {
        let k = &*self.kernel;
        {
            let mut flt = flt_write(k);
            let record = flt
                .client_ports
                .get_mut(&self.port)
                .filter(|r| r.is_connected())
                .ok_or(PortError::Disconnected)?;
            let message = record
                .messages
                .get_mut(&message_id)
                .filter(|m| m.state == MessageState::AwaitingReply)
                .ok_or(PortError::NoWaiter)?;
            message.state = MessageState::Replied(reply.to_vec());
        }
        k.notify_waiters();
        Ok(())
    }

    /// Sends a command (`FilterSendMessage`): calls the driver's MessageNotify with `input` in
    /// a user-range buffer and a user-range output buffer of `output_capacity` bytes.
    ///
    /// # Errors
    ///
    /// See [`send_command_raw`](Self::send_command_raw).
    pub fn send_command(
        &self,
        input: &[u8],
        output_capacity: usize,
    ) -> Result<CommandResult, PortError> {
        self.send_command_raw(&RawCommand::new(input, output_capacity))
    }

    /// Sends a command with every argument under the caller's control (see [`RawCommand`]).
    /// A driver status (success or failure) is `Ok`: it is the callback's answer.
    ///
    /// # Errors
    ///
    /// [`PortError::Disconnected`], [`PortError::NotSupported`] (no MessageNotify),
    /// [`PortError::DriverCrashed`], [`PortError::NoUserMemory`].
    pub fn send_command_raw(&self, command: &RawCommand) -> Result<CommandResult, PortError> {
        let k = &*self.kernel;
        if k.crashed.load(Ordering::Acquire) {
            return Err(PortError::DriverCrashed);
        }
        let (message, cookie) = {
            let mut guard = flt_write(k);
            let flt = &mut *guard;
            let record = flt
                .client_ports
                .get_mut(&self.port)
                .filter(|r| r.is_connected())
                .ok_or(PortError::Disconnected)?;
            if flt
                .filters
                .get(&record.filter)
                .is_none_or(|f| f.unregistered)
            {
                return Err(PortError::Disconnected);
            }
            if record.message == 0 {
                return Err(PortError::NotSupported);
            }
            record.callbacks_in_flight += 1;
            (record.message, record.cookie)
        };
        let result = self.call_message_notify(command, message, cookie);
        if let Some(record) = flt_write(k).client_ports.get_mut(&self.port) {
            record.callbacks_in_flight -= 1;
        }
        k.notify_waiters();
        result
    }

    fn call_message_notify(
        &self,
        command: &RawCommand,
        message: usize,
        cookie: usize,
    ) -> Result<CommandResult, PortError> {
        let k = &*self.kernel;
        let input_len = command
            .input_len
            .unwrap_or_else(|| u32::try_from(command.input.len()).unwrap_or(u32::MAX));
        let output_len = command
            .output_len
            .unwrap_or_else(|| u32::try_from(command.output_capacity).unwrap_or(u32::MAX));
        let input = place(
            &command.input,
            command.input.len(),
            0,
            command.input_pointer,
        )?;
        let output = place(
            &[],
            command.output_capacity,
            USER_OUTPUT_FILL,
            command.output_pointer,
        )?;
        // A kernel buffer FltMgr owns, zeroed before the call.
        let returned = GuestAlloc::zeroed(4);
        let returned_ptr = returned.as_ptr::<u32>();
        // SAFETY: the driver registered this address as its PFLT_MESSAGE_NOTIFY; the filter is
        // registered (checked by the caller, which holds a callback reference that keeps
        // FltUnregisterFilter from completing), so the image is mapped.
        let callback: unsafe extern "win64" fn(PVOID, PVOID, u32, PVOID, u32, *mut u32) -> i32 =
            unsafe { std::mem::transmute(message) };
        let status = in_process(self.process_id, || {
            // SAFETY: as above; the buffers are the caller's choice (a test of bad pointers
            // passes bad ones on purpose: the driver must probe and copy under SEH).
            k.call_driver("MessageNotify", Some(PASSIVE_LEVEL), || unsafe {
                callback(
                    cookie as PVOID,
                    input.address as PVOID,
                    input_len,
                    output.address as PVOID,
                    output_len,
                    returned_ptr,
                )
            })
        })
        .ok_or(PortError::DriverCrashed)?;
        let returned_len = crate::machine::guest::read(returned_ptr);
        if returned_len > output_len {
            k.violation(
                ViolationKind::CallbackContract,
                "RULES.md 9: MessageNotify never sets *ReturnOutputBufferLength larger than the output buffer",
                format!(
                    "ReturnOutputBufferLength {returned_len} for an OutputBufferLength of {output_len}"
                ),
            );
        }
        let output_bytes = output.read(returned_len as usize);
        scan_for_poison(k, "a MessageNotify reply", &output_bytes);
        Ok(CommandResult {
            status,
            output: output_bytes,
            returned_len,
        })
    }

    /// Closes the client's end (idempotent; drop does it too): senders waiting on the port
    /// return `STATUS_PORT_DISCONNECTED`, then the driver's DisconnectNotify runs (once, and
    /// only if the driver has not closed the port itself) and must close the client port.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let k = &*self.kernel;
        if let Some(record) = flt_write(k).client_ports.get_mut(&self.port) {
            record.client_closed = true;
            record.messages.clear();
        }
        k.notify_waiters();
        ports::notify_disconnect(k, self.port);
    }
}

impl Drop for PortConnection {
    fn drop(&mut self) {
        self.close();
    }
}

/// A buffer placed for a raw command: its address, and the memory keeping it valid.
struct Placed {
    address: usize,
    memory: Option<UserMemory>,
    kernel: Option<Vec<u8>>,
}

impl Placed {
    fn read(&self, len: usize) -> Vec<u8> {
        match (&self.memory, &self.kernel) {
            (Some(memory), _) if self.address != 0 && memory.len > 0 => memory.read(len),
            (_, Some(kernel)) => kernel[..len.min(kernel.len())].to_vec(),
            _ => Vec::new(),
        }
    }
}

/// Places `len` bytes (starting with `bytes`, the rest `fill`) as `pointer` says.
fn place(bytes: &[u8], len: usize, fill: u8, pointer: UserPointer) -> Result<Placed, PortError> {
    let placed = |memory: UserMemory| Placed {
        address: memory.data,
        memory: Some(memory),
        kernel: None,
    };
    match pointer {
        UserPointer::Null => Ok(Placed {
            address: 0,
            memory: None,
            kernel: None,
        }),
        UserPointer::Valid | UserPointer::Misaligned => {
            UserMemory::new(bytes, len, fill, pointer == UserPointer::Misaligned)
                .map(placed)
                .ok_or(PortError::NoUserMemory)
        }
        UserPointer::Unmapped => UserMemory::inaccessible()
            .map(placed)
            .ok_or(PortError::NoUserMemory),
        UserPointer::Kernel => {
            let mut kernel = vec![fill; len.max(1)];
            let n = bytes.len().min(len);
            kernel[..n].copy_from_slice(&bytes[..n]);
            Ok(Placed {
                address: kernel.as_ptr() as usize,
                memory: None,
                kernel: Some(kernel),
            })
        }
    }
}
