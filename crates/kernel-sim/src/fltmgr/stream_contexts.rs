//! Stream and file contexts: `FltSetStreamContext`, `FltGetStreamContext`,
//! `FltSetFileContext`, `FltGetFileContext`, on the contexts of `fltmgr::contexts`. A stream
//! context belongs to a file's data stream (every handle to it sees the same one), a file
//! context to the file (all its streams); each is per instance.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetstreamcontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetstreamcontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetfilecontext>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilecontext>):
//! IRQL <= APC_LEVEL; an opened file object (never from pre-create); the reference rules of
//! every `FltSet...Context` (`KEEP_IF_EXISTS`: `STATUS_FLT_CONTEXT_ALREADY_DEFINED` and the
//! existing context referenced in `OldContext`; `REPLACE_IF_EXISTS`: the replaced reference to
//! the caller or dropped; `STATUS_FLT_CONTEXT_ALREADY_LINKED`; `STATUS_FLT_DELETING_OBJECT`
//! for an instance being torn down); `STATUS_NOT_SUPPORTED` where the file system keeps no
//! per-stream contexts (here the named-pipe and mailslot file systems); a get gives the caller
//! a reference, or `STATUS_NOT_FOUND`. Filter Manager drops the stream's or file's reference
//! when the stream or file is torn down; kernel-sim keeps them until the instance is torn down
//! (a file system frees a stream's control block some time after its last close, which it does
//! not promise), so a context referenced after its file was deleted goes unnoticed here.

use vigil_sys::{
    FILE_OBJECT, FLT_CONTEXT_TYPE, FLT_FILE_CONTEXT, FLT_SET_CONTEXT_KEEP_IF_EXISTS,
    FLT_SET_CONTEXT_OPERATION, FLT_SET_CONTEXT_REPLACE_IF_EXISTS, FLT_STREAM_CONTEXT, NTSTATUS,
    PFLT_CONTEXT, PFLT_INSTANCE, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED,
    STATUS_SUCCESS,
};

use crate::config::VolumeKind;
use crate::fltmgr::contexts::{LinkKey, check_target, get_linked, set_linked};
use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;

/// The key of the stream or file (by `context_type`) `file` is open on, for `instance`;
/// `Err(STATUS_NOT_SUPPORTED)` on a file system without per-stream contexts.
pub(crate) fn object_key(
    k: &Kernel,
    context_type: FLT_CONTEXT_TYPE,
    instance: usize,
    file: usize,
) -> Result<(FLT_CONTEXT_TYPE, usize, String), NTSTATUS> {
    let flt = flt_read(k);
    let (volume, fs_handle) = flt
        .io
        .files
        .with(file, |r| r.map(|r| (r.volume, r.fs_handle)))
        .ok_or(STATUS_INVALID_PARAMETER)?;
    let volume = &flt.io.volumes[volume.0];
    if matches!(volume.kind, VolumeKind::NamedPipe | VolumeKind::Mailslot) {
        return Err(STATUS_NOT_SUPPORTED);
    }
    let (stream, whole) = fs_handle
        .and_then(|h| volume.files().stream_and_file(h))
        .ok_or(STATUS_INVALID_PARAMETER)?;
    let key = if context_type == FLT_STREAM_CONTEXT {
        stream
    } else {
        whole
    };
    Ok((context_type, instance, key))
}

/// `FltSet{Stream,File}Context` for `context_type`.
fn set(
    k: &Kernel,
    context_type: FLT_CONTEXT_TYPE,
    (instance, file): (PFLT_INSTANCE, *mut FILE_OBJECT),
    operation: FLT_SET_CONTEXT_OPERATION,
    (new, old): (PFLT_CONTEXT, *mut PFLT_CONTEXT),
) -> NTSTATUS {
    let invalid = STATUS_INVALID_PARAMETER;
    let routine = if context_type == FLT_STREAM_CONTEXT {
        "FltSetStreamContext"
    } else {
        "FltSetFileContext"
    };
    if !old.is_null() {
        guest::write(old, std::ptr::null_mut());
    }
    if let Err(status) = check_target(k, routine, instance, file) {
        return status;
    }
    if operation != FLT_SET_CONTEXT_KEEP_IF_EXISTS && operation != FLT_SET_CONTEXT_REPLACE_IF_EXISTS
    {
        k.parameter_violation(
            "Operation KEEP_IF_EXISTS or REPLACE_IF_EXISTS",
            format!("Operation {operation}"),
        );
        return invalid;
    }
    let key = match object_key(k, context_type, instance as usize, file as usize) {
        Ok(key) => key,
        Err(status) => return status,
    };
    set_linked(
        k,
        (
            LinkKey::Object(key),
            context_type,
            (file as usize, instance as usize),
        ),
        operation,
        (new as usize, old),
        routine,
    )
}

/// `FltGet{Stream,File}Context` for `context_type`.
fn get(
    k: &Kernel,
    context_type: FLT_CONTEXT_TYPE,
    (instance, file): (PFLT_INSTANCE, *mut FILE_OBJECT),
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    let routine = if context_type == FLT_STREAM_CONTEXT {
        "FltGetStreamContext"
    } else {
        "FltGetFileContext"
    };
    if out.is_null() {
        k.parameter_violation("a Context out-pointer", "NULL".to_owned());
        return STATUS_INVALID_PARAMETER;
    }
    guest::write(out, std::ptr::null_mut());
    if let Err(status) = check_target(k, routine, instance, file) {
        return if status == STATUS_INVALID_PARAMETER {
            status
        } else {
            STATUS_NOT_FOUND
        };
    }
    let key = match object_key(k, context_type, instance as usize, file as usize) {
        Ok(key) => key,
        Err(status) => return status,
    };
    let found = get_linked(k, &LinkKey::Object(key));
    match found {
        Some(context) => {
            guest::write(out, context as PFLT_CONTEXT);
            STATUS_SUCCESS
        }
        None => STATUS_NOT_FOUND,
    }
}

/// `FltSetStreamContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_set_stream_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    operation: FLT_SET_CONTEXT_OPERATION,
    new: PFLT_CONTEXT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltSetStreamContext, |k| {
        set(
            k,
            FLT_STREAM_CONTEXT,
            (instance, file),
            operation,
            (new, old),
        )
    })
}

/// `FltGetStreamContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_get_stream_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltGetStreamContext, |k| {
        get(k, FLT_STREAM_CONTEXT, (instance, file), out)
    })
}

/// `FltSetFileContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_set_file_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    operation: FLT_SET_CONTEXT_OPERATION,
    new: PFLT_CONTEXT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltSetFileContext, |k| {
        set(k, FLT_FILE_CONTEXT, (instance, file), operation, (new, old))
    })
}

/// `FltGetFileContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_get_file_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltGetFileContext, |k| {
        get(k, FLT_FILE_CONTEXT, (instance, file), out)
    })
}
