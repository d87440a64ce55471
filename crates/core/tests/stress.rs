//! Stress on real threads (std platform) for the properties the loom models prove, at volume.
//! `VIGIL_STRESS_SCALE` multiplies the volumes (default 1: a few million operations in all, well
//! under 30 s in a debug build on two cores). Nothing here asserts a time.
#![cfg(not(loom))]

use std::ffi::c_void;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use vigil_core::{
    ClientPortSlot, CloseOutcome, EntryWait, EventRing, PortHandle, SendOutcome, StdPlatform,
    Timeout, UnloadBounds, UnloadDecision, UnloadGate, UnloadKind,
};

/// `base` scaled by `VIGIL_STRESS_SCALE` (a positive number, default 1; below 1 for quick runs such
/// as `cargo mutants`), at least 1.
fn volume(base: u64) -> u64 {
    let scale: f64 = std::env::var("VIGIL_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a test volume"
    )]
    let scaled = (base as f64 * scale) as u64;
    scaled.max(1)
}

const HEADER: usize = 6;

/// A self-describing record: total length, producer, index, sequence number, then a pattern.
fn encode(producer: u8, index: u32, buf: &mut [u8]) {
    buf[0] = u8::try_from(buf.len()).unwrap();
    buf[1] = producer;
    buf[2..6].copy_from_slice(&index.to_le_bytes());
    for (i, byte) in buf[HEADER..].iter_mut().enumerate() {
        *byte = pattern(producer, index, i);
    }
}

fn pattern(producer: u8, index: u32, i: usize) -> u8 {
    producer ^ index.to_le_bytes()[0] ^ i.to_le_bytes()[0]
}

#[test]
fn ring_many_producers_one_consumer_roomy() {
    ring_many_producers_one_consumer(16 * 1024, volume(150_000));
}

#[test]
fn ring_many_producers_one_consumer_overloaded() {
    ring_many_producers_one_consumer(1024, volume(100_000));
}

fn ring_many_producers_one_consumer(capacity: usize, per_producer: u64) {
    const PRODUCERS: u8 = 4;
    let ring = EventRing::<StdPlatform>::with_capacity(capacity);
    let done = AtomicUsize::new(0);
    let accepted: Vec<AtomicU64> = (0..PRODUCERS).map(|_| AtomicU64::new(0)).collect();

    let drained_per_producer = thread::scope(|scope| {
        for producer in 0..PRODUCERS {
            let (ring, done, accepted) = (&ring, &done, &accepted);
            scope.spawn(move || {
                for index in 0..u32::try_from(per_producer).unwrap() {
                    let len = HEADER + (index as usize * 7 + usize::from(producer)) % 27;
                    if ring.push(len, |buf| encode(producer, index, buf)).is_ok() {
                        accepted[usize::from(producer)].fetch_add(1, Ordering::Relaxed);
                    }
                    if index % 64 == 0 {
                        thread::yield_now();
                    }
                }
                done.fetch_add(1, Ordering::Release);
            });
        }

        let mut consumer = ring.consumer().unwrap();
        let mut out = vec![0u8; 512];
        let mut last_seq = None::<u64>;
        let mut last_index = [None::<u32>; PRODUCERS as usize];
        let mut drained = [0u64; PRODUCERS as usize];
        loop {
            let finished = done.load(Ordering::Acquire) == usize::from(PRODUCERS);
            let mut numbers = Vec::new();
            let batch = consumer.drain_stamped(&mut out, |seq, _| numbers.push(seq));
            assert_eq!(numbers.len(), batch.records);
            let mut numbers = numbers.into_iter();
            let mut at = 0;
            let mut first = None;
            while at < batch.bytes {
                let record = &out[at..at + usize::from(out[at])];
                let producer = record[1];
                let index = u32::from_le_bytes(record[2..6].try_into().unwrap());
                let seq = numbers.next().expect("one number per record");
                for (i, &byte) in record[HEADER..].iter().enumerate() {
                    assert_eq!(byte, pattern(producer, index, i), "record {seq} corrupted");
                }
                assert!(
                    last_seq.is_none_or(|last| last < seq),
                    "sequence numbers strictly increase"
                );
                let previous = &mut last_index[usize::from(producer)];
                assert!(
                    previous.is_none_or(|last| last < index),
                    "per-producer order"
                );
                *previous = Some(index);
                last_seq = Some(seq);
                first.get_or_insert(seq);
                drained[usize::from(producer)] += 1;
                at += record.len();
            }
            assert_eq!(at, batch.bytes);
            if batch.records > 0 {
                assert_eq!(
                    (first, last_seq),
                    (Some(batch.first_seq), Some(batch.last_seq))
                );
            }
            if finished && batch.records == 0 {
                break drained;
            }
            if batch.records == 0 {
                thread::yield_now();
            }
        }
    });

    let stats = ring.stats();
    assert_eq!(stats.pushed, u64::from(PRODUCERS) * per_producer);
    assert_eq!(stats.pushed, stats.drained + stats.dropped(), "{stats:?}");
    assert_eq!(stats.dropped_too_large + stats.dropped_aborted, 0);
    for producer in 0..usize::from(PRODUCERS) {
        assert_eq!(
            drained_per_producer[producer],
            accepted[producer].load(Ordering::Relaxed),
            "nothing lost"
        );
    }
    eprintln!("ring stress ({capacity} bytes): {stats:?}");
}

#[test]
fn gate_unload_against_entry_and_callbacks() {
    let cycles = volume(2_000);
    let quick = EntryWait {
        event: Timeout::from_millis(1).unwrap(),
        probe_interval: Timeout::from_millis(1).unwrap(),
        probe_attempts: NonZeroU32::new(2).unwrap(),
    };
    let bound = Timeout::from_millis(1).unwrap();
    let mut entries = 0u64;
    let mut refusals = 0u64;
    for _ in 0..cycles {
        let gate = UnloadGate::<StdPlatform>::new_boxed();
        let globals = AtomicU64::new(0);
        let initializing = AtomicBool::new(true);
        let unloaded = AtomicBool::new(false);
        let admitted = AtomicU64::new(0);
        thread::scope(|scope| {
            // DriverEntry: set up, signal, return (the I/O manager clears the flag).
            scope.spawn(|| {
                globals.store(1, Ordering::Relaxed);
                gate.signal_entry_complete();
                thread::yield_now();
                initializing.store(false, Ordering::Release);
            });
            // Callbacks: enter while they can; under a guard the globals are live.
            for _ in 0..2 {
                scope.spawn(|| {
                    while !unloaded.load(Ordering::Acquire) {
                        if let Some(_guard) = gate.try_enter() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            assert_ne!(
                                globals.load(Ordering::Relaxed),
                                u64::MAX,
                                "callback after teardown"
                            );
                        }
                    }
                    assert!(gate.try_enter().is_none(), "admitted after unload");
                });
            }
            // Unload: wait for entry, then rundown; an expired wait refuses and retries.
            loop {
                let probe = || !initializing.load(Ordering::Acquire);
                let bounds = UnloadBounds {
                    entry: quick,
                    callbacks: bound,
                };
                match gate.unload(UnloadKind::Optional, probe, || true, bounds) {
                    UnloadDecision::TearDown => {
                        assert_eq!(globals.load(Ordering::Relaxed), 1, "teardown before setup");
                        assert!(
                            !initializing.load(Ordering::Acquire),
                            "teardown before DriverEntry returned"
                        );
                        globals.store(u64::MAX, Ordering::Relaxed);
                        unloaded.store(true, Ordering::Release);
                        break;
                    }
                    // A refused unload has reopened the gate itself.
                    UnloadDecision::Refused(_) => refusals += 1,
                    UnloadDecision::EntryFailed => unreachable!("DriverEntry succeeds here"),
                }
            }
        });
        entries += admitted.load(Ordering::Relaxed);
    }
    eprintln!(
        "gate stress: {cycles} load/unload cycles, {entries} callbacks admitted, {refusals} refused unloads"
    );
    assert!(entries > 0);
}

#[test]
fn slot_sends_against_connect_and_close_churn() {
    const SENDERS: usize = 3;
    let sends_per_sender = volume(300_000);
    let slot = ClientPortSlot::<StdPlatform>::new_boxed();
    let open_port = AtomicUsize::new(0);
    let in_flight = AtomicUsize::new(0);
    let churn_done = AtomicBool::new(false);
    let cycles = volume(500);
    let timeout = Timeout::from_millis(5).unwrap();

    let tallies = thread::scope(|scope| {
        let handles: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let (slot, open_port, in_flight, churn_done) =
                    (&slot, &open_port, &in_flight, &churn_done);
                scope.spawn(move || {
                    let mut tally = [0u64; 5];
                    let mut n = 0u64;
                    // At least the quota, and until the churn is over.
                    while n < sends_per_sender || !churn_done.load(Ordering::Acquire) {
                        n += 1;
                        let outcome = slot.send(timeout, |port, given| {
                            assert_eq!(given, timeout);
                            in_flight.fetch_add(1, Ordering::AcqRel);
                            let handle = port.handle();
                            assert!(!handle.is_null(), "null port");
                            assert_eq!(
                                open_port.load(Ordering::Acquire),
                                handle.as_raw() as usize,
                                "closed port"
                            );
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                            match (n + sender as u64) % 7 {
                                0 => SendOutcome::TimedOut,
                                1 => SendOutcome::Disconnected,
                                2 => SendOutcome::Failed,
                                _ => SendOutcome::Sent,
                            }
                        });
                        tally[outcome as usize] += 1;
                    }
                    tally
                })
            })
            .collect();

        // The service connects and disconnects over and over.
        let mut next_port = 0x1000usize;
        for _ in 0..cycles {
            next_port += 8;
            open_port.store(next_port, Ordering::Release);
            slot.connect(PortHandle::from_raw(std::ptr::without_provenance_mut::<
                c_void,
            >(next_port)))
                .unwrap();
            for _ in 0..20 {
                thread::yield_now();
            }
            let closed = slot.close(|mut port| {
                assert_eq!(
                    in_flight.load(Ordering::Acquire),
                    0,
                    "closed under a send in flight"
                );
                open_port.store(0, Ordering::Release);
                port.clear();
            });
            assert_eq!(closed, CloseOutcome::Closed);
        }
        churn_done.store(true, Ordering::Release);
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect::<Vec<_>>()
    });

    let mut total = [0u64; 5];
    for tally in &tallies {
        for (sum, count) in total.iter_mut().zip(tally) {
            *sum += count;
        }
    }
    let stats = slot.stats();
    assert!(total.iter().sum::<u64>() >= SENDERS as u64 * sends_per_sender);
    assert_eq!(
        stats.attempts(),
        total.iter().sum::<u64>(),
        "every send counted once"
    );
    assert_eq!(
        [
            stats.sent,
            stats.timed_out,
            stats.disconnected,
            stats.no_client,
            stats.failed
        ],
        total,
        "counters match what the senders saw"
    );
    assert!(
        stats.no_client > 0 && stats.sent > 0,
        "churn and sends interleaved: {stats:?}"
    );
    eprintln!("slot stress: {cycles} connect/close cycles, {stats:?}");
}
