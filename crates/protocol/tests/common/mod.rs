//! Sample messages shared by the integration tests, the seed corpus and the benchmark: one
//! valid encoding of every kind, built through the public encoders only. `pub` so that each
//! test binary may use any subset without dead-code warnings.

#![expect(
    clippy::missing_panics_doc,
    reason = "test helpers panic on a broken sample, which fails the test that called them"
)]

use vigil_protocol::{
    BatchWriter, Config, EventFlags, EventKind, EventRecord, EventRepr, GetStats, Hello,
    HelloReply, MAX_MESSAGE_SIZE, MAX_PATH_UNITS, MessageKind, Ping, Pong, PrefixList,
    ProcessEvent, ProcessFlags, ProcessRepr, SetConfigReply, Sid, Stats, StatsReply, Utf16Str,
    Verdict, VerdictOperation, VerdictReply, VerdictRequestRepr,
};

/// A user's SID, `S-1-5-21-1004336348-1177238915-682003330-1001`, in binary form.
pub const USER_SID: [u8; 28] = {
    let mut sid = [0u8; 28];
    sid[0] = 1; // revision
    sid[1] = 5; // sub-authorities
    sid[7] = 5; // NT AUTHORITY, big-endian 48 bits
    let subs: [u32; 5] = [21, 1_004_336_348, 1_177_238_915, 682_003_330, 1001];
    let mut i = 0;
    while i < 5 {
        let b = subs[i].to_le_bytes();
        sid[8 + 4 * i] = b[0];
        sid[9 + 4 * i] = b[1];
        sid[10 + 4 * i] = b[2];
        sid[11 + 4 * i] = b[3];
        i += 1;
    }
    sid
};

/// `S-1-5-18`, the local system account.
pub const SYSTEM_SID: [u8; 12] = [1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0];

/// A typical process record.
pub fn process<'a>(event: ProcessEvent, image: &'a [u16], sid: &'a [u8]) -> ProcessRepr<'a> {
    ProcessRepr {
        event,
        process_key: 0x0000_0001_0000_0042,
        process_id: 4242,
        parent_process_id: 900,
        timestamp: 133_000_000_000_000_000,
        session_id: 1,
        exit_status: 0,
        flags: ProcessFlags::NONE,
        image: Utf16Str::from_units(image),
        user_sid: if sid.is_empty() {
            None
        } else {
            Some(Sid::new_checked(sid).unwrap())
        },
    }
}

/// `s` as UTF-16 code units.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// A typical event with the given paths.
pub fn event<'a>(
    kind: EventKind,
    sequence: u64,
    path: &'a [u16],
    target: &'a [u16],
) -> EventRepr<'a> {
    EventRepr {
        kind,
        flags: EventFlags::NONE,
        status: 0,
        sequence,
        timestamp: 133_000_000_000_000_000 + sequence,
        process_id: 4242,
        thread_id: 4343,
        volume_id: 0x1234_5678,
        desired_access: 0x0012_019F,
        create_disposition: 1,
        information: 1,
        file_id: [7; 16],
        process_key: 0x0000_0001_0000_0042,
        path: Utf16Str::from_units(path),
        target: Utf16Str::from_units(target),
    }
}

/// An encoded record.
pub fn encode_event(repr: &EventRepr<'_>) -> Vec<u8> {
    let mut out = vec![0; repr.encoded_len()];
    let n = EventRecord::emit(repr, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// An encoded batch of `reprs`.
pub fn encode_batch(reprs: &[EventRepr<'_>]) -> Vec<u8> {
    let mut out = vec![0; MAX_MESSAGE_SIZE];
    let mut writer = BatchWriter::new(&mut out).unwrap();
    for r in reprs {
        writer.push(r).unwrap();
    }
    let n = writer.finish().unwrap();
    out.truncate(n);
    out
}

/// Encodes with an `emit`-like closure into an exact-size vector.
pub fn encode(emit: impl FnOnce(&mut [u8]) -> vigil_protocol::Result<usize>) -> Vec<u8> {
    let mut out = vec![0; MAX_MESSAGE_SIZE];
    let n = emit(&mut out).unwrap();
    out.truncate(n);
    out
}

/// A named, valid, encoded sample of each message kind (several for the variable ones).
#[expect(clippy::too_many_lines, reason = "one flat list of samples reads best")]
pub fn sample_messages() -> Vec<(&'static str, MessageKind, Vec<u8>)> {
    let path = wide(r"\Device\HarddiskVolume3\Users\alice\Documents\report.docx");
    let target = wide(r"\Device\HarddiskVolume3\Users\alice\Documents\report-final.docx");
    let long = vec![u16::from(b'x'); MAX_PATH_UNITS + 10];
    let prefix_a = wide(r"\Device\HarddiskVolume3\Protected");
    let prefix_b = wide(r"\Device\HarddiskVolume3\Windows\System32\drivers");
    let prefixes = [
        Utf16Str::from_units(&prefix_a),
        Utf16Str::from_units(&prefix_b),
    ];
    let full_prefixes: Vec<Vec<u16>> = (0..16)
        .map(|i| wide(&format!(r"\Device\HarddiskVolume{i}\P")))
        .collect();
    let full: Vec<Utf16Str<'_>> = full_prefixes
        .iter()
        .map(|p| Utf16Str::from_units(p))
        .collect();
    let config = Config {
        protected_prefixes: PrefixList::from_slice(&prefixes).unwrap(),
        ..Config::DEFAULT
    };
    let config_full = Config {
        batch_size: 1,
        verdict_timeout_ms: 10,
        send_timeout_ms: 60_000,
        default_verdict: Verdict::Deny,
        attach_network_volumes: true,
        protected_prefixes: PrefixList::from_slice(&full).unwrap(),
    };
    let request = VerdictRequestRepr {
        request_id: 99,
        operation: VerdictOperation::Rename,
        flags: EventFlags::DIRECTORY,
        process_id: 4242,
        path: Utf16Str::from_units(&path),
        target: Utf16Str::from_units(&target),
    };
    let request_create = VerdictRequestRepr {
        operation: VerdictOperation::Create,
        target: Utf16Str::EMPTY,
        ..request
    };
    let image = wide(r"\Device\HarddiskVolume3\Windows\System32\notepad.exe");
    let mut exit = process(ProcessEvent::Exit, &image, &SYSTEM_SID);
    exit.exit_status = -1_073_741_510;
    let stats = Stats::from_array(core::array::from_fn(|i| (i as u64 + 1) * 1000));
    vec![
        (
            "batch-1",
            MessageKind::EventBatch,
            encode_batch(&[event(EventKind::Open, 1, &path, &[])]),
        ),
        (
            "batch-3",
            MessageKind::EventBatch,
            encode_batch(&[
                event(EventKind::Open, 10, &path, &[]),
                event(EventKind::Rename, 11, &path, &target),
                event(EventKind::CloseModified, 12, &path, &[]),
            ]),
        ),
        (
            "batch-long-path",
            MessageKind::EventBatch,
            encode_batch(&[event(EventKind::HardLink, 5, &long, &long)]),
        ),
        (
            "verdict-request-rename",
            MessageKind::VerdictRequest,
            encode(|o| request.emit(o)),
        ),
        (
            "verdict-request-create",
            MessageKind::VerdictRequest,
            encode(|o| request_create.emit(o)),
        ),
        (
            "verdict-reply",
            MessageKind::VerdictReply,
            encode(|o| {
                VerdictReply {
                    request_id: 99,
                    verdict: Verdict::Deny,
                    reason: 7,
                }
                .emit(o)
            }),
        ),
        (
            "process-start",
            MessageKind::ProcessRecord,
            encode(|o| process(ProcessEvent::Start, &image, &USER_SID).emit(o)),
        ),
        (
            "process-exit",
            MessageKind::ProcessRecord,
            encode(|o| exit.emit(o)),
        ),
        (
            "process-seen-no-sid",
            MessageKind::ProcessRecord,
            encode(|o| process(ProcessEvent::Seen, &[], &[]).emit(o)),
        ),
        (
            "process-long-image",
            MessageKind::ProcessRecord,
            encode(|o| process(ProcessEvent::Start, &long, &USER_SID).emit(o)),
        ),
        (
            "hello",
            MessageKind::Hello,
            encode(|o| {
                Hello {
                    client_process_id: 1234,
                }
                .emit(o)
            }),
        ),
        (
            "hello-reply",
            MessageKind::HelloReply,
            encode(|o| {
                HelloReply {
                    status: 0,
                    max_message_size: 65536,
                    ring_capacity_bytes: 1 << 20,
                }
                .emit(o)
            }),
        ),
        (
            "get-stats",
            MessageKind::GetStats,
            encode(|o| GetStats.emit(o)),
        ),
        (
            "stats-reply",
            MessageKind::StatsReply,
            encode(|o| StatsReply { stats }.emit(o)),
        ),
        (
            "set-config-default",
            MessageKind::SetConfig,
            encode(|o| Config::DEFAULT.emit(o)),
        ),
        (
            "set-config-2",
            MessageKind::SetConfig,
            encode(|o| config.emit(o)),
        ),
        (
            "set-config-16",
            MessageKind::SetConfig,
            encode(|o| config_full.emit(o)),
        ),
        (
            "set-config-reply",
            MessageKind::SetConfigReply,
            encode(|o| {
                SetConfigReply {
                    status: -1_073_741_811,
                }
                .emit(o)
            }),
        ),
        (
            "ping",
            MessageKind::Ping,
            encode(|o| Ping { nonce: 0xDEAD_BEEF }.emit(o)),
        ),
        (
            "pong",
            MessageKind::Pong,
            encode(|o| Pong { nonce: 0xDEAD_BEEF }.emit(o)),
        ),
    ]
}

/// Standalone sample records.
pub fn sample_records() -> Vec<(&'static str, Vec<u8>)> {
    let path = wide(r"\Device\HarddiskVolume3\Temp\a.txt");
    let target = wide(r"\Device\HarddiskVolume3\Temp\b.txt");
    let odd = wide(r"\Device\HarddiskVolume3\Temp\ab"); // 62 bytes: needs padding
    let surrogate = vec![0xD800u16, u16::from(b'a')];
    let long = vec![u16::from(b'y'); MAX_PATH_UNITS + 1];
    let mut flagged = event(EventKind::Delete, 3, &path, &[]);
    flagged.flags = EventFlags::DELETE_ON_CLOSE | EventFlags::NAME_NOT_NORMALIZED;
    flagged.status = -1_073_741_790;
    vec![
        (
            "record-open",
            encode_event(&event(EventKind::Open, 1, &path, &[])),
        ),
        (
            "record-rename",
            encode_event(&event(EventKind::Rename, 2, &path, &target)),
        ),
        ("record-delete-flags", encode_event(&flagged)),
        (
            "record-padding",
            encode_event(&event(EventKind::FirstWrite, 4, &odd, &[])),
        ),
        (
            "record-empty",
            encode_event(&event(EventKind::CloseModified, 5, &[], &[])),
        ),
        (
            "record-surrogate",
            encode_event(&event(EventKind::Open, 6, &surrogate, &[])),
        ),
        (
            "record-truncated",
            encode_event(&event(EventKind::HardLink, 7, &long, &path)),
        ),
    ]
}

/// The seed corpus for each fuzz target: (target, file name, bytes).
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, kind, bytes) in sample_messages() {
        seeds.push(("message", format!("seed-{name}"), bytes.clone()));
        let target = match kind {
            MessageKind::EventBatch => "event_batch",
            MessageKind::VerdictRequest => "verdict_request",
            MessageKind::SetConfig => "set_config",
            MessageKind::ProcessRecord => "process_record",
            _ => "fixed",
        };
        seeds.push((target, format!("seed-{name}"), bytes));
    }
    for (name, bytes) in sample_records() {
        seeds.push(("event_record", format!("seed-{name}"), bytes));
    }
    seeds
}
