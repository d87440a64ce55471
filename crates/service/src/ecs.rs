//! The Elastic Common Schema output (`vigil run --format ecs`): one ndjson object per line, with
//! ECS field names as nested objects, so that a stock Filebeat `filestream` input with the
//! `ndjson` parser ingests it without any mapping. User mode, portable.
//!
//! The mapping table, and why each choice, is in `docs/ecs.md`; the fields ECS does not define
//! go under `vigil.*`. Objects are nested (`{"event":{"action":…}}`), never dotted keys, because
//! the ndjson parser expands nothing and Elasticsearch maps nested objects to the same fields.

use std::io::Write as _;

use vigil_protocol::{EventFlags, EventKind, EventRecord, Stats};

use crate::process_table::ProcessInfo;
use crate::record::{
    CivilTime, kind_name, push_file_id, push_flags, push_hex32, push_json_str, push_json_utf16,
    push_rfc3339, push_u64,
};
use crate::sequence::Gap;

/// The ECS version whose field definitions this output follows.
pub const ECS_VERSION: &str = "8.11.0";

/// `STATUS_PENDING`: a pre-operation event (first write), whose outcome is not known yet.
const STATUS_PENDING: i32 = 0x103;

/// `IoStatus.Information` of a create that made a new file (`FILE_CREATED`).
const FILE_CREATED: u32 = 2;

/// The machine the records come from, for `host.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// `host.name` and `host.hostname`.
    pub name: String,
    /// `host.os.type`: `windows`, `linux`, … (ECS's values).
    pub os_type: &'static str,
}

impl HostInfo {
    /// This machine: its name from `COMPUTERNAME` (Windows) or `HOSTNAME`, else the kernel's
    /// host name file, else `unknown`.
    pub fn current() -> Self {
        let name = std::env::var("COMPUTERNAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            name,
            os_type: std::env::consts::OS,
        }
    }
}

/// ECS `event.type` values (an array of one) for an event kind; `open` depends on whether the
/// create made the file.
fn event_type(record: &EventRecord<'_>) -> &'static str {
    match record.kind() {
        EventKind::Open if record.information() == FILE_CREATED => "creation",
        EventKind::Open => "access",
        EventKind::FirstWrite | EventKind::Rename | EventKind::CloseModified => "change",
        EventKind::HardLink => "creation",
        EventKind::Delete => "deletion",
    }
}

/// ECS `event.outcome`: `success` for an NTSTATUS that is not an error or warning, `unknown`
/// before the operation completed, `failure` otherwise.
const fn event_outcome(status: i32) -> &'static str {
    if status == STATUS_PENDING {
        "unknown"
    } else if status >= 0 {
        "success"
    } else {
        "failure"
    }
}

/// Appends `@timestamp` in the form Filebeat parses as it is: ISO 8601, UTC, milliseconds,
/// `Z` (the full 100 ns precision is in `vigil.time`).
fn push_timestamp_ms(out: &mut Vec<u8>, filetime: u64) {
    let t = CivilTime::from_filetime(filetime);
    let (h, m, s) = t.hms;
    let _ = write!(
        out,
        "\"{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z\"",
        t.year,
        t.month,
        t.day,
        t.ticks / 10_000
    );
}

fn push_common_head(out: &mut Vec<u8>, host: &HostInfo, time: u64) {
    out.extend_from_slice(b"{\"@timestamp\":");
    push_timestamp_ms(out, time);
    out.extend_from_slice(b",\"ecs\":{\"version\":");
    push_json_str(out, ECS_VERSION);
    out.extend_from_slice(b"},\"host\":{\"name\":");
    push_json_str(out, &host.name);
    out.extend_from_slice(b",\"hostname\":");
    push_json_str(out, &host.name);
    out.extend_from_slice(b",\"os\":{\"type\":");
    push_json_str(out, host.os_type);
    out.extend_from_slice(b"}}");
}

/// Appends one event as an ECS object and a newline.
pub fn push_event_ecs(
    out: &mut Vec<u8>,
    host: &HostInfo,
    epoch: u32,
    record: &EventRecord<'_>,
    process: Option<&ProcessInfo>,
) {
    let kind = record.kind();
    push_common_head(out, host, record.timestamp());
    out.extend_from_slice(b",\"event\":{\"kind\":\"event\",\"category\":[\"file\"],\"type\":[\"");
    out.extend_from_slice(event_type(record).as_bytes());
    out.extend_from_slice(b"\"],\"action\":\"");
    out.extend_from_slice(kind_name(kind).as_bytes());
    out.extend_from_slice(b"\",\"outcome\":\"");
    out.extend_from_slice(event_outcome(record.status()).as_bytes());
    out.extend_from_slice(b"\",\"sequence\":");
    push_u64(out, record.sequence());
    out.extend_from_slice(b",\"module\":\"vigil\",\"dataset\":\"vigil.file\"}");

    // A rename or link is about the new name (as Elastic Defend and Sysmon report it); the
    // existing name goes to vigil.file.original_path, for which ECS has no field.
    let renamed = matches!(kind, EventKind::Rename | EventKind::HardLink);
    let path = if renamed {
        record.target()
    } else {
        record.path()
    };
    out.extend_from_slice(b",\"file\":{\"path\":");
    push_json_utf16(out, path);
    out.extend_from_slice(b",\"name\":");
    let name: String = path.to_string();
    push_json_str(out, name.rsplit('\\').next().unwrap_or(""));
    out.extend_from_slice(b",\"type\":");
    let is_dir = record.flags().contains(EventFlags::DIRECTORY);
    push_json_str(out, if is_dir { "dir" } else { "file" });
    if record.file_id() != [0; 16] {
        out.extend_from_slice(b",\"inode\":");
        push_file_id(out, record);
    }
    out.push(b'}');

    out.extend_from_slice(b",\"process\":{\"pid\":");
    push_u64(out, record.process_id());
    out.extend_from_slice(b",\"thread\":{\"id\":");
    push_u64(out, record.thread_id());
    out.push(b'}');
    if record.process_key() != 0 {
        // Keyword, not long: an identifier, and ECS types entity_id as keyword.
        out.extend_from_slice(b",\"entity_id\":\"");
        push_u64(out, record.process_key());
        out.push(b'"');
    }
    if let Some(p) = process {
        if !p.image.is_empty() {
            out.extend_from_slice(b",\"executable\":");
            push_json_str(out, &p.image);
            out.extend_from_slice(b",\"name\":");
            push_json_str(out, p.image_name());
        }
        out.extend_from_slice(b",\"parent\":{\"pid\":");
        push_u64(out, p.parent_pid);
        out.push(b'}');
    }
    out.push(b'}');
    if let Some(sid) = process.and_then(|p| p.user_sid.as_deref()) {
        out.extend_from_slice(b",\"user\":{\"id\":");
        push_json_str(out, sid);
        out.push(b'}');
    }

    out.extend_from_slice(b",\"vigil\":{\"epoch\":");
    push_u64(out, u64::from(epoch));
    out.extend_from_slice(b",\"time\":\"");
    push_rfc3339(out, record.timestamp());
    out.extend_from_slice(b"\",\"status\":");
    push_hex32(out, record.status().cast_unsigned());
    out.extend_from_slice(b",\"flags\":");
    push_flags(out, record.flags());
    out.extend_from_slice(b",\"access\":");
    push_hex32(out, record.desired_access());
    out.extend_from_slice(b",\"disposition\":");
    push_u64(out, u64::from(record.create_disposition()));
    out.extend_from_slice(b",\"information\":");
    push_u64(out, u64::from(record.information()));
    out.extend_from_slice(b",\"volume\":");
    push_u64(out, u64::from(record.volume_id()));
    if renamed {
        out.extend_from_slice(b",\"file\":{\"original_path\":");
        push_json_utf16(out, record.path());
        out.push(b'}');
    }
    if let Some(p) = process {
        out.extend_from_slice(b",\"process\":{\"session\":");
        push_u64(out, u64::from(p.session));
        out.push(b'}');
    }
    out.extend_from_slice(b"}}\n");
}

/// Appends a gap (events lost) as an ECS `pipeline_error` object and a newline.
pub fn push_gap_ecs(out: &mut Vec<u8>, host: &HostInfo, gap: &Gap, time: u64) {
    push_common_head(out, host, time);
    let _ = writeln!(
        out,
        ",\"event\":{{\"kind\":\"pipeline_error\",\"action\":\"events_lost\",\
         \"module\":\"vigil\",\"dataset\":\"vigil.file\"}},\
         \"vigil\":{{\"epoch\":{},\"gap\":{{\"from\":{},\"to\":{},\"missing\":{}}}}}}}",
        gap.epoch,
        gap.from,
        gap.to,
        gap.missing()
    );
}

/// Appends the driver's counters as an ECS `metric` object and a newline.
pub fn push_driver_stats_ecs(
    out: &mut Vec<u8>,
    host: &HostInfo,
    epoch: u32,
    stats: &Stats,
    time: u64,
) {
    push_common_head(out, host, time);
    out.extend_from_slice(
        b",\"event\":{\"kind\":\"metric\",\"action\":\"driver_stats\",\"module\":\"vigil\",\
          \"dataset\":\"vigil.driver\"},\"vigil\":{\"epoch\":",
    );
    push_u64(out, u64::from(epoch));
    out.push(b',');
    crate::record::push_driver_stats_object(out, stats);
    out.extend_from_slice(b"}}\n");
}
