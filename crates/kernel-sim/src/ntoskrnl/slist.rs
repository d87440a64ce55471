//! Interlocked singly linked lists (`SLists`) as x64 drivers reach them: `InitializeSListHead`,
//! `ExpInterlockedPushEntrySList`, `ExpInterlockedPopEntrySList`, `ExpInterlockedFlushSList`,
//! `ExQueryDepthSList` and `RtlFirstEntrySList` (the WDK's `InterlockedPushEntrySList` and
//! friends are macros for the `Exp` exports on x64, and the classic lookaside lists' inline
//! allocate and free call them). Any IRQL (over nonpaged memory).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-initializeslisthead>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinterlockedpushentryslist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinterlockedpopentryslist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinterlockedflushslist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exquerydepthslist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlfirstentryslist>):
//! the header and every entry are aligned on `MEMORY_ALLOCATION_ALIGNMENT` (16 bytes on x64),
//! a misaligned one is reported; push returns the previous first entry, pop and flush the
//! removed first entry (NULL when empty).
//!
//! The header keeps Windows' x64 layout, so inline readers agree: the depth in bits 0-15 and a
//! sequence number in bits 16-63 of the first quadword, the first entry's address in the
//! second. The operations are serialized by one lock of kernel-sim's instead of
//! `cmpxchg16b`; the driver's memory is touched before the lock is taken where possible, and
//! the lock is bounded by the hang limit, so a wild pointer cannot wedge other threads.
//! A push onto a lookaside list's head is checked by `ntoskrnl::lookaside` (a block freed to
//! the wrong list).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use vigil_sys::PVOID;

use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::machine::state::Abandon;
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// `MEMORY_ALLOCATION_ALIGNMENT` on x64.
pub(crate) const MEMORY_ALLOCATION_ALIGNMENT: usize = 16;

static LOCK: AtomicBool = AtomicBool::new(false);

/// Holds the `SList` lock until dropped.
struct Held;

impl Drop for Held {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

fn take_lock(k: &Kernel) -> Held {
    let give_up = Instant::now() + k.config.hang_timeout;
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        if Instant::now() > give_up {
            k.fatal(
                ViolationKind::Deadlock,
                "an SList operation completes",
                "the SList lock was not released within the hang limit (a fault inside an SList operation?)".to_owned(),
            );
            abandon_current_call(Abandon::Stopped);
        }
        std::thread::yield_now();
    }
    Held
}

/// The two quadwords of an `SLIST_HEADER`.
fn header_words(head: usize) -> (*mut u64, *mut usize) {
    (head as *mut u64, (head + 8) as *mut usize)
}

/// Whether `at` is aligned for the list (reported otherwise).
fn aligned(k: &Kernel, what: &str, at: usize) -> bool {
    let ok = at != 0 && at.is_multiple_of(MEMORY_ALLOCATION_ALIGNMENT);
    if !ok {
        k.parameter_violation(
            &format!("{what} non-NULL and aligned on MEMORY_ALLOCATION_ALIGNMENT (16 bytes)"),
            format!("{what} {at:#x}"),
        );
    }
    ok
}

/// The depth stored in the header's first quadword.
pub(crate) fn depth_of(first: u64) -> u16 {
    u16::try_from(first & 0xffff).unwrap_or(0)
}

/// A new first quadword: `depth`, and the sequence of `old` advanced.
fn with_depth(old: u64, depth: u16) -> u64 {
    let sequence = (old >> 16).wrapping_add(1) & 0xffff_ffff_ffff;
    (sequence << 16) | u64::from(depth)
}

/// Pushes `entry` onto the list at `head`; returns the previous first entry. Host code for the
/// routines and for `ntoskrnl::lookaside`.
pub(crate) fn push(k: &Kernel, head: usize, entry: usize) -> usize {
    let (first, second) = header_words(head);
    // Touched before the lock: a wild pointer faults here, holding nothing.
    let _ = guest::read(first);
    guest::write(entry as *mut usize, 0);
    let _held = take_lock(k);
    let old_first = guest::read(second);
    let word = guest::read(first);
    guest::write(entry as *mut usize, old_first);
    guest::write(second, entry);
    guest::write(first, with_depth(word, depth_of(word).wrapping_add(1)));
    old_first
}

/// Pops the first entry of the list at `head` (0 when empty).
pub(crate) fn pop(k: &Kernel, head: usize) -> usize {
    let (first, second) = header_words(head);
    let _ = guest::read(first);
    let _held = take_lock(k);
    let top = guest::read(second);
    if top == 0 {
        return 0;
    }
    let next: usize = guest::read(top as *const usize);
    let word = guest::read(first);
    guest::write(second, next);
    guest::write(first, with_depth(word, depth_of(word).saturating_sub(1)));
    top
}

/// Removes every entry of the list at `head`; returns the first (0 when empty).
pub(crate) fn flush(k: &Kernel, head: usize) -> usize {
    let (first, second) = header_words(head);
    let _ = guest::read(first);
    let _held = take_lock(k);
    let top = guest::read(second);
    let word = guest::read(first);
    guest::write(second, 0);
    guest::write(first, with_depth(word, 0));
    top
}

/// `InitializeSListHead`: any IRQL; an empty list.
pub(crate) extern "win64" fn initialize_slist_head(head: PVOID) {
    emulate(Routine::InitializeSListHead, |k| {
        if aligned(k, "SListHead", head as usize) {
            let (first, second) = header_words(head as usize);
            guest::write(first, 0);
            guest::write(second, 0);
        }
    });
}

/// `ExpInterlockedPushEntrySList` (`InterlockedPushEntrySList`): any IRQL.
pub(crate) extern "win64" fn exp_interlocked_push_entry_slist(head: PVOID, entry: PVOID) -> PVOID {
    emulate(Routine::ExpInterlockedPushEntrySList, |k| {
        if !aligned(k, "ListHead", head as usize) || !aligned(k, "ListEntry", entry as usize) {
            return std::ptr::null_mut();
        }
        crate::ntoskrnl::lookaside::check_entry_freed(k, head as usize, entry as usize);
        push(k, head as usize, entry as usize) as PVOID
    })
}

/// `ExpInterlockedPopEntrySList` (`InterlockedPopEntrySList`): any IRQL.
pub(crate) extern "win64" fn exp_interlocked_pop_entry_slist(head: PVOID) -> PVOID {
    emulate(Routine::ExpInterlockedPopEntrySList, |k| {
        if !aligned(k, "ListHead", head as usize) {
            return std::ptr::null_mut();
        }
        pop(k, head as usize) as PVOID
    })
}

/// `ExpInterlockedFlushSList` (`InterlockedFlushSList`): any IRQL.
pub(crate) extern "win64" fn exp_interlocked_flush_slist(head: PVOID) -> PVOID {
    emulate(Routine::ExpInterlockedFlushSList, |k| {
        if !aligned(k, "ListHead", head as usize) {
            return std::ptr::null_mut();
        }
        flush(k, head as usize) as PVOID
    })
}

/// `ExQueryDepthSList`: any IRQL.
pub(crate) extern "win64" fn ex_query_depth_slist(head: PVOID) -> u16 {
    emulate(Routine::ExQueryDepthSList, |k| {
        if !aligned(k, "SListHead", head as usize) {
            return 0;
        }
        depth_of(guest::read(head as *const u64))
    })
}

/// `RtlFirstEntrySList`: any IRQL; the first entry without removing it.
pub(crate) extern "win64" fn rtl_first_entry_slist(head: PVOID) -> PVOID {
    emulate(Routine::RtlFirstEntrySList, |k| {
        if !aligned(k, "ListHead", head as usize) {
            return std::ptr::null_mut();
        }
        guest::read((head as usize + 8) as *const usize) as PVOID
    })
}
