//! `ExAllocatePoolWithTag` and `ExFreePool`: the allocation routines deprecated since Windows 10
//! version 2004 that most existing drivers still import, over the same special pool as
//! `ExAllocatePool2` (guard pages, slack checks, quarantine, leaks by tag at the end of the
//! run), and freed by `ExFreePool` or `ExFreePoolWithTag` (`pool::free_block`).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepoolwithtag>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exfreepool>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ne-wdm-_pool_type>): IRQL
//! <= DISPATCH_LEVEL, paged types only at <= APC_LEVEL; the memory is not initialized
//! (kernel-sim poisons it, so uninitialized bytes that reach user mode are caught); NULL when
//! the pool cannot satisfy the request (failable); the tag is a non-zero character literal;
//! `PoolType` is a documented `POOL_TYPE`, optionally combined with `POOL_RAISE_IF_ALLOCATION_FAILURE`
//! or `POOL_COLD_ALLOCATION`; the must-succeed types are for system startup only and the
//! `DontUseThisType` values are reserved.
//!
//! Left out: with `POOL_RAISE_IF_ALLOCATION_FAILURE` a failed allocation raises an exception,
//! which kernel-sim cannot deliver into the driver's handlers; such calls are never failed by
//! fault injection.

use std::sync::atomic::Ordering;

use vigil_sys::{APC_LEVEL, PVOID};

use crate::kernel::emulate;
use crate::machine::pool::{AllocRequest, tag_text};
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::pool::free_block;
use crate::report::ViolationKind;

/// `POOL_RAISE_IF_ALLOCATION_FAILURE`.
const POOL_RAISE_IF_ALLOCATION_FAILURE: u32 = 0x10;
/// `POOL_COLD_ALLOCATION`.
const POOL_COLD_ALLOCATION: u32 = 0x100;

/// What `POOL_TYPE` value (without its modifier flags) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PoolTypeClass {
    NonPaged,
    Paged,
    /// `NonPagedPoolMustSucceed` and its variants: "allowed only during system startup".
    MustSucceed,
    /// `DontUseThisType`, `DontUseThisTypeSession`: reserved for system use.
    Reserved,
    /// Not a `POOL_TYPE` value.
    Unknown,
}

fn classify(pool_type: u32) -> PoolTypeClass {
    match pool_type {
        // NonPagedPool, NonPagedPoolCacheAligned, their session variants, and the Nx ones.
        0 | 4 | 32 | 36 | 512 | 516 | 544 => PoolTypeClass::NonPaged,
        // PagedPool, PagedPoolCacheAligned and their session variants.
        1 | 5 | 33 | 37 => PoolTypeClass::Paged,
        2 | 6 | 34 | 38 => PoolTypeClass::MustSucceed,
        3 | 35 => PoolTypeClass::Reserved,
        _ => PoolTypeClass::Unknown,
    }
}

/// `ExAllocatePoolWithTag`: IRQL <= DISPATCH_LEVEL (paged types <= APC_LEVEL). Failable: NULL.
pub(crate) extern "win64" fn ex_allocate_pool_with_tag(
    pool_type: u32,
    size: usize,
    tag: u32,
) -> PVOID {
    emulate(Routine::ExAllocatePoolWithTag, |k| {
        let irql = state::current_irql();
        let modifiers = pool_type & (POOL_RAISE_IF_ALLOCATION_FAILURE | POOL_COLD_ALLOCATION);
        let class = classify(pool_type & !modifiers);
        match class {
            PoolTypeClass::Unknown | PoolTypeClass::Reserved => {
                k.parameter_violation(
                    "a documented POOL_TYPE (with POOL_RAISE_IF_ALLOCATION_FAILURE or POOL_COLD_ALLOCATION at most)",
                    format!("PoolType {pool_type:#x} (tag '{}')", tag_text(tag)),
                );
                return std::ptr::null_mut();
            }
            PoolTypeClass::MustSucceed => k.parameter_violation(
                "no must-succeed pool type (allowed only during system startup)",
                format!("PoolType {pool_type:#x} (tag '{}')", tag_text(tag)),
            ),
            PoolTypeClass::NonPaged | PoolTypeClass::Paged => {}
        }
        if tag == 0 {
            k.parameter_violation("a non-zero Tag", format!("Tag 0 ({size} bytes)"));
        }
        let paged = class == PoolTypeClass::Paged;
        if paged && irql > APC_LEVEL {
            k.violation(
                ViolationKind::Irql,
                "ExAllocatePoolWithTag: paged pool at IRQL <= APC_LEVEL",
                format!("PoolType {pool_type:#x} at IRQL {irql}"),
            );
        }
        if pool_type & POOL_RAISE_IF_ALLOCATION_FAILURE == 0
            && k.inject_failure("ExAllocatePoolWithTag", "NULL")
        {
            crate::kernel::lock(&k.pool).stats.injected_failures += 1;
            return std::ptr::null_mut();
        }
        let callback = state::with(|s| s.callback.get());
        let request = AllocRequest {
            size,
            tag,
            // Not initialized (unlike ExAllocatePool2 without POOL_FLAG_UNINITIALIZED): poisoned.
            zeroed: false,
            paged,
            irql,
            callback,
            during_entry: k.lifecycle.in_entry.load(Ordering::Acquire) && callback == "DriverEntry",
            align: 16,
            device_aligned: false,
        };
        crate::kernel::lock(&k.pool)
            .allocate(&request)
            .map_or(std::ptr::null_mut(), |a| a as PVOID)
    })
}

/// `ExFreePool`: IRQL <= DISPATCH_LEVEL (paged blocks <= APC_LEVEL); any tag.
pub(crate) extern "win64" fn ex_free_pool(block: PVOID) {
    emulate(Routine::ExFreePool, |k| {
        free_block(k, "ExFreePool", block, None);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_types_classify_as_the_pool_type_page_lists_them() {
        assert_eq!(classify(0), PoolTypeClass::NonPaged);
        assert_eq!(classify(512), PoolTypeClass::NonPaged);
        assert_eq!(classify(1), PoolTypeClass::Paged);
        assert_eq!(classify(37), PoolTypeClass::Paged);
        assert_eq!(classify(2), PoolTypeClass::MustSucceed);
        assert_eq!(classify(3), PoolTypeClass::Reserved);
        assert_eq!(classify(7), PoolTypeClass::Unknown);
        assert_eq!(classify(0x10), PoolTypeClass::Unknown);
    }
}
