//! `vigil tail`: follows the JSON Lines file the service writes and prints each record
//! human-readably. User mode, portable.
//!
//! Why the file and not the port: the port admits one connection (RULES.md rule 18), which the
//! running service holds; the file is what the service made of the events, gaps included.
//! Rotation is followed: when the path names another file (told apart by its identity, the
//! volume and file index, never by times) or the file shrinks, reading restarts at the start of
//! the new file. `--from-start` reads in bounded slices, in linear time. Left out: after a
//! rotation by copy and truncation (the live file held by another process), a follower that
//! polls only once the emptied file has grown past its old offset misses that new start. A partial last line (the service writes whole batches, but a reader
//! can still catch a write in progress) waits for its newline.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anstyle::{AnsiColor, Effects, Style};
use serde_json::Value;

/// Most bytes one [`Follower::poll`] reads: `--from-start` on a large file is taken in slices,
/// so memory stays bounded and lines start printing at once.
pub const POLL_BUDGET: usize = 1024 * 1024;

/// Follows one JSON Lines file.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    /// Identity of the open file, to tell a rotated-in file from it.
    identity: Option<FileIdentity>,
    offset: u64,
    pending: Vec<u8>,
    /// The last poll read everything there was.
    caught_up: bool,
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
            identity: None,
            offset: 0,
            pending: Vec::new(),
            caught_up: true,
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

    /// `false` when the last [`poll`](Self::poll) stopped at its budget with more to read:
    /// poll again at once.
    pub const fn caught_up(&self) -> bool {
        self.caught_up
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
        self.identity = self.file.as_ref().and_then(|f| FileIdentity::of(f).ok());
        Ok(())
    }

    /// `true` when the path now names another (rotated-in) file, or the file shrank (a
    /// rotation by copy and truncation keeps the file and empties it).
    fn replaced(&self) -> bool {
        let Ok(on_disk) = File::open(&self.path) else {
            return false;
        };
        if on_disk.metadata().map_or(0, |m| m.len()) < self.offset {
            return true;
        }
        match (&self.identity, FileIdentity::of(&on_disk)) {
            (Some(open), Ok(now)) => *open != now,
            _ => true,
        }
    }

    /// Reads what was appended since the last call, at most [`POLL_BUDGET`] bytes; returns
    /// the complete lines.
    ///
    /// # Errors
    ///
    /// Reading the file.
    pub fn poll(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        if self.file.is_some() {
            self.read_new(&mut lines)?;
        }
        if self.caught_up && (self.file.is_none() || self.replaced()) {
            // Finish the old file first (what was written before the rotation), then switch.
            self.reopen()?;
            if self.file.is_some() {
                self.read_new(&mut lines)?;
            }
        }
        Ok(lines)
    }

    /// Reads one slice and splits off its complete lines: each byte is looked at once, and
    /// the unfinished tail is moved once per call, so a whole file costs linear time.
    fn read_new(&mut self, lines: &mut Vec<String>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let before = self.pending.len();
        let n = file
            .take(POLL_BUDGET as u64)
            .read_to_end(&mut self.pending)?;
        self.offset += n as u64;
        self.caught_up = n < POLL_BUDGET;
        let mut start = 0;
        // Only the new bytes can hold a newline: the old ones were searched by the last call.
        let mut search_from = before;
        while let Some(at) = self
            .pending
            .get(search_from..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        {
            let end = search_from + at;
            lines.push(String::from_utf8_lossy(&self.pending[start..end]).into_owned());
            start = end + 1;
            search_from = start;
        }
        self.pending.drain(..start);
        Ok(())
    }
}

/// What tells one file from another at the same path, whatever its times say (NTFS
/// tunnelling gives a file created under a just-renamed name the old file's creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    /// The volume (`st_dev`; on Windows the volume serial number).
    volume: u64,
    /// The file on it (`st_ino`; on Windows the 64-bit file index).
    file: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(file: &File) -> io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = file.metadata()?;
        Ok(Self {
            volume: metadata.dev(),
            file: metadata.ino(),
        })
    }

    /// Windows only (cross-compiled here, never run): `GetFileInformationByHandle`'s volume
    /// serial number and file index, which a rename keeps and a new file does not share.
    #[cfg(windows)]
    fn of(file: &File) -> io::Result<Self> {
        use std::os::windows::io::AsRawHandle;
        use windows::Win32::Foundation::HANDLE;
        use windows::Win32::Storage::FileSystem::{
            BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle,
        };
        let mut info = BY_HANDLE_FILE_INFORMATION::default();
        // SAFETY: the handle is `file`'s, open for the duration of the call; `info` is a valid
        // out-pointer to a structure of the documented type.
        unsafe { GetFileInformationByHandle(HANDLE(file.as_raw_handle()), &raw mut info) }
            .map_err(|e| io::Error::from_raw_os_error(e.code().0 & 0xFFFF))?;
        Ok(Self {
            volume: u64::from(info.dwVolumeSerialNumber),
            file: (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow),
        })
    }

    #[cfg(not(any(unix, windows)))]
    fn of(_file: &File) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no file identity on this platform",
        ))
    }
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

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn a_large_file_is_read_in_bounded_slices_with_every_line_once() {
        let d = std::env::temp_dir().join(format!("vigil-tail-{}-budget", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("vigil.jsonl");
        let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(90));
        let count = 3 * POLL_BUDGET / line.len();
        std::fs::write(&path, line.repeat(count)).unwrap();
        let mut f = Follower::new(&path, true).unwrap();
        let mut polls = 0;
        let mut seen = 0;
        loop {
            let lines = f.poll().unwrap();
            polls += 1;
            // One slice per poll, plus the line the last slice cut.
            assert!(
                lines.len() * line.len() <= POLL_BUDGET + line.len(),
                "one slice per poll"
            );
            seen += lines.len();
            if f.caught_up() {
                break;
            }
        }
        assert_eq!(seen, count);
        assert!(polls >= 3, "{polls} poll(s)");
    }
}
