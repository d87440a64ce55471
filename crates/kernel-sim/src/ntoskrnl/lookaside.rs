//! Lookaside lists: `ExInitializeNPagedLookasideList`, `ExDeleteNPagedLookasideList`,
//! `ExInitializeLookasideListEx`, `ExDeleteLookasideListEx`, and the default allocate and free
//! routines a list gets when the driver supplies none.
//!
//! The allocate and free calls are not exports: `ExAllocateFromNPagedLookasideList`,
//! `ExFreeToNPagedLookasideList`, `ExAllocateFromLookasideListEx` and `ExFreeToLookasideListEx`
//! are inline in the headers (mingw's and the WDK's): they pop or push the list's `SList` head
//! (`ExpInterlocked*EntrySList` on x64, `ntoskrnl::slist`) and call the list's `Allocate` /
//! `Free` pointers when it is empty / full. So kernel-sim fills the list header with Windows'
//! x64 layout (`GENERAL_LOOKASIDE`: the `SList` head, `Depth` 4 of `MaximumDepth` 256 as Windows
//! starts a list, the pool type, tag, size, and the two routine pointers) and sees the traffic
//! through those calls.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinitializenpagedlookasidelist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exdeletenpagedlookasidelist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinitializelookasidelistex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exdeletelookasidelistex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatefromnpagedlookasidelist>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exfreetonpagedlookasidelist>):
//! - every routine IRQL <= DISPATCH_LEVEL (entries of a paged list <= APC_LEVEL);
//! - the list header is nonpaged and 16-byte aligned; `Size` is at least
//!   `LOOKASIDE_MINIMUM_BLOCK_SIZE`; `Depth` is reserved and zero; the classic list's `Flags`
//!   are `POOL_RAISE_IF_ALLOCATION_FAILURE` and `POOL_NX_ALLOCATION` at most; the Ex list's
//!   are zero or one of `EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL` /
//!   `EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE` (both, or others:
//!   `STATUS_INVALID_PARAMETER_5`; `FAIL_NO_RAISE` only with the driver's own Allocate,
//!   reported otherwise), its `PoolType` a paged or nonpaged type
//!   (`STATUS_INVALID_PARAMETER_4`); a flag that raises on failure is a must-succeed
//!   allocation (RULES.md 20) and is reported;
//! - delete frees the entries the list holds and takes the list out of the system; the memory
//!   of a live list must not be freed (reported), and a list still live when the driver is
//!   gone is reported;
//! - an entry freed to a list is an entry allocated from it: with the default allocator every
//!   entry is a pool block of the list's size and tag, so a push of anything else onto the
//!   list's head is reported (a block freed to the wrong list);
//! - the default allocate can fail (fault injection: NULL, as the pool does), which the
//!   driver's inline allocate passes on as NULL.

use std::sync::atomic::Ordering;

use vigil_sys::{APC_LEVEL, NTSTATUS, PVOID, STATUS_SUCCESS};

use crate::kernel::objects::LookasideRecord;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest;
use crate::machine::pool::{AllocRequest, PoolPlace, tag_text};
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::slist;
use crate::report::ViolationKind;

/// `GENERAL_LOOKASIDE` (and `GENERAL_LOOKASIDE_POOL`, `LOOKASIDE_LIST_EX`,
/// `NPAGED_LOOKASIDE_LIST` on x64): the layout of mingw-w64's `wdm.h`
/// (`GENERAL_LOOKASIDE_LAYOUT`), which the inline allocate and free read.
#[repr(C)]
#[derive(Clone, Copy)]
struct GeneralLookaside {
    list_head: [u64; 2],
    depth: u16,
    maximum_depth: u16,
    total_allocates: u32,
    allocate_misses: u32,
    total_frees: u32,
    free_misses: u32,
    pool_type: u32,
    tag: u32,
    size: u32,
    allocate: usize,
    free: usize,
    list_entry: [usize; 2],
    last_total_allocates: u32,
    last_allocate_misses: u32,
    future: [u32; 2],
}

const _: () = assert!(size_of::<GeneralLookaside>() == 96);
const _: () = assert!(std::mem::offset_of!(GeneralLookaside, depth) == 16);
const _: () = assert!(std::mem::offset_of!(GeneralLookaside, pool_type) == 36);
const _: () = assert!(std::mem::offset_of!(GeneralLookaside, allocate) == 48);
const _: () = assert!(std::mem::offset_of!(GeneralLookaside, free) == 56);

/// The depth Windows gives a new list (`ExMinimumLookasideDepth`), and its maximum.
const INITIAL_DEPTH: u16 = 4;
const MAXIMUM_DEPTH: u16 = 256;
/// `LOOKASIDE_MINIMUM_BLOCK_SIZE`: an `SLIST_ENTRY`'s `Next`.
const LOOKASIDE_MINIMUM_BLOCK_SIZE: usize = 8;
/// `POOL_RAISE_IF_ALLOCATION_FAILURE`, `POOL_NX_ALLOCATION`.
const POOL_RAISE_IF_ALLOCATION_FAILURE: u32 = 0x10;
const POOL_NX_ALLOCATION: u32 = 0x200;
/// `EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL`, `EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE`.
const EX_FLAGS_RAISE_ON_FAIL: u32 = 0x1;
const EX_FLAGS_FAIL_NO_RAISE: u32 = 0x2;
/// `STATUS_INVALID_PARAMETER_4`, `STATUS_INVALID_PARAMETER_5`.
const STATUS_INVALID_PARAMETER_4: NTSTATUS = 0xC000_00F2_u32.cast_signed();
const STATUS_INVALID_PARAMETER_5: NTSTATUS = 0xC000_00F3_u32.cast_signed();
/// `POOL_QUOTA_FAIL_INSTEAD_OF_RAISE`, added to the pool type of an
/// `EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE` list.
const POOL_QUOTA_FAIL_INSTEAD_OF_RAISE: u32 = 0x8;
/// `NonPagedPool`.
const NON_PAGED_POOL: u32 = 0;

/// Whether a `POOL_TYPE` (without modifiers) is paged: `PagedPool` and its cache-aligned and
/// session variants.
fn is_paged(pool_type: u32) -> bool {
    matches!(
        pool_type & !(POOL_RAISE_IF_ALLOCATION_FAILURE | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE | 0x100),
        1 | 5 | 33 | 37
    )
}

/// Whether a `POOL_TYPE` is one a list's entries can come from: the nonpaged (`Nx`,
/// cache-aligned, session) and paged types.
fn is_entry_pool_type(pool_type: u32) -> bool {
    matches!(pool_type, 0 | 4 | 32 | 36 | 512 | 516 | 544) || is_paged(pool_type)
}

/// The checks both initializers share; `false` when the list cannot be set up.
fn check_header(k: &Kernel, routine: &str, lookaside: usize, size: usize, depth: u16) -> bool {
    if lookaside == 0 || !lookaside.is_multiple_of(slist::MEMORY_ALLOCATION_ALIGNMENT) {
        k.parameter_violation(
            "Lookaside non-NULL and 16-byte aligned",
            format!("Lookaside {lookaside:#x}"),
        );
        return false;
    }
    if let Some((_, _, true)) = lock(&k.pool).live_block_at(lookaside) {
        k.parameter_violation(
            "Lookaside in nonpaged system space",
            format!("Lookaside {lookaside:#x} is in a paged pool block"),
        );
    }
    if size < LOOKASIDE_MINIMUM_BLOCK_SIZE {
        k.parameter_violation(
            "Size at least LOOKASIDE_MINIMUM_BLOCK_SIZE",
            format!("Size {size} (an entry must hold an SLIST_ENTRY)"),
        );
        return false;
    }
    if depth != 0 {
        k.parameter_violation("Depth zero (reserved)", format!("Depth {depth}"));
    }
    if lock(&k.objects).lookasides.contains_key(&lookaside) {
        k.parameter_violation(
            "a Lookaside that is not a live list (delete it first)",
            format!("{routine}: Lookaside {lookaside:#x} is a live lookaside list"),
        );
        return false;
    }
    true
}

/// Writes the header and records the list.
#[expect(
    clippy::too_many_arguments,
    reason = "the fields of the list, as the routines take them"
)]
fn set_up(
    k: &Kernel,
    kind: &'static str,
    lookaside: usize,
    pool_type: u32,
    size: usize,
    tag: u32,
    allocate: usize,
    free: usize,
    default_allocate: usize,
    default_free: usize,
) {
    let header = GeneralLookaside {
        list_head: [0, 0],
        depth: INITIAL_DEPTH,
        maximum_depth: MAXIMUM_DEPTH,
        total_allocates: 0,
        allocate_misses: 0,
        total_frees: 0,
        free_misses: 0,
        pool_type,
        tag,
        size: u32::try_from(size).unwrap_or(u32::MAX),
        allocate: if allocate == 0 {
            default_allocate
        } else {
            allocate
        },
        free: if free == 0 { default_free } else { free },
        list_entry: [0, 0],
        last_total_allocates: 0,
        last_allocate_misses: 0,
        future: [0, 0],
    };
    guest::write(lookaside as *mut GeneralLookaside, header);
    let initialized_in = state::with(|s| s.callback.get());
    lock(&k.objects).lookasides.insert(
        lookaside,
        LookasideRecord {
            kind,
            size,
            tag,
            default_allocator: allocate == 0,
            driver_free: (free != 0).then_some(free),
            initialized_in,
        },
    );
}

/// `ExInitializeNPagedLookasideList`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ex_initialize_npaged_lookaside_list(
    lookaside: PVOID,
    allocate: PVOID,
    free: PVOID,
    flags: u32,
    size: usize,
    tag: u32,
    depth: u16,
) {
    emulate(Routine::ExInitializeNPagedLookasideList, |k| {
        if !check_header(
            k,
            "ExInitializeNPagedLookasideList",
            lookaside as usize,
            size,
            depth,
        ) {
            return;
        }
        if flags & !(POOL_RAISE_IF_ALLOCATION_FAILURE | POOL_NX_ALLOCATION) != 0 {
            k.parameter_violation(
                "Flags POOL_RAISE_IF_ALLOCATION_FAILURE and POOL_NX_ALLOCATION at most",
                format!("Flags {flags:#x}"),
            );
        }
        if flags & POOL_RAISE_IF_ALLOCATION_FAILURE != 0 {
            report_raising(k, "POOL_RAISE_IF_ALLOCATION_FAILURE");
        }
        set_up(
            k,
            "ExInitializeNPagedLookasideList",
            lookaside as usize,
            NON_PAGED_POOL | flags,
            size,
            tag,
            allocate as usize,
            free as usize,
            default_allocate as *const () as usize,
            default_free as *const () as usize,
        );
    });
}

/// `ExInitializeLookasideListEx`: IRQL <= DISPATCH_LEVEL; `STATUS_INVALID_PARAMETER_5` for
/// invalid `Flags`.
pub(crate) extern "win64" fn ex_initialize_lookaside_list_ex(
    lookaside: PVOID,
    allocate: PVOID,
    free: PVOID,
    pool_type: u32,
    flags: u32,
    size: usize,
    tag: u32,
    depth: u16,
) -> NTSTATUS {
    emulate(Routine::ExInitializeLookasideListEx, |k| {
        if !is_entry_pool_type(pool_type) {
            return STATUS_INVALID_PARAMETER_4;
        }
        if flags & !(EX_FLAGS_RAISE_ON_FAIL | EX_FLAGS_FAIL_NO_RAISE) != 0
            || flags == EX_FLAGS_RAISE_ON_FAIL | EX_FLAGS_FAIL_NO_RAISE
        {
            return STATUS_INVALID_PARAMETER_5;
        }
        if allocate.is_null() && flags == EX_FLAGS_FAIL_NO_RAISE {
            k.parameter_violation(
                "Flags zero or EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL without an Allocate routine (the default allocation is undefined otherwise)",
                "EX_LOOKASIDE_LIST_EX_FLAGS_FAIL_NO_RAISE with Allocate NULL".to_owned(),
            );
        }
        if !check_header(
            k,
            "ExInitializeLookasideListEx",
            lookaside as usize,
            size,
            depth,
        ) {
            return vigil_sys::STATUS_INVALID_PARAMETER;
        }
        if flags & EX_FLAGS_RAISE_ON_FAIL != 0 {
            report_raising(k, "EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL");
        }
        let pool_type = match flags {
            EX_FLAGS_RAISE_ON_FAIL => pool_type | POOL_RAISE_IF_ALLOCATION_FAILURE,
            EX_FLAGS_FAIL_NO_RAISE => pool_type | POOL_QUOTA_FAIL_INSTEAD_OF_RAISE,
            _ => pool_type,
        };
        set_up(
            k,
            "ExInitializeLookasideListEx",
            lookaside as usize,
            pool_type,
            size,
            tag,
            allocate as usize,
            free as usize,
            default_allocate_ex as *const () as usize,
            default_free_ex as *const () as usize,
        );
        STATUS_SUCCESS
    })
}

fn report_raising(k: &Kernel, flag: &str) {
    k.violation(
        ViolationKind::PoolFlags,
        "RULES.md 20: every allocation can fail; never a must-succeed allocation",
        format!("{flag}: the list's allocations raise instead of returning NULL"),
    );
}

/// Deletes the list at `lookaside` for `routine`: frees the entries it holds.
fn delete(k: &Kernel, routine: &str, lookaside: usize) {
    let Some(record) = lock(&k.objects).lookasides.remove(&lookaside) else {
        k.parameter_violation(
            "a list initialized by its initialize routine (and not deleted)",
            format!("{routine}: Lookaside {lookaside:#x} is not a live lookaside list"),
        );
        return;
    };
    let mut entry = slist::flush(k, lookaside);
    while entry != 0 {
        let next: usize = guest::read(entry as *const usize);
        free_entry(k, routine, &record, lookaside, entry);
        entry = next;
    }
}

/// Frees one entry the list held, through the driver's Free routine or the pool.
fn free_entry(k: &Kernel, routine: &str, record: &LookasideRecord, lookaside: usize, entry: usize) {
    match record.driver_free {
        Some(free) => {
            type Free = unsafe extern "win64" fn(PVOID, PVOID);
            // SAFETY: the driver gave this PFREE_FUNCTION / PFREE_FUNCTION_EX when it initialized
            // the list; its image is mapped while it calls this routine. A classic Free reads
            // only its first argument; an Ex one gets the list, as Windows passes it.
            let free: Free = unsafe { std::mem::transmute::<usize, Free>(free) };
            k.call_driver("LookasideFree", None, || {
                // SAFETY: as above; the entry is one the driver freed to the list.
                unsafe { free(entry as PVOID, lookaside as PVOID) };
            });
        }
        None => crate::ntoskrnl::pool::free_block(k, routine, entry as PVOID, None),
    }
}

/// `ExDeleteNPagedLookasideList`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ex_delete_npaged_lookaside_list(lookaside: PVOID) {
    emulate(Routine::ExDeleteNPagedLookasideList, |k| {
        delete(k, "ExDeleteNPagedLookasideList", lookaside as usize);
    });
}

/// `ExDeleteLookasideListEx`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ex_delete_lookaside_list_ex(lookaside: PVOID) {
    emulate(Routine::ExDeleteLookasideListEx, |k| {
        delete(k, "ExDeleteLookasideListEx", lookaside as usize);
    });
}

/// The body of the default allocate routines: a pool block of the list's size and tag, NULL on
/// an injected failure. `inline` names the header routine the driver called.
fn allocate_entry(
    k: &Kernel,
    inline: &'static str,
    pool_type: u32,
    size: usize,
    tag: u32,
) -> PVOID {
    state::with(|s| s.routine.set(inline));
    let paged = is_paged(pool_type);
    let irql = state::current_irql();
    if paged && irql > APC_LEVEL {
        k.violation(
            ViolationKind::Irql,
            format!("{inline}: a paged list's entries at IRQL <= APC_LEVEL"),
            format!("at {}", crate::kernel::irql_name(irql)),
        );
    }
    if pool_type & POOL_RAISE_IF_ALLOCATION_FAILURE == 0 && k.inject_failure(inline, "NULL") {
        lock(&k.pool).stats.injected_failures += 1;
        return std::ptr::null_mut();
    }
    let callback = state::with(|s| s.callback.get());
    let request = AllocRequest {
        size,
        tag,
        zeroed: false,
        paged,
        irql,
        callback,
        during_entry: k.lifecycle.in_entry.load(Ordering::Acquire) && callback == "DriverEntry",
        align: 16,
        device_aligned: false,
    };
    lock(&k.pool)
        .allocate(&request)
        .map_or(std::ptr::null_mut(), |a| a as PVOID)
}

/// The `Allocate` of a classic list the driver gave none (Windows: the pool allocator). It is
/// reached through the list's pointer, not imported; it counts as `ExAllocatePoolWithTag`,
/// which it is on Windows.
extern "win64" fn default_allocate(pool_type: u32, size: usize, tag: u32) -> PVOID {
    emulate(Routine::ExAllocatePoolWithTag, |k| {
        allocate_entry(k, "ExAllocateFromNPagedLookasideList", pool_type, size, tag)
    })
}

/// The `Free` of a classic list the driver gave none (Windows: `ExFreePool`).
extern "win64" fn default_free(buffer: PVOID) {
    emulate(Routine::ExFreePool, |k| {
        state::with(|s| s.routine.set("ExFreeToNPagedLookasideList"));
        crate::ntoskrnl::pool::free_block(k, "ExFreeToNPagedLookasideList", buffer, None);
    });
}

/// The `AllocateEx` of an Ex list the driver gave none.
extern "win64" fn default_allocate_ex(
    pool_type: u32,
    size: usize,
    tag: u32,
    _lookaside: PVOID,
) -> PVOID {
    emulate(Routine::ExAllocatePoolWithTag, |k| {
        allocate_entry(k, "ExAllocateFromLookasideListEx", pool_type, size, tag)
    })
}

/// The `FreeEx` of an Ex list the driver gave none: the entry must be one of this list's.
extern "win64" fn default_free_ex(buffer: PVOID, lookaside: PVOID) {
    emulate(Routine::ExFreePool, |k| {
        state::with(|s| s.routine.set("ExFreeToLookasideListEx"));
        check_entry_freed(k, lookaside as usize, buffer as usize);
        crate::ntoskrnl::pool::free_block(k, "ExFreeToLookasideListEx", buffer, None);
    });
}

/// `entry` is being freed to the `SList` at `head`: when `head` is a live lookaside list with
/// the default allocator, the entry must be a block of its size and tag.
pub(crate) fn check_entry_freed(k: &Kernel, head: usize, entry: usize) {
    let Some(record) = lock(&k.objects).lookasides.get(&head).cloned() else {
        return;
    };
    if !record.default_allocator {
        return;
    }
    let place = lock(&k.pool).place(entry);
    let problem = match place {
        Some(PoolPlace::Live {
            tag,
            size,
            offset: 0,
        }) if tag == record.tag && size == record.size => None,
        Some(PoolPlace::Live {
            tag,
            size,
            offset: 0,
        }) => Some(format!(
            "{entry:#x} is a {size}-byte block tagged '{}', the list holds {}-byte blocks tagged '{}'",
            tag_text(tag),
            record.size,
            tag_text(record.tag)
        )),
        Some(PoolPlace::Freed { freed_by, .. }) => {
            Some(format!("{entry:#x} was already freed by {freed_by}"))
        }
        _ => Some(format!(
            "{entry:#x} is not a block allocated from a lookaside list"
        )),
    };
    if let Some(problem) = problem {
        let free_routine = if record.kind == "ExInitializeLookasideListEx" {
            "ExFreeToLookasideListEx"
        } else {
            "ExFreeToNPagedLookasideList"
        };
        k.violation(
            ViolationKind::PoolBadFree,
            format!("{free_routine}: an entry allocated from the same list"),
            format!("freed to the list at {head:#x}: {problem}"),
        );
    }
}

/// A pool block `[block, block + size)` is being freed: live lookaside lists in it are reported
/// (and forgotten).
pub(crate) fn check_free(k: &Kernel, routine: &str, block: usize, size: usize) {
    let inside: Vec<(usize, LookasideRecord)> = {
        let mut objects = lock(&k.objects);
        let inside: Vec<(usize, LookasideRecord)> = objects
            .lookasides
            .range(block..block + size.max(1))
            .map(|(&at, r)| (at, r.clone()))
            .collect();
        for (at, _) in &inside {
            objects.lookasides.remove(at);
        }
        inside
    };
    for (at, record) in inside {
        k.violation(
            ViolationKind::ResourceLeak,
            format!("{routine}: delete a lookaside list before freeing its memory"),
            format!(
                "lookaside list {at:#x} ({}, initialized in {}) lies in the freed block {block:#x}",
                record.kind, record.initialized_in
            ),
        );
    }
}

/// Lookaside lists never deleted when the driver is gone (`why`).
pub(crate) fn report_leaks(k: &Kernel, why: &str) {
    let leaked: Vec<(usize, LookasideRecord)> = std::mem::take(&mut lock(&k.objects).lookasides)
        .into_iter()
        .collect();
    for (at, record) in leaked {
        let delete = if record.kind == "ExInitializeLookasideListEx" {
            "ExDeleteLookasideListEx"
        } else {
            "ExDeleteNPagedLookasideList"
        };
        k.violation(
            ViolationKind::ResourceLeak,
            format!("every lookaside list is deleted ({delete}) before the driver is gone"),
            format!("after {why}: lookaside list {at:#x} ({}-byte entries, tag '{}') initialized in {} never deleted", record.size, tag_text(record.tag), record.initialized_in),
        );
    }
}
