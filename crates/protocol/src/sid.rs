//! Security identifiers in their binary form (`SID`), as a process record carries the user's.
//!
//! Runs in the kernel at any IRQL and in user mode. The driver copies the token user's SID
//! bytes as they are; both sides check them with [`Sid::new_checked`], which accepts exactly
//! the layout Windows defines (revision 1, at most 15 sub-authorities, length to match), so
//! the service never formats bytes that are not a SID.

use core::fmt;

use crate::error::{Error, Result};

/// The only SID revision Windows defines (`SID_REVISION`).
pub const SID_REVISION: u8 = 1;

/// Most sub-authorities a SID holds (`SID_MAX_SUB_AUTHORITIES`).
pub const MAX_SID_SUB_AUTHORITIES: usize = 15;

/// Longest SID in bytes: revision, count, 6-byte authority, 15 sub-authorities of 4 bytes.
pub const MAX_SID_BYTES: usize = 8 + 4 * MAX_SID_SUB_AUTHORITIES;

/// A checked binary SID.
///
/// # Invariants
///
/// `bytes` is 8 + 4 × n bytes long, its byte 0 is [`SID_REVISION`] and its byte 1 is
/// n ≤ [`MAX_SID_SUB_AUTHORITIES`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid<'a> {
    bytes: &'a [u8],
}

impl<'a> Sid<'a> {
    /// Checks a binary SID that is exactly `bytes`.
    ///
    /// # Errors
    ///
    /// [`Error::BadSid`] for fewer than 8 bytes, a revision other than 1, more than 15
    /// sub-authorities, or a length other than 8 + 4 × the sub-authority count.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self> {
        let [revision, count, ..] = *bytes else {
            return Err(Error::BadSid);
        };
        let count = usize::from(count);
        if bytes.len() < 8 || revision != SID_REVISION || count > MAX_SID_SUB_AUTHORITIES {
            return Err(Error::BadSid);
        }
        if bytes.len() != 8 + 4 * count {
            return Err(Error::BadSid);
        }
        Ok(Self { bytes })
    }

    /// The SID's bytes, as Windows lays them out.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The identifier authority: 48 bits, big-endian on the wire (5 for `NT AUTHORITY`).
    pub fn authority(&self) -> u64 {
        self.bytes
            .get(2..8)
            .unwrap_or(&[])
            .iter()
            .fold(0, |acc, &b| (acc << 8) | u64::from(b))
    }

    /// The sub-authorities, in order (little-endian `u32`s on the wire).
    pub fn sub_authorities(&self) -> impl Iterator<Item = u32> + 'a {
        self.bytes
            .get(8..)
            .unwrap_or(&[])
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| u32::from_le_bytes(*b))
    }
}

/// The string form Windows' `ConvertSidToStringSidW` gives: `S-1-5-21-…`, the authority in
/// decimal below 2^32 and in hex (`0x…`) from there on.
impl fmt::Display for Sid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let authority = self.authority();
        write!(f, "S-{SID_REVISION}-")?;
        if authority < 1 << 32 {
            write!(f, "{authority}")?;
        } else {
            write!(f, "{authority:#014X}")?;
        }
        for sub in self.sub_authorities() {
            write!(f, "-{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}
