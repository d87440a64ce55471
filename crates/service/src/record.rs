//! The JSON Lines record format: one object per event, one per gap. User mode, portable.
//!
//! Field names and meanings are stable (a reader may rely on them); new fields may be added at
//! the end of an object in later versions, never renamed or removed. Objects are written by
//! hand, in a fixed field order, without an intermediate value tree: this is the service's
//! hot path (see `benches/throughput.rs`).
//!
//! # Event records
//!
//! | field | JSON type | meaning |
//! |---|---|---|
//! | `epoch` | number | driver instance, counted from 1; it grows when the driver was unloaded and loaded again (its sequence numbers restart at 0). A restarted service continues the count from the last record in the file. `(epoch, seq)` is unique in the output |
//! | `seq` | number | the driver's sequence number for the event, in ring push order; a missing number is a lost event (see gap records) |
//! | `time` | string | when the driver saw the event: RFC 3339, UTC, 100 ns precision, e.g. `"2024-05-01T12:34:56.1234567Z"` (from the 100 ns ticks since 1601-01-01) |
//! | `kind` | string | `open`, `first_write`, `rename`, `hard_link`, `delete`, `close_modified` |
//! | `path` | string | the file's path as the driver saw it; for `rename` and `hard_link` the original (existing) name (normalized NT path, e.g. `\Device\HarddiskVolume3\Users\a.txt`, unless `flags` has `name_not_normalized`); invalid UTF-16 is replaced by U+FFFD |
//! | `target` | string or null | the new name for `rename` and `hard_link`; `null` otherwise |
//! | `pid` | number | requesting process id |
//! | `tid` | number | requesting thread id |
//! | `volume` | number | the driver's number for the volume, given when it attached (1, 2, …; 0 when unknown); stable while the driver stays loaded. The path names the volume device too |
//! | `status` | string | the operation's NTSTATUS, hex: `"0x00000000"` |
//! | `flags` | array of strings | `name_not_normalized`, `path_truncated`, `target_truncated`, `directory`, `delete_on_close`, `name_unavailable`, `file_id_64`; a bit this version does not know appears as its hex value, e.g. `"0x00000080"` |
//! | `access` | string | `DesiredAccess` of the create, hex (`"0x00000000"` for other kinds) |
//! | `disposition` | number | create disposition requested (`FILE_SUPERSEDE` 0 … `FILE_OVERWRITE_IF` 5); 0 for other kinds |
//! | `information` | number | `IoStatus.Information` of the create (`FILE_OPENED` 1, `FILE_CREATED` 2, …); 0 for other kinds |
//! | `file_id` | string or null | the 128-bit file id, 32 hex digits (the bytes in order); `null` when the driver did not know it. With flag `file_id_64` the volume had only a 64-bit id: its 8 bytes, then 16 zero digits |
//! | `process` | object | the requesting process, always present: see below |
//!
//! The `process` object (from the driver's process records, kept in the service's
//! [`ProcessTable`](crate::process_table::ProcessTable)); a member the service does not know is
//! `null`, never absent:
//!
//! | field | JSON type | meaning |
//! |---|---|---|
//! | `pid` | number | the process id (the same as the event's `pid`) |
//! | `key` | number or null | the process key: unlike the pid, never reused while the machine runs, so two processes that had one pid have different keys; `null` when the driver sent none |
//! | `image` | string or null | the executable's NT path, e.g. `\Device\HarddiskVolume3\Windows\System32\notepad.exe`; `null` when the process is unknown (its record evicted or not received) |
//! | `parent_pid` | number or null | the creating process's id |
//! | `user_sid` | string or null | the token user's SID, e.g. `"S-1-5-21-1004336348-1177238915-682003330-1001"`; `null` when unknown or when the driver could not read the token |
//! | `session` | number or null | the Terminal Services session id |
//!
//! # Gap records
//!
//! Written in band, just before the first event after the loss, so a reader sees it where it
//! happened:
//!
//! | field | JSON type | meaning |
//! |---|---|---|
//! | `gap` | object | `{"from": F, "to": T, "missing": N}`: sequence numbers `F..=T` (N of them) never arrived |
//! | `epoch` | number | as for events |
//! | `time` | string | the `time` of the event that revealed the gap (the loss happened before it) |
//!
//! A reader tells the two apart by the presence of the `gap` key. The driver's counters (`vigil
//! stats`) say why records were lost (ring full, send timeout, no service connected...).

use std::io::Write as _;

use vigil_protocol::{EventFlags, EventKind, EventRecord, Utf16Str};

use crate::process_table::ProcessInfo;
use crate::sequence::{Gap, ResumePoint};

/// How the output file's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// Vigil's own fields (the tables above): `vigil run`'s default.
    #[default]
    JsonLines,
    /// Elastic Common Schema field names, nested objects (`vigil run --format ecs`); see
    /// [`crate::ecs`] and `docs/ecs.md`.
    Ecs,
}

/// 100 ns ticks between 1601-01-01 and 1970-01-01.
const TICKS_1601_TO_1970: i128 = 116_444_736_000_000_000;
/// Now, as 100 ns ticks since 1601-01-01 (the driver's timestamps' scale), from the
/// service's clock.
pub fn now_filetime() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    116_444_736_000_000_000 + since.as_secs() * 10_000_000 + u64::from(since.subsec_nanos() / 100)
}

/// 100 ns ticks per second.
const TICKS_PER_SECOND: i128 = 10_000_000;

/// The name of an event kind, as the `kind` field writes it.
pub const fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Open => "open",
        EventKind::FirstWrite => "first_write",
        EventKind::Rename => "rename",
        EventKind::HardLink => "hard_link",
        EventKind::Delete => "delete",
        EventKind::CloseModified => "close_modified",
    }
}

/// Flag bits and their names, in bit order.
const FLAG_NAMES: [(EventFlags, &str); 7] = [
    (EventFlags::NAME_NOT_NORMALIZED, "name_not_normalized"),
    (EventFlags::PATH_TRUNCATED, "path_truncated"),
    (EventFlags::TARGET_TRUNCATED, "target_truncated"),
    (EventFlags::DIRECTORY, "directory"),
    (EventFlags::DELETE_ON_CLOSE, "delete_on_close"),
    (EventFlags::NAME_UNAVAILABLE, "name_unavailable"),
    (EventFlags::FILE_ID_64, "file_id_64"),
];

/// Calls `f` with the name of each flag set in `flags` (known names, then unknown bits as hex).
pub fn for_each_flag(flags: EventFlags, mut f: impl FnMut(FlagName)) {
    let bits = flags.bits();
    for (flag, name) in FLAG_NAMES {
        if bits & flag.bits() != 0 {
            f(FlagName::Known(name));
        }
    }
    let unknown = bits & !EventFlags::ALL_DEFINED.bits();
    for bit in 0..32 {
        if unknown & (1 << bit) != 0 {
            f(FlagName::Unknown(1 << bit));
        }
    }
}

/// A flag as [`for_each_flag`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagName {
    /// A bit this version defines.
    Known(&'static str),
    /// A bit this version does not define.
    Unknown(u32),
}

impl std::fmt::Display for FlagName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(name) => f.write_str(name),
            Self::Unknown(bit) => write!(f, "{bit:#010x}"),
        }
    }
}

/// Civil date and time of a 1601-epoch tick count (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Year (1601 ..).
    pub year: i64,
    /// Month, 1 ..= 12.
    pub month: u32,
    /// Day, 1 ..= 31.
    pub day: u32,
    /// Hour, minute, second.
    pub hms: (u32, u32, u32),
    /// Sub-second 100 ns ticks, 0 ..= 9 999 999.
    pub ticks: u32,
}

impl CivilTime {
    /// Converts 100 ns ticks since 1601-01-01 UTC (a Windows `FILETIME`/`LARGE_INTEGER` system
    /// time). Every `u64` converts; there are no leap seconds in this time scale.
    pub fn from_filetime(ticks: u64) -> Self {
        let unix_ticks = i128::from(ticks) - TICKS_1601_TO_1970;
        let seconds = unix_ticks.div_euclid(TICKS_PER_SECOND);
        let sub = unix_ticks.rem_euclid(TICKS_PER_SECOND);
        let days = seconds.div_euclid(86_400);
        let secs_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // Bounded by the rem_euclid above: each fits a u32.
        let secs_of_day = u32::try_from(secs_of_day).unwrap_or(0);
        Self {
            year,
            month,
            day,
            hms: (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60),
            ticks: u32::try_from(sub).unwrap_or(0),
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i128) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i128::from(month <= 2);
    (
        i64::try_from(year).unwrap_or(i64::MAX),
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Appends the RFC 3339 UTC form of a 1601-epoch tick count: `2024-05-01T12:34:56.1234567Z`.
pub fn push_rfc3339(out: &mut Vec<u8>, filetime: u64) {
    let t = CivilTime::from_filetime(filetime);
    let (h, m, s) = t.hms;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{:07}Z",
        t.year, t.month, t.day, t.ticks
    );
}

/// Appends `s` as a JSON string (quotes included); unpaired surrogates become U+FFFD.
pub fn push_json_utf16(out: &mut Vec<u8>, s: Utf16Str<'_>) {
    out.push(b'"');
    let mut utf8 = [0u8; 4];
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            // ASCII: one byte, the common case for paths.
            c if c.is_ascii() => out.push(u8::try_from(c).unwrap_or(b'?')),
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out.push(b'"');
}

pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    let _ = write!(out, "{value}");
}

/// `flags` as a JSON array of their names ([`for_each_flag`]'s order and spelling).
pub(crate) fn push_flags(out: &mut Vec<u8>, flags: EventFlags) {
    out.push(b'[');
    let mut first = true;
    for_each_flag(flags, |name| {
        if !first {
            out.push(b',');
        }
        first = false;
        let _ = write!(out, "\"{name}\"");
    });
    out.push(b']');
}

pub(crate) fn push_hex32(out: &mut Vec<u8>, value: u32) {
    let _ = write!(out, "\"{value:#010x}\"");
}

/// How much of a file's end [`last_event_position`] reads: many records (each at most about
/// 20 KiB, typically 300 bytes).
const RESUME_TAIL: u64 = 256 * 1024;

/// The `(epoch, seq)` of the last complete event record in the JSON Lines file at `path`, or
/// in its newest rotated file (`path.1`) when the live one has none; `None` when neither has
/// one (a missing file is not an error). A torn last line (the writer died mid-record) and
/// trailing zero bytes (a crash before the data reached the disk) are skipped. A restarted service continues from it ([`crate::Service::with_resume`]).
///
/// # Errors
///
/// Reading the file.
pub fn last_event_position(path: &std::path::Path) -> std::io::Result<Option<ResumePoint>> {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    for candidate in [path, std::path::Path::new(&rotated)] {
        if let Some(point) = last_event_in(candidate)? {
            return Ok(Some(point));
        }
    }
    Ok(None)
}

fn last_event_in(path: &std::path::Path) -> std::io::Result<Option<ResumePoint>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Zeros at the end (a crash) are not records: look at what comes before them, however
    // many there are, or a zero-filled end would hide the live file's last record and the
    // resume would fall back to an older file's, reporting a false gap.
    let end = content_end(&mut file, len)?;
    let start = end.saturating_sub(RESUME_TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(end - start).read_to_end(&mut tail)?;
    for line in tail.split(|&b| b == b'\n').rev() {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        // JSON Lines keep them at the top; ECS lines as `vigil.epoch` and `event.sequence`.
        let epoch = value
            .get("epoch")
            .or_else(|| value.pointer("/vigil/epoch"))
            .and_then(serde_json::Value::as_u64);
        let seq = value
            .get("seq")
            .or_else(|| value.pointer("/event/sequence"))
            .and_then(serde_json::Value::as_u64);
        if let (Some(epoch), Some(seq)) = (epoch.and_then(|e| u32::try_from(e).ok()), seq) {
            return Ok(Some(ResumePoint { epoch, seq }));
        }
    }
    Ok(None)
}

/// The length of `file` (`len` bytes) without its trailing zero bytes, read backwards in
/// chunks so that a zero-filled end of any size costs bounded memory.
pub(crate) fn content_end(file: &mut std::fs::File, len: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let n = usize::try_from(end - start).unwrap_or(0);
        let buf = chunk.get_mut(..n).unwrap_or(&mut []);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(buf)?;
        if let Some(last) = buf.iter().rposition(|&b| b != 0) {
            return Ok(start + last as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Appends one event record as a JSON object and a newline.
pub fn push_event_json(
    out: &mut Vec<u8>,
    epoch: u32,
    record: &EventRecord<'_>,
    process: Option<&ProcessInfo>,
) {
    out.extend_from_slice(b"{\"epoch\":");
    push_u64(out, u64::from(epoch));
    out.extend_from_slice(b",\"seq\":");
    push_u64(out, record.sequence());
    out.extend_from_slice(b",\"time\":\"");
    push_rfc3339(out, record.timestamp());
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(kind_name(record.kind()).as_bytes());
    out.extend_from_slice(b"\",\"path\":");
    push_json_utf16(out, record.path());
    out.extend_from_slice(b",\"target\":");
    let target = record.target();
    if target.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        push_json_utf16(out, target);
    }
    out.extend_from_slice(b",\"pid\":");
    push_u64(out, record.process_id());
    out.extend_from_slice(b",\"tid\":");
    push_u64(out, record.thread_id());
    out.extend_from_slice(b",\"volume\":");
    push_u64(out, u64::from(record.volume_id()));
    out.extend_from_slice(b",\"status\":");
    push_hex32(out, record.status().cast_unsigned());
    out.extend_from_slice(b",\"flags\":");
    push_flags(out, record.flags());
    out.extend_from_slice(b",\"access\":");
    push_hex32(out, record.desired_access());
    out.extend_from_slice(b",\"disposition\":");
    push_u64(out, u64::from(record.create_disposition()));
    out.extend_from_slice(b",\"information\":");
    push_u64(out, u64::from(record.information()));
    out.extend_from_slice(b",\"file_id\":");
    push_file_id(out, record);
    out.extend_from_slice(b",\"process\":{\"pid\":");
    push_u64(out, record.process_id());
    out.extend_from_slice(b",\"key\":");
    push_key(out, record.process_key());
    out.extend_from_slice(b",\"image\":");
    push_json_opt_str(
        out,
        process.map(|p| p.image.as_str()).filter(|i| !i.is_empty()),
    );
    out.extend_from_slice(b",\"parent_pid\":");
    push_json_opt_u64(out, process.map(|p| p.parent_pid));
    out.extend_from_slice(b",\"user_sid\":");
    push_json_opt_str(out, process.and_then(|p| p.user_sid.as_deref()));
    out.extend_from_slice(b",\"session\":");
    push_json_opt_u64(out, process.map(|p| u64::from(p.session)));
    out.extend_from_slice(b"}}\n");
}

/// The file id as a JSON string of 32 hex digits, or `null` when the driver sent none.
pub(crate) fn push_file_id(out: &mut Vec<u8>, record: &EventRecord<'_>) {
    let id = record.file_id();
    if id == [0; 16] {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        for byte in id {
            let _ = write!(out, "{byte:02x}");
        }
        out.push(b'"');
    }
}

/// A process key, `null` for zero (the driver had none).
fn push_key(out: &mut Vec<u8>, key: u64) {
    if key == 0 {
        out.extend_from_slice(b"null");
    } else {
        push_u64(out, key);
    }
}

/// Appends a Rust string as a JSON string (quotes included).
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn push_json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_json_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(v) => push_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends one driver-counters record as a JSON object and a newline: the driver's counters
/// (`stats`) as read at `time` (1601-epoch ticks, the service's clock), during driver instance
/// `epoch`. Written periodically so that a reader of the file alone sees drops and their causes.
pub fn push_driver_stats_json(
    out: &mut Vec<u8>,
    epoch: u32,
    stats: &vigil_protocol::Stats,
    time: u64,
) {
    out.push(b'{');
    push_driver_stats_object(out, stats);
    out.extend_from_slice(b",\"epoch\":");
    push_u64(out, u64::from(epoch));
    out.extend_from_slice(b",\"time\":\"");
    push_rfc3339(out, time);
    out.extend_from_slice(b"\"}\n");
}

/// Appends `"driver_stats":{...}`, the counters by name (shared by the JSON Lines and the ECS
/// records).
pub(crate) fn push_driver_stats_object(out: &mut Vec<u8>, stats: &vigil_protocol::Stats) {
    let fields: [(&str, u64); 20] = [
        ("events_generated", stats.events_generated),
        ("events_delivered", stats.events_delivered),
        ("dropped_total", stats.dropped_total()),
        ("dropped_ring_full", stats.dropped_ring_full),
        ("dropped_too_large", stats.dropped_too_large),
        ("dropped_no_memory", stats.dropped_no_memory),
        ("dropped_send_timeout", stats.dropped_send_timeout),
        ("dropped_no_service", stats.dropped_disconnected),
        ("batches_sent", stats.batches_sent),
        ("verdicts_allowed", stats.verdicts_allowed),
        ("verdicts_denied", stats.verdicts_denied),
        ("verdicts_defaulted_open", stats.verdicts_defaulted_open),
        ("verdicts_defaulted_closed", stats.verdicts_defaulted_closed),
        ("verdict_timeouts", stats.verdict_timeouts),
        ("connections", stats.connections),
        ("disconnects", stats.disconnects),
        ("allocation_failures", stats.allocation_failures),
        ("name_query_failures", stats.name_query_failures),
        ("process_table_overflows", stats.process_table_overflows),
        ("process_records_dropped", stats.process_records_dropped),
    ];
    out.extend_from_slice(b"\"driver_stats\":{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "\"{name}\":{value}");
    }
    out.push(b'}');
}

/// Appends one gap record as a JSON object and a newline; `time` is the 1601-epoch timestamp of
/// the event that revealed the gap.
pub fn push_gap_json(out: &mut Vec<u8>, gap: &Gap, time: u64) {
    let _ = write!(
        out,
        "{{\"gap\":{{\"from\":{},\"to\":{},\"missing\":{}}},\"epoch\":{},\"time\":\"",
        gap.from,
        gap.to,
        gap.missing(),
        gap.epoch
    );
    push_rfc3339(out, time);
    out.extend_from_slice(b"\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{EventRepr, MAX_EVENT_LEN};

    fn rfc(ticks: u64) -> String {
        let mut out = Vec::new();
        push_rfc3339(&mut out, ticks);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn times_convert_from_the_1601_epoch() {
        assert_eq!(rfc(0), "1601-01-01T00:00:00.0000000Z");
        assert_eq!(rfc(116_444_736_000_000_000), "1970-01-01T00:00:00.0000000Z");
        // 2024-02-29T23:59:59.1234567Z: a leap day, 100 ns digits kept.
        let unix = 1_709_251_199u64;
        assert_eq!(
            rfc(116_444_736_000_000_000 + unix * 10_000_000 + 1_234_567),
            "2024-02-29T23:59:59.1234567Z"
        );
        assert_eq!(rfc(u64::MAX), "60056-05-28T05:36:10.9551615Z");
    }

    #[test]
    fn an_event_is_one_line_with_every_documented_field() {
        let path: Vec<u16> = "\\Device\\V1\\a \"q\".txt".encode_utf16().collect();
        let target: Vec<u16> = [0x44, 0xD800, 0x0001].to_vec();
        let repr = EventRepr {
            kind: EventKind::Rename,
            flags: EventFlags::from_bits_retain(EventFlags::DIRECTORY.bits() | 1 << 9),
            status: vigil_sys::STATUS_ACCESS_DENIED,
            sequence: 7,
            timestamp: 116_444_736_000_000_000,
            process_id: 4,
            thread_id: 8,
            volume_id: 3,
            desired_access: 0x0012_0089,
            create_disposition: 1,
            information: 2,
            file_id: [0; 16],
            process_key: 0,
            path: Utf16Str::from_units(&path),
            target: Utf16Str::from_units(&target),
        };
        let mut buf = vec![0u8; MAX_EVENT_LEN];
        let n = EventRecord::emit(&repr, &mut buf).unwrap();
        let record = EventRecord::new_checked(&buf[..n]).unwrap();
        let mut out = Vec::new();
        push_event_json(&mut out, 3, &record, None);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "{\"epoch\":3,\"seq\":7,\"time\":\"1970-01-01T00:00:00.0000000Z\",\"kind\":\"rename\",\
             \"path\":\"\\\\Device\\\\V1\\\\a \\\"q\\\".txt\",\"target\":\"D\u{FFFD}\\u0001\",\
             \"pid\":4,\"tid\":8,\"volume\":3,\"status\":\"0xc0000022\",\
             \"flags\":[\"directory\",\"0x00000200\"],\"access\":\"0x00120089\",\
             \"disposition\":1,\"information\":2,\"file_id\":null,\
             \"process\":{\"pid\":4,\"key\":null,\"image\":null,\"parent_pid\":null,\
             \"user_sid\":null,\"session\":null}}\n"
        );

        // The same event with a key, a file id and the process known to the table.
        let repr = EventRepr {
            process_key: 77,
            file_id: [0xAB; 16],
            ..repr
        };
        let n = EventRecord::emit(&repr, &mut buf).unwrap();
        let record = EventRecord::new_checked(&buf[..n]).unwrap();
        let process = ProcessInfo {
            key: 77,
            pid: 4,
            parent_pid: 1,
            image: r"\Device\V1\a.exe".into(),
            user_sid: Some("S-1-5-18".into()),
            session: 2,
            since: 0,
            exited: false,
        };
        let mut out = Vec::new();
        push_event_json(&mut out, 3, &record, Some(&process));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["file_id"], "ab".repeat(16));
        assert_eq!(
            value["process"],
            serde_json::json!({"pid": 4, "key": 77, "image": r"\Device\V1\a.exe",
                "parent_pid": 1, "user_sid": "S-1-5-18", "session": 2})
        );
    }

    #[test]
    fn a_gap_record_names_its_range() {
        let mut out = Vec::new();
        let gap = Gap {
            epoch: 2,
            from: 10,
            to: 19,
        };
        push_gap_json(&mut out, &gap, 116_444_736_000_000_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"gap\":{\"from\":10,\"to\":19,\"missing\":10},\"epoch\":2,\
             \"time\":\"1970-01-01T00:00:00.0000000Z\"}\n"
        );
    }
}
