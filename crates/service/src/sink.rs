//! Where events go: the JSON Lines file (with size-based rotation), a human-readable stream for
//! terminals (`vigil tail`, `vigil run --stdout`), and two sinks for tests and measurements.
//! User mode, portable. The core calls the sinks from its writer thread, never from the thread
//! that answers verdicts (see [`crate::service`]).
//!
//! # Flush policy of the JSON Lines sink
//!
//! * Records are formatted into memory as they come (no I/O).
//! * **At the end of every batch** they are written to the operating system (`write`, not
//!   `fsync`). Why: once the driver's send completed, the driver counts the batch as delivered
//!   and will never send it again; until the service hands it to the OS, a crash of the service
//!   would lose it without any trace. One system call per batch, not per record.
//! * **A failed write loses nothing**: the lines not written stay pending, a partial write is cut
//!   off the file (or, when the file cannot be cut, ended by a newline), and the next
//!   `end_batch` writes them again. The core retries with backoff (a full disk, a disk gone).
//! * **On a timer** (`sync_interval`, 1 s by default, driven by the core's clock even when no
//!   event arrives) the file is `fsync`ed if anything was written since the last sync. Why:
//!   data in the OS cache survives a service crash but not a machine crash (a bugcheck is what
//!   this project exists to test for); syncing per batch would tie the event rate to the
//!   disk's latency, so durability against machine crashes is bounded in time instead.
//! * Before a rotation and at close (a clean stop), the file is written and synced.
//!
//! # Opening an existing file
//!
//! A crash, a bug check or a partial write on a full disk can leave the file ending in a torn
//! record or in zero bytes (the file's valid data length past what reached the disk). Before the
//! first append the end is repaired ([`repair_tail`]): trailing zeros are cut, a torn last line
//! is ended with a newline. The next record therefore starts a line of its own, and the resume
//! point ([`crate::record::last_event_position`]) skips both, so no false gap is reported.
//!
//! # Rotation
//!
//! Before a record that would take the file past `max_bytes`, the file is rotated:
//! `vigil.jsonl` becomes `vigil.jsonl.1`, `.1` becomes `.2`, … up to `.keep`; the oldest is
//! deleted. A record is never split between files. A single record larger than `max_bytes` (a
//! misconfiguration: records are at most about 20 KiB) gets a file of its own.
//!
//! Rotation never loses the live file: its handle is kept until the new live file is open.
//! When the live file cannot be renamed (on Windows any reader holding it open without
//! `FILE_SHARE_DELETE`), it is copied to `.1` through the sink's own handle, the copy synced,
//! and the live file truncated. When even that fails (or a rotated file cannot be moved), the
//! sink writes on past the bound and tries again after another eighth of it; each failure is
//! reported ([`Sink::take_warnings`]).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Effects, Style};
use vigil_protocol::{EventKind, EventRecord, Stats};

use crate::ecs::{HostInfo, push_driver_stats_ecs, push_event_ecs, push_gap_ecs};
use crate::process_table::ProcessInfo;
use crate::record::{
    CivilTime, RecordFormat, for_each_flag, kind_name, push_driver_stats_json, push_event_json,
    push_gap_json,
};
use crate::sequence::Gap;

/// A destination for events and gap records.
///
/// The core calls [`event`](Self::event) and [`gap`](Self::gap) in sequence order,
/// [`end_batch`](Self::end_batch) after each batch, [`tick`](Self::tick) at least every poll
/// interval, and [`close`](Self::close) once at the end.
///
/// Errors: the core gives each record once. A sink that fails keeps what it could not write and
/// writes it at its next successful `end_batch`; the core counts and reports the failure and
/// calls `end_batch` again, with backoff, before it hands over anything new. So a full disk
/// pauses the output instead of stopping the service or losing a batch.
pub trait Sink {
    /// One event of driver instance `epoch`.
    ///
    /// # Errors
    ///
    /// The underlying write's error.
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&ProcessInfo>,
    ) -> io::Result<()>;

    /// Sequence numbers that never arrived; `time` is the timestamp of the event after them.
    ///
    /// # Errors
    ///
    /// The underlying write's error.
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()>;

    /// The end of a batch: the flush point; also how the core retries after a failure.
    ///
    /// # Errors
    ///
    /// The underlying write's error.
    fn end_batch(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Time passes (for timer-driven work); `now` comes from the core's clock.
    ///
    /// # Errors
    ///
    /// The underlying sync's error.
    fn tick(&mut self, now: Instant) -> io::Result<()> {
        let _ = now;
        Ok(())
    }

    /// Flushes and releases everything; called once, at a stop (again if it failed).
    ///
    /// # Errors
    ///
    /// The underlying flush's error.
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The driver's counters, read periodically during driver instance `epoch` at `time`
    /// (1601-epoch ticks): a record of its own in the output, so that a reader of the file
    /// sees drops and their causes. Sinks that keep only events ignore it.
    ///
    /// # Errors
    ///
    /// The underlying write's error.
    fn driver_stats(&mut self, epoch: u32, stats: &Stats, time: u64) -> io::Result<()> {
        let _ = (epoch, stats, time);
        Ok(())
    }

    /// Problems the sink worked around (a repaired file end, a failed rotation), for the
    /// core's log; each is returned once.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&ProcessInfo>,
    ) -> io::Result<()> {
        (**self).event(epoch, record, process)
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        (**self).gap(gap, time)
    }
    fn end_batch(&mut self) -> io::Result<()> {
        (**self).end_batch()
    }
    fn tick(&mut self, now: Instant) -> io::Result<()> {
        (**self).tick(now)
    }
    fn close(&mut self) -> io::Result<()> {
        (**self).close()
    }
    fn driver_stats(&mut self, epoch: u32, stats: &Stats, time: u64) -> io::Result<()> {
        (**self).driver_stats(epoch, stats, time)
    }
    fn take_warnings(&mut self) -> Vec<String> {
        (**self).take_warnings()
    }
}

/// Several sinks, each given everything in turn; one that fails does not keep the others
/// from getting the record (the first error is returned).
impl<S: Sink> Sink for Vec<S> {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&ProcessInfo>,
    ) -> io::Result<()> {
        each(self, |s| s.event(epoch, record, process))
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        each(self, |s| s.gap(gap, time))
    }
    fn end_batch(&mut self) -> io::Result<()> {
        each(self, Sink::end_batch)
    }
    fn tick(&mut self, now: Instant) -> io::Result<()> {
        each(self, |s| s.tick(now))
    }
    fn close(&mut self) -> io::Result<()> {
        each(self, Sink::close)
    }
    fn driver_stats(&mut self, epoch: u32, stats: &Stats, time: u64) -> io::Result<()> {
        each(self, |s| s.driver_stats(epoch, stats, time))
    }
    fn take_warnings(&mut self) -> Vec<String> {
        self.iter_mut().flat_map(Sink::take_warnings).collect()
    }
}

/// Calls `f` on every sink; the first failure is the result.
fn each<S: Sink>(sinks: &mut [S], mut f: impl FnMut(&mut S) -> io::Result<()>) -> io::Result<()> {
    let mut result = Ok(());
    for sink in sinks {
        let done = f(sink);
        if result.is_ok() {
            result = done;
        }
    }
    result
}

/// Discards everything: measures the core without a sink's cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl Sink for NullSink {
    fn event(
        &mut self,
        _epoch: u32,
        _record: &EventRecord<'_>,
        _process: Option<&ProcessInfo>,
    ) -> io::Result<()> {
        Ok(())
    }
    fn gap(&mut self, _gap: &Gap, _time: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps what it is given, for tests and the demo's summary: the JSON lines, and the
/// `(epoch, seq)` of each event and each gap in order.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    /// The JSON Lines output, as the file sink would write it.
    pub json: Vec<u8>,
    /// `(epoch, seq)` of each event, in order.
    pub events: Vec<(u32, u64)>,
    /// Each gap, in order.
    pub gaps: Vec<Gap>,
    /// Each driver-counters record, in order.
    pub driver_stats: Vec<Stats>,
    /// Batches ended.
    pub batches: u64,
    /// `true` once closed.
    pub closed: bool,
}

impl Sink for MemorySink {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&ProcessInfo>,
    ) -> io::Result<()> {
        self.events.push((epoch, record.sequence()));
        push_event_json(&mut self.json, epoch, record, process);
        Ok(())
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.gaps.push(*gap);
        push_gap_json(&mut self.json, gap, time);
        Ok(())
    }
    fn end_batch(&mut self) -> io::Result<()> {
        self.batches += 1;
        Ok(())
    }
    fn driver_stats(&mut self, epoch: u32, stats: &Stats, time: u64) -> io::Result<()> {
        self.driver_stats.push(*stats);
        push_driver_stats_json(&mut self.json, epoch, stats, time);
        Ok(())
    }
    fn close(&mut self) -> io::Result<()> {
        self.closed = true;
        Ok(())
    }
}

/// Settings of the JSON Lines file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlOptions {
    /// The live file, e.g. `C:\ProgramData\Vigil\vigil.jsonl`.
    pub path: PathBuf,
    /// Size bound of one file, in bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`.1` ..= `.keep`); 0 keeps none (the file restarts empty).
    pub keep: u32,
    /// How often written data is synced to the disk.
    pub sync_interval: Duration,
}

impl JsonlOptions {
    /// Default size bound: 64 MiB per file.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// Default number of rotated files: 8 (so at most 9 × 64 MiB on disk).
    pub const DEFAULT_KEEP: u32 = 8;
    /// Default sync interval: one second (see the module's flush policy).
    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

    /// The defaults, writing to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            keep: Self::DEFAULT_KEEP,
            sync_interval: Self::DEFAULT_SYNC_INTERVAL,
        }
    }
}

/// What the JSON Lines sink did, for tests and the run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JsonlStats {
    /// Bytes of records formatted (all files).
    pub bytes: u64,
    /// Lines formatted (events and gaps).
    pub lines: u64,
    /// Writes to the OS.
    pub flushes: u64,
    /// `fsync`s.
    pub syncs: u64,
    /// Rotations.
    pub rotations: u64,
    /// Rotations done by copying the live file and truncating it, because it could not be
    /// renamed (another process holds it open without delete sharing).
    pub copy_rotations: u64,
    /// Rotations that failed; the live file grew on past its bound meanwhile.
    pub rotation_failures: u64,
    /// Writes that failed; their lines stayed pending and were written again.
    pub write_failures: u64,
    /// Bytes removed or added at open to repair a torn or zero-filled end.
    pub repaired_bytes: u64,
}

/// The JSON Lines file sink; see the module documentation for its flush and rotation policies.
///
/// # Invariants
///
/// * Until [`close`](Sink::close), `file` is open: a rotation opens the new live file before it
///   lets the old handle go, and keeps the old one when anything fails.
/// * `size` is the live file's length as far as this sink wrote it; after a failed write the
///   file may be longer (a torn line), and `torn` says so until the file is cut back.
/// * `pending` holds whole lines only, and `rotate_at` offsets into it, ascending.
#[derive(Debug)]
pub struct JsonlSink {
    options: JsonlOptions,
    file: Option<File>,
    size: u64,
    torn: bool,
    pending: Vec<u8>,
    rotate_at: VecDeque<usize>,
    /// The live file's size once `pending` is written: decides where rotations go.
    projected: u64,
    /// Something was written since the last sync.
    unsynced: bool,
    last_sync: Option<Instant>,
    /// After a failed rotation, the next attempt waits until the file reaches this size.
    retry_rotation_at: u64,
    /// Test seam: renames of the live file that fail as a sharing violation would.
    refused_live_renames: u32,
    warnings: Vec<String>,
    line: Vec<u8>,
    stats: JsonlStats,
    /// JSON Lines or ECS; the file's rotation and durability are the same for both.
    format: RecordFormat,
    /// For ECS `host.*`.
    host: HostInfo,
}

/// Pending bytes past which a record is written at once rather than at the end of its batch
/// (a driver batch is at most 64 KiB of protocol bytes, about twice that as JSON).
const JSONL_BUFFER: usize = 256 * 1024;

impl JsonlSink {
    /// Opens (appends to) the live file, creating its directory if needed, and repairs its end
    /// first (see [`repair_tail`]): a record is never appended to a torn line.
    ///
    /// # Errors
    ///
    /// Creating the directory, opening the file, or repairing its end.
    pub fn open(options: JsonlOptions) -> io::Result<Self> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = open_live(&options.path)?;
        let repair = repair_tail(&mut file)?;
        let size = file.metadata()?.len();
        let mut warnings = Vec::new();
        let mut stats = JsonlStats::default();
        if let Some(repair) = repair {
            stats.repaired_bytes = repair.zeros_removed + u64::from(repair.line_terminated);
            warnings.push(format!("{}: {repair}", options.path.display()));
        }
        Ok(Self {
            options,
            file: Some(file),
            size,
            torn: false,
            pending: Vec::with_capacity(JSONL_BUFFER),
            rotate_at: VecDeque::new(),
            projected: size,
            unsynced: false,
            last_sync: None,
            retry_rotation_at: 0,
            refused_live_renames: 0,
            warnings,
            line: Vec::with_capacity(1024),
            stats,
            format: RecordFormat::JsonLines,
            host: HostInfo::current(),
        })
    }

    /// Writes records in `format` from now on (JSON Lines by default); `host` fills ECS
    /// `host.*`.
    #[must_use]
    pub fn with_format(mut self, format: RecordFormat, host: HostInfo) -> Self {
        self.format = format;
        self.host = host;
        self
    }

    /// What the sink did so far.
    pub const fn stats(&self) -> JsonlStats {
        self.stats
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// The path of rotated file `n` (1 = newest).
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        rotated(&self.options.path, n)
    }

    /// Test seam: the next `count` renames of the live file fail as a sharing violation does
    /// on Windows (another process holds the file open without `FILE_SHARE_DELETE`, which any
    /// user who can read the file can do). Linux never refuses such a rename.
    #[doc(hidden)]
    pub const fn refuse_live_renames(&mut self, count: u32) {
        self.refused_live_renames = count;
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("JSON Lines sink used after close"))
    }

    /// Queues the formatted line in `self.line`, marking a rotation before it if it would
    /// take the file past the bound. I/O only when a batch is unusually large.
    fn push_line(&mut self) -> io::Result<()> {
        let len = self.line.len() as u64;
        if self.projected > 0
            && self.projected.saturating_add(len) > self.options.max_bytes
            && self.projected >= self.retry_rotation_at
        {
            self.rotate_at.push_back(self.pending.len());
            self.projected = 0;
        }
        self.pending.extend_from_slice(&self.line);
        self.projected += len;
        self.stats.bytes += len;
        self.stats.lines += 1;
        if self.pending.len() >= JSONL_BUFFER {
            self.write_out()?;
        }
        Ok(())
    }

    /// Cuts a torn write of a failed attempt off the file, so that the retry starts on a clean
    /// line. When the file cannot be cut, a newline ends the torn fragment instead.
    fn untear(&mut self) -> io::Result<()> {
        if !self.torn {
            return Ok(());
        }
        let size = self.size;
        let file = self.file()?;
        if file.set_len(size).is_err() {
            file.write_all(b"\n")?;
            let len = file.metadata()?.len();
            self.size = len;
        }
        self.torn = false;
        Ok(())
    }

    /// Writes every pending line, rotating where marked. On failure the lines not written stay
    /// pending (the next call writes them), and a partial write is undone first.
    fn write_out(&mut self) -> io::Result<()> {
        if self.pending.is_empty() && self.rotate_at.is_empty() {
            return Ok(());
        }
        self.untear()?;
        loop {
            let upto = self
                .rotate_at
                .front()
                .copied()
                .unwrap_or(self.pending.len());
            if upto > 0 {
                let chunk = self.pending.get(..upto).unwrap_or(&[]);
                let file = self
                    .file
                    .as_mut()
                    .ok_or_else(|| io::Error::other("JSON Lines sink used after close"))?;
                if let Err(e) = file.write_all(chunk) {
                    self.torn = true;
                    self.stats.write_failures += 1;
                    return Err(e);
                }
                self.size += upto as u64;
                self.unsynced = true;
                self.stats.flushes += 1;
                self.pending.drain(..upto);
                for mark in &mut self.rotate_at {
                    *mark -= upto;
                }
            }
            if self.rotate_at.front() == Some(&0) {
                self.rotate_at.pop_front();
                self.rotate();
            } else {
                break;
            }
        }
        self.projected = self.size;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file()?.sync_data()?;
            self.unsynced = false;
            self.stats.syncs += 1;
        }
        Ok(())
    }

    /// Rotates, or, when it cannot, writes on into the live file past its bound and tries
    /// again later: a rotation never costs a record.
    fn rotate(&mut self) {
        match self.try_rotate() {
            Ok(()) => {
                self.stats.rotations += 1;
                self.retry_rotation_at = 0;
            }
            Err(e) => {
                self.stats.rotation_failures += 1;
                // Not on every record: after another eighth of the bound.
                self.retry_rotation_at = self
                    .size
                    .saturating_add((self.options.max_bytes / 8).max(1));
                self.warnings.push(format!(
                    "{}: cannot rotate ({e}); writing on past the size bound, retrying later",
                    self.options.path.display()
                ));
            }
        }
    }

    fn try_rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        let path = self.options.path.clone();
        let keep = self.options.keep;
        if keep == 0 {
            // Restart empty in place: the handle stays, nothing is renamed.
            self.file()?.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        remove_if_present(&rotated(&path, keep))?;
        for n in (1..keep).rev() {
            rename_if_present(&rotated(&path, n), &rotated(&path, n + 1))?;
        }
        let newest = rotated(&path, 1);
        let renamed = if self.refused_live_renames > 0 {
            self.refused_live_renames -= 1;
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the live file is held open without delete sharing (simulated)",
            ))
        } else {
            fs::rename(&path, &newest)
        };
        match renamed {
            Ok(()) => match open_live(&path) {
                Ok(file) => {
                    // Only now is the old handle (which names `.1`) let go.
                    self.file = Some(file);
                    self.size = 0;
                    Ok(())
                }
                Err(e) => {
                    // Keep writing through the old handle; put its name back if possible.
                    let _ = fs::rename(&newest, &path);
                    Err(e)
                }
            },
            Err(_) => self.copy_and_truncate(&newest),
        }
    }

    /// The rotation of a file that cannot be renamed: copy it through this sink's own handle
    /// (no new open of the held file is needed), sync the copy, then truncate the live file.
    /// A crash in between leaves the records in both files, never in neither.
    fn copy_and_truncate(&mut self, newest: &Path) -> io::Result<()> {
        let size = self.size;
        let mut copy = File::create(newest)?;
        let file = self.file()?;
        file.seek(SeekFrom::Start(0))?;
        let copied = io::copy(&mut Read::by_ref(file).take(size), &mut copy)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the live file ended early while copying it",
            ));
        }
        copy.sync_all()?;
        drop(copy);
        let file = self.file()?;
        file.set_len(0)?;
        self.size = 0;
        self.stats.copy_rotations += 1;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens the live file for appending, and for reading (a rotation that cannot rename copies
/// through this handle). On Windows std opens with read, write and delete sharing, so this
/// handle never blocks the sink's own renames.
fn open_live(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// What [`repair_tail`] did to a file's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailRepair {
    /// Zero bytes cut off the end (a crash can leave the valid data length past the data).
    pub zeros_removed: u64,
    /// A torn last line was ended with a newline (kept, for the record, as a line that does
    /// not parse; readers skip it).
    pub line_terminated: bool,
}

impl std::fmt::Display for TailRepair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "repaired the end left by an earlier run:")?;
        if self.zeros_removed > 0 {
            write!(f, " {} zero byte(s) removed", self.zeros_removed)?;
        }
        if self.line_terminated {
            if self.zeros_removed > 0 {
                f.write_str(",")?;
            }
            f.write_str(" a torn last record ended on its own line")?;
        }
        Ok(())
    }
}

/// Makes a JSON Lines file safe to append to: cuts trailing zero bytes (left by a crash, a bug
/// check or a partial write on a full disk) and ends a torn last line with a newline, so the
/// next record starts a line of its own. `None` when the end was sound.
///
/// # Errors
///
/// Reading, truncating or writing the file.
pub fn repair_tail(file: &mut File) -> io::Result<Option<TailRepair>> {
    let len = file.metadata()?.len();
    let end = crate::record::content_end(file, len)?;
    let zeros_removed = len - end;
    if zeros_removed > 0 {
        file.set_len(end)?;
    }
    let mut line_terminated = false;
    if end > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(end - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            line_terminated = true;
        }
    }
    if zeros_removed > 0 || line_terminated {
        file.sync_data()?;
        Ok(Some(TailRepair {
            zeros_removed,
            line_terminated,
        }))
    } else {
        Ok(None)
    }
}

impl JsonlSink {
    /// Builds one record in the sink's format (`json` or `ecs`, which also gets the host
    /// facts) and queues its line.
    fn push_record(
        &mut self,
        json: impl FnOnce(&mut Vec<u8>),
        ecs: impl FnOnce(&mut Vec<u8>, &HostInfo),
    ) -> io::Result<()> {
        self.line.clear();
        match self.format {
            RecordFormat::JsonLines => json(&mut self.line),
            RecordFormat::Ecs => ecs(&mut self.line, &self.host),
        }
        self.push_line()
    }
}

impl Sink for JsonlSink {
    fn event(
        &mut self,
        epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&ProcessInfo>,
    ) -> io::Result<()> {
        self.push_record(
            |line| push_event_json(line, epoch, record, process),
            |line, host| push_event_ecs(line, host, epoch, record, process),
        )
    }

    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.push_record(
            |line| push_gap_json(line, gap, time),
            |line, host| push_gap_ecs(line, host, gap, time),
        )
    }

    fn end_batch(&mut self) -> io::Result<()> {
        self.write_out()
    }

    fn driver_stats(&mut self, epoch: u32, stats: &Stats, time: u64) -> io::Result<()> {
        self.push_record(
            |line| push_driver_stats_json(line, epoch, stats, time),
            |line, host| push_driver_stats_ecs(line, host, epoch, stats, time),
        )
    }

    fn tick(&mut self, now: Instant) -> io::Result<()> {
        let last = *self.last_sync.get_or_insert(now);
        if now.saturating_duration_since(last) >= self.options.sync_interval {
            self.last_sync = Some(now);
            self.write_out()?;
            self.sync()?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            self.write_out()?;
            self.sync()?;
            self.file = None;
        }
        Ok(())
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        // Best effort: a sink dropped without close (an error path) still writes what it holds.
        let _ = self.close();
    }
}

/// A human-readable event stream: one line per event, coloured when `color` is set (the
/// `stdout()` constructor lets `anstream` decide: a terminal, and `NO_COLOR` unset).
#[derive(Debug)]
pub struct HumanSink<W: Write> {
    out: W,
    color: bool,
    line: Vec<u8>,
}

impl HumanSink<BufWriter<anstream::AutoStream<io::Stdout>>> {
    /// Standard output, coloured when it is a terminal.
    pub fn stdout() -> Self {
        let stream = anstream::stdout();
        let color = !matches!(stream.current_choice(), anstream::ColorChoice::Never);
        Self::new(BufWriter::new(stream), color)
    }
}

impl<W: Write> HumanSink<W> {
    /// A sink writing to `out`, with ANSI colours when `color`.
    pub const fn new(out: W, color: bool) -> Self {
        Self {
            out,
            color,
            line: Vec::new(),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn style(&self, style: Style) -> (String, String) {
        if self.color {
            (style.render().to_string(), style.render_reset().to_string())
        } else {
            (String::new(), String::new())
        }
    }
}

/// `STATUS_PENDING`.
const STATUS_PENDING: i32 = 0x103;

const fn kind_style(kind: EventKind) -> Style {
    let color = match kind {
        EventKind::Open => AnsiColor::BrightBlack,
        EventKind::FirstWrite => AnsiColor::Yellow,
        EventKind::Rename | EventKind::HardLink => AnsiColor::Cyan,
        EventKind::Delete => AnsiColor::Red,
        EventKind::CloseModified => AnsiColor::Green,
    };
    Style::new().fg_color(Some(anstyle::Color::Ansi(color)))
}

impl<W: Write> Sink for HumanSink<W> {
    fn event(
        &mut self,
        _epoch: u32,
        record: &EventRecord<'_>,
        process: Option<&ProcessInfo>,
    ) -> io::Result<()> {
        use std::fmt::Write as _;
        let t = CivilTime::from_filetime(record.timestamp());
        let (h, m, s) = t.hms;
        let (on, off) = self.style(kind_style(record.kind()));
        let mut text = format!(
            "{h:02}:{m:02}:{s:02}.{:03} {on}{:<14}{off} pid {:<6} {}",
            t.ticks / 10_000,
            kind_name(record.kind()),
            record.process_id(),
            record.path(),
        );
        if let Some(name) = process
            .map(ProcessInfo::image_name)
            .filter(|n| !n.is_empty())
        {
            let _ = write!(text, " ({name})");
        }
        let target = record.target();
        if !target.is_empty() {
            let _ = write!(text, " -> {target}");
        }
        let flags = record.flags();
        if flags.bits() != 0 {
            let mut names = Vec::new();
            for_each_flag(flags, |name| names.push(name.to_string()));
            let _ = write!(text, " [{}]", names.join(","));
        }
        // STATUS_PENDING: a pre-operation event (first write), seen before the operation
        // completed; not an outcome worth a highlight.
        if record.status() != 0 && record.status() != STATUS_PENDING {
            let (on, off) = self.style(Style::new().effects(Effects::BOLD));
            let _ = write!(
                text,
                " {on}status {:#010x}{off}",
                record.status().cast_unsigned()
            );
        }
        text.push('\n');
        self.line.clear();
        self.line.extend_from_slice(text.as_bytes());
        self.out.write_all(&self.line)
    }

    fn gap(&mut self, gap: &Gap, _time: u64) -> io::Result<()> {
        let style = Style::new()
            .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)))
            .effects(Effects::BOLD);
        let (on, off) = self.style(style);
        writeln!(
            self.out,
            "{on}!! {} event(s) lost: sequence {}..={} (driver instance {}){off}",
            gap.missing(),
            gap.from,
            gap.to,
            gap.epoch
        )
    }

    fn end_batch(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn close(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
