//! `KEVENT` wrapper: a notification (or synchronization) event that can live in a `static` (image memory is
//! non-paged) and is waited on only with a finite timeout; the kernel's `vigil_core::RawEvent`.

use core::cell::UnsafeCell;

use vigil_sys::{
    Executive, FALSE, KEVENT, KeClearEvent, KeInitializeEvent, KeSetEvent, KeWaitForSingleObject,
    KernelMode, NotificationEvent, SynchronizationEvent,
};

use vigil_core::{RawEvent, Timeout, WaitOutcome};

use crate::error::{NtStatus, wait_outcome};

/// A notification event.
///
/// # Invariants
///
/// Every method but [`KernelEvent::init`] requires that `init` ran first; the driver calls
/// it before the event is reachable from any other thread.
#[repr(transparent)]
pub struct KernelEvent(UnsafeCell<KEVENT>);

// SAFETY: as for Sync: the KEVENT is used only through the Ke routines.
unsafe impl Send for KernelEvent {}

// SAFETY: a KEVENT is designed for concurrent use through the Ke routines; the cell is never
// read or written directly after initialization.
unsafe impl Sync for KernelEvent {}

impl KernelEvent {
    /// An all-zero event, to be initialized with [`Self::init`] before use.
    pub const fn zeroed() -> Self {
        // SAFETY: KEVENT is plain data; all-zero is a valid bit pattern for the bytes.
        Self(UnsafeCell::new(unsafe { core::mem::zeroed() }))
    }

    /// Initializes the event, not signalled. Any IRQL; before any other use.
    pub fn init(&self) {
        // SAFETY: the KEVENT is in non-paged memory (image or pool) and not yet shared.
        unsafe { KeInitializeEvent(self.0.get(), NotificationEvent, FALSE) };
    }

    /// Initializes the event as a synchronization (auto-reset) event, not signalled: a set
    /// releases one waiter and clears. Any IRQL; before any other use.
    pub fn init_synchronization(&self) {
        // SAFETY: the KEVENT is in non-paged memory (image or pool) and not yet shared.
        unsafe { KeInitializeEvent(self.0.get(), SynchronizationEvent, FALSE) };
    }

    /// Signals the event. IRQL <= DISPATCH_LEVEL.
    pub fn set(&self) {
        // SAFETY: initialized (invariant); Wait = FALSE is valid at <= DISPATCH_LEVEL.
        unsafe { KeSetEvent(self.0.get(), 0, FALSE) };
    }

    /// Clears the event. IRQL <= DISPATCH_LEVEL.
    pub fn clear(&self) {
        // SAFETY: initialized (invariant).
        unsafe { KeClearEvent(self.0.get()) };
    }

    /// Waits until the event is signalled or `timeout` expires. IRQL <= APC_LEVEL.
    pub fn wait(&self, timeout: Timeout) -> Result<WaitOutcome, NtStatus> {
        let mut interval = timeout.as_nt_relative();
        // SAFETY: initialized (invariant); `interval` is a valid relative timeout that outlives
        // the call; kernel mode, not alertable.
        let status = unsafe {
            KeWaitForSingleObject(
                self.0.get().cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut interval,
            )
        };
        wait_outcome(status)
    }
}

// SAFETY: KeInitializeEvent / KeSetEvent / KeClearEvent / KeWaitForSingleObject give exactly the
// contract: set and clear are serialized by the dispatcher lock and synchronize with waiters;
// `wait` uses a finite relative timeout and maps STATUS_TIMEOUT to TimedOut explicitly.
unsafe impl RawEvent for KernelEvent {
    unsafe fn init(slot: *mut Self) {
        // SAFETY: `slot` is valid for writes (contract); KernelEvent is a transparent KEVENT cell.
        unsafe { slot.write(KernelEvent::zeroed()) };
        // SAFETY: just written, and not yet shared.
        unsafe { &*slot }.init();
    }

    fn set(&self) {
        KernelEvent::set(self);
    }

    fn clear(&self) {
        KernelEvent::clear(self);
    }

    fn wait(&self, timeout: Timeout) -> WaitOutcome {
        // A kernel-mode, non-alertable wait on an event returns STATUS_SUCCESS or STATUS_TIMEOUT;
        // anything else is reported as "not signalled", which never claims an unmet condition.
        KernelEvent::wait(self, timeout).unwrap_or(WaitOutcome::TimedOut)
    }
}
