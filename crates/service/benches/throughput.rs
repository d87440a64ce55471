//! Events per second through the service core, with the sink's cost shown separately.
//!
//! Each iteration queues 64 000 events (1 000 batches of 64, the driver's default batch size,
//! each record with a 38-character path) in the in-memory fake driver, outside the timed part,
//! then times `Service::run` until the port is drained:
//! * `core_null_sink`: receive, batch check, sequence check, dispatch; the sink does nothing;
//! * `core_json_format`: the same, and every record formatted as its JSON line (into memory);
//! * `core_jsonl_tmpfs`: the same into the real `JsonlSink` (buffered writes, flushed per
//!   batch) on a tmpfs file (`/dev/shm` when present), so the disk's speed is not measured.
//!
//! The sink's cost is the difference between the rows. Run: `cargo bench -p vigil-service
//! --bench throughput`. The target is at least 500 000 events/s into the JSON Lines sink.

#[path = "../tests/common/fake.rs"]
mod fake;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fake::FakeDriver;
use vigil_protocol::EventRecord;
use vigil_service::record::push_event_json;
use vigil_service::{
    Gap, JsonlOptions, JsonlSink, MemoryLog, NullSink, Policy, Service, ServiceOptions, Sink,
    SystemClock,
};

const BATCHES: u64 = 1_000;
const PER_BATCH: usize = 64;
const EVENTS: u64 = BATCHES * PER_BATCH as u64;

/// Formats every record as the JSONL sink does, into a reused buffer, and writes nothing.
#[derive(Default)]
struct FormatOnly(Vec<u8>);

impl Sink for FormatOnly {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&vigil_service::ProcessInfo>,
    ) -> io::Result<()> {
        self.0.clear();
        push_event_json(&mut self.0, epoch, record, process);
        Ok(())
    }
    fn gap(&mut self, _gap: &Gap, _time: u64) -> io::Result<()> {
        Ok(())
    }
}

fn tmpfs_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("vigil-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

/// Runs the core over `EVENTS` queued events into `sink`; returns the time `run` took.
fn run_once<S: Sink + Send>(sink: S) -> Duration {
    let driver = FakeDriver::new();
    driver.push_events(0..EVENTS, PER_BATCH);
    let mut service = Service::new(Policy::default(), sink, ServiceOptions::default())
        .with_log(MemoryLog::default());
    driver.stop_when_idle(&service.control());
    let mut connector = driver.connector();
    let start = Instant::now();
    let summary = service
        .run(&mut connector, &SystemClock)
        .expect("the run ends with a stop");
    let elapsed = start.elapsed();
    assert_eq!(summary.counters.events_written, EVENTS);
    elapsed
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("service_core");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);
    group.bench_function("core_null_sink", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_once(NullSink)).sum());
    });
    group.bench_function("core_json_format", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_once(FormatOnly::default())).sum());
    });
    let dir = tmpfs_dir();
    group.bench_function("core_jsonl_tmpfs", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|i| {
                    let path = dir.join(format!("vigil-{i}.jsonl"));
                    let _ = std::fs::remove_file(&path);
                    let options = JsonlOptions {
                        // No rotation inside a run: the file bound is above one run's output.
                        max_bytes: 1 << 30,
                        ..JsonlOptions::new(&path)
                    };
                    let elapsed = run_once(JsonlSink::open(options).expect("tmpfs file"));
                    let _ = std::fs::remove_file(&path);
                    elapsed
                })
                .sum()
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, throughput);
criterion_main!(benches);
