//! The malformed-input suite: every way a buffer can be wrong, each refused with its own error.
//!
//! Starts from valid samples of every kind (`common`) and breaks one thing at a time: truncation
//! at every byte, every length and offset field pushed past the end and to its maximum, odd
//! lengths, wrong version, magic and kind, non-zero reserved fields and padding, bad counts. Also
//! the encoders' refusals and the configuration ranges.

#![expect(
    clippy::cast_possible_truncation,
    reason = "test lengths are far below u32::MAX; casting them to wire fields is the point"
)]

pub mod common;

use vigil_protocol::{
    BATCH_HEADER_LEN, BatchWriter, Config, ConfigField, EVENT_FIXED_LEN, Error, EventBatch,
    EventKind, EventRecord, GetStats, HEADER_LEN, Header, Hello, HelloReply, MAX_BATCH_RECORDS,
    MAX_MESSAGE_SIZE, MAX_PATH_BYTES, MAX_PREFIX_UNITS, MAX_PROTECTED_PREFIXES, Message,
    MessageKind, PROCESS_RECORD_FIXED_LEN, Ping, Pong, PrefixList, ProcessRecord, SetConfig,
    SetConfigReply, Sid, StatsReply, Utf16Str, VERSION_MAJOR, Verdict, VerdictReply,
    VerdictRequest, Version,
};

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn sample(name: &str) -> Vec<u8> {
    common::sample_messages()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .2
}

fn record_sample(name: &str) -> Vec<u8> {
    common::sample_records()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

/// Decodes with the typed decoder for `kind`.
fn decode_as(kind: MessageKind, b: &[u8]) -> Result<(), Error> {
    match kind {
        MessageKind::EventBatch => EventBatch::new_checked(b).map(drop),
        MessageKind::VerdictRequest => VerdictRequest::new_checked(b).map(drop),
        MessageKind::VerdictReply => VerdictReply::parse(b).map(drop),
        MessageKind::ProcessRecord => ProcessRecord::new_checked(b).map(drop),
        MessageKind::Hello => Hello::parse(b).map(drop),
        MessageKind::HelloReply => HelloReply::parse(b).map(drop),
        MessageKind::GetStats => GetStats::parse(b).map(drop),
        MessageKind::StatsReply => StatsReply::parse(b).map(drop),
        MessageKind::SetConfig => SetConfig::new_checked(b).map(drop),
        MessageKind::SetConfigReply => SetConfigReply::parse(b).map(drop),
        MessageKind::Ping => Ping::parse(b).map(drop),
        MessageKind::Pong => Pong::parse(b).map(drop),
    }
}

/// Both the dispatching and the typed decoder give `expected`.
#[track_caller]
fn assert_refused(kind: MessageKind, b: &[u8], expected: Error) {
    assert_eq!(
        Message::parse(b).map(drop),
        Err(expected),
        "Message::parse of {kind:?}"
    );
    assert_eq!(
        decode_as(kind, b),
        Err(expected),
        "typed decoder of {kind:?}"
    );
}

// ---- the header, for every kind -------------------------------------------------------------

#[test]
fn every_message_truncated_at_every_byte_is_truncated() {
    for (name, kind, bytes) in common::sample_messages() {
        for cut in 0..bytes.len() {
            let b = &bytes[..cut];
            assert_eq!(
                Message::parse(b).map(drop),
                Err(Error::Truncated),
                "{name} cut at {cut}"
            );
            assert_eq!(
                decode_as(kind, b),
                Err(Error::Truncated),
                "{name} cut at {cut}"
            );
        }
        assert_eq!(decode_as(kind, &bytes), Ok(()), "{name} whole");
    }
}

#[test]
fn every_record_truncated_at_every_byte_is_refused() {
    for (name, bytes) in common::sample_records() {
        for cut in 0..bytes.len() {
            let expected = if cut < EVENT_FIXED_LEN {
                Error::Truncated
            } else {
                Error::LengthPastEnd
            };
            assert_eq!(
                EventRecord::new_checked(&bytes[..cut]).map(drop),
                Err(expected),
                "{name} cut at {cut}"
            );
        }
        assert!(EventRecord::new_checked(&bytes).is_ok());
    }
}

#[test]
fn bad_magic() {
    for (_, kind, mut b) in common::sample_messages() {
        b[0] ^= 0x20;
        assert_refused(kind, &b, Error::BadMagic);
        assert_eq!(Header::peek_version(&b), Err(Error::BadMagic));
    }
}

#[test]
fn other_major_versions_are_refused_but_readable() {
    for (_, kind, b) in common::sample_messages() {
        for major in [0, VERSION_MAJOR + 1, u16::MAX] {
            let mut b = b.clone();
            set_u16(&mut b, 4, major);
            assert_refused(kind, &b, Error::UnsupportedVersion);
            assert_eq!(Header::peek_version(&b), Ok(Version { major, minor: 0 }));
            assert!(!vigil_protocol::is_compatible(major));
        }
    }
    assert!(vigil_protocol::is_compatible(VERSION_MAJOR));
    assert_eq!(Header::peek_version(b"VGIL\x01\x00"), Err(Error::Truncated));
}

/// A peer of the previous major version (1: event records without the process key, no process
/// records) is refused before any field of the changed layout is read, both ways: what the
/// driver gets from an old service and what the service gets from an old driver.
#[test]
fn a_version_1_peer_is_refused_with_unsupported_version() {
    assert_eq!(VERSION_MAJOR, 2, "this test is about the 1 -> 2 change");
    for name in [
        "hello",
        "batch-1",
        "verdict-request-rename",
        "hello-reply",
        "set-config-2",
    ] {
        let mut b = sample(name);
        set_u16(&mut b, 4, 1);
        assert_eq!(
            Message::parse(&b).map(drop),
            Err(Error::UnsupportedVersion),
            "{name}"
        );
        assert_eq!(
            Header::peek_version(&b),
            Ok(Version { major: 1, minor: 0 }),
            "{name}: the old peer's version stays readable for the error message"
        );
    }
    // A batch exactly as a version-1 driver lays it out (96-byte record, paths at 80): refused
    // as a version, not misread as a record whose strings are in the wrong place.
    let mut v1 = sample("batch-1");
    set_u16(&mut v1, 4, 1);
    let record = BATCH_HEADER_LEN;
    v1.drain(record + 80..record + 88);
    let shrunk = get_u32(&v1, record) - 8;
    set_u32(&mut v1, record, shrunk);
    let total = v1.len() as u32;
    set_u32(&mut v1, 12, total);
    set_u32(&mut v1, record + 80, 96);
    assert_refused(MessageKind::EventBatch, &v1, Error::UnsupportedVersion);
}

#[test]
fn other_minor_versions_are_accepted() {
    for (_, kind, mut b) in common::sample_messages() {
        set_u16(&mut b, 6, 0xBEEF);
        assert_eq!(decode_as(kind, &b), Ok(()));
        assert_eq!(
            Header::parse(&b).unwrap().version,
            Version {
                major: VERSION_MAJOR,
                minor: 0xBEEF
            }
        );
    }
}

#[test]
fn unknown_kinds() {
    let defined: Vec<u16> = MessageKind::ALL.iter().map(|k| k.to_u16()).collect();
    let b = sample("ping");
    for value in (0..=0x40u16).chain([0x0101, 0x1001, 0x8016, u16::MAX]) {
        if defined.contains(&value) {
            continue;
        }
        let mut b = b.clone();
        set_u16(&mut b, 8, value);
        assert_eq!(
            Header::parse(&b),
            Err(Error::UnknownKind),
            "kind {value:#x}"
        );
        assert_refused(MessageKind::Ping, &b, Error::UnknownKind);
    }
}

#[test]
fn every_typed_decoder_refuses_every_other_kind() {
    for (name, kind, b) in common::sample_messages() {
        for other in MessageKind::ALL {
            if other != kind {
                assert_eq!(
                    decode_as(other, &b),
                    Err(Error::WrongKind),
                    "{name} as {other:?}"
                );
            }
        }
    }
}

#[test]
fn header_reserved_field() {
    for (_, kind, mut b) in common::sample_messages() {
        set_u16(&mut b, 10, 1);
        assert_refused(kind, &b, Error::NonZeroReserved);
    }
}

#[test]
fn sequence_only_where_the_kind_carries_one() {
    for (name, kind, mut b) in common::sample_messages() {
        if kind == MessageKind::EventBatch {
            continue;
        }
        b[16] = 1;
        assert_refused(kind, &b, Error::NonZeroReserved);
        assert!(!kind.carries_sequence(), "{name}");
    }
}

#[test]
fn total_length_past_the_end_at_its_maximum_and_below_the_header() {
    for (name, kind, b) in common::sample_messages() {
        let len = b.len();
        let cases = [
            (len + 2, Error::Truncated),
            (len + 8, Error::Truncated),
            (MAX_MESSAGE_SIZE, Error::Truncated),
            (MAX_MESSAGE_SIZE + 1, Error::MessageTooLarge),
            (u32::MAX as usize, Error::MessageTooLarge),
            (0, Error::BadLength),
            (HEADER_LEN - 1, Error::BadLength),
        ];
        for (total, expected) in cases {
            let mut b = b.clone();
            set_u32(&mut b, 12, total as u32);
            assert_eq!(
                Message::parse(&b).map(drop),
                Err(expected),
                "{name} total {total}"
            );
            assert_eq!(decode_as(kind, &b), Err(expected), "{name} total {total}");
        }
    }
}

#[test]
fn fixed_size_messages_of_any_other_length_are_bad_length() {
    for (name, kind, b) in common::sample_messages() {
        if matches!(
            kind,
            MessageKind::EventBatch
                | MessageKind::VerdictRequest
                | MessageKind::SetConfig
                | MessageKind::ProcessRecord
        ) {
            continue;
        }
        for total in [
            HEADER_LEN,
            b.len() - 8,
            b.len() - 1,
            b.len() + 1,
            b.len() + 8,
        ] {
            if total == b.len()
                || (kind == MessageKind::GetStats && total == HEADER_LEN)
                || total < HEADER_LEN
            {
                continue;
            }
            let mut longer = b.clone();
            longer.resize(b.len() + 16, 0);
            set_u32(&mut longer, 12, total as u32);
            assert_refused(kind, &longer, Error::BadLength);
            let _ = name;
        }
    }
}

#[test]
fn variable_messages_shorter_than_their_fixed_part_are_bad_length() {
    for (name, kind, fixed) in [
        ("batch-1", MessageKind::EventBatch, BATCH_HEADER_LEN),
        (
            "verdict-request-rename",
            MessageKind::VerdictRequest,
            vigil_protocol::VERDICT_REQUEST_FIXED_LEN,
        ),
        (
            "set-config-2",
            MessageKind::SetConfig,
            vigil_protocol::SET_CONFIG_FIXED_LEN,
        ),
        (
            "process-start",
            MessageKind::ProcessRecord,
            PROCESS_RECORD_FIXED_LEN,
        ),
    ] {
        for total in HEADER_LEN..fixed {
            let mut b = sample(name);
            set_u32(&mut b, 12, total as u32);
            assert_refused(kind, &b, Error::BadLength);
        }
    }
}

// ---- event records ------------------------------------------------------------------------------

const R_LEN: usize = 0;
const R_KIND: usize = 4;
const R_RESERVED: usize = 6;
const R_PATH_OFF: usize = 88;
const R_PATH_LEN: usize = 92;
const R_TARGET_OFF: usize = 96;
const R_TARGET_LEN: usize = 100;

#[track_caller]
fn assert_record_refused(b: &[u8], expected: Error) {
    assert_eq!(EventRecord::new_checked(b).map(drop), Err(expected));
}

#[test]
fn record_length_field() {
    let b = record_sample("record-rename");
    let len = b.len();
    let mut cases = vec![
        (0, Error::BadLength),
        (8, Error::BadLength),
        (EVENT_FIXED_LEN - 8, Error::BadLength),
        (len + 8, Error::LengthPastEnd),
        (0xFFFF_FFF8, Error::LengthPastEnd),
        (u32::MAX as usize, Error::Misaligned),
        // Shorter than its strings: they now run past the record's end.
        (len - 8, Error::LengthPastEnd),
    ];
    for odd in 1..8 {
        cases.push((len - 8 + odd, Error::Misaligned));
    }
    for (value, expected) in cases {
        let mut b = b.clone();
        set_u32(&mut b, R_LEN, value as u32);
        assert_record_refused(&b, expected);
    }
    // A record longer than its strings and padding, even if the buffer holds the bytes.
    let mut longer = b.clone();
    longer.extend_from_slice(&[0; 8]);
    set_u32(&mut longer, R_LEN, (len + 8) as u32);
    assert_record_refused(&longer, Error::BadLength);
}

#[test]
fn record_kind_and_reserved() {
    let b = record_sample("record-open");
    for kind in [0u16, 7, 8, 0x100, u16::MAX] {
        let mut b = b.clone();
        set_u16(&mut b, R_KIND, kind);
        assert_record_refused(&b, Error::UnknownEventKind);
    }
    for v in [1u16, 0x8000] {
        let mut b = b.clone();
        set_u16(&mut b, R_RESERVED, v);
        assert_record_refused(&b, Error::NonZeroReserved);
    }
}

/// Breaks the string (offset, length) pair at `off_at`/`len_at` of a container `b` in every way,
/// with `check` the container's decoder.
fn break_string_fields(
    b: &[u8],
    off_at: usize,
    len_at: usize,
    check: impl Fn(&[u8]) -> Result<(), Error>,
) {
    let container = b.len();
    let off = get_u32(b, off_at) as usize;
    let len = get_u32(b, len_at) as usize;
    let mut cases: Vec<(usize, u32, Error)> = vec![
        // Offset past the end, and at its maximum.
        (off_at, (container + 2) as u32, Error::LengthPastEnd),
        (off_at, u32::MAX, Error::LengthPastEnd),
        // Length past the end, and at its maximum.
        (len_at, (container - off + 2) as u32, Error::LengthPastEnd),
        (len_at, u32::MAX, Error::LengthPastEnd),
        (len_at, u32::MAX - 1, Error::LengthPastEnd),
        // Strings not where the layout puts them: overlapping the fixed part, or with a gap.
        (off_at, 0, Error::BadOffset),
        (off_at, (off - 2) as u32, Error::BadOffset),
        (off_at, (off + 2) as u32, Error::BadOffset),
    ];
    // Odd lengths inside the container.
    if len > 0 {
        cases.push((len_at, (len - 1) as u32, Error::OddUtf16Length));
    }
    if container > off {
        cases.push((len_at, 1, Error::OddUtf16Length));
    }
    assert!(
        cases.len() > 8,
        "the sample string must allow an odd-length case"
    );
    for (at, value, expected) in cases {
        let mut b = b.to_vec();
        set_u32(&mut b, at, value);
        // Moving the string start only by 2 must not make the length run past the end.
        if at == off_at && value as usize == off + 2 && off + 2 + len > container {
            set_u32(&mut b, len_at, 0);
        }
        assert_eq!(check(&b), Err(expected), "field at {at} set to {value:#x}");
    }
}

#[test]
fn record_path_and_target_fields() {
    let b = record_sample("record-rename");
    let check = |b: &[u8]| EventRecord::new_checked(b).map(drop);
    break_string_fields(&b, R_PATH_OFF, R_PATH_LEN, check);
    break_string_fields(&b, R_TARGET_OFF, R_TARGET_LEN, check);
}

#[test]
fn record_padding_must_be_zero() {
    let b = record_sample("record-padding");
    let used =
        EVENT_FIXED_LEN + get_u32(&b, R_PATH_LEN) as usize + get_u32(&b, R_TARGET_LEN) as usize;
    assert!(used < b.len(), "the sample has padding");
    for at in used..b.len() {
        let mut b = b.clone();
        b[at] = 0x80;
        assert_record_refused(&b, Error::NonZeroReserved);
    }
}

#[test]
fn record_string_lengths_that_do_not_fill_the_record_are_bad_length() {
    // Shortening the target leaves more than 7 bytes unaccounted for.
    let mut b = record_sample("record-rename");
    let t = get_u32(&b, R_TARGET_LEN);
    set_u32(&mut b, R_TARGET_LEN, t - 16);
    assert_record_refused(&b, Error::BadLength);
}

#[test]
fn paths_over_the_maximum_are_refused() {
    // A hand-made record whose path is one unit over MAX_PATH_BYTES (no encoder writes one).
    let path_len = MAX_PATH_BYTES + 2;
    let len = (EVENT_FIXED_LEN + path_len + 7) & !7;
    let mut b = record_sample("record-empty");
    b.resize(len, 0);
    b[EVENT_FIXED_LEN..EVENT_FIXED_LEN + path_len].fill(0x41);
    set_u32(&mut b, R_LEN, len as u32);
    set_u32(&mut b, R_PATH_LEN, path_len as u32);
    set_u32(&mut b, R_TARGET_OFF, (EVENT_FIXED_LEN + path_len) as u32);
    assert_record_refused(&b, Error::PathTooLong);
    // One unit less is fine.
    let path_len = MAX_PATH_BYTES;
    set_u32(&mut b, R_PATH_LEN, path_len as u32);
    set_u32(&mut b, R_TARGET_OFF, (EVENT_FIXED_LEN + path_len) as u32);
    b[EVENT_FIXED_LEN + path_len..].fill(0);
    set_u32(
        &mut b,
        R_LEN,
        ((EVENT_FIXED_LEN + path_len + 7) & !7) as u32,
    );
    b.truncate((EVENT_FIXED_LEN + path_len + 7) & !7);
    assert!(EventRecord::new_checked(&b).is_ok());
}

// ---- event batches ------------------------------------------------------------------------------

const B_COUNT: usize = 24;
const B_RESERVED: usize = 28;

#[test]
fn batch_count_field() {
    let b = sample("batch-3");
    let records_len = b.len() - BATCH_HEADER_LEN;
    for (count, expected) in [
        (0u32, Error::EmptyBatch),
        (1, Error::CountMismatch),
        (2, Error::CountMismatch),
        (4, Error::CountMismatch),
        ((records_len / EVENT_FIXED_LEN) as u32, Error::CountMismatch),
        (
            (records_len / EVENT_FIXED_LEN + 1) as u32,
            Error::CountTooLarge,
        ),
        (MAX_BATCH_RECORDS as u32 + 1, Error::CountTooLarge),
        (u32::MAX, Error::CountTooLarge),
    ] {
        let mut b = b.clone();
        set_u32(&mut b, B_COUNT, count);
        assert_refused(MessageKind::EventBatch, &b, expected);
    }
}

#[test]
fn batch_reserved_sequence_and_alignment() {
    let b = sample("batch-3");
    let mut r = b.clone();
    set_u32(&mut r, B_RESERVED, 1);
    assert_refused(MessageKind::EventBatch, &r, Error::NonZeroReserved);

    for seq in [0u64, 11, 12, u64::MAX] {
        let mut s = b.clone();
        s[16..24].copy_from_slice(&seq.to_le_bytes());
        assert_refused(MessageKind::EventBatch, &s, Error::SequenceMismatch);
    }

    for extra in 1..8 {
        let mut m = b.clone();
        m.resize(b.len() + extra, 0);
        set_u32(&mut m, 12, (b.len() + extra) as u32);
        assert_refused(MessageKind::EventBatch, &m, Error::Misaligned);
    }
    // Eight spare bytes after the last record: the count says there is no record there.
    let mut m = b.clone();
    m.resize(b.len() + 8, 0);
    set_u32(&mut m, 12, (b.len() + 8) as u32);
    assert_refused(MessageKind::EventBatch, &m, Error::CountMismatch);
    // A batch with room for no record at all.
    let mut e = b[..BATCH_HEADER_LEN].to_vec();
    set_u32(&mut e, 12, BATCH_HEADER_LEN as u32);
    assert_refused(MessageKind::EventBatch, &e, Error::CountTooLarge);
    set_u32(&mut e, B_COUNT, 0);
    assert_refused(MessageKind::EventBatch, &e, Error::EmptyBatch);
}

/// Offset of the `i`-th record of a batch.
fn record_at(b: &[u8], i: usize) -> usize {
    let mut at = BATCH_HEADER_LEN;
    for _ in 0..i {
        at += get_u32(b, at) as usize;
    }
    at
}

#[test]
fn batch_record_errors_are_reported_as_the_records() {
    let b = sample("batch-3");
    for i in 0..3 {
        let at = record_at(&b, i);
        let rec_len = get_u32(&b, at) as usize;
        let cases = [
            (R_LEN, (b.len() - at + 8) as u32, Error::LengthPastEnd),
            (R_LEN, 0xFFFF_FFF8, Error::LengthPastEnd),
            (R_LEN, u32::MAX, Error::Misaligned),
            (R_LEN, (rec_len + 4) as u32, Error::Misaligned),
            (R_LEN, 0, Error::BadLength),
            (
                R_KIND,
                u32::from(u16::MAX) | (get_u32(&b, at + R_KIND) & 0xFFFF_0000),
                Error::UnknownEventKind,
            ),
            (R_PATH_LEN, u32::MAX, Error::LengthPastEnd),
            (R_PATH_OFF, u32::MAX, Error::LengthPastEnd),
            (R_TARGET_LEN, (b.len() - at) as u32, Error::LengthPastEnd),
            (
                R_PATH_LEN,
                get_u32(&b, at + R_PATH_LEN) + 1,
                Error::OddUtf16Length,
            ),
        ];
        for (field, value, expected) in cases {
            let mut m = b.clone();
            set_u32(&mut m, at + field, value);
            assert_refused(MessageKind::EventBatch, &m, expected);
        }
        // A record made shorter by 8 leaves 8 bytes that do not make a record.
        let mut m = b.clone();
        set_u32(&mut m, at + R_LEN, (rec_len - 8) as u32);
        let got = EventBatch::new_checked(&m).map(drop);
        assert_eq!(got, Err(Error::LengthPastEnd), "record {i} shortened");
    }
}

#[test]
fn batch_encoder_refusals() {
    let mut out = [0xAAu8; BATCH_HEADER_LEN];
    assert_eq!(
        EventBatch::emit_header(&mut out, 1, 0, EVENT_FIXED_LEN),
        Err(Error::EmptyBatch)
    );
    assert_eq!(
        EventBatch::emit_header(&mut out, 1, 1, 100),
        Err(Error::Misaligned)
    );
    assert_eq!(
        EventBatch::emit_header(&mut out, 1, 1, MAX_MESSAGE_SIZE),
        Err(Error::MessageTooLarge)
    );
    assert_eq!(
        EventBatch::emit_header(&mut out, 1, 2, EVENT_FIXED_LEN),
        Err(Error::CountTooLarge)
    );
    assert_eq!(
        EventBatch::emit_header(&mut out[..31], 1, 1, EVENT_FIXED_LEN),
        Err(Error::BufferTooSmall)
    );
    assert!(
        out.iter().all(|&b| b == 0xAA),
        "a refused encoder writes nothing"
    );
    assert_eq!(
        EventBatch::emit_header(&mut out, 1, 1, EVENT_FIXED_LEN),
        Ok(BATCH_HEADER_LEN)
    );

    let mut small = [0u8; BATCH_HEADER_LEN + EVENT_FIXED_LEN - 1];
    assert_eq!(
        BatchWriter::new(&mut small).map(drop),
        Err(Error::BufferTooSmall)
    );
    let mut buf = vec![0u8; 4096];
    let writer = BatchWriter::new(&mut buf).unwrap();
    assert!(writer.is_empty());
    assert_eq!(writer.finish(), Err(Error::EmptyBatch));

    // A full writer refuses the next record and keeps the batch intact.
    let path = common::wide("p");
    let repr = common::event(EventKind::Open, 1, &path, &[]);
    let mut buf = vec![0u8; BATCH_HEADER_LEN + 2 * repr.encoded_len() + 8];
    let mut writer = BatchWriter::new(&mut buf).unwrap();
    writer.push(&repr).unwrap();
    writer.push(&repr).unwrap();
    let len = writer.len();
    assert_eq!(writer.push(&repr), Err(Error::BufferTooSmall));
    let record_bytes = common::encode_event(&repr);
    let record = EventRecord::new_checked(&record_bytes).unwrap();
    assert_eq!(writer.push_record(record), Err(Error::BufferTooSmall));
    assert_eq!((writer.len(), writer.record_count()), (len, 2));
    let n = writer.finish().unwrap();
    assert_eq!(
        EventBatch::new_checked(&buf[..n]).unwrap().record_count(),
        2
    );
}

// ---- verdicts -------------------------------------------------------------------------------------

#[test]
fn verdict_request_fields() {
    let b = sample("verdict-request-rename");
    for op in [0u16, 5, u16::MAX] {
        let mut m = b.clone();
        set_u16(&mut m, 32, op);
        assert_refused(MessageKind::VerdictRequest, &m, Error::UnknownOperation);
    }
    let mut m = b.clone();
    set_u16(&mut m, 34, 1);
    assert_refused(MessageKind::VerdictRequest, &m, Error::NonZeroReserved);

    let check = |m: &[u8]| VerdictRequest::new_checked(m).map(drop);
    break_string_fields(&b, 48, 52, check);
    break_string_fields(&b, 56, 60, check);

    let b = sample("verdict-request-create");
    let used = 64 + get_u32(&b, 52) as usize;
    for at in used..b.len() {
        let mut m = b.clone();
        m[at] = 1;
        assert_refused(MessageKind::VerdictRequest, &m, Error::NonZeroReserved);
    }
}

// ---- process records ----------------------------------------------------------------------------

const P_EVENT: usize = 56;
const P_RESERVED: usize = 58;
const P_IMAGE_OFF: usize = 72;
const P_IMAGE_LEN: usize = 76;
const P_SID_OFF: usize = 80;
const P_SID_LEN: usize = 84;

#[test]
fn process_record_event_and_reserved() {
    let b = sample("process-start");
    for event in [0u16, 4, 0x100, u16::MAX] {
        let mut m = b.clone();
        set_u16(&mut m, P_EVENT, event);
        assert_refused(MessageKind::ProcessRecord, &m, Error::UnknownEventKind);
    }
    let mut m = b.clone();
    set_u16(&mut m, P_RESERVED, 1);
    assert_refused(MessageKind::ProcessRecord, &m, Error::NonZeroReserved);
}

#[test]
fn process_record_image_and_sid_fields() {
    let b = sample("process-start");
    let check = |m: &[u8]| ProcessRecord::new_checked(m).map(drop);
    break_string_fields(&b, P_IMAGE_OFF, P_IMAGE_LEN, check);
    break_string_fields(&b, P_SID_OFF, P_SID_LEN, check);
    // Padding after the SID must be zero.
    let used = PROCESS_RECORD_FIXED_LEN
        + get_u32(&b, P_IMAGE_LEN) as usize
        + get_u32(&b, P_SID_LEN) as usize;
    assert!(used < b.len(), "the sample has padding");
    for at in used..b.len() {
        let mut m = b.clone();
        m[at] = 1;
        assert_refused(MessageKind::ProcessRecord, &m, Error::NonZeroReserved);
    }
    // An image path one unit over the maximum, hand-made (no encoder writes one).
    let mut m = sample("process-seen-no-sid");
    let image = MAX_PATH_BYTES + 2;
    m.resize(PROCESS_RECORD_FIXED_LEN + image, 0x41);
    let total = m.len() as u32;
    set_u32(&mut m, 12, total);
    set_u32(&mut m, P_IMAGE_LEN, image as u32);
    set_u32(&mut m, P_SID_OFF, (PROCESS_RECORD_FIXED_LEN + image) as u32);
    assert_refused(MessageKind::ProcessRecord, &m, Error::PathTooLong);
}

#[test]
fn process_record_sids_that_are_not_sids_are_refused() {
    let b = sample("process-start");
    let sid_at = get_u32(&b, P_SID_OFF) as usize;
    let sid_len = get_u32(&b, P_SID_LEN) as usize;
    assert_eq!(sid_len, 28, "the sample's SID has 5 sub-authorities");
    // Revision other than 1.
    for revision in [0u8, 2, 0xFF] {
        let mut m = b.clone();
        m[sid_at] = revision;
        assert_refused(MessageKind::ProcessRecord, &m, Error::BadSid);
    }
    // Sub-authority count disagreeing with the length, or over 15.
    for count in [0u8, 4, 6, 15, 16, 0xFF] {
        let mut m = b.clone();
        m[sid_at + 1] = count;
        assert_refused(MessageKind::ProcessRecord, &m, Error::BadSid);
    }
    // A SID shorter than its 8-byte fixed part (even, inside the message, so only the SID check
    // can refuse it): keep 2 or 6 bytes of it, the rest becomes padding.
    for keep in [2usize, 6] {
        let mut m = b.clone();
        set_u32(&mut m, P_SID_LEN, keep as u32);
        let end = (sid_at + keep + 7) & !7;
        m[sid_at + keep..].fill(0);
        m.truncate(end);
        set_u32(&mut m, 12, end as u32);
        assert_refused(MessageKind::ProcessRecord, &m, Error::BadSid);
    }
    // Sid::new_checked on its own.
    assert_eq!(Sid::new_checked(&[]).map(drop), Err(Error::BadSid));
    assert_eq!(
        Sid::new_checked(&[1, 0, 0, 0, 0, 0, 0]).map(drop),
        Err(Error::BadSid)
    );
    assert_eq!(
        Sid::new_checked(&common::SYSTEM_SID).unwrap().to_string(),
        "S-1-5-18"
    );
    assert_eq!(
        Sid::new_checked(&common::USER_SID).unwrap().to_string(),
        "S-1-5-21-1004336348-1177238915-682003330-1001"
    );
    let big = [1u8, 0, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC];
    assert_eq!(
        Sid::new_checked(&big).unwrap().to_string(),
        "S-1-0x123456789ABC"
    );
}

#[test]
fn process_record_truncated_strings_are_refused() {
    // The message cut inside the image or the SID, with the header's length matching the cut:
    // the string now runs past the end.
    let b = sample("process-start");
    let sid_at = get_u32(&b, P_SID_OFF) as usize;
    for cut in [PROCESS_RECORD_FIXED_LEN + 8, sid_at - 8, sid_at + 8] {
        let mut m = b[..cut].to_vec();
        set_u32(&mut m, 12, cut as u32);
        assert_refused(MessageKind::ProcessRecord, &m, Error::LengthPastEnd);
    }
}

#[test]
fn verdict_reply_values() {
    let b = sample("verdict-reply");
    for v in [0u32, 3, 0x100, u32::MAX] {
        let mut m = b.clone();
        set_u32(&mut m, 32, v);
        assert_refused(MessageKind::VerdictReply, &m, Error::UnknownVerdict);
    }
    assert_eq!(Verdict::from_u32(1), Some(Verdict::Allow));
    assert_eq!(Verdict::from_u32(2), Some(Verdict::Deny));
}

// ---- commands --------------------------------------------------------------------------------------

#[test]
fn reply_reserved_fields() {
    let mut b = sample("hello-reply");
    set_u32(&mut b, 36, 1);
    assert_refused(MessageKind::HelloReply, &b, Error::NonZeroReserved);
    let mut b = sample("set-config-reply");
    set_u32(&mut b, 28, 0x8000_0000);
    assert_refused(MessageKind::SetConfigReply, &b, Error::NonZeroReserved);
}

#[test]
fn reply_kinds() {
    assert_eq!(
        MessageKind::Hello.reply_kind(),
        Some(MessageKind::HelloReply)
    );
    assert_eq!(
        MessageKind::GetStats.reply_kind(),
        Some(MessageKind::StatsReply)
    );
    assert_eq!(
        MessageKind::SetConfig.reply_kind(),
        Some(MessageKind::SetConfigReply)
    );
    assert_eq!(MessageKind::Ping.reply_kind(), Some(MessageKind::Pong));
    assert_eq!(
        MessageKind::VerdictRequest.reply_kind(),
        Some(MessageKind::VerdictReply)
    );
    assert_eq!(MessageKind::EventBatch.reply_kind(), None);
    for k in MessageKind::ALL {
        assert_eq!(MessageKind::from_u16(k.to_u16()), Some(k));
    }
}

const C_VERDICT: usize = 36;
const C_FLAGS: usize = 40;
const C_COUNT: usize = 44;
const C_TABLE: usize = 48;

#[test]
fn set_config_fields() {
    let b = sample("set-config-2");
    for v in [0u32, 3, u32::MAX] {
        let mut m = b.clone();
        set_u32(&mut m, C_VERDICT, v);
        assert_refused(MessageKind::SetConfig, &m, Error::UnknownVerdict);
    }
    for f in [2u32, 0x8000_0000, u32::MAX] {
        let mut m = b.clone();
        set_u32(&mut m, C_FLAGS, f);
        assert_refused(MessageKind::SetConfig, &m, Error::UnknownFlags);
    }
    for (count, expected) in [
        (MAX_PROTECTED_PREFIXES as u32 + 1, Error::CountTooLarge),
        (u32::MAX, Error::CountTooLarge),
        (0, Error::BadLength),
        (1, Error::BadOffset),
    ] {
        let mut m = b.clone();
        set_u32(&mut m, C_COUNT, count);
        assert_refused(MessageKind::SetConfig, &m, expected);
    }
    // A table that runs past the end of the message.
    let mut d = sample("set-config-default");
    set_u32(&mut d, C_COUNT, 1);
    assert_refused(MessageKind::SetConfig, &d, Error::CountTooLarge);

    let check = |m: &[u8]| SetConfig::new_checked(m).map(drop);
    break_string_fields(&b, C_TABLE, C_TABLE + 4, check);
    break_string_fields(&b, C_TABLE + 8, C_TABLE + 12, check);

    let used = get_u32(&b, C_TABLE + 8) as usize + get_u32(&b, C_TABLE + 12) as usize;
    assert!(used < b.len(), "the sample has padding");
    for at in used..b.len() {
        let mut m = b.clone();
        m[at] = 1;
        assert_refused(MessageKind::SetConfig, &m, Error::NonZeroReserved);
    }
    let mut m = b.clone();
    m.extend_from_slice(&[0; 8]);
    let n = m.len() as u32;
    set_u32(&mut m, 12, n);
    assert_refused(MessageKind::SetConfig, &m, Error::BadLength);
}

#[test]
fn set_config_prefix_over_the_maximum() {
    let long = vec![0x41u16; MAX_PREFIX_UNITS + 1];
    let prefixes = [Utf16Str::from_units(&long)];
    let config = Config {
        protected_prefixes: PrefixList::from_slice(&prefixes).unwrap(),
        ..Config::DEFAULT
    };
    let mut out = vec![0xAAu8; MAX_MESSAGE_SIZE];
    assert_eq!(config.emit(&mut out), Err(Error::PathTooLong));
    assert!(out.iter().all(|&b| b == 0xAA));
    assert_eq!(config.validate(), Err(Error::PathTooLong));
    // Hand-made: a message with the maximum prefix, then lengthened by one unit.
    let max = vec![0x41u16; MAX_PREFIX_UNITS];
    let prefixes = [Utf16Str::from_units(&max)];
    let config = Config {
        protected_prefixes: PrefixList::from_slice(&prefixes).unwrap(),
        ..Config::DEFAULT
    };
    let mut b = common::encode(|o| config.emit(o));
    assert!(SetConfig::new_checked(&b).is_ok());
    b.extend_from_slice(&[0x41, 0, 0, 0, 0, 0, 0, 0]);
    let n = b.len() as u32;
    set_u32(&mut b, 12, n);
    set_u32(&mut b, C_TABLE + 4, (MAX_PREFIX_UNITS * 2 + 2) as u32);
    assert_refused(MessageKind::SetConfig, &b, Error::PathTooLong);
}

#[test]
fn prefix_list_is_bounded() {
    let p = common::wide("x");
    let many = vec![Utf16Str::from_units(&p); MAX_PROTECTED_PREFIXES + 1];
    assert_eq!(
        PrefixList::from_slice(&many).map(drop),
        Err(Error::CountTooLarge)
    );
    let mut list = PrefixList::from_slice(&many[..MAX_PROTECTED_PREFIXES]).unwrap();
    assert_eq!(list.push(many[0]), Err(Error::CountTooLarge));
    assert_eq!(list.len(), MAX_PROTECTED_PREFIXES);
}

#[test]
#[expect(clippy::too_many_lines, reason = "one table of range boundaries")]
fn config_ranges() {
    assert_eq!(Config::DEFAULT.validate(), Ok(()));
    let ok = |c: Config<'_>| c.validate();
    let d = Config::DEFAULT;
    let max_batch = MAX_BATCH_RECORDS as u32;
    for (config, expected) in [
        (
            Config { batch_size: 0, ..d },
            Err(Error::ConfigOutOfRange(ConfigField::BatchSize)),
        ),
        (Config { batch_size: 1, ..d }, Ok(())),
        (
            Config {
                batch_size: max_batch,
                ..d
            },
            Ok(()),
        ),
        (
            Config {
                batch_size: max_batch + 1,
                ..d
            },
            Err(Error::ConfigOutOfRange(ConfigField::BatchSize)),
        ),
        (
            Config {
                verdict_timeout_ms: 9,
                ..d
            },
            Err(Error::ConfigOutOfRange(ConfigField::VerdictTimeout)),
        ),
        (
            Config {
                verdict_timeout_ms: 10,
                ..d
            },
            Ok(()),
        ),
        (
            Config {
                verdict_timeout_ms: 10_000,
                ..d
            },
            Ok(()),
        ),
        (
            Config {
                verdict_timeout_ms: 10_001,
                ..d
            },
            Err(Error::ConfigOutOfRange(ConfigField::VerdictTimeout)),
        ),
        (
            Config {
                send_timeout_ms: 9,
                ..d
            },
            Err(Error::ConfigOutOfRange(ConfigField::SendTimeout)),
        ),
        (
            Config {
                send_timeout_ms: 10,
                ..d
            },
            Ok(()),
        ),
        (
            Config {
                send_timeout_ms: 60_000,
                ..d
            },
            Ok(()),
        ),
        (
            Config {
                send_timeout_ms: 60_001,
                ..d
            },
            Err(Error::ConfigOutOfRange(ConfigField::SendTimeout)),
        ),
        (
            Config {
                send_timeout_ms: u32::MAX,
                ..d
            },
            Err(Error::ConfigOutOfRange(ConfigField::SendTimeout)),
        ),
    ] {
        assert_eq!(ok(config), expected, "{config:?}");
    }
    let empty = [Utf16Str::EMPTY];
    let c = Config {
        protected_prefixes: PrefixList::from_slice(&empty).unwrap(),
        ..d
    };
    assert_eq!(
        c.validate(),
        Err(Error::ConfigOutOfRange(ConfigField::ProtectedPrefix))
    );
    // Out-of-range values still encode and decode (so the driver's refusal can be tested).
    let bad = Config {
        batch_size: 0,
        verdict_timeout_ms: u32::MAX,
        ..d
    };
    let b = common::encode(|o| bad.emit(o));
    assert_eq!(SetConfig::new_checked(&b).unwrap().config(), bad);
}

// ---- encoders and the rest ---------------------------------------------------------------------

#[test]
fn every_encoder_refuses_a_short_buffer_and_writes_nothing() {
    for (name, _, bytes) in common::sample_messages() {
        let message = Message::parse(&bytes).unwrap();
        for len in 0..bytes.len() {
            let mut out = vec![0xAAu8; len];
            assert_eq!(
                message.emit(&mut out),
                Err(Error::BufferTooSmall),
                "{name} into {len}"
            );
            assert!(
                out.iter().all(|&b| b == 0xAA),
                "{name}: refused encoder wrote"
            );
        }
    }
    for (name, bytes) in common::sample_records() {
        let repr = EventRecord::new_checked(&bytes).unwrap().repr();
        for len in 0..bytes.len() {
            let mut out = vec![0xAAu8; len];
            assert_eq!(
                EventRecord::emit(&repr, &mut out),
                Err(Error::BufferTooSmall),
                "{name}"
            );
            assert!(
                out.iter().all(|&b| b == 0xAA),
                "{name}: refused encoder wrote"
            );
        }
    }
    let mut short = [0u8; EVENT_FIXED_LEN - 1];
    assert_eq!(
        EventRecord::set_sequence(&mut short, 1),
        Err(Error::BufferTooSmall)
    );
}

#[test]
fn odd_utf16_byte_strings_are_refused() {
    assert_eq!(
        Utf16Str::from_le_bytes(&[0x41]).map(|_| ()),
        Err(Error::OddUtf16Length)
    );
    assert_eq!(
        Utf16Str::from_le_bytes(&[0x41, 0, 0x42]).map(|_| ()),
        Err(Error::OddUtf16Length)
    );
    assert_eq!(
        Utf16Str::from_le_bytes(&[0x41, 0]).unwrap().to_string(),
        "A"
    );
}

#[test]
fn every_error_has_its_own_message() {
    let all = [
        Error::Truncated,
        Error::BadMagic,
        Error::UnsupportedVersion,
        Error::UnknownKind,
        Error::WrongKind,
        Error::MessageTooLarge,
        Error::BadLength,
        Error::LengthPastEnd,
        Error::BadOffset,
        Error::OddUtf16Length,
        Error::PathTooLong,
        Error::Misaligned,
        Error::NonZeroReserved,
        Error::UnknownEventKind,
        Error::UnknownVerdict,
        Error::UnknownOperation,
        Error::UnknownFlags,
        Error::EmptyBatch,
        Error::CountTooLarge,
        Error::CountMismatch,
        Error::SequenceMismatch,
        Error::BadSid,
        Error::BufferTooSmall,
        Error::ConfigOutOfRange(ConfigField::BatchSize),
        Error::ConfigOutOfRange(ConfigField::VerdictTimeout),
        Error::ConfigOutOfRange(ConfigField::SendTimeout),
        Error::ConfigOutOfRange(ConfigField::ProtectedPrefix),
    ];
    let texts: std::collections::HashSet<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), all.len(), "two errors share a message");
    assert!(texts.iter().all(|t| t.len() > 10));
}

#[test]
fn constants() {
    let expected: Vec<u16> = vigil_protocol::PORT_NAME.encode_utf16().collect();
    assert_eq!(
        vigil_protocol::PORT_NAME_UTF16.as_slice(),
        expected.as_slice()
    );
    assert_eq!(vigil_protocol::PORT_NAME, "\\VigilPort");
    assert_eq!(&vigil_protocol::MAGIC.to_le_bytes(), b"VGIL");
    assert_eq!(&sample("ping")[..4], b"VGIL");
    let d = Config::DEFAULT;
    assert!(vigil_protocol::BATCH_SIZE_RANGE.contains(&d.batch_size));
    assert!(vigil_protocol::VERDICT_TIMEOUT_MS_RANGE.contains(&d.verdict_timeout_ms));
    assert!(vigil_protocol::SEND_TIMEOUT_MS_RANGE.contains(&d.send_timeout_ms));
    assert_eq!(d.default_verdict, Verdict::Allow, "fail-open by default");
    assert!(!d.attach_network_volumes);
    assert_eq!(
        vigil_protocol::MAX_EVENT_LEN,
        EVENT_FIXED_LEN + 2 * MAX_PATH_BYTES
    );
}
