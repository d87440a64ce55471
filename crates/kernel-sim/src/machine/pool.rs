//! The special pool: every block on its own pages, right-aligned against a `PROT_NONE` guard
//! page, as Driver Verifier's special pool does.
//!
//! * A write past the end of a block hits the guard page (a fault, reported with the block);
//!   the few bytes between the end of the block and the guard (the block start keeps the
//!   16-byte alignment of `MEMORY_ALLOCATION_ALIGNMENT`) and the bytes before the block on its
//!   first page are filled with [`SLACK_FILL`] and checked at free.
//! * Blocks are zeroed (`ExAllocatePool2`'s contract) or, with `POOL_FLAG_UNINITIALIZED`,
//!   filled with [`POOL_POISON`], so uninitialized bytes reaching user mode can be recognized.
//! * A freed block's pages become `PROT_NONE` and go to the quarantine: a use after free
//!   faults, and the address is never reused in the process. The pages come from large
//!   reservations and are unmapped in batches ([`special`](crate::machine::special)), so the
//!   per-block page work is one `mprotect` at allocation and one at free.
//! * Every block records its tag, size, IRQL and the driver entry point that allocated it; at
//!   the end of a run every block still live is a leak, reported by tag.
//!
//! [`PoolKind::Standard`] gives up the page-level checks (guard page, quarantine) for speed, as
//! a machine without Verifier's special pool does: blocks come from the host heap between two
//! 16-byte slack areas (still checked at free), and freed memory is reused at once. Tags, leaks,
//! double frees, fills and every other check stay. It exists for measurements, where a
//! `mmap`/`mprotect`/`munmap` per block would be most of what is measured.

use std::alloc::Layout;
use std::collections::BTreeMap;

// Fx hashing: looked up on every allocation and free; keys are addresses.
use rustc_hash::FxHashMap as HashMap;

use crate::config::PoolKind;
use crate::machine::pages::page_size;
use crate::machine::special::BlockPages;
use crate::report::PoolStats;

/// Fill of blocks allocated with `POOL_FLAG_UNINITIALIZED`.
pub const POOL_POISON: u8 = 0xA5;
/// Fill of the bytes around a block, checked at free.
pub const SLACK_FILL: u8 = 0x5A;

/// Slack on each side of a [`PoolKind::Standard`] block.
const HEAP_SLACK: usize = 16;

/// The memory behind a block.
#[derive(Debug)]
enum Storage {
    /// Special pool: the block's own pages and guard page.
    Pages(BlockPages),
    /// Standard pool: a host heap allocation of `layout` at `base`.
    Heap { base: usize, layout: Layout },
}

impl Storage {
    fn base(&self) -> usize {
        match self {
            Self::Pages(pages) => pages.base(),
            Self::Heap { base, .. } => *base,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Pages(pages) => pages.len(),
            Self::Heap { layout, .. } => layout.size(),
        }
    }
}

/// One live block.
#[derive(Debug)]
pub(crate) struct Block {
    storage: Storage,
    /// Address handed to the driver.
    pub address: usize,
    /// Bytes requested.
    pub size: usize,
    /// Pool tag.
    pub tag: u32,
    /// IRQL at allocation.
    pub irql: u8,
    /// Driver entry point in progress at allocation.
    pub callback: &'static str,
    /// Allocated while DriverEntry was running.
    pub during_entry: bool,
    /// `POOL_FLAG_PAGED`.
    pub paged: bool,
    /// The alignment of its address (16, or a device's from `FltAllocatePoolAlignedWithTag`).
    pub align: usize,
    /// From `FltAllocatePoolAlignedWithTag` (freed only by `FltFreePoolAlignedWithTag`).
    pub device_aligned: bool,
}

/// Frees remembered for double-free and use-after-free reports: the special pool never reuses
/// an address, so without a bound the table would grow with every free of a long run.
const FREED_REMEMBERED: usize = 1 << 16;

/// What is remembered of a freed block (to name double frees and uses after free).
#[derive(Clone, Debug)]
pub(crate) struct FreedBlock {
    serial: u64,
    pub size: usize,
    pub tag: u32,
    pub freed_by: &'static str,
    region_base: usize,
    region_len: usize,
}

/// Where an address lies relative to the pool.
#[derive(Debug)]
pub(crate) enum PoolPlace {
    /// Inside (or just around) a live block.
    Live {
        tag: u32,
        size: usize,
        offset: isize,
    },
    /// Inside a freed block's pages.
    Freed {
        tag: u32,
        size: usize,
        freed_by: &'static str,
    },
}

/// Problems found when freeing.
#[derive(Debug)]
pub(crate) enum FreeError {
    /// Already freed.
    DoubleFree(FreedBlock),
    /// Not the start of any live block.
    Unknown,
}

/// The pool of one run.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    kind: PoolKind,
    live: HashMap<usize, Block>,
    /// What is remembered of the most recent [`FREED_REMEMBERED`] frees, by address.
    freed: HashMap<usize, FreedBlock>,
    /// Their order, oldest first, with each free's serial (an address the standard pool reuses
    /// may be freed again: only the entry of that free is forgotten with it).
    freed_order: std::collections::VecDeque<(usize, u64)>,
    live_bytes: u64,
    pub stats: PoolStats,
}

/// Allocation parameters.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one allocation, each read on its own"
)]
pub(crate) struct AllocRequest {
    pub size: usize,
    pub tag: u32,
    pub zeroed: bool,
    pub paged: bool,
    pub irql: u8,
    pub callback: &'static str,
    pub during_entry: bool,
    /// A power of two from 16 to the page size: the block's address is a multiple of it.
    pub align: usize,
    /// From `FltAllocatePoolAlignedWithTag`.
    pub device_aligned: bool,
}

impl Pool {
    /// An empty pool of `kind`.
    pub(crate) fn new(kind: PoolKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Allocates a block; `None` if the process is out of mappings or memory.
    pub(crate) fn allocate(&mut self, request: &AllocRequest) -> Option<usize> {
        let align = request.align.max(16);
        if !align.is_power_of_two() || align > page_size() {
            return None;
        }
        // Right-aligned against the guard page, the block starts on a multiple of `align`.
        let data_len = request.size.max(1).next_multiple_of(align);
        let slack = HEAP_SLACK.max(align);
        let (storage, address) = match self.kind {
            PoolKind::Special => {
                let pages = BlockPages::allocate(data_len.next_multiple_of(page_size())).ok()?;
                let address = pages.base() + pages.data_len() - data_len;
                (Storage::Pages(pages), address)
            }
            PoolKind::Standard => {
                let layout = Layout::from_size_align(data_len + 2 * slack, align).ok()?;
                // SAFETY: the layout has a non-zero size.
                let base = unsafe { std::alloc::alloc(layout) } as usize;
                if base == 0 {
                    return None;
                }
                (Storage::Heap { base, layout }, base + slack)
            }
        };
        let (base, len) = (storage.base(), storage.len());
        // The slack runs from the storage's start to the block, and from the block's end to the
        // end of its 16-byte rounding (special) or to the end of the trailing slack (standard).
        let tail = match self.kind {
            PoolKind::Special => data_len - request.size,
            PoolKind::Standard => base + len - (address + request.size),
        };
        // Slack before, the block (zeroed or poisoned), slack after: together exactly the
        // bytes from `base` to the end of the tail, all inside the block's fresh read-write
        // memory (the special pool's guard page lies past `data_len`).
        let fill = if request.zeroed { 0 } else { POOL_POISON };
        for (start, byte, count) in [
            (base, SLACK_FILL, address - base),
            (address, fill, request.size),
            (address + request.size, SLACK_FILL, tail),
        ] {
            // SAFETY: [start, start + count) is one of the three ranges above.
            unsafe { std::ptr::write_bytes(start as *mut u8, byte, count) };
        }
        self.live.insert(
            address,
            Block {
                storage,
                address,
                size: request.size,
                tag: request.tag,
                irql: request.irql,
                callback: request.callback,
                during_entry: request.during_entry,
                paged: request.paged,
                align,
                device_aligned: request.device_aligned,
            },
        );
        self.freed.remove(&address);
        self.stats.allocations += 1;
        self.stats.bytes_allocated += request.size as u64;
        self.live_bytes += request.size as u64;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.live_bytes);
        self.stats.peak_blocks = self.stats.peak_blocks.max(self.live.len() as u64);
        Some(address)
    }

    /// Frees the block at `address`; returns it (for tag checks) and the number of slack bytes
    /// found overwritten (before, after).
    pub(crate) fn free(
        &mut self,
        address: usize,
        freed_by: &'static str,
    ) -> Result<(Block, usize, usize), FreeError> {
        let Some(block) = self.live.remove(&address) else {
            return Err(self
                .freed
                .get(&address)
                .cloned()
                .map_or(FreeError::Unknown, FreeError::DoubleFree));
        };
        let data_len = block.size.max(1).next_multiple_of(block.align);
        let (base, len) = (block.storage.base(), block.storage.len());
        let tail = match block.storage {
            Storage::Pages(_) => data_len - block.size,
            Storage::Heap { .. } => base + len - (address + block.size),
        };
        // SAFETY: the range lies inside the block's still read-write memory.
        let before = unsafe { std::slice::from_raw_parts(base as *const u8, address - base) };
        // SAFETY: as above.
        let after =
            unsafe { std::slice::from_raw_parts((address + block.size) as *const u8, tail) };
        let (before, after) = (
            before.iter().filter(|&&b| b != SLACK_FILL).count(),
            after.iter().filter(|&&b| b != SLACK_FILL).count(),
        );
        let serial = self.stats.frees;
        self.freed_order.push_back((address, serial));
        if self.freed_order.len() > FREED_REMEMBERED
            && let Some((oldest, oldest_serial)) = self.freed_order.pop_front()
            && self
                .freed
                .get(&oldest)
                .is_some_and(|f| f.serial == oldest_serial)
        {
            self.freed.remove(&oldest);
        }
        self.freed.insert(
            address,
            FreedBlock {
                serial,
                size: block.size,
                tag: block.tag,
                freed_by,
                region_base: base,
                region_len: len,
            },
        );
        self.stats.frees += 1;
        self.live_bytes -= block.size as u64;
        Ok((block, before, after))
    }

    /// Releases a freed block's memory (after `free` returned it): special-pool pages go to
    /// the quarantine, standard-pool memory back to the heap.
    pub(crate) fn retire(block: Block) {
        match block.storage {
            Storage::Pages(pages) => pages.retire(),
            Storage::Heap { base, layout } => {
                // SAFETY: allocated with this layout by `allocate`, removed from the live table
                // by `free` (so retired once), and no longer handed out.
                unsafe { std::alloc::dealloc(base as *mut u8, layout) };
            }
        }
    }

    /// The live block whose bytes include `address`: its start, size and whether it is paged.
    pub(crate) fn live_block_at(&self, address: usize) -> Option<(usize, usize, bool)> {
        self.live
            .values()
            .find(|b| address >= b.address && address < b.address + b.size.max(1))
            .map(|b| (b.address, b.size, b.paged))
    }

    /// Where `address` lies, if in this pool.
    pub(crate) fn place(&self, address: usize) -> Option<PoolPlace> {
        for block in self.live.values() {
            let base = block.storage.base();
            if address >= base && address < base + block.storage.len() {
                return Some(PoolPlace::Live {
                    tag: block.tag,
                    size: block.size,
                    offset: address.cast_signed() - block.address.cast_signed(),
                });
            }
        }
        self.freed
            .values()
            .find(|f| address >= f.region_base && address < f.region_base + f.region_len)
            .map(|f| PoolPlace::Freed {
                tag: f.tag,
                size: f.size,
                freed_by: f.freed_by,
            })
    }

    /// Removes every live block (the leak report: tag -> sizes) and returns them.
    pub(crate) fn drain_leaks(&mut self) -> BTreeMap<u32, Vec<(usize, &'static str, u8)>> {
        let mut by_tag: BTreeMap<u32, Vec<(usize, &'static str, u8)>> = BTreeMap::new();
        for (_, block) in self.live.drain() {
            by_tag
                .entry(block.tag)
                .or_default()
                .push((block.size, block.callback, block.irql));
            self.stats.leaked_blocks += 1;
            self.stats.leaked_bytes += block.size as u64;
            self.live_bytes -= block.size as u64;
            Self::retire(block);
        }
        by_tag
    }
}

/// A pool tag as its four characters (little-endian, as `'tgiV'` literals are written).
pub(crate) fn tag_text(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}
