//! The client-port slot: the one copy of the client `PFLT_PORT` (RULES.md rule 5).
//!
//! `FltSendMessage` and `FltCloseClientPort` synchronize with each other only when both are given
//! the address of the same variable. The slot owns that variable and hands its address to the
//! routines the driver passes, under its own lock discipline on top of `FltMgr`'s:
//! - sends hold the lock shared while their routine runs; close holds it exclusively, so no send
//!   ever uses a port being closed, and close returns only after the sends in flight have finished;
//! - every send is given a finite [`Timeout`] (rule 7), so close never waits without bound;
//! - no send ever waits for the lock behind a writer (RULES.md rule 27; a Windows push lock makes
//!   a new shared acquirer wait as soon as an exclusive waiter is queued, and a writer can be
//!   queued behind a send for its whole timeout). A send announces itself (`entering`) and then
//!   checks `writers`; a writer (connect, close) raises `writers` and then waits until no send
//!   is between its check and its shared acquire. Both sides read the other's counter with a
//!   read-modify-write (which always reads the latest value), so either the send sees the writer and refuses at once, or the writer sees the send
//!   and lets it take the lock first: a verdict never waits longer than its own timeout;
//! - whether a client is connected is an atomic (`connected`), so the I/O path that asks (the
//!   batch wake-up rule) takes no lock at all (rule 27);
//! - each send ends in exactly one [`SendOutcome`], counted in [`PortStats`]; `TimedOut` (NT's
//!   `STATUS_TIMEOUT`, a success code) is never `Sent`.
//!
//! IRQL: `PASSIVE_LEVEL` or `APC_LEVEL` (the push lock; `FltSendMessage` that waits), all methods.

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
use crate::twin::{Guard, keeps};
use crate::{Platform, RawPassiveLock, Timeout};
use core::ffi::c_void;
use core::marker::{PhantomData, PhantomPinned};

/// How long a writer sleeps between looks at the sends about to take the lock (they need only
/// the few instructions between their check and their acquire).
const ENTERING_POLL: Timeout = match Timeout::from_millis(1) {
    Some(timeout) => timeout,
    None => panic!("1 ms is a valid timeout"),
};

/// An opaque client port handle (`PFLT_PORT`). The core never dereferences it.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortHandle(*mut c_void);

impl PortHandle {
    /// No port.
    pub const NULL: PortHandle = PortHandle(core::ptr::null_mut());

    /// Wraps a raw `PFLT_PORT`.
    pub const fn from_raw(raw: *mut c_void) -> PortHandle {
        PortHandle(raw)
    }

    /// The raw `PFLT_PORT`.
    pub const fn as_raw(self) -> *mut c_void {
        self.0
    }

    /// Whether this is [`PortHandle::NULL`].
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }
}

// SAFETY: a port handle is an opaque kernel object pointer, valid in any thread; this crate never
// dereferences it.
unsafe impl Send for PortHandle {}
// SAFETY: as above; sharing the value shares nothing else.
unsafe impl Sync for PortHandle {}

/// The slot's one port variable, lent to a send routine while the slot's lock is held shared.
/// Only the slot makes one and it cannot outlive the routine's call, so a send can reach
/// `FltSendMessage` only with the slot's variable, under the slot's lock (RULES.md rule 5).
///
/// # Invariants
///
/// `port` points to the slot's port variable, which no one writes while this value lives.
#[derive(Debug)]
pub struct SendPort<'a> {
    port: *mut PortHandle,
    _held: PhantomData<&'a PortHandle>,
}

impl SendPort<'_> {
    /// The port stored in the variable (never null: the slot checks before lending it).
    pub fn handle(&self) -> PortHandle {
        // SAFETY: the slot's live variable, not written while the lock is held shared (invariant).
        unsafe { *self.port }
    }

    /// The variable's address, for `FltSendMessage` (which only reads through it).
    pub fn as_ptr(&self) -> *mut PortHandle {
        self.port
    }
}

/// The slot's one port variable, lent to a close routine while the slot's lock is held
/// exclusively: the only way to reach `FltCloseClientPort` with it, and it cannot outlive the
/// routine's call.
#[derive(Debug)]
pub struct ClosePort<'a> {
    port: &'a mut PortHandle,
}

impl ClosePort<'_> {
    /// The port stored in the variable (never null: the slot checks before lending it).
    pub fn handle(&self) -> PortHandle {
        *self.port
    }

    /// The variable's address, for `FltCloseClientPort` (which sets it to null).
    pub fn as_ptr(&mut self) -> *mut PortHandle {
        self.port
    }

    /// Sets the variable to null, as `FltCloseClientPort` does (for models of it).
    pub fn clear(&mut self) {
        *self.port = PortHandle::NULL;
    }
}

/// How one send ended. Exactly one per call of [`ClientPortSlot::send`], and each is counted.
///
/// The driver's send routine maps `FltSendMessage`'s status: `STATUS_SUCCESS` to `Sent`,
/// `STATUS_TIMEOUT` (a success code: test it explicitly) to `TimedOut`,
/// `STATUS_PORT_DISCONNECTED` to `Disconnected`, anything else to `Failed`.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Delivered (and, for a request, replied to).
    Sent,
    /// The timeout expired: not delivered, or no reply in time.
    TimedOut,
    /// The client went away during the send.
    Disconnected,
    /// No client was connected, or a close had begun: the routine was not called.
    NoClient,
    /// The routine failed for another reason (for example, no memory).
    Failed,
}

/// Why [`ClientPortSlot::connect`] refused a port. The connect-notify callback then fails the
/// connection (`FltMgr` closes the refused port itself).
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// A client is connected already: one connection at a time (rule 18).
    Occupied,
    /// The slot was retired for unload.
    Retired,
    /// The handle is null.
    NullPort,
}

/// What [`ClientPortSlot::close`] did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The port was closed through the close routine.
    Closed,
    /// No port was connected; the routine was not called.
    NotConnected,
}

/// Send counters. `attempts() == sent + timed_out + disconnected + no_client + failed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Sends that ended [`SendOutcome::Sent`].
    pub sent: u64,
    /// Sends that ended [`SendOutcome::TimedOut`].
    pub timed_out: u64,
    /// Sends that ended [`SendOutcome::Disconnected`].
    pub disconnected: u64,
    /// Sends that ended [`SendOutcome::NoClient`].
    pub no_client: u64,
    /// Sends that ended [`SendOutcome::Failed`].
    pub failed: u64,
}

impl PortStats {
    /// Every send counted.
    pub fn attempts(&self) -> u64 {
        self.sent + self.timed_out + self.disconnected + self.no_client + self.failed
    }
}

/// The port and whether the slot is retired; read under the lock shared, written under it
/// exclusively.
#[derive(Debug)]
struct SlotState {
    port: PortHandle,
    retired: bool,
}

/// The client-port slot. Build it in place with [`ClientPortSlot::init_in_place`] (driver) or
/// `ClientPortSlot::new_boxed` (user mode); it never moves afterwards, so the address given to the
/// routines is the same for the slot's whole life.
///
/// # Invariants
/// - `state` is read only while `lock` is held (shared or exclusive) and written only while it is
///   held exclusively. The routines see `state.port` only through the pointer the slot hands them,
///   under the same rule (send routines read, close routines may write).
/// - `writers` counts `connect`/`close`/`retire` calls in progress; sends refuse while it is
///   non-zero. `entering` counts sends between their check of `writers` and their shared
///   acquire; a writer takes the lock only once it is zero, so no send queues behind a writer.
/// - `connected` is `!state.port.is_null()`, written under the lock exclusively, read anywhere.
pub struct ClientPortSlot<P: Platform> {
    lock: P::PassiveLock,
    state: UnsafeCell<SlotState>,
    writers: AtomicUsize,
    entering: AtomicUsize,
    connected: AtomicBool,
    sent: AtomicU64,
    timed_out: AtomicU64,
    disconnected: AtomicU64,
    no_client: AtomicU64,
    failed: AtomicU64,
    _pinned: PhantomPinned,
}

impl<P: Platform> core::fmt::Debug for ClientPortSlot<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientPortSlot")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

// SAFETY: `state` is accessed only under `lock` (invariant), whose contract gives exclusion and
// ordering between threads; the other fields are atomics or `Sync` platform objects.
unsafe impl<P: Platform> Sync for ClientPortSlot<P> {}
// SAFETY: nothing in the slot is bound to a thread; the port handle is `Send`.
unsafe impl<P: Platform> Send for ClientPortSlot<P> {}

impl<P: Platform> ClientPortSlot<P> {
    /// Initializes an empty slot at `slot`.
    ///
    /// # Safety
    /// `slot` is valid for writes and aligned for `Self`. The slot is never moved afterwards and is
    /// dropped in place (or its memory freed) only when no reference to it remains.
    pub unsafe fn init_in_place(slot: *mut Self) {
        // SAFETY: the caller gives a writable slot that will not move; the field is inside it.
        unsafe { P::PassiveLock::init(field_of!(slot.lock)) };
        let state = UnsafeCell::new(SlotState {
            port: PortHandle::NULL,
            retired: false,
        });
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.state), state) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.writers), AtomicUsize::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.entering), AtomicUsize::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.connected), AtomicBool::new(false)) };
        // SAFETY: as above (each counter is a field of the slot).
        unsafe { core::ptr::write(field_of!(slot.sent), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.timed_out), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.disconnected), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.no_client), AtomicU64::new(0)) };
        // SAFETY: as above.
        unsafe { core::ptr::write(field_of!(slot.failed), AtomicU64::new(0)) };
    }

    /// An empty slot in a pinned box (user mode).
    #[cfg(any(feature = "std", loom))]
    pub fn new_boxed() -> core::pin::Pin<std::boxed::Box<Self>> {
        let init = |slot| {
            // SAFETY: `boxed_in_place` passes a fresh, aligned, writable heap slot that it pins.
            unsafe { Self::init_in_place(slot) }
        };
        // SAFETY: `init` initializes the whole slot.
        unsafe { crate::boxed_in_place(init) }
    }

    /// Stores the client port of a new connection (connect-notify callback).
    ///
    /// # Errors
    /// [`ConnectError`]: a client is connected already, the slot is retired, or `port` is null.
    pub fn connect(&self, port: PortHandle) -> Result<(), ConnectError> {
        if port.is_null() {
            return Err(ConnectError::NullPort);
        }
        self.write_locked(|state| {
            if state.retired {
                Err(ConnectError::Retired)
            } else if !state.port.is_null() {
                Err(ConnectError::Occupied)
            } else {
                state.port = port;
                Ok(())
            }
        })
    }

    /// Runs `write` on the state with the lock held exclusively, by the writers' protocol (see
    /// the module docs): `writers` raised first, then no send left between its check and its
    /// shared acquire, then the lock. `connected` follows the port when the lock is released.
    fn write_locked<R>(&self, write: impl FnOnce(&mut SlotState) -> R) -> R {
        self.writers.fetch_add(1, Ordering::SeqCst);
        if keeps::<P>(Guard::SlotSendAnnounce) {
            // Sends that passed their check before `writers` rose: each is about to take the lock
            // shared (a short step: no writer holds it, since writers wait here too) and is
            // allowed to, so that none of them queues behind this writer's exclusive request.
            // Read with a read-modify-write, as the send reads `writers`: RMWs on one location
            // always read its latest value, which makes this store-then-read pattern (Dekker's)
            // sound under release/acquire alone, and lets loom check it.
            while self.entering.fetch_add(0, Ordering::SeqCst) != 0 {
                P::sleep(ENTERING_POLL);
            }
        }
        let exclusive = keeps::<P>(Guard::SlotCloseExclusive).then(|| self.lock.lock_exclusive());
        let result = self.state.with_mut(|state| {
            // SAFETY: the lock is held exclusively (invariant): no other access to `state` exists.
            let state = unsafe { &mut *state };
            let result = write(state);
            self.connected
                .store(!state.port.is_null(), Ordering::Release);
            result
        });
        drop(exclusive);
        self.writers.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Sends through the client port: calls `routine` with the slot's one port variable (lent as
    /// a [`SendPort`]) and `timeout`, unless no client is connected or a close has begun. The
    /// routine is the driver's `FltSendMessage` call; it must only read through the variable, and
    /// must wait at most `timeout` (that bound is what bounds `close`).
    pub fn send<F>(&self, timeout: Timeout, routine: F) -> SendOutcome
    where
        F: FnOnce(SendPort<'_>, Timeout) -> SendOutcome,
    {
        let outcome = self.send_inner(timeout, routine);
        let counter = match outcome {
            SendOutcome::Sent => &self.sent,
            SendOutcome::TimedOut => &self.timed_out,
            SendOutcome::Disconnected => &self.disconnected,
            SendOutcome::NoClient => &self.no_client,
            SendOutcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    fn send_inner<F>(&self, timeout: Timeout, routine: F) -> SendOutcome
    where
        F: FnOnce(SendPort<'_>, Timeout) -> SendOutcome,
    {
        let announce = keeps::<P>(Guard::SlotSendAnnounce);
        if announce {
            self.entering.fetch_add(1, Ordering::SeqCst);
        }
        // A read-modify-write, not a load: see `write_locked`.
        if self.writers.fetch_add(0, Ordering::SeqCst) != 0 {
            if announce {
                self.entering.fetch_sub(1, Ordering::SeqCst);
            }
            return SendOutcome::NoClient;
        }
        // No writer waits for the lock or holds it now (a writer that came after the check
        // waits for `entering`), so this acquire does not wait behind one.
        let _shared = keeps::<P>(Guard::SlotSendShared).then(|| self.lock.lock_shared());
        if announce {
            self.entering.fetch_sub(1, Ordering::SeqCst);
        }
        self.state.with(|state| {
            // SAFETY: the lock is held shared (invariant): only reads of `state` can happen now. The
            // routine, too, only reads through the pointer (its contract).
            let port = unsafe { &raw const (*state).port };
            // SAFETY: as above; `port` points into the live slot.
            if unsafe { *port }.is_null() {
                return SendOutcome::NoClient;
            }
            routine(
                SendPort {
                    port: port.cast_mut(),
                    _held: PhantomData,
                },
                timeout,
            )
        })
    }

    /// Closes the client port (disconnect-notify callback): new sends refuse from now on, sends in
    /// flight finish (each within its timeout), then `routine` is called with the slot's port
    /// variable, lent as a [`ClosePort`] (the driver's `FltCloseClientPort`, which sets it to null). The slot
    /// sets it to null afterwards in any case; a new client may then connect.
    pub fn close<F: FnOnce(ClosePort<'_>)>(&self, routine: F) -> CloseOutcome {
        self.close_inner(routine, false)
    }

    /// [`ClientPortSlot::close`], and refuse every later connection (unload, after the server port
    /// is closed).
    pub fn retire<F: FnOnce(ClosePort<'_>)>(&self, routine: F) -> CloseOutcome {
        self.close_inner(routine, true)
    }

    fn close_inner<F: FnOnce(ClosePort<'_>)>(&self, routine: F, retire: bool) -> CloseOutcome {
        self.write_locked(|state| {
            state.retired |= retire;
            if state.port.is_null() {
                return CloseOutcome::NotConnected;
            }
            routine(ClosePort {
                port: &mut state.port,
            });
            state.port = PortHandle::NULL;
            CloseOutcome::Closed
        })
    }

    /// Whether a client is connected now (it may change at once). One atomic load, no lock: the
    /// I/O path asks this (RULES.md rule 27). Any IRQL.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The same answer, read under the slot's lock held shared: the old, broken way, kept only for
    /// the driver's `io-path-push-lock` twin. On Windows this acquire waits behind a close
    /// queued behind a send, for up to the send's timeout (RULES.md rule 27).
    pub fn is_connected_under_lock(&self) -> bool {
        let _shared = self.lock.lock_shared();
        self.state.with(|state| {
            // SAFETY: the lock is held shared: only reads of `state` can happen now.
            !unsafe { &*state }.port.is_null()
        })
    }

    /// The send counters (each exact; read one after another, so a snapshot during sends may be off
    /// by the sends that end meanwhile).
    pub fn stats(&self) -> PortStats {
        PortStats {
            sent: self.sent.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            disconnected: self.disconnected.load(Ordering::Relaxed),
            no_client: self.no_client.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{ClientPortSlot, CloseOutcome, ConnectError, PortHandle, PortStats, SendOutcome};
    use crate::{StdPlatform, Timeout};
    use core::ffi::c_void;

    const T: Timeout = Timeout::from_millis(100).unwrap();

    fn handle(n: usize) -> PortHandle {
        PortHandle::from_raw(core::ptr::without_provenance_mut::<c_void>(n))
    }

    #[test]
    fn one_connection_at_a_time_and_reconnect_after_close() {
        let slot = ClientPortSlot::<StdPlatform>::new_boxed();
        assert!(!slot.is_connected());
        assert_eq!(slot.connect(PortHandle::NULL), Err(ConnectError::NullPort));
        assert_eq!(slot.connect(handle(8)), Ok(()));
        assert!(slot.is_connected());
        assert_eq!(slot.connect(handle(16)), Err(ConnectError::Occupied));
        let mut closed = None;
        assert_eq!(
            slot.close(|p| {
                closed = Some(p.handle());
            }),
            CloseOutcome::Closed
        );
        assert_eq!(
            closed,
            Some(handle(8)),
            "close routine sees the stored port"
        );
        assert_eq!(
            slot.close(|_| panic!("nothing to close")),
            CloseOutcome::NotConnected
        );
        assert_eq!(slot.connect(handle(16)), Ok(()));
        assert_eq!(slot.retire(|_| {}), CloseOutcome::Closed);
        assert_eq!(slot.connect(handle(24)), Err(ConnectError::Retired));
        assert_eq!(
            slot.retire(|_| panic!("nothing to close")),
            CloseOutcome::NotConnected
        );
    }

    #[test]
    fn sends_get_the_slot_address_and_the_timeout_and_are_counted() {
        let slot = ClientPortSlot::<StdPlatform>::new_boxed();
        assert_eq!(
            slot.send(T, |_, _| panic!("no client")),
            SendOutcome::NoClient
        );
        slot.connect(handle(8)).unwrap();
        let mut seen = None;
        let outcome = slot.send(T, |p, t| {
            seen = Some((p.as_ptr(), p.handle(), t));
            SendOutcome::Sent
        });
        assert_eq!(outcome, SendOutcome::Sent);
        let (first_address, port, timeout) = seen.unwrap();
        assert_eq!((port, timeout), (handle(8), T));
        for outcome in [
            SendOutcome::TimedOut,
            SendOutcome::Disconnected,
            SendOutcome::Failed,
            SendOutcome::TimedOut,
        ] {
            let returned = slot.send(T, |p, _| {
                assert_eq!(p.as_ptr(), first_address, "always the one variable");
                outcome
            });
            assert_eq!(returned, outcome);
        }
        let mut close_address = None;
        let _ = slot.close(|mut p| close_address = Some(p.as_ptr()));
        assert_eq!(close_address, Some(first_address));
        let stats = slot.stats();
        assert_eq!(
            stats,
            PortStats {
                sent: 1,
                timed_out: 2,
                disconnected: 1,
                no_client: 1,
                failed: 1
            }
        );
        assert_eq!(stats.attempts(), 6);
    }
}
