//! `FltCancelFileOpen`: a post-create callback closes the file the file system just opened
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcancelfileopen>).
//!
//! Rules from its page, each checked: PASSIVE_LEVEL (the table); `Instance` and `FileObject`
//! are required; it may be called only from a post-create callback, for the file object of
//! the create in progress, which the file system opened (never for a create that failed), and
//! once. Its effect: below the caller the file was opened and then closed (the file system
//! gets its cleanup and close at once), modifications are not undone (a created file stays, a
//! superseded one stays truncated), and the create must then fail: the post-create sets an
//! error status, which synthetic I/O checks when the callback returns ("Failing an I/O
//! Operation in a Postoperation Callback Routine").

use vigil_sys::{FILE_OBJECT, PFLT_INSTANCE};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::kernel::emulate;
use crate::machine::state;

/// `FltCancelFileOpen`: PASSIVE_LEVEL, from a post-create callback only.
pub(crate) extern "win64" fn flt_cancel_file_open(instance: PFLT_INSTANCE, file: *mut FILE_OBJECT) {
    emulate(Routine::FltCancelFileOpen, |k| {
        let rule = "FltCancelFileOpen: the Instance and FileObject of the create in progress, from its post-create callback";
        if instance.is_null() || file.is_null() {
            k.parameter_violation(rule, "a NULL parameter".to_owned());
            return;
        }
        let callback = state::with(|s| s.callback.get());
        if callback != "PostCreate" {
            k.parameter_violation(rule, format!("called from {callback}"));
            return;
        }
        // Decided under the lock, reported after it (a violation report takes other locks).
        let refused = {
            let mut guard = flt_write(k);
            let flt = &mut *guard;
            let on_instance = flt.io.instance(instance as usize).map(|(volume, _)| volume);
            match flt.io.files.get_mut(file as usize) {
                None => Some(format!("{file:p} is not a file object being opened")),
                Some(record) if on_instance != Some(record.volume) => Some(format!(
                    "{instance:p} is not the instance of the file's volume"
                )),
                Some(record) if record.canceled => {
                    Some(format!("the open of {file:p} was already canceled"))
                }
                Some(record) => match record.fs_handle.take() {
                    None => Some(format!("the create of {file:p} did not open a file")),
                    Some(handle) => {
                        record.canceled = true;
                        record.open = false;
                        let volume = record.volume;
                        if let Some(v) = flt.io.volumes.get_mut(volume.0) {
                            v.fs.get_mut().cancel_open(handle);
                        }
                        None
                    }
                },
            }
        };
        if let Some(message) = refused {
            k.parameter_violation(rule, message);
        }
    });
}
