//! The driver's process table: fed by the process-notify routine (creation and exit, at
//! PASSIVE_LEVEL in the creating or exiting thread), by first sight of a process that was
//! running before the load (at PASSIVE_LEVEL, in its own thread, once), and read by every event
//! for its process key. Its records (start, exit, first sight) go to the service from the
//! delivery thread, before each round's event batches.
//!
//! Bounded and non-paged: the entries are one pool block allocated at load
//! (`ProcessTableEntries`); a process with no room left is counted
//! (`process_table_overflows`) and its events still carry its key, read from the kernel.
//! The table's push lock is held only to copy an entry in or out, never across a send or a
//! wait (RULES.md 27): the delivery thread copies a record out, releases the lock, then sends.
//!
//! The notify routine is the fourth lifecycle race: it is registered in the internal setup,
//! before `FltRegisterFilter`, removed first thing in the teardown (the removal waits for the
//! notifications in flight), and each notification runs under an unload-gate admission, so
//! that unload's rundown drains it like any filter callback.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use vigil_protocol::{MAX_SID_BYTES, ProcessEvent, ProcessRepr, Sid, Utf16Str};
use vigil_sys::{HANDLE, PASSIVE_LEVEL, PEPROCESS, PS_CREATE_NOTIFY_INFO, UNICODE_STRING};

use crate::error::Result;
use crate::filter::push_lock::PushLocked;
use crate::globals::Globals;
use crate::kernel::irql;
use crate::kernel::pool::{PoolBuffer, tags};
use crate::kernel::process::{current_parent_pid, with_current_image};
use crate::kernel::process_notify::{
    current_process, current_process_id, exit_status, start_key, token_user_and_session,
};
use crate::kernel::time::system_time;
use crate::process_table::{self, LiveIndex, ProcessEntry, ProcessFacts};
use crate::stats::bump;

/// The entries' storage: `len` zeroed `ProcessEntry` values (all-zero is a free entry).
///
/// # Invariants
///
/// `buffer` holds `len * size_of::<ProcessEntry>()` bytes, 16-byte aligned.
pub struct Entries {
    buffer: PoolBuffer,
    len: usize,
}

impl Entries {
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "pool blocks are 16-byte aligned (PoolBuffer invariant)"
    )]
    fn slice(&mut self) -> &mut [ProcessEntry] {
        let base = self.buffer.as_mut_ptr().cast::<ProcessEntry>();
        // SAFETY: `len` entries of plain data, aligned (the pool block is 16-byte aligned,
        // ProcessEntry needs 8), zeroed or written as entries only, owned (invariant).
        unsafe { core::slice::from_raw_parts_mut(base, self.len) }
    }
}

/// The storage of a process table, allocated at load: the entries and the lock-free index.
pub struct ProcessStorage {
    entries: Entries,
    /// Two `u64` words per entry (`process_table::LiveIndex`), zeroed.
    live: PoolBuffer,
}

/// The process table, behind a push lock (IRQL <= APC_LEVEL), with a lock-free index of the
/// live entries that every event reads for its key (no lock, no routine call on the I/O path).
///
/// # Invariants
///
/// `live` holds `2 * entries` zeroed or index-written `u64` words, 16-byte aligned; it is
/// written only under the table's exclusive lock.
pub struct Processes {
    table: PushLocked<Entries>,
    live: PoolBuffer,
    high_water: AtomicUsize,
    /// Set when an insertion found no room, cleared when an entry is freed: while set, a process
    /// seen for the first time is not looked up (its token and image) just to be refused again
    /// on every event; its events still carry its key.
    full: AtomicBool,
}

impl Processes {
    /// Allocates the storage for `entries` processes (load time). PASSIVE_LEVEL.
    ///
    /// # Errors
    ///
    /// `INSUFFICIENT_RESOURCES`.
    pub fn allocate(entries: u32) -> Result<ProcessStorage> {
        let len = entries as usize;
        let buffer = PoolBuffer::try_zeroed(len * size_of::<ProcessEntry>(), tags::PROCESSES)?;
        let live = PoolBuffer::try_zeroed(len * 2 * size_of::<u64>(), tags::PROCESSES)?;
        Ok(ProcessStorage {
            entries: Entries { buffer, len },
            live,
        })
    }

    /// Builds the table in place over `entries`.
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes, aligned, and never moves afterwards.
    pub unsafe fn init_in_place(slot: *mut Self, storage: ProcessStorage) {
        let ProcessStorage { entries, live } = storage;
        // SAFETY: a field of the writable slot (contract); only its address is computed.
        let table = unsafe { addr_of_mut!((*slot).table) };
        let init = |data: *mut Entries| {
            // SAFETY: the lock's data slot, writable and uninitialized (init_in_place's contract).
            unsafe { data.write(entries) };
        };
        // SAFETY: the table field of the writable, pinned slot (contract); `init` writes the value.
        unsafe { PushLocked::init_in_place(table, init) };
        // SAFETY: a field of the writable slot (contract); only its address is computed.
        let live_slot = unsafe { addr_of_mut!((*slot).live) };
        // SAFETY: that field, written once.
        unsafe { live_slot.write(live) };
        // SAFETY: as above, for the high-water mark.
        let high_water = unsafe { addr_of_mut!((*slot).high_water) };
        // SAFETY: that field, written once.
        unsafe { high_water.write(AtomicUsize::new(0)) };
        // SAFETY: as above, for the full flag.
        let full = unsafe { addr_of_mut!((*slot).full) };
        // SAFETY: that field, written once.
        unsafe { full.write(AtomicBool::new(false)) };
    }

    /// The lock-free index over `live`.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "pool blocks are 16-byte aligned (PoolBuffer invariant)"
    )]
    fn index(&self) -> LiveIndex<'_> {
        let words = self.live.len() / size_of::<u64>();
        let base = self.live.as_slice().as_ptr().cast::<AtomicU64>();
        // SAFETY: `words` aligned, initialized u64 words (invariant), accessed only atomically
        // from here on: AtomicU64 has the layout of u64, and shared atomic access is sound.
        let words = unsafe { core::slice::from_raw_parts(base, words) };
        LiveIndex::new(words, &self.high_water)
    }

    /// The key of live process `pid`. Any IRQL: lock-free.
    fn key_of(&self, pid: u64) -> Option<u64> {
        self.index().key_of(pid)
    }

    fn insert(&self, globals: &Globals, facts: &ProcessFacts<'_>, record: ProcessEvent) {
        let mut table = self.table.write();
        if let Ok(slot) = process_table::insert(table.slice(), facts, Some(record)) {
            self.index().publish(slot, facts.pid, facts.key);
        } else {
            self.full.store(true, Ordering::Relaxed);
            bump(&globals.counters.process_table_overflows);
        }
    }

    /// Whether the last insertion found the table full and nothing was freed since.
    fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Process `pid` exited (see `process_table::exit`).
    fn exit(&self, pid: u64, (timestamp, status): (u64, i32), announce: bool) {
        let mut table = self.table.write();
        if let Some(slot) = process_table::exit(table.slice(), pid, (timestamp, status), announce) {
            self.index().retire(slot);
            if !announce {
                self.full.store(false, Ordering::Relaxed);
            }
        }
    }

    /// A service connected: every live process is announced again (stamped when sent).
    /// PASSIVE_LEVEL.
    pub fn announce_all(&self) {
        process_table::announce_all(self.table.write().slice(), 0);
    }

    /// The next record to send, copied out of the table.
    fn take_pending(&self) -> Option<ProcessEntry> {
        let entry = process_table::take_pending(self.table.write().slice())?;
        if entry.pending() == Some(ProcessEvent::Exit) {
            // Its entry was freed with it.
            self.full.store(false, Ordering::Relaxed);
        }
        Some(entry)
    }
}

/// The process-notify routine: PASSIVE_LEVEL, in the creating (or exiting) thread.
///
/// # Safety
///
/// Called only by the kernel, as the routine registered with
/// `PsSetCreateProcessNotifyRoutineEx`: `process` is the process object, `info` NULL on exit or
/// a valid `PS_CREATE_NOTIFY_INFO` for the duration of the call.
pub unsafe extern "win64" fn process_notify(
    process: PEPROCESS,
    pid: HANDLE,
    info: *mut PS_CREATE_NOTIFY_INFO,
) {
    // Unload's rundown waits for this admission; after it, the routine does nothing.
    let Some(globals) = crate::entry::try_access() else {
        return;
    };
    let pid = pid.addr() as u64;
    let now = system_time();
    // SAFETY: valid for the call, or NULL on exit (contract).
    let Some(info) = (unsafe { info.as_ref() }) else {
        // SAFETY: the exiting process object, alive during its notification (contract).
        let status = unsafe { exit_status(process) };
        globals
            .processes
            .exit(pid, (now, status), globals.slot.is_connected());
        return;
    };
    // SAFETY: the notified process object, alive during the notification (contract).
    let key = unsafe { start_key(process) };
    let mut sid = [0u8; MAX_SID_BYTES];
    // SAFETY: as above; PASSIVE_LEVEL.
    let (sid_len, session_id) = unsafe { token_user_and_session(process, &mut sid) };
    // SAFETY: the image name the kernel passes, valid for the call (contract).
    let image = unsafe { unicode_units(info.ImageFileName) };
    let facts = ProcessFacts {
        pid,
        key,
        parent_pid: info.ParentProcessId.addr() as u64,
        timestamp: now,
        session_id,
        image,
        sid: sid.get(..sid_len).unwrap_or(&[]),
    };
    globals
        .processes
        .insert(&globals, &facts, ProcessEvent::Start);
}

/// The units of a `UNICODE_STRING` (empty for NULL).
///
/// # Safety
///
/// `name` is NULL or a valid string whose buffer outlives the returned slice's use.
unsafe fn unicode_units<'a>(name: *const UNICODE_STRING) -> &'a [u16] {
    // SAFETY: NULL or valid (contract).
    let Some(name) = (unsafe { name.as_ref() }) else {
        return &[];
    };
    if name.Buffer.is_null() || name.Buffer.addr() % 2 != 0 {
        return &[];
    }
    // SAFETY: `Length` bytes of UTF-16 at an aligned `Buffer` (contract).
    unsafe { core::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) }
}

/// The process key an event of process `pid` carries. A process not in the table, seen at
/// PASSIVE_LEVEL in its own thread, is a process that ran before the load: it is entered now,
/// once, with a first-sight record (not while the table is full: its events carry the key all
/// the same). Elsewhere the key is read from the kernel when the thread is the process's, or 0
/// (unknown). IRQL <= APC_LEVEL.
pub fn key_for_event(globals: &Globals, pid: u64) -> u64 {
    if pid == 0 {
        return 0;
    }
    if let Some(key) = globals.processes.key_of(pid) {
        return key;
    }
    if current_process_id() != pid {
        return 0;
    }
    let process = current_process();
    // SAFETY: the current process, alive while its thread runs.
    let key = unsafe { start_key(process) };
    if irql::current() == PASSIVE_LEVEL && !globals.processes.is_full() {
        first_sight(globals, process, pid, key);
    }
    key
}

/// Enters a process that was running before the load. PASSIVE_LEVEL, in its thread.
fn first_sight(globals: &Globals, process: PEPROCESS, pid: u64, key: u64) {
    let mut sid = [0u8; MAX_SID_BYTES];
    // SAFETY: the current process; PASSIVE_LEVEL (caller).
    let (sid_len, session_id) = unsafe { token_user_and_session(process, &mut sid) };
    let sid = sid.get(..sid_len).unwrap_or(&[]);
    let parent_pid = current_parent_pid();
    let enter = |image: &[u16]| {
        let facts = ProcessFacts {
            pid,
            key,
            parent_pid,
            // Stamped by the delivery thread: this thread is an application's, and reading the
            // clock is a routine boundary where a suspension could reach it (RULES.md 26).
            timestamp: 0,
            session_id,
            image,
            sid,
        };
        globals
            .processes
            .insert(globals, &facts, ProcessEvent::Seen);
    };
    // A failed image query still enters the process, without its image.
    if with_current_image(enter).is_err() {
        enter(&[]);
    }
}

/// Sends every pending process record, one message each, through `send`, which gets the
/// encoded message and says whether it was delivered. A record that cannot be encoded is
/// skipped; a failed send ends the round, its record not retried (the next connect announces
/// every live process again). Either way the record is counted in `process_records_dropped`.
/// Delivery thread, PASSIVE_LEVEL.
pub fn send_pending(globals: &Globals, buffer: &mut [u8], mut send: impl FnMut(&mut [u8]) -> bool) {
    while let Some(entry) = globals.processes.take_pending() {
        let Some(event) = entry.pending() else {
            continue;
        };
        let repr = ProcessRepr {
            event,
            process_key: entry.key,
            process_id: entry.pid,
            parent_process_id: entry.parent_pid,
            // A sighting is stamped as it is sent (see `first_sight`).
            timestamp: if entry.timestamp == 0 {
                system_time()
            } else {
                entry.timestamp
            },
            session_id: entry.session_id,
            exit_status: entry.exit_status,
            flags: entry.flags,
            image: Utf16Str::from_units(entry.image()),
            user_sid: Sid::new_checked(entry.sid()).ok(),
        };
        let Some(message) = repr.emit(buffer).ok().and_then(|len| buffer.get_mut(..len)) else {
            bump(&globals.counters.process_records_dropped);
            continue;
        };
        if !send(message) {
            bump(&globals.counters.process_records_dropped);
            return;
        }
    }
}
