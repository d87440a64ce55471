//! A `static` holding a value that must be built in place at run time (a KEVENT cannot move once
//! initialized): initialized once at the top of DriverEntry, then shared.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// Storage for one `T` in image memory (non-paged), initialized in place once.
///
/// # Invariants
///
/// `value` is initialized once `ready` is true (Release after initialization, Acquire to read);
/// it is never moved or dropped (image memory goes away with the image).
pub struct StaticInPlace<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    ready: AtomicBool,
}

// SAFETY: after initialization only shared references are handed out, so Sync is T's Sync.
unsafe impl<T: Sync> Sync for StaticInPlace<T> {}

impl<T> StaticInPlace<T> {
    /// Uninitialized storage.
    pub const fn new() -> Self {
        Self {
            value: UnsafeCell::new(MaybeUninit::uninit()),
            ready: AtomicBool::new(false),
        }
    }

    /// Initializes the value with `init(slot)`, then publishes it.
    ///
    /// # Safety
    ///
    /// Called once, before any other thread can call [`StaticInPlace::get`] (DriverEntry, before
    /// registration); `init` initializes the whole value at the pointer it is given.
    pub unsafe fn init(&self, init: impl FnOnce(*mut T)) -> &T {
        init(self.value.get().cast());
        self.ready.store(true, Ordering::Release);
        self.get_unchecked()
    }

    /// The value, once initialized.
    pub fn get(&self) -> Option<&T> {
        self.ready
            .load(Ordering::Acquire)
            .then(|| self.get_unchecked())
    }

    /// The value; only called once `ready` is set.
    fn get_unchecked(&self) -> &T {
        // SAFETY: callers check `ready` (or just set it): the value is initialized (invariant),
        // and only shared references to it are ever made.
        let value = unsafe { &*self.value.get() };
        // SAFETY: as above.
        unsafe { value.assume_init_ref() }
    }
}
