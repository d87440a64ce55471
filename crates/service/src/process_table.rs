//! The service's process table: what the driver's process records say about each process key,
//! so that every event is written with its process's image, parent, user and session. User
//! mode, portable.
//!
//! Fed in message order by [`vigil_protocol::ProcessRecord`]s (start, exit, first sight of a
//! process that ran before the driver loaded). Keyed by the process key, which the kernel never
//! reuses while the machine runs, so two processes that had the same pid stay apart.
//!
//! Bounded: at most [`ProcessTable::capacity`] entries. An exited process is kept (events in
//! flight when it exited still name it) until room is needed; then the oldest exited entry
//! goes first, and only if none has exited the oldest entry; each eviction is counted. An event
//! whose key is unknown (evicted, zero from a driver without a process table, or a record lost)
//! is still written, with what the event itself says (its pid).

use std::collections::{HashMap, VecDeque};

use vigil_protocol::{ProcessEvent, ProcessRecord};

use crate::policy::ProcessNames;

/// Entries kept by default: far more than the processes alive on a busy machine (a few
/// hundred to a few thousand), with room for the recently exited; about 2 MiB at most.
pub const DEFAULT_PROCESS_TABLE_CAPACITY: usize = 8192;

/// How far from the oldest entry an eviction looks for an exited process before it gives up
/// and takes the oldest: keeps an insertion O(1) however many live processes are old.
const EVICTION_SCAN: usize = 64;

/// What the table knows about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process key (never reused while the machine runs).
    pub key: u64,
    /// The process id.
    pub pid: u64,
    /// The parent's process id.
    pub parent_pid: u64,
    /// The image's NT path; empty when the driver had none. Invalid UTF-16 is replaced by
    /// U+FFFD.
    pub image: String,
    /// The user's SID in string form (`S-1-5-21-…`), when the driver had the token.
    pub user_sid: Option<String>,
    /// The session id.
    pub session: u32,
    /// When it started (or was first seen), 100 ns ticks since 1601.
    pub since: u64,
    /// `true` once its exit record arrived.
    pub exited: bool,
}

impl ProcessInfo {
    /// The image's file name (after the last `\`), as ECS `process.name` wants it.
    pub fn image_name(&self) -> &str {
        self.image.rsplit('\\').next().unwrap_or("")
    }
}

/// The table. See the module documentation for its bounds.
#[derive(Debug)]
pub struct ProcessTable {
    by_key: HashMap<u64, ProcessInfo>,
    /// The live process with each pid: at most one at a time, since Windows reuses a pid only
    /// after its process is gone.
    live_by_pid: HashMap<u64, u64>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<u64>,
    capacity: usize,
    evicted: u64,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_PROCESS_TABLE_CAPACITY)
    }
}

impl ProcessTable {
    /// An empty table of at most `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            by_key: HashMap::new(),
            live_by_pid: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            evicted: 0,
        }
    }

    /// Most entries kept.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Entries evicted to make room, since the table was made.
    pub const fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The process with this key.
    pub fn get(&self, key: u64) -> Option<&ProcessInfo> {
        self.by_key.get(&key)
    }

    /// The live process with this pid: what a verdict request, which names only the pid of a
    /// requester that is alive while it waits, is judged by.
    pub fn live_by_pid(&self, pid: u64) -> Option<&ProcessInfo> {
        self.live_by_pid
            .get(&pid)
            .and_then(|key| self.by_key.get(key))
    }

    /// Applies one process record.
    pub fn apply(&mut self, record: &ProcessRecord<'_>) {
        let key = record.process_key();
        match record.event() {
            ProcessEvent::Start | ProcessEvent::Seen => {
                let info = ProcessInfo {
                    key,
                    pid: record.process_id(),
                    parent_pid: record.parent_process_id(),
                    image: record.image().to_string(),
                    user_sid: record.user_sid().map(|sid| sid.to_string()),
                    session: record.session_id(),
                    since: record.timestamp(),
                    exited: false,
                };
                self.insert(info);
            }
            ProcessEvent::Exit => {
                if let Some(info) = self.by_key.get_mut(&key) {
                    info.exited = true;
                    if self.live_by_pid.get(&info.pid) == Some(&key) {
                        self.live_by_pid.remove(&info.pid);
                    }
                } else {
                    // An exit of a process never seen (its start lost or evicted): what the
                    // exit record says is all there is, and no event will follow it.
                    let pid = record.process_id();
                    if self.live_by_pid.get(&pid) == Some(&key) {
                        self.live_by_pid.remove(&pid);
                    }
                }
            }
        }
    }

    fn insert(&mut self, info: ProcessInfo) {
        let (key, pid) = (info.key, info.pid);
        if self.by_key.insert(key, info).is_none() {
            self.order.push_back(key);
        }
        // A new process with this pid: whatever had it before is gone (Windows reuses pids
        // only after exit), even if its exit record was lost.
        if let Some(old) = self.live_by_pid.insert(pid, key)
            && old != key
            && let Some(info) = self.by_key.get_mut(&old)
        {
            info.exited = true;
        }
        while self.by_key.len() > self.capacity {
            self.evict_one();
        }
    }

    fn evict_one(&mut self) {
        let exited = self
            .order
            .iter()
            .take(EVICTION_SCAN)
            .position(|key| self.by_key.get(key).is_none_or(|i| i.exited));
        let Some(key) = self.order.remove(exited.unwrap_or(0)) else {
            return;
        };
        if let Some(info) = self.by_key.remove(&key) {
            if self.live_by_pid.get(&info.pid) == Some(&key) {
                self.live_by_pid.remove(&info.pid);
            }
            self.evicted += 1;
        }
    }
}

/// Looks a verdict's requester up in the table (the driver's account: image and user as the
/// kernel recorded them at process start) and, for a process the table does not know, in
/// `fallback` (the operating system, by pid).
pub struct TableFirst<'a> {
    /// The process table.
    pub table: &'a ProcessTable,
    /// Asked when the table has no live process with the pid.
    pub fallback: &'a dyn ProcessNames,
}

impl ProcessNames for TableFirst<'_> {
    fn image_name(&self, pid: u64) -> Option<String> {
        match self.table.live_by_pid(pid) {
            Some(info) if !info.image.is_empty() => Some(info.image.clone()),
            _ => self.fallback.image_name(pid),
        }
    }

    fn user_sid(&self, pid: u64) -> Option<String> {
        match self.table.live_by_pid(pid) {
            Some(info) => info.user_sid.clone(),
            None => self.fallback.user_sid(pid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{ProcessFlags, ProcessRepr, Sid, Utf16Str};

    fn record(event: ProcessEvent, key: u64, pid: u64, image: &str) -> Vec<u8> {
        let image: Vec<u16> = image.encode_utf16().collect();
        let sid = [1u8, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0];
        let repr = ProcessRepr {
            event,
            process_key: key,
            process_id: pid,
            parent_process_id: 4,
            timestamp: 1,
            session_id: 0,
            exit_status: 0,
            flags: ProcessFlags::NONE,
            image: Utf16Str::from_units(&image),
            user_sid: Some(Sid::new_checked(&sid).unwrap()),
        };
        let mut out = vec![0; repr.encoded_len()];
        repr.emit(&mut out).unwrap();
        out
    }

    fn apply(table: &mut ProcessTable, event: ProcessEvent, key: u64, pid: u64, image: &str) {
        let bytes = record(event, key, pid, image);
        table.apply(&ProcessRecord::new_checked(&bytes).unwrap());
    }

    #[test]
    fn a_reused_pid_keeps_both_processes_apart_by_key() {
        let mut t = ProcessTable::default();
        apply(&mut t, ProcessEvent::Start, 10, 500, r"\Device\V1\a.exe");
        apply(&mut t, ProcessEvent::Exit, 10, 500, "");
        apply(&mut t, ProcessEvent::Start, 11, 500, r"\Device\V1\b.exe");
        assert_eq!(t.get(10).unwrap().image, r"\Device\V1\a.exe");
        assert!(t.get(10).unwrap().exited);
        assert_eq!(t.get(11).unwrap().image, r"\Device\V1\b.exe");
        assert_eq!(t.get(11).unwrap().user_sid.as_deref(), Some("S-1-5-18"));
        assert_eq!(t.live_by_pid(500).unwrap().key, 11);
    }

    #[test]
    fn a_start_for_a_pid_still_marked_live_ends_the_old_process() {
        let mut t = ProcessTable::default();
        apply(&mut t, ProcessEvent::Seen, 1, 77, r"\a.exe");
        // Its exit record was lost.
        apply(&mut t, ProcessEvent::Start, 2, 77, r"\b.exe");
        assert!(t.get(1).unwrap().exited);
        assert_eq!(t.live_by_pid(77).unwrap().key, 2);
        apply(&mut t, ProcessEvent::Exit, 2, 77, "");
        assert!(t.live_by_pid(77).is_none());
    }

    #[test]
    fn overflow_evicts_exited_processes_first_and_counts() {
        let mut t = ProcessTable::with_capacity(3);
        apply(&mut t, ProcessEvent::Start, 1, 1, r"\live-oldest.exe");
        apply(&mut t, ProcessEvent::Start, 2, 2, r"\exits.exe");
        apply(&mut t, ProcessEvent::Exit, 2, 2, "");
        apply(&mut t, ProcessEvent::Start, 3, 3, r"\c.exe");
        apply(&mut t, ProcessEvent::Start, 4, 4, r"\d.exe");
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted(), 1);
        assert!(t.get(2).is_none(), "the exited one went first");
        assert!(t.get(1).is_some(), "the oldest live one stayed");
        // No exited entry left: the oldest goes.
        apply(&mut t, ProcessEvent::Start, 5, 5, r"\e.exe");
        assert!(t.get(1).is_none());
        assert!(t.live_by_pid(1).is_none());
        assert_eq!(t.evicted(), 2);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn image_name_is_the_last_component() {
        let mut t = ProcessTable::default();
        apply(
            &mut t,
            ProcessEvent::Start,
            1,
            1,
            r"\Device\V\Windows\notepad.exe",
        );
        assert_eq!(t.get(1).unwrap().image_name(), "notepad.exe");
    }
}
