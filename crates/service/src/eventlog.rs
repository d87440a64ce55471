//! Which log lines go to the Windows Event Log, and as which event: the channel an
//! administrator watches (as for Sysmon: a state change, a configuration change, an error),
//! not the service's every line. User mode, portable (tested on Linux);
//! `crate::windows::eventlog` writes the events with `ReportEventW` under the source
//! `VigilService` in the Application log (Windows only: cross-compiled and read, never run).
//!
//! Policy: errors and warnings always (lost events, refused policies, output failures,
//! reconnections); of the informational lines only lifecycle and configuration ones
//! (connected, stopped, policy reloaded, output writing again). A denied access is an
//! informational line of the service log and is left out: any user can produce one per
//! attempt, and the Event Log is a shared, size-bounded channel that must not be flooded.

use crate::service::Level;

/// Event identifiers, stable: an administrator filters and alerts on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum EventId {
    /// Started, connected, stopped.
    Lifecycle = 1,
    /// The policy changed (reloaded, pushed again).
    Configuration = 2,
    /// Events were lost (a gap, a driver drop counter).
    EventsLost = 3,
    /// Something else worth a warning (a reconnection, a refused reload kept the old policy).
    Warning = 4,
    /// An error: the output failed, the policy was refused, the service stops.
    Error = 5,
}

/// Informational lines that are lifecycle or configuration events, by their start.
const LIFECYCLE: [&str; 4] = [
    "connected:",
    "stopped:",
    "resuming the output",
    "events are written again",
];

/// The event for a log line, or `None` when it stays in the service's own log only.
pub fn event_for(level: Level, message: &str) -> Option<EventId> {
    match level {
        Level::Error => Some(EventId::Error),
        Level::Warn if message.contains("lost") => Some(EventId::EventsLost),
        Level::Warn => Some(EventId::Warning),
        Level::Info if message.starts_with("policy reloaded") => Some(EventId::Configuration),
        Level::Info if LIFECYCLE.iter().any(|p| message.starts_with(p)) => Some(EventId::Lifecycle),
        Level::Info => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_configuration_losses_and_errors_are_events_and_denies_are_not() {
        assert_eq!(
            event_for(Level::Info, "connected: driver protocol 1.0"),
            Some(EventId::Lifecycle)
        );
        assert_eq!(
            event_for(Level::Info, "policy reloaded from C:\\p.toml"),
            Some(EventId::Configuration)
        );
        assert_eq!(
            event_for(Level::Warn, "5 event(s) lost: sequence 1..=5"),
            Some(EventId::EventsLost)
        );
        assert_eq!(
            event_for(Level::Error, "cannot write events (disk full)"),
            Some(EventId::Error)
        );
        assert_eq!(
            event_for(Level::Info, "denied: create \\x by pid 7 (rule 1)"),
            None,
            "any user can produce these: the service log only"
        );
    }
}
