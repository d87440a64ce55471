//! Memory descriptor lists: `IoAllocateMdl`, `MmBuildMdlForNonPagedPool`,
//! `MmMapLockedPagesSpecifyCache` (what the `MmGetSystemAddressForMdlSafe` macro calls when the
//! MDL is not mapped yet) and `IoFreeMdl`. kernel-sim's memory is flat: an MDL describes its
//! buffer by address, and "mapping" it gives the buffer's own address back.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-ioallocatemdl>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-mmbuildmdlfornonpagedpool>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-mmmaplockedpagesspecifycache>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iofreemdl>): all at
//! IRQL <= DISPATCH_LEVEL (a user-mode mapping at <= APC_LEVEL, not emulated); `IoAllocateMdl`
//! returns NULL when it cannot allocate, and associating the MDL with an IRP is not emulated
//! (a filter passes no IRP); `MmBuildMdlForNonPagedPool` takes an MDL whose buffer lies in
//! nonpaged pool and fills in its mapping (`MDL_SOURCE_IS_NONPAGED_POOL`); `IoFreeMdl` frees an
//! MDL the driver allocated. An MDL left in an operation's `MdlAddress` is the I/O system's to
//! free when the operation completes (the world layer does it); any other MDL still allocated
//! when the driver is gone is reported.

use vigil_sys::{KernelMode, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL, PVOID};

use crate::kernel::objects::MdlRecord;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// The x64 page size the MDL's page frame array counts in.
const PAGE: usize = 4096;

/// A new MDL describing `length` bytes at `address`, recorded as allocated by `routine`.
pub(crate) fn allocate(k: &Kernel, routine: &'static str, address: usize, length: u32) -> usize {
    let offset = address % PAGE;
    let pages = (offset + length as usize).div_ceil(PAGE).max(1);
    let size = size_of::<MDL>() + pages * size_of::<u64>();
    let memory = GuestAlloc::zeroed(size);
    let mdl = MDL {
        Next: std::ptr::null_mut(),
        Size: i16::try_from(size).unwrap_or(i16::MAX),
        MdlFlags: 0,
        Process: std::ptr::null_mut(),
        MappedSystemVa: std::ptr::null_mut(),
        StartVa: (address - offset) as PVOID,
        ByteCount: length,
        ByteOffset: u32::try_from(offset).unwrap_or(0),
    };
    guest::write(memory.as_ptr::<MDL>(), mdl);
    let at = memory.address();
    let allocated_in = state::with(|s| s.callback.get());
    let mut objects = lock(&k.objects);
    objects.freed_mdls.remove(&at);
    objects.mdls.insert(
        at,
        MdlRecord {
            _memory: memory,
            routine,
            allocated_in,
        },
    );
    at
}

/// Frees the MDL at `mdl` for `by` (`IoFreeMdl`, or the I/O system at completion); `Err` with
/// what is wrong when it is no live MDL.
pub(crate) fn free(k: &Kernel, mdl: usize, by: &'static str) -> Result<(), String> {
    let mut objects = lock(&k.objects);
    match objects.mdls.remove(&mdl) {
        Some(record) => {
            drop(record);
            objects.freed_mdls.insert(mdl, by);
            Ok(())
        }
        None => Err(match objects.freed_mdls.get(&mdl) {
            Some(earlier) => format!("MDL {mdl:#x} was already freed by {earlier}"),
            None => format!("{mdl:#x} is not an MDL from IoAllocateMdl"),
        }),
    }
}

/// Whether `mdl` is a live MDL.
fn is_live(k: &Kernel, mdl: usize) -> bool {
    lock(&k.objects).mdls.contains_key(&mdl)
}

/// `IoAllocateMdl`: IRQL <= DISPATCH_LEVEL. Failable: NULL.
pub(crate) extern "win64" fn io_allocate_mdl(
    address: PVOID,
    length: u32,
    secondary: u8,
    _charge_quota: u8,
    irp: PVOID,
) -> PVOID {
    emulate(Routine::IoAllocateMdl, |k| {
        if !irp.is_null() || secondary != 0 {
            k.violation(
                ViolationKind::NotEmulated,
                "IoAllocateMdl with an Irp (or as a secondary buffer) is not emulated",
                format!("Irp {irp:p}, SecondaryBuffer {secondary}"),
            );
            return std::ptr::null_mut();
        }
        if length == 0 {
            k.parameter_violation("a non-zero Length", "Length 0".to_owned());
            return std::ptr::null_mut();
        }
        if k.inject_failure("IoAllocateMdl", "NULL") {
            return std::ptr::null_mut();
        }
        allocate(k, "IoAllocateMdl", address as usize, length) as PVOID
    })
}

/// `MmBuildMdlForNonPagedPool`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn mm_build_mdl_for_non_paged_pool(mdl: *mut MDL) {
    emulate(Routine::MmBuildMdlForNonPagedPool, |k| {
        if !is_live(k, mdl as usize) {
            k.parameter_violation(
                "an MDL from IoAllocateMdl",
                format!("{mdl:p} is not a live MDL"),
            );
            return;
        }
        let mut value = guest::read(mdl);
        let start = value.StartVa as usize + value.ByteOffset as usize;
        let length = value.ByteCount as usize;
        let block = lock(&k.pool).live_block_at(start);
        match block {
            Some((base, size, false)) if start + length <= base + size => {}
            Some((_, _, true)) => k.parameter_violation(
                "an MDL whose buffer is in nonpaged pool",
                format!("{start:#x} is in paged pool"),
            ),
            _ => k.parameter_violation(
                "an MDL whose buffer is in nonpaged pool",
                format!("{length} bytes at {start:#x} are not inside one nonpaged pool block"),
            ),
        }
        value.MappedSystemVa = start as PVOID;
        value.MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        guest::write(mdl, value);
    });
}

/// `MmMapLockedPagesSpecifyCache`: IRQL <= DISPATCH_LEVEL for a kernel-mode mapping.
pub(crate) extern "win64" fn mm_map_locked_pages_specify_cache(
    mdl: *mut MDL,
    access_mode: i8,
    _cache_type: u32,
    requested_address: PVOID,
    _bug_check_on_failure: u32,
    _priority: u32,
) -> PVOID {
    emulate(Routine::MmMapLockedPagesSpecifyCache, |k| {
        if !is_live(k, mdl as usize) {
            k.parameter_violation("a live MDL", format!("{mdl:p} is not a live MDL"));
            return std::ptr::null_mut();
        }
        if access_mode != KernelMode || !requested_address.is_null() {
            k.violation(
                ViolationKind::NotEmulated,
                "MmMapLockedPagesSpecifyCache: user-mode mappings are not emulated",
                format!("AccessMode {access_mode}, RequestedAddress {requested_address:p}"),
            );
            return std::ptr::null_mut();
        }
        let mut value = guest::read(mdl);
        let address = value.StartVa as usize + value.ByteOffset as usize;
        value.MappedSystemVa = address as PVOID;
        value.MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        guest::write(mdl, value);
        address as PVOID
    })
}

/// `IoFreeMdl`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn io_free_mdl(mdl: PVOID) {
    emulate(Routine::IoFreeMdl, |k| {
        let owner = lock(&k.objects)
            .mdls
            .get(&(mdl as usize))
            .map(|r| r.routine)
            .filter(|&routine| routine != "IoAllocateMdl");
        if let Some(owner) = owner {
            // An MDL FltLockUserBuffer, the I/O manager or the memory manager put in an
            // operation is the I/O system's to free when it completes (FltLockUserBuffer's
            // Remarks): freed here, it would be freed twice.
            k.parameter_violation(
                "an MDL the caller allocated with IoAllocateMdl (one in an operation's parameters is the I/O system's to free)",
                format!("{mdl:p} was allocated by {owner}"),
            );
            return;
        }
        let by = state::with(|s| s.callback.get());
        if let Err(problem) = free(k, mdl as usize, by) {
            k.violation(
                ViolationKind::PoolDoubleFree,
                "IoFreeMdl: an MDL from IoAllocateMdl, freed once",
                problem,
            );
        }
    });
}

/// MDLs still allocated when the driver is gone (`why`), each reported once, then forgotten.
pub(crate) fn report_leaks(k: &Kernel, why: &str) {
    let leaked: Vec<(usize, &'static str, &'static str)> = {
        let mut objects = lock(&k.objects);
        let leaked = objects
            .mdls
            .iter()
            .map(|(&at, r)| (at, r.routine, r.allocated_in))
            .collect();
        objects.mdls.clear();
        objects.freed_mdls.clear();
        leaked
    };
    for (mdl, routine, allocated_in) in leaked {
        k.violation(
            ViolationKind::ResourceLeak,
            "every MDL is freed (IoFreeMdl) or left to the I/O operation that completes it",
            format!("after {why}: MDL {mdl:#x} from {routine} in {allocated_in} never freed"),
        );
    }
}
