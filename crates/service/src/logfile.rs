//! The service's own log file (`vigil-service.log`): one line per message, with its UTC time
//! and level, size-bounded by rotation, and with repeats collapsed. User mode, portable.
//!
//! Policy: any user can make the service log (every denied open of a protected path is a
//! line), so the log must not be a way to fill the disk: at [`LogFileOptions::max_bytes`]
//! (16 MiB) it rotates to `.1` … `.keep` (4 kept: at most 80 MiB), and a line identical to the
//! one before it (a user looping on the same denied path) is counted, not written, until a
//! different line comes ("the last line repeated N times"). A log that cannot be written is not
//! a reason to stop auditing: failures are counted and the line dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::record::{now_filetime, push_rfc3339};
use crate::service::{Level, Log};

/// Settings of the log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileOptions {
    /// The live log.
    pub path: PathBuf,
    /// Size bound of one file.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl LogFileOptions {
    /// 16 MiB per file, 4 rotated files kept.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: 16 * 1024 * 1024,
            keep: 4,
        }
    }
}

/// The log file; see the module documentation.
#[derive(Debug)]
pub struct RotatingFileLog {
    options: LogFileOptions,
    file: Option<File>,
    size: u64,
    last: Option<(Level, String)>,
    repeats: u64,
    /// Lines that could not be written.
    pub failures: u64,
}

impl RotatingFileLog {
    /// Opens (appends to) the log.
    ///
    /// # Errors
    ///
    /// Opening the file.
    pub fn open(options: LogFileOptions) -> io::Result<Self> {
        let file = open_append(&options.path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            options,
            file: Some(file),
            size,
            last: None,
            repeats: 0,
            failures: 0,
        })
    }

    fn write_line(&mut self, level: Level, message: &str) {
        let mut line = Vec::with_capacity(message.len() + 48);
        push_rfc3339(&mut line, now_filetime());
        let tag = match level {
            Level::Info => " info: ",
            Level::Warn => " warn: ",
            Level::Error => " error: ",
        };
        line.extend_from_slice(tag.as_bytes());
        // One message, one line: a newline inside is written as a space.
        line.extend(message.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.options.max_bytes {
            self.rotate();
        }
        let written = self
            .file
            .as_mut()
            .map_or(Err(io::ErrorKind::NotFound.into()), |f| f.write_all(&line));
        match written {
            Ok(()) => self.size += line.len() as u64,
            Err(_) => self.failures += 1,
        }
    }

    fn rotate(&mut self) {
        let path = &self.options.path;
        let rotated = |n: u32| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let _ = fs::remove_file(rotated(self.options.keep.max(1)));
        for n in (1..self.options.keep.max(1)).rev() {
            let _ = fs::rename(rotated(n), rotated(n + 1));
        }
        // The old handle is kept until the new file is open: a failed rotation writes on.
        if fs::rename(path, rotated(1)).is_ok() {
            match open_append(path) {
                Ok(file) => {
                    self.file = Some(file);
                    self.size = 0;
                }
                Err(_) => self.failures += 1,
            }
        } else {
            self.failures += 1;
        }
    }

    fn flush_repeats(&mut self) {
        if self.repeats > 0 {
            let level = self.last.as_ref().map_or(Level::Info, |(l, _)| *l);
            let count = std::mem::take(&mut self.repeats);
            self.write_line(
                level,
                &format!("the last line repeated {count} more time(s)"),
            );
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Log for RotatingFileLog {
    fn log(&mut self, level: Level, message: &str) {
        if self
            .last
            .as_ref()
            .is_some_and(|(l, m)| *l == level && m == message)
        {
            self.repeats += 1;
            return;
        }
        self.flush_repeats();
        self.write_line(level, message);
        self.last = Some((level, message.to_owned()));
    }
}

impl Drop for RotatingFileLog {
    fn drop(&mut self) {
        self.flush_repeats();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-log-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_flood_of_lines_cannot_grow_the_log_past_its_bound() {
        let d = dir("flood");
        let options = LogFileOptions {
            max_bytes: 4096,
            keep: 2,
            ..LogFileOptions::new(d.join("vigil-service.log"))
        };
        let mut log = RotatingFileLog::open(options).unwrap();
        for i in 0..10_000 {
            log.log(
                Level::Info,
                &format!("denied: create \\x\\{i} by pid 7 (rule 1)"),
            );
        }
        drop(log);
        let mut total = 0;
        for entry in fs::read_dir(&d).unwrap() {
            let len = entry.unwrap().metadata().unwrap().len();
            assert!(len <= 4096, "{len}");
            total += len;
        }
        assert!(total <= 3 * 4096, "{total}");
        assert!(!d.join("vigil-service.log.3").exists());
    }

    #[test]
    fn repeated_lines_are_counted_not_written() {
        let d = dir("repeat");
        let path = d.join("vigil-service.log");
        let mut log = RotatingFileLog::open(LogFileOptions::new(&path)).unwrap();
        for _ in 0..1000 {
            log.log(Level::Info, "denied: create \\secret by pid 7 (rule 1)");
        }
        log.log(Level::Warn, "something else");
        drop(log);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with(" info: denied: create \\secret by pid 7 (rule 1)"));
        assert!(lines[1].ends_with("the last line repeated 999 more time(s)"));
        assert!(lines[2].ends_with(" warn: something else"));
        assert!(
            lines[0].starts_with("20"),
            "an RFC 3339 time first: {}",
            lines[0]
        );
    }
}
