//! Spin locks and critical regions: `KeAcquireSpinLockRaiseToDpc`, `KeReleaseSpinLock`,
//! `KeEnterCriticalRegion`, `KeLeaveCriticalRegion`.
//!
//! A spin lock is the driver's `KSPIN_LOCK` word: zero when free, the owning OS thread's lock
//! identity while held, so a recursive acquisition (a deadlock on Windows) is named instead of
//! hanging. The identity is per real thread, not the emulated thread id: synthetic I/O lends its
//! requestor's thread id to the callbacks it runs, and two real threads may carry the same one.

use std::sync::atomic::Ordering;
use std::time::Instant;

use vigil_sys::{BOOLEAN, DISPATCH_LEVEL, KIRQL, KSPIN_LOCK};

use crate::kernel::{allocate_thread_id, emulate, irql_name};
use crate::machine::guest;
use crate::machine::state::{self, Abandon};
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// This OS thread's spin-lock owner identity: unique among all threads of the process, fixed for
/// the thread's life, never zero (the free value).
fn lock_owner() -> usize {
    thread_local! {
        static OWNER: usize = allocate_thread_id();
    }
    OWNER.with(|owner| *owner)
}

/// `KeAcquireSpinLockRaiseToDpc`: IRQL <= DISPATCH_LEVEL; raises to DISPATCH_LEVEL and returns
/// the previous IRQL.
pub(crate) extern "win64" fn ke_acquire_spin_lock_raise_to_dpc(lock: *mut KSPIN_LOCK) -> KIRQL {
    emulate(Routine::KeAcquireSpinLockRaiseToDpc, |k| {
        let previous = state::current_irql();
        let Some(word) = guest::atomic_usize(lock) else {
            k.violation(
                ViolationKind::Parameter,
                "KeAcquireSpinLockRaiseToDpc: an aligned KSPIN_LOCK",
                format!("SpinLock {lock:p}"),
            );
            return previous;
        };
        let me = lock_owner();
        state::set_irql(DISPATCH_LEVEL);
        let give_up = Instant::now() + k.config.hang_timeout;
        loop {
            match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return previous,
                Err(owner) if owner == me => {
                    k.fatal(
                        ViolationKind::Deadlock,
                        "KeAcquireSpinLockRaiseToDpc: a spin lock is not recursive",
                        format!("spin lock {lock:p} acquired again by the thread that holds it"),
                    );
                    abandon_current_call(Abandon::Stopped);
                }
                Err(_) if Instant::now() > give_up => {
                    k.fatal(
                        ViolationKind::Deadlock,
                        "a spin lock is held briefly",
                        format!("spin lock {lock:p} not released within the hang limit"),
                    );
                    abandon_current_call(Abandon::Stopped);
                }
                Err(_) => std::thread::yield_now(),
            }
        }
    })
}

/// `KeReleaseSpinLock`: IRQL == DISPATCH_LEVEL; lowers to `NewIrql`.
pub(crate) extern "win64" fn ke_release_spin_lock(lock: *mut KSPIN_LOCK, new_irql: KIRQL) {
    emulate(Routine::KeReleaseSpinLock, |k| {
        let me = lock_owner();
        match guest::atomic_usize(lock) {
            None => k.violation(
                ViolationKind::Parameter,
                "KeReleaseSpinLock: an aligned KSPIN_LOCK",
                format!("SpinLock {lock:p}"),
            ),
            Some(word) => {
                if let Err(owner) =
                    word.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
                {
                    k.violation(
                        ViolationKind::Parameter,
                        "KeReleaseSpinLock: a lock the caller holds",
                        if owner == 0 {
                            format!("spin lock {lock:p} is not held")
                        } else {
                            format!("spin lock {lock:p} is held by another thread")
                        },
                    );
                }
            }
        }
        if new_irql > state::current_irql() {
            k.violation(
                ViolationKind::Irql,
                "KeReleaseSpinLock: NewIrql is the IRQL KeAcquireSpinLock returned",
                format!(
                    "NewIrql {} above the current {}",
                    irql_name(new_irql),
                    irql_name(state::current_irql())
                ),
            );
        }
        state::set_irql(new_irql);
    });
}

/// `KeEnterCriticalRegion`: IRQL <= APC_LEVEL. Disables normal kernel APCs; does not raise
/// IRQL (RULES.md, rule 6).
pub(crate) extern "win64" fn ke_enter_critical_region() {
    emulate(Routine::KeEnterCriticalRegion, |_| {
        state::with(|s| s.critical_regions.set(s.critical_regions.get() + 1));
    });
}

/// `KeAreAllApcsDisabled`: any IRQL. TRUE inside a guarded region or at IRQL >= APC_LEVEL,
/// "which disables all APC delivery"
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-keareallapcsdisabled>).
/// kernel-sim emulates no guarded region (the driver imports none), so it is the IRQL.
pub(crate) extern "win64" fn ke_are_all_apcs_disabled() -> BOOLEAN {
    emulate(Routine::KeAreAllApcsDisabled, |_| {
        BOOLEAN::from(crate::kernel::apc::all_apcs_disabled())
    })
}

/// `KeAreApcsDisabled`: any IRQL. TRUE inside a critical or guarded region (normal kernel APCs
/// disabled) or at IRQL >= APC_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-keareapcsdisabled>).
pub(crate) extern "win64" fn ke_are_apcs_disabled() -> BOOLEAN {
    emulate(Routine::KeAreApcsDisabled, |_| {
        BOOLEAN::from(!crate::kernel::apc::normal_kernel_apcs_enabled())
    })
}

/// `KeLeaveCriticalRegion`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn ke_leave_critical_region() {
    emulate(Routine::KeLeaveCriticalRegion, |k| {
        leave_critical_region(k, "KeLeaveCriticalRegion");
    });
}

/// Leaves one critical region, flagging an unbalanced leave.
pub(crate) fn leave_critical_region(k: &crate::kernel::Kernel, routine: &str) {
    let count = state::with(|s| s.critical_regions.get());
    if count == 0 {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: balanced with a preceding enter"),
            "no critical region entered".to_owned(),
        );
    } else {
        state::with(|s| s.critical_regions.set(count - 1));
    }
}
