//! Calls per emulated routine, counted without a lock and without a shared hot cache line:
//! every emulated call counts itself, from every thread, so a mutex here would be the busiest
//! lock in kernel-sim, and one atomic per routine shared by every thread bounces its cache line
//! between the cores on every call (which is what kept kernel-sim's I/O threads from scaling).
//!
//! The counters are sharded: each thread counts into one of [`SHARDS`] rows, chosen once per
//! thread, each row its own cache lines; a snapshot sums the rows. A call is one uncontended
//! `fetch_add` at the routine's dense index ([`Routine::index`]) in the thread's row. The first
//! call of a routine records its name beside the rows, which is how a snapshot names the counts
//! without this layer knowing the routine tables.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::kernel::routine::{MAX_ROUTINES, Routine};

/// Rows of counters: more than the threads that run driver code at once in any scenario (I/O
/// threads, the driver's system threads, the unload thread), so two busy threads rarely share
/// one.
const SHARDS: usize = 16;

/// One thread's row of counters, aligned to whole cache lines (128 bytes covers the adjacent-
/// line prefetch of current x86 cores) so that no two rows share one.
#[repr(align(128))]
struct Row {
    calls: [AtomicU64; MAX_ROUTINES],
}

/// Calls per routine.
pub(crate) struct RoutineCounters {
    rows: Box<[Row]>,
    names: Box<[OnceLock<&'static str>]>,
}

impl Default for RoutineCounters {
    fn default() -> Self {
        Self {
            rows: (0..SHARDS)
                .map(|_| Row {
                    calls: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
            names: (0..MAX_ROUTINES).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// The calling thread's row: threads take rows in turn, the first time they count.
pub(crate) fn row_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ROW: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    ROW.with(|row| *row)
}

impl RoutineCounters {
    /// Counts one call of `routine`.
    pub(crate) fn count(&self, routine: Routine) {
        // The index is below MAX_ROUTINES: each routine table checks that at compile time.
        let index = routine.index();
        self.rows[row_of_this_thread()].calls[index].fetch_add(1, Ordering::Relaxed);
        // Read-only once set: the line is shared, never bounced.
        let name = &self.names[index];
        if name.get().is_none() {
            let _ = name.set(routine.name());
        }
    }

    /// Calls per routine name so far, summed over the rows. A routine whose first call is
    /// still between its count and its name's store is left out (the report's snapshot is
    /// taken once the driver's threads are done).
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(index, name)| {
                let name = name.get()?;
                let calls = self
                    .rows
                    .iter()
                    .map(|row| row.calls[index].load(Ordering::Relaxed))
                    .sum();
                Some(((*name).to_owned(), calls))
            })
            .collect()
    }
}

/// One count kept per row like the routine counters (a count bumped by every driver call).
pub(crate) struct ShardedCount {
    rows: Box<[PaddedCount]>,
}

#[repr(align(128))]
#[derive(Default)]
struct PaddedCount(AtomicU64);

impl Default for ShardedCount {
    fn default() -> Self {
        Self {
            rows: (0..SHARDS).map(|_| PaddedCount::default()).collect(),
        }
    }
}

impl ShardedCount {
    /// Adds `n` in the calling thread's row.
    pub(crate) fn add(&self, n: u64) {
        self.rows[row_of_this_thread()]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of the rows.
    pub(crate) fn total(&self) -> u64 {
        self.rows
            .iter()
            .map(|row| row.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::IrqlRule;

    fn routines(count: u16) -> Vec<Routine> {
        (0..count)
            .map(|i| {
                let name: &'static str = Box::leak(format!("Routine{i}").into_boxed_str());
                Routine::new(i, name, IrqlRule::Any)
            })
            .collect()
    }

    #[test]
    fn counts_every_call_from_every_thread() {
        let counters = RoutineCounters::default();
        let routines = routines(40);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for round in 0..1_000 {
                        for (i, routine) in routines.iter().enumerate() {
                            if round % (i + 1) == 0 {
                                counters.count(*routine);
                            }
                        }
                    }
                });
            }
        });
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), routines.len());
        for (i, routine) in routines.iter().enumerate() {
            let per_thread = (0..1_000u64).filter(|r| r % (i as u64 + 1) == 0).count() as u64;
            assert_eq!(
                snapshot[routine.name()],
                4 * per_thread,
                "{}",
                routine.name()
            );
        }
    }

    #[test]
    fn every_index_up_to_the_limit_is_counted_and_uncalled_routines_are_absent() {
        let counters = RoutineCounters::default();
        let all = routines(u16::try_from(MAX_ROUTINES).unwrap());
        for routine in all.iter().step_by(2) {
            counters.count(*routine);
            counters.count(*routine);
        }
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), MAX_ROUTINES / 2);
        assert!(snapshot.values().all(|&calls| calls == 2));
        assert!(!snapshot.contains_key(all[1].name()));
    }

    #[test]
    fn one_routine_is_one_counter_whatever_its_name_string() {
        let counters = RoutineCounters::default();
        let a: &'static str = Box::leak("KeSetEvent".to_owned().into_boxed_str());
        let b: &'static str = Box::leak("KeSetEvent".to_owned().into_boxed_str());
        counters.count(Routine::new(3, a, IrqlRule::Any));
        counters.count(Routine::new(3, b, IrqlRule::Any));
        assert_eq!(counters.snapshot()["KeSetEvent"], 2);
    }
}
