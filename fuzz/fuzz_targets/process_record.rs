//! Fuzz target: see `check_process_record` in `fuzz/src/checks.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vigil_protocol_fuzz::checks::check_process_record(data);
});
