//! Non-paged pool: tags, an owning byte buffer, and a typed box (`PoolBox`, built in place through
//! `UninitPoolBox`).
//!
//! Every allocation is `ExAllocatePool2(POOL_FLAG_NON_PAGED)`: zeroed, tagged, non-executable,
//! and it can fail, which the caller sees as `STATUS_INSUFFICIENT_RESOURCES` (RULES.md, rule 20).

use core::ptr::NonNull;

use vigil_sys::{ExAllocatePool2, ExFreePoolWithTag, POOL_FLAG_NON_PAGED};

use crate::error::{NtStatus, Result};

/// Pool tags, one per kind of allocation, so that a leak report names its owner.
pub mod tags {
    /// Builds a tag from four ASCII bytes, as the WDK's `'xxxx'` literals read in a debugger.
    const fn tag(bytes: [u8; 4]) -> u32 {
        u32::from_le_bytes(bytes)
    }
    /// The driver's globals.
    pub const GLOBALS: u32 = tag(*b"VgGl");
    /// The event ring's storage.
    pub const RING: u32 = tag(*b"VgRn");
    /// Batch and message buffers of the delivery thread and the port.
    pub const MESSAGE: u32 = tag(*b"VgMs");
    /// Stream-handle contexts.
    pub const CONTEXT: u32 = tag(*b"VgCx");
    /// Stream contexts (a file's ID, shared by its handles).
    pub const STREAM_CONTEXT: u32 = tag(*b"VgSt");
    /// Registry reads.
    pub const REGISTRY: u32 = tag(*b"VgRg");
    /// The process table.
    pub const PROCESSES: u32 = tag(*b"VgPr");
    /// The global allocator (unused by design; a block with this tag is a finding).
    pub const ALLOC: u32 = tag(*b"VgAl");
}

/// A zeroed byte buffer in non-paged pool, freed on drop.
///
/// # Invariants
///
/// `ptr` points to `len` bytes allocated with `tag`, owned by this value, 16-byte aligned.
pub struct PoolBuffer {
    ptr: NonNull<u8>,
    len: usize,
    tag: u32,
}

// SAFETY: the buffer is plain owned memory.
unsafe impl Send for PoolBuffer {}
// SAFETY: shared access hands out `&[u8]` only.
unsafe impl Sync for PoolBuffer {}

impl PoolBuffer {
    /// Allocates `len` zeroed bytes. IRQL <= DISPATCH_LEVEL.
    pub fn try_zeroed(len: usize, tag: u32) -> Result<Self> {
        // SAFETY: non-paged pool may be requested at IRQL <= DISPATCH_LEVEL; zeroed by default.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len, tag) };
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(Self { ptr, len, tag })
    }

    /// Allocates `len` bytes left uninitialized (`POOL_FLAG_UNINITIALIZED`): only for the
    /// `uninit-send` broken twin, which must leak stale pool bytes into a message.
    pub fn try_uninit(len: usize, tag: u32) -> Result<Self> {
        // SAFETY: non-paged pool at IRQL <= DISPATCH_LEVEL; the bytes are never read by the driver.
        let raw = unsafe {
            ExAllocatePool2(
                POOL_FLAG_NON_PAGED | vigil_sys::POOL_FLAG_UNINITIALIZED,
                len,
                tag,
            )
        };
        let ptr = NonNull::new(raw.cast::<u8>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(Self { ptr, len, tag })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` initialized (zeroed) bytes, owned (invariant).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The start of the block, for routines that fill it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for PoolBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated with `self.tag` (invariant), freed exactly once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag) };
    }
}

/// A zeroed block for one `T` in non-paged pool, not yet a `T`: the owner builds the value in
/// place (for types that cannot move once built: KEVENTs, locks) and then declares it built
/// with [`UninitPoolBox::assume_init`]. Freed on drop without dropping any `T`.
///
/// # Invariants
///
/// `ptr` points to a block of `size_of::<T>()` bytes allocated with `tag`, owned by this value,
/// suitably aligned for `T`.
pub struct UninitPoolBox<T> {
    ptr: NonNull<T>,
    tag: u32,
}

impl<T> UninitPoolBox<T> {
    /// Pool blocks are 16-byte aligned (`MEMORY_ALLOCATION_ALIGNMENT` on x64); `T` must need no
    /// more, checked at compile time for every `T` this is used with.
    const ALIGNED: () = assert!(align_of::<T>() <= 16, "pool blocks are 16-byte aligned");

    /// Allocates a zeroed block for one `T`. IRQL <= DISPATCH_LEVEL.
    pub fn try_new(tag: u32) -> Result<Self> {
        let () = Self::ALIGNED;
        // SAFETY: non-paged pool may be requested at IRQL <= DISPATCH_LEVEL; zeroed by default.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size_of::<T>(), tag) };
        let ptr = NonNull::new(raw.cast::<T>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(Self { ptr, tag })
    }

    /// The block, for in-place construction.
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Declares the value built.
    ///
    /// # Safety
    ///
    /// Every field of the `T` at [`UninitPoolBox::as_mut_ptr`] has been initialized.
    pub unsafe fn assume_init(self) -> PoolBox<T> {
        let this = core::mem::ManuallyDrop::new(self);
        PoolBox {
            ptr: this.ptr,
            tag: this.tag,
        }
    }
}

impl<T> Drop for UninitPoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: allocated with `self.tag` (invariant), freed exactly once; no `T` to drop.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag) };
    }
}

/// One `T` in non-paged pool, dropped and freed on drop: the pool's `Box`.
///
/// # Invariants
///
/// `ptr` points to a live `T` in a block allocated with `tag`, owned by this value.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    tag: u32,
}

// SAFETY: owns its `T` like a Box.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: shared access hands out `&T` only.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    /// The stable address of the value.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Gives up ownership; [`PoolBox::from_raw`] takes it back.
    pub fn into_raw(self) -> *mut T {
        core::mem::ManuallyDrop::new(self).ptr.as_ptr()
    }

    /// Takes back ownership from [`PoolBox::into_raw`]; `None` for null.
    ///
    /// # Safety
    ///
    /// `ptr` is null or came from `into_raw` of a box with this `tag`, and is owned by nothing
    /// else.
    pub unsafe fn from_raw(ptr: *mut T, tag: u32) -> Option<Self> {
        NonNull::new(ptr).map(|ptr| Self { ptr, tag })
    }
}

impl<T> core::ops::Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: live and owned (invariant); shared access.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: live and owned (invariant): dropped in place exactly once.
        unsafe { core::ptr::drop_in_place(self.ptr.as_ptr()) };
        // SAFETY: allocated with `self.tag` (invariant), freed exactly once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag) };
    }
}
