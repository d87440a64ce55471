//! Sequence-number checking: every event record carries the driver's sequence number (in ring
//! push order, from 0 at driver load; a record the driver drops still takes its number), so a
//! missing number is a lost event. User mode, portable.
//!
//! Policy: a gap is reported (in band, as a gap record the sinks write) and counted, never
//! hidden. A record whose number was already written (a duplicate, or a regression after a
//! reconnect to the same driver instance) is counted and skipped, so nothing is written twice.
//! A driver that was unloaded and loaded again numbers from 0 afresh: the core detects the new
//! instance at connect time (see [`crate::service`]) and starts a new *epoch*; `(epoch, seq)`
//! is unique in the output.

/// A run of sequence numbers that never arrived: `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The driver instance the numbers belong to.
    pub epoch: u32,
    /// First missing number.
    pub from: u64,
    /// Last missing number.
    pub to: u64,
}

impl Gap {
    /// Number of missing records.
    pub const fn missing(&self) -> u64 {
        self.to - self.from + 1
    }
}

/// Where a previous service process stopped writing: the `(epoch, seq)` of the last event in
/// its JSON Lines file ([`crate::record::last_event_position`]). A restarted service continues
/// from there, so that events lost while no service ran (a crash mid-batch) show as a gap in
/// band, and `(epoch, seq)` stays unique in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// The epoch of the last event written.
    pub epoch: u32,
    /// Its sequence number.
    pub seq: u64,
}

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The next number: write it.
    InOrder,
    /// Numbers were skipped before this one: write the gap, then the record.
    AfterGap(Gap),
    /// Already written (or older than what was): skip it.
    Duplicate,
}

/// Checks sequence numbers record by record.
///
/// # Invariants
///
/// `next` is one past the highest number written in the current epoch (or `None` before the
/// first record of an epoch whose starting number is unknown).
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    epoch: u32,
    next: Option<u64>,
    gaps: u64,
    missing: u64,
    duplicates: u64,
}

impl SequenceTracker {
    /// A tracker that has seen nothing: epoch 1, and the first record sets the baseline (the
    /// service cannot know what a previous service process wrote).
    pub const fn new() -> Self {
        Self {
            epoch: 1,
            next: None,
            gaps: 0,
            missing: 0,
            duplicates: 0,
        }
    }

    /// A new driver instance: a new epoch whose numbers start at 0, so a first record numbered
    /// above 0 reports the records the new driver dropped before the service connected.
    pub fn new_driver_instance(&mut self) {
        self.epoch += 1;
        self.next = Some(0);
    }

    /// Sets the number the next record should carry, in the current epoch: for a driver known
    /// to number from `next` (0 for the first client of a fresh driver instance).
    pub const fn expect_next(&mut self, next: u64) {
        self.next = Some(next);
    }

    /// Continues the numbering of a previous service process (read back from its output, see
    /// [`ResumePoint`]): epoch `epoch`, and the next record expected to carry `next` (`None`:
    /// unknown, the first record sets the baseline).
    pub const fn resume(&mut self, epoch: u32, next: Option<u64>) {
        self.epoch = epoch;
        self.next = next;
    }

    /// Checks `seq` and, unless it is a duplicate, accepts it as written.
    pub fn check(&mut self, seq: u64) -> Check {
        let result = match self.next {
            None => Check::InOrder,
            Some(next) if seq == next => Check::InOrder,
            Some(next) if seq > next => {
                let gap = Gap {
                    epoch: self.epoch,
                    from: next,
                    to: seq - 1,
                };
                self.gaps += 1;
                self.missing = self.missing.saturating_add(gap.missing());
                Check::AfterGap(gap)
            }
            Some(_) => {
                self.duplicates += 1;
                return Check::Duplicate;
            }
        };
        self.next = Some(seq.saturating_add(1));
        result
    }

    /// The current epoch (1 for the first driver instance this process saw).
    pub const fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The number the next record should carry, when known.
    pub const fn expected(&self) -> Option<u64> {
        self.next
    }

    /// Gaps seen.
    pub const fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Records missing in those gaps.
    pub const fn missing(&self) -> u64 {
        self.missing
    }

    /// Records skipped as already written.
    pub const fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_records_pass_and_the_first_sets_the_baseline() {
        let mut t = SequenceTracker::new();
        assert_eq!(t.check(100), Check::InOrder);
        assert_eq!(t.check(101), Check::InOrder);
        assert_eq!(t.expected(), Some(102));
        assert_eq!((t.gaps(), t.missing(), t.duplicates()), (0, 0, 0));
    }

    #[test]
    fn a_gap_is_reported_with_its_range_and_counted() {
        let mut t = SequenceTracker::new();
        t.check(0);
        assert_eq!(
            t.check(5),
            Check::AfterGap(Gap {
                epoch: 1,
                from: 1,
                to: 4
            })
        );
        assert_eq!(t.check(6), Check::InOrder);
        t.check(8);
        assert_eq!((t.gaps(), t.missing()), (2, 5));
    }

    #[test]
    fn duplicates_and_regressions_are_skipped_and_counted() {
        let mut t = SequenceTracker::new();
        for seq in 0..10 {
            t.check(seq);
        }
        // Same driver, after a reconnect: records 7..=9 again, then new ones.
        assert_eq!(t.check(7), Check::Duplicate);
        assert_eq!(t.check(9), Check::Duplicate);
        assert_eq!(t.check(10), Check::InOrder);
        // A reordered record older than what was written is a regression: skipped too.
        assert_eq!(t.check(3), Check::Duplicate);
        assert_eq!(t.duplicates(), 3);
        assert_eq!(t.expected(), Some(11));
    }

    #[test]
    fn a_resumed_tracker_reports_what_was_lost_before_it_started() {
        let mut t = SequenceTracker::new();
        t.resume(3, Some(41));
        assert_eq!(
            t.check(45),
            Check::AfterGap(Gap {
                epoch: 3,
                from: 41,
                to: 44
            })
        );
        assert_eq!(
            t.check(40),
            Check::Duplicate,
            "written by the previous process"
        );
        t.resume(4, None);
        assert_eq!(
            t.check(9),
            Check::InOrder,
            "unknown baseline: the first record sets it"
        );
        assert_eq!(t.epoch(), 4);
    }

    #[test]
    fn a_new_driver_instance_starts_a_new_epoch_from_zero() {
        let mut t = SequenceTracker::new();
        for seq in 0..50 {
            t.check(seq);
        }
        t.new_driver_instance();
        assert_eq!(t.epoch(), 2);
        assert_eq!(
            t.check(0),
            Check::InOrder,
            "not a duplicate: a new numbering"
        );
        t.new_driver_instance();
        // The third instance dropped records 0..=2 before the service connected.
        assert_eq!(
            t.check(3),
            Check::AfterGap(Gap {
                epoch: 3,
                from: 0,
                to: 2
            })
        );
    }
}
