//! Run-time library routines of the kernel that the protection rules use. IRQL as stated.

use vigil_sys::RtlUpcaseUnicodeChar;

/// The uppercase of one UTF-16 unit by the system's upcase table (`RtlUpcaseUnicodeChar`), the
/// case-insensitivity file names have. IRQL <= APC_LEVEL.
pub fn upcase_unicode_char(unit: u16) -> u16 {
    // SAFETY: a pure function of its argument; the caller keeps IRQL <= APC_LEVEL (its
    // documented limit: the table is in paged memory).
    unsafe { RtlUpcaseUnicodeChar(unit) }
}
