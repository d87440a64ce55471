//! Any message, by kind: what a receive loop or a message-notify callback dispatches on.
//!
//! Runs in the kernel at any IRQL and in user mode.

use crate::batch::{BatchWriter, EventBatch};
use crate::command::{GetStats, Hello, HelloReply, Ping, Pong, SetConfigReply, StatsReply};
use crate::config::SetConfig;
use crate::error::Result;
use crate::header::{Header, MessageKind};
use crate::process::ProcessRecord;
use crate::verdict::{VerdictReply, VerdictRequest};

/// A checked message of any kind.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// See [`EventBatch`].
    EventBatch(EventBatch<'a>),
    /// See [`VerdictRequest`].
    VerdictRequest(VerdictRequest<'a>),
    /// See [`VerdictReply`].
    VerdictReply(VerdictReply),
    /// See [`ProcessRecord`].
    ProcessRecord(ProcessRecord<'a>),
    /// See [`Hello`].
    Hello(Hello),
    /// See [`HelloReply`].
    HelloReply(HelloReply),
    /// See [`GetStats`].
    GetStats(GetStats),
    /// See [`StatsReply`].
    StatsReply(StatsReply),
    /// See [`SetConfig`].
    SetConfig(SetConfig<'a>),
    /// See [`SetConfigReply`].
    SetConfigReply(SetConfigReply),
    /// See [`Ping`].
    Ping(Ping),
    /// See [`Pong`].
    Pong(Pong),
}

impl<'a> Message<'a> {
    /// Checks the header, then the whole message with its kind's decoder. Direction is not
    /// checked here: the driver refuses a kind the service may not send by matching on the
    /// result (on the full kind value, rule 14).
    ///
    /// # Errors
    ///
    /// Any error of [`Header::parse`] or of the kind's decoder.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        Ok(match Header::parse(buf)?.kind {
            MessageKind::EventBatch => Self::EventBatch(EventBatch::new_checked(buf)?),
            MessageKind::VerdictRequest => Self::VerdictRequest(VerdictRequest::new_checked(buf)?),
            MessageKind::VerdictReply => Self::VerdictReply(VerdictReply::parse(buf)?),
            MessageKind::ProcessRecord => Self::ProcessRecord(ProcessRecord::new_checked(buf)?),
            MessageKind::Hello => Self::Hello(Hello::parse(buf)?),
            MessageKind::HelloReply => Self::HelloReply(HelloReply::parse(buf)?),
            MessageKind::GetStats => Self::GetStats(GetStats::parse(buf)?),
            MessageKind::StatsReply => Self::StatsReply(StatsReply::parse(buf)?),
            MessageKind::SetConfig => Self::SetConfig(SetConfig::new_checked(buf)?),
            MessageKind::SetConfigReply => Self::SetConfigReply(SetConfigReply::parse(buf)?),
            MessageKind::Ping => Self::Ping(Ping::parse(buf)?),
            MessageKind::Pong => Self::Pong(Pong::parse(buf)?),
        })
    }

    /// The message's kind.
    pub const fn kind(&self) -> MessageKind {
        match self {
            Self::EventBatch(_) => MessageKind::EventBatch,
            Self::VerdictRequest(_) => MessageKind::VerdictRequest,
            Self::VerdictReply(_) => MessageKind::VerdictReply,
            Self::ProcessRecord(_) => MessageKind::ProcessRecord,
            Self::Hello(_) => MessageKind::Hello,
            Self::HelloReply(_) => MessageKind::HelloReply,
            Self::GetStats(_) => MessageKind::GetStats,
            Self::StatsReply(_) => MessageKind::StatsReply,
            Self::SetConfig(_) => MessageKind::SetConfig,
            Self::SetConfigReply(_) => MessageKind::SetConfigReply,
            Self::Ping(_) => MessageKind::Ping,
            Self::Pong(_) => MessageKind::Pong,
        }
    }

    /// Encodes the message again from its parsed form (batches record by record) at the start
    /// of `out`; returns the bytes written. For a message that [`parse`](Self::parse) accepted,
    /// the bytes are the same, except the minor version, which every encoder sets to
    /// [`VERSION_MINOR`](crate::VERSION_MINOR).
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`](crate::Error::BufferTooSmall); nothing is written then.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize> {
        match self {
            Self::EventBatch(batch) => {
                // Re-encoding a checked batch gives exactly its length: refuse a short buffer
                // before writing any record, as every other encoder does.
                if out.len() < batch.as_bytes().len() {
                    return Err(crate::Error::BufferTooSmall);
                }
                let mut writer = BatchWriter::new(out)?;
                for record in batch.records() {
                    writer.push(&record.repr())?;
                }
                writer.finish()
            }
            Self::VerdictRequest(request) => request.repr().emit(out),
            Self::VerdictReply(m) => m.emit(out),
            Self::ProcessRecord(m) => m.repr().emit(out),
            Self::Hello(m) => m.emit(out),
            Self::HelloReply(m) => m.emit(out),
            Self::GetStats(m) => m.emit(out),
            Self::StatsReply(m) => m.emit(out),
            Self::SetConfig(m) => m.config().emit(out),
            Self::SetConfigReply(m) => m.emit(out),
            Self::Ping(m) => m.emit(out),
            Self::Pong(m) => m.emit(out),
        }
    }
}
