//! Callbacks per second through kernel-sim (`cargo bench -p vigil-kernel-sim --bench
//! callbacks`): an open/write/cleanup/close loop on one NTFS volume, against the
//! `noop-filter` baseline build of vigil.sys (same registration, callbacks do nothing: the cost is
//! kernel-sim's) and the production driver, from one and two threads. Prints the rates; asserts
//! nothing about time (STYLE.md 11), only that the runs were clean.

use std::time::Duration;

use vigil_kernel_sim::scenario::bench;

fn main() {
    let seconds = std::env::var("KERNEL_SIM_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0);
    for variant in [
        xtask::Variant::baseline(xtask::Baseline::NoopFilter),
        xtask::Variant::production(),
    ] {
        let image = xtask::build_driver(&variant).expect("building the driver");
        for threads in [1, 2] {
            let result =
                bench(&image, threads, Duration::from_secs_f64(seconds)).expect("the image loads");
            assert!(result.violations.is_empty(), "{:#?}", result.violations);
            println!(
                "{:<22} {threads} thread(s): {:>10.0} callbacks/s, {:>9.0} ops/s ({} callbacks in {:.2}s)",
                variant.name(),
                result.callbacks_per_sec,
                result.operations_per_sec,
                result.callbacks,
                result.seconds
            );
        }
    }
}
