//! Commands from the service to the driver, and the driver's replies: handshake, statistics,
//! configuration status, ping.
//!
//! Runs in the kernel (the port's message-notify callback, `PASSIVE_LEVEL`, decodes a command
//! from its kernel copy of the user buffer and encodes the reply into a zeroed kernel buffer
//! before copying it out) and in user mode (the service). Set-configuration, the one command
//! with variable length, lives in [`config`](crate::config).

use crate::bytes::{i32_at, put_i32, put_u32, put_u64, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, MessageKind, parse_fixed, start_message};

/// Service to driver: the version handshake, sent first on every connection.
///
/// The client's version is the one in the message header; the driver answers with a
/// [`HelloReply`] whose header carries its own. A client of another major version gets
/// [`Error::UnsupportedVersion`] from [`Hello::parse`]; the driver should still answer with a
/// [`HelloReply`] whose status says so (for example `STATUS_REVISION_MISMATCH`), since the
/// client can always read the reply's version with
/// [`Header::peek_version`](crate::Header::peek_version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Process id of the service, for the driver's log (it also knows it from the connection).
    pub client_process_id: u64,
}

mod hello_field {
    pub const CLIENT_PROCESS_ID: usize = super::HEADER_LEN;
}

impl Hello {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 8;

    /// Checks and parses: the header, [`Error::WrongKind`], [`Error::BadLength`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::Hello, Self::LEN)?;
        Ok(Self {
            client_process_id: u64_at(msg, hello_field::CLIENT_PROCESS_ID),
        })
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::Hello, Self::LEN, 0)?;
        put_u64(msg, hello_field::CLIENT_PROCESS_ID, self.client_process_id);
        Ok(Self::LEN)
    }
}

/// Driver to service: the answer to [`Hello`]. The driver's version is in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloReply {
    /// NTSTATUS: `STATUS_SUCCESS` (0) when the connection is accepted; a failure (for example
    /// `STATUS_REVISION_MISMATCH`) when the client's major version is refused.
    pub status: i32,
    /// Largest message the driver sends or accepts ([`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE)
    /// of the driver's build): the service sizes its receive buffers from this.
    pub max_message_size: u32,
    /// Capacity of the driver's event ring, in bytes.
    pub ring_capacity_bytes: u32,
}

mod hello_reply_field {
    use super::HEADER_LEN;
    pub const STATUS: usize = HEADER_LEN;
    pub const MAX_MESSAGE_SIZE: usize = HEADER_LEN + 4;
    pub const RING_CAPACITY_BYTES: usize = HEADER_LEN + 8;
    pub const RESERVED: usize = HEADER_LEN + 12;
}

impl HelloReply {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 16;

    /// Checks and parses: the header, [`Error::WrongKind`], [`Error::BadLength`],
    /// [`Error::NonZeroReserved`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::HelloReply, Self::LEN)?;
        if u32_at(msg, hello_reply_field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        Ok(Self {
            status: i32_at(msg, hello_reply_field::STATUS),
            max_message_size: u32_at(msg, hello_reply_field::MAX_MESSAGE_SIZE),
            ring_capacity_bytes: u32_at(msg, hello_reply_field::RING_CAPACITY_BYTES),
        })
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::HelloReply, Self::LEN, 0)?;
        put_i32(msg, hello_reply_field::STATUS, self.status);
        put_u32(
            msg,
            hello_reply_field::MAX_MESSAGE_SIZE,
            self.max_message_size,
        );
        put_u32(
            msg,
            hello_reply_field::RING_CAPACITY_BYTES,
            self.ring_capacity_bytes,
        );
        Ok(Self::LEN)
    }
}

/// Service to driver: asks for the counters. The header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetStats;

impl GetStats {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN;

    /// Checks: the header, [`Error::WrongKind`], [`Error::BadLength`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        parse_fixed(buf, MessageKind::GetStats, Self::LEN)?;
        Ok(Self)
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(self, out: &mut [u8]) -> Result<usize> {
        start_message(out, MessageKind::GetStats, Self::LEN, 0)?;
        Ok(Self::LEN)
    }
}

/// The driver's counters, each monotonic since the driver loaded.
///
/// The wire order is the field order below, one `u64` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Events the callbacks built (pushed or dropped).
    pub events_generated: u64,
    /// Events handed to the service in a batch that was sent successfully.
    pub events_delivered: u64,
    /// Events dropped because the ring was full.
    pub dropped_ring_full: u64,
    /// Events dropped because the record was larger than the ring allows.
    pub dropped_too_large: u64,
    /// Events dropped because memory for them could not be had.
    pub dropped_no_memory: u64,
    /// Events dropped because a send timed out.
    pub dropped_send_timeout: u64,
    /// Events dropped because no service was connected (or it disconnected mid-send).
    pub dropped_disconnected: u64,
    /// Batches sent successfully.
    pub batches_sent: u64,
    /// Verdict requests the service allowed.
    pub verdicts_allowed: u64,
    /// Verdict requests the service denied.
    pub verdicts_denied: u64,
    /// Verdicts defaulted to allow (no answer, fail-open configured).
    pub verdicts_defaulted_open: u64,
    /// Verdicts defaulted to deny (no answer, fail-closed configured).
    pub verdicts_defaulted_closed: u64,
    /// Verdict requests that timed out (a subset of the defaulted ones).
    pub verdict_timeouts: u64,
    /// Service connections accepted.
    pub connections: u64,
    /// Service disconnections.
    pub disconnects: u64,
    /// Allocation failures of any kind.
    pub allocation_failures: u64,
    /// File name queries that failed.
    pub name_query_failures: u64,
    /// Processes the driver's process table had no room for (their events carry key 0).
    pub process_table_overflows: u64,
    /// Process records (start, exit, first sight) that could not be encoded or whose send
    /// failed: not events, so not part of `dropped_total`.
    pub process_records_dropped: u64,
}

impl Stats {
    /// Number of counters, in wire order.
    pub const COUNT: usize = 19;

    /// Events dropped for any reason (saturating).
    pub const fn dropped_total(&self) -> u64 {
        self.dropped_ring_full
            .saturating_add(self.dropped_too_large)
            .saturating_add(self.dropped_no_memory)
            .saturating_add(self.dropped_send_timeout)
            .saturating_add(self.dropped_disconnected)
    }

    /// The counters in wire order.
    pub const fn to_array(&self) -> [u64; Self::COUNT] {
        [
            self.events_generated,
            self.events_delivered,
            self.dropped_ring_full,
            self.dropped_too_large,
            self.dropped_no_memory,
            self.dropped_send_timeout,
            self.dropped_disconnected,
            self.batches_sent,
            self.verdicts_allowed,
            self.verdicts_denied,
            self.verdicts_defaulted_open,
            self.verdicts_defaulted_closed,
            self.verdict_timeouts,
            self.connections,
            self.disconnects,
            self.allocation_failures,
            self.name_query_failures,
            self.process_table_overflows,
            self.process_records_dropped,
        ]
    }

    /// The counters from wire order.
    pub const fn from_array(c: [u64; Self::COUNT]) -> Self {
        Self {
            events_generated: c[0],
            events_delivered: c[1],
            dropped_ring_full: c[2],
            dropped_too_large: c[3],
            dropped_no_memory: c[4],
            dropped_send_timeout: c[5],
            dropped_disconnected: c[6],
            batches_sent: c[7],
            verdicts_allowed: c[8],
            verdicts_denied: c[9],
            verdicts_defaulted_open: c[10],
            verdicts_defaulted_closed: c[11],
            verdict_timeouts: c[12],
            connections: c[13],
            disconnects: c[14],
            allocation_failures: c[15],
            name_query_failures: c[16],
            process_table_overflows: c[17],
            process_records_dropped: c[18],
        }
    }
}

/// Driver to service: the answer to [`GetStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsReply {
    /// The counters.
    pub stats: Stats,
}

impl StatsReply {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 8 * Stats::COUNT;

    /// Checks and parses: the header, [`Error::WrongKind`], [`Error::BadLength`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::StatsReply, Self::LEN)?;
        let mut counters = [0u64; Stats::COUNT];
        for (i, c) in counters.iter_mut().enumerate() {
            *c = u64_at(msg, HEADER_LEN.saturating_add(8_usize.saturating_mul(i)));
        }
        Ok(Self {
            stats: Stats::from_array(counters),
        })
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::StatsReply, Self::LEN, 0)?;
        for (i, c) in self.stats.to_array().into_iter().enumerate() {
            put_u64(msg, HEADER_LEN.saturating_add(8_usize.saturating_mul(i)), c);
        }
        Ok(Self::LEN)
    }
}

/// Driver to service: the answer to [`SetConfig`](crate::SetConfig).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetConfigReply {
    /// NTSTATUS: `STATUS_SUCCESS` (0) when the configuration was applied; a failure (for example
    /// `STATUS_INVALID_PARAMETER`) when it was refused and the old one kept.
    pub status: i32,
}

mod set_config_reply_field {
    use super::HEADER_LEN;
    pub const STATUS: usize = HEADER_LEN;
    pub const RESERVED: usize = HEADER_LEN + 4;
}

impl SetConfigReply {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 8;

    /// Checks and parses: the header, [`Error::WrongKind`], [`Error::BadLength`],
    /// [`Error::NonZeroReserved`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::SetConfigReply, Self::LEN)?;
        if u32_at(msg, set_config_reply_field::RESERVED) != 0 {
            return Err(Error::NonZeroReserved);
        }
        Ok(Self {
            status: i32_at(msg, set_config_reply_field::STATUS),
        })
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::SetConfigReply, Self::LEN, 0)?;
        put_i32(msg, set_config_reply_field::STATUS, self.status);
        Ok(Self::LEN)
    }
}

/// Offset of the nonce in [`Ping`] and [`Pong`].
const NONCE: usize = HEADER_LEN;

/// Service to driver: liveness check; the driver answers [`Pong`] with the same nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// Any value; echoed.
    pub nonce: u64,
}

impl Ping {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 8;

    /// Checks and parses: the header, [`Error::WrongKind`], [`Error::BadLength`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::Ping, Self::LEN)?;
        Ok(Self {
            nonce: u64_at(msg, NONCE),
        })
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::Ping, Self::LEN, 0)?;
        put_u64(msg, NONCE, self.nonce);
        Ok(Self::LEN)
    }
}

/// Driver to service: the answer to [`Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: u64,
}

impl Pong {
    /// Size of the message, in bytes.
    pub const LEN: usize = HEADER_LEN + 8;

    /// Checks and parses: the header, [`Error::WrongKind`], [`Error::BadLength`].
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let msg = parse_fixed(buf, MessageKind::Pong, Self::LEN)?;
        Ok(Self {
            nonce: u64_at(msg, NONCE),
        })
    }

    /// Encodes at the start of `out`; returns [`LEN`](Self::LEN).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        let msg = start_message(out, MessageKind::Pong, Self::LEN, 0)?;
        put_u64(msg, NONCE, self.nonce);
        Ok(Self::LEN)
    }
}
