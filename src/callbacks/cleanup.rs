//! `IRP_MJ_CLEANUP`: "closed after modification" for a handle that wrote (its context says
//! so). PASSIVE_LEVEL.

use vigil_protocol::EventKind;
use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_PREOP_CALLBACK_STATUS, FLT_PREOP_SUCCESS_NO_CALLBACK,
    FLT_RELATED_OBJECTS, PVOID, STATUS_SUCCESS,
};

use crate::callbacks::{EventName, admit, requestor};
use crate::events::{EventFacts, publish};
use crate::filter::context::HandleContext;

/// Pre-cleanup: the handle is closing; if it wrote, report `CloseModified`.
///
/// # Safety
///
/// Called only by FltMgr, as the pre-operation callback registered for `IRP_MJ_CLEANUP` in
/// `OPERATIONS`, with `data` and `objects` valid for the call and `completion` a valid
/// completion-context slot (or null), at the IRQL FltMgr calls it at for that operation.
pub unsafe extern "win64" fn pre_cleanup(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    _completion: *mut PVOID,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let (globals, operation) = admitted.parts();
    if operation.file_object().is_null() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    let Some(context) = HandleContext::get(operation.instance(), operation.file_object())
        .filter(HandleContext::has_written)
    else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let Some(who) = requestor(globals, operation) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    // `wrong-irql`: the name query made at DISPATCH_LEVEL, under a spin lock (the IRQL check of
    // FltGetFileNameInformation, limit APC_LEVEL). A cfg: the lock exists only in that twin.
    #[cfg(vigil_twin = "wrong-irql")]
    let _raised = globals.twin_lock.lock();
    let name = EventName::cached_or_query(globals, operation, &context);
    publish(
        globals,
        &EventFacts {
            kind: EventKind::CloseModified,
            flags: name.flags,
            status: STATUS_SUCCESS,
            process_id: who.process_id,
            thread_id: who.thread_id,
            volume_id: context.state().volume_id,
            desired_access: 0,
            create_disposition: 0,
            information: 0,
            path: name.units(),
            target: &[],
            file_id: context.state().file_id,
        },
    );
    crate::twins::corrupt_pre_cleanup_return(FLT_PREOP_SUCCESS_NO_CALLBACK)
}
