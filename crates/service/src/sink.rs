//! Where events go: the JSON Lines file (with size-based rotation), a human-readable stream for
//! terminals (`vigil tail`, `vigil run --stdout`), and two sinks for tests and measurements.
//! User mode, portable.
//!
//! # Flush policy of the JSON Lines sink
//!
//! * Records are formatted into a 256 KiB user-space buffer.
//! * **At the end of every batch** the buffer is written to the operating system (`write`,
//!   not `fsync`). Why: once the driver's send completed, the driver counts the batch as
//!   delivered and will never send it again; until the service hands it to the OS, a crash of
//!   the service would lose it without any trace. Flushing per batch bounds that window to one
//!   batch, and costs one system call per batch (at most 64 KiB), not per record.
//! * **On a timer** (`sync_interval`, 1 s by default, driven by the core's loop even when no
//!   event arrives) the file is `fsync`ed if anything was written since the last sync. Why:
//!   data in the OS cache survives a service crash but not a machine crash (a bugcheck is what
//!   this project exists to test for); syncing per batch would tie the event rate to the
//!   disk's latency, so durability against machine crashes is bounded in time instead.
//! * Before a rotation and at close (a clean stop), the file is flushed and synced.
//!
//! # Rotation
//!
//! Before a record that would take the file past `max_bytes`, the file is closed and renamed:
//! `vigil.jsonl` becomes `vigil.jsonl.1`, `.1` becomes `.2`, … up to `.keep`; the oldest is
//! deleted. A record is never split between files. A single record larger than `max_bytes` (a
//! misconfiguration: records are at most about 20 KiB) gets a file of its own.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Effects, Style};
use vigil_protocol::{EventKind, EventRecord};

use crate::record::{CivilTime, for_each_flag, kind_name, push_event_json, push_gap_json};
use crate::sequence::Gap;

/// A destination for events and gap records.
///
/// The core calls [`event`](Self::event) and [`gap`](Self::gap) in sequence order,
/// [`end_batch`](Self::end_batch) after each batch, [`tick`](Self::tick) at least every poll
/// interval, and [`close`](Self::close) once at the end. An error stops the service (a sink that
/// cannot write must not make events vanish silently).
pub trait Sink {
    /// One event of driver instance `epoch`.
    ///
    /// # Errors
    ///
    /// The underlying write's error.
    fn event(&mut self, epoch: u32, record: &EventRecord<'_>) -> io::Result<()>;

    /// Sequence numbers that never arrived; `time` is the timestamp of the event after them.
    ///
    /// # Errors
    ///
    /// The underlying write's error.
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()>;

    /// The end of a batch: the flush point.
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

    /// Flushes and releases everything; called once, at a stop.
    ///
    /// # Errors
    ///
    /// The underlying flush's error.
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn event(&mut self, epoch: u32, record: &EventRecord<'_>) -> io::Result<()> {
        (**self).event(epoch, record)
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
}

/// Several sinks, each given everything in turn.
impl<S: Sink> Sink for Vec<S> {
    fn event(&mut self, epoch: u32, record: &EventRecord<'_>) -> io::Result<()> {
        self.iter_mut().try_for_each(|s| s.event(epoch, record))
    }
    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.iter_mut().try_for_each(|s| s.gap(gap, time))
    }
    fn end_batch(&mut self) -> io::Result<()> {
        self.iter_mut().try_for_each(Sink::end_batch)
    }
    fn tick(&mut self, now: Instant) -> io::Result<()> {
        self.iter_mut().try_for_each(|s| s.tick(now))
    }
    fn close(&mut self) -> io::Result<()> {
        // Close every sink even when one fails; report the first failure.
        let mut result = Ok(());
        for sink in self {
            let closed = sink.close();
            if result.is_ok() {
                result = closed;
            }
        }
        result
    }
}

/// Discards everything: measures the core without a sink's cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl Sink for NullSink {
    fn event(&mut self, _epoch: u32, _record: &EventRecord<'_>) -> io::Result<()> {
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
    /// Batches ended.
    pub batches: u64,
    /// `true` once closed.
    pub closed: bool,
}

impl Sink for MemorySink {
    fn event(&mut self, epoch: u32, record: &EventRecord<'_>) -> io::Result<()> {
        self.events.push((epoch, record.sequence()));
        push_event_json(&mut self.json, epoch, record);
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
    /// Bytes of records written (all files).
    pub bytes: u64,
    /// Lines written (events and gaps).
    pub lines: u64,
    /// Buffer flushes to the OS.
    pub flushes: u64,
    /// `fsync`s.
    pub syncs: u64,
    /// Rotations.
    pub rotations: u64,
}

/// The JSON Lines file sink; see the module documentation for its flush and rotation policies.
#[derive(Debug)]
pub struct JsonlSink {
    options: JsonlOptions,
    file: Option<BufWriter<File>>,
    /// Bytes in the live file (written or buffered).
    size: u64,
    /// Something was flushed to the OS since the last sync.
    unsynced: bool,
    /// Something is buffered since the last flush.
    unflushed: bool,
    last_sync: Option<Instant>,
    line: Vec<u8>,
    stats: JsonlStats,
}

/// Capacity of the user-space buffer.
const JSONL_BUFFER: usize = 256 * 1024;

impl JsonlSink {
    /// Opens (appends to) the live file, creating its directory if needed.
    ///
    /// # Errors
    ///
    /// Creating the directory or opening the file.
    pub fn open(options: JsonlOptions) -> io::Result<Self> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let (file, size) = open_append(&options.path)?;
        Ok(Self {
            options,
            file: Some(file),
            size,
            unsynced: false,
            unflushed: false,
            last_sync: None,
            line: Vec::with_capacity(1024),
            stats: JsonlStats::default(),
        })
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

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("JSON Lines sink used after close"))
    }

    /// Writes the formatted line in `self.line`, rotating first if it would pass the bound.
    fn write_line(&mut self) -> io::Result<()> {
        let len = self.line.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.options.max_bytes {
            self.rotate()?;
        }
        let line = std::mem::take(&mut self.line);
        let written = self.writer().and_then(|w| w.write_all(&line));
        self.line = line;
        written?;
        self.size += len;
        self.unflushed = true;
        self.stats.bytes += len;
        self.stats.lines += 1;
        Ok(())
    }

    fn flush_to_os(&mut self) -> io::Result<()> {
        if self.unflushed {
            self.writer()?.flush()?;
            self.unflushed = false;
            self.unsynced = true;
            self.stats.flushes += 1;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush_to_os()?;
        if self.unsynced {
            self.writer()?.get_ref().sync_data()?;
            self.unsynced = false;
            self.stats.syncs += 1;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.sync()?;
        self.file = None;
        let path = self.options.path.clone();
        let keep = self.options.keep;
        if keep == 0 {
            fs::remove_file(&path)?;
        } else {
            match fs::remove_file(rotated(&path, keep)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..keep).rev() {
                match fs::rename(rotated(&path, n), rotated(&path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&path, rotated(&path, 1))?;
        }
        let (file, size) = open_append(&path)?;
        self.file = Some(file);
        self.size = size;
        self.stats.rotations += 1;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((BufWriter::with_capacity(JSONL_BUFFER, file), size))
}

impl Sink for JsonlSink {
    fn event(&mut self, epoch: u32, record: &EventRecord<'_>) -> io::Result<()> {
        self.line.clear();
        push_event_json(&mut self.line, epoch, record);
        self.write_line()
    }

    fn gap(&mut self, gap: &Gap, time: u64) -> io::Result<()> {
        self.line.clear();
        push_gap_json(&mut self.line, gap, time);
        self.write_line()
    }

    fn end_batch(&mut self) -> io::Result<()> {
        self.flush_to_os()
    }

    fn tick(&mut self, now: Instant) -> io::Result<()> {
        let last = *self.last_sync.get_or_insert(now);
        if now.saturating_duration_since(last) >= self.options.sync_interval {
            self.last_sync = Some(now);
            self.sync()?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            self.sync()?;
            self.file = None;
        }
        Ok(())
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        // Best effort: a sink dropped without close (an error path) still hands its buffer to
        // the OS; BufWriter's own drop does the write, this adds the sync.
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
    fn event(&mut self, _epoch: u32, record: &EventRecord<'_>) -> io::Result<()> {
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
