//! File name information: `FltGetFileNameInformation`, `FltGetDestinationFileNameInformation`,
//! `FltReleaseFileNameInformation`.
//!
//! Each successful query returns a new `FLT_FILE_NAME_INFORMATION` with one reference, in
//! memory kernel-sim owns: `Size`, `Format` and `Name` (the volume's device name followed by the
//! volume-relative path) are filled in, and every component (`Volume`, `Share`, `Extension`,
//! `Stream`, `FinalComponent`, `ParentDir`) is left empty (zero length, NULL buffer) with
//! `NamesParsed` 0 until the driver calls `FltParseFileNameInformation` (`name_parse.rs`): the
//! reference pages define them as parsed from `Name` by that routine, so a driver that reads
//! them without parsing reads nothing (and faults on the NULL buffer).
//! The normalized name is the file's canonical name (case as created, long names for short
//! ones, following renames, with the stream suffix as spelled); the opened name is the path as
//! the caller spelled it at create (for a relative open, the related directory's name joined
//! with the relative one; for an open by file ID, the volume followed by the ID's bytes, and in
//! pre-create such an open has no normalized name: the query fails with
//! `STATUS_OBJECT_PATH_NOT_FOUND` until the file is open).
//!
//! Checks: the routines' IRQL (<= APC_LEVEL; the destination query PASSIVE_LEVEL), their
//! parameters, a release of a structure with no reference left (a double release, reported
//! with the name), and references still held when the filter unregisters (a leak, reported
//! with the name). Released structures are poisoned and their memory kept for a while, so a
//! use after release reads garbage and a stale release is recognized.
//!
//! Filter Manager's name cache: a name queried successfully (in a given format) is cached for
//! its file object until the file object closes or a rename or link changes names. A query
//! with `FLT_FILE_NAME_QUERY_CACHE_ONLY`, and any query while all APCs are disabled (IRQL
//! `APC_LEVEL`: `KeAreAllApcsDisabled` is TRUE), is answered from the cache only: a miss is
//! `STATUS_FLT_NAME_CACHE_MISS` for the former and `STATUS_FLT_INVALID_NAME_REQUEST` for the
//! latter (`FltGetFileNameInformation`, Remarks:
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilenameinformation>).
//! `FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY` neither reads nor fills the cache, a query with
//! `FLT_FILE_NAME_DO_NOT_CACHE` does not fill it, and a miss with
//! `FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP` while all APCs are disabled is
//! `STATUS_FLT_NAME_CACHE_MISS` (the page's return table).
//! A rename or link empties the whole cache (Filter Manager purges the names it affects; the
//! emulation does not track which those are, so it purges more, never less).
//!
//! Simplifications: a
//! destination name starting with `\` is volume-relative and any other is relative to the
//! file's directory (the real FltMgr also resolves `\??\` paths and `RootDirectory` handles:
//! a non-NULL `RootDirectory` is reported as not emulated).

// Fx hashing: looked up on every name query and release; keys are addresses.

use vigil_sys::{
    APC_LEVEL, FILE_OBJECT, FLT_CALLBACK_DATA, FLT_FILE_NAME_INFORMATION, FLT_FILE_NAME_NORMALIZED,
    FLT_FILE_NAME_OPENED, FLT_FILE_NAME_OPTIONS, FLT_FILE_NAME_SHORT, FLT_IO_PARAMETER_BLOCK,
    HANDLE, IRP_MJ_CREATE, IRP_PAGING_IO, NTSTATUS, PFLT_FILE_NAME_INFORMATION, PFLT_INSTANCE,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
    UNICODE_STRING,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::files::{Count, Retired};
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::check::reject;
use crate::kernel::sharded::{Sharded, ShardedMap, shard_count};
use crate::kernel::{Kernel, emulate};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;

pub(crate) use vigil_sys::{STATUS_FLT_INVALID_NAME_REQUEST, STATUS_FLT_NAME_CACHE_MISS};
/// `FLT_FILE_NAME_QUERY_CACHE_ONLY`.
const QUERY_CACHE_ONLY: u32 = 0x0200;
/// `FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP`.
const QUERY_ALWAYS_ALLOW_CACHE_LOOKUP: u32 = 0x0400;
/// `FLT_FILE_NAME_DO_NOT_CACHE` (`FLT_FILE_NAME_OPTIONS` page).
const DO_NOT_CACHE: u32 = 0x0200_0000;
/// `FLT_FILE_NAME_REQUEST_FROM_CURRENT_PROVIDER`.
const REQUEST_FROM_CURRENT_PROVIDER: u32 = 0x0100_0000;
/// `FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY`.
const QUERY_FILESYSTEM_ONLY: u32 = 0x0300;
/// The query-method bits of `FLT_FILE_NAME_OPTIONS` (`DEFAULT`, `CACHE_ONLY`,
/// `FILESYSTEM_ONLY`, `ALWAYS_ALLOW_CACHE_LOOKUP`: exactly one).
const QUERY_METHODS: [u32; 4] = [0x0100, 0x0200, 0x0300, 0x0400];
/// Byte written over a released structure.
const RELEASED_FILL: u8 = 0xDB;
/// How many released structures stay recognizable.
const RETIRED_NAMES: usize = 4096;

/// A referenced name structure.
pub(crate) struct NameRecord {
    memory: GuestAlloc,
    len: usize,
    name: String,
    /// The shape `FltParseFileNameInformation` needs: the format, the device-name prefix in
    /// UTF-16 units, and whether the volume is a network one (a share follows the prefix).
    pub(crate) shape: NameShape,
    references: i64,
    acquired_by: &'static str,
}

/// What Filter Manager knows about a name beyond its text: its format, the length of its
/// volume's device name (UTF-16 units) and whether that volume is a network redirector's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NameShape {
    pub(crate) format: u32,
    pub(crate) volume_units: usize,
    pub(crate) network: bool,
}

impl NameRecord {
    /// How the driver changed the structure's `Name` or `Format`, if it did (its pages say
    /// users must not modify it).
    pub(crate) fn modification(&self) -> Option<String> {
        let structure: FLT_FILE_NAME_INFORMATION = guest::read(self.memory.as_ptr());
        let units: Vec<u16> = self.name.encode_utf16().collect();
        let buffer = self.memory.address() + size_of::<FLT_FILE_NAME_INFORMATION>();
        let length = u16::try_from(units.len() * 2).unwrap_or(u16::MAX);
        if structure.Name.Buffer as usize != buffer
            || structure.Name.Length != length
            || structure.Format != self.shape.format
        {
            return Some(format!(
                "'{}': Name or Format is no longer as returned (Name.Length {} for {length})",
                self.name, structure.Name.Length
            ));
        }
        let current: Vec<u16> = guest::read_bytes(buffer as *const u8, units.len() * 2)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        (current != units).then(|| {
            format!(
                "'{}': its characters were overwritten with '{}'",
                self.name,
                String::from_utf16_lossy(&current)
            )
        })
    }

    /// The name Filter Manager put in the structure.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Runs `f` over the live name structure at `address` (`None`: not one FltMgr handed out and
/// still referenced), and, when it is not live, the name of a released one there.
pub(crate) fn with_record<R>(
    k: &Kernel,
    address: usize,
    f: impl FnOnce(Option<&mut NameRecord>) -> R,
) -> (R, Option<String>) {
    let flt = flt_read(k);
    let names = &flt.io.names;
    let mut live = false;
    let result = names.live.with(address, |record| {
        live = record.is_some();
        f(record)
    });
    let retired = (!live)
        .then(|| {
            names
                .retired
                .find_map(|retired| retired.get(address).map(|(name, _)| name.clone()))
        })
        .flatten();
    (result, retired)
}

/// Every name structure of a run: the live ones sharded by address, the released ones by the
/// thread that released them (every name query and release of every I/O thread comes here).
pub(crate) struct NameTable {
    live: ShardedMap<NameRecord>,
    /// Released structures: their name, and their memory (kept, poisoned).
    retired: Sharded<Retired<(String, GuestAlloc)>>,
}

impl Default for NameTable {
    fn default() -> Self {
        Self {
            live: ShardedMap::default(),
            retired: Sharded::new(|| Retired::new(RETIRED_NAMES / shard_count())),
        }
    }
}

/// The bit of a name format (`FLT_FILE_NAME_NORMALIZED`, `_OPENED`, `_SHORT`: 1 to 3) in the
/// name cache's per-file mask.
fn format_bit(format: u32) -> u32 {
    1 << (format & 0x1F)
}

/// Builds a referenced structure for `name` in `format` and records it.
fn hand_out(
    k: &Kernel,
    name: String,
    device_len: usize,
    format: u32,
    network: bool,
) -> PFLT_FILE_NAME_INFORMATION {
    let header = size_of::<FLT_FILE_NAME_INFORMATION>();
    // Most names are ASCII: one unit per byte, no decoding (this runs on every name query).
    let ascii = name.is_ascii();
    let units = if ascii {
        name.len()
    } else {
        name.encode_utf16().count()
    };
    let len = header + (units + 1) * 2;
    let memory = GuestAlloc::zeroed(len);
    let buffer = (memory.address() + header) as *mut u16;
    let write_unit = |index: usize, unit: u16| {
        // SAFETY: `index < units`, and the buffer holds `units + 1` units after the header.
        guest::write(unsafe { buffer.add(index) }, unit);
    };
    if ascii {
        name.bytes()
            .enumerate()
            .for_each(|(i, b)| write_unit(i, u16::from(b)));
    } else {
        name.encode_utf16()
            .enumerate()
            .for_each(|(i, u)| write_unit(i, u));
    }
    let length = u16::try_from(units * 2).unwrap_or(u16::MAX);
    let device_units = name[..device_len].encode_utf16().count();
    let empty = UNICODE_STRING {
        Length: 0,
        MaximumLength: 0,
        Buffer: std::ptr::null_mut(),
    };
    guest::write(
        memory.as_ptr::<FLT_FILE_NAME_INFORMATION>(),
        FLT_FILE_NAME_INFORMATION {
            Size: u16::try_from(header).unwrap_or(u16::MAX),
            NamesParsed: 0,
            Format: format,
            Name: UNICODE_STRING {
                Length: length,
                MaximumLength: length.saturating_add(2),
                Buffer: buffer,
            },
            // Parsed only by FltParseFileNameInformation (module comment).
            Volume: empty,
            Share: empty,
            Extension: empty,
            Stream: empty,
            FinalComponent: empty,
            ParentDir: empty,
        },
    );
    let address = memory.address();
    let acquired_by = state::with(|s| s.callback.get());
    let flt = flt_read(k);
    flt.io.stats.add(Count::NamesAcquired, 1);
    flt.io.names.live.insert(
        address,
        NameRecord {
            memory,
            len,
            name,
            shape: NameShape {
                format,
                volume_units: device_units,
                network,
            },
            references: 1,
            acquired_by,
        },
    );
    address as PFLT_FILE_NAME_INFORMATION
}

/// The name format in `options`, or a violation.
pub(crate) fn check_options(
    k: &Kernel,
    routine: &str,
    options: u32,
    short_allowed: bool,
) -> Result<u32, NTSTATUS> {
    let format = options & 0xFF;
    let valid_format = format == FLT_FILE_NAME_NORMALIZED
        || format == FLT_FILE_NAME_OPENED
        || (short_allowed && format == FLT_FILE_NAME_SHORT);
    if !valid_format {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: one name format flag"),
            format!("NameOptions {options:#x}"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    if !QUERY_METHODS.contains(&(options & 0xF00)) {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: one query method flag"),
            format!("NameOptions {options:#x}"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(format)
}

/// The common failures of a query: cache-only, the normalized-name knob, fault injection.
fn query_failure(k: &Kernel, routine: &str, options: u32, format: u32) -> Option<NTSTATUS> {
    if options & 0xF00 == QUERY_CACHE_ONLY {
        return Some(STATUS_FLT_NAME_CACHE_MISS);
    }
    if format == FLT_FILE_NAME_NORMALIZED && k.config.io.fail_normalized_names {
        return Some(status::OBJECT_PATH_NOT_FOUND);
    }
    if k.inject_failure(routine, "STATUS_INSUFFICIENT_RESOURCES") {
        return Some(STATUS_INSUFFICIENT_RESOURCES);
    }
    None
}

/// Empties Filter Manager's name cache for `file` (closed), or all of it (`None`: a rename or
/// link changed names).
pub(crate) fn purge_name_cache(k: &Kernel, file: Option<usize>) {
    if let Some(file) = file {
        let flt = flt_read(k);
        flt.io.name_cache.remove(file);
        flt.io.providers.purge_file(file);
    } else {
        let mut flt = flt_write(k);
        flt.io.name_cache.drain();
        flt.io.providers.purge_all();
    }
}

/// `FltGetFileNameInformation`: IRQL <= APC_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_get_file_name_information(
    data: *mut FLT_CALLBACK_DATA,
    options: FLT_FILE_NAME_OPTIONS,
    out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    emulate(Routine::FltGetFileNameInformation, |k| {
        if data.is_null() || out.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "FltGetFileNameInformation: CallbackData and FileNameInformation are required",
                "a NULL pointer".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        guest::write(out, std::ptr::null_mut());
        if state::current_irql() > APC_LEVEL {
            // Reported by the IRQL check; the real routine may bug-check touching paged pool.
            return STATUS_FLT_INVALID_NAME_REQUEST;
        }
        let format = match check_options(k, "FltGetFileNameInformation", options, true) {
            Ok(format) => format,
            Err(status) => return status,
        };
        if !flt_read(k).io.in_flight.contains(data as usize) {
            if crate::fltmgr::draining::misuse_of_drained_copy(
                k,
                "FltGetFileNameInformation",
                data as usize,
            ) {
                return STATUS_INVALID_PARAMETER;
            }
            k.violation(
                ViolationKind::Parameter,
                "FltGetFileNameInformation: the callback data of an operation in progress",
                format!("{data:p} is not the callback data of an operation in progress"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let iopb = guest::read(guest::read(data).Iopb);
        let major = iopb.MajorFunction;
        if format == FLT_FILE_NAME_SHORT {
            return if major == IRP_MJ_CREATE {
                STATUS_FLT_INVALID_NAME_REQUEST
            } else {
                STATUS_NOT_SUPPORTED
            };
        }
        if iopb.IrpFlags & IRP_PAGING_IO != 0 {
            return STATUS_FLT_INVALID_NAME_REQUEST;
        }
        query(
            k,
            "FltGetFileNameInformation",
            iopb_file(&iopb),
            options,
            format,
            out,
        )
    })
}

/// The part of a name query after the routine's own checks: the name cache, the cache-only
/// and APC rules, fault injection, the name itself. Writes `out` on success.
pub(crate) fn query(
    k: &Kernel,
    routine: &str,
    file: usize,
    options: u32,
    format: u32,
    out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    if options & REQUEST_FROM_CURRENT_PROVIDER != 0 {
        // Redirecting a provider's query to itself is not emulated: said, never silently
        // answered from below.
        k.violation(
            ViolationKind::NotEmulated,
            routine.to_owned(),
            "FLT_FILE_NAME_REQUEST_FROM_CURRENT_PROVIDER: the query is answered from below the caller".to_owned(),
        );
    }
    // FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY neither reads nor fills the cache.
    let filesystem_only = options & 0xF00 == QUERY_FILESYSTEM_ONLY;
    let cached = !filesystem_only
        && flt_read(k).io.name_cache.with(file, |formats| {
            formats.is_some_and(|f| *f & format_bit(format) != 0)
        });
    if crate::kernel::apc::all_apcs_disabled() && !cached {
        // With all APCs disabled only the cache can answer (Remarks, cited above). A miss with
        // FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP, which may not query the file system
        // now, is the page's STATUS_FLT_NAME_CACHE_MISS.
        return if options & 0xF00 == QUERY_ALWAYS_ALLOW_CACHE_LOOKUP {
            STATUS_FLT_NAME_CACHE_MISS
        } else {
            STATUS_FLT_INVALID_NAME_REQUEST
        };
    }
    if !(cached && options & 0xF00 == QUERY_CACHE_ONLY)
        && let Some(status) = query_failure(k, routine, options, format)
    {
        return status;
    }
    match name_of(k, file, format) {
        Ok(resolved) => {
            // FLT_FILE_NAME_DO_NOT_CACHE: a provider's intermediate query, not cached.
            if !filesystem_only && options & DO_NOT_CACHE == 0 {
                let flt = flt_read(k);
                let cached = flt.io.name_cache.with(file, |formats| {
                    formats.map(|f| *f |= format_bit(format)).is_some()
                });
                if !cached {
                    flt.io.name_cache.insert(file, format_bit(format));
                }
            }
            guest::write(
                out,
                hand_out(
                    k,
                    resolved.name,
                    resolved.device_len,
                    format,
                    resolved.network,
                ),
            );
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

fn iopb_file(iopb: &FLT_IO_PARAMETER_BLOCK) -> usize {
    iopb.TargetFileObject as usize
}

/// A file's full name, the length of its device-name prefix (bytes of `name`) and whether
/// its volume is a network redirector's.
struct Resolved {
    name: String,
    device_len: usize,
    network: bool,
}

/// Whether names on a volume of `kind` carry a share after the device name.
fn is_network(kind: crate::config::VolumeKind) -> bool {
    kind.device_type() == vigil_sys::FILE_DEVICE_NETWORK_FILE_SYSTEM
}

/// The file system's name of `file` in `format` (what a query from the loaded filter gets),
/// with the shape `FltParseFileNameInformation` needs.
pub(crate) fn fs_name(
    k: &Kernel,
    file: usize,
    format: u32,
) -> Result<(String, NameShape), NTSTATUS> {
    let resolved = name_of(k, file, format)?;
    let shape = NameShape {
        format,
        volume_units: resolved.name[..resolved.device_len].encode_utf16().count(),
        network: resolved.network,
    };
    Ok((resolved.name, shape))
}

/// The full name of `file` in `format`.
fn name_of(k: &Kernel, file: usize, format: u32) -> Result<Resolved, NTSTATUS> {
    let flt = flt_read(k);
    let (volume, fs_handle, by_id, opened_path) = flt
        .io
        .files
        .with(file, |record| {
            record.map(|r| {
                let opened = (format != FLT_FILE_NAME_NORMALIZED || r.fs_handle.is_none())
                    .then(|| r.opened_path.clone());
                (r.volume, r.fs_handle, r.by_id, opened)
            })
        })
        .ok_or(STATUS_INVALID_PARAMETER)?;
    let volume = flt
        .io
        .volumes
        .get(volume.0)
        .ok_or(status::VOLUME_DISMOUNTED)?;
    let path = if format == FLT_FILE_NAME_NORMALIZED {
        let files = volume.files();
        match fs_handle.and_then(|h| files.name_of(h)) {
            Some(name) => name,
            // An open by file ID has no path before the file is open.
            None if by_id => return Err(status::OBJECT_PATH_NOT_FOUND),
            None => files.normalize(opened_path.as_deref().unwrap_or_default())?,
        }
    } else {
        opened_path.unwrap_or_default()
    };
    Ok(Resolved {
        name: format!("{}{path}", volume.device_name),
        device_len: volume.device_name.len(),
        network: is_network(volume.kind),
    })
}

/// `FltGetDestinationFileNameInformation`: PASSIVE_LEVEL. Failable:
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_get_destination_file_name_information(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    root: HANDLE,
    name: *mut u16,
    name_length: u32,
    options: FLT_FILE_NAME_OPTIONS,
    out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    emulate(Routine::FltGetDestinationFileNameInformation, |k| {
        let rule = "valid Instance, FileObject, FileName and RetFileNameInformation";
        if out.is_null() || file.is_null() || (name.is_null() && name_length > 0) {
            reject!(k, rule => STATUS_INVALID_PARAMETER, "a NULL pointer");
        }
        guest::write(out, std::ptr::null_mut());
        if !name_length.is_multiple_of(2) {
            reject!(k, rule => STATUS_INVALID_PARAMETER, "FileNameLength {name_length} is odd");
        }
        let format = match check_options(k, "FltGetDestinationFileNameInformation", options, false)
        {
            Ok(format) => format,
            Err(status) => return status,
        };
        if !root.is_null() {
            k.violation(
                    ViolationKind::NotEmulated,
                    "FltGetDestinationFileNameInformation",
                    format!("RootDirectory {root:p}: only NULL (names relative to the file's directory or the volume) is emulated"),
                );
            return STATUS_NOT_SUPPORTED;
        }
        let (fs_handle, volume) = {
            let flt = flt_read(k);
            let Some((file_volume, fs_handle)) = flt
                .io
                .files
                .with(file as usize, |r| r.map(|r| (r.volume, r.fs_handle)))
            else {
                drop(flt);
                reject!(k, rule => STATUS_INVALID_PARAMETER, "{file:p} is not an open file object");
            };
            match flt.io.instance(instance as usize) {
                Some((volume, _)) if volume == file_volume => (fs_handle, volume),
                _ => {
                    drop(flt);
                    reject!(k, rule => STATUS_INVALID_PARAMETER,
                        "{instance:p} is not the instance of the file's volume"
                    );
                }
            }
        };
        let bytes = guest::read_bytes(name.cast::<u8>(), name_length as usize);
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let target = String::from_utf16_lossy(&units);
        if let Some(status) =
            query_failure(k, "FltGetDestinationFileNameInformation", options, format)
        {
            return status;
        }
        let resolved = {
            let flt = flt_read(k);
            let v = &flt.io.volumes[volume.0];
            fs_handle
                .ok_or(status::INVALID_DEVICE_REQUEST)
                .and_then(|h| v.files().resolve_target(h, &target))
                .map(|path| {
                    (
                        format!("{}{path}", v.device_name),
                        v.device_name.len(),
                        is_network(v.kind),
                    )
                })
        };
        match resolved {
            Ok((full, device_len, network)) => {
                guest::write(out, hand_out(k, full, device_len, format, network));
                STATUS_SUCCESS
            }
            Err(status) => status,
        }
    })
}

/// `FltReleaseFileNameInformation`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_release_file_name_information(info: PFLT_FILE_NAME_INFORMATION) {
    emulate(Routine::FltReleaseFileNameInformation, |k| {
        let address = info as usize;
        let flt = flt_read(k);
        let names = &flt.io.names;
        let released = names.live.with(address, |record| {
            let record = record?;
            record.references -= 1;
            Some(record.references == 0)
        });
        if let Some(last) = released {
            if last && let Some(record) = names.live.remove(address) {
                if let Some(change) = record.modification() {
                    k.violation(
                        ViolationKind::Parameter,
                        "FLT_FILE_NAME_INFORMATION is not modified by its users (Filter Manager shares and caches it)",
                        format!("at its release, {change} (acquired in {})", record.acquired_by),
                    );
                }
                // SAFETY: the structure's own memory, `len` bytes, owned by the record.
                unsafe {
                    std::ptr::write_bytes(record.memory.as_ptr::<u8>(), RELEASED_FILL, record.len);
                };
                names
                    .retired
                    .lock_mine()
                    .insert(address, (record.name, record.memory));
            }
            flt.io.stats.add(Count::NamesReleased, 1);
            return;
        }
        let retired = names
            .retired
            .find_map(|retired| retired.get(address).map(|(name, _)| name.clone()));
        drop(flt);
        match retired {
                Some(name) => k.violation(
                    ViolationKind::OverRelease,
                    "RULES.md 19: name information is released exactly once per reference",
                    format!("FltReleaseFileNameInformation of '{name}' ({info:p}), which has no reference left (released twice?)"),
                ),
                None => k.violation(
                    ViolationKind::Parameter,
                    "FltReleaseFileNameInformation: a structure from a FltMgr name routine",
                    format!("{info:p} is not name information FltMgr returned"),
                ),
            }
    });
}

/// Reports name structures still referenced (at `FltUnregisterFilter`) and frees them.
pub(crate) fn report_leaks(k: &Kernel, when: &str) {
    let leaked: Vec<NameRecord> = {
        let mut flt = flt_write(k);
        flt.io
            .names
            .live
            .drain()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    };
    for record in leaked {
        k.violation(
            ViolationKind::ReferenceLeak,
            "RULES.md 19: every name information reference is released (FltReleaseFileNameInformation)",
            format!(
                "at {when}: name information '{}' still has {} reference(s) (acquired in {})",
                record.name, record.references, record.acquired_by
            ),
        );
    }
}
