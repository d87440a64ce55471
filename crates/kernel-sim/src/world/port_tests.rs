//! Driver-independent tests of the communication port: a "driver" written in Rust (its
//! port callbacks are `extern "win64"` functions here) calls the emulated `FltSendMessage` and
//! `FltCloseClientPort` inside real driver calls, and a client connects through the public
//! client API. Each check has a test that fails without it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use vigil_sys::{
    LARGE_INTEGER, NTSTATUS, PFLT_FILTER, PFLT_PORT, PVOID, STATUS_BUFFER_OVERFLOW,
    STATUS_PORT_DISCONNECTED, STATUS_SUCCESS, STATUS_TIMEOUT,
};

use crate::config::SimConfig;
use crate::fltmgr::flt_write;
use crate::fltmgr::ports::{find_poison, flt_close_client_port, flt_send_message};
use crate::fltmgr::security::Account;
use crate::fltmgr::security::PortAccess;
use crate::fltmgr::{FilterRecord, ServerPortRecord};
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::guest::GuestAlloc;
use crate::machine::state::ImageBounds;
use crate::report::ViolationKind;
use crate::world::client::{self, ConnectError, ConnectOptions, PortConnection, PortError};

const PORT: &str = "\\TestPort";

/// What the test driver's callbacks share: its one port variable and its choices.
#[derive(Default)]
struct Harness {
    filter: AtomicUsize,
    port_variable: AtomicUsize,
    close_in_disconnect: AtomicBool,
    refuse_connect: AtomicBool,
    overstate_returned: AtomicBool,
    connected_pid: AtomicUsize,
    disconnects: AtomicU32,
    /// DisconnectNotify waits this long before it closes the port (a driver waiting for its
    /// own port lock).
    disconnect_delay_ms: AtomicU32,
}

unsafe extern "win64" fn connect_notify(
    port: PFLT_PORT,
    server_cookie: PVOID,
    _context: PVOID,
    _context_len: u32,
    connection_cookie: *mut PVOID,
) -> NTSTATUS {
    // SAFETY: the server cookie is the test's live Harness.
    let harness = unsafe { &*server_cookie.cast::<Harness>() };
    if harness.refuse_connect.load(Ordering::Relaxed) {
        return vigil_sys::STATUS_ACCESS_DENIED;
    }
    harness
        .port_variable
        .store(port as usize, Ordering::Release);
    let pid = crate::machine::state::with(|s| s.process_id.get());
    harness.connected_pid.store(pid, Ordering::Relaxed);
    // SAFETY: FltMgr's out-pointer.
    unsafe { *connection_cookie = server_cookie };
    STATUS_SUCCESS
}

unsafe extern "win64" fn disconnect_notify(cookie: PVOID) {
    // SAFETY: the connection cookie is the test's live Harness.
    let harness = unsafe { &*cookie.cast::<Harness>() };
    harness.disconnects.fetch_add(1, Ordering::Relaxed);
    let delay = harness.disconnect_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        thread::sleep(Duration::from_millis(u64::from(delay)));
    }
    if harness.close_in_disconnect.load(Ordering::Relaxed) {
        flt_close_client_port(
            harness.filter.load(Ordering::Relaxed) as PFLT_FILTER,
            harness.port_variable.as_ptr().cast(),
        );
    }
}

unsafe extern "win64" fn message_notify(
    cookie: PVOID,
    _input: PVOID,
    _input_len: u32,
    _output: PVOID,
    output_len: u32,
    returned: *mut u32,
) -> NTSTATUS {
    // SAFETY: the connection cookie is the test's live Harness.
    let harness = unsafe { &*cookie.cast::<Harness>() };
    let len = if harness.overstate_returned.load(Ordering::Relaxed) {
        output_len + 10
    } else {
        0
    };
    // SAFETY: FltMgr's kernel out-pointer.
    unsafe { *returned = len };
    STATUS_SUCCESS
}

struct World {
    kernel: Arc<Kernel>,
    harness: Box<Harness>,
}

impl World {
    fn new(config: SimConfig) -> Self {
        let kernel = Kernel::new(
            config,
            "test.sys".into(),
            ImageBounds::EMPTY,
            Vec::new(),
            Symbols::default(),
        );
        let harness = Box::<Harness>::default();
        harness.close_in_disconnect.store(true, Ordering::Relaxed);
        let filter = GuestAlloc::zeroed(64);
        let filter_address = filter.address();
        harness.filter.store(filter_address, Ordering::Relaxed);
        let server = GuestAlloc::zeroed(64);
        let mut flt = flt_write(&kernel);
        flt.filters.insert(
            filter_address,
            FilterRecord {
                handle: filter,
                version: 0x0203,
                flags: 0,
                unload: None,
                instance_setup: 0,
                instance_query_teardown: 0,
                instance_teardown_start: 0,
                instance_teardown_complete: 0,
                transaction_notification: 0,
                operations: Vec::new(),
                contexts: Vec::new(),
                started: true,
                unregistered: false,
                unregister_returned: false,
                instance_config: None,
                name_provider: None,
            },
        );
        flt.ports.insert(
            server.address(),
            ServerPortRecord {
                handle: server,
                filter: filter_address,
                name: PORT.into(),
                cookie: std::ptr::from_ref::<Harness>(&harness).cast_mut().cast(),
                connect: connect_notify as *const () as usize,
                disconnect: disconnect_notify as *const () as usize,
                message: message_notify as *const () as usize,
                max_connections: 1,
                closed: false,
                access: PortAccess::SystemAndAdministrators(vigil_sys::FLT_PORT_ALL_ACCESS),
            },
        );
        drop(flt);
        Self { kernel, harness }
    }

    /// Replaces what the test port's security descriptor grants.
    fn set_access(&self, access: PortAccess) {
        for port in flt_write(&self.kernel).ports.values_mut() {
            port.access = access;
        }
    }

    fn default_config() -> SimConfig {
        SimConfig {
            hang_timeout: Duration::from_secs(5),
            ..SimConfig::default()
        }
    }

    fn connect(&self) -> PortConnection {
        client::connect(&self.kernel, PORT, &ConnectOptions::default()).expect("connects")
    }

    fn filter(&self) -> PFLT_FILTER {
        self.harness.filter.load(Ordering::Relaxed) as PFLT_FILTER
    }

    fn variable(&self) -> *mut PFLT_PORT {
        self.harness.port_variable.as_ptr().cast()
    }

    fn kinds(&self) -> Vec<ViolationKind> {
        self.kernel.violations().iter().map(|v| v.kind).collect()
    }

    /// Sends `message` as the driver would, on a new driver thread: (status, reply bytes).
    fn send_on_thread(
        &self,
        message: Vec<u8>,
        reply_capacity: Option<u32>,
        timeout_ms: Option<i64>,
    ) -> thread::JoinHandle<(NTSTATUS, Vec<u8>)> {
        let kernel = Arc::clone(&self.kernel);
        let filter = self.filter() as usize;
        let variable = self.variable() as usize;
        thread::spawn(move || {
            send(
                &kernel,
                filter,
                variable,
                message,
                reply_capacity,
                timeout_ms,
            )
        })
    }
}

/// One `FltSendMessage` inside a driver call on this thread.
fn send(
    kernel: &Kernel,
    filter: usize,
    variable: usize,
    mut message: Vec<u8>,
    reply_capacity: Option<u32>,
    timeout_ms: Option<i64>,
) -> (NTSTATUS, Vec<u8>) {
    kernel
        .call_driver("test sender", Some(0), || {
            let mut reply = vec![0u8; reply_capacity.unwrap_or(0) as usize];
            let mut reply_len = reply_capacity.unwrap_or(0);
            let mut timeout: LARGE_INTEGER = timeout_ms.unwrap_or(0) * -10_000;
            let status = flt_send_message(
                filter as PFLT_FILTER,
                variable as *mut PFLT_PORT,
                message.as_mut_ptr().cast(),
                u32::try_from(message.len()).unwrap(),
                if reply_capacity.is_some() {
                    reply.as_mut_ptr().cast()
                } else {
                    std::ptr::null_mut()
                },
                if reply_capacity.is_some() {
                    &raw mut reply_len
                } else {
                    std::ptr::null_mut()
                },
                if timeout_ms.is_some() {
                    &raw mut timeout
                } else {
                    std::ptr::null_mut()
                },
            );
            reply.truncate(reply_len as usize);
            (status, reply)
        })
        .expect("the send returned")
}

fn receive(connection: &PortConnection) -> (client::ReceivedMessage, Vec<u8>) {
    let mut buf = vec![0u8; 256];
    let message = connection
        .get_message(&mut buf, Duration::from_secs(5))
        .expect("a message arrives");
    buf.truncate(message.len);
    (message, buf)
}

#[test]
fn a_send_waits_for_the_client_and_for_its_reply() {
    let world = World::new(World::default_config());
    let connection = world.connect();
    assert_eq!(world.harness.connected_pid.load(Ordering::Relaxed), 0x1234);
    let sender = world.send_on_thread(b"question".to_vec(), Some(16), Some(5_000));
    let (message, bytes) = receive(&connection);
    assert_eq!(bytes, b"question");
    assert_eq!(message.reply_len, 16);
    connection.reply(message.message_id, b"answer").unwrap();
    let (status, reply) = sender.join().unwrap();
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(reply, b"answer");
    assert_eq!(
        connection.reply(message.message_id, b"again"),
        Err(PortError::NoWaiter),
        "one reply per message"
    );
    // Without a reply buffer, delivery ends the send.
    let sender = world.send_on_thread(b"event".to_vec(), None, Some(5_000));
    let (message, _) = receive(&connection);
    assert_eq!(message.reply_len, 0);
    assert_eq!(sender.join().unwrap().0, STATUS_SUCCESS);
    assert_eq!(
        connection.reply(message.message_id, b"x"),
        Err(PortError::NoWaiter)
    );
    drop(connection);
    assert!(world.kinds().is_empty(), "{:?}", world.kernel.violations());
}

#[test]
fn a_send_times_out_with_status_timeout_and_a_late_reply_finds_no_waiter() {
    let world = World::new(World::default_config());
    let connection = world.connect();
    // Nobody receives: STATUS_TIMEOUT (a success code), and the message is withdrawn.
    let (status, _) = send(
        &world.kernel,
        world.filter() as usize,
        world.variable() as usize,
        b"lonely".to_vec(),
        None,
        Some(30),
    );
    assert_eq!(status, STATUS_TIMEOUT);
    let mut buf = [0u8; 64];
    assert_eq!(
        connection.get_message(&mut buf, Duration::from_millis(20)),
        Err(PortError::Timeout)
    );
    // Received, but the reply comes after the sender gave up.
    let sender = world.send_on_thread(b"late".to_vec(), Some(8), Some(50));
    let (message, _) = receive(&connection);
    let (status, _) = sender.join().unwrap();
    assert_eq!(status, STATUS_TIMEOUT);
    assert_eq!(
        connection.reply(message.message_id, b"too late"),
        Err(PortError::NoWaiter)
    );
    assert_eq!(
        PortError::NoWaiter.status(),
        vigil_sys::STATUS_FLT_NO_WAITER_FOR_REPLY
    );
    drop(connection);
    assert!(world.kinds().is_empty(), "{:?}", world.kernel.violations());
}

#[test]
fn a_reply_longer_than_the_senders_buffer_is_truncated_with_buffer_overflow() {
    let world = World::new(World::default_config());
    let connection = world.connect();
    let sender = world.send_on_thread(b"q".to_vec(), Some(4), Some(5_000));
    let (message, _) = receive(&connection);
    connection.reply(message.message_id, b"0123456789").unwrap();
    let (status, reply) = sender.join().unwrap();
    assert_eq!(status, STATUS_BUFFER_OVERFLOW);
    assert_eq!(reply, b"0123");
}

#[test]
fn the_client_closing_wakes_waiting_senders_and_the_disconnect_callback_closes_the_port() {
    let world = World::new(World::default_config());
    let connection = world.connect();
    let waiting = world.send_on_thread(b"pending".to_vec(), Some(8), Some(10_000));
    // Let it be received, then vanish without replying.
    let _ = receive(&connection);
    let queued = world.send_on_thread(b"queued".to_vec(), None, Some(10_000));
    thread::sleep(Duration::from_millis(20));
    connection.close();
    assert_eq!(waiting.join().unwrap().0, STATUS_PORT_DISCONNECTED);
    assert_eq!(queued.join().unwrap().0, STATUS_PORT_DISCONNECTED);
    assert_eq!(world.harness.disconnects.load(Ordering::Relaxed), 1);
    assert_eq!(
        world.harness.port_variable.load(Ordering::Relaxed),
        0,
        "FltCloseClientPort set the variable to NULL"
    );
    // A send after the close, through the same variable: NULL, flagged.
    let (status, _) = send(
        &world.kernel,
        world.filter() as usize,
        world.variable() as usize,
        b"after".to_vec(),
        None,
        Some(10),
    );
    assert_eq!(status, STATUS_PORT_DISCONNECTED);
    let violations = world.kernel.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0]
            .rule
            .contains("send through a NULL client port variable"),
        "{violations:?}"
    );
    // The port is free again: a second connection is admitted.
    drop(world.connect());
}

#[test]
fn flt_close_client_port_wakes_senders_and_the_client_sees_the_port_closed() {
    let world = World::new(World::default_config());
    let connection = world.connect();
    let sender = world.send_on_thread(b"waiting".to_vec(), None, Some(10_000));
    thread::sleep(Duration::from_millis(20));
    let filter = world.filter() as usize;
    let variable = world.variable() as usize;
    world
        .kernel
        .call_driver("test closer", Some(0), || {
            flt_close_client_port(filter as PFLT_FILTER, variable as *mut PFLT_PORT);
        })
        .unwrap();
    assert_eq!(sender.join().unwrap().0, STATUS_PORT_DISCONNECTED);
    let mut buf = [0u8; 16];
    assert_eq!(
        connection.get_message(&mut buf, Duration::from_secs(1)),
        Err(PortError::Disconnected)
    );
    assert!(!connection.is_connected());
    assert!(connection.send_command(b"x", 4).is_err());
    // The client's close no longer calls DisconnectNotify: the driver closed the port itself.
    connection.close();
    assert_eq!(world.harness.disconnects.load(Ordering::Relaxed), 0);
    // Closing again through the (now NULL) variable is a double close.
    world
        .kernel
        .call_driver("test closer", Some(0), || {
            flt_close_client_port(filter as PFLT_FILTER, variable as *mut PFLT_PORT);
        })
        .unwrap();
    assert_eq!(world.kinds(), [ViolationKind::InvalidHandle]);
}

#[test]
fn a_send_through_a_stale_copy_of_the_port_is_reported() {
    // The seed's crash: the port stored in two places, one closed while the other sends.
    let world = World::new(World::default_config());
    let _connection = world.connect();
    let copy = AtomicUsize::new(world.harness.port_variable.load(Ordering::Relaxed));
    let filter = world.filter() as usize;
    let variable = world.variable() as usize;
    world
        .kernel
        .call_driver("test closer", Some(0), || {
            flt_close_client_port(filter as PFLT_FILTER, variable as *mut PFLT_PORT);
        })
        .unwrap();
    let (status, _) = send(
        &world.kernel,
        filter,
        copy.as_ptr() as usize,
        b"stale".to_vec(),
        None,
        Some(10),
    );
    assert_eq!(status, STATUS_PORT_DISCONNECTED);
    let violations = world.kernel.violations();
    assert_eq!(violations.len(), 1);
    assert!(violations[0].rule.contains("RULES.md 5"), "{violations:?}");
}

#[test]
fn a_send_without_a_timeout_is_a_policy_violation_unless_switched_off() {
    for flag in [true, false] {
        let world = World::new(SimConfig {
            flag_infinite_waits: flag,
            ..World::default_config()
        });
        let connection = world.connect();
        let sender = world.send_on_thread(b"forever".to_vec(), None, None);
        let _ = receive(&connection);
        assert_eq!(sender.join().unwrap().0, STATUS_SUCCESS);
        let expected: &[ViolationKind] = if flag { &[ViolationKind::Policy] } else { &[] };
        assert_eq!(world.kinds(), expected);
    }
}

/// The bytewise definition `find_poison` must agree with (it scans whole words for speed).
fn find_poison_bytewise(bytes: &[u8]) -> Option<(usize, usize, u8)> {
    let mut start = 0;
    while start < bytes.len() {
        let byte = bytes[start];
        let run = bytes[start..].iter().take_while(|&&b| b == byte).count();
        if (byte == crate::machine::pool::POOL_POISON
            || byte == crate::machine::switch::STACK_POISON)
            && run >= crate::fltmgr::ports::POISON_RUN
        {
            return Some((start, run, byte));
        }
        start += run;
    }
    None
}

#[test]
fn the_word_scan_finds_what_a_bytewise_scan_finds() {
    // Buffers made of runs of poison and data bytes at every length and offset around the
    // threshold, from a fixed-seed generator.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let fills = [
        crate::machine::pool::POOL_POISON,
        crate::machine::switch::STACK_POISON,
        0x00,
        0x41,
    ];
    let mut found = 0;
    for _ in 0..20_000 {
        let mut bytes = Vec::new();
        while bytes.len() < 96 {
            let fill = fills[usize::try_from(next(4)).unwrap()];
            let run = usize::try_from(next(20)).unwrap() + 1;
            bytes.extend(std::iter::repeat_n(fill, run));
        }
        let cut = usize::try_from(next(96)).unwrap();
        let bytes = &bytes[usize::try_from(next(8)).unwrap()..cut.max(8)];
        let expected = find_poison_bytewise(bytes);
        found += usize::from(expected.is_some());
        assert_eq!(find_poison(bytes), expected, "{bytes:02x?}");
    }
    assert!(
        found > 1_000,
        "the generator makes qualifying runs ({found})"
    );
}

#[test]
fn poison_runs_in_a_message_are_uninitialized_bytes() {
    assert_eq!(find_poison(&[0xA5; 15]), None, "below the run length");
    assert_eq!(find_poison(&[0xA5; 16]), Some((0, 16, 0xA5)));
    let mut mixed = vec![1u8; 40];
    mixed[10..30].fill(0xC5);
    assert_eq!(find_poison(&mixed), Some((10, 20, 0xC5)));
    assert_eq!(find_poison(&[0xEE; 64]), None, "other fills are data");
    let mut alternating = vec![0xA5u8; 64];
    for byte in alternating.iter_mut().step_by(8) {
        *byte = 0;
    }
    assert_eq!(find_poison(&alternating), None, "7-byte runs only");

    let world = World::new(World::default_config());
    let connection = world.connect();
    let mut message = b"header..".to_vec();
    message.extend([crate::machine::pool::POOL_POISON; 32]);
    let sender = world.send_on_thread(message, None, Some(5_000));
    let _ = receive(&connection);
    assert_eq!(sender.join().unwrap().0, STATUS_SUCCESS);
    let violations = world.kernel.violations();
    assert_eq!(world.kinds(), [ViolationKind::UninitializedBytes]);
    assert!(
        violations[0]
            .message
            .contains("32 bytes of 0xa5 at offset 8"),
        "{violations:?}"
    );
}

#[test]
fn a_disconnect_callback_that_does_not_close_the_port_is_reported() {
    let world = World::new(World::default_config());
    world
        .harness
        .close_in_disconnect
        .store(false, Ordering::Relaxed);
    let connection = world.connect();
    connection.close();
    assert_eq!(world.kinds(), [ViolationKind::PortNotClosed]);
    assert!(
        world.kernel.violations()[0]
            .message
            .contains("client port not closed by the disconnect callback")
    );
    // The connection slot stays taken while the driver holds the port.
    assert_eq!(
        client::connect(&world.kernel, PORT, &ConnectOptions::default()).unwrap_err(),
        ConnectError::ConnectionLimit
    );
}

#[test]
fn unregister_calls_disconnect_for_open_client_ports_and_reports_those_left_open() {
    for closes in [true, false] {
        let world = World::new(World::default_config());
        world
            .harness
            .close_in_disconnect
            .store(closes, Ordering::Relaxed);
        let connection = world.connect();
        let filter = world.filter() as usize;
        world
            .kernel
            .call_driver("FilterUnload", Some(0), || {
                crate::fltmgr::registration::flt_unregister_filter(filter as PFLT_FILTER);
            })
            .unwrap();
        assert_eq!(world.harness.disconnects.load(Ordering::Relaxed), 1);
        assert!(!connection.is_connected());
        let kinds = world.kinds();
        // The server port left open is reported by FltUnregisterFilter's own check.
        let port_not_closed = kinds
            .iter()
            .filter(|k| **k == ViolationKind::PortNotClosed)
            .count();
        assert_eq!(port_not_closed, usize::from(!closes), "{kinds:?}");
        connection.close();
        assert_eq!(
            world.harness.disconnects.load(Ordering::Relaxed),
            1,
            "DisconnectNotify is called once per port"
        );
    }
}

#[test]
fn connections_are_limited_refusals_come_back_and_returned_lengths_are_checked() {
    let world = World::new(World::default_config());
    let first = world.connect();
    assert_eq!(
        client::connect(&world.kernel, PORT, &ConnectOptions::default()).unwrap_err(),
        ConnectError::ConnectionLimit
    );
    assert_eq!(
        client::connect(&world.kernel, "\\Other", &ConnectOptions::default()).unwrap_err(),
        ConnectError::NotFound
    );
    let result = first.send_command(b"cmd", 8).unwrap();
    assert_eq!((result.status, result.returned_len), (STATUS_SUCCESS, 0));
    world
        .harness
        .overstate_returned
        .store(true, Ordering::Relaxed);
    let result = first.send_command(b"cmd", 8).unwrap();
    assert_eq!(result.returned_len, 18);
    assert_eq!(result.output.len(), 8, "never more than the buffer");
    assert_eq!(world.kinds(), [ViolationKind::CallbackContract]);
    drop(first);
    world.harness.refuse_connect.store(true, Ordering::Relaxed);
    assert_eq!(
        client::connect(&world.kernel, PORT, &ConnectOptions::default()).unwrap_err(),
        ConnectError::Refused(vigil_sys::STATUS_ACCESS_DENIED)
    );
}

/// Connects as `account` with process id `pid`: `Ok` (closed again at once) or the error.
fn try_connect_as(world: &World, account: Account, pid: u64) -> Result<(), ConnectError> {
    client::connect(
        &world.kernel,
        PORT,
        &ConnectOptions {
            process_id: pid,
            account,
            ..ConnectOptions::default()
        },
    )
    .map(drop)
}

#[test]
fn the_default_descriptor_admits_system_and_administrators_only() {
    let world = World::new(World::default_config());
    let connected = || world.harness.connected_pid.load(Ordering::Relaxed);
    assert_eq!(
        try_connect_as(&world, Account::User, 0x10),
        Err(ConnectError::AccessDenied)
    );
    assert_ne!(
        connected(),
        0x10,
        "ConnectNotify is not called for a refused client"
    );
    assert_eq!(try_connect_as(&world, Account::Administrator, 0x20), Ok(()));
    assert_eq!(connected(), 0x20);
    assert_eq!(try_connect_as(&world, Account::System, 0x30), Ok(()));
    assert_eq!(connected(), 0x30);
    assert_eq!(
        ConnectError::AccessDenied.status(),
        vigil_sys::STATUS_ACCESS_DENIED
    );

    // A descriptor without FLT_PORT_CONNECT admits nobody; none at all admits everyone.
    world.set_access(PortAccess::SystemAndAdministrators(0x001F_0000));
    assert_eq!(
        try_connect_as(&world, Account::Administrator, 0x40),
        Err(ConnectError::AccessDenied)
    );
    world.set_access(PortAccess::Everyone);
    assert_eq!(try_connect_as(&world, Account::User, 0x50), Ok(()));
    assert_eq!(connected(), 0x50);
    assert!(world.kinds().is_empty(), "{:?}", world.kinds());
}

/// A DisconnectNotify the client's close started is still running (it waits 300 ms before it
/// closes the port) when the filter unregisters: the unregister waits for it, as Filter
/// Manager's rundown of the port does, instead of finding the port open, closing it under the
/// callback and reporting it (a C scanner in a stress race cycle was flagged that way).
#[test]
fn unregister_waits_for_a_disconnect_callback_already_running() {
    let world = World::new(World::default_config());
    world
        .harness
        .disconnect_delay_ms
        .store(300, Ordering::Relaxed);
    let connection = world.connect();
    let closer = thread::spawn(move || connection.close());
    // Let the client's close reach DisconnectNotify.
    thread::sleep(Duration::from_millis(50));
    let filter = world.filter() as usize;
    world
        .kernel
        .call_driver("FilterUnload", Some(0), || {
            crate::fltmgr::registration::flt_unregister_filter(filter as PFLT_FILTER);
        })
        .unwrap();
    closer.join().unwrap();
    assert_eq!(world.harness.disconnects.load(Ordering::Relaxed), 1);
    let kinds = world.kinds();
    assert!(
        !kinds.iter().any(|k| matches!(
            k,
            ViolationKind::PortNotClosed | ViolationKind::InvalidHandle
        )),
        "{:?}",
        world.kernel.violations()
    );
}

/// A callback FltUnregisterFilter is draining may still call FltSendMessage with the filter's
/// handle (valid until the unregister returns): the send fails on the port, not as a bad
/// filter handle; once the unregister has returned, the handle is reported.
#[test]
fn a_send_during_the_unregister_is_not_a_bad_handle_but_one_after_it_is() {
    let world = World::new(World::default_config());
    let _connection = world.connect();
    let filter = world.filter() as usize;
    flt_write(&world.kernel)
        .filters
        .get_mut(&filter)
        .unwrap()
        .unregistered = true;
    let (status, _) = world
        .send_on_thread(vec![1; 8], None, Some(10))
        .join()
        .unwrap();
    assert!(
        !world.kinds().contains(&ViolationKind::InvalidHandle),
        "{status:#x}"
    );
    flt_write(&world.kernel)
        .filters
        .get_mut(&filter)
        .unwrap()
        .unregister_returned = true;
    let _ = world
        .send_on_thread(vec![1; 8], None, Some(10))
        .join()
        .unwrap();
    assert_eq!(world.kinds(), [ViolationKind::InvalidHandle]);
}
