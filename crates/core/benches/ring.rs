//! Event ring benchmark beside crossbeam's `ArrayQueue` (a well-known bounded MPMC queue of fixed
//! size elements), measured in the same run: push alone, drain alone, and push from two producer
//! threads at once. 64-byte records. Each iteration is one record, so criterion's time is ns per
//! record and its throughput is records per second. Run: `cargo bench -p vigil-core --bench ring`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use crossbeam_queue::ArrayQueue;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use vigil_core::{EventRing, StdPlatform};

const RECORD: usize = 64;
/// Records per timed batch; the ring and the queue hold a whole batch, emptied between batches.
const BATCH: usize = 16 * 1024;
/// 64-byte payload + 16-byte ring header, for two producers' batches.
const RING_BYTES: usize = 2 * BATCH * (RECORD + 16) * 2;

fn fill(buf: &mut [u8]) {
    buf[8] = 0x5A;
}

/// Runs `iters` operations in timed batches of at most `BATCH`, with `reset` (untimed) between.
fn batched(iters: u64, mut timed: impl FnMut(usize), mut reset: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut remaining = iters;
    while remaining > 0 {
        let n = usize::try_from(remaining.min(BATCH as u64)).unwrap();
        let start = Instant::now();
        timed(n);
        total += start.elapsed();
        reset();
        remaining -= n as u64;
    }
    total
}

fn push_uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_1_producer");
    group.throughput(Throughput::Elements(1));
    let ring = EventRing::<StdPlatform>::with_capacity(RING_BYTES);
    let out = std::cell::RefCell::new(vec![0u8; RING_BYTES]);
    group.bench_function(BenchmarkId::new("vigil_event_ring", RECORD), |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                |n| {
                    for _ in 0..n {
                        let _ = black_box(ring.push(RECORD, fill));
                    }
                },
                || {
                    while ring
                        .consumer()
                        .unwrap()
                        .drain(&mut out.borrow_mut())
                        .records
                        > 0
                    {}
                },
            )
        });
    });
    let queue = ArrayQueue::<[u8; RECORD]>::new(2 * BATCH);
    group.bench_function(BenchmarkId::new("crossbeam_array_queue", RECORD), |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                |n| {
                    for _ in 0..n {
                        let mut record = [0u8; RECORD];
                        fill(&mut record);
                        let _ = black_box(queue.push(record));
                    }
                },
                || while queue.pop().is_some() {},
            )
        });
    });
    group.finish();
}

fn drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("drain");
    group.throughput(Throughput::Elements(1));
    let ring = EventRing::<StdPlatform>::with_capacity(RING_BYTES);
    let mut out = vec![0u8; 64 * 1024];
    group.bench_function(BenchmarkId::new("vigil_event_ring", RECORD), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters;
            let mut consumer = ring.consumer().unwrap();
            while remaining > 0 {
                let n = remaining.min(BATCH as u64);
                for _ in 0..n {
                    let _ = ring.push(RECORD, fill);
                }
                let start = Instant::now();
                let mut drained = 0;
                while drained < n {
                    drained += black_box(consumer.drain(&mut out)).records as u64;
                }
                total += start.elapsed();
                remaining -= n;
            }
            total
        });
    });
    let queue = ArrayQueue::<[u8; RECORD]>::new(2 * BATCH);
    group.bench_function(BenchmarkId::new("crossbeam_array_queue", RECORD), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters;
            while remaining > 0 {
                let n = remaining.min(BATCH as u64);
                for _ in 0..n {
                    let _ = queue.push([0x5A; RECORD]);
                }
                let start = Instant::now();
                for _ in 0..n {
                    black_box(queue.pop());
                }
                total += start.elapsed();
                remaining -= n;
            }
            total
        });
    });
    group.finish();
}

/// Two producer threads push `iters` records in all, at the same time; wall time per record.
fn push_two_producers(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_2_producers");
    group.throughput(Throughput::Elements(1));
    let ring = EventRing::<StdPlatform>::with_capacity(RING_BYTES);
    let mut out = vec![0u8; RING_BYTES];
    group.bench_function(BenchmarkId::new("vigil_event_ring", RECORD), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters;
            while remaining > 0 {
                let n = remaining.min(2 * BATCH as u64);
                let barrier = Barrier::new(3);
                let elapsed = std::thread::scope(|scope| {
                    for half in [n / 2, n - n / 2] {
                        let (ring, barrier) = (&ring, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            for _ in 0..half {
                                let _ = black_box(ring.push(RECORD, fill));
                            }
                            barrier.wait();
                        });
                    }
                    barrier.wait();
                    let start = Instant::now();
                    barrier.wait();
                    start.elapsed()
                });
                total += elapsed;
                while ring.consumer().unwrap().drain(&mut out).records > 0 {}
                remaining -= n;
            }
            total
        });
    });
    let queue = ArrayQueue::<[u8; RECORD]>::new(4 * BATCH);
    group.bench_function(BenchmarkId::new("crossbeam_array_queue", RECORD), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters;
            while remaining > 0 {
                let n = remaining.min(2 * BATCH as u64);
                let barrier = Barrier::new(3);
                let elapsed = std::thread::scope(|scope| {
                    for half in [n / 2, n - n / 2] {
                        let (queue, barrier) = (&queue, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            for _ in 0..half {
                                let mut record = [0u8; RECORD];
                                fill(&mut record);
                                let _ = black_box(queue.push(record));
                            }
                            barrier.wait();
                        });
                    }
                    barrier.wait();
                    let start = Instant::now();
                    barrier.wait();
                    start.elapsed()
                });
                total += elapsed;
                while queue.pop().is_some() {}
                remaining -= n;
            }
            total
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Every benchmark of this file (what `criterion_group!` would generate, documented).
fn benches() {
    let mut criterion = config().configure_from_args();
    push_uncontended(&mut criterion);
    drain(&mut criterion);
    push_two_producers(&mut criterion);
}

criterion_main!(benches);
