//! `ExAllocatePool2` and `ExFreePoolWithTag` over the special pool.

use std::sync::atomic::Ordering;

use vigil_sys::{
    POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, POOL_FLAG_RAISE_ON_FAILURE, POOL_FLAG_UNINITIALIZED,
    POOL_FLAG_USE_QUOTA, POOL_FLAGS, PVOID,
};

use crate::kernel::{Kernel, emulate, lock};
use crate::machine::pool::{AllocRequest, FreeError, Pool, tag_text};
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// `POOL_FLAG_SESSION`.
const POOL_FLAG_SESSION: POOL_FLAGS = 0x4;
/// `POOL_FLAG_CACHE_ALIGNED`.
const POOL_FLAG_CACHE_ALIGNED: POOL_FLAGS = 0x8;
/// `POOL_FLAG_NON_PAGED_EXECUTE`.
const POOL_FLAG_NON_PAGED_EXECUTE: POOL_FLAGS = 0x80;
const KNOWN_FLAGS: POOL_FLAGS = POOL_FLAG_USE_QUOTA
    | POOL_FLAG_UNINITIALIZED
    | POOL_FLAG_SESSION
    | POOL_FLAG_CACHE_ALIGNED
    | POOL_FLAG_RAISE_ON_FAILURE
    | POOL_FLAG_NON_PAGED
    | POOL_FLAG_NON_PAGED_EXECUTE
    | POOL_FLAG_PAGED;

/// `ExAllocatePool2`: IRQL <= DISPATCH_LEVEL (paged pool <= APC_LEVEL). Failable: null.
pub(crate) extern "win64" fn ex_allocate_pool2(flags: POOL_FLAGS, size: usize, tag: u32) -> PVOID {
    emulate(Routine::ExAllocatePool2, |k| {
        let irql = state::current_irql();
        // Return value: NULL when "Tag is set to 0" (a zero tag is invalid)
        // (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepool2>).
        if tag == 0 {
            k.violation(
                ViolationKind::Parameter,
                "ExAllocatePool2: a non-zero Tag",
                format!("Tag 0 (flags {flags:#x}, {size} bytes): the allocation fails"),
            );
            return std::ptr::null_mut();
        }
        if flags & POOL_FLAG_RAISE_ON_FAILURE != 0 {
            k.violation(
                ViolationKind::PoolFlags,
                "RULES.md 20: every allocation can fail; never a must-succeed allocation",
                format!(
                    "POOL_FLAG_RAISE_ON_FAILURE in flags {flags:#x} (tag '{}')",
                    tag_text(tag)
                ),
            );
        }
        if flags & !KNOWN_FLAGS != 0 {
            k.violation(
                ViolationKind::PoolFlags,
                "ExAllocatePool2: documented POOL_FLAG_* bits only",
                format!("flags {flags:#x}"),
            );
        }
        let types = [
            POOL_FLAG_NON_PAGED,
            POOL_FLAG_NON_PAGED_EXECUTE,
            POOL_FLAG_PAGED,
        ];
        if types.iter().filter(|&&t| flags & t != 0).count() != 1 {
            k.violation(
                ViolationKind::PoolFlags,
                "ExAllocatePool2: exactly one of POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED",
                format!("flags {flags:#x}"),
            );
            return std::ptr::null_mut();
        }
        if flags & POOL_FLAG_NON_PAGED_EXECUTE != 0 {
            k.violation(
                ViolationKind::Policy,
                "RULES.md 20: pool is non-executable",
                format!("POOL_FLAG_NON_PAGED_EXECUTE (tag '{}')", tag_text(tag)),
            );
        }
        let paged = flags & POOL_FLAG_PAGED != 0;
        if paged && irql > vigil_sys::APC_LEVEL {
            k.violation(
                ViolationKind::Irql,
                "ExAllocatePool2: paged pool at IRQL <= APC_LEVEL",
                format!("paged allocation at IRQL {irql}"),
            );
        }
        if tag == 0 {
            k.violation(
                ViolationKind::Parameter,
                "ExAllocatePool2: a non-zero pool tag",
                "tag 0".to_owned(),
            );
        }
        if k.inject_failure("ExAllocatePool2", "NULL") {
            lock(&k.pool).stats.injected_failures += 1;
            return std::ptr::null_mut();
        }
        let callback = state::with(|s| s.callback.get());
        let request = AllocRequest {
            size,
            tag,
            zeroed: flags & POOL_FLAG_UNINITIALIZED == 0,
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
    })
}

/// `ExFreePoolWithTag`: IRQL <= DISPATCH_LEVEL (paged blocks <= APC_LEVEL).
pub(crate) extern "win64" fn ex_free_pool_with_tag(block: PVOID, tag: u32) {
    emulate(Routine::ExFreePoolWithTag, |k| {
        free_block(k, "ExFreePoolWithTag", block, Some(tag));
    });
}

/// Frees `block` for `routine` (`ExFreePoolWithTag` checks the tag, `ExFreePool` does not):
/// double frees, frees of anything but a live block's start, overwritten slack, paged blocks
/// freed above APC_LEVEL.
pub(crate) fn free_block(k: &Kernel, routine: &str, block: PVOID, tag: Option<u32>) {
    let from = "a block from ExAllocatePool2 or ExAllocatePoolWithTag";
    if block.is_null() {
        k.violation(
            ViolationKind::PoolBadFree,
            format!("{routine}: {from}"),
            "free of NULL".to_owned(),
        );
        return;
    }
    let callback = state::with(|s| s.callback.get());
    let freed = lock(&k.pool).free(block as usize, callback);
    match freed {
        Err(FreeError::DoubleFree(previous)) => k.violation(
            ViolationKind::PoolDoubleFree,
            format!("{routine}: each block freed once"),
            format!(
                "{block:p} ({} bytes, tag '{}') was already freed in {}",
                previous.size,
                tag_text(previous.tag),
                previous.freed_by
            ),
        ),
        Err(FreeError::Unknown) => k.violation(
            ViolationKind::PoolBadFree,
            format!("{routine}: {from}"),
            format!("{block:p} is not the start of a pool block"),
        ),
        Ok((freed_block, before, after)) => {
            crate::ntoskrnl::resource::check_free(k, routine, block as usize, freed_block.size);
            crate::ntoskrnl::lookaside::check_free(k, routine, block as usize, freed_block.size);
            crate::ntoskrnl::fast_mutex::check_free(k, routine, block as usize, freed_block.size);
            // FltAllocatePoolAlignedWithTag's buffers are freed by FltFreePoolAlignedWithTag
            // and by nothing else (its page, Remarks), and that routine frees nothing else.
            let aligned_free = routine == "FltFreePoolAlignedWithTag";
            if freed_block.device_aligned != aligned_free {
                let allocator = if freed_block.device_aligned {
                    "FltAllocatePoolAlignedWithTag (free it with FltFreePoolAlignedWithTag)"
                } else {
                    "ExAllocatePool2 or ExAllocatePoolWithTag"
                };
                k.violation(
                    ViolationKind::PoolBadFree,
                    format!("{routine}: a block of the allocator it pairs with"),
                    format!(
                        "{block:p} ({} bytes, tag '{}') came from {allocator}",
                        freed_block.size,
                        tag_text(freed_block.tag)
                    ),
                );
            }
            if let Some(tag) = tag
                && freed_block.tag != tag
            {
                k.violation(
                    ViolationKind::PoolWrongTag,
                    format!("{routine}: the tag the block was allocated with"),
                    format!(
                        "block {block:p} allocated with '{}', freed with '{}'",
                        tag_text(freed_block.tag),
                        tag_text(tag)
                    ),
                );
            }
            if before + after > 0 {
                k.violation(
                    ViolationKind::PoolCorruption,
                    "no writes outside an allocation",
                    format!(
                        "{before} byte(s) before and {after} byte(s) after the {}-byte block {block:p} (tag '{}') were overwritten",
                        freed_block.size,
                        tag_text(freed_block.tag)
                    ),
                );
            }
            if freed_block.paged && state::current_irql() > vigil_sys::APC_LEVEL {
                k.violation(
                    ViolationKind::Irql,
                    format!("{routine}: paged pool at IRQL <= APC_LEVEL"),
                    "paged block freed above APC_LEVEL".to_owned(),
                );
            }
            if freed_block.during_entry {
                k.check_teardown_race(&format!("{routine} of a block DriverEntry allocated"));
            }
            Pool::retire(freed_block);
        }
    }
}
