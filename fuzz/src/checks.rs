//! The properties every fuzz target checks, shared with the corpus replay test in
//! `crates/protocol/tests/corpus.rs` (which includes this file), so CI exercises them on stable.
//!
//! For any input: decoding returns `Ok` or `Err` and never panics; every accessor of a decoded
//! view answers; and whatever decodes re-encodes to the same bytes (except the minor version,
//! which every encoder sets to `VERSION_MINOR`), with every byte written by the encoder.

use vigil_protocol::{
    EVENT_FIXED_LEN, EventBatch, EventRecord, GetStats, Header, Hello, HelloReply,
    MAX_MESSAGE_SIZE, Message, PROCESS_RECORD_FIXED_LEN, Ping, Pong, ProcessRecord, SetConfig,
    SetConfigReply, StatsReply, VERSION_MINOR, VerdictReply, VerdictRequest,
};

/// Byte that an encoder must overwrite: an output buffer is filled with it first.
const POISON: u8 = 0xA5;

/// Offset of the minor version in the header.
const MINOR_AT: usize = 6;

fn poisoned() -> Vec<u8> {
    vec![POISON; MAX_MESSAGE_SIZE + 64]
}

/// `encoded` (of length `n`) must equal `input[..n]`, the minor version aside.
fn assert_reencoded(input: &[u8], encoded: &[u8], n: usize, is_message: bool) {
    assert!(n <= input.len(), "re-encoded longer than the input");
    let (a, b) = (&input[..n], &encoded[..n]);
    if is_message {
        assert_eq!(&b[MINOR_AT..MINOR_AT + 2], &VERSION_MINOR.to_le_bytes());
        assert_eq!(a[..MINOR_AT], b[..MINOR_AT], "re-encoded header differs");
        assert_eq!(
            a[MINOR_AT + 2..],
            b[MINOR_AT + 2..],
            "re-encoded bytes differ"
        );
    } else {
        assert_eq!(a, b, "re-encoded bytes differ");
    }
    assert!(
        encoded[n..].iter().all(|&x| x == POISON),
        "encoder wrote past its length"
    );
}

fn touch_record(record: &EventRecord<'_>) {
    let r = record.repr();
    assert!(r.path.len_bytes() + r.target.len_bytes() + EVENT_FIXED_LEN <= record.record_len());
    assert_eq!(record.record_len() % 8, 0);
    assert_eq!(r.encoded_len(), record.record_len());
    let _ = r.path.chars().count() + r.target.chars().count();
}

/// Any message: [`Message::parse`], then [`Message::emit`].
pub fn check_message(data: &[u8]) {
    let _ = Header::peek_version(data);
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let header = Header::parse(data).expect("parse accepted the message, so its header");
    assert_eq!(header.kind, message.kind());
    let mut out = poisoned();
    let n = message
        .emit(&mut out)
        .expect("a decoded message re-encodes");
    assert_eq!(n, header.total_length);
    assert_reencoded(data, &out, n, true);
}

/// An event batch, record by record.
pub fn check_event_batch(data: &[u8]) {
    let Ok(batch) = EventBatch::new_checked(data) else {
        return;
    };
    let mut out = poisoned();
    let mut writer = vigil_protocol::BatchWriter::new(&mut out).expect("room for a batch");
    let mut seen = 0;
    for record in batch.records() {
        touch_record(&record);
        writer
            .push(&record.repr())
            .expect("a decoded record fits again");
        seen += 1;
    }
    assert_eq!(seen, batch.record_count());
    let n = writer.finish().expect("a decoded batch re-encodes");
    assert_eq!(n, batch.as_bytes().len());
    assert_reencoded(data, &out, n, true);
    // Copying checked records gives the same batch too.
    let mut copy = poisoned();
    let mut writer = vigil_protocol::BatchWriter::new(&mut copy).expect("room for a batch");
    for record in batch.records() {
        writer
            .push_record(record)
            .expect("a decoded record fits again");
    }
    let m = writer.finish().expect("a decoded batch re-encodes");
    assert_eq!(&out[..n], &copy[..m]);
}

/// One event record, on its own.
pub fn check_event_record(data: &[u8]) {
    let Ok(record) = EventRecord::new_checked(data) else {
        return;
    };
    touch_record(&record);
    let mut out = poisoned();
    let n = EventRecord::emit(&record.repr(), &mut out).expect("a decoded record re-encodes");
    assert_eq!(n, record.record_len());
    assert_reencoded(data, &out, n, false);
    let mut copy = record.as_bytes().to_vec();
    EventRecord::set_sequence(&mut copy, record.sequence().wrapping_add(1)).expect("fits");
    let renumbered = EventRecord::new_checked(&copy).expect("renumbering keeps a record valid");
    assert_eq!(renumbered.sequence(), record.sequence().wrapping_add(1));
}

/// A verdict request.
pub fn check_verdict_request(data: &[u8]) {
    let Ok(request) = VerdictRequest::new_checked(data) else {
        return;
    };
    let repr = request.repr();
    let _ = repr.path.chars().count() + repr.target.chars().count();
    let mut out = poisoned();
    let n = repr.emit(&mut out).expect("a decoded request re-encodes");
    assert_eq!(n, repr.encoded_len());
    assert_reencoded(data, &out, n, true);
}

/// A process record: the image and the SID, which must format as a SID string.
pub fn check_process_record(data: &[u8]) {
    let Ok(record) = ProcessRecord::new_checked(data) else {
        return;
    };
    let repr = record.repr();
    let _ = repr.image.chars().count();
    let sid_len = repr.user_sid.map_or(0, |sid| {
        assert!(sid.to_string().starts_with("S-1-"));
        sid.as_bytes().len()
    });
    assert!(PROCESS_RECORD_FIXED_LEN + repr.image.len_bytes() + sid_len <= record.as_bytes().len());
    let mut out = poisoned();
    let n = repr
        .emit(&mut out)
        .expect("a decoded process record re-encodes");
    assert_eq!(n, repr.encoded_len());
    assert_reencoded(data, &out, n, true);
}

/// A set-configuration message.
pub fn check_set_config(data: &[u8]) {
    let Ok(view) = SetConfig::new_checked(data) else {
        return;
    };
    let config = view.config();
    let _ = config.validate();
    assert_eq!(config.protected_prefixes.len(), view.prefix_count());
    for prefix in config.protected_prefixes.as_slice() {
        let _ = prefix.chars().count();
    }
    let mut out = poisoned();
    let n = config
        .emit(&mut out)
        .expect("a decoded configuration re-encodes");
    assert_eq!(n, config.encoded_len());
    assert_reencoded(data, &out, n, true);
}

macro_rules! check_fixed {
    ($data:expr, $($ty:ty),+) => {$(
        if let Ok(message) = <$ty>::parse($data) {
            let mut out = poisoned();
            let n = message.emit(&mut out).expect("a decoded message re-encodes");
            assert_eq!(n, <$ty>::LEN);
            assert_reencoded($data, &out, n, true);
            assert_eq!(<$ty>::parse(&out[..n]), Ok(message));
        }
    )+};
}

/// Every fixed-size message kind, and the header on its own.
pub fn check_fixed(data: &[u8]) {
    let _ = Header::peek_version(data);
    let _ = Header::parse(data);
    check_fixed!(
        data,
        VerdictReply,
        Hello,
        HelloReply,
        GetStats,
        StatsReply,
        SetConfigReply,
        Ping,
        Pong
    );
}

/// The check for the fuzz target (and corpus directory) named `target`.
pub fn check_for_target(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "message" => check_message,
        "event_batch" => check_event_batch,
        "event_record" => check_event_record,
        "verdict_request" => check_verdict_request,
        "set_config" => check_set_config,
        "process_record" => check_process_record,
        "fixed" => check_fixed,
        _ => return None,
    })
}

/// The fuzz targets, by name.
pub const TARGETS: [&str; 7] = [
    "message",
    "event_batch",
    "event_record",
    "verdict_request",
    "set_config",
    "process_record",
    "fixed",
];
