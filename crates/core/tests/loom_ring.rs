//! loom model: ring producers racing the consumer. Two producers push records (tagged with their
//! producer id and index) into a ring small enough to fill and wrap; the consumer drains while they
//! push, then once more after they finish. Checked: every accepted record is drained exactly once,
//! with the sequence number the producer was given, in strictly increasing sequence order and in
//! each producer's order; `pushed == drained + dropped`. loom's cells shadow the ring's bytes, so a
//! read of a record being written (or a write into space not yet given back) is a causality
//! violation. Twins: relaxed commit store; consumer that does not stop at an uncommitted record;
//! consumer that gives space back before copying.
#![cfg(loom)]

mod common;

use loom::thread;
use vigil_core::twin::{
    Removal, Sound, WithoutCommitRelease, WithoutStopAtBusy, WithoutTailAfterCopy,
};
use vigil_core::{BoxedRing, EventRing, LoomPlatform};

/// Two 8-byte records fit (24 bytes each with the header), the third wraps.
const CAPACITY: usize = 64;
const PAYLOAD: usize = 8;

fn encode(producer: u8, index: u8, seq: u64, buf: &mut [u8]) {
    buf[0] = producer;
    buf[1] = index;
    buf[2..8].copy_from_slice(&seq.to_le_bytes()[..6]);
}

fn model<R: Removal>(per_producer: u8, consumer_rounds: usize) {
    let ring: common::Shared<BoxedRing<LoomPlatform<R>>> =
        common::Shared::new(EventRing::with_capacity(CAPACITY));
    let producers: Vec<_> = (0..2u8)
        .map(|producer| {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for index in 0..per_producer {
                    if let Ok(seq) =
                        ring.push(PAYLOAD, |seq, buf| encode(producer, index, seq, buf))
                    {
                        accepted.push(seq);
                    }
                }
                accepted
            })
        })
        .collect();

    let mut consumer = ring.consumer().expect("one consumer");
    let mut records: Vec<(u8, u8, u64)> = Vec::new();
    let mut drain = |records: &mut Vec<(u8, u8, u64)>| {
        let mut out = [0u8; 2 * PAYLOAD];
        let drained = consumer.drain(&mut out);
        assert_eq!(
            drained.bytes,
            drained.records * PAYLOAD,
            "payloads back to back"
        );
        for chunk in out[..drained.bytes].chunks(PAYLOAD) {
            let mut seq = [0u8; 8];
            seq[..6].copy_from_slice(&chunk[2..8]);
            records.push((chunk[0], chunk[1], u64::from_le_bytes(seq)));
        }
        if drained.records > 0 {
            let first = records[records.len() - drained.records].2;
            assert_eq!(
                (drained.first_seq, drained.last_seq),
                (first, records[records.len() - 1].2)
            );
        }
    };
    for _ in 0..consumer_rounds {
        drain(&mut records);
    }
    let mut accepted: Vec<u64> = Vec::new();
    for producer in producers {
        accepted.extend(producer.join().unwrap());
    }
    drain(&mut records);
    drain(&mut records);

    for pair in records.windows(2) {
        assert!(
            pair[0].2 < pair[1].2,
            "sequence numbers strictly increase: {records:?}"
        );
        if pair[0].0 == pair[1].0 {
            assert!(pair[0].1 < pair[1].1, "per-producer order: {records:?}");
        }
    }
    accepted.sort_unstable();
    let drained: Vec<u64> = records.iter().map(|record| record.2).collect();
    assert_eq!(
        drained, accepted,
        "every accepted record drained once, with its own sequence number"
    );
    let stats = ring.stats();
    assert_eq!(stats.pushed, 2 * u64::from(per_producer));
    assert_eq!(stats.drained, records.len() as u64);
    assert_eq!(stats.pushed, stats.drained + stats.dropped(), "{stats:?}");
}

#[test]
fn ring_keeps_order_and_accounting() {
    let iterations = common::explore("ring/2x1_push_1_drain", common::EXHAUSTIVE, || {
        model::<Sound>(1, 1)
    });
    assert!(iterations > 1);
    let iterations = common::explore("ring/2x2_push_2_drains", common::DEEP, || {
        model::<Sound>(2, 2)
    });
    assert!(iterations > 1);
}

#[test]
fn twin_relaxed_commit_is_rejected() {
    common::expect_rejected(
        "ring/without_commit_release",
        common::PREEMPTIONS,
        &["Causality violation"],
        || model::<WithoutCommitRelease>(1, 1),
    );
}

#[test]
fn twin_reading_uncommitted_records_is_rejected() {
    common::expect_rejected(
        "ring/without_stop_at_busy",
        common::PREEMPTIONS,
        &["Causality violation"],
        || model::<WithoutStopAtBusy>(1, 1),
    );
}

#[test]
fn twin_freeing_space_before_copying_is_rejected() {
    common::expect_rejected(
        "ring/without_tail_after_copy",
        common::PREEMPTIONS,
        &["Causality violation"],
        || model::<WithoutTailAfterCopy>(2, 2),
    );
}
