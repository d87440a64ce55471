//! `IRP_MJ_DIRECTORY_CONTROL` / `IRP_MN_NOTIFY_CHANGE_DIRECTORY`, as `ReadDirectoryChangesW`
//! on a synchronous handle issues it: the filters see the request with the
//! `DirectoryControl.NotifyDirectory` parameters
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-directory-control>;
//! laid out as Wine's fltkernel.h has them, see `vigil-sys`); the file system holds it
//! ([`crate::world::fs`]'s `notify`) until a change, made meanwhile by another thread, completes
//! it with `FILE_NOTIFY_INFORMATION` records (`STATUS_NOTIFY_ENUM_DIR` and nothing when they do
//! not fit), or until the handle's cleanup completes it with `STATUS_NOTIFY_CLEANUP`. The
//! request waits on its issuing thread, outside every lock, after the pre-operation callbacks;
//! the post-operation callbacks run when it completes.

use std::mem::offset_of;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use vigil_sys::{
    FLT_IO_PARAMETER_BLOCK, FLT_PARAMETERS, FLT_PARAMETERS_NOTIFY_DIRECTORY,
    IRP_MJ_DIRECTORY_CONTROL, NT_SUCCESS, NTSTATUS, PASSIVE_LEVEL, STATUS_SUCCESS,
};

use super::ops::{named_entries, parameters_at, transfer_buffer, utf16};
use super::{FileHandle, Io, OperationBlock, Path, Request};
use crate::fltmgr::cbdq::STATUS_CANCELLED;
use crate::fltmgr::files::IoState;
use crate::fltmgr::flt_read;
use crate::kernel::Kernel;
use crate::machine::guest::{self, GuestAlloc};
use crate::report::ViolationKind;
use crate::world::fs::{NotifyOutcome, STATUS_NOTIFY_CLEANUP, STATUS_NOTIFY_ENUM_DIR};
use crate::world::volumes::fs_of;

/// `IRP_MN_NOTIFY_CHANGE_DIRECTORY`.
const IRP_MN_NOTIFY_CHANGE_DIRECTORY: u8 = 0x02;
/// `SL_WATCH_TREE`: the request watches the whole subtree (`OperationFlags`).
const SL_WATCH_TREE: u8 = 0x01;
/// Set in the helper thread's id (below the ids kernel-sim gives its own threads).
const HELPER_THREAD_BIT: u32 = 0x0080_0000;
/// How long the helper thread gives the request to complete after its change, before it
/// cleans the handle up (which completes the request, as closing the handle does).
const GRACE: Duration = Duration::from_millis(500);

/// One change a notification reported: `FILE_ACTION_*` and the name relative to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyRecord {
    /// `FILE_ACTION_ADDED`, `..._REMOVED`, `..._RENAMED_OLD_NAME`, `..._RENAMED_NEW_NAME`.
    pub action: u32,
    /// The name relative to the watched directory.
    pub name: String,
}

/// Where the request is, for the thread that makes the change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Issuing,
    Held,
    Finished,
}

struct Progress {
    stage: Mutex<Stage>,
    changed: Condvar,
}

impl Progress {
    fn set(&self, stage: Stage) {
        *crate::kernel::lock(&self.stage) = stage;
        self.changed.notify_all();
    }

    /// Waits while the stage is `from` (at most `limit`); the stage then.
    fn wait_past(&self, from: Stage, limit: Duration) -> Stage {
        let guard = crate::kernel::lock(&self.stage);
        *self
            .changed
            .wait_timeout_while(guard, limit, |s| *s == from)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }
}

impl Io {
    /// A change notification on the open `directory` for the changes `completion_filter`
    /// selects (`FILE_NOTIFY_CHANGE_FILE_NAME`, `..._DIR_NAME`), with a buffer of `length`
    /// bytes. Once the file system holds the request, another thread of the requestor's process
    /// runs `change` with its own I/O (true if it changed something); if the request has not
    /// completed `GRACE` later, that thread cleans the handle up. The handle is cleaned up when
    /// this returns (close it).
    ///
    /// # Errors
    ///
    /// The request's failure status (`STATUS_INVALID_PARAMETER` on a file, a filter's status);
    /// the success statuses `STATUS_NOTIFY_CLEANUP` and `STATUS_NOTIFY_ENUM_DIR` too, since they
    /// return no record.
    pub fn notify_change_directory(
        &self,
        directory: &FileHandle,
        length: u32,
        completion_filter: u32,
        change: impl FnOnce(&Io) -> bool + Send,
    ) -> Result<Vec<NotifyRecord>, NTSTATUS> {
        let progress = Progress {
            stage: Mutex::new(Stage::Issuing),
            changed: Condvar::new(),
        };
        // The helper is another thread of the requestor's process: a thread id of its own.
        let helper_io = self.with_requestor(super::Requestor {
            pid: self.requestor.pid,
            tid: self.requestor.tid | HELPER_THREAD_BIT,
        });
        let cleaned_by_helper = std::thread::scope(|s| {
            let helper = s.spawn(|| {
                crate::machine::state::mark_application_thread();
                if progress.wait_past(Stage::Issuing, Duration::MAX) != Stage::Held {
                    return false;
                }
                let changed = change(&helper_io);
                let grace = if changed { GRACE } else { Duration::ZERO };
                if progress.wait_past(Stage::Held, grace) == Stage::Finished {
                    return false;
                }
                let _ = helper_io.cleanup(directory);
                true
            });
            let result = self.issue_notify(directory, length, completion_filter, &progress);
            progress.set(Stage::Finished);
            let cleaned = helper.join().unwrap_or(false);
            (result, cleaned)
        });
        let (result, cleaned) = cleaned_by_helper;
        if !cleaned {
            let _ = self.cleanup(directory);
        }
        result
    }

    fn issue_notify(
        &self,
        directory: &FileHandle,
        length: u32,
        completion_filter: u32,
        progress: &Progress,
    ) -> Result<Vec<NotifyRecord>, NTSTATUS> {
        let handle = self.file_state(directory, false)?;
        let buffer = GuestAlloc::zeroed(length as usize);
        let parameters = FLT_PARAMETERS {
            NotifyDirectory: FLT_PARAMETERS_NOTIFY_DIRECTORY {
                Length: length,
                PointerAlignment1: 0,
                CompletionFilter: completion_filter,
                PointerAlignment2: 0,
                Spare1: 0,
                PointerAlignment3: 0,
                Spare2: 0,
                PointerAlignment4: 0,
                DirectoryBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let k = &self.kernel;
        let volume = directory.volume;
        let outcome: Mutex<Option<Result<NotifyOutcome, NTSTATUS>>> = Mutex::new(None);
        // The file system receives the request (as the filters left it) and holds it.
        let mut wait = |base: usize| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_NOTIFY_DIRECTORY);
            let flags_at = base
                + offset_of!(OperationBlock, iopb)
                + offset_of!(FLT_IO_PARAMETER_BLOCK, OperationFlags);
            let tree = guest::read(flags_at as *const u8) & SL_WATCH_TREE != 0;
            let watch = {
                let flt = flt_read(k);
                match (flt.io.volumes.get(volume.0), handle) {
                    (Some(v), Some(handle)) => fs_of(v).watch(handle, p.CompletionFilter, tree),
                    _ => Err(crate::ntoskrnl::status::INVALID_DEVICE_REQUEST),
                }
            };
            progress.set(Stage::Held);
            let result = watch.map(|watch| {
                let ended = watch.wait(k.config.hang_timeout);
                if let Some(v) = flt_read(k).io.volumes.get(volume.0) {
                    fs_of(v).unwatch(&watch);
                }
                ended
            });
            *crate::kernel::lock(&outcome) = Some(match result {
                Ok(Some(ended)) => Ok(ended),
                Ok(None) => {
                    k.violation(
                        ViolationKind::Deadlock,
                        "a held change notification completes (a change or the handle's cleanup)",
                        format!(
                            "no change and no cleanup of the directory's handle within {:?}",
                            k.config.hang_timeout
                        ),
                    );
                    Err(STATUS_CANCELLED)
                }
                Err(status) => Err(status),
            });
        };
        let mut step = |_: &IoState, base: usize| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_NOTIFY_DIRECTORY);
            answer(k, crate::kernel::lock(&outcome).take(), &p)
        };
        let request = Request {
            minor: IRP_MN_NOTIFY_CHANGE_DIRECTORY,
            irql: PASSIVE_LEVEL,
            ..Request::at_passive(
                volume,
                directory.file_object,
                IRP_MJ_DIRECTORY_CONTROL,
                Path::Irp,
                parameters,
            )
        };
        let (status, information) = self.issue_waiting(request, Some(&mut wait), &mut step);
        if !NT_SUCCESS(status)
            || status == STATUS_NOTIFY_CLEANUP
            || status == STATUS_NOTIFY_ENUM_DIR
        {
            return Err(status);
        }
        let bytes = guest::read_bytes(buffer.as_ptr(), information.min(length as usize));
        Ok(named_entries(&bytes)
            .into_iter()
            .map(|(action, name)| NotifyRecord { action, name })
            .collect())
    }
}

/// What the file system answers a held notification with, from how it ended: the records in
/// the request's buffer, or the status alone.
fn answer(
    k: &Kernel,
    outcome: Option<Result<NotifyOutcome, NTSTATUS>>,
    p: &FLT_PARAMETERS_NOTIFY_DIRECTORY,
) -> (NTSTATUS, usize) {
    match outcome {
        Some(Ok(NotifyOutcome::Changes(changes))) => {
            let bytes = notify_information(&changes);
            if bytes.len() > p.Length as usize {
                return (STATUS_NOTIFY_ENUM_DIR, 0);
            }
            let Some(target) = transfer_buffer(k, p.MdlAddress, p.DirectoryBuffer, bytes.len())
            else {
                return (vigil_sys::STATUS_INVALID_USER_BUFFER, 0);
            };
            guest::write_bytes(target as *mut u8, &bytes);
            (STATUS_SUCCESS, bytes.len())
        }
        Some(Ok(NotifyOutcome::Cleanup)) => (STATUS_NOTIFY_CLEANUP, 0),
        Some(Err(status)) => (status, 0),
        None => (crate::ntoskrnl::status::INVALID_DEVICE_REQUEST, 0),
    }
}

/// `FILE_NOTIFY_INFORMATION` records for `changes`, each at a 4-byte boundary
/// (`NextEntryOffset` 0 on the last).
fn notify_information(changes: &[(u32, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (action, name)) in changes.iter().enumerate() {
        let name = utf16(name);
        let record = 12 + name.len();
        let padded = record.next_multiple_of(4);
        let next = if i + 1 == changes.len() { 0 } else { padded };
        out.extend_from_slice(&u32::try_from(next).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&action.to_le_bytes());
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&name);
        if next != 0 {
            out.resize(out.len() + (padded - record), 0);
        }
    }
    out
}
