//! FltMgr's side of unloading a filter: calling its `FilterUnloadCallback` with the flags of
//! the unload's kind, and the unload that races DriverEntry
//! ([`SimConfig::race_unload_on_register`](crate::config::SimConfig::race_unload_on_register)),
//! started when `FltRegisterFilter` returns. Host code; the callback runs at PASSIVE_LEVEL.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::config::UnloadKind;
use crate::fltmgr::flt_write;
use crate::kernel::{Kernel, RawUnload, lock};
use crate::machine::state;

/// The unload flags for a kind.
pub(crate) fn unload_flags(kind: UnloadKind) -> u32 {
    match kind {
        UnloadKind::Mandatory => vigil_sys::FLTFL_FILTER_UNLOAD_MANDATORY,
        UnloadKind::Optional => 0,
    }
}

/// Runs the filter's unload callback on this thread (marked as the unload thread).
pub(crate) fn run_unload_callback(k: &Kernel, kind: UnloadKind) -> RawUnload {
    let callback = flt_write(k).unload_callback();
    let Some(callback) = callback else {
        return RawUnload::NoCallback;
    };
    let flags = unload_flags(kind);
    // Instance teardown during this unload reports whether it is mandatory.
    flt_write(k).io.unload_flags = flags;
    let was = state::with(|s| s.unload_thread.replace(true));
    // SAFETY: `callback` is the FilterUnloadCallback the driver registered; the image is
    // mapped while the kernel runs; FltMgr calls it at PASSIVE_LEVEL with these flags.
    let status = k.call_driver("FilterUnload", Some(0), || unsafe { callback(flags) });
    state::with(|s| s.unload_thread.set(was));
    status.map_or(RawUnload::Abandoned, RawUnload::Status)
}

/// Starts the racing unload (`SimConfig::race_unload_on_register`) once.
pub(crate) fn start_race_unload(k: &Kernel) {
    let Some(kind) = k.config.race_unload_on_register else {
        return;
    };
    if k.lifecycle.race_started.swap(true, Ordering::AcqRel) {
        return;
    }
    let kernel = k.arc();
    let handle = std::thread::Builder::new()
        .name("kernel-sim unload race".into())
        .spawn(move || run_unload_callback(&kernel, kind))
        .expect("spawning the unload thread");
    // The worst interleaving, every time: DriverEntry (this thread) goes on only once the
    // unload has returned or is blocked waiting. An unload that does not wait for DriverEntry
    // therefore always runs before DriverEntry completes, instead of only when the scheduler
    // happens to allow it. Bounded by the hang limit, so nothing can deadlock here.
    let limit = Instant::now() + k.config.hang_timeout;
    while !handle.is_finished()
        && !k.lifecycle.race_waiting.load(Ordering::Acquire)
        && Instant::now() < limit
    {
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    *lock(&k.lifecycle.race) = Some(handle);
}
