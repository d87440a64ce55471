//! The sinks: JSON Lines rotation at the size bound, the flush policy (to the OS per batch,
//! `fsync` on a timer driven by the core's clock, both at close), and the human format.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fake::{FAKE_PATH, sample_event};
use vigil_protocol::{EventRecord, MAX_EVENT_LEN};
use vigil_service::{Gap, HumanSink, JsonlOptions, JsonlSink, Sink};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sink-tests")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Encodes the fake driver's sample event `seq` and hands the record to `f`.
fn with_record<R>(seq: u64, f: impl FnOnce(&EventRecord<'_>) -> R) -> R {
    let path: Vec<u16> = FAKE_PATH.encode_utf16().collect();
    let mut buf = vec![0u8; MAX_EVENT_LEN];
    let n = EventRecord::emit(&sample_event(seq, &path), &mut buf).unwrap();
    f(&EventRecord::new_checked(&buf[..n]).unwrap())
}

fn write_event(sink: &mut impl Sink, seq: u64) {
    with_record(seq, |r| sink.event(1, r, None)).unwrap();
}

fn line_len() -> u64 {
    let mut out = Vec::new();
    with_record(0, |r| {
        vigil_service::record::push_event_json(&mut out, 1, r, None);
    });
    out.len() as u64
}

fn seqs_in(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            assert!(
                l.starts_with('{') && l.ends_with('}'),
                "a whole record: {l}"
            );
            let rest = &l[l.find("\"seq\":").unwrap() + 6..];
            rest[..rest.find(',').unwrap()].parse().unwrap()
        })
        .collect()
}

#[test]
fn rotation_keeps_each_file_under_the_bound_and_the_newest_files() {
    let dir = fresh_dir("rotation");
    let line = line_len();
    // Room for exactly four records per file (every sample record of seq < 10 has one length).
    let options = JsonlOptions {
        max_bytes: 4 * line + line / 2,
        keep: 2,
        ..JsonlOptions::new(dir.join("vigil.jsonl"))
    };
    let mut sink = JsonlSink::open(options).unwrap();
    for seq in 0..10 {
        write_event(&mut sink, seq);
        sink.end_batch().unwrap();
    }
    sink.close().unwrap();
    // 10 records, 4 per file: [0..4) [4..8) [8..10); rotated twice, both rotated files kept.
    assert_eq!(sink.stats().rotations, 2);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl.2")), [0, 1, 2, 3]);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl.1")), [4, 5, 6, 7]);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl")), [8, 9]);
    for name in ["vigil.jsonl", "vigil.jsonl.1", "vigil.jsonl.2"] {
        let size = fs::metadata(dir.join(name)).unwrap().len();
        assert!(size <= 4 * line + line / 2, "{name} is {size} bytes");
    }
    // A third rotation drops the oldest file: only `keep` rotated files remain.
    let mut sink = JsonlSink::open(JsonlOptions {
        max_bytes: 4 * line + line / 2,
        keep: 2,
        ..JsonlOptions::new(dir.join("vigil.jsonl"))
    })
    .unwrap();
    for seq in 10..13 {
        write_event(&mut sink, seq);
    }
    sink.close().unwrap();
    assert_eq!(seqs_in(&dir.join("vigil.jsonl.2")), [4, 5, 6, 7]);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl.1")), [8, 9, 10, 11]);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl")), [12]);
    assert!(!dir.join("vigil.jsonl.3").exists());
}

#[test]
fn with_keep_zero_the_file_restarts_empty() {
    let dir = fresh_dir("keep-zero");
    let line = line_len();
    let mut sink = JsonlSink::open(JsonlOptions {
        max_bytes: 2 * line,
        keep: 0,
        ..JsonlOptions::new(dir.join("v.jsonl"))
    })
    .unwrap();
    for seq in 0..5 {
        write_event(&mut sink, seq);
    }
    sink.close().unwrap();
    assert_eq!(seqs_in(&dir.join("v.jsonl")), [4]);
    assert!(!dir.join("v.jsonl.1").exists());
}

#[test]
fn records_reach_the_os_at_the_end_of_each_batch_not_before() {
    let dir = fresh_dir("flush");
    let path = dir.join("vigil.jsonl");
    let mut sink = JsonlSink::open(JsonlOptions::new(&path)).unwrap();
    for seq in 0..3 {
        write_event(&mut sink, seq);
    }
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        0,
        "buffered until the batch ends"
    );
    sink.end_batch().unwrap();
    assert_eq!(
        seqs_in(&path),
        [0, 1, 2],
        "visible to readers after the batch"
    );
    assert_eq!(sink.stats().flushes, 1);
    // An empty batch end costs nothing.
    sink.end_batch().unwrap();
    assert_eq!(sink.stats().flushes, 1);
}

#[test]
fn the_file_is_synced_on_the_timer_only_when_something_was_written() {
    let dir = fresh_dir("sync");
    let mut sink = JsonlSink::open(JsonlOptions {
        sync_interval: Duration::from_secs(1),
        ..JsonlOptions::new(dir.join("vigil.jsonl"))
    })
    .unwrap();
    let t0 = Instant::now();
    sink.tick(t0).unwrap();
    write_event(&mut sink, 0);
    sink.end_batch().unwrap();
    sink.tick(t0 + Duration::from_millis(999)).unwrap();
    assert_eq!(sink.stats().syncs, 0, "not before the interval");
    sink.tick(t0 + Duration::from_secs(1)).unwrap();
    assert_eq!(sink.stats().syncs, 1);
    // Nothing new: the next interval syncs nothing.
    sink.tick(t0 + Duration::from_millis(2500)).unwrap();
    assert_eq!(sink.stats().syncs, 1);
    // Written but not yet flushed: the timer flushes and syncs it.
    write_event(&mut sink, 1);
    sink.tick(t0 + Duration::from_millis(3600)).unwrap();
    assert_eq!(sink.stats().syncs, 2);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl")), [0, 1]);
}

#[test]
fn close_flushes_and_syncs() {
    let dir = fresh_dir("close");
    let path = dir.join("vigil.jsonl");
    let mut sink = JsonlSink::open(JsonlOptions::new(&path)).unwrap();
    write_event(&mut sink, 7);
    sink.gap(
        &Gap {
            epoch: 1,
            from: 3,
            to: 6,
        },
        0,
    )
    .unwrap();
    sink.close().unwrap();
    let stats = sink.stats();
    assert_eq!((stats.lines, stats.flushes, stats.syncs), (2, 1, 1));
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("{\"gap\":{\"from\":3,\"to\":6")
    );
    // Reopening appends.
    let mut sink = JsonlSink::open(JsonlOptions::new(&path)).unwrap();
    write_event(&mut sink, 8);
    sink.close().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
}

#[test]
fn the_human_format_is_one_line_per_event_and_colour_is_optional() {
    let mut plain = HumanSink::new(Vec::new(), false);
    write_event(&mut plain, 1);
    plain
        .gap(
            &Gap {
                epoch: 2,
                from: 5,
                to: 9,
            },
            0,
        )
        .unwrap();
    let text = String::from_utf8(plain.into_inner()).unwrap();
    assert_eq!(
        text,
        "00:00:00.000 first_write    pid 100    \\Device\\HarddiskVolume1\\fake\\file.txt\n\
         !! 5 event(s) lost: sequence 5..=9 (driver instance 2)\n"
    );
    let mut coloured = HumanSink::new(Vec::new(), true);
    write_event(&mut coloured, 1);
    let text = String::from_utf8(coloured.into_inner()).unwrap();
    assert!(text.contains("\u{1b}["), "ANSI colour when asked: {text:?}");
}

/// Lines of `path` that parse as JSON objects, and the number that do not.
fn parsed_lines(path: &Path) -> (Vec<serde_json::Value>, usize) {
    let bytes = fs::read(path).unwrap();
    let mut good = Vec::new();
    let mut bad = 0;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(v) if v.is_object() => good.push(v),
            _ => bad += 1,
        }
    }
    (good, bad)
}

fn event_line(seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    with_record(seq, |r| {
        vigil_service::record::push_event_json(&mut out, 1, r, None);
    });
    out
}

#[test]
fn a_torn_and_zero_filled_end_is_repaired_before_the_next_record() {
    let dir = fresh_dir("torn");
    let path = dir.join("vigil.jsonl");
    // Two whole records, a third torn mid-way, then zeros as a crash leaves them.
    let mut content = event_line(0);
    content.extend(event_line(1));
    let torn = event_line(2);
    content.extend(&torn[..torn.len() / 2]);
    content.extend(std::iter::repeat_n(0u8, 4096));
    fs::write(&path, &content).unwrap();
    let mut sink = JsonlSink::open(JsonlOptions::new(&path)).unwrap();
    let warnings = sink.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("4096 zero byte(s) removed"),
        "{warnings:?}"
    );
    write_event(&mut sink, 3);
    sink.close().unwrap();
    let (records, bad) = parsed_lines(&path);
    let seqs: Vec<u64> = records.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 3], "the new record is a line of its own");
    assert_eq!(bad, 1, "only the torn fragment does not parse");
    assert!(!fs::read(&path).unwrap().contains(&0), "no zero byte left");
}

#[test]
fn the_resume_point_looks_past_a_zero_filled_end_of_any_size() {
    let dir = fresh_dir("resume-zeros");
    let path = dir.join("vigil.jsonl");
    // The newest rotated file ends at seq 4; the live one at seq 9, then 1 MiB of zeros (more
    // than the window the resume reads): the live file's record is the resume point, not the
    // rotated one's, or the next record would reveal a false gap of 5..=9.
    fs::write(dir.join("vigil.jsonl.1"), event_line(4)).unwrap();
    let mut live = event_line(9);
    live.extend(std::iter::repeat_n(0u8, 1 << 20));
    fs::write(&path, &live).unwrap();
    let point = vigil_service::record::last_event_position(&path)
        .unwrap()
        .unwrap();
    assert_eq!((point.epoch, point.seq), (1, 9));
}

#[test]
fn a_live_file_that_cannot_be_renamed_is_rotated_by_copy_without_losing_a_record() {
    let dir = fresh_dir("held");
    let path = dir.join("vigil.jsonl");
    let line = line_len();
    let mut sink = JsonlSink::open(JsonlOptions {
        max_bytes: 4 * line + line / 2,
        keep: 2,
        ..JsonlOptions::new(&path)
    })
    .unwrap();
    // Every rename of the live file fails, as when a reader holds it without delete sharing.
    sink.refuse_live_renames(u32::MAX);
    for seq in 0..10 {
        write_event(&mut sink, seq);
        sink.end_batch().unwrap();
    }
    sink.close().unwrap();
    assert_eq!(sink.stats().rotations, 2);
    assert_eq!(sink.stats().copy_rotations, 2);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl.2")), [0, 1, 2, 3]);
    assert_eq!(seqs_in(&dir.join("vigil.jsonl.1")), [4, 5, 6, 7]);
    assert_eq!(seqs_in(&path), [8, 9]);
}

#[test]
fn a_rotation_that_fails_keeps_the_live_file_and_every_record() {
    let dir = fresh_dir("rotation-fails");
    let path = dir.join("vigil.jsonl");
    // `.1` is a directory with something in it: neither removing it nor renaming onto it can
    // work, so no rotation can (as with a rotated file held open by another process).
    fs::create_dir_all(dir.join("vigil.jsonl.1").join("x")).unwrap();
    let line = line_len();
    let mut sink = JsonlSink::open(JsonlOptions {
        max_bytes: 2 * line,
        keep: 1,
        ..JsonlOptions::new(&path)
    })
    .unwrap();
    for seq in 0..20 {
        write_event(&mut sink, seq);
        sink.end_batch()
            .expect("a failed rotation is not a write failure");
    }
    sink.close().unwrap();
    assert_eq!(seqs_in(&path), (0..20).collect::<Vec<_>>());
    let stats = sink.stats();
    assert_eq!(stats.rotations, 0);
    assert!(stats.rotation_failures >= 1);
    // Retried after another eighth of the bound, not on every record.
    assert!(stats.rotation_failures < 20, "{stats:?}");
    let warnings = sink.take_warnings();
    assert!(warnings[0].contains("cannot rotate"), "{warnings:?}");
}
