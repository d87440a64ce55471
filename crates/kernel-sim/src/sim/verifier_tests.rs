//! Driver-independent tests of the emulated routines and their checks: each test plays the
//! driver from Rust, calling the `extern "win64"` emulations inside a real driver call (on a
//! driver stack, with the thread-local state set), and asserts what the verifier records.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{
    KEVENT, LARGE_INTEGER, NotificationEvent, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES,
    POOL_FLAG_NON_PAGED, POOL_FLAG_RAISE_ON_FAILURE, POOL_FLAG_UNINITIALIZED,
    STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS,
    STATUS_TIMEOUT, SynchronizationEvent, UNICODE_STRING,
};

use crate::config::{RegistryValue, SimConfig};
use crate::faults::FaultPlan;
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::state::{self, ImageBounds};
use crate::ntoskrnl::{event, misc, pool, registry, sync, thread};
use crate::report::ViolationKind;

const TAG: u32 = u32::from_le_bytes(*b"Test");

fn kernel_with(config: SimConfig) -> Arc<Kernel> {
    let pause_at = config.pause_at;
    let k = Kernel::new(
        config,
        "test.sys".into(),
        ImageBounds::EMPTY,
        Vec::new(),
        Symbols::default(),
    );
    if let Some(point) = pause_at {
        k.pause
            .arm(crate::sim::exports::routine_named(point.routine));
    }
    k
}

fn kernel() -> Arc<Kernel> {
    kernel_with(SimConfig {
        hang_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    })
}

/// A kernel whose pool is `kind`.
fn kernel_with_pool(kind: crate::config::PoolKind) -> Arc<Kernel> {
    kernel_with(SimConfig {
        hang_timeout: Duration::from_secs(2),
        pool: kind,
        ..SimConfig::default()
    })
}

/// Both pools: the checks that do not depend on page protections hold in each.
const POOLS: [crate::config::PoolKind; 2] = [
    crate::config::PoolKind::Special,
    crate::config::PoolKind::Standard,
];

fn kinds(k: &Kernel) -> Vec<ViolationKind> {
    k.violations().iter().map(|v| v.kind).collect()
}

fn alloc(size: usize) -> *mut u8 {
    pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED, size, TAG).cast()
}

#[test]
fn pool_blocks_are_zeroed_or_poisoned_and_sixteen_byte_aligned() {
    for pool_kind in POOLS {
        pool_blocks_are_zeroed_or_poisoned_in(pool_kind);
    }
}

fn pool_blocks_are_zeroed_or_poisoned_in(pool_kind: crate::config::PoolKind) {
    let k = kernel_with_pool(pool_kind);
    k.call_driver("test", Some(0), || {
        let zeroed = alloc(40);
        let poisoned: *mut u8 =
            pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, 40, TAG).cast();
        assert_eq!(zeroed as usize % 16, 0);
        assert_eq!(poisoned as usize % 16, 0);
        // SAFETY: a live 40-byte block.
        let z = unsafe { std::slice::from_raw_parts(zeroed, 40) };
        // SAFETY: a live 40-byte block.
        let p = unsafe { std::slice::from_raw_parts(poisoned, 40) };
        assert!(z.iter().all(|&b| b == 0));
        assert!(p.iter().all(|&b| b == crate::machine::pool::POOL_POISON));
        pool::ex_free_pool_with_tag(zeroed.cast(), TAG);
        pool::ex_free_pool_with_tag(poisoned.cast(), TAG);
    })
    .expect("returned");
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

#[test]
fn double_free_wrong_tag_and_slack_writes_are_reported() {
    for pool_kind in POOLS {
        double_free_wrong_tag_and_slack_writes_in(pool_kind);
    }
}

fn double_free_wrong_tag_and_slack_writes_in(pool_kind: crate::config::PoolKind) {
    let k = kernel_with_pool(pool_kind);
    k.call_driver("test", Some(0), || {
        let a = alloc(10);
        pool::ex_free_pool_with_tag(a.cast(), TAG);
        pool::ex_free_pool_with_tag(a.cast(), TAG);
        let b = alloc(10);
        pool::ex_free_pool_with_tag(b.cast(), u32::from_le_bytes(*b"Oops"));
        let c = alloc(10);
        // SAFETY: byte 12 is in the block's 16-byte slot (slack before the guard page).
        unsafe { c.wrapping_add(12).write(1) };
        pool::ex_free_pool_with_tag(c.cast(), TAG);
    })
    .expect("returned");
    assert_eq!(
        kinds(&k),
        [
            ViolationKind::PoolDoubleFree,
            ViolationKind::PoolWrongTag,
            ViolationKind::PoolCorruption
        ]
    );
}

#[test]
fn an_overrun_into_the_guard_page_and_a_use_after_free_fault() {
    let k = kernel();
    let outcome = k.call_driver("test", Some(0), || {
        let a = alloc(16);
        // SAFETY: deliberately one byte past the block: the guard page faults and the call is
        // abandoned (this is what the test checks).
        unsafe { std::ptr::write_volatile(a.wrapping_add(16), 1) };
    });
    assert!(outcome.is_none());
    let v = k.violations();
    assert_eq!(v[0].kind, ViolationKind::Fault);
    assert!(
        v[0].message
            .contains("past the end of a 16-byte pool block tagged 'Test'"),
        "{}",
        v[0].message
    );

    let k = kernel();
    let outcome = k.call_driver("test", Some(0), || {
        let a = alloc(16);
        pool::ex_free_pool_with_tag(a.cast(), TAG);
        // SAFETY: deliberately reads freed pool: it faults (the check under test).
        unsafe { std::ptr::read_volatile(a) }
    });
    assert!(outcome.is_none());
    assert!(
        k.violations()[0].message.contains("use after free"),
        "{:?}",
        k.violations()
    );
}

#[test]
fn leaks_are_reported_by_tag() {
    for pool_kind in POOLS {
        let k = kernel_with_pool(pool_kind);
        k.call_driver("DriverEntry", Some(0), || {
            alloc(100);
            alloc(28);
        })
        .expect("returned");
        crate::sim::report_leaks(&k, "unload");
        let v = k.violations();
        assert_eq!(v.len(), 1, "{pool_kind:?}");
        assert_eq!(v[0].kind, ViolationKind::PoolLeak);
        assert!(
            v[0].message.contains("2 block(s), 128 bytes, tag 'Test'"),
            "{pool_kind:?}: {}",
            v[0].message
        );
    }
}

#[test]
fn the_standard_pool_reports_writes_just_outside_a_block_at_free() {
    // No guard page to fault on: the slack on either side stands in for it, checked at free.
    let k = kernel_with_pool(crate::config::PoolKind::Standard);
    k.call_driver("test", Some(0), || {
        let after = alloc(16);
        // SAFETY: one byte past the 16-byte block lies in its trailing slack (the check under
        // test), inside the allocation kernel-sim made.
        unsafe { std::ptr::write_volatile(after.wrapping_add(16), 1) };
        pool::ex_free_pool_with_tag(after.cast(), TAG);
        let before = alloc(16);
        // SAFETY: one byte before the block lies in its leading slack, likewise.
        unsafe { std::ptr::write_volatile(before.wrapping_sub(1), 1) };
        pool::ex_free_pool_with_tag(before.cast(), TAG);
        let clean = alloc(16);
        // SAFETY: the block's own last byte.
        unsafe { std::ptr::write_volatile(clean.wrapping_add(15), 1) };
        pool::ex_free_pool_with_tag(clean.cast(), TAG);
    })
    .expect("returned");
    let v = k.violations();
    assert_eq!(
        kinds(&k),
        [ViolationKind::PoolCorruption, ViolationKind::PoolCorruption],
        "{v:?}"
    );
    assert!(
        v[0].message
            .contains("0 byte(s) before and 1 byte(s) after"),
        "{}",
        v[0].message
    );
    assert!(
        v[1].message
            .contains("1 byte(s) before and 0 byte(s) after"),
        "{}",
        v[1].message
    );
}

#[test]
fn must_succeed_allocations_and_failures_by_injection() {
    let k = kernel_with(SimConfig {
        faults: FaultPlan {
            fail_nth: Some(2),
            random: None,
        },
        ..SimConfig::default()
    });
    k.call_driver("test", Some(0), || {
        let first =
            pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 8, TAG);
        assert!(!first.is_null());
        assert!(alloc(8).is_null(), "the second failable call fails");
        pool::ex_free_pool_with_tag(first, TAG);
    })
    .expect("returned");
    assert_eq!(kinds(&k), [ViolationKind::PoolFlags]);
    assert_eq!(k.faults.calls(), 2);
    assert_eq!(k.faults.injected()[0].routine, "ExAllocatePool2");
}

#[expect(
    clippy::unnecessary_box_returns,
    reason = "a KEVENT must not move once initialized: its wait list points into itself"
)]
fn new_event(kind: i32, signalled: bool) -> Box<KEVENT> {
    // SAFETY: KEVENT is plain data; zero is valid before initialization.
    let mut e: Box<KEVENT> = Box::new(unsafe { std::mem::zeroed() });
    event::ke_initialize_event(&raw mut *e, kind, u8::from(signalled));
    e
}

#[test]
fn waits_follow_the_kernel_timeout_semantics() {
    let k = kernel();
    k.call_driver("test", Some(0), || {
        let mut notification = new_event(NotificationEvent, false);
        let wait = |e: &mut KEVENT, timeout: Option<LARGE_INTEGER>| {
            let mut t = timeout.unwrap_or(0);
            let pointer = if timeout.is_some() {
                &raw mut t
            } else {
                std::ptr::null_mut()
            };
            event::ke_wait_for_single_object((&raw mut *e).cast::<c_void>(), 0, 0, 0, pointer)
        };
        assert_eq!(
            wait(&mut notification, Some(0)),
            STATUS_TIMEOUT,
            "zero = poll"
        );
        assert_eq!(
            wait(&mut notification, Some(-10_000)),
            STATUS_TIMEOUT,
            "relative 1 ms"
        );
        let past = event::system_time_100ns() - 1;
        assert_eq!(
            wait(&mut notification, Some(past)),
            STATUS_TIMEOUT,
            "absolute, already past"
        );
        assert_eq!(event::ke_set_event(&raw mut *notification, 0, 0), 0);
        assert_eq!(wait(&mut notification, Some(0)), STATUS_SUCCESS);
        assert_eq!(
            wait(&mut notification, Some(0)),
            STATUS_SUCCESS,
            "a notification event stays set"
        );
        assert_eq!(event::ke_read_state_event(&raw mut *notification), 1);
        event::ke_clear_event(&raw mut *notification);
        assert_eq!(event::ke_read_state_event(&raw mut *notification), 0);
        let mut synchronization = new_event(SynchronizationEvent, true);
        assert_eq!(
            wait(&mut synchronization, None),
            STATUS_SUCCESS,
            "NULL = forever (flagged)"
        );
        assert_eq!(
            wait(&mut synchronization, Some(0)),
            STATUS_TIMEOUT,
            "a synchronization event auto-resets"
        );
    })
    .expect("returned");
    assert_eq!(
        kinds(&k),
        [ViolationKind::Policy],
        "only the NULL timeout: {:?}",
        k.violations()
    );
}

#[test]
fn irql_rules_and_callback_contracts_are_checked() {
    let k = kernel();
    k.call_driver("callback", Some(0), || {
        let mut lock: usize = 0;
        let old = sync::ke_acquire_spin_lock_raise_to_dpc(&raw mut lock);
        assert_eq!((old, state::current_irql()), (0, 2));
        let mut e = new_event(NotificationEvent, true);
        let mut t: LARGE_INTEGER = -1;
        // A non-zero-timeout wait at DISPATCH_LEVEL breaks KeWaitForSingleObject's rule.
        event::ke_wait_for_single_object((&raw mut *e).cast(), 0, 0, 0, &raw mut t);
        sync::ke_release_spin_lock(&raw mut lock, old);
        assert_eq!((lock, state::current_irql()), (0, 0));
        sync::ke_enter_critical_region();
        state::set_irql(1);
    })
    .expect("returned");
    assert_eq!(
        kinds(&k),
        [
            ViolationKind::Irql,
            ViolationKind::CallbackContract,
            ViolationKind::CallbackContract
        ]
    );
    assert!(
        k.violations()[0]
            .rule
            .contains("KeWaitForSingleObject: IRQL <= APC_LEVEL"),
        "{:?}",
        k.violations()
    );
}

#[test]
fn a_recursive_spin_lock_and_an_uninitialized_event_are_caught() {
    let k = kernel();
    let outcome = k.call_driver("test", Some(0), || {
        // SAFETY: KEVENT is plain data; never initialized on purpose.
        let mut raw: KEVENT = unsafe { std::mem::zeroed() };
        event::ke_set_event(&raw mut raw, 0, 0);
        let mut lock: usize = 0;
        sync::ke_acquire_spin_lock_raise_to_dpc(&raw mut lock);
        sync::ke_acquire_spin_lock_raise_to_dpc(&raw mut lock);
    });
    assert!(outcome.is_none(), "the deadlock abandons the call");
    assert_eq!(
        kinds(&k),
        [ViolationKind::Parameter, ViolationKind::Deadlock]
    );
    assert_eq!(
        state::current_irql(),
        0,
        "the IRQL is restored after an abandoned call"
    );
}

#[test]
fn a_bug_check_is_fatal_and_names_its_code() {
    let k = kernel();
    assert!(
        k.call_driver("test", Some(0), || misc::ke_bug_check_ex(
            0xE056_474C,
            1,
            2,
            3,
            4
        ))
        .is_none()
    );
    let v = k.violations();
    assert_eq!(v[0].kind, ViolationKind::BugCheck);
    assert!(
        v[0].message.contains("0xe056474c (0x1, 0x2, 0x3, 0x4)"),
        "{}",
        v[0].message
    );
}

extern "win64" fn exiting_thread(context: *mut c_void) {
    // SAFETY: the test passes a pointer to a live AtomicBool.
    unsafe { &*context.cast::<std::sync::atomic::AtomicBool>() }
        .store(true, std::sync::atomic::Ordering::Release);
    thread::ps_terminate_system_thread(0);
}

#[test]
fn system_threads_handles_and_references() {
    let k = kernel();
    let ran = std::sync::atomic::AtomicBool::new(false);
    k.call_driver("DriverEntry", Some(0), || {
        let mut handle: *mut c_void = std::ptr::null_mut();
        let context = (&raw const ran).cast_mut().cast::<c_void>();
        // NULL attributes: the handle would land in an arbitrary process (rule 16).
        let status = thread::ps_create_system_thread(
            &raw mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(exiting_thread),
            context,
        );
        assert_eq!(status, STATUS_SUCCESS);
        let mut object: *mut c_void = std::ptr::null_mut();
        // No type: rule 17.
        assert_eq!(
            thread::ob_reference_object_by_handle(
                handle,
                0,
                std::ptr::null_mut(),
                0,
                &raw mut object,
                std::ptr::null_mut()
            ),
            STATUS_SUCCESS
        );
        thread::obf_dereference_object(object);
        let thread_type = crate::ntoskrnl::exports::thread_object_type() as *mut c_void;
        assert_eq!(
            thread::ob_reference_object_by_handle(
                handle,
                0,
                thread_type,
                0,
                &raw mut object,
                std::ptr::null_mut()
            ),
            STATUS_SUCCESS
        );
        let mut timeout: LARGE_INTEGER = -10_000_000;
        assert_eq!(
            event::ke_wait_for_single_object(object, 0, 0, 0, &raw mut timeout),
            STATUS_SUCCESS,
            "the thread object is signalled"
        );
        thread::obf_dereference_object(object);
        assert_eq!(thread::zw_close(handle), STATUS_SUCCESS);
        assert_ne!(thread::zw_close(handle), STATUS_SUCCESS, "closed twice");
    })
    .expect("returned");
    assert!(ran.load(std::sync::atomic::Ordering::Acquire));
    assert_eq!(
        kinds(&k),
        [
            ViolationKind::Parameter,
            ViolationKind::Parameter,
            ViolationKind::InvalidHandle
        ]
    );
    let rules: Vec<String> = k.violations().iter().map(|v| v.rule.clone()).collect();
    assert!(
        rules[0].contains("RULES.md 16") && rules[1].contains("RULES.md 17"),
        "{rules:?}"
    );
}

fn unicode(text: &str) -> (UNICODE_STRING, Vec<u16>) {
    let mut units: Vec<u16> = text.encode_utf16().collect();
    let length = u16::try_from(units.len() * 2).expect("short");
    (
        UNICODE_STRING {
            Length: length,
            MaximumLength: length,
            Buffer: units.as_mut_ptr(),
        },
        units,
    )
}

#[test]
fn registry_queries_follow_the_buffer_size_rules() {
    let config = SimConfig {
        registry: vec![
            ("Mode".into(), RegistryValue::Sz("fail-open".into())),
            ("Limit".into(), RegistryValue::Dword(7)),
        ],
        ..SimConfig::default()
    };
    let path = format!("{}\\Parameters", config.service_key_path());
    let k = kernel_with(config);
    k.call_driver("DriverEntry", Some(0), || {
        let (mut name, _keep) = unicode(&path);
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: u32::try_from(size_of::<OBJECT_ATTRIBUTES>()).expect("small"),
            RootDirectory: std::ptr::null_mut(),
            ObjectName: &raw mut name,
            Attributes: OBJ_KERNEL_HANDLE,
            SecurityDescriptor: std::ptr::null_mut(),
            SecurityQualityOfService: std::ptr::null_mut(),
        };
        let mut key: *mut c_void = std::ptr::null_mut();
        assert_eq!(
            registry::zw_open_key(&raw mut key, 0, &raw mut attributes),
            STATUS_SUCCESS
        );
        let mut buffer = [0u8; 64];
        let query = |value: &str, len: u32, buffer: &mut [u8; 64], needed: &mut u32| {
            let (mut name, _keep) = unicode(value);
            registry::zw_query_value_key(
                key,
                &raw mut name,
                2,
                buffer.as_mut_ptr().cast(),
                len,
                needed,
            )
        };
        let mut needed = 0u32;
        assert_eq!(
            query("Mode", 8, &mut buffer, &mut needed),
            STATUS_BUFFER_TOO_SMALL
        );
        assert_eq!(
            needed,
            12 + 20,
            "fixed part + \"fail-open\" and its NUL in UTF-16"
        );
        assert_eq!(
            query("Mode", 16, &mut buffer, &mut needed),
            STATUS_BUFFER_OVERFLOW
        );
        assert_eq!(
            &buffer[4..12],
            &[1, 0, 0, 0, 20, 0, 0, 0],
            "REG_SZ, 20 bytes: the fixed part is written"
        );
        assert_eq!(
            query("limit", 64, &mut buffer, &mut needed),
            STATUS_SUCCESS,
            "names are case-insensitive"
        );
        assert_eq!(&buffer[4..16], &[4, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(
            query("Absent", 64, &mut buffer, &mut needed),
            STATUS_OBJECT_NAME_NOT_FOUND
        );
        attributes.Attributes = 0;
        let mut second: *mut c_void = std::ptr::null_mut();
        assert_eq!(
            registry::zw_open_key(&raw mut second, 0, &raw mut attributes),
            STATUS_SUCCESS
        );
        thread::zw_close(key);
        thread::zw_close(second);
    })
    .expect("returned");
    assert_eq!(
        kinds(&k),
        [ViolationKind::Parameter],
        "the open without OBJ_KERNEL_HANDLE: {:?}",
        k.violations()
    );
}

#[test]
fn the_driver_stack_is_poisoned_before_each_call() {
    let k = kernel();
    let below = k
        .call_driver("test", Some(0), || {
            let marker = 0u8;
            let address = (&raw const marker) as usize;
            // SAFETY: 4 KiB below a live local, inside the poisoned region of the driver stack
            // (64 KiB poisoned, 128 KiB mapped); nothing has written there during this call.
            unsafe { std::ptr::read_volatile((address - 4096) as *const [u8; 64]) }
        })
        .expect("returned");
    assert!(
        below
            .iter()
            .all(|&b| b == crate::machine::switch::STACK_POISON),
        "{below:?}"
    );
}

#[test]
fn a_held_call_goes_on_when_released_and_is_reported_if_never_released() {
    let held = crate::config::PausePoint {
        routine: "ExAllocatePool2",
        callback: "test",
    };
    let k = kernel_with(SimConfig {
        pause_at: Some(held),
        hang_timeout: Duration::from_secs(10),
        ..SimConfig::default()
    });
    let observer = crate::kernel::pause::Observer::new(Arc::clone(&k));
    let releaser = std::thread::spawn({
        let observer = observer.clone();
        move || {
            assert!(observer.wait_until_paused(Duration::from_secs(10)));
            observer.release();
        }
    });
    k.call_driver("test", Some(0), || {
        let block = alloc(8);
        pool::ex_free_pool_with_tag(block.cast(), TAG);
    })
    .expect("returned");
    releaser.join().unwrap();
    assert!(k.violations().is_empty(), "{:?}", k.violations());

    // Nobody releases it: the call goes on after the hang limit, reported.
    let k = kernel_with(SimConfig {
        pause_at: Some(held),
        hang_timeout: Duration::from_millis(50),
        ..SimConfig::default()
    });
    k.call_driver("test", Some(0), || {
        let block = alloc(8);
        pool::ex_free_pool_with_tag(block.cast(), TAG);
    })
    .expect("returned");
    let v = k.violations();
    assert_eq!(kinds(&k), [ViolationKind::Internal], "{v:?}");
    assert!(
        v[0].message
            .contains("never released ExAllocatePool2 held in test"),
        "{}",
        v[0].message
    );
}

/// Polls `condition` for up to ten seconds (a test's own deadline for another thread's step).
fn eventually(condition: impl Fn() -> bool) -> bool {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < give_up {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn a_queued_exclusive_waiter_holds_back_new_shared_acquirers() {
    use crate::fltmgr::pushlock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let k = kernel();
    let push_lock: &'static mut vigil_sys::EX_PUSH_LOCK = Box::leak(Box::new(0));
    let address = std::ptr::from_mut(push_lock) as usize;
    let at = move || address as *mut vigil_sys::EX_PUSH_LOCK;
    k.call_driver("test", Some(0), || pushlock::flt_initialize_push_lock(at()))
        .expect("returned");
    // The first reader holds the lock until told to let go (a send in flight).
    let let_go = Arc::new(AtomicBool::new(false));
    let order = Arc::new(AtomicUsize::new(0));
    let (writer_turn, reader_turn) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let first_reader = std::thread::spawn({
        let (k, let_go) = (Arc::clone(&k), Arc::clone(&let_go));
        move || {
            k.call_driver("first reader", Some(0), || {
                pushlock::flt_acquire_push_lock_shared(at());
                while !let_go.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                pushlock::flt_release_push_lock(at());
            })
        }
    });
    assert!(eventually(|| !first_reader.is_finished()));
    std::thread::sleep(Duration::from_millis(20));
    let writer = std::thread::spawn({
        let (k, order, turn) = (Arc::clone(&k), Arc::clone(&order), Arc::clone(&writer_turn));
        move || {
            k.call_driver("writer", Some(0), || {
                pushlock::flt_acquire_push_lock_exclusive(at());
                turn.store(order.fetch_add(1, Ordering::AcqRel) + 1, Ordering::Release);
                pushlock::flt_release_push_lock(at());
            })
        }
    });
    assert!(eventually(|| pushlock::exclusive_waiters(&k, address) == 1));
    let late_reader = std::thread::spawn({
        let (k, order, turn) = (Arc::clone(&k), Arc::clone(&order), Arc::clone(&reader_turn));
        move || {
            k.call_driver("late reader", Some(0), || {
                pushlock::flt_acquire_push_lock_shared(at());
                turn.store(order.fetch_add(1, Ordering::AcqRel) + 1, Ordering::Release);
                pushlock::flt_release_push_lock(at());
            })
        }
    });
    // The late reader is not let past the queued writer while the first reader holds on.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        reader_turn.load(Ordering::Acquire),
        0,
        "a shared acquirer went past a queued exclusive waiter"
    );
    let_go.store(true, Ordering::Release);
    for thread in [first_reader, writer, late_reader] {
        thread.join().unwrap().expect("returned");
    }
    assert_eq!(
        (
            writer_turn.load(Ordering::Acquire),
            reader_turn.load(Ordering::Acquire)
        ),
        (1, 2),
        "the writer first, then the late reader"
    );
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

#[test]
fn recursive_push_lock_acquires_are_reported_as_documented() {
    use crate::fltmgr::pushlock;
    // Shared again while holding it shared, with no writer waiting: granted (documented).
    let k = kernel();
    let mut push_lock: vigil_sys::EX_PUSH_LOCK = 0;
    let at = &raw mut push_lock;
    k.call_driver("test", Some(0), || {
        pushlock::flt_initialize_push_lock(at);
        pushlock::flt_acquire_push_lock_shared(at);
        pushlock::flt_acquire_push_lock_shared(at);
        pushlock::flt_release_push_lock(at);
        pushlock::flt_release_push_lock(at);
        pushlock::flt_delete_push_lock(at);
    })
    .expect("returned");
    assert!(k.violations().is_empty(), "{:?}", k.violations());
    // Exclusive while holding it shared: the thread hangs on Windows, a deadlock here.
    for second_exclusive in [true, false] {
        let k = kernel();
        let outcome = k.call_driver("test", Some(0), || {
            pushlock::flt_initialize_push_lock(at);
            pushlock::flt_acquire_push_lock_exclusive(at);
            if second_exclusive {
                pushlock::flt_acquire_push_lock_exclusive(at);
            } else {
                pushlock::flt_acquire_push_lock_shared(at);
            }
        });
        assert!(outcome.is_none(), "the deadlock abandons the call");
        assert_eq!(kinds(&k), [ViolationKind::Deadlock]);
    }
}

#[test]
fn suspension_reaches_an_application_thread_only_where_normal_kernel_apcs_are_enabled() {
    use std::sync::atomic::Ordering;
    let k = kernel_with(SimConfig {
        hang_timeout: Duration::from_secs(2),
        suspend: Some(crate::config::SuspendPlan {
            rate: 1.0,
            seed: 7,
            max_delay: Duration::from_millis(1),
            never_share: 0.0,
            only_at: None,
        }),
        ..SimConfig::default()
    });
    let count = || k.suspensions.count.load(Ordering::Relaxed);
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            state::mark_application_thread();
            k.call_driver("PreCreate", Some(0), || {
                // Inside a critical region (and at its entry and exit boundaries while in it):
                // no normal kernel APC, no suspension, and all APCs are not disabled either.
                sync::ke_enter_critical_region();
                let inside = count();
                assert_eq!(sync::ke_are_apcs_disabled(), 1);
                assert_eq!(sync::ke_are_all_apcs_disabled(), 0);
                assert_eq!(count(), inside, "suspended inside a critical region");
                // Leaving it: its exit boundary is at PASSIVE_LEVEL with APCs enabled.
                sync::ke_leave_critical_region();
                assert!(count() > inside, "not suspended once APCs are enabled");
                let mut irql = 0u8;
                let mut lock = 0usize;
                irql = sync::ke_acquire_spin_lock_raise_to_dpc(&raw mut lock).max(irql);
                let raised = count();
                assert_eq!(sync::ke_are_all_apcs_disabled(), 1);
                assert_eq!(count(), raised, "suspended at DISPATCH_LEVEL");
                sync::ke_release_spin_lock(&raw mut lock, irql);
                assert!(
                    count() > raised,
                    "the release's exit boundary is at PASSIVE_LEVEL"
                );
            })
        })
        .join()
        .unwrap()
    });
    assert!(outcome.is_some());
    // A thread that is not an application's is never suspended.
    let before = count();
    k.call_driver("PreCreate", Some(0), || {
        let _ = sync::ke_are_apcs_disabled();
    })
    .expect("returned");
    assert_eq!(count(), before);
    assert!(k.violations().is_empty(), "{:?}", k.violations());
}

#[test]
fn system_threads_start_inside_a_critical_region() {
    unsafe extern "win64" fn start(context: *mut c_void) {
        // SAFETY: the test passes a live AtomicU32 that outlives the thread (it waits on it).
        let seen = unsafe { &*context.cast::<std::sync::atomic::AtomicU32>() };
        seen.store(
            u32::from(sync::ke_are_apcs_disabled()),
            std::sync::atomic::Ordering::Release,
        );
    }
    let k = kernel();
    let seen = Arc::new(std::sync::atomic::AtomicU32::new(u32::MAX));
    k.call_driver("test", Some(0), || {
        let mut handle: vigil_sys::HANDLE = std::ptr::null_mut();
        let status = thread::ps_create_system_thread(
            &raw mut handle,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            Some(start),
            Arc::as_ptr(&seen).cast_mut().cast(),
        );
        assert_eq!(status, STATUS_SUCCESS);
        let mut timeout = -50_000_000i64;
        let _ = thread::zw_wait_for_single_object(handle, 0, &raw mut timeout);
        let _ = thread::zw_close(handle);
    })
    .expect("returned");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::Acquire),
        1,
        "normal kernel APCs are disabled as the thread starts"
    );
}

#[test]
fn a_zero_pool_tag_fails_the_allocation() {
    let k = kernel();
    k.call_driver("test", Some(0), || {
        let block = pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED, 16, 0);
        assert!(block.is_null(), "ExAllocatePool2 returns NULL for Tag 0");
    })
    .expect("returned");
    assert_eq!(kinds(&k), [ViolationKind::Parameter]);
}
