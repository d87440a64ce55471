//! loom model: lock-free ring producers racing the consumer. Two producers push records (tagged
//! with their producer id and index) into a ring small enough to fill and wrap; the consumer drains
//! while they push, then once more after they finish, numbering the records. Checked: every
//! accepted record is drained exactly once, in strictly increasing sequence order and in each
//! producer's order; the numbers are exactly those not taken by drops (so every loss is a gap);
//! `pushed == drained + dropped`. loom's cells shadow the ring's bytes, so a read of a record being
//! written (or a write into space not yet given back) is a causality violation. Twins: relaxed
//! commit store; consumer that does not stop at an uncommitted record; consumer that gives space
//! back before copying; consumer that gives space back without zeroing it; producer that reads
//! `tail` relaxed.
#![cfg(loom)]

mod common;

use loom::thread;
use vigil_core::twin::{
    Removal, Sound, WithoutCommitRelease, WithoutStopAtBusy, WithoutTailAcquire,
    WithoutTailAfterCopy, WithoutZeroBeforeRelease,
};
use vigil_core::{BoxedRing, EventRing, LoomPlatform};

/// Two 8-byte records fit (24 bytes each with the header), the third wraps.
const CAPACITY: usize = 64;
const PAYLOAD: usize = 8;

fn model<R: Removal>(per_producer: u8, consumer_rounds: usize) {
    let ring: common::Shared<BoxedRing<LoomPlatform<R>>> =
        common::Shared::new(EventRing::with_capacity(CAPACITY));
    let producers: Vec<_> = (0..2u8)
        .map(|producer| {
            let ring = ring.clone();
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for index in 0..per_producer {
                    let pushed = ring.push(PAYLOAD, |buf| {
                        buf[0] = producer;
                        buf[1] = index;
                        buf[2..].fill(0x5A);
                    });
                    if pushed.is_ok() {
                        accepted.push((producer, index));
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
        let before = records.len();
        let drained = consumer.drain_stamped(&mut out, |seq, payload| {
            assert_eq!(
                &payload[2..],
                &[0x5A; PAYLOAD - 2],
                "a whole record: {payload:?}"
            );
            records.push((payload[0], payload[1], seq));
        });
        assert_eq!(drained.records, records.len() - before);
        assert_eq!(
            drained.bytes,
            drained.records * PAYLOAD,
            "payloads back to back"
        );
        if drained.records > 0 {
            assert_eq!(
                (drained.first_seq, drained.last_seq),
                (records[before].2, records[records.len() - 1].2)
            );
        }
    };
    for _ in 0..consumer_rounds {
        drain(&mut records);
    }
    let mut accepted: Vec<(u8, u8)> = Vec::new();
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
    let mut drained: Vec<(u8, u8)> = records.iter().map(|r| (r.0, r.1)).collect();
    drained.sort_unstable();
    assert_eq!(drained, accepted, "every accepted record drained once");
    let stats = ring.stats();
    let total = 2 * u64::from(per_producer);
    assert_eq!(stats.pushed, total, "{stats:?}");
    assert_eq!(stats.drained, records.len() as u64);
    assert_eq!(stats.pushed, stats.drained + stats.dropped(), "{stats:?}");
    assert!(
        records.iter().all(|r| r.2 < total),
        "numbers within what was pushed: {records:?}"
    );
}

#[test]
fn ring_keeps_order_and_accounting() {
    let iterations = common::explore("ring/2x1_push_1_drain", common::EXHAUSTIVE, || {
        model::<Sound>(1, 1)
    });
    assert!(iterations > 1);
    let iterations = common::explore("ring/2x2_push_2_drains", common::PREEMPTIONS, || {
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

#[test]
fn twin_releasing_space_without_zeroing_is_rejected() {
    common::expect_rejected(
        "ring/without_zero_before_release",
        common::PREEMPTIONS,
        &[
            "Causality violation",
            "a whole record",
            "strictly increase",
            "drained once",
        ],
        || model::<WithoutZeroBeforeRelease>(2, 2),
    );
}

#[test]
fn twin_relaxed_tail_read_is_rejected() {
    common::expect_rejected(
        "ring/without_tail_acquire",
        common::PREEMPTIONS,
        &["Causality violation"],
        || model::<WithoutTailAcquire>(2, 2),
    );
}
