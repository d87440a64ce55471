//! The Windows Event Log channel: `RegisterEventSourceW` for the source `VigilService`, one
//! `ReportEventW` per line that `crate::eventlog::event_for` selects. User mode, Windows only:
//! cross-compiled and read, never run by this project.
//!
//! Left out: a message-table resource. The source is registered at install under
//! `EventLog\Application` without an `EventMessageFile`, so Event Viewer shows each event's text
//! (its one insertion string) after a note that the description was not found; the event
//! identifiers and types are exact, which is what filters and SIEM forwarding use.

use windows::Win32::Foundation::HANDLE;
use windows::Win32::System::EventLog::{
    DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
    RegisterEventSourceW, ReportEventW,
};
use windows::core::PCWSTR;

use crate::eventlog::event_for;
use crate::service::{Level, Log};
use crate::windows::scm::SERVICE_NAME;

/// The Event Log source; a line that cannot be reported is dropped (the file log has it).
#[derive(Debug)]
pub struct EventLog {
    source: Option<HANDLE>,
    /// The last line reported, to collapse repeats as the file log does.
    last: Option<String>,
}

// SAFETY: an event source handle may be used from any thread (the Event Log API serializes
// its own use of it); the core's writer thread is the only user at a time.
unsafe impl Send for EventLog {}

impl EventLog {
    /// Opens the source on this machine; without it, lines are dropped.
    pub fn open() -> Self {
        let name: Vec<u16> = SERVICE_NAME.encode_utf16().chain(Some(0)).collect();
        // SAFETY: `name` is NUL-terminated and outlives the call; no server name (this
        // machine).
        let source = unsafe { RegisterEventSourceW(PCWSTR::null(), PCWSTR(name.as_ptr())) }.ok();
        Self { source, last: None }
    }
}

impl Log for EventLog {
    fn log(&mut self, level: Level, message: &str) {
        let (Some(source), Some(id)) = (self.source, event_for(level, message)) else {
            return;
        };
        if self.last.as_deref() == Some(message) {
            return;
        }
        self.last = Some(message.to_owned());
        let kind = match level {
            Level::Info => EVENTLOG_INFORMATION_TYPE,
            Level::Warn => EVENTLOG_WARNING_TYPE,
            Level::Error => EVENTLOG_ERROR_TYPE,
        };
        let text: Vec<u16> = message.encode_utf16().chain(Some(0)).collect();
        let strings = [PCWSTR(text.as_ptr())];
        // SAFETY: `source` is the handle registered above and not yet deregistered; `strings`
        // holds one NUL-terminated string that outlives the call; no SID and no raw data.
        let _ = unsafe { ReportEventW(source, kind, 0, id as u32, None, 0, Some(&strings), None) };
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        if let Some(source) = self.source.take() {
            // SAFETY: registered in `open`, deregistered once.
            let _ = unsafe { DeregisterEventSource(source) };
        }
    }
}

/// The source's key under the Application log.
const SOURCE_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\VigilService";

/// Registers the source (`vigil service install`, as an administrator): the key with
/// `TypesSupported` = error, warning, information.
///
/// # Errors
///
/// The registry's Win32 error.
pub fn register_source() -> Result<(), String> {
    use windows::Win32::System::Registry::REG_DWORD;
    // EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE
    let types: u32 = 7;
    crate::windows::registry::set_value(
        SOURCE_KEY,
        "TypesSupported",
        REG_DWORD,
        &types.to_le_bytes(),
    )
    .map_err(|e| format!("cannot register the Event Log source: {e}"))
}

/// Removes the source's key (`vigil service uninstall`); a missing key is not an error.
pub fn unregister_source() {
    use windows::Win32::System::Registry::{HKEY_LOCAL_MACHINE, RegDeleteKeyW};
    let key_name: Vec<u16> = SOURCE_KEY.encode_utf16().chain(Some(0)).collect();
    // SAFETY: `key_name` is NUL-terminated and outlives the call.
    let _ = unsafe { RegDeleteKeyW(HKEY_LOCAL_MACHINE, PCWSTR(key_name.as_ptr())) };
}
