//! The driver's state: one non-paged block, built in place by DriverEntry (its KEVENTs, spin
//! lock and push locks cannot move), published before registration so that callbacks find it,
//! and freed by FilterUnload (or DriverEntry's failure path) after everything that uses it has
//! stopped. Runs in the kernel.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{self, NonNull, addr_of_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use vigil_core::{ClientPortSlot, EventRing, Timeout};
use vigil_protocol::{MAX_MESSAGE_SIZE, Verdict};
use vigil_sys::PFLT_FILTER;

use crate::config::DriverConfig;
use crate::delivery::Delivery;
use crate::error::Result;
use crate::filter::port::ServerPort;
use crate::filter::push_lock::PushLocked;
use crate::filter::registration::RegisteredFilter;
use crate::filter::volumes::VolumeTable;
use crate::identity::ServiceIdentity;
use crate::kernel::device::DeviceObject;
use crate::kernel::pool::{PoolBox, PoolBuffer, UninitPoolBox, tags};
use crate::platform::KernelPlatform;
use crate::prefix::PrefixList;
use crate::process::Processes;
use crate::stats::Counters;
use crate::twins::{self, Twin};
use crate::verdict::VerdictBuffers;

/// Settings the service may change at run time (set-configuration), read lock-free.
pub struct Settings {
    /// Records that trigger an immediate delivery.
    pub batch_size: AtomicU32,
    /// Delivery interval, in ms.
    pub flush_interval_ms: AtomicU32,
    /// Batch send timeout, in ms.
    pub send_timeout_ms: AtomicU32,
    /// Verdict timeout, in ms.
    pub verdict_timeout_ms: AtomicU32,
    /// Whether the default verdict is deny (fail-closed).
    pub fail_closed: AtomicBool,
    /// Whether network volumes attach (for volumes that mount from now on).
    pub attach_network: AtomicBool,
}

/// The shortest timeout, for a stored setting that is somehow out of range.
const ONE_MILLISECOND: Timeout = match Timeout::from_millis(1) {
    Some(timeout) => timeout,
    None => panic!("1 ms is a valid timeout"),
};

/// A finite timeout from a stored setting. Settings are validated before they are stored, so
/// this never sees zero; if it did, the result is the shortest wait, never an infinite one.
pub fn timeout_ms(value: &AtomicU32) -> Timeout {
    Timeout::from_millis(value.load(Ordering::Relaxed)).unwrap_or(ONE_MILLISECOND)
}

impl Settings {
    fn new(config: &DriverConfig) -> Self {
        Self {
            batch_size: AtomicU32::new(config.batch_size),
            flush_interval_ms: AtomicU32::new(config.flush_interval_ms),
            send_timeout_ms: AtomicU32::new(config.send_timeout_ms),
            verdict_timeout_ms: AtomicU32::new(config.verdict_timeout_ms),
            fail_closed: AtomicBool::new(config.default_verdict == Verdict::Deny),
            attach_network: AtomicBool::new(config.attach_network),
        }
    }

    /// The verdict applied when none arrives.
    pub fn default_verdict(&self) -> Verdict {
        if self.fail_closed.load(Ordering::Relaxed) {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }
}

/// The protected prefixes: replaced (exclusive) by set-configuration, read (shared) by the
/// pre-operation callbacks at PASSIVE_LEVEL. Two lists, so that a replacement is built in the
/// inactive one and a refused configuration leaves the active one untouched (no 32 KiB copy on a
/// kernel stack).
///
/// # Invariants
///
/// `active` mirrors "the active list is not empty" (written under the lock) so that the common
/// case (no prefix) takes no lock.
pub struct Prefixes {
    lists: PushLocked<PrefixLists>,
    active: AtomicBool,
}

/// The two lists and which one is active (0 or 1).
struct PrefixLists {
    lists: [PrefixList; 2],
    current: usize,
}

impl Prefixes {
    /// Builds empty prefixes in place.
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes, aligned and zeroed (an all-zero `PrefixList` is the empty
    /// list), and never moves afterwards.
    #[expect(
        clippy::multiple_unsafe_ops_per_block,
        reason = "in-place construction: each block computes one field's address and initializes it"
    )]
    unsafe fn init_in_place(slot: *mut Self) {
        let init = |data: *mut PrefixLists| {
            // SAFETY: `data` is the zeroed, writable storage of the lists (contract), and an
            // all-zero PrefixList is a valid (empty) one; they are still cleared explicitly, in
            // place, so no 32 KiB value passes through the stack.
            for list in unsafe { &mut *addr_of_mut!((*data).lists) } {
                list.clear();
            }
            // SAFETY: as above.
            unsafe { addr_of_mut!((*data).current).write(0) };
        };
        // SAFETY: a field of the writable, pinned slot (contract); `init` fills every field.
        unsafe { PushLocked::init_in_place(addr_of_mut!((*slot).lists), init) };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*slot).active).write(AtomicBool::new(false)) };
    }

    /// Whether any prefix is configured (a hint: the answer may change at once).
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Runs `f` with the active list, shared. IRQL <= APC_LEVEL.
    pub fn read<R>(&self, f: impl FnOnce(&PrefixList) -> R) -> R {
        let lists = self.lists.read();
        f(&lists.lists[lists.current & 1])
    }

    /// Replaces the list with what `fill` builds; on error the active list stays as it was.
    /// IRQL <= APC_LEVEL.
    pub fn replace<E>(
        &self,
        fill: impl FnOnce(&mut PrefixList) -> core::result::Result<(), E>,
    ) -> core::result::Result<(), E> {
        let mut lists = self.lists.write();
        let staging = (lists.current & 1) ^ 1;
        let list = &mut lists.lists[staging];
        list.clear();
        fill(list)?;
        let empty = list.is_empty();
        lists.current = staging;
        self.active.store(!empty, Ordering::Release);
        Ok(())
    }
}

/// What registration created, owned here so that the teardown can undo it in order.
pub struct Registration {
    /// The process-notify routine (internal setup, before the filter).
    pub process_notify: Option<crate::kernel::process_notify::NotifyRegistration>,
    /// The registered filter.
    pub filter: Option<RegisteredFilter>,
    /// The server port.
    pub server_port: Option<ServerPort>,
}

/// Everything the driver owns. Field order is drop order: the device goes last.
///
/// # Invariants
///
/// Built in place by [`Globals::create`] and never moved. `registration` is written only by
/// DriverEntry before it signals completion and only taken by the teardown after it.
pub struct Globals {
    /// Registration objects (emptied by the teardown before the rest drops).
    registration: UnsafeCell<Registration>,
    /// The filter handle, readable by any callback once registered.
    filter: AtomicPtr<c_void>,
    /// The delivery thread.
    pub delivery: Delivery,
    /// The one client port.
    pub slot: ClientPortSlot<KernelPlatform>,
    /// The event ring (over `ring_storage`, so it drops first).
    pub ring: EventRing<KernelPlatform>,
    /// The ring's memory.
    ring_storage: PoolBuffer,
    /// Run-time settings.
    pub settings: Settings,
    /// Protected prefixes.
    pub prefixes: Prefixes,
    /// Counters.
    pub counters: Counters,
    /// Volume ids.
    pub volumes: VolumeTable,
    /// The process table.
    pub processes: Processes,
    /// Process id of the connected service (0 when none): exempt from verdicts and not reported.
    service_pid: AtomicU64,
    /// Next verdict request id.
    next_request_id: AtomicU64,
    /// Bumped when a rename begins and when it ends: a name cached in a handle's context under
    /// another value may be stale (the file or an ancestor may have moved).
    name_generation: AtomicU64,
    /// Preallocated verdict request buffers.
    pub verdicts: VerdictBuffers,
    /// The service's configured identity (RULES.md rule 29).
    pub identity: ServiceIdentity,
    /// A spin lock the `wrong-irql` broken twin holds at the wrong moment. A cfg, not
    /// `twins::is`: production's globals keep their layout, without an unused lock.
    #[cfg(vigil_twin = "wrong-irql")]
    pub twin_lock: crate::platform::SpinLock,
    /// The device object whose `DO_DEVICE_INITIALIZING` bit tells that DriverEntry returned.
    pub device: DeviceObject,
}

// SAFETY: every field is either Sync or an UnsafeCell whose accesses are ordered by the documented
// invariants (Registration); Delivery is Sync by its own invariants.
unsafe impl Sync for Globals {}
// SAFETY: as above; the block is not bound to a thread.
unsafe impl Send for Globals {}

/// An owned, published-or-not `Globals` block (tagged `GLOBALS`).
///
/// # Invariants
///
/// The box holds a `Globals` built by [`Globals::create`].
pub struct GlobalsBox(PoolBox<Globals>);

impl Globals {
    /// Allocates and builds the globals: every allocation and object except the thread and the
    /// registration. The device is created last, so that a failure before it leaves nothing.
    ///
    /// # Safety
    ///
    /// `driver` is DriverEntry's driver object. PASSIVE_LEVEL.
    pub unsafe fn create(
        driver: *mut vigil_sys::DRIVER_OBJECT,
        config: &DriverConfig,
    ) -> Result<GlobalsBox> {
        let ring_storage = PoolBuffer::try_zeroed(config.ring_bytes as usize, tags::RING)?;
        let batch = if twins::is(Twin::UninitSend) {
            PoolBuffer::try_uninit(MAX_MESSAGE_SIZE, tags::MESSAGE)?
        } else {
            PoolBuffer::try_zeroed(MAX_MESSAGE_SIZE, tags::MESSAGE)?
        };
        let verdicts = VerdictBuffers::allocate(config.verdict_slots)?;
        let process_entries = Processes::allocate(config.process_table_entries)?;
        // SAFETY: `driver` is DriverEntry's driver object (contract).
        let device = unsafe { DeviceObject::create(driver) }?;
        let mut block = UninitPoolBox::<Globals>::try_new(tags::GLOBALS)?;
        let p = block.as_mut_ptr();
        #[expect(
            clippy::multiple_unsafe_ops_per_block,
            reason = "one in-place construction: each operation writes a distinct field of one fresh block"
        )]
        // SAFETY: `p` is a fresh block for one Globals, aligned for it (UninitPoolBox
        // invariant); each field is written exactly once, in place,
        // before the value is used; the pinned ones (events, locks, ring, slot) through their
        // in-place initializers.
        unsafe {
            addr_of_mut!((*p).registration).write(UnsafeCell::new(Registration {
                process_notify: None,
                filter: None,
                server_port: None,
            }));
            addr_of_mut!((*p).filter).write(AtomicPtr::new(ptr::null_mut()));
            Delivery::init_in_place(addr_of_mut!((*p).delivery), batch);
            ClientPortSlot::init_in_place(addr_of_mut!((*p).slot));
            addr_of_mut!((*p).ring_storage).write(ring_storage);
            let storage = &mut *addr_of_mut!((*p).ring_storage);
            let storage_ptr = NonNull::new_unchecked(storage.as_mut_ptr());
            EventRing::init_in_place(addr_of_mut!((*p).ring), storage_ptr, storage.len());
            addr_of_mut!((*p).settings).write(Settings::new(config));
            Prefixes::init_in_place(addr_of_mut!((*p).prefixes));
            addr_of_mut!((*p).counters).write(Counters::default());
            addr_of_mut!((*p).volumes).write(VolumeTable::new());
            Processes::init_in_place(addr_of_mut!((*p).processes), process_entries);
            addr_of_mut!((*p).service_pid).write(AtomicU64::new(0));
            addr_of_mut!((*p).next_request_id).write(AtomicU64::new(1));
            addr_of_mut!((*p).name_generation).write(AtomicU64::new(0));
            addr_of_mut!((*p).verdicts).write(verdicts);
            addr_of_mut!((*p).identity).write(ServiceIdentity::unconfigured());
            #[cfg(vigil_twin = "wrong-irql")]
            crate::platform::SpinLock::init(addr_of_mut!((*p).twin_lock));
            addr_of_mut!((*p).device).write(device);
        }
        // SAFETY: every field was written above.
        Ok(GlobalsBox(unsafe { block.assume_init() }))
    }

    /// The filter handle (null before registration).
    pub fn filter_handle(&self) -> PFLT_FILTER {
        self.filter.load(Ordering::Acquire)
    }

    /// Publishes the filter handle (DriverEntry, after `FltRegisterFilter`), or null (teardown).
    pub fn set_filter_handle(&self, filter: PFLT_FILTER) {
        self.filter.store(filter, Ordering::Release);
    }

    /// The registration objects, exclusively.
    ///
    /// # Safety
    ///
    /// Called only by DriverEntry before it signals completion, or by the teardown after it
    /// (the `registration` invariant): no other reference to them exists meanwhile.
    #[expect(
        clippy::mut_from_ref,
        reason = "exclusive by the caller's contract, as the unsafe fn says"
    )]
    pub unsafe fn registration_mut(&self) -> &mut Registration {
        // SAFETY: no other access exists (contract).
        unsafe { &mut *self.registration.get() }
    }

    /// Whether `pid` is the connected service's process.
    pub fn is_service(&self, pid: u64) -> bool {
        pid != 0 && self.service_pid.load(Ordering::Relaxed) == pid
    }

    /// Records the connected service's process id (0: none).
    pub fn set_service_pid(&self, pid: u64) {
        self.service_pid.store(pid, Ordering::Relaxed);
    }

    /// Records `pid` as the service's and returns the id recorded before.
    pub fn swap_service_pid(&self, pid: u64) -> u64 {
        self.service_pid.swap(pid, Ordering::Relaxed)
    }

    /// The current rename generation (see the field).
    pub fn name_generation(&self) -> u64 {
        self.name_generation.load(Ordering::Acquire)
    }

    /// A rename begins or ends: every cached name may be stale.
    pub fn names_may_have_moved(&self) {
        self.name_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A fresh verdict request id.
    pub fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl GlobalsBox {
    /// The stable address (for publication and the thread's context).
    pub fn as_ptr(&self) -> *mut Globals {
        self.0.as_ptr()
    }

    /// Gives up ownership (the pointer is published in the driver's static).
    pub fn into_raw(self) -> *mut Globals {
        self.0.into_raw()
    }

    /// Takes back ownership from [`GlobalsBox::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw` and is owned by nothing else.
    pub unsafe fn from_raw(ptr: *mut Globals) -> Option<Self> {
        // SAFETY: from `into_raw` of a box tagged GLOBALS, owned by nothing else (contract).
        unsafe { PoolBox::from_raw(ptr, tags::GLOBALS) }.map(Self)
    }
}

impl core::ops::Deref for GlobalsBox {
    type Target = Globals;
    fn deref(&self) -> &Globals {
        &self.0
    }
}
