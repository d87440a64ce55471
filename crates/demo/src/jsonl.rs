//! Reading the service's JSON Lines output back, to compare it with what the workload expected.
//! User mode.

use std::path::Path;

use crate::workload::ExpectedEvent;

/// What a JSON Lines file holds.
#[derive(Debug, Default, Clone)]
pub struct JsonlContents {
    /// Event records, in file order.
    pub events: Vec<serde_json::Value>,
    /// Gap records, in file order.
    pub gaps: Vec<serde_json::Value>,
    /// The driver's periodic counters records, in file order.
    pub driver_stats: Vec<serde_json::Value>,
    /// Lines that did not parse.
    pub malformed: usize,
}

/// Reads a JSON Lines file back.
///
/// # Errors
///
/// Reading the file.
pub fn read_jsonl(path: &Path) -> std::io::Result<JsonlContents> {
    let text = std::fs::read_to_string(path)?;
    let mut contents = JsonlContents::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) if value.get("gap").is_some() => contents.gaps.push(value),
            Ok(value) if value.get("driver_stats").is_some() => contents.driver_stats.push(value),
            Ok(value) => contents.events.push(value),
            Err(_) => contents.malformed += 1,
        }
    }
    Ok(contents)
}

/// The event records of thread `tid` in `epoch` as [`ExpectedEvent`]s, in file order.
pub fn events_of_thread(contents: &JsonlContents, epoch: u32, tid: u32) -> Vec<ExpectedEvent> {
    contents
        .events
        .iter()
        .filter(|e| {
            e["tid"].as_u64() == Some(u64::from(tid)) && e["epoch"].as_u64() == Some(epoch.into())
        })
        .map(|e| ExpectedEvent {
            kind: match e["kind"].as_str() {
                Some("open") => "open",
                Some("first_write") => "first_write",
                Some("rename") => "rename",
                Some("hard_link") => "hard_link",
                Some("delete") => "delete",
                Some("close_modified") => "close_modified",
                _ => "?",
            },
            path: e["path"].as_str().unwrap_or_default().to_owned(),
            target: e["target"].as_str().map(str::to_owned),
            pid: e["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_default(),
            tid,
        })
        .collect()
}
