//! Driver-independent tests of the cancel-safe queue routines and the cancel of pended
//! operations (`fltmgr::cbdq`): a queue written in Rust (its six routines are `extern "win64"`
//! functions over a thread-local list) on a live instance, driven from inside driver calls,
//! for the paths the C filter `queue.c` seldom or never takes: a disabled queue, a remove by
//! context that loses to a cancel, a non-IRP operation, a cancel routine set
//! and cleared, and an operation completed while still queued.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK, FLT_OPERATION_REGISTRATION, FLT_PREOP_COMPLETE,
    FLT_REGISTRATION, FLT_REGISTRATION_VERSION, FLTFL_CALLBACK_DATA_IRP_OPERATION,
    IRP_MJ_OPERATION_END, IRP_PAGING_IO, NTSTATUS, PFLT_FILTER, PFLT_INSTANCE, PVOID,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::config::{IoConfig, SimConfig, VolumeKind};
use crate::fltmgr::cbdq::{self, STATUS_CANCELLED, STATUS_FLT_CBDQ_DISABLED};
use crate::fltmgr::{flt_write, pending, registration};
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::state::ImageBounds;

thread_local! {
    /// The test queue's items, and what its routines were asked to do.
    static QUEUE: RefCell<(Vec<usize>, Vec<String>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn note(entry: String) {
    QUEUE.with(|q| q.borrow_mut().1.push(entry));
}

fn notes() -> Vec<String> {
    QUEUE.with(|q| std::mem::take(&mut q.borrow_mut().1))
}

unsafe extern "win64" fn insert(_cbdq: PVOID, data: PVOID, _context: PVOID) -> NTSTATUS {
    QUEUE.with(|q| q.borrow_mut().0.push(data as usize));
    STATUS_SUCCESS
}

unsafe extern "win64" fn remove(_cbdq: PVOID, data: PVOID) {
    note(format!("remove {}", data as usize));
    QUEUE.with(|q| q.borrow_mut().0.retain(|&d| d != data as usize));
}

unsafe extern "win64" fn peek(_cbdq: PVOID, after: PVOID, _context: PVOID) -> PVOID {
    QUEUE.with(|q| {
        let items = &q.borrow().0;
        let next = if after.is_null() {
            items.first()
        } else {
            items
                .iter()
                .position(|&d| d == after as usize)
                .and_then(|i| items.get(i + 1))
        };
        next.map_or(std::ptr::null_mut(), |&d| d as PVOID)
    })
}

unsafe extern "win64" fn acquire(_cbdq: PVOID, _irql: *mut u8) {
    note("acquire".to_owned());
}

unsafe extern "win64" fn release(_cbdq: PVOID, _irql: u8) {
    note("release".to_owned());
}

unsafe extern "win64" fn complete_canceled(_cbdq: PVOID, data: PVOID) {
    note(format!("complete canceled {}", data as usize));
}

unsafe extern "win64" fn canceled_routine(data: PVOID) {
    note(format!("cancel routine {}", data as usize));
}

unsafe extern "win64" fn unload(_flags: u32) -> NTSTATUS {
    STATUS_SUCCESS
}

/// A run with one NTFS volume and a filter attached to it; its instance.
fn instance() -> (Arc<Kernel>, PFLT_INSTANCE) {
    let k = Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(5),
            io: IoConfig {
                volumes: vec![(VolumeKind::Ntfs, r"\Device\HarddiskVolume1".to_owned())],
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
    let operations: &'static [FLT_OPERATION_REGISTRATION] =
        Box::leak(Box::new([FLT_OPERATION_REGISTRATION {
            MajorFunction: IRP_MJ_OPERATION_END,
            Flags: 0,
            PreOperation: None,
            PostOperation: None,
            Reserved1: std::ptr::null_mut(),
        }]));
    let registration: &'static FLT_REGISTRATION = Box::leak(Box::new(FLT_REGISTRATION {
        Size: u16::try_from(size_of::<FLT_REGISTRATION>()).expect("small"),
        Version: FLT_REGISTRATION_VERSION,
        Flags: 0,
        ContextRegistration: std::ptr::null(),
        OperationRegistration: operations.as_ptr(),
        FilterUnloadCallback: Some(unload),
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
        assert_eq!(
            registration::flt_register_filter(driver_object, registration, &raw mut filter),
            STATUS_SUCCESS
        );
        assert_eq!(registration::flt_start_filtering(filter), STATUS_SUCCESS);
    })
    .expect("returned");
    let instance = flt_write(&k).io.volumes[0]
        .instance
        .as_ref()
        .map(|i| i.handle.address())
        .expect("attached");
    (k, instance as PFLT_INSTANCE)
}

/// A callback data in host memory: an IRP-based operation, optionally paging I/O.
fn operation(paging: bool) -> (Box<FLT_CALLBACK_DATA>, Box<FLT_IO_PARAMETER_BLOCK>) {
    // SAFETY: both are plain C structures of integers and pointers; all zeros is valid.
    let mut iopb: Box<FLT_IO_PARAMETER_BLOCK> = Box::new(unsafe { std::mem::zeroed() });
    iopb.IrpFlags = if paging { IRP_PAGING_IO } else { 0 };
    // SAFETY: as above.
    let mut data: Box<FLT_CALLBACK_DATA> = Box::new(unsafe { std::mem::zeroed() });
    data.Flags = FLTFL_CALLBACK_DATA_IRP_OPERATION;
    data.Iopb = &raw mut *iopb;
    (data, iopb)
}

fn rules(k: &Kernel) -> Vec<String> {
    k.violations().into_iter().map(|v| v.rule).collect()
}

#[test]
fn a_queue_refuses_when_disabled_and_a_remove_loses_to_a_cancel() {
    let (k, instance) = instance();
    let mut cbdq = [0u64; 16];
    let q: PVOID = cbdq.as_mut_ptr().cast();
    let (mut one, _iopb1) = operation(false);
    let (mut two, _iopb2) = operation(false);
    let (a, b) = (&raw mut *one, &raw mut *two);
    let mut context_a = [0u64; 3];
    let ctx_a: PVOID = context_a.as_mut_ptr().cast();
    k.call_driver("test", Some(0), || {
        assert_eq!(
            cbdq::flt_cbdq_initialize(
                instance,
                q,
                insert as *const () as PVOID,
                remove as *const () as PVOID,
                peek as *const () as PVOID,
                acquire as *const () as PVOID,
                release as *const () as PVOID,
                complete_canceled as *const () as PVOID,
            ),
            STATUS_SUCCESS
        );
        cbdq::flt_cbdq_disable(q);
        assert_eq!(
            cbdq::flt_cbdq_insert_io(q, a, ctx_a, std::ptr::null_mut()),
            STATUS_FLT_CBDQ_DISABLED
        );
        cbdq::flt_cbdq_enable(q);
        assert_eq!(
            cbdq::flt_cbdq_insert_io(q, a, ctx_a, std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        assert_eq!(
            cbdq::flt_cbdq_insert_io(q, b, std::ptr::null_mut(), std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        // The IO context names the operation.
        assert_eq!(context_a[1], a as u64);
    })
    .expect("returned");
    notes();
    // The requestor of `a` cancels it: removed under the lock, CompleteCanceledIo called.
    cbdq::cancel_pended(&k, a as usize);
    assert_eq!(
        notes(),
        [
            "acquire",
            &format!("remove {}", a as usize),
            "release",
            &format!("complete canceled {}", a as usize)
        ]
    );
    k.call_driver("test", Some(0), || {
        // Already taken by the cancel: the remove by context gets NULL.
        assert!(cbdq::flt_cbdq_remove_io(q, ctx_a).is_null());
        // The next is `b`, then nothing.
        assert_eq!(
            cbdq::flt_cbdq_remove_next_io(q, std::ptr::null_mut()),
            b.cast()
        );
        assert!(cbdq::flt_cbdq_remove_next_io(q, std::ptr::null_mut()).is_null());
    })
    .expect("returned");
    // `b` canceled while no queue holds it (only marked); inserted afterwards, it is handed to
    // CompleteCanceledIo at once and never stays queued.
    cbdq::cancel_pended(&k, b as usize);
    assert!(cbdq::is_canceled(&k, b as usize));
    notes();
    k.call_driver("test", Some(0), || {
        assert_eq!(
            cbdq::flt_cbdq_insert_io(q, b, std::ptr::null_mut(), std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        assert!(cbdq::flt_cbdq_remove_next_io(q, std::ptr::null_mut()).is_null());
        // A non-IRP operation is refused.
        two.Flags = 0;
        assert_eq!(
            cbdq::flt_cbdq_insert_io(q, b, std::ptr::null_mut(), std::ptr::null_mut()),
            STATUS_INVALID_PARAMETER
        );
    })
    .expect("returned");
    assert_eq!(notes(), canceled_before_insert(b as usize));
    assert_eq!(
        rules(&k),
        ["FltCbdqInsertIo: the callback data of an IRP-based operation (FLT_IS_IRP_OPERATION)"]
    );
}

/// What the queue's routines did for the insert of an operation canceled beforehand.
fn canceled_before_insert(b: usize) -> Vec<String> {
    vec![
        "acquire".to_owned(),
        format!("remove {b}"),
        "release".to_owned(),
        format!("complete canceled {b}"),
        "acquire".to_owned(),
        "release".to_owned(),
    ]
}

#[test]
fn a_cancel_routine_runs_once_unless_cleared_and_not_for_paging_io() {
    let (k, _instance) = instance();
    let (mut one, _iopb1) = operation(false);
    let (mut paging, _iopb2) = operation(true);
    let (a, p) = (&raw mut *one, &raw mut *paging);
    let routine = canceled_routine as *const () as PVOID;
    k.call_driver("test", Some(0), || {
        // No routine yet: clearing answers STATUS_CANCELLED.
        assert_eq!(cbdq::flt_clear_cancel_completion(a), STATUS_CANCELLED);
        assert_eq!(cbdq::flt_set_cancel_completion(a, routine), STATUS_SUCCESS);
        assert_eq!(cbdq::flt_clear_cancel_completion(a), STATUS_SUCCESS);
        assert_eq!(cbdq::flt_set_cancel_completion(a, routine), STATUS_SUCCESS);
        assert_eq!(
            cbdq::flt_set_cancel_completion(p, routine),
            STATUS_INVALID_PARAMETER
        );
    })
    .expect("returned");
    notes();
    cbdq::cancel_pended(&k, a as usize);
    // Canceled again: nothing more runs.
    cbdq::cancel_pended(&k, a as usize);
    assert_eq!(notes(), [format!("cancel routine {}", a as usize)]);
    k.call_driver("test", Some(0), || {
        // The cancel has run: clearing answers STATUS_CANCELLED, setting too.
        assert_eq!(cbdq::flt_clear_cancel_completion(a), STATUS_CANCELLED);
        assert_eq!(
            cbdq::flt_set_cancel_completion(a, routine),
            STATUS_CANCELLED
        );
    })
    .expect("returned");
    assert_eq!(
        rules(&k),
        [
            "FltSetCancelCompletion: the callback data of an IRP-based, non-paging operation and a CanceledCallback"
        ]
    );
}

#[test]
fn completing_an_operation_still_in_its_queue_is_reported() {
    let (k, instance) = instance();
    let mut cbdq = [0u64; 16];
    let q: PVOID = cbdq.as_mut_ptr().cast();
    let (mut one, _iopb) = operation(false);
    let a = &raw mut *one;
    k.call_driver("test", Some(0), || {
        cbdq::flt_cbdq_initialize(
            instance,
            q,
            insert as *const () as PVOID,
            remove as *const () as PVOID,
            peek as *const () as PVOID,
            acquire as *const () as PVOID,
            release as *const () as PVOID,
            complete_canceled as *const () as PVOID,
        );
        assert_eq!(
            cbdq::flt_cbdq_insert_io(q, a, std::ptr::null_mut(), std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        pending::flt_complete_pended_pre_operation(a, FLT_PREOP_COMPLETE, std::ptr::null_mut());
    })
    .expect("returned");
    let found = rules(&k);
    assert_eq!(
        found.first().map(String::as_str),
        Some(
            "FltCompletePendedPreOperation: an operation in a callback data queue is removed (FltCbdqRemoveIo / FltCbdqRemoveNextIo) before it is completed"
        ),
        "{found:?}"
    );
}
