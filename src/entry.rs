//! DriverEntry and FilterUnload: the load/unload contract of DESIGN.md ("Lifecycle"), on top of
//! `vigil_core::UnloadGate`. Runs in the kernel at PASSIVE_LEVEL.
//!
//! DriverEntry does every internal setup first and registers with the Filter Manager last.
//! FilterUnload waits for DriverEntry to have completed (the gate's entry-complete KEVENT) and
//! really returned (the device object's `DO_DEVICE_INITIALIZING` bit), then for callbacks in
//! flight, before it touches any state (RULES.md, rules 1 and 2).
//!
//! The waits and the policy on refusing an unload are `vigil_core::UnloadGate::unload`, the
//! function the loom models check: a *non-mandatory* unload is refused
//! (`STATUS_FLT_DO_NOT_DETACH`) only when one of those bounded waits expires, i.e. the driver
//! cannot be torn down safely yet; nothing has been closed at that point. A *mandatory* unload is
//! never refused: it keeps waiting, in bounded slices, for conditions that DriverEntry and the
//! callbacks reach in bounded time (every wait they make has a finite timeout).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use vigil_core::{
    EntryWait, GateGuard, Timeout, UnloadBounds, UnloadDecision, UnloadGate, UnloadKind,
};
use vigil_protocol::PORT_NAME_UTF16;
use vigil_sys::{
    DRIVER_OBJECT, FLT_REGISTRATION, FLT_REGISTRATION_VERSION, FLTFL_FILTER_UNLOAD_MANDATORY,
    NTSTATUS, STATUS_FLT_DO_NOT_DETACH, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::callbacks::{OPERATIONS, instance};
use crate::config::{DriverConfig, Setting, names};
use crate::error::{Result, status_of};
use crate::filter::context;
use crate::filter::port::{PortCallbacks, ServerPort, close_client_port};
use crate::filter::registration::{RegisteredFilter, StaticRegistration, StaticTable};
use crate::globals::{Globals, GlobalsBox};
use crate::kernel::once::StaticInPlace;
use crate::kernel::process_notify::NotifyRegistration;
use crate::kernel::registry::ParametersKey;
use crate::platform::KernelPlatform;
use crate::twins::{self, Twin};

/// The unload gate: entry-complete event and callback rundown. A static (image memory is
/// non-paged) built at the top of DriverEntry, so it exists before FltMgr can call unload and
/// outlives a DriverEntry that fails while an unload waits on it.
static GATE: StaticInPlace<UnloadGate<KernelPlatform>> = StaticInPlace::new();

/// How DriverEntry ended; read after the gate's entry-complete event.
static ENTRY_OUTCOME: AtomicU8 = AtomicU8::new(EntryOutcome::Running as u8);

/// The driver's state, published before registration.
static GLOBALS: AtomicPtr<Globals> = AtomicPtr::new(ptr::null_mut());

#[repr(u8)]
enum EntryOutcome {
    Running = 0,
    Succeeded = 1,
    Failed = 2,
}

/// Policy: the bounds of one slice of unload's waits. For DriverEntry, the core's defaults (30 s
/// for the event, 5 s of polls for `DO_DEVICE_INITIALIZING`); for callbacks in flight, 15 s: a
/// verdict wait is at most 10 s (`VERDICT_TIMEOUT_MS_RANGE`), so one slice covers any of them.
const UNLOAD_BOUNDS: UnloadBounds = UnloadBounds {
    entry: EntryWait::DEFAULT,
    callbacks: const_timeout(15_000),
};

const fn const_timeout(ms: u32) -> Timeout {
    match Timeout::from_millis(ms) {
        Some(timeout) => timeout,
        None => panic!("policy timeouts are in range"),
    }
}

static CONTEXTS: StaticTable<[vigil_sys::FLT_CONTEXT_REGISTRATION; 3]> =
    StaticTable(context::REGISTRATION);

/// `sizeof(FLT_REGISTRATION)` as the structure's `USHORT Size` field wants it.
const REGISTRATION_SIZE: u16 = {
    assert!(size_of::<FLT_REGISTRATION>() <= u16::MAX as usize);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked by the assertion above"
    )]
    let size = size_of::<FLT_REGISTRATION>() as u16;
    size
};

static REGISTRATION: StaticRegistration = StaticTable(FLT_REGISTRATION {
    Size: REGISTRATION_SIZE,
    Version: FLT_REGISTRATION_VERSION,
    Flags: 0,
    ContextRegistration: CONTEXTS.0.as_ptr(),
    OperationRegistration: OPERATIONS.0.as_ptr(),
    FilterUnloadCallback: Some(filter_unload),
    InstanceSetupCallback: Some(instance::instance_setup),
    InstanceQueryTeardownCallback: Some(instance::instance_query_teardown),
    InstanceTeardownStartCallback: None,
    InstanceTeardownCompleteCallback: Some(instance::instance_teardown_complete),
    GenerateFileNameCallback: ptr::null_mut(),
    NormalizeNameComponentCallback: ptr::null_mut(),
    NormalizeContextCleanupCallback: ptr::null_mut(),
    TransactionNotificationCallback: ptr::null_mut(),
    NormalizeNameComponentExCallback: ptr::null_mut(),
    SectionNotificationCallback: ptr::null_mut(),
});

/// A callback's access to the driver's state, shaped like Rust-for-Linux's `Revocable`:
/// [`try_access`] hands one out while the unload gate admits callbacks, and every reference to
/// the state borrows from it (`Deref`), so the admission lasts at least as long as any use of the
/// state. It cannot end early through a pattern that drops its guard, as `(globals, ..)` once
/// did: the guard and the state are one value.
///
/// # Invariants
///
/// `globals` is the published `Globals`, kept alive by `guard` (the teardown frees them only
/// after the gate's rundown has waited for every guard). `guard` is `None` only in the
/// `unadmitted-callback` broken twin after [`Admission::twin_end_admission`].
#[must_use = "the callback is admitted only while the admission lives"]
pub struct Admission<'gate> {
    globals: NonNull<Globals>,
    /// Held for its drop, which ends the admission.
    guard: Option<GateGuard<'gate, KernelPlatform>>,
}

impl core::ops::Deref for Admission<'_> {
    type Target = Globals;
    fn deref(&self) -> &Globals {
        // SAFETY: alive while the guard is held (invariant), and the borrow ends with `self`.
        unsafe { self.globals.as_ref() }
    }
}

impl Admission<'_> {
    /// `twin-unadmitted-callback`: ends the admission at once while the callback goes on using
    /// the state (unload may then tear down under it).
    pub fn twin_end_admission(&mut self) {
        drop(self.guard.take());
    }
}

/// Admits a callback: access to the globals, or `None` once unload has begun (or before
/// DriverEntry published them). IRQL <= DISPATCH_LEVEL.
pub fn try_access() -> Option<Admission<'static>> {
    let guard = GATE.get()?.try_enter()?;
    let globals = NonNull::new(GLOBALS.load(Ordering::Acquire))?;
    Some(Admission {
        globals,
        guard: Some(guard),
    })
}

/// The globals for callbacks that must run even during unload (disconnect, instance teardown):
/// FltMgr calls them before `FltUnregisterFilter` returns, and the globals are freed only after.
pub fn globals_for_teardown() -> Option<&'static Globals> {
    // SAFETY: as above: freed only after FltUnregisterFilter, which drains these callbacks.
    unsafe { GLOBALS.load(Ordering::Acquire).as_ref() }
}

/// The driver's entry point, called by the I/O manager at PASSIVE_LEVEL.
///
/// # Safety
///
/// Called only by the I/O manager, once per load, with a valid driver object and registry path.
#[unsafe(no_mangle)]
pub unsafe extern "win64" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    let build_gate = |slot| {
        // SAFETY: `slot` is the static's storage, valid and never moved.
        unsafe { UnloadGate::init_in_place(slot) }
    };
    // SAFETY: first thing in DriverEntry: no other thread can reach the gate yet.
    let gate = unsafe { GATE.init(build_gate) };
    // SAFETY: the I/O manager's arguments (contract).
    let result = unsafe { load(driver, registry_path) };
    #[cfg(feature = "wdk")]
    if let Err(error) = &result {
        crate::wdk_runtime::report_entry_failure(error.code());
    }
    let outcome = if result.is_ok() {
        EntryOutcome::Succeeded
    } else {
        EntryOutcome::Failed
    };
    ENTRY_OUTCOME.store(outcome as u8, Ordering::Release);
    gate.signal_entry_complete();
    status_of(|| result)
}

/// Steps 1-5 of the contract. On failure everything done is undone in reverse.
///
/// # Safety
///
/// DriverEntry's arguments.
unsafe fn load(driver: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> Result {
    // 1. Configuration (the key stays open until the prefixes are read into the globals).
    // SAFETY: DriverEntry's registry path.
    let mut key = unsafe { ParametersKey::open(registry_path) }?;
    let config = read_config(key.as_mut());
    // 2-3. Globals (ring, buffers, counters) and the device object.
    // SAFETY: DriverEntry's driver object.
    let globals = unsafe { Globals::create(driver, &config) }?;
    if let Some(key) = key.as_mut() {
        read_prefixes(key, &globals);
        key.string(&crate::config::names::SERVICE_IMAGE, |image| {
            globals.identity.configure(image);
        });
    }
    drop(key);
    // 4. The delivery thread.
    // SAFETY: the globals hold the delivery block and outlive the thread: every path that frees
    // them (teardown) first stops the thread and waits on its object; once, before publication.
    unsafe { globals.delivery.start(&globals) }?;
    GLOBALS.store(globals.as_ptr(), Ordering::Release);
    // 4b. The process-notify routine: internal setup too (its notifications find the globals
    // published), before Filter Manager registration; the teardown removes it first.
    match NotifyRegistration::register(crate::process::process_notify) {
        // SAFETY: DriverEntry is the only writer before completion (Globals invariant).
        Ok(notify) => unsafe { globals.registration_mut() }.process_notify = Some(notify),
        Err(error) => {
            // SAFETY: DriverEntry has not signalled completion: no teardown runs concurrently.
            unsafe { teardown(globals) };
            return Err(error);
        }
    }
    // 5. Registration, last.
    // SAFETY: DriverEntry's driver object.
    if let Err(error) = unsafe { register(driver, &globals) } {
        // SAFETY: DriverEntry has not signalled completion: no teardown runs concurrently.
        unsafe { teardown(globals) };
        return Err(error);
    }
    crate::twins::after_load();
    // Ownership passes to GLOBALS; FilterUnload takes it back.
    let _ = globals.into_raw();
    Ok(())
}

/// The DWORD settings of the Parameters key (if any); absent values keep their defaults,
/// out-of-range ones are ignored (documented in `crate::config`).
fn read_config(key: Option<&mut ParametersKey>) -> DriverConfig {
    let mut config = DriverConfig::DEFAULT;
    if let Some(key) = key {
        for (setting, name) in Setting::ALL {
            if let Some(value) = key.dword(name) {
                let _ = config.apply(setting, value);
            }
        }
    }
    config
}

/// The protected prefixes of the Parameters key, straight into the globals' list. A prefix
/// beyond the limit, or malformed, is ignored like any out-of-range value.
fn read_prefixes(key: &mut ParametersKey, globals: &Globals) {
    let _ = globals.prefixes.replace(|list| {
        key.multi_string(&names::PROTECTED_PREFIXES, |prefix| {
            let _ = list.push_units(prefix, crate::protection::fold);
        });
        Ok::<(), ()>(())
    });
}

/// FltRegisterFilter, then the port (it needs the filter handle), then start filtering.
///
/// # Safety
///
/// DriverEntry's driver object; `globals` not yet handed to the teardown.
unsafe fn register(driver: *mut DRIVER_OBJECT, globals: &Globals) -> Result {
    // SAFETY: DriverEntry's driver object (contract).
    let filter = unsafe { RegisteredFilter::register(driver, &REGISTRATION) }?;
    globals.set_filter_handle(filter.handle());
    // SAFETY: DriverEntry is the only writer before completion (Globals invariant).
    let registration = unsafe { globals.registration_mut() };
    let filter = registration.filter.insert(filter);
    let callbacks = PortCallbacks {
        connect: Some(crate::port::connect),
        disconnect: Some(crate::port::disconnect),
        message: Some(crate::port::message),
    };
    registration.server_port = Some(ServerPort::create(
        filter,
        &PORT_NAME_UTF16,
        &callbacks,
        ptr::null_mut(),
    )?);
    filter.start()
}

/// Undoes registration and frees everything: server port, client port (through the slot, which
/// also refuses later connections), the filter (FltUnregisterFilter drains the callbacks), the
/// delivery thread (waited on through its object), then the globals and the device.
///
/// # Safety
///
/// No other thread uses `globals.registration` or stops the delivery thread; the globals are
/// unpublished here, so the caller must ensure no callback is admitted any more (the gate is
/// closed, or DriverEntry has not completed and FltUnregisterFilter drains the rest).
unsafe fn teardown(globals: GlobalsBox) {
    // SAFETY: exclusive access (contract).
    let registration = unsafe { globals.registration_mut() };
    // First: the removal waits for the notifications in flight, and none starts afterwards.
    drop(registration.process_notify.take());
    drop(registration.server_port.take());
    let filter = globals.filter_handle();
    crate::twins::close_second_port_copy(filter);
    let _ = globals.slot.retire(|port| close_client_port(filter, port));
    let filter_object = registration.filter.take();
    if twins::is(Twin::LeaveRegistered) {
        core::mem::forget(filter_object);
    } else {
        drop(filter_object);
    }
    globals.set_filter_handle(ptr::null_mut());
    // SAFETY: the teardown, once no callback is admitted (contract).
    unsafe { globals.delivery.stop_and_join() };
    GLOBALS.store(ptr::null_mut(), Ordering::Release);
    drop(globals);
}

/// FilterUnloadCallback: PASSIVE_LEVEL.
///
/// # Safety
///
/// Called only by FltMgr, as the `FilterUnloadCallback` of `REGISTRATION`, at most once per
/// successful `FltRegisterFilter`, at PASSIVE_LEVEL.
unsafe extern "win64" fn filter_unload(flags: u32) -> NTSTATUS {
    let kind = UnloadKind::from_mandatory(flags & FLTFL_FILTER_UNLOAD_MANDATORY != 0);
    let Some(gate) = GATE.get() else {
        return STATUS_SUCCESS;
    };
    // DriverEntry really returned (the device object's DO_DEVICE_INITIALIZING is clear).
    let returned = || {
        // SAFETY: a published GLOBALS stays alive until this unload frees it.
        unsafe { GLOBALS.load(Ordering::Acquire).as_ref() }
            .is_none_or(|globals| !globals.device.is_initializing())
    };
    let succeeded = || ENTRY_OUTCOME.load(Ordering::Acquire) == EntryOutcome::Succeeded as u8;
    // 1-2, and the callbacks' rundown: the sequence and its refusal policy live in the core,
    // where the loom models run the same function.
    let decision = if twins::is(Twin::UnloadNoWait) {
        gate.unload_after_entry(kind, succeeded, UNLOAD_BOUNDS.callbacks)
    } else {
        gate.unload(kind, returned, succeeded, UNLOAD_BOUNDS)
    };
    match decision {
        UnloadDecision::TearDown => {}
        // DriverEntry failed and unwinds (and unregisters) itself: touch nothing.
        UnloadDecision::EntryFailed => return STATUS_SUCCESS,
        UnloadDecision::Refused(_) => return STATUS_FLT_DO_NOT_DETACH,
    }
    // SAFETY: published by the successful DriverEntry and owned by the driver; FltMgr calls
    // unload once, and no callback is admitted any more.
    let Some(globals) = (unsafe { GlobalsBox::from_raw(GLOBALS.load(Ordering::Acquire)) }) else {
        return STATUS_SUCCESS;
    };
    // 3-6.
    // SAFETY: entry is complete, the gate is closed: this thread alone owns the globals now.
    unsafe { teardown(globals) };
    STATUS_SUCCESS
}
