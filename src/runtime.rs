//! Kernel runtime pieces that a `no_std` Windows driver needs and that the `wdk` feature would
//! otherwise supply: the global allocator, the panic handler, and `_fltused`.
//!
//! Runs in the kernel. The allocator is callable at IRQL <= DISPATCH_LEVEL (non-paged pool).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use vigil_sys::{ExAllocatePool2, ExFreePoolWithTag, KeBugCheckEx, POOL_FLAG_NON_PAGED};

use crate::kernel::pool::tags;

/// Vigil's bug check code for a panic: 0xE0000000 | 'VGL' (customer codes have bit 29 set).
pub const VIGIL_PANIC_BUGCHECK: u32 = 0xE056_474C;

/// Global allocator on `ExAllocatePool2` (non-paged, non-executable, zeroed, tagged).
///
/// The driver allocates through explicit pool wrappers, not `alloc`; this allocator exists so
/// that any `alloc` use is safe and visible by its tag rather than a link error.
struct PoolAllocator;

// SAFETY: ExAllocatePool2 returns memory aligned to 16 bytes (MEMORY_ALLOCATION_ALIGNMENT on x64)
// or null; larger alignments are refused with null. Blocks are freed with the same tag.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > 16 {
            return ptr::null_mut();
        }
        // SAFETY: IRQL <= DISPATCH_LEVEL is the caller's contract for any allocation in this
        // driver; non-paged pool is valid there.
        unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, layout.size(), tags::ALLOC).cast() }
    }

    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        // SAFETY: `block` came from `alloc` above, with the same tag.
        unsafe { ExFreePoolWithTag(block.cast(), tags::ALLOC) }
    }
}

#[global_allocator]
static ALLOCATOR: PoolAllocator = PoolAllocator;

/// A panic in the kernel is a bug check (RULES.md, rule 22: never panic on input or exhaustion;
/// this is reached only by a bug). Parameter 1 is the source line, parameter 2 the column.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (line, column) = info.location().map_or((0, 0), |l| (l.line(), l.column()));
    // SAFETY: KeBugCheckEx may be called at any IRQL and does not return.
    unsafe { KeBugCheckEx(VIGIL_PANIC_BUGCHECK, line as usize, column as usize, 0, 0) }
}

/// Tells the MSVC-style linker that floating point is used without pulling in a CRT.
#[unsafe(no_mangle)]
#[used]
pub static _fltused: i32 = 0;

/// The precompiled `core` carries unwind tables that name the MSVC C++ frame handler. With
/// `panic = "abort"` Rust never unwinds, so the only way the kernel's dispatcher reaches this is
/// an SEH exception (from somewhere else) crossing a `core` frame: decline it, as a frame with no
/// handler would, and let the search continue (`ExceptionContinueSearch`).
#[unsafe(no_mangle)]
pub extern "C" fn __CxxFrameHandler3(
    _exception_record: *mut core::ffi::c_void,
    _establisher_frame: *mut core::ffi::c_void,
    _context: *mut core::ffi::c_void,
    _dispatcher_context: *mut core::ffi::c_void,
) -> i32 {
    /// `EXCEPTION_DISPOSITION::ExceptionContinueSearch`.
    const EXCEPTION_CONTINUE_SEARCH: i32 = 1;
    EXCEPTION_CONTINUE_SEARCH
}
