//! Push locks: `FltInitializePushLock`, `FltDeletePushLock`, `FltAcquirePushLockExclusive(Ex)`,
//! `FltAcquirePushLockShared(Ex)`, `FltReleasePushLock(Ex)`. IRQL <= APC_LEVEL; acquiring enters a
//! critical region and releasing leaves it, as the real routines do.
//!
//! A push lock is a reader/writer lock keyed by the address of the driver's `EX_PUSH_LOCK`,
//! with owners recorded by emulated thread id, following the acquire routines' Remarks
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltacquirepushlockshared>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltacquirepushlockexclusive>):
//! - fairness: a shared acquirer is granted at once only if no thread holds the lock
//!   exclusively *and no thread is waiting for exclusive access*; with an exclusive waiter
//!   queued, new shared acquirers wait behind it (so a shared holder that blocks stalls every
//!   later reader once a writer queues);
//! - no recursion: a thread that holds the lock and acquires it exclusively, or acquires it
//!   shared while holding it exclusively, hangs ("the thread will hang"); a thread that holds it
//!   shared may be granted shared access again, but not while an exclusive waiter is queued
//!   (it would wait for the waiter, which waits for it). Each is reported as a deadlock
//!   instead of hanging.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vigil_sys::EX_PUSH_LOCK;

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::kernel::{Kernel, emulate, ensure_thread_id, lock};
use crate::machine::guest;
use crate::machine::state::{self, Abandon};
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::sync::leave_critical_region;
use crate::report::ViolationKind;

/// Owners of one push lock.
#[derive(Debug, Default)]
struct Owners {
    writer: Option<usize>,
    readers: Vec<usize>,
    /// Threads waiting for exclusive access (they hold back new shared acquirers).
    exclusive_waiters: usize,
}

/// One push lock.
#[derive(Debug, Default)]
pub(crate) struct PushLock {
    owners: Mutex<Owners>,
    released: Condvar,
}

fn get_or_create(k: &Kernel, address: usize, routine: &str) -> Arc<PushLock> {
    let mut flt = flt_write(k);
    if let Some(found) = flt.push_locks.get(&address) {
        return Arc::clone(found);
    }
    let created = Arc::new(PushLock::default());
    flt.push_locks.insert(address, Arc::clone(&created));
    drop(flt);
    k.violation(
        ViolationKind::Parameter,
        format!("{routine}: a push lock initialized by FltInitializePushLock"),
        format!("push lock {address:#x} was never initialized"),
    );
    created
}

/// `FltInitializePushLock`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_initialize_push_lock(push_lock: *mut EX_PUSH_LOCK) {
    emulate(Routine::FltInitializePushLock, |k| {
        guest::write(push_lock, 0);
        let previous = flt_write(k)
            .push_locks
            .insert(push_lock as usize, Arc::new(PushLock::default()));
        if let Some(previous) = previous {
            let owners = lock(&previous.owners);
            if owners.writer.is_some() || !owners.readers.is_empty() {
                drop(owners);
                k.violation(
                    ViolationKind::Parameter,
                    "FltInitializePushLock: not on a lock in use",
                    format!("push lock {push_lock:p} re-initialized while held"),
                );
            }
        }
    });
}

/// `FltDeletePushLock`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_delete_push_lock(push_lock: *mut EX_PUSH_LOCK) {
    emulate(Routine::FltDeletePushLock, |k| {
        let removed = flt_write(k).push_locks.remove(&(push_lock as usize));
        match removed {
            None => k.violation(
                ViolationKind::Parameter,
                "FltDeletePushLock: an initialized push lock",
                format!("push lock {push_lock:p} is not initialized"),
            ),
            Some(found) => {
                let owners = lock(&found.owners);
                if owners.writer.is_some() || !owners.readers.is_empty() {
                    drop(owners);
                    k.violation(
                        ViolationKind::Parameter,
                        "FltDeletePushLock: not while held",
                        format!("push lock {push_lock:p} deleted while held"),
                    );
                }
            }
        }
    });
}

fn acquire(k: &Kernel, routine: &'static str, push_lock: *mut EX_PUSH_LOCK, exclusive: bool) {
    let me = ensure_thread_id();
    let found = get_or_create(k, push_lock as usize, routine);
    state::with(|s| s.critical_regions.set(s.critical_regions.get() + 1));
    let give_up = Instant::now() + k.config.hang_timeout;
    let mut owners = lock(&found.owners);
    let mut queued = false;
    loop {
        let holds_shared = owners.readers.contains(&me);
        let recursive_hang = owners.writer == Some(me) || (exclusive && holds_shared);
        let behind_own_waiter = !exclusive && holds_shared && owners.exclusive_waiters > 0;
        if recursive_hang || behind_own_waiter {
            if queued {
                owners.exclusive_waiters -= 1;
            }
            drop(owners);
            k.fatal(
                ViolationKind::Deadlock,
                format!("{routine}: push locks are not recursive"),
                if behind_own_waiter {
                    format!(
                        "push lock {push_lock:p} acquired shared again by a thread that holds it \
                         shared, with an exclusive waiter queued (it waits for the waiter, which \
                         waits for it)"
                    )
                } else {
                    format!("push lock {push_lock:p} acquired again by a thread that holds it")
                },
            );
            abandon_current_call(Abandon::Stopped);
        }
        let free = if exclusive {
            owners.writer.is_none() && owners.readers.is_empty()
        } else {
            // Fairness: a queued exclusive waiter holds back new shared acquirers.
            owners.writer.is_none() && (owners.exclusive_waiters == 0 || holds_shared)
        };
        if free {
            if exclusive {
                if queued {
                    owners.exclusive_waiters -= 1;
                }
                owners.writer = Some(me);
            } else {
                owners.readers.push(me);
            }
            return;
        }
        if exclusive && !queued {
            owners.exclusive_waiters += 1;
            queued = true;
        }
        let now = Instant::now();
        if now >= give_up {
            if queued {
                owners.exclusive_waiters -= 1;
                found.released.notify_all();
            }
            drop(owners);
            k.fatal(
                ViolationKind::Deadlock,
                "a push lock is released",
                format!("push lock {push_lock:p} not acquired within the hang limit"),
            );
            abandon_current_call(Abandon::Stopped);
        }
        k.note_blocking_wait();
        owners = found
            .released
            .wait_timeout(owners, (give_up - now).min(Duration::from_millis(100)))
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

/// `FltAcquirePushLockExclusive`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_acquire_push_lock_exclusive(push_lock: *mut EX_PUSH_LOCK) {
    let routine = Routine::FltAcquirePushLockExclusive;
    emulate(routine, |k| {
        acquire(k, routine.routine().name(), push_lock, true);
    });
}

/// `FltAcquirePushLockShared`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_acquire_push_lock_shared(push_lock: *mut EX_PUSH_LOCK) {
    let routine = Routine::FltAcquirePushLockShared;
    emulate(routine, |k| {
        acquire(k, routine.routine().name(), push_lock, false);
    });
}

/// `FltAcquirePushLockExclusiveEx`: IRQL <= APC_LEVEL. `Flags`: only
/// `FLT_PUSH_LOCK_ENABLE_AUTO_BOOST` (1, deprecated, no effect) and
/// `FLT_PUSH_LOCK_DISABLE_AUTO_BOOST` (2)
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltacquirepushlockexclusiveex>).
pub(crate) extern "win64" fn flt_acquire_push_lock_exclusive_ex(
    push_lock: *mut EX_PUSH_LOCK,
    flags: u32,
) {
    let routine = Routine::FltAcquirePushLockExclusiveEx;
    emulate(routine, |k| {
        check_flags(k, routine.routine().name(), flags);
        acquire(k, routine.routine().name(), push_lock, true);
    });
}

/// `FltAcquirePushLockSharedEx`: IRQL <= APC_LEVEL; flags as for the exclusive one.
pub(crate) extern "win64" fn flt_acquire_push_lock_shared_ex(
    push_lock: *mut EX_PUSH_LOCK,
    flags: u32,
) {
    let routine = Routine::FltAcquirePushLockSharedEx;
    emulate(routine, |k| {
        check_flags(k, routine.routine().name(), flags);
        acquire(k, routine.routine().name(), push_lock, false);
    });
}

/// `FltReleasePushLockEx`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_release_push_lock_ex(push_lock: *mut EX_PUSH_LOCK, flags: u32) {
    emulate(Routine::FltReleasePushLockEx, |k| {
        check_flags(k, "FltReleasePushLockEx", flags);
        release(k, push_lock, "FltReleasePushLockEx");
    });
}

/// The push-lock flags the `...Ex` routines document.
fn check_flags(k: &Kernel, routine: &str, flags: u32) {
    const KNOWN: u32 = 0x1 | 0x2;
    if flags & !KNOWN != 0 {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: Flags FLT_PUSH_LOCK_ENABLE_AUTO_BOOST / _DISABLE_AUTO_BOOST only"),
            format!("Flags {flags:#x}"),
        );
    }
}

/// `FltReleasePushLock`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_release_push_lock(push_lock: *mut EX_PUSH_LOCK) {
    emulate(Routine::FltReleasePushLock, |k| {
        release(k, push_lock, "FltReleasePushLock");
    });
}

/// Releases `push_lock` for the calling thread, either mode, and leaves the critical region its
/// acquire entered.
fn release(k: &Kernel, push_lock: *mut EX_PUSH_LOCK, routine: &str) {
    let me = ensure_thread_id();
    let found = flt_write(k).push_locks.get(&(push_lock as usize)).cloned();
    let released = found.is_some_and(|found| {
        let mut owners = lock(&found.owners);
        let released = if owners.writer == Some(me) {
            owners.writer = None;
            true
        } else if let Some(index) = owners.readers.iter().position(|&r| r == me) {
            owners.readers.swap_remove(index);
            true
        } else {
            false
        };
        found.released.notify_all();
        released
    });
    if released {
        leave_critical_region(k, routine);
    } else {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: a push lock the caller holds"),
            format!("push lock {push_lock:p} is not held by this thread"),
        );
    }
}

/// Threads waiting for exclusive access to the push lock at `address` (tests wait for a writer
/// to queue before they check what it holds back).
#[cfg(test)]
pub(crate) fn exclusive_waiters(k: &Kernel, address: usize) -> usize {
    flt_write(k)
        .push_locks
        .get(&address)
        .map_or(0, |found| lock(&found.owners).exclusive_waiters)
}

/// Threads waiting for exclusive access, over every push lock of the run.
pub(crate) fn all_exclusive_waiters(k: &Kernel) -> usize {
    let locks: Vec<Arc<PushLock>> = flt_write(k).push_locks.values().cloned().collect();
    locks
        .iter()
        .map(|found| lock(&found.owners).exclusive_waiters)
        .sum()
}
