//! The port client over `fltlib.dll`: `FilterConnectCommunicationPort`, several outstanding
//! overlapped `FilterGetMessage` requests on an I/O completion port, `FilterReplyMessage` and
//! `FilterSendMessage`. User mode, Windows only; the service core's one thread uses it.
//!
//! Facts it relies on (Filter Manager's user-mode API, as Microsoft's scanner sample uses it):
//! * every received message is preceded by a `FILTER_MESSAGE_HEADER` (`ReplyLength` `u32`,
//!   `MessageId` `u64`: 16 bytes) and every reply by a `FILTER_REPLY_HEADER` (`Status`
//!   NTSTATUS, `MessageId` `u64`: 16 bytes); `ReplyLength` counts the reply header too;
//! * a port handle opened without `FLT_PORT_FLAG_SYNC_HANDLE` is asynchronous: an overlapped
//!   `FilterGetMessage` returns `HRESULT_FROM_WIN32(ERROR_IO_PENDING)` and completes through
//!   the completion port associated with the handle;
//! * when the driver closes the port (unload), pending and later requests fail with
//!   `ERROR_INVALID_HANDLE` (`STATUS_PORT_DISCONNECTED`), cancelled ones with
//!   `ERROR_OPERATION_ABORTED`;
//! * a failure status returned by the driver's message callback reaches `FilterSendMessage` as
//!   the HRESULT of its Win32 error (`STATUS_REVISION_MISMATCH` as `ERROR_REVISION_MISMATCH`).
//!
//! Buffers handed to the kernel stay allocated, at a fixed address, until their request has
//! completed: `close` cancels them and waits for every completion, and leaks what it could not
//! see complete rather than free memory the kernel may still write.
//!
//! Nothing received is dropped (the driver counts a completed send as delivered): a message
//! whose slot cannot be re-armed is still returned (the failure is reported by the next call);
//! after a disconnect the completions already queued are still returned before the error; at a
//! stop the core calls `cancel_receives` and takes the messages that complete anyway, so
//! `close` finds nothing outstanding. Windows only: checked by cross-compiling and reading,
//! never run; the length rule (`received_len`) is portable and tested on Linux.

use std::mem::{MaybeUninit, size_of};
use std::ptr;
use std::time::Duration;

use vigil_protocol::{MAX_MESSAGE_SIZE, PORT_NAME};
use windows::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_CONNECTION_COUNT_LIMIT, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE, ERROR_IO_PENDING, ERROR_OPERATION_ABORTED, ERROR_REVISION_MISMATCH,
    HANDLE, NTSTATUS, WAIT_TIMEOUT, WIN32_ERROR,
};
use windows::Win32::Storage::InstallableFileSystems::{
    FILTER_MESSAGE_HEADER, FILTER_REPLY_HEADER, FilterConnectCommunicationPort, FilterGetMessage,
    FilterReplyMessage, FilterSendMessage,
};
use windows::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED,
};
use windows::core::{HRESULT, PCWSTR};

use crate::client::{ClientError, Connector, Incoming, PortClient, received_len};
use crate::commands::STATUS_REVISION_MISMATCH;

/// `ERROR_FLT_DELETING_OBJECT` (HRESULT): the port is being torn down (driver unloading).
const HRESULT_FLT_DELETING_OBJECT: i32 = 0x801F_000B_u32.cast_signed();
/// Size of `FILTER_MESSAGE_HEADER` and of `FILTER_REPLY_HEADER`.
const FLT_HEADER_LEN: usize = 16;
const _: () = assert!(size_of::<FILTER_MESSAGE_HEADER>() == FLT_HEADER_LEN);
const _: () = assert!(size_of::<FILTER_REPLY_HEADER>() == FLT_HEADER_LEN);
const _: () = assert!(FLT_HEADER_LEN == crate::client::FLT_MESSAGE_HEADER_LEN);

/// Outstanding `FilterGetMessage` requests per connection by default. Policy: the driver's
/// delivery thread and its verdict requests (up to 8 in flight) are served without waiting for
/// the service to re-arm a request; four covers a batch in flight plus verdicts.
pub const DEFAULT_OUTSTANDING: usize = 4;

/// How long `close` waits for cancelled requests to complete.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

fn hresult_from_win32(e: WIN32_ERROR) -> i32 {
    HRESULT::from_win32(e.0).0
}

/// Maps an HRESULT from a port routine to the error the core understands.
fn map_error(routine: &'static str, hresult: i32) -> ClientError {
    if hresult == hresult_from_win32(ERROR_FILE_NOT_FOUND) {
        ClientError::DriverNotLoaded
    } else if hresult == hresult_from_win32(ERROR_ACCESS_DENIED) {
        ClientError::AccessDenied
    } else if hresult == hresult_from_win32(ERROR_CONNECTION_COUNT_LIMIT) {
        ClientError::Busy
    } else if hresult == hresult_from_win32(ERROR_INVALID_HANDLE)
        || hresult == hresult_from_win32(ERROR_OPERATION_ABORTED)
        || hresult == HRESULT_FLT_DELETING_OBJECT
    {
        if routine == "FilterConnectCommunicationPort" {
            ClientError::DriverNotLoaded
        } else {
            ClientError::Disconnected
        }
    } else {
        ClientError::Os { routine, hresult }
    }
}

/// Makes [`WindowsPort`]s.
#[derive(Debug, Clone)]
pub struct WindowsConnector {
    /// Outstanding `FilterGetMessage` requests per connection (at least 1).
    pub outstanding: usize,
}

impl Default for WindowsConnector {
    fn default() -> Self {
        Self {
            outstanding: DEFAULT_OUTSTANDING,
        }
    }
}

impl Connector for WindowsConnector {
    type Client = WindowsPort;

    fn connect(&mut self) -> Result<WindowsPort, ClientError> {
        WindowsPort::connect(self.outstanding.max(1))
    }
}

/// One receive request: its `OVERLAPPED` first, so that the pointer a completion returns is
/// the slot's address; then the message buffer, header first, as `FilterGetMessage` fills it.
#[repr(C)]
struct Slot {
    overlapped: OVERLAPPED,
    header: FILTER_MESSAGE_HEADER,
    body: [u8; MAX_MESSAGE_SIZE],
}

/// Largest reply body `reply` sends (a verdict reply is 40 bytes).
const REPLY_CAPACITY: usize = 64;

/// A reply as `FilterReplyMessage` takes it: the reply header, then the reply.
#[repr(C)]
struct ReplyBuffer {
    header: FILTER_REPLY_HEADER,
    body: [u8; REPLY_CAPACITY],
}

/// Size `FilterGetMessage` may fill: the header and the body, contiguous in `Slot`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "64 KiB + 16; the assert below makes a truncation a build error"
)]
const SLOT_MESSAGE_LEN: u32 = (FLT_HEADER_LEN + MAX_MESSAGE_SIZE) as u32;
const _: () = assert!(FLT_HEADER_LEN + MAX_MESSAGE_SIZE <= u32::MAX as usize);
/// `FLT_HEADER_LEN` as the `u32` the reply length is counted in.
const FLT_HEADER_LEN_U32: u32 = 16;
const _: () = assert!(FLT_HEADER_LEN_U32 as usize == FLT_HEADER_LEN);
const _: () = assert!(
    std::mem::offset_of!(Slot, body) == std::mem::offset_of!(Slot, header) + FLT_HEADER_LEN
);

/// One dequeued completion of a receive request.
struct Completion {
    /// The slot it belongs to.
    index: usize,
    /// Bytes the completion reported.
    transferred: u32,
    /// The request's outcome (an HRESULT on failure).
    result: Result<(), i32>,
}

/// A connection to the driver's port.
///
/// # Invariants
///
/// While `outstanding > 0`, the kernel may write into any slot whose request is pending: the
/// slots are boxed (fixed addresses) and are freed only after every request completed.
pub struct WindowsPort {
    port: HANDLE,
    completion: HANDLE,
    slots: Vec<Box<Slot>>,
    /// Which slots have a request pending.
    pending: Vec<bool>,
    closed: bool,
    /// The port failed as disconnected: every later call says so, once the completions
    /// already queued have been taken.
    disconnected: bool,
    /// The receives were cancelled (a stop): no request is armed again.
    cancelling: bool,
    /// A failure to re-arm after a message was returned, reported by the next call.
    deferred: Option<ClientError>,
}

impl std::fmt::Debug for WindowsPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowsPort")
            .field("outstanding", &self.outstanding())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn zeroed_slot() -> Box<Slot> {
    let slot: Box<MaybeUninit<Slot>> = Box::new_zeroed();
    // SAFETY: every field of Slot (OVERLAPPED, FILTER_MESSAGE_HEADER, a byte array) is plain
    // data for which all-zero bytes are a valid value.
    unsafe { slot.assume_init() }
}

impl WindowsPort {
    fn connect(requests: usize) -> Result<Self, ClientError> {
        let name: Vec<u16> = PORT_NAME.encode_utf16().chain(Some(0)).collect();
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; no context
        // and no security attributes are passed (null pointers are allowed for both).
        let port =
            unsafe { FilterConnectCommunicationPort(PCWSTR(name.as_ptr()), 0, None, 0, None) }
                .map_err(|e| map_error("FilterConnectCommunicationPort", e.code().0))?;
        // SAFETY: `port` is a valid handle we own; a new completion port is created for it
        // (no existing port, key 0, one concurrent thread: the core's).
        let completion = match unsafe { CreateIoCompletionPort(port, None, 0, 1) } {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: `port` is ours and used nowhere else.
                let _ = unsafe { CloseHandle(port) };
                return Err(ClientError::Os {
                    routine: "CreateIoCompletionPort",
                    hresult: e.code().0,
                });
            }
        };
        let mut client = Self {
            port,
            completion,
            slots: (0..requests).map(|_| zeroed_slot()).collect(),
            pending: vec![false; requests],
            closed: false,
            disconnected: false,
            cancelling: false,
            deferred: None,
        };
        for index in 0..requests {
            // On failure, `client`'s drop cancels what was armed and closes both handles.
            client.arm(index)?;
        }
        Ok(client)
    }

    fn outstanding(&self) -> usize {
        self.pending.iter().filter(|p| **p).count()
    }

    /// Issues the overlapped `FilterGetMessage` of slot `index`.
    fn arm(&mut self, index: usize) -> Result<(), ClientError> {
        let Some(slot) = self.slots.get_mut(index) else {
            return Ok(());
        };
        slot.overlapped = OVERLAPPED::default();
        // No length from an earlier message may survive into this one (see `received_len`).
        slot.header = FILTER_MESSAGE_HEADER::default();
        if let Some(head) = slot.body.get_mut(..vigil_protocol::HEADER_LEN) {
            head.fill(0);
        }
        let header: *mut FILTER_MESSAGE_HEADER = &raw mut slot.header;
        let overlapped: *mut OVERLAPPED = &raw mut slot.overlapped;
        // SAFETY: the slot is boxed and stays allocated until this request completes (type
        // invariant); `header` is followed by `body` in the same allocation, so the buffer of
        // SLOT_MESSAGE_LEN bytes is valid for writes; `overlapped` is zeroed (no event: the
        // completion goes to the completion port).
        let result =
            unsafe { FilterGetMessage(self.port, header, SLOT_MESSAGE_LEN, Some(overlapped)) };
        match result {
            // Completed at once: the completion packet is still queued to the port.
            Ok(()) => {}
            Err(e) if e.code() == HRESULT::from_win32(ERROR_IO_PENDING.0) => {}
            Err(e) => {
                let error = map_error("FilterGetMessage", e.code().0);
                if error == ClientError::Disconnected {
                    self.disconnected = true;
                }
                return Err(error);
            }
        }
        if let Some(p) = self.pending.get_mut(index) {
            *p = true;
        }
        Ok(())
    }

    /// Dequeues one completion; `None` on timeout. Returns the slot index and the result.
    fn dequeue(&mut self, timeout: Duration) -> Result<Option<Completion>, ClientError> {
        let mut bytes = 0u32;
        let mut key = 0usize;
        let mut overlapped: *mut OVERLAPPED = ptr::null_mut();
        let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: the out-pointers are valid locals; `completion` is our completion port.
        let result = unsafe {
            GetQueuedCompletionStatus(
                self.completion,
                &raw mut bytes,
                &raw mut key,
                &raw mut overlapped,
                millis,
            )
        };
        if overlapped.is_null() {
            return match result {
                Err(e) if e.code() == HRESULT::from_win32(WAIT_TIMEOUT.0) => Ok(None),
                Err(e) => Err(ClientError::Os {
                    routine: "GetQueuedCompletionStatus",
                    hresult: e.code().0,
                }),
                Ok(()) => Ok(None),
            };
        }
        let found = self
            .slots
            .iter()
            .position(|slot| ptr::eq(&raw const slot.overlapped, overlapped.cast_const()));
        let Some(index) = found else {
            // Not one of ours (nothing else is associated with this port): ignore it.
            return Ok(None);
        };
        if let Some(p) = self.pending.get_mut(index) {
            *p = false;
        }
        Ok(Some(Completion {
            index,
            transferred: bytes,
            result: result.map_err(|e| e.code().0),
        }))
    }
}

impl WindowsPort {
    /// Re-arms slot `index` after its message was taken. A failure does not cost the message
    /// already copied out: it is kept for the next call (a disconnect is noticed there too).
    fn rearm_after_message(&mut self, index: usize) {
        if self.cancelling || self.disconnected {
            return;
        }
        match self.arm(index) {
            Ok(()) | Err(ClientError::Disconnected) => {}
            Err(e) => self.deferred = Some(e),
        }
    }
}

impl PortClient for WindowsPort {
    fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError> {
        if self.closed {
            return Err(ClientError::Disconnected);
        }
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        loop {
            // After a disconnect or a cancellation only completions already queued are taken
            // (a message among them was counted as delivered by the driver); then the end.
            let draining = self.disconnected || self.cancelling;
            let end = if self.disconnected {
                Err(ClientError::Disconnected)
            } else {
                Ok(None)
            };
            if draining && self.outstanding() == 0 {
                return end;
            }
            let wait = if self.disconnected {
                Duration::ZERO
            } else {
                timeout
            };
            let Some(Completion {
                index,
                transferred,
                result,
            }) = self.dequeue(wait)?
            else {
                return end;
            };
            if let Err(hresult) = result {
                let error = map_error("FilterGetMessage", hresult);
                if error == ClientError::Disconnected {
                    // Cancelled or torn down: look at the other completions.
                    if !self.cancelling {
                        self.disconnected = true;
                    }
                    continue;
                }
                self.rearm_after_message(index);
                return Err(error);
            }
            let slot = &self.slots[index];
            let len = received_len(transferred as usize, &slot.body);
            let message_id = slot.header.MessageId;
            let reply_len = slot.header.ReplyLength.saturating_sub(FLT_HEADER_LEN_U32);
            let Some(dst) = buf.get_mut(..len) else {
                self.rearm_after_message(index);
                return Err(ClientError::MessageTooLarge { len: Some(len) });
            };
            dst.copy_from_slice(&slot.body[..len]);
            self.rearm_after_message(index);
            return Ok(Some(Incoming {
                message_id,
                reply_len,
                len,
            }));
        }
    }

    fn cancel_receives(&mut self) {
        if self.closed || self.cancelling {
            return;
        }
        self.cancelling = true;
        if self.outstanding() > 0 {
            // SAFETY: `port` is our open handle; this cancels every request issued on it.
            // The slots stay allocated: `receive` and `close` take their completions.
            let _ = unsafe { CancelIoEx(self.port, None) };
        }
    }

    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError> {
        if self.closed || self.disconnected {
            return Err(ClientError::Disconnected);
        }
        let mut buffer = ReplyBuffer {
            header: FILTER_REPLY_HEADER {
                Status: NTSTATUS(0),
                MessageId: message_id,
            },
            body: [0; REPLY_CAPACITY],
        };
        let Some(body) = buffer.body.get_mut(..reply.len()) else {
            return Err(ClientError::MessageTooLarge {
                len: Some(reply.len()),
            });
        };
        body.copy_from_slice(reply);
        // Header and reply, exactly: the driver's reply buffer is the reply's size.
        let len = u32::try_from(FLT_HEADER_LEN + reply.len()).unwrap_or(u32::MAX);
        let header: *const FILTER_REPLY_HEADER = &raw const buffer.header;
        // SAFETY: `buffer` holds a FILTER_REPLY_HEADER (status success, the message id)
        // followed by the reply in the same repr(C) allocation, `len` bytes in all, and
        // outlives the synchronous call.
        unsafe { FilterReplyMessage(self.port, header, len) }.map_err(|e| {
            let error = map_error("FilterReplyMessage", e.code().0);
            if error == ClientError::Disconnected {
                self.disconnected = true;
            }
            error
        })
    }

    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError> {
        if self.closed || self.disconnected {
            return Err(ClientError::Disconnected);
        }
        let in_len = u32::try_from(command.len()).map_err(|_| ClientError::MessageTooLarge {
            len: Some(command.len()),
        })?;
        let out_len = u32::try_from(reply.len()).unwrap_or(u32::MAX);
        let mut returned = 0u32;
        // SAFETY: both buffers are valid for their lengths for the duration of the call, which
        // is synchronous; `returned` is a valid out-pointer.
        let result = unsafe {
            FilterSendMessage(
                self.port,
                command.as_ptr().cast(),
                in_len,
                Some(reply.as_mut_ptr().cast()),
                out_len,
                &raw mut returned,
            )
        };
        match result {
            Ok(()) => Ok((returned as usize).min(reply.len())),
            Err(e) => {
                let hresult = e.code().0;
                let error = map_error("FilterSendMessage", hresult);
                match error {
                    ClientError::Disconnected => {
                        self.disconnected = true;
                        Err(error)
                    }
                    ClientError::Os { .. } => Err(ClientError::CommandRefused {
                        command: crate::commands::command_name(command),
                        status: if hresult == hresult_from_win32(ERROR_REVISION_MISMATCH) {
                            STATUS_REVISION_MISMATCH
                        } else {
                            hresult
                        },
                    }),
                    other => Err(other),
                }
            }
        }
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.outstanding() > 0 {
            // SAFETY: `port` is our open handle; cancelling every request issued on it.
            let _ = unsafe { CancelIoEx(self.port, None) };
            let deadline = std::time::Instant::now() + CANCEL_WAIT;
            while self.outstanding() > 0 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match self.dequeue(left) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // SAFETY: both handles are ours and closed once (`closed` guards).
        let _ = unsafe { CloseHandle(self.port) };
        // SAFETY: as above.
        let _ = unsafe { CloseHandle(self.completion) };
        if self.outstanding() > 0 {
            // A request we did not see complete may still own its buffer: never free it.
            for slot in std::mem::take(&mut self.slots) {
                Box::leak(slot);
            }
        }
    }
}

impl Drop for WindowsPort {
    fn drop(&mut self) {
        self.close();
    }
}
