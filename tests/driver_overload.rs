//! Statistics and overload on the real vigil.sys in kernel-sim: after quiescence every event
//! generated is delivered or counted as dropped (by reason); a burst larger than the ring drops
//! and counts, never blocks the I/O, and recovers once a service drains, with a sequence gap
//! the counters explain.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use driver::{
    Event, FILE_CREATE, GENERIC_WRITE, NTFS, STATUS_SUCCESS, Service, assert_clean, config, image,
    load, requestor, send_held_config, volume,
};
use std::time::Duration;

use vigil_kernel_sim::{Driver, RegistryValue};
use vigil_protocol::{Hello, HelloReply, Stats};

/// Creates, writes and closes `n` files under `\<dir>`: two events each (open, first write)
/// and a third (close after modify).
fn churn(driver: &Driver, dir: &str, n: usize) {
    let io = driver.io(requestor(500, 5));
    let ntfs = volume(driver, NTFS);
    for i in 0..n {
        let f = io
            .create(
                ntfs,
                &format!(r"\{dir}-{i:05}.dat"),
                FILE_CREATE,
                0,
                GENERIC_WRITE,
            )
            .expect("the I/O is never blocked or failed by the driver");
        assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
        io.cleanup(&f);
        io.close(f);
    }
}

/// Sequence numbers missing between consecutive received events.
fn gaps(events: &[Event]) -> u64 {
    events
        .windows(2)
        .map(|w| {
            assert!(
                w[1].sequence > w[0].sequence,
                "sequence numbers strictly increase: {w:#?}"
            );
            w[1].sequence - w[0].sequence - 1
        })
        .sum()
}

fn assert_adds_up(stats: &Stats) {
    assert_eq!(
        stats.events_generated,
        stats.events_delivered
            + stats.dropped_ring_full
            + stats.dropped_too_large
            + stats.dropped_no_memory
            + stats.dropped_send_timeout
            + stats.dropped_disconnected,
        "generated = delivered + dropped: {stats:?}"
    );
}

#[test]
fn statistics_add_up_across_services_coming_and_going() {
    let (_sim, driver) = load(config(&[]), &image());
    // Events while no service is connected wait in the ring.
    churn(&driver, "before", 50);
    let first = Service::allowing(&driver);
    churn(&driver, "during", 100);
    let stats = first.quiesce();
    assert_adds_up(&stats);
    assert_eq!(stats.events_generated, 450, "{stats:?}");
    assert_eq!(stats.events_delivered, 450, "{stats:?}");
    assert_eq!(first.events().len(), 450);
    assert_eq!(gaps(&first.events()), 0);
    assert_eq!((stats.connections, stats.disconnects), (1, 0));
    let batches = first.batches();
    assert!(
        batches.len() < 450,
        "events are batched: {} batches",
        batches.len()
    );
    assert_eq!(stats.batches_sent, batches.len() as u64, "{stats:?}");
    let last = first.events().last().expect("events").sequence;
    drop(first);

    // A second service sees the counters continue, and the events since.
    churn(&driver, "between", 20);
    let mut second = Service::allowing(&driver);
    second.already_delivered = 450;
    let stats = second.quiesce();
    assert_adds_up(&stats);
    assert_eq!(stats.events_generated, 510, "{stats:?}");
    assert_eq!((stats.connections, stats.disconnects), (2, 1));
    let events = second.events();
    assert_eq!(events.len(), 60, "the backlog since the first service left");
    assert_eq!(
        events[0].sequence,
        last + 1,
        "no gap between the two services"
    );
    assert_eq!(gaps(&events), 0);
    drop(second);
    assert_clean(driver);
}

#[test]
fn a_burst_larger_than_the_ring_drops_counts_and_recovers() {
    const RING: u32 = 64 * 1024;
    let (_sim, driver) = load(
        config(&[("RingBytes", RegistryValue::Dword(RING))]),
        &image(),
    );
    // No service: the ring fills, then every further event is dropped; every create succeeds.
    let burst = 2_000;
    churn(&driver, "burst", burst);
    let service = Service::allowing(&driver);
    let mut hello = [0u8; Hello::LEN];
    Hello {
        client_process_id: u64::from(driver::SERVICE_PID),
    }
    .emit(&mut hello)
    .unwrap();
    let reply = service.port.send_command(&hello, HelloReply::LEN).unwrap();
    assert_eq!(reply.status, STATUS_SUCCESS);
    assert_eq!(
        HelloReply::parse(&reply.output)
            .unwrap()
            .ring_capacity_bytes,
        RING,
        "the registry's ring size is in force"
    );
    let stats = service.quiesce();
    assert_adds_up(&stats);
    assert_eq!(stats.events_generated, 3 * burst as u64, "{stats:?}");
    assert!(
        stats.dropped_ring_full > 0 && stats.events_delivered > 0,
        "{stats:?}"
    );
    assert!(
        stats.events_delivered * 100 < u64::from(RING),
        "the ring holds what fits, no more: {stats:?}"
    );
    let backlog = service.events();
    assert_eq!(backlog.len() as u64, stats.events_delivered);

    // Recovery: new events flow again.
    churn(&driver, "after", 10);
    let after = service.quiesce();
    assert_adds_up(&after);
    assert_eq!(
        after.dropped_ring_full, stats.dropped_ring_full,
        "{after:?}"
    );
    assert_eq!(after.events_delivered, stats.events_delivered + 30);
    // The service-visible sequence has exactly the gap the counters explain.
    let events = service.events();
    assert_eq!(events.len() as u64, after.events_delivered);
    assert_eq!(gaps(&events), after.dropped_ring_full, "{after:?}");
    assert!(
        events
            .iter()
            .rev()
            .take(30)
            .all(|e| e.path.contains("after"))
    );
    drop(service);
    assert_clean(driver);
}

/// With no service connected, events only queue in the ring: the delivery thread is not woken
/// per batch (it would find nobody to send to). Once a service connects, each batch wakes it,
/// and the backlog and the new events reach the service.
#[test]
fn the_delivery_thread_is_woken_per_batch_only_while_a_service_is_connected() {
    let (_sim, driver) = load(
        config(&[
            ("BatchSize", RegistryValue::Dword(16)),
            // The flush interval alone would wake the thread only every 5 s.
            ("FlushIntervalMs", RegistryValue::Dword(5_000)),
        ]),
        &image(),
    );
    let observer = driver.observer();
    let wakes = || {
        observer
            .routine_calls()
            .get("KeSetEvent")
            .copied()
            .unwrap_or(0)
    };
    let before = wakes();
    churn(&driver, "alone", 40); // 120 events, 7 batches' worth
    assert_eq!(wakes(), before, "no wake-up without a service");
    let service = Service::allowing(&driver);
    churn(&driver, "watched", 40);
    assert!(wakes() > before, "a wake-up per batch with a service");
    // 240 events: the 120 queued while alone and the 120 generated with the service there.
    let events = service.wait_events(240);
    assert_eq!(events.len(), 240);
    drop(service);
    assert_clean(driver);
}

/// Holds the delivery thread inside `FltSendMessage` (holding the client-port slot's lock
/// shared), disconnects the service on another thread (the disconnect callback's close queues
/// for the lock exclusively behind the send), then runs I/O on a third thread. Returns whether
/// that I/O finished while the send was still held, and the run's report.
fn io_behind_a_close_queued_behind_a_send(
    image: &std::path::Path,
) -> (bool, vigil_kernel_sim::Report) {
    let cfg = send_held_config();
    let (_sim, mut driver) = load(cfg, image);
    let service = Service::allowing(&driver);
    let io = driver.io(requestor(1, 1));
    let file = io
        .create(volume(&driver, NTFS), r"\held.txt", FILE_CREATE, 0, 0)
        .expect("create");
    io.close(file);
    let observer = driver.observer();
    assert!(
        observer.wait_until_paused(Duration::from_secs(10)),
        "the delivery thread reached FltSendMessage"
    );
    let closer = std::thread::spawn({
        let port = std::sync::Arc::clone(&service.port);
        move || port.close()
    });
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while driver.push_lock_exclusive_waiters() == 0 {
        assert!(
            std::time::Instant::now() < give_up,
            "the disconnect callback's close never queued for the slot's lock"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let ntfs = volume(&driver, NTFS);
    let writer = driver.io(requestor(2, 2));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io_thread = std::thread::spawn({
        let done = std::sync::Arc::clone(&done);
        move || {
            for n in 0..4 {
                let file = writer
                    .create(ntfs, &format!(r"\io{n}.txt"), FILE_CREATE, 0, 0)
                    .expect("create");
                writer.close(file);
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        }
    });
    // Production needs no lock, so it finishes; the twin's I/O thread cannot finish while the
    // send is held (it waits behind the queued close, which waits for the send), so this bound
    // only decides how long the twin's run takes.
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    while !done.load(std::sync::atomic::Ordering::Acquire) && std::time::Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    let finished_while_held = done.load(std::sync::atomic::Ordering::Acquire);
    observer.release();
    io_thread.join().expect("the I/O thread");
    closer.join().expect("the closer");
    drop(service);
    let _ = driver.unload(vigil_kernel_sim::UnloadKind::Mandatory);
    (finished_while_held, driver.finish())
}

/// RULES.md 27 (issue 13, defect 2): the I/O path reads the connection state from an atomic,
/// so it never waits behind a close that waits behind a send (a Windows push lock holds new
/// shared acquirers behind a queued exclusive waiter; kernel-sim's push locks do the same).
/// `io-path-push-lock` reads it under the slot's push lock, as the driver once did: its I/O
/// stalls for as long as the send is held, every run.
#[test]
fn the_io_path_never_waits_behind_a_close_queued_behind_a_send() {
    let (finished, report) = io_behind_a_close_queued_behind_a_send(&image());
    assert!(
        finished,
        "production I/O waited behind the close: {}",
        report.summary()
    );
    assert!(report.is_clean(), "{}", report.summary());
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::IoPathPushLock));
    let (finished, report) = io_behind_a_close_queued_behind_a_send(&twin);
    assert!(
        !finished,
        "twin-io-path-push-lock: its I/O went past a queued close ({})",
        report.summary()
    );
}
