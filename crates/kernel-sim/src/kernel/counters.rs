//! Calls per emulated routine, counted without a lock: every emulated call counts itself, from
//! every thread, so a mutex here would be the busiest lock in kernel-sim.
//!
//! An open-addressing table keyed by the address of the routine's name (a `&'static str`, so
//! the address is stable; one name at two addresses is merged when the counts are read). A slot
//! is claimed once, by a compare-and-swap on its key, and never freed. Names beyond the table's
//! capacity go to a locked overflow map, so no call is ever left uncounted.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::kernel::lock;

/// Slots in the table: several times the number of routines kernel-sim emulates.
const SLOTS: usize = 256;

/// One routine's slot: the name (address, then length, published in that order) and its count.
struct Slot {
    name: AtomicPtr<u8>,
    len: AtomicUsize,
    calls: AtomicU64,
}

/// Calls per routine name.
pub(crate) struct RoutineCounters {
    slots: Box<[Slot]>,
    overflow: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for RoutineCounters {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    name: AtomicPtr::new(std::ptr::null_mut()),
                    len: AtomicUsize::new(0),
                    calls: AtomicU64::new(0),
                })
                .collect(),
            overflow: Mutex::new(BTreeMap::new()),
        }
    }
}

impl RoutineCounters {
    /// Counts one call of `routine`.
    pub(crate) fn count(&self, routine: &'static str) {
        let key = routine.as_ptr().cast_mut();
        // Fibonacci hashing of the address: its low bits are alignment, its high bits shared.
        let start = (key as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 8);
        for probe in 0..SLOTS {
            let slot = &self.slots[(start + probe) % SLOTS];
            let mut current = slot.name.load(Ordering::Acquire);
            if current.is_null() {
                match slot.name.compare_exchange(
                    std::ptr::null_mut(),
                    key,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        slot.len.store(routine.len(), Ordering::Release);
                        current = key;
                    }
                    Err(winner) => current = winner,
                }
            }
            if current == key {
                slot.calls.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        *lock(&self.overflow).entry(routine).or_insert(0) += 1;
    }

    /// Calls per routine name so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        for slot in &*self.slots {
            let name = slot.name.load(Ordering::Acquire);
            // Zero for the instant between a slot's claim and the length's store: a snapshot
            // taken while routines still run may miss that slot's first calls (the report's is
            // taken once the driver's threads are done).
            let len = slot.len.load(Ordering::Acquire);
            if name.is_null() || len == 0 {
                continue;
            }
            // SAFETY: `name` and `len` were taken from one `&'static str` by `count` (the length
            // is stored only after the address, by the thread that claimed the slot).
            let bytes = unsafe { std::slice::from_raw_parts(name, len) };
            let name = String::from_utf8_lossy(bytes).into_owned();
            *by_name.entry(name).or_insert(0) += slot.calls.load(Ordering::Relaxed);
        }
        for (&name, &calls) in lock(&self.overflow).iter() {
            *by_name.entry(name.to_owned()).or_insert(0) += calls;
        }
        by_name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_call_from_every_thread() {
        let counters = RoutineCounters::default();
        let names: Vec<&'static str> = (0..40)
            .map(|i| &*Box::leak(format!("Routine{i}").into_boxed_str()))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for round in 0..1_000 {
                        for (i, name) in names.iter().enumerate() {
                            if round % (i + 1) == 0 {
                                counters.count(name);
                            }
                        }
                    }
                });
            }
        });
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), names.len());
        for (i, name) in names.iter().enumerate() {
            let per_thread = (0..1_000u64).filter(|r| r % (i as u64 + 1) == 0).count() as u64;
            assert_eq!(snapshot[*name], 4 * per_thread, "{name}");
        }
    }

    #[test]
    fn names_beyond_the_table_overflow_and_are_still_counted() {
        let counters = RoutineCounters::default();
        let names: Vec<&'static str> = (0..SLOTS + 10)
            .map(|i| &*Box::leak(format!("R{i}").into_boxed_str()))
            .collect();
        for name in &names {
            counters.count(name);
            counters.count(name);
        }
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), names.len());
        assert!(snapshot.values().all(|&calls| calls == 2));
        assert_eq!(lock(&counters.overflow).len(), 10);
    }

    #[test]
    fn one_name_at_two_addresses_is_merged() {
        let counters = RoutineCounters::default();
        let a: &'static str = Box::leak("KeSetEvent".to_owned().into_boxed_str());
        let b: &'static str = Box::leak("KeSetEvent".to_owned().into_boxed_str());
        counters.count(a);
        counters.count(b);
        assert_eq!(counters.snapshot()["KeSetEvent"], 2);
    }
}
