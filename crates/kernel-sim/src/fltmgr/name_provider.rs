//! Name providers: a filter that registers `GenerateFileNameCallback` (and
//! `NormalizeNameComponentCallback` / `NormalizeNameComponentExCallback`,
//! `NormalizeContextCleanupCallback`) supplies the names Filter Manager gives the filters above
//! it, and `FltCheckAndGrowNameControl` grows the buffer it writes them into.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_generate_file_name>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_normalize_name_component>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_normalize_name_component_ex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_normalize_context_cleanup>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcheckandgrownamecontrol>):
//! - The callbacks intercept name requests by the filters *above* the provider; the provider's
//!   own queries go below it (to the file system), so a pass-through provider asks for the name
//!   with `FltGetFileNameInformation` (or, with no callback data, the unsafe variant) inside
//!   its callback without recursion. kernel-sim loads one filter, so the filter above is
//!   kernel-sim's: after every successful create on a volume where a provider has a live
//!   instance it asks for the file's normalized name, and before every cleanup for the
//!   normalized and opened names, with no callback data (as `FltGetFileNameInformationUnsafe`
//!   from a filter above would; `Io::name_from_above` asks on demand).
//! - A request counts as an operation in flight on the provider's instance, so an instance
//!   teardown waits for the provider's callbacks to return.
//! - Each request calls `GenerateFileNameCallback` at PASSIVE_LEVEL with the provider's
//!   instance, the file object, the format and query method, a BOOLEAN "may cache" (FALSE on
//!   entry) and an `FLT_NAME_CONTROL` whose buffer Filter Manager owns. kernel-sim starts that
//!   buffer at 16 bytes, in the checked pool (special pool in `verify`: the block ends at a
//!   guard page), so a provider that writes a name without first growing the buffer with
//!   `FltCheckAndGrowNameControl` faults at once, and one that writes into the slack is
//!   reported when Filter Manager frees the buffer. A buffer the provider replaced or freed
//!   itself (the page's Remarks forbid it), or a `Length` beyond `MaximumLength`, is reported
//!   and the request fails.
//! - A normalized request (Windows 8 and later) first asks for `FLT_FILE_NAME_NORMALIZED`; on a
//!   failure status Filter Manager asks again for the opened name and normalizes it one
//!   component at a time with the Ex callback (preferred when both are registered) or the
//!   plain one: `ParentDirectory` the normalized path so far (the volume and share, then each
//!   expanded component; the root with its backslash), `VolumeNameLength` the bytes of the
//!   volume (and share) part, the component (the final one without its stream), a
//!   `FILE_NAMES_INFORMATION` buffer (checked pool) of 12 + 512 bytes, flags 0
//!   (case-insensitive, not a destination name), one `NormalizationContext` for the whole name,
//!   handed to `NormalizeContextCleanupCallback` when the provider left it non-NULL. A failure
//!   status fails the request; a `FileNameLength` beyond the buffer is reported. The stream is
//!   appended as normalized names spell it (`:$DATA` removed). A provider without a normalize
//!   callback cannot normalize: the request fails with the status of its normalized attempt.
//! - A name generated with "may cache" TRUE goes into Filter Manager's name cache for the
//!   filters above (per file object and format; emptied on close, rename and link like the
//!   rest of the cache): the next request is answered from it without calling the provider.
//! - `FltPurgeFileNameInformationCache`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltpurgefilenameinformationcache>):
//!   IRQL <= APC_LEVEL; `Instance` required and an instance (else a violation,
//!   `STATUS_INVALID_PARAMETER`); forgets the cached names the instance provided, for
//!   `FileObject` or (NULL) every file of the instance's volume. Structures already handed out
//!   stay valid until released. The page documents no failure but "an appropriate NTSTATUS
//!   value": not fault-injected.
//! - `FltCheckAndGrowNameControl`: IRQL <= APC_LEVEL; a name control Filter Manager passed to a
//!   callback in progress (anything else: a violation, `STATUS_INVALID_PARAMETER`); a buffer at
//!   least `NewSize` bytes is left alone; otherwise a new buffer of `NewSize` bytes receives the
//!   old contents (`Length` bytes) and replaces the old one, which is freed (so a pointer kept
//!   to it faults); failable (`STATUS_INSUFFICIENT_RESOURCES`, the buffer unchanged).

use std::sync::atomic::{AtomicBool, Ordering};

use vigil_sys::{
    FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED, NTSTATUS, PASSIVE_LEVEL, PVOID,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::{InstanceState, VolumeId};
use crate::fltmgr::name_parse::split;
use crate::fltmgr::names::{NameShape, fs_name};
use crate::kernel::sharded::ShardedMap;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest::{self, GuestAlloc, GuestUnicode};
use crate::machine::pool::AllocRequest;
use crate::report::ViolationKind;

/// `FLT_FILE_NAME_QUERY_DEFAULT`.
const QUERY_DEFAULT: u32 = 0x0100;
/// The size of a name control's first buffer: small, so that nearly every name needs
/// `FltCheckAndGrowNameControl` (Windows documents no initial size).
const INITIAL_BUFFER: u16 = 16;
/// The pool tag of the buffers Filter Manager allocates for name providers.
const TAG: u32 = u32::from_le_bytes(*b"FMnc");
/// `FIELD_OFFSET(FILE_NAMES_INFORMATION, FileName)`.
const NAMES_INFORMATION_HEADER: usize = 12;
/// The room for an expanded component (a component is at most 255 characters).
const EXPANDED_ROOM: usize = 512;
/// Bytes kernel-sim allocates for an `FLT_NAME_CONTROL` (only `Name` is documented; the rest is
/// Filter Manager's).
const NAME_CONTROL_SIZE: usize = 64;

/// A provider's callbacks (addresses in its image; 0 when not registered).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Callbacks {
    pub generate: usize,
    pub normalize: usize,
    pub normalize_ex: usize,
    pub context_cleanup: usize,
}

impl Callbacks {
    /// The callbacks of a registration, `None` when it provides no names.
    pub(crate) fn from_registration(reg: &vigil_sys::FLT_REGISTRATION) -> Option<Self> {
        let callbacks = Self {
            generate: reg.GenerateFileNameCallback as usize,
            normalize: reg.NormalizeNameComponentCallback as usize,
            normalize_ex: reg.NormalizeNameComponentExCallback as usize,
            context_cleanup: reg.NormalizeContextCleanupCallback as usize,
        };
        (callbacks.generate != 0 || callbacks.normalize != 0 || callbacks.normalize_ex != 0)
            .then_some(callbacks)
    }
}

/// A name control handed to a `GenerateFileNameCallback` in progress.
#[derive(Clone, Copy)]
struct Control {
    buffer: usize,
    size: u16,
}

/// Filter Manager's name-provider state of a run.
#[derive(Default)]
pub(crate) struct ProviderState {
    /// Whether a name provider registered (checked on every create and cleanup).
    any: AtomicBool,
    /// Live name controls, by address.
    controls: ShardedMap<Control>,
    /// Names providers generated and let Filter Manager cache, by file object:
    /// `(format, name)`.
    cache: ShardedMap<Vec<(u32, String)>>,
}

impl ProviderState {
    /// A name provider registered.
    pub(crate) fn note_provider(&self) {
        self.any.store(true, Ordering::Release);
    }

    /// Forgets the cached provider names of `file` (closed).
    pub(crate) fn purge_file(&self, file: usize) {
        self.cache.remove(file);
    }

    /// Forgets every cached provider name (a rename or link changed names).
    pub(crate) fn purge_all(&mut self) {
        self.cache.drain();
    }
}

/// The provider with a live instance on `file`'s volume: the volume, its instance and
/// callbacks. With `enter`, the request counts as an operation in flight on the instance (a
/// teardown waits for it, so the provider's image stays mapped while its callbacks run).
fn provider_for(k: &Kernel, file: usize, enter: bool) -> Option<(VolumeId, usize, Callbacks)> {
    let flt = flt_read(k);
    if !flt.io.providers.any.load(Ordering::Acquire) {
        return None;
    }
    let volume = flt.io.files.with(file, |r| r.map(|r| r.volume))?;
    let instance = flt
        .io
        .volumes
        .get(volume.0)?
        .instance
        .as_ref()
        .filter(|i| i.state == InstanceState::Live)?;
    let callbacks = flt
        .filters
        .get(&instance.filter)
        .filter(|f| !f.unregistered)
        .and_then(|f| f.name_provider)?;
    if enter {
        // Counted under the shared lock, as operations are (`world/io.rs`, `begin`).
        instance.in_flight.add(1);
    }
    Some((volume, instance.handle.address(), callbacks))
}

/// A request from above in progress on a provider's instance; ends it when dropped.
struct InFlight<'a> {
    k: &'a Kernel,
    volume: VolumeId,
    instance: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let tearing_down = {
            let flt = flt_read(self.k);
            flt.io
                .volumes
                .get(self.volume.0)
                .and_then(|v| v.instance.as_ref())
                .filter(|i| i.handle.address() == self.instance)
                .is_some_and(|i| {
                    i.in_flight.add(-1);
                    i.state == InstanceState::TearingDown
                })
        };
        if tearing_down {
            self.k.notify_waiters();
        }
    }
}

/// Whether the filter above should ask for `file`'s names (a provider sits below it).
pub(crate) fn has_provider(k: &Kernel, file: usize) -> bool {
    provider_for(k, file, false).is_some()
}

/// The name of `file` in `format` as a filter above the loaded filter sees it: the provider's
/// (through the name cache), or the file system's when the volume has no provider.
pub(crate) fn name_from_above(k: &Kernel, file: usize, format: u32) -> Result<String, NTSTATUS> {
    let Some((volume, instance, callbacks)) = provider_for(k, file, true) else {
        return fs_name(k, file, format).map(|(name, _)| name);
    };
    let _in_flight = InFlight {
        k,
        volume,
        instance,
    };
    let cached = flt_read(k).io.providers.cache.with(file, |names| {
        names.and_then(|names| {
            names
                .iter()
                .find(|(f, _)| *f == format)
                .map(|(_, name)| name.clone())
        })
    });
    if let Some(name) = cached {
        return Ok(name);
    }
    // The names to cache, if the provider allows it: the one asked for, and the opened name a
    // normalization started from.
    let mut names = Vec::with_capacity(2);
    let cache = if format == FLT_FILE_NAME_NORMALIZED {
        match generate(k, instance, callbacks, file, FLT_FILE_NAME_NORMALIZED) {
            Ok((name, cache)) => {
                names.push((format, name));
                cache
            }
            Err(status) => {
                if callbacks.normalize == 0 && callbacks.normalize_ex == 0 {
                    return Err(status);
                }
                let (opened, cache) = generate(k, instance, callbacks, file, FLT_FILE_NAME_OPENED)?;
                let normalized = normalize(k, instance, callbacks, file, &opened)?;
                names.push((format, normalized));
                names.push((FLT_FILE_NAME_OPENED, opened));
                cache
            }
        }
    } else {
        let (name, cache) = generate(k, instance, callbacks, file, format)?;
        names.push((format, name));
        cache
    };
    let name = names[0].1.clone();
    if cache {
        let flt = flt_read(k);
        let entries = &flt.io.providers.cache;
        let mut pending = Some(names);
        entries.with(file, |cached| {
            if let Some(cached) = cached {
                cached.extend(pending.take().unwrap_or_default());
            }
        });
        if let Some(names) = pending {
            entries.insert(file, names);
        }
    }
    Ok(name)
}

type Generate = unsafe extern "win64" fn(PVOID, PVOID, PVOID, u32, *mut u8, PVOID) -> NTSTATUS;
type Normalize = unsafe extern "win64" fn(
    PVOID,
    *const UNICODE_STRING,
    u16,
    *const UNICODE_STRING,
    PVOID,
    u32,
    u32,
    *mut PVOID,
) -> NTSTATUS;
type NormalizeEx = unsafe extern "win64" fn(
    PVOID,
    PVOID,
    *const UNICODE_STRING,
    u16,
    *const UNICODE_STRING,
    PVOID,
    u32,
    u32,
    *mut PVOID,
) -> NTSTATUS;
type ContextCleanup = unsafe extern "win64" fn(*mut PVOID);

/// A block of `size` bytes of paged pool for Filter Manager's use on the provider's behalf.
fn allocate(k: &Kernel, size: usize) -> Option<usize> {
    let request = AllocRequest {
        size,
        tag: TAG,
        zeroed: false,
        paged: true,
        irql: PASSIVE_LEVEL,
        callback: "FltMgr",
        during_entry: false,
        align: 16,
        device_aligned: false,
    };
    lock(&k.pool).allocate(&request)
}

/// Frees a block from [`allocate`]; overwritten slack, a block the provider freed itself, are
/// reported as `callback`'s.
fn release(k: &Kernel, callback: &'static str, block: usize) {
    let previous = crate::machine::state::with(|s| s.callback.replace(callback));
    crate::ntoskrnl::pool::free_block(
        k,
        "Filter Manager's name-provider buffer",
        block as PVOID,
        Some(TAG),
    );
    crate::machine::state::with(|s| s.callback.set(previous));
}

/// Asks the provider for `file`'s name in `format`: the name and whether it may be cached.
fn generate(
    k: &Kernel,
    instance: usize,
    callbacks: Callbacks,
    file: usize,
    format: u32,
) -> Result<(String, bool), NTSTATUS> {
    if callbacks.generate == 0 {
        return Err(vigil_sys::STATUS_NOT_SUPPORTED);
    }
    let callback = "GenerateFileNameCallback";
    let control = GuestAlloc::zeroed(NAME_CONTROL_SIZE);
    let Some(buffer) = allocate(k, usize::from(INITIAL_BUFFER)) else {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    };
    let name = control.as_ptr::<UNICODE_STRING>();
    guest::write(
        name,
        UNICODE_STRING {
            Length: 0,
            MaximumLength: INITIAL_BUFFER,
            Buffer: buffer as *mut u16,
        },
    );
    let may_cache = GuestAlloc::zeroed(8);
    flt_read(k).io.providers.controls.insert(
        control.address(),
        Control {
            buffer,
            size: INITIAL_BUFFER,
        },
    );
    // SAFETY: the provider registered this address as its GenerateFileNameCallback; its image
    // is mapped while its instance is live.
    let generate: Generate = unsafe { std::mem::transmute(callbacks.generate) };
    let status = k.call_driver(callback, Some(PASSIVE_LEVEL), || {
        // SAFETY: every argument points to memory alive for the call.
        unsafe {
            generate(
                instance as PVOID,
                file as PVOID,
                std::ptr::null_mut(),
                format | QUERY_DEFAULT,
                may_cache.as_ptr::<u8>(),
                control.as_ptr::<u8>().cast(),
            )
        }
    });
    let record = flt_read(k).io.providers.controls.remove(control.address());
    let Some(record) = record else {
        return Err(STATUS_INVALID_PARAMETER);
    };
    let returned = guest::read(name);
    let result = check_generated(k, status, record, returned, format);
    release(k, callback, record.buffer);
    result.map(|name| (name, guest::read(may_cache.as_ptr::<u8>()) != 0))
}

/// The name a `GenerateFileNameCallback` left in its name control, checked.
fn check_generated(
    k: &Kernel,
    status: Option<NTSTATUS>,
    record: Control,
    returned: UNICODE_STRING,
    format: u32,
) -> Result<String, NTSTATUS> {
    // None: the call was abandoned (a fault, reported).
    let status = status.ok_or(vigil_sys::STATUS_UNSUCCESSFUL)?;
    let previous = crate::machine::state::with(|s| s.callback.replace("GenerateFileNameCallback"));
    let broken = if returned.Buffer as usize != record.buffer {
        Some(format!(
            "the name control's buffer was replaced ({:p}, Filter Manager's is {:#x}): grow it with FltCheckAndGrowNameControl",
            returned.Buffer, record.buffer
        ))
    } else if returned.MaximumLength != record.size
        || returned.Length > returned.MaximumLength
        || !returned.Length.is_multiple_of(2)
    {
        Some(format!(
            "Name.Length {} and MaximumLength {} (the buffer holds {} bytes)",
            returned.Length, returned.MaximumLength, record.size
        ))
    } else {
        None
    };
    if let Some(detail) = &broken {
        k.violation(
            ViolationKind::CallbackContract,
            "GenerateFileNameCallback: the name goes into the FLT_NAME_CONTROL buffer Filter Manager owns, grown only by FltCheckAndGrowNameControl",
            format!("format {format}: {detail}"),
        );
    }
    crate::machine::state::with(|s| s.callback.set(previous));
    if broken.is_some() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    if status < 0 {
        return Err(status);
    }
    let bytes = guest::read_bytes(record.buffer as *const u8, usize::from(returned.Length));
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// Normalizes the opened name `opened` of `file` one component at a time through the
/// provider's normalize callback.
fn normalize(
    k: &Kernel,
    instance: usize,
    callbacks: Callbacks,
    file: usize,
    opened: &str,
) -> Result<String, NTSTATUS> {
    let shape = {
        let (_, shape) = fs_name(k, file, FLT_FILE_NAME_OPENED)?;
        NameShape {
            format: FLT_FILE_NAME_OPENED,
            ..shape
        }
    };
    let units: Vec<u16> = opened.encode_utf16().collect();
    let parts = split(&units, shape)?;
    let text = |range: Option<std::ops::Range<usize>>| {
        range.map_or_else(String::new, |r| String::from_utf16_lossy(&units[r]))
    };
    let prefix_end = parts
        .share
        .as_ref()
        .or(parts.volume.as_ref())
        .map_or(0, |r| r.end);
    let prefix = String::from_utf16_lossy(&units[..prefix_end]);
    let stream = text(parts.stream.clone());
    let path_end = parts.stream.as_ref().map_or(units.len(), |r| r.start);
    let path = String::from_utf16_lossy(&units[prefix_end..path_end]);
    let volume_length = u16::try_from(prefix_end * 2).unwrap_or(u16::MAX);
    let prefix_len = prefix.len();
    let mut normalized = prefix;
    let mut context: Box<PVOID> = Box::new(std::ptr::null_mut());
    let mut result = Ok(());
    for (index, component) in path.split('\\').filter(|c| !c.is_empty()).enumerate() {
        // The root directory keeps its backslash; other directories are named without one.
        let parent = if index == 0 {
            format!("{normalized}\\")
        } else {
            normalized.clone()
        };
        match expand(
            k,
            instance,
            callbacks,
            file,
            (&parent, volume_length),
            component,
            &mut context,
        ) {
            Ok(expanded) => {
                normalized.push('\\');
                normalized.push_str(&expanded);
            }
            Err(status) => {
                result = Err(status);
                break;
            }
        }
    }
    if !context.is_null() && callbacks.context_cleanup != 0 {
        // SAFETY: the provider registered this address as its NormalizeContextCleanupCallback.
        let cleanup: ContextCleanup = unsafe { std::mem::transmute(callbacks.context_cleanup) };
        let pointer: *mut PVOID = &raw mut *context;
        k.call_driver(
            "NormalizeContextCleanupCallback",
            Some(PASSIVE_LEVEL),
            || {
                // SAFETY: `pointer` is the context FltMgr kept for this name, alive for the call.
                unsafe { cleanup(pointer) }
            },
        );
    }
    result?;
    if normalized.len() == prefix_len && !path.is_empty() {
        // The root directory.
        normalized.push('\\');
    }
    normalized.push_str(normalized_stream(&stream));
    Ok(normalized)
}

/// A stream suffix as a normalized name spells it: `:$DATA` and `::$DATA` removed.
fn normalized_stream(stream: &str) -> &str {
    let stream = stream.strip_suffix(":$DATA").unwrap_or(stream);
    if stream == ":" { "" } else { stream }
}

/// One call of the normalize callback: `component`'s normalized form in `parent`.
fn expand(
    k: &Kernel,
    instance: usize,
    callbacks: Callbacks,
    file: usize,
    (parent, volume_length): (&str, u16),
    component: &str,
    context: &mut Box<PVOID>,
) -> Result<String, NTSTATUS> {
    let size = NAMES_INFORMATION_HEADER + EXPANDED_ROOM;
    let Some(buffer) = allocate(k, size) else {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    };
    let parent_string = GuestUnicode::new(parent);
    let component_string = GuestUnicode::new(component);
    let length = u32::try_from(size).unwrap_or(u32::MAX);
    let pointer: *mut PVOID = &raw mut **context;
    let (name, status) = if callbacks.normalize_ex != 0 {
        // SAFETY: the provider registered this address as its NormalizeNameComponentExCallback.
        let normalize: NormalizeEx = unsafe { std::mem::transmute(callbacks.normalize_ex) };
        let callback = "NormalizeNameComponentExCallback";
        let status = k.call_driver(callback, Some(PASSIVE_LEVEL), || {
            // SAFETY: every argument points to memory alive for the call.
            unsafe {
                normalize(
                    instance as PVOID,
                    file as PVOID,
                    parent_string.as_ptr(),
                    volume_length,
                    component_string.as_ptr(),
                    buffer as PVOID,
                    length,
                    0,
                    pointer,
                )
            }
        });
        (callback, status)
    } else {
        // SAFETY: the provider registered this address as its NormalizeNameComponentCallback.
        let normalize: Normalize = unsafe { std::mem::transmute(callbacks.normalize) };
        let callback = "NormalizeNameComponentCallback";
        let status = k.call_driver(callback, Some(PASSIVE_LEVEL), || {
            // SAFETY: every argument points to memory alive for the call.
            unsafe {
                normalize(
                    instance as PVOID,
                    parent_string.as_ptr(),
                    volume_length,
                    component_string.as_ptr(),
                    buffer as PVOID,
                    length,
                    0,
                    pointer,
                )
            }
        });
        (callback, status)
    };
    let result = match status {
        None => Err(vigil_sys::STATUS_UNSUCCESSFUL),
        Some(status) if status < 0 => Err(status),
        Some(_) => {
            let name_length = guest::read((buffer + 8) as *const u32) as usize;
            if name_length > EXPANDED_ROOM || !name_length.is_multiple_of(2) || name_length == 0 {
                let previous = crate::machine::state::with(|s| s.callback.replace(name));
                k.violation(
                    ViolationKind::CallbackContract,
                    format!("{name}: FileNameLength within ExpandComponentNameLength"),
                    format!(
                        "FileNameLength {name_length} for '{component}' in a {size}-byte FILE_NAMES_INFORMATION"
                    ),
                );
                crate::machine::state::with(|s| s.callback.set(previous));
                Err(STATUS_INVALID_PARAMETER)
            } else {
                let bytes = guest::read_bytes(
                    (buffer + NAMES_INFORMATION_HEADER) as *const u8,
                    name_length,
                );
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Ok(String::from_utf16_lossy(&units))
            }
        }
    };
    release(k, name, buffer);
    result
}

/// `FltCheckAndGrowNameControl`: IRQL <= APC_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_check_and_grow_name_control(
    control: *mut UNICODE_STRING,
    new_size: u16,
) -> NTSTATUS {
    emulate(Routine::FltCheckAndGrowNameControl, |k| {
        let address = control as usize;
        let record = flt_read(k)
            .io
            .providers
            .controls
            .with(address, |r| r.map(|r| *r));
        let Some(record) = record else {
            k.parameter_violation(
                "a NameCtrl Filter Manager passed to a name provider callback in progress",
                format!("{control:p} is not one"),
            );
            return STATUS_INVALID_PARAMETER;
        };
        let name = guest::read(control);
        if name.Buffer as usize != record.buffer {
            k.violation(
                ViolationKind::CallbackContract,
                "FltCheckAndGrowNameControl: the buffer in FLT_NAME_CONTROL is not freed or replaced directly",
                format!("Name.Buffer {:p}, Filter Manager's is {:#x}", name.Buffer, record.buffer),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if record.size >= new_size {
            return STATUS_SUCCESS;
        }
        if k.inject_failure(
            "FltCheckAndGrowNameControl",
            "STATUS_INSUFFICIENT_RESOURCES",
        ) {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let Some(buffer) = allocate(k, usize::from(new_size)) else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        let kept = usize::from(name.Length.min(record.size).min(new_size));
        let old = guest::read_bytes(record.buffer as *const u8, kept);
        guest::write_bytes(buffer as *mut u8, &old);
        let callback = crate::machine::state::with(|s| s.callback.get());
        release(k, callback, record.buffer);
        guest::write(
            control,
            UNICODE_STRING {
                Length: name.Length.min(new_size),
                MaximumLength: new_size,
                Buffer: buffer as *mut u16,
            },
        );
        flt_read(k).io.providers.controls.with(address, |r| {
            if let Some(r) = r {
                *r = Control {
                    buffer,
                    size: new_size,
                };
            }
        });
        STATUS_SUCCESS
    })
}

/// `FltPurgeFileNameInformationCache`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_purge_file_name_information_cache(
    instance: PVOID,
    file: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltPurgeFileNameInformationCache, |k| {
        let volume = flt_read(k).io.instance(instance as usize).map(|(v, _)| v);
        let Some(volume) = volume else {
            k.parameter_violation("an Instance", format!("{instance:p} is not an instance"));
            return STATUS_INVALID_PARAMETER;
        };
        let mut flt = crate::fltmgr::flt_write(k);
        let io = &mut flt.io;
        if file.is_null() {
            let entries = io.providers.cache.drain();
            for (object, names) in entries {
                let elsewhere = io
                    .files
                    .with(object, |r| r.is_some_and(|r| r.volume != volume));
                if elsewhere {
                    io.providers.cache.insert(object, names);
                }
            }
        } else {
            io.providers.cache.remove(file as usize);
        }
        STATUS_SUCCESS
    })
}

/// kernel-sim's filter above the loaded one asks for `file`'s names in `formats` (results
/// dropped: what matters is that the provider's callbacks run).
pub(crate) fn ask_from_above(k: &Kernel, file: usize, formats: &[u32]) {
    if !has_provider(k, file) {
        return;
    }
    for format in formats {
        let _ = name_from_above(k, file, *format);
    }
}
