//! `FLTMGR.SYS`'s routines, declared once each: name (as a driver imports it), handler, IRQL
//! rule (the `IRQL` row of its reference page). From this table come the [`Routine`] enum the
//! handlers pass to [`emulate`](crate::kernel::emulate) and the export table the loader binds
//! ([`EXPORTS`]); its indices follow ntoskrnl's. To add a routine: write its `extern "win64"`
//! emulation in the file of its family, then add one line here.

use vigil_sys::{APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};

use crate::fltmgr::{cancel, contexts, files, names, ports, pushlock, registration, security};
use crate::kernel::IrqlRule::AtMost;
use crate::kernel::routine::routines;
use crate::ntoskrnl::exports::Routine as NtRoutine;

routines! {
    /// The `FLTMGR.SYS` routines kernel-sim emulates.
    // No `expect(clippy::enum_variant_names)`: the variants keep their exported names
    // (`Flt...`), but clippy stopped reporting the shared prefix once the filter-issued I/O
    // routines (issue 18, `FltCreateFileEx2` among them) joined the table.
    first NtRoutine::END;
    routines {
        FltRegisterFilter => registration::flt_register_filter, AtMost(APC_LEVEL);
        FltStartFiltering => registration::flt_start_filtering, AtMost(APC_LEVEL);
        // FltUnregisterFilter, FltBuildDefaultSecurityDescriptor, FltFreeSecurityDescriptor,
        // FltGetDestinationFileNameInformation: IRQL <= APC_LEVEL, as their pages' IRQL rows say.
        FltUnregisterFilter => registration::flt_unregister_filter, AtMost(APC_LEVEL);
        FltBuildDefaultSecurityDescriptor => security::flt_build_default_security_descriptor, AtMost(APC_LEVEL);
        FltFreeSecurityDescriptor => security::flt_free_security_descriptor, AtMost(APC_LEVEL);
        FltCreateCommunicationPort => ports::flt_create_communication_port, AtMost(PASSIVE_LEVEL);
        FltCloseCommunicationPort => ports::flt_close_communication_port, AtMost(PASSIVE_LEVEL);
        FltCloseClientPort => ports::flt_close_client_port, AtMost(PASSIVE_LEVEL);
        FltSendMessage => ports::flt_send_message, AtMost(APC_LEVEL);
        FltGetFileNameInformation => names::flt_get_file_name_information, AtMost(APC_LEVEL);
        FltGetDestinationFileNameInformation => names::flt_get_destination_file_name_information, AtMost(APC_LEVEL);
        FltReleaseFileNameInformation => names::flt_release_file_name_information, AtMost(APC_LEVEL);
        FltGetRequestorProcessId => files::flt_get_requestor_process_id, AtMost(DISPATCH_LEVEL);
        FltCancelFileOpen => cancel::flt_cancel_file_open, AtMost(PASSIVE_LEVEL);
        FltAllocateContext => contexts::flt_allocate_context, AtMost(APC_LEVEL);
        FltSetStreamHandleContext => contexts::flt_set_stream_handle_context, AtMost(APC_LEVEL);
        FltGetStreamHandleContext => contexts::flt_get_stream_handle_context, AtMost(APC_LEVEL);
        // <= DISPATCH_LEVEL; a paged context's release is checked for <= APC_LEVEL in the handler.
        FltReleaseContext => contexts::flt_release_context, AtMost(DISPATCH_LEVEL);
        FltInitializePushLock => pushlock::flt_initialize_push_lock, AtMost(APC_LEVEL);
        FltDeletePushLock => pushlock::flt_delete_push_lock, AtMost(APC_LEVEL);
        FltAcquirePushLockExclusive => pushlock::flt_acquire_push_lock_exclusive, AtMost(APC_LEVEL);
        FltAcquirePushLockShared => pushlock::flt_acquire_push_lock_shared, AtMost(APC_LEVEL);
        FltReleasePushLock => pushlock::flt_release_push_lock, AtMost(APC_LEVEL);
        FltAcquirePushLockExclusiveEx => pushlock::flt_acquire_push_lock_exclusive_ex, AtMost(APC_LEVEL);
        FltAcquirePushLockSharedEx => pushlock::flt_acquire_push_lock_shared_ex, AtMost(APC_LEVEL);
        FltReleasePushLockEx => pushlock::flt_release_push_lock_ex, AtMost(APC_LEVEL);
        // Any IRQL (its page's IRQL row).
        FltGetIrpName => crate::fltmgr::irp_names::flt_get_irp_name, crate::kernel::IrqlRule::Any;
        FltSetInstanceContext => crate::fltmgr::instance_contexts::flt_set_instance_context, AtMost(APC_LEVEL);
        FltGetInstanceContext => crate::fltmgr::instance_contexts::flt_get_instance_context, AtMost(APC_LEVEL);
        // FltAllocateGenericWorkItem, FltQueueGenericWorkItem, FltFreeGenericWorkItem:
        // <= DISPATCH_LEVEL.
        FltAllocateGenericWorkItem => crate::fltmgr::workitems::flt_allocate_generic_work_item, AtMost(DISPATCH_LEVEL);
        FltQueueGenericWorkItem => crate::fltmgr::workitems::flt_queue_generic_work_item, AtMost(DISPATCH_LEVEL);
        FltFreeGenericWorkItem => crate::fltmgr::workitems::flt_free_generic_work_item, AtMost(DISPATCH_LEVEL);
        FltAllocateDeferredIoWorkItem => crate::fltmgr::workitems::flt_allocate_deferred_io_work_item, AtMost(DISPATCH_LEVEL);
        FltQueueDeferredIoWorkItem => crate::fltmgr::workitems::flt_queue_deferred_io_work_item, AtMost(DISPATCH_LEVEL);
        FltFreeDeferredIoWorkItem => crate::fltmgr::workitems::flt_free_deferred_io_work_item, AtMost(DISPATCH_LEVEL);
        // <= DISPATCH_LEVEL with FLT_PREOP_COMPLETE, else <= APC_LEVEL (checked in the handler).
        FltCompletePendedPreOperation => crate::fltmgr::pending::flt_complete_pended_pre_operation, AtMost(DISPATCH_LEVEL);
        FltCompletePendedPostOperation => crate::fltmgr::pending::flt_complete_pended_post_operation, AtMost(DISPATCH_LEVEL);
        // Any IRQL (its page's IRQL row).
        FltDoCompletionProcessingWhenSafe => crate::fltmgr::safe_completion::flt_do_completion_processing_when_safe, crate::kernel::IrqlRule::Any;
        FltCreateFile => crate::fltmgr::filter_io::flt_create_file, AtMost(PASSIVE_LEVEL);
        FltCreateFileEx => crate::fltmgr::filter_io::flt_create_file_ex, AtMost(PASSIVE_LEVEL);
        FltReadFile => crate::fltmgr::filter_io::flt_read_file, AtMost(PASSIVE_LEVEL);
        FltClose => crate::fltmgr::filter_io::flt_close, AtMost(PASSIVE_LEVEL);
        // Paged types <= APC_LEVEL (checked in the handler).
        FltAllocatePoolAlignedWithTag => crate::fltmgr::aligned_pool::flt_allocate_pool_aligned_with_tag, AtMost(DISPATCH_LEVEL);
        FltFreePoolAlignedWithTag => crate::fltmgr::aligned_pool::flt_free_pool_aligned_with_tag, AtMost(DISPATCH_LEVEL);
        FltSetCallbackDataDirty => crate::fltmgr::dirty::flt_set_callback_data_dirty, crate::kernel::IrqlRule::Any;
        FltGetVolumeFromInstance => crate::fltmgr::volume_objects::flt_get_volume_from_instance, AtMost(APC_LEVEL);
        FltGetVolumeProperties => crate::fltmgr::volume_objects::flt_get_volume_properties, AtMost(APC_LEVEL);
        FltObjectDereference => crate::fltmgr::volume_objects::flt_object_dereference, AtMost(DISPATCH_LEVEL);
        FltIsVolumeWritable => crate::fltmgr::volume_objects::flt_is_volume_writable, AtMost(PASSIVE_LEVEL);
        FltGetFileSystemType => crate::fltmgr::volume_objects::flt_get_file_system_type, AtMost(APC_LEVEL);
        FltSetVolumeContext => crate::fltmgr::volume_contexts::flt_set_volume_context, AtMost(APC_LEVEL);
        FltGetVolumeContext => crate::fltmgr::volume_contexts::flt_get_volume_context, AtMost(APC_LEVEL);
        FltReferenceContext => crate::fltmgr::contexts::flt_reference_context, AtMost(DISPATCH_LEVEL);
        FltSetStreamContext => crate::fltmgr::stream_contexts::flt_set_stream_context, AtMost(APC_LEVEL);
        FltGetStreamContext => crate::fltmgr::stream_contexts::flt_get_stream_context, AtMost(APC_LEVEL);
        FltSetFileContext => crate::fltmgr::stream_contexts::flt_set_file_context, AtMost(APC_LEVEL);
        FltGetFileContext => crate::fltmgr::stream_contexts::flt_get_file_context, AtMost(APC_LEVEL);
        FltGetRoutineAddress => crate::fltmgr::routine_address::flt_get_routine_address, AtMost(PASSIVE_LEVEL);
        FltGetVolumeName => crate::fltmgr::volume_names::flt_get_volume_name, AtMost(APC_LEVEL);
        FltGetVolumeGuidName => crate::fltmgr::volume_names::flt_get_volume_guid_name, AtMost(PASSIVE_LEVEL);
        FltQueryInformationFile => crate::fltmgr::query_information::flt_query_information_file, AtMost(PASSIVE_LEVEL);
        // Context deletion, disk device objects, FltDetachVolume, transactions (issue 18)
        FltDeleteContext => crate::fltmgr::context_deletion::flt_delete_context, AtMost(APC_LEVEL);
        FltDeleteInstanceContext => crate::fltmgr::context_deletion::flt_delete_instance_context, AtMost(APC_LEVEL);
        FltDeleteVolumeContext => crate::fltmgr::context_deletion::flt_delete_volume_context, AtMost(APC_LEVEL);
        FltDeleteStreamContext => crate::fltmgr::context_deletion::flt_delete_stream_context, AtMost(APC_LEVEL);
        FltDeleteFileContext => crate::fltmgr::context_deletion::flt_delete_file_context, AtMost(APC_LEVEL);
        FltDeleteStreamHandleContext => crate::fltmgr::context_deletion::flt_delete_stream_handle_context, AtMost(APC_LEVEL);
        FltGetDiskDeviceObject => crate::fltmgr::disk_devices::flt_get_disk_device_object, AtMost(DISPATCH_LEVEL);
        FltDetachVolume => crate::fltmgr::volume_detach::flt_detach_volume, AtMost(APC_LEVEL);
        FltSetTransactionContext => crate::fltmgr::transactions::flt_set_transaction_context, AtMost(APC_LEVEL);
        FltGetTransactionContext => crate::fltmgr::transactions::flt_get_transaction_context, AtMost(APC_LEVEL);
        FltDeleteTransactionContext => crate::fltmgr::transactions::flt_delete_transaction_context, AtMost(APC_LEVEL);
        FltEnlistInTransaction => crate::fltmgr::transactions::flt_enlist_in_transaction, AtMost(APC_LEVEL);
        FltRollbackEnlistment => crate::fltmgr::transactions::flt_rollback_enlistment, AtMost(APC_LEVEL);
        // Names (issue 18)
        FltParseFileNameInformation => crate::fltmgr::name_parse::flt_parse_file_name_information, AtMost(APC_LEVEL);
        FltGetFileNameInformationUnsafe => crate::fltmgr::name_unsafe::flt_get_file_name_information_unsafe, AtMost(APC_LEVEL);
        FltCheckAndGrowNameControl => crate::fltmgr::name_provider::flt_check_and_grow_name_control, AtMost(APC_LEVEL);
        FltGetTunneledName => crate::fltmgr::name_tunnel::flt_get_tunneled_name, AtMost(APC_LEVEL);
        FltPurgeFileNameInformationCache => crate::fltmgr::name_provider::flt_purge_file_name_information_cache, AtMost(APC_LEVEL);
        FltParseFileName => crate::fltmgr::name_parse::flt_parse_file_name, AtMost(APC_LEVEL);
        // I/O issued by the filter (issue 18): IRQL rows of their pages. FltPerformAsynchronousIo
        // is PASSIVE_LEVEL unless the I/O is paging I/O (checked in the handler).
        FltCreateFileEx2 => crate::fltmgr::filter_io::flt_create_file_ex2, AtMost(PASSIVE_LEVEL);
        FltSetInformationFile => crate::fltmgr::set_information::flt_set_information_file, AtMost(PASSIVE_LEVEL);
        FltFsControlFile => crate::fltmgr::fs_control::flt_fs_control_file, AtMost(PASSIVE_LEVEL);
        FltAllocateCallbackData => crate::fltmgr::callback_data::flt_allocate_callback_data, AtMost(APC_LEVEL);
        FltPerformSynchronousIo => crate::fltmgr::callback_data::flt_perform_synchronous_io, AtMost(APC_LEVEL);
        FltPerformAsynchronousIo => crate::fltmgr::callback_data::flt_perform_asynchronous_io, AtMost(APC_LEVEL);
        FltReuseCallbackData => crate::fltmgr::callback_data::flt_reuse_callback_data, AtMost(APC_LEVEL);
        FltFreeCallbackData => crate::fltmgr::callback_data::flt_free_callback_data, AtMost(DISPATCH_LEVEL);
        FltCancelIo => crate::fltmgr::callback_data::flt_cancel_io, AtMost(DISPATCH_LEVEL);
        FltIsIoCanceled => crate::fltmgr::callback_data::flt_is_io_canceled, crate::kernel::IrqlRule::Any;
        // Cancel-safe queues and cancel routines (issue 18): FltCbdqInitialize and
        // FltClearCancelCompletion any IRQL; the others <= DISPATCH_LEVEL (<= APC_LEVEL when the
        // queue's lock is a mutex or resource: the driver's lock routines answer for that).
        FltCbdqInitialize => crate::fltmgr::cbdq::flt_cbdq_initialize, crate::kernel::IrqlRule::Any;
        FltCbdqInsertIo => crate::fltmgr::cbdq::flt_cbdq_insert_io, AtMost(DISPATCH_LEVEL);
        FltCbdqRemoveIo => crate::fltmgr::cbdq::flt_cbdq_remove_io, AtMost(DISPATCH_LEVEL);
        FltCbdqRemoveNextIo => crate::fltmgr::cbdq::flt_cbdq_remove_next_io, AtMost(DISPATCH_LEVEL);
        FltCbdqDisable => crate::fltmgr::cbdq::flt_cbdq_disable, AtMost(DISPATCH_LEVEL);
        FltCbdqEnable => crate::fltmgr::cbdq::flt_cbdq_enable, AtMost(DISPATCH_LEVEL);
        FltSetCancelCompletion => crate::fltmgr::cbdq::flt_set_cancel_completion, AtMost(DISPATCH_LEVEL);
        FltClearCancelCompletion => crate::fltmgr::cbdq::flt_clear_cancel_completion, crate::kernel::IrqlRule::Any;
        // Operation requests (issue 18)
        FltLockUserBuffer => crate::fltmgr::operation_requests::flt_lock_user_buffer, AtMost(APC_LEVEL);
        FltRequestOperationStatusCallback => crate::fltmgr::operation_requests::flt_request_operation_status_callback, AtMost(APC_LEVEL);
    }
}
