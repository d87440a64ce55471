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
//!   faults, and the address is not reused within the quarantine window.
//! * Every block records its tag, size, IRQL and the driver entry point that allocated it; at
//!   the end of a run every block still live is a leak, reported by tag.

use std::collections::{BTreeMap, HashMap};

use crate::mem::pages::{Region, page_size};
use crate::report::PoolStats;

/// Fill of blocks allocated with `POOL_FLAG_UNINITIALIZED`.
pub const POOL_POISON: u8 = 0xA5;
/// Fill of the bytes around a block, checked at free.
pub const SLACK_FILL: u8 = 0x5A;

/// One live block.
#[derive(Debug)]
pub(crate) struct Block {
    region: Region,
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
}

/// What is remembered of a freed block (to name double frees and uses after free).
#[derive(Clone, Debug)]
pub(crate) struct FreedBlock {
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
    live: HashMap<usize, Block>,
    freed: HashMap<usize, FreedBlock>,
    live_bytes: u64,
    pub stats: PoolStats,
}

/// Allocation parameters.
pub(crate) struct AllocRequest {
    pub size: usize,
    pub tag: u32,
    pub zeroed: bool,
    pub paged: bool,
    pub irql: u8,
    pub callback: &'static str,
    pub during_entry: bool,
}

impl Pool {
    /// Allocates a block; `None` if the process is out of mappings.
    pub(crate) fn allocate(&mut self, request: &AllocRequest) -> Option<usize> {
        let page = page_size();
        let data_len = request.size.max(1).next_multiple_of(16);
        let data_pages = data_len.next_multiple_of(page);
        let region = Region::map(data_pages + page).ok()?;
        region.protect(data_pages, page, libc::PROT_NONE).ok()?;
        let address = region.base() + data_pages - data_len;
        // SAFETY: [base, base + data_pages) is this block's fresh read-write mapping; each
        // fill below stays inside it.
        unsafe {
            std::ptr::write_bytes(
                region.base() as *mut u8,
                SLACK_FILL,
                address - region.base(),
            );
        }
        if !request.zeroed {
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(address as *mut u8, POOL_POISON, request.size) };
        }
        // SAFETY: as above.
        unsafe {
            std::ptr::write_bytes(
                (address + request.size) as *mut u8,
                SLACK_FILL,
                data_len - request.size,
            );
        }
        self.live.insert(
            address,
            Block {
                region,
                address,
                size: request.size,
                tag: request.tag,
                irql: request.irql,
                callback: request.callback,
                during_entry: request.during_entry,
                paged: request.paged,
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
        let data_len = block.size.max(1).next_multiple_of(16);
        let base = block.region.base();
        // SAFETY: the range lies inside the block's still read-write data pages.
        let before = unsafe { std::slice::from_raw_parts(base as *const u8, address - base) };
        // SAFETY: as above.
        let after = unsafe {
            std::slice::from_raw_parts((address + block.size) as *const u8, data_len - block.size)
        };
        let (before, after) = (
            before.iter().filter(|&&b| b != SLACK_FILL).count(),
            after.iter().filter(|&&b| b != SLACK_FILL).count(),
        );
        self.freed.insert(
            address,
            FreedBlock {
                size: block.size,
                tag: block.tag,
                freed_by,
                region_base: base,
                region_len: block.region.len(),
            },
        );
        self.stats.frees += 1;
        self.live_bytes -= block.size as u64;
        Ok((block, before, after))
    }

    /// Releases a freed block's pages into the quarantine (after `free` returned it).
    pub(crate) fn retire(block: Block) {
        block.region.leak_into_quarantine();
    }

    /// Where `address` lies, if in this pool.
    pub(crate) fn place(&self, address: usize) -> Option<PoolPlace> {
        for block in self.live.values() {
            let base = block.region.base();
            if address >= base && address < base + block.region.len() {
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
