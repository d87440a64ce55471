//! The public API of the synthetic workload's processes on a loaded [`Driver`]: creation and
//! exit, each delivered to the process-notify routines the driver registered
//! (`ntoskrnl::process_notify`).

use std::sync::Arc;

use crate::kernel::processes::{SimProcess, sid_bytes};
use crate::ntoskrnl::process_notify;
use crate::sim::Driver;

/// A process for [`Driver::start_process`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProcess {
    /// Its id (free: a pid is reused only after its process exited).
    pub pid: u32,
    /// The creating process's id (the notification runs in its context).
    pub parent_pid: u32,
    /// Its image, an NT path.
    pub image: String,
    /// Its token holds the Administrators group (and its user is `LocalSystem`).
    pub admin: bool,
    /// The relative id of its (ordinary) user, the last sub-authority of the user SID.
    pub user_rid: u32,
    /// Its Terminal Services session.
    pub session_id: u32,
}

impl NewProcess {
    /// An ordinary user's process (RID 1001, session 1) started by `parent_pid`.
    pub fn new(pid: u32, parent_pid: u32, image: &str) -> Self {
        Self {
            pid,
            parent_pid,
            image: image.to_owned(),
            admin: false,
            user_rid: 1001,
            session_id: 1,
        }
    }
}

impl Driver {
    /// Creates a process: the registered process-notify routines see its creation, on this
    /// thread, in the parent's context. Returns its start key (`PsGetProcessStartKey`).
    ///
    /// # Errors
    ///
    /// The status a notify routine set in `CreationStatus` (the creation is refused: every
    /// routine then sees the process exit, with that status), or `STATUS_INVALID_PARAMETER`
    /// when the pid is in use.
    pub fn start_process(&self, process: &NewProcess) -> Result<u64, i32> {
        let spec = SimProcess {
            pid: process.pid,
            parent_pid: process.parent_pid,
            image: process.image.clone(),
            admin: process.admin,
            user_sid: sid_bytes(process.admin, process.user_rid),
            session_id: process.session_id,
            start_key: 0,
            exit_status: None,
        };
        process_notify::create_process(self.kernel(), spec)
    }

    /// Process `pid` exits: the registered routines see it (`CreateInfo` NULL), in its context;
    /// its pid may then be reused. `false` when no such process runs.
    pub fn exit_process(&self, pid: u32) -> bool {
        process_notify::exit_process(self.kernel(), pid, 0)
    }

    /// As [`Driver::exit_process`], with the exit status `PsGetProcessExitStatus` reports.
    pub fn exit_process_with_status(&self, pid: u32, status: i32) -> bool {
        process_notify::exit_process(self.kernel(), pid, status)
    }

    /// The start key of process `pid` (a process running before the load gets one on first
    /// sight, as the driver would read it).
    pub fn process_start_key(&self, pid: u32) -> u64 {
        let k = Arc::clone(self.kernel());
        crate::kernel::lock(&k.processes)
            .get_or_running(&k.config, pid)
            .start_key
    }
}
