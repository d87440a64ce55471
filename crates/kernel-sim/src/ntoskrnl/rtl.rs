//! `memcpy`, `memmove`, `memset`, `memcmp`: the C runtime routines ntoskrnl exports and the
//! compiler calls. Any IRQL. Kept outside [`emulate`](crate::kernel::emulate)'s bookkeeping
//! except for the overlap check: they are called for every structure copy.

use std::ffi::c_void;

use crate::kernel::{Kernel, current_kernel};
use crate::report::ViolationKind;

fn kernel() -> Option<&'static Kernel> {
    let k = current_kernel();
    // SAFETY: set by call_driver for the driver call this thread is in (see kernel::emulate);
    // the kernel outlives the call. The 'static lifetime does not escape this module's use
    // within the call.
    (!k.is_null()).then(|| unsafe { &*k })
}

/// `memcpy`.
pub(crate) extern "win64" fn memcpy(
    dest: *mut c_void,
    src: *const c_void,
    count: usize,
) -> *mut c_void {
    if count == 0 {
        return dest;
    }
    let (d, s) = (dest as usize, src as usize);
    if d < s.wrapping_add(count) && s < d.wrapping_add(count) && d != s {
        if let Some(k) = kernel() {
            k.violation(
                ViolationKind::Parameter,
                "memcpy: non-overlapping buffers (memmove otherwise)",
                format!("{dest:p} and {src:p} overlap over {count} bytes"),
            );
        }
        // SAFETY: the driver's buffers (a bad pointer faults and ends the call); copy handles
        // the overlap the driver should not have asked for.
        unsafe { std::ptr::copy(src.cast::<u8>(), dest.cast::<u8>(), count) };
        return dest;
    }
    // SAFETY: the driver's buffers, non-overlapping (checked); a bad pointer faults and ends
    // the driver call.
    unsafe { std::ptr::copy_nonoverlapping(src.cast::<u8>(), dest.cast::<u8>(), count) };
    dest
}

/// `memmove`.
pub(crate) extern "win64" fn memmove(
    dest: *mut c_void,
    src: *const c_void,
    count: usize,
) -> *mut c_void {
    if count == 0 {
        return dest;
    }
    // SAFETY: the driver's buffers; a bad pointer faults and ends the driver call.
    unsafe { std::ptr::copy(src.cast::<u8>(), dest.cast::<u8>(), count) };
    dest
}

/// `memset`.
pub(crate) extern "win64" fn memset(dest: *mut c_void, value: i32, count: usize) -> *mut c_void {
    if count == 0 {
        return dest;
    }
    // SAFETY: the driver's buffer; a bad pointer faults and ends the driver call.
    unsafe { std::ptr::write_bytes(dest.cast::<u8>(), value.to_le_bytes()[0], count) };
    dest
}

/// `memcmp`.
pub(crate) extern "win64" fn memcmp(a: *const c_void, b: *const c_void, count: usize) -> i32 {
    if count == 0 {
        return 0;
    }
    // SAFETY: the driver's buffer of `count` bytes; a bad pointer faults and ends the call.
    let a = unsafe { std::slice::from_raw_parts(a.cast::<u8>(), count) };
    // SAFETY: as above.
    let b = unsafe { std::slice::from_raw_parts(b.cast::<u8>(), count) };
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map_or(0, |(x, y)| i32::from(*x) - i32::from(*y))
}
