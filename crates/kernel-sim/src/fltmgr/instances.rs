//! Filter Manager's view of volumes and the filter's instances on them.
//!
//! A volume is mounted with a [`VolumeKind`] and a device name (`\Device\HarddiskVolume1`,
//! `\Device\Mup`, `\Device\NamedPipe`) over a file system the world layer supplies
//! ([`VolumeFiles`]). As FltMgr does:
//!
//! * volumes mounted before `FltStartFiltering` are offered to the filter when it starts
//!   (`FLTFL_INSTANCE_SETUP_AUTOMATIC_ATTACHMENT`), later ones when they mount
//!   (`... | FLTFL_INSTANCE_SETUP_NEWLY_MOUNTED_VOLUME`); InstanceSetup runs at PASSIVE_LEVEL
//!   with the volume's device type and `FLT_FILESYSTEM_TYPE`; an error status
//!   (`STATUS_FLT_DO_NOT_ATTACH`) means no instance, and no I/O on that volume reaches the
//!   filter;
//! * named-pipe and mailslot volumes are offered only to a filter registered with
//!   `FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS`; without it they never see an instance (either way
//!   a test can observe that the filter gets no callbacks there);
//! * a manual detach ([`Driver::detach`](crate::Driver::detach)) asks InstanceQueryTeardown (no callback registered:
//!   the detach is refused), then tears down; a dismount tears down without asking; teardown is
//!   `InstanceTeardownStart`, a drain of the operations in flight on the instance, then
//!   `InstanceTeardownComplete`, after which FltMgr drops the references file objects hold on the
//!   instance's stream-handle contexts;
//! * `FltUnregisterFilter` drains and tears every instance of the filter down
//!   ([`teardown_filter`]), then reports the contexts and name information the driver still
//!   references.

use std::sync::atomic::Ordering;

use vigil_sys::{
    DEVICE_OBJECT, DEVICE_TYPE, FLT_FILESYSTEM_TYPE, FLT_RELATED_OBJECTS,
    FLTFL_FILTER_UNLOAD_MANDATORY, FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS, NT_SUCCESS, NTSTATUS,
    PASSIVE_LEVEL, STATUS_FLT_DO_NOT_ATTACH, STATUS_FLT_DO_NOT_DETACH,
};

use crate::config::VolumeKind;
use crate::fltmgr::files::Count;
use crate::fltmgr::flt_write;
use crate::kernel::Kernel;
use crate::kernel::sharded::{BrLock, BrRead, BrWrite, Gauge};
use crate::machine::guest::{self, GuestAlloc};

/// `FLTFL_INSTANCE_SETUP_AUTOMATIC_ATTACHMENT`.
pub(crate) const SETUP_AUTOMATIC_ATTACHMENT: u32 = 0x1;
/// `STATUS_FLT_VOLUME_NOT_FOUND`: no mounted volume of that name.
pub(crate) const STATUS_FLT_VOLUME_NOT_FOUND: NTSTATUS = 0xC01C_0014_u32.cast_signed();
/// `FLTFL_INSTANCE_SETUP_MANUAL_ATTACHMENT`.
pub(crate) const SETUP_MANUAL_ATTACHMENT: u32 = 0x2;
/// `STATUS_FLT_FILTER_NOT_READY`: the filter has not started filtering (`FltAttachVolume`).
pub(crate) const STATUS_FLT_FILTER_NOT_READY: NTSTATUS = 0xC01C_0008_u32.cast_signed();
/// `STATUS_FLT_INSTANCE_NAME_COLLISION`: an instance of that name is on the volume already.
pub(crate) const STATUS_FLT_INSTANCE_NAME_COLLISION: NTSTATUS = 0xC01C_0012_u32.cast_signed();
/// `STATUS_FLT_INSTANCE_NOT_FOUND`: the filter defines no instance of that name.
pub(crate) const STATUS_FLT_INSTANCE_NOT_FOUND: NTSTATUS = 0xC01C_0015_u32.cast_signed();
/// `FLTFL_INSTANCE_SETUP_NEWLY_MOUNTED_VOLUME`.
pub(crate) const SETUP_NEWLY_MOUNTED_VOLUME: u32 = 0x4;
/// `FLTFL_INSTANCE_TEARDOWN_MANUAL`.
pub(crate) const TEARDOWN_MANUAL: u32 = 0x1;
/// `FLTFL_INSTANCE_TEARDOWN_FILTER_UNLOAD`.
pub(crate) const TEARDOWN_FILTER_UNLOAD: u32 = 0x2;
/// `FLTFL_INSTANCE_TEARDOWN_MANDATORY_FILTER_UNLOAD`.
pub(crate) const TEARDOWN_MANDATORY_FILTER_UNLOAD: u32 = 0x4;
/// `FLTFL_INSTANCE_TEARDOWN_VOLUME_DISMOUNT`.
pub(crate) const TEARDOWN_VOLUME_DISMOUNT: u32 = 0x8;

/// An open handle of a volume's file system (one per synthetic `FILE_OBJECT`).
pub(crate) type FsHandle = u64;

/// The file system under a volume, as Filter Manager reaches it: it sends name queries down
/// to the file system. The world layer supplies the file system (and reaches its own type
/// again through `as_any`); this layer only asks it for names.
pub(crate) trait VolumeFiles: Send + Sync {
    /// The canonical name of the file open as `handle`.
    fn name_of(&self, handle: FsHandle) -> Option<String>;
    /// The canonical spelling of `path`.
    ///
    /// # Errors
    ///
    /// The status a name query gets for a bad or missing path.
    fn normalize(&self, path: &str) -> Result<String, NTSTATUS>;
    /// The full name a rename or link of `handle` to `target` would give.
    ///
    /// # Errors
    ///
    /// The status the operation would fail with.
    fn resolve_target(&self, handle: FsHandle, target: &str) -> Result<String, NTSTATUS>;
    /// The file ID of the file open as `handle` (its node number, as NTFS's file reference
    /// number), `None` for a handle the file system does not know.
    fn file_id_of(&self, handle: FsHandle) -> Option<u64>;
    /// Cleans up and closes the open `handle` at once (`FltCancelFileOpen`: below the filter
    /// the file was opened, then closed).
    fn cancel_open(&mut self, handle: FsHandle);
    /// Opens `path` for I/O a filter issues itself (`FltCreateFileEx`, sent below the
    /// filter): `disposition` and `options` as in `IRP_MJ_CREATE`; the handle and
    /// `IoStatus.Information`.
    ///
    /// # Errors
    ///
    /// The status the create fails with.
    fn open_below(
        &mut self,
        path: &str,
        disposition: u32,
        options: u32,
    ) -> Result<(FsHandle, usize), NTSTATUS>;
    /// The identity of the stream open as `handle` (its file's and its stream's) and of its
    /// file: what stream and file contexts attach to.
    fn stream_and_file(&self, handle: FsHandle) -> Option<(String, String)>;
    /// Cleans up and closes `handle`, opened by [`VolumeFiles::open_below`] (`FltClose`).
    fn close_below(&mut self, handle: FsHandle);
    /// The size of the data of the open `handle` (`Err` once it is closed).
    ///
    /// # Errors
    ///
    /// `STATUS_FILE_CLOSED` for a handle that is no longer open.
    fn size_of_open(&self, handle: FsHandle) -> Result<u64, NTSTATUS>;
    /// Applies a change of file information a filter sends below itself
    /// (`FltSetInformationFile`, `IRP_MJ_SET_INFORMATION` through `FltPerform*Io`).
    ///
    /// # Errors
    ///
    /// The status the file system fails the change with.
    fn set_information_below(
        &mut self,
        handle: FsHandle,
        change: &crate::fltmgr::set_information::InfoChange,
    ) -> Result<(), NTSTATUS>;
    /// What `FileStandardInformation` reports for the open `handle` (`None` once it is
    /// gone).
    fn standard_of(
        &self,
        handle: FsHandle,
    ) -> Option<crate::fltmgr::query_information::StandardInfo>;
    /// A write of `data` at `offset` a filter sends below itself (`IRP_MJ_WRITE` through
    /// `FltPerform*Io`): the size and the bytes are kept.
    ///
    /// # Errors
    ///
    /// The status the file system fails the write with.
    fn write_below(&self, handle: FsHandle, offset: u64, data: &[u8]) -> Result<(), NTSTATUS>;
    /// At most `length` bytes at `offset` of the file `handle` opened, as a read below every
    /// filter sees them (byte-range locks are not checked for it).
    ///
    /// # Errors
    ///
    /// `STATUS_FILE_CLOSED`, `STATUS_END_OF_FILE`.
    fn read_below(&self, handle: FsHandle, offset: u64, length: u32) -> Result<Vec<u8>, NTSTATUS>;
    /// The file system itself, for its owner.
    fn as_any(&self) -> &dyn std::any::Any;
    /// The file system itself, for its owner.
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// A mounted (or once mounted) synthetic volume of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolumeId(pub(crate) usize);

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstanceState {
    /// InstanceSetup is running: no I/O is dispatched to it yet.
    Setup,
    /// Attached: I/O reaches the filter.
    Live,
    /// Teardown has begun: no new I/O is dispatched; operations in flight finish.
    TearingDown,
}

/// The filter's instance on a volume.
pub(crate) struct InstanceRecord {
    /// The `PFLT_INSTANCE` the driver sees.
    pub handle: GuestAlloc,
    /// The filter's handle.
    pub filter: usize,
    pub state: InstanceState,
    /// Operations between their pre- and post-operation callbacks (or their end): counted by
    /// I/O threads holding the Filter Manager lock shared, read by a teardown holding it
    /// exclusively.
    pub in_flight: Gauge,
}

/// One synthetic volume.
pub(crate) struct VolumeRecord {
    pub kind: VolumeKind,
    pub device_name: String,
    /// The `PFLT_VOLUME` the driver sees.
    pub handle: GuestAlloc,
    /// The volume's device object (each `FILE_OBJECT`'s `DeviceObject`).
    pub device: GuestAlloc,
    /// The file system under the volume (the world layer's in-memory one), locked on its own:
    /// operations on the volume reach it holding the Filter Manager lock shared, and most of
    /// them need it only shared (see `world::fs::FileSystem`).
    pub fs: BrLock<Box<dyn VolumeFiles>>,
    pub mounted: bool,
    pub instance: Option<InstanceRecord>,
}

impl VolumeRecord {
    /// The volume's file system, locked (operations reach it holding the Filter Manager lock
    /// shared, so it has a lock of its own).
    pub(crate) fn files(&self) -> BrRead<'_, Box<dyn VolumeFiles>> {
        self.fs.read()
    }

    /// The volume's file system, locked exclusively (a change to its namespace).
    pub(crate) fn files_mut(&self) -> BrWrite<'_, Box<dyn VolumeFiles>> {
        self.fs.write()
    }
}

/// The related objects of an instance callback (no file object).
fn instance_objects(filter: usize, volume: usize, instance: usize) -> GuestAlloc {
    let objects = GuestAlloc::for_type::<FLT_RELATED_OBJECTS>(0);
    guest::write(
        objects.as_ptr::<FLT_RELATED_OBJECTS>(),
        FLT_RELATED_OBJECTS {
            Size: u16::try_from(size_of::<FLT_RELATED_OBJECTS>()).unwrap_or(u16::MAX),
            TransactionContext: 0,
            Filter: filter as _,
            Volume: volume as _,
            Instance: instance as _,
            FileObject: std::ptr::null_mut(),
            Transaction: std::ptr::null_mut(),
        },
    );
    objects
}

/// Mounts a volume over the file system `fs`; offers it to the filter if filtering has
/// started.
pub(crate) fn mount(
    k: &Kernel,
    kind: VolumeKind,
    device_name: &str,
    fs: Box<dyn VolumeFiles>,
) -> VolumeId {
    let device = GuestAlloc::for_type::<DEVICE_OBJECT>(0);
    guest::write(
        (device.address() + std::mem::offset_of!(DEVICE_OBJECT, DeviceType)) as *mut DEVICE_TYPE,
        kind.device_type(),
    );
    let id = {
        let mut flt = flt_write(k);
        flt.io.volumes.push(VolumeRecord {
            kind,
            device_name: device_name.to_owned(),
            handle: GuestAlloc::zeroed(64),
            device,
            fs: BrLock::new(fs),
            mounted: true,
            instance: None,
        });
        VolumeId(flt.io.volumes.len() - 1)
    };
    let started = flt_write(k)
        .filters
        .iter()
        .find(|(_, f)| f.started && !f.unregistered)
        .map(|(h, _)| *h);
    if let Some(filter) = started {
        setup_instance(
            k,
            filter,
            id,
            SETUP_AUTOMATIC_ATTACHMENT | SETUP_NEWLY_MOUNTED_VOLUME,
        );
    }
    id
}

/// `FltStartFiltering`: offers every mounted volume.
pub(crate) fn attach_at_start(k: &Kernel, filter: usize) {
    let count = flt_write(k).io.volumes.len();
    for index in 0..count {
        setup_instance(k, filter, VolumeId(index), SETUP_AUTOMATIC_ATTACHMENT);
    }
}

/// Offers `volume` to `filter`: creates the instance and calls InstanceSetup. An automatic
/// offer is skipped when the filter's default instance suppresses automatic attachment
/// ([`InstanceConfig::attaches_automatically`](crate::fltmgr::registration::InstanceConfig::attaches_automatically)).
/// Whether an instance was attached.
fn setup_instance(k: &Kernel, filter: usize, volume: VolumeId, flags: u32) -> bool {
    if k.crashed.load(Ordering::Acquire) {
        return false;
    }
    let (setup, volume_handle, instance_handle, kind) = {
        let mut flt = flt_write(k);
        let Some(record) = flt.filters.get(&filter).filter(|f| !f.unregistered) else {
            return false;
        };
        if flags & SETUP_AUTOMATIC_ATTACHMENT != 0
            && record
                .instance_config
                .as_ref()
                .is_some_and(|c| !c.attaches_automatically())
        {
            return false;
        }
        let (setup, filter_flags) = (record.instance_setup, record.flags);
        let Some(v) = flt.io.volumes.get_mut(volume.0) else {
            return false;
        };
        if !v.mounted
            || v.instance.is_some()
            || (v.kind.is_pipe_or_mailslot()
                && filter_flags & FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS == 0)
        {
            return false;
        }
        let instance = GuestAlloc::zeroed(64);
        let instance_handle = instance.address();
        v.instance = Some(InstanceRecord {
            handle: instance,
            filter,
            state: InstanceState::Setup,
            in_flight: Gauge::default(),
        });
        (setup, v.handle.address(), instance_handle, v.kind)
    };
    let attach = if setup == 0 {
        true
    } else {
        let objects = instance_objects(filter, volume_handle, instance_handle);
        // SAFETY: `setup` is the InstanceSetupCallback the driver registered (its image is
        // mapped while the filter is registered); FltMgr calls it at PASSIVE_LEVEL with the
        // instance's related objects, the attach flags and the volume's types.
        let callback: unsafe extern "win64" fn(
            *const FLT_RELATED_OBJECTS,
            u32,
            DEVICE_TYPE,
            FLT_FILESYSTEM_TYPE,
        ) -> i32 = unsafe { std::mem::transmute(setup) };
        let status = k.call_driver("InstanceSetup", Some(PASSIVE_LEVEL), || {
            // SAFETY: see above.
            unsafe {
                callback(
                    objects.as_ptr(),
                    flags,
                    kind.device_type(),
                    kind.filesystem_type(),
                )
            }
        });
        status.is_some_and(NT_SUCCESS)
    };
    let mut flt = flt_write(k);
    let io = &mut flt.io;
    if let Some(v) = io.volumes.get_mut(volume.0) {
        if attach {
            if let Some(instance) = v.instance.as_mut() {
                instance.state = InstanceState::Live;
            }
            io.stats.add(Count::InstancesAttached, 1);
        } else if let Some(instance) = v.instance.take() {
            io.graveyard.push(instance.handle);
        }
    }
    drop(flt);
    if !attach {
        // An instance context InstanceSetup set goes with the instance it declined.
        crate::fltmgr::contexts::release_instance_contexts(k, instance_handle);
    }
    attach
}

/// A manual attach (`fltmc attach`, `FilterAttach`, `FltAttachVolume`): InstanceSetup with
/// `FLTFL_INSTANCE_SETUP_MANUAL_ATTACHMENT`, whatever the instance's `Flags` say about
/// automatic attachment. `instance` names one of the filter's instances (None: the default
/// instance). Statuses from the `FltAttachVolume` page
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltattachvolume>):
/// `STATUS_FLT_FILTER_NOT_READY` before `FltStartFiltering`, `STATUS_FLT_INSTANCE_NAME_COLLISION`
/// when the volume has the instance already, and InstanceSetup's refusal as
/// `STATUS_FLT_DO_NOT_ATTACH`. kernel-sim keeps one instance per volume, so a second instance
/// of another name on an attached volume is refused the same way (reported as not emulated).
pub(crate) fn attach_manual(
    k: &Kernel,
    volume: VolumeId,
    instance: Option<&str>,
) -> Result<(), NTSTATUS> {
    let filter = {
        let flt = flt_write(k);
        let Some((filter, record)) = flt.filters.iter().find(|(_, f)| !f.unregistered) else {
            return Err(STATUS_FLT_FILTER_NOT_READY);
        };
        if !record.started {
            return Err(STATUS_FLT_FILTER_NOT_READY);
        }
        let other = match (&record.instance_config, instance) {
            (Some(config), Some(name)) => {
                if config.instance(name).is_none() {
                    return Err(STATUS_FLT_INSTANCE_NOT_FOUND);
                }
                !name.eq_ignore_ascii_case(&config.default_instance)
            }
            _ => false,
        };
        let Some(v) = flt.io.volumes.get(volume.0).filter(|v| v.mounted) else {
            return Err(STATUS_FLT_VOLUME_NOT_FOUND);
        };
        if v.instance.is_some() {
            drop(flt);
            if other {
                k.violation(
                    crate::report::ViolationKind::NotEmulated,
                    "FltAttachVolume",
                    "a second instance on one volume is not emulated".to_owned(),
                );
            }
            return Err(STATUS_FLT_INSTANCE_NAME_COLLISION);
        }
        *filter
    };
    if setup_instance(k, filter, volume, SETUP_MANUAL_ATTACHMENT) {
        Ok(())
    } else {
        Err(STATUS_FLT_DO_NOT_ATTACH)
    }
}

/// Tears the instance on `volume` down with `reason`: teardown start, drain (posts awaited are
/// called with `FLTFL_POST_OPERATION_DRAINING`, see [`draining`](crate::fltmgr::draining)),
/// teardown complete, then releases the references file objects hold on the instance's
/// contexts.
pub(crate) fn teardown_instance(k: &Kernel, volume: VolumeId, reason: u32) {
    let (start, complete, filter, volume_handle, instance_handle) = {
        let mut flt = flt_write(k);
        let Some(instance) = flt
            .io
            .volumes
            .get_mut(volume.0)
            .and_then(|v| v.instance.as_mut())
            .filter(|i| i.state == InstanceState::Live)
        else {
            return;
        };
        instance.state = InstanceState::TearingDown;
        let (filter, instance_handle) = (instance.filter, instance.handle.address());
        let volume_handle = flt.io.volumes[volume.0].handle.address();
        let Some(record) = flt.filters.get(&filter) else {
            return;
        };
        (
            record.instance_teardown_start,
            record.instance_teardown_complete,
            filter,
            volume_handle,
            instance_handle,
        )
    };
    let crashed = || k.crashed.load(Ordering::Acquire);
    let objects = instance_objects(filter, volume_handle, instance_handle);
    let call = |address: usize, name: &'static str| {
        if address == 0 || crashed() {
            return;
        }
        // SAFETY: a teardown callback the driver registered (image mapped while registered);
        // FltMgr calls it at PASSIVE_LEVEL with the instance's related objects and the reason.
        let callback: unsafe extern "win64" fn(*const FLT_RELATED_OBJECTS, u32) =
            unsafe { std::mem::transmute(address) };
        // SAFETY: see above.
        k.call_driver(name, Some(PASSIVE_LEVEL), || unsafe {
            callback(objects.as_ptr(), reason);
        });
    };
    call(start, "InstanceTeardownStart");
    crate::fltmgr::draining::drain_instance(k, volume, instance_handle);
    crate::fltmgr::callback_data::drain_async_io(k, Some(instance_handle));
    call(complete, "InstanceTeardownComplete");
    crate::fltmgr::transactions::forget_instance(k, instance_handle);
    crate::fltmgr::contexts::release_instance_contexts(k, instance_handle);
    {
        let mut flt = flt_write(k);
        let io = &mut flt.io;
        if let Some(instance) = io.volumes.get_mut(volume.0).and_then(|v| v.instance.take()) {
            io.graveyard.push(instance.handle);
            io.stats.add(Count::InstancesTornDown, 1);
        }
    }
    // A FltUnregisterFilter may be waiting for this teardown (`teardown_filter`).
    k.notify_waiters();
}

/// `FltUnregisterFilter`, after its port checks: tears down every instance of `filter` (the
/// filter is already marked unregistered, so no new operation reaches it), then reports what
/// the driver still references. An InstanceSetup already running (a volume mounted while the
/// filter unloads) is waited for first and its instance torn down with the others, and a
/// teardown another thread began (a volume dismounted while the filter unloads) is waited for
/// after them: the routine
/// "tears down all instances" before it returns
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltunregisterfilter>),
/// so no instance outlives the registration and no setup callback runs after it.
pub(crate) fn teardown_filter(k: &Kernel, filter: usize) {
    k.wait_until(
        None,
        "FltUnregisterFilter (InstanceSetup in progress)",
        || {
            !flt_write(k).io.volumes.iter().any(|v| {
                v.instance
                    .as_ref()
                    .is_some_and(|i| i.filter == filter && i.state == InstanceState::Setup)
            })
        },
    );
    let reason = if flt_write(k).io.unload_flags & FLTFL_FILTER_UNLOAD_MANDATORY != 0 {
        TEARDOWN_MANDATORY_FILTER_UNLOAD
    } else {
        TEARDOWN_FILTER_UNLOAD
    };
    let volumes: Vec<VolumeId> = flt_write(k)
        .io
        .volumes
        .iter()
        .enumerate()
        .filter(|(_, v)| v.instance.as_ref().is_some_and(|i| i.filter == filter))
        .map(|(index, _)| VolumeId(index))
        .collect();
    for volume in volumes {
        teardown_instance(k, volume, reason);
    }
    // An instance whose teardown another thread began (a dismount, a manual detach) was left
    // to it above: the routine still returns only once every instance is gone.
    k.wait_until(
        None,
        "FltUnregisterFilter (instance teardown in progress)",
        || {
            // After a crash the other teardown may never finish; nothing is called any more.
            k.crashed.load(Ordering::Acquire)
                || !flt_write(k)
                    .io
                    .volumes
                    .iter()
                    .any(|v| v.instance.as_ref().is_some_and(|i| i.filter == filter))
        },
    );
    crate::fltmgr::contexts::release_volume_contexts(k);
    crate::fltmgr::contexts::wait_for_frees(k);
    crate::fltmgr::contexts::report_leaks(k, "FltUnregisterFilter");
    crate::fltmgr::names::report_leaks(k, "FltUnregisterFilter");
    crate::fltmgr::volume_objects::report_leaks(k, "FltUnregisterFilter");
}

/// The driver is gone (unloaded or crashed): no instance may call it any more.
pub(crate) fn driver_gone(k: &Kernel) {
    let mut flt = flt_write(k);
    let io = &mut flt.io;
    for v in &mut io.volumes {
        if let Some(instance) = v.instance.take() {
            io.graveyard.push(instance.handle);
        }
    }
}

/// A manual detach: see [`Driver::detach`](crate::Driver::detach).
pub(crate) fn detach(k: &Kernel, volume: VolumeId) -> Result<(), i32> {
    let (query, filter, volume_handle, instance_handle) = {
        let flt = flt_write(k);
        let Some((v, instance)) = flt.io.volumes.get(volume.0).and_then(|v| {
            v.instance
                .as_ref()
                .filter(|i| i.state == InstanceState::Live)
                .map(|i| (v, i))
        }) else {
            return Err(STATUS_FLT_DO_NOT_DETACH);
        };
        let Some(record) = flt.filters.get(&instance.filter) else {
            return Err(STATUS_FLT_DO_NOT_DETACH);
        };
        (
            record.instance_query_teardown,
            instance.filter,
            v.handle.address(),
            instance.handle.address(),
        )
    };
    if query == 0 || k.crashed.load(Ordering::Acquire) {
        return Err(STATUS_FLT_DO_NOT_DETACH);
    }
    let objects = instance_objects(filter, volume_handle, instance_handle);
    // SAFETY: the InstanceQueryTeardownCallback the driver registered; FltMgr calls it at
    // PASSIVE_LEVEL with the instance's related objects and no flags (none are defined).
    let callback: unsafe extern "win64" fn(*const FLT_RELATED_OBJECTS, u32) -> i32 =
        unsafe { std::mem::transmute(query) };
    // SAFETY: see above.
    let status = k.call_driver("InstanceQueryTeardown", Some(PASSIVE_LEVEL), || unsafe {
        callback(objects.as_ptr(), 0)
    });
    match status {
        Some(s) if NT_SUCCESS(s) => {
            teardown_instance(k, volume, TEARDOWN_MANUAL);
            Ok(())
        }
        Some(s) => Err(s),
        None => Err(STATUS_FLT_DO_NOT_DETACH),
    }
}
