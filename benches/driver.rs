//! Driver measurements on the real vigil.sys in kernel-sim (issue 6), printed, never asserted:
//!
//! * (a) added cost per operation in the callbacks: median ns per create + write pair through
//!   kernel-sim, for vigil.sys and for the `noop-filter` baseline build (same registration,
//!   callbacks that do nothing) in the same run, with no client connected and with a client
//!   draining; the difference is what Vigil's callbacks add. Target: under 2 µs.
//! * (b) end-to-end events per second into a draining client: batching (vigil.sys) beside
//!   the `message-per-event` baseline (one `FltSendMessage` per event, as Microsoft's scanner sample
//!   sends) in the same run: the delivery of a backlog (ring to client, decoded), and a live
//!   stream (I/O and delivery at once). Target: at least 1 M events/s with batching.
//!
//! `cargo bench --bench driver` (release build of kernel-sim; the images are always release).
//! `VIGIL_BENCH_SCALE` (default 1) multiplies the operation counts; `-- added` or
//! `-- throughput` runs one part only.

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the driver benchmarks run the image in kernel-sim: Linux only");
}

#[cfg(target_os = "linux")]
#[expect(
    clippy::cast_precision_loss,
    reason = "counts turned into printed rates and ratios"
)]
mod linux {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use vigil_kernel_sim::fixtures::NTFS;
    use vigil_kernel_sim::{
        ConnectOptions, Driver, IoConfig, PortConnection, PortError, RegistryValue, Requestor, Sim,
        SimConfig, VolumeKind,
    };
    use vigil_protocol::{GetStats, MAX_MESSAGE_SIZE, Message, PORT_NAME, Stats, StatsReply};
    use vigil_sys::{FILE_OPEN, FILE_OPEN_IF, GENERIC_WRITE};

    fn scale() -> usize {
        std::env::var("VIGIL_BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1)
    }

    fn image(variant: &xtask::Variant) -> PathBuf {
        xtask::build_driver(variant).unwrap_or_else(|e| panic!("building {}: {e}", variant.name()))
    }

    fn load(image: &Path, ring_bytes: u32, base: SimConfig) -> Driver {
        let sim = Sim::new(SimConfig {
            registry: vec![("RingBytes".into(), RegistryValue::Dword(ring_bytes))],
            io: IoConfig {
                volumes: vec![(VolumeKind::Ntfs, NTFS.to_owned())],
                ..IoConfig::default()
            },
            ..base
        });
        let driver = sim.load(image).expect("loads");
        assert_eq!(driver.entry_status(), Some(0));
        driver
    }

    /// A client that takes every message and decodes every record, as the service does.
    struct Drain {
        port: Arc<PortConnection>,
        received: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Drain {
        fn connect(driver: &Driver) -> Self {
            let port = Arc::new(
                driver
                    .connect(
                        PORT_NAME,
                        &ConnectOptions {
                            process_id: 0x2468,
                            context: Vec::new(),
                            account: vigil_kernel_sim::Account::Administrator,
                        },
                    )
                    .unwrap_or_else(|e| panic!("connects: {e}: {:#?}", driver.violations())),
            );
            let received = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (port, received, stop) =
                    (Arc::clone(&port), Arc::clone(&received), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
                    while !stop.load(Ordering::Acquire) {
                        match port.get_message(&mut buf, Duration::from_millis(20)) {
                            Ok(m) => {
                                if let Ok(Message::EventBatch(batch)) =
                                    Message::parse(&buf[..m.len])
                                {
                                    let mut n = 0;
                                    let mut check = 0u64;
                                    for record in batch.records() {
                                        check ^= record.sequence() ^ u64::from(record.volume_id());
                                        check ^= record.path().len_units() as u64;
                                        n += 1;
                                    }
                                    std::hint::black_box(check);
                                    received.fetch_add(n, Ordering::Release);
                                }
                            }
                            Err(PortError::Timeout) => {}
                            Err(_) => return,
                        }
                    }
                })
            };
            Self {
                port,
                received,
                stop,
                thread: Some(thread),
            }
        }

        fn stats(&self) -> Stats {
            let mut request = [0u8; GetStats::LEN];
            GetStats.emit(&mut request).unwrap();
            let out = self.port.send_command(&request, StatsReply::LEN).unwrap();
            StatsReply::parse(&out.output).unwrap().stats
        }

        fn wait_received(&self, n: u64, limit: Duration) -> bool {
            let deadline = Instant::now() + limit;
            while self.received.load(Ordering::Acquire) < n {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::yield_now();
            }
            true
        }
    }

    impl Drop for Drain {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            self.port.close();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// vigil.sys's pair cost over the no-op filter's, measurement configuration, when issues
    /// 16 and 17 were filed (the figure both judge against).
    const RATIO_AT_FILING: f64 = 2.71;

    fn median(mut samples: Vec<u64>) -> u64 {
        samples.sort_unstable();
        samples[samples.len() / 2]
    }

    /// Median ns of one create + write pair (cleanup and close untimed), over `n` files
    /// reopened in turn.
    fn pair_cost(driver: &Driver, n: usize) -> u64 {
        let io = driver.io(Requestor { pid: 100, tid: 1 });
        let v = driver.volume(NTFS).unwrap();
        let paths: Vec<String> = (0..64).map(|i| format!(r"\bench\f{i:02}.dat")).collect();
        let d = io.create(v, r"\bench", FILE_OPEN_IF, 1, 0).unwrap();
        io.close(d);
        for p in &paths {
            let f = io.create(v, p, FILE_OPEN_IF, 0, GENERIC_WRITE).unwrap();
            io.close(f);
        }
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let path = &paths[i % paths.len()];
            let start = Instant::now();
            let f = io.create(v, path, FILE_OPEN, 0, GENERIC_WRITE).unwrap();
            io.write(&f, 0, b"0123456789abcdef");
            let elapsed = start.elapsed();
            io.cleanup(&f);
            io.close(f);
            samples.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
        median(samples)
    }

    /// (a) in both kernel-sim configurations: the measurement one first (the target is judged
    /// there), then Verifier's special pool and stack poisoning, for comparison.
    fn measure_added_cost(vigil: &Path, noop: &Path) {
        measure_added_cost_in(
            vigil,
            noop,
            "kernel-sim for measurement (standard pool, no stack poisoning)",
            SimConfig::for_measurement,
            true,
        );
        measure_added_cost_in(
            vigil,
            noop,
            "kernel-sim with special pool and stack poisoning (the test configuration)",
            SimConfig::default,
            false,
        );
    }

    /// Rounds per cell: each loads the driver afresh (thread placement differs from load to
    /// load on a small machine), and the cell reports the median of the rounds' medians.
    const ROUNDS: usize = 5;

    fn measure_added_cost_in(
        vigil: &Path,
        noop: &Path,
        title: &str,
        config: fn() -> SimConfig,
        judged: bool,
    ) {
        let n = 20_000 * scale();
        println!(
            "(a) callbacks: median ns per create + write pair, {title}; {ROUNDS} rounds of {n} pairs per cell, median of the rounds (min..max)"
        );
        println!("    {:<20} {:>22} {:>22}", "", "no client", "draining");
        let mut cells = Vec::new();
        for (name, image) in [("bench-noop-filter", noop), ("vigil.sys", vigil)] {
            let mut row = Vec::new();
            for client in [false, true] {
                let mut rounds = Vec::with_capacity(ROUNDS);
                for round in 0..ROUNDS {
                    let driver = load(image, 4 * 1024 * 1024, config());
                    let drain = client.then(|| Drain::connect(&driver));
                    // Warm up (page faults, name tables), then measure.
                    let _ = pair_cost(&driver, 1_000);
                    rounds.push(pair_cost(&driver, n));
                    drop(drain);
                    let report = driver.finish();
                    assert!(report.is_clean(), "{}", report.summary());
                    if name == "vigil.sys" && !client && judged && round == 0 {
                        print_routine_calls(&report, n);
                    }
                }
                row.push(rounds);
            }
            let show = |r: &Vec<u64>| {
                format!(
                    "{} ns ({}..{})",
                    median(r.clone()),
                    r.iter().min().unwrap(),
                    r.iter().max().unwrap()
                )
            };
            println!("    {name:<20} {:>22} {:>22}", show(&row[0]), show(&row[1]));
            cells.push(row);
        }
        for (i, label) in ["no client", "draining"].iter().enumerate() {
            let (noop, vigil) = (&cells[0][i], &cells[1][i]);
            let added = median(vigil.clone()).saturating_sub(median(noop.clone()));
            // Issues 16 and 17 judge the cost as this ratio, measured in one run.
            let ratio = median(vigil.clone()) as f64 / median(noop.clone()).max(1) as f64;
            // The least favourable pairing of rounds: Vigil's slowest against the fastest no-op.
            let worst = vigil
                .iter()
                .max()
                .unwrap()
                .saturating_sub(*noop.iter().min().unwrap());
            if judged {
                println!(
                    "    added by Vigil ({label}): {added} ns per pair, {worst} ns in the worst pairing of rounds (target < 2000 ns): {}",
                    if added < 2_000 { "met" } else { "NOT met" }
                );
                println!(
                    "    vigil.sys / bench-noop-filter ({label}): {ratio:.2} (target <= {RATIO_AT_FILING}, the ratio when issues 16 and 17 were filed; issue 16 allows 10% more): {}",
                    if ratio <= RATIO_AT_FILING {
                        "met"
                    } else {
                        "NOT met"
                    }
                );
            } else {
                println!(
                    "    added by Vigil ({label}): {added} ns per pair, {worst} ns in the worst pairing of rounds"
                );
            }
        }
    }

    /// What vigil.sys's callbacks call per pair (kernel-sim emulates each routine).
    fn print_routine_calls(report: &vigil_kernel_sim::Report, n: usize) {
        // The measured pairs, the warm-up and the 65 setup opens.
        let pairs = (n + 1_000 + 65) as f64;
        let mut by_routine: Vec<(&String, &u64)> = report.routine_calls.iter().collect();
        by_routine.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = by_routine
            .iter()
            .take(8)
            .map(|(r, c)| format!("{r} {:.1}", **c as f64 / pairs))
            .collect();
        println!("    vigil.sys routine calls per pair: {}", top.join(", "));
        // Issue 16: at most one name query per handle for its open, first write and close.
        let per_pair =
            |routine: &str| report.routine_calls.get(routine).copied().unwrap_or(0) as f64 / pairs;
        println!(
            "    name queries per pair: {:.2} (FltGetFileNameInformation); file ID queries per pair: {:.2} (FltQueryInformationFile)",
            per_pair("FltGetFileNameInformation"),
            per_pair("FltQueryInformationFile")
        );
        println!(
            "    driver calls (callbacks) per pair: {:.1}",
            report.driver_calls as f64 / pairs
        );
    }

    /// Opens `n` times (one event each), from `threads` threads.
    fn generate(driver: &Driver, n: usize, threads: u32) {
        let v = driver.volume(NTFS).unwrap();
        let setup = driver.io(Requestor { pid: 100, tid: 1 });
        let f = setup.create(v, r"\e.dat", FILE_OPEN_IF, 0, 0).unwrap();
        setup.close(f);
        std::thread::scope(|s| {
            for t in 0..threads {
                // Distinct thread ids: kernel-sim tells threads apart by them (spin lock owners).
                let io = driver.io(Requestor {
                    pid: 200 + t,
                    tid: 10 + t,
                });
                s.spawn(move || {
                    for _ in 0..n / threads as usize {
                        let f = io.create(v, r"\e.dat", FILE_OPEN, 0, 0).unwrap();
                        io.close(f);
                    }
                });
            }
        });
    }

    fn measure_throughput(vigil: &Path, per_event: &Path) {
        let n = 200_000 * scale();
        println!("(b) end to end into a draining client that decodes every record ({n} events)");
        for (name, image) in [
            ("batching (vigil.sys)", vigil),
            ("message per event", per_event),
        ] {
            // Backlog: the ring filled with no client, then one client drains it.
            let driver = load(image, 64 * 1024 * 1024, SimConfig::for_measurement());
            let start = Instant::now();
            generate(&driver, n, 2);
            let generation = start.elapsed();
            let start = Instant::now();
            let drain = Drain::connect(&driver);
            let complete = drain.wait_received(n as u64, Duration::from_mins(2));
            let elapsed = start.elapsed();
            let stats = drain.stats();
            drop(drain);
            let report = driver.finish();
            assert!(report.is_clean(), "{}", report.summary());
            let received = stats.events_delivered;
            println!(
                "    {name:<22} backlog: {:>6.2} M events/s delivered ({received} in {:.1} ms, {} batches{}); generating them: {:.2} M events/s",
                received as f64 / elapsed.as_secs_f64() / 1e6,
                elapsed.as_secs_f64() * 1e3,
                stats.batches_sent,
                if complete { "" } else { ", INCOMPLETE" },
                n as f64 / generation.as_secs_f64() / 1e6,
            );
            // Live: I/O and delivery at once; time until the last event is received.
            let driver = load(image, 64 * 1024 * 1024, SimConfig::for_measurement());
            let drain = Drain::connect(&driver);
            let start = Instant::now();
            generate(&driver, n, 2);
            let complete = drain.wait_received(n as u64, Duration::from_mins(2));
            let elapsed = start.elapsed();
            let stats = drain.stats();
            drop(drain);
            let report = driver.finish();
            assert!(report.is_clean(), "{}", report.summary());
            println!(
                "    {name:<22} live:    {:>6.2} M events/s end to end ({} delivered, {} dropped{})",
                stats.events_delivered as f64 / elapsed.as_secs_f64() / 1e6,
                stats.events_delivered,
                stats.dropped_total(),
                if complete { "" } else { ", INCOMPLETE" },
            );
        }
    }

    pub fn main() {
        let vigil = image(&xtask::Variant::production());
        let noop = image(&xtask::Variant::baseline(xtask::Baseline::NoopFilter));
        let per_event = image(&xtask::Variant::baseline(xtask::Baseline::MessagePerEvent));
        // `cargo bench --bench driver -- added` (or `-- throughput`) runs one part only.
        let wanted: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let runs =
            |part: &str| wanted.is_empty() || wanted.iter().any(|w| part.contains(w.as_str()));
        if runs("added") {
            measure_added_cost(&vigil, &noop);
        }
        if runs("throughput") {
            measure_throughput(&vigil, &per_event);
        }
    }
}
