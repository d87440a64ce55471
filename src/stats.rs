//! The driver's counters, as relaxed atomics (statistics, not synchronization), and their
//! snapshot in the protocol's `Stats` layout. Portable. Any IRQL.

use core::sync::atomic::{AtomicU64, Ordering};

use vigil_protocol::Stats;

/// Shards of a [`ShardedCounter`].
const SHARDS: usize = 16;

/// One shard, alone on its cache lines: shards are 128 bytes apart, so no two share a 64-byte
/// line whatever the (16-byte) alignment of the pool block they live in.
#[repr(C)]
#[derive(Default)]
struct Shard {
    value: AtomicU64,
    _pad: [u64; 15],
}

/// A counter that every I/O thread updates, split over cache lines so that threads on
/// different processors do not fight over one line (as ETW keeps per-processor buffers); read
/// as the sum of its shards. The shard is picked by the updating thread's id.
#[derive(Default)]
pub struct ShardedCounter {
    shards: [Shard; SHARDS],
}

impl ShardedCounter {
    /// Adds one on behalf of thread `thread_id`; returns the new value of that thread's shard
    /// (the count of the threads that share it, not the total).
    pub fn bump(&self, thread_id: u64) -> u64 {
        // Windows thread ids are multiples of 4: the low bits carry nothing.
        let index = usize::try_from((thread_id >> 2) % SHARDS as u64).unwrap_or(0);
        self.shards
            .get(index)
            .map_or(0, |shard| shard.value.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Sets every shard to zero (relaxed, shard by shard: a bump racing with it may survive).
    pub fn reset(&self) {
        for shard in &self.shards {
            shard.value.store(0, Ordering::Relaxed);
        }
    }

    /// The sum of the shards (each read relaxed: a statistic, not a synchronization point).
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.value.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counters the callbacks, the delivery thread and the port update.
#[derive(Default)]
pub struct Counters {
    /// Events built by a callback (pushed or dropped): counted on every event, so sharded.
    pub events_generated: ShardedCounter,
    /// Events in batches the service received.
    pub events_delivered: AtomicU64,
    /// Dropped: the ring was full.
    pub dropped_ring_full: AtomicU64,
    /// Dropped: larger than the ring takes.
    pub dropped_too_large: AtomicU64,
    /// Dropped: no memory (name or context allocation failed before the event was built).
    pub dropped_no_memory: AtomicU64,
    /// Dropped: their batch's send timed out.
    pub dropped_send_timeout: AtomicU64,
    /// Dropped: their batch's send found the client gone (or failed).
    pub dropped_disconnected: AtomicU64,
    /// Batches the service received.
    pub batches_sent: AtomicU64,
    /// Verdicts: allowed by the service.
    pub verdicts_allowed: AtomicU64,
    /// Verdicts: denied by the service.
    pub verdicts_denied: AtomicU64,
    /// Verdicts: no answer, default allow applied.
    pub verdicts_defaulted_open: AtomicU64,
    /// Verdicts: no answer, default deny applied.
    pub verdicts_defaulted_closed: AtomicU64,
    /// Verdict requests that timed out.
    pub verdict_timeouts: AtomicU64,
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Client disconnections.
    pub disconnects: AtomicU64,
    /// Allocations that failed.
    pub allocation_failures: AtomicU64,
    /// Name queries that failed (even the opened-name fallback).
    pub name_query_failures: AtomicU64,
    /// Processes the process table had no room for.
    pub process_table_overflows: AtomicU64,
    /// Process records dropped: not encodable, or their send failed (a reconnect announces
    /// the live processes again, but an exit record is gone).
    pub process_records_dropped: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A snapshot in the protocol layout.
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            events_generated: self.events_generated.get(),
            events_delivered: get(&self.events_delivered),
            dropped_ring_full: get(&self.dropped_ring_full),
            dropped_too_large: get(&self.dropped_too_large),
            dropped_no_memory: get(&self.dropped_no_memory),
            dropped_send_timeout: get(&self.dropped_send_timeout),
            dropped_disconnected: get(&self.dropped_disconnected),
            batches_sent: get(&self.batches_sent),
            verdicts_allowed: get(&self.verdicts_allowed),
            verdicts_denied: get(&self.verdicts_denied),
            verdicts_defaulted_open: get(&self.verdicts_defaulted_open),
            verdicts_defaulted_closed: get(&self.verdicts_defaulted_closed),
            verdict_timeouts: get(&self.verdict_timeouts),
            connections: get(&self.connections),
            disconnects: get(&self.disconnects),
            allocation_failures: get(&self.allocation_failures),
            name_query_failures: get(&self.name_query_failures),
            process_table_overflows: get(&self.process_table_overflows),
            process_records_dropped: get(&self.process_records_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_every_counter() {
        let counters = Counters::default();
        counters.events_generated.bump(4);
        add(&counters.events_delivered, 3);
        bump(&counters.name_query_failures);
        let stats = counters.snapshot();
        assert_eq!(stats.events_generated, 1);
        assert_eq!(stats.events_delivered, 3);
        assert_eq!(stats.name_query_failures, 1);
        assert_eq!(stats.dropped_ring_full, 0);
    }

    #[test]
    fn a_sharded_counter_sums_every_thread_and_keeps_shards_apart() {
        let counter = ShardedCounter::default();
        for thread_id in (0..200u64).map(|t| t * 4) {
            counter.bump(thread_id);
        }
        counter.bump(u64::MAX);
        assert_eq!(counter.get(), 201);
        let used = counter
            .shards
            .iter()
            .filter(|shard| shard.value.load(Ordering::Relaxed) > 0)
            .count();
        assert_eq!(
            used, SHARDS,
            "consecutive thread ids spread over every shard"
        );
        assert_eq!(size_of::<Shard>(), 128, "two cache lines per shard");
    }

    #[test]
    fn a_bump_returns_its_shards_count_and_reset_clears_every_shard() {
        let counter = ShardedCounter::default();
        assert_eq!(counter.bump(8), 1);
        assert_eq!(counter.bump(8), 2);
        // Another thread's shard counts on its own.
        assert_eq!(counter.bump(12), 1);
        // Thread ids 16 shards apart share a shard.
        assert_eq!(counter.bump(8 + 4 * SHARDS as u64), 3);
        counter.reset();
        assert_eq!(counter.get(), 0);
        assert_eq!(counter.bump(8), 1);
    }
}
