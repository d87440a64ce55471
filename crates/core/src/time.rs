//! Bounded waits: the only way to express a timeout in this crate. Zero and infinite timeouts
//! cannot be represented, so no wait here (and no `FltSendMessage` given a [`Timeout`]) can block
//! forever, and no caller can ask for a "wait" that silently does not wait. Kernel and user mode.

use core::num::NonZeroU32;
use core::time::Duration;

/// A finite, non-zero timeout, in milliseconds.
///
/// # Invariants
/// `1 <= millis <= Timeout::MAX.as_millis()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeout {
    millis: NonZeroU32,
}

impl Timeout {
    /// The longest timeout: ten minutes. Policy: no wait in the driver has a reason to be longer, and
    /// a longer one would look like a hang to `fltmc unload`.
    pub const MAX: Timeout = Timeout {
        millis: NonZeroU32::new(600_000).unwrap(),
    };

    /// A timeout of `millis` milliseconds, or `None` if it is zero or longer than [`Timeout::MAX`].
    pub const fn from_millis(millis: u32) -> Option<Timeout> {
        match NonZeroU32::new(millis) {
            Some(millis) if millis.get() <= Self::MAX.millis.get() => Some(Timeout { millis }),
            _ => None,
        }
    }

    /// The timeout in milliseconds (at least 1).
    pub const fn as_millis(self) -> u32 {
        self.millis.get()
    }

    /// The timeout as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.millis.get() as u64)
    }

    /// The timeout as the kernel wants it: a relative interval in 100 ns units, which is negative
    /// (`KeWaitForSingleObject`, `KeDelayExecutionThread`, `FltSendMessage`). Never zero.
    pub const fn as_nt_relative(self) -> i64 {
        -(self.millis.get() as i64) * 10_000
    }
}

/// How a bounded wait ended. `TimedOut` is `STATUS_TIMEOUT`, a *success* code in NT: this type
/// keeps it apart from `Signalled`, so a caller cannot confuse the two.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The object was signalled.
    Signalled,
    /// The timeout expired first.
    TimedOut,
}

/// Waits, one bounded wait after another, until `wait` reports the object signalled; returns how
/// many waits it took. For joining a thread (RULES.md rule 2): a timeout, and equally a wait that
/// failed, says nothing about the thread, which may still be running driver code, so neither
/// ends the join. IRQL: what `wait` allows (`PASSIVE_LEVEL` for a thread object).
pub fn wait_until_signalled<E>(mut wait: impl FnMut() -> Result<WaitOutcome, E>) -> u64 {
    let mut waits = 1;
    while !matches!(wait(), Ok(WaitOutcome::Signalled)) {
        waits += 1;
    }
    waits
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Timeout, WaitOutcome, wait_until_signalled};

    #[test]
    fn a_join_ends_only_when_signalled_not_on_a_timeout_or_an_error() {
        let script = [
            Err(()),
            Ok(WaitOutcome::TimedOut),
            Err(()),
            Ok(WaitOutcome::Signalled),
        ];
        let mut next = script.iter().copied();
        let waits = wait_until_signalled(|| next.next().expect("waited past the signal"));
        assert_eq!(waits, 4);
        // The old join (until anything but a timeout) stopped at the first error: its twin.
        let mut next = script.iter().copied();
        let mut old_waits = 1;
        while matches!(next.next(), Some(Ok(WaitOutcome::TimedOut))) {
            old_waits += 1;
        }
        assert_eq!(old_waits, 1, "the twin takes the error for an exit");
    }

    #[test]
    fn zero_and_too_long_are_unrepresentable() {
        assert_eq!(Timeout::from_millis(0), None);
        assert_eq!(Timeout::from_millis(600_001), None);
        assert_eq!(Timeout::from_millis(u32::MAX), None);
        assert_eq!(Timeout::from_millis(600_000), Some(Timeout::MAX));
        assert_eq!(Timeout::from_millis(1).map(Timeout::as_millis), Some(1));
    }

    #[test]
    fn conversions() {
        let t = Timeout::from_millis(1500).unwrap();
        assert_eq!(t.as_nt_relative(), -15_000_000);
        assert_eq!(t.as_millis(), 1500);
        assert_eq!(t.as_duration().as_millis(), 1500);
        assert_eq!(Timeout::MAX.as_nt_relative(), -6_000_000_000);
    }
}
