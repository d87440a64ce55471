//! INF stamping: what the WDK's `stampinf` does to `driver.inx`, done on the Linux host so that
//! the produced `vigil.inf` can be built and checked without Windows.
//!
//! `stampinf -f vigil.inf -d <date> -v <version> -a amd64` sets `DriverVer = date,version` in
//! `[Version]` and replaces every `$ARCH$` with the architecture (so `[DefaultInstall.NT$ARCH$]`
//! becomes `[DefaultInstall.NTamd64]`). [`stamp_inf`] does exactly that and nothing else; on
//! Windows `cargo make` runs the real `stampinf` on the same template.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The architecture the driver is built for, as INF decorations spell it.
pub const INF_ARCH_AMD64: &str = "amd64";

/// A calendar date for `DriverVer` (month/day/year).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfDate {
    /// Year (four digits).
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day, 1..=31.
    pub day: u8,
}

impl InfDate {
    /// Today's date (UTC), as `stampinf -d *` would stamp it.
    pub fn today() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::from_days_since_epoch(seconds / 86_400)
    }

    /// The civil date `days` days after 1970-01-01 (Howard Hinnant's `civil_from_days`).
    pub fn from_days_since_epoch(days: u64) -> Self {
        let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            year: u16::try_from(year).unwrap_or(u16::MAX),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }
}

impl fmt::Display for InfDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}/{:02}/{:04}", self.month, self.day, self.year)
    }
}

/// What to stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfStamp {
    /// The `DriverVer` date.
    pub date: InfDate,
    /// The `DriverVer` version: four dot-separated numbers, each at most 65535.
    pub version: String,
    /// The architecture that replaces `$ARCH$` ([`INF_ARCH_AMD64`]).
    pub arch: String,
}

impl InfStamp {
    /// Today's date, `version` made four-part (`0.1.0` becomes `0.1.0.0`), amd64.
    pub fn for_crate_version(version: &str) -> Self {
        let mut parts: Vec<&str> = version
            .split(['-', '+'])
            .next()
            .unwrap_or("0")
            .split('.')
            .collect();
        parts.resize(4, "0");
        Self {
            date: InfDate::today(),
            version: parts.join("."),
            arch: INF_ARCH_AMD64.to_owned(),
        }
    }
}

/// Why a template could not be stamped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfError {
    /// The template has no `[Version]` section.
    NoVersionSection,
    /// The version is not four numbers in 0..=65535.
    BadVersion(String),
    /// The date is not a valid calendar date.
    BadDate(InfDate),
    /// A `$...$` token other than `$ARCH$` and `$WINDOWS NT$` is left in the template.
    UnknownToken(String),
}

impl fmt::Display for InfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVersionSection => write!(f, "the INF template has no [Version] section"),
            Self::BadVersion(v) => {
                write!(f, "DriverVer version `{v}` is not four numbers <= 65535")
            }
            Self::BadDate(d) => write!(f, "DriverVer date {d} is not a valid date"),
            Self::UnknownToken(t) => write!(f, "unknown stamping token `{t}` in the template"),
        }
    }
}

impl std::error::Error for InfError {}

/// Stamps `template` (the text of `driver.inx`): `DriverVer` in `[Version]` (replaced, or added
/// when absent) and `$ARCH$` everywhere. Line endings are kept as CRLF-or-LF as found.
///
/// # Errors
///
/// [`InfError`] when the template or the stamp is invalid.
pub fn stamp_inf(template: &str, stamp: &InfStamp) -> Result<String, InfError> {
    let parts: Vec<&str> = stamp.version.split('.').collect();
    if parts.len() != 4
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u16>().is_ok())
    {
        return Err(InfError::BadVersion(stamp.version.clone()));
    }
    let date = stamp.date;
    if !(1..=12).contains(&date.month) || !(1..=31).contains(&date.day) || date.year < 1980 {
        return Err(InfError::BadDate(date));
    }
    let driver_ver = format!("DriverVer   = {},{}", date, stamp.version);
    let newline = if template.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out: Vec<String> = Vec::new();
    let mut in_version = false;
    let mut seen_version = false;
    let mut stamped = false;
    for line in template.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_version && !stamped {
                out.push(driver_ver.clone());
                stamped = true;
            }
            in_version =
                section_name(trimmed).is_some_and(|name| name.eq_ignore_ascii_case("Version"));
            seen_version |= in_version;
        } else if in_version
            && key_of(trimmed).is_some_and(|key| key.eq_ignore_ascii_case("DriverVer"))
        {
            out.push(driver_ver.clone());
            stamped = true;
            continue;
        }
        out.push(line.replace("$ARCH$", &stamp.arch));
    }
    if !seen_version {
        return Err(InfError::NoVersionSection);
    }
    if in_version && !stamped {
        out.push(driver_ver);
    }
    let mut text = out.join(newline);
    text.push_str(newline);
    if let Some(token) = leftover_token(&text) {
        return Err(InfError::UnknownToken(token));
    }
    Ok(text)
}

/// The name of a `[Section]` header line.
fn section_name(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    Some(inner[..inner.find(']')?].trim())
}

/// The key of a `key = value` line (comments and blank lines have none).
fn key_of(line: &str) -> Option<&str> {
    if line.starts_with(';') {
        return None;
    }
    let (key, _) = line.split_once('=')?;
    Some(key.trim())
}

/// A `$TOKEN$` that stamping should have replaced (`$WINDOWS NT$` is the INF signature).
fn leftover_token(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        let after = &rest[start + 1..];
        let end = after.find('$')?;
        let token = &after[..end];
        if !token.eq_ignore_ascii_case("WINDOWS NT") && !token.contains(char::is_whitespace) {
            return Some(format!("${token}$"));
        }
        rest = &after[end + 1..];
    }
    None
}

/// An INF read back into sections of `(key, value)` entries, comments removed, keys and values
/// trimmed; a line without `=` is an entry with an empty key (file lists, `HKR,...` lines).
#[derive(Debug, Default)]
pub struct ParsedInf {
    /// Sections in file order, with their entries.
    pub sections: Vec<(String, Vec<(String, String)>)>,
}

impl ParsedInf {
    /// Parses INF text (enough for the checks of a stamped INF; no line continuations).
    pub fn parse(text: &str) -> Self {
        let mut parsed = Self::default();
        for line in text.lines() {
            let line = strip_comment(line).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = section_name(line) {
                parsed.sections.push((name.to_owned(), Vec::new()));
            } else if let Some((_, entries)) = parsed.sections.last_mut() {
                match line.split_once('=') {
                    Some((key, value)) if !key.contains(',') => {
                        entries.push((key.trim().to_owned(), value.trim().to_owned()));
                    }
                    _ => entries.push((String::new(), line.to_owned())),
                }
            }
        }
        parsed
    }

    /// The entries of `section` (case-insensitive), if present.
    pub fn section(&self, section: &str) -> Option<&[(String, String)]> {
        self.sections
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(section))
            .map(|(_, entries)| entries.as_slice())
    }

    /// The value of `key` in `section` (both case-insensitive).
    pub fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.section(section)?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Removes a `;` comment, leaving `;` inside double quotes alone.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (index, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..index],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> InfStamp {
        InfStamp {
            date: InfDate {
                year: 2026,
                month: 11,
                day: 22,
            },
            version: "0.1.0.0".into(),
            arch: INF_ARCH_AMD64.into(),
        }
    }

    #[test]
    fn replaces_driver_ver_in_version_only_and_decorates_arch() {
        let template = "[Version]\nSignature = \"$WINDOWS NT$\"\nDriverVer = 01/01/2000,0.0.0.0 ; x\n\
                        [DefaultInstall.NT$ARCH$]\nDriverVer = keep\n";
        let stamped = stamp_inf(template, &stamp()).unwrap();
        assert_eq!(
            stamped,
            "[Version]\nSignature = \"$WINDOWS NT$\"\nDriverVer   = 11/22/2026,0.1.0.0\n\
             [DefaultInstall.NTamd64]\nDriverVer = keep\n"
        );
    }

    #[test]
    fn adds_driver_ver_when_absent_and_keeps_crlf() {
        let stamped = stamp_inf("[Version]\r\nClass = X\r\n[Strings]\r\n", &stamp()).unwrap();
        assert_eq!(
            stamped,
            "[Version]\r\nClass = X\r\nDriverVer   = 11/22/2026,0.1.0.0\r\n[Strings]\r\n"
        );
        let at_end = stamp_inf("[Version]\nClass = X\n", &stamp()).unwrap();
        assert_eq!(
            at_end,
            "[Version]\nClass = X\nDriverVer   = 11/22/2026,0.1.0.0\n"
        );
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            stamp_inf("[Strings]\n", &stamp()),
            Err(InfError::NoVersionSection)
        );
        let mut bad = stamp();
        bad.version = "1.2.3".into();
        assert!(matches!(
            stamp_inf("[Version]\n", &bad),
            Err(InfError::BadVersion(_))
        ));
        bad.version = "1.2.3.65536".into();
        assert!(matches!(
            stamp_inf("[Version]\n", &bad),
            Err(InfError::BadVersion(_))
        ));
        let mut bad = stamp();
        bad.date.month = 13;
        assert!(matches!(
            stamp_inf("[Version]\n", &bad),
            Err(InfError::BadDate(_))
        ));
        assert_eq!(
            stamp_inf("[Version]\n[X.$TARGET$]\n", &stamp()),
            Err(InfError::UnknownToken("$TARGET$".into()))
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(
            InfDate::from_days_since_epoch(0),
            InfDate {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        // 2000-02-29 is day 11016; 2026-11-22 is day 20779.
        assert_eq!(
            InfDate::from_days_since_epoch(11_016),
            InfDate {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        assert_eq!(
            InfDate::from_days_since_epoch(20_779),
            InfDate {
                year: 2026,
                month: 11,
                day: 22
            }
        );
        assert_eq!(InfStamp::for_crate_version("0.1.0").version, "0.1.0.0");
        assert_eq!(InfStamp::for_crate_version("1.2.3-rc.1").version, "1.2.3.0");
    }

    /// The project's `driver.inx`, stamped as the build stamps it.
    fn stamped_driver_inx() -> ParsedInf {
        let path = crate::workspace_root().join("driver.inx");
        let template = std::fs::read_to_string(&path).expect("driver.inx");
        ParsedInf::parse(&stamp_inf(&template, &stamp()).expect("stamps"))
    }

    /// The stamped `driver.inx` has the version and file sections a minifilter INF must have.
    #[test]
    fn stamped_driver_inx_is_a_minifilter_inf() {
        let inf = stamped_driver_inx();
        let version = |key| inf.value("Version", key);
        assert_eq!(version("Class"), Some("\"ActivityMonitor\""));
        assert_eq!(
            version("ClassGuid"),
            Some("{b86dff51-a31e-4bac-b3cf-e8cfe75c9fc2}")
        );
        assert_eq!(version("DriverVer"), Some("11/22/2026,0.1.0.0"));
        assert_eq!(version("CatalogFile"), Some("vigil.cat"));
        assert!(version("Provider").is_some());
        // Run from the driver store (DIRID 13), as primitive drivers should from Windows 10 1903.
        assert_eq!(inf.value("DestinationDirs", "DefaultDestDir"), Some("13"));
        assert_eq!(
            inf.value("DestinationDirs", "Vigil.DriverFiles"),
            Some("13")
        );
        assert_eq!(
            inf.value("DefaultUninstall.NTamd64", "LegacyUninstall"),
            Some("1"),
            "current Windows must ignore the downlevel uninstall section"
        );
        for section in [
            "DefaultUninstall.NTamd64",
            "DefaultUninstall.NTamd64.Services",
        ] {
            assert!(inf.section(section).is_some(), "[{section}] missing");
        }
        assert!(
            !inf.sections.iter().any(|(name, _)| name.contains('$')),
            "unstamped section name"
        );
    }

    /// Two install paths (RULES.md rule 30) that install the same service and settings.
    #[test]
    fn stamped_driver_inx_installs_one_service_on_every_build() {
        let inf = stamped_driver_inx();
        // Two install paths (RULES.md rule 30): Windows picks the most specific decoration
        // that matches its build, so 10.0.25952 and later take the first, every earlier build
        // the second.
        let paths = [
            ("DefaultInstall.NTamd64.10.0...25952", "Vigil.Service"),
            ("DefaultInstall.NTamd64", "Vigil.Service.Downlevel"),
        ];
        for (install, service) in paths {
            assert_eq!(
                inf.value(install, "CopyFiles"),
                Some("Vigil.DriverFiles"),
                "[{install}] copies the driver"
            );
            assert_eq!(
                inf.value(&format!("{install}.Services"), "AddService"),
                Some(format!("%ServiceName%,,{service}").as_str()),
                "[{install}.Services] installs its service section"
            );
            assert_eq!(
                inf.value(service, "ServiceBinary"),
                Some("%13%\\vigil.sys"),
                "[{service}] runs the driver from the driver store"
            );
            assert!(
                inf.value(service, "AddReg")
                    .is_some_and(|v| v.split(',').any(|s| s.trim() == "Vigil.Settings")),
                "[{service}] writes Vigil's settings"
            );
        }
        // Both paths install the same service: every directive but AddReg agrees.
        let directives = |section: &str| -> Vec<(String, String)> {
            let mut entries: Vec<(String, String)> = inf
                .section(section)
                .expect("service section")
                .iter()
                .filter(|(key, _)| !key.eq_ignore_ascii_case("AddReg"))
                .cloned()
                .collect();
            entries.sort();
            entries
        };
        assert_eq!(
            directives("Vigil.Service"),
            directives("Vigil.Service.Downlevel")
        );
        let service = |key| inf.value("Vigil.Service", key);
        assert_eq!(
            service("ServiceType"),
            Some("2"),
            "SERVICE_FILE_SYSTEM_DRIVER"
        );
        assert_eq!(service("StartType"), Some("3"), "SERVICE_DEMAND_START");
        assert_eq!(service("ErrorControl"), Some("1"), "SERVICE_ERROR_NORMAL");
        assert_eq!(
            service("LoadOrderGroup"),
            Some("\"FSFilter Activity Monitor\"")
        );
        assert_eq!(service("Dependencies"), Some("\"FltMgr\""));
        let altitude: u32 = inf
            .value("Strings", "Instance1.Altitude")
            .and_then(|v| v.trim_matches('"').parse().ok())
            .expect("a numeric altitude");
        assert!(
            (360_000..=389_999).contains(&altitude),
            "activity-monitor altitude range"
        );
    }

    /// Filter Manager's instance configuration goes where each Windows generation reads it.
    #[test]
    fn stamped_driver_inx_writes_instances_where_each_build_reads_them() {
        let inf = stamped_driver_inx();
        // Filter Manager's instance configuration: under Parameters from build 10.0.25952 on,
        // under the service key itself before it.
        let registry = |section: &str| -> Vec<String> {
            inf.section(section)
                .unwrap_or_else(|| panic!("[{section}] missing"))
                .iter()
                .map(|(_, v)| v.clone())
                .collect()
        };
        for (section, key_prefix) in [
            ("Vigil.FilterManager", "\"Parameters\\Instances"),
            ("Vigil.FilterManager.Downlevel", "\"Instances"),
        ] {
            let lines = registry(section);
            for needed in ["\"DefaultInstance\"", "\"Altitude\"", "\"Flags\""] {
                assert!(
                    lines
                        .iter()
                        .any(|line| line.starts_with(&format!("HKR,{key_prefix}"))
                            && line.contains(needed)),
                    "[{section}] lacks {needed} under {key_prefix}"
                );
            }
        }
        assert!(
            inf.value("Vigil.Service", "AddReg")
                .is_some_and(|v| v.contains("Vigil.FilterManager") && !v.contains("Downlevel")),
            "the 10.0.25952+ service writes the Parameters instances"
        );
        assert!(
            inf.value("Vigil.Service.Downlevel", "AddReg")
                .is_some_and(|v| v.contains("Vigil.FilterManager.Downlevel")),
            "the downlevel service writes the instances under the service key"
        );
    }
}
