//! Tables that every emulated I/O reads and changes, split so that I/O threads rarely meet on
//! one lock or one cache line.
//!
//! [`ShardedMap`] keeps its entries (keyed by a guest address) in [`SHARDS`] maps, each behind
//! its own mutex on its own cache lines; an operation locks only the shard of the key it
//! touches. A holder of `&mut` (the exclusive Filter Manager lock) reaches every shard without
//! locking. [`Tally`] is a set of counters summed on read, counted into per-thread rows as the
//! routine counters are ([`counters`](crate::kernel::counters)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

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
}

/// How many shards a sharded table has (to size per-shard bounds).
pub(crate) const fn shard_count() -> usize {
    SHARDS
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
}
