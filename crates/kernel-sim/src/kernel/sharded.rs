//! Tables that every emulated I/O reads and changes, split so that I/O threads rarely meet on
//! one lock or one cache line.
//!
//! [`ShardedMap`] keeps its entries (keyed by a guest address) in [`SHARDS`] maps, each behind
//! its own mutex on its own cache lines; an operation locks only the shard of the key it
//! touches. A holder of `&mut` (the exclusive Filter Manager lock) reaches every shard without
//! locking. [`Tally`] is a set of counters summed on read, counted into per-thread rows as the
//! routine counters are ([`counters`](crate::kernel::counters)).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxHashMap as HashMap;

use crate::kernel::counters::row_of_this_thread;
use crate::kernel::exclusive;

/// Shards per table: more than the threads that issue I/O at once in any scenario.
const SHARDS: usize = 16;

/// One shard, aligned to whole cache lines (128 bytes covers the adjacent-line prefetch).
#[repr(align(128))]
struct Shard<T>(Mutex<HashMap<usize, T>>);

/// A map from guest addresses to `T`, sharded by address (see the module documentation).
pub(crate) struct ShardedMap<T> {
    shards: Box<[Shard<T>]>,
}

impl<T> Default for ShardedMap<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(HashMap::default())))
                .collect(),
        }
    }
}

/// The shard of `key`: a multiplicative hash of the address, whose low bits are alignment.
fn shard_of(key: usize) -> usize {
    let mixed = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // SHARDS is a power of two below 2^8; the top bits of the product are its best mixed.
    (mixed >> 56) as usize % SHARDS
}

fn unpoisoned<M>(m: &Mutex<M>) -> MutexGuard<'_, M> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T> ShardedMap<T> {
    /// Runs `f` on the entry of `key` (None if absent) with its shard locked. `f` must not
    /// touch this map again (the shard's mutex is not reentrant).
    pub(crate) fn with<R>(&self, key: usize, f: impl FnOnce(Option<&mut T>) -> R) -> R {
        let mut shard = unpoisoned(&self.shards[shard_of(key)].0);
        f(shard.get_mut(&key))
    }

    /// The shard of `key`, locked, for a change that must see and change an entry in one step.
    pub(crate) fn lock_shard(&self, key: usize) -> MutexGuard<'_, HashMap<usize, T>> {
        unpoisoned(&self.shards[shard_of(key)].0)
    }

    /// Inserts `value` under `key`, returning the value it replaces.
    pub(crate) fn insert(&self, key: usize, value: T) -> Option<T> {
        unpoisoned(&self.shards[shard_of(key)].0).insert(key, value)
    }

    /// Removes the entry of `key`.
    pub(crate) fn remove(&self, key: usize) -> Option<T> {
        unpoisoned(&self.shards[shard_of(key)].0).remove(&key)
    }

    /// Whether `key` has an entry.
    pub(crate) fn contains(&self, key: usize) -> bool {
        unpoisoned(&self.shards[shard_of(key)].0).contains_key(&key)
    }

    /// The entry of `key`, reached through exclusive access (no lock taken).
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        exclusive(&mut self.shards[shard_of(key)].0).get_mut(&key)
    }

    /// Every entry, reached through exclusive access.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.shards
            .iter_mut()
            .flat_map(|shard| exclusive(&mut shard.0).values_mut())
    }

    /// Removes and returns every entry, through exclusive access.
    pub(crate) fn drain(&mut self) -> Vec<(usize, T)> {
        self.shards
            .iter_mut()
            .flat_map(|shard| exclusive(&mut shard.0).drain())
            .collect()
    }

    /// Entries in all shards (each shard locked in turn: a moment's count, not a snapshot).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| unpoisoned(&s.0).len()).sum()
    }
}

/// Any `T`, one per shard, each behind its own mutex on its own cache lines; a key picks the
/// shard as in [`ShardedMap`].
pub(crate) struct Sharded<T> {
    shards: Box<[PaddedMutex<T>]>,
}

#[repr(align(128))]
struct PaddedMutex<T>(Mutex<T>);

impl<T> Sharded<T> {
    /// One `T` per shard, each made by `make`.
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| PaddedMutex(Mutex::new(make())))
                .collect(),
        }
    }

    /// The shard of `key`, locked.
    pub(crate) fn lock(&self, key: usize) -> MutexGuard<'_, T> {
        unpoisoned(&self.shards[shard_of(key)].0)
    }

    /// The calling thread's shard, locked: for what a thread adds and rarely looks up again
    /// (a lookup then searches every shard with [`Sharded::find_map`]). Memory a thread keeps
    /// here is also freed by that thread, which keeps the host allocator's per-thread caches
    /// from trading blocks between the I/O threads.
    pub(crate) fn lock_mine(&self) -> MutexGuard<'_, T> {
        unpoisoned(&self.shards[row_of_this_thread() % SHARDS].0)
    }

    /// Every shard, reached through exclusive access.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.shards.iter_mut().map(|shard| exclusive(&mut shard.0))
    }

    /// Calls `f` on every shard, each locked in turn, until it returns `Some`.
    pub(crate) fn find_map<R>(&self, mut f: impl FnMut(&mut T) -> Option<R>) -> Option<R> {
        self.shards
            .iter()
            .find_map(|shard| f(&mut unpoisoned(&shard.0)))
    }
}

/// How many shards a sharded table has (to size per-shard bounds).
pub(crate) const fn shard_count() -> usize {
    SHARDS
}

/// A signed count changed by many threads (operations in flight): each adds into its row,
/// and a read sums the rows. Exact whenever no add runs beside the read (the caller holds the
/// lock that stops the adders), and never below the true count of what has begun and not
/// ended when each thread's own adds balance.
pub(crate) struct Gauge {
    rows: Box<[PaddedI64]>,
}

#[repr(align(128))]
struct PaddedI64(AtomicI64);

impl Default for Gauge {
    fn default() -> Self {
        Self {
            rows: (0..SHARDS).map(|_| PaddedI64(AtomicI64::new(0))).collect(),
        }
    }
}

impl Gauge {
    /// Adds `n` (negative to take away) in this thread's row.
    pub(crate) fn add(&self, n: i64) {
        self.rows[row_of_this_thread() % SHARDS]
            .0
            .fetch_add(n, Ordering::AcqRel);
    }

    /// The sum of the rows, 0 at least.
    pub(crate) fn get(&self) -> u64 {
        let sum: i64 = self.rows.iter().map(|r| r.0.load(Ordering::Acquire)).sum();
        u64::try_from(sum).unwrap_or(0)
    }
}

/// One thread's row of `N` counters, on its own cache lines.
#[repr(align(128))]
struct TallyRow<const N: usize>([AtomicU64; N]);

/// `N` counters, each counted into the calling thread's row without a lock and summed on
/// read (see the module documentation).
pub(crate) struct Tally<const N: usize> {
    rows: Box<[TallyRow<N>]>,
}

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Self {
            rows: (0..SHARDS)
                .map(|_| TallyRow(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }
}

impl<const N: usize> Tally<N> {
    /// Adds `n` to counter `index`.
    pub(crate) fn add(&self, index: usize, n: u64) {
        self.rows[row_of_this_thread() % SHARDS].0[index].fetch_add(n, Ordering::Relaxed);
    }

    /// Counter `index`, summed over the rows.
    pub(crate) fn get(&self, index: usize) -> u64 {
        self.rows
            .iter()
            .map(|row| row.0[index].load(Ordering::Relaxed))
            .sum()
    }
}

/// A reader-writer lock whose readers share no cache line: each reader takes the shared side
/// of its thread's row only, and a writer takes every row exclusively, in row order (the
/// "big-reader" lock). For state that every I/O thread reads on every operation and that
/// changes rarely: a plain `RwLock` there bounces its reader count between the cores on
/// every acquire and release, which costs more than the work it guards.
pub(crate) struct BrLock<T> {
    rows: Box<[PaddedRwLock]>,
    value: UnsafeCell<T>,
}

#[repr(align(128))]
struct PaddedRwLock(RwLock<()>);

// SAFETY: `value` is reached only through the guards: shared (`&T`) under one row's shared
// lock, which excludes a writer (it holds every row exclusively), so only readers overlap and
// `T: Sync` makes that sound; exclusively (`&mut T`) under every row's exclusive lock, which
// excludes every reader and other writer. Sending the lock sends the `T` (`T: Send`).
unsafe impl<T: Send + Sync> Sync for BrLock<T> {}

impl<T> BrLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            rows: (0..SHARDS).map(|_| PaddedRwLock(RwLock::new(()))).collect(),
            value: UnsafeCell::new(value),
        }
    }

    /// Shared access, through this thread's row.
    pub(crate) fn read(&self) -> BrRead<'_, T> {
        let row = self.rows[row_of_this_thread() % SHARDS]
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        BrRead {
            _row: row,
            lock: self,
        }
    }

    /// Exclusive access: every row, in row order (so two writers cannot deadlock).
    pub(crate) fn write(&self) -> BrWrite<'_, T> {
        let rows = self
            .rows
            .iter()
            .map(|row| {
                row.0
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .collect();
        BrWrite {
            _rows: rows,
            lock: self,
        }
    }

    /// The value, through exclusive access to the lock itself.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// [`BrLock::read`]'s guard.
pub(crate) struct BrRead<'a, T> {
    _row: RwLockReadGuard<'a, ()>,
    lock: &'a BrLock<T>,
}

/// [`BrLock::write`]'s guard.
pub(crate) struct BrWrite<'a, T> {
    _rows: Vec<RwLockWriteGuard<'a, ()>>,
    lock: &'a BrLock<T>,
}

impl<T> std::ops::Deref for BrRead<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds a row shared, so no writer holds the lock (see `Sync`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::Deref for BrWrite<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds every row exclusively: nobody else reaches the value.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::DerefMut for BrWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_in_their_shard_and_drained_from_all() {
        let mut map = ShardedMap::default();
        for key in (0..4096usize).map(|i| 0x7f00_0000_0000 + i * 0x1000) {
            assert!(map.insert(key, key).is_none());
        }
        assert_eq!(map.len(), 4096);
        assert!(map.contains(0x7f00_0000_1000));
        assert_eq!(
            map.with(0x7f00_0000_2000, |v| v.map(|v| *v)),
            Some(0x7f00_0000_2000)
        );
        *map.get_mut(0x7f00_0000_2000).expect("present") = 1;
        assert_eq!(map.remove(0x7f00_0000_2000), Some(1));
        assert_eq!(map.values_mut().count(), 4095);
        assert_eq!(map.drain().len(), 4095);
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn page_aligned_keys_spread_over_the_shards() {
        let mut used = [0usize; SHARDS];
        for i in 0..1600usize {
            used[shard_of(0x7f12_3400_0000 + i * 0x1000)] += 1;
        }
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }

    #[test]
    fn allocated_thread_ids_stay_clear_of_requestor_ids() {
        // Requestor ids are u32 below FIRST_ALLOCATED_THREAD_ID (world::io::Requestor).
        let id = crate::kernel::allocate_thread_id();
        assert!(id >= crate::kernel::FIRST_ALLOCATED_THREAD_ID, "{id:#x}");
        assert_eq!(id % 4, 0, "Windows thread ids are multiples of 4");
    }

    #[test]
    fn a_tally_sums_the_rows_of_every_thread() {
        let tally = Tally::<2>::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        tally.add(1, 1);
                    }
                });
            }
        });
        assert_eq!((tally.get(0), tally.get(1)), (0, 4000));
    }

    /// A writer that changes two halves of a value one after the other, readers that check
    /// both halves agree: a lock that let a reader in beside a writer is caught. The halves are
    /// atomics so that even the broken twin has no data race, only a torn pair. The writer
    /// runs until every reader is done, so they always overlap; readers stop after `reads`
    /// reads each, or at the first torn pair when `until_torn` (bounded by a deadline).
    fn torn_reads(
        write: impl Fn(&BrLock<(AtomicU64, AtomicU64)>, u64) + Sync,
        reads: u64,
        until_torn: bool,
    ) -> u64 {
        let lock = BrLock::new((AtomicU64::new(0), AtomicU64::new(0)));
        let torn = AtomicU64::new(0);
        let readers_done = AtomicU64::new(0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut done = 0;
                    while done < reads || (until_torn && torn.load(Ordering::Relaxed) == 0) {
                        if until_torn && std::time::Instant::now() > deadline {
                            break;
                        }
                        let v = lock.read();
                        let first = v.0.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        if first != v.1.load(Ordering::Relaxed) {
                            torn.fetch_add(1, Ordering::Relaxed);
                        }
                        done += 1;
                    }
                    readers_done.fetch_add(1, Ordering::Release);
                });
            }
            s.spawn(|| {
                let mut i = 1;
                while readers_done.load(Ordering::Acquire) < 3 {
                    write(&lock, i);
                    i += 1;
                }
            });
        });
        torn.load(Ordering::Relaxed)
    }

    fn write_halves(value: &(AtomicU64, AtomicU64), i: u64) {
        value.0.store(i, Ordering::Relaxed);
        for _ in 0..50 {
            std::hint::spin_loop();
        }
        value.1.store(i, Ordering::Relaxed);
    }

    #[test]
    fn a_writer_excludes_every_reader() {
        let torn = torn_reads(|lock, i| write_halves(&lock.write(), i), 20_000, false);
        assert_eq!(torn, 0);
    }

    #[test]
    fn a_writer_that_skips_rows_is_caught() {
        // The broken twin: a "writer" that takes only one row excludes only that row's readers.
        let torn = torn_reads(
            |lock, i| {
                let _row = lock.rows[0].0.write().expect("unpoisoned");
                // SAFETY: the halves are atomics: a shared reference to them is sound even beside
                // readers; only the pair's consistency is lost, which is what the test counts.
                write_halves(unsafe { &*lock.value.get() }, i);
            },
            1_000,
            true,
        );
        assert!(torn > 0, "readers on other rows saw no torn value");
    }
}
