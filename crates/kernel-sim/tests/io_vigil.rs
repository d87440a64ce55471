//! Synthetic I/O through the real vigil.sys: instances on NTFS, FAT and named-pipe volumes,
//! operations from several requestors and threads, unload with every name and context
//! released.

mod common;
mod io_workload;

use io_workload::{FAT, NTFS, PIPE, config, requestor, volume, workload};
use vigil_kernel_sim::{Sim, UnloadKind, UnloadOutcome, VolumeKind};

#[test]
fn vigil_attaches_by_policy_and_runs_io_from_many_threads_cleanly() {
    let sim = Sim::new(config());
    let mut driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let (ntfs, fat, pipe) = (
        volume(&driver, NTFS),
        volume(&driver, FAT),
        volume(&driver, PIPE),
    );
    assert!(driver.is_attached(ntfs));
    assert!(driver.is_attached(fat));
    assert!(
        !driver.is_attached(pipe),
        "never pipes (and no NPFS support)"
    );
    let exfat = driver.mount(VolumeKind::ExFat, r"\Device\HarddiskVolume3");
    assert!(
        driver.is_attached(exfat),
        "newly mounted local volumes attach"
    );
    let network = driver.mount(VolumeKind::Network, r"\Device\Mup");
    assert!(!driver.is_attached(network), "network only when configured");

    std::thread::scope(|s| {
        for t in 0..4u32 {
            let io = driver.io(requestor(t));
            let (ntfs, fat, exfat) = (ntfs, fat, exfat);
            s.spawn(move || {
                workload(&io, ntfs, &format!("ntfs{t}"), 12, true);
                workload(&io, fat, &format!("fat{t}"), 6, false);
                workload(&io, exfat, &format!("exfat{t}"), 3, false);
            });
        }
    });
    let before = driver.io_stats();
    assert!(
        before.pre_callbacks > 0 && before.post_callbacks > 0,
        "{before:?}"
    );
    assert!(before.names_acquired > 0, "{before:?}");
    assert!(
        before.contexts_allocated > 0,
        "first writes mark handles: {before:?}"
    );

    // The named-pipe volume: the driver sees nothing.
    workload(&driver.io(requestor(9)), pipe, "pipes", 3, false);
    workload(&driver.io(requestor(9)), network, "share", 3, true);
    let after = driver.io_stats();
    assert_eq!(after.pre_callbacks, before.pre_callbacks);
    assert_eq!(after.post_callbacks, before.post_callbacks);
    assert!(after.operations > before.operations);

    assert_eq!(
        driver.unload(UnloadKind::Mandatory),
        Ok(UnloadOutcome::Unloaded)
    );
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    let io = &report.io;
    assert_eq!(io.names_acquired, io.names_released, "{io:?}");
    assert_eq!(io.contexts_allocated, io.contexts_freed, "{io:?}");
    assert_eq!(io.instances_attached, 3);
    assert_eq!(io.instances_torn_down, 3);
    assert_eq!(report.pool.allocations, report.pool.frees);
}
