//! Encoding and decoding allocate nothing: every encoder and decoder runs under a counting
//! global allocator, which must count zero allocations on this thread meanwhile. (Its own test
//! binary, since a `#[global_allocator]` is per binary.)

pub mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;

use vigil_protocol::{
    BatchWriter, Config, EventBatch, EventKind, EventRecord, GetStats, Header, Hello, HelloReply,
    MAX_MESSAGE_SIZE, Message, Ping, Pong, PrefixList, SetConfig, SetConfigReply, Stats,
    StatsReply, Utf16Str, Verdict, VerdictOperation, VerdictReply, VerdictRequest,
    VerdictRequestRepr,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// A formatter sink that needs no allocation.
struct Sink(usize);

impl std::fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

#[test]
fn the_counter_counts() {
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 64]))) >= 1);
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one measured region covering every encoder and decoder"
)]
fn encoding_and_decoding_allocate_nothing() {
    // Everything that allocates is made before the measurement.
    let samples = common::sample_messages();
    let path = common::wide(r"\Device\HarddiskVolume3\Users\alice\file.txt");
    let target = common::wide(r"\Device\HarddiskVolume3\Users\alice\file2.txt");
    let prefix = common::wide(r"\Device\HarddiskVolume3\Protected");
    let mut out = vec![0u8; MAX_MESSAGE_SIZE];
    let mut out2 = vec![0u8; MAX_MESSAGE_SIZE];

    let n = allocations_in(|| {
        let mut sink = Sink(0);
        // Encoders.
        let repr = common::event(EventKind::Rename, 7, &path, &target);
        let len = EventRecord::emit(&repr, &mut out).unwrap();
        EventRecord::set_sequence(&mut out[..len], 8).unwrap();
        let record = EventRecord::new_checked(&out[..len]).unwrap();
        write!(
            sink,
            "{} {:?} {}",
            record.path(),
            record.repr(),
            record.target()
        )
        .unwrap();

        let mut writer = BatchWriter::new(&mut out2).unwrap();
        for i in 0..50 {
            writer
                .push(&common::event(EventKind::Open, i, &path, &[]))
                .unwrap();
        }
        writer.push_record(record).unwrap();
        let batch_len = writer.finish().unwrap();
        let batch = EventBatch::new_checked(&out2[..batch_len]).unwrap();
        let mut units = 0;
        for r in batch.records() {
            units += r.path().units().count() + r.target().chars().count();
        }
        assert!(units > 0);

        let request = VerdictRequestRepr {
            request_id: 1,
            operation: VerdictOperation::Delete,
            flags: vigil_protocol::EventFlags::NONE,
            process_id: 4,
            path: Utf16Str::from_units(&path),
            target: Utf16Str::EMPTY,
        };
        let len = request.emit(&mut out).unwrap();
        assert_eq!(
            VerdictRequest::new_checked(&out[..len]).unwrap().repr(),
            request
        );

        let prefixes = [Utf16Str::from_units(&prefix)];
        let config = Config {
            protected_prefixes: PrefixList::from_slice(&prefixes).unwrap(),
            ..Config::DEFAULT
        };
        let len = config.emit(&mut out).unwrap();
        let view = SetConfig::new_checked(&out[..len]).unwrap();
        assert_eq!(view.config(), config);
        view.config().validate().unwrap();

        let reply = VerdictReply {
            request_id: 1,
            verdict: Verdict::Deny,
            reason: 2,
        };
        let len = reply.emit(&mut out).unwrap();
        assert_eq!(VerdictReply::parse(&out[..len]), Ok(reply));
        let len = Hello {
            client_process_id: 1,
        }
        .emit(&mut out)
        .unwrap();
        Hello::parse(&out[..len]).unwrap();
        let len = HelloReply {
            status: 0,
            max_message_size: 1,
            ring_capacity_bytes: 2,
        }
        .emit(&mut out)
        .unwrap();
        HelloReply::parse(&out[..len]).unwrap();
        let len = GetStats.emit(&mut out).unwrap();
        GetStats::parse(&out[..len]).unwrap();
        let len = StatsReply {
            stats: Stats::default(),
        }
        .emit(&mut out)
        .unwrap();
        StatsReply::parse(&out[..len]).unwrap();
        let len = SetConfigReply { status: 0 }.emit(&mut out).unwrap();
        SetConfigReply::parse(&out[..len]).unwrap();
        let len = Ping { nonce: 1 }.emit(&mut out).unwrap();
        Ping::parse(&out[..len]).unwrap();
        let len = Pong { nonce: 1 }.emit(&mut out).unwrap();
        Pong::parse(&out[..len]).unwrap();

        // Every sample through the dispatching decoder and back, and the refusals.
        for (_, _, bytes) in &samples {
            let message = Message::parse(bytes).unwrap();
            Header::parse(bytes).unwrap();
            let len = message.emit(&mut out).unwrap();
            assert_eq!(len, bytes.len());
            assert!(Message::parse(&bytes[..bytes.len() - 1]).is_err());
            write!(sink, "{message:?}").unwrap();
        }
        write!(sink, "{}", vigil_protocol::Error::BadMagic).unwrap();
        assert!(sink.0 > 0);
    });
    assert_eq!(n, 0, "encoding or decoding allocated {n} times");
}
