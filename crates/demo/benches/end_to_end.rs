//! End-to-end throughput, from the driver through the service into a sink: the real `vigil.sys`
//! in kernel-sim builds a backlog of events (no service connected, a 64 MiB ring), then the
//! service core connects and the time until every event is delivered is measured — with the
//! JSON Lines sink on tmpfs (`/dev/shm`), beside a null sink in the same run (the sink's cost is
//! the difference).
//!
//! A backlog separates delivery from event *generation*: kernel-sim's emulated I/O, with its
//! Driver-Verifier-style checks, produces events more slowly than Windows would, and a live
//! measurement would measure that instead.
//!
//! `cargo bench -p vigil-demo --bench end_to_end`. Prints figures; asserts
//! only that every run was clean (no violation, no leak, every event delivered).

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
fn main() {
    imp::main();
}

#[cfg(target_os = "linux")]
mod imp {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use vigil_demo::machine::Machine;
    use vigil_demo::service_thread::{ServiceHandle, ServiceSetup};
    use vigil_kernel_sim::fixtures::NTFS;
    use vigil_kernel_sim::{RegistryValue, Requestor, SimConfig};
    use vigil_service::{JsonlOptions, JsonlSink, NullSink, Policy, Sink};
    use vigil_sys::{FILE_OPEN, FILE_OPEN_IF};

    /// Events in the backlog: one `Open` per create (no write, so no other event).
    fn events() -> usize {
        std::env::var("VIGIL_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000)
    }

    fn generate(machine: &Machine, n: usize) {
        let driver = machine.driver();
        let volume = driver.volume(NTFS).expect("the NTFS volume");
        let setup = driver.io(Requestor { pid: 100, tid: 1 });
        let file = setup
            .create(volume, r"\e.dat", FILE_OPEN_IF, 0, 0)
            .expect("creating the file");
        setup.close(file);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                // Distinct thread ids: kernel-sim tells threads apart by them.
                let io = driver.io(Requestor {
                    pid: 200 + t,
                    tid: 10 + t,
                });
                s.spawn(move || {
                    for _ in 0..n / 2 {
                        let file = io
                            .create(volume, r"\e.dat", FILE_OPEN, 0, 0)
                            .expect("opening the file");
                        io.close(file);
                    }
                });
            }
        });
    }

    /// One run: backlog, then the service drains it into `sink`. Returns (events, seconds).
    fn run(image: &Path, sink: Box<dyn Sink + Send>) -> (u64, f64) {
        let config = SimConfig {
            registry: vec![
                ("RingBytes".into(), RegistryValue::Dword(64 << 20)),
                ("FlushIntervalMs".into(), RegistryValue::Dword(10)),
            ],
            ..SimConfig::default()
        };
        let mut machine = Machine::with_config(image, config);
        machine.load().expect("vigil.sys loads");
        generate(&machine, events());
        let started = Instant::now();
        let service = ServiceHandle::start(
            machine.sim(),
            ServiceSetup::new(Policy::default(), vec![sink]),
        );
        let stats = service
            .wait_drained(Duration::from_mins(5))
            .expect("the driver's counters");
        let elapsed = started.elapsed().as_secs_f64();
        let summary = service.stop().expect("the service stops cleanly");
        let report = machine.unload(Some(stats)).expect("unload").report.clone();
        assert!(report.is_clean(), "{}", report.summary());
        assert_eq!(stats.dropped_total(), 0, "{stats:?}");
        assert_eq!(
            summary.counters.events_written, stats.events_delivered,
            "{summary:?}"
        );
        (stats.events_delivered, elapsed)
    }

    /// Millions per second (figures for display: a rounding of huge counts does not matter).
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    fn millions_per_second(n: u64, secs: f64) -> f64 {
        n as f64 / secs / 1e6
    }

    /// Bytes as MiB, for display.
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    fn mib(bytes: u64) -> f64 {
        bytes as f64 / f64::from(1u32 << 20)
    }

    pub fn main() {
        let image: PathBuf =
            xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys");
        let jsonl = PathBuf::from("/dev/shm/vigil-bench.jsonl");
        let _ = std::fs::remove_file(&jsonl);
        println!(
            "end to end: vigil.sys (kernel-sim) -> service core -> sink, {} events",
            events()
        );
        let (n, secs) = run(&image, Box::new(NullSink));
        println!(
            "    null sink:             {:>6.2} M events/s ({n} in {secs:.2} s)",
            millions_per_second(n, secs)
        );
        let options = JsonlOptions::new(&jsonl);
        let sink = JsonlSink::open(options).expect("opening the JSON Lines file on tmpfs");
        let (n, secs) = run(&image, Box::new(sink));
        let bytes = std::fs::metadata(&jsonl).map_or(0, |m| m.len());
        println!(
            "    JSON Lines on tmpfs:   {:>6.2} M events/s ({n} in {secs:.2} s, {:.1} MiB written)",
            millions_per_second(n, secs),
            mib(bytes)
        );
        let _ = std::fs::remove_file(&jsonl);
    }
}
