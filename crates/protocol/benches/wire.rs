//! Encode and decode cost of one event record and of a full 64 KiB batch, each beside a plain
//! `copy_from_slice` of the same bytes measured in the same run (the floor any encoding pays).
//!
//! Targets (issue 3): one record under 50 ns; a batch at least 1 GB/s. Measures only: nothing
//! here asserts a time. Run with `cargo bench -p vigil-protocol`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_protocol::{
    BatchWriter, EventBatch, EventFlags, EventKind, EventRecord, EventRepr, MAX_MESSAGE_SIZE,
    Utf16Str,
};

/// A typical path: 60 code units, like `\Device\HarddiskVolume3\Users\...\file.ext`.
fn typical_path() -> Vec<u16> {
    r"\Device\HarddiskVolume3\Users\alice\Documents\Q3\report.docx"
        .encode_utf16()
        .collect()
}

fn event(path: &[u16], sequence: u64) -> EventRepr<'_> {
    EventRepr {
        kind: EventKind::Open,
        flags: EventFlags::NONE,
        status: 0,
        sequence,
        timestamp: 133_000_000_000_000_000,
        process_id: 4242,
        thread_id: 4343,
        volume_id: 0x1234_5678,
        desired_access: 0x0012_019F,
        create_disposition: 1,
        information: 1,
        file_id: [7; 16],
        process_key: 42,
        path: Utf16Str::from_units(path),
        target: Utf16Str::EMPTY,
    }
}

/// Reads every field of a record, so the decoder's work cannot be optimised away.
fn consume(record: &EventRecord<'_>) -> u64 {
    let r = record.repr();
    r.sequence
        ^ r.timestamp
        ^ r.process_id
        ^ r.thread_id
        ^ u64::from(r.volume_id)
        ^ u64::from(r.flags.bits())
        ^ r.path.len_units() as u64
        ^ r.target.len_units() as u64
}

fn one_record(c: &mut Criterion) {
    let path = typical_path();
    let repr = event(&path, 1);
    let mut out = vec![0u8; repr.encoded_len()];
    EventRecord::emit(&repr, &mut out).unwrap();
    let encoded = out.clone();
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| EventRecord::emit(black_box(&repr), black_box(&mut out)).unwrap());
    });
    group.bench_function("decode", |b| {
        b.iter(|| consume(&EventRecord::new_checked(black_box(&encoded)).unwrap()));
    });
    group.bench_function("copy_from_slice", |b| {
        b.iter(|| black_box(&mut out[..]).copy_from_slice(black_box(&encoded)));
    });
    group.finish();
}

fn full_batch(c: &mut Criterion) {
    let path = typical_path();
    // As many typical records as fit in one 64 KiB message.
    let per_record = event(&path, 0).encoded_len();
    let count = (MAX_MESSAGE_SIZE - vigil_protocol::BATCH_HEADER_LEN) / per_record;
    let reprs: Vec<EventRepr<'_>> = (0..count as u64).map(|i| event(&path, i)).collect();
    let mut out = vec![0u8; MAX_MESSAGE_SIZE];
    let encode = |out: &mut [u8]| {
        let mut writer = BatchWriter::new(out).unwrap();
        for r in &reprs {
            writer.push(r).unwrap();
        }
        writer.finish().unwrap()
    };
    let len = encode(&mut out);
    let encoded = out[..len].to_vec();
    eprintln!("batch: {count} records of {per_record} bytes, {len} bytes");

    let mut group = c.benchmark_group("batch_64k");
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function("encode", |b| b.iter(|| encode(black_box(&mut out))));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let batch = EventBatch::new_checked(black_box(&encoded)).unwrap();
            batch.records().map(|r| consume(&r)).fold(0, |a, x| a ^ x)
        });
    });
    group.bench_function("copy_from_slice", |b| {
        b.iter(|| black_box(&mut out[..len]).copy_from_slice(black_box(&encoded)));
    });
    group.finish();
}

criterion_group!(benches, one_record, full_batch);
criterion_main!(benches);
