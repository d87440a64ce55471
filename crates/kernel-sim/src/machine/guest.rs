//! Typed access to memory whose address the driver supplied (out-parameters, structures,
//! strings, lock words).
//!
//! The driver may pass a wild pointer. On Windows that is a bug check; here the access faults,
//! the fault handler abandons the driver call (this code runs on the driver stack, inside the
//! call), and the run reports the fault with the routine that was serving the driver. The
//! callers in the emulation hold no lock across these accesses, so abandoning is clean.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize};

use vigil_sys::UNICODE_STRING;

/// Reads a `T` from a driver-supplied address.
///
/// `T` is plain data (integers, pointers, `repr(C)` structures of them): any bit pattern the
/// driver left there is a valid value.
pub(crate) fn read<T: Copy>(address: *const T) -> T {
    // SAFETY: see the module docs: a bad address faults and ends the driver call, it is never
    // silently read; the read tolerates misalignment.
    unsafe { std::ptr::read_unaligned(address) }
}

/// Writes a `T` to a driver-supplied address.
pub(crate) fn write<T: Copy>(address: *mut T, value: T) {
    // SAFETY: see the module docs: a bad address faults and ends the driver call; the write
    // tolerates misalignment.
    unsafe { std::ptr::write_unaligned(address, value) }
}

/// Copies `len` bytes from a driver-supplied address.
pub(crate) fn read_bytes(address: *const u8, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    if len > 0 {
        // SAFETY: see the module docs; `out` is a fresh buffer of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(address, out.as_mut_ptr(), len) };
    }
    out
}

/// Copies bytes into driver-supplied memory.
pub(crate) fn write_bytes(address: *mut u8, bytes: &[u8]) {
    if !bytes.is_empty() {
        // SAFETY: see the module docs; `bytes` is a valid source of its length.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), address, bytes.len()) };
    }
}

/// A driver `UNICODE_STRING`, decoded; `None` for a null pointer. Odd lengths or a length
/// above `MaximumLength` are returned as `Err` with a description (a malformed string).
pub(crate) fn unicode_string(address: *const UNICODE_STRING) -> Option<Result<String, String>> {
    if address.is_null() {
        return None;
    }
    let s = read(address);
    if !s.Length.is_multiple_of(2) {
        return Some(Err(format!("UNICODE_STRING Length {} is odd", s.Length)));
    }
    if s.Length > s.MaximumLength {
        return Some(Err(format!(
            "UNICODE_STRING Length {} exceeds MaximumLength {}",
            s.Length, s.MaximumLength
        )));
    }
    if s.Length > 0 && s.Buffer.is_null() {
        return Some(Err(
            "UNICODE_STRING has a null Buffer and a non-zero Length".into(),
        ));
    }
    let bytes = read_bytes(s.Buffer.cast::<u8>(), usize::from(s.Length));
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Some(Ok(String::from_utf16_lossy(&units)))
}

/// The driver's 32-bit word at `address` as an atomic; `None` if misaligned.
pub(crate) fn atomic_i32<'a>(address: *mut i32) -> Option<&'a AtomicI32> {
    if !address.is_aligned() {
        return None;
    }
    // SAFETY: aligned (checked); the memory is the driver's object, which the driver keeps
    // alive while it calls the routine (a stale pointer faults, see the module docs); every
    // concurrent access kernel-sim makes to it is atomic.
    Some(unsafe { AtomicI32::from_ptr(address) })
}

/// The driver's 32-bit word at `address` as an atomic; `None` if misaligned.
pub(crate) fn atomic_u32<'a>(address: *mut u32) -> Option<&'a AtomicU32> {
    if !address.is_aligned() {
        return None;
    }
    // SAFETY: as in atomic_i32.
    Some(unsafe { AtomicU32::from_ptr(address) })
}

/// The driver's pointer-sized word at `address` as an atomic; `None` if misaligned.
pub(crate) fn atomic_usize<'a>(address: *mut usize) -> Option<&'a AtomicUsize> {
    if !address.is_aligned() {
        return None;
    }
    // SAFETY: as in atomic_i32.
    Some(unsafe { AtomicUsize::from_ptr(address) })
}

/// Zeroed memory kernel-sim hands to the driver as a kernel object (a `DRIVER_OBJECT`, a device
/// object, a thread object body, a filter or port handle), 16-byte aligned, freed on drop.
///
/// # Invariants
///
/// `ptr` is a live allocation of `layout`, owned by this value.
#[derive(Debug)]
pub(crate) struct GuestAlloc {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

// SAFETY: the memory is shared with driver code by design; kernel-sim itself accesses it only
// through `guest` accessors and atomics, from any thread.
unsafe impl Send for GuestAlloc {}
// SAFETY: as above.
unsafe impl Sync for GuestAlloc {}

impl GuestAlloc {
    /// `size` zeroed bytes.
    pub(crate) fn zeroed(size: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(size.max(16), 16).expect("object layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Self { ptr, layout }
    }

    /// Zeroed memory for one `T` followed by `extra` bytes.
    pub(crate) fn for_type<T>(extra: usize) -> Self {
        Self::zeroed(size_of::<T>() + extra)
    }

    /// The address as a `T` pointer.
    pub(crate) fn as_ptr<T>(&self) -> *mut T {
        self.ptr.cast()
    }

    /// The address.
    pub(crate) fn address(&self) -> usize {
        self.ptr as usize
    }
}

impl Drop for GuestAlloc {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout and owned (invariant).
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// A `UNICODE_STRING` and its buffer, in memory the driver can read.
#[derive(Debug)]
pub(crate) struct GuestUnicode {
    header: GuestAlloc,
    _buffer: GuestAlloc,
}

impl GuestUnicode {
    pub(crate) fn new(text: &str) -> Self {
        let units: Vec<u16> = text.encode_utf16().collect();
        let buffer = GuestAlloc::zeroed((units.len() + 1) * 2);
        write_bytes(
            buffer.as_ptr(),
            &units
                .iter()
                .flat_map(|u| u.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let header = GuestAlloc::for_type::<UNICODE_STRING>(0);
        let length = u16::try_from(units.len() * 2).expect("short string");
        write(
            header.as_ptr::<UNICODE_STRING>(),
            UNICODE_STRING {
                Length: length,
                MaximumLength: length + 2,
                Buffer: buffer.as_ptr(),
            },
        );
        Self {
            header,
            _buffer: buffer,
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut UNICODE_STRING {
        self.header.as_ptr()
    }
}
