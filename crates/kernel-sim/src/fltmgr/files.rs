//! What Filter Manager knows about the synthetic I/O of a run: the open file objects, the
//! operations in flight, name information and contexts (their tables are in [`names`] and
//! [`contexts`]), the I/O counters, and `FltGetRequestorProcessId`, which reads the operation
//! in flight. The world layer above creates the records as it drives I/O; the routines here
//! read them. Host code, any IRQL the routines allow.
//!
//! [`names`]: crate::fltmgr::names
//! [`contexts`]: crate::fltmgr::contexts

use std::collections::VecDeque;

use vigil_sys::FLT_CALLBACK_DATA;

use crate::fltmgr::contexts::ContextTable;
use crate::fltmgr::draining::PostTable;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::{FsHandle, InstanceState, VolumeId, VolumeRecord};
use crate::fltmgr::names::NameTable;
use crate::kernel::emulate;
use crate::kernel::sharded::{Sharded, ShardedMap, Tally};
use crate::machine::guest::GuestAlloc;
use crate::report::{IoStats, ViolationKind};

/// A synthetic `FILE_OBJECT` and what FltMgr knows about it.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one file object, each read on its own"
)]
pub(crate) struct FileRecord {
    /// The `FILE_OBJECT` and its name buffer, kept alive while the record is (never read).
    _memory: [GuestAlloc; 2],
    pub volume: VolumeId,
    /// The path as the caller spelled it (the opened name).
    pub opened_path: String,
    pub fs_handle: Option<FsHandle>,
    /// Opened (post-create success): stream-handle contexts may be set.
    pub open: bool,
    pub cleaned_up: bool,
    /// Opened with `FILE_OPEN_BY_FILE_ID` (no path before the open).
    pub by_id: bool,
    /// `FltCancelFileOpen` undid its create (the post-create must fail the create).
    pub canceled: bool,
    /// Stream-handle contexts attached, by instance: `(instance, context)`.
    pub contexts: Vec<(usize, usize)>,
    /// The transaction it was opened in (`fltmgr::transactions`; 0: none).
    pub transaction: usize,
}

impl FileRecord {
    /// The record of a file object being created: `object` and its name buffer `name` live as
    /// long as it does.
    pub(crate) fn new(
        object: GuestAlloc,
        name: GuestAlloc,
        volume: VolumeId,
        opened_path: String,
    ) -> Self {
        Self {
            _memory: [object, name],
            volume,
            opened_path,
            fs_handle: None,
            open: false,
            cleaned_up: false,
            by_id: false,
            canceled: false,
            contexts: Vec::new(),
            transaction: 0,
        }
    }
}

/// The I/O counters, one per field of [`IoStats`].
#[derive(Clone, Copy)]
pub(crate) enum Count {
    Operations,
    PreCallbacks,
    PostCallbacks,
    DrainingPosts,
    InstancesAttached,
    InstancesTornDown,
    NamesAcquired,
    NamesReleased,
    ContextsAllocated,
    ContextsFreed,
}

/// [`IoStats`] counted by every I/O thread at once: sharded, summed on read.
#[derive(Default)]
pub(crate) struct IoCounters(Tally<10>);

impl IoCounters {
    /// Adds `n` to `count`.
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.0.add(count as usize, n);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> IoStats {
        let get = |count: Count| self.0.get(count as usize);
        IoStats {
            operations: get(Count::Operations),
            pre_callbacks: get(Count::PreCallbacks),
            post_callbacks: get(Count::PostCallbacks),
            draining_posts: get(Count::DrainingPosts),
            instances_attached: get(Count::InstancesAttached),
            instances_torn_down: get(Count::InstancesTornDown),
            names_acquired: get(Count::NamesAcquired),
            names_released: get(Count::NamesReleased),
            contexts_allocated: get(Count::ContextsAllocated),
            contexts_freed: get(Count::ContextsFreed),
        }
    }
}

/// All synthetic I/O state of a run (inside [`FltState`](crate::fltmgr::FltState)).
///
/// What one operation changes is in tables a reader of the Filter Manager lock may change
/// (the file and in-flight maps, the post table's mutex, the counters), so that I/O threads
/// hold that lock shared; the rest changes only under the exclusive lock.
pub(crate) struct IoState {
    pub volumes: Vec<VolumeRecord>,
    /// Open files by `FILE_OBJECT` address.
    pub files: ShardedMap<FileRecord>,
    /// Callback data of operations in progress -> requestor process id.
    pub in_flight: ShardedMap<u32>,
    /// Operations awaiting their post-operation callback, and those drained at teardown.
    pub posts: Sharded<PostTable>,
    /// Set while a test holds operations in the file system (`world::io::FileSystemHold`).
    pub fs_hold: Option<std::sync::Arc<crate::fltmgr::draining::HoldGate>>,
    pub names: NameTable,
    /// Filter Manager's name cache: file object -> the name formats whose name was queried
    /// (a mask, see `names`).
    pub name_cache: ShardedMap<u32>,
    /// Name providers' name controls and cached names (`name_provider.rs`).
    pub providers: crate::fltmgr::name_provider::ProviderState,
    pub contexts: ContextTable,
    pub stats: IoCounters,
    /// The flags of the unload in progress (`FLTFL_FILTER_UNLOAD_MANDATORY`).
    pub unload_flags: u32,
    /// Handles of torn-down instances, kept so their addresses are not reused in the run.
    pub graveyard: Vec<GuestAlloc>,
    /// Operations whose pre-operation callback runs or pended them (`fltmgr::pending`).
    pub pended: crate::fltmgr::pending::PendTable,
    /// Generic work items (`fltmgr::workitems`).
    pub work_items: crate::fltmgr::workitems::WorkItems,
    /// Rundown references on volumes (`fltmgr::volume_objects`).
    pub volume_refs: crate::fltmgr::volume_objects::VolumeRefs,
    /// Files a filter opened and closed (`FltClose`) whose file object it still references.
    pub closed_files: Vec<FileRecord>,
    /// Transactions and their enlistments (`fltmgr::transactions`).
    pub transactions: crate::fltmgr::transactions::Transactions,
    /// Callback data from `FltAllocateCallbackData` (`fltmgr::callback_data`).
    pub callback_data: crate::fltmgr::callback_data::CallbackDataTable,
    /// `FltLockUserBuffer`/`FltRequestOperationStatusCallback` state of operations in progress.
    pub operation_requests: crate::fltmgr::operation_requests::OperationRequests,
}

impl Default for IoState {
    fn default() -> Self {
        Self {
            volumes: Vec::new(),
            files: ShardedMap::default(),
            in_flight: ShardedMap::default(),
            posts: Sharded::new(PostTable::default),
            fs_hold: None,
            names: NameTable::default(),
            name_cache: ShardedMap::default(),
            providers: crate::fltmgr::name_provider::ProviderState::default(),
            contexts: ContextTable::default(),
            stats: IoCounters::default(),
            unload_flags: 0,
            graveyard: Vec::new(),
            pended: crate::fltmgr::pending::PendTable::default(),
            work_items: crate::fltmgr::workitems::WorkItems::default(),
            volume_refs: crate::fltmgr::volume_objects::VolumeRefs::default(),
            closed_files: Vec::new(),
            transactions: crate::fltmgr::transactions::Transactions::default(),
            callback_data: crate::fltmgr::callback_data::CallbackDataTable::default(),
            operation_requests: crate::fltmgr::operation_requests::OperationRequests::default(),
        }
    }
}

impl IoState {
    /// The live instance (not tearing down) with handle `instance`, and its volume.
    pub(crate) fn instance(&self, instance: usize) -> Option<(VolumeId, InstanceState)> {
        self.volumes.iter().enumerate().find_map(|(index, v)| {
            v.instance
                .as_ref()
                .filter(|i| i.handle.address() == instance)
                .map(|i| (VolumeId(index), i.state))
        })
    }
}

/// `FltGetRequestorProcessId`: IRQL <= DISPATCH_LEVEL. The process id of the operation's
/// requestor (0 for callback data that is not an operation in progress, a violation).
pub(crate) extern "win64" fn flt_get_requestor_process_id(data: *mut FLT_CALLBACK_DATA) -> u32 {
    emulate(Routine::FltGetRequestorProcessId, |k| {
        let pid = flt_read(k)
            .io
            .in_flight
            .with(data as usize, |pid| pid.map(|pid| *pid));
        pid.unwrap_or_else(|| {
            if crate::fltmgr::draining::misuse_of_drained_copy(
                k,
                "FltGetRequestorProcessId",
                data as usize,
            ) {
                return 0;
            }
            k.violation(
                ViolationKind::Parameter,
                "FltGetRequestorProcessId: the callback data of an operation in progress",
                format!("{data:p} is not the callback data of an operation in progress"),
            );
            0
        })
    })
}

/// Bounded FIFO of retired records, so that a stale pointer is recognized for a while and its
/// memory is not reused meanwhile.
///
/// A plain queue: retiring (every release) is O(1) with no hashing, and only a misuse (a stale
/// release, a double free) searches it.
pub(crate) struct Retired<T> {
    entries: VecDeque<(usize, T)>,
    capacity: usize,
}

impl<T> Retired<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn insert(&mut self, address: usize, value: T) {
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((address, value));
    }

    /// The latest record retired at `address` (an address may be reused and retired again).
    pub(crate) fn get(&self, address: usize) -> Option<&T> {
        self.entries
            .iter()
            .rev()
            .find_map(|(at, value)| (*at == address).then_some(value))
    }
}
