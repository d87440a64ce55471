//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the fuzz
//! targets run (`fuzz/src/checks.rs`), so CI exercises them on stable Rust without the fuzzer.
//!
//! Regenerate the seed files (named `seed-*`) with
//! `cargo test -p vigil-protocol --test corpus -- --ignored write_seed_corpus`.

pub mod common;

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

use std::fs;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn committed_corpus_passes_every_check() {
    let mut total = 0;
    for target in checks::TARGETS {
        let check = checks::check_for_target(target).unwrap();
        let dir = corpus_dir().join(target);
        let mut files = 0;
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            // Every input goes through every check: a corpus file of one target is a good
            // malformed input for the others.
            for other in checks::TARGETS {
                checks::check_for_target(other).unwrap()(&data);
            }
            check(&data);
            files += 1;
        }
        assert!(files > 0, "no corpus for fuzz target {target}");
        total += files;
    }
    println!("replayed {total} corpus files");
}

#[test]
fn seeds_are_committed_and_decode() {
    for (target, name, bytes) in common::seeds() {
        let path = corpus_dir().join(target).join(&name);
        let committed = fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run write_seed_corpus)", path.display()));
        assert_eq!(
            committed,
            bytes,
            "{} is stale (run write_seed_corpus)",
            path.display()
        );
        let decoded = if target == "event_record" {
            vigil_protocol::EventRecord::new_checked(&bytes).map(|_| ())
        } else {
            vigil_protocol::Message::parse(&bytes).map(|_| ())
        };
        assert_eq!(decoded, Ok(()), "seed {target}/{name} must decode");
    }
}

#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand after a layout change"]
fn write_seed_corpus() {
    for (target, name, bytes) in common::seeds() {
        let dir = corpus_dir().join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }
}
