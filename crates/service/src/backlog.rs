//! The hand-over between the core's two threads: the receiver (takes messages from the port,
//! answers verdicts at once) queues what needs the disk — event batches, log lines, a policy
//! file to read — and the writer works through it. User mode, portable.
//!
//! Policy: the queue is bounded in bytes ([`ServiceOptions::backlog_bytes`], 64 MiB by default:
//! about two seconds of the heaviest event stream measured, longer than a rotation or a sync
//! takes). While the writer is behind by less than that, a verdict never waits for the disk.
//! Past it the receiver waits for room: a received batch is never dropped (the driver has
//! counted it as delivered), so the only alternative would be unbounded memory. While the
//! receiver waits, the driver's sends time out and its verdict waits end with its default;
//! it counts both, and the service counts each wait ([`crate::Counters::backlog_waits`]).
//! Log lines never wait and never take the queue past its budget: over it they are dropped
//! and counted, and the next line that fits says how many (any user can make the service log).
//!
//! [`ServiceOptions::backlog_bytes`]: crate::ServiceOptions::backlog_bytes

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::service::Level;

/// One piece of work for the writer.
#[derive(Debug)]
pub(crate) enum Job {
    /// An event batch's or a process record's bytes, as received (decoded again by the
    /// writer, which applies process records in order with the batches).
    Batch(Vec<u8>),
    /// A log line from the receiver (the log may be a file: its I/O is the writer's).
    Log(Level, String),
    /// Read this policy file and send the result back.
    LoadPolicy(PathBuf),
    /// The driver's counters, read now, for a counters record.
    DriverStats(Box<vigil_protocol::Stats>),
}

impl Job {
    fn weight(&self) -> usize {
        match self {
            Self::Batch(bytes) => bytes.len(),
            Self::Log(_, line) => line.len(),
            Self::LoadPolicy(_) | Self::DriverStats(_) => 0,
        }
    }
}

/// What [`Backlog::next`] found.
#[derive(Debug)]
pub(crate) enum Next {
    /// Work to do.
    Job(Job),
    /// Nothing arrived within the wait.
    Idle,
    /// The receiver is done and everything queued was taken.
    Finished,
}

#[derive(Debug, Default)]
struct State {
    jobs: VecDeque<Job>,
    bytes: usize,
    /// The receiver will queue nothing more.
    finished: bool,
    /// The writer stopped (it gave up on the sinks): queuing is pointless.
    writer_gone: bool,
    /// Empty buffers handed back for the next batch.
    spare: Vec<Vec<u8>>,
    /// Pushes waiting for room now.
    waiting: usize,
    /// Log lines dropped because the queue was over its budget.
    dropped_lines: u64,
}

/// The queue between the receiver and the writer.
#[derive(Debug)]
pub(crate) struct Backlog {
    state: Mutex<State>,
    changed: Condvar,
    budget: usize,
}

/// Spare buffers kept for reuse: enough for a few batches in flight.
const SPARE_BUFFERS: usize = 8;

impl Backlog {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            budget: budget.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer holding a copy of `bytes` (a spare one when there is one).
    pub(crate) fn copy_of(&self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.lock().spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Gives a batch's buffer back for reuse.
    pub(crate) fn recycle(&self, mut buf: Vec<u8>) {
        let mut state = self.lock();
        if state.spare.len() < SPARE_BUFFERS {
            buf.clear();
            state.spare.push(buf);
        }
    }

    /// Queues `job`, waiting while the queue is over its budget (see the module
    /// documentation); a job always fits an empty queue. Returns whether it had to wait, or
    /// `Err` with the job when the writer is gone.
    pub(crate) fn push(&self, job: Job) -> Result<bool, Job> {
        let weight = job.weight();
        let mut state = self.lock();
        // A log line never waits and never grows the queue past its budget: any user can make
        // the service log (a denied open per attempt), and a writer stuck on a full disk must
        // not turn that into unbounded memory. It is dropped and counted; the next line that
        // fits says how many were.
        if let Job::Log(level, line) = job {
            if state.bytes.saturating_add(weight) > self.budget {
                state.dropped_lines += 1;
                return Ok(false);
            }
            let dropped = std::mem::take(&mut state.dropped_lines);
            if dropped > 0 {
                let note = format!("{dropped} log line(s) dropped while the writer was behind");
                state.bytes += note.len();
                state.jobs.push_back(Job::Log(Level::Warn, note));
            }
            state.bytes += weight;
            state.jobs.push_back(Job::Log(level, line));
            drop(state);
            self.changed.notify_all();
            return Ok(false);
        }
        let mut waited = false;
        while !state.writer_gone
            && state.bytes > 0
            && state.bytes.saturating_add(weight) > self.budget
            && matches!(job, Job::Batch(_))
        {
            if !waited {
                state.waiting += 1;
            }
            waited = true;
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if waited {
            state.waiting -= 1;
        }
        if state.writer_gone {
            return Err(job);
        }
        state.bytes += weight;
        state.jobs.push_back(job);
        drop(state);
        self.changed.notify_all();
        Ok(waited)
    }

    /// Takes the next job, waiting at most `timeout` for one.
    pub(crate) fn next(&self, timeout: Duration) -> Next {
        let mut state = self.lock();
        if state.jobs.is_empty() && !state.finished {
            state = self
                .changed
                .wait_timeout(state, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        match state.jobs.pop_front() {
            Some(job) => {
                state.bytes -= job.weight();
                drop(state);
                self.changed.notify_all();
                Next::Job(job)
            }
            None if state.finished => Next::Finished,
            None => Next::Idle,
        }
    }

    /// Bytes queued now.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Pushes waiting for room now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting
    }

    /// The receiver is done: the writer finishes the queue and returns.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }

    /// The writer is done (gave up): wakes a receiver waiting for room. Returns how many
    /// batches were left unwritten.
    pub(crate) fn writer_gone(&self) -> usize {
        let mut state = self.lock();
        state.writer_gone = true;
        let left = state
            .jobs
            .iter()
            .filter(|j| matches!(j, Job::Batch(_)))
            .count();
        drop(state);
        self.changed.notify_all();
        left
    }

    /// `true` once the writer gave up.
    pub(crate) fn is_writer_gone(&self) -> bool {
        self.lock().writer_gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn jobs_come_out_in_order_and_the_end_is_seen_after_the_last() {
        let backlog = Backlog::new(1024);
        backlog.push(Job::Batch(vec![1; 10])).unwrap();
        backlog.push(Job::Log(Level::Info, "x".into())).unwrap();
        backlog.finish();
        assert!(matches!(backlog.next(Duration::ZERO), Next::Job(Job::Batch(b)) if b.len() == 10));
        assert!(matches!(
            backlog.next(Duration::ZERO),
            Next::Job(Job::Log(..))
        ));
        assert!(matches!(backlog.next(Duration::ZERO), Next::Finished));
        assert_eq!(backlog.queued_bytes(), 0);
    }

    #[test]
    fn a_full_backlog_makes_the_receiver_wait_and_never_drops() {
        let backlog = Arc::new(Backlog::new(100));
        backlog.push(Job::Batch(vec![0; 80])).unwrap();
        let pusher = {
            let backlog = backlog.clone();
            std::thread::spawn(move || backlog.push(Job::Batch(vec![0; 80])))
        };
        // The second batch waits until the first is taken, then is queued whole.
        while backlog.waiting() == 0 {
            std::thread::yield_now();
        }
        assert!(matches!(
            backlog.next(Duration::from_secs(5)),
            Next::Job(Job::Batch(_))
        ));
        assert_eq!(pusher.join().unwrap().ok(), Some(true), "it waited");
        assert!(matches!(
            backlog.next(Duration::from_secs(5)),
            Next::Job(Job::Batch(_))
        ));
    }

    #[test]
    fn log_lines_over_the_budget_are_dropped_and_counted_never_queued() {
        let backlog = Backlog::new(100);
        backlog.push(Job::Batch(vec![0; 95])).unwrap();
        for _ in 0..1000 {
            assert_eq!(
                backlog.push(Job::Log(Level::Info, "denied: x".into())).ok(),
                Some(false)
            );
        }
        assert_eq!(backlog.queued_bytes(), 95, "nothing past the budget");
        assert!(matches!(
            backlog.next(Duration::ZERO),
            Next::Job(Job::Batch(_))
        ));
        backlog.push(Job::Log(Level::Info, "after".into())).unwrap();
        let Next::Job(Job::Log(Level::Warn, note)) = backlog.next(Duration::ZERO) else {
            panic!("the drop is reported first");
        };
        assert_eq!(note, "1000 log line(s) dropped while the writer was behind");
        assert!(matches!(
            backlog.next(Duration::ZERO),
            Next::Job(Job::Log(Level::Info, _))
        ));
    }

    #[test]
    fn a_writer_that_gave_up_releases_a_waiting_receiver() {
        let backlog = Arc::new(Backlog::new(100));
        backlog.push(Job::Batch(vec![0; 80])).unwrap();
        let pusher = {
            let backlog = backlog.clone();
            std::thread::spawn(move || backlog.push(Job::Batch(vec![0; 80])).is_err())
        };
        while backlog.waiting() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(backlog.writer_gone(), 1);
        assert!(pusher.join().unwrap());
    }
}
