//! The machine's processes: who runs (pid, parent, image, user, session), each with a start key
//! that no other process of the run ever has, and the process-notify routines registered with
//! `PsSetCreateProcessNotifyRoutineEx` (the emulation is `ntoskrnl::process_notify`).
//!
//! The processes listed in [`SimConfig::processes`](crate::SimConfig::processes) run before the
//! driver loads; a pid that issues I/O without being listed or created is a process that was
//! also running already, and gets its entry (and key) the first time anyone asks. Processes the
//! workload creates and exits come through [`Driver::start_process`](crate::Driver::start_process)
//! and [`Driver::exit_process`](crate::Driver::exit_process); an exited pid may be reused.

use std::collections::HashMap;

use crate::config::SimConfig;

/// The boot session's part of every start key (Windows puts a boot sequence number in the
/// high bits, a per-boot counter in the low ones).
const BOOT_KEY: u64 = 0x0001_0000_0000_0000;

/// One process of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SimProcess {
    pub pid: u32,
    pub parent_pid: u32,
    /// NT path of the image.
    pub image: String,
    pub admin: bool,
    /// The token user's SID, binary.
    pub user_sid: Vec<u8>,
    pub session_id: u32,
    pub start_key: u64,
    /// Set when the process exits (`PsGetProcessExitStatus`; `STATUS_PENDING` before).
    pub exit_status: Option<i32>,
}

/// `S-1-5-18` (`LocalSystem`) for an administrator's process of the configuration, else an
/// ordinary user `S-1-5-21-1004336348-1177238915-682003330-<rid>`, as binary SIDs.
pub(crate) fn sid_bytes(admin: bool, rid: u32) -> Vec<u8> {
    if admin {
        let mut sid = vec![1, 1, 0, 0, 0, 0, 0, 5];
        sid.extend_from_slice(&18u32.to_le_bytes());
        return sid;
    }
    let mut sid = vec![1, 5, 0, 0, 0, 0, 0, 5];
    for sub in [21u32, 1_004_336_348, 1_177_238_915, 682_003_330, rid] {
        sid.extend_from_slice(&sub.to_le_bytes());
    }
    sid
}

/// The process table and the notify routines of one run.
#[derive(Debug, Default)]
pub(crate) struct Processes {
    seeded: bool,
    live: HashMap<u32, SimProcess>,
    next_key: u64,
    /// Registered notify routines (addresses), in registration order.
    pub notify_routines: Vec<usize>,
    /// Notifications in progress, per routine address.
    pub in_flight: HashMap<usize, usize>,
}

impl Processes {
    fn seed(&mut self, config: &SimConfig) {
        if self.seeded {
            return;
        }
        self.seeded = true;
        for p in &config.processes {
            let start_key = self.fresh_key();
            self.live.insert(
                p.pid,
                SimProcess {
                    pid: p.pid,
                    parent_pid: p.parent_pid,
                    image: p.image.clone(),
                    admin: p.admin,
                    user_sid: sid_bytes(p.admin, 1001),
                    session_id: u32::from(!p.admin),
                    start_key,
                    exit_status: None,
                },
            );
        }
    }

    fn fresh_key(&mut self) -> u64 {
        self.next_key += 1;
        BOOT_KEY | self.next_key
    }

    /// Process `pid` (seeding the configured ones first); a pid nobody listed is a process
    /// that was already running, created here on first sight.
    pub(crate) fn get_or_running(&mut self, config: &SimConfig, pid: u32) -> SimProcess {
        self.seed(config);
        if let Some(p) = self.live.get(&pid) {
            return p.clone();
        }
        let start_key = self.fresh_key();
        let p = SimProcess {
            pid,
            parent_pid: 4,
            image: format!("\\Device\\HarddiskVolume1\\Users\\user\\app{pid}.exe"),
            admin: pid == 4,
            user_sid: sid_bytes(pid == 4, 1001),
            session_id: u32::from(pid != 4),
            start_key,
            exit_status: None,
        };
        self.live.insert(pid, p.clone());
        p
    }

    /// Whether `pid` names a live process.
    pub(crate) fn is_live(&mut self, config: &SimConfig, pid: u32) -> bool {
        self.seed(config);
        self.live.contains_key(&pid)
    }

    /// Adds a created process with a fresh start key; returns it.
    pub(crate) fn create(
        &mut self,
        config: &SimConfig,
        mut process: SimProcess,
    ) -> Result<SimProcess, String> {
        self.seed(config);
        if self.live.contains_key(&process.pid) {
            return Err(format!("pid {} is in use", process.pid));
        }
        process.start_key = self.fresh_key();
        self.live.insert(process.pid, process.clone());
        Ok(process)
    }

    /// Process `pid` is exiting with `status` (its notifications follow).
    pub(crate) fn set_exit_status(&mut self, pid: u32, status: i32) {
        if let Some(p) = self.live.get_mut(&pid) {
            p.exit_status = Some(status);
        }
    }

    /// Removes an exited process.
    pub(crate) fn exit(&mut self, config: &SimConfig, pid: u32) -> Option<SimProcess> {
        self.seed(config);
        self.live.remove(&pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_keys_never_repeat_even_when_a_pid_is_reused() {
        let config = SimConfig::default();
        let mut processes = Processes::default();
        let template = SimProcess {
            pid: 100,
            parent_pid: 4,
            image: "\\a.exe".into(),
            admin: false,
            user_sid: sid_bytes(false, 1001),
            session_id: 1,
            start_key: 0,
            exit_status: None,
        };
        let first = processes.create(&config, template.clone()).unwrap();
        assert!(processes.create(&config, template.clone()).is_err());
        processes.exit(&config, 100).unwrap();
        let second = processes.create(&config, template).unwrap();
        assert_ne!(first.start_key, second.start_key);
        let running = processes.get_or_running(&config, 200);
        assert_ne!(running.start_key, second.start_key);
        assert_eq!(processes.get_or_running(&config, 200), running);
    }

    #[test]
    fn sids_have_the_binary_layout() {
        let user = sid_bytes(false, 1001);
        assert_eq!(user.len(), 8 + 4 * 5);
        assert_eq!(user[1], 5);
        assert_eq!(sid_bytes(true, 0).len(), 12);
    }
}
