//! `IRP_MJ_WRITE`: the first write through each handle (a stream-handle context marks it).
//! IRQL <= APC_LEVEL (non-paging writes; paging I/O is skipped at registration).

use vigil_protocol::EventKind;
use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_PREOP_CALLBACK_STATUS, FLT_PREOP_SUCCESS_NO_CALLBACK,
    FLT_RELATED_OBJECTS, PVOID, STATUS_PENDING,
};

use crate::callbacks::{EventName, admit, requestor};
use crate::events::{EventFacts, publish};
use crate::filter::context::{HandleContext, MarkOutcome};
use crate::filter::file_id::FileId;
use crate::filter::operation::Operation;
use crate::globals::Globals;
use crate::stats::bump;
use crate::twins::{self, Twin};

/// Pre-write: reports `FirstWrite` once per handle, as the write is issued (its status field is
/// `STATUS_PENDING`: the write has not completed). Never needs a post-operation callback.
///
/// # Safety
///
/// Called only by FltMgr, as the pre-operation callback registered for `IRP_MJ_WRITE` in
/// `OPERATIONS`, with `data` and `objects` valid for the call and `completion` a valid
/// completion-context slot (or null), at the IRQL FltMgr calls it at for that operation.
pub unsafe extern "win64" fn pre_write(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    _completion: *mut PVOID,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    // `unadmitted-callback` ends its admission at once: unload may then tear down while this
    // callback runs.
    if twins::is(Twin::UnadmittedCallback) {
        admitted.twin_end_admission();
    }
    let (globals, operation) = admitted.parts();
    if operation.is_paging_io() || operation.file_object().is_null() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    let Some(who) = requestor(globals, operation) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    // The common case: the handle's context, attached at its open, with its file ID and name.
    let mut context = HandleContext::get(operation.instance(), operation.file_object());
    let outcome = context.as_ref().map(HandleContext::mark_written_now);
    if twins::is(Twin::ContextLeak) && matches!(outcome, Some(MarkOutcome::AlreadyWritten)) {
        // The broken twin keeps the reference forever (the context-leak check).
        core::mem::forget(context.take());
    }
    let (volume_id, file_id) = match (&context, outcome) {
        (Some(context), Some(MarkOutcome::FirstWrite)) => {
            (context.state().volume_id, context.state().file_id)
        }
        (Some(_), _) | (None, Some(_)) => return FLT_PREOP_SUCCESS_NO_CALLBACK,
        (None, None) => match first_write_without_context(globals, operation) {
            Some(volume_id) => (volume_id, FileId::default()),
            None => return FLT_PREOP_SUCCESS_NO_CALLBACK,
        },
    };
    let name = match &context {
        Some(context) => EventName::cached_or_query(globals, operation, context),
        None => EventName::of(globals, operation),
    };
    publish(
        globals,
        &EventFacts {
            kind: EventKind::FirstWrite,
            flags: name.flags,
            status: STATUS_PENDING,
            process_id: who.process_id,
            thread_id: who.thread_id,
            volume_id,
            desired_access: 0,
            create_disposition: 0,
            information: 0,
            path: name.units(),
            target: &[],
            file_id,
        },
    );
    FLT_PREOP_SUCCESS_NO_CALLBACK
}

/// A handle whose open attached no context (its allocation failed, or it was opened before the
/// instance attached): attaches one now; the volume id when this is its first write.
fn first_write_without_context(globals: &Globals, operation: &Operation<'_>) -> Option<u32> {
    let volume_id = globals.volumes.id_of(operation.volume());
    match HandleContext::mark_written(
        operation.filter(),
        operation.instance(),
        operation.file_object(),
        volume_id,
    ) {
        Ok(MarkOutcome::FirstWrite) => Some(volume_id),
        Ok(MarkOutcome::AlreadyWritten) => None,
        Err(_) => {
            // No context, no way to report this handle's writes once: the first-write event is
            // generated and dropped for want of memory, so generated = delivered + dropped holds.
            bump(&globals.counters.allocation_failures);
            globals
                .counters
                .events_generated
                .bump(crate::kernel::thread::current_thread_id());
            bump(&globals.counters.dropped_no_memory);
            None
        }
    }
}
