//! The worst verdict latency while the JSON Lines sink rotates and syncs (issue 15, defect 7):
//! how long a verdict request waits, from the moment the driver queued it to the service's
//! reply, when the output is doing its heaviest disk work.
//!
//! The in-memory fake driver offers a paced stream (default 2,000 messages/s for 5 s: event
//! batches of 64 records, one verdict request in ten messages); a message becomes available
//! at its scheduled instant, so time spent queued behind a busy receiver counts. The sink is
//! the real `JsonlSink` on the target directory's disk (not tmpfs: `fsync` must reach a disk)
//! with a 1 MiB bound, 1,000 rotated files kept (every rotation renames all of them) and a
//! sync on every tick. Printed: verdict latency (median, 99th percentile, worst), and the
//! longest single sink call, which is what a verdict could wait behind if both ran on one
//! thread. Figures are printed, never asserted.
//!
//! Run: `cargo bench -p vigil-service --bench verdict_latency` (`VIGIL_BENCH_SECONDS=N` and
//! `VIGIL_BENCH_RATE=M` change the duration and the messages per second).

#[path = "../tests/common/fake.rs"]
mod fake;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake::{FakeDriver, FakePort};
use vigil_protocol::{EventFlags, EventRecord, Utf16Str, VerdictOperation, VerdictRequestRepr};
use vigil_service::{
    ClientError, Gap, Incoming, JsonlOptions, JsonlSink, MemoryLog, Policy, PortClient, Service,
    ServiceOptions, Sink, SystemClock,
};

const POLICY: &str = r#"
[[rule]]
prefix = '\Device\HarddiskVolume1\Secret'
verdict = "deny"
"#;

/// Shared between the timed port and the report.
#[derive(Default)]
struct Timings {
    /// When each pending verdict request became available, by message id.
    offered: Vec<(u64, Instant)>,
    latencies: Vec<Duration>,
}

/// The fake's port, with each message held back until its scheduled instant.
struct PacedPort {
    inner: FakePort,
    start: Instant,
    interval: Duration,
    taken: u32,
    timings: Arc<Mutex<Timings>>,
}

impl PortClient for PacedPort {
    fn receive(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<Incoming>, ClientError> {
        let due = self.start + self.interval * self.taken;
        let now = Instant::now();
        if due > now {
            if due - now > timeout {
                std::thread::sleep(timeout);
                return Ok(None);
            }
            std::thread::sleep(due - now);
        }
        let got = self.inner.receive(buf, timeout)?;
        if let Some(incoming) = &got {
            self.taken += 1;
            if incoming.reply_len > 0 {
                self.timings
                    .lock()
                    .unwrap()
                    .offered
                    .push((incoming.message_id, due.min(Instant::now())));
            }
        }
        Ok(got)
    }

    fn reply(&mut self, message_id: u64, reply: &[u8]) -> Result<(), ClientError> {
        let replied = Instant::now();
        let mut timings = self.timings.lock().unwrap();
        if let Some(at) = timings.offered.iter().position(|(id, _)| *id == message_id) {
            let (_, offered) = timings.offered.swap_remove(at);
            timings.latencies.push(replied - offered);
        }
        drop(timings);
        self.inner.reply(message_id, reply)
    }

    fn send_command(&mut self, command: &[u8], reply: &mut [u8]) -> Result<usize, ClientError> {
        self.inner.send_command(command, reply)
    }

    fn cancel_receives(&mut self) {
        self.inner.cancel_receives();
    }

    fn close(&mut self) {
        self.inner.close();
    }
}

/// The JSON Lines sink, with the longest single call measured.
struct TimedSink {
    inner: JsonlSink,
    longest: Arc<Mutex<Duration>>,
}

impl TimedSink {
    fn timed<R>(&mut self, f: impl FnOnce(&mut JsonlSink) -> R) -> R {
        let start = Instant::now();
        let result = f(&mut self.inner);
        let took = start.elapsed();
        let mut longest = self.longest.lock().unwrap();
        *longest = (*longest).max(took);
        result
    }
}

impl Sink for TimedSink {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&vigil_service::ProcessInfo>,
    ) -> io::Result<()> {
        self.timed(|s| s.event(epoch, record, process))
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.timed(|s| s.gap(gap, time))
    }
    fn end_batch(&mut self) -> io::Result<()> {
        self.timed(Sink::end_batch)
    }
    fn tick(&mut self, now: Instant) -> io::Result<()> {
        self.timed(|s| s.tick(now))
    }
    fn close(&mut self) -> io::Result<()> {
        self.timed(Sink::close)
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short sorted list"
    )]
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Nine event batches of 64 records, then a verdict request, and again, `messages` in all.
fn script(driver: &FakeDriver, messages: u64) {
    let secret: Vec<u16> = "\\Device\\HarddiskVolume1\\Secret\\x"
        .encode_utf16()
        .collect();
    let mut next_seq = 0u64;
    for i in 0..messages {
        if i % 10 == 9 {
            driver.push_verdict_request(&VerdictRequestRepr {
                request_id: i,
                operation: VerdictOperation::Create,
                flags: EventFlags::NONE,
                process_id: 7,
                path: Utf16Str::from_units(&secret),
                target: Utf16Str::EMPTY,
            });
        } else {
            driver.push_events(next_seq..next_seq + 64, 64);
            next_seq += 64;
        }
    }
}

fn main() {
    let seconds = env_or("VIGIL_BENCH_SECONDS", 5);
    let rate = env_or("VIGIL_BENCH_RATE", 2_000).max(1);
    let messages = seconds * rate;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .join("target")
        .join(format!("vigil-verdict-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");

    let driver = FakeDriver::new();
    script(&driver, messages);
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let sink = TimedSink {
        inner: JsonlSink::open(JsonlOptions {
            max_bytes: 1 << 20,
            keep: 1_000,
            sync_interval: Duration::ZERO,
            ..JsonlOptions::new(dir.join("vigil.jsonl"))
        })
        .expect("the bench's output file"),
        longest: longest.clone(),
    };
    let timings = Arc::new(Mutex::new(Timings::default()));
    let mut service = Service::new(
        Policy::parse(POLICY).expect("policy"),
        sink,
        ServiceOptions::default(),
    )
    .with_log(MemoryLog::default());
    driver.stop_when_idle(&service.control());
    let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let mut inner = driver.connector();
    let connector_timings = timings.clone();
    let mut connector = move || {
        let port = vigil_service::Connector::connect(&mut inner)?;
        // The schedule starts at the connection (the run has one).
        Ok::<_, ClientError>(PacedPort {
            inner: port,
            start: Instant::now(),
            interval,
            taken: 0,
            timings: connector_timings.clone(),
        })
    };
    let started = Instant::now();
    let summary = service
        .run(&mut connector, &SystemClock)
        .expect("the run ends with a stop");
    let elapsed = started.elapsed();
    let stats = service.sinks().inner.stats();
    let mut latencies = std::mem::take(&mut timings.lock().unwrap().latencies);
    latencies.sort_unstable();
    println!(
        "verdict latency while rotating and syncing: {} verdicts over {:.1} s, {} events \
         written, {} rotations (up to 1000 renames each), {} syncs",
        latencies.len(),
        elapsed.as_secs_f64(),
        summary.counters.events_written,
        stats.rotations,
        stats.syncs
    );
    println!(
        "  median {:?}, p99 {:?}, worst {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "  longest single sink call (what a verdict would wait behind on one thread): {:?}",
        *longest.lock().unwrap()
    );
    println!(
        "  receiver waits for a full backlog: {}",
        summary.counters.backlog_waits
    );
    let _ = std::fs::remove_dir_all(&dir);
}
