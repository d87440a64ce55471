//! The process table's rules, over a slice of preallocated entries: who a pid is now, which
//! process records are still to be sent, and what happens when the table is full. Portable
//! (unit-tested on the host); the driver keeps the slice in non-paged pool behind a push lock
//! (`crate::process`), so nothing here allocates, waits or fails other than by "full".
//!
//! An entry is free, live (the process runs), or exited (its exit record is still to be sent;
//! its pid is already free for reuse, so two entries may share a pid, but only one is live).
//! Lookups scan the slice up to its high-water mark: entries are taken lowest index first, so
//! the scan covers about as many entries as processes ever ran at once.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use vigil_protocol::{MAX_SID_BYTES, ProcessEvent, ProcessFlags};

/// Image path units kept per process: `MAX_PATH`, which nearly every image path fits; a longer
/// one is cut and flagged [`ProcessFlags::IMAGE_TRUNCATED`].
pub const IMAGE_UNITS: usize = 260;

const FREE: u8 = 0;
const LIVE: u8 = 1;
const EXITED: u8 = 2;

/// One process. All-zero bytes are a valid free entry (the table's pool is zeroed).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ProcessEntry {
    state: u8,
    sid_len: u8,
    /// The record to send (a [`ProcessEvent`] wire value), 0 for none.
    pending: u16,
    image_len: u16,
    /// The process id.
    pub pid: u64,
    /// The process start key (never repeats while the machine runs).
    pub key: u64,
    /// The parent's id (0 when unknown: the first-sight query of a process that predates the
    /// load failed).
    pub parent_pid: u64,
    /// Creation, sighting or exit time (100 ns since 1601), as the pending record wants it.
    pub timestamp: u64,
    /// The session id.
    pub session_id: u32,
    /// The exit status, for an exit record.
    pub exit_status: i32,
    /// Record flags.
    pub flags: ProcessFlags,
    image: [u16; IMAGE_UNITS],
    sid: [u8; MAX_SID_BYTES],
}

impl ProcessEntry {
    /// The image's NT path (possibly cut, see [`IMAGE_UNITS`]).
    pub fn image(&self) -> &[u16] {
        self.image.get(..usize::from(self.image_len)).unwrap_or(&[])
    }

    /// The user SID's bytes (empty when the token could not be read).
    pub fn sid(&self) -> &[u8] {
        self.sid.get(..usize::from(self.sid_len)).unwrap_or(&[])
    }

    /// The record this entry is waiting to send.
    pub fn pending(&self) -> Option<ProcessEvent> {
        ProcessEvent::from_u16(self.pending)
    }
}

/// What the table learns of a process.
pub struct ProcessFacts<'a> {
    /// The process id.
    pub pid: u64,
    /// Its start key.
    pub key: u64,
    /// Its parent's id.
    pub parent_pid: u64,
    /// Creation or sighting time.
    pub timestamp: u64,
    /// Its session.
    pub session_id: u32,
    /// Its image path.
    pub image: &'a [u16],
    /// Its user's SID (empty: unknown).
    pub sid: &'a [u8],
}

/// No free entry: the process is not tracked (counted by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// The live entry of `pid`.
pub fn live(entries: &[ProcessEntry], pid: u64) -> Option<&ProcessEntry> {
    entries
        .iter()
        .take_while(|e| e.state != FREE || e.pid != 0)
        .find(|e| e.state == LIVE && e.pid == pid)
}

/// Adds a live process with `record` to send (`Start`, or `Seen` for one found running). A
/// live entry of the same pid is a process whose exit was missed: it is replaced. Returns the
/// entry's index.
///
/// # Errors
///
/// [`TableFull`]; nothing changes.
pub fn insert(
    entries: &mut [ProcessEntry],
    facts: &ProcessFacts<'_>,
    record: Option<ProcessEvent>,
) -> Result<usize, TableFull> {
    let slot = match entries
        .iter()
        .position(|e| e.state == LIVE && e.pid == facts.pid)
    {
        Some(index) => index,
        None => entries
            .iter()
            .position(|e| e.state == FREE)
            .ok_or(TableFull)?,
    };
    let entry = entries.get_mut(slot).ok_or(TableFull)?;
    let image_len = facts.image.len().min(IMAGE_UNITS);
    let sid_len = if facts.sid.len() <= MAX_SID_BYTES {
        facts.sid.len()
    } else {
        0
    };
    entry.state = LIVE;
    entry.pending = record.map_or(0, ProcessEvent::to_u16);
    entry.pid = facts.pid;
    entry.key = facts.key;
    entry.parent_pid = facts.parent_pid;
    entry.timestamp = facts.timestamp;
    entry.session_id = facts.session_id;
    entry.exit_status = 0;
    entry.flags = if facts.image.len() > IMAGE_UNITS {
        ProcessFlags::IMAGE_TRUNCATED
    } else {
        ProcessFlags::NONE
    };
    entry.image_len = u16::try_from(image_len).unwrap_or(0);
    entry.image.fill(0);
    if let (Some(to), Some(from)) = (
        entry.image.get_mut(..image_len),
        facts.image.get(..image_len),
    ) {
        to.copy_from_slice(from);
    }
    entry.sid_len = u8::try_from(sid_len).unwrap_or(0);
    entry.sid.fill(0);
    if let (Some(to), Some(from)) = (entry.sid.get_mut(..sid_len), facts.sid.get(..sid_len)) {
        to.copy_from_slice(from);
    }
    Ok(slot)
}

/// Process `pid` exited at `timestamp`: with a service to tell (`announce`), the entry waits
/// for its exit record; without one it is freed at once (a service that connects later learns
/// only the live processes). Returns the index of `pid`'s entry, if it was tracked.
pub fn exit(
    entries: &mut [ProcessEntry],
    pid: u64,
    (timestamp, status): (u64, i32),
    announce: bool,
) -> Option<usize> {
    let index = entries
        .iter()
        .position(|e| e.state == LIVE && e.pid == pid)?;
    let entry = entries.get_mut(index)?;
    if announce {
        entry.state = EXITED;
        entry.timestamp = timestamp;
        entry.exit_status = status;
        entry.pending = ProcessEvent::Exit.to_u16();
    } else {
        *entry = free_entry(entry);
    }
    Some(index)
}

/// A service connected: every live process gets a `Seen` record (a `Start` not yet sent stays
/// one), so that a reconnecting service learns every process its events can name.
pub fn announce_all(entries: &mut [ProcessEntry], now: u64) {
    for entry in entries.iter_mut().filter(|e| e.state == LIVE) {
        if entry.pending != ProcessEvent::Start.to_u16() {
            entry.pending = ProcessEvent::Seen.to_u16();
            entry.timestamp = now;
        }
    }
}

/// Takes the next record to send: a copy of its entry; an exited entry is freed with it.
pub fn take_pending(entries: &mut [ProcessEntry]) -> Option<ProcessEntry> {
    let entry = entries.iter_mut().find(|e| e.pending != 0)?;
    let copy = *entry;
    if entry.state == EXITED {
        *entry = free_entry(entry);
    } else {
        entry.pending = 0;
    }
    Some(copy)
}

/// The lock-free mirror of who is live, read by every event for its process key without the
/// table's lock: two words per entry, a tag (`sequence << 33 | pid << 1 | 1` while the entry
/// is live, 0 otherwise) and the key. Written only under the table's exclusive lock; a reader
/// takes the key only if the tag is the same before and after reading it (the sequence changes
/// at every publication, so a slot freed and reused meanwhile, even by the same pid, is seen).
pub struct LiveIndex<'a> {
    words: &'a [AtomicU64],
    high_water: &'a AtomicUsize,
}

impl<'a> LiveIndex<'a> {
    /// The index over `words` (two per entry, zero at first) and its high-water mark.
    pub fn new(words: &'a [AtomicU64], high_water: &'a AtomicUsize) -> Self {
        Self { words, high_water }
    }

    fn pair(&self, slot: usize) -> Option<(&AtomicU64, &AtomicU64)> {
        let at = slot.checked_mul(2)?;
        Some((self.words.get(at)?, self.words.get(at.checked_add(1)?)?))
    }

    /// Entry `slot` is live as `pid` with `key` (under the table's exclusive lock).
    pub fn publish(&self, slot: usize, pid: u64, key: u64) {
        let Some((tag, stored_key)) = self.pair(slot) else {
            return;
        };
        let sequence = (tag.load(Ordering::Relaxed) >> 33).wrapping_add(1) & 0x7FFF_FFFF;
        // A reader that sees the old tag again after this point rejects what it read.
        tag.store(0, Ordering::Release);
        stored_key.store(key, Ordering::Release);
        tag.store(
            sequence << 33 | (pid & 0xFFFF_FFFF) << 1 | 1,
            Ordering::Release,
        );
        self.high_water.fetch_max(slot + 1, Ordering::Release);
    }

    /// Entry `slot` is no longer live (under the table's exclusive lock).
    pub fn retire(&self, slot: usize) {
        if let Some((tag, _)) = self.pair(slot) {
            tag.store(0, Ordering::Release);
        }
    }

    /// The key of live process `pid`, if its entry is published. Any IRQL, no lock.
    pub fn key_of(&self, pid: u64) -> Option<u64> {
        let wanted = (pid & 0xFFFF_FFFF) << 1 | 1;
        let end = self.high_water.load(Ordering::Acquire);
        (0..end).find_map(|slot| {
            let (tag, key) = self.pair(slot)?;
            let before = tag.load(Ordering::Acquire);
            if before & 0x1_FFFF_FFFF != wanted || pid > 0xFFFF_FFFF {
                return None;
            }
            let value = key.load(Ordering::Acquire);
            (tag.load(Ordering::Acquire) == before).then_some(value)
        })
    }
}

/// A free entry that keeps the scan mark: a freed slot below the high-water mark keeps a
/// non-zero pid so that [`live`] scans past it (its state says free).
fn free_entry(old: &ProcessEntry) -> ProcessEntry {
    let mut entry = ZERO;
    entry.pid = old.pid.max(1);
    entry
}

const ZERO: ProcessEntry = ProcessEntry {
    state: FREE,
    sid_len: 0,
    pending: 0,
    image_len: 0,
    pid: 0,
    key: 0,
    parent_pid: 0,
    timestamp: 0,
    session_id: 0,
    exit_status: 0,
    flags: ProcessFlags::NONE,
    image: [0; IMAGE_UNITS],
    sid: [0; MAX_SID_BYTES],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pid: u64, key: u64) -> ProcessFacts<'static> {
        ProcessFacts {
            pid,
            key,
            parent_pid: 4,
            timestamp: 1,
            session_id: 1,
            image: &[0x61, 0x62],
            sid: &[1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0],
        }
    }

    #[test]
    fn a_reused_pid_gets_the_new_key_and_the_old_exit_is_still_sent() {
        let mut table = [ZERO; 4];
        insert(&mut table, &facts(100, 1), Some(ProcessEvent::Start)).unwrap();
        assert_eq!(live(&table, 100).map(|e| e.key), Some(1));
        assert_eq!(exit(&mut table, 100, (2, 0), true), Some(0));
        insert(&mut table, &facts(100, 2), Some(ProcessEvent::Start)).unwrap();
        assert_eq!(live(&table, 100).map(|e| e.key), Some(2));
        // The exit record replaced the unsent start: it carries the same facts.
        let first = take_pending(&mut table).unwrap();
        assert_eq!((first.key, first.pending()), (1, Some(ProcessEvent::Exit)));
        let second = take_pending(&mut table).unwrap();
        assert_eq!(
            (second.key, second.pending()),
            (2, Some(ProcessEvent::Start))
        );
        assert!(take_pending(&mut table).is_none());
        assert_eq!(live(&table, 100).map(|e| e.key), Some(2));
    }

    #[test]
    fn a_full_table_refuses_and_a_freed_entry_is_reused() {
        let mut table = [ZERO; 2];
        insert(&mut table, &facts(4, 1), None).unwrap();
        insert(&mut table, &facts(8, 2), None).unwrap();
        assert_eq!(insert(&mut table, &facts(12, 3), None), Err(TableFull));
        assert_eq!(exit(&mut table, 4, (5, 0), false), Some(0));
        insert(&mut table, &facts(12, 3), None).unwrap();
        assert_eq!(live(&table, 12).map(|e| e.key), Some(3));
        assert_eq!(live(&table, 8).map(|e| e.key), Some(2));
        assert!(live(&table, 4).is_none());
    }

    #[test]
    fn a_connect_announces_every_live_process_once() {
        let mut table = [ZERO; 4];
        insert(&mut table, &facts(4, 1), None).unwrap();
        insert(&mut table, &facts(8, 2), None).unwrap();
        assert!(take_pending(&mut table).is_none());
        announce_all(&mut table, 9);
        let a = take_pending(&mut table).unwrap();
        let b = take_pending(&mut table).unwrap();
        assert_eq!(a.pending(), Some(ProcessEvent::Seen));
        assert_eq!((a.key, b.key), (1, 2));
        assert!(take_pending(&mut table).is_none());
        assert_eq!(a.image(), &[0x61, 0x62]);
        assert_eq!(a.sid().len(), 12);
    }

    #[test]
    fn the_live_index_finds_published_keys_and_forgets_retired_ones() {
        let words: [AtomicU64; 8] = Default::default();
        let high_water = AtomicUsize::new(0);
        let index = LiveIndex::new(&words, &high_water);
        assert_eq!(index.key_of(100), None);
        index.publish(2, 100, 7);
        index.publish(0, 104, 8);
        assert_eq!(index.key_of(100), Some(7));
        assert_eq!(index.key_of(104), Some(8));
        index.retire(2);
        assert_eq!(index.key_of(100), None);
        index.publish(2, 100, 9);
        assert_eq!(index.key_of(100), Some(9));
        assert_eq!(index.key_of(1 << 40), None);
        index.publish(9, 5, 5);
        assert_eq!(index.key_of(5), None, "out of range: ignored");
    }

    #[test]
    fn a_long_image_is_cut_and_flagged() {
        let mut table = [ZERO; 1];
        let long = [0x61u16; IMAGE_UNITS + 5];
        let mut f = facts(4, 1);
        f.image = &long;
        insert(&mut table, &f, None).unwrap();
        let e = live(&table, 4).unwrap();
        assert_eq!(e.image().len(), IMAGE_UNITS);
        assert!(e.flags.contains(ProcessFlags::IMAGE_TRUNCATED));
    }
}
