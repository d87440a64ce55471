//! `ntoskrnl.exe`'s export table: every routine and variable kernel-sim emulates for it, by
//! the name a driver imports, with the address the loader binds. To add a routine: write its
//! `extern "win64"` emulation in the file of its family (through
//! [`emulate`](crate::kernel::emulate)), then add one line here.

use crate::kernel::Export;
use crate::machine::signals::MM_USER_PROBE_ADDRESS;
use crate::ntoskrnl;

/// The table.
pub(crate) const EXPORTS: &[Export] = &[
    ("ExAllocatePool2", || {
        ntoskrnl::pool::ex_allocate_pool2 as *const () as usize
    }),
    ("ExFreePoolWithTag", || {
        ntoskrnl::pool::ex_free_pool_with_tag as *const () as usize
    }),
    ("KeInitializeEvent", || {
        ntoskrnl::event::ke_initialize_event as *const () as usize
    }),
    ("KeSetEvent", || {
        ntoskrnl::event::ke_set_event as *const () as usize
    }),
    ("KeClearEvent", || {
        ntoskrnl::event::ke_clear_event as *const () as usize
    }),
    ("KeReadStateEvent", || {
        ntoskrnl::event::ke_read_state_event as *const () as usize
    }),
    ("KeWaitForSingleObject", || {
        ntoskrnl::event::ke_wait_for_single_object as *const () as usize
    }),
    ("KeDelayExecutionThread", || {
        ntoskrnl::event::ke_delay_execution_thread as *const () as usize
    }),
    ("KeQuerySystemTimePrecise", || {
        ntoskrnl::event::ke_query_system_time_precise as *const () as usize
    }),
    ("KeAcquireSpinLockRaiseToDpc", || {
        ntoskrnl::sync::ke_acquire_spin_lock_raise_to_dpc as *const () as usize
    }),
    ("KeReleaseSpinLock", || {
        ntoskrnl::sync::ke_release_spin_lock as *const () as usize
    }),
    ("KeEnterCriticalRegion", || {
        ntoskrnl::sync::ke_enter_critical_region as *const () as usize
    }),
    ("KeLeaveCriticalRegion", || {
        ntoskrnl::sync::ke_leave_critical_region as *const () as usize
    }),
    ("KeBugCheckEx", || {
        ntoskrnl::misc::ke_bug_check_ex as *const () as usize
    }),
    ("PsCreateSystemThread", || {
        ntoskrnl::thread::ps_create_system_thread as *const () as usize
    }),
    ("PsTerminateSystemThread", || {
        ntoskrnl::thread::ps_terminate_system_thread as *const () as usize
    }),
    ("PsGetCurrentProcessId", || {
        ntoskrnl::thread::ps_get_current_process_id as *const () as usize
    }),
    ("PsGetCurrentThreadId", || {
        ntoskrnl::thread::ps_get_current_thread_id as *const () as usize
    }),
    ("ObReferenceObjectByHandle", || {
        ntoskrnl::thread::ob_reference_object_by_handle as *const () as usize
    }),
    ("ObfDereferenceObject", || {
        ntoskrnl::thread::obf_dereference_object as *const () as usize
    }),
    ("ZwClose", || {
        ntoskrnl::thread::zw_close as *const () as usize
    }),
    ("ZwWaitForSingleObject", || {
        ntoskrnl::thread::zw_wait_for_single_object as *const () as usize
    }),
    ("ZwOpenKey", || {
        ntoskrnl::registry::zw_open_key as *const () as usize
    }),
    ("ZwQueryValueKey", || {
        ntoskrnl::registry::zw_query_value_key as *const () as usize
    }),
    ("IoCreateDevice", || {
        ntoskrnl::io::io_create_device as *const () as usize
    }),
    ("IoDeleteDevice", || {
        ntoskrnl::io::io_delete_device as *const () as usize
    }),
    ("memcpy", || ntoskrnl::rtl::memcpy as *const () as usize),
    ("memmove", || ntoskrnl::rtl::memmove as *const () as usize),
    ("memset", || ntoskrnl::rtl::memset as *const () as usize),
    ("memcmp", || ntoskrnl::rtl::memcmp as *const () as usize),
    ("__C_specific_handler", || {
        ntoskrnl::misc::c_specific_handler as *const () as usize
    }),
    // Data imports: the IAT slot holds the variable's address.
    ("PsThreadType", || (&raw const PS_THREAD_TYPE) as usize),
    ("MmUserProbeAddress", || (&raw const MM_USER_PROBE) as usize),
];

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
