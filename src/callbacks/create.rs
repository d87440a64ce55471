//! `IRP_MJ_CREATE`: verdicts for protected paths (pre), the open event (post). PASSIVE_LEVEL.

use vigil_protocol::{EventFlags, EventKind, Verdict, VerdictOperation};
use vigil_sys::{
    FILE_CREATE, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_OPEN_BY_FILE_ID, FILE_OPEN_IF,
    FILE_OVERWRITE, FILE_OVERWRITE_IF, FILE_SUPERSEDE, FLT_CALLBACK_DATA,
    FLT_POSTOP_CALLBACK_STATUS, FLT_POSTOP_FINISHED_PROCESSING, FLT_PREOP_CALLBACK_STATUS,
    FLT_PREOP_COMPLETE, FLT_PREOP_SUCCESS_NO_CALLBACK, FLT_PREOP_SUCCESS_WITH_CALLBACK,
    FLT_RELATED_OBJECTS, FLTFL_POST_OPERATION_DRAINING, NT_SUCCESS, PVOID, STATUS_ACCESS_DENIED,
    STATUS_REPARSE,
};

use crate::callbacks::{EventName, admit, requestor};
use crate::error::NtStatus;
use crate::events::{EventFacts, publish};
use crate::filter::context::HandleContext;
use crate::filter::file_id::{self, FileId};
use crate::filter::name::FileName;
use crate::filter::operation::Operation;
use crate::filter::stream_context::StreamContext;
use crate::globals::Globals;
use crate::protection;
use crate::stats::bump;
use crate::twins::{self, Twin};
use crate::verdict::{Question, decide, default_verdict, deny_unjudged};

use PreVerdict::{Known, Unknown};

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
    completion: *mut PVOID,
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
    if globals.prefixes.any() {
        match verdict_for_create(globals, operation, who.process_id) {
            Judgement::Decided(Verdict::Deny) => {
                operation.complete_with(STATUS_ACCESS_DENIED);
                return FLT_PREOP_COMPLETE;
            }
            Judgement::Decided(Verdict::Allow) => {}
            Judgement::AfterOpen => {
                if !completion.is_null() {
                    // SAFETY: FltMgr passes a valid completion-context slot.
                    unsafe { *completion = JUDGE_AFTER_OPEN };
                }
            }
        }
    }
    FLT_PREOP_SUCCESS_WITH_CALLBACK
}

/// The completion context of a create whose file is judged after it is open: a tag, never
/// dereferenced (no reference or memory travels with it).
const JUDGE_AFTER_OPEN: PVOID = core::ptr::without_provenance_mut(1);

/// What pre-create concluded.
enum Judgement {
    /// The operation's verdict.
    Decided(Verdict),
    /// The name that would decide is not known before the open (an open by file ID, an opened
    /// name only) and the default allowed it: post-create judges the file it reached, by its
    /// normalized name, and cancels the open if it is denied.
    AfterOpen,
}

fn verdict_for_create(
    globals: &Globals,
    operation: &mut Operation<'_>,
    process_id: u64,
) -> Judgement {
    let verdict = pre_create_verdict(globals, operation, process_id);
    match verdict {
        Unknown(Verdict::Allow) if !twins::is(Twin::NameFailureAllows) => Judgement::AfterOpen,
        Unknown(verdict) | Known(verdict) => Judgement::Decided(verdict),
    }
}

/// A pre-create verdict, and whether the name it rests on was known.
enum PreVerdict {
    /// From a normalized name.
    Known(Verdict),
    /// The default, for a name that could not be learned (or only as opened).
    Unknown(Verdict),
}

fn pre_create_verdict(
    globals: &Globals,
    operation: &mut Operation<'_>,
    process_id: u64,
) -> PreVerdict {
    // SAFETY: for IRP_MJ_CREATE the Create member of the parameter union is the valid one.
    let options = unsafe { operation.iopb().Parameters.Create }.Options;
    // An open by file ID has no name before the open, by the caller's choice, every time: one
    // that may create, truncate, replace or delete changes the file system before post-create
    // could judge it (FltCancelFileOpen undoes nothing), so it is denied even under fail-open
    // (an excepted process names the file it overwrites). A name that fails to come for
    // another reason (low memory, a name FltMgr cannot build) follows the configured default:
    // fail-open is the administrator's choice of availability over checking.
    let destructive = options & FILE_DELETE_ON_CLOSE != 0
        || matches!(
            options >> 24,
            FILE_SUPERSEDE | FILE_CREATE | FILE_OPEN_IF | FILE_OVERWRITE | FILE_OVERWRITE_IF
        );
    let by_id = options & FILE_OPEN_BY_FILE_ID != 0;
    let unknown_name = |globals: &Globals| {
        if destructive && by_id {
            Known(deny_unjudged(globals))
        } else {
            // The file this create reaches is unknown (an open by file ID, a name FltMgr
            // cannot build): it may be protected, so the configured default decides
            // (FailClosed denies; fail-open judges it after the open).
            Unknown(default_verdict(globals))
        }
    };
    if twins::is(Twin::RelativeNameOnly) && operation.is_relative_open() {
        // The twin's bug: the relative name (`Secret\vault.txt`) matches no full prefix.
        return Known(Verdict::Allow);
    }
    let Ok(name) = FileName::query(operation) else {
        bump(&globals.counters.name_query_failures);
        if twins::is(Twin::NameFailureAllows) {
            return Known(Verdict::Allow);
        }
        return unknown_name(globals);
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
            unknown_name(globals)
        } else {
            Known(Verdict::Allow)
        };
    }
    let mut flags = if name.is_normalized() {
        EventFlags::NONE
    } else {
        EventFlags::NAME_NOT_NORMALIZED
    };
    // A delete-on-close create is a delete: the service judges it as one (an ancestor of a
    // protected prefix is covered for deletes, not for opens).
    let operation = if options & FILE_DELETE_ON_CLOSE != 0 {
        flags |= EventFlags::DELETE_ON_CLOSE;
        VerdictOperation::Delete
    } else {
        VerdictOperation::Create
    };
    Known(decide(
        globals,
        &globals.verdicts,
        &Question {
            operation,
            process_id,
            path: name.units(),
            target: &[],
            flags,
        },
    ))
}

/// Judges an open that pre-create could not judge, by the normalized name of the file it
/// reached; a denied one is canceled (`FltCancelFileOpen`) and fails with
/// `STATUS_ACCESS_DENIED`. Returns whether it was. PASSIVE_LEVEL (post-create).
fn judge_after_open(globals: &Globals, operation: &mut Operation<'_>, process_id: u64) -> bool {
    let verdict = match FileName::query(operation) {
        Ok(name) if name.is_normalized() => {
            if protection::protects(globals, name.units()) {
                decide(
                    globals,
                    &globals.verdicts,
                    &Question {
                        operation: VerdictOperation::Create,
                        process_id,
                        path: name.units(),
                        target: &[],
                        flags: EventFlags::NONE,
                    },
                )
            } else {
                Verdict::Allow
            }
        }
        // Still no name: the default already allowed it in pre-create.
        _ => Verdict::Allow,
    };
    if verdict == Verdict::Deny {
        operation.cancel_open(STATUS_ACCESS_DENIED);
        return true;
    }
    false
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
    completion: PVOID,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // Draining: the instance is being torn down and the I/O has not completed; `data` is a
    // copy, and there is nothing to release.
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 && !twins::is(Twin::DrainingIgnored) {
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
    if completion == JUDGE_AFTER_OPEN && judge_after_open(globals, operation, who.process_id) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
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
    // The file's ID, once per file (the stream context), and its name, once per open (a name
    // depends on the link opened), both kept in the handle's context for its first write and
    // close. The generation is read before the name query, so that a rename racing with it
    // makes the cached name stale rather than wrong.
    let file_id = file_id_of(globals, operation);
    let volume_id = globals.volumes.id_of(operation.volume());
    let generation = globals.name_generation();
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
            volume_id,
            desired_access,
            create_disposition: create.Options >> 24,
            // The create's outcome (FILE_OPENED, FILE_CREATED, ...), a small number.
            information: u32::try_from(operation.information()).unwrap_or(u32::MAX),
            path: name.units(),
            target: &[],
            file_id,
        },
    );
    if create.Options & FILE_DIRECTORY_FILE == 0
        && HandleContext::attach_at_open(
            operation.filter(),
            operation.instance(),
            operation.file_object(),
            volume_id,
            file_id,
            name.name.map(|name| (name, generation)),
        )
        .is_err()
    {
        bump(&globals.counters.allocation_failures);
    }
    FLT_POSTOP_FINISHED_PROCESSING
}

/// The ID of the file `operation` opened: from its stream context when an earlier open cached
/// it there, else queried (PASSIVE_LEVEL: post-create) and cached for the next opens. Zeros
/// when the query fails (nothing is cached then; the next open asks again). A context that
/// cannot be allocated is counted; the event still carries the queried ID.
fn file_id_of(globals: &Globals, operation: &Operation<'_>) -> FileId {
    let (instance, file) = (operation.instance(), operation.file_object());
    if let Some(stream) = StreamContext::get(instance, file) {
        return file_id_from(stream);
    }
    let queried = if twins::is(Twin::FileIdUnderLock) {
        // `file-id-under-lock`: the query made under a push lock, i.e. in a critical region.
        globals.prefixes.read(|_| file_id::query(instance, file))
    } else {
        file_id::query(instance, file)
    };
    let Some(queried) = queried else {
        return FileId::default();
    };
    match StreamContext::attach(operation.filter(), instance, file, queried) {
        // Ours, or the one a concurrent open of the same stream set first.
        Ok(stream) => file_id_from(stream),
        Err(error) => {
            if error == NtStatus::INSUFFICIENT_RESOURCES {
                bump(&globals.counters.allocation_failures);
            }
            queried
        }
    }
}

/// The ID `stream` caches; its reference is released here.
fn file_id_from(stream: StreamContext) -> FileId {
    let file_id = stream.file_id();
    if twins::is(Twin::StreamContextLeak) {
        // The broken twin keeps the reference forever (the context-leak check at
        // FltUnregisterFilter).
        core::mem::forget(stream);
    }
    file_id
}
