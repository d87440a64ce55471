//! Driver-independent tests of the I/O side of the Filter Manager emulation: a filter written
//! in Rust (its callbacks are `extern "win64"` functions scripted per test through a
//! thread-local) is registered, started and driven with synthetic I/O; each test asserts what
//! the verifier records or what the callbacks observed.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{
    APC_LEVEL, DISPATCH_LEVEL, FILE_DEVICE_DISK_FILE_SYSTEM, FILE_DEVICE_NAMED_PIPE,
    FLT_CALLBACK_DATA, FLT_CONTEXT_END, FLT_CONTEXT_REGISTRATION, FLT_FILE_NAME_INFORMATION,
    FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED, FLT_FILE_NAME_QUERY_DEFAULT,
    FLT_FILESYSTEM_TYPE, FLT_FSTYPE_NPFS, FLT_FSTYPE_NTFS, FLT_OPERATION_REGISTRATION,
    FLT_POSTOP_FINISHED_PROCESSING, FLT_PREOP_COMPLETE, FLT_PREOP_SUCCESS_NO_CALLBACK,
    FLT_PREOP_SUCCESS_WITH_CALLBACK, FLT_PREOP_SYNCHRONIZE, FLT_REGISTRATION,
    FLT_REGISTRATION_VERSION, FLT_RELATED_OBJECTS, FLT_SET_CONTEXT_KEEP_IF_EXISTS,
    FLT_STREAMHANDLE_CONTEXT, FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO,
    FLTFL_POST_OPERATION_DRAINING, FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS, IRP_MJ_CLEANUP,
    IRP_MJ_CREATE, IRP_MJ_OPERATION_END, IRP_MJ_SET_INFORMATION, IRP_MJ_WRITE, NTSTATUS,
    NonPagedPoolNx, PFLT_CONTEXT, PFLT_FILE_NAME_INFORMATION, PFLT_FILTER, PVOID,
    STATUS_ACCESS_DENIED, STATUS_FLT_CONTEXT_ALREADY_DEFINED, STATUS_FLT_DO_NOT_ATTACH,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS,
};

use crate::config::SimConfig;
use crate::config::{IoConfig, VolumeKind};
use crate::fltmgr::flt_write;
use crate::fltmgr::instances::{self, VolumeId};
use crate::fltmgr::{contexts, names, registration};
use crate::image::symbols::Symbols;
use crate::kernel::{Kernel, lock};
use crate::machine::guest;
use crate::machine::state::{self, ImageBounds};
use crate::ntoskrnl::thread;
use crate::report::ViolationKind;
use crate::world::io::{FileSystemHold, Io, Requestor, WriteOptions};

const NTFS: &str = r"\Device\HarddiskVolume1";
const PIPE: &str = r"\Device\NamedPipe";
const CONTEXT_TAG: u32 = u32::from_le_bytes(*b"Tctx");
const CONTEXT_SIZE: usize = 24;
const ME: Requestor = Requestor {
    pid: 0x321,
    tid: 0x654,
};

type Pre = Box<dyn FnMut(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, *mut PVOID) -> i32>;
type Post = Box<dyn FnMut(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, PVOID) -> i32>;

/// What the test filter does, per thread (callbacks run on the thread issuing the I/O).
#[derive(Default)]
struct Script {
    pre: Option<Pre>,
    post: Option<Post>,
    setup_status: NTSTATUS,
    /// Run `pre` for this major function only.
    only: Option<u8>,
    log: Vec<String>,
}

thread_local! {
    static SCRIPT: RefCell<Script> = RefCell::new(Script::default());
}

fn log(entry: String) {
    if SCRIPT.with(|s| s.borrow().log.len()) > 100_000 {
        return;
    }
    SCRIPT.with(|s| s.borrow_mut().log.push(entry));
}

fn logged() -> Vec<String> {
    SCRIPT.with(|s| s.borrow().log.clone())
}

fn on_pre(
    f: impl FnMut(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, *mut PVOID) -> i32 + 'static,
) {
    SCRIPT.with(|s| s.borrow_mut().pre = Some(Box::new(f)));
}

fn on_post(
    f: impl FnMut(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, PVOID) -> i32 + 'static,
) {
    SCRIPT.with(|s| s.borrow_mut().post = Some(Box::new(f)));
}

unsafe extern "win64" fn pre(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: *mut PVOID,
) -> i32 {
    let major = guest::read(guest::read(data).Iopb).MajorFunction;
    log(format!("pre {major:#x} at {}", state::current_irql()));
    let taken = SCRIPT.with(|s| {
        let mut script = s.borrow_mut();
        if script.only.is_some_and(|only| only != major) {
            None
        } else {
            script.pre.take()
        }
    });
    let Some(mut f) = taken else {
        return FLT_PREOP_SUCCESS_WITH_CALLBACK;
    };
    let status = f(data, objects, completion);
    SCRIPT.with(|s| s.borrow_mut().pre = Some(f));
    status
}

unsafe extern "win64" fn post(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: PVOID,
    flags: u32,
) -> i32 {
    let major = guest::read(guest::read(data).Iopb).MajorFunction;
    log(format!("post {major:#x} at {}", state::current_irql()));
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        log(format!(
            "draining {major:#x} status {:#x}",
            guest::read(data).IoStatus.Status
        ));
    }
    let taken = SCRIPT.with(|s| s.borrow_mut().post.take());
    let Some(mut f) = taken else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let status = f(data, objects, completion);
    SCRIPT.with(|s| s.borrow_mut().post = Some(f));
    status
}

unsafe extern "win64" fn instance_setup(
    _objects: *const FLT_RELATED_OBJECTS,
    flags: u32,
    device_type: u32,
    fs_type: FLT_FILESYSTEM_TYPE,
) -> NTSTATUS {
    log(format!(
        "setup flags {flags:#x} device {device_type:#x} fs {fs_type} at {}",
        state::current_irql()
    ));
    SCRIPT.with(|s| s.borrow().setup_status)
}

unsafe extern "win64" fn query_teardown(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
) -> NTSTATUS {
    log("query teardown".to_owned());
    STATUS_SUCCESS
}

unsafe extern "win64" fn teardown_start(_objects: *const FLT_RELATED_OBJECTS, reason: u32) {
    log(format!("teardown start {reason:#x}"));
    TEARDOWN_HOLD.hold_if_asked();
}

/// Holds one `InstanceTeardownStart` (on whichever thread) until released: a teardown in
/// progress while another thread unregisters the filter.
struct TeardownHold {
    /// 0: not asked; 1: asked; 2: holding; 3: released.
    state: std::sync::Mutex<u8>,
    changed: std::sync::Condvar,
}

static TEARDOWN_HOLD: TeardownHold = TeardownHold {
    state: std::sync::Mutex::new(0),
    changed: std::sync::Condvar::new(),
};

impl TeardownHold {
    fn set(&self, value: u8) {
        *self.state.lock().expect("hold") = value;
        self.changed.notify_all();
    }

    fn wait_for(&self, value: u8) {
        let mut state = self.state.lock().expect("hold");
        while *state != value {
            state = self.changed.wait(state).expect("hold");
        }
    }

    fn hold_if_asked(&self) {
        let mut state = self.state.lock().expect("hold");
        if *state == 1 {
            *state = 2;
            self.changed.notify_all();
            while *state != 3 {
                state = self.changed.wait(state).expect("hold");
            }
        }
    }
}

unsafe extern "win64" fn teardown_complete(_objects: *const FLT_RELATED_OBJECTS, reason: u32) {
    log(format!("teardown complete {reason:#x}"));
}

unsafe extern "win64" fn context_cleanup(_context: PFLT_CONTEXT, context_type: u16) {
    log(format!("context cleanup {context_type:#x}"));
}

unsafe extern "win64" fn unload(_flags: u32) -> NTSTATUS {
    STATUS_SUCCESS
}

fn operation(major: u8, flags: u32) -> FLT_OPERATION_REGISTRATION {
    FLT_OPERATION_REGISTRATION {
        MajorFunction: major,
        Flags: flags,
        PreOperation: Some(pre),
        PostOperation: Some(post),
        Reserved1: std::ptr::null_mut(),
    }
}

/// A run with an NTFS and a named-pipe volume mounted before "DriverEntry".
fn kernel(config: &IoConfig) -> Arc<Kernel> {
    let k = Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(5),
            io: IoConfig {
                volumes: vec![
                    (VolumeKind::Ntfs, NTFS.to_owned()),
                    (VolumeKind::NamedPipe, PIPE.to_owned()),
                ],
                ..config.clone()
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

/// Registers and starts the test filter (`registration_flags`); returns its handle.
fn start(k: &Kernel, registration_flags: u32) -> PFLT_FILTER {
    let operations: &'static [FLT_OPERATION_REGISTRATION] = Box::leak(Box::new([
        operation(IRP_MJ_CREATE, 0),
        operation(IRP_MJ_WRITE, FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO),
        operation(IRP_MJ_SET_INFORMATION, 0),
        operation(IRP_MJ_CLEANUP, 0),
        FLT_OPERATION_REGISTRATION {
            MajorFunction: IRP_MJ_OPERATION_END,
            Flags: 0,
            PreOperation: None,
            PostOperation: None,
            Reserved1: std::ptr::null_mut(),
        },
    ]));
    let context = |context_type, size, cleanup| FLT_CONTEXT_REGISTRATION {
        ContextType: context_type,
        Flags: 0,
        ContextCleanupCallback: cleanup,
        Size: size,
        PoolTag: CONTEXT_TAG,
        ContextAllocateCallback: std::ptr::null_mut(),
        ContextFreeCallback: std::ptr::null_mut(),
        Reserved1: std::ptr::null_mut(),
    };
    let contexts: &'static [FLT_CONTEXT_REGISTRATION] = Box::leak(Box::new([
        context(
            FLT_STREAMHANDLE_CONTEXT,
            CONTEXT_SIZE,
            Some(context_cleanup),
        ),
        context(FLT_CONTEXT_END, 0, None),
    ]));
    let registration: &'static FLT_REGISTRATION = Box::leak(Box::new(FLT_REGISTRATION {
        Size: u16::try_from(size_of::<FLT_REGISTRATION>()).expect("small"),
        Version: FLT_REGISTRATION_VERSION,
        Flags: registration_flags,
        ContextRegistration: contexts.as_ptr(),
        OperationRegistration: operations.as_ptr(),
        FilterUnloadCallback: Some(unload),
        InstanceSetupCallback: Some(instance_setup),
        InstanceQueryTeardownCallback: Some(query_teardown),
        InstanceTeardownStartCallback: Some(teardown_start),
        InstanceTeardownCompleteCallback: Some(teardown_complete),
        GenerateFileNameCallback: std::ptr::null_mut(),
        NormalizeNameComponentCallback: std::ptr::null_mut(),
        NormalizeContextCleanupCallback: std::ptr::null_mut(),
        TransactionNotificationCallback: std::ptr::null_mut(),
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

fn unregister(k: &Kernel, filter: PFLT_FILTER) {
    k.call_driver("FilterUnload", Some(0), || {
        registration::flt_unregister_filter(filter);
    })
    .expect("returned");
}

fn ntfs(k: &Kernel) -> VolumeId {
    let flt = flt_write(k);
    VolumeId(
        flt.io
            .volumes
            .iter()
            .position(|v| v.device_name == NTFS)
            .expect("mounted"),
    )
}

fn io(k: &Arc<Kernel>) -> Io {
    Io::new(Arc::clone(k), ME)
}

fn kinds(k: &Kernel) -> Vec<ViolationKind> {
    k.violations().iter().map(|v| v.kind).collect()
}

fn query_name(
    data: *mut FLT_CALLBACK_DATA,
    format: u32,
) -> Result<PFLT_FILE_NAME_INFORMATION, NTSTATUS> {
    let mut info: PFLT_FILE_NAME_INFORMATION = std::ptr::null_mut();
    let status = names::flt_get_file_name_information(
        data,
        format | FLT_FILE_NAME_QUERY_DEFAULT,
        &raw mut info,
    );
    if status == STATUS_SUCCESS {
        Ok(info)
    } else {
        Err(status)
    }
}

fn only_for(major: u8) {
    SCRIPT.with(|s| s.borrow_mut().only = Some(major));
}

fn name_text(info: PFLT_FILE_NAME_INFORMATION) -> String {
    let header: FLT_FILE_NAME_INFORMATION = guest::read(info);
    let bytes = guest::read_bytes(header.Name.Buffer.cast(), usize::from(header.Name.Length));
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[test]
fn instances_attach_with_the_volume_types_and_pipes_only_with_npfs_support() {
    let k = kernel(&IoConfig::default());
    let filter = start(&k, 0);
    let setups: Vec<String> = logged()
        .into_iter()
        .filter(|l| l.starts_with("setup"))
        .collect();
    assert_eq!(
        setups,
        [format!(
            "setup flags 0x1 device {FILE_DEVICE_DISK_FILE_SYSTEM:#x} fs {FLT_FSTYPE_NTFS} at 0"
        )],
        "NTFS offered at start, the pipe volume not offered without NPFS support"
    );
    let fat = crate::world::volumes::mount(&k, VolumeKind::Fat, r"\Device\HarddiskVolume2");
    assert!(
        logged().last().unwrap().starts_with("setup flags 0x5 "),
        "{:?}",
        logged()
    );
    SCRIPT.with(|s| s.borrow_mut().setup_status = STATUS_FLT_DO_NOT_ATTACH);
    let refused = crate::world::volumes::mount(&k, VolumeKind::ExFat, r"\Device\HarddiskVolume3");
    let attached = |v: VolumeId| flt_write(&k).io.volumes[v.0].instance.is_some();
    assert!(attached(fat));
    assert!(!attached(refused), "STATUS_FLT_DO_NOT_ATTACH: no instance");
    // No callback for I/O on the refused volume.
    let before = flt_write(&k).io.stats.snapshot().pre_callbacks;
    let f = io(&k).create(refused, r"\x", 2, 0, 0).expect("created");
    io(&k).close(f);
    assert_eq!(flt_write(&k).io.stats.snapshot().pre_callbacks, before);
    unregister(&k, filter);
    let log = logged();
    assert!(log.contains(&"teardown start 0x2".to_owned()), "{log:?}");
    assert!(log.contains(&"teardown complete 0x2".to_owned()), "{log:?}");
    assert!(k.violations().is_empty(), "{:?}", k.violations());

    SCRIPT.with(|s| *s.borrow_mut() = Script::default());
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS);
    assert!(
        logged().contains(&format!(
            "setup flags 0x1 device {FILE_DEVICE_NAMED_PIPE:#x} fs {FLT_FSTYPE_NPFS} at 0"
        )),
        "{:?}",
        logged()
    );
}

#[test]
fn requestor_ids_irqls_complete_synchronize_and_paging_skips() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    let volume = ntfs(&k);
    on_pre(|data, _, _| {
        let iopb = guest::read(guest::read(data).Iopb);
        log(format!(
            "ids {:#x} {:#x} {:#x}",
            thread::ps_get_current_process_id() as usize,
            thread::ps_get_current_thread_id() as usize,
            crate::fltmgr::files::flt_get_requestor_process_id(data)
        ));
        match iopb.MajorFunction {
            IRP_MJ_WRITE => FLT_PREOP_SYNCHRONIZE,
            IRP_MJ_SET_INFORMATION => {
                let mut d = guest::read(data);
                d.IoStatus.Status = STATUS_ACCESS_DENIED;
                guest::write(data, d);
                FLT_PREOP_COMPLETE
            }
            _ => FLT_PREOP_SUCCESS_WITH_CALLBACK,
        }
    });
    let io = io(&k);
    let f = io.create(volume, r"\a.txt", 2, 0, 0).expect("created");
    assert!(
        logged().contains(&"ids 0x321 0x654 0x321".to_owned()),
        "{:?}",
        logged()
    );
    assert_eq!(
        io.write_with(
            &f,
            0,
            b"abc",
            WriteOptions {
                paging_io: false,
                at_apc_level: true
            }
        ),
        STATUS_SUCCESS
    );
    let log = logged();
    assert_eq!(
        log[log.len() - 3..],
        ["pre 0x4 at 1", "ids 0x321 0x654 0x321", "post 0x4 at 1"],
        "SYNCHRONIZE: the post on the same thread at the pre's IRQL"
    );
    let count = logged().len();
    assert_eq!(
        io.write_with(
            &f,
            0,
            b"abc",
            WriteOptions {
                paging_io: true,
                at_apc_level: false
            }
        ),
        STATUS_SUCCESS
    );
    assert_eq!(logged().len(), count, "paging I/O skipped (SKIP_PAGING_IO)");
    assert_eq!(
        io.rename(&f, "b.txt", false),
        STATUS_ACCESS_DENIED,
        "completed by the filter"
    );
    assert!(
        !logged().last().unwrap().starts_with("post"),
        "COMPLETE: no post"
    );
    assert!(
        crate::world::volumes::fs_of(&flt_write(&k).io.volumes[volume.0]).exists(r"\a.txt"),
        "the file system was not touched"
    );
    io.close(f);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

#[test]
fn normalized_names_are_canonical_opened_names_as_spelled_and_the_knob_fails_them() {
    for fail_normalized in [false, true] {
        let k = kernel(&IoConfig {
            fail_normalized_names: fail_normalized,
            ..IoConfig::default()
        });
        let filter = start(&k, 0);
        let volume = ntfs(&k);
        let f = io(&k).create(volume, r"\Dir", 2, 1, 0).expect("directory");
        io(&k).close(f);
        let f = io(&k)
            .create(volume, r"\dir\Report.TXT", 2, 0, 0)
            .expect("file");
        io(&k).close(f);
        on_pre(|data, _, _| {
            for format in [FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED] {
                match query_name(data, format) {
                    Ok(info) => {
                        log(format!("name {}", name_text(info)));
                        names::flt_release_file_name_information(info);
                    }
                    Err(status) => log(format!("name failed {status:#x}")),
                }
            }
            FLT_PREOP_SUCCESS_NO_CALLBACK
        });
        let f = io(&k)
            .create(volume, r"\DIR\report.txt", 1, 0, 0)
            .expect("opened");
        let names: Vec<String> = logged()
            .into_iter()
            .filter(|l| l.starts_with("name"))
            .collect();
        let normalized = if fail_normalized {
            "name failed 0xc000003a".to_owned()
        } else {
            format!(r"name {NTFS}\Dir\Report.TXT")
        };
        assert_eq!(names, [normalized, format!(r"name {NTFS}\DIR\report.txt")]);
        io(&k).close(f);
        SCRIPT.with(|s| *s.borrow_mut() = Script::default());
        unregister(&k, filter);
        assert!(k.violations().is_empty(), "{:?}", k.violations());
        let stats = flt_write(&k).io.stats.snapshot();
        assert_eq!(stats.names_acquired, stats.names_released);
    }
}

#[test]
fn a_name_released_twice_is_an_over_release_naming_it() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    only_for(IRP_MJ_CREATE);
    on_pre(|data, _, _| {
        if let Ok(info) = query_name(data, FLT_FILE_NAME_NORMALIZED) {
            names::flt_release_file_name_information(info);
            names::flt_release_file_name_information(info);
        }
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(ntfs(&k), r"\twice.txt", 2, 0, 0)
        .expect("created");
    io(&k).close(f);
    assert_eq!(kinds(&k), [ViolationKind::OverRelease]);
    assert!(
        k.violations()[0].message.contains(r"\twice.txt"),
        "{:?}",
        k.violations()
    );
}

#[test]
fn a_name_still_referenced_at_unregister_is_a_leak_naming_it() {
    let k = kernel(&IoConfig::default());
    let filter = start(&k, 0);
    only_for(IRP_MJ_CREATE);
    on_pre(|data, _, _| {
        let _ = query_name(data, FLT_FILE_NAME_OPENED);
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(ntfs(&k), r"\kept.txt", 2, 0, 0)
        .expect("created");
    io(&k).close(f);
    assert!(k.violations().is_empty());
    SCRIPT.with(|s| s.borrow_mut().pre = None);
    unregister(&k, filter);
    assert_eq!(kinds(&k), [ViolationKind::ReferenceLeak]);
    assert!(
        k.violations()[0].message.contains(r"\kept.txt"),
        "{:?}",
        k.violations()
    );
}

#[test]
fn a_name_query_at_dispatch_level_breaks_the_irql_rule() {
    let k = kernel(&IoConfig {
        post_ops_at_dispatch: true,
        ..IoConfig::default()
    });
    let _filter = start(&k, 0);
    on_post(|data, _, _| {
        log(format!(
            "query {:?}",
            query_name(data, FLT_FILE_NAME_NORMALIZED).err()
        ));
        FLT_POSTOP_FINISHED_PROCESSING
    });
    let io = io(&k);
    let f = io.create(ntfs(&k), r"\w.txt", 2, 0, 0).expect("created");
    assert!(
        k.violations().is_empty(),
        "post-create stays at PASSIVE_LEVEL"
    );
    assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
    assert!(
        logged().contains(&format!("post 0x4 at {DISPATCH_LEVEL}")),
        "{:?}",
        logged()
    );
    assert_eq!(kinds(&k), [ViolationKind::Irql]);
    assert!(
        k.violations()[0].rule.contains("FltGetFileNameInformation"),
        "{:?}",
        k.violations()
    );
    io.close(f);
}

#[test]
fn invalid_pre_statuses_and_stray_completion_contexts_are_reported() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    on_pre(|_, _, _| 42);
    let f = io(&k)
        .create(ntfs(&k), r"\s.txt", 2, 0, 0)
        .expect("the create goes on");
    assert_eq!(kinds(&k), [ViolationKind::CallbackStatus]);
    assert!(
        k.violations()[0].message.contains("0x2a"),
        "{:?}",
        k.violations()
    );
    on_pre(|_, _, completion| {
        guest::write(completion, 0x1234 as PVOID);
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    assert_eq!(io(&k).write(&f, 0, b"x"), STATUS_SUCCESS);
    assert_eq!(
        kinds(&k),
        [ViolationKind::CallbackStatus, ViolationKind::CallbackStatus]
    );
    assert!(
        k.violations()[1].rule.contains("completion context"),
        "{:?}",
        k.violations()
    );
    io(&k).close(f);
}

#[test]
fn a_callback_returning_at_a_raised_irql_breaks_its_contract() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    on_pre(|_, _, _| {
        state::with(|s| s.irql.set(APC_LEVEL));
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(ntfs(&k), r"\r.txt", 2, 0, 0)
        .expect("created");
    assert_eq!(kinds(&k), [ViolationKind::CallbackContract]);
    assert!(
        k.violations()[0].message.contains("PreCreate"),
        "{:?}",
        k.violations()
    );
    assert_eq!(
        state::current_irql(),
        0,
        "the test thread is back at PASSIVE_LEVEL"
    );
    SCRIPT.with(|s| s.borrow_mut().pre = None);
    io(&k).close(f);
}

/// Allocates a stream-handle context (the status is logged).
fn allocate(filter: PFLT_FILTER) -> PFLT_CONTEXT {
    let mut context: PFLT_CONTEXT = std::ptr::null_mut();
    let status = contexts::flt_allocate_context(
        filter,
        FLT_STREAMHANDLE_CONTEXT,
        CONTEXT_SIZE,
        NonPagedPoolNx,
        &raw mut context,
    );
    log(format!("allocate {status:#x}"));
    context
}

#[test]
fn stream_handle_contexts_follow_the_reference_rules_and_die_with_the_handle() {
    let k = kernel(&IoConfig::default());
    let filter = start(&k, 0);
    let filter_address = filter as usize;
    only_for(IRP_MJ_WRITE);
    on_pre(move |_, objects, _| {
        // No assertion in a callback (a panic cannot unwind through it): log, check outside.
        let objects = guest::read(objects);
        let filter = filter_address as PFLT_FILTER;
        let first = allocate(filter);
        // SAFETY: a fresh 24-byte context: not zeroed (poisoned).
        let byte = unsafe { first.cast::<u8>().read() };
        log(format!("poison {byte:#x}"));
        let set = |new, old: &mut PFLT_CONTEXT| {
            contexts::flt_set_stream_handle_context(
                objects.Instance,
                objects.FileObject,
                FLT_SET_CONTEXT_KEEP_IF_EXISTS,
                new,
                old,
            )
        };
        let mut old: PFLT_CONTEXT = std::ptr::null_mut();
        log(format!("set first {:#x}", set(first, &mut old)));
        let second = allocate(filter);
        log(format!("set second {:#x}", set(second, &mut old)));
        log(format!("old is first {}", old == first));
        contexts::flt_release_context(old);
        contexts::flt_release_context(second);
        let mut got: PFLT_CONTEXT = std::ptr::null_mut();
        let status = contexts::flt_get_stream_handle_context(
            objects.Instance,
            objects.FileObject,
            &raw mut got,
        );
        log(format!("get {status:#x} first {}", got == first));
        contexts::flt_release_context(got);
        contexts::flt_release_context(first);
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let io = io(&k);
    let f = io.create(ntfs(&k), r"\c.txt", 2, 0, 0).expect("created");
    assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
    SCRIPT.with(|s| s.borrow_mut().pre = None);
    let log = logged();
    for entry in [
        format!("poison {:#x}", crate::machine::pool::POOL_POISON),
        "set first 0x0".to_owned(),
        format!("set second {STATUS_FLT_CONTEXT_ALREADY_DEFINED:#x}"),
        "old is first true".to_owned(),
        "get 0x0 first true".to_owned(),
    ] {
        assert!(
            log.contains(&entry),
            "{entry}: {log:?} {:?}",
            k.violations()
        );
    }
    let cleanups = || {
        logged()
            .iter()
            .filter(|l| l.starts_with("context cleanup"))
            .count()
    };
    assert_eq!(cleanups(), 1, "the second context died at its last release");
    io.close(f);
    assert_eq!(cleanups(), 2, "the file object's reference went at close");
    unregister(&k, filter);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
    let stats = flt_write(&k).io.stats.snapshot();
    assert_eq!((stats.contexts_allocated, stats.contexts_freed), (2, 2));
}

#[test]
fn a_context_leaked_or_released_too_often_is_reported_with_type_tag_and_size() {
    let k = kernel(&IoConfig::default());
    let filter = start(&k, 0);
    let filter_address = filter as usize;
    only_for(IRP_MJ_CREATE);
    on_pre(move |_, _, _| {
        let filter = filter_address as PFLT_FILTER;
        let kept = allocate(filter);
        log(format!("kept {:#x}", kept as usize));
        let twice = allocate(filter);
        contexts::flt_release_context(twice);
        contexts::flt_release_context(twice);
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(ntfs(&k), r"\l.txt", 2, 0, 0)
        .expect("created");
    SCRIPT.with(|s| s.borrow_mut().pre = None);
    io(&k).close(f);
    assert_eq!(kinds(&k), [ViolationKind::OverRelease]);
    unregister(&k, filter);
    assert_eq!(
        kinds(&k),
        [ViolationKind::OverRelease, ViolationKind::ReferenceLeak]
    );
    for v in k.violations() {
        assert!(
            v.message
                .contains("stream-handle context (24 bytes, tag 'Tctx')"),
            "{}",
            v.message
        );
    }
    assert!(
        lock(&k.pool).drain_leaks().is_empty(),
        "the leaked context was freed after the report"
    );
}

#[test]
fn manual_detach_asks_and_tears_down_and_names_fail_by_injection() {
    let k = Kernel::new(
        SimConfig {
            faults: crate::faults::FaultPlan {
                // 1: FltRegisterFilter; 2: the name query.
                fail_nth: Some(2),
                random: None,
            },
            io: IoConfig {
                volumes: vec![(VolumeKind::Ntfs, NTFS.to_owned())],
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
    let _filter = start(&k, 0);
    only_for(IRP_MJ_CREATE);
    on_pre(|data, _, _| {
        log(format!(
            "query {:?}",
            query_name(data, FLT_FILE_NAME_OPENED).err()
        ));
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(ntfs(&k), r"\i.txt", 2, 0, 0)
        .expect("created");
    assert!(
        logged().contains(&format!("query {:?}", Some(STATUS_INSUFFICIENT_RESOURCES))),
        "{:?}",
        logged()
    );
    assert_eq!(k.faults.injected()[0].routine, "FltGetFileNameInformation");
    io(&k).close(f);
    assert_eq!(instances::detach(&k, ntfs(&k)), Ok(()));
    let log = logged();
    assert_eq!(
        log[log.len() - 3..],
        [
            "query teardown",
            "teardown start 0x1",
            "teardown complete 0x1"
        ]
    );
    let count = log.len();
    let f = io(&k)
        .create(ntfs(&k), r"\j.txt", 2, 0, 0)
        .expect("created");
    io(&k).close(f);
    assert_eq!(logged().len(), count, "no instance, no callbacks");
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

/// Starts a create on another thread and waits until it is held in the file system with its
/// post awaited; returns the thread (its status and its own callback log).
fn held_create(
    k: &Arc<Kernel>,
    hold: &FileSystemHold,
) -> std::thread::JoinHandle<(bool, Vec<String>)> {
    let requestor = io(k);
    let volume = ntfs(k);
    let thread = std::thread::spawn(move || {
        let created = requestor.create(volume, r"\held.txt", 2, 0, 0);
        let ok = created.is_ok();
        if let Ok(f) = created {
            requestor.close(f);
        }
        (ok, logged())
    });
    assert!(
        hold.wait_for_awaiting_posts(1, Duration::from_secs(10)),
        "held"
    );
    thread
}

#[test]
fn a_teardown_drains_awaited_posts_once_with_the_flag_at_apc_level_on_a_copy() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    let hold = FileSystemHold::new(Arc::clone(&k));
    let creator = held_create(&k, &hold);
    // The detach drains the create's post on this thread, before the file system has run it.
    assert_eq!(instances::detach(&k, ntfs(&k)), Ok(()));
    let log = logged();
    assert_eq!(
        log[log.len() - 5..],
        [
            "query teardown",
            "teardown start 0x1",
            "post 0x0 at 1",
            "draining 0x0 status 0x103",
            "teardown complete 0x1",
        ],
        "the post is drained at APC_LEVEL with STATUS_PENDING in the copy, between teardown \
         start and complete"
    );
    drop(hold);
    let (created, creator_log) = creator.join().expect("creator");
    assert!(created, "the I/O completes after the instance is gone");
    assert_eq!(
        creator_log,
        ["pre 0x0 at 0"],
        "the drained operation's post is not called again when its I/O completes"
    );
    assert_eq!(flt_write(&k).io.stats.snapshot().draining_posts, 1);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

/// A drained operation whose I/O completes while its draining post still runs keeps its
/// callback data, related objects and completion slot until that post returns: its I/O thread
/// waits (before, it freed them under the post, which then read freed memory: CI saw a filter
/// fault reading `Data->Iopb` in a draining post during a racing unload).
#[test]
fn a_drained_operation_outlives_its_draining_post() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    let hold = FileSystemHold::new(Arc::clone(&k));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requestor = io(&k);
    let volume = ntfs(&k);
    let creator = {
        let finished = Arc::clone(&finished);
        std::thread::spawn(move || {
            if let Ok(f) = requestor.create(volume, r"\held.txt", 2, 0, 0) {
                finished.store(true, std::sync::atomic::Ordering::SeqCst);
                requestor.close(f);
            }
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    assert!(hold.wait_for_awaiting_posts(1, Duration::from_secs(10)));
    // The draining post (on this thread) lets the I/O go on, gives it time to complete, then
    // reads its related objects.
    let mut hold = Some(hold);
    let seen = Arc::clone(&finished);
    on_post(move |_, objects, _| {
        drop(hold.take());
        std::thread::sleep(Duration::from_millis(100));
        let instance = guest::read(objects).Instance;
        log(format!(
            "draining post: I/O done {}, instance {}",
            seen.load(std::sync::atomic::Ordering::SeqCst),
            !instance.is_null()
        ));
        FLT_POSTOP_FINISHED_PROCESSING
    });
    assert_eq!(instances::detach(&k, ntfs(&k)), Ok(()));
    creator.join().expect("creator");
    assert!(
        logged().contains(&"draining post: I/O done false, instance true".to_owned()),
        "{:?}",
        logged()
    );
    assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

#[test]
fn normal_completion_processing_in_a_draining_post_is_reported() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    on_post(|data, _, _| {
        log(format!(
            "query {:?}",
            query_name(data, FLT_FILE_NAME_NORMALIZED).err()
        ));
        FLT_POSTOP_FINISHED_PROCESSING
    });
    let hold = FileSystemHold::new(Arc::clone(&k));
    let creator = held_create(&k, &hold);
    assert_eq!(instances::detach(&k, ntfs(&k)), Ok(()));
    drop(hold);
    creator.join().expect("creator");
    let violations = k.violations();
    assert_eq!(
        kinds(&k),
        [ViolationKind::CallbackContract],
        "{violations:?}"
    );
    assert!(
        violations[0].message.contains("FltGetFileNameInformation")
            && violations[0].rule.contains("FLTFL_POST_OPERATION_DRAINING"),
        "{violations:?}"
    );
}

/// Throughput of the dispatch path with a no-op filter (pre returns `SUCCESS_NO_CALLBACK`):
/// writes through one handle. Prints callbacks per second; run with
/// `cargo test --release -p vigil-kernel-sim --lib -- --ignored --nocapture no_op_throughput`.
#[test]
#[ignore = "a measurement, not a check"]
fn no_op_throughput() {
    for poison in [64 * 1024, 0] {
        let k = Kernel::new(
            SimConfig {
                stack_poison_len: poison,
                io: IoConfig {
                    volumes: vec![(VolumeKind::Ntfs, NTFS.to_owned())],
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
        let _filter = start(&k, 0);
        on_pre(|_, _, _| FLT_PREOP_SUCCESS_NO_CALLBACK);
        let io = io(&k);
        let f = io.create(ntfs(&k), r"\bench", 2, 0, 0).expect("created");
        let n = 200_000u32;
        let started = std::time::Instant::now();
        for i in 0..n {
            io.write(&f, u64::from(i), b"x");
        }
        let elapsed = started.elapsed();
        SCRIPT.with(|s| s.borrow_mut().log.clear());
        println!(
            "stack poison {poison} B: {n} writes in {elapsed:?}: {:.0} pre-callbacks/s",
            f64::from(n) / elapsed.as_secs_f64()
        );
        io.close(f);
    }
}

/// A kernel whose registry is `registry` (as an INF install leaves it) on `build`.
fn kernel_installed(
    registry: crate::config::Registry,
    build: crate::config::WindowsBuild,
) -> Arc<Kernel> {
    let k = Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(5),
            machine_registry: Some(registry),
            windows_build: build,
            io: IoConfig {
                volumes: vec![(VolumeKind::Ntfs, NTFS.to_owned())],
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

/// `FltRegisterFilter` with no operations and no contexts, with or without a
/// FilterUnloadCallback; its status and the filter.
fn register_minimal(k: &Kernel, with_unload: bool) -> (NTSTATUS, PFLT_FILTER) {
    let registration: &'static FLT_REGISTRATION = Box::leak(Box::new(FLT_REGISTRATION {
        Size: u16::try_from(size_of::<FLT_REGISTRATION>()).expect("small"),
        Version: FLT_REGISTRATION_VERSION,
        Flags: 0,
        ContextRegistration: std::ptr::null(),
        OperationRegistration: std::ptr::null(),
        FilterUnloadCallback: if with_unload { Some(unload) } else { None },
        InstanceSetupCallback: None,
        InstanceQueryTeardownCallback: None,
        InstanceTeardownStartCallback: None,
        InstanceTeardownCompleteCallback: None,
        GenerateFileNameCallback: std::ptr::null_mut(),
        NormalizeNameComponentCallback: std::ptr::null_mut(),
        NormalizeContextCleanupCallback: std::ptr::null_mut(),
        TransactionNotificationCallback: std::ptr::null_mut(),
        NormalizeNameComponentExCallback: std::ptr::null_mut(),
        SectionNotificationCallback: std::ptr::null_mut(),
    }));
    let driver_object = k.driver_object.as_ptr();
    k.call_driver("DriverEntry", Some(0), || {
        let mut filter: PFLT_FILTER = std::ptr::null_mut();
        let status =
            registration::flt_register_filter(driver_object, registration, &raw mut filter);
        if status == STATUS_SUCCESS {
            assert_eq!(registration::flt_start_filtering(filter), STATUS_SUCCESS);
        }
        (status, filter)
    })
    .expect("returned")
}

/// A registry with the service key and the instances under `parent` (relative to it).
fn registry_with_instances(parent: &str, flags: u32) -> crate::config::Registry {
    use crate::config::RegistryValue;
    let service = SimConfig::default().service_key_path();
    let instances = if parent.is_empty() {
        format!(r"{service}\Instances")
    } else {
        format!(r"{service}\{parent}\Instances")
    };
    let mut registry = crate::config::Registry::default();
    registry.create_key(&format!(r"{service}\Parameters"));
    registry.set_value(
        &instances,
        "DefaultInstance",
        RegistryValue::Sz("Test Instance".into()),
    );
    let instance = format!(r"{instances}\Test Instance");
    registry.set_value(&instance, "Altitude", RegistryValue::Sz("370000".into()));
    registry.set_value(&instance, "Flags", RegistryValue::Dword(flags));
    registry
}

#[test]
fn flt_register_filter_reads_the_instances_where_the_emulated_build_reads_them() {
    use crate::config::WindowsBuild;
    for build in [
        WindowsBuild::WIN10_2004,
        WindowsBuild::WIN11_22H2,
        WindowsBuild::WIN11_24H2,
    ] {
        for parent in ["", "Parameters"] {
            let k = kernel_installed(registry_with_instances(parent, 0), build);
            let (status, filter) = register_minimal(&k, true);
            let read_here = parent == build.instances_parent();
            if read_here {
                assert_eq!(
                    status, STATUS_SUCCESS,
                    "{build}, instances under {parent:?}"
                );
                assert!(
                    flt_write(&k).io.volumes[0].instance.is_some(),
                    "{build}: Flags 0 attaches automatically"
                );
                unregister(&k, filter);
            } else {
                assert_eq!(
                    status,
                    vigil_sys::STATUS_OBJECT_NAME_NOT_FOUND,
                    "{build}: instances under {parent:?} are not where this FltMgr reads them"
                );
            }
            assert!(k.violations().is_empty(), "{:#?}", k.violations());
        }
    }
}

#[test]
fn an_instance_with_flags_1_is_not_attached_automatically() {
    let build = crate::config::WindowsBuild::WIN11_24H2;
    let k = kernel_installed(registry_with_instances("Parameters", 1), build);
    let (status, filter) = register_minimal(&k, true);
    assert_eq!(status, STATUS_SUCCESS);
    assert!(flt_write(&k).io.volumes[0].instance.is_none());
    instances::attach_manual(&k, VolumeId(0), Some("test instance")).expect("manual attach");
    assert!(flt_write(&k).io.volumes[0].instance.is_some());
    unregister(&k, filter);
    assert!(k.violations().is_empty(), "{:#?}", k.violations());
}

#[test]
fn a_filter_without_an_unload_callback_cannot_be_unloaded() {
    let k = kernel(&IoConfig::default());
    let (status, filter) = register_minimal(&k, false);
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(
        crate::fltmgr::unload::run_unload_callback(&k, crate::config::UnloadKind::Optional),
        crate::kernel::RawUnload::NoCallback,
        "FltMgr cannot unload a filter that registered no FilterUnloadCallback"
    );
    assert!(
        flt_write(&k).any_registered(),
        "the filter stays registered"
    );
    unregister(&k, filter);
}

/// With all APCs disabled (APC_LEVEL) a name comes from Filter Manager's cache or not at all:
/// `STATUS_FLT_INVALID_NAME_REQUEST` before the file's name was ever queried, the name once a
/// query at PASSIVE_LEVEL cached it; a rename empties the cache again.
#[test]
fn with_all_apcs_disabled_names_come_from_the_cache_only() {
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    let query_at = |data, irql: u8| {
        let previous = crate::machine::state::current_irql();
        crate::machine::state::set_irql(irql);
        let result = query_name(data, FLT_FILE_NAME_NORMALIZED);
        crate::machine::state::set_irql(previous);
        match result {
            Ok(info) => {
                names::flt_release_file_name_information(info);
                "found".to_owned()
            }
            Err(status) => format!("{status:#x}"),
        }
    };
    only_for(vigil_sys::IRP_MJ_WRITE);
    on_pre(move |data, _, _| {
        log(format!("apc {}", query_at(data, APC_LEVEL)));
        log(format!("passive {}", query_at(data, 0)));
        log(format!("apc again {}", query_at(data, APC_LEVEL)));
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let io = io(&k);
    let f = io
        .create(ntfs(&k), r"\cache.txt", 2, 0, 0)
        .expect("created");
    assert_eq!(io.write(&f, 0, b"x"), STATUS_SUCCESS);
    let invalid = format!("{:#x}", names::STATUS_FLT_INVALID_NAME_REQUEST);
    let first = logged();
    assert!(
        first.contains(&format!("apc {invalid}"))
            && first.contains(&"passive found".to_owned())
            && first.contains(&"apc again found".to_owned()),
        "{first:?}"
    );
    assert_eq!(io.rename(&f, r"\renamed.txt", false), STATUS_SUCCESS);
    assert_eq!(io.write(&f, 1, b"y"), STATUS_SUCCESS);
    let after = logged();
    assert_eq!(
        after
            .iter()
            .filter(|l| **l == format!("apc {invalid}"))
            .count(),
        2,
        "the rename emptied the cache: {after:?}"
    );
    io.close(f);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

/// The name routines of issue 18 on their parameters: `FltParseFileNameInformation` parses in
/// place and refuses NULL and a released structure; `FltGetFileNameInformationUnsafe` reports a
/// NULL instance once the filter has one and a query after the file object's cleanup;
/// `FltCheckAndGrowNameControl` refuses a name control no provider callback was given and
/// `FltParseFileName` a NULL string.
#[test]
fn the_name_routines_check_their_structures_instances_and_places() {
    use crate::fltmgr::{name_parse, name_provider, name_unsafe};
    use vigil_sys::STATUS_INVALID_PARAMETER;
    let k = kernel(&IoConfig::default());
    let filter = start(&k, 0);
    let volume = ntfs(&k);
    only_for(IRP_MJ_WRITE);
    on_pre(|_, objects, _| {
        let objects = guest::read(objects);
        let mut info: PFLT_FILE_NAME_INFORMATION = std::ptr::null_mut();
        let status = name_unsafe::flt_get_file_name_information_unsafe(
            objects.FileObject,
            std::ptr::null_mut(),
            FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT,
            &raw mut info,
        );
        log(format!("unsafe {status:#x}"));
        if status != STATUS_SUCCESS {
            return FLT_PREOP_SUCCESS_NO_CALLBACK;
        }
        assert_eq!(name_parse::flt_parse_file_name_information(info), 0);
        let parsed: FLT_FILE_NAME_INFORMATION = guest::read(info);
        assert_eq!(parsed.NamesParsed, 0x000F);
        let final_bytes = guest::read_bytes(
            parsed.FinalComponent.Buffer.cast(),
            usize::from(parsed.FinalComponent.Length),
        );
        let units: Vec<u16> = final_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        log(format!("final {}", String::from_utf16_lossy(&units)));
        names::flt_release_file_name_information(info);
        // Released: parsing it again is a parameter violation.
        assert_eq!(
            name_parse::flt_parse_file_name_information(info),
            STATUS_INVALID_PARAMETER
        );
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(volume, r"\named.txt", 2, 0, 0)
        .expect("created");
    assert_eq!(io(&k).write(&f, 0, b"x"), 0);
    assert_eq!(io(&k).cleanup(&f), 0);
    let instance = {
        let flt = flt_write(&k);
        let v = &flt.io.volumes[volume.0];
        v.instance.as_ref().expect("attached").handle.address()
    };
    let object = f.file_object();
    k.call_driver("Test", Some(0), || {
        let mut info: PFLT_FILE_NAME_INFORMATION = std::ptr::null_mut();
        let status = name_unsafe::flt_get_file_name_information_unsafe(
            object as *mut _,
            instance as PVOID,
            FLT_FILE_NAME_OPENED | FLT_FILE_NAME_QUERY_DEFAULT,
            &raw mut info,
        );
        assert_eq!(status, STATUS_SUCCESS);
        names::flt_release_file_name_information(info);
    })
    .expect("returned");
    io(&k).close(f);
    let unsafe_log: Vec<String> = logged()
        .into_iter()
        .filter(|l| l.starts_with("unsafe") || l.starts_with("final"))
        .collect();
    SCRIPT.with(|s| *s.borrow_mut() = Script::default());
    let control = guest::GuestAlloc::zeroed(64);
    k.call_driver("Test", Some(0), || {
        assert_eq!(
            name_parse::flt_parse_file_name_information(std::ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            name_provider::flt_check_and_grow_name_control(control.as_ptr(), 64),
            STATUS_INVALID_PARAMETER
        );
        let null = std::ptr::null_mut();
        assert_eq!(
            name_parse::flt_parse_file_name(std::ptr::null(), null, null, null),
            STATUS_INVALID_PARAMETER
        );
    })
    .expect("returned");
    assert_eq!(unsafe_log, ["unsafe 0x0", "final named.txt"]);
    let rules: Vec<String> = k.violations().iter().map(|v| v.rule.clone()).collect();
    assert_eq!(rules.len(), 6, "{rules:#?}");
    for (rule, expected) in rules.iter().zip([
        "a NULL Instance only before the filter has an instance",
        "a FileNameInformation a name routine returned and not yet released",
        "not where a file-system name query can deadlock",
        "FltParseFileNameInformation: a FileNameInformation",
        "FltCheckAndGrowNameControl: a NameCtrl Filter Manager passed",
        "FltParseFileName: a FileName",
    ]) {
        assert!(rule.contains(expected), "{rule} / {expected}");
    }
    unregister(&k, filter);
}

/// The query methods and flags the name cache follows (`FltGetFileNameInformation`'s page and
/// the `FLT_FILE_NAME_OPTIONS` page): a file-system-only query and a do-not-cache query leave
/// nothing for a cache-only one, a default query does; with all APCs disabled a miss is
/// `STATUS_FLT_NAME_CACHE_MISS` for always-allow-cache-lookup and
/// `STATUS_FLT_INVALID_NAME_REQUEST` for the default method.
#[test]
fn name_query_methods_and_do_not_cache_follow_the_cache_rules() {
    use vigil_sys::{STATUS_FLT_INVALID_NAME_REQUEST, STATUS_FLT_NAME_CACHE_MISS};
    const CACHE_ONLY: u32 = 0x0200;
    const FILESYSTEM_ONLY: u32 = 0x0300;
    const ALWAYS_ALLOW_CACHE_LOOKUP: u32 = 0x0400;
    const DO_NOT_CACHE: u32 = 0x0200_0000;
    let k = kernel(&IoConfig::default());
    let filter = start(&k, 0);
    only_for(IRP_MJ_WRITE);
    on_pre(|data, _, _| {
        let ask = |options: u32| {
            let mut info: PFLT_FILE_NAME_INFORMATION = std::ptr::null_mut();
            let status = names::flt_get_file_name_information(
                data,
                FLT_FILE_NAME_NORMALIZED | options,
                &raw mut info,
            );
            if status == STATUS_SUCCESS {
                names::flt_release_file_name_information(info);
            }
            status
        };
        let statuses: Vec<NTSTATUS> = if state::current_irql() == 1 {
            vec![
                ask(ALWAYS_ALLOW_CACHE_LOOKUP),
                ask(FLT_FILE_NAME_QUERY_DEFAULT),
            ]
        } else {
            vec![
                ask(FILESYSTEM_ONLY),
                ask(CACHE_ONLY),
                ask(FLT_FILE_NAME_QUERY_DEFAULT | DO_NOT_CACHE),
                ask(CACHE_ONLY),
                ask(FLT_FILE_NAME_QUERY_DEFAULT),
                ask(CACHE_ONLY),
                ask(ALWAYS_ALLOW_CACHE_LOOKUP),
            ]
        };
        log(format!("statuses {statuses:x?}"));
        FLT_PREOP_SUCCESS_NO_CALLBACK
    });
    let f = io(&k)
        .create(ntfs(&k), r"\cached.txt", 2, 0, 0)
        .expect("created");
    let at_apc = WriteOptions {
        at_apc_level: true,
        ..WriteOptions::default()
    };
    assert_eq!(io(&k).write_with(&f, 0, b"a", at_apc), 0);
    assert_eq!(io(&k).write(&f, 0, b"b"), 0);
    io(&k).close(f);
    let statuses: Vec<String> = logged()
        .into_iter()
        .filter(|l| l.starts_with("statuses"))
        .collect();
    let (miss, invalid) = (STATUS_FLT_NAME_CACHE_MISS, STATUS_FLT_INVALID_NAME_REQUEST);
    assert_eq!(
        statuses,
        [
            format!("statuses {:x?}", [miss, invalid]),
            format!("statuses {:x?}", [0, miss, 0, miss, 0, 0, 0]),
        ]
    );
    SCRIPT.with(|s| *s.borrow_mut() = Script::default());
    unregister(&k, filter);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

/// A volume dismounted while the filter unregisters: the dismount's teardown is under way (held
/// in `InstanceTeardownStart`) when `FltUnregisterFilter` comes, which must not return, nor
/// report what the driver holds, before that teardown is done ("tears down all instances").
#[test]
fn unregistering_waits_for_a_dismount_teardown_under_way() {
    let k = kernel(&IoConfig::default());
    // The handle as an address: a raw pointer cannot cross to the unregistering thread.
    let filter = start(&k, 0) as usize;
    let volume = ntfs(&k);
    TEARDOWN_HOLD.set(1);
    let unregistered = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let dismounting = s.spawn(|| crate::world::volumes::dismount(&k, volume));
        TEARDOWN_HOLD.wait_for(2);
        let unregistering = s.spawn(|| {
            unregister(&k, filter as PFLT_FILTER);
            unregistered.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(100));
        let returned_early = unregistered.load(std::sync::atomic::Ordering::SeqCst);
        TEARDOWN_HOLD.set(3);
        dismounting.join().expect("dismount");
        unregistering.join().expect("unregister");
        TEARDOWN_HOLD.set(0);
        assert!(
            !returned_early,
            "FltUnregisterFilter returned while an instance was still being torn down"
        );
    });
    assert!(unregistered.load(std::sync::atomic::Ordering::SeqCst));
    assert!(k.violations().is_empty(), "{:#?}", k.violations());
}

/// A change notification on a directory is held by the file system until another thread
/// changes the directory: a create gives the name added, a rename in the directory the old and
/// the new name, a change of another kind (a directory for a file-name request) none, so the
/// handle's cleanup completes it. A buffer too small for the record completes with
/// `STATUS_NOTIFY_ENUM_DIR`, a request on a file fails.
#[test]
fn a_change_notification_completes_with_the_changes_made_meanwhile() {
    use crate::world::fs::notify::{
        FILE_ACTION_ADDED, FILE_ACTION_RENAMED_NEW_NAME, FILE_ACTION_RENAMED_OLD_NAME,
        FILE_NOTIFY_CHANGE_DIR_NAME, FILE_NOTIFY_CHANGE_FILE_NAME,
    };
    use crate::world::fs::{STATUS_NOTIFY_CLEANUP, STATUS_NOTIFY_ENUM_DIR};
    use crate::world::io::NotifyRecord;
    let k = kernel(&IoConfig::default());
    let _filter = start(&k, 0);
    let io = io(&k);
    let volume = ntfs(&k);
    let directory = |io: &Io| {
        io.create(volume, r"\w", 3, vigil_sys::FILE_DIRECTORY_FILE, 0)
            .expect("directory")
    };
    let create = |path: &'static str| {
        move |other: &Io| {
            let f = other.create(volume, path, 2, 0, 0).expect("created");
            other.cleanup(&f);
            other.close(f);
            true
        }
    };
    let record = |action, name: &str| NotifyRecord {
        action,
        name: name.to_owned(),
    };
    let d = directory(&io);
    assert_eq!(
        io.notify_change_directory(&d, 4096, FILE_NOTIFY_CHANGE_FILE_NAME, create(r"\w\a.txt")),
        Ok(vec![record(FILE_ACTION_ADDED, "a.txt")])
    );
    io.close(d);
    let d = directory(&io);
    let renamed = io.notify_change_directory(&d, 4096, FILE_NOTIFY_CHANGE_FILE_NAME, |other| {
        let f = other.create(volume, r"\w\a.txt", 1, 0, 0).expect("opened");
        assert_eq!(other.rename(&f, "b.txt", false), 0);
        other.cleanup(&f);
        other.close(f);
        true
    });
    assert_eq!(
        renamed,
        Ok(vec![
            record(FILE_ACTION_RENAMED_OLD_NAME, "a.txt"),
            record(FILE_ACTION_RENAMED_NEW_NAME, "b.txt")
        ])
    );
    io.close(d);
    let d = directory(&io);
    assert_eq!(
        io.notify_change_directory(&d, 4096, FILE_NOTIFY_CHANGE_DIR_NAME, create(r"\w\c.txt")),
        Err(STATUS_NOTIFY_CLEANUP)
    );
    io.close(d);
    let d = directory(&io);
    assert_eq!(
        io.notify_change_directory(&d, 8, FILE_NOTIFY_CHANGE_FILE_NAME, create(r"\w\d.txt")),
        Err(STATUS_NOTIFY_ENUM_DIR)
    );
    io.close(d);
    let f = io.create(volume, r"\w\b.txt", 1, 0, 0).expect("file");
    assert_eq!(
        io.notify_change_directory(&f, 4096, FILE_NOTIFY_CHANGE_FILE_NAME, |_| false),
        Err(vigil_sys::STATUS_INVALID_PARAMETER)
    );
    io.close(f);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}
