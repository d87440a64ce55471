//! The Windows service's life as the service control manager (SCM) sees it, written portably
//! so that its order is tested on Linux: `START_PENDING` (with a wait hint and a moving
//! checkpoint) while the policy is read and the output opened, `RUNNING` only once both are
//! ready, `STOP_PENDING` while stopping, then `STOPPED` with an exit code that says why.
//! User mode; `crate::windows::scm` (Windows only) reports these statuses through `SetServiceStatus`.
//!
//! Why: the SCM (and `vigil service start`) takes `RUNNING` as "started". Reporting it before
//! the policy and the output were known to work made a start succeed for a service that then
//! stopped. A failure before `RUNNING` is reported as `STOPPED` with a service-specific exit
//! code ([`StopReason`]); with `failure_actions_on_non_crash_failures` set at install, the
//! SCM's recovery actions fire for it as for a crash.

use std::sync::mpsc;
use std::time::Duration;

use crate::client::ClientError;
use crate::control::ServiceControl;
use crate::service::ServiceError;

/// Why the service stopped with a failure: its service-specific exit code (the SCM shows it
/// as `SERVICE_EXIT_CODE`, with `WIN32_EXIT_CODE` 1066, `ERROR_SERVICE_SPECIFIC_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum StopReason {
    /// The policy file was refused (its line and reason are in the log).
    PolicyRefused = 1,
    /// The output (JSON Lines file or its directory) could not be opened, or is unsafe.
    OutputUnavailable = 2,
    /// The driver speaks another major protocol version.
    DriverIncompatible = 3,
    /// The driver refused the service (access denied, configuration refused).
    DriverRefused = 4,
    /// The output failed and stayed failed until the stop (events received were lost).
    OutputFailed = 5,
    /// The service's own fault (a thread panicked).
    Internal = 6,
}

impl StopReason {
    /// The service-specific exit code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The reason for a failed run of the core.
    pub const fn of(error: &ServiceError) -> Self {
        match error {
            ServiceError::Client(ClientError::VersionMismatch { .. }) => Self::DriverIncompatible,
            ServiceError::Client(_) => Self::DriverRefused,
            ServiceError::Sink(_) => Self::OutputFailed,
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PolicyRefused => "the policy file was refused",
            Self::OutputUnavailable => "the output could not be opened safely",
            Self::DriverIncompatible => "the driver speaks another protocol version",
            Self::DriverRefused => "the driver refused the service",
            Self::OutputFailed => "the output failed until the stop",
            Self::Internal => "internal failure",
        })
    }
}

/// A state the SCM knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Starting; the wait hint bounds the next report.
    StartPending,
    /// Started: policy loaded, output open.
    Running,
    /// Stopping; the wait hint bounds the next report.
    StopPending,
    /// Stopped, with the exit code.
    Stopped,
}

/// One status report (`SERVICE_STATUS`'s meaningful fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The state.
    pub state: State,
    /// Stop, pre-shutdown and parameter-change controls are accepted (only while running).
    pub accepts_controls: bool,
    /// `None` for success, else why it stopped.
    pub exit: Option<StopReason>,
    /// Moves on at every report of a pending state, as the SCM requires.
    pub checkpoint: u32,
    /// How long until the next report, for pending states.
    pub wait_hint: Duration,
}

/// Where statuses go: `SetServiceStatus` on Windows, a list in tests.
pub trait StatusReporter {
    /// Reports one status.
    fn report(&mut self, status: Status);
}

/// Wait hint of `START_PENDING`: reading the policy and opening (repairing) the output.
pub const START_WAIT_HINT: Duration = Duration::from_secs(10);
/// Wait hint of `STOP_PENDING`: poll interval + drain limit + closing, with margin.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(5);
/// How often a pending state is reported again with the next checkpoint.
const PENDING_REPORT: Duration = Duration::from_millis(500);

/// What the worker tells the reporting thread.
enum WorkerNews {
    Ready,
    Finished(Result<(), StopReason>),
}

/// Given to the worker: call [`ready`](Self::ready) once the policy is loaded and the output is
/// open (before waiting for the driver, which may be loaded later).
pub struct Readiness {
    news: mpsc::Sender<WorkerNews>,
}

impl Readiness {
    /// The service is ready: `RUNNING` is reported.
    pub fn ready(&self) {
        let _ = self.news.send(WorkerNews::Ready);
    }
}

/// Runs `worker` on its own thread and reports the statuses around it (see the module
/// documentation); returns how it ended. `control` is the one the SCM's handler requests the
/// stop on.
///
/// # Errors
///
/// The worker's [`StopReason`], or [`StopReason::Internal`] when it could not be started or
/// panicked.
pub fn drive(
    reporter: &mut dyn StatusReporter,
    control: &ServiceControl,
    worker: impl FnOnce(&Readiness) -> Result<(), StopReason> + Send + 'static,
) -> Result<(), StopReason> {
    let mut checkpoint = 1;
    let pending = |state, checkpoint, hint| Status {
        state,
        accepts_controls: false,
        exit: None,
        checkpoint,
        wait_hint: hint,
    };
    reporter.report(pending(State::StartPending, checkpoint, START_WAIT_HINT));
    let (tx, rx) = mpsc::channel();
    let readiness = Readiness { news: tx.clone() };
    let spawned = std::thread::Builder::new()
        .name("vigil-service".into())
        .spawn(move || {
            let result = worker(&readiness);
            let _ = tx.send(WorkerNews::Finished(result));
        });
    let result = if spawned.is_err() {
        Err(StopReason::Internal)
    } else {
        let mut running = false;
        let mut stopping = false;
        loop {
            match rx.recv_timeout(PENDING_REPORT) {
                Ok(WorkerNews::Ready) if !running && !stopping => {
                    running = true;
                    reporter.report(Status {
                        state: State::Running,
                        accepts_controls: true,
                        exit: None,
                        checkpoint: 0,
                        wait_hint: Duration::ZERO,
                    });
                }
                Ok(WorkerNews::Ready) => {}
                Ok(WorkerNews::Finished(result)) => break result,
                // The worker is gone without a word: it panicked.
                Err(mpsc::RecvTimeoutError::Disconnected) => break Err(StopReason::Internal),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if control.stop_requested() {
                        checkpoint = if stopping { checkpoint + 1 } else { 1 };
                        stopping = true;
                        reporter.report(pending(State::StopPending, checkpoint, STOP_WAIT_HINT));
                    } else if !running {
                        checkpoint += 1;
                        reporter.report(pending(State::StartPending, checkpoint, START_WAIT_HINT));
                    }
                }
            }
        }
    };
    reporter.report(Status {
        state: State::Stopped,
        accepts_controls: false,
        exit: result.err(),
        checkpoint: 0,
        wait_hint: Duration::ZERO,
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<Status>>>);

    impl StatusReporter for Recorded {
        fn report(&mut self, status: Status) {
            self.0.lock().unwrap().push(status);
        }
    }

    impl Recorded {
        fn states(&self) -> Vec<State> {
            let mut states: Vec<State> = self.0.lock().unwrap().iter().map(|s| s.state).collect();
            states.dedup();
            states
        }
    }

    #[test]
    fn running_is_reported_only_once_the_worker_is_ready() {
        let mut reporter = Recorded::default();
        let seen = reporter.clone();
        let control = ServiceControl::new();
        let stop = control.clone();
        let result = drive(&mut reporter, &control, move |ready| {
            // Setup: nothing but START_PENDING may have been reported yet.
            let before = seen.states();
            ready.ready();
            while !seen.states().contains(&State::Running) {
                std::thread::yield_now();
            }
            stop.request_stop();
            assert_eq!(before, [State::StartPending]);
            Ok(())
        });
        assert_eq!(result, Ok(()));
        let states = reporter.states();
        assert_eq!(states.first(), Some(&State::StartPending));
        assert_eq!(states.get(1), Some(&State::Running));
        assert_eq!(states.last(), Some(&State::Stopped));
        let first = reporter.0.lock().unwrap()[0];
        assert_eq!(first.wait_hint, START_WAIT_HINT);
        assert!(!first.accepts_controls);
        let last = *reporter.0.lock().unwrap().last().unwrap();
        assert_eq!(last.exit, None);
    }

    #[test]
    fn a_bad_policy_stops_the_service_before_it_ever_runs_with_its_exit_code() {
        let mut reporter = Recorded::default();
        let result = drive(&mut reporter, &ServiceControl::new(), |_ready| {
            Err(StopReason::PolicyRefused)
        });
        assert_eq!(result, Err(StopReason::PolicyRefused));
        assert_eq!(reporter.states(), [State::StartPending, State::Stopped]);
        let last = *reporter.0.lock().unwrap().last().unwrap();
        assert_eq!(last.exit.map(StopReason::code), Some(1));
    }

    #[test]
    fn pending_reports_move_their_checkpoint_on() {
        let mut reporter = Recorded::default();
        let result = drive(&mut reporter, &ServiceControl::new(), |ready| {
            std::thread::sleep(PENDING_REPORT * 3);
            ready.ready();
            Err(StopReason::DriverRefused)
        });
        assert_eq!(result, Err(StopReason::DriverRefused));
        let reports = reporter.0.lock().unwrap();
        let checkpoints: Vec<u32> = reports
            .iter()
            .filter(|s| s.state == State::StartPending)
            .map(|s| s.checkpoint)
            .collect();
        assert!(checkpoints.len() >= 2, "{checkpoints:?}");
        assert!(
            checkpoints.windows(2).all(|w| w[1] > w[0]),
            "{checkpoints:?}"
        );
    }

    #[test]
    fn a_worker_that_panics_is_an_internal_failure_not_a_hang() {
        let mut reporter = Recorded::default();
        let result = drive(&mut reporter, &ServiceControl::new(), |_ready| {
            panic!("boom");
        });
        assert_eq!(result, Err(StopReason::Internal));
        assert_eq!(reporter.states().last(), Some(&State::Stopped));
    }

    #[test]
    fn each_failure_of_the_core_has_its_own_exit_code() {
        let codes = [
            StopReason::of(&ServiceError::Client(ClientError::AccessDenied)),
            StopReason::of(&ServiceError::Client(ClientError::VersionMismatch {
                driver: None,
                service: vigil_protocol::Version::CURRENT,
            })),
            StopReason::of(&ServiceError::Sink(std::io::Error::other("x"))),
        ];
        assert_eq!(
            codes,
            [
                StopReason::DriverRefused,
                StopReason::DriverIncompatible,
                StopReason::OutputFailed
            ]
        );
        assert!(codes.iter().all(|c| c.code() != 0));
    }
}
