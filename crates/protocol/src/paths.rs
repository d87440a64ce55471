//! The two-string tail shared by event records and verdict requests: a path and a target path,
//! each an (offset, length) pair in the fixed part, stored back to back after it.
//!
//! Runs in the kernel at any IRQL and in user mode. The layout is canonical: the path starts
//! right after the fixed part, the target right after the path, and zero padding brings the
//! container to a multiple of 8 bytes. Decoders refuse anything else, so no bytes can hide in
//! gaps and whatever decodes re-encodes to the same bytes.

use crate::bytes::{align8, all_zero, put_len, range, range_mut, usize_at};
use crate::consts::{MAX_PATH_BYTES, MAX_PATH_UNITS};
use crate::error::{Error, Result};
use crate::utf16::Utf16Str;

/// Where the four fields sit (`fields_at`: path offset, path length, target offset, target
/// length, each a `u32`) and where the fixed part ends.
#[derive(Clone, Copy)]
pub(crate) struct PathLayout {
    pub fields_at: usize,
    pub fixed_len: usize,
}

/// Byte lengths of the two strings, once checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathLens {
    pub path: usize,
    pub target: usize,
}

impl PathLayout {
    /// Total container length for strings of these byte lengths.
    pub const fn container_len(self, path_bytes: usize, target_bytes: usize) -> usize {
        align8(
            self.fixed_len
                .saturating_add(path_bytes)
                .saturating_add(target_bytes),
        )
    }

    /// Checks one string's (offset, length) pair at `at` against the container `buf`, expecting
    /// it to start at `expected`. Order: bounds, parity, limit, position.
    fn check_one(buf: &[u8], at: usize, expected: usize) -> Result<usize> {
        let offset = usize_at(buf, at);
        let len = usize_at(buf, at.saturating_add(4));
        // Subtraction only: `offset <= buf.len()` makes `buf.len() - offset` exact.
        if offset > buf.len() || len > buf.len() - offset {
            return Err(Error::LengthPastEnd);
        }
        if !len.is_multiple_of(2) {
            return Err(Error::OddUtf16Length);
        }
        if len > MAX_PATH_BYTES {
            return Err(Error::PathTooLong);
        }
        if offset != expected {
            return Err(Error::BadOffset);
        }
        Ok(len)
    }

    /// Checks both strings of the container `buf` (exactly the record or message), its length
    /// and its padding. The caller has checked `buf.len() >= fixed_len`.
    pub fn check(self, buf: &[u8]) -> Result<PathLens> {
        let path = Self::check_one(buf, self.fields_at, self.fixed_len)?;
        // Both bounded by buf.len() (checked above), so these sums never saturate.
        let target_at = self.fixed_len.saturating_add(path);
        let target = Self::check_one(buf, self.fields_at.saturating_add(8), target_at)?;
        let used = target_at.saturating_add(target);
        if buf.len() != align8(used) {
            return Err(Error::BadLength);
        }
        if !all_zero(range(buf, used, buf.len())) {
            return Err(Error::NonZeroReserved);
        }
        Ok(PathLens { path, target })
    }

    /// The path of a checked container.
    pub fn path(self, buf: &[u8], lens: PathLens) -> Utf16Str<'_> {
        let end = self.fixed_len.saturating_add(lens.path);
        Utf16Str::from_checked_le(range(buf, self.fixed_len, end))
    }

    /// The target path of a checked container.
    pub fn target(self, buf: &[u8], lens: PathLens) -> Utf16Str<'_> {
        let start = self.fixed_len.saturating_add(lens.path);
        Utf16Str::from_checked_le(range(buf, start, start.saturating_add(lens.target)))
    }

    /// Writes the four fields, both strings and the padding into `out`, which is exactly
    /// `container_len` of the (already truncated) strings long and whose fixed part the caller
    /// zeroes and fills.
    pub fn emit(self, out: &mut [u8], path: Utf16Str<'_>, target: Utf16Str<'_>) {
        let (p, t) = (path.len_bytes(), target.len_bytes());
        let target_at = self.fixed_len.saturating_add(p);
        let end = target_at.saturating_add(t);
        let at = self.fields_at;
        put_len(out, at, self.fixed_len);
        put_len(out, at.saturating_add(4), p);
        put_len(out, at.saturating_add(8), target_at);
        put_len(out, at.saturating_add(12), t);
        path.write_le(range_mut(out, self.fixed_len, target_at));
        target.write_le(range_mut(out, target_at, end));
        let len = out.len();
        range_mut(out, end, len).fill(0);
    }
}

/// Cuts a path to [`MAX_PATH_UNITS`]; `true` when something was cut.
pub(crate) const fn clamp_path(path: Utf16Str<'_>) -> (Utf16Str<'_>, bool) {
    path.truncated(MAX_PATH_UNITS)
}

/// Byte length of a path of `units` code units once clamped to [`MAX_PATH_UNITS`].
pub(crate) const fn clamped_bytes(units: usize) -> usize {
    if units > MAX_PATH_UNITS {
        MAX_PATH_BYTES
    } else {
        units * 2
    }
}
