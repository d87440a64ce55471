//! `FltFsControlFile`: a file system control request a filter sends below its instance, to the
//! volume's file system. Shared with `IRP_MJ_FILE_SYSTEM_CONTROL` through
//! `FltPerformSynchronousIo`/`FltPerformAsynchronousIo` ([`crate::fltmgr::callback_data`]).
//!
//! From the reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfscontrolfile>):
//! PASSIVE_LEVEL; `Instance` and `FileObject` are required; the control code decides which
//! buffers are needed; `LengthReturned` is optional.
//!
//! The one control code with behaviour in the model is `FSCTL_GET_REPARSE_POINT`
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/fsctl-get-reparse-point>): the
//! model has no reparse points, so on a file system that supports them (NTFS, ReFS, and the
//! network volumes, which pass it to the server's NTFS) the answer is
//! `STATUS_NOT_A_REPARSE_POINT`, after `STATUS_BUFFER_TOO_SMALL` (and the size needed in
//! `LengthReturned`) for an output buffer shorter than a `REPARSE_DATA_BUFFER`'s header; FAT,
//! exFAT and the named-pipe and mailslot file systems have no reparse points and refuse the
//! request (`STATUS_INVALID_DEVICE_REQUEST`, what a file system answers to a control code it
//! does not implement). Every other control code is reported as not emulated and answered
//! `STATUS_INVALID_DEVICE_REQUEST`.
//!
//! Failable: the request is an IRP Filter Manager allocates (`STATUS_INSUFFICIENT_RESOURCES`).

use vigil_sys::{
    FILE_OBJECT, NTSTATUS, PFLT_INSTANCE, PVOID, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_PARAMETER,
};

use crate::config::VolumeKind;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::filter_io::open_file;
use crate::fltmgr::flt_read;
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;

/// `FSCTL_GET_REPARSE_POINT`: `CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 42, METHOD_BUFFERED,
/// FILE_ANY_ACCESS)`.
pub(crate) const FSCTL_GET_REPARSE_POINT: u32 = 0x0009_00A8;
/// `REPARSE_DATA_BUFFER_HEADER_SIZE`: `ReparseTag`, `ReparseDataLength`, `Reserved`.
const REPARSE_DATA_BUFFER_HEADER_SIZE: u32 = 8;
/// `STATUS_NOT_A_REPARSE_POINT`.
pub(crate) const STATUS_NOT_A_REPARSE_POINT: NTSTATUS = 0xC000_0275_u32.cast_signed();
/// `STATUS_BUFFER_TOO_SMALL`.
pub(crate) const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32.cast_signed();

/// A control request's buffers: input and its length, output and its length.
pub(crate) struct ControlBuffers {
    pub input: PVOID,
    pub input_length: u32,
    pub output: PVOID,
    pub output_length: u32,
}

/// What a file system of `kind` answers to `FSCTL_GET_REPARSE_POINT` on a file without a
/// reparse point (every file of the model), given `output_length` bytes of output buffer:
/// the status and the length returned.
fn get_reparse_point(kind: VolumeKind, output_length: u32) -> (NTSTATUS, u32) {
    match kind {
        VolumeKind::Ntfs | VolumeKind::Refs | VolumeKind::Network | VolumeKind::Lanman => {
            if output_length < REPARSE_DATA_BUFFER_HEADER_SIZE {
                (STATUS_BUFFER_TOO_SMALL, REPARSE_DATA_BUFFER_HEADER_SIZE)
            } else {
                (STATUS_NOT_A_REPARSE_POINT, 0)
            }
        }
        VolumeKind::Fat | VolumeKind::ExFat | VolumeKind::NamedPipe | VolumeKind::Mailslot => {
            (status::INVALID_DEVICE_REQUEST, 0)
        }
    }
}

/// Sends control `code` with `buffers` on `file_object`, below `instance`: the status and the
/// length returned (no fault injection: the caller's routine takes that).
pub(crate) fn control_below(
    k: &Kernel,
    (instance, file_object): (usize, usize),
    code: u32,
    buffers: &ControlBuffers,
) -> (NTSTATUS, u32) {
    let (volume, _) = match open_file(k, instance, file_object) {
        Ok(found) => found,
        Err(status) => return (status, 0),
    };
    if code != FSCTL_GET_REPARSE_POINT {
        k.violation(
            ViolationKind::NotEmulated,
            "FltFsControlFile: only FSCTL_GET_REPARSE_POINT is emulated",
            format!("FsControlCode {code:#x}"),
        );
        return (status::INVALID_DEVICE_REQUEST, 0);
    }
    if buffers.output.is_null() && buffers.output_length != 0 {
        k.parameter_violation(
            "an OutputBuffer of OutputBufferLength bytes",
            format!(
                "OutputBuffer is NULL with OutputBufferLength {}",
                buffers.output_length
            ),
        );
        return (STATUS_INVALID_PARAMETER, 0);
    }
    let _ = (buffers.input, buffers.input_length);
    let kind = flt_read(k).io.volumes[volume.0].kind;
    get_reparse_point(kind, buffers.output_length)
}

/// `FltFsControlFile`: PASSIVE_LEVEL (see the module documentation).
pub(crate) extern "win64" fn flt_fs_control_file(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    code: u32,
    input: PVOID,
    input_length: u32,
    output: PVOID,
    output_length: u32,
    length_returned: *mut u32,
) -> NTSTATUS {
    emulate(Routine::FltFsControlFile, |k| {
        if !length_returned.is_null() {
            guest::write(length_returned, 0);
        }
        if instance.is_null() || file_object.is_null() {
            k.parameter_violation(
                "Instance and FileObject (required, not NULL)",
                format!("{instance:p}, {file_object:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if k.inject_failure("FltFsControlFile", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let (status, returned) = control_below(
            k,
            (instance as usize, file_object as usize),
            code,
            &ControlBuffers {
                input,
                input_length,
                output,
                output_length,
            },
        );
        if !length_returned.is_null() {
            guest::write(length_returned, returned);
        }
        status
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_reparse_point_answers_as_each_file_system_does() {
        assert_eq!(
            get_reparse_point(VolumeKind::Ntfs, 16),
            (STATUS_NOT_A_REPARSE_POINT, 0)
        );
        assert_eq!(
            get_reparse_point(VolumeKind::Refs, 4),
            (STATUS_BUFFER_TOO_SMALL, REPARSE_DATA_BUFFER_HEADER_SIZE)
        );
        assert_eq!(
            get_reparse_point(VolumeKind::Fat, 16),
            (status::INVALID_DEVICE_REQUEST, 0)
        );
        assert_eq!(
            get_reparse_point(VolumeKind::NamedPipe, 16),
            (status::INVALID_DEVICE_REQUEST, 0)
        );
    }
}
