//! `IRP_MJ_CREATE`: verdicts for protected paths (pre), the open event (post). PASSIVE_LEVEL.

use vigil_protocol::{EventFlags, EventKind, Verdict, VerdictOperation};
use vigil_sys::{
    FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FLT_CALLBACK_DATA, FLT_POSTOP_CALLBACK_STATUS,
    FLT_POSTOP_FINISHED_PROCESSING, FLT_PREOP_CALLBACK_STATUS, FLT_PREOP_COMPLETE,
    FLT_PREOP_SUCCESS_NO_CALLBACK, FLT_PREOP_SUCCESS_WITH_CALLBACK, FLT_RELATED_OBJECTS,
    FLTFL_POST_OPERATION_DRAINING, NT_SUCCESS, PVOID, STATUS_ACCESS_DENIED, STATUS_REPARSE,
};

use crate::callbacks::{EventName, admit, requestor};
use crate::events::{EventFacts, publish};
use crate::filter::name::FileName;
use crate::filter::operation::Operation;
use crate::globals::Globals;
use crate::protection;
use crate::stats::bump;
use crate::twins::{self, Twin};
use crate::verdict::{Question, decide, default_verdict};

/// Pre-create: asks for a verdict when the path is protected; denies with
/// `STATUS_ACCESS_DENIED`. Always asks for the post-create callback otherwise.
///
/// # Safety
///
/// Called only by FltMgr, as the pre-operation callback registered for `IRP_MJ_CREATE` in
/// `OPERATIONS`, with `data` and `objects` valid for the call and `completion` a valid
/// completion-context slot (or null), at the IRQL FltMgr calls it at for that operation.
pub unsafe extern "win64" fn pre_create(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    _completion: *mut PVOID,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let (globals, operation) = admitted.parts();
    let Some(who) = requestor(globals, operation) else {
        // The service's own I/O: no event, no verdict.
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if globals.prefixes.any()
        && verdict_for_create(globals, operation, who.process_id) == Verdict::Deny
    {
        operation.complete_with(STATUS_ACCESS_DENIED);
        return FLT_PREOP_COMPLETE;
    }
    FLT_PREOP_SUCCESS_WITH_CALLBACK
}

fn verdict_for_create(
    globals: &Globals,
    operation: &mut Operation<'_>,
    process_id: u64,
) -> Verdict {
    // SAFETY: for IRP_MJ_CREATE the Create member of the parameter union is the valid one.
    let options = unsafe { operation.iopb().Parameters.Create }.Options;
    let Ok(name) = FileName::query(operation) else {
        bump(&globals.counters.name_query_failures);
        if twins::is(Twin::NameFailureAllows) {
            return Verdict::Allow;
        }
        // The file this create reaches is unknown (an open by file ID, a name FltMgr cannot
        // build): it may be protected, so the configured default decides (FailClosed denies).
        return default_verdict(globals);
    };
    // An opened (not normalized) name may spell the file another way (a short name, a
    // relative open): it proves nothing when it does not match.
    let unknown = !name.is_normalized() && !twins::is(Twin::NameFailureAllows);
    // Delete-on-close removes the file or directory, so an ancestor of a protected tree counts
    // as it does for a delete.
    let protected = if options & FILE_DELETE_ON_CLOSE != 0 {
        protection::guards_tree(globals, name.units())
    } else {
        protection::protects(globals, name.units())
    };
    if !protected {
        return if unknown {
            default_verdict(globals)
        } else {
            Verdict::Allow
        };
    }
    let flags = if name.is_normalized() {
        EventFlags::NONE
    } else {
        EventFlags::NAME_NOT_NORMALIZED
    };
    decide(
        globals,
        &globals.verdicts,
        &Question {
            operation: VerdictOperation::Create,
            process_id,
            path: name.units(),
            target: &[],
            flags,
        },
    )
}

/// Post-create: one `Open` event per successful open.
///
/// # Safety
///
/// Called only by FltMgr, as the post-operation callback registered for `IRP_MJ_CREATE`, with
/// `data` and `objects` valid for the call, at PASSIVE_LEVEL (post-create runs in the
/// requesting thread).
pub unsafe extern "win64" fn post_create(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    _completion: PVOID,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let (globals, operation) = admitted.parts();
    let status = operation.status();
    if !NT_SUCCESS(status) || status == STATUS_REPARSE {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    let Some(who) = requestor(globals, operation) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    // SAFETY: for IRP_MJ_CREATE the Create member of the parameter union is the valid one.
    let create = unsafe { operation.iopb().Parameters.Create };
    // SAFETY: FltMgr sets a valid security context for every create.
    let desired_access =
        unsafe { create.SecurityContext.as_ref() }.map_or(0, |context| context.DesiredAccess);
    let mut event_flags = EventFlags::NONE;
    if create.Options & FILE_DELETE_ON_CLOSE != 0 {
        event_flags |= EventFlags::DELETE_ON_CLOSE;
    }
    if create.Options & FILE_DIRECTORY_FILE != 0 {
        event_flags |= EventFlags::DIRECTORY;
    }
    let name = EventName::of(globals, operation);
    event_flags |= name.flags;
    publish(
        globals,
        &EventFacts {
            kind: EventKind::Open,
            flags: event_flags,
            status,
            process_id: who.process_id,
            thread_id: who.thread_id,
            volume_id: globals.volumes.id_of(operation.volume()),
            desired_access,
            create_disposition: create.Options >> 24,
            // The create's outcome (FILE_OPENED, FILE_CREATED, ...), a small number.
            information: u32::try_from(operation.information()).unwrap_or(u32::MAX),
            path: name.units(),
            target: &[],
        },
    );
    FLT_POSTOP_FINISHED_PROCESSING
}
