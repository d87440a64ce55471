//! The process-notify emulation against its reference page, played from Rust inside a driver
//! call: `STATUS_ACCESS_DENIED` for a routine outside an image with `FORCE_INTEGRITY`,
//! `STATUS_INVALID_PARAMETER` for a second registration and for removing a routine that is not
//! registered, the system's limit as an injected failure, and a routine left registered reported
//! when the driver is gone.

use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{STATUS_ACCESS_DENIED, STATUS_INVALID_PARAMETER, STATUS_SUCCESS};

use crate::config::SimConfig;
use crate::faults::FaultPlan;
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::state;
use crate::machine::state::ImageBounds;
use crate::ntoskrnl::process_notify::{
    call_routine, create_process, ps_set_create_process_notify_routine_ex,
    report_registered_at_unload,
};
use crate::report::ViolationKind;

/// The routine type the registration takes (without its `Option`).
type NotifyFn = unsafe extern "win64" fn(
    vigil_sys::PEPROCESS,
    vigil_sys::HANDLE,
    *mut vigil_sys::PS_CREATE_NOTIFY_INFO,
);

/// A fake image: PE headers only, with `DllCharacteristics` as given (`e_lfanew` 0x80).
struct FakeImage(Vec<u64>);

impl FakeImage {
    fn new(characteristics: u16) -> Self {
        let mut words = vec![0u64; 512];
        // SAFETY: 4 KiB of plain integers viewed as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4096) };
        bytes[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        let at = 0x80 + 4 + 20 + 70;
        bytes[at..at + 2].copy_from_slice(&characteristics.to_le_bytes());
        Self(words)
    }

    fn bounds(&self) -> ImageBounds {
        ImageBounds {
            base: self.0.as_ptr() as usize,
            size: 4096,
            ..ImageBounds::EMPTY
        }
    }

    /// A "routine" inside the image (never called by these tests).
    fn routine(&self, offset: usize) -> NotifyFn {
        let address = self.bounds().base + offset;
        // SAFETY: a non-null address, only compared and stored by the emulation, never called.
        unsafe { std::mem::transmute::<usize, NotifyFn>(address) }
    }
}

fn kernel(image: &FakeImage, faults: FaultPlan) -> Arc<Kernel> {
    Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(2),
            faults,
            ..SimConfig::default()
        },
        "test.sys".into(),
        image.bounds(),
        Vec::new(),
        Symbols::default(),
    )
}

#[test]
fn registration_follows_the_documented_statuses() {
    let image = FakeImage::new(vigil_sys::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY);
    let k = kernel(&image, FaultPlan::default());
    let routine = Some(image.routine(0x200));
    let statuses = k
        .call_driver("test", Some(0), || {
            [
                ps_set_create_process_notify_routine_ex(routine, 0),
                ps_set_create_process_notify_routine_ex(routine, 0),
                ps_set_create_process_notify_routine_ex(Some(image.routine(0x300)), 1),
                ps_set_create_process_notify_routine_ex(routine, 1),
                ps_set_create_process_notify_routine_ex(routine, 1),
            ]
        })
        .expect("returned");
    assert_eq!(
        statuses,
        [
            STATUS_SUCCESS,
            STATUS_INVALID_PARAMETER,
            STATUS_INVALID_PARAMETER,
            STATUS_SUCCESS,
            STATUS_INVALID_PARAMETER,
        ]
    );
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

#[test]
fn an_image_without_force_integrity_is_refused() {
    let image = FakeImage::new(0);
    let k = kernel(&image, FaultPlan::default());
    let status = k
        .call_driver("test", Some(0), || {
            ps_set_create_process_notify_routine_ex(Some(image.routine(0x200)), 0)
        })
        .expect("returned");
    assert_eq!(status, STATUS_ACCESS_DENIED);
}

#[test]
fn the_systems_limit_is_an_injected_failure() {
    let image = FakeImage::new(vigil_sys::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY);
    let k = kernel(
        &image,
        FaultPlan {
            fail_nth: Some(1),
            random: None,
        },
    );
    let status = k
        .call_driver("test", Some(0), || {
            ps_set_create_process_notify_routine_ex(Some(image.routine(0x200)), 0)
        })
        .expect("returned");
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    assert_eq!(k.faults.injected().len(), 1);
}

#[test]
fn registration_above_passive_level_and_a_routine_left_registered_are_reported() {
    let image = FakeImage::new(vigil_sys::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY);
    let k = kernel(&image, FaultPlan::default());
    let _ = k.call_driver("test", Some(1), || {
        ps_set_create_process_notify_routine_ex(Some(image.routine(0x200)), 0)
    });
    report_registered_at_unload(&k, "unload");
    let kinds: Vec<ViolationKind> = k.violations().iter().map(|v| v.kind).collect();
    assert_eq!(kinds, [ViolationKind::Irql, ViolationKind::ResourceLeak]);
    assert!(
        k.violations()[1]
            .message
            .contains("still registered in the unloaded image"),
        "{:?}",
        k.violations()
    );
}

/// What [`records_its_context`] saw: the IRQL and the thread's critical-region depth.
static SEEN: std::sync::Mutex<Option<(u8, u32)>> = std::sync::Mutex::new(None);

unsafe extern "win64" fn records_its_context(
    _process: vigil_sys::PEPROCESS,
    _pid: vigil_sys::HANDLE,
    _info: *mut vigil_sys::PS_CREATE_NOTIFY_INFO,
) {
    let seen = state::with(|s| (s.irql.get(), s.critical_regions.get()));
    *SEEN.lock().unwrap() = Some(seen);
}

/// The reference page: the routine runs at PASSIVE_LEVEL inside a critical region. Without
/// the region kernel-sim would let a routine that needs APCs enabled pass, which Windows does
/// not; the depth is restored after the call.
#[test]
fn a_notify_routine_runs_at_passive_level_in_a_critical_region() {
    let image = FakeImage::new(vigil_sys::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY);
    let k = kernel(&image, FaultPlan::default());
    let routine: NotifyFn = records_its_context;
    crate::kernel::lock(&k.processes)
        .notify_routines
        .push(routine as usize);
    call_routine(&k, routine as usize, 4, 4, std::ptr::null_mut());
    assert_eq!(*SEEN.lock().unwrap(), Some((vigil_sys::PASSIVE_LEVEL, 1)));
    assert_eq!(state::with(|s| s.critical_regions.get()), 0);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

/// What [`records_creates_and_exits`] saw, in order: (pid, created).
static CALLS: std::sync::Mutex<Vec<(usize, bool)>> = std::sync::Mutex::new(Vec::new());

unsafe extern "win64" fn records_creates_and_exits(
    _process: vigil_sys::PEPROCESS,
    pid: vigil_sys::HANDLE,
    info: *mut vigil_sys::PS_CREATE_NOTIFY_INFO,
) {
    CALLS.lock().unwrap().push((pid.addr(), !info.is_null()));
}

unsafe extern "win64" fn refuses_every_creation(
    _process: vigil_sys::PEPROCESS,
    _pid: vigil_sys::HANDLE,
    info: *mut vigil_sys::PS_CREATE_NOTIFY_INFO,
) {
    if !info.is_null() {
        // SAFETY: the notification's PS_CREATE_NOTIFY_INFO, valid for the call.
        unsafe { (*info).CreationStatus = STATUS_ACCESS_DENIED };
    }
}

/// A creation one routine refuses fails with its status, and every routine (the one that saw
/// the creation included) then sees the process exit: its initial thread existed and is
/// destroyed. The pid is free again afterwards.
#[test]
fn a_refused_creation_is_followed_by_its_exit_notification() {
    let image = FakeImage::new(vigil_sys::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY);
    let k = kernel(&image, FaultPlan::default());
    {
        let recorder: NotifyFn = records_creates_and_exits;
        let refuser: NotifyFn = refuses_every_creation;
        let mut processes = crate::kernel::lock(&k.processes);
        processes.notify_routines.push(recorder as usize);
        processes.notify_routines.push(refuser as usize);
    }
    let spec = crate::kernel::processes::SimProcess {
        pid: 7340,
        parent_pid: 4,
        image: r"\Device\HarddiskVolume1\refused.exe".to_owned(),
        admin: false,
        user_sid: crate::kernel::processes::sid_bytes(false, 1001),
        session_id: 1,
        start_key: 0,
        exit_status: None,
    };
    assert_eq!(create_process(&k, spec), Err(STATUS_ACCESS_DENIED));
    assert_eq!(*CALLS.lock().unwrap(), [(7340, true), (7340, false)]);
    assert!(!crate::kernel::lock(&k.processes).is_live(&k.config, 7340));
}

/// The kernel the next [`removes_the_second_routine`] call acts on, and that routine.
static REMOVAL: std::sync::Mutex<Option<(Arc<Kernel>, usize)>> = std::sync::Mutex::new(None);
/// Calls of [`must_not_run_once_removed`].
static REMOVED_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe extern "win64" fn removes_the_second_routine(
    _process: vigil_sys::PEPROCESS,
    _pid: vigil_sys::HANDLE,
    _info: *mut vigil_sys::PS_CREATE_NOTIFY_INFO,
) {
    // What a removal does between the notifier's listing of the routines and its call of
    // the second one: take it off the list (and, with nothing in flight, return at once).
    if let Some((k, second)) = REMOVAL.lock().unwrap().take() {
        crate::kernel::lock(&k.processes)
            .notify_routines
            .retain(|&r| r != second);
    }
}

unsafe extern "win64" fn must_not_run_once_removed(
    _process: vigil_sys::PEPROCESS,
    _pid: vigil_sys::HANDLE,
    _info: *mut vigil_sys::PS_CREATE_NOTIFY_INFO,
) {
    REMOVED_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// A routine removed after a notification listed the routines is not called by it: its
/// removal found nothing in flight and returned, so its driver may already be gone (a
/// 1,000-cycle scenario run found a call into an unloaded vigil.sys this way).
#[test]
fn a_routine_removed_after_the_listing_is_not_called() {
    let image = FakeImage::new(vigil_sys::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY);
    let k = kernel(&image, FaultPlan::default());
    let first: NotifyFn = removes_the_second_routine;
    let second: NotifyFn = must_not_run_once_removed;
    {
        let mut processes = crate::kernel::lock(&k.processes);
        processes.notify_routines.push(first as usize);
        processes.notify_routines.push(second as usize);
    }
    *REMOVAL.lock().unwrap() = Some((Arc::clone(&k), second as usize));
    let spec = crate::kernel::processes::SimProcess {
        pid: 7350,
        parent_pid: 4,
        image: r"\Device\HarddiskVolume1\late.exe".to_owned(),
        admin: false,
        user_sid: crate::kernel::processes::sid_bytes(false, 1001),
        session_id: 1,
        start_key: 0,
        exit_status: None,
    };
    assert!(create_process(&k, spec).is_ok());
    assert_eq!(REMOVED_CALLS.load(std::sync::atomic::Ordering::SeqCst), 0);
}
