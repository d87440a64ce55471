//! `IRP_MJ_SET_INFORMATION`: rename, hard link and delete (both disposition forms). The pre
//! callback (PASSIVE_LEVEL) takes the source name and asks for verdicts; the post callback is
//! synchronized (same thread, PASSIVE_LEVEL) and reports the operation if it succeeded.

use core::mem::offset_of;

use vigil_protocol::{EventKind, Verdict, VerdictOperation};
use vigil_sys::{
    FILE_DISPOSITION_DELETE, FILE_DISPOSITION_INFORMATION, FILE_DISPOSITION_INFORMATION_EX,
    FILE_RENAME_INFORMATION, FLT_CALLBACK_DATA, FLT_PARAMETERS_SET_FILE_INFORMATION,
    FLT_POSTOP_CALLBACK_STATUS, FLT_POSTOP_FINISHED_PROCESSING, FLT_PREOP_CALLBACK_STATUS,
    FLT_PREOP_COMPLETE, FLT_PREOP_SUCCESS_NO_CALLBACK, FLT_PREOP_SYNCHRONIZE, FLT_RELATED_OBJECTS,
    FLTFL_POST_OPERATION_DRAINING, FileDispositionInformation, FileDispositionInformationEx,
    FileLinkInformation, FileLinkInformationEx, FileRenameInformation, FileRenameInformationEx,
    NT_SUCCESS, PVOID, STATUS_ACCESS_DENIED,
};

use crate::callbacks::{EventName, admit, requestor};
use crate::error::Result;
use crate::events::{EventFacts, publish};
use crate::filter::name::FileName;
use crate::filter::operation::Operation;
use crate::globals::Globals;
use crate::verdict::{Question, decide};

/// What a set-information request does, as far as Vigil cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Rename,
    Link,
    Delete,
}

impl Change {
    fn event_kind(self) -> EventKind {
        match self {
            Self::Rename => EventKind::Rename,
            Self::Link => EventKind::HardLink,
            Self::Delete => EventKind::Delete,
        }
    }

    fn verdict_operation(self) -> VerdictOperation {
        match self {
            Self::Rename => VerdictOperation::Rename,
            Self::Link => VerdictOperation::Link,
            Self::Delete => VerdictOperation::Delete,
        }
    }
}

/// The parameters of a set-information operation.
fn parameters(operation: &Operation<'_>) -> FLT_PARAMETERS_SET_FILE_INFORMATION {
    // SAFETY: for IRP_MJ_SET_INFORMATION the SetFileInformation member is the valid one.
    unsafe { operation.iopb().Parameters.SetFileInformation }
}

/// Classifies the request; `None` for classes Vigil does not report, and for a disposition that
/// clears (rather than sets) the delete.
fn classify(operation: &Operation<'_>) -> Option<Change> {
    let parameters = parameters(operation);
    let buffer = parameters.InfoBuffer;
    let length = parameters.Length as usize;
    let class = parameters.FileInformationClass;
    if class == FileRenameInformation || class == FileRenameInformationEx {
        Some(Change::Rename)
    } else if class == FileLinkInformation || class == FileLinkInformationEx {
        Some(Change::Link)
    } else if buffer.is_null() {
        None
    } else if class == FileDispositionInformation
        && length >= size_of::<FILE_DISPOSITION_INFORMATION>()
    {
        // SAFETY: a system buffer of `length` bytes, checked above to hold the structure.
        let info = unsafe { &*buffer.cast::<FILE_DISPOSITION_INFORMATION>() };
        (info.DeleteFile != 0).then_some(Change::Delete)
    } else if class == FileDispositionInformationEx
        && length >= size_of::<FILE_DISPOSITION_INFORMATION_EX>()
    {
        // SAFETY: as above; the system buffer is pointer-aligned.
        let info = unsafe { &*buffer.cast::<FILE_DISPOSITION_INFORMATION_EX>() };
        (info.Flags & FILE_DISPOSITION_DELETE != 0).then_some(Change::Delete)
    } else {
        None
    }
}

/// The rename or link target, from the request's `FILE_RENAME_INFORMATION` (the same layout as
/// `FILE_LINK_INFORMATION`), with its name length checked against the buffer by subtraction.
fn destination(operation: &Operation<'_>) -> Result<FileName> {
    let parameters = parameters(operation);
    let buffer = parameters.InfoBuffer;
    let length = parameters.Length as usize;
    let name_offset = offset_of!(FILE_RENAME_INFORMATION, FileName);
    if buffer.is_null() || length < name_offset {
        return Err(crate::error::NtStatus::INVALID_PARAMETER);
    }
    // SAFETY: the system buffer holds at least the fixed part (checked above).
    let info = unsafe { &*buffer.cast::<FILE_RENAME_INFORMATION>() };
    if info.FileNameLength as usize > length - name_offset || info.FileNameLength % 2 != 0 {
        return Err(crate::error::NtStatus::INVALID_PARAMETER);
    }
    // SAFETY: `name_offset <= length`: still inside the buffer.
    let name = unsafe { buffer.cast::<u8>().add(name_offset) };
    // The name sits at offset 20 of a pointer-aligned system buffer: 2-byte aligned.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "FileName is at an even offset of an aligned buffer"
    )]
    let name = name.cast::<u16>();
    // SAFETY: the name lies inside the buffer (checked above); the instance and file object are
    // the operation's; PASSIVE_LEVEL (set information).
    unsafe {
        FileName::destination(
            operation.instance(),
            operation.file_object(),
            info.RootDirectory,
            name,
            info.FileNameLength,
        )
    }
}

/// Pre-set-information: takes the source name (handed to the post callback as the completion
/// context) and asks for a verdict when the source or the target is protected.
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
    let Some(change) = classify(operation) else {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    };
    let Some(who) = requestor(globals, operation) else {
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
        Change::Rename | Change::Link => destination(operation).ok(),
        Change::Delete => None,
    };
    let target_units = target.as_ref().map_or(&[][..], FileName::units);
    let protected = globals.prefixes.read(|list| {
        list.matches(source.units()) || (!target_units.is_empty() && list.matches(target_units))
    });
    if !protected {
        return Verdict::Allow;
    }
    decide(
        globals,
        &globals.verdicts,
        &Question {
            operation: change.verdict_operation(),
            process_id,
            path: source.units(),
            target: target_units,
            flags: source.flags,
        },
    )
}

/// Post-set-information (synchronized): reports a successful rename, link or delete.
pub unsafe extern "win64" fn post_set_information(
    data: *mut FLT_CALLBACK_DATA,
    objects: *const FLT_RELATED_OBJECTS,
    completion: PVOID,
    flags: u32,
) -> FLT_POSTOP_CALLBACK_STATUS {
    // Take the source name back first: it is released on every path below.
    // SAFETY: `completion` is what pre_set_information stored (or null), taken back once.
    let source = unsafe { FileName::from_raw(completion) };
    if flags & FLTFL_POST_OPERATION_DRAINING != 0 {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    // SAFETY: the callback's own arguments, used only during it.
    let Some(mut admitted) = (unsafe { admit(data, objects) }) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
    let (globals, operation) = admitted.parts();
    let status = operation.status();
    let Some(change) = classify(operation).filter(|_| NT_SUCCESS(status)) else {
        return FLT_POSTOP_FINISHED_PROCESSING;
    };
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
            kind: change.event_kind(),
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
        },
    );
    FLT_POSTOP_FINISHED_PROCESSING
}
