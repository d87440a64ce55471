//! Per-thread state of kernel-sim, readable from the fault handler.
//!
//! Everything here lives in one `thread_local!` with a `const` initializer and no destructor, so
//! an access compiles to a plain `fs:`-relative load: no lazy initialization, no allocation, no
//! lock. That is what makes it readable from the SIGSEGV handler (async-signal-safe), which
//! needs the IRQL (CR8 emulation), the saved host stack pointer (to abandon a driver call) and
//! the loaded image's exception data (SEH dispatch).

use std::cell::Cell;

/// Why a driver call ended without returning, as the stack switch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Abandon {
    /// A fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) in driver code or in an emulated
    /// routine serving it; details in [`FaultRecord`].
    Fault = 1,
    /// `KeBugCheckEx`; the code and parameters are in [`FaultRecord`].
    BugCheck = 2,
    /// `PsTerminateSystemThread` ended the thread's start routine.
    Terminated = 3,
    /// kernel-sim stopped the call itself (a deadlock or an internal error, already recorded).
    Stopped = 4,
}

impl Abandon {
    pub(crate) fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Self::Fault),
            2 => Some(Self::BugCheck),
            3 => Some(Self::Terminated),
            4 => Some(Self::Stopped),
            _ => None,
        }
    }
}

/// What the fault handler (or `KeBugCheckEx`) saw, copied out by the host after abandonment.
#[derive(Debug)]
pub(crate) struct FaultRecord {
    /// Signal number (or 0 for a bug check).
    pub signal: Cell<i32>,
    /// `si_code`.
    pub code: Cell<i32>,
    /// Instruction pointer at the fault.
    pub rip: Cell<usize>,
    /// Faulting address (`si_addr`).
    pub addr: Cell<usize>,
    /// Stack pointer at the fault.
    pub rsp: Cell<usize>,
    /// Bug check code and parameters, or `PsTerminateSystemThread`'s exit status in `[0]`.
    pub params: [Cell<u64>; 5],
}

/// Bounds of the image the thread is running, for SEH dispatch in the fault handler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageBounds {
    /// Mapped base address.
    pub base: usize,
    /// `SizeOfImage`.
    pub size: usize,
    /// RVA of the exception directory (`.pdata`), 0 if none.
    pub pdata_rva: u32,
    /// Size of the exception directory in bytes.
    pub pdata_size: u32,
    /// Address of the IAT slot bound to `__C_specific_handler`, 0 if not imported.
    pub c_specific_handler_slot: usize,
}

impl ImageBounds {
    pub(crate) const EMPTY: Self = Self {
        base: 0,
        size: 0,
        pdata_rva: 0,
        pdata_size: 0,
        c_specific_handler_slot: 0,
    };

    pub(crate) fn contains(&self, address: usize) -> bool {
        address >= self.base && address - self.base < self.size
    }
}

/// The per-thread state. Only `Cell`s of plain data: see the module docs.
pub(crate) struct ThreadState {
    /// The emulated IRQL of this thread's "processor".
    pub irql: Cell<u8>,
    /// `KeEnterCriticalRegion` nesting (push locks enter one too).
    pub critical_regions: Cell<u32>,
    /// Host stack pointer saved by the stack switch; 0 outside a driver call.
    pub host_rsp: Cell<usize>,
    /// Nesting depth of driver calls on this thread (a callback made from an emulated routine).
    pub depth: Cell<u32>,
    /// Usable range of the driver stack in use: `[stack_low, stack_high)`.
    pub stack_low: Cell<usize>,
    /// See `stack_low`.
    pub stack_high: Cell<usize>,
    /// Start of the guard page below the driver stack.
    pub guard_low: Cell<usize>,
    /// The context of the driver call in progress, owned by the layer that made the call (the
    /// kernel layer stores its `Kernel` here and alone reads it back); null outside a call.
    /// Opaque at this layer, so the machine knows nothing of what runs on it.
    pub owner: Cell<*const ()>,
    /// The image of that kernel, for the fault handler.
    pub image: Cell<ImageBounds>,
    /// Fault details for the host.
    pub fault: FaultRecord,
    /// The emulated routine in progress, for messages.
    pub routine: Cell<&'static str>,
    /// The driver entry point in progress (DriverEntry, FilterUnload, a thread, ...).
    pub callback: Cell<&'static str>,
    /// The address of the callback data whose pre- or post-operation callback is running on
    /// this thread (0 outside one): routines whose rules depend on the operation in progress
    /// read it (`FltGetFileNameInformationUnsafe`).
    pub operation: Cell<usize>,
    /// The emulated process id (a synthetic requestor's, or 4 for the System process).
    pub process_id: Cell<usize>,
    /// The emulated thread id.
    pub thread_id: Cell<usize>,
    /// True on a thread created by `PsCreateSystemThread`.
    pub system_thread: Cell<bool>,
    /// True on the thread running the filter's unload callback.
    pub unload_thread: Cell<bool>,
    /// True on a thread that stands for an application's thread (it can be suspended: see
    /// `SimConfig::suspend`).
    pub application_thread: Cell<bool>,
    /// Access violations dispatched to a driver `__except` block on this thread.
    pub seh_dispatches: Cell<u64>,
}

impl ThreadState {
    const fn new() -> Self {
        Self {
            irql: Cell::new(0),
            critical_regions: Cell::new(0),
            host_rsp: Cell::new(0),
            depth: Cell::new(0),
            stack_low: Cell::new(0),
            stack_high: Cell::new(0),
            guard_low: Cell::new(0),
            owner: Cell::new(std::ptr::null()),
            image: Cell::new(ImageBounds::EMPTY),
            fault: FaultRecord {
                signal: Cell::new(0),
                code: Cell::new(0),
                rip: Cell::new(0),
                addr: Cell::new(0),
                rsp: Cell::new(0),
                params: [
                    Cell::new(0),
                    Cell::new(0),
                    Cell::new(0),
                    Cell::new(0),
                    Cell::new(0),
                ],
            },
            routine: Cell::new(""),
            callback: Cell::new(""),
            operation: Cell::new(0),
            process_id: Cell::new(4),
            thread_id: Cell::new(0),
            system_thread: Cell::new(false),
            unload_thread: Cell::new(false),
            application_thread: Cell::new(false),
            seh_dispatches: Cell::new(0),
        }
    }
}

thread_local! {
    static STATE: ThreadState = const { ThreadState::new() };
}

/// Runs `f` with this thread's state. Async-signal-safe (see the module docs).
pub(crate) fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    STATE.with(f)
}

/// The current thread's emulated IRQL.
pub fn current_irql() -> u8 {
    with(|s| s.irql.get())
}

/// Sets the current thread's emulated IRQL (for tests and for the sim's own callers).
pub fn set_irql(irql: u8) {
    with(|s| s.irql.set(irql));
}

/// Marks the calling thread as an application's thread: one that `SimConfig::suspend` may
/// suspend (a test's synthetic I/O workers; never system threads or the unload thread).
pub fn mark_application_thread() {
    with(|s| s.application_thread.set(true));
}
