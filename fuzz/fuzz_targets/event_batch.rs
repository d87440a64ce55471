//! Fuzz target: see `check_event_batch` in `fuzz/src/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vigil_protocol_fuzz::checks::check_event_batch(data);
});
