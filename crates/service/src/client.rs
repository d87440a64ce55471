//! The seam between the service core and the driver's communication port: [`PortClient`] (one
//! connection) and [`Connector`] (makes connections, again after the port closes).
//!
//! User mode, any platform. Implementations: the Windows one over `fltlib.dll`
//! (`crate::windows::port`, Windows only), the in-memory fake of the crate's tests (`tests/common/fake.rs`), and
//! kernel-sim's client side (`vigil_demo::sim_client` in `crates/demo`, Linux only).
//!
//! The shapes follow Filter Manager's user-mode API exactly, so that every implementation has
//! the same semantics: a received message carries the fields of `FILTER_MESSAGE_HEADER`
//! (`MessageId`, `ReplyLength`), a reply names the message id it answers (`FILTER_REPLY_HEADER`
//! is the implementation's business), and a command is one synchronous `FilterSendMessage`.

use std::fmt;
use std::time::Duration;

use vigil_protocol::{HEADER_LEN, MAX_MESSAGE_SIZE, PORT_NAME, Version};

/// One message taken from the port by [`PortClient::receive`]; its bytes are at the start of the
/// caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// `FILTER_MESSAGE_HEADER.MessageId`: what [`PortClient::reply`] must be given to answer it.
    pub message_id: u64,
    /// `FILTER_MESSAGE_HEADER.ReplyLength`: the reply the driver waits for, in bytes, not
    /// counting the reply header; zero when the driver expects no reply (event batches).
    pub reply_len: u32,
    /// Length of the message (the protocol bytes, without Filter Manager's header).
    pub len: usize,
}

/// Size of Filter Manager's `FILTER_MESSAGE_HEADER` (`ReplyLength` `u32`, padding, `MessageId`
/// `u64`), which precedes every message `FilterGetMessage` delivers.
pub const FLT_MESSAGE_HEADER_LEN: usize = 16;

/// Offset of the protocol header's total length (a little-endian `u32`) in a message.
const TOTAL_LENGTH_AT: usize = 12;

/// The length of the message a `FilterGetMessage` completion delivered into `body` (the bytes
/// after `FILTER_MESSAGE_HEADER`), given the completion's transfer count.
///
/// The protocol header's total length is believed only when this very transfer wrote the
/// whole protocol header: with fewer bytes, what the buffer holds at that offset is left over
/// from an earlier message (the Windows client also zeroes it before each receive). The
/// transfer count is read as including `FILTER_MESSAGE_HEADER`, the smaller reading of an
/// undocumented detail: a message is then at worst cut short, which the decoder refuses as
/// malformed, never padded with stale bytes. Portable so that the rule is tested on Linux; the
/// Windows client (`crate::windows::port`) applies it.
pub fn received_len(transferred: usize, body: &[u8]) -> usize {
    let written = transferred
        .saturating_sub(FLT_MESSAGE_HEADER_LEN)
        .min(body.len())
        .min(MAX_MESSAGE_SIZE);
    if written < HEADER_LEN {
        return written;
    }
    let declared = body
        .get(TOTAL_LENGTH_AT..TOTAL_LENGTH_AT + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize);
    if (HEADER_LEN..=written).contains(&declared) {
        declared
    } else {
        written
    }
}

/// One connection to the driver's communication port.
///
/// Object-safe, so a caller may hold a `Box<dyn PortClient>`. Implemented outside this crate by
/// kernel-sim's client side: implement the four methods with the semantics below and wrap the
/// connection routine in a [`Connector`] (a closure returning `Result<C, ClientError>` is one).
///
/// Semantics every implementation keeps:
/// * [`receive`](Self::receive) waits at most `timeout` and returns `Ok(None)` when nothing
///   arrived, so that the caller can notice a stop request; a closed port (the driver unloaded,
///   or the connection was closed from the other side) is [`ClientError::Disconnected`], on this
///   and every later call.
/// * A message longer than the caller's buffer is an error ([`ClientError::MessageTooLarge`]),
///   never a silent truncation.
/// * Nothing is retried inside the client: reconnecting is the core's job.
pub trait PortClient {
    /// Takes the next message the driver sent (an event batch, or a verdict request that waits
    /// for a reply), copying its bytes to the start of `buf`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Disconnected`] when the port closed, [`ClientError::MessageTooLarge`],
    /// or an operating-system failure.
    fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError>;

    /// Answers the message `message_id` (status success) with `reply`, the protocol bytes of a
    /// `VerdictReply`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Disconnected`]; an operating-system failure, for example when the driver
    /// stopped waiting (its verdict timeout expired) and the message id is no longer known.
    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError>;

    /// Sends one command (`Hello`, `GetStats`, `SetConfig`, `Ping`) and waits for the driver's
    /// reply, which is written at the start of `reply`; returns its length.
    ///
    /// # Errors
    ///
    /// [`ClientError::Disconnected`], [`ClientError::CommandRefused`] when the driver answered
    /// with a failure status, or an operating-system failure.
    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError>;

    /// Cancels the outstanding receives, at a stop. A message that completes anyway (it was
    /// already on its way) is still returned by [`receive`](Self::receive), which returns
    /// `Ok(None)` once nothing is outstanding: the driver counted that message as delivered,
    /// so dropping it would lose it without a trace. Clients that receive synchronously have
    /// nothing to cancel (the default).
    fn cancel_receives(&mut self) {}

    /// Closes the connection. Outstanding receives are cancelled and waited for before their
    /// buffers are released. Calling it twice is harmless; dropping a client closes it too.
    fn close(&mut self);
}

impl<P: PortClient + ?Sized> PortClient for Box<P> {
    fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError> {
        (**self).receive(buf, timeout)
    }

    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError> {
        (**self).reply(message_id, reply)
    }

    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError> {
        (**self).send_command(command, reply)
    }

    fn cancel_receives(&mut self) {
        (**self).cancel_receives();
    }

    fn close(&mut self) {
        (**self).close();
    }
}

/// Makes connections to the port: called once at start and again after every disconnect.
pub trait Connector {
    /// The connection type.
    type Client: PortClient;

    /// Connects to [`PORT_NAME`].
    ///
    /// # Errors
    ///
    /// [`ClientError::DriverNotLoaded`] when the port does not exist,
    /// [`ClientError::AccessDenied`], [`ClientError::Busy`] when another client holds the one
    /// connection, or an operating-system failure.
    fn connect(&mut self) -> Result<Self::Client, ClientError>;
}

impl<C: PortClient, F: FnMut() -> Result<C, ClientError>> Connector for F {
    type Client = C;

    fn connect(&mut self) -> Result<C, ClientError> {
        self()
    }
}

/// Why talking to the driver failed. The `Display` text names the problem and, where there is
/// one, what to do about it; it is what the CLI prints.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The port does not exist: the driver is not loaded (or is unloading).
    DriverNotLoaded,
    /// The port's security descriptor admits Administrators and SYSTEM only (RULES.md rule 18).
    AccessDenied,
    /// Another client holds the port's one connection.
    Busy,
    /// The port closed: the driver was unloaded or reloaded, or the connection was closed.
    Disconnected,
    /// The driver speaks another major version. `driver` is `None` when it refused ours without
    /// saying which it speaks.
    VersionMismatch {
        /// The driver's version, when its reply said.
        driver: Option<Version>,
        /// This service's version.
        service: Version,
    },
    /// The driver answered a command with a failure status (NTSTATUS, or the HRESULT that
    /// fltlib made of it).
    CommandRefused {
        /// The command's name.
        command: &'static str,
        /// The failure code.
        status: i32,
    },
    /// A message from the driver did not decode.
    Malformed {
        /// What was being read.
        what: &'static str,
        /// The protocol's reason.
        error: vigil_protocol::Error,
    },
    /// A reply that decodes but does not answer the request.
    UnexpectedReply(&'static str),
    /// A message longer than the receive buffer.
    MessageTooLarge {
        /// The message's length, when known.
        len: Option<usize>,
    },
    /// No port client exists for this platform: the driver runs on Windows only.
    Unsupported,
    /// An operating-system call failed.
    Os {
        /// The routine that failed.
        routine: &'static str,
        /// Its HRESULT.
        hresult: i32,
    },
}

impl ClientError {
    /// `true` for failures that a later connection may not have: the driver went away, or is
    /// not back yet, or another client still holds the port. The core reconnects after these
    /// and gives up on the others.
    pub const fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::DriverNotLoaded | Self::Disconnected | Self::Busy | Self::Os { .. }
        )
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DriverNotLoaded => write!(
                f,
                "driver not loaded (port {PORT_NAME} not found): load it with `fltmc load vigil`"
            ),
            Self::AccessDenied => write!(
                f,
                "access denied to port {PORT_NAME}: run as Administrator (the port admits \
                 Administrators and SYSTEM only)"
            ),
            Self::Busy => write!(
                f,
                "port {PORT_NAME} is busy: another Vigil service is connected (one connection \
                 at a time)"
            ),
            Self::Disconnected => {
                f.write_str("port closed by the driver (driver unloaded or reloaded)")
            }
            Self::VersionMismatch {
                driver: Some(driver),
                service,
            } => write!(
                f,
                "driver speaks protocol {}.{}, this service {}.{}: install matching versions",
                driver.major, driver.minor, service.major, service.minor
            ),
            Self::VersionMismatch {
                driver: None,
                service,
            } => write!(
                f,
                "driver refused this service's protocol {}.{} (revision mismatch): install \
                 matching versions",
                service.major, service.minor
            ),
            Self::CommandRefused { command, status } => {
                write!(f, "driver refused {command}: status {status:#010x}")
            }
            Self::Malformed { what, error } => {
                write!(f, "malformed {what} from the driver: {error}")
            }
            Self::UnexpectedReply(what) => write!(f, "unexpected reply from the driver: {what}"),
            Self::MessageTooLarge { len: Some(len) } => {
                write!(f, "message of {len} bytes does not fit the receive buffer")
            }
            Self::MessageTooLarge { len: None } => {
                f.write_str("message does not fit the receive buffer")
            }
            Self::Unsupported => f.write_str(
                "the Vigil driver runs on Windows only: on this platform the service core needs \
                 a port client supplied by its caller (the kernel-sim demo supplies one)",
            ),
            Self::Os { routine, hresult } => {
                write!(f, "{routine} failed: HRESULT {hresult:#010x}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_declaring(total: u32) -> Vec<u8> {
        let mut body = vec![0xAA; 256];
        body[TOTAL_LENGTH_AT..TOTAL_LENGTH_AT + 4].copy_from_slice(&total.to_le_bytes());
        body
    }

    #[test]
    fn a_length_left_over_from_an_earlier_message_is_never_believed() {
        // An earlier 24-byte message left its length in the buffer; this transfer wrote 30
        // bytes, 14 of them after Filter Manager's header: the protocol header was not among
        // them, so 24 is stale (believing it would add 10 stale bytes to the message).
        let body = body_declaring(24);
        assert_eq!(received_len(30, &body), 14);
        assert_eq!(received_len(FLT_MESSAGE_HEADER_LEN + 4, &body), 4);
        assert_eq!(received_len(3, &body), 0);
    }

    #[test]
    fn the_declared_length_is_used_when_the_transfer_wrote_it() {
        let body = body_declaring(40);
        assert_eq!(received_len(FLT_MESSAGE_HEADER_LEN + 64, &body), 40);
        // A declared length past what was written is not believed either.
        let body = body_declaring(200);
        assert_eq!(received_len(FLT_MESSAGE_HEADER_LEN + 64, &body), 64);
        // Nor one below the protocol header.
        let body = body_declaring(3);
        assert_eq!(received_len(FLT_MESSAGE_HEADER_LEN + 64, &body), 64);
    }
}
