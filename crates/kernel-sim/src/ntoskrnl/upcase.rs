//! `RtlUpcaseUnicodeChar` and the upcase table behind it, which the synthetic file system's
//! case-insensitivity uses too: the driver's upcase and the file system's can never disagree
//! in kernel-sim, as they do not on Windows (NTFS compares names through an upcase table built
//! from the system's).
//!
//! The table is Unicode's simple uppercase mapping of each UTF-16 unit: a character whose
//! uppercase is one BMP character maps to it; characters without one (`ß`, whose full mapping
//! is two characters), surrogates and unassigned units map to themselves. It is the full
//! Unicode table (Rust's), not a Latin subset, so a driver that folds only part of it lets a
//! spelling through that the file system treats as the same name.

use crate::kernel::emulate;
use crate::ntoskrnl::exports::Routine;

/// The uppercase of one UTF-16 unit (see the module documentation).
pub(crate) fn upcase_unit(unit: u16) -> u16 {
    let Some(c) = char::from_u32(u32::from(unit)) else {
        return unit;
    };
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u16::try_from(u32::from(u)).unwrap_or(unit),
        _ => unit,
    }
}

/// `text` upcased unit by unit, as file names are compared.
///
/// Equal to upcasing each UTF-16 unit of `text`: a character outside the BMP is a surrogate
/// pair, and surrogates map to themselves. Every path the file system resolves comes through
/// here, so it works per character and never through a UTF-16 buffer.
pub(crate) fn upcase_str(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_uppercase();
    }
    text.chars()
        .map(|c| {
            u16::try_from(u32::from(c))
                .ok()
                .and_then(|unit| char::from_u32(u32::from(upcase_unit(unit))))
                .unwrap_or(c)
        })
        .collect()
}

/// `RtlUpcaseUnicodeChar`: IRQL <= APC_LEVEL (the table is paged)
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlupcaseunicodechar>).
pub(crate) extern "win64" fn rtl_upcase_unicode_char(source: u16) -> u16 {
    emulate(Routine::RtlUpcaseUnicodeChar, |_| upcase_unit(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_unicode_simple_uppercase() {
        assert_eq!(upcase_unit(u16::from(b'a')), u16::from(b'A'));
        assert_eq!(upcase_unit(0x0431), 0x0411, "Cyrillic б");
        assert_eq!(upcase_unit(0x03c3), 0x03a3, "Greek σ");
        assert_eq!(upcase_unit(0x00ff), 0x0178, "ÿ leaves Latin-1");
        assert_eq!(upcase_unit(0x00df), 0x00df, "ß has no one-unit uppercase");
        assert_eq!(upcase_unit(0xd801), 0xd801, "a surrogate");
        assert_eq!(upcase_str("секрет.txt"), "СЕКРЕТ.TXT");
        assert_eq!(
            upcase_str("a\u{10428}ß"),
            "A\u{10428}ß",
            "outside the BMP unchanged"
        );
    }

    #[test]
    fn upcasing_a_string_equals_upcasing_its_utf16_units() {
        for text in ["plain.txt", "Ünïcödé_ÿ", "mixed\u{1F600}ǆ", "ﬀ σς"] {
            let units: Vec<u16> = text.encode_utf16().map(upcase_unit).collect();
            assert_eq!(upcase_str(text), String::from_utf16_lossy(&units), "{text}");
        }
    }
}
