//! Protected path prefixes: a bounded, allocation-free list and a case-insensitive match.
//! Portable; used by the pre-operation callbacks at PASSIVE_LEVEL.
//!
//! Windows names are case-insensitive. The kernel's exact rule is the volume's upcase table;
//! this matcher folds ASCII and the Latin-1 letters, which covers the paths administrators
//! protect. A prefix matches at a component boundary only: `\Device\X\Secret` protects
//! `\Device\X\Secret` and `\Device\X\Secret\a.txt`, not `\Device\X\SecretNot`.

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
    pub fn push(&mut self, prefix: &[u16]) -> Result<(), PrefixError> {
        self.push_units(prefix.iter().copied())
    }

    /// Adds a prefix given as code units, written straight into the list (no buffer on the
    /// stack: kernel stacks are small).
    ///
    /// # Errors
    ///
    /// [`PrefixError::TooMany`] when the list is full, [`PrefixError::BadLength`] for an empty
    /// prefix (after dropping a trailing separator) or one longer than [`MAX_PREFIX_UNITS`]; the
    /// list is unchanged then.
    pub fn push_units(&mut self, prefix: impl IntoIterator<Item = u16>) -> Result<(), PrefixError> {
        let slot = self.count;
        if slot >= MAX_PROTECTED_PREFIXES {
            return Err(PrefixError::TooMany);
        }
        let mut len = 0;
        for unit in prefix {
            *self.units[slot]
                .get_mut(len)
                .ok_or(PrefixError::BadLength)? = upcase(unit);
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

    /// Whether `path` is protected by any prefix.
    pub fn matches(&self, path: &[u16]) -> bool {
        self.units
            .iter()
            .zip(&self.lens)
            .take(self.count)
            .filter_map(|(units, &len)| units.get(..usize::from(len)))
            .any(|prefix| is_prefix_at_boundary(prefix, path))
    }
}

fn is_prefix_at_boundary(upcased_prefix: &[u16], path: &[u16]) -> bool {
    let Some(head) = path.get(..upcased_prefix.len()) else {
        return false;
    };
    let same = head
        .iter()
        .zip(upcased_prefix)
        .all(|(&p, &q)| upcase(p) == q);
    same && path
        .get(upcased_prefix.len())
        .is_none_or(|&next| next == u16::from(b'\\'))
}

/// Upcases ASCII and Latin-1 letters (not U+00F7 DIVISION SIGN; U+00FF has no Latin-1 capital).
fn upcase(unit: u16) -> u16 {
    match unit {
        0x61..=0x7a | 0xe0..=0xf6 | 0xf8..=0xfe => unit - 0x20,
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
        list.push(&w(r"\Device\HarddiskVolume1\Secret\")).unwrap();
        assert!(list.matches(&w(r"\Device\HarddiskVolume1\Secret")));
        assert!(list.matches(&w(r"\device\harddiskvolume1\SECRET\a.txt")));
        assert!(!list.matches(&w(r"\Device\HarddiskVolume1\SecretNot")));
        assert!(!list.matches(&w(r"\Device\HarddiskVolume1\Secre")));
        assert!(!list.matches(&w(r"\Device\HarddiskVolume2\Secret\a")));
    }

    #[test]
    fn latin1_folds_but_division_sign_does_not() {
        let mut list = PrefixList::new();
        list.push(&w("\\É")).unwrap();
        assert!(list.matches(&w("\\é\\x")));
        assert_eq!(upcase(0xf7), 0xf7);
        assert_eq!(upcase(0xff), 0xff);
    }

    #[test]
    fn bounded() {
        let mut list = PrefixList::new();
        assert_eq!(list.push(&[]), Err(PrefixError::BadLength));
        assert_eq!(list.push(&w("\\")), Err(PrefixError::BadLength));
        assert_eq!(
            list.push(&vec![u16::from(b'a'); MAX_PREFIX_UNITS + 1]),
            Err(PrefixError::BadLength)
        );
        for i in 0..MAX_PROTECTED_PREFIXES {
            list.push(&w(&format!("\\p{i}"))).unwrap();
        }
        assert_eq!(list.push(&w("\\one-more")), Err(PrefixError::TooMany));
        assert_eq!(list.len(), MAX_PROTECTED_PREFIXES);
        list.clear();
        assert!(list.is_empty());
        assert!(!list.matches(&w("\\p0")));
    }
}
