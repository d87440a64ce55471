//! `IRP_MJ_SET_INFORMATION`: rename, hard link and delete (both disposition forms). The pre
//! callback (PASSIVE_LEVEL) takes the source name and asks for verdicts; the post callback is
//! synchronized (same thread, PASSIVE_LEVEL) and reports the operation if it succeeded. The
//! request and its buffer are parsed in `crate::filter::set_information`.

use vigil_protocol::{EventKind, Verdict, VerdictOperation};
use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_POSTOP_CALLBACK_STATUS, FLT_POSTOP_FINISHED_PROCESSING,
    FLT_PREOP_CALLBACK_STATUS, FLT_PREOP_COMPLETE, FLT_PREOP_SUCCESS_NO_CALLBACK,
    FLT_PREOP_SYNCHRONIZE, FLT_RELATED_OBJECTS, FLTFL_POST_OPERATION_DRAINING, NT_SUCCESS, PVOID,
    STATUS_ACCESS_DENIED,
};

use crate::callbacks::{EventName, admit, requestor};
use crate::error::Result;
use crate::events::{EventFacts, publish};
use crate::filter::context::HandleContext;
use crate::filter::name::FileName;
use crate::filter::operation::Operation;
use crate::filter::set_information::{LinkTarget, SetInformationRequest as Change};
use crate::globals::Globals;
use crate::protection;
use crate::twins::{self, Twin};
use crate::verdict::{Question, decide, default_verdict};

/// What a request is reported as.
fn event_kind(request: Change) -> EventKind {
    match request {
        Change::Rename => EventKind::Rename,
        Change::Link => EventKind::HardLink,
        Change::Delete => EventKind::Delete,
    }
}

/// What a request asks a verdict for.
fn verdict_operation(request: Change) -> VerdictOperation {
    match request {
        Change::Rename => VerdictOperation::Rename,
        Change::Link => VerdictOperation::Link,
        Change::Delete => VerdictOperation::Delete,
    }
}

/// The rename or link target's name, queried from FltMgr.
fn destination(operation: &Operation<'_>) -> Result<FileName> {
    let target = LinkTarget::parse(operation)?;
    FileName::destination(operation, &target)
}

/// Pre-set-information: takes the source name (handed to the post callback as the completion
/// context) and asks for a verdict when the source or the target is protected.
///
/// # Safety
///
/// Called only by FltMgr, as the pre-operation callback registered for `IRP_MJ_SET_INFORMATION` in
/// `OPERATIONS`, with `data` and `objects` valid for the call and `completion` a valid
/// completion-context slot (or null), at the IRQL FltMgr calls it at for that operation.
pub unsafe extern "win64" fn pre_set_information(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: *mut PVOID,
) -> FLT_PREOP_CALLBACK_STATUS {
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let (globals, operation) = admitted.parts();
    let Some(change) = Change::parse(operation) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    if change == Change::Rename {
        // Before any requestor check: the service's own renames (log rotation) move names too.
        globals.names_may_have_moved();
    }
    let Some(who) = requestor(globals, operation) else {
        if change == Change::Rename && !completion.is_null() {
            // The post callback marks the end of the rename too (no name travels to it).
            // SAFETY: FltMgr passes a valid completion-context slot.
            unsafe { *completion = core::ptr::null_mut() };
            return FLT_PREOP_SYNCHRONIZE;
        }
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let source = EventName::of(globals, operation);
    if globals.prefixes.any()
        && verdict(globals, operation, change, &source, who.process_id) == Verdict::Deny
    {
        operation.complete_with(STATUS_ACCESS_DENIED);
        return FLT_PREOP_COMPLETE;
    }
    if completion.is_null() {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    // The reference travels to the post callback (which always runs: SYNCHRONIZE), which takes
    // it back and releases it exactly once.
    let context = source
        .name
        .map_or(core::ptr::null_mut(), FileName::into_raw);
    // SAFETY: FltMgr passes a valid completion-context slot.
    unsafe { *completion = context };
    FLT_PREOP_SYNCHRONIZE
}

fn verdict(
    globals: &Globals,
    operation: &Operation<'_>,
    change: Change,
    source: &EventName,
    process_id: u64,
) -> Verdict {
    let target = match change {
        Change::Rename | Change::Link => Some(destination(operation)),
        Change::Delete => None,
    };
    let name_failure_allows = twins::is(Twin::NameFailureAllows);
    // A name that cannot be learned (or only as opened, which may spell the file another way)
    // may be a protected one: the configured default decides unless a known name is protected.
    let mut unknown = source
        .name
        .as_ref()
        .is_none_or(|name| !name.is_normalized());
    let target_units = match &target {
        Some(Ok(name)) => name.units(),
        Some(Err(_)) => {
            unknown = true;
            &[][..]
        }
        None => &[][..],
    };
    // The source moves or goes away with its whole subtree: an ancestor of a protected prefix
    // counts. A link adds a name to a file (never a directory): only the file itself counts.
    let source_protected = match change {
        Change::Rename | Change::Delete => protection::guards_tree(globals, source.units()),
        Change::Link => protection::protects(globals, source.units()),
    };
    let protected = source_protected
        || (!target_units.is_empty() && protection::protects(globals, target_units));
    if !protected {
        return if unknown && !name_failure_allows {
            default_verdict(globals)
        } else {
            Verdict::Allow
        };
    }
    decide(
        globals,
        &globals.verdicts,
        &Question {
            operation: verdict_operation(change),
            process_id,
            path: source.units(),
            target: target_units,
            flags: source.flags,
        },
    )
}

/// Post-set-information (synchronized): reports a successful rename, link or delete.
///
/// # Safety
///
/// Called only by FltMgr, as the post-operation callback registered for
/// `IRP_MJ_SET_INFORMATION`, once per operation `pre_set_information` synchronized, with `data`
/// and `objects` valid for the call and `completion` exactly what the pre callback stored (or
/// null), in the requesting thread at PASSIVE_LEVEL (a synchronized post).
pub unsafe extern "win64" fn post_set_information(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: PVOID,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    let draining = flags & FLTFL_POST_OPERATION_DRAINING != 0;
    if draining && twins::is(Twin::DrainingLeaksName) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // Take the source name back first: it is released on every path below, the draining one
    // included (draining is exactly the call that must release the completion context).
    // SAFETY: `completion` is what pre_set_information stored (or null), taken back once.
    let source = unsafe { FileName::from_raw(completion) };
    if draining && !twins::is(Twin::DrainingIgnored) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let (globals, operation) = admitted.parts();
    let status = operation.status();
    let Some(change) = Change::parse(operation).filter(|_| NT_SUCCESS(status)) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    if change == Change::Rename {
        // The rename is done: a name cached while it was in progress may be the old one.
        globals.names_may_have_moved();
    }
    let Some(who) = requestor(globals, operation) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    // A failed source query was already counted by the pre callback.
    let source = source.map_or_else(EventName::unavailable, |name| {
        EventName::from_query(globals, Ok(name))
    });
    let target = match change {
        Change::Rename | Change::Link => {
            Some(EventName::from_query(globals, destination(operation)))
        }
        Change::Delete => None,
    };
    let mut event_flags = source.flags;
    if let Some(target) = &target {
        event_flags |= target.flags;
    }
    publish(
        globals,
        &EventFacts {
            kind: event_kind(change),
            flags: event_flags,
            status,
            process_id: who.process_id,
            thread_id: who.thread_id,
            volume_id: globals.volumes.id_of(operation.volume()),
            desired_access: 0,
            create_disposition: 0,
            information: 0,
            path: source.units(),
            target: target.as_ref().map_or(&[][..], EventName::units),
            // The ID the handle's open cached (a rename or link keeps the file's ID).
            file_id: HandleContext::get(operation.instance(), operation.file_object())
                .map(|context| context.state().file_id)
                .unwrap_or_default(),
        },
    );
    FLT_POSTOP_FINISHED_PROCESSING
}
