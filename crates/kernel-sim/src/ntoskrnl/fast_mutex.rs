//! Fast mutexes: `ExAcquireFastMutex`, `ExTryToAcquireFastMutex`, `ExReleaseFastMutex`
//! (`ExInitializeFastMutex` is inline in the headers: it sets `Count` to `FM_LOCK_BIT`, clears
//! `Owner` and `Contention`, and calls `KeInitializeEvent` on the embedded event).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exacquirefastmutex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-extrytoacquirefastmutex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exreleasefastmutex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinitializefastmutex>):
//! - acquire: IRQL <= APC_LEVEL (the table), of an initialized mutex; waits while another thread
//!   owns it; raises the IRQL to APC_LEVEL and saves the previous one in the mutex. A fast
//!   mutex is not recursive: a thread acquiring one it owns waits for itself forever, which is
//!   reported at once as a deadlock (the call is abandoned);
//! - try: the same without waiting; FALSE when owned;
//! - release: at IRQL == APC_LEVEL (the table), by the thread that acquired it; restores the
//!   saved IRQL.
//!
//! Ownership is kept beside the driver's memory, by address, with the OS thread's lock
//! identity (as spin locks are: synthetic I/O lends its requestor's thread id to callbacks on
//! several real threads). `Count` is kept as Windows keeps it (`FM_LOCK_BIT` set when free),
//! so an uninitialized mutex (neither free nor owned) is reported.

use std::sync::atomic::Ordering;

use vigil_sys::{APC_LEVEL, BOOLEAN, PVOID};

use crate::kernel::{Kernel, allocate_thread_id, emulate, irql_name, lock};
use crate::machine::guest;
use crate::machine::state::{self, Abandon};
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// `FM_LOCK_BIT`: set in `Count` while the mutex is free.
const FM_LOCK_BIT: i32 = 0x1;
/// Offsets in `FAST_MUTEX`: `Count` (LONG) at 0, `Owner` (PKTHREAD) at 8.
const OWNER_OFFSET: usize = 8;

/// This OS thread's lock identity (never zero, unique in the process).
fn lock_owner() -> usize {
    thread_local! {
        static OWNER: usize = allocate_thread_id();
    }
    OWNER.with(|owner| *owner)
}

/// How an acquire attempt went.
enum Attempt {
    Taken,
    OwnedByMe,
    OwnedByOther,
    Uninitialized,
}

/// Tries to take the mutex at `at` for this thread, saving `previous` IRQL.
fn try_take(k: &Kernel, at: usize, previous: u8) -> Attempt {
    let Some(count) = guest::atomic_i32(at as *mut i32) else {
        return Attempt::Uninitialized;
    };
    let me = lock_owner();
    let mut objects = lock(&k.objects);
    if let Some(&(owner, _)) = objects.fast_mutexes.get(&at) {
        return if owner == me {
            Attempt::OwnedByMe
        } else {
            Attempt::OwnedByOther
        };
    }
    if count.load(Ordering::Acquire) & FM_LOCK_BIT == 0 {
        return Attempt::Uninitialized;
    }
    count.store(0, Ordering::Release);
    guest::write((at + OWNER_OFFSET) as *mut usize, me);
    objects.fast_mutexes.insert(at, (me, previous));
    Attempt::Taken
}

fn report_uninitialized(k: &Kernel, at: usize) {
    k.parameter_violation(
        "a fast mutex initialized by ExInitializeFastMutex",
        format!("FastMutex {at:#x} is neither free nor owned (Count without FM_LOCK_BIT): not initialized"),
    );
}

fn report_recursion(k: &Kernel, routine: &str, at: usize) {
    k.fatal(
        ViolationKind::Deadlock,
        format!("{routine}: a fast mutex is not recursive"),
        format!("FastMutex {at:#x} acquired again by the thread that owns it: it waits for itself forever"),
    );
    abandon_current_call(Abandon::Stopped);
}

/// `ExAcquireFastMutex`: IRQL <= APC_LEVEL; raises to APC_LEVEL.
pub(crate) extern "win64" fn ex_acquire_fast_mutex(mutex: PVOID) {
    emulate(Routine::ExAcquireFastMutex, |k| {
        let at = mutex as usize;
        let previous = state::current_irql();
        let mut taken = false;
        let mut outcome = try_take(k, at, previous);
        if matches!(outcome, Attempt::OwnedByOther) {
            k.wait_until(None, "ExAcquireFastMutex", || {
                outcome = try_take(k, at, previous);
                !matches!(outcome, Attempt::OwnedByOther)
            });
        }
        match outcome {
            Attempt::Taken => taken = true,
            Attempt::OwnedByMe => report_recursion(k, "ExAcquireFastMutex", at),
            Attempt::Uninitialized => report_uninitialized(k, at),
            Attempt::OwnedByOther => {}
        }
        if taken {
            state::set_irql(APC_LEVEL.max(previous));
        }
    });
}

/// `ExTryToAcquireFastMutex`: IRQL <= APC_LEVEL; TRUE (at APC_LEVEL) when acquired.
pub(crate) extern "win64" fn ex_try_to_acquire_fast_mutex(mutex: PVOID) -> BOOLEAN {
    emulate(Routine::ExTryToAcquireFastMutex, |k| {
        let at = mutex as usize;
        let previous = state::current_irql();
        match try_take(k, at, previous) {
            Attempt::Taken => {
                state::set_irql(APC_LEVEL.max(previous));
                1
            }
            Attempt::OwnedByOther => 0,
            Attempt::OwnedByMe => {
                report_recursion(k, "ExTryToAcquireFastMutex", at);
                0
            }
            Attempt::Uninitialized => {
                report_uninitialized(k, at);
                0
            }
        }
    })
}

/// `ExReleaseFastMutex`: IRQL == APC_LEVEL, by the owner; restores the IRQL saved at the acquire.
pub(crate) extern "win64" fn ex_release_fast_mutex(mutex: PVOID) {
    emulate(Routine::ExReleaseFastMutex, |k| {
        let at = mutex as usize;
        let me = lock_owner();
        let released = {
            let mut objects = lock(&k.objects);
            match objects.fast_mutexes.get(&at) {
                Some(&(owner, previous)) if owner == me => {
                    // Freed in the driver's memory and in the table together, under the lock
                    // `try_take` reads both under (the memory was touched by the acquire).
                    guest::write((at + OWNER_OFFSET) as *mut usize, 0);
                    if let Some(count) = guest::atomic_i32(at as *mut i32) {
                        count.store(FM_LOCK_BIT, Ordering::Release);
                    }
                    objects.fast_mutexes.remove(&at);
                    Ok(previous)
                }
                Some(_) => Err("is owned by another thread"),
                None => Err("is not owned"),
            }
        };
        match released {
            Ok(previous) => {
                k.notify_waiters();
                state::set_irql(previous);
            }
            Err(why) => k.parameter_violation(
                "a fast mutex the calling thread acquired (ExAcquireFastMutex or ExTryToAcquireFastMutex)",
                format!("FastMutex {at:#x} {why} (IRQL {})", irql_name(state::current_irql())),
            ),
        }
    });
}

/// A pool block `[block, block + size)` is being freed: owned fast mutexes in it are reported.
pub(crate) fn check_free(k: &Kernel, routine: &str, block: usize, size: usize) {
    let inside: Vec<usize> = {
        let mut objects = lock(&k.objects);
        let inside: Vec<usize> = objects
            .fast_mutexes
            .range(block..block + size.max(1))
            .map(|(&at, _)| at)
            .collect();
        for at in &inside {
            objects.fast_mutexes.remove(at);
        }
        inside
    };
    for at in inside {
        k.violation(
            ViolationKind::ResourceLeak,
            format!("{routine}: release a fast mutex before freeing its memory"),
            format!("fast mutex {at:#x} is owned and lies in the freed block {block:#x}"),
        );
    }
}

/// Fast mutexes still owned when the driver is gone (`why`).
pub(crate) fn report_leaks(k: &Kernel, why: &str) {
    let owned: Vec<usize> = std::mem::take(&mut lock(&k.objects).fast_mutexes)
        .into_keys()
        .collect();
    for at in owned {
        k.violation(
            ViolationKind::ResourceLeak,
            "every fast mutex acquired is released (ExReleaseFastMutex)",
            format!("after {why}: fast mutex {at:#x} still owned"),
        );
    }
}
