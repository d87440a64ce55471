//! The policy file (TOML): the driver's settings, pushed with set-configuration; where events
//! are written; and the rules that answer verdict requests. User mode, portable.
//!
//! A bad file is refused whole with the line, the field and the reason
//! ([`PolicyError`]); nothing of it is applied, so a reload that fails keeps the running policy.
//! Every range is the protocol's own (`vigil_protocol` constants), checked here so that the
//! driver never has to refuse what the service sends.
//!
//! # Format
//!
//! ```toml
//! [driver]
//! default_verdict = "allow"       # "allow" = fail-open (default), "deny" = fail-closed
//! verdict_timeout_ms = 1000       # 10 ..= 10000: how long an open waits for the service
//! send_timeout_ms = 1000          # 10 ..= 60000: how long a batch send waits
//! batch_size = 64                 # 1 ..= 629 records per batch
//! attach_network_volumes = false  # local NTFS/ReFS/FAT/exFAT always; network only if true
//!
//! [output]
//! jsonl = 'C:\ProgramData\Vigil\vigil.jsonl'
//! max_file_mb = 64                # rotate past this size, 1 ..= 4096
//! keep_files = 8                  # rotated files kept, 0 ..= 1000
//! sync_interval_ms = 1000         # fsync period, 10 ..= 60000
//!
//! [[rule]]
//! prefix = 'C:\Secret'                       # or '\Device\HarddiskVolume3\Secret'
//! verdict = "deny"                            # "deny" or "allow" (audit only)
//! operations = ["create", "rename", "link", "delete"]   # default: all four
//! except_processes = ['C:\Program Files\Backup\backup.exe']   # full image paths
//! except_users = ['S-1-5-18']                 # user SIDs the rule does not apply to
//! ```
//!
//! Paths are written as administrators know them: a drive path (`C:\...`, also behind `\\?\`)
//! is translated at load to the NT device path the driver sees (`\Device\HarddiskVolume3\...`,
//! through `QueryDosDeviceW`; [`crate::paths`]), so a rule and the names it must match are in
//! the same terms. A relative `[output] jsonl` is resolved against the data directory
//! (`%ProgramData%\Vigil`), never against the service's working directory (`System32`).
//!
//! `except_processes` names processes by their full image path, compared case-insensitively
//! with the path the service looks up for the requesting process id (in NT form). A bare file
//! name is refused: any user can call a program `backup.exe`. The path identifies a program only
//! as well as its directory is protected: name programs in directories only administrators can
//! write (`C:\Program Files`, `C:\Windows`). Left out: the identity is looked up by process id
//! when the verdict is asked, so a process that exits and whose id is reused in between is
//! judged as the new one; the driver-side identity (the image the driver itself records for
//! the requester, filed as its own issue with this one) would close that window.
//!
//! `except_users` names users by SID (`S-1-5-18` is the local system account), compared with the requesting
//! process's token user as the driver recorded it at process start (the process table, fed by
//! the driver's process records); a requester whose user is not known is not excepted (the
//! rule still applies: the safe direction). With both lists, either exempts.
//!
//! Every key is optional except a rule's `prefix` and `verdict`; unknown keys are refused (a
//! misspelt key must not silently fall back to a default).
//!
//! # Verdicts
//!
//! The driver asks for a verdict for operations on paths under any rule's prefix (at most
//! [`MAX_PROTECTED_PREFIXES`] distinct prefixes). The service answers:
//! 1. its own process: allow (the driver exempts it already; this is the second line);
//! 2. otherwise, for the path and (rename, link) for the target separately, the first rule in
//!    file order whose prefix covers that name at a component boundary, case-insensitively,
//!    whose `operations` include the operation, and whose `except_processes` does not list the
//!    requester's image name; if either name's rule denies, the answer is deny (moving a file
//!    into or out of a protected tree is judged by both names), else allow;
//! 3. no rule for either name: allow (only rules deny).
//!
//! The reply's reason code is the rule's number in the file (1-based), [`REASON_NO_RULE`] or
//! [`REASON_OWN_PROCESS`].

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use vigil_protocol::{
    BATCH_SIZE_RANGE, Config, DEFAULT_ATTACH_NETWORK_VOLUMES, DEFAULT_BATCH_SIZE,
    DEFAULT_SEND_TIMEOUT_MS, DEFAULT_VERDICT, DEFAULT_VERDICT_TIMEOUT_MS, MAX_PREFIX_UNITS,
    MAX_PROTECTED_PREFIXES, PrefixList, SEND_TIMEOUT_MS_RANGE, Utf16Str, VERDICT_TIMEOUT_MS_RANGE,
    Verdict, VerdictOperation, VerdictRequestRepr,
};

use crate::paths::PathContext;
use crate::sink::JsonlOptions;

/// Reason code when no rule decided (allowed).
pub const REASON_NO_RULE: u32 = 0;
/// Reason code for the service's own process (allowed).
pub const REASON_OWN_PROCESS: u32 = u32::MAX;

/// A policy file refused: where, which field, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line of the offending value (0 when the error has no place, e.g. an I/O error).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The field, as a dotted path (`driver.batch_size`, `rule[2].prefix`); empty for a syntax
    /// error that names no field.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}, column {}: ", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "field `{}`: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for PolicyError {}

/// Operations a rule applies to, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operations(u8);

impl Operations {
    /// All four operations.
    pub const ALL: Self = Self(0b1111);

    const fn bit(op: VerdictOperation) -> u8 {
        1 << (op.to_u16() - 1)
    }

    /// `true` when `op` is in the set.
    pub const fn contains(self, op: VerdictOperation) -> bool {
        self.0 & Self::bit(op) != 0
    }

    fn parse(name: &str) -> Option<VerdictOperation> {
        Some(match name {
            "create" => VerdictOperation::Create,
            "rename" => VerdictOperation::Rename,
            "link" => VerdictOperation::Link,
            "delete" => VerdictOperation::Delete,
            _ => return None,
        })
    }
}

/// One verdict rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The prefix as written.
    pub prefix: String,
    /// The answer when the rule applies.
    pub verdict: Verdict,
    /// Operations it applies to.
    pub operations: Operations,
    /// Full image paths (NT form, lower case) of the processes it does not apply to.
    pub except_processes: Vec<String>,
    /// User SIDs (string form, upper-case `S`) whose processes it does not apply to.
    pub except_users: Vec<String>,
    /// The prefix as UTF-16, trailing separators removed (what the driver gets).
    units: Vec<u16>,
    /// `units` case-folded, for matching.
    folded: Vec<u16>,
}

/// Where events are written, from the `[output]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPolicy {
    /// The JSON Lines file, if the policy names one (the CLI's `--output` overrides it).
    pub jsonl: Option<PathBuf>,
    /// Size bound per file, bytes.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Sync period.
    pub sync_interval: Duration,
}

impl OutputPolicy {
    /// The JSON Lines sink settings for `path`.
    pub fn jsonl_options(&self, path: impl Into<PathBuf>) -> JsonlOptions {
        JsonlOptions {
            path: path.into(),
            max_bytes: self.max_bytes,
            keep: self.keep,
            sync_interval: self.sync_interval,
        }
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Records per batch.
    pub batch_size: u32,
    /// Verdict wait, ms.
    pub verdict_timeout_ms: u32,
    /// Send wait, ms.
    pub send_timeout_ms: u32,
    /// Verdict applied when the service does not answer.
    pub default_verdict: Verdict,
    /// Attach network volumes too.
    pub attach_network_volumes: bool,
    /// Output settings.
    pub output: OutputPolicy,
    /// Verdict rules, in file order.
    pub rules: Vec<Rule>,
}

impl Default for Policy {
    /// The protocol's defaults, no rules, no output file.
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            verdict_timeout_ms: DEFAULT_VERDICT_TIMEOUT_MS,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            default_verdict: DEFAULT_VERDICT,
            attach_network_volumes: DEFAULT_ATTACH_NETWORK_VOLUMES,
            output: OutputPolicy {
                jsonl: None,
                max_bytes: JsonlOptions::DEFAULT_MAX_BYTES,
                keep: JsonlOptions::DEFAULT_KEEP,
                sync_interval: JsonlOptions::DEFAULT_SYNC_INTERVAL,
            },
            rules: Vec::new(),
        }
    }
}

/// Looks up a process's image, for `except_processes`.
pub trait ProcessNames {
    /// The full image path of process `pid` in NT form
    /// (`\Device\HarddiskVolume3\Program Files\Backup\backup.exe`), if it can be had.
    fn image_name(&self, pid: u64) -> Option<String>;

    /// The SID (`S-1-5-…`) of process `pid`'s user, for `except_users`; none by default, so
    /// that `except_users` never exempts a process whose user is unknown.
    fn user_sid(&self, _pid: u64) -> Option<String> {
        None
    }
}

/// Knows no process names: `except_processes` then never applies (the safe direction: the rule
/// still does).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProcessNames;

impl ProcessNames for NoProcessNames {
    fn image_name(&self, _pid: u64) -> Option<String> {
        None
    }
}

impl<H: std::hash::BuildHasher> ProcessNames for std::collections::HashMap<u64, String, H> {
    fn image_name(&self, pid: u64) -> Option<String> {
        self.get(&pid).cloned()
    }
}

/// A verdict and its reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// The rule's 1-based number, [`REASON_NO_RULE`] or [`REASON_OWN_PROCESS`].
    pub reason: u32,
}

impl Policy {
    /// Parses and validates a policy file's text.
    ///
    /// # Errors
    ///
    /// The first problem found, with its line, field and reason.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        Self::parse_in(text, &PathContext::none())
    }

    /// Parses and validates a policy file's text, with drive-letter paths translated and a
    /// relative output resolved through `paths` (see [`crate::paths`]).
    ///
    /// # Errors
    ///
    /// The first problem found, with its line, field and reason.
    pub fn parse_in(text: &str, paths: &PathContext) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        raw.validate(text, paths)
    }

    /// Reads and parses a policy file, in this machine's terms ([`PathContext::system`]: its
    /// drive letters, and the data directory for a relative output).
    ///
    /// # Errors
    ///
    /// Reading the file (with no line), or [`Policy::parse`]'s errors.
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        Self::load_in(path, &PathContext::system())
    }

    /// Reads and parses a policy file with the paths resolved through `paths`.
    ///
    /// # Errors
    ///
    /// Reading the file (with no line), or [`Policy::parse`]'s errors.
    pub fn load_in(path: &std::path::Path, paths: &PathContext) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            line: 0,
            column: 0,
            field: String::new(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse_in(&text, paths)
    }

    /// The distinct prefixes the driver is to protect (at most [`MAX_PROTECTED_PREFIXES`], by
    /// validation), as UTF-16.
    pub fn protected_prefixes(&self) -> Vec<&[u16]> {
        let mut seen: Vec<&[u16]> = Vec::new();
        let mut out = Vec::new();
        for rule in &self.rules {
            if !seen.contains(&rule.folded.as_slice()) {
                seen.push(&rule.folded);
                out.push(rule.units.as_slice());
            }
        }
        out
    }

    /// The driver configuration this policy asks for, borrowing the prefixes from `prefixes`
    /// (the result of [`protected_prefixes`](Self::protected_prefixes)).
    pub fn driver_config<'a>(&self, prefixes: &[&'a [u16]]) -> Config<'a> {
        let mut list = PrefixList::EMPTY;
        for units in prefixes {
            // Validation bounds the count by MAX_PROTECTED_PREFIXES.
            let _ = list.push(Utf16Str::from_units(units));
        }
        Config {
            batch_size: self.batch_size,
            verdict_timeout_ms: self.verdict_timeout_ms,
            send_timeout_ms: self.send_timeout_ms,
            default_verdict: self.default_verdict,
            attach_network_volumes: self.attach_network_volumes,
            protected_prefixes: list,
        }
    }

    /// Answers a verdict request (see the module documentation for the order of the checks).
    pub fn decide(
        &self,
        request: &VerdictRequestRepr<'_>,
        own_pid: u64,
        names: &dyn ProcessNames,
    ) -> Decision {
        if request.process_id == own_pid {
            return Decision {
                verdict: Verdict::Allow,
                reason: REASON_OWN_PROCESS,
            };
        }
        let path = fold(request.path.units());
        let target = fold(request.target.units());
        let mut image: Option<Option<String>> = None;
        let mut image_name = || {
            image
                .get_or_insert_with(|| {
                    names
                        .image_name(request.process_id)
                        .map(|n| n.to_lowercase())
                })
                .clone()
        };
        let mut sid: Option<Option<String>> = None;
        let mut user_sid = || {
            sid.get_or_insert_with(|| names.user_sid(request.process_id))
                .clone()
        };
        let mut who = Requester {
            image_name: &mut image_name,
            user_sid: &mut user_sid,
        };
        let by_path = self.first_rule(request.operation, &path, &mut who);
        let by_target = if target.is_empty() {
            None
        } else {
            self.first_rule(request.operation, &target, &mut who)
        };
        // Either name denied: deny (moving a file into or out of a protected tree is judged
        // by both names); otherwise the path's rule, then the target's, gives the reason.
        let denying = [by_path, by_target]
            .into_iter()
            .flatten()
            .find(|d| d.verdict == Verdict::Deny);
        denying.or(by_path).or(by_target).unwrap_or(Decision {
            verdict: Verdict::Allow,
            reason: REASON_NO_RULE,
        })
    }

    /// The decision of the first rule that applies to one (folded) name.
    fn first_rule(
        &self,
        operation: VerdictOperation,
        name: &[u16],
        who: &mut Requester<'_>,
    ) -> Option<Decision> {
        for (index, rule) in self.rules.iter().enumerate() {
            let applies = covers(&rule.folded, name)
                || (moves_tree(operation) && is_ancestor(name, &rule.folded));
            if !rule.operations.contains(operation) || !applies {
                continue;
            }
            if !rule.except_processes.is_empty()
                && (who.image_name)().is_some_and(|n| rule.except_processes.contains(&n))
            {
                continue;
            }
            if !rule.except_users.is_empty()
                && (who.user_sid)().is_some_and(|s| rule.except_users.contains(&s))
            {
                continue;
            }
            return Some(Decision {
                verdict: rule.verdict,
                reason: u32::try_from(index + 1).unwrap_or(u32::MAX - 1),
            });
        }
        None
    }
}

/// The requester's identity, each looked up at most once per request and only if a rule
/// needs it.
struct Requester<'a> {
    image_name: &'a mut dyn FnMut() -> Option<String>,
    user_sid: &'a mut dyn FnMut() -> Option<String>,
}

/// Checks a SID in string form (`S-1-5-21-…`: revision 1, an authority, up to 15
/// sub-authorities, each a decimal number) and gives it with an upper-case `S`, as Windows
/// writes it and as the process table holds it.
fn parse_sid_string(value: &str) -> Result<String, String> {
    let bad = || format!("\"{value}\" is not a SID (S-1-<authority>-<sub-authority>...)");
    let mut parts = value.split('-');
    if !parts.next().is_some_and(|s| s.eq_ignore_ascii_case("s")) || parts.next() != Some("1") {
        return Err(bad());
    }
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() || rest.len() > 16 {
        return Err(bad());
    }
    if rest.iter().skip(1).any(|p| p.parse::<u32>().is_err()) {
        return Err(bad());
    }
    let authority = rest.first().copied().unwrap_or("");
    let authority_ok = authority.parse::<u64>().is_ok_and(|a| a < 1 << 32)
        || authority
            .strip_prefix("0x")
            .or_else(|| authority.strip_prefix("0X"))
            .is_some_and(|h| h.len() == 12 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !authority_ok {
        return Err(bad());
    }
    // A large authority in hex as Windows writes it (`0x` then upper-case digits), so that it
    // compares equal to the table's SID text.
    let mut parts: Vec<String> = rest.iter().map(|p| (*p).to_owned()).collect();
    if let Some(first) = parts.first_mut()
        && let Some(hex) = first
            .strip_prefix("0x")
            .or_else(|| first.strip_prefix("0X"))
    {
        *first = format!("0x{}", hex.to_ascii_uppercase());
    }
    Ok(format!("S-1-{}", parts.join("-")))
}

/// Folds a UTF-16 unit for case-insensitive matching the way the driver does: ASCII and the
/// Latin-1 letters (the kernel's exact rule is the volume's upcase table).
/// Upcases one UTF-16 unit by Unicode's simple uppercase mapping (a character whose uppercase
/// is one BMP character maps to it; anything else is unchanged): the case-insensitivity NTFS
/// names have, which the driver matches with the kernel's own table (RULES.md rule 28). A
/// Latin-1-only fold let `\СЕКРЕТ` walk around a rule on `\Секрет`.
fn fold_unit(u: u16) -> u16 {
    let Some(c) = char::from_u32(u32::from(u)) else {
        return u;
    };
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(one), None) => u16::try_from(u32::from(one)).unwrap_or(u),
        _ => u,
    }
}

fn fold(units: impl Iterator<Item = u16>) -> Vec<u16> {
    units.map(fold_unit).collect()
}

const BACKSLASH: u16 = b'\\' as u16;

const COLON: u16 = b':' as u16;

/// `true` when folded `prefix` covers folded `path` at a component boundary, where a stream
/// suffix is a boundary too (`Secret::$DATA`, `Secret:ads`, `Secret:$I30:$INDEX_ALLOCATION`
/// name the protected file or directory).
fn covers(prefix: &[u16], path: &[u16]) -> bool {
    !prefix.is_empty()
        && path.starts_with(prefix)
        && matches!(path.get(prefix.len()), None | Some(&BACKSLASH | &COLON))
}

/// Operations that move or remove a whole tree: on an ancestor of a rule's prefix they move
/// or remove the protected tree.
fn moves_tree(operation: VerdictOperation) -> bool {
    matches!(
        operation,
        VerdictOperation::Rename | VerdictOperation::Delete
    )
}

/// `true` when folded `path` (its final component's stream suffix ignored) is folded
/// `prefix` or one of its ancestors.
fn is_ancestor(path: &[u16], prefix: &[u16]) -> bool {
    let component = path
        .iter()
        .rposition(|&u| u == BACKSLASH)
        .map_or(0, |at| at + 1);
    let end = path[component..]
        .iter()
        .position(|&u| u == COLON)
        .map_or(path.len(), |at| component + at);
    let path = &path[..end];
    !path.is_empty() && covers(path, prefix)
}

// ---------------------------------------------------------------------------------------------
// The raw file, as serde reads it, and its validation.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    driver: RawDriver,
    #[serde(default)]
    output: RawOutput,
    #[serde(default, rename = "rule")]
    rules: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDriver {
    batch_size: Option<Spanned<i64>>,
    verdict_timeout_ms: Option<Spanned<i64>>,
    send_timeout_ms: Option<Spanned<i64>>,
    default_verdict: Option<Spanned<String>>,
    attach_network_volumes: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    jsonl: Option<Spanned<String>>,
    max_file_mb: Option<Spanned<i64>>,
    keep_files: Option<Spanned<i64>>,
    sync_interval_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    prefix: Spanned<String>,
    verdict: Spanned<String>,
    operations: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    except_processes: Vec<Spanned<String>>,
    #[serde(default)]
    except_users: Vec<Spanned<String>>,
}

/// Valid `max_file_mb`: a file of at least 1 MiB holds thousands of records; 4 GiB keeps
/// rotation meaningful.
const MAX_FILE_MB_RANGE: RangeInclusive<u32> = 1..=4096;
/// Valid `keep_files`.
const KEEP_FILES_RANGE: RangeInclusive<u32> = 0..=1000;
/// Valid `sync_interval_ms`.
const SYNC_INTERVAL_MS_RANGE: RangeInclusive<u32> = 10..=60_000;

/// Errors of one file's validation, with its text for line numbers.
struct Checker<'t> {
    text: &'t str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, field: &str, reason: impl Into<String>) -> PolicyError {
        let (line, column) = line_column(self.text, span.start);
        PolicyError {
            line,
            column,
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn ranged(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        range: &RangeInclusive<u32>,
        default: u32,
        what: &str,
    ) -> Result<u32, PolicyError> {
        let Some(value) = value else {
            return Ok(default);
        };
        u32::try_from(*value.get_ref())
            .ok()
            .filter(|v| range.contains(v))
            .ok_or_else(|| {
                self.error(
                    value.span(),
                    field,
                    format!(
                        "{} is out of range {}..={} ({what})",
                        value.get_ref(),
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    fn verdict(&self, value: &Spanned<String>, field: &str) -> Result<Verdict, PolicyError> {
        match value.get_ref().as_str() {
            "allow" => Ok(Verdict::Allow),
            "deny" => Ok(Verdict::Deny),
            other => Err(self.error(
                value.span(),
                field,
                format!("\"{other}\" is not a verdict: expected \"allow\" or \"deny\""),
            )),
        }
    }
}

impl RawPolicy {
    fn validate(self, text: &str, paths: &PathContext) -> Result<Policy, PolicyError> {
        let c = Checker { text };
        let d = &self.driver;
        let batch_size = c.ranged(
            d.batch_size.as_ref(),
            "driver.batch_size",
            &BATCH_SIZE_RANGE,
            DEFAULT_BATCH_SIZE,
            "records per batch",
        )?;
        let verdict_timeout_ms = c.ranged(
            d.verdict_timeout_ms.as_ref(),
            "driver.verdict_timeout_ms",
            &VERDICT_TIMEOUT_MS_RANGE,
            DEFAULT_VERDICT_TIMEOUT_MS,
            "milliseconds an operation waits for a verdict",
        )?;
        let send_timeout_ms = c.ranged(
            d.send_timeout_ms.as_ref(),
            "driver.send_timeout_ms",
            &SEND_TIMEOUT_MS_RANGE,
            DEFAULT_SEND_TIMEOUT_MS,
            "milliseconds a batch send waits",
        )?;
        let default_verdict = match &d.default_verdict {
            Some(v) => c.verdict(v, "driver.default_verdict")?,
            None => DEFAULT_VERDICT,
        };
        let o = &self.output;
        let jsonl = match &o.jsonl {
            Some(path) if path.get_ref().trim().is_empty() => {
                return Err(c.error(path.span(), "output.jsonl", "empty path"));
            }
            // A service runs in System32: a relative output is the data directory's.
            Some(path) => Some(paths.output_path(std::path::Path::new(path.get_ref()))),
            None => None,
        };
        let max_file_mb = c.ranged(
            o.max_file_mb.as_ref(),
            "output.max_file_mb",
            &MAX_FILE_MB_RANGE,
            64,
            "MiB per file",
        )?;
        let keep = c.ranged(
            o.keep_files.as_ref(),
            "output.keep_files",
            &KEEP_FILES_RANGE,
            JsonlOptions::DEFAULT_KEEP,
            "rotated files kept",
        )?;
        let sync_ms = c.ranged(
            o.sync_interval_ms.as_ref(),
            "output.sync_interval_ms",
            &SYNC_INTERVAL_MS_RANGE,
            1000,
            "milliseconds between syncs",
        )?;
        let mut rules = Vec::with_capacity(self.rules.len());
        let mut distinct: Vec<Vec<u16>> = Vec::new();
        for (i, raw) in self.rules.into_iter().enumerate() {
            let n = i + 1;
            let rule = raw.validate(&c, n, paths)?;
            if !distinct.contains(&rule.folded) {
                if distinct.len() == MAX_PROTECTED_PREFIXES {
                    return Err(c.error(
                        rule_prefix_span(text, n),
                        &format!("rule[{n}].prefix"),
                        format!(
                            "more than {MAX_PROTECTED_PREFIXES} distinct protected prefixes (the \
                             driver's limit)"
                        ),
                    ));
                }
                distinct.push(rule.folded.clone());
            }
            rules.push(rule);
        }
        Ok(Policy {
            batch_size,
            verdict_timeout_ms,
            send_timeout_ms,
            default_verdict,
            attach_network_volumes: d
                .attach_network_volumes
                .unwrap_or(DEFAULT_ATTACH_NETWORK_VOLUMES),
            output: OutputPolicy {
                jsonl,
                max_bytes: u64::from(max_file_mb) * 1024 * 1024,
                keep,
                sync_interval: Duration::from_millis(u64::from(sync_ms)),
            },
            rules,
        })
    }
}

/// The span of rule `n`'s prefix value, found again in the text (the validated rule no longer
/// carries spans).
fn rule_prefix_span(text: &str, n: usize) -> Range<usize> {
    let mut seen = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("[[rule]]") {
            seen += 1;
        }
        if seen == n && trimmed.starts_with("prefix") {
            let start = offset + (line.len() - trimmed.len());
            return start..start + trimmed.trim_end().len();
        }
        offset += line.len();
    }
    0..0
}

impl RawRule {
    fn validate(self, c: &Checker<'_>, n: usize, paths: &PathContext) -> Result<Rule, PolicyError> {
        let field = |name: &str| format!("rule[{n}].{name}");
        let prefix = self.prefix.get_ref();
        let span = self.prefix.span();
        if prefix.trim_end_matches('\\').is_empty() {
            return Err(c.error(
                span,
                &field("prefix"),
                "empty prefix (it would protect every path)",
            ));
        }
        // `C:\Secret` in the administrator's terms, `\Device\HarddiskVolume3\Secret` in the
        // driver's: translated now, with this machine's drive letters.
        let nt = paths
            .dos_devices
            .to_nt_path(prefix)
            .map_err(|reason| c.error(span.clone(), &field("prefix"), reason))?;
        let trimmed = nt.trim_end_matches('\\');
        if trimmed.is_empty() || !nt.starts_with('\\') {
            return Err(c.error(
                span,
                &field("prefix"),
                format!(
                    "\"{prefix}\" is not an NT path: the driver sees normalized names such as \
                     \\Device\\HarddiskVolume3\\Secret"
                ),
            ));
        }
        let units: Vec<u16> = trimmed.encode_utf16().collect();
        if units.len() > MAX_PREFIX_UNITS {
            return Err(c.error(
                span,
                &field("prefix"),
                format!(
                    "{} UTF-16 units long; at most {MAX_PREFIX_UNITS}",
                    units.len()
                ),
            ));
        }
        let verdict = c.verdict(&self.verdict, &field("verdict"))?;
        let operations = match &self.operations {
            None => Operations::ALL,
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(c.error(
                        list.span(),
                        &field("operations"),
                        "empty list: the rule would never apply",
                    ));
                }
                let mut bits = 0;
                for op in list.get_ref() {
                    let parsed = Operations::parse(op.get_ref()).ok_or_else(|| {
                        c.error(
                            op.span(),
                            &field("operations"),
                            format!(
                                "\"{}\" is not an operation: expected \"create\", \"rename\", \
                                 \"link\" or \"delete\"",
                                op.get_ref()
                            ),
                        )
                    })?;
                    bits |= Operations::bit(parsed);
                }
                Operations(bits)
            }
        };
        let mut except_processes = Vec::with_capacity(self.except_processes.len());
        for name in &self.except_processes {
            let value = name.get_ref();
            // A bare file name is what any user can give a program of theirs: only the full
            // image path, in a directory users cannot write, identifies one.
            if !value.contains('\\') {
                return Err(c.error(
                    name.span(),
                    &field("except_processes"),
                    format!(
                        "\"{value}\" is not a full image path: any user can name a program \
                         that; write the whole path, e.g. 'C:\\Program Files\\Backup\\backup.exe'"
                    ),
                ));
            }
            let nt = paths
                .dos_devices
                .to_nt_path(value)
                .map_err(|reason| c.error(name.span(), &field("except_processes"), reason))?;
            except_processes.push(nt.to_lowercase());
        }
        let mut except_users = Vec::with_capacity(self.except_users.len());
        for sid in &self.except_users {
            let parsed = parse_sid_string(sid.get_ref())
                .map_err(|reason| c.error(sid.span(), &field("except_users"), reason))?;
            except_users.push(parsed);
        }
        let folded = fold(units.iter().copied());
        Ok(Rule {
            prefix: prefix.clone(),
            verdict,
            operations,
            except_processes,
            except_users,
            units,
            folded,
        })
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Turns a TOML or serde error into a [`PolicyError`]: the line from its span, the field from
/// the message (serde names unknown and missing fields) or from the key on that line, under the
/// nearest table header above it.
fn toml_error(text: &str, error: &toml::de::Error) -> PolicyError {
    let message = error.message().trim().to_owned();
    let span = error.span().unwrap_or(0..0);
    let (line, column) = line_column(text, span.start);
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let table = table_above(text, line);
    let named = backquoted(&message);
    if line_text.trim_start().starts_with('[') {
        // The error is about a table itself: a field missing from it, an unknown table, a
        // duplicate one.
        let table = table_above(text, line);
        let field = match (message.starts_with("missing field"), table, named) {
            (true, Some(t), Some(n)) => format!("{t}.{n}"),
            (_, _, Some(n)) => n,
            (_, t, None) => t.unwrap_or_default(),
        };
        return PolicyError {
            line,
            column,
            field,
            reason: message,
        };
    }
    let key = if message.starts_with("unknown field") || message.starts_with("missing field") {
        named
    } else {
        line_text
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
    };
    let field = match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => String::new(),
    };
    PolicyError {
        line,
        column,
        field,
        reason: message,
    }
}

/// The table header in force at 1-based `line` (`driver`, `rule[2]`), if any.
fn table_above(text: &str, line: usize) -> Option<String> {
    let mut current = None;
    let mut rule_count = 0;
    for l in text.lines().take(line) {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            let name = name.0.trim();
            if name == "rule" {
                rule_count += 1;
                current = Some(format!("rule[{rule_count}]"));
            } else {
                current = Some(name.to_owned());
            }
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
            current = Some(name.0.trim().to_owned());
        }
    }
    current
}

fn backquoted(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message.get(start..)?.find('`')?;
    message.get(start..start + len).map(str::to_owned)
}

#[cfg(test)]
mod tests;
