//! UTF-16 strings as they cross the port: borrowed, never copied or allocated.
//!
//! Runs in the kernel at any IRQL and in user mode. A [`Utf16Str`] is either a slice of code
//! units (what the driver holds, from a `UNICODE_STRING`) or a slice of little-endian bytes (what
//! a decoder finds in a message, which need not be 2-byte aligned); both compare and encode the
//! same way. Windows names are not always valid UTF-16 (unpaired surrogates are legal in NTFS
//! names), so nothing here requires validity; [`Utf16Str::chars`] decodes lossily.

use core::fmt;

use crate::error::{Error, Result};

/// A borrowed UTF-16 string: code units, or their little-endian bytes.
///
/// # Invariants
///
/// The byte form always holds an even number of bytes.
#[derive(Clone, Copy)]
pub struct Utf16Str<'a>(Form<'a>);

#[derive(Clone, Copy)]
enum Form<'a> {
    Units(&'a [u16]),
    Le(&'a [[u8; 2]]),
}

impl<'a> Utf16Str<'a> {
    /// The empty string.
    pub const EMPTY: Utf16Str<'static> = Utf16Str(Form::Units(&[]));

    /// A string over code units (for example the `Buffer` of a `UNICODE_STRING`).
    pub const fn from_units(units: &'a [u16]) -> Self {
        Self(Form::Units(units))
    }

    /// A string over little-endian bytes.
    ///
    /// # Errors
    ///
    /// [`Error::OddUtf16Length`] when `bytes` has an odd length.
    pub const fn from_le_bytes(bytes: &'a [u8]) -> Result<Self> {
        let (pairs, rest) = bytes.as_chunks::<2>();
        if rest.is_empty() {
            Ok(Self(Form::Le(pairs)))
        } else {
            Err(Error::OddUtf16Length)
        }
    }

    /// Bytes already checked to be of even length by a decoder. A trailing odd byte (impossible
    /// after the check) is dropped rather than panicking.
    pub(crate) const fn from_checked_le(bytes: &'a [u8]) -> Self {
        Self(Form::Le(bytes.as_chunks::<2>().0))
    }

    /// Number of UTF-16 code units.
    pub const fn len_units(&self) -> usize {
        match self.0 {
            Form::Units(units) => units.len(),
            Form::Le(pairs) => pairs.len(),
        }
    }

    /// Number of bytes the string takes on the wire (twice the code units).
    pub const fn len_bytes(&self) -> usize {
        // Slices of u16 never exceed isize::MAX bytes, so this cannot overflow.
        self.len_units().saturating_mul(2)
    }

    /// `true` for the empty string.
    pub const fn is_empty(&self) -> bool {
        self.len_units() == 0
    }

    /// The code units, in order.
    pub fn units(&self) -> Units<'a> {
        Units(match self.0 {
            Form::Units(units) => UnitsInner::Units(units.iter()),
            Form::Le(pairs) => UnitsInner::Le(pairs.iter()),
        })
    }

    /// The characters, with unpaired surrogates replaced by U+FFFD.
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        char::decode_utf16(self.units()).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    /// The first `max_units` code units, and whether anything was cut off.
    pub const fn truncated(self, max_units: usize) -> (Self, bool) {
        if self.len_units() <= max_units {
            return (self, false);
        }
        let form = match self.0 {
            Form::Units(units) => match units.split_at_checked(max_units) {
                Some((head, _)) => Form::Units(head),
                None => Form::Units(units),
            },
            Form::Le(pairs) => match pairs.split_at_checked(max_units) {
                Some((head, _)) => Form::Le(head),
                None => Form::Le(pairs),
            },
        };
        (Self(form), true)
    }

    /// Writes the string as little-endian bytes at the start of `out`, which the caller has
    /// sized to [`len_bytes`](Self::len_bytes); extra units are not written.
    pub(crate) fn write_le(&self, out: &mut [u8]) {
        let dst = out.as_chunks_mut::<2>().0;
        match self.0 {
            Form::Units(units) => {
                for (d, u) in dst.iter_mut().zip(units) {
                    *d = u.to_le_bytes();
                }
            }
            Form::Le(pairs) => {
                let n = pairs.len().min(dst.len());
                if let (Some(d), Some(s)) = (dst.get_mut(..n), pairs.get(..n)) {
                    d.copy_from_slice(s);
                }
            }
        }
    }
}

impl Default for Utf16Str<'_> {
    fn default() -> Self {
        Utf16Str::EMPTY
    }
}

impl PartialEq for Utf16Str<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len_units() == other.len_units() && self.units().eq(other.units())
    }
}

impl Eq for Utf16Str<'_> {}

impl fmt::Display for Utf16Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        self.chars().try_for_each(|c| f.write_char(c))
    }
}

impl fmt::Debug for Utf16Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        f.write_char('"')?;
        for c in self.chars() {
            for e in c.escape_debug() {
                f.write_char(e)?;
            }
        }
        f.write_char('"')
    }
}

/// Iterator over the code units of a [`Utf16Str`].
#[derive(Clone, Debug)]
pub struct Units<'a>(UnitsInner<'a>);

#[derive(Clone, Debug)]
enum UnitsInner<'a> {
    Units(core::slice::Iter<'a, u16>),
    Le(core::slice::Iter<'a, [u8; 2]>),
}

impl Iterator for Units<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        match &mut self.0 {
            UnitsInner::Units(it) => it.next().copied(),
            UnitsInner::Le(it) => it.next().map(|b| u16::from_le_bytes(*b)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            UnitsInner::Units(it) => it.size_hint(),
            UnitsInner::Le(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Units<'_> {}
