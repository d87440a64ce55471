//! `FLTMGR.SYS`'s export table: every routine kernel-sim emulates for it, by the name a driver
//! imports, with the address the loader binds. To add a routine: write its `extern "win64"`
//! emulation in the file of its family (through [`emulate`](crate::kernel::emulate)), then add
//! one line here.

use crate::fltmgr;
use crate::kernel::Export;

/// The table.
pub(crate) const EXPORTS: &[Export] = &[
    ("FltRegisterFilter", || {
        fltmgr::registration::flt_register_filter as *const () as usize
    }),
    ("FltStartFiltering", || {
        fltmgr::registration::flt_start_filtering as *const () as usize
    }),
    ("FltUnregisterFilter", || {
        fltmgr::registration::flt_unregister_filter as *const () as usize
    }),
    ("FltBuildDefaultSecurityDescriptor", || {
        fltmgr::security::flt_build_default_security_descriptor as *const () as usize
    }),
    ("FltFreeSecurityDescriptor", || {
        fltmgr::security::flt_free_security_descriptor as *const () as usize
    }),
    ("FltCreateCommunicationPort", || {
        fltmgr::ports::flt_create_communication_port as *const () as usize
    }),
    ("FltCloseCommunicationPort", || {
        fltmgr::ports::flt_close_communication_port as *const () as usize
    }),
    ("FltCloseClientPort", || {
        fltmgr::ports::flt_close_client_port as *const () as usize
    }),
    ("FltSendMessage", || {
        fltmgr::ports::flt_send_message as *const () as usize
    }),
    ("FltGetFileNameInformation", || {
        fltmgr::names::flt_get_file_name_information as *const () as usize
    }),
    ("FltGetDestinationFileNameInformation", || {
        fltmgr::names::flt_get_destination_file_name_information as *const () as usize
    }),
    ("FltReleaseFileNameInformation", || {
        fltmgr::names::flt_release_file_name_information as *const () as usize
    }),
    ("FltGetRequestorProcessId", || {
        fltmgr::files::flt_get_requestor_process_id as *const () as usize
    }),
    ("FltAllocateContext", || {
        fltmgr::contexts::flt_allocate_context as *const () as usize
    }),
    ("FltSetStreamHandleContext", || {
        fltmgr::contexts::flt_set_stream_handle_context as *const () as usize
    }),
    ("FltGetStreamHandleContext", || {
        fltmgr::contexts::flt_get_stream_handle_context as *const () as usize
    }),
    ("FltReleaseContext", || {
        fltmgr::contexts::flt_release_context as *const () as usize
    }),
    ("FltInitializePushLock", || {
        fltmgr::pushlock::flt_initialize_push_lock as *const () as usize
    }),
    ("FltDeletePushLock", || {
        fltmgr::pushlock::flt_delete_push_lock as *const () as usize
    }),
    ("FltAcquirePushLockExclusive", || {
        fltmgr::pushlock::flt_acquire_push_lock_exclusive as *const () as usize
    }),
    ("FltAcquirePushLockShared", || {
        fltmgr::pushlock::flt_acquire_push_lock_shared as *const () as usize
    }),
    ("FltReleasePushLock", || {
        fltmgr::pushlock::flt_release_push_lock as *const () as usize
    }),
];
