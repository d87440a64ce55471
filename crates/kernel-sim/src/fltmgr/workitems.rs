//! Work items: generic ones (`FltAllocateGenericWorkItem`, `FltQueueGenericWorkItem`,
//! `FltFreeGenericWorkItem`) and deferred-I/O ones (`FltAllocateDeferredIoWorkItem`,
//! `FltQueueDeferredIoWorkItem`, `FltFreeDeferredIoWorkItem`), and the check that none is still
//! queued or running when the driver is gone (its routine would run in an unloaded image).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocategenericworkitem>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltqueuegenericworkitem>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreegenericworkitem>):
//! all three at IRQL <= DISPATCH_LEVEL; allocation returns NULL when pool is short; the item is
//! queued with an opaque filter or instance pointer (`FltObject`), a routine called at
//! PASSIVE_LEVEL in a system thread with the item, that pointer and the context;
//! `CriticalWorkQueue` or `DelayedWorkQueue` (`HyperCriticalWorkQueue` is reserved for the
//! system); `STATUS_FLT_DELETING_OBJECT` when the filter is being unloaded. Filter Manager does
//! not document that unloading waits for queued items, so a filter must drain its own before
//! its unload returns; kernel-sim waits for them only so as not to unmap the image under them,
//! and reports each one.
//!
//! Deferred-I/O items
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatedeferredioworkitem>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltqueuedeferredioworkitem>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreedeferredioworkitem>):
//! the same IRQL and allocation rules; queued with the callback data of an IRP-based operation
//! in progress, whose routine receives it; `STATUS_FLT_NOT_SAFE_TO_POST_OPERATION` for paging
//! I/O, `STATUS_FLT_DELETING_OBJECT` when the operation's target instance is being torn down.
//! An item of one kind queued or freed by the other kind's routine is a parameter violation.
//!
//! Each queued item runs on its own host thread after `SimConfig::work_item_latency` (a
//! system worker picks an item up some time after it was queued).

use std::thread::JoinHandle;

// Fx hashing: kernel-sim's own addresses as keys.
use rustc_hash::FxHashMap as HashMap;
use vigil_sys::{
    CriticalWorkQueue, DelayedWorkQueue, FLT_CALLBACK_DATA, FLTFL_CALLBACK_DATA_IRP_OPERATION,
    IRP_PAGING_IO, NTSTATUS, PASSIVE_LEVEL, PVOID, STATUS_FLT_DELETING_OBJECT,
    STATUS_FLT_NOT_SAFE_TO_POST_OPERATION, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::files::Retired;
use crate::fltmgr::flt_write;
use crate::fltmgr::instances::InstanceState;
use crate::kernel::{Kernel, allocate_thread_id, emulate};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::thread::SYSTEM_PROCESS_ID;
use crate::report::ViolationKind;

/// The worker routine's type (`PFLT_GENERIC_WORKITEM_ROUTINE`).
type WorkerRoutine = unsafe extern "win64" fn(PVOID, PVOID, PVOID);

/// Where a work item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemState {
    /// Allocated, not queued (or its routine returned).
    Idle,
    /// Queued, its routine not started yet.
    Queued,
    /// Its routine is running on the worker thread with this emulated id.
    Running(usize),
}

/// Which routines a work item belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    /// `FltAllocateGenericWorkItem` and company.
    Generic,
    /// `FltAllocateDeferredIoWorkItem` and company.
    DeferredIo,
}

impl ItemKind {
    fn allocator(self) -> &'static str {
        match self {
            Self::Generic => "FltAllocateGenericWorkItem",
            Self::DeferredIo => "FltAllocateDeferredIoWorkItem",
        }
    }

    fn queuer(self) -> &'static str {
        match self {
            Self::Generic => "FltQueueGenericWorkItem",
            Self::DeferredIo => "FltQueueDeferredIoWorkItem",
        }
    }
}

/// A live work item.
struct ItemRecord {
    kind: ItemKind,
    /// The opaque `PFLT_GENERIC_WORKITEM` the driver holds.
    memory: GuestAlloc,
    state: ItemState,
    /// The driver entry point that allocated it.
    allocated_in: &'static str,
    /// The driver entry point that last queued it.
    queued_in: &'static str,
}

/// The work items of a run.
pub(crate) struct WorkItems {
    live: HashMap<usize, ItemRecord>,
    /// Freed items (and where), kept a while so that a stale pointer is recognized.
    freed: Retired<(GuestAlloc, &'static str)>,
    /// Worker threads, joined when the driver is gone.
    threads: Vec<JoinHandle<()>>,
}

impl Default for WorkItems {
    fn default() -> Self {
        Self {
            live: HashMap::default(),
            freed: Retired::new(4096),
            threads: Vec::new(),
        }
    }
}

impl WorkItems {
    /// Keeps a worker thread Filter Manager started for the driver (a posted completion), to be
    /// joined when the driver is gone.
    pub(crate) fn adopt(&mut self, thread: JoinHandle<()>) {
        self.threads.push(thread);
    }
}

/// `FltAllocateGenericWorkItem`: IRQL <= DISPATCH_LEVEL. Failable: NULL.
pub(crate) extern "win64" fn flt_allocate_generic_work_item() -> PVOID {
    emulate(Routine::FltAllocateGenericWorkItem, |k| {
        allocate(k, ItemKind::Generic)
    })
}

/// `FltAllocateDeferredIoWorkItem`: IRQL <= DISPATCH_LEVEL. Failable: NULL.
pub(crate) extern "win64" fn flt_allocate_deferred_io_work_item() -> PVOID {
    emulate(Routine::FltAllocateDeferredIoWorkItem, |k| {
        allocate(k, ItemKind::DeferredIo)
    })
}

/// A new idle work item of `kind`; NULL when the fault plan fails the allocation.
fn allocate(k: &Kernel, kind: ItemKind) -> PVOID {
    if k.inject_failure(kind.allocator(), "NULL") {
        return std::ptr::null_mut();
    }
    let memory = GuestAlloc::zeroed(64);
    let address = memory.address();
    let allocated_in = state::with(|s| s.callback.get());
    flt_write(k).io.work_items.live.insert(
        address,
        ItemRecord {
            kind,
            memory,
            state: ItemState::Idle,
            allocated_in,
            queued_in: "",
        },
    );
    address as PVOID
}

/// Whether `object` may have work queued for it: `Err` with the status to return.
fn check_flt_object(k: &Kernel, object: usize) -> Result<(), NTSTATUS> {
    let flt = flt_write(k);
    if let Some(filter) = flt.filters.get(&object) {
        return if filter.unregistered {
            Err(STATUS_FLT_DELETING_OBJECT)
        } else {
            Ok(())
        };
    }
    match flt.io.instance(object) {
        Some((_, InstanceState::TearingDown)) => Err(STATUS_FLT_DELETING_OBJECT),
        Some(_) => Ok(()),
        None if flt.io.graveyard.iter().any(|g| g.address() == object) => {
            Err(STATUS_FLT_DELETING_OBJECT)
        }
        None => {
            drop(flt);
            k.parameter_violation(
                "FltObject is the caller's filter (PFLT_FILTER) or instance (PFLT_INSTANCE)",
                format!("{object:#x} is neither"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
    }
}

/// `FltQueueGenericWorkItem`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn flt_queue_generic_work_item(
    item: PVOID,
    flt_object: PVOID,
    routine: Option<WorkerRoutine>,
    queue_type: u32,
    context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltQueueGenericWorkItem, |k| {
        if let Err(status) = check_flt_object(k, flt_object as usize) {
            return status;
        }
        queue(
            k,
            (ItemKind::Generic, item),
            flt_object as usize,
            routine,
            (queue_type, context),
        )
    })
}

/// `FltQueueDeferredIoWorkItem`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn flt_queue_deferred_io_work_item(
    item: PVOID,
    data: *mut FLT_CALLBACK_DATA,
    routine: Option<WorkerRoutine>,
    queue_type: u32,
    context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltQueueDeferredIoWorkItem, |k| {
        if let Err(status) = check_operation(k, data as usize) {
            return status;
        }
        queue(
            k,
            (ItemKind::DeferredIo, item),
            data as usize,
            routine,
            (queue_type, context),
        )
    })
}

/// Whether the operation with callback data `data` may be posted: `Err` with the status to
/// return (a violation for data that is no IRP operation in progress).
fn check_operation(k: &Kernel, data: usize) -> Result<(), NTSTATUS> {
    let in_flight = flt_write(k).io.in_flight.contains(data);
    if !in_flight {
        k.parameter_violation(
            "Data, the callback data of an IRP-based operation in progress",
            format!("{data:#x} is not an operation in progress"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    let value = guest::read(data as *const FLT_CALLBACK_DATA);
    if value.Flags & FLTFL_CALLBACK_DATA_IRP_OPERATION == 0 {
        k.parameter_violation(
            "Data, the callback data of an IRP-based operation in progress",
            format!("{data:#x} is not IRP-based (Flags {:#x})", value.Flags),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    let iopb = guest::read(value.Iopb);
    if iopb.IrpFlags & IRP_PAGING_IO != 0 {
        return Err(STATUS_FLT_NOT_SAFE_TO_POST_OPERATION);
    }
    let target = flt_write(k).io.instance(iopb.TargetInstance as usize);
    match target {
        Some((_, InstanceState::TearingDown)) | None => Err(STATUS_FLT_DELETING_OBJECT),
        Some(_) => Ok(()),
    }
}

/// Queues `item` (of `kind`) to run `routine` with `object` (the filter or instance, or the
/// callback data) and `context`.
fn queue(
    k: &Kernel,
    (kind, item): (ItemKind, PVOID),
    object: usize,
    routine: Option<WorkerRoutine>,
    (queue_type, context): (u32, PVOID),
) -> NTSTATUS {
    let invalid = STATUS_INVALID_PARAMETER;
    let Some(routine) = routine else {
        k.parameter_violation("a WorkerRoutine", "WorkerRoutine is NULL".to_owned());
        return invalid;
    };
    if queue_type != CriticalWorkQueue && queue_type != DelayedWorkQueue {
        k.parameter_violation(
            "QueueType CriticalWorkQueue or DelayedWorkQueue (HyperCriticalWorkQueue is reserved)",
            format!("QueueType {queue_type}"),
        );
        return invalid;
    }
    let queued_in = state::with(|s| s.callback.get());
    let address = item as usize;
    {
        let mut flt = flt_write(k);
        let items = &mut flt.io.work_items;
        let problem = match items.live.get_mut(&address) {
            Some(record) if record.kind != kind => {
                Some(format!("{item:p} is from {}", record.kind.allocator()))
            }
            Some(record) if record.state == ItemState::Queued => {
                Some(format!("{item:p} is already queued"))
            }
            Some(record) => {
                record.state = ItemState::Queued;
                record.queued_in = queued_in;
                None
            }
            None => Some(match items.freed.get(address) {
                Some((_, freed_in)) => format!("{item:p} was freed in {freed_in}"),
                None => format!("{item:p} is not from {}", kind.allocator()),
            }),
        };
        if let Some(problem) = problem {
            drop(flt);
            k.parameter_violation(
                &format!(
                    "FltWorkItem allocated by {}, live and not queued",
                    kind.allocator()
                ),
                problem,
            );
            return invalid;
        }
    }
    spawn_worker(k, (kind, address), object, routine, context as usize);
    STATUS_SUCCESS
}

/// Runs the queued `item`'s routine on a worker thread of its own.
fn spawn_worker(
    k: &Kernel,
    (kind, item): (ItemKind, usize),
    object: usize,
    routine: WorkerRoutine,
    context: usize,
) {
    let kernel = k.arc();
    let latency = k.config.work_item_latency;
    let spawned = std::thread::Builder::new()
        .name(format!("kernel-sim work item {item:#x}"))
        .spawn(move || {
            let id = allocate_thread_id();
            state::with(|s| {
                s.thread_id.set(id);
                s.process_id.set(SYSTEM_PROCESS_ID);
                s.system_thread.set(true);
            });
            std::thread::sleep(latency);
            if let Some(record) = flt_write(&kernel).io.work_items.live.get_mut(&item) {
                record.state = ItemState::Running(id);
            }
            let entry = match kind {
                ItemKind::Generic => "GenericWorkItem",
                ItemKind::DeferredIo => "DeferredIoWorkItem",
            };
            kernel.call_driver(entry, Some(PASSIVE_LEVEL), || {
                // SAFETY: the driver passed this PFLT_GENERIC_WORKITEM_ROUTINE (or
                // PFLT_DEFERRED_IO_WORKITEM_ROUTINE, the same shape) to the queue routine; the image stays mapped until its items are waited
                // for (`driver_gone`); the arguments are the driver's own, passed through.
                unsafe { routine(item as PVOID, object as PVOID, context as PVOID) };
            });
            let mut flt = flt_write(&kernel);
            if let Some(record) = flt.io.work_items.live.get_mut(&item)
                && record.state == ItemState::Running(id)
            {
                record.state = ItemState::Idle;
            }
            drop(flt);
            kernel.notify_waiters();
        });
    match spawned {
        Ok(join) => flt_write(k).io.work_items.threads.push(join),
        Err(error) => k.violation(
            ViolationKind::Internal,
            "kernel-sim",
            format!("no worker thread for work item {item:#x}: {error}"),
        ),
    }
}

/// `FltFreeGenericWorkItem`: IRQL <= DISPATCH_LEVEL. The item may be freed by its own
/// routine (the usual pattern), not while it is queued or another thread runs it.
pub(crate) extern "win64" fn flt_free_generic_work_item(item: PVOID) {
    emulate(Routine::FltFreeGenericWorkItem, |k| {
        free(k, ItemKind::Generic, item);
    });
}

/// `FltFreeDeferredIoWorkItem`: IRQL <= DISPATCH_LEVEL. As `FltFreeGenericWorkItem`.
pub(crate) extern "win64" fn flt_free_deferred_io_work_item(item: PVOID) {
    emulate(Routine::FltFreeDeferredIoWorkItem, |k| {
        free(k, ItemKind::DeferredIo, item);
    });
}

/// Frees `item`, which must be an idle item of `kind` (or the one whose routine is running on
/// this thread).
fn free(k: &Kernel, kind: ItemKind, item: PVOID) {
    let address = item as usize;
    let me = state::with(|s| s.thread_id.get());
    let freed_in = state::with(|s| s.callback.get());
    let mut flt = flt_write(k);
    let items = &mut flt.io.work_items;
    let problem = match items.live.get(&address).map(|r| (r.kind, r.state)) {
        Some((other, _)) if other != kind => {
            Some(format!("{item:p} is from {}", other.allocator()))
        }
        Some((_, ItemState::Queued)) => Some(format!("{item:p} is queued")),
        Some((_, ItemState::Running(worker))) if worker != me => {
            Some(format!("{item:p} is running on another thread"))
        }
        Some(_) => {
            if let Some(record) = items.live.remove(&address) {
                items.freed.insert(address, (record.memory, freed_in));
            }
            None
        }
        None => Some(match items.freed.get(address) {
            Some((_, earlier)) => format!("{item:p} was already freed in {earlier}"),
            None => format!("{item:p} is not from {}", kind.allocator()),
        }),
    };
    drop(flt);
    if let Some(problem) = problem {
        k.parameter_violation(
            &format!(
                "FltWorkItem allocated by {}, freed once, not while queued",
                kind.allocator()
            ),
            problem,
        );
    }
}

/// The driver is gone (`why`): reports every work item still queued or running (its routine
/// runs in an unloaded image) and every item never freed, then waits (bounded by
/// `SimConfig::thread_exit_timeout`) for the worker threads so the image is not unmapped under
/// them.
pub(crate) fn driver_gone(k: &Kernel, why: &str) {
    let (outstanding, unfreed, threads) = {
        let mut flt = flt_write(k);
        let items = &mut flt.io.work_items;
        let outstanding: Vec<(usize, ItemKind, &'static str, ItemState)> = items
            .live
            .iter()
            .filter(|(_, r)| r.state != ItemState::Idle)
            .map(|(&a, r)| (a, r.kind, r.queued_in, r.state))
            .collect();
        let unfreed: Vec<(usize, ItemKind, &'static str)> = items
            .live
            .iter()
            .map(|(&a, r)| (a, r.kind, r.allocated_in))
            .collect();
        (outstanding, unfreed, std::mem::take(&mut items.threads))
    };
    for (item, kind, queued_in, item_state) in outstanding {
        let what = if item_state == ItemState::Queued {
            "still queued"
        } else {
            "still running"
        };
        attributed(k, kind.queuer(), queued_in, || {
            k.violation(
                ViolationKind::ThreadStillRunning,
                "every queued work item has finished running before the driver is gone",
                format!("work item {item:#x} queued in {queued_in} {what} after {why}"),
            );
        });
    }
    for (item, kind, allocated_in) in unfreed {
        attributed(k, kind.allocator(), allocated_in, || {
            k.violation(
                ViolationKind::ResourceLeak,
                "every work item is freed (FltFreeGenericWorkItem) before the driver is gone",
                format!("work item {item:#x} allocated in {allocated_in} not freed after {why}"),
            );
        });
    }
    let deadline = std::time::Instant::now() + k.config.thread_exit_timeout;
    for thread in threads {
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
    let mut flt = flt_write(k);
    flt.io.work_items.live.clear();
}

/// Runs `record` with the violation attributed to `routine` called from `callback`.
fn attributed(k: &Kernel, routine: &'static str, callback: &'static str, record: impl FnOnce()) {
    let _ = k;
    let previous = state::with(|s| (s.routine.replace(routine), s.callback.replace(callback)));
    record();
    state::with(|s| {
        s.routine.set(previous.0);
        s.callback.set(previous.1);
    });
}
