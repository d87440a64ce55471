//! The Rtl counted-string routines minifilters import: `RtlInitUnicodeString`,
//! `RtlCopyUnicodeString`, `RtlAppendUnicodeStringToString`, `RtlAppendUnicodeToString`,
//! `RtlCompareUnicodeString`, `RtlEqualUnicodeString`, `RtlPrefixUnicodeString`,
//! `RtlUpcaseUnicodeString`, `RtlFreeUnicodeString`, `RtlUnicodeStringToAnsiString`,
//! `RtlFreeAnsiString`. They run on driver threads, at the IRQL of each page's row.
//!
//! From the reference pages (each cited on its routine):
//! - every counted string the driver passes is well formed: an even `Length` (UTF-16 units),
//!   `Length <= MaximumLength`, and a `Buffer` whenever `Length` is non-zero; a malformed one
//!   is reported and the call does nothing (Windows would read or write past the buffer);
//! - the routines whose IRQL row says "see Remarks" (init, copy, append) may run at
//!   DISPATCH_LEVEL only over resident buffers: a paged pool buffer above APC_LEVEL is
//!   reported;
//! - the appends return `STATUS_BUFFER_TOO_SMALL` and leave the destination unchanged when the
//!   result does not fit in `MaximumLength`;
//! - `RtlUpcaseUnicodeString` and `RtlUnicodeStringToAnsiString` with
//!   `AllocateDestinationString` allocate the buffer (fault-injectable: `STATUS_NO_MEMORY`,
//!   nothing allocated), which only `RtlFreeUnicodeString` / `RtlFreeAnsiString` release;
//!   freeing any other buffer with them is reported and nothing is freed. Without allocation a
//!   destination too small gets `STATUS_BUFFER_OVERFLOW`.
//!
//! Left out: the ANSI code page is modelled as ASCII (other characters become `?`, the
//! default character of a conversion).

use std::sync::atomic::Ordering;

use vigil_sys::{
    APC_LEVEL, BOOLEAN, NTSTATUS, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest;
use crate::machine::pool::AllocRequest;
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::upcase::upcase_unit;
use crate::report::ViolationKind;

/// `STATUS_NO_MEMORY`.
const STATUS_NO_MEMORY: NTSTATUS = 0xC000_0017_u32.cast_signed();
/// The pool tag of the buffers the Rtl string routines allocate.
const RTL_STRING_TAG: u32 = u32::from_le_bytes(*b"Strg");
/// The largest `MaximumLength` a counted string can have that `RtlInitUnicodeString` gives
/// (`MAX_USTRING`, an even number below `u16::MAX`).
const MAX_USTRING: u16 = 0xfffe;

/// A counted string the driver passed, read once and checked.
pub(crate) struct Counted {
    pub header: UNICODE_STRING,
    pub units: Vec<u16>,
}

/// Reads the counted string `name` at `at` (UTF-16 when `wide`, bytes otherwise); `None`,
/// after a report, when it is NULL or malformed.
pub(crate) fn read_counted(
    k: &Kernel,
    name: &str,
    at: *const UNICODE_STRING,
    wide: bool,
) -> Option<Counted> {
    if at.is_null() {
        k.parameter_violation(&format!("a non-NULL {name}"), format!("{name} is NULL"));
        return None;
    }
    let header = guest::read(at);
    let problem = if wide && !header.Length.is_multiple_of(2) {
        Some(format!(
            "{name}.Length {} is odd (a UTF-16 string counts bytes in pairs)",
            header.Length
        ))
    } else if header.Length > header.MaximumLength {
        Some(format!(
            "{name}.Length {} exceeds its MaximumLength {}",
            header.Length, header.MaximumLength
        ))
    } else if header.Length > 0 && header.Buffer.is_null() {
        Some(format!(
            "{name}.Buffer is NULL with Length {}",
            header.Length
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        k.parameter_violation(
            &format!("a well-formed counted string {name} (even Length <= MaximumLength, a Buffer when Length > 0)"),
            problem,
        );
        return None;
    }
    let bytes = guest::read_bytes(header.Buffer.cast::<u8>(), usize::from(header.Length));
    let units = if wide {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    } else {
        bytes.into_iter().map(u16::from).collect()
    };
    Some(Counted { header, units })
}

/// A NUL-terminated UTF-16 string at `at` (`None` for NULL), at most `limit` units read.
fn read_terminated(at: *const u16, limit: usize) -> Option<Vec<u16>> {
    if at.is_null() {
        return None;
    }
    let mut units = Vec::new();
    while units.len() < limit {
        let unit = guest::read(at.wrapping_add(units.len()));
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    Some(units)
}

/// Above APC_LEVEL the buffers must be resident: each paged pool buffer is reported.
fn check_resident(k: &Kernel, routine: &str, buffers: &[(&str, usize)]) {
    if state::current_irql() <= APC_LEVEL {
        return;
    }
    for &(name, at) in buffers {
        if let Some((_, _, true)) = lock(&k.pool).live_block_at(at) {
            k.violation(
                ViolationKind::Irql,
                format!("{routine}: buffers resident (nonpaged) at IRQL >= DISPATCH_LEVEL"),
                format!("{name} {at:#x} is paged pool"),
            );
        }
    }
}

fn to_bytes(units: &[u16]) -> Vec<u8> {
    units.iter().flat_map(|u| u.to_le_bytes()).collect()
}

fn write_length(at: *mut UNICODE_STRING, length: u16) {
    let mut header = guest::read(at);
    header.Length = length;
    guest::write(at, header);
}

/// Allocates `bytes` of paged pool for `routine`'s destination string (fault-injectable).
fn allocate_string_buffer(k: &Kernel, routine: &'static str, bytes: usize) -> Option<usize> {
    if k.inject_failure(routine, "STATUS_NO_MEMORY") {
        lock(&k.pool).stats.injected_failures += 1;
        return None;
    }
    let callback = state::with(|s| s.callback.get());
    let request = AllocRequest {
        size: bytes.max(2),
        tag: RTL_STRING_TAG,
        zeroed: false,
        paged: true,
        irql: state::current_irql(),
        callback,
        during_entry: k.lifecycle.in_entry.load(Ordering::Acquire) && callback == "DriverEntry",
        align: 16,
        device_aligned: false,
    };
    let block = lock(&k.pool).allocate(&request)?;
    lock(&k.objects).rtl_buffers.insert(block, routine);
    Some(block)
}

/// Frees the buffer of the string at `at` for `routine`, which releases only what `allocators`
/// allocated; then zeroes the string.
fn free_string_buffer(k: &Kernel, routine: &str, at: *mut UNICODE_STRING, allocators: &str) {
    if at.is_null() {
        k.parameter_violation("a non-NULL string", "the string is NULL".to_owned());
        return;
    }
    let header = guest::read(at);
    if header.Buffer.is_null() {
        return;
    }
    let buffer = header.Buffer as usize;
    let allocated_by = lock(&k.objects).rtl_buffers.remove(&buffer);
    if allocated_by.is_none() {
        k.violation(
            ViolationKind::PoolBadFree,
            format!("{routine}: a buffer allocated by {allocators}"),
            format!(
                "Buffer {buffer:#x} was not allocated by an Rtl string routine: nothing is freed"
            ),
        );
        return;
    }
    crate::ntoskrnl::pool::free_block(k, routine, header.Buffer.cast(), None);
    guest::write(
        at,
        UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        },
    );
}

/// `RtlInitUnicodeString`: IRQL <= DISPATCH_LEVEL over a resident destination
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlinitunicodestring>).
/// The Buffer points at the source; lengths exclude / include the terminating NUL; NULL gives
/// an empty string; a source longer than `MAX_USTRING - 2` bytes is cut there.
pub(crate) extern "win64" fn rtl_init_unicode_string(
    destination: *mut UNICODE_STRING,
    source: *const u16,
) {
    emulate(Routine::RtlInitUnicodeString, |k| {
        if destination.is_null() {
            k.parameter_violation(
                "a non-NULL DestinationString",
                "DestinationString is NULL".to_owned(),
            );
            return;
        }
        check_resident(
            k,
            "RtlInitUnicodeString",
            &[("DestinationString", destination as usize)],
        );
        let header = match read_terminated(source, usize::from(MAX_USTRING)) {
            None => UNICODE_STRING {
                Length: 0,
                MaximumLength: 0,
                Buffer: std::ptr::null_mut(),
            },
            Some(units) => {
                let bytes = u16::try_from(units.len() * 2).unwrap_or(MAX_USTRING);
                let length = bytes.min(MAX_USTRING - 2);
                UNICODE_STRING {
                    Length: length,
                    MaximumLength: length + 2,
                    Buffer: source.cast_mut(),
                }
            }
        };
        guest::write(destination, header);
    });
}

/// `RtlCopyUnicodeString`: IRQL <= DISPATCH_LEVEL over resident strings (<= APC_LEVEL when
/// paged) (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlcopyunicodestring>).
/// Copies `min(Source.Length, Destination.MaximumLength)` bytes; a NULL source empties the
/// destination.
pub(crate) extern "win64" fn rtl_copy_unicode_string(
    destination: *mut UNICODE_STRING,
    source: *const UNICODE_STRING,
) {
    emulate(Routine::RtlCopyUnicodeString, |k| {
        let Some(dest) = read_counted(k, "DestinationString", destination, true) else {
            return;
        };
        if source.is_null() {
            write_length(destination, 0);
            return;
        }
        let Some(src) = read_counted(k, "SourceString", source, true) else {
            return;
        };
        check_resident(
            k,
            "RtlCopyUnicodeString",
            &[
                ("DestinationString.Buffer", dest.header.Buffer as usize),
                ("SourceString.Buffer", src.header.Buffer as usize),
            ],
        );
        let count = src.header.Length.min(dest.header.MaximumLength & !1);
        if count > 0 && dest.header.Buffer.is_null() {
            k.parameter_violation(
                "a DestinationString with a Buffer",
                "DestinationString.Buffer is NULL".to_owned(),
            );
            return;
        }
        guest::write_bytes(
            dest.header.Buffer.cast(),
            &to_bytes(&src.units[..usize::from(count / 2)]),
        );
        write_length(destination, count);
    });
}

/// Appends `units` to the destination string at `destination` (the two appends).
fn append(
    k: &Kernel,
    routine: &str,
    destination: *mut UNICODE_STRING,
    units: &[u16],
    source_buffer: usize,
) -> NTSTATUS {
    let Some(dest) = read_counted(k, "Destination", destination, true) else {
        return STATUS_INVALID_PARAMETER;
    };
    check_resident(
        k,
        routine,
        &[
            ("Destination.Buffer", dest.header.Buffer as usize),
            ("Source", source_buffer),
        ],
    );
    let added = units.len() * 2;
    let total = usize::from(dest.header.Length) + added;
    if total > usize::from(dest.header.MaximumLength) {
        return STATUS_BUFFER_TOO_SMALL;
    }
    if added == 0 {
        return STATUS_SUCCESS;
    }
    let end = dest
        .header
        .Buffer
        .cast::<u8>()
        .wrapping_add(usize::from(dest.header.Length));
    guest::write_bytes(end, &to_bytes(units));
    write_length(
        destination,
        u16::try_from(total).unwrap_or(dest.header.MaximumLength),
    );
    STATUS_SUCCESS
}

/// `RtlAppendUnicodeStringToString`: IRQL <= DISPATCH_LEVEL over resident buffers
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlappendunicodestringtostring>).
pub(crate) extern "win64" fn rtl_append_unicode_string_to_string(
    destination: *mut UNICODE_STRING,
    source: *const UNICODE_STRING,
) -> NTSTATUS {
    emulate(Routine::RtlAppendUnicodeStringToString, |k| {
        let Some(src) = read_counted(k, "Source", source, true) else {
            return STATUS_INVALID_PARAMETER;
        };
        append(
            k,
            "RtlAppendUnicodeStringToString",
            destination,
            &src.units,
            src.header.Buffer as usize,
        )
    })
}

/// `RtlAppendUnicodeToString`: IRQL <= DISPATCH_LEVEL over a resident destination; `Source`
/// is an optional NUL-terminated string
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlappendunicodetostring>).
pub(crate) extern "win64" fn rtl_append_unicode_to_string(
    destination: *mut UNICODE_STRING,
    source: *const u16,
) -> NTSTATUS {
    emulate(Routine::RtlAppendUnicodeToString, |k| {
        let units = read_terminated(source, usize::from(u16::MAX)).unwrap_or_default();
        append(
            k,
            "RtlAppendUnicodeToString",
            destination,
            &units,
            source as usize,
        )
    })
}

/// The order of two unit strings as `RtlCompareUnicodeString` gives it: the first differing
/// unit (upcased when `case_insensitive`), else the length.
pub(crate) fn compare_units(a: &[u16], b: &[u16], case_insensitive: bool) -> i32 {
    let fold = |u: u16| if case_insensitive { upcase_unit(u) } else { u };
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(fold(x)) - i32::from(fold(y)))
        .find(|&d| d != 0)
        .unwrap_or_else(|| {
            i32::try_from(a.len()).unwrap_or(i32::MAX) - i32::try_from(b.len()).unwrap_or(i32::MAX)
        })
}

/// `RtlCompareUnicodeString`: PASSIVE_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlcompareunicodestring>).
pub(crate) extern "win64" fn rtl_compare_unicode_string(
    a: *const UNICODE_STRING,
    b: *const UNICODE_STRING,
    case_insensitive: BOOLEAN,
) -> i32 {
    emulate(Routine::RtlCompareUnicodeString, |k| {
        match (
            read_counted(k, "String1", a, true),
            read_counted(k, "String2", b, true),
        ) {
            (Some(a), Some(b)) => compare_units(&a.units, &b.units, case_insensitive != 0),
            _ => 0,
        }
    })
}

/// `RtlEqualUnicodeString`: PASSIVE_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlequalunicodestring>).
pub(crate) extern "win64" fn rtl_equal_unicode_string(
    a: *const UNICODE_STRING,
    b: *const UNICODE_STRING,
    case_insensitive: BOOLEAN,
) -> BOOLEAN {
    emulate(Routine::RtlEqualUnicodeString, |k| {
        match (
            read_counted(k, "String1", a, true),
            read_counted(k, "String2", b, true),
        ) {
            (Some(a), Some(b)) => BOOLEAN::from(
                a.units.len() == b.units.len()
                    && compare_units(&a.units, &b.units, case_insensitive != 0) == 0,
            ),
            _ => 0,
        }
    })
}

/// `RtlPrefixUnicodeString`: PASSIVE_LEVEL; TRUE when `String1` is a prefix of `String2`
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-rtlprefixunicodestring>).
pub(crate) extern "win64" fn rtl_prefix_unicode_string(
    prefix: *const UNICODE_STRING,
    string: *const UNICODE_STRING,
    case_insensitive: BOOLEAN,
) -> BOOLEAN {
    emulate(Routine::RtlPrefixUnicodeString, |k| {
        match (
            read_counted(k, "String1", prefix, true),
            read_counted(k, "String2", string, true),
        ) {
            (Some(p), Some(s)) => BOOLEAN::from(
                p.units.len() <= s.units.len()
                    && compare_units(&p.units, &s.units[..p.units.len()], case_insensitive != 0)
                        == 0,
            ),
            _ => 0,
        }
    })
}

/// `RtlUpcaseUnicodeString`: IRQL <= APC_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-rtlupcaseunicodestring>).
/// With `AllocateDestinationString` the buffer (`MaximumLength` = the source's `Length`) must be
/// released with `RtlFreeUnicodeString`; on failure nothing is allocated or converted.
pub(crate) extern "win64" fn rtl_upcase_unicode_string(
    destination: *mut UNICODE_STRING,
    source: *const UNICODE_STRING,
    allocate: BOOLEAN,
) -> NTSTATUS {
    emulate(Routine::RtlUpcaseUnicodeString, |k| {
        let Some(src) = read_counted(k, "SourceString", source, true) else {
            return STATUS_INVALID_PARAMETER;
        };
        if destination.is_null() {
            k.parameter_violation(
                "a non-NULL DestinationString",
                "DestinationString is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let upper: Vec<u16> = src.units.iter().map(|&u| upcase_unit(u)).collect();
        let length = src.header.Length;
        let buffer = if allocate != 0 {
            let Some(block) =
                allocate_string_buffer(k, "RtlUpcaseUnicodeString", usize::from(length))
            else {
                return STATUS_NO_MEMORY;
            };
            guest::write(
                destination,
                UNICODE_STRING {
                    Length: 0,
                    MaximumLength: length,
                    Buffer: block as *mut u16,
                },
            );
            block as *mut u16
        } else {
            let Some(dest) = read_counted(k, "DestinationString", destination, true) else {
                return STATUS_INVALID_PARAMETER;
            };
            if length > dest.header.MaximumLength {
                return STATUS_BUFFER_OVERFLOW;
            }
            dest.header.Buffer
        };
        guest::write_bytes(buffer.cast(), &to_bytes(&upper));
        write_length(destination, length);
        STATUS_SUCCESS
    })
}

/// `RtlFreeUnicodeString`: IRQL <= APC_LEVEL; releases only a buffer that
/// `RtlUpcaseUnicodeString` (or `RtlAnsiStringToUnicodeString`) allocated, then zeroes the string
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlfreeunicodestring>).
pub(crate) extern "win64" fn rtl_free_unicode_string(string: *mut UNICODE_STRING) {
    emulate(Routine::RtlFreeUnicodeString, |k| {
        free_string_buffer(
            k,
            "RtlFreeUnicodeString",
            string,
            "RtlUpcaseUnicodeString or RtlAnsiStringToUnicodeString (allocating)",
        );
    });
}

/// `RtlUnicodeStringToAnsiString`: PASSIVE_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlunicodestringtoansistring>).
/// `ANSI_STRING` has `UNICODE_STRING`'s layout (two `USHORT`s and a pointer), so it is read and
/// written as one. With `AllocateDestinationString` the buffer holds the string and a NUL and
/// is released with `RtlFreeAnsiString`; otherwise a destination too small gets what fits and
/// `STATUS_BUFFER_OVERFLOW`.
pub(crate) extern "win64" fn rtl_unicode_string_to_ansi_string(
    destination: *mut UNICODE_STRING,
    source: *const UNICODE_STRING,
    allocate: BOOLEAN,
) -> NTSTATUS {
    emulate(Routine::RtlUnicodeStringToAnsiString, |k| {
        let Some(src) = read_counted(k, "SourceString", source, true) else {
            return STATUS_INVALID_PARAMETER;
        };
        if destination.is_null() {
            k.parameter_violation(
                "a non-NULL DestinationString",
                "DestinationString is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let mut bytes: Vec<u8> = src
            .units
            .iter()
            .map(|&u| u8::try_from(u).ok().filter(u8::is_ascii).unwrap_or(b'?'))
            .collect();
        let Ok(length) = u16::try_from(bytes.len()) else {
            return STATUS_INVALID_PARAMETER;
        };
        let (buffer, status) = if allocate != 0 {
            let maximum = length.saturating_add(1);
            let Some(block) =
                allocate_string_buffer(k, "RtlUnicodeStringToAnsiString", usize::from(maximum))
            else {
                return STATUS_NO_MEMORY;
            };
            guest::write(
                destination,
                UNICODE_STRING {
                    Length: 0,
                    MaximumLength: maximum,
                    Buffer: block as *mut u16,
                },
            );
            (block as *mut u8, STATUS_SUCCESS)
        } else {
            let Some(dest) = read_counted(k, "DestinationString", destination, false) else {
                return STATUS_INVALID_PARAMETER;
            };
            if dest.header.MaximumLength == 0 {
                return STATUS_BUFFER_OVERFLOW;
            }
            let room = usize::from(dest.header.MaximumLength - 1);
            let status = if bytes.len() > room {
                bytes.truncate(room);
                STATUS_BUFFER_OVERFLOW
            } else {
                STATUS_SUCCESS
            };
            (dest.header.Buffer.cast::<u8>(), status)
        };
        let written = u16::try_from(bytes.len()).unwrap_or(length);
        bytes.push(0);
        guest::write_bytes(buffer, &bytes);
        write_length(destination, written);
        status
    })
}

/// `RtlFreeAnsiString`: PASSIVE_LEVEL; releases only a buffer that
/// `RtlUnicodeStringToAnsiString` allocated
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-rtlfreeansistring>).
pub(crate) extern "win64" fn rtl_free_ansi_string(string: *mut UNICODE_STRING) {
    emulate(Routine::RtlFreeAnsiString, |k| {
        free_string_buffer(
            k,
            "RtlFreeAnsiString",
            string,
            "RtlUnicodeStringToAnsiString (allocating)",
        );
    });
}

#[cfg(test)]
mod tests {
    use super::compare_units;

    fn units(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    #[test]
    fn comparison_orders_by_first_difference_then_length() {
        assert_eq!(compare_units(&units("abc"), &units("abc"), false), 0);
        assert!(compare_units(&units("abc"), &units("abd"), false) < 0);
        assert!(compare_units(&units("abc"), &units("ab"), false) > 0);
        assert!(compare_units(&units("ABC"), &units("abc"), false) < 0);
        assert_eq!(compare_units(&units("ABC"), &units("abc"), true), 0);
        assert_eq!(compare_units(&units("секрет"), &units("СЕКРЕТ"), true), 0);
    }
}
