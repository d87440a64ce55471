//! Round-trip property tests for every message kind: what an encoder writes, the decoder reads
//! back unchanged, and re-encoding gives the same bytes. Every encoder writes every byte of its
//! message (encoding into a buffer of 0x00 and into one of 0xFF gives the same bytes).

pub mod common;

use proptest::prelude::*;
use vigil_protocol::{
    BatchWriter, Config, EventBatch, EventFlags, EventKind, EventRecord, EventRepr, GetStats,
    HEADER_LEN, Hello, HelloReply, MAX_MESSAGE_SIZE, MAX_PATH_UNITS, MAX_PROTECTED_PREFIXES,
    Message, MessageKind, Ping, Pong, PrefixList, ProcessEvent, ProcessFlags, ProcessRecord,
    ProcessRepr, SetConfig, SetConfigReply, Sid, Stats, StatsReply, Utf16Str, Verdict,
    VerdictOperation, VerdictReply, VerdictRequest, VerdictRequestRepr,
};

/// Encodes twice, into zeros and into ones; both must agree and report the same length.
fn encode_all_bytes(emit: impl Fn(&mut [u8]) -> vigil_protocol::Result<usize>) -> Vec<u8> {
    let mut zeros = vec![0x00; MAX_MESSAGE_SIZE + 16];
    let mut ones = vec![0xFF; MAX_MESSAGE_SIZE + 16];
    let n = emit(&mut zeros).unwrap();
    assert_eq!(emit(&mut ones).unwrap(), n);
    assert_eq!(zeros[..n], ones[..n], "an encoder left a byte unwritten");
    assert!(zeros[n..].iter().all(|&b| b == 0x00) && ones[n..].iter().all(|&b| b == 0xFF));
    assert_eq!(n % 8, 0, "messages and records are multiples of 8 bytes");
    zeros.truncate(n);
    zeros
}

/// Message-level checks common to every kind.
fn check_message(bytes: &[u8], kind: MessageKind) {
    let message = Message::parse(bytes).unwrap();
    assert_eq!(message.kind(), kind);
    assert_eq!(encode_all_bytes(|o| message.emit(o)), bytes);
    // Trailing bytes after the declared length are ignored.
    let mut longer = bytes.to_vec();
    longer.extend_from_slice(&[0xEE; 16]);
    assert_eq!(
        encode_all_bytes(|o| Message::parse(&longer).unwrap().emit(o)),
        bytes
    );
}

fn units(max: usize) -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(any::<u16>(), 0..max)
}

/// A valid binary SID: revision 1, 0 to 15 sub-authorities.
fn sid_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 6]>(),
        prop::collection::vec(any::<u32>(), 0..=15),
    )
        .prop_map(|(authority, subs)| {
            let mut sid = vec![1, u8::try_from(subs.len()).unwrap()];
            sid.extend_from_slice(&authority);
            for sub in subs {
                sid.extend_from_slice(&sub.to_le_bytes());
            }
            sid
        })
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    prop::sample::select(EventKind::ALL.to_vec())
}

#[derive(Debug, Clone)]
struct Event {
    kind: EventKind,
    flags: u32,
    status: i32,
    sequence: u64,
    timestamp: u64,
    process_id: u64,
    thread_id: u64,
    volume_id: u32,
    desired_access: u32,
    create_disposition: u32,
    information: u32,
    file_id: [u8; 16],
    process_key: u64,
    path: Vec<u16>,
    target: Vec<u16>,
}

impl Event {
    fn repr(&self) -> EventRepr<'_> {
        EventRepr {
            kind: self.kind,
            flags: EventFlags::from_bits_retain(self.flags),
            status: self.status,
            sequence: self.sequence,
            timestamp: self.timestamp,
            process_id: self.process_id,
            thread_id: self.thread_id,
            volume_id: self.volume_id,
            desired_access: self.desired_access,
            create_disposition: self.create_disposition,
            information: self.information,
            file_id: self.file_id,
            process_key: self.process_key,
            path: Utf16Str::from_units(&self.path),
            target: Utf16Str::from_units(&self.target),
        }
    }
}

prop_compose! {
    fn event()(
        kind in event_kind(),
        // Truncation flags are set by the encoder when it cuts; keep them clear here.
        flags in any::<u32>().prop_map(|f| f & !0b110),
        status in any::<i32>(),
        sequence in any::<u64>(),
        timestamp in any::<u64>(),
        process_id in any::<u64>(),
        thread_id in any::<u64>(),
        (volume_id, desired_access, create_disposition, information) in any::<(u32, u32, u32, u32)>(),
        (file_id, process_key) in any::<([u8; 16], u64)>(),
        path in units(200),
        target in units(40),
    ) -> Event {
        Event {
            kind, flags, status, sequence, timestamp, process_id, thread_id, volume_id,
            desired_access, create_disposition, information, file_id, process_key, path, target,
        }
    }
}

proptest! {
    #[test]
    fn event_record_round_trips(e in event()) {
        let repr = e.repr();
        let bytes = encode_all_bytes(|o| EventRecord::emit(&repr, o));
        prop_assert_eq!(bytes.len(), repr.encoded_len());
        prop_assert_eq!(bytes.len(), EventRecord::encoded_len(e.path.len(), e.target.len()));
        let record = EventRecord::new_checked(&bytes).unwrap();
        prop_assert_eq!(record.repr(), repr);
        prop_assert_eq!(record.record_len(), bytes.len());
        prop_assert!(record.path().units().eq(e.path.iter().copied()));
        prop_assert!(record.target().units().eq(e.target.iter().copied()));
        prop_assert_eq!(encode_all_bytes(|o| EventRecord::emit(&record.repr(), o)), bytes.clone());
        // Decoders accept any alignment.
        let mut shifted = vec![0u8; 1];
        shifted.extend_from_slice(&bytes);
        prop_assert_eq!(EventRecord::new_checked(&shifted[1..]).unwrap().repr(), repr);
    }

    #[test]
    fn set_sequence_renumbers_in_place(e in event(), seq in any::<u64>()) {
        let repr = e.repr();
        let mut bytes = encode_all_bytes(|o| EventRecord::emit(&repr, o));
        EventRecord::set_sequence(&mut bytes, seq).unwrap();
        let expected = EventRepr { sequence: seq, ..repr };
        prop_assert_eq!(EventRecord::new_checked(&bytes).unwrap().repr(), expected);
    }

    #[test]
    fn event_batch_round_trips(events in prop::collection::vec(event(), 1..24)) {
        let reprs: Vec<EventRepr<'_>> = events.iter().map(Event::repr).collect();
        let bytes = encode_all_bytes(|o| {
            let mut w = BatchWriter::new(o)?;
            for r in &reprs {
                w.push(r)?;
            }
            w.finish()
        });
        let batch = EventBatch::new_checked(&bytes).unwrap();
        prop_assert_eq!(batch.record_count(), reprs.len());
        prop_assert_eq!(batch.sequence(), reprs[0].sequence);
        prop_assert_eq!(batch.records().len(), reprs.len());
        let decoded: Vec<EventRepr<'_>> = batch.records().map(|r| r.repr()).collect();
        prop_assert_eq!(&decoded, &reprs);
        check_message(&bytes, MessageKind::EventBatch);

        // The driver's way: records encoded one by one, then a header, then the copies.
        let mut records = Vec::new();
        for r in &reprs {
            records.extend_from_slice(&common::encode_event(r));
        }
        let mut manual = vec![0xCC; vigil_protocol::BATCH_HEADER_LEN];
        let n = EventBatch::emit_header(&mut manual, reprs[0].sequence, reprs.len(), records.len()).unwrap();
        prop_assert_eq!(n, vigil_protocol::BATCH_HEADER_LEN);
        manual.extend_from_slice(&records);
        prop_assert_eq!(manual, bytes);
    }

    #[test]
    fn process_record_round_trips(
        event in prop::sample::select(ProcessEvent::ALL.to_vec()),
        (process_key, process_id, parent_process_id, timestamp) in any::<(u64, u64, u64, u64)>(),
        (session_id, exit_status) in any::<(u32, i32)>(),
        // The truncation bit is the encoder's to set.
        flags in any::<u32>().prop_map(|f| f & !1),
        image in units(300),
        sid in proptest::option::of(sid_bytes()),
    ) {
        let repr = ProcessRepr {
            event,
            process_key,
            process_id,
            parent_process_id,
            timestamp,
            session_id,
            exit_status,
            flags: ProcessFlags::from_bits_retain(flags),
            image: Utf16Str::from_units(&image),
            user_sid: sid.as_deref().map(|b| Sid::new_checked(b).unwrap()),
        };
        let bytes = encode_all_bytes(|o| repr.emit(o));
        prop_assert_eq!(bytes.len(), repr.encoded_len());
        let view = ProcessRecord::new_checked(&bytes).unwrap();
        prop_assert_eq!(view.repr(), repr);
        prop_assert_eq!(view.process_key(), process_key);
        check_message(&bytes, MessageKind::ProcessRecord);
    }

    #[test]
    fn sid_text_has_every_sub_authority(sid in sid_bytes()) {
        let parsed = Sid::new_checked(&sid).unwrap();
        let text = parsed.to_string();
        let parts: Vec<&str> = text.split('-').collect();
        // "S", the revision, the authority, then one part per sub-authority.
        prop_assert_eq!(parts.len(), 3 + usize::from(sid[1]));
        prop_assert_eq!(parts[0], "S");
        prop_assert_eq!(parts[1], "1");
        for (i, part) in parts[3..].iter().enumerate() {
            let sub = u32::from_le_bytes(sid[8 + 4 * i..12 + 4 * i].try_into().unwrap());
            prop_assert_eq!(part.parse::<u32>().unwrap(), sub);
        }
    }

    #[test]
    fn verdict_request_round_trips(
        request_id in any::<u64>(),
        operation in prop::sample::select(VerdictOperation::ALL.to_vec()),
        flags in any::<u32>().prop_map(|f| f & !0b110),
        process_id in any::<u64>(),
        path in units(300),
        target in units(300),
    ) {
        let repr = VerdictRequestRepr {
            request_id,
            operation,
            flags: EventFlags::from_bits_retain(flags),
            process_id,
            path: Utf16Str::from_units(&path),
            target: Utf16Str::from_units(&target),
        };
        let bytes = encode_all_bytes(|o| repr.emit(o));
        prop_assert_eq!(bytes.len(), repr.encoded_len());
        let view = VerdictRequest::new_checked(&bytes).unwrap();
        prop_assert_eq!(view.repr(), repr);
        prop_assert_eq!(view.request_id(), request_id);
        prop_assert_eq!(view.operation(), operation);
        check_message(&bytes, MessageKind::VerdictRequest);
    }

    #[test]
    fn verdict_reply_round_trips(request_id in any::<u64>(), deny in any::<bool>(), reason in any::<u32>()) {
        let reply = VerdictReply { request_id, verdict: if deny { Verdict::Deny } else { Verdict::Allow }, reason };
        let bytes = encode_all_bytes(|o| reply.emit(o));
        prop_assert_eq!(bytes.len(), VerdictReply::LEN);
        prop_assert_eq!(VerdictReply::parse(&bytes), Ok(reply));
        check_message(&bytes, MessageKind::VerdictReply);
    }

    #[test]
    fn hello_round_trips(client_process_id in any::<u64>()) {
        let hello = Hello { client_process_id };
        let bytes = encode_all_bytes(|o| hello.emit(o));
        prop_assert_eq!(Hello::parse(&bytes), Ok(hello));
        prop_assert_eq!(vigil_protocol::Header::parse(&bytes).unwrap().version, vigil_protocol::Version::CURRENT);
        check_message(&bytes, MessageKind::Hello);
    }

    #[test]
    fn hello_reply_round_trips(status in any::<i32>(), max_message_size in any::<u32>(), ring_capacity_bytes in any::<u32>()) {
        let reply = HelloReply { status, max_message_size, ring_capacity_bytes };
        let bytes = encode_all_bytes(|o| reply.emit(o));
        prop_assert_eq!(HelloReply::parse(&bytes), Ok(reply));
        check_message(&bytes, MessageKind::HelloReply);
    }

    #[test]
    fn stats_reply_round_trips(counters in any::<[u64; Stats::COUNT]>()) {
        let reply = StatsReply { stats: Stats::from_array(counters) };
        prop_assert_eq!(reply.stats.to_array(), counters);
        let bytes = encode_all_bytes(|o| reply.emit(o));
        prop_assert_eq!(StatsReply::parse(&bytes), Ok(reply));
        // Wire order is field order.
        for (i, c) in counters.iter().enumerate() {
            let at = HEADER_LEN + 8 * i;
            prop_assert_eq!(&bytes[at..at + 8], &c.to_le_bytes());
        }
        check_message(&bytes, MessageKind::StatsReply);
    }

    #[test]
    fn set_config_round_trips(
        batch_size in any::<u32>(),
        verdict_timeout_ms in any::<u32>(),
        send_timeout_ms in any::<u32>(),
        deny in any::<bool>(),
        attach_network_volumes in any::<bool>(),
        prefixes in prop::collection::vec(units(90), 0..=MAX_PROTECTED_PREFIXES),
    ) {
        let list: Vec<Utf16Str<'_>> = prefixes.iter().map(|p| Utf16Str::from_units(p)).collect();
        let config = Config {
            batch_size,
            verdict_timeout_ms,
            send_timeout_ms,
            default_verdict: if deny { Verdict::Deny } else { Verdict::Allow },
            attach_network_volumes,
            protected_prefixes: PrefixList::from_slice(&list).unwrap(),
        };
        let bytes = encode_all_bytes(|o| config.emit(o));
        prop_assert_eq!(bytes.len(), config.encoded_len());
        let view = SetConfig::new_checked(&bytes).unwrap();
        prop_assert_eq!(view.prefix_count(), prefixes.len());
        prop_assert_eq!(view.config(), config);
        prop_assert_eq!(view.prefix(prefixes.len()), None);
        check_message(&bytes, MessageKind::SetConfig);
    }

    #[test]
    fn status_replies_and_pings_round_trip(status in any::<i32>(), nonce in any::<u64>()) {
        let bytes = encode_all_bytes(|o| SetConfigReply { status }.emit(o));
        prop_assert_eq!(SetConfigReply::parse(&bytes), Ok(SetConfigReply { status }));
        check_message(&bytes, MessageKind::SetConfigReply);
        let bytes = encode_all_bytes(|o| Ping { nonce }.emit(o));
        prop_assert_eq!(Ping::parse(&bytes), Ok(Ping { nonce }));
        check_message(&bytes, MessageKind::Ping);
        let bytes = encode_all_bytes(|o| Pong { nonce }.emit(o));
        prop_assert_eq!(Pong::parse(&bytes), Ok(Pong { nonce }));
        check_message(&bytes, MessageKind::Pong);
    }

    #[test]
    fn utf16_forms_agree(u in units(64)) {
        let le: Vec<u8> = u.iter().flat_map(|x| x.to_le_bytes()).collect();
        let a = Utf16Str::from_units(&u);
        let b = Utf16Str::from_le_bytes(&le).unwrap();
        prop_assert_eq!(a, b);
        prop_assert_eq!(a.len_bytes(), le.len());
        prop_assert_eq!(a.to_string(), String::from_utf16_lossy(&u));
        prop_assert_eq!(b.to_string(), String::from_utf16_lossy(&u));
    }
}

#[test]
fn get_stats_round_trips() {
    let bytes = encode_all_bytes(|o| GetStats.emit(o));
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(GetStats::parse(&bytes), Ok(GetStats));
    check_message(&bytes, MessageKind::GetStats);
}

#[test]
fn every_sample_message_round_trips() {
    let samples = common::sample_messages();
    for kind in MessageKind::ALL {
        assert!(
            samples.iter().any(|(_, k, _)| *k == kind),
            "no sample of {kind:?}"
        );
    }
    for (name, kind, bytes) in samples {
        let message = Message::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(message.kind(), kind, "{name}");
        check_message(&bytes, kind);
    }
}

#[test]
fn long_paths_are_cut_and_flagged() {
    let long: Vec<u16> = (0..MAX_PATH_UNITS + 100)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz"[i % 26].into())
        .collect();
    let short = common::wide("short");
    let repr = common::event(EventKind::Rename, 1, &long, &short);
    let bytes = common::encode_event(&repr);
    assert_eq!(
        bytes.len(),
        EventRecord::encoded_len(long.len(), short.len())
    );
    let record = EventRecord::new_checked(&bytes).unwrap();
    assert!(record.flags().contains(EventFlags::PATH_TRUNCATED));
    assert!(!record.flags().contains(EventFlags::TARGET_TRUNCATED));
    assert!(
        record
            .path()
            .units()
            .eq(long[..MAX_PATH_UNITS].iter().copied())
    );
    assert_eq!(record.target(), Utf16Str::from_units(&short));

    let repr = common::event(EventKind::Rename, 1, &short, &long);
    let record_bytes = common::encode_event(&repr);
    let record = EventRecord::new_checked(&record_bytes).unwrap();
    assert_eq!(record.flags(), EventFlags::TARGET_TRUNCATED);
    assert_eq!(record.target().len_units(), MAX_PATH_UNITS);

    let request = VerdictRequestRepr {
        request_id: 1,
        operation: VerdictOperation::Link,
        flags: EventFlags::NONE,
        process_id: 1,
        path: Utf16Str::from_units(&long),
        target: Utf16Str::from_units(&long),
    };
    let bytes = encode_all_bytes(|o| request.emit(o));
    let view = VerdictRequest::new_checked(&bytes).unwrap();
    assert_eq!(
        view.flags(),
        EventFlags::PATH_TRUNCATED | EventFlags::TARGET_TRUNCATED
    );
    assert_eq!(view.path().len_units(), MAX_PATH_UNITS);
    assert_eq!(
        bytes.len(),
        VerdictRequestRepr::encoded_len_for(long.len(), long.len())
    );
}

#[test]
fn a_batch_fills_to_the_maximum_message_size_and_no_further() {
    let path = vec![0x41u16; 100];
    let repr = common::event(EventKind::Open, 0, &path, &[]);
    let mut out = vec![0; 2 * MAX_MESSAGE_SIZE];
    let mut writer = BatchWriter::new(&mut out).unwrap();
    let mut pushed = 0u64;
    loop {
        let r = EventRepr {
            sequence: pushed,
            ..repr
        };
        match writer.push(&r) {
            Ok(()) => pushed += 1,
            Err(e) => {
                assert_eq!(e, vigil_protocol::Error::BufferTooSmall);
                break;
            }
        }
    }
    let n = writer.finish().unwrap();
    assert!(n <= MAX_MESSAGE_SIZE && n + repr.encoded_len() > MAX_MESSAGE_SIZE);
    let batch = EventBatch::new_checked(&out[..n]).unwrap();
    assert_eq!(batch.record_count() as u64, pushed);
    assert!(batch.records().map(|r| r.sequence()).eq(0..pushed));
}

#[test]
fn minimal_records_fill_a_batch_exactly_to_max_batch_records() {
    let repr = common::event(EventKind::Delete, 0, &[], &[]);
    let mut out = vec![0; MAX_MESSAGE_SIZE];
    let mut writer = BatchWriter::new(&mut out).unwrap();
    while writer.push(&repr).is_ok() {}
    assert_eq!(writer.record_count(), vigil_protocol::MAX_BATCH_RECORDS);
    let n = writer.finish().unwrap();
    assert_eq!(
        EventBatch::new_checked(&out[..n]).unwrap().record_count(),
        vigil_protocol::MAX_BATCH_RECORDS
    );
}
