//! The service core against the real vigil.sys running in kernel-sim:
//! connect, handshake, `SetConfig` from a policy, `GetStats`; then the driver is unloaded and
//! loaded again (the `fltmc unload`/`fltmc load` case) and the service rides through.
//!
//! Structured to grow: `Bench` owns the simulator and the driver instances, `ServiceRun` the
//! core on its thread with a log to wait on; events end to end are one more step once
//! kernel-sim drives I/O (phase 2a).

#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vigil_demo::sim_client::SimConnector;
use vigil_kernel_sim::{ConnectError, ConnectOptions, Driver, Sim, SimConfig, UnloadKind};
use vigil_service::{
    ClientError, Connector, Level, Log, MemorySink, Policy, PortClient, Service, ServiceError,
    ServiceOptions, Summary, SystemClock,
};

const SERVICE_PID: u64 = 0x5150;

fn vigil_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys")
        })
        .clone()
}

/// The simulated machine and the driver instances loaded in it.
struct Bench {
    sim: Sim,
    drivers: Vec<Driver>,
}

impl Bench {
    fn new() -> Self {
        let mut bench = Self {
            sim: Sim::new(SimConfig::default()),
            drivers: Vec::new(),
        };
        bench.load();
        bench
    }

    /// `fltmc load vigil`.
    fn load(&mut self) {
        let driver = self.sim.load(vigil_image()).expect("vigil.sys loads");
        assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
        self.drivers.push(driver);
    }

    /// `fltmc unload vigil`.
    fn unload(&mut self) {
        let driver = self.drivers.last_mut().expect("a driver is loaded");
        driver.unload(UnloadKind::Mandatory).expect("unloads");
    }

    /// Every driver instance's report is clean.
    fn finish(self) {
        for driver in self.drivers {
            let report = driver.finish();
            assert!(report.is_clean(), "{}", report.summary());
        }
    }
}

/// Log lines shared with the test thread.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<(Level, String)>>>);

impl Log for SharedLog {
    fn log(&mut self, level: Level, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

impl SharedLog {
    fn count(&self, needle: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.contains(needle))
            .count()
    }

    fn wait_for(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(needle) < times {
            assert!(
                Instant::now() < deadline,
                "no {times} x {needle:?} in the log: {:#?}",
                self.0.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The service core running on its own thread.
struct ServiceRun {
    log: SharedLog,
    control: vigil_service::ServiceControl,
    thread: JoinHandle<(Result<Summary, ServiceError>, MemorySink)>,
}

impl ServiceRun {
    fn start(sim: &Sim, policy: Policy) -> Self {
        let log = SharedLog::default();
        let options = ServiceOptions {
            poll_interval: Duration::from_millis(20),
            backoff_initial: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
            wait_for_driver: true,
            own_pid: SERVICE_PID,
            ..ServiceOptions::default()
        };
        let mut service =
            Service::new(policy, MemorySink::default(), options).with_log(log.clone());
        let control = service.control();
        let mut connector = SimConnector::new(sim.clone(), SERVICE_PID);
        let thread = std::thread::spawn(move || {
            let result = service.run(&mut connector, &SystemClock);
            (result, service.into_sinks())
        });
        Self {
            log,
            control,
            thread,
        }
    }

    fn stop(self) -> (Summary, MemorySink) {
        self.control.request_stop();
        let (result, sinks) = self.thread.join().expect("the service thread");
        (result.expect("the service ran"), sinks)
    }
}

const POLICY: &str = r#"
[driver]
default_verdict = "allow"
verdict_timeout_ms = 500
send_timeout_ms = 250
batch_size = 16

[[rule]]
prefix = '\Device\HarddiskVolume1\Secret'
verdict = "deny"
"#;

#[test]
fn the_service_connects_configures_and_rides_through_a_driver_reload() {
    let mut bench = Bench::new();
    let service = ServiceRun::start(&bench.sim, Policy::parse(POLICY).expect("policy"));
    service.log.wait_for("connected:", 1);

    // The one connection is the service's: another client is refused.
    let intruder = bench
        .sim
        .connect(vigil_protocol::PORT_NAME, &ConnectOptions::default());
    assert_eq!(intruder.unwrap_err(), ConnectError::ConnectionLimit);

    // fltmc unload, then load: the port closes, the service retries, then reconnects to the
    // new instance and notices it is new (its connection count started again).
    bench.unload();
    service.log.wait_for("reconnecting", 1);
    bench.load();
    service.log.wait_for("connected:", 2);
    service.log.wait_for("the driver was reloaded", 1);

    let (summary, sinks) = service.stop();
    assert_eq!(summary.counters.connections, 2);
    assert_eq!(summary.counters.disconnects, 1);
    assert_eq!(summary.counters.driver_instances, 2);
    let hello = summary.driver.expect("handshake done");
    assert_eq!(hello.version, vigil_protocol::Version::CURRENT);
    let stats = summary
        .driver_stats
        .expect("the driver's counters at the stop");
    assert_eq!(
        stats.connections, 1,
        "the second instance saw one connection"
    );
    assert_eq!(stats.events_generated, 0, "no I/O yet");
    assert!(sinks.closed);
    bench.finish();
}

#[test]
fn statuses_map_to_the_service_errors() {
    let mut bench = Bench::new();
    let mut connector = SimConnector::new(bench.sim.clone(), SERVICE_PID);
    let mut client = connector.connect().expect("connects");
    // Busy: the port's one connection is taken.
    assert_eq!(connector.connect().unwrap_err(), ClientError::Busy);
    // A refused command carries the driver's NTSTATUS.
    let mut reply = [0u8; 64];
    match client.send_command(&[0u8; 8], &mut reply) {
        Err(ClientError::CommandRefused { status, .. }) => {
            assert_eq!(status, vigil_sys::STATUS_INVALID_BUFFER_SIZE);
        }
        other => panic!("{other:?}"),
    }
    // The handshake and a bad configuration, through the service's own command helpers.
    let hello = vigil_service::commands::hello(&mut client, SERVICE_PID).expect("hello");
    assert_eq!(hello.version, vigil_protocol::Version::CURRENT);
    // Nothing was sent: a receive times out.
    let mut buf = vec![0u8; 1024];
    assert_eq!(
        client.receive(&mut buf, Duration::from_millis(10)),
        Ok(None)
    );
    // A reply to a message that does not exist: no waiter.
    match client.reply(42, &[0u8; 8]) {
        Err(ClientError::Os { hresult, .. }) => {
            assert_eq!(hresult, 0x801F_0020_u32.cast_signed());
        }
        other => panic!("{other:?}"),
    }
    // Unloaded: the connection is closed, and the port is gone.
    bench.unload();
    assert_eq!(
        client.receive(&mut buf, Duration::from_millis(10)),
        Err(ClientError::Disconnected)
    );
    assert_eq!(
        connector.connect().unwrap_err(),
        ClientError::DriverNotLoaded
    );
    client.close();
    bench.finish();
}
