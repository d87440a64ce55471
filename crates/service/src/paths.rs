//! Paths in the terms administrators write them, translated to the terms the driver sees:
//! `C:\Secret` becomes `\Device\HarddiskVolume3\Secret` at policy load, through the drive
//! letters' DOS device table (`QueryDosDeviceW` on Windows). User mode, portable: the table is
//! plain data, so the translation is tested on Linux; only [`DosDevices::system`] is Windows
//! code (cross-compiled and read, never run here).
//!
//! Accepted forms: an NT path (`\Device\...`, unchanged), `X:` and `X:\...`, the same behind
//! `\\?\` or `\??\`, and UNC `\\server\share\...` (`\Device\Mup\server\share\...`, the name a
//! network redirector's files have). Anything else (a relative path, `\\.\` device paths) is
//! refused: a rule that silently never matches is worse than a refused file.
//!
//! The translation holds while the drive letters do: a volume mounted later, or a letter
//! changed, takes effect at the next policy load (a reload or a restart).

use std::path::{Path, PathBuf};

/// The drive letters' devices: `C` → `\Device\HarddiskVolume3`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DosDevices {
    drives: Vec<(char, String)>,
}

impl DosDevices {
    /// No drive letters: every drive-letter path is refused.
    pub const fn none() -> Self {
        Self { drives: Vec::new() }
    }

    /// A table from `(letter, device)` pairs (tests, and [`system`](Self::system)).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (char, &'a str)>) -> Self {
        Self {
            drives: pairs
                .into_iter()
                .map(|(letter, device)| {
                    (
                        letter.to_ascii_uppercase(),
                        device.trim_end_matches('\\').to_owned(),
                    )
                })
                .collect(),
        }
    }

    /// This machine's table: `QueryDosDeviceW` for `A:` … `Z:` on Windows; empty elsewhere.
    pub fn system() -> Self {
        #[cfg(windows)]
        {
            crate::windows::paths::dos_devices()
        }
        #[cfg(not(windows))]
        {
            Self::none()
        }
    }

    fn device(&self, letter: char) -> Option<&str> {
        let letter = letter.to_ascii_uppercase();
        self.drives
            .iter()
            .find(|(l, _)| *l == letter)
            .map(|(_, d)| d.as_str())
    }

    /// `path` as the driver names it (see the module documentation for the forms).
    ///
    /// # Errors
    ///
    /// A form that is not accepted, or a drive letter with no device.
    pub fn to_nt_path(&self, path: &str) -> Result<String, String> {
        let rest = path
            .strip_prefix(r"\\?\")
            .or_else(|| path.strip_prefix(r"\??\"));
        if let Some(rest) = rest {
            if let Some(unc) = rest.strip_prefix(r"UNC\") {
                return Ok(format!(r"\Device\Mup\{unc}"));
            }
            return self.drive_path(rest, path);
        }
        if let Some(unc) = path.strip_prefix(r"\\") {
            if unc.starts_with(['.', '?']) || unc.is_empty() {
                return Err(format!("\"{path}\" is a device path, not a file path"));
            }
            return Ok(format!(r"\Device\Mup\{unc}"));
        }
        if path.starts_with('\\') {
            return Ok(path.to_owned());
        }
        self.drive_path(path, path)
    }

    fn drive_path(&self, path: &str, written: &str) -> Result<String, String> {
        let mut chars = path.chars();
        let (Some(letter), Some(':')) = (chars.next(), chars.next()) else {
            return Err(format!(
                "\"{written}\" is neither a drive path (C:\\...) nor an NT path \
                 (\\Device\\HarddiskVolume3\\...)"
            ));
        };
        if !letter.is_ascii_alphabetic() {
            return Err(format!(
                "\"{written}\": \"{letter}:\" is not a drive letter"
            ));
        }
        let rest = chars.as_str();
        if !(rest.is_empty() || rest.starts_with('\\')) {
            return Err(format!(
                "\"{written}\" is relative to the drive's current directory; write {letter}:\\..."
            ));
        }
        let device = self.device(letter).ok_or_else(|| {
            format!(
                "\"{written}\": drive {}: is not mapped to a device on this machine (the \
                 driver sees device names such as \\Device\\HarddiskVolume3)",
                letter.to_ascii_uppercase()
            )
        })?;
        Ok(format!("{device}{rest}"))
    }
}

/// What a policy's paths are resolved against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathContext {
    /// Drive letters to devices.
    pub dos_devices: DosDevices,
    /// Where a relative `[output] jsonl` goes (`%ProgramData%\Vigil` for the service); `None`
    /// leaves it relative to the working directory (a console run on Linux).
    pub data_dir: Option<PathBuf>,
}

impl PathContext {
    /// No drive letters, no data directory: what [`crate::Policy::parse`] uses.
    pub const fn none() -> Self {
        Self {
            dos_devices: DosDevices::none(),
            data_dir: None,
        }
    }

    /// This machine's: [`DosDevices::system`] and [`crate::cli::default_dir`].
    pub fn system() -> Self {
        Self {
            dos_devices: DosDevices::system(),
            data_dir: crate::cli::default_dir(),
        }
    }

    /// A relative output path resolved against the data directory, whatever the process's
    /// working directory is (a service starts in `System32`).
    pub fn output_path(&self, path: &Path) -> PathBuf {
        match &self.data_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// The NT path of the service's executable, as `vigil service install` writes it into the
/// driver's `ServiceImage` (the driver compares it with the connecting process's image name,
/// which `ZwQueryInformationProcess(ProcessImageFileName)` gives in that form).
///
/// # Errors
///
/// A path that is not absolute or whose drive letter has no device.
pub fn service_image_path(exe: &Path, devices: &DosDevices) -> Result<String, String> {
    let text = exe
        .to_str()
        .ok_or_else(|| format!("{}: not valid Unicode", exe.display()))?;
    devices.to_nt_path(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> DosDevices {
        DosDevices::from_pairs([
            ('C', r"\Device\HarddiskVolume3"),
            ('d', r"\Device\HarddiskVolume7\"),
        ])
    }

    #[test]
    fn the_service_image_is_written_as_the_driver_reads_process_images() {
        assert_eq!(
            service_image_path(Path::new(r"C:\Program Files\Vigil\vigil.exe"), &table()),
            Ok(r"\Device\HarddiskVolume3\Program Files\Vigil\vigil.exe".to_owned())
        );
        // A path the driver could never match is refused at install, not written.
        assert!(service_image_path(Path::new(r"Vigil\vigil.exe"), &table()).is_err());
        assert!(service_image_path(Path::new(r"Q:\vigil.exe"), &table()).is_err());
    }

    #[test]
    fn drive_paths_become_device_paths() {
        let t = table();
        assert_eq!(
            t.to_nt_path(r"C:\Secret\x").unwrap(),
            r"\Device\HarddiskVolume3\Secret\x"
        );
        assert_eq!(t.to_nt_path(r"c:\").unwrap(), r"\Device\HarddiskVolume3\");
        assert_eq!(t.to_nt_path("D:").unwrap(), r"\Device\HarddiskVolume7");
        assert_eq!(
            t.to_nt_path(r"\\?\D:\a").unwrap(),
            r"\Device\HarddiskVolume7\a"
        );
        assert_eq!(
            t.to_nt_path(r"\??\C:\a").unwrap(),
            r"\Device\HarddiskVolume3\a"
        );
        assert_eq!(
            t.to_nt_path(r"\\server\share\a").unwrap(),
            r"\Device\Mup\server\share\a"
        );
        assert_eq!(
            t.to_nt_path(r"\\?\UNC\server\share").unwrap(),
            r"\Device\Mup\server\share"
        );
        assert_eq!(
            t.to_nt_path(r"\Device\HarddiskVolume1\x").unwrap(),
            r"\Device\HarddiskVolume1\x"
        );
    }

    #[test]
    fn unknown_drives_and_other_forms_are_refused() {
        let t = table();
        assert!(
            t.to_nt_path(r"E:\x")
                .unwrap_err()
                .contains("drive E: is not mapped")
        );
        assert!(t.to_nt_path(r"C:x").unwrap_err().contains("relative"));
        assert!(t.to_nt_path("Secret").is_err());
        assert!(t.to_nt_path(r"\\.\PhysicalDrive0").is_err());
        assert!(DosDevices::none().to_nt_path(r"C:\x").is_err());
    }

    #[test]
    fn a_relative_output_goes_to_the_data_directory() {
        let ctx = PathContext {
            dos_devices: DosDevices::none(),
            data_dir: Some(PathBuf::from("/data/vigil")),
        };
        assert_eq!(
            ctx.output_path(Path::new("out/v.jsonl")),
            Path::new("/data/vigil/out/v.jsonl")
        );
        assert_eq!(
            ctx.output_path(Path::new("/abs.jsonl")),
            Path::new("/abs.jsonl")
        );
        assert_eq!(
            PathContext::none().output_path(Path::new("v.jsonl")),
            Path::new("v.jsonl")
        );
    }
}
