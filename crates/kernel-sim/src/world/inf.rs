//! An INF reader and the install plan Windows derives from a primitive driver's INF: what
//! `pnputil /add-driver vigil.inf /install` (or `SetupAPI`'s `InstallHinfSection DefaultInstall`)
//! writes into the registry. kernel-sim installs a driver from its stamped INF with this, so the
//! step users take before `fltmc load` is emulated for the Windows build under test.
//!
//! Host code (no guest memory, no emulated routine). What it follows, each from Microsoft's INF
//! documentation:
//! * general syntax (`install/general-syntax-rules-for-inf-files`): case-insensitive section
//!   names, `;` comments outside quotes, a backslash at the end of a line continues it, `""` is a
//!   quote inside a quoted string, comma-separated fields;
//! * `%strkey%` substitution from `[Strings]` (`install/inf-strings-section`), `%%` for a
//!   percent sign, and `%dirid%` for the system directories (`install/using-dirids`);
//! * the OS decoration of install sections (`install/combining-platform-extensions-with-operating-system-versions`):
//!   `NT[arch][.major[.minor[.product[.suite[.build]]]]]`, the section closest to the host wins,
//!   then a section with the host's platform extension or none, else the INF does not install;
//! * `AddService` and its service-install section (`install/inf-addservice-directive`): the
//!   service key's `Type`, `Start`, `ErrorControl`, `ImagePath`, `Group`, `DependOnService`,
//!   `DisplayName` and `Description`, and its `AddReg` with `HKR` as the service key;
//! * `AddReg` lines (`install/inf-addreg-directive`): value types and the flags
//!   `FLG_ADDREG_NOCLOBBER`, `FLG_ADDREG_APPEND`, `FLG_ADDREG_KEYONLY`, `FLG_ADDREG_DELVAL` and
//!   `FLG_ADDREG_OVERWRITEONLY`.

use std::collections::HashMap;
use std::fmt;

use crate::config::{Registry, RegistryValue, SimConfig};

/// Where every service key lives, as a driver sees it in its `RegistryPath`.
pub const SERVICES_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services";

pub use crate::config::WindowsBuild;

/// Registry data as an `AddReg` line or an `AddService` directive writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegData {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ`.
    Sz(String),
    /// `REG_EXPAND_SZ`.
    ExpandSz(String),
    /// `REG_MULTI_SZ`.
    MultiSz(Vec<String>),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
}

/// What one registry operation of an install does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegAction {
    /// Create the key (no value).
    CreateKey,
    /// Write a value (the empty name is the key's default value).
    Set {
        /// The value's name.
        name: String,
        /// Its data.
        data: RegData,
        /// `FLG_ADDREG_NOCLOBBER`: keep a value that already exists.
        no_clobber: bool,
        /// `FLG_ADDREG_OVERWRITEONLY`: write only over a value that already exists.
        overwrite_only: bool,
    },
    /// `FLG_ADDREG_APPEND`: add strings to a `REG_MULTI_SZ` that are not in it yet.
    Append {
        /// The value's name.
        name: String,
        /// The strings to add.
        strings: Vec<String>,
    },
    /// `FLG_ADDREG_DELVAL`: delete a value.
    Delete {
        /// The value's name.
        name: String,
    },
}

/// One registry operation, on a full NT key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegWrite {
    /// The key, e.g. `\Registry\Machine\System\CurrentControlSet\Services\vigil\Parameters`.
    pub key: String,
    /// What to do there.
    pub action: RegAction,
}

/// What installing an INF on a given build does: the sections chosen and the registry writes,
/// in the order Windows performs them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallPlan {
    /// The install section chosen for the build (e.g. `DefaultInstall.NTamd64.10.0...25952`).
    pub install_section: String,
    /// The service's name (its key under [`SERVICES_KEY`]).
    pub service: String,
    /// The service key's full path.
    pub service_key: String,
    /// The files `CopyFiles` copies (file names only).
    pub files: Vec<String>,
    /// Registry operations.
    pub writes: Vec<RegWrite>,
}

impl RegData {
    /// The value as the registry stores it.
    pub fn to_value(&self) -> RegistryValue {
        match self {
            Self::Dword(v) => RegistryValue::Dword(*v),
            Self::Sz(s) => RegistryValue::Sz(s.clone()),
            Self::ExpandSz(s) => RegistryValue::ExpandSz(s.clone()),
            Self::MultiSz(list) => RegistryValue::MultiSz(list.clone()),
            Self::Binary(bytes) => RegistryValue::Binary(bytes.clone()),
        }
    }
}

impl InstallPlan {
    /// Performs the plan's registry operations on `registry`, in order, with `SetupAPI`'s
    /// semantics for each `AddReg` flag (INF `AddReg` directive,
    /// <https://learn.microsoft.com/windows-hardware/drivers/install/inf-addreg-directive>):
    /// `FLG_ADDREG_NOCLOBBER` keeps a value that exists, `FLG_ADDREG_OVERWRITEONLY` writes only
    /// over one that exists, `FLG_ADDREG_APPEND` adds to a `REG_MULTI_SZ` the strings it lacks
    /// (creating it if absent), `FLG_ADDREG_DELVAL` deletes, `FLG_ADDREG_KEYONLY` only creates
    /// the key. Every operation creates its key first, as `AddReg` does.
    pub fn apply(&self, registry: &mut Registry) {
        for write in &self.writes {
            match &write.action {
                RegAction::CreateKey => {
                    registry.create_key(&write.key);
                }
                RegAction::Set {
                    name,
                    data,
                    no_clobber,
                    overwrite_only,
                } => {
                    registry.create_key(&write.key);
                    let exists = registry.value(&write.key, name).is_some();
                    if (*no_clobber && exists) || (*overwrite_only && !exists) {
                        continue;
                    }
                    registry.set_value(&write.key, name, data.to_value());
                }
                RegAction::Append { name, strings } => {
                    registry.create_key(&write.key);
                    let mut list = match registry.value(&write.key, name) {
                        Some(RegistryValue::MultiSz(list)) => list.clone(),
                        _ => Vec::new(),
                    };
                    for string in strings {
                        if !list.iter().any(|s| s.eq_ignore_ascii_case(string)) {
                            list.push(string.clone());
                        }
                    }
                    registry.set_value(&write.key, name, RegistryValue::MultiSz(list));
                }
                RegAction::Delete { name } => {
                    registry.create_key(&write.key);
                    registry.delete_value(&write.key, name);
                }
            }
        }
    }
}

/// Installs `inf` on the machine `config` describes, as `pnputil /add-driver ... /install` does
/// for a primitive driver on `build`: the `DefaultInstall` section the build selects, its
/// `AddService` and `AddReg` writes applied to [`SimConfig::machine_registry`] (created if
/// absent, so a second install sees what the first one and an administrator left), the
/// service name and the build recorded. Returns the plan performed.
///
/// # Errors
///
/// [`InfError`] when the INF cannot be installed on `build` (nothing is written then).
pub fn install(
    config: &mut SimConfig,
    inf: &Inf,
    build: WindowsBuild,
) -> Result<InstallPlan, InfError> {
    let plan = inf.install_plan(build)?;
    plan.apply(
        config
            .machine_registry
            .get_or_insert_with(Registry::default),
    );
    config.service_name.clone_from(&plan.service);
    config.windows_build = build;
    Ok(plan)
}

/// Why an INF cannot be read or installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfError {
    /// A line outside any section, or a malformed section header.
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A `%token%` with no `[Strings]` entry and no dirid.
    UnknownString(String),
    /// No install section applies to the host (step 3 of the decoration rules).
    NoApplicableSection {
        /// The undecorated section name looked for.
        base: String,
        /// The build.
        build: WindowsBuild,
    },
    /// A section that a directive names does not exist.
    MissingSection(String),
    /// A directive is missing or malformed (a minifilter's install has exactly one
    /// `AddService`, whose section has `ServiceType`, `StartType`, `ErrorControl` and
    /// `ServiceBinary`).
    BadDirective {
        /// The section.
        section: String,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for InfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { line, what } => write!(f, "INF line {line}: {what}"),
            Self::UnknownString(token) => {
                write!(f, "INF: %{token}% is neither in [Strings] nor a dirid")
            }
            Self::NoApplicableSection { base, build } => write!(
                f,
                "INF: no [{base}] section applies to Windows {build} on amd64"
            ),
            Self::MissingSection(name) => {
                write!(f, "INF: section [{name}] is referenced but missing")
            }
            Self::BadDirective { section, what } => write!(f, "INF [{section}]: {what}"),
        }
    }
}

impl std::error::Error for InfError {}

/// One logical line of a section: its key (before an unquoted `=`, if any) and its raw value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    key: Option<String>,
    value: String,
    number: usize,
}

/// A parsed INF: sections (names compared case-insensitively) and the `[Strings]` table.
#[derive(Clone, Debug, Default)]
pub struct Inf {
    sections: Vec<(String, Vec<Line>)>,
    strings: HashMap<String, String>,
}

impl Inf {
    /// Parses INF text.
    ///
    /// # Errors
    ///
    /// [`InfError::Syntax`] for a line before the first section or an unterminated header.
    pub fn parse(text: &str) -> Result<Self, InfError> {
        let mut inf = Self::default();
        let mut pending = String::new();
        let mut pending_start = 0;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = strip_comment(raw.trim_start_matches('\u{feff}')).trim_end();
            if pending.is_empty() {
                pending_start = number;
            }
            if let Some(continued) = line.strip_suffix('\\')
                && !ends_inside_quotes(continued)
            {
                pending.push_str(continued);
                continue;
            }
            pending.push_str(line);
            let logical = std::mem::take(&mut pending);
            inf.add_line(logical.trim(), pending_start)?;
        }
        if !pending.is_empty() {
            inf.add_line(pending.trim(), pending_start)?;
        }
        let strings: Vec<(String, String)> = inf
            .section("Strings")
            .into_iter()
            .flatten()
            .filter_map(|line| Some((line.key.clone()?, unquote(&line.value))))
            .collect();
        inf.strings = strings
            .into_iter()
            .map(|(key, value)| (key.to_ascii_lowercase(), value))
            .collect();
        Ok(inf)
    }

    fn add_line(&mut self, line: &str, number: usize) -> Result<(), InfError> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(end) = header.find(']') else {
                return Err(InfError::Syntax {
                    line: number,
                    what: "a section header without ']'".to_owned(),
                });
            };
            self.sections
                .push((header[..end].trim().to_owned(), Vec::new()));
            return Ok(());
        }
        let Some((_, lines)) = self.sections.last_mut() else {
            return Err(InfError::Syntax {
                line: number,
                what: "a line outside any section".to_owned(),
            });
        };
        let (key, value) = match unquoted_find(line, '=') {
            Some(at) => (Some(line[..at].trim().to_owned()), line[at + 1..].trim()),
            None => (None, line),
        };
        lines.push(Line {
            key,
            value: value.to_owned(),
            number,
        });
        Ok(())
    }

    /// The lines of a section (every section of that name, in file order, as Windows merges
    /// sections that appear more than once).
    fn section(&self, name: &str) -> Option<impl Iterator<Item = &Line>> {
        let mut found = self
            .sections
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .peekable();
        found.peek()?;
        Some(found.flat_map(|(_, lines)| lines.iter()))
    }

    fn has_section(&self, name: &str) -> bool {
        self.sections
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The substituted value of `key` in `section` (first occurrence).
    fn value(&self, section: &str, key: &str) -> Result<Option<String>, InfError> {
        let Some(mut lines) = self.section(section) else {
            return Ok(None);
        };
        lines
            .find(|line| {
                line.key
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(key))
            })
            .map(|line| self.resolve(&line.value))
            .transpose()
    }

    /// Every value of `key` in `section`, fields split on commas.
    fn directive_fields(&self, section: &str, key: &str) -> Result<Vec<Vec<String>>, InfError> {
        let Some(lines) = self.section(section) else {
            return Ok(Vec::new());
        };
        lines
            .filter(|line| {
                line.key
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case(key))
            })
            .map(|line| self.fields(&line.value))
            .collect()
    }

    /// `%strkey%`, `%%` and `%dirid%` replaced.
    ///
    /// # Errors
    ///
    /// [`InfError::UnknownString`] for a token that is neither.
    pub fn substitute(&self, text: &str) -> Result<String, InfError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find('%') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('%') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let token = &after[..end];
            if token.is_empty() {
                out.push('%');
            } else if let Some(value) = self.strings.get(&token.to_ascii_lowercase()) {
                out.push_str(value);
            } else if let Some(dir) = token.parse::<u32>().ok().and_then(dirid_path) {
                out.push_str(dir);
            } else {
                return Err(InfError::UnknownString(token.to_owned()));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The fields of a value: split on unquoted commas, each resolved.
    fn fields(&self, value: &str) -> Result<Vec<String>, InfError> {
        split_fields(value)
            .into_iter()
            .map(|field| self.resolve(field))
            .collect()
    }

    /// One field's text: quotes removed first, then `%tokens%` substituted, so that a string's
    /// value is taken literally (its own quotes are not parsed again).
    fn resolve(&self, field: &str) -> Result<String, InfError> {
        self.substitute(&unquote(field))
    }

    /// The install section Windows uses for `base` (e.g. `DefaultInstall`) on `build`, amd64.
    ///
    /// # Errors
    ///
    /// [`InfError::NoApplicableSection`] when no decorated or undecorated section applies.
    pub fn select_section(&self, base: &str, build: WindowsBuild) -> Result<String, InfError> {
        let prefix = format!("{base}.");
        let mut best: Option<(OsDecoration, &str)> = None;
        for (name, _) in &self.sections {
            let Some(decoration) = name
                .get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(&prefix))
                .and_then(|_| OsDecoration::parse(&name[prefix.len()..]))
            else {
                continue;
            };
            if decoration.applies_to(build)
                && best.as_ref().is_none_or(|(b, _)| decoration.closer_than(b))
            {
                best = Some((decoration, name));
            }
        }
        if let Some((_, name)) = best {
            return Ok((*name).to_owned());
        }
        if self.has_section(base) {
            return Ok(base.to_owned());
        }
        Err(InfError::NoApplicableSection {
            base: base.to_owned(),
            build,
        })
    }

    /// What installing this INF's `DefaultInstall` on `build` does.
    ///
    /// # Errors
    ///
    /// [`InfError`] when no section applies, a referenced section is missing, a string is
    /// undefined, or a directive is malformed.
    pub fn install_plan(&self, build: WindowsBuild) -> Result<InstallPlan, InfError> {
        let install = self.select_section("DefaultInstall", build)?;
        let mut files = Vec::new();
        for fields in self.directive_fields(&install, "CopyFiles")? {
            for list in fields {
                if let Some(file) = list.strip_prefix('@') {
                    files.push(file.to_owned());
                    continue;
                }
                let lines = self
                    .section(&list)
                    .ok_or_else(|| InfError::MissingSection(list.clone()))?;
                for line in lines {
                    let fields = self.fields(&line.value)?;
                    files.extend(fields.into_iter().next().filter(|f| !f.is_empty()));
                }
            }
        }
        let services_section = format!("{install}.Services");
        let add_services = self.directive_fields(&services_section, "AddService")?;
        let [add_service] = add_services.as_slice() else {
            return Err(InfError::BadDirective {
                section: services_section,
                what: format!(
                    "{} AddService directives; a minifilter installs exactly one service",
                    add_services.len()
                ),
            });
        };
        let (Some(service), Some(install_section)) = (add_service.first(), add_service.get(2))
        else {
            return Err(InfError::BadDirective {
                section: services_section,
                what: "AddService needs ServiceName,[flags],service-install-section".to_owned(),
            });
        };
        if !self.has_section(install_section) {
            return Err(InfError::MissingSection(install_section.clone()));
        }
        let service_key = format!(r"{SERVICES_KEY}\{service}");
        let mut writes = vec![RegWrite {
            key: service_key.clone(),
            action: RegAction::CreateKey,
        }];
        self.service_values(install_section, &service_key, &mut writes)?;
        for fields in self.directive_fields(install_section, "AddReg")? {
            for section in fields.iter().filter(|s| !s.is_empty()) {
                self.add_reg(section, &service_key, &mut writes)?;
            }
        }
        Ok(InstallPlan {
            install_section: install,
            service: service.clone(),
            service_key,
            files,
            writes,
        })
    }

    /// The values `AddService` writes under the service key.
    fn service_values(
        &self,
        section: &str,
        key: &str,
        writes: &mut Vec<RegWrite>,
    ) -> Result<(), InfError> {
        let mut set = |name: &str, data: RegData| {
            writes.push(RegWrite {
                key: key.to_owned(),
                action: RegAction::Set {
                    name: name.to_owned(),
                    data,
                    no_clobber: false,
                    overwrite_only: false,
                },
            });
        };
        for (directive, value_name) in [
            ("ServiceType", "Type"),
            ("StartType", "Start"),
            ("ErrorControl", "ErrorControl"),
        ] {
            let text = self
                .value(section, directive)?
                .ok_or_else(|| InfError::BadDirective {
                    section: section.to_owned(),
                    what: format!("{directive} is required"),
                })?;
            let number = parse_number(&text).ok_or_else(|| InfError::BadDirective {
                section: section.to_owned(),
                what: format!("{directive} = {text} is not a number"),
            })?;
            set(value_name, RegData::Dword(number));
        }
        let binary =
            self.value(section, "ServiceBinary")?
                .ok_or_else(|| InfError::BadDirective {
                    section: section.to_owned(),
                    what: "ServiceBinary is required".to_owned(),
                })?;
        set("ImagePath", RegData::ExpandSz(binary));
        for (directive, value_name) in [
            ("DisplayName", "DisplayName"),
            ("Description", "Description"),
            ("LoadOrderGroup", "Group"),
        ] {
            if let Some(text) = self.value(section, directive)? {
                set(value_name, RegData::Sz(text));
            }
        }
        let dependencies: Vec<String> = self
            .directive_fields(section, "Dependencies")?
            .into_iter()
            .flatten()
            .filter(|d| !d.is_empty())
            .collect();
        let (groups, services): (Vec<String>, Vec<String>) =
            dependencies.into_iter().partition(|d| d.starts_with('+'));
        if !services.is_empty() {
            set("DependOnService", RegData::MultiSz(services));
        }
        if !groups.is_empty() {
            let groups = groups.iter().map(|g| g[1..].to_owned()).collect();
            set("DependOnGroup", RegData::MultiSz(groups));
        }
        Ok(())
    }

    /// The operations of one `AddReg` section, `HKR` being `hkr`.
    fn add_reg(
        &self,
        section: &str,
        hkr: &str,
        writes: &mut Vec<RegWrite>,
    ) -> Result<(), InfError> {
        let lines = self
            .section(section)
            .ok_or_else(|| InfError::MissingSection(section.to_owned()))?;
        for line in lines {
            // An AddReg line has no key: a `=` inside it belongs to a quoted field.
            let text = match &line.key {
                Some(key) => format!("{key}={}", line.value),
                None => line.value.clone(),
            };
            let fields = self.fields(&text)?;
            let bad = |what: String| InfError::BadDirective {
                section: format!("{section}, line {}", line.number),
                what,
            };
            let root = fields.first().map(String::as_str).unwrap_or_default();
            if !root.eq_ignore_ascii_case("HKR") {
                return Err(bad(format!(
                    "reg-root {root}: a service install's AddReg may only use HKR"
                )));
            }
            let subkey = fields.get(1).map(String::as_str).unwrap_or_default();
            let key = if subkey.is_empty() {
                hkr.to_owned()
            } else {
                format!(r"{hkr}\{}", subkey.trim_matches('\\'))
            };
            let name = fields.get(2).cloned().unwrap_or_default();
            let flags = match fields.get(3).map(String::as_str) {
                None | Some("") => 0,
                Some(text) => parse_number(text).ok_or_else(|| bad(format!("flags {text}")))?,
            };
            let values = fields.get(4..).unwrap_or_default();
            let action = addreg_action(flags, name, values).map_err(bad)?;
            writes.push(RegWrite { key, action });
        }
        Ok(())
    }
}

/// `FLG_ADDREG_BINVALUETYPE`.
const FLG_ADDREG_BINVALUETYPE: u32 = 0x0000_0001;
/// `FLG_ADDREG_NOCLOBBER`: do not replace an existing value.
const FLG_ADDREG_NOCLOBBER: u32 = 0x0000_0002;
/// `FLG_ADDREG_DELVAL`: delete the value.
const FLG_ADDREG_DELVAL: u32 = 0x0000_0004;
/// `FLG_ADDREG_APPEND`: append to a `REG_MULTI_SZ`.
const FLG_ADDREG_APPEND: u32 = 0x0000_0008;
/// `FLG_ADDREG_KEYONLY`: create the key, ignore any value.
const FLG_ADDREG_KEYONLY: u32 = 0x0000_0010;
/// `FLG_ADDREG_OVERWRITEONLY`: write only over an existing value.
const FLG_ADDREG_OVERWRITEONLY: u32 = 0x0000_0020;
/// The type bits: `FLG_ADDREG_TYPE_*` (with `FLG_ADDREG_BINVALUETYPE`).
const FLG_ADDREG_TYPE_MASK: u32 = 0xFFFF_0000 | FLG_ADDREG_BINVALUETYPE;
/// `FLG_ADDREG_TYPE_SZ`.
const FLG_ADDREG_TYPE_SZ: u32 = 0x0000_0000;
/// `FLG_ADDREG_TYPE_MULTI_SZ`.
const FLG_ADDREG_TYPE_MULTI_SZ: u32 = 0x0001_0000;
/// `FLG_ADDREG_TYPE_EXPAND_SZ`.
const FLG_ADDREG_TYPE_EXPAND_SZ: u32 = 0x0002_0000;
/// `FLG_ADDREG_TYPE_BINARY`.
const FLG_ADDREG_TYPE_BINARY: u32 = FLG_ADDREG_BINVALUETYPE;
/// `FLG_ADDREG_TYPE_DWORD`.
const FLG_ADDREG_TYPE_DWORD: u32 = 0x0001_0000 | FLG_ADDREG_BINVALUETYPE;

/// The operation an `AddReg` line's flags and values ask for.
fn addreg_action(flags: u32, name: String, values: &[String]) -> Result<RegAction, String> {
    if flags & FLG_ADDREG_KEYONLY != 0 {
        return Ok(RegAction::CreateKey);
    }
    if flags & FLG_ADDREG_DELVAL != 0 {
        return Ok(RegAction::Delete { name });
    }
    let text = || values.first().cloned().unwrap_or_default();
    let data = match flags & FLG_ADDREG_TYPE_MASK {
        FLG_ADDREG_TYPE_SZ => RegData::Sz(text()),
        FLG_ADDREG_TYPE_EXPAND_SZ => RegData::ExpandSz(text()),
        FLG_ADDREG_TYPE_MULTI_SZ => {
            let strings: Vec<String> = values.iter().filter(|s| !s.is_empty()).cloned().collect();
            if flags & FLG_ADDREG_APPEND != 0 {
                return Ok(RegAction::Append { name, strings });
            }
            RegData::MultiSz(strings)
        }
        FLG_ADDREG_TYPE_DWORD => {
            let value = text();
            RegData::Dword(parse_number(&value).ok_or(format!("DWORD value {value:?}"))?)
        }
        FLG_ADDREG_TYPE_BINARY => RegData::Binary(
            values
                .iter()
                .map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16))
                .collect::<Result<_, _>>()
                .map_err(|_| format!("binary bytes {values:?}"))?,
        ),
        other => return Err(format!("value type flags {other:#x} are not emulated")),
    };
    Ok(RegAction::Set {
        name,
        data,
        no_clobber: flags & FLG_ADDREG_NOCLOBBER != 0,
        overwrite_only: flags & FLG_ADDREG_OVERWRITEONLY != 0,
    })
}

/// A `TargetOSVersion` decoration of an install section: `NT[arch][.major[.minor[.product
/// [.suite[.build]]]]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OsDecoration {
    /// `NTamd64` rather than `NT` (any platform).
    arch_specific: bool,
    version: Option<(u32, u32)>,
    product: Option<u32>,
    suite: Option<u32>,
    build: Option<u32>,
}

impl OsDecoration {
    /// Parses the part after `Base.`; `None` for another architecture or not a decoration.
    fn parse(text: &str) -> Option<Self> {
        let rest = text.get(..2).filter(|nt| nt.eq_ignore_ascii_case("nt"))?;
        let rest = &text[rest.len()..];
        let (platform, version) = rest.split_once('.').unwrap_or((rest, ""));
        let arch_specific = match platform.to_ascii_lowercase().as_str() {
            "" => false,
            "amd64" => true,
            _ => return None,
        };
        let mut parts = version.split('.');
        let mut field = || -> Option<Option<u32>> {
            match parts.next() {
                None | Some("") => Some(None),
                Some(p) => parse_number(p).map(Some),
            }
        };
        let major = field()?;
        let minor = field()?;
        let product = field()?;
        let suite = field()?;
        let build = field()?;
        Some(Self {
            arch_specific,
            version: major.map(|m| (m, minor.unwrap_or(0))),
            product,
            suite,
            build,
        })
    }

    /// Whether the section applies to a Windows 10/11 workstation of `build` on amd64.
    fn applies_to(&self, build: WindowsBuild) -> bool {
        /// `VER_NT_WORKSTATION`: kernel-sim emulates a client (workstation) system.
        const VER_NT_WORKSTATION: u32 = 1;
        if self.product.is_some_and(|p| p != VER_NT_WORKSTATION)
            || self.suite.is_some_and(|s| s != 0)
        {
            return false;
        }
        match self.version {
            None => true,
            Some(version) if version < (10, 0) => true,
            // The build is compared only when major.minor equal the host's exactly.
            Some((10, 0)) => self.build.is_none_or(|b| build.0 >= b),
            Some(_) => false,
        }
    }

    /// Whether `self` is closer to the host than `other`: a higher version, then a build,
    /// then the platform extension over none.
    fn closer_than(&self, other: &Self) -> bool {
        let key = |d: &Self| (d.version, d.build, d.product.is_some(), d.arch_specific);
        key(self) > key(other)
    }
}

/// The path of a system directory id, as the kernel names it (`\SystemRoot\...`).
fn dirid_path(dirid: u32) -> Option<&'static str> {
    Some(match dirid {
        10 => r"\SystemRoot",
        11 => r"\SystemRoot\System32",
        12 => r"\SystemRoot\System32\drivers",
        // The package's own folder in the driver store; its real name ends in a hash.
        13 => r"\SystemRoot\System32\DriverStore\FileRepository\vigil.inf_amd64_0000000000000000",
        _ => return None,
    })
}

/// A decimal or `0x` hexadecimal number.
fn parse_number(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Removes a `;` comment outside double quotes.
fn strip_comment(line: &str) -> &str {
    match unquoted_find(line, ';') {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The byte offset of the first `wanted` outside double quotes.
fn unquoted_find(line: &str, wanted: char) -> Option<usize> {
    let mut quoted = false;
    for (at, c) in line.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == wanted && !quoted {
            return Some(at);
        }
    }
    None
}

/// Whether a quoted string is still open at the end of `text`.
fn ends_inside_quotes(text: &str) -> bool {
    text.chars().filter(|&c| c == '"').count() % 2 == 1
}

/// Splits on commas outside double quotes.
fn split_fields(value: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let mut rest = value;
    while let Some(at) = unquoted_find(rest, ',') {
        fields.push(&rest[..at]);
        rest = &rest[at + 1..];
    }
    fields.push(rest);
    fields
}

/// Joins the quoted pieces of a field: `"a"b"c"` is `abc`, `""` inside quotes is `"`.
fn unquote(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '"' {
            if quoted && chars.peek() == Some(&'"') {
                out.push('"');
                chars.next();
            } else {
                quoted = !quoted;
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[path = "inf_tests.rs"]
mod tests;
