//! Driver-independent tests of context deletion (`fltmgr::context_deletion`), disk device
//! objects (`fltmgr::disk_devices`), `FltDetachVolume` (`fltmgr::volume_detach`) and
//! transactions (`fltmgr::transactions`, `world::io::transacted`): a filter written in Rust
//! (every context type registered, an InstanceQueryTeardown whose answer each test picks, a
//! `TransactionNotificationCallback` that records what it gets) is registered and started over
//! NTFS, named-pipe and network volumes; each test calls the routines from inside a driver call
//! and asserts every documented status and what the verifier records.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{
    DEVICE_OBJECT, FILE_CREATE, FLT_CONTEXT_END, FLT_CONTEXT_REGISTRATION, FLT_CONTEXT_TYPE,
    FLT_FILE_CONTEXT, FLT_INSTANCE_CONTEXT, FLT_OPERATION_REGISTRATION, FLT_REGISTRATION,
    FLT_REGISTRATION_VERSION, FLT_RELATED_OBJECTS, FLT_SET_CONTEXT_KEEP_IF_EXISTS,
    FLT_STREAM_CONTEXT, FLT_STREAMHANDLE_CONTEXT, FLT_TRANSACTION_CONTEXT, FLT_VOLUME_CONTEXT,
    FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS, GENERIC_WRITE, IRP_MJ_OPERATION_END, NTSTATUS,
    NonPagedPoolNx, PFLT_CONTEXT, PFLT_FILTER, PFLT_INSTANCE, PVOID, STATUS_FLT_DELETING_OBJECT,
    STATUS_FLT_DO_NOT_DETACH, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED,
    STATUS_SUCCESS, UNICODE_STRING,
};

use crate::config::{IoConfig, SimConfig, VolumeKind};
use crate::fltmgr::instances::{STATUS_FLT_INSTANCE_NOT_FOUND, VolumeId};
use crate::fltmgr::{
    context_deletion as del, contexts, disk_devices, flt_read, instance_contexts, registration,
    stream_contexts, transactions as tx, volume_contexts, volume_detach,
};
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::guest;
use crate::machine::state::ImageBounds;
use crate::ntoskrnl::thread;
use crate::report::ViolationKind;
use crate::world::io::{Io, Requestor};

const NTFS: &str = r"\Device\HarddiskVolume1";
const PIPE: &str = r"\Device\NamedPipe";
const MUP: &str = r"\Device\Mup";
const SIZE: usize = 16;
/// `FILE_READ_DATA`.
const FILE_READ_DATA: u32 = 0x0001;

/// What the notification callback runs for one notification (`ON_NOTIFICATION`).
type NotificationAction = Box<dyn Fn(&FLT_RELATED_OBJECTS, PFLT_CONTEXT) -> NTSTATUS>;

thread_local! {
    /// Context cleanups on this thread (the test's: releases run the cleanup on the caller).
    static CLEANUPS: Cell<usize> = const { Cell::new(0) };
    /// What InstanceQueryTeardown answers.
    static QUERY_ANSWER: Cell<NTSTATUS> = const { Cell::new(STATUS_SUCCESS) };
    /// Teardown callbacks seen on this thread.
    static TEARDOWNS: Cell<usize> = const { Cell::new(0) };
    /// Transaction notifications received on this thread.
    static NOTIFICATIONS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Run by the notification callback for the notification it names (and what it returned).
    static ON_NOTIFICATION: RefCell<Option<(u32, NotificationAction)>> =
        const { RefCell::new(None) };
    static ACTION_STATUS: Cell<Option<NTSTATUS>> = const { Cell::new(None) };
}

unsafe extern "win64" fn transaction_notify(
    objects: *const FLT_RELATED_OBJECTS,
    context: PFLT_CONTEXT,
    notification: u32,
) -> NTSTATUS {
    NOTIFICATIONS.with(|n| n.borrow_mut().push(notification));
    let objects: FLT_RELATED_OBJECTS = guest::read(objects);
    ON_NOTIFICATION.with(|action| {
        if let Some((when, f)) = action.borrow().as_ref()
            && *when == notification
        {
            ACTION_STATUS.with(|s| s.set(Some(f(&objects, context))));
        }
    });
    STATUS_SUCCESS
}

fn notifications() -> Vec<u32> {
    NOTIFICATIONS.with(|n| std::mem::take(&mut *n.borrow_mut()))
}

unsafe extern "win64" fn instance_setup(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
    _device_type: u32,
    _fs_type: vigil_sys::FLT_FILESYSTEM_TYPE,
) -> NTSTATUS {
    STATUS_SUCCESS
}

unsafe extern "win64" fn query_teardown(_objects: *const FLT_RELATED_OBJECTS, _: u32) -> NTSTATUS {
    QUERY_ANSWER.with(Cell::get)
}

unsafe extern "win64" fn teardown(_objects: *const FLT_RELATED_OBJECTS, _reason: u32) {
    TEARDOWNS.with(|t| t.set(t.get() + 1));
}

unsafe extern "win64" fn cleanup(_context: PFLT_CONTEXT, _type: FLT_CONTEXT_TYPE) {
    CLEANUPS.with(|c| c.set(c.get() + 1));
}

unsafe extern "win64" fn unload(_flags: u32) -> NTSTATUS {
    STATUS_SUCCESS
}

fn cleanups() -> usize {
    CLEANUPS.with(Cell::get)
}

/// NTFS, a named pipe and a network volume, mounted before "DriverEntry".
fn kernel() -> Arc<Kernel> {
    kernel_with_hang_limit(Duration::from_secs(5))
}

/// As [`kernel`], with a wait reported as a deadlock after `hang_timeout`.
fn kernel_with_hang_limit(hang_timeout: Duration) -> Arc<Kernel> {
    let k = Kernel::new(
        SimConfig {
            hang_timeout,
            io: IoConfig {
                volumes: vec![
                    (VolumeKind::Ntfs, NTFS.to_owned()),
                    (VolumeKind::NamedPipe, PIPE.to_owned()),
                    (VolumeKind::Network, MUP.to_owned()),
                ],
                ..IoConfig::default()
            },
            ..SimConfig::default()
        },
        "test.sys".into(),
        ImageBounds::EMPTY,
        Vec::new(),
        Symbols::default(),
    );
    crate::world::volumes::mount_configured(&k);
    k
}

/// Registers and starts the test filter, with an InstanceQueryTeardown or without.
fn start(k: &Kernel, with_query_teardown: bool) -> PFLT_FILTER {
    let operations: &'static [FLT_OPERATION_REGISTRATION] =
        Box::leak(Box::new([FLT_OPERATION_REGISTRATION {
            MajorFunction: IRP_MJ_OPERATION_END,
            Flags: 0,
            PreOperation: None,
            PostOperation: None,
            Reserved1: std::ptr::null_mut(),
        }]));
    let context = |context_type| FLT_CONTEXT_REGISTRATION {
        ContextType: context_type,
        Flags: 0,
        ContextCleanupCallback: Some(cleanup),
        Size: SIZE,
        PoolTag: u32::from_le_bytes(*b"Tdel"),
        ContextAllocateCallback: std::ptr::null_mut(),
        ContextFreeCallback: std::ptr::null_mut(),
        Reserved1: std::ptr::null_mut(),
    };
    let contexts: &'static [FLT_CONTEXT_REGISTRATION] = Box::leak(Box::new([
        context(FLT_INSTANCE_CONTEXT),
        context(FLT_VOLUME_CONTEXT),
        context(FLT_STREAM_CONTEXT),
        context(FLT_FILE_CONTEXT),
        context(FLT_STREAMHANDLE_CONTEXT),
        context(FLT_TRANSACTION_CONTEXT),
        context(FLT_CONTEXT_END),
    ]));
    let registration: &'static FLT_REGISTRATION = Box::leak(Box::new(FLT_REGISTRATION {
        Size: u16::try_from(size_of::<FLT_REGISTRATION>()).expect("small"),
        Version: FLT_REGISTRATION_VERSION,
        Flags: FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS,
        ContextRegistration: contexts.as_ptr(),
        OperationRegistration: operations.as_ptr(),
        FilterUnloadCallback: Some(unload),
        InstanceSetupCallback: Some(instance_setup),
        InstanceQueryTeardownCallback: if with_query_teardown {
            Some(query_teardown)
        } else {
            None
        },
        InstanceTeardownStartCallback: Some(teardown),
        InstanceTeardownCompleteCallback: Some(teardown),
        GenerateFileNameCallback: std::ptr::null_mut(),
        NormalizeNameComponentCallback: std::ptr::null_mut(),
        NormalizeContextCleanupCallback: std::ptr::null_mut(),
        // With an InstanceQueryTeardown, with a TransactionNotificationCallback too.
        TransactionNotificationCallback: if with_query_teardown {
            transaction_notify as *mut std::ffi::c_void
        } else {
            std::ptr::null_mut()
        },
        NormalizeNameComponentExCallback: std::ptr::null_mut(),
        SectionNotificationCallback: std::ptr::null_mut(),
    }));
    let driver_object = k.driver_object.as_ptr();
    k.call_driver("DriverEntry", Some(0), || {
        let mut filter: PFLT_FILTER = std::ptr::null_mut();
        assert_eq!(
            registration::flt_register_filter(driver_object, registration, &raw mut filter),
            STATUS_SUCCESS
        );
        assert_eq!(registration::flt_start_filtering(filter), STATUS_SUCCESS);
        filter
    })
    .expect("returned")
}

/// The volume named `name`, its `PFLT_VOLUME` and the filter's instance on it (NULL if none).
fn volume(k: &Kernel, name: &str) -> (VolumeId, PVOID, PFLT_INSTANCE) {
    let flt = flt_read(k);
    let index = flt
        .io
        .volumes
        .iter()
        .position(|v| v.device_name == name)
        .expect("mounted");
    let v = &flt.io.volumes[index];
    let instance = v.instance.as_ref().map_or(0, |i| i.handle.address());
    (
        VolumeId(index),
        v.handle.address() as PVOID,
        instance as PFLT_INSTANCE,
    )
}

fn allocate(filter: PFLT_FILTER, context_type: FLT_CONTEXT_TYPE) -> PFLT_CONTEXT {
    let mut context: PFLT_CONTEXT = std::ptr::null_mut();
    assert_eq!(
        contexts::flt_allocate_context(
            filter,
            context_type,
            SIZE,
            NonPagedPoolNx,
            &raw mut context
        ),
        STATUS_SUCCESS
    );
    context
}

fn rules(k: &Kernel) -> Vec<(ViolationKind, String)> {
    k.violations()
        .into_iter()
        .map(|v| (v.kind, v.rule))
        .collect()
}

/// A pointer value the driver never had.
const BOGUS: usize = 0x5150;

#[test]
fn instance_and_volume_contexts_are_deleted_once_with_their_reference_handed_over_or_dropped() {
    let k = kernel();
    let filter = start(&k, true);
    let (_, ntfs, instance) = volume(&k, NTFS);
    k.call_driver("test", Some(0), || {
        let mut old: PFLT_CONTEXT = BOGUS as PFLT_CONTEXT;
        // Nothing set: STATUS_NOT_FOUND, and OldContext cleared.
        assert_eq!(
            del::flt_delete_instance_context(instance, &raw mut old),
            STATUS_NOT_FOUND
        );
        assert!(old.is_null());
        // Set, our reference released: the instance holds the only one.
        let context = allocate(filter, FLT_INSTANCE_CONTEXT);
        assert_eq!(
            instance_contexts::flt_set_instance_context(
                instance,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                context,
                std::ptr::null_mut()
            ),
            STATUS_SUCCESS
        );
        contexts::flt_release_context(context);
        // Deleted with OldContext: the instance's reference is ours, nothing is freed yet.
        assert_eq!(
            del::flt_delete_instance_context(instance, &raw mut old),
            STATUS_SUCCESS
        );
        assert_eq!(old, context);
        assert_eq!(cleanups(), 0);
        let mut got: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            instance_contexts::flt_get_instance_context(instance, &raw mut got),
            STATUS_NOT_FOUND
        );
        // Deleting twice: nothing left to delete.
        assert_eq!(
            del::flt_delete_instance_context(instance, std::ptr::null_mut()),
            STATUS_NOT_FOUND
        );
        contexts::flt_release_context(old);
        assert_eq!(cleanups(), 1);

        // A volume context deleted without OldContext: Filter Manager drops the reference and
        // the context goes at once.
        let context = allocate(filter, FLT_VOLUME_CONTEXT);
        assert_eq!(
            volume_contexts::flt_set_volume_context(
                ntfs,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                context,
                std::ptr::null_mut()
            ),
            STATUS_SUCCESS
        );
        contexts::flt_release_context(context);
        assert_eq!(
            del::flt_delete_volume_context(filter, ntfs, std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        assert_eq!(cleanups(), 2);
        assert_eq!(
            del::flt_delete_volume_context(filter, ntfs, std::ptr::null_mut()),
            STATUS_NOT_FOUND
        );
        // Not an instance, not a filter, not a volume.
        assert_eq!(
            del::flt_delete_instance_context(BOGUS as PFLT_INSTANCE, std::ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            del::flt_delete_volume_context(BOGUS as PFLT_FILTER, ntfs, std::ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            del::flt_delete_volume_context(filter, BOGUS as PVOID, std::ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
    })
    .expect("returned");
    let rules: Vec<String> = rules(&k).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        rules,
        [
            "FltDeleteInstanceContext: a live instance",
            "FltDeleteVolumeContext: Filter from FltRegisterFilter",
            "FltDeleteVolumeContext: a volume",
        ]
    );
}

#[test]
fn stream_file_and_handle_contexts_are_deleted_and_pipes_keep_no_stream_contexts() {
    let k = kernel();
    let filter = start(&k, true);
    let (ntfs_id, _, instance) = volume(&k, NTFS);
    let (pipe_id, _, pipe_instance) = volume(&k, PIPE);
    let io = Io::new(Arc::clone(&k), Requestor { pid: 4, tid: 8 });
    let file = io
        .create(ntfs_id, r"\f.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    let pipe = io
        .create(pipe_id, r"\p", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    let (fo, pipe_fo) = (
        file.file_object() as *mut vigil_sys::FILE_OBJECT,
        pipe.file_object() as *mut vigil_sys::FILE_OBJECT,
    );
    k.call_driver("test", Some(0), || {
        for (context_type, set, delete) in [
            (
                FLT_STREAM_CONTEXT,
                stream_contexts::flt_set_stream_context as extern "win64" fn(_, _, _, _, _) -> _,
                del::flt_delete_stream_context as extern "win64" fn(_, _, _) -> _,
            ),
            (
                FLT_FILE_CONTEXT,
                stream_contexts::flt_set_file_context,
                del::flt_delete_file_context,
            ),
            (
                FLT_STREAMHANDLE_CONTEXT,
                contexts::flt_set_stream_handle_context,
                del::flt_delete_stream_handle_context,
            ),
        ] {
            let context = allocate(filter, context_type);
            let keep = FLT_SET_CONTEXT_KEEP_IF_EXISTS;
            assert_eq!(
                set(instance, fo, keep, context, std::ptr::null_mut()),
                STATUS_SUCCESS
            );
            contexts::flt_release_context(context);
            let mut old: PFLT_CONTEXT = std::ptr::null_mut();
            assert_eq!(delete(instance, fo, &raw mut old), STATUS_SUCCESS);
            assert_eq!(old, context, "{context_type:#x}");
            assert_eq!(delete(instance, fo, &raw mut old), STATUS_NOT_FOUND);
            assert!(old.is_null());
            contexts::flt_release_context(context);
        }
        assert_eq!(cleanups(), 3);
        // Named pipes keep no stream or file contexts.
        for delete in [del::flt_delete_stream_context, del::flt_delete_file_context] {
            assert_eq!(
                delete(pipe_instance, pipe_fo, std::ptr::null_mut()),
                STATUS_NOT_SUPPORTED
            );
        }
        // A file object of another volume than the instance's.
        assert_eq!(
            del::flt_delete_stream_handle_context(instance, pipe_fo, std::ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
    })
    .expect("returned");
    assert_eq!(
        rules(&k),
        [(
            ViolationKind::Parameter,
            "FltDeleteStreamHandleContext: a live instance and an open file object of its volume"
                .to_owned()
        )]
    );
    for f in [file, pipe] {
        io.cleanup(&f);
        io.close(f);
    }
}

#[test]
fn flt_delete_context_unlinks_what_the_caller_holds_and_reports_a_caller_without_a_reference() {
    let k = kernel();
    let filter = start(&k, true);
    let (_, _, instance) = volume(&k, NTFS);
    k.call_driver("PostCreate", Some(0), || {
        let context = allocate(filter, FLT_INSTANCE_CONTEXT);
        let keep = FLT_SET_CONTEXT_KEEP_IF_EXISTS;
        let none = std::ptr::null_mut();
        assert_eq!(
            instance_contexts::flt_set_instance_context(instance, keep, context, none),
            STATUS_SUCCESS
        );
        // We hold our allocation's reference: the delete unlinks, our reference stays valid.
        del::flt_delete_context(context);
        let mut got: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            instance_contexts::flt_get_instance_context(instance, &raw mut got),
            STATUS_NOT_FOUND
        );
        assert_eq!(cleanups(), 0);
        // Deleting what is no longer linked changes nothing.
        del::flt_delete_context(context);
        assert_eq!(cleanups(), 0);
        contexts::flt_release_context(context);
        assert_eq!(cleanups(), 1);
        // A freed context, and NULL.
        del::flt_delete_context(context);
        del::flt_delete_context(std::ptr::null_mut());
        // Linked, with only its link's reference: the caller holds none.
        let orphan = allocate(filter, FLT_INSTANCE_CONTEXT);
        assert_eq!(
            instance_contexts::flt_set_instance_context(instance, keep, orphan, none),
            STATUS_SUCCESS
        );
        contexts::flt_release_context(orphan);
        del::flt_delete_context(orphan);
        assert_eq!(cleanups(), 2);
        // OldContext never released: the leak report names the delete and its caller.
        let kept = allocate(filter, FLT_INSTANCE_CONTEXT);
        assert_eq!(
            instance_contexts::flt_set_instance_context(instance, keep, kept, none),
            STATUS_SUCCESS
        );
        contexts::flt_release_context(kept);
        let mut old: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            del::flt_delete_instance_context(instance, &raw mut old),
            STATUS_SUCCESS
        );
    })
    .expect("returned");
    contexts::report_leaks(&k, "the test");
    let found = k.violations();
    let rules: Vec<&str> = found.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(
        rules,
        [
            "FltDeleteContext: a context the caller holds a reference to",
            "FltDeleteContext: a Context (required)",
            "FltDeleteContext: the caller holds a reference to the context (from a get, or its allocation)",
            "RULES.md 19: every context reference is released (FltReleaseContext); FltUnregisterFilter waits for them",
        ]
    );
    assert!(found[0].message.contains("is a freed instance context"));
    assert!(
        found[3]
            .message
            .contains("deleted by FltDeleteInstanceContext in PostCreate"),
        "{}",
        found[3].message
    );
}

#[test]
fn disk_device_objects_exist_under_local_volumes_only_and_every_reference_is_dropped_once() {
    let k = kernel();
    let filter = start(&k, true);
    let (_, ntfs, _) = volume(&k, NTFS);
    let (_, mup, _) = volume(&k, MUP);
    let (_, pipe, _) = volume(&k, PIPE);
    k.call_driver("PostCreate", Some(0), || {
        let mut device: *mut DEVICE_OBJECT = std::ptr::null_mut();
        assert_eq!(
            disk_devices::flt_get_disk_device_object(ntfs, &raw mut device),
            STATUS_SUCCESS
        );
        let device_type = (device as usize + std::mem::offset_of!(DEVICE_OBJECT, DeviceType))
            as *const vigil_sys::DEVICE_TYPE;
        assert_eq!(guest::read(device_type), 0x7, "FILE_DEVICE_DISK");
        let mut again: *mut DEVICE_OBJECT = std::ptr::null_mut();
        assert_eq!(
            disk_devices::flt_get_disk_device_object(ntfs, &raw mut again),
            STATUS_SUCCESS
        );
        assert_eq!(again, device, "one disk under the volume");
        // No storage device under network and pipe volumes; the out-parameter is untouched.
        for volume in [mup, pipe] {
            let mut untouched = BOGUS as *mut DEVICE_OBJECT;
            assert_eq!(
                disk_devices::flt_get_disk_device_object(volume, &raw mut untouched),
                disk_devices::STATUS_FLT_NO_DEVICE_OBJECT
            );
            assert_eq!(untouched as usize, BOGUS);
        }
        assert_eq!(
            disk_devices::flt_get_disk_device_object(BOGUS as PVOID, &raw mut again),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(thread::obf_dereference_object(device.cast()), 1);
        assert_eq!(thread::obf_dereference_object(device.cast()), 0);
        // One dereference too many.
        thread::obf_dereference_object(device.cast());
        // Taken and never dropped.
        assert_eq!(
            disk_devices::flt_get_disk_device_object(ntfs, &raw mut device),
            STATUS_SUCCESS
        );
    })
    .expect("returned");
    k.call_driver("InstanceTeardownStart", Some(0), || {
        let mut device: *mut DEVICE_OBJECT = std::ptr::null_mut();
        assert_eq!(
            disk_devices::flt_get_disk_device_object(ntfs, &raw mut device),
            STATUS_SUCCESS
        );
        thread::obf_dereference_object(device.cast());
    })
    .expect("returned");
    k.call_driver("FilterUnload", Some(0), || {
        registration::flt_unregister_filter(filter);
    })
    .expect("returned");
    crate::sim::report_leaks(&k, "the test");
    let found = k.violations();
    let rows: Vec<(&str, &str, &str)> = found
        .iter()
        .filter(|v| v.kind != ViolationKind::ReferenceLeak)
        .map(|v| (v.rule.as_str(), v.routine.as_str(), v.callback.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "FltGetDiskDeviceObject: Volume, an opaque volume pointer (required)",
                "FltGetDiskDeviceObject",
                "PostCreate"
            ),
            (
                "ObfDereferenceObject: one dereference per reference",
                "ObfDereferenceObject",
                "PostCreate"
            ),
            (
                "FltGetDiskDeviceObject: called from I/O-related callbacks only (not instance teardown callbacks, where the device's fields may be invalid)",
                "FltGetDiskDeviceObject",
                "InstanceTeardownStart"
            ),
            (
                "every reference from FltGetDiskDeviceObject is released (ObDereferenceObject) before the driver is gone",
                "FltGetDiskDeviceObject",
                "PostCreate"
            ),
        ]
    );
}

#[test]
fn a_filter_detaches_its_instance_through_its_query_teardown_and_only_once() {
    let k = kernel();
    let filter = start(&k, true);
    let (ntfs_id, ntfs, _) = volume(&k, NTFS);
    let (_, pipe, _) = volume(&k, PIPE);
    let name: Vec<u16> = "NoSuchInstance".encode_utf16().collect();
    let bytes = u16::try_from(name.len() * 2).expect("short");
    let unknown = UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: name.as_ptr().cast_mut(),
    };
    k.call_driver("DetachWorker", Some(0), || {
        assert_eq!(
            volume_detach::flt_detach_volume(BOGUS as PFLT_FILTER, ntfs, std::ptr::null()),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            volume_detach::flt_detach_volume(filter, BOGUS as PVOID, std::ptr::null()),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            volume_detach::flt_detach_volume(filter, ntfs, &raw const unknown),
            STATUS_FLT_INSTANCE_NOT_FOUND
        );
        // The filter refuses: the instance stays.
        QUERY_ANSWER.with(|a| a.set(STATUS_FLT_DO_NOT_DETACH));
        assert_eq!(
            volume_detach::flt_detach_volume(filter, ntfs, std::ptr::null()),
            STATUS_FLT_DO_NOT_DETACH
        );
        assert_eq!(TEARDOWNS.with(Cell::get), 0);
        QUERY_ANSWER.with(|a| a.set(STATUS_SUCCESS));
        assert_eq!(
            volume_detach::flt_detach_volume(filter, ntfs, std::ptr::null()),
            STATUS_SUCCESS
        );
        // Teardown start and complete ran before it returned.
        assert_eq!(TEARDOWNS.with(Cell::get), 2);
        assert_eq!(
            volume_detach::flt_detach_volume(filter, ntfs, std::ptr::null()),
            STATUS_FLT_INSTANCE_NOT_FOUND
        );
        assert_eq!(
            volume_detach::flt_detach_volume(filter, pipe, std::ptr::null()),
            STATUS_SUCCESS
        );
    })
    .expect("returned");
    assert!(flt_read(&k).io.volumes[ntfs_id.0].instance.is_none());
    let rules: Vec<String> = rules(&k).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        rules,
        [
            "FltDetachVolume: Filter from FltRegisterFilter (required)",
            "FltDetachVolume: Volume, an opaque volume pointer (required)",
        ]
    );
}

#[test]
fn without_a_query_teardown_callback_a_filter_cannot_detach_and_an_unloading_one_is_refused() {
    let k = kernel();
    let filter = start(&k, false);
    let (_, ntfs, _) = volume(&k, NTFS);
    k.call_driver("DetachWorker", Some(0), || {
        assert_eq!(
            volume_detach::flt_detach_volume(filter, ntfs, std::ptr::null()),
            STATUS_FLT_DO_NOT_DETACH
        );
    })
    .expect("returned");
    k.call_driver("FilterUnload", Some(0), || {
        registration::flt_unregister_filter(filter);
        assert_eq!(
            volume_detach::flt_detach_volume(filter, ntfs, std::ptr::null()),
            STATUS_FLT_DELETING_OBJECT
        );
    })
    .expect("returned");
    assert!(k.violations().is_empty(), "{:?}", rules(&k));
}

/// Sets a fresh transaction context on `transaction` for `instance` and releases the caller's
/// reference (the transaction holds its own); the context.
fn set_transaction_context(
    filter: PFLT_FILTER,
    instance: PFLT_INSTANCE,
    transaction: usize,
) -> PFLT_CONTEXT {
    let context = allocate(filter, FLT_TRANSACTION_CONTEXT);
    assert_eq!(
        tx::flt_set_transaction_context(
            instance,
            transaction as PVOID,
            FLT_SET_CONTEXT_KEEP_IF_EXISTS,
            context,
            std::ptr::null_mut()
        ),
        STATUS_SUCCESS
    );
    contexts::flt_release_context(context);
    context
}

#[test]
fn transaction_contexts_and_enlistments_follow_their_pages_and_go_with_the_transaction() {
    let k = kernel();
    let filter = start(&k, true);
    let (_, _, instance) = volume(&k, NTFS);
    let transaction = tx::begin(&k);
    let t = transaction as PVOID;
    k.call_driver("PreSetInformation", Some(0), || {
        let mut got: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            tx::flt_get_transaction_context(instance, t, &raw mut got),
            STATUS_NOT_FOUND
        );
        // A transaction pointer kernel-sim never handed out.
        assert_eq!(
            tx::flt_get_transaction_context(instance, BOGUS as PVOID, &raw mut got),
            STATUS_INVALID_PARAMETER
        );
        let context = set_transaction_context(filter, instance, transaction);
        // KEEP_IF_EXISTS: the one set, referenced for the caller.
        let second = allocate(filter, FLT_TRANSACTION_CONTEXT);
        let mut old: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            tx::flt_set_transaction_context(
                instance,
                t,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                second,
                &raw mut old
            ),
            vigil_sys::STATUS_FLT_CONTEXT_ALREADY_DEFINED
        );
        assert_eq!(old, context);
        contexts::flt_release_context(old);
        contexts::flt_release_context(second);
        assert_eq!(cleanups(), 1, "the second one");
        // Enlistment statuses.
        let commit = tx::NOTIFY_PREPREPARE | tx::NOTIFY_COMMIT | tx::NOTIFY_ROLLBACK;
        assert_eq!(
            tx::flt_enlist_in_transaction(instance, t, context, 0),
            tx::STATUS_INVALID_PARAMETER_4
        );
        assert_eq!(
            tx::flt_enlist_in_transaction(instance, t, context, 0x100),
            tx::STATUS_INVALID_PARAMETER_4
        );
        assert_eq!(
            tx::flt_enlist_in_transaction(instance, t, std::ptr::null_mut(), commit),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            tx::flt_enlist_in_transaction(instance, t, context, commit),
            STATUS_SUCCESS
        );
        assert_eq!(
            tx::flt_enlist_in_transaction(instance, t, context, commit),
            tx::STATUS_FLT_ALREADY_ENLISTED
        );
    })
    .expect("returned");
    // The commit: the notifications the mask asked for, in order; then the context goes with
    // the transaction (its link's and the enlistment's references dropped).
    assert_eq!(tx::end(&k, transaction, true), STATUS_SUCCESS);
    assert_eq!(notifications(), [tx::NOTIFY_PREPREPARE, tx::NOTIFY_COMMIT]);
    assert_eq!(cleanups(), 2);
    k.call_driver("PreSetInformation", Some(0), || {
        let mut got: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            tx::flt_get_transaction_context(instance, t, &raw mut got),
            STATUS_INVALID_PARAMETER,
            "the transaction is over"
        );
    })
    .expect("returned");
    let rules: Vec<String> = rules(&k).into_iter().map(|(_, r)| r).collect();
    let no_transaction = "FltGetTransactionContext: Transaction, a transaction in progress (FltObjects->Transaction)";
    assert_eq!(
        rules,
        [
            no_transaction,
            "FltEnlistInTransaction: TransactionContext, a transaction context (required)",
            no_transaction,
        ]
    );
}

#[test]
fn an_enlisted_filter_can_roll_a_commit_back_before_its_commit_phase_only() {
    let k = kernel();
    let filter = start(&k, true);
    let (_, _, instance) = volume(&k, NTFS);
    let (vetoed, late, bare, unset) = (tx::begin(&k), tx::begin(&k), tx::begin(&k), tx::begin(&k));
    let every =
        tx::NOTIFY_PREPREPARE | tx::NOTIFY_PREPARE | tx::NOTIFY_COMMIT | tx::NOTIFY_ROLLBACK;
    k.call_driver("PreSetInformation", Some(0), || {
        for transaction in [vetoed, late] {
            let context = set_transaction_context(filter, instance, transaction);
            assert_eq!(
                tx::flt_enlist_in_transaction(instance, transaction as PVOID, context, every),
                STATUS_SUCCESS
            );
        }
        // A context set but no enlistment; no context at all.
        let context = set_transaction_context(filter, instance, bare);
        assert_eq!(
            tx::flt_rollback_enlistment(instance, bare as PVOID, context),
            tx::STATUS_TRANSACTION_REQUEST_NOT_VALID
        );
        assert_eq!(
            tx::flt_rollback_enlistment(instance, unset as PVOID, std::ptr::null_mut()),
            STATUS_NOT_FOUND
        );
    })
    .expect("returned");
    let rollback_in = |when: u32| {
        ON_NOTIFICATION.with(|a| {
            *a.borrow_mut() = Some((
                when,
                Box::new(|objects: &FLT_RELATED_OBJECTS, context: PFLT_CONTEXT| {
                    tx::flt_rollback_enlistment(objects.Instance, objects.Transaction, context)
                }),
            ));
        });
    };
    // Vetoed in its pre-prepare: the commit turns into a rollback.
    rollback_in(tx::NOTIFY_PREPREPARE);
    assert_eq!(tx::end(&k, vetoed, true), tx::STATUS_TRANSACTION_ABORTED);
    assert_eq!(ACTION_STATUS.with(Cell::take), Some(STATUS_SUCCESS));
    assert_eq!(
        notifications(),
        [tx::NOTIFY_PREPREPARE, tx::NOTIFY_ROLLBACK]
    );
    // Too late in the commit phase.
    rollback_in(tx::NOTIFY_COMMIT);
    assert_eq!(tx::end(&k, late, true), STATUS_SUCCESS);
    assert_eq!(
        ACTION_STATUS.with(Cell::take),
        Some(tx::STATUS_TRANSACTION_REQUEST_NOT_VALID)
    );
    assert_eq!(
        notifications(),
        [tx::NOTIFY_PREPREPARE, tx::NOTIFY_PREPARE, tx::NOTIFY_COMMIT]
    );
    for transaction in [bare, unset] {
        assert_eq!(tx::end(&k, transaction, false), STATUS_SUCCESS);
    }
    assert!(notifications().is_empty(), "neither was enlisted");
    assert_eq!(
        cleanups(),
        3,
        "every transaction context went with its transaction"
    );
    assert!(k.violations().is_empty(), "{:?}", rules(&k));
}

#[test]
fn deleting_a_transaction_context_and_tearing_the_instance_down_drop_their_references() {
    let k = kernel();
    let filter = start(&k, true);
    let (ntfs_id, _, instance) = volume(&k, NTFS);
    let transaction = tx::begin(&k);
    let t = transaction as PVOID;
    k.call_driver("TransactionNotify", Some(0), || {
        let context = set_transaction_context(filter, instance, transaction);
        let mut old: PFLT_CONTEXT = std::ptr::null_mut();
        assert_eq!(
            tx::flt_delete_transaction_context(instance, t, &raw mut old),
            STATUS_SUCCESS
        );
        assert_eq!(old, context);
        assert_eq!(
            tx::flt_delete_transaction_context(instance, t, &raw mut old),
            STATUS_NOT_FOUND
        );
        contexts::flt_release_context(context);
        assert_eq!(cleanups(), 1);
        // Enlisted, then unlinked with FltDeleteContext while we hold a reference: the
        // enlistment still holds one.
        let context = allocate(filter, FLT_TRANSACTION_CONTEXT);
        let keep = FLT_SET_CONTEXT_KEEP_IF_EXISTS;
        assert_eq!(
            tx::flt_set_transaction_context(instance, t, keep, context, std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        assert_eq!(
            tx::flt_enlist_in_transaction(instance, t, context, tx::NOTIFY_COMMIT),
            STATUS_SUCCESS
        );
        del::flt_delete_context(context);
        contexts::flt_release_context(context);
        assert_eq!(cleanups(), 1, "the enlistment's reference");
    })
    .expect("returned");
    // The instance goes: so does its enlistment, and no notification reaches it.
    crate::fltmgr::instances::teardown_instance(&k, ntfs_id, 0x1);
    assert_eq!(cleanups(), 2);
    assert_eq!(tx::end(&k, transaction, true), STATUS_SUCCESS);
    assert!(notifications().is_empty());
    assert!(k.violations().is_empty(), "{:?}", rules(&k));
}

#[test]
fn enlisting_without_a_notification_callback_is_refused() {
    let k = kernel();
    let filter = start(&k, false);
    let (_, _, instance) = volume(&k, NTFS);
    let transaction = tx::begin(&k);
    k.call_driver("PreSetInformation", Some(0), || {
        let context = set_transaction_context(filter, instance, transaction);
        assert_eq!(
            tx::flt_enlist_in_transaction(
                instance,
                transaction as PVOID,
                context,
                tx::NOTIFY_COMMIT
            ),
            STATUS_INVALID_PARAMETER
        );
    })
    .expect("returned");
    assert_eq!(tx::end(&k, transaction, true), STATUS_SUCCESS);
    assert!(k.violations().is_empty(), "{:?}", rules(&k));
}

#[test]
fn transacted_creates_are_ntfs_only_and_their_file_objects_carry_the_transaction() {
    let k = kernel();
    let _filter = start(&k, true);
    let (ntfs_id, _, _) = volume(&k, NTFS);
    let (pipe_id, _, _) = volume(&k, PIPE);
    let io = Io::new(Arc::clone(&k), Requestor { pid: 4, tid: 8 });
    let transaction = io.begin_transaction();
    io.set_current_transaction(Some(&transaction));
    let f = io
        .create(ntfs_id, r"\t.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("transacted on NTFS");
    let recorded = flt_read(&k)
        .io
        .files
        .with(f.file_object(), |r| r.map(|r| r.transaction));
    assert_eq!(recorded, Some(transaction.address()));
    // Not NTFS: refused for write access, untransacted for read access.
    assert_eq!(
        io.create(pipe_id, r"\w", FILE_CREATE, 0, GENERIC_WRITE)
            .map(|_| ())
            .expect_err("refused"),
        crate::world::io::STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED
    );
    let read = io
        .create(pipe_id, r"\r", FILE_CREATE, 0, FILE_READ_DATA)
        .expect("read access goes ahead");
    let recorded = flt_read(&k)
        .io
        .files
        .with(read.file_object(), |r| r.map(|r| r.transaction));
    assert_eq!(recorded, Some(0));
    io.set_current_transaction(None);
    for handle in [f, read] {
        io.cleanup(&handle);
        io.close(handle);
    }
    assert_eq!(io.commit_transaction(transaction), STATUS_SUCCESS);
    assert!(k.violations().is_empty(), "{:?}", rules(&k));
}

#[test]
fn detaching_from_an_operation_in_flight_on_the_instance_is_reported_as_the_deadlock_it_is() {
    let k = kernel_with_hang_limit(Duration::from_millis(300));
    let filter = start(&k, true);
    let (ntfs_id, ntfs, _) = volume(&k, NTFS);
    let outcome = k.call_driver("PreCreate", Some(0), || {
        // This thread's own operation is in flight on the instance, as in its pre-create.
        flt_read(&k).io.volumes[ntfs_id.0]
            .instance
            .as_ref()
            .expect("attached")
            .in_flight
            .add(1);
        volume_detach::flt_detach_volume(filter, ntfs, std::ptr::null())
    });
    assert!(outcome.is_none(), "the deadlock abandons the call");
    let kinds: Vec<ViolationKind> = k.violations().iter().map(|v| v.kind).collect();
    assert_eq!(kinds, [ViolationKind::Deadlock]);
    assert_eq!(
        TEARDOWNS.with(Cell::get),
        1,
        "teardown started, then waited for itself"
    );
}
