//! `ntoskrnl.exe`'s routines, declared once each: name (as a driver imports it), handler,
//! IRQL rule (the `IRQL` row of its reference page). From this table come the [`Routine`]
//! enum the handlers pass to [`emulate`](crate::kernel::emulate) and the export table the
//! loader binds ([`EXPORTS`], with the exported variables). To add a routine: write its
//! `extern "win64"` emulation in the file of its family, then add one line here.

use vigil_sys::{APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};

use crate::kernel::IrqlRule::{Any, AtMost, Exactly};
use crate::kernel::routine::routines;
use crate::machine::signals::MM_USER_PROBE_ADDRESS;
use crate::ntoskrnl::{
    event, io, misc, pool, process, process_notify, registry, rtl, sync, thread, upcase,
};

routines! {
    /// The `ntoskrnl.exe` routines kernel-sim emulates.
    #[expect(non_camel_case_types, reason = "variants keep the exported names (`memcpy`)")]
    first 0;
    routines {
        ExAllocatePool2 => pool::ex_allocate_pool2, AtMost(DISPATCH_LEVEL);
        ExFreePoolWithTag => pool::ex_free_pool_with_tag, AtMost(DISPATCH_LEVEL);
        KeInitializeEvent => event::ke_initialize_event, Any;
        KeSetEvent => event::ke_set_event, AtMost(DISPATCH_LEVEL);
        KeClearEvent => event::ke_clear_event, AtMost(DISPATCH_LEVEL);
        KeReadStateEvent => event::ke_read_state_event, AtMost(DISPATCH_LEVEL);
        KeWaitForSingleObject => event::ke_wait_for_single_object, Any;
        KeDelayExecutionThread => event::ke_delay_execution_thread, AtMost(APC_LEVEL);
        KeQuerySystemTimePrecise => event::ke_query_system_time_precise, Any;
        KeAcquireSpinLockRaiseToDpc => sync::ke_acquire_spin_lock_raise_to_dpc, AtMost(DISPATCH_LEVEL);
        KeReleaseSpinLock => sync::ke_release_spin_lock, Exactly(DISPATCH_LEVEL);
        KeEnterCriticalRegion => sync::ke_enter_critical_region, AtMost(APC_LEVEL);
        KeLeaveCriticalRegion => sync::ke_leave_critical_region, AtMost(APC_LEVEL);
        KeAreAllApcsDisabled => sync::ke_are_all_apcs_disabled, Any;
        KeAreApcsDisabled => sync::ke_are_apcs_disabled, Any;
        KeBugCheckEx => misc::ke_bug_check_ex, Any;
        PsCreateSystemThread => thread::ps_create_system_thread, AtMost(PASSIVE_LEVEL);
        PsTerminateSystemThread => thread::ps_terminate_system_thread, AtMost(PASSIVE_LEVEL);
        PsGetCurrentProcessId => thread::ps_get_current_process_id, Any;
        PsGetCurrentThreadId => thread::ps_get_current_thread_id, Any;
        ObReferenceObjectByHandle => thread::ob_reference_object_by_handle, AtMost(PASSIVE_LEVEL);
        ObfDereferenceObject => thread::obf_dereference_object, AtMost(DISPATCH_LEVEL);
        ZwClose => thread::zw_close, AtMost(PASSIVE_LEVEL);
        ZwWaitForSingleObject => thread::zw_wait_for_single_object, AtMost(PASSIVE_LEVEL);
        ZwOpenKey => registry::zw_open_key, AtMost(PASSIVE_LEVEL);
        ZwQueryValueKey => registry::zw_query_value_key, AtMost(PASSIVE_LEVEL);
        // IoCreateDevice, IoDeleteDevice: IRQL <= APC_LEVEL (their reference pages' IRQL rows).
        IoCreateDevice => io::io_create_device, AtMost(APC_LEVEL);
        IoDeleteDevice => io::io_delete_device, AtMost(APC_LEVEL);
        RtlUpcaseUnicodeChar => upcase::rtl_upcase_unicode_char, AtMost(APC_LEVEL);
        IoGetCurrentProcess => process::io_get_current_process, AtMost(DISPATCH_LEVEL);
        PsReferencePrimaryToken => process::ps_reference_primary_token, AtMost(PASSIVE_LEVEL);
        // IRQL < DISPATCH_LEVEL.
        PsDereferencePrimaryToken => process::ps_dereference_primary_token, AtMost(APC_LEVEL);
        SeTokenIsAdmin => process::se_token_is_admin, AtMost(PASSIVE_LEVEL);
        ZwQueryInformationProcess => process::zw_query_information_process, AtMost(PASSIVE_LEVEL);
        PsSetCreateProcessNotifyRoutineEx => process_notify::ps_set_create_process_notify_routine_ex, AtMost(PASSIVE_LEVEL);
        PsGetProcessStartKey => process_notify::ps_get_process_start_key, AtMost(DISPATCH_LEVEL);
        PsGetProcessExitStatus => process_notify::ps_get_process_exit_status, AtMost(APC_LEVEL);
        SeQueryInformationToken => process_notify::se_query_information_token, AtMost(PASSIVE_LEVEL);
        memcpy => rtl::memcpy, Any;
        memmove => rtl::memmove, Any;
        memset => rtl::memset, Any;
        memcmp => rtl::memcmp, Any;
        __C_specific_handler => misc::c_specific_handler, Any;
        // ExAllocatePoolWithTag, ExFreePool: <= DISPATCH_LEVEL (paged pool <= APC_LEVEL, checked
        // in the handlers); DbgPrint, DbgPrintEx: <= DIRQL, so any (Unicode codes checked).
        ExAllocatePoolWithTag => crate::ntoskrnl::pool_with_tag::ex_allocate_pool_with_tag, AtMost(DISPATCH_LEVEL);
        ExFreePool => crate::ntoskrnl::pool_with_tag::ex_free_pool, AtMost(DISPATCH_LEVEL);
        DbgPrint => crate::ntoskrnl::debug::kvsim_dbg_print, Any;
        DbgPrintEx => crate::ntoskrnl::debug::kvsim_dbg_print_ex, Any;
        // IoAllocateMdl, MmBuildMdlForNonPagedPool, MmMapLockedPagesSpecifyCache (kernel-mode
        // mappings), IoFreeMdl: <= DISPATCH_LEVEL.
        IoAllocateMdl => crate::ntoskrnl::mdl::io_allocate_mdl, AtMost(DISPATCH_LEVEL);
        MmBuildMdlForNonPagedPool => crate::ntoskrnl::mdl::mm_build_mdl_for_non_paged_pool, AtMost(DISPATCH_LEVEL);
        MmMapLockedPagesSpecifyCache => crate::ntoskrnl::mdl::mm_map_locked_pages_specify_cache, AtMost(DISPATCH_LEVEL);
        IoFreeMdl => crate::ntoskrnl::mdl::io_free_mdl, AtMost(DISPATCH_LEVEL);
        MmGetSystemRoutineAddress => crate::ntoskrnl::system_routine::mm_get_system_routine_address, AtMost(PASSIVE_LEVEL);
        ExInitializeResourceLite => crate::ntoskrnl::resource::ex_initialize_resource_lite, AtMost(DISPATCH_LEVEL);
        ExAcquireResourceExclusiveLite => crate::ntoskrnl::resource::ex_acquire_resource_exclusive_lite, AtMost(APC_LEVEL);
        ExAcquireResourceSharedLite => crate::ntoskrnl::resource::ex_acquire_resource_shared_lite, AtMost(APC_LEVEL);
        ExReleaseResourceLite => crate::ntoskrnl::resource::ex_release_resource_lite, AtMost(DISPATCH_LEVEL);
        ExDeleteResourceLite => crate::ntoskrnl::resource::ex_delete_resource_lite, AtMost(APC_LEVEL);
        // Rtl strings, FsRtlIsNameInExpression, SLists, lookaside lists, fast mutexes (issue 18).
        // Init, copy, append: <= DISPATCH_LEVEL over resident buffers (checked in the handlers);
        // compare, equal, prefix, to-ANSI, name matching: PASSIVE_LEVEL; upcase and free:
        // <= APC_LEVEL; SLists: any IRQL; lookaside lists <= DISPATCH_LEVEL; fast mutexes:
        // acquire <= APC_LEVEL, release == APC_LEVEL.
        RtlInitUnicodeString => crate::ntoskrnl::rtl_strings::rtl_init_unicode_string, AtMost(DISPATCH_LEVEL);
        RtlCopyUnicodeString => crate::ntoskrnl::rtl_strings::rtl_copy_unicode_string, AtMost(DISPATCH_LEVEL);
        RtlAppendUnicodeStringToString => crate::ntoskrnl::rtl_strings::rtl_append_unicode_string_to_string, AtMost(DISPATCH_LEVEL);
        RtlAppendUnicodeToString => crate::ntoskrnl::rtl_strings::rtl_append_unicode_to_string, AtMost(DISPATCH_LEVEL);
        RtlCompareUnicodeString => crate::ntoskrnl::rtl_strings::rtl_compare_unicode_string, AtMost(PASSIVE_LEVEL);
        RtlEqualUnicodeString => crate::ntoskrnl::rtl_strings::rtl_equal_unicode_string, AtMost(PASSIVE_LEVEL);
        RtlPrefixUnicodeString => crate::ntoskrnl::rtl_strings::rtl_prefix_unicode_string, AtMost(PASSIVE_LEVEL);
        RtlUpcaseUnicodeString => crate::ntoskrnl::rtl_strings::rtl_upcase_unicode_string, AtMost(APC_LEVEL);
        RtlFreeUnicodeString => crate::ntoskrnl::rtl_strings::rtl_free_unicode_string, AtMost(APC_LEVEL);
        RtlUnicodeStringToAnsiString => crate::ntoskrnl::rtl_strings::rtl_unicode_string_to_ansi_string, AtMost(PASSIVE_LEVEL);
        RtlFreeAnsiString => crate::ntoskrnl::rtl_strings::rtl_free_ansi_string, AtMost(PASSIVE_LEVEL);
        FsRtlIsNameInExpression => crate::ntoskrnl::name_expression::fs_rtl_is_name_in_expression, AtMost(PASSIVE_LEVEL);
        InitializeSListHead => crate::ntoskrnl::slist::initialize_slist_head, Any;
        ExpInterlockedPushEntrySList => crate::ntoskrnl::slist::exp_interlocked_push_entry_slist, Any;
        ExpInterlockedPopEntrySList => crate::ntoskrnl::slist::exp_interlocked_pop_entry_slist, Any;
        ExpInterlockedFlushSList => crate::ntoskrnl::slist::exp_interlocked_flush_slist, Any;
        ExQueryDepthSList => crate::ntoskrnl::slist::ex_query_depth_slist, Any;
        RtlFirstEntrySList => crate::ntoskrnl::slist::rtl_first_entry_slist, Any;
        ExInitializeNPagedLookasideList => crate::ntoskrnl::lookaside::ex_initialize_npaged_lookaside_list, AtMost(DISPATCH_LEVEL);
        ExDeleteNPagedLookasideList => crate::ntoskrnl::lookaside::ex_delete_npaged_lookaside_list, AtMost(DISPATCH_LEVEL);
        ExInitializeLookasideListEx => crate::ntoskrnl::lookaside::ex_initialize_lookaside_list_ex, AtMost(DISPATCH_LEVEL);
        ExDeleteLookasideListEx => crate::ntoskrnl::lookaside::ex_delete_lookaside_list_ex, AtMost(DISPATCH_LEVEL);
        ExAcquireFastMutex => crate::ntoskrnl::fast_mutex::ex_acquire_fast_mutex, AtMost(APC_LEVEL);
        ExTryToAcquireFastMutex => crate::ntoskrnl::fast_mutex::ex_try_to_acquire_fast_mutex, AtMost(APC_LEVEL);
        ExReleaseFastMutex => crate::ntoskrnl::fast_mutex::ex_release_fast_mutex, Exactly(APC_LEVEL);
    }
    variables {
        PsThreadType => (&raw const PS_THREAD_TYPE) as usize;
        MmUserProbeAddress => (&raw const MM_USER_PROBE) as usize;
    }
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
