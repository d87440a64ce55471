//! Little-endian field access for the wire types, with no panic path.
//!
//! Runs in the kernel at any IRQL and in user mode. Every view checks its length once, up front;
//! these helpers still read zero (or write nothing) at an out-of-range offset instead of
//! indexing, so even a mistake in a check can give a wrong value but never a panic, which in the
//! kernel would be a bug check (rule 22).
//!
//! Offsets and lengths are combined with saturating arithmetic throughout the crate: every sum
//! is bounded by an earlier check, and saturation keeps even a build with overflow checks (the
//! driver's debug build) free of panic paths; a saturated value fails the next bounds check.

/// Reads `N` bytes at `at`, or zeros when they are not all inside `buf`.
fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..)
        .and_then(<[u8]>::first_chunk::<N>)
        .copied()
        .unwrap_or([0; N])
}

/// Writes `bytes` at `at` when they fit inside `buf`.
fn put_array<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    if let Some(dst) = buf.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<N>) {
        *dst = bytes;
    }
}

pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array_at(buf, at))
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(buf, at))
}

pub(crate) fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(array_at(buf, at))
}

pub(crate) fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array_at(buf, at))
}

pub(crate) fn bytes16_at(buf: &[u8], at: usize) -> [u8; 16] {
    array_at(buf, at)
}

/// Reads a `u32` length or offset field as `usize` (lossless on every target Vigil supports;
/// saturates elsewhere, which every bounds check then refuses).
pub(crate) fn usize_at(buf: &[u8], at: usize) -> usize {
    usize::try_from(u32_at(buf, at)).unwrap_or(usize::MAX)
}

pub(crate) fn put_u16(buf: &mut [u8], at: usize, value: u16) {
    put_array(buf, at, value.to_le_bytes());
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    put_array(buf, at, value.to_le_bytes());
}

pub(crate) fn put_i32(buf: &mut [u8], at: usize, value: i32) {
    put_array(buf, at, value.to_le_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], at: usize, value: u64) {
    put_array(buf, at, value.to_le_bytes());
}

pub(crate) fn put_bytes16(buf: &mut [u8], at: usize, value: [u8; 16]) {
    put_array(buf, at, value);
}

/// Writes a length or offset as a `u32` field. Callers only pass lengths already bounded by
/// `MAX_MESSAGE_SIZE`; anything larger would be written as `u32::MAX`, which every decoder refuses.
pub(crate) fn put_len(buf: &mut [u8], at: usize, value: usize) {
    put_u32(buf, at, u32::try_from(value).unwrap_or(u32::MAX));
}

/// The bytes `[start, end)` of `buf`, or an empty slice when out of range.
pub(crate) fn range(buf: &[u8], start: usize, end: usize) -> &[u8] {
    buf.get(start..end).unwrap_or(&[])
}

/// The bytes `[start, end)` of `buf`, or an empty slice when out of range.
pub(crate) fn range_mut(buf: &mut [u8], start: usize, end: usize) -> &mut [u8] {
    buf.get_mut(start..end).unwrap_or(&mut [])
}

/// `true` when every byte of `bytes` is zero.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// `len` rounded up to a multiple of 8. Callers pass lengths far below `usize::MAX`; the
/// saturating add keeps it panic-free regardless.
pub(crate) const fn align8(len: usize) -> usize {
    len.saturating_add(7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_little_endian() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 0), 0x0201);
        assert_eq!(u32_at(&b, 4), 0x0807_0605);
        assert_eq!(i32_at(&[0xFF; 4], 0), -1);
        assert_eq!(u64_at(&b, 0), 0x0807_0605_0403_0201);
    }

    #[test]
    fn out_of_range_reads_are_zero_not_panics() {
        let b = [0xFFu8; 6];
        assert_eq!(u32_at(&b, 3), 0);
        assert_eq!(u64_at(&b, 0), 0);
        assert_eq!(u16_at(&b, usize::MAX), 0);
        assert_eq!(bytes16_at(&b, 0), [0; 16]);
        assert_eq!(range(&b, 4, 2), &[] as &[u8]);
        assert_eq!(range(&b, 2, 7), &[] as &[u8]);
    }

    #[test]
    fn out_of_range_writes_do_nothing() {
        let mut b = [0xAAu8; 6];
        put_u32(&mut b, 3, 0);
        put_u64(&mut b, 0, 0);
        put_u16(&mut b, usize::MAX, 0);
        range_mut(&mut b, 5, 9).fill(0);
        assert_eq!(b, [0xAA; 6]);
        put_u16(&mut b, 4, 0x0102);
        assert_eq!(b, [0xAA, 0xAA, 0xAA, 0xAA, 0x02, 0x01]);
    }

    #[test]
    fn lengths_saturate_instead_of_wrapping() {
        assert_eq!(align8(0), 0);
        assert_eq!(align8(1), 8);
        assert_eq!(align8(8), 8);
        assert_eq!(align8(usize::MAX) % 8, 0);
        let mut b = [0u8; 4];
        put_len(&mut b, 0, usize::MAX);
        assert_eq!(u32_at(&b, 0), u32::MAX);
    }
}
