//! File identity from the real vigil.sys in kernel-sim: the file system is asked for a file's ID
//! once per file, not once per open. The first open of a stream queries it and caches it in a
//! stream context; every later open of the same stream, while one is still open or after, finds
//! it there. A second file gets its own ID; on FAT (64-bit IDs only) the cached ID keeps its
//! `FILE_ID_64` flag; a context that cannot be allocated costs the cache, never the ID.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use std::collections::BTreeMap;

use driver::{
    FAT, FILE_CREATE, FILE_OPEN, GENERIC_READ, GENERIC_WRITE, NTFS, STATUS_SUCCESS, Service,
    assert_clean, config, image, load, nt, requestor, volume,
};
use vigil_kernel_sim::{Driver, Sim};
use vigil_protocol::{EventFlags, EventKind};

const PID: u32 = 5150;
const TID: u32 = 51;

/// Calls of `routine` so far.
fn calls(driver: &Driver, routine: &str) -> u64 {
    let all: BTreeMap<String, u64> = driver.observer().routine_calls();
    all.get(routine).copied().unwrap_or(0)
}

/// The file IDs and flags of the `Open` events of `path`, in order.
fn opens_of(service: &Service, path: &str) -> Vec<([u8; 16], EventFlags)> {
    let log = service.log();
    log.events
        .iter()
        .zip(&log.identities)
        .filter(|(event, _)| event.kind == EventKind::Open && event.path == path)
        .map(|(event, (_, file_id))| (*file_id, event.flags))
        .collect()
}

/// Two handles open on one file at once, then a third after both closed: one file-ID query
/// (on FAT: the refused 128-bit one and the 64-bit one) for all three opens, the same ID on
/// every event of the file (its first write through the second handle included); a second
/// file queries once more and gets another ID.
fn one_query_per_file_on(device: &str, queries_per_file: u64, is_64_bit: bool) {
    let (_sim, driver) = load(config(&[]), &image());
    let service = Service::allowing(&driver);
    let io = driver.io(requestor(PID, TID));
    let v = volume(&driver, device);
    let before = calls(&driver, "FltQueryInformationFile");
    let first = io
        .create(v, r"\shared.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("create");
    let second = io
        .create(v, r"\shared.txt", FILE_OPEN, 0, GENERIC_WRITE)
        .expect("second handle");
    assert_eq!(io.write(&second, 0, b"two"), STATUS_SUCCESS);
    for handle in [first, second] {
        io.cleanup(&handle);
        io.close(handle);
    }
    let third = io
        .create(v, r"\shared.txt", FILE_OPEN, 0, GENERIC_READ)
        .expect("third handle");
    io.cleanup(&third);
    io.close(third);
    assert_eq!(
        calls(&driver, "FltQueryInformationFile") - before,
        queries_per_file,
        "three opens of one file"
    );
    let other = io
        .create(v, r"\other.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("another file");
    io.cleanup(&other);
    io.close(other);
    assert_eq!(
        calls(&driver, "FltQueryInformationFile") - before,
        2 * queries_per_file,
        "a second file queries its own"
    );
    // Open x3 and first write of shared.txt, open of other.txt, one close after modification.
    service.wait_events(6);
    let shared = opens_of(&service, &nt(device, r"\shared.txt"));
    let other = opens_of(&service, &nt(device, r"\other.txt"));
    assert_eq!(shared.len(), 3, "{shared:?}");
    assert_eq!(other.len(), 1, "{other:?}");
    let (id, _) = shared[0];
    assert_ne!(id, [0; 16]);
    assert_ne!(other[0].0, [0; 16]);
    assert_ne!(other[0].0, id, "each file has its own ID");
    for (file_id, flags) in shared.iter().chain(&other) {
        assert_eq!(
            flags.contains(EventFlags::FILE_ID_64),
            is_64_bit,
            "{flags:?}"
        );
        if is_64_bit {
            assert_eq!(file_id[8..], [0; 8], "a 64-bit ID widened with zeros");
        }
    }
    assert!(
        shared.iter().all(|(file_id, _)| *file_id == id),
        "{shared:?}"
    );
    {
        let log = service.log();
        let (_, (_, write_id)) = log
            .events
            .iter()
            .zip(&log.identities)
            .find(|(event, _)| event.kind == EventKind::FirstWrite)
            .expect("the second handle's first write");
        assert_eq!(
            *write_id, id,
            "the handle's context carries the stream's ID"
        );
    }
    drop(service);
    let report = assert_clean(driver);
    assert_eq!(report.io.contexts_allocated, report.io.contexts_freed);
}

#[test]
fn two_handles_on_one_ntfs_file_query_its_id_once() {
    one_query_per_file_on(NTFS, 1, false);
}

#[test]
fn fat_ids_are_cached_too_and_keep_their_64_bit_flag() {
    // FAT refuses the 128-bit ID (zeros), then answers the 64-bit one: two calls per file.
    one_query_per_file_on(FAT, 2, true);
}

/// A stream context that cannot be allocated: the open still reports the ID it queried, the
/// failure is counted, nothing leaks, and the next open of the file asks again (and caches it).
#[test]
fn a_stream_context_lost_at_the_open_still_reports_the_id() {
    let run = |n: u64| {
        let mut cfg = config(&[]);
        cfg.faults.fail_nth = Some(n);
        let sim = Sim::new(cfg);
        let driver = sim.load(image()).expect("loads");
        if driver.entry_status() == Some(0) {
            let io = driver.io(requestor(PID, TID));
            let f = io
                .create(
                    volume(&driver, NTFS),
                    r"\s.txt",
                    FILE_CREATE,
                    0,
                    GENERIC_WRITE,
                )
                .expect("create");
            io.cleanup(&f);
            io.close(f);
        }
        (sim, driver)
    };
    // Without a client the failable calls come in a fixed order: the post-create's first
    // context allocation is the stream context's (the handle context's comes after the event).
    let n =
        (1..=200)
            .find(|&n| {
                let (_sim, driver) = run(n);
                driver.finish().injected.first().is_some_and(|f| {
                    f.routine == "FltAllocateContext" && f.callback == "PostCreate"
                })
            })
            .expect("the post-create allocates a context");
    let (_sim, driver) = run(n);
    let service = Service::allowing(&driver);
    let before = calls(&driver, "FltQueryInformationFile");
    let io = driver.io(requestor(PID, TID));
    let v = volume(&driver, NTFS);
    for _ in 0..2 {
        let f = io
            .create(v, r"\s.txt", FILE_OPEN, 0, GENERIC_READ)
            .expect("reopen");
        io.cleanup(&f);
        io.close(f);
    }
    assert_eq!(
        calls(&driver, "FltQueryInformationFile") - before,
        1,
        "the first reopen queries and caches, the second finds it"
    );
    service.wait_events(3);
    let opens = opens_of(&service, &nt(NTFS, r"\s.txt"));
    assert_eq!(opens.len(), 3, "{opens:?}");
    let (id, _) = opens[0];
    assert_ne!(id, [0; 16], "the uncached open still carries its ID");
    assert!(opens.iter().all(|(file_id, _)| *file_id == id), "{opens:?}");
    let stats = service.stats();
    assert_eq!(stats.allocation_failures, 1, "{stats:?}");
    drop(service);
    let report = assert_clean(driver);
    assert_eq!(report.io.contexts_allocated, report.io.contexts_freed);
}
