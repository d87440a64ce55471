//! The driver's error type: one `NtStatus` newtype holding a failure code, and a `Result` whose
//! error is that type. Portable (no kernel calls), so the logic that produces statuses can be
//! unit-tested on the host.

use core::fmt;

use vigil_sys::{NT_SUCCESS, NTSTATUS, STATUS_SUCCESS};

/// A failure `NTSTATUS`.
///
/// # Invariants
///
/// The code is not a success code (`NT_SUCCESS(code)` is false). `STATUS_TIMEOUT`, a success
/// code, is never an `NtStatus`: a wait's "timed out" is a value of its own, not an error that
/// can be confused with success (RULES.md, rule 7).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NtStatus(NTSTATUS);

impl NtStatus {
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    pub const INSUFFICIENT_RESOURCES: Self = Self(vigil_sys::STATUS_INSUFFICIENT_RESOURCES);
    /// `STATUS_INVALID_PARAMETER`.
    pub const INVALID_PARAMETER: Self = Self(vigil_sys::STATUS_INVALID_PARAMETER);
    /// `STATUS_UNSUCCESSFUL`.
    pub const UNSUCCESSFUL: Self = Self(vigil_sys::STATUS_UNSUCCESSFUL);
    /// `STATUS_INVALID_USER_BUFFER`.
    pub const INVALID_USER_BUFFER: Self = Self(vigil_sys::STATUS_INVALID_USER_BUFFER);
    /// `STATUS_ACCESS_VIOLATION`.
    pub const ACCESS_VIOLATION: Self = Self(vigil_sys::STATUS_ACCESS_VIOLATION);
    /// `STATUS_NOT_SUPPORTED`.
    pub const NOT_SUPPORTED: Self = Self(vigil_sys::STATUS_NOT_SUPPORTED);
    /// `STATUS_INVALID_DEVICE_STATE`.
    pub const INVALID_DEVICE_STATE: Self = Self(vigil_sys::STATUS_INVALID_DEVICE_STATE);
    /// `STATUS_FLT_DO_NOT_DETACH`.
    pub const FLT_DO_NOT_DETACH: Self = Self(vigil_sys::STATUS_FLT_DO_NOT_DETACH);

    /// Wraps `status` if it is a failure code; `None` for success and informational codes.
    pub const fn from_failure(status: NTSTATUS) -> Option<Self> {
        if NT_SUCCESS(status) {
            None
        } else {
            Some(Self(status))
        }
    }

    /// The raw code.
    pub const fn code(self) -> NTSTATUS {
        self.0
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtStatus({:#010x})", self.0.cast_unsigned())
    }
}

/// The driver's result type.
pub type Result<T = (), E = NtStatus> = core::result::Result<T, E>;

/// Turns a kernel routine's returned status into a `Result`.
///
/// Success *and* informational codes map to `Ok(status)` so a caller that must tell
/// `STATUS_TIMEOUT` apart (rule 7) still can.
///
/// # Errors
///
/// The status itself, when it is a failure code.
pub fn check(status: NTSTATUS) -> Result<NTSTATUS> {
    NtStatus::from_failure(status).map_or(Ok(status), Err)
}

/// Turns a kernel wait's status into how the wait ended: `STATUS_SUCCESS` is signalled,
/// `STATUS_TIMEOUT` (a success code, rule 7) timed out.
///
/// # Errors
///
/// A failure status as itself; any other success code (a kernel-mode, non-alertable wait on one
/// object returns neither) as `STATUS_UNSUCCESSFUL`, never as a signal.
pub fn wait_outcome(status: NTSTATUS) -> Result<vigil_core::WaitOutcome> {
    match check(status)? {
        STATUS_SUCCESS => Ok(vigil_core::WaitOutcome::Signalled),
        vigil_sys::STATUS_TIMEOUT => Ok(vigil_core::WaitOutcome::TimedOut),
        _ => Err(NtStatus::UNSUCCESSFUL),
    }
}

/// Runs `body` and turns its result into the `NTSTATUS` an `extern "win64"` callback returns.
pub fn status_of(body: impl FnOnce() -> Result) -> NTSTATUS {
    match body() {
        Ok(()) => STATUS_SUCCESS,
        Err(error) => error.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sys::{STATUS_ACCESS_DENIED, STATUS_TIMEOUT};

    #[test]
    fn timeout_is_not_a_failure() {
        assert_eq!(NtStatus::from_failure(STATUS_TIMEOUT), None);
        assert_eq!(check(STATUS_TIMEOUT), Ok(STATUS_TIMEOUT));
    }

    #[test]
    fn waits_tell_timeout_from_signal() {
        use vigil_core::WaitOutcome;
        assert_eq!(wait_outcome(STATUS_SUCCESS), Ok(WaitOutcome::Signalled));
        assert_eq!(wait_outcome(STATUS_TIMEOUT), Ok(WaitOutcome::TimedOut));
        assert_eq!(
            wait_outcome(vigil_sys::STATUS_ALERTED),
            Err(NtStatus::UNSUCCESSFUL)
        );
        assert_eq!(
            wait_outcome(STATUS_ACCESS_DENIED).map_err(NtStatus::code),
            Err(STATUS_ACCESS_DENIED)
        );
    }

    #[test]
    fn failures_round_trip() {
        let error = NtStatus::from_failure(STATUS_ACCESS_DENIED).expect("a failure code");
        assert_eq!(error.code(), STATUS_ACCESS_DENIED);
        assert_eq!(check(STATUS_ACCESS_DENIED), Err(error));
        assert_eq!(status_of(|| Err(error)), STATUS_ACCESS_DENIED);
        assert_eq!(status_of(|| Ok(())), STATUS_SUCCESS);
    }
}
