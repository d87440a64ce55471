//! loom model: sends racing the close of the client port (RULES.md rules 5 and 7). The simulated
//! `FltSendMessage` asserts that the port it is given is open and non-null; the simulated
//! `FltCloseClientPort` closes it and nulls the variable. Checked: no send uses a closed or null
//! port; close returns only after the sends in flight have finished; every send ends in exactly one
//! outcome and the counters add up, with the client disconnecting while sends are pending.
//! Also checked: no send ever waits for the lock behind a close (RULES.md rule 27; the loom
//! lock fails a shared acquire that meets a writer, as a Windows push lock would make it wait).
//! Twins: close without the exclusive lock; send without the shared lock; send without
//! announcing itself to writers (the old check of `closers` before the lock).
#![cfg(loom)]

mod common;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use std::ffi::c_void;
use std::pin::Pin;
use vigil_core::twin::{
    Removal, Sound, WithoutCloseExclusive, WithoutSendAnnounce, WithoutSendShared,
};
use vigil_core::{ClientPortSlot, CloseOutcome, LoomPlatform, PortHandle, SendOutcome, Timeout};

const TIMEOUT: Timeout = Timeout::from_millis(1).unwrap();
const PORT: usize = 0x1000;

/// The slot and a stand-in for FltMgr's view of the port.
struct World<R: Removal> {
    slot: Pin<Box<ClientPortSlot<LoomPlatform<R>>>>,
    /// The port object that is open (0: none).
    open_port: AtomicUsize,
    /// The service has gone away: pending and new sends fail with "disconnected".
    client_gone: AtomicBool,
    /// Send routines running now.
    in_flight: AtomicUsize,
}

impl<R: Removal> World<R> {
    /// The driver's send routine: `FltSendMessage(filter, port, ..., timeout)`.
    fn send(&self) -> SendOutcome {
        self.slot.send(TIMEOUT, |port, timeout| {
            assert_eq!(timeout, TIMEOUT, "the slot passes the timeout on");
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            // FltMgr reads the variable and references the port object.
            let handle = port.handle();
            assert!(!handle.is_null(), "send routine called with a null port");
            let open = self.open_port.load(Ordering::Acquire);
            let outcome = if open != handle.as_raw() as usize {
                panic!("send on a closed port");
            } else if self.client_gone.load(Ordering::Acquire) {
                SendOutcome::Disconnected
            } else {
                SendOutcome::Sent
            };
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            outcome
        })
    }

    /// The disconnect callback: `FltCloseClientPort(filter, &slot_port)`.
    fn disconnect(&self) -> CloseOutcome {
        let outcome = self.slot.close(|mut port| {
            let handle = port.handle();
            assert_eq!(
                self.in_flight.load(Ordering::Acquire),
                0,
                "port closed under a send in flight"
            );
            self.open_port.store(0, Ordering::Release);
            let _ = handle;
            port.clear();
        });
        assert_eq!(
            self.in_flight.load(Ordering::Acquire),
            0,
            "close returned before sends finished"
        );
        outcome
    }
}

fn model<R: Removal>(senders: usize) {
    let world = common::Shared::new(World::<R> {
        slot: ClientPortSlot::new_boxed(),
        open_port: AtomicUsize::new(PORT),
        client_gone: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });
    world
        .slot
        .connect(PortHandle::from_raw(PORT as *mut c_void))
        .unwrap();

    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let world = world.clone();
            thread::spawn(move || world.send())
        })
        .collect();
    // The service dies: its handle closes (pending sends see "disconnected"), then FltMgr calls
    // the disconnect callback.
    world.client_gone.store(true, Ordering::Release);
    assert_eq!(world.disconnect(), CloseOutcome::Closed);
    // A late send finds no client and never reaches the routine.
    assert_eq!(world.send(), SendOutcome::NoClient);

    let mut outcomes = vec![SendOutcome::NoClient];
    for thread in threads {
        outcomes.push(thread.join().unwrap());
    }
    let stats = world.slot.stats();
    let count = |wanted: SendOutcome| {
        outcomes
            .iter()
            .filter(|&&outcome| outcome == wanted)
            .count() as u64
    };
    assert_eq!(
        stats.attempts(),
        senders as u64 + 1,
        "every send counted once"
    );
    assert_eq!(stats.sent, count(SendOutcome::Sent));
    assert_eq!(stats.disconnected, count(SendOutcome::Disconnected));
    assert_eq!(stats.no_client, count(SendOutcome::NoClient));
    assert_eq!(stats.timed_out + stats.failed, 0);
}

#[test]
fn sends_never_use_a_closed_port_and_are_all_counted() {
    let iterations = common::explore("send_vs_close/1_sender", common::EXHAUSTIVE, || {
        model::<Sound>(1)
    });
    assert!(iterations > 1);
    let iterations = common::explore("send_vs_close/2_senders", common::DEEP, || {
        model::<Sound>(2)
    });
    assert!(iterations > 1);
}

#[test]
fn twin_close_without_exclusive_lock_is_rejected() {
    common::expect_rejected(
        "send_vs_close/without_close_exclusive",
        common::EXHAUSTIVE,
        &[
            "Causality violation",
            "send on a closed port",
            "port closed under a send",
            "null port",
        ],
        || model::<WithoutCloseExclusive>(1),
    );
}

#[test]
fn twin_send_without_shared_lock_is_rejected() {
    common::expect_rejected(
        "send_vs_close/without_send_shared",
        common::EXHAUSTIVE,
        &[
            "Causality violation",
            "send on a closed port",
            "port closed under a send",
            "null port",
        ],
        || model::<WithoutSendShared>(1),
    );
}

#[test]
fn twin_send_without_announcing_itself_is_rejected() {
    common::expect_rejected(
        "send_vs_close/without_send_announce",
        common::EXHAUSTIVE,
        &["a shared acquire met a writer"],
        || model::<WithoutSendAnnounce>(1),
    );
}
