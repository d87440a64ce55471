//! The special pool's pages: address space reserved in large chunks and handed out in order,
//! so that the per-block page work is one `mprotect` at allocation and one at free, and the
//! unmapping is done in bulk.
//!
//! A chunk is reserved `PROT_NONE` (no memory behind it). A block takes its data pages and one
//! more page from the chunk's bump pointer and makes only the data pages read-write (raising
//! the protection of untouched pages needs no TLB shootdown): the page after them is still
//! `PROT_NONE` from the reservation and is the block's guard page, with no system call. At
//! free the data pages go back to `PROT_NONE`, so a use after free faults at once, and the
//! block joins a process-wide quarantine. When the quarantine is full, its oldest
//! [`RELEASE_BATCH`] blocks are unmapped together: sorted by address, neighbours coalesced (a
//! freed block's guard page is followed directly by the next block allocated), one `munmap` per
//! run, so the host's TLB shootdowns for unmapping are paid per batch rather than per block.
//!
//! Addresses are never handed out twice in a process (the bump pointer only grows, and a new
//! chunk is a new reservation), which is stricter than a quarantine window: a stale pointer to a
//! freed block faults until the block is unmapped, and never aliases a newer block.
//!
//! The kernel's mapping count stays low: freed blocks are `PROT_NONE` like the guard pages
//! around them, so the host merges them into one mapping; only live blocks split it.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

use crate::machine::pages::page_size;

/// Address space reserved at a time (a larger block gets a reservation of its own size).
const CHUNK: usize = 256 << 20;
/// Freed blocks kept `PROT_NONE` (their memory is still committed: this bounds it).
const QUARANTINE_BLOCKS: usize = 16_384;
/// Blocks unmapped together once the quarantine holds more than [`QUARANTINE_BLOCKS`].
const RELEASE_BATCH: usize = 2_048;

/// The reservation being handed out and the quarantine.
struct Arena {
    /// Next free address of the current reservation, and its end.
    next: usize,
    end: usize,
    /// Freed blocks, oldest first: (base, length including the guard page).
    quarantine: VecDeque<(usize, usize)>,
}

static ARENA: Mutex<Arena> = Mutex::new(Arena {
    next: 0,
    end: 0,
    quarantine: VecDeque::new(),
});

fn arena() -> std::sync::MutexGuard<'static, Arena> {
    ARENA
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pages of one special-pool block: `data_len` read-write bytes at `base` (page multiple),
/// then one guard page.
#[derive(Debug)]
pub(crate) struct BlockPages {
    base: usize,
    data_len: usize,
}

impl BlockPages {
    /// Takes `data_len` bytes (a page multiple) of read-write, zero-filled pages followed by a
    /// guard page.
    pub(crate) fn allocate(data_len: usize) -> io::Result<Self> {
        let page = page_size();
        let data_len = data_len.max(page).next_multiple_of(page);
        let total = data_len + page;
        let base = {
            let mut arena = arena();
            if arena.end - arena.next < total {
                let (next, end) = (arena.next, arena.end);
                let len = CHUNK.max(total);
                let fresh = reserve(len)?;
                if end > next {
                    // The old reservation's unused tail: never touched, handed back.
                    // SAFETY: [next, end) is reserved by this module and was never handed out.
                    unsafe { libc::munmap(next as *mut libc::c_void, end - next) };
                }
                arena.next = fresh;
                arena.end = fresh + len;
            }
            let base = arena.next;
            arena.next += total;
            base
        };
        // SAFETY: [base, base + data_len) lies in a reservation of this module that no other
        // block was given (the bump pointer moved past it under the lock).
        let rc = unsafe {
            libc::mprotect(
                base as *mut libc::c_void,
                data_len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { base, data_len })
    }

    /// The first data byte.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// Data bytes (the guard page follows them).
    pub(crate) fn data_len(&self) -> usize {
        self.data_len
    }

    /// The data and the guard page: the range a fault inside the block can hit.
    pub(crate) fn len(&self) -> usize {
        self.data_len + page_size()
    }

    /// Makes the block inaccessible and quarantines it; unmaps the oldest quarantined blocks
    /// in one batch when the quarantine is full.
    pub(crate) fn retire(self) {
        // SAFETY: the block's own data pages, no longer handed out (the caller retires a
        // block once, after the pool forgot it).
        unsafe {
            libc::mprotect(
                self.base as *mut libc::c_void,
                self.data_len,
                libc::PROT_NONE,
            )
        };
        let released: Vec<(usize, usize)> = {
            let mut arena = arena();
            arena.quarantine.push_back((self.base, self.len()));
            if arena.quarantine.len() > QUARANTINE_BLOCKS + RELEASE_BATCH {
                arena.quarantine.drain(..RELEASE_BATCH).collect()
            } else {
                Vec::new()
            }
        };
        for (base, len) in coalesce(released) {
            // SAFETY: quarantined blocks belong to this module, are inaccessible, and nothing
            // refers to them any more: unmapping them ends their quarantine.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

/// Reserves `len` bytes of address space with no access and no memory behind it.
fn reserve(len: usize) -> io::Result<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing has no
    // preconditions; the result is checked.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(base as usize)
}

/// Sorts ranges and merges those that touch: the unmaps one batch needs.
fn coalesce(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (base, len) in ranges {
        match runs.last_mut() {
            Some((run_base, run_len)) if *run_base + *run_len == base => *run_len += len,
            _ => runs.push((base, len)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_coalesce_and_gaps_split() {
        assert_eq!(
            coalesce(vec![(0x3000, 0x1000), (0x1000, 0x2000), (0x6000, 0x1000)]),
            [(0x1000, 0x3000), (0x6000, 0x1000)]
        );
        assert!(coalesce(Vec::new()).is_empty());
    }

    #[test]
    fn blocks_are_zeroed_guarded_and_never_overlap() {
        let page = page_size();
        let a = BlockPages::allocate(page).expect("a");
        let b = BlockPages::allocate(3 * page).expect("b");
        assert_eq!((a.data_len(), b.data_len()), (page, 3 * page));
        // SAFETY: a's data pages are read-write and a page long.
        let bytes = unsafe { std::slice::from_raw_parts(a.base() as *const u8, page) };
        assert!(bytes.iter().all(|&x| x == 0));
        let (a_end, b_end) = (a.base() + a.len(), b.base() + b.len());
        assert!(a_end <= b.base() || b_end <= a.base(), "disjoint");
        // The page after a's data is its guard: no access, as the host's map of this process
        // says.
        assert_eq!(protection_of(a.base() + page), Some("---p".to_owned()));
        assert_eq!(protection_of(a.base()), Some("rw-p".to_owned()));
        let freed = a.base();
        a.retire();
        assert_eq!(
            protection_of(freed),
            Some("---p".to_owned()),
            "freed pages fault"
        );
        b.retire();
    }

    /// `MM_USER_PROBE_ADDRESS` splits the host's address space as Windows' value splits its own:
    /// what kernel-sim hands the driver as kernel memory lies above it.
    #[test]
    fn kernel_memory_lies_above_the_user_probe_address() {
        let limit = crate::machine::signals::MM_USER_PROBE_ADDRESS;
        let pages = BlockPages::allocate(page_size()).expect("pages");
        let heap = crate::machine::guest::GuestAlloc::zeroed(64);
        let region = crate::machine::pages::Region::map(page_size()).expect("region");
        for (what, address) in [
            ("special pool", pages.base()),
            ("host heap (standard pool, kernel objects)", heap.address()),
            ("mappings (images, stacks)", region.base()),
        ] {
            assert!(
                address >= limit,
                "{what} at {address:#x} is below {limit:#x}"
            );
        }
        pages.retire();
    }

    /// The protection column of the mapping that holds `address`, from `/proc/self/maps`.
    fn protection_of(address: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let (start, end) = range.split_once('-')?;
            let (start, end) = (
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            );
            (start <= address && address < end).then(|| perms.to_owned())
        })
    }
}
