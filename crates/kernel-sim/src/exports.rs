//! The routines and variables kernel-sim provides, by module and name: the loader binds a
//! driver's imports from this table and refuses any import missing from it.
//!
//! To add a routine: write its `extern "win64"` emulation (in `ntos/` or `flt/`, through
//! [`crate::kernel::emulate`]), then add one line to the module's table below.

use crate::image::Binding;
use crate::machine::signals::MM_USER_PROBE_ADDRESS;
use crate::{flt, ntos};

/// A module a driver may import from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KnownModule {
    /// `ntoskrnl.exe`.
    Ntoskrnl,
    /// `FLTMGR.SYS`.
    FltMgr,
    /// `HAL.dll` (nothing emulated yet: any import from it is reported missing).
    Hal,
}

impl KnownModule {
    /// The module for an import directory name, compared case-insensitively. A raw-dylib
    /// import declared without `+verbatim` (`ntoskrnl.exe.dll`) matches nothing.
    pub(crate) fn from_import_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "ntoskrnl.exe" => Some(Self::Ntoskrnl),
            "fltmgr.sys" => Some(Self::FltMgr),
            "hal.dll" => Some(Self::Hal),
            _ => None,
        }
    }
}

type Entry = (&'static str, fn() -> usize);

const NTOSKRNL: &[Entry] = &[
    ("ExAllocatePool2", || {
        ntos::pool::ex_allocate_pool2 as *const () as usize
    }),
    ("ExFreePoolWithTag", || {
        ntos::pool::ex_free_pool_with_tag as *const () as usize
    }),
    ("KeInitializeEvent", || {
        ntos::event::ke_initialize_event as *const () as usize
    }),
    ("KeSetEvent", || {
        ntos::event::ke_set_event as *const () as usize
    }),
    ("KeClearEvent", || {
        ntos::event::ke_clear_event as *const () as usize
    }),
    ("KeReadStateEvent", || {
        ntos::event::ke_read_state_event as *const () as usize
    }),
    ("KeWaitForSingleObject", || {
        ntos::event::ke_wait_for_single_object as *const () as usize
    }),
    ("KeDelayExecutionThread", || {
        ntos::event::ke_delay_execution_thread as *const () as usize
    }),
    ("KeQuerySystemTimePrecise", || {
        ntos::event::ke_query_system_time_precise as *const () as usize
    }),
    ("KeAcquireSpinLockRaiseToDpc", || {
        ntos::sync::ke_acquire_spin_lock_raise_to_dpc as *const () as usize
    }),
    ("KeReleaseSpinLock", || {
        ntos::sync::ke_release_spin_lock as *const () as usize
    }),
    ("KeEnterCriticalRegion", || {
        ntos::sync::ke_enter_critical_region as *const () as usize
    }),
    ("KeLeaveCriticalRegion", || {
        ntos::sync::ke_leave_critical_region as *const () as usize
    }),
    ("KeBugCheckEx", || {
        ntos::misc::ke_bug_check_ex as *const () as usize
    }),
    ("PsCreateSystemThread", || {
        ntos::thread::ps_create_system_thread as *const () as usize
    }),
    ("PsTerminateSystemThread", || {
        ntos::thread::ps_terminate_system_thread as *const () as usize
    }),
    ("PsGetCurrentProcessId", || {
        ntos::thread::ps_get_current_process_id as *const () as usize
    }),
    ("PsGetCurrentThreadId", || {
        ntos::thread::ps_get_current_thread_id as *const () as usize
    }),
    ("ObReferenceObjectByHandle", || {
        ntos::thread::ob_reference_object_by_handle as *const () as usize
    }),
    ("ObfDereferenceObject", || {
        ntos::thread::obf_dereference_object as *const () as usize
    }),
    ("ZwClose", || ntos::thread::zw_close as *const () as usize),
    ("ZwWaitForSingleObject", || {
        ntos::thread::zw_wait_for_single_object as *const () as usize
    }),
    ("ZwOpenKey", || {
        ntos::registry::zw_open_key as *const () as usize
    }),
    ("ZwQueryValueKey", || {
        ntos::registry::zw_query_value_key as *const () as usize
    }),
    ("IoCreateDevice", || {
        ntos::io::io_create_device as *const () as usize
    }),
    ("IoDeleteDevice", || {
        ntos::io::io_delete_device as *const () as usize
    }),
    ("memcpy", || ntos::rtl::memcpy as *const () as usize),
    ("memmove", || ntos::rtl::memmove as *const () as usize),
    ("memset", || ntos::rtl::memset as *const () as usize),
    ("memcmp", || ntos::rtl::memcmp as *const () as usize),
    ("__C_specific_handler", || {
        ntos::misc::c_specific_handler as *const () as usize
    }),
    // Data imports: the IAT slot holds the variable's address.
    ("PsThreadType", || (&raw const PS_THREAD_TYPE) as usize),
    ("MmUserProbeAddress", || (&raw const MM_USER_PROBE) as usize),
];

const FLTMGR: &[Entry] = &[
    ("FltRegisterFilter", || {
        flt::registration::flt_register_filter as *const () as usize
    }),
    ("FltStartFiltering", || {
        flt::registration::flt_start_filtering as *const () as usize
    }),
    ("FltUnregisterFilter", || {
        flt::registration::flt_unregister_filter as *const () as usize
    }),
    ("FltBuildDefaultSecurityDescriptor", || {
        flt::security::flt_build_default_security_descriptor as *const () as usize
    }),
    ("FltFreeSecurityDescriptor", || {
        flt::security::flt_free_security_descriptor as *const () as usize
    }),
    ("FltCreateCommunicationPort", || {
        flt::ports::flt_create_communication_port as *const () as usize
    }),
    ("FltCloseCommunicationPort", || {
        flt::ports::flt_close_communication_port as *const () as usize
    }),
    ("FltCloseClientPort", || {
        flt::ports::flt_close_client_port as *const () as usize
    }),
    ("FltSendMessage", || {
        flt::ports::flt_send_message as *const () as usize
    }),
    ("FltGetFileNameInformation", || {
        flt::names::flt_get_file_name_information as *const () as usize
    }),
    ("FltGetDestinationFileNameInformation", || {
        flt::names::flt_get_destination_file_name_information as *const () as usize
    }),
    ("FltReleaseFileNameInformation", || {
        flt::names::flt_release_file_name_information as *const () as usize
    }),
    ("FltGetRequestorProcessId", || {
        flt::io::flt_get_requestor_process_id as *const () as usize
    }),
    ("FltAllocateContext", || {
        flt::contexts::flt_allocate_context as *const () as usize
    }),
    ("FltSetStreamHandleContext", || {
        flt::contexts::flt_set_stream_handle_context as *const () as usize
    }),
    ("FltGetStreamHandleContext", || {
        flt::contexts::flt_get_stream_handle_context as *const () as usize
    }),
    ("FltReleaseContext", || {
        flt::contexts::flt_release_context as *const () as usize
    }),
    ("FltInitializePushLock", || {
        flt::pushlock::flt_initialize_push_lock as *const () as usize
    }),
    ("FltDeletePushLock", || {
        flt::pushlock::flt_delete_push_lock as *const () as usize
    }),
    ("FltAcquirePushLockExclusive", || {
        flt::pushlock::flt_acquire_push_lock_exclusive as *const () as usize
    }),
    ("FltAcquirePushLockShared", || {
        flt::pushlock::flt_acquire_push_lock_shared as *const () as usize
    }),
    ("FltReleasePushLock", || {
        flt::pushlock::flt_release_push_lock as *const () as usize
    }),
];

const HAL: &[Entry] = &[];

fn table(module: KnownModule) -> &'static [Entry] {
    match module {
        KnownModule::Ntoskrnl => NTOSKRNL,
        KnownModule::FltMgr => FLTMGR,
        KnownModule::Hal => HAL,
    }
}

/// The loader's resolver: what to bind for an import of `name` from the module the import
/// directory calls `module`.
pub(crate) fn bind(module: &str, name: &str) -> Binding {
    match KnownModule::from_import_name(module) {
        None => Binding::UnknownModule,
        Some(known) => resolve(known, name).map_or(Binding::NotEmulated, Binding::Address),
    }
}

/// The address to bind for `module!name`, if emulated.
pub(crate) fn resolve(module: KnownModule, name: &str) -> Option<usize> {
    table(module)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, address)| address())
}

/// Every emulated routine and variable, as `(module, name)`.
pub fn emulated() -> Vec<(&'static str, &'static str)> {
    let mut all = Vec::new();
    for (module, name) in [
        (KnownModule::Ntoskrnl, "ntoskrnl.exe"),
        (KnownModule::FltMgr, "FLTMGR.SYS"),
        (KnownModule::Hal, "HAL.dll"),
    ] {
        all.extend(table(module).iter().map(|(n, _)| (name, *n)));
    }
    all
}

/// The body of the emulated thread object type (`*PsThreadType` points here).
#[repr(C, align(16))]
struct ObjectTypeBody([u64; 8]);

static THREAD_OBJECT_TYPE: ObjectTypeBody = ObjectTypeBody([0x5468_7265_6164; 8]);

/// A pointer in a static (`PsThreadType` is a `POBJECT_TYPE` variable).
#[repr(transparent)]
struct StaticPointer(*const ObjectTypeBody);

// SAFETY: the pointer refers to an immutable static; sharing it between threads is harmless.
unsafe impl Sync for StaticPointer {}

/// `PsThreadType`: a read-only variable holding the thread object type.
static PS_THREAD_TYPE: StaticPointer = StaticPointer(&raw const THREAD_OBJECT_TYPE);
/// `MmUserProbeAddress`.
static MM_USER_PROBE: usize = MM_USER_PROBE_ADDRESS;

/// The value of `*PsThreadType`.
pub(crate) fn thread_object_type() -> usize {
    (&raw const THREAD_OBJECT_TYPE) as usize
}
