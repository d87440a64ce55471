//! An in-memory driver behind a [`PortClient`]: scripted messages (event batches, process
//! records, verdict requests), scripted port closes and driver reloads, refused connections, and a record of
//! every reply and command. User mode, portable; for the service's tests (`mod common;`) and its
//! throughput benchmark (`#[path = "../tests/common/fake.rs"]`), through the crate's public API
//! only.
//!
//! It answers commands as the real driver does (`src/commands.rs`): a `HelloReply` with status
//! 0, the counters, set-configuration validated with `Config::validate` (refused with
//! `STATUS_INVALID_PARAMETER`), ping. Its counters count connections and disconnects, and a
//! reload resets them, as loading a new driver instance does.

#![allow(dead_code, reason = "each test binary uses a subset of the fake")]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use vigil_protocol::{
    BatchWriter, EventFlags, EventKind, EventRepr, HelloReply, MAX_MESSAGE_SIZE, Message, Pong,
    ProcessEvent, ProcessFlags, ProcessRepr, SetConfigReply, Sid, Stats, StatsReply, Utf16Str,
    VerdictReply, VerdictRequestRepr, Version,
};

use vigil_service::{ClientError, Connector, Incoming, PortClient, ServiceControl};
use vigil_sys::STATUS_INVALID_PARAMETER;
/// `ERROR_FLT_NO_WAITER_FOR_REPLY` as an HRESULT: the driver stopped waiting for that reply.
pub const HRESULT_NO_WAITER_FOR_REPLY: i32 = 0x801F_0020_u32.cast_signed();

/// One scripted step, taken by `receive` in order.
#[derive(Debug, Clone)]
enum Step {
    Message {
        id: u64,
        bytes: Vec<u8>,
        reply_len: u32,
    },
    Disconnect,
    Reload,
}

#[derive(Debug)]
struct State {
    script: VecDeque<Step>,
    connected: Option<u64>,
    next_connection: u64,
    next_message_id: u64,
    awaiting_reply: HashSet<u64>,
    connect_failures: VecDeque<ClientError>,
    hello_version: Option<Version>,
    hello_refusal: Option<i32>,
    stats: Stats,
    replies: Vec<(u64, Vec<u8>)>,
    commands: Vec<Vec<u8>>,
    stop_when_idle: Option<ServiceControl>,
    closes: u64,
    /// Messages on their way when the client cancels its receives: returned only after
    /// `cancel_receives`, as completions that beat the cancellation.
    in_flight: VecDeque<Step>,
    hello_max_message_size: Option<u32>,
    cancels: u64,
}

/// The fake driver; clones share it. See the module documentation.
#[derive(Debug, Clone)]
pub struct FakeDriver {
    state: Arc<Mutex<State>>,
}

impl Default for FakeDriver {
    fn default() -> Self {
        Self::new()
    }
}

/// A path every generated event carries: `\Device\HarddiskVolume1\fake\file.txt`.
pub const FAKE_PATH: &str = "\\Device\\HarddiskVolume1\\fake\\file.txt";

impl FakeDriver {
    /// A loaded driver with an empty script.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                script: VecDeque::new(),
                connected: None,
                next_connection: 1,
                next_message_id: 1,
                awaiting_reply: HashSet::new(),
                connect_failures: VecDeque::new(),
                hello_version: None,
                hello_refusal: None,
                stats: Stats::default(),
                replies: Vec::new(),
                commands: Vec::new(),
                stop_when_idle: None,
                closes: 0,
                in_flight: VecDeque::new(),
                hello_max_message_size: None,
                cancels: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connector for the core.
    pub fn connector(&self) -> FakeConnector {
        FakeConnector {
            driver: self.clone(),
        }
    }

    /// Queues one message of any bytes; `reply_len` as `FILTER_MESSAGE_HEADER.ReplyLength`.
    /// Returns its message id.
    pub fn push_raw(&self, bytes: Vec<u8>, reply_len: u32) -> u64 {
        let mut s = self.lock();
        let id = s.next_message_id;
        s.next_message_id += 1;
        s.script.push_back(Step::Message {
            id,
            bytes,
            reply_len,
        });
        id
    }

    /// Queues event batches holding one generated event per sequence number of `seqs`, at
    /// most `per_batch` records per batch (records in the order given).
    pub fn push_events(&self, seqs: impl IntoIterator<Item = u64>, per_batch: usize) {
        let path: Vec<u16> = FAKE_PATH.encode_utf16().collect();
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
        let mut pending: Vec<u64> = seqs.into_iter().collect();
        pending.reverse();
        while !pending.is_empty() {
            let mut writer = BatchWriter::new(&mut buf).unwrap_or_else(|_| unreachable!());
            while writer.record_count() < per_batch.max(1) {
                let Some(&seq) = pending.last() else { break };
                if writer.push(&sample_event(seq, &path)).is_err() {
                    break;
                }
                pending.pop();
            }
            let Ok(len) = writer.finish() else { break };
            self.push_raw(buf[..len].to_vec(), 0);
        }
    }

    /// Queues a process record, as the driver sends one at a process's start, exit, or first
    /// sight after the load (`event`). `sid` is a binary SID (empty: none).
    pub fn push_process(&self, event: ProcessEvent, process: &FakeProcess<'_>) {
        let image: Vec<u16> = process.image.encode_utf16().collect();
        let repr = ProcessRepr {
            event,
            process_key: process.key,
            process_id: process.pid,
            parent_process_id: process.parent_pid,
            timestamp: 133_485_408_000_000_000,
            session_id: process.session,
            exit_status: 0,
            flags: ProcessFlags::NONE,
            image: Utf16Str::from_units(&image),
            user_sid: (!process.sid.is_empty())
                .then(|| Sid::new_checked(process.sid).unwrap_or_else(|e| panic!("{e}"))),
        };
        let mut buf = vec![0u8; repr.encoded_len()];
        let len = repr.emit(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        self.push_raw(buf[..len].to_vec(), 0);
    }

    /// Queues one batch of the given events (already numbered).
    pub fn push_batch(&self, events: &[EventRepr<'_>]) {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
        let mut writer = BatchWriter::new(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        for event in events {
            writer.push(event).unwrap_or_else(|e| panic!("{e}"));
        }
        let len = writer.finish().unwrap_or_else(|e| panic!("{e}"));
        self.push_raw(buf[..len].to_vec(), 0);
    }

    /// Event batches as [`push_events`](Self::push_events) makes them, but on their way when
    /// the client cancels its receives: `receive` returns them only after `cancel_receives`.
    pub fn push_events_completing_at_cancel(
        &self,
        seqs: impl IntoIterator<Item = u64>,
        per_batch: usize,
    ) {
        let before = self.lock().script.len();
        self.push_events(seqs, per_batch);
        let mut s = self.lock();
        let late = s.script.split_off(before);
        s.in_flight.extend(late);
    }

    /// The driver's Hello reply claims messages of up to `size` bytes.
    pub fn set_hello_max_message_size(&self, size: u32) {
        self.lock().hello_max_message_size = Some(size);
    }

    /// Times a client cancelled its receives.
    pub fn cancels(&self) -> u64 {
        self.lock().cancels
    }

    /// Queues a verdict request; returns the message id its reply must carry.
    pub fn push_verdict_request(&self, request: &VerdictRequestRepr<'_>) -> u64 {
        let mut bytes = vec![0u8; request.encoded_len()];
        let len = request.emit(&mut bytes).unwrap_or(0);
        bytes.truncate(len);
        let reply_len = u32::try_from(VerdictReply::LEN).unwrap_or(u32::MAX);
        let id = self.push_raw(bytes, reply_len);
        self.lock().awaiting_reply.insert(id);
        id
    }

    /// Queues a port close (the same driver stays loaded: numbering continues).
    pub fn push_disconnect(&self) {
        self.lock().script.push_back(Step::Disconnect);
    }

    /// Queues a driver unload and load: the port closes and the counters start again.
    pub fn push_reload(&self) {
        self.lock().script.push_back(Step::Reload);
    }

    /// The next `errors.len()` connection attempts fail with these errors, in order.
    pub fn fail_connects(&self, errors: impl IntoIterator<Item = ClientError>) {
        self.lock().connect_failures.extend(errors);
    }

    /// The driver answers Hello with this protocol version in its header.
    pub fn set_hello_version(&self, version: Version) {
        self.lock().hello_version = Some(version);
    }

    /// The driver refuses Hello with this failure status (as the real driver does with
    /// `STATUS_REVISION_MISMATCH` for another major version).
    pub fn refuse_hello(&self, status: i32) {
        self.lock().hello_refusal = Some(status);
    }

    /// When the script runs out, `receive` asks `control` to stop: lets a test run the core's
    /// whole loop to its end.
    pub fn stop_when_idle(&self, control: &ServiceControl) {
        self.lock().stop_when_idle = Some(control.clone());
    }

    /// Every reply so far: (message id, bytes).
    pub fn replies(&self) -> Vec<(u64, Vec<u8>)> {
        self.lock().replies.clone()
    }

    /// Every command so far, in order.
    pub fn commands(&self) -> Vec<Vec<u8>> {
        self.lock().commands.clone()
    }

    /// Connections accepted so far (all driver instances).
    pub fn connections_made(&self) -> u64 {
        self.lock().next_connection - 1
    }

    /// Clients closed so far.
    pub fn closes(&self) -> u64 {
        self.lock().closes
    }

    /// `true` while a client is connected.
    pub fn is_connected(&self) -> bool {
        self.lock().connected.is_some()
    }

    /// Scripted steps not yet taken.
    pub fn pending_steps(&self) -> usize {
        self.lock().script.len()
    }
}

/// The event [`FakeDriver::push_events`] generates for `seq`: a first write by process 100.
pub fn sample_event(seq: u64, path: &[u16]) -> EventRepr<'_> {
    EventRepr {
        kind: EventKind::FirstWrite,
        flags: EventFlags::NONE,
        status: 0,
        sequence: seq,
        // 2024-01-01T00:00:00Z plus seq microseconds.
        timestamp: 133_485_408_000_000_000 + seq * 10,
        process_id: 100,
        thread_id: 200,
        volume_id: 0x1234_5678,
        desired_access: 0,
        create_disposition: 0,
        information: 0,
        file_id: [0; 16],
        process_key: 0,
        path: Utf16Str::from_units(path),
        target: Utf16Str::EMPTY,
    }
}

/// A process as the fake driver describes it in a process record.
#[derive(Debug, Clone, Copy)]
pub struct FakeProcess<'a> {
    /// Process key.
    pub key: u64,
    /// Process id.
    pub pid: u64,
    /// Parent's process id.
    pub parent_pid: u64,
    /// NT image path.
    pub image: &'a str,
    /// Binary SID; empty for none.
    pub sid: &'a [u8],
    /// Session id.
    pub session: u32,
}

/// `S-1-5-18` (the local system account), binary.
pub const SYSTEM_SID: [u8; 12] = [1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0];

/// `S-1-5-21-1-2-3-1001` (a user of a domain), binary.
pub const USER_SID: [u8; 28] = [
    1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0xE9, 3, 0, 0,
];

/// Connects [`FakePort`]s to a [`FakeDriver`].
#[derive(Debug, Clone)]
pub struct FakeConnector {
    driver: FakeDriver,
}

impl Connector for FakeConnector {
    type Client = FakePort;

    fn connect(&mut self) -> Result<FakePort, ClientError> {
        let mut s = self.driver.lock();
        if let Some(error) = s.connect_failures.pop_front() {
            return Err(error);
        }
        if s.connected.is_some() {
            return Err(ClientError::Busy);
        }
        let id = s.next_connection;
        s.next_connection += 1;
        s.connected = Some(id);
        s.stats.connections += 1;
        Ok(FakePort {
            driver: self.driver.clone(),
            id,
            closed: false,
            cancelled: false,
        })
    }
}

/// One connection to a [`FakeDriver`].
#[derive(Debug)]
pub struct FakePort {
    driver: FakeDriver,
    id: u64,
    closed: bool,
    cancelled: bool,
}

impl FakePort {
    fn connected<'a>(
        &self,
        s: &'a mut MutexGuard<'_, State>,
    ) -> Result<&'a mut State, ClientError> {
        if s.connected == Some(self.id) && !self.closed {
            Ok(&mut **s)
        } else {
            Err(ClientError::Disconnected)
        }
    }
}

fn drop_connection(s: &mut State) {
    s.connected = None;
    s.stats.disconnects += 1;
    s.awaiting_reply.clear();
}

impl PortClient for FakePort {
    fn receive(
        &mut self,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError> {
        let mut guard = self.driver.lock();
        let s = self.connected(&mut guard)?;
        let step = if self.cancelled {
            // After a cancel only what was already on its way completes.
            s.in_flight.pop_front()
        } else {
            s.script.pop_front()
        };
        match step {
            None => {
                if let Some(control) = &s.stop_when_idle {
                    control.request_stop();
                }
                Ok(None)
            }
            Some(Step::Disconnect) => {
                drop_connection(s);
                Err(ClientError::Disconnected)
            }
            Some(Step::Reload) => {
                drop_connection(s);
                s.stats = Stats::default();
                Err(ClientError::Disconnected)
            }
            Some(Step::Message {
                id: message_id,
                bytes,
                reply_len,
            }) => {
                let Some(dst) = buf.get_mut(..bytes.len()) else {
                    return Err(ClientError::MessageTooLarge {
                        len: Some(bytes.len()),
                    });
                };
                dst.copy_from_slice(&bytes);
                Ok(Some(Incoming {
                    message_id,
                    reply_len,
                    len: bytes.len(),
                }))
            }
        }
    }

    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError> {
        let mut guard = self.driver.lock();
        let s = self.connected(&mut guard)?;
        if !s.awaiting_reply.remove(&message_id) {
            return Err(ClientError::Os {
                routine: "FilterReplyMessage",
                hresult: HRESULT_NO_WAITER_FOR_REPLY,
            });
        }
        s.replies.push((message_id, reply.to_vec()));
        Ok(())
    }

    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError> {
        let mut guard = self.driver.lock();
        let s = self.connected(&mut guard)?;
        s.commands.push(command.to_vec());
        let refused = |command| ClientError::CommandRefused {
            command,
            status: STATUS_INVALID_PARAMETER,
        };
        let written = match Message::parse(command).map_err(|_| refused("command"))? {
            Message::Hello(_) => {
                if let Some(status) = s.hello_refusal {
                    return Err(ClientError::CommandRefused {
                        command: "hello",
                        status,
                    });
                }
                let n = HelloReply {
                    status: 0,
                    max_message_size: s
                        .hello_max_message_size
                        .unwrap_or_else(|| u32::try_from(MAX_MESSAGE_SIZE).unwrap_or(u32::MAX)),
                    ring_capacity_bytes: 1 << 20,
                }
                .emit(reply);
                if let (Ok(_), Some(v)) = (&n, s.hello_version) {
                    reply[4..6].copy_from_slice(&v.major.to_le_bytes());
                    reply[6..8].copy_from_slice(&v.minor.to_le_bytes());
                }
                n
            }
            Message::GetStats(_) => StatsReply { stats: s.stats }.emit(reply),
            Message::SetConfig(set) => {
                let status = if set.config().validate().is_ok() {
                    0
                } else {
                    STATUS_INVALID_PARAMETER
                };
                SetConfigReply { status }.emit(reply)
            }
            Message::Ping(p) => Pong { nonce: p.nonce }.emit(reply),
            _ => return Err(refused("command")),
        };
        written.map_err(|_| ClientError::MessageTooLarge { len: None })
    }

    fn cancel_receives(&mut self) {
        self.cancelled = true;
        self.driver.lock().cancels += 1;
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut s = self.driver.lock();
        s.closes += 1;
        if s.connected == Some(self.id) {
            drop_connection(&mut s);
        }
    }
}

impl Drop for FakePort {
    fn drop(&mut self) {
        self.close();
    }
}
