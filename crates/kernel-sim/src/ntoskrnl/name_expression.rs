//! `FsRtlIsNameInExpression`: whether a name matches a wildcard expression, as file systems
//! match directory queries
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-_fsrtl_advanced_fcb_header-fsrtlisnameinexpression>).
//!
//! From its page: IRQL PASSIVE_LEVEL; the wildcards are `*` (zero or more characters), `?`
//! (exactly one), `DOS_STAR` `<` (zero or more characters, up to and including anything but the
//! name's final period), `DOS_QM` `>` (one character, or, at a period or at the end of the
//! name, nothing: the expression moves past the run of `DOS_QM`s) and `DOS_DOT` `"` (a period,
//! or nothing at the end of the name); the name holds no wildcards; when only one of the two
//! strings is empty the answer is FALSE (so `*` does not match an empty name), when both are,
//! TRUE; with `IgnoreCase` the name is upcased (through `UpcaseTable` when given, else the
//! system table) and the Expression must already be upper case: a lower-case expression is
//! reported (it can never match a letter of the upcased name).
//!
//! The matcher below is a set of expression positions advanced one name character at a time
//! (a nondeterministic automaton), written from those rules.
//!
//! Left out: in low-resource conditions Windows may raise `STATUS_NO_MEMORY`, an exception
//! kernel-sim cannot deliver into the driver's handlers; no failure is injected.

use vigil_sys::{BOOLEAN, UNICODE_STRING};

use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::upcase::upcase_unit;

/// `DOS_STAR`.
pub(crate) const DOS_STAR: u16 = b'<' as u16;
/// `DOS_QM`.
pub(crate) const DOS_QM: u16 = b'>' as u16;
/// `DOS_DOT`.
pub(crate) const DOS_DOT: u16 = b'"' as u16;
const STAR: u16 = b'*' as u16;
const QM: u16 = b'?' as u16;
const DOT: u16 = b'.' as u16;

fn is_wildcard(unit: u16) -> bool {
    matches!(unit, STAR | QM | DOS_STAR | DOS_QM | DOS_DOT)
}

/// Adds to `states` every position reachable from them without consuming a name character,
/// given the character about to be read (`None` at the end of the name).
fn close(expression: &[u16], states: &mut [bool], next: Option<u16>) {
    for i in 0..expression.len() {
        if !states[i] {
            continue;
        }
        let skips = match expression[i] {
            STAR | DOS_STAR => true,
            DOS_QM => next.is_none_or(|c| c == DOT),
            DOS_DOT => next.is_none(),
            _ => false,
        };
        if skips {
            states[i + 1] = true;
        }
    }
}

/// Whether `name` matches `expression`, both already in the case they are compared in.
pub(crate) fn matches(expression: &[u16], name: &[u16]) -> bool {
    match (expression.is_empty(), name.is_empty()) {
        (true, true) => return true,
        (true, false) | (false, true) => return false,
        (false, false) => {}
    }
    let last_dot = name.iter().rposition(|&c| c == DOT);
    let mut states = vec![false; expression.len() + 1];
    states[0] = true;
    for (at, &c) in name.iter().enumerate() {
        close(expression, &mut states, Some(c));
        let mut next = vec![false; expression.len() + 1];
        for i in 0..expression.len() {
            if !states[i] {
                continue;
            }
            match expression[i] {
                STAR => next[i] = true,
                DOS_STAR => {
                    if c != DOT || last_dot != Some(at) {
                        next[i] = true;
                    }
                }
                QM => next[i + 1] = true,
                DOS_QM => {
                    if c != DOT {
                        next[i + 1] = true;
                    }
                }
                DOS_DOT => {
                    if c == DOT {
                        next[i + 1] = true;
                    }
                }
                literal => {
                    if literal == c {
                        next[i + 1] = true;
                    }
                }
            }
        }
        states = next;
        if !states.contains(&true) {
            return false;
        }
    }
    close(expression, &mut states, None);
    states[expression.len()]
}

/// The UTF-16 units of the counted string `name` at `at` (unpaired surrogates kept), or `None`
/// after a report when it is NULL or malformed.
fn read_units(k: &Kernel, name: &str, at: *const UNICODE_STRING) -> Option<Vec<u16>> {
    crate::ntoskrnl::rtl_strings::read_counted(k, name, at, true).map(|s| s.units)
}

/// `FsRtlIsNameInExpression`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn fs_rtl_is_name_in_expression(
    expression: *const UNICODE_STRING,
    name: *const UNICODE_STRING,
    ignore_case: BOOLEAN,
    upcase_table: *const u16,
) -> BOOLEAN {
    emulate(Routine::FsRtlIsNameInExpression, |k| {
        let (Some(pattern), Some(mut text)) = (
            read_units(k, "Expression", expression),
            read_units(k, "Name", name),
        ) else {
            return 0;
        };
        if let Some(&w) = text.iter().find(|&&c| is_wildcard(c)) {
            k.parameter_violation(
                "a Name without wildcard characters",
                format!(
                    "Name holds the wildcard {:?}",
                    char::from_u32(u32::from(w)).unwrap_or('?')
                ),
            );
        }
        if ignore_case != 0 {
            let upcase = |c: u16| {
                if upcase_table.is_null() {
                    upcase_unit(c)
                } else {
                    guest::read(upcase_table.wrapping_add(usize::from(c)))
                }
            };
            if let Some(&lower) = pattern.iter().find(|&&c| !is_wildcard(c) && upcase(c) != c) {
                k.parameter_violation(
                    "Expression in upper case when IgnoreCase is TRUE (FsRtlIsNameInExpression upcases only the Name)",
                    format!(
                        "Expression {:?} holds {:?}, which is not upper case",
                        String::from_utf16_lossy(&pattern),
                        char::from_u32(u32::from(lower)).unwrap_or('?')
                    ),
                );
            }
            text = text.into_iter().map(upcase).collect();
        }
        BOOLEAN::from(matches(&pattern, &text))
    })
}

#[cfg(test)]
mod tests {
    use super::matches;

    /// (expression, name, whether it matches), each row from a rule of the page's Remarks.
    const ROWS: &[(&str, &str, bool)] = &[
        // Empty strings: one empty is FALSE ("*" does not match an empty name), both TRUE.
        ("", "", true),
        ("*", "", false),
        ("", "A", false),
        // Literals.
        ("A.LOG", "A.LOG", true),
        ("A.LOG", "A.LOGX", false),
        ("A.LOG", "A.LO", false),
        // `*`: zero or more characters.
        ("*", "ANYTHING.AT.ALL", true),
        ("*.LOG", "SERVER.LOG", true),
        ("*.LOG", ".LOG", true),
        ("*.LOG", "SERVER.LOG.OLD", false),
        ("*.LOG", "SERVER.LOGS", false),
        ("A*B*C", "AXXBYYC", true),
        ("A*B*C", "AXXBYY", false),
        ("**", "X", true),
        // `?`: exactly one character.
        ("?.TXT", "A.TXT", true),
        ("?.TXT", "AB.TXT", false),
        ("?.TXT", ".TXT", false),
        ("???", "AB", false),
        // DOS_STAR `<`: anything up to the final period, which it cannot take.
        ("<", "NAME", true),
        ("<", "NAME.TXT", false),
        ("<.TXT", "A.B.TXT", true),
        ("<.TXT", "A.TXT", true),
        ("<.TXT", "ATXT", false),
        ("<.*", "A.B.C", true),
        // DOS_QM `>`: one character, or nothing at a period or at the end.
        ("A>>", "A", true),
        ("A>>", "AB", true),
        ("A>>", "ABC", true),
        ("A>>", "ABCD", false),
        ("A>>.TXT", "A.TXT", true),
        ("A>>.TXT", "AB.TXT", true),
        ("A>>.TXT", "ABCD.TXT", false),
        (">", ".", false),
        // DOS_DOT `"`: a period, or nothing at the end of the name.
        ("A\"", "A", true),
        ("A\"", "A.", true),
        ("A\"", "AB", false),
        ("A\"TXT", "A.TXT", true),
        ("A\"TXT", "ATXT", false),
        // The DOS form of "*.*" (`<"*`): every name, with or without an extension.
        ("<\"*", "FOO", true),
        ("<\"*", "FOO.TXT", true),
        ("<\"*", "A.B.C", true),
    ];

    #[test]
    fn the_documented_wildcards_match_as_the_remarks_describe() {
        for &(expression, name, expected) in ROWS {
            let e: Vec<u16> = expression.encode_utf16().collect();
            let n: Vec<u16> = name.encode_utf16().collect();
            assert_eq!(matches(&e, &n), expected, "{expression:?} against {name:?}");
        }
    }

    #[test]
    fn matching_is_exact_on_case_the_caller_upcases() {
        let e: Vec<u16> = "*.LOG".encode_utf16().collect();
        let lower: Vec<u16> = "a.log".encode_utf16().collect();
        assert!(!matches(&e, &lower), "case-sensitive: .log is not .LOG");
        let upper: Vec<u16> = lower.iter().map(|&c| super::upcase_unit(c)).collect();
        assert!(matches(&e, &upper));
    }
}
