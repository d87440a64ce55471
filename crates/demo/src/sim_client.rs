//! The service's port client over kernel-sim's client side: [`SimConnector`] and [`SimPort`]
//! implement [`Connector`] and [`PortClient`] with `vigil_kernel_sim::PortConnection`, so that
//! the service core runs against the real `vigil.sys` loaded in kernel-sim on Linux. Linux
//! only; user mode (host threads).
//!
//! ```no_run
//! use vigil_kernel_sim::{Sim, SimConfig};
//! use vigil_demo::sim_client::SimConnector;
//! use vigil_service::{MemorySink, Policy, Service, ServiceOptions, SystemClock};
//!
//! let sim = Sim::new(SimConfig::default());
//! let driver = sim.load("target/driver/vigil/vigil.sys")?;
//! let mut connector = SimConnector::new(sim.clone(), 0x1234);
//! let mut service = Service::new(Policy::default(), MemorySink::default(), ServiceOptions::default());
//! // Another thread: service.control().request_stop() ends the run.
//! let summary = service.run(&mut connector, &SystemClock)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Statuses map as the [`ClientError`] docs ask, the way the Windows client maps fltlib's
//! HRESULTs: no server port = [`ClientError::DriverNotLoaded`] (also while a reload is under
//! way: the next driver instance registers the port again); the port's connection limit or the
//! driver refusing a second client = [`ClientError::Busy`]; `STATUS_ACCESS_DENIED` from
//! ConnectNotify = [`ClientError::AccessDenied`]; a closed port =
//! [`ClientError::Disconnected`]; a command answered with a failure status =
//! [`ClientError::CommandRefused`] carrying that NTSTATUS (not an HRESULT: nothing converts it
//! here); a reply nobody waits for = [`ClientError::Os`] with `0x801F0020`
//! (`ERROR_FLT_NO_WAITER_FOR_REPLY`), as fltlib reports it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use vigil_kernel_sim::{ConnectError, ConnectOptions, PortConnection, PortError, Sim};
use vigil_protocol::PORT_NAME;
use vigil_service::{ClientError, Connector, Incoming, PortClient};
use vigil_sys::{STATUS_ACCESS_DENIED, STATUS_CONNECTION_COUNT_LIMIT, STATUS_FLT_DELETING_OBJECT};

/// `FACILITY_NT_BIT`: `HRESULT_FROM_NT(status) = status | 0x10000000`.
const FACILITY_NT_BIT: u32 = 0x1000_0000;

/// The HRESULT fltlib would return for `status`: Filter Manager statuses (`0xC01C00xx`) as
/// `HRESULT_FROM_WIN32` of their `ERROR_FLT_*` code (`0x801F00xx`), which is what fltlib
/// reports for them; anything else as `HRESULT_FROM_NT`.
fn hresult_from_nt(status: i32) -> i32 {
    let bits = status.cast_unsigned();
    if bits & 0xFFFF_0000 == 0xC01C_0000 {
        (0x801F_0000 | (bits & 0xFFFF)).cast_signed()
    } else {
        (bits | FACILITY_NT_BIT).cast_signed()
    }
}

/// Makes [`SimPort`]s to the port of whichever driver is loaded in a [`Sim`] (a reload is
/// found again by name, as `FilterConnectCommunicationPort` finds it).
#[derive(Debug, Clone)]
pub struct SimConnector {
    sim: Sim,
    options: ConnectOptions,
    port_name: String,
    latest: SharedConnection,
}

/// The connection a [`SimConnector`] made last, shared with other threads of the same
/// (simulated) process: they can send commands on it while the service's thread receives, as
/// any thread of a process may call `FilterSendMessage` on its port handle; and closing it is
/// what the OS does to the handle when the process dies.
#[derive(Debug, Clone, Default)]
pub struct SharedConnection(Arc<Mutex<Option<Arc<PortConnection>>>>);

impl SharedConnection {
    /// A client over the current connection, for commands (`None` before the first
    /// connection). Its [`PortClient::close`] closes the shared connection.
    pub fn client(&self) -> Option<SimPort> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|connection| SimPort { connection })
    }

    /// Closes the current connection at once, whatever the service's thread is doing (the
    /// process was killed: its handles are closed under it).
    pub fn close(&self) {
        if let Some(connection) = self.client() {
            connection.connection.close();
        }
    }

    fn set(&self, connection: &Arc<PortConnection>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(connection));
    }
}

impl SimConnector {
    /// Connects as process `process_id` to [`PORT_NAME`] of drivers loaded through `sim` (or
    /// its clones).
    pub fn new(sim: Sim, process_id: u64) -> Self {
        Self {
            sim,
            options: ConnectOptions {
                process_id,
                context: Vec::new(),
                account: vigil_kernel_sim::Account::System,
            },
            port_name: PORT_NAME.to_owned(),
            latest: SharedConnection::default(),
        }
    }

    /// The connection this connector (or a clone) made last, for other threads.
    pub fn shared(&self) -> SharedConnection {
        self.latest.clone()
    }

    /// Connects to another port name (another minifilter).
    #[must_use]
    pub fn with_port_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.port_name);
        self
    }
}

impl Connector for SimConnector {
    type Client = SimPort;

    fn connect(&mut self) -> Result<SimPort, ClientError> {
        let connection = Arc::new(
            self.sim
                .connect(&self.port_name, &self.options)
                .map_err(map_connect_error)?,
        );
        self.latest.set(&connection);
        Ok(SimPort { connection })
    }
}

fn map_connect_error(error: ConnectError) -> ClientError {
    match error {
        ConnectError::NotFound | ConnectError::Refused(STATUS_FLT_DELETING_OBJECT) => {
            ClientError::DriverNotLoaded
        }
        ConnectError::ConnectionLimit | ConnectError::Refused(STATUS_CONNECTION_COUNT_LIMIT) => {
            ClientError::Busy
        }
        ConnectError::Refused(STATUS_ACCESS_DENIED) => ClientError::AccessDenied,
        other => ClientError::Os {
            routine: "FilterConnectCommunicationPort",
            hresult: hresult_from_nt(other.status()),
        },
    }
}

fn map_port_error(routine: &'static str, error: PortError) -> ClientError {
    match error {
        // A crashed driver is gone for this connection; the report says why.
        PortError::Disconnected | PortError::DriverCrashed => ClientError::Disconnected,
        PortError::MessageTooLarge { len } => ClientError::MessageTooLarge { len: Some(len) },
        other => ClientError::Os {
            routine,
            hresult: hresult_from_nt(other.status()),
        },
    }
}

/// One connection to the driver in kernel-sim.
#[derive(Debug)]
pub struct SimPort {
    connection: Arc<PortConnection>,
}

impl SimPort {
    /// The underlying kernel-sim connection (for tests that want its hooks).
    pub fn connection(&self) -> &PortConnection {
        &self.connection
    }
}

impl PortClient for SimPort {
    fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError> {
        match self.connection.get_message(buf, timeout) {
            Ok(message) => Ok(Some(Incoming {
                message_id: message.message_id,
                reply_len: message.reply_len,
                len: message.len,
            })),
            Err(PortError::Timeout) => Ok(None),
            Err(e) => Err(map_port_error("FilterGetMessage", e)),
        }
    }

    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError> {
        self.connection
            .reply(message_id, reply)
            .map_err(|e| map_port_error("FilterReplyMessage", e))
    }

    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError> {
        let result = self
            .connection
            .send_command(command, reply.len())
            .map_err(|e| map_port_error("FilterSendMessage", e))?;
        if result.status < 0 {
            return Err(ClientError::CommandRefused {
                command: vigil_service::commands::command_name(command),
                status: result.status,
            });
        }
        let len = result.output.len().min(reply.len());
        reply[..len].copy_from_slice(&result.output[..len]);
        Ok(len)
    }

    fn close(&mut self) {
        self.connection.close();
    }
}
