//! `vigil tail`: follows the JSON Lines file the service writes and prints each record
//! human-readably. User mode, portable.
//!
//! Why the file and not the port: the port admits one connection (RULES.md rule 18), which the
//! running service holds; the file is what the service made of the events, gaps included.
//! Rotation is followed: when the live file is replaced or shrinks, reading restarts at the
//! start of the new file. A partial last line (the service writes whole batches, but a reader
//! can still catch a write in progress) waits for its newline.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anstyle::{AnsiColor, Effects, Style};
use serde_json::Value;

/// Follows one JSON Lines file.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    pending: Vec<u8>,
}

impl Follower {
    /// Starts at the end of the file (`from_start` false) or at its beginning.
    ///
    /// # Errors
    ///
    /// Opening the file, except that a file not there yet is waited for.
    pub fn new(path: impl Into<PathBuf>, from_start: bool) -> io::Result<Self> {
        let path = path.into();
        let mut follower = Self {
            path,
            file: None,
            offset: 0,
            pending: Vec::new(),
        };
        follower.reopen()?;
        if !from_start {
            follower.offset = follower.file_len();
        }
        Ok(follower)
    }

    /// The followed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_len(&self) -> u64 {
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len())
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.offset = 0;
        self.pending.clear();
        self.file = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(())
    }

    /// `true` when the path now names another (rotated-in) file, or the file shrank.
    fn replaced(&self) -> bool {
        let Ok(on_disk) = std::fs::metadata(&self.path) else {
            return false;
        };
        if on_disk.len() < self.offset {
            return true;
        }
        let Some(open) = self.file.as_ref().and_then(|f| f.metadata().ok()) else {
            return true;
        };
        !same_file(&open, &on_disk)
    }

    /// Reads what was appended since the last call; returns the complete lines.
    ///
    /// # Errors
    ///
    /// Reading the file.
    pub fn poll(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        if self.file.is_some() {
            self.read_new(&mut lines)?;
        }
        if self.file.is_none() || self.replaced() {
            // Finish the old file first (what was written before the rotation), then switch.
            self.reopen()?;
            if self.file.is_some() {
                self.read_new(&mut lines)?;
            }
        }
        Ok(lines)
    }

    fn read_new(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        let n = file.read_to_end(&mut chunk)?;
        self.offset += n as u64;
        self.pending.extend_from_slice(&chunk);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        Ok(())
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.ino() == b.ino() && a.dev() == b.dev()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    // Without a stable file id in std, creation times tell a rotated-in file apart.
    a.created().ok() == b.created().ok()
}

fn paint(color: bool, style: Style, text: &str) -> String {
    if color {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

fn kind_color(kind: &str) -> AnsiColor {
    match kind {
        "first_write" => AnsiColor::Yellow,
        "rename" | "hard_link" => AnsiColor::Cyan,
        "delete" => AnsiColor::Red,
        "close_modified" => AnsiColor::Green,
        _ => AnsiColor::BrightBlack,
    }
}

/// One JSON Lines record as a human-readable line (the same layout as the terminal sink);
/// a line that is not one of the service's records is shown as it is.
pub fn format_line(line: &str, color: bool) -> String {
    let Ok(Value::Object(v)) = serde_json::from_str::<Value>(line) else {
        return line.to_owned();
    };
    let epoch = v.get("epoch").and_then(Value::as_u64).unwrap_or(0);
    if let Some(gap) = v.get("gap") {
        let field = |k: &str| gap.get(k).and_then(Value::as_u64).unwrap_or(0);
        let style = Style::new()
            .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)))
            .effects(Effects::BOLD);
        return paint(
            color,
            style,
            &format!(
                "!! {} event(s) lost: sequence {}..={} (driver instance {epoch})",
                field("missing"),
                field("from"),
                field("to")
            ),
        );
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let time = text("time");
    // "2024-05-01T12:34:56.1234567Z" -> "12:34:56.123"
    let clock = time.get(11..23).unwrap_or(time);
    let kind = text("kind");
    let style = Style::new().fg_color(Some(anstyle::Color::Ansi(kind_color(kind))));
    let mut out = format!(
        "{clock} {} pid {:<6} {}",
        paint(color, style, &format!("{kind:<14}")),
        v.get("pid").and_then(Value::as_u64).unwrap_or(0),
        text("path")
    );
    if let Some(target) = v.get("target").and_then(Value::as_str) {
        out.push_str(" -> ");
        out.push_str(target);
    }
    if let Some(flags) = v
        .get("flags")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    {
        let names: Vec<&str> = flags.iter().filter_map(Value::as_str).collect();
        let _ = write!(out, " [{}]", names.join(","));
    }
    let status = text("status");
    if !status.is_empty() && status != "0x00000000" {
        out.push(' ');
        out.push_str(&paint(
            color,
            Style::new().effects(Effects::BOLD),
            &format!("status {status}"),
        ));
    }
    out
}

/// Prints the lines of one poll.
///
/// # Errors
///
/// Writing to `out`.
pub fn print_lines(out: &mut dyn Write, lines: &[String], color: bool) -> io::Result<()> {
    for line in lines {
        writeln!(out, "{}", format_line(line, color))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-tail-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn new_lines_are_read_whole_and_rotation_is_followed() {
        let d = dir("follow");
        let path = d.join("vigil.jsonl");
        append(&path, "{\"old\":1}\n");
        let mut f = Follower::new(&path, false).unwrap();
        assert!(f.poll().unwrap().is_empty(), "starts at the end");
        append(&path, "{\"a\":1}\n{\"b\"");
        assert_eq!(f.poll().unwrap(), ["{\"a\":1}"]);
        append(&path, ":2}\n");
        assert_eq!(f.poll().unwrap(), ["{\"b\":2}"], "a partial line waits");
        // Rotation: the live file is renamed and a new one starts.
        append(&path, "{\"c\":3}\n");
        std::fs::rename(&path, d.join("vigil.jsonl.1")).unwrap();
        append(&path, "{\"d\":4}\n");
        assert_eq!(f.poll().unwrap(), ["{\"c\":3}", "{\"d\":4}"]);
    }

    #[test]
    fn a_missing_file_is_waited_for() {
        let d = dir("missing");
        let path = d.join("vigil.jsonl");
        let mut f = Follower::new(&path, false).unwrap();
        assert!(f.poll().unwrap().is_empty());
        append(&path, "{\"x\":1}\n");
        assert_eq!(f.poll().unwrap(), ["{\"x\":1}"]);
    }

    #[test]
    fn records_are_formatted_like_the_terminal_sink() {
        let event = r#"{"epoch":1,"seq":3,"time":"2024-05-01T12:34:56.1234567Z","kind":"rename","path":"\\a","target":"\\b","pid":42,"tid":1,"volume":"0000-0001","status":"0xc0000022","flags":["directory"],"access":"0x00000000","disposition":0,"information":0,"file_id":null}"#;
        assert_eq!(
            format_line(event, false),
            "12:34:56.123 rename         pid 42     \\a -> \\b [directory] status 0xc0000022"
        );
        let gap = r#"{"gap":{"from":1,"to":4,"missing":4},"epoch":2,"time":"x"}"#;
        assert_eq!(
            format_line(gap, false),
            "!! 4 event(s) lost: sequence 1..=4 (driver instance 2)"
        );
        assert_eq!(format_line("not json", false), "not json");
    }
}
