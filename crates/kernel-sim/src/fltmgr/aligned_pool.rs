//! Device-aligned pool: `FltAllocatePoolAlignedWithTag` and `FltFreePoolAlignedWithTag`, on the
//! checked pool of `ExAllocatePool2` (special pool: own pages, guard page, poison), each block
//! aligned to its volume's sector size and marked so that only `FltFreePoolAlignedWithTag`
//! frees it (and that routine nothing else).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatepoolalignedwithtag>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreepoolalignedwithtag>):
//! `Instance` required (a caller-owned instance attached to the volume, whose device gives the
//! alignment); `PoolType` `NonPagedPool`, `PagedPool`, `NonPagedPoolCacheAligned` or
//! `PagedPoolCacheAligned` (and the `Nx` forms of the nonpaged ones, which the `POOL_TYPE` page
//! gives as their non-executable equivalents); `NumberOfBytes` may be zero (the smallest
//! aligned block); a non-zero `Tag`; NULL when pool is short; IRQL <= APC_LEVEL, DISPATCH_LEVEL
//! only for nonpaged types; the buffer is freed by `FltFreePoolAlignedWithTag` with the same
//! instance and tag.

use std::sync::atomic::Ordering;

use vigil_sys::{APC_LEVEL, PFLT_INSTANCE, PVOID};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::pool::{AllocRequest, tag_text};
use crate::machine::state;
use crate::ntoskrnl::pool::free_block;
use crate::report::ViolationKind;

/// The sector size of every synthetic disk volume (what the blocks are aligned to).
pub(crate) const SECTOR_SIZE: usize = 512;

/// Whether `instance` is a live instance of the caller (a violation otherwise).
fn check_instance(k: &Kernel, instance: PFLT_INSTANCE) -> bool {
    // Setup (InstanceSetup may allocate), live, or tearing down (posts being drained).
    let attached = flt_write(k).io.instance(instance as usize).is_some();
    if !attached {
        k.parameter_violation(
            "Instance, an instance of the caller attached to the volume",
            format!("{instance:p} is not a live instance"),
        );
    }
    attached
}

/// `FltAllocatePoolAlignedWithTag`: IRQL <= APC_LEVEL (DISPATCH_LEVEL for nonpaged types,
/// checked here). Failable: NULL.
pub(crate) extern "win64" fn flt_allocate_pool_aligned_with_tag(
    instance: PFLT_INSTANCE,
    pool_type: u32,
    size: usize,
    tag: u32,
) -> PVOID {
    emulate(Routine::FltAllocatePoolAlignedWithTag, |k| {
        let paged = match pool_type {
            // NonPagedPool, NonPagedPoolCacheAligned, NonPagedPoolNx, NonPagedPoolNxCacheAligned.
            0 | 4 | 512 | 516 => false,
            // PagedPool, PagedPoolCacheAligned.
            1 | 5 => true,
            _ => {
                k.parameter_violation(
                    "PoolType NonPagedPool, PagedPool, NonPagedPoolCacheAligned or PagedPoolCacheAligned",
                    format!("PoolType {pool_type:#x}"),
                );
                return std::ptr::null_mut();
            }
        };
        let irql = state::current_irql();
        if paged && irql > APC_LEVEL {
            k.violation(
                ViolationKind::Irql,
                "FltAllocatePoolAlignedWithTag: paged pool at IRQL <= APC_LEVEL",
                format!("PoolType {pool_type:#x} at IRQL {irql}"),
            );
        }
        if tag == 0 {
            k.parameter_violation("a non-zero Tag", format!("Tag 0 ({size} bytes)"));
        }
        if !check_instance(k, instance) {
            return std::ptr::null_mut();
        }
        if k.inject_failure("FltAllocatePoolAlignedWithTag", "NULL") {
            lock(&k.pool).stats.injected_failures += 1;
            return std::ptr::null_mut();
        }
        let callback = state::with(|s| s.callback.get());
        let request = AllocRequest {
            // Zero bytes: the smallest block that meets the alignment.
            size: if size == 0 { SECTOR_SIZE } else { size },
            tag,
            zeroed: false,
            paged,
            irql,
            callback,
            during_entry: k.lifecycle.in_entry.load(Ordering::Acquire) && callback == "DriverEntry",
            align: SECTOR_SIZE,
            device_aligned: true,
        };
        let block = lock(&k.pool).allocate(&request);
        block.map_or_else(
            || {
                k.violation(
                    ViolationKind::Internal,
                    "kernel-sim",
                    format!("no memory for {size} bytes tagged '{}'", tag_text(tag)),
                );
                std::ptr::null_mut()
            },
            |a| a as PVOID,
        )
    })
}

/// `FltFreePoolAlignedWithTag`: IRQL <= DISPATCH_LEVEL (paged blocks <= APC_LEVEL, checked by
/// the shared free).
pub(crate) extern "win64" fn flt_free_pool_aligned_with_tag(
    instance: PFLT_INSTANCE,
    buffer: PVOID,
    tag: u32,
) {
    emulate(Routine::FltFreePoolAlignedWithTag, |k| {
        check_instance(k, instance);
        free_block(k, "FltFreePoolAlignedWithTag", buffer, Some(tag));
    });
}
