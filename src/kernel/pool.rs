//! Non-paged pool: tags, and an owning box for one value.
//!
//! Every allocation is `ExAllocatePool2(POOL_FLAG_NON_PAGED)`: zeroed, tagged, non-executable,
//! and it can fail, which the caller sees as `STATUS_INSUFFICIENT_RESOURCES` (RULES.md, rule 20).

use core::ops::Deref;
use core::ptr::NonNull;

use vigil_sys::{ExAllocatePool2, ExFreePoolWithTag, POOL_FLAG_NON_PAGED};

use crate::error::{NtStatus, Result};

/// Pool tags, one per kind of allocation, so that a leak report names its owner.
pub mod tags {
    /// Builds a tag from four ASCII bytes, as the WDK's `'xxxx'` literals read in a debugger.
    const fn tag(bytes: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*bytes)
    }
    /// The driver's globals.
    pub const GLOBALS: u32 = tag(b"VgGl");
    /// The event ring's storage.
    pub const RING: u32 = tag(b"VgRn");
    /// Batch and message buffers of the delivery thread and the port.
    pub const MESSAGE: u32 = tag(b"VgMs");
    /// Stream-handle contexts.
    pub const CONTEXT: u32 = tag(b"VgCx");
    /// Registry reads.
    pub const REGISTRY: u32 = tag(b"VgRg");
    /// The global allocator (unused by design; a block with this tag is a finding).
    pub const ALLOC: u32 = tag(b"VgAl");
}

/// One `T` in non-paged pool, freed on drop.
///
/// # Invariants
///
/// `ptr` points to a live, initialized `T` allocated with `tag`; the allocation is owned.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    tag: u32,
}

impl<T> PoolBox<T> {
    /// Moves `value` into a new non-paged allocation. IRQL <= DISPATCH_LEVEL.
    pub fn try_new(value: T, tag: u32) -> Result<Self> {
        const { assert!(core::mem::align_of::<T>() <= 16, "pool blocks are 16-byte aligned") };
        // SAFETY: non-paged pool may be requested at IRQL <= DISPATCH_LEVEL.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size_of::<T>(), tag) };
        let ptr = NonNull::new(raw.cast::<T>()).ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        // SAFETY: `ptr` is a fresh, suitably aligned block of size_of::<T>() bytes.
        unsafe { ptr.as_ptr().write(value) };
        Ok(Self { ptr, tag })
    }

    /// The stable address of the value (pool blocks never move).
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// Gives up ownership; the block must come back through [`PoolBox::from_raw`].
    pub fn into_raw(this: Self) -> *mut T {
        let ptr = this.ptr.as_ptr();
        core::mem::forget(this);
        ptr
    }

    /// Takes back ownership of a block from [`PoolBox::into_raw`].
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw` of a `PoolBox<T>` with this `tag` and is not owned elsewhere.
    pub unsafe fn from_raw(ptr: *mut T, tag: u32) -> Self {
        // SAFETY: non-null by the contract (into_raw never returns null).
        Self { ptr: unsafe { NonNull::new_unchecked(ptr) }, tag }
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: by the invariant the value is live and initialized; shared access only.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: the value is live (invariant) and dropped exactly once, here.
        unsafe { self.ptr.as_ptr().drop_in_place() };
        // SAFETY: the block was allocated with `self.tag` and is freed exactly once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag) };
    }
}

// SAFETY: a PoolBox owns its T like a Box does; sending it sends the T.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: shared access hands out &T only.
unsafe impl<T: Sync> Sync for PoolBox<T> {}
