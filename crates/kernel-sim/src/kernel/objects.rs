//! Kernel objects and the handle table: system threads, registry keys, device objects, files a
//! filter opened, MDLs, executive resources.
//!
//! Handles are kernel handles (high bit set, multiples of 4), valid in the System process
//! only, as `OBJ_KERNEL_HANDLE` makes them. Objects referenced by pointer
//! (`ObReferenceObjectByHandle`) carry a reference count; at the end of a run every handle must
//! be closed and every reference dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use vigil_sys::DISPATCHER_HEADER;

use crate::machine::guest::GuestAlloc;

/// `ThreadObject` in the dispatcher header's type byte.
pub(crate) const THREAD_OBJECT_TYPE: u8 = 6;

/// The object body a driver sees as a `PETHREAD`: a dispatcher header (so that
/// `KeWaitForSingleObject` can tell it apart) followed by opaque bytes.
#[repr(C)]
pub(crate) struct ThreadBody {
    pub header: DISPATCHER_HEADER,
    pub opaque: [u64; 16],
}

/// A system thread created by `PsCreateSystemThread`.
pub(crate) struct ThreadObject {
    body: GuestAlloc,
    /// The emulated thread id.
    pub id: usize,
    /// The start routine, for messages.
    pub start: usize,
    /// Pointer references taken by `ObReferenceObjectByHandle`.
    pub references: AtomicI64,
    /// True once the thread has stopped running driver code.
    pub finished: AtomicBool,
    /// The OS thread.
    pub join: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ThreadObject {
    pub(crate) fn new(id: usize, start: usize) -> Self {
        let body = GuestAlloc::for_type::<ThreadBody>(0);
        let mut header_word = [0u8; 4];
        header_word[0] = THREAD_OBJECT_TYPE;
        header_word[2] = u8::try_from(size_of::<ThreadBody>() / 4).unwrap_or(u8::MAX);
        crate::machine::guest::write(body.as_ptr::<i32>(), i32::from_le_bytes(header_word));
        Self {
            body,
            id,
            start,
            references: AtomicI64::new(0),
            finished: AtomicBool::new(false),
            join: std::sync::Mutex::new(None),
        }
    }

    /// The address the driver sees.
    pub(crate) fn address(&self) -> usize {
        self.body.address()
    }

    /// Whether the thread finished running driver code.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// An open registry key.
#[derive(Clone, Debug)]
pub(crate) struct KeyObject {
    /// Full path, as opened.
    pub path: String,
}

/// What a handle refers to.
#[derive(Clone)]
pub(crate) enum HandleTarget {
    /// A system thread.
    Thread(Arc<ThreadObject>),
    /// A registry key.
    Key(KeyObject),
    /// A file a filter opened with `FltCreateFileEx` (the `FILE_OBJECT`'s address).
    File(usize),
}

impl HandleTarget {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Thread(_) => "thread",
            Self::Key(_) => "registry key",
            Self::File(_) => "file",
        }
    }
}

/// A device object created by `IoCreateDevice`.
pub(crate) struct DeviceRecord {
    /// The device object's own pages (quarantined when deleted, so a use after delete faults).
    pub region: crate::machine::pages::Region,
    /// Created while DriverEntry was running (its `DO_DEVICE_INITIALIZING` is cleared when
    /// DriverEntry returns).
    pub created_during_entry: bool,
    /// Its name, if named.
    pub name: Option<String>,
}

/// A memory descriptor list the driver or Filter Manager allocated (`IoAllocateMdl`,
/// `FltLockUserBuffer`).
pub(crate) struct MdlRecord {
    /// The `MDL` header and its page frame array, owned here (never read).
    pub _memory: GuestAlloc,
    /// The routine that allocated it.
    pub routine: &'static str,
    /// The driver entry point that allocated it.
    pub allocated_in: &'static str,
}

/// An executive resource (`ERESOURCE`) the driver initialized: its owners by emulated thread
/// id (`ntoskrnl::resource`).
pub(crate) struct ResourceRecord {
    /// The exclusive owner and its recursion count.
    pub exclusive: Option<(usize, u32)>,
    /// Shared owners and their recursion counts.
    pub shared: BTreeMap<usize, u32>,
    /// Threads waiting for exclusive access (they hold new sharers back).
    pub exclusive_waiters: u32,
    /// The driver entry point that initialized it.
    pub initialized_in: &'static str,
}

/// The objects of one run.
#[derive(Default)]
pub(crate) struct Objects {
    handles: BTreeMap<usize, (HandleTarget, &'static str)>,
    next_handle: usize,
    /// Every system thread, by object address.
    pub threads: BTreeMap<usize, Arc<ThreadObject>>,
    /// Live device objects, by address.
    pub devices: BTreeMap<usize, DeviceRecord>,
    /// File objects referenced by pointer (`FltCreateFileEx`'s `FileObject`): address ->
    /// references the driver holds, each dropped by `ObDereferenceObject`.
    pub file_references: BTreeMap<usize, i64>,
    /// Initialized executive resources, by the address of their storage.
    pub resources: BTreeMap<usize, ResourceRecord>,
    /// Live MDLs by address.
    pub mdls: BTreeMap<usize, MdlRecord>,
    /// Freed MDLs (address -> freed by), to name double frees; forgotten when the address is
    /// reused.
    pub freed_mdls: BTreeMap<usize, &'static str>,
    /// Device objects deleted (address -> deleted by), to name double deletes.
    pub deleted_devices: BTreeMap<usize, &'static str>,
    /// The disk device objects `FltGetDiskDeviceObject` hands out, by the address of the volume
    /// they lie under (made on first use, kept for the run).
    pub disk_devices: BTreeMap<usize, GuestAlloc>,
    /// References on those the driver holds: device address -> the callback each was taken
    /// in; each is dropped by `ObDereferenceObject`.
    pub device_references: BTreeMap<usize, Vec<&'static str>>,
    /// String buffers an Rtl routine allocated (`RtlUpcaseUnicodeString`,
    /// `RtlUnicodeStringToAnsiString`): buffer -> the allocating routine, until freed by
    /// `RtlFreeUnicodeString` / `RtlFreeAnsiString` (`ntoskrnl::rtl_strings`).
    pub rtl_buffers: BTreeMap<usize, &'static str>,
    /// Live lookaside lists, by the address of their header (`ntoskrnl::lookaside`).
    pub lookasides: BTreeMap<usize, LookasideRecord>,
    /// Fast mutexes owned now, by address: (owner lock identity, IRQL before the acquire)
    /// (`ntoskrnl::fast_mutex`).
    pub fast_mutexes: BTreeMap<usize, (usize, u8)>,
}

/// A lookaside list the driver initialized (`ntoskrnl::lookaside`).
#[derive(Clone, Debug)]
pub(crate) struct LookasideRecord {
    /// The initializing routine (`ExInitializeNPagedLookasideList`, `ExInitializeLookasideListEx`).
    pub kind: &'static str,
    /// Entry size in bytes.
    pub size: usize,
    /// Pool tag of its entries.
    pub tag: u32,
    /// Its entries come from kernel-sim's default allocate routine (no driver Allocate), so
    /// every entry freed to it is a pool block of its size and tag.
    pub default_allocator: bool,
    /// The driver's Free routine (`PFREE_FUNCTION` or `PFREE_FUNCTION_EX`), if it gave one.
    pub driver_free: Option<usize>,
    /// The driver entry point that initialized it.
    pub initialized_in: &'static str,
}

/// First kernel handle value: kernel handles have the top bit set.
const KERNEL_HANDLE_BASE: usize = 0xFFFF_FFFF_8000_0000;

impl Objects {
    /// Opens a handle to `target`, created by `routine`.
    pub(crate) fn open(&mut self, target: HandleTarget, routine: &'static str) -> usize {
        self.next_handle += 4;
        let handle = KERNEL_HANDLE_BASE + self.next_handle;
        self.handles.insert(handle, (target, routine));
        handle
    }

    /// The object behind a handle.
    pub(crate) fn get(&self, handle: usize) -> Option<HandleTarget> {
        self.handles.get(&handle).map(|(t, _)| t.clone())
    }

    /// Closes a handle; `None` if it was not open.
    pub(crate) fn close(&mut self, handle: usize) -> Option<HandleTarget> {
        self.handles.remove(&handle).map(|(t, _)| t)
    }

    /// Handles still open: (handle, type, creating routine).
    pub(crate) fn open_handles(&self) -> Vec<(usize, &'static str, &'static str)> {
        self.handles
            .iter()
            .map(|(h, (t, r))| (*h, t.type_name(), *r))
            .collect()
    }

    /// Closes every handle (after the leak report).
    pub(crate) fn close_all(&mut self) {
        self.handles.clear();
    }
}
