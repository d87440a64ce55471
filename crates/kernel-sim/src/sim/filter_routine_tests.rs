//! Driver-independent tests of the routines added for minifilters other than Vigil (MDLs,
//! device-aligned pool, work items, pending, filter I/O, rundown references, contexts): each
//! plays the driver from Rust inside a real driver call and asserts what the verifier records
//! and what the routine answers, for the misuses no C minifilter of `tests/minifilters` makes.

use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{
    FLT_PREOP_PENDING, FLT_PREOP_SUCCESS_NO_CALLBACK, MDL, MDL_SOURCE_IS_NONPAGED_POOL,
    POOL_FLAG_NON_PAGED, PVOID, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER,
};

use crate::config::{PoolKind, SimConfig};
use crate::fltmgr::{contexts, filter_io, pending, volume_objects, workitems};
use crate::image::symbols::Symbols;
use crate::kernel::{Kernel, lock};
use crate::machine::guest;
use crate::machine::pool::AllocRequest;
use crate::machine::state::ImageBounds;
use crate::ntoskrnl::{mdl, pool};
use crate::report::ViolationKind;

const TAG: u32 = u32::from_le_bytes(*b"Test");

fn kernel(pool: PoolKind) -> Arc<Kernel> {
    Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(2),
            pool,
            ..SimConfig::default()
        },
        "test.sys".into(),
        ImageBounds::EMPTY,
        Vec::new(),
        Symbols::default(),
    )
}

/// Each violation's kind and rule.
fn found(k: &Kernel) -> Vec<(ViolationKind, String)> {
    k.violations()
        .into_iter()
        .map(|v| (v.kind, v.rule))
        .collect()
}

#[test]
fn an_mdl_over_nonpaged_pool_describes_and_maps_its_buffer_and_is_freed_once() {
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        let buffer = pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED, 700, TAG);
        let m = mdl::io_allocate_mdl(buffer, 700, 0, 0, std::ptr::null_mut());
        assert!(!m.is_null());
        mdl::mm_build_mdl_for_non_paged_pool(m.cast());
        let value = guest::read(m.cast::<MDL>());
        assert_eq!(value.ByteCount, 700);
        assert_eq!(
            value.StartVa as usize + value.ByteOffset as usize,
            buffer as usize
        );
        assert_eq!(value.StartVa as usize % 4096, 0);
        assert_eq!(value.MappedSystemVa, buffer);
        assert_ne!(value.MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL, 0);
        mdl::io_free_mdl(m);
        mdl::io_free_mdl(m);
        pool::ex_free_pool_with_tag(buffer, TAG);
    })
    .expect("returned");
    assert_eq!(
        found(&k),
        [(
            ViolationKind::PoolDoubleFree,
            "IoFreeMdl: an MDL from IoAllocateMdl, freed once".to_owned()
        )]
    );
}

#[test]
fn an_mdl_over_memory_outside_nonpaged_pool_is_reported_and_a_leaked_one_too() {
    let k = kernel(PoolKind::Special);
    let on_stack = [0u8; 64];
    k.call_driver("test", Some(0), || {
        let m = mdl::io_allocate_mdl(on_stack.as_ptr() as PVOID, 64, 0, 0, std::ptr::null_mut());
        mdl::mm_build_mdl_for_non_paged_pool(m.cast());
    })
    .expect("returned");
    mdl::report_leaks(&k, "the test");
    let rules: Vec<String> = found(&k).into_iter().map(|(_, rule)| rule).collect();
    assert_eq!(
        rules,
        [
            "MmBuildMdlForNonPagedPool: an MDL whose buffer is in nonpaged pool",
            "every MDL is freed (IoFreeMdl) or left to the I/O operation that completes it",
        ]
    );
}

#[test]
fn device_aligned_blocks_are_aligned_and_freed_only_by_their_own_routine() {
    for kind in [PoolKind::Special, PoolKind::Standard] {
        let k = kernel(kind);
        k.call_driver("test", Some(0), || {
            let request = AllocRequest {
                size: 700,
                tag: TAG,
                zeroed: false,
                paged: false,
                irql: 0,
                callback: "test",
                during_entry: false,
                align: 512,
                device_aligned: true,
            };
            let block = lock(&k.pool).allocate(&request).expect("allocated");
            assert_eq!(block % 512, 0, "{kind:?}");
            pool::free_block(&k, "ExFreePool", block as PVOID, None);
            let plain = pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED, 16, TAG);
            pool::free_block(&k, "FltFreePoolAlignedWithTag", plain, Some(TAG));
        })
        .expect("returned");
        let rules: Vec<String> = found(&k).into_iter().map(|(_, rule)| rule).collect();
        assert_eq!(
            rules,
            [
                "ExFreePool: a block of the allocator it pairs with",
                "FltFreePoolAlignedWithTag: a block of the allocator it pairs with",
            ],
            "{kind:?}"
        );
    }
}

#[test]
fn work_items_are_queued_for_a_filter_or_instance_and_freed_once() {
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        let item = workitems::flt_allocate_generic_work_item();
        assert!(!item.is_null());
        // No filter is registered: 0x1000 is neither a filter nor an instance.
        let status = workitems::flt_queue_generic_work_item(
            item,
            0x1000 as PVOID,
            None,
            1,
            std::ptr::null_mut(),
        );
        assert_eq!(status, STATUS_INVALID_PARAMETER);
        // A deferred-I/O item is not a generic one.
        let deferred = workitems::flt_allocate_deferred_io_work_item();
        workitems::flt_free_generic_work_item(deferred);
        workitems::flt_free_deferred_io_work_item(deferred);
        workitems::flt_free_generic_work_item(item);
        workitems::flt_free_generic_work_item(item);
    })
    .expect("returned");
    let rules: Vec<String> = found(&k).into_iter().map(|(_, rule)| rule).collect();
    assert_eq!(
        rules,
        [
            "FltQueueGenericWorkItem: FltObject is the caller's filter (PFLT_FILTER) or instance (PFLT_INSTANCE)",
            "FltFreeGenericWorkItem: FltWorkItem allocated by FltAllocateGenericWorkItem, freed once, not while queued",
            "FltFreeGenericWorkItem: FltWorkItem allocated by FltAllocateGenericWorkItem, freed once, not while queued",
        ]
    );
}

#[test]
fn completing_what_was_not_pended_and_pending_statuses_are_reported() {
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        let data = 0x2000 as *mut vigil_sys::FLT_CALLBACK_DATA;
        pending::flt_complete_pended_pre_operation(
            data,
            FLT_PREOP_SUCCESS_NO_CALLBACK,
            std::ptr::null_mut(),
        );
        pending::flt_complete_pended_pre_operation(data, FLT_PREOP_PENDING, 0x10 as PVOID);
        pending::flt_complete_pended_post_operation(data);
    })
    .expect("returned");
    let rules: Vec<String> = found(&k).into_iter().map(|(_, rule)| rule).collect();
    assert_eq!(
        rules,
        [
            "FltCompletePendedPreOperation: the callback data of an operation its pre-operation callback pended",
            "FltCompletePendedPreOperation: CallbackStatus FLT_PREOP_COMPLETE, FLT_PREOP_SUCCESS_NO_CALLBACK or FLT_PREOP_SUCCESS_WITH_CALLBACK",
            "FltCompletePendedPreOperation: Context NULL unless CallbackStatus is FLT_PREOP_SUCCESS_WITH_CALLBACK",
            "FltCompletePendedPreOperation: the callback data of an operation its pre-operation callback pended",
            "FltCompletePendedPostOperation: the callback data of an operation its post-operation callback pended",
        ]
    );
}

#[test]
fn closing_an_unknown_handle_and_dereferencing_what_was_never_referenced_are_reported() {
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        assert_eq!(filter_io::flt_close(0x1234 as PVOID), STATUS_INVALID_HANDLE);
        volume_objects::flt_object_dereference(0x3000 as PVOID);
        contexts::flt_reference_context(0x4000 as PVOID);
    })
    .expect("returned");
    assert_eq!(
        found(&k),
        [
            (
                ViolationKind::InvalidHandle,
                "FltClose: a handle from FltCreateFile or FltCreateFileEx, closed once".to_owned()
            ),
            (
                ViolationKind::OverRelease,
                "FltObjectDereference: one dereference per rundown reference".to_owned()
            ),
            (
                ViolationKind::Parameter,
                "FltReferenceContext: a live context".to_owned()
            ),
        ]
    );
}

#[test]
fn routine_addresses_come_from_the_export_tables_and_unknown_names_are_reported() {
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        let known = guest::GuestUnicode::new("ExAllocatePool2");
        assert_eq!(
            crate::ntoskrnl::system_routine::mm_get_system_routine_address(known.as_ptr()) as usize,
            pool::ex_allocate_pool2 as *const () as usize
        );
        let unknown = guest::GuestUnicode::new("KeNotARoutineOfKernelSim");
        assert!(
            crate::ntoskrnl::system_routine::mm_get_system_routine_address(unknown.as_ptr())
                .is_null()
        );
        assert_eq!(
            crate::fltmgr::routine_address::flt_get_routine_address(
                c"FltGetIrpName".as_ptr().cast()
            ) as usize,
            crate::fltmgr::irp_names::flt_get_irp_name as *const () as usize
        );
    })
    .expect("returned");
    assert_eq!(
        found(&k),
        [(
            ViolationKind::NotEmulated,
            "ntoskrnl.exe routines kernel-sim does not emulate cannot be looked up".to_owned()
        )]
    );
}

#[test]
fn resources_are_owned_recursively_released_by_owners_and_deleted_before_their_memory_goes() {
    use crate::ntoskrnl::{resource, sync};
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        let storage = pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED, 0x68, TAG);
        assert_eq!(resource::ex_initialize_resource_lite(storage), 0);
        sync::ke_enter_critical_region();
        assert_eq!(resource::ex_acquire_resource_exclusive_lite(storage, 1), 1);
        // Its exclusive owner gets it again, shared or exclusive, recursively.
        assert_eq!(resource::ex_acquire_resource_shared_lite(storage, 0), 1);
        assert_eq!(resource::ex_acquire_resource_exclusive_lite(storage, 0), 1);
        for _ in 0..3 {
            resource::ex_release_resource_lite(storage);
        }
        // A fourth release: the thread owns it no more.
        resource::ex_release_resource_lite(storage);
        assert_eq!(resource::ex_acquire_resource_shared_lite(storage, 0), 1);
        // Deleting an owned resource is refused.
        resource::ex_delete_resource_lite(storage);
        resource::ex_release_resource_lite(storage);
        sync::ke_leave_critical_region();
        // Freed without ExDeleteResourceLite.
        pool::ex_free_pool_with_tag(storage, TAG);
        // And one never deleted at all, outside pool.
        let global = Box::leak(Box::new([0u64; 13]));
        resource::ex_initialize_resource_lite(global.as_mut_ptr().cast());
    })
    .expect("returned");
    resource::report_leaks(&k, "the test");
    let rules: Vec<String> = found(&k).into_iter().map(|(_, rule)| rule).collect();
    assert_eq!(
        rules,
        [
            "ExReleaseResourceLite: a resource owned by the current thread",
            "ExDeleteResourceLite: a resource nobody owns",
            "ExFreePoolWithTag: ExDeleteResourceLite before the memory of a resource is freed",
            "every resource is deleted (ExDeleteResourceLite) before the driver is gone",
        ]
    );
}

#[test]
fn a_resource_acquired_with_kernel_apcs_enabled_is_reported() {
    use crate::ntoskrnl::resource;
    let k = kernel(PoolKind::Special);
    k.call_driver("test", Some(0), || {
        let storage = pool::ex_allocate_pool2(POOL_FLAG_NON_PAGED, 0x68, TAG);
        resource::ex_initialize_resource_lite(storage);
        resource::ex_acquire_resource_exclusive_lite(storage, 1);
        resource::ex_release_resource_lite(storage);
        resource::ex_delete_resource_lite(storage);
        pool::ex_free_pool_with_tag(storage, TAG);
    })
    .expect("returned");
    let kinds: Vec<ViolationKind> = found(&k).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(
        kinds,
        [
            ViolationKind::CallbackContract,
            ViolationKind::CallbackContract
        ]
    );
}
