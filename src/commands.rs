//! The service's commands, decoded from a kernel copy of the input: hello (version handshake),
//! statistics, set-configuration, ping. Every other message kind is refused with a distinct
//! status (RULES.md, rule 14: dispatch on the full kind). PASSIVE_LEVEL.

use core::sync::atomic::Ordering;

use vigil_protocol::{
    Error as ProtocolError, HelloReply, MAX_MESSAGE_SIZE, Message, Pong, SetConfigReply,
    StatsReply, Verdict,
};

use crate::globals::Globals;
use crate::prefix::PrefixError;

/// Why a command was refused. Each maps to one NTSTATUS in `port.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The input is shorter than a header or longer than the largest message.
    InputSize,
    /// The output buffer cannot hold the reply.
    OutputTooSmall,
    /// A user buffer faulted or lies outside user space (the status says which).
    BadUserBuffer(i32),
    /// The kernel copy of the input could not be allocated.
    NoMemory,
    /// The message does not decode.
    Malformed(ProtocolError),
    /// The configuration decodes but a value is out of range.
    BadConfig,
    /// The service speaks another major version.
    VersionMismatch,
    /// A valid message that is not a command (an event batch, a reply...).
    NotACommand,
}

impl From<ProtocolError> for CommandError {
    fn from(error: ProtocolError) -> Self {
        match error {
            ProtocolError::UnsupportedVersion => Self::VersionMismatch,
            other => Self::Malformed(other),
        }
    }
}

/// Runs one command; writes the reply at the start of `reply` and returns its length.
pub fn execute(
    globals: &Globals,
    request: &Message<'_>,
    reply: &mut [u8],
) -> Result<usize, CommandError> {
    let written = match request {
        Message::Hello(_) => HelloReply {
            status: 0,
            max_message_size: u32::try_from(MAX_MESSAGE_SIZE).unwrap_or(u32::MAX),
            ring_capacity_bytes: u32::try_from(globals.ring.capacity()).unwrap_or(u32::MAX),
        }
        .emit(reply),
        Message::GetStats(_) => StatsReply {
            stats: globals.counters.snapshot(),
        }
        .emit(reply),
        Message::SetConfig(set) => {
            apply_config(globals, set)?;
            SetConfigReply { status: 0 }.emit(reply)
        }
        Message::Ping(ping) => Pong { nonce: ping.nonce }.emit(reply),
        _ => return Err(CommandError::NotACommand),
    };
    written.map_err(|_| CommandError::OutputTooSmall)
}

/// Validates the whole configuration first, then applies it; a refused configuration changes
/// nothing.
fn apply_config(
    globals: &Globals,
    set: &vigil_protocol::SetConfig<'_>,
) -> Result<(), CommandError> {
    let config = set.config();
    config.validate().map_err(|_| CommandError::BadConfig)?;
    globals
        .prefixes
        .replace(|list| {
            for prefix in config.protected_prefixes.as_slice() {
                list.push_units(prefix.units(), crate::protection::fold)?;
            }
            Ok(())
        })
        .map_err(|_: PrefixError| CommandError::BadConfig)?;
    let settings = &globals.settings;
    settings
        .batch_size
        .store(config.batch_size, Ordering::Relaxed);
    settings
        .verdict_timeout_ms
        .store(config.verdict_timeout_ms, Ordering::Relaxed);
    settings
        .send_timeout_ms
        .store(config.send_timeout_ms, Ordering::Relaxed);
    settings
        .fail_closed
        .store(config.default_verdict == Verdict::Deny, Ordering::Relaxed);
    settings
        .attach_network
        .store(config.attach_network_volumes, Ordering::Relaxed);
    Ok(())
}
