//! Protected path prefixes: a bounded, allocation-free list and a case-insensitive match.
//! Portable; used by the pre-operation callbacks at PASSIVE_LEVEL.
//!
//! A rule must hold for every name a file has (RULES.md, rule 28), so the match is:
//! * case-insensitive as the file system is: every code unit is upcased with the function the
//!   caller passes ([`Fold`]). The driver passes the kernel's own `RtlUpcaseUnicodeChar`
//!   (IRQL <= APC_LEVEL), the table NTFS names are compared with, for every non-ASCII unit
//!   (ASCII is folded here: the table maps exactly `a`..`z` there); host tests pass
//!   [`simple_upcase`];
//! * at a component boundary, where a stream suffix is a boundary too: `\Device\X\Secret`
//!   protects `\Device\X\Secret`, `\Device\X\Secret\a.txt`, `\Device\X\Secret::$DATA`,
//!   `\Device\X\Secret:ads` and `\Device\X\Secret:$I30:$INDEX_ALLOCATION` (each names the
//!   same file or directory), not `\Device\X\SecretNot`;
//! * and, for the operations that move or remove a tree, an *ancestor* test
//!   ([`PrefixList::is_ancestor_or_equal`]): renaming or deleting `\Device\X` moves
//!   `\Device\X\Secret` out from under its rule.

use vigil_protocol::{MAX_PREFIX_UNITS, MAX_PROTECTED_PREFIXES};

/// Why a prefix was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// The list already holds [`MAX_PROTECTED_PREFIXES`].
    TooMany,
    /// Empty, or longer than [`MAX_PREFIX_UNITS`].
    BadLength,
}

/// Up to [`MAX_PROTECTED_PREFIXES`] prefixes, stored inline (no allocation), upcased on insert.
/// It is 32 KiB: it lives in the driver's pool block, never on a kernel stack.
pub struct PrefixList {
    units: [[u16; MAX_PREFIX_UNITS]; MAX_PROTECTED_PREFIXES],
    lens: [u16; MAX_PROTECTED_PREFIXES],
    count: usize,
}

impl PrefixList {
    /// An empty list, by value: for host tests only. The driver never has one on its stack; it
    /// clears the list in place in its pool block.
    #[cfg(test)]
    #[expect(
        clippy::new_without_default,
        clippy::large_stack_arrays,
        reason = "host tests only"
    )]
    pub const fn new() -> Self {
        Self {
            units: [[0; MAX_PREFIX_UNITS]; MAX_PROTECTED_PREFIXES],
            lens: [0; MAX_PROTECTED_PREFIXES],
            count: 0,
        }
    }

    /// Number of prefixes.
    pub const fn len(&self) -> usize {
        self.count
    }

    /// Whether the list is empty (then no operation needs a verdict).
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every prefix.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Adds `prefix` (UTF-16). A trailing separator is dropped so that `C:\X\` and `C:\X` mean
    /// the same directory.
    ///
    /// # Errors
    ///
    /// As [`PrefixList::push_units`].
    pub fn push(&mut self, prefix: &[u16], fold: impl Fold) -> Result<(), PrefixError> {
        self.push_units(prefix.iter().copied(), fold)
    }

    /// Adds a prefix given as code units, written straight into the list (no buffer on the
    /// stack: kernel stacks are small).
    ///
    /// # Errors
    ///
    /// [`PrefixError::TooMany`] when the list is full, [`PrefixError::BadLength`] for an empty
    /// prefix (after dropping a trailing separator) or one longer than [`MAX_PREFIX_UNITS`]; the
    /// list is unchanged then.
    pub fn push_units(
        &mut self,
        prefix: impl IntoIterator<Item = u16>,
        fold: impl Fold,
    ) -> Result<(), PrefixError> {
        let slot = self.count;
        if slot >= MAX_PROTECTED_PREFIXES {
            return Err(PrefixError::TooMany);
        }
        let mut len = 0;
        for unit in prefix {
            *self.units[slot]
                .get_mut(len)
                .ok_or(PrefixError::BadLength)? = upcase(unit, &fold);
            len += 1;
        }
        if len > 0 && self.units[slot][len - 1] == u16::from(b'\\') {
            len -= 1;
        }
        if len == 0 {
            return Err(PrefixError::BadLength);
        }
        // Bounded by MAX_PREFIX_UNITS, which fits u16.
        self.lens[slot] = u16::try_from(len).map_err(|_| PrefixError::BadLength)?;
        self.count += 1;
        Ok(())
    }

    /// The stored (upcased) prefixes.
    fn prefixes(&self) -> impl Iterator<Item = &[u16]> {
        self.units
            .iter()
            .zip(&self.lens)
            .take(self.count)
            .filter_map(|(units, &len)| units.get(..usize::from(len)))
    }

    /// Whether `path` is protected by any prefix: it is a prefix, or inside one, or one of their
    /// streams.
    pub fn matches(&self, path: &[u16], fold: impl Fold) -> bool {
        self.prefixes()
            .any(|prefix| is_prefix_at_boundary(prefix, path, &fold))
    }

    /// Whether `path` is a prefix or one of its ancestors (any stream suffix of its final
    /// component ignored): renaming or deleting it moves or removes a protected tree.
    pub fn is_ancestor_or_equal(&self, path: &[u16], fold: impl Fold) -> bool {
        let path = without_stream(path);
        if path.is_empty() {
            return false;
        }
        self.prefixes()
            .any(|prefix| is_prefix_at_boundary(path, prefix, &fold))
    }
}

/// How a code unit is upcased (see the module documentation).
pub trait Fold: Fn(u16) -> u16 {}
impl<F: Fn(u16) -> u16> Fold for F {}

/// `path` without the stream suffix of its final component (`:name`, `::$DATA`,
/// `:$I30:$INDEX_ALLOCATION`): the file or directory the stream belongs to.
fn without_stream(path: &[u16]) -> &[u16] {
    let component = path
        .iter()
        .rposition(|&unit| unit == u16::from(b'\\'))
        .map_or(0, |at| at + 1);
    let end = path
        .get(component..)
        .and_then(|last| last.iter().position(|&unit| unit == u16::from(b':')))
        .map_or(path.len(), |at| component + at);
    path.get(..end).unwrap_or(path)
}

/// Whether `head` (compared upcased) starts `path` at a component or stream boundary. `path`
/// is upcased as it is read; `head` is upcased already when it is a stored prefix, and upcased
/// too when it is the path of an ancestor test (folding twice is folding once).
fn is_prefix_at_boundary(head: &[u16], path: &[u16], fold: &impl Fold) -> bool {
    let Some(start) = path.get(..head.len()) else {
        return false;
    };
    let same = start
        .iter()
        .zip(head)
        .all(|(&p, &q)| p == q || upcase(p, fold) == upcase(q, fold));
    same && path
        .get(head.len())
        .is_none_or(|&next| next == u16::from(b'\\') || next == u16::from(b':'))
}

/// Upcases one unit: ASCII here (the upcase table maps exactly `a`..`z` below 0x80), anything
/// else through `fold`.
fn upcase(unit: u16, fold: &impl Fold) -> u16 {
    match unit {
        0x61..=0x7a => unit - 0x20,
        0..=0x7f => unit,
        _ => fold(unit),
    }
}

/// A full-Unicode simple uppercase mapping of one UTF-16 unit (a character whose uppercase is
/// one BMP character maps to it; anything else, surrogates included, is unchanged): what
/// `RtlUpcaseUnicodeChar` does, for host tests and tools.
pub fn simple_upcase(unit: u16) -> u16 {
    let Some(c) = char::from_u32(u32::from(unit)) else {
        return unit;
    };
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u16::try_from(u32::from(u)).unwrap_or(unit),
        _ => unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    #[test]
    fn matches_case_insensitively_at_component_boundaries() {
        let mut list = PrefixList::new();
        list.push(&w(r"\Device\HarddiskVolume1\Secret\"), simple_upcase)
            .unwrap();
        assert!(list.matches(&w(r"\Device\HarddiskVolume1\Secret"), simple_upcase));
        assert!(list.matches(&w(r"\device\harddiskvolume1\SECRET\a.txt"), simple_upcase));
        assert!(!list.matches(&w(r"\Device\HarddiskVolume1\SecretNot"), simple_upcase));
        assert!(!list.matches(&w(r"\Device\HarddiskVolume1\Secre"), simple_upcase));
        assert!(!list.matches(&w(r"\Device\HarddiskVolume2\Secret\a"), simple_upcase));
    }

    #[test]
    fn unicode_folds_as_the_upcase_table_does() {
        let mut list = PrefixList::new();
        list.push(&w("\\É\\Секрет\\Σ"), simple_upcase).unwrap();
        assert!(list.matches(&w("\\é\\секрет\\σ\\x"), simple_upcase));
        assert!(list.matches(&w("\\É\\СЕКРЕТ\\Σ"), simple_upcase));
        assert!(!list.matches(&w("\\é\\секрет\\x"), simple_upcase));
        assert_eq!(simple_upcase(0xf7), 0xf7, "division sign");
        assert_eq!(simple_upcase(0xff), 0x178, "ÿ upcases outside Latin-1");
        assert_eq!(
            simple_upcase(0xdf),
            0xdf,
            "ß has no one-character uppercase"
        );
        assert_eq!(simple_upcase(0xd800), 0xd800, "a surrogate is left alone");
        // The ASCII fast path agrees with the table.
        for unit in 0..0x80u16 {
            assert_eq!(upcase(unit, &simple_upcase), simple_upcase(unit));
        }
    }

    #[test]
    fn stream_suffixes_name_the_same_file() {
        let mut list = PrefixList::new();
        list.push(&w(r"\D\Secret"), simple_upcase).unwrap();
        list.push(&w(r"\D\Open\key.txt"), simple_upcase).unwrap();
        for path in [
            r"\D\Secret::$DATA",
            r"\D\secret:ads",
            r"\D\Secret:$I30:$INDEX_ALLOCATION",
            r"\D\Secret\a.txt::$DATA",
            r"\D\Open\KEY.txt:hidden:$DATA",
        ] {
            assert!(list.matches(&w(path), simple_upcase), "{path}");
        }
        assert!(!list.matches(&w(r"\D\Open\key.txt2:x"), simple_upcase));
    }

    #[test]
    fn ancestors_and_the_prefix_itself_are_recognized() {
        let mut list = PrefixList::new();
        list.push(&w(r"\D\A\Secret"), simple_upcase).unwrap();
        for path in [
            r"\D\A\Secret",
            r"\d\a",
            r"\D\A:$I30:$INDEX_ALLOCATION",
            r"\D",
            r"\D\A\secret::$DATA",
        ] {
            assert!(list.is_ancestor_or_equal(&w(path), simple_upcase), "{path}");
        }
        for path in [r"\D\A\Secret\x", r"\D\AB", r"\D\A\Sec", r"\E", ""] {
            assert!(
                !list.is_ancestor_or_equal(&w(path), simple_upcase),
                "{path}"
            );
        }
    }

    #[test]
    fn bounded() {
        let mut list = PrefixList::new();
        assert_eq!(list.push(&[], simple_upcase), Err(PrefixError::BadLength));
        assert_eq!(
            list.push(&w("\\"), simple_upcase),
            Err(PrefixError::BadLength)
        );
        assert_eq!(
            list.push(&vec![u16::from(b'a'); MAX_PREFIX_UNITS + 1], simple_upcase),
            Err(PrefixError::BadLength)
        );
        for i in 0..MAX_PROTECTED_PREFIXES {
            list.push(&w(&format!("\\p{i}")), simple_upcase).unwrap();
        }
        assert_eq!(
            list.push(&w("\\one-more"), simple_upcase),
            Err(PrefixError::TooMany)
        );
        assert_eq!(list.len(), MAX_PROTECTED_PREFIXES);
        list.clear();
        assert!(list.is_empty());
        assert!(!list.matches(&w("\\p0"), simple_upcase));
    }
}
