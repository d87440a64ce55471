//! DriverEntry and FilterUnload: the load/unload contract of DESIGN.md ("Lifecycle").
//!
//! Runs in the kernel at PASSIVE_LEVEL. DriverEntry does every internal setup first and
//! registers with the Filter Manager last; FilterUnload waits for DriverEntry to have completed
//! (a global KEVENT) and really returned (the device object's `DO_DEVICE_INITIALIZING` bit)
//! before it touches any state (RULES.md, rule 1).

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use vigil_sys::{
    DRIVER_OBJECT, FLT_OPERATION_REGISTRATION, FLT_REGISTRATION, FLT_REGISTRATION_VERSION,
    FLTFL_FILTER_UNLOAD_MANDATORY, IRP_MJ_OPERATION_END, NTSTATUS, PFLT_PORT, PVOID,
    STATUS_FLT_DO_NOT_DETACH, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::error::{NtStatus, Result, status_of};
use crate::filter::port::{PortCallbacks, ServerPort};
use crate::filter::registration::{RegisteredFilter, StaticRegistration, StaticTable};
use crate::kernel::device::DeviceObject;
use crate::kernel::event::{KernelEvent, WaitOutcome};
use crate::kernel::pool::{PoolBox, tags};
use crate::kernel::time::{Timeout, sleep};

/// Signalled at the very end of DriverEntry, success or failure. A static (image memory is
/// non-paged), initialized first thing in DriverEntry: it exists before FltMgr can call unload.
static ENTRY_COMPLETE: KernelEvent = KernelEvent::zeroed();

/// How DriverEntry ended; read by FilterUnload after `ENTRY_COMPLETE` is signalled.
static ENTRY_OUTCOME: AtomicU8 = AtomicU8::new(EntryOutcome::Running as u8);

/// The driver's state, published before registration so that callbacks find it.
static GLOBALS: AtomicPtr<Globals> = AtomicPtr::new(ptr::null_mut());

#[repr(u8)]
enum EntryOutcome {
    Running = 0,
    Succeeded = 1,
    Failed = 2,
}

/// Policy: how long a non-mandatory unload waits for DriverEntry before it is refused
/// (`STATUS_FLT_DO_NOT_DETACH`). DriverEntry runs bounded steps only, so it is far shorter; a
/// mandatory unload cannot be refused and keeps waiting in slices of the same length.
const ENTRY_WAIT_SLICE_MS: u32 = 5_000;
/// Policy: the poll interval for `DO_DEVICE_INITIALIZING`, and how many polls a non-mandatory
/// unload makes before refusing. The bit clears as soon as the I/O manager regains control.
const DEVICE_POLL_MS: u32 = 10;
const DEVICE_POLL_LIMIT: u32 = 500;

/// The port name. (Moves to vigil-protocol with the protocol issue.)
static PORT_NAME: [u16; 11] = {
    let ascii = *b"\\VigilPort\0";
    let mut units = [0u16; 11];
    let mut i = 0;
    while i < ascii.len() {
        units[i] = ascii[i] as u16;
        i += 1;
    }
    units
};

/// Everything the driver owns.
///
/// # Invariants
///
/// `filter` and `server_port` are written only by DriverEntry, before `ENTRY_COMPLETE` is
/// signalled, and read or taken only by the teardown, after it: the event orders the accesses.
struct Globals {
    device: DeviceObject,
    filter: UnsafeCell<Option<RegisteredFilter>>,
    server_port: UnsafeCell<Option<ServerPort>>,
}

// SAFETY: see the invariant: the cells are never accessed concurrently.
unsafe impl Sync for Globals {}

static OPERATIONS: StaticTable<[FLT_OPERATION_REGISTRATION; 1]> = StaticTable([FLT_OPERATION_REGISTRATION {
    MajorFunction: IRP_MJ_OPERATION_END,
    Flags: 0,
    PreOperation: None,
    PostOperation: None,
    Reserved1: ptr::null_mut(),
}]);

static REGISTRATION: StaticRegistration = StaticTable(FLT_REGISTRATION {
    Size: size_of::<FLT_REGISTRATION>() as u16,
    Version: FLT_REGISTRATION_VERSION,
    Flags: 0,
    ContextRegistration: ptr::null(),
    OperationRegistration: OPERATIONS.0.as_ptr(),
    FilterUnloadCallback: Some(filter_unload),
    InstanceSetupCallback: None,
    InstanceQueryTeardownCallback: None,
    InstanceTeardownStartCallback: None,
    InstanceTeardownCompleteCallback: None,
    GenerateFileNameCallback: ptr::null_mut(),
    NormalizeNameComponentCallback: ptr::null_mut(),
    NormalizeContextCleanupCallback: ptr::null_mut(),
    TransactionNotificationCallback: ptr::null_mut(),
    NormalizeNameComponentExCallback: ptr::null_mut(),
    SectionNotificationCallback: ptr::null_mut(),
});

/// The driver's entry point, called by the I/O manager at PASSIVE_LEVEL.
///
/// # Safety
///
/// Called only by the I/O manager, once, with a valid driver object and registry path.
#[unsafe(no_mangle)]
pub unsafe extern "win64" fn DriverEntry(driver: *mut DRIVER_OBJECT, _registry_path: *mut UNICODE_STRING) -> NTSTATUS {
    ENTRY_COMPLETE.init();
    // SAFETY: `driver` is the I/O manager's driver object (contract).
    let result = unsafe { load(driver) };
    let outcome = if result.is_ok() { EntryOutcome::Succeeded } else { EntryOutcome::Failed };
    ENTRY_OUTCOME.store(outcome as u8, Ordering::Release);
    ENTRY_COMPLETE.set();
    status_of(|| result)
}

/// Steps 2-5 of the contract; on failure everything done so far is undone in reverse.
///
/// # Safety
///
/// `driver` is the driver object DriverEntry received.
unsafe fn load(driver: *mut DRIVER_OBJECT) -> Result {
    // SAFETY: `driver` is valid (contract).
    let device = unsafe { DeviceObject::create(driver) }?;
    let globals = PoolBox::try_new(
        Globals { device, filter: UnsafeCell::new(None), server_port: UnsafeCell::new(None) },
        tags::GLOBALS,
    )?;
    GLOBALS.store(globals.as_ptr(), Ordering::Release);

    let registered = register(driver, &globals);
    if let Err(error) = registered {
        // Undo the registration half (ports first, then the filter), then the rest.
        // SAFETY: DriverEntry has not signalled completion: no teardown runs concurrently.
        unsafe { release_filter(&globals) };
        GLOBALS.store(ptr::null_mut(), Ordering::Release);
        drop(globals);
        return Err(error);
    }
    // Ownership passes to GLOBALS; FilterUnload frees it.
    let _ = PoolBox::into_raw(globals);
    Ok(())
}

/// Step 5: FltRegisterFilter, then the port (it needs the filter handle), then start filtering.
fn register(driver: *mut DRIVER_OBJECT, globals: &Globals) -> Result {
    // SAFETY: `driver` is DriverEntry's driver object.
    let filter = unsafe { RegisteredFilter::register(driver, &REGISTRATION) }?;
    let callbacks = PortCallbacks {
        connect: Some(port_connect),
        disconnect: Some(port_disconnect),
        message: Some(port_message),
    };
    let port = ServerPort::create(&filter, &PORT_NAME[..10], &callbacks, ptr::null_mut());
    // SAFETY: DriverEntry is the only writer before completion (Globals invariant).
    unsafe { *globals.filter.get() = Some(filter) };
    // SAFETY: as above.
    unsafe { *globals.server_port.get() = Some(port?) };
    // SAFETY: as above; read access only.
    let filter = unsafe { (*globals.filter.get()).as_ref() };
    filter.ok_or(NtStatus::UNSUCCESSFUL)?.start()
}

/// Closes the server port, then unregisters the filter (ports must be closed first).
///
/// # Safety
///
/// No other thread accesses `globals.filter` or `globals.server_port` (Globals invariant).
unsafe fn release_filter(globals: &Globals) {
    // SAFETY: exclusive access (contract).
    drop(unsafe { (*globals.server_port.get()).take() });
    // SAFETY: exclusive access (contract).
    drop(unsafe { (*globals.filter.get()).take() });
}

/// FilterUnloadCallback: PASSIVE_LEVEL.
unsafe extern "win64" fn filter_unload(flags: u32) -> NTSTATUS {
    let mandatory = flags & FLTFL_FILTER_UNLOAD_MANDATORY != 0;
    // 1. DriverEntry has completed.
    loop {
        match ENTRY_COMPLETE.wait(Timeout::from_millis(ENTRY_WAIT_SLICE_MS)) {
            Ok(WaitOutcome::Signalled) => break,
            Ok(WaitOutcome::TimedOut) | Err(_) if !mandatory => return STATUS_FLT_DO_NOT_DETACH,
            Ok(WaitOutcome::TimedOut) | Err(_) => {}
        }
    }
    if ENTRY_OUTCOME.load(Ordering::Acquire) != EntryOutcome::Succeeded as u8 {
        // DriverEntry failed and unwinds (and unregisters) on its own: touch nothing.
        return STATUS_SUCCESS;
    }
    let raw = GLOBALS.load(Ordering::Acquire);
    if raw.is_null() {
        return STATUS_SUCCESS;
    }
    // SAFETY: published by a successful DriverEntry, freed only below.
    let globals = unsafe { &*raw };
    // 2. DriverEntry has really returned.
    let mut polls = 0;
    while globals.device.is_initializing() {
        if !mandatory && polls >= DEVICE_POLL_LIMIT {
            return STATUS_FLT_DO_NOT_DETACH;
        }
        sleep(DEVICE_POLL_MS);
        polls += 1;
    }
    // 3-4. Ports, then the filter.
    // SAFETY: entry is complete, so DriverEntry no longer touches these; FltMgr calls unload once.
    unsafe { release_filter(globals) };
    // 6. Free the globals and delete the device.
    GLOBALS.store(ptr::null_mut(), Ordering::Release);
    // SAFETY: `raw` came from PoolBox::into_raw with this tag; nothing references it any more.
    drop(unsafe { PoolBox::from_raw(raw, tags::GLOBALS) });
    STATUS_SUCCESS
}

/// Port connect: refused until the service protocol exists (rule 21: never claim success for a
/// request that is not handled).
unsafe extern "win64" fn port_connect(
    _client: PFLT_PORT,
    _server_cookie: PVOID,
    _context: PVOID,
    _context_size: u32,
    _connection_cookie: *mut PVOID,
) -> NTSTATUS {
    STATUS_NOT_SUPPORTED
}

/// Port disconnect: nothing is connected yet.
unsafe extern "win64" fn port_disconnect(_connection_cookie: PVOID) {}

/// Port message: no command is handled yet.
unsafe extern "win64" fn port_message(
    _cookie: PVOID,
    _input: PVOID,
    _input_len: u32,
    _output: PVOID,
    _output_len: u32,
    returned: *mut u32,
) -> NTSTATUS {
    if !returned.is_null() {
        // SAFETY: FltMgr passes a valid kernel pointer for the returned length.
        unsafe { *returned = 0 };
    }
    STATUS_NOT_SUPPORTED
}
