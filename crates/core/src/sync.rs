//! The one module that chooses between `core` primitives and loom's (tokio's `loom` facade, in
//! small). Every other module of the crate takes its atomics and cells from here, so the same logic
//! runs in the kernel, in user mode and under the model checker.
//!
//! Beside the atomics it provides the two things loom needs to see what plain memory accesses do:
//! an `UnsafeCell` with loom's closure API, and the ring's storage view ([`RingMemory`]), whose
//! record headers are loom atomics and whose bytes are shadowed by loom cells under `cfg(loom)`.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What the loom platform is built from; only that platform uses it.
#[cfg(loom)]
pub(crate) mod model {
    pub(crate) use loom::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
    pub(crate) use loom::thread::yield_now;
}

/// Whether a loom model is unwinding from a failure it found: loom's objects are gone then, so the
/// core's drop glue must not touch them (it would abort the test process instead of reporting).
/// Always `false` outside loom.
#[inline]
pub(crate) fn model_unwinding() -> bool {
    #[cfg(loom)]
    {
        std::thread::panicking()
    }
    #[cfg(not(loom))]
    {
        false
    }
}

#[cfg(not(loom))]
mod cell {
    /// `core::cell::UnsafeCell` with loom's closure API.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a pointer for reading.
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a pointer for writing.
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}
#[cfg(loom)]
mod cell {
    pub(crate) use loom::cell::UnsafeCell;
}
pub(crate) use cell::UnsafeCell;

#[cfg(not(loom))]
mod memory {
    use super::AtomicU64;
    use core::ptr::NonNull;

    /// The ring's byte storage. Record headers are `AtomicU64`s inside the bytes themselves.
    ///
    /// # Invariants
    /// `base` is 8-aligned and valid for reads and writes of `len` initialized bytes for the whole
    /// life of the value; `len` is a multiple of 8.
    #[derive(Debug)]
    pub(crate) struct RingMemory {
        base: NonNull<u8>,
        len: usize,
    }

    impl RingMemory {
        /// # Safety
        /// `base` must be 8-aligned and valid for reads and writes of `len` bytes, which the caller
        /// gives to this value alone for its whole life; `len` is a multiple of 8. The bytes need not
        /// be initialized: they are zeroed here.
        pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
            // SAFETY: the caller gives `len` writable bytes at `base`.
            unsafe { base.as_ptr().write_bytes(0, len) };
            Self { base, len }
        }

        /// The header word at byte offset `offset`.
        ///
        /// The caller (the ring) passes an 8-aligned `offset < len`.
        pub(crate) fn header(&self, offset: usize) -> &AtomicU64 {
            debug_assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
            let word = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: `base + offset` is 8-aligned and in bounds (invariant and the ring's offsets),
            // the bytes are initialized, and every access to a header word is atomic while the word
            // is a header; plain accesses to the same bytes are ordered against it by the ring's
            // head/tail/commit protocol.
            unsafe { AtomicU64::from_ptr(word.cast()) }
        }

        /// Bytes `offset..offset + len` for writing. The ring hands each range to one owner at a time.
        ///
        /// # Safety
        /// The range is in bounds and no other reference to it exists while the result lives.
        #[expect(
            clippy::mut_from_ref,
            reason = "the ring's reservation makes the range exclusive"
        )]
        pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
            let start = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: in bounds and exclusive by the caller's contract; bytes initialized.
            unsafe { core::slice::from_raw_parts_mut(start, len) }
        }

        /// Bytes `offset..offset + len` for reading.
        ///
        /// # Safety
        /// The range is in bounds and nobody writes it while the result lives.
        pub(crate) unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
            let start = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: in bounds and not written, by the caller's contract; bytes initialized.
            unsafe { core::slice::from_raw_parts(start, len) }
        }

        /// Zeroes bytes `offset..offset + len`, header words included.
        ///
        /// The caller (the ring's consumer) owns the range: in bounds, and no other access to it
        /// until the consumer gives it back with a release store.
        pub(crate) fn zero(&self, offset: usize, len: usize) {
            debug_assert!(offset + len <= self.len);
            let start = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: in bounds and owned by the caller (above); plain writes are ordered against
            // the atomic header accesses by the ring's tail release/acquire.
            unsafe { start.write_bytes(0, len) };
        }

        /// Records that the caller writes `offset..offset + len` now (seen by loom only).
        #[expect(clippy::unused_self, reason = "same signature as the loom version")]
        pub(crate) fn track_write(&self, _offset: usize, _len: usize) {}

        /// Records that the caller reads `offset..offset + len` now (seen by loom only).
        #[expect(clippy::unused_self, reason = "same signature as the loom version")]
        pub(crate) fn track_read(&self, _offset: usize, _len: usize) {}
    }
}
#[cfg(loom)]
mod memory {
    use super::AtomicU64;
    use core::ptr::NonNull;
    use std::boxed::Box;
    use std::vec::Vec;

    /// The ring's byte storage as loom sees it: headers are loom atomics beside the bytes, and each
    /// 8-byte granule has a loom cell whose accesses mirror the plain reads and writes, so loom's
    /// causality checker sees every race on record contents.
    ///
    /// # Invariants
    /// As the non-loom version; `headers` and `granules` have `len / 8` entries.
    #[derive(Debug)]
    pub(crate) struct RingMemory {
        base: NonNull<u8>,
        len: usize,
        headers: Box<[AtomicU64]>,
        granules: Box<[loom::cell::UnsafeCell<()>]>,
    }

    impl RingMemory {
        /// # Safety
        /// As the non-loom version.
        pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
            // SAFETY: the caller gives `len` writable bytes at `base`.
            unsafe { base.as_ptr().write_bytes(0, len) };
            let count = len / 8;
            Self {
                base,
                len,
                headers: (0..count)
                    .map(|_| AtomicU64::new(0))
                    .collect::<Vec<_>>()
                    .into(),
                granules: (0..count)
                    .map(|_| loom::cell::UnsafeCell::new(()))
                    .collect::<Vec<_>>()
                    .into(),
            }
        }

        pub(crate) fn header(&self, offset: usize) -> &AtomicU64 {
            &self.headers[offset / 8]
        }

        /// # Safety
        /// As the non-loom version.
        #[expect(
            clippy::mut_from_ref,
            reason = "the ring's reservation makes the range exclusive"
        )]
        pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
            assert!(offset + len <= self.len);
            let start = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: in bounds and exclusive by the caller's contract; bytes initialized.
            unsafe { core::slice::from_raw_parts_mut(start, len) }
        }

        /// # Safety
        /// As the non-loom version.
        pub(crate) unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
            assert!(offset + len <= self.len);
            let start = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: in bounds and not written, by the caller's contract; bytes initialized.
            unsafe { core::slice::from_raw_parts(start, len) }
        }

        /// As the non-loom version; the header atomics in the range are cleared too (relaxed:
        /// the consumer's release of `tail` orders them, as it orders the bytes).
        pub(crate) fn zero(&self, offset: usize, len: usize) {
            assert!(offset + len <= self.len);
            self.track_write(offset, len);
            for header in &self.headers[offset / 8..(offset + len).div_ceil(8)] {
                header.store(0, super::Ordering::Relaxed);
            }
            let start = self.base.as_ptr().wrapping_add(offset);
            // SAFETY: in bounds and owned by the caller.
            unsafe { start.write_bytes(0, len) };
        }

        pub(crate) fn track_write(&self, offset: usize, len: usize) {
            for granule in &self.granules[offset / 8..(offset + len).div_ceil(8)] {
                granule.with_mut(|_| ());
            }
        }

        pub(crate) fn track_read(&self, offset: usize, len: usize) {
            for granule in &self.granules[offset / 8..(offset + len).div_ceil(8)] {
                granule.with(|_| ());
            }
        }
    }
}
pub(crate) use memory::RingMemory;
