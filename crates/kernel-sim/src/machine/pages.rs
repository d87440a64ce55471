//! Anonymous page mappings with a safe API (`mmap`, `mprotect`, `munmap`).

use std::io;
use std::sync::OnceLock;

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096)
    })
}

/// An anonymous, private mapping, unmapped on drop unless [`Region::leak_into_quarantine`]
/// keeps its address range reserved.
///
/// # Invariants
///
/// `[base, base + len)` is a mapping this value owns; `len` is a multiple of the page size.
#[derive(Debug)]
pub(crate) struct Region {
    base: usize,
    len: usize,
}

impl Region {
    /// Maps `len` bytes (rounded up to pages), read-write, zero-filled.
    pub(crate) fn map(len: usize) -> io::Result<Self> {
        let len = len.max(1).next_multiple_of(page_size());
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
        // preconditions; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: base as usize,
            len,
        })
    }

    /// Base address.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Changes the protection of `[base + offset, base + offset + len)` (page-aligned).
    pub(crate) fn protect(&self, offset: usize, len: usize, prot: i32) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len)
            || !offset.is_multiple_of(page_size())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "protect outside the region",
            ));
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside the mapping this value owns (checked above).
        let rc = unsafe { libc::mprotect((self.base + offset) as *mut libc::c_void, len, prot) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes the whole region inaccessible and hands it to the process-wide quarantine: the
    /// addresses stay reserved (a stale access faults) until the quarantine recycles them.
    pub(crate) fn leak_into_quarantine(self) {
        let _ = self.protect(0, self.len, libc::PROT_NONE);
        let region = std::mem::ManuallyDrop::new(self);
        quarantine::push(region.base, region.len);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by this value and no longer used (invariant).
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Freed pool blocks and unloaded images, kept `PROT_NONE` so that a use after free faults at a
/// known address. Linux limits the number of mappings of a process (`vm.max_map_count`, 65530
/// by default), so the oldest entries are unmapped once the quarantine holds
/// [`quarantine::LIMIT`] of them: addresses are not reused within a window of that many frees.
pub(crate) mod quarantine {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// How many freed regions stay reserved, process-wide.
    pub(crate) const LIMIT: usize = 16_384;

    static QUARANTINE: Mutex<VecDeque<(usize, usize)>> = Mutex::new(VecDeque::new());

    pub(super) fn push(base: usize, len: usize) {
        let evicted = {
            let mut queue = QUARANTINE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.push_back((base, len));
            if queue.len() > LIMIT {
                queue.pop_front()
            } else {
                None
            }
        };
        if let Some((base, len)) = evicted {
            // SAFETY: the region was handed over by Region::leak_into_quarantine, which gave up
            // ownership; nothing else maps or uses it.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }

    /// Whether `address` lies in a quarantined region (a freed block or an unloaded image).
    pub(crate) fn contains(address: usize) -> bool {
        let queue = QUARANTINE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queue
            .iter()
            .any(|&(base, len)| address >= base && address - base < len)
    }
}
