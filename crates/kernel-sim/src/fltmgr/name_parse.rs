//! `FltParseFileNameInformation`: splits the `Name` of an `FLT_FILE_NAME_INFORMATION` into its
//! components, in place.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltparsefilenameinformation>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_file_name_information>):
//! IRQL <= APC_LEVEL; the structure is required (NULL is a violation, `STATUS_INVALID_PARAMETER`)
//! and must be one a name routine returned (anything else, or one already released, is a
//! violation); the routine sets `Volume`, `Share`, `Extension`, `Stream`, `FinalComponent`,
//! `ParentDir` and the four `NamesParsed` flags (each flag whether or not its component is
//! present). Every component points into `Name`'s buffer; an absent one has a zero length and
//! a NULL buffer (as `FltParseFileName`'s page says of its own outputs). The caller must not
//! modify the structure (Filter Manager shares it): a `Name` that no longer is the one Filter
//! Manager returned is reported and the parse fails with `STATUS_OBJECT_NAME_INVALID`. Its
//! page documents failure ("an appropriate NTSTATUS error code"), so the routine takes injected
//! faults (`STATUS_OBJECT_NAME_INVALID`): a driver that reads the components after a failed
//! parse reads empty strings.
//!
//! The split, as the pages' examples show it:
//! - a short name (`FLT_FILE_NAME_SHORT`) is all final component: no volume, share, stream or
//!   parent directory, only an extension;
//! - otherwise `Volume` is the volume's device name (`\Device\HarddiskVolume1`); on a network
//!   volume (`\Device\Mup`, `\Device\LanManRedirector`) `Share` is the next two components
//!   (`\server\share`); `ParentDir` runs from the backslash after those to the last backslash,
//!   included (`\dir\sub\`; `\` for a file in the root: `Volume`, `Share`, `ParentDir` and
//!   `FinalComponent` put together give back `Name`); `FinalComponent` is the rest, with its
//!   stream suffix (`file.txt:s1:$DATA`), empty for a directory named with a trailing
//!   backslash; `Stream` is the final component from its first colon on (`:s1:$DATA`);
//!   `Extension` is what follows the last dot of the final component before its stream, without
//!   the dot (`txt`), absent without a dot.
//!
//! (The page's current rendering shows `ParentDir` without its trailing backslash; the
//! previous revision of the same page, and the invariant above, include it.)

use std::ops::Range;

pub(crate) use vigil_sys::STATUS_OBJECT_NAME_INVALID;
use vigil_sys::{
    FLT_FILE_NAME_INFORMATION, FLT_FILE_NAME_SHORT, NTSTATUS, PFLT_FILE_NAME_INFORMATION,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::names::{NameShape, with_record};
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::report::ViolationKind;

/// `FLTFL_FILE_NAME_PARSED_FINAL_COMPONENT`, `_EXTENSION`, `_STREAM`, `_PARENT_DIR`.
pub(crate) const PARSED_FINAL_COMPONENT: u16 = 0x0001;
pub(crate) const PARSED_EXTENSION: u16 = 0x0002;
pub(crate) const PARSED_STREAM: u16 = 0x0004;
pub(crate) const PARSED_PARENT_DIR: u16 = 0x0008;
const PARSED_ALL: u16 =
    PARSED_FINAL_COMPONENT | PARSED_EXTENSION | PARSED_STREAM | PARSED_PARENT_DIR;

const BACKSLASH: u16 = b'\\' as u16;
const COLON: u16 = b':' as u16;
const DOT: u16 = b'.' as u16;

/// The components of a name, as ranges of its UTF-16 units (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Components {
    pub(crate) volume: Option<Range<usize>>,
    pub(crate) share: Option<Range<usize>>,
    pub(crate) extension: Option<Range<usize>>,
    pub(crate) stream: Option<Range<usize>>,
    pub(crate) final_component: Option<Range<usize>>,
    pub(crate) parent_dir: Option<Range<usize>>,
}

/// `Some(range)` unless it is empty.
fn present(range: Range<usize>) -> Option<Range<usize>> {
    (!range.is_empty()).then_some(range)
}

/// Splits `name` (UTF-16 units) of `shape` into its components; `STATUS_OBJECT_NAME_INVALID`
/// when it is not a name of that shape (shorter than its volume name, or a path that does not
/// start with a backslash after the volume and share).
pub(crate) fn split(name: &[u16], shape: NameShape) -> Result<Components, NTSTATUS> {
    let mut parts = Components::default();
    let mut path_start = 0;
    if shape.format != FLT_FILE_NAME_SHORT {
        if shape.volume_units == 0 || name.len() < shape.volume_units {
            return Err(STATUS_OBJECT_NAME_INVALID);
        }
        parts.volume = Some(0..shape.volume_units);
        path_start = shape.volume_units;
        if shape.network && path_start < name.len() {
            // `\server\share`: up to (not including) the third backslash after the volume.
            let share_end = name[path_start..]
                .iter()
                .enumerate()
                .filter(|(_, unit)| **unit == BACKSLASH)
                .nth(2)
                .map_or(name.len(), |(offset, _)| path_start + offset);
            parts.share = present(path_start..share_end);
            path_start = share_end;
        }
        if path_start < name.len() && name[path_start] != BACKSLASH {
            return Err(STATUS_OBJECT_NAME_INVALID);
        }
    }
    let path = &name[path_start..];
    let final_start = match path.iter().rposition(|unit| *unit == BACKSLASH) {
        Some(last) if shape.format != FLT_FILE_NAME_SHORT => {
            parts.parent_dir = present(path_start..path_start + last + 1);
            path_start + last + 1
        }
        _ => path_start,
    };
    let (final_component, stream, extension) =
        final_parts(name, final_start, shape.format != FLT_FILE_NAME_SHORT);
    parts.final_component = final_component;
    parts.stream = stream;
    parts.extension = extension;
    Ok(parts)
}

/// The final component starting at `final_start`, its stream (from its first colon, when
/// `with_stream`) and its extension (after the last dot before the stream).
#[expect(
    clippy::type_complexity,
    reason = "three optional ranges, named at the call sites"
)]
fn final_parts(
    name: &[u16],
    final_start: usize,
    with_stream: bool,
) -> (
    Option<Range<usize>>,
    Option<Range<usize>>,
    Option<Range<usize>>,
) {
    let final_component = &name[final_start..];
    let stream_start = if with_stream {
        final_component
            .iter()
            .position(|unit| *unit == COLON)
            .unwrap_or(final_component.len())
    } else {
        final_component.len()
    };
    let extension = final_component[..stream_start]
        .iter()
        .rposition(|unit| *unit == DOT)
        .and_then(|dot| present(final_start + dot + 1..final_start + stream_start));
    (
        present(final_start..name.len()),
        present(final_start + stream_start..name.len()),
        extension,
    )
}

/// `FltParseFileName`'s split of any string: the final component after the last backslash
/// (the whole string without one), its stream and its extension.
pub(crate) fn split_string(name: &[u16]) -> Components {
    let final_start = name
        .iter()
        .rposition(|unit| *unit == BACKSLASH)
        .map_or(0, |last| last + 1);
    let (final_component, stream, extension) = final_parts(name, final_start, true);
    Components {
        extension,
        stream,
        final_component,
        ..Components::default()
    }
}

/// A component of the name at `buffer` as a `UNICODE_STRING` (empty, NULL buffer, if absent).
fn component(buffer: *mut u16, range: Option<&Range<usize>>) -> UNICODE_STRING {
    match range {
        Some(range) => {
            let length = u16::try_from(range.len() * 2).unwrap_or(u16::MAX);
            UNICODE_STRING {
                Length: length,
                MaximumLength: length,
                // SAFETY: `range` lies within the name, which lies within `buffer`'s allocation
                // (only the address is computed here).
                Buffer: unsafe { buffer.add(range.start) },
            }
        }
        None => UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        },
    }
}

/// Why a structure cannot be parsed.
enum Refusal {
    /// Not a live structure from a name routine: the rule broken and the detail.
    NotNameInformation(String),
    /// The caller changed `Name` (Filter Manager shares the structure).
    Modified(String),
}

/// `FltParseFileNameInformation`: IRQL <= APC_LEVEL. Failable: `STATUS_OBJECT_NAME_INVALID`.
pub(crate) extern "win64" fn flt_parse_file_name_information(
    info: PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    emulate(Routine::FltParseFileNameInformation, |k| {
        if info.is_null() {
            k.parameter_violation("a FileNameInformation", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        match parse(k, info) {
            Ok(status) => status,
            Err(Refusal::NotNameInformation(detail)) => {
                k.parameter_violation(
                    "a FileNameInformation a name routine returned and not yet released",
                    detail,
                );
                STATUS_INVALID_PARAMETER
            }
            Err(Refusal::Modified(detail)) => {
                k.violation(
                    ViolationKind::Parameter,
                    "FltParseFileNameInformation: the caller must not modify FLT_FILE_NAME_INFORMATION (Filter Manager shares it)",
                    detail,
                );
                STATUS_OBJECT_NAME_INVALID
            }
        }
    })
}

/// `FltParseFileName`
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltparsefilename>):
/// IRQL <= APC_LEVEL; `FileName` required (NULL: a violation, `STATUS_INVALID_PARAMETER`), the
/// three outputs optional; each found component points into `FileName.Buffer`, an absent one
/// is NULL with a zero length (the page's words). Not fault-injected: it allocates nothing and
/// its page names no failure.
pub(crate) extern "win64" fn flt_parse_file_name(
    file_name: *const UNICODE_STRING,
    extension: *mut UNICODE_STRING,
    stream: *mut UNICODE_STRING,
    final_component: *mut UNICODE_STRING,
) -> NTSTATUS {
    emulate(Routine::FltParseFileName, |k| {
        if file_name.is_null() {
            k.parameter_violation("a FileName", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let string = guest::read(file_name);
        let length = usize::from(string.Length);
        if string.Buffer.is_null() && length > 0 || length % 2 != 0 {
            k.parameter_violation(
                "a FileName UNICODE_STRING with a buffer of its even Length",
                format!("Length {length}, Buffer {:p}", string.Buffer),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let units: Vec<u16> = guest::read_bytes(string.Buffer.cast(), length)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let parts = split_string(&units);
        for (out, range) in [
            (extension, parts.extension.as_ref()),
            (stream, parts.stream.as_ref()),
            (final_component, parts.final_component.as_ref()),
        ] {
            if !out.is_null() {
                let mut value = component(string.Buffer, range);
                if value.Buffer.is_null() {
                    // Only Buffer and Length are the routine's to set.
                    value.MaximumLength = guest::read(out).MaximumLength;
                }
                guest::write(out, value);
            }
        }
        STATUS_SUCCESS
    })
}

fn parse(k: &Kernel, info: PFLT_FILE_NAME_INFORMATION) -> Result<NTSTATUS, Refusal> {
    let (found, retired) = with_record(k, info as usize, |record| {
        record.map(|r| (r.shape, r.name().to_owned(), r.modification()))
    });
    let Some((shape, name, modification)) = found else {
        return Err(Refusal::NotNameInformation(retired.map_or_else(
            || format!("{info:p} is not name information FltMgr returned"),
            |name| format!("'{name}' ({info:p}) was already released"),
        )));
    };
    if let Some(change) = modification {
        return Err(Refusal::Modified(format!("{change} ({info:p})")));
    }
    let mut structure: FLT_FILE_NAME_INFORMATION = guest::read(info);
    let units: Vec<u16> = name.encode_utf16().collect();
    let expected_buffer = (info as usize + size_of::<FLT_FILE_NAME_INFORMATION>()) as *mut u16;
    if structure.NamesParsed & PARSED_ALL == PARSED_ALL {
        return Ok(STATUS_SUCCESS);
    }
    if k.inject_failure("FltParseFileNameInformation", "STATUS_OBJECT_NAME_INVALID") {
        return Ok(STATUS_OBJECT_NAME_INVALID);
    }
    let parts = match split(&units, shape) {
        Ok(parts) => parts,
        Err(status) => return Ok(status),
    };
    let buffer = expected_buffer;
    structure.Volume = component(buffer, parts.volume.as_ref());
    structure.Share = component(buffer, parts.share.as_ref());
    structure.Extension = component(buffer, parts.extension.as_ref());
    structure.Stream = component(buffer, parts.stream.as_ref());
    structure.FinalComponent = component(buffer, parts.final_component.as_ref());
    structure.ParentDir = component(buffer, parts.parent_dir.as_ref());
    structure.NamesParsed |= PARSED_ALL;
    guest::write(info, structure);
    Ok(STATUS_SUCCESS)
}

#[cfg(test)]
mod tests {
    use vigil_sys::{FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED};

    use super::*;

    /// The components of `name` as text, in the order volume, share, extension, stream,
    /// final component, parent directory (`None`: absent).
    type Texts = [Option<&'static str>; 6];

    fn texts(name: &str, shape: NameShape) -> Result<[Option<String>; 6], NTSTATUS> {
        let units: Vec<u16> = name.encode_utf16().collect();
        let parts = split(&units, shape)?;
        let text = |range: &Option<Range<usize>>| {
            range
                .as_ref()
                .map(|r| String::from_utf16_lossy(&units[r.clone()]))
        };
        Ok([
            text(&parts.volume),
            text(&parts.share),
            text(&parts.extension),
            text(&parts.stream),
            text(&parts.final_component),
            text(&parts.parent_dir),
        ])
    }

    fn shape(format: u32, volume: &str, network: bool) -> NameShape {
        NameShape {
            format,
            volume_units: volume.encode_utf16().count(),
            network,
        }
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one table of names and their components"
    )]
    fn names_split_into_the_documented_components() {
        let disk = r"\Device\HarddiskVolume1";
        let normalized = shape(FLT_FILE_NAME_NORMALIZED, disk, false);
        let opened = shape(FLT_FILE_NAME_OPENED, disk, false);
        let mup = shape(FLT_FILE_NAME_NORMALIZED, r"\Device\Mup", true);
        let lanman = shape(FLT_FILE_NAME_NORMALIZED, r"\Device\LanManRedirector", true);
        let short = shape(vigil_sys::FLT_FILE_NAME_SHORT, "", false);
        let table: [(&str, NameShape, Texts); 12] = [
            // The reference page's remote example.
            (
                r"\Device\LanManRedirector\MyServer\MyShare\Documents and Settings\MyUser\My Documents\Test Results.txt:stream1",
                lanman,
                [
                    Some(r"\Device\LanManRedirector"),
                    Some(r"\MyServer\MyShare"),
                    Some("txt"),
                    Some(":stream1"),
                    Some("Test Results.txt:stream1"),
                    Some(r"\Documents and Settings\MyUser\My Documents\"),
                ],
            ),
            // The page's local opened example.
            (
                r"\Device\HarddiskVolume1\Docume~1\MyUser\My Documents\TestRe~1.txt:stream1:$DATA",
                opened,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    Some("txt"),
                    Some(":stream1:$DATA"),
                    Some("TestRe~1.txt:stream1:$DATA"),
                    Some(r"\Docume~1\MyUser\My Documents\"),
                ],
            ),
            // The page's short example.
            (
                "TestRe~1.txt",
                short,
                [None, None, Some("txt"), None, Some("TestRe~1.txt"), None],
            ),
            // A local file in the root.
            (
                r"\Device\HarddiskVolume1\file.txt",
                normalized,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    Some("txt"),
                    None,
                    Some("file.txt"),
                    Some(r"\"),
                ],
            ),
            // No extension; a dot in a parent directory is not one.
            (
                r"\Device\HarddiskVolume1\dir.d\Makefile",
                normalized,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    None,
                    None,
                    Some("Makefile"),
                    Some(r"\dir.d\"),
                ],
            ),
            // The last dot counts; a dot in the stream name does not.
            (
                r"\Device\HarddiskVolume1\a.tar.gz:x.y",
                normalized,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    Some("gz"),
                    Some(":x.y"),
                    Some("a.tar.gz:x.y"),
                    Some(r"\"),
                ],
            ),
            // The default stream spelled out in an opened name.
            (
                r"\Device\HarddiskVolume1\log::$DATA",
                opened,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    None,
                    Some("::$DATA"),
                    Some("log::$DATA"),
                    Some(r"\"),
                ],
            ),
            // A directory opened with a trailing backslash: no final component.
            (
                r"\Device\HarddiskVolume1\dir\sub\",
                opened,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    None,
                    None,
                    None,
                    Some(r"\dir\sub\"),
                ],
            ),
            // The root directory.
            (
                r"\Device\HarddiskVolume1\",
                normalized,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    None,
                    None,
                    None,
                    Some(r"\"),
                ],
            ),
            // The volume itself (opened without a path).
            (
                r"\Device\HarddiskVolume1",
                opened,
                [
                    Some(r"\Device\HarddiskVolume1"),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            ),
            // A MUP name: the share follows the device name.
            (
                r"\Device\Mup\server\share\docs\report.docx",
                mup,
                [
                    Some(r"\Device\Mup"),
                    Some(r"\server\share"),
                    Some("docx"),
                    None,
                    Some("report.docx"),
                    Some(r"\docs\"),
                ],
            ),
            // The root of a share.
            (
                r"\Device\Mup\server\share",
                mup,
                [
                    Some(r"\Device\Mup"),
                    Some(r"\server\share"),
                    None,
                    None,
                    None,
                    None,
                ],
            ),
        ];
        for (name, shape, expected) in table {
            let got = texts(name, shape).unwrap_or_else(|s| panic!("{name}: {s:#x}"));
            let expected = expected.map(|e| e.map(str::to_owned));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn strings_split_into_final_component_stream_and_extension() {
        for (name, expected) in [
            (
                r"\Device\HarddiskVolume1\Documents and Settings\MyUser\My Documents\Test Results.txt:stream1",
                [
                    Some("txt"),
                    Some(":stream1"),
                    Some("Test Results.txt:stream1"),
                ],
            ),
            ("TestRe~1.txt", [Some("txt"), None, Some("TestRe~1.txt")]),
            (r"dir\Makefile", [None, None, Some("Makefile")]),
            (r"\dir\", [None, None, None]),
            ("", [None, None, None]),
        ] {
            let units: Vec<u16> = name.encode_utf16().collect();
            let parts = split_string(&units);
            let text =
                |range: Option<Range<usize>>| range.map(|r| String::from_utf16_lossy(&units[r]));
            assert_eq!(
                [
                    text(parts.extension),
                    text(parts.stream),
                    text(parts.final_component)
                ],
                expected.map(|e| e.map(str::to_owned)),
                "{name}"
            );
        }
    }

    #[test]
    fn names_that_are_not_of_their_shape_are_invalid() {
        let disk = shape(FLT_FILE_NAME_NORMALIZED, r"\Device\HarddiskVolume1", false);
        for name in [r"\Device", r"\Device\HarddiskVolume1x\file"] {
            assert_eq!(
                texts(name, disk).err(),
                Some(STATUS_OBJECT_NAME_INVALID),
                "{name}"
            );
        }
    }
}
