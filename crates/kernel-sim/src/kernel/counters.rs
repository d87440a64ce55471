//! Calls per emulated routine, counted without a lock: every emulated call counts itself, from
//! every thread, so a mutex here would be the busiest lock in kernel-sim.
//!
//! One atomic counter per routine, at the routine's dense index ([`Routine::index`]), so a
//! call is one `fetch_add`. The first call of a routine records its name beside the counter,
//! which is how a snapshot names the counts without this layer knowing the routine tables.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kernel::routine::{MAX_ROUTINES, Routine};

/// One routine's counter and, once called, its name.
#[derive(Default)]
struct Slot {
    calls: AtomicU64,
    name: OnceLock<&'static str>,
}

/// Calls per routine.
pub(crate) struct RoutineCounters {
    slots: Box<[Slot]>,
}

impl Default for RoutineCounters {
    fn default() -> Self {
        Self {
            slots: (0..MAX_ROUTINES).map(|_| Slot::default()).collect(),
        }
    }
}

impl RoutineCounters {
    /// Counts one call of `routine`.
    pub(crate) fn count(&self, routine: Routine) {
        // The index is below MAX_ROUTINES: each routine table checks that at compile time.
        let slot = &self.slots[routine.index()];
        if slot.calls.fetch_add(1, Ordering::Relaxed) == 0 {
            let _ = slot.name.set(routine.name());
        }
    }

    /// Calls per routine name so far. A routine whose first call is still between its count
    /// and its name's store is left out (the report's snapshot is taken once the driver's
    /// threads are done).
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.slots
            .iter()
            .filter_map(|slot| {
                let name = slot.name.get()?;
                Some(((*name).to_owned(), slot.calls.load(Ordering::Relaxed)))
            })
            .collect()
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
