//! I/O a filter issues itself: `FltCreateFileEx2` (and `FltCreateFile`, `FltCreateFileEx`,
//! the same create with fewer arguments, through one path), `FltReadFile`, `FltClose`. Each request goes only to what is below the initiating instance: here the
//! volume's file system, never the filter's own callbacks (kernel-sim runs one filter), so a
//! filter that opens files in its post-create does not recurse into itself.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatefileex2>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatefileex>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatefile>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreadfile>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltclose>):
//! - create: PASSIVE_LEVEL; sent to the instances below `Instance` and the file system (a NULL
//!   `Instance` sends it to the top of the stack, through the caller's own callbacks: not
//!   emulated); the name is fully qualified (`\Device\HarddiskVolume1\dir\file`), a relative
//!   open through `RootDirectory` is not emulated; an empty name or one without a separator is
//!   `STATUS_OBJECT_PATH_SYNTAX_BAD`, a name on another volume `STATUS_MOUNT_POINT_NOT_RESOLVED`,
//!   a filter or instance being torn down `STATUS_FLT_DELETING_OBJECT`, a pool failure
//!   `STATUS_INSUFFICIENT_RESOURCES`; `OBJ_KERNEL_HANDLE` is required outside the System
//!   process; the handle is closed by `FltClose`, the file object (Ex) dereferenced by
//!   `ObDereferenceObject`; `FltCreateFileEx2`'s optional `DriverContext` must have been
//!   initialized by `IoInitializeDriverCreateContext` (its `Size` set) with a NULL
//!   `DeviceObjectHint` (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_io_driver_create_context>);
//!   extra create parameters and transactions through it are not emulated;
//! - read: PASSIVE_LEVEL; `InitiatingInstance` and an open `FileObject` required; a read at or
//!   beyond the end of file is an error (`STATUS_END_OF_FILE`); a NULL `ByteOffset` uses and
//!   advances the file object's `CurrentByteOffset` (unless
//!   `FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET`); noncached reads need sector-aligned
//!   offset, length and buffer; with a `CallbackRoutine` the read is asynchronous
//!   ([`crate::fltmgr::callback_data::read_file_async`]: `STATUS_PENDING`, the routine called
//!   on another thread with Filter Manager's callback data, `BytesRead` ignored). The bytes read are those the file system holds;
//! - close: PASSIVE_LEVEL; a handle that is not from `FltCreateFile(Ex)` is
//!   `STATUS_INVALID_HANDLE`.

use vigil_sys::{
    DEVICE_OBJECT, FILE_OBJECT, FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET,
    FLTFL_IO_OPERATION_NON_CACHED, HANDLE, IO_STATUS_BLOCK, LARGE_INTEGER, NTSTATUS,
    OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES, PFLT_FILTER, PFLT_INSTANCE, PVOID, STATUS_END_OF_FILE,
    STATUS_FLT_DELETING_OBJECT, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_MOUNT_POINT_NOT_RESOLVED, STATUS_NOT_IMPLEMENTED, STATUS_OBJECT_PATH_SYNTAX_BAD,
    STATUS_SUCCESS, UNICODE_STRING,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::files::FileRecord;
use crate::fltmgr::instances::{FsHandle, InstanceState, VolumeId};
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::objects::HandleTarget;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::status;
use crate::ntoskrnl::thread::SYSTEM_PROCESS_ID;
use crate::report::ViolationKind;

/// `IO_TYPE_FILE`.
const IO_TYPE_FILE: i16 = 5;
/// The sector size of every synthetic volume (what noncached I/O aligns to).
const SECTOR_SIZE: u64 = 512;

/// What `FltCreateFileEx` needs to know of its instance: the volume, its device object and
/// device name.
pub(crate) fn instance_volume(
    k: &Kernel,
    instance: usize,
) -> Result<(VolumeId, usize, String), NTSTATUS> {
    let flt = flt_write(k);
    match flt.io.instance(instance) {
        Some((_, InstanceState::TearingDown)) => Err(STATUS_FLT_DELETING_OBJECT),
        Some((volume, _)) => {
            let v = &flt.io.volumes[volume.0];
            Ok((volume, v.device.address(), v.device_name.clone()))
        }
        None if flt.io.graveyard.iter().any(|g| g.address() == instance) => {
            Err(STATUS_FLT_DELETING_OBJECT)
        }
        None => {
            drop(flt);
            k.parameter_violation(
                "an instance of the calling filter",
                format!("{instance:#x} is not a live instance"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
    }
}

/// The create's arguments after the pointer arguments were read.
struct CreateRequest {
    filter: usize,
    instance: usize,
    attributes: *mut OBJECT_ATTRIBUTES,
    disposition: u32,
    options: u32,
}

/// `FltCreateFileEx` and `FltCreateFile`: the open, the handle (and, when `file_object_out`
/// is given, a referenced file object).
fn create(
    k: &Kernel,
    request: &CreateRequest,
    handle_out: *mut HANDLE,
    file_object_out: *mut *mut FILE_OBJECT,
    io_status: *mut IO_STATUS_BLOCK,
) -> NTSTATUS {
    let invalid = STATUS_INVALID_PARAMETER;
    if handle_out.is_null() || io_status.is_null() || request.attributes.is_null() {
        k.parameter_violation(
            "FileHandle, ObjectAttributes and IoStatusBlock",
            "one of them is NULL".to_owned(),
        );
        return invalid;
    }
    guest::write(handle_out, std::ptr::null_mut());
    if !file_object_out.is_null() {
        guest::write(file_object_out, std::ptr::null_mut());
    }
    let filter_live = flt_write(k)
        .filters
        .get(&request.filter)
        .map(|f| !f.unregistered);
    match filter_live {
        Some(true) => {}
        Some(false) => return STATUS_FLT_DELETING_OBJECT,
        None => {
            k.parameter_violation(
                "Filter from FltRegisterFilter",
                format!("{:#x} is not a filter", request.filter),
            );
            return invalid;
        }
    }
    if request.instance == 0 {
        k.violation(
            ViolationKind::NotEmulated,
            "a create with a NULL Instance (sent through the caller's own callbacks) is not emulated",
            "Instance is NULL".to_owned(),
        );
        return STATUS_NOT_IMPLEMENTED;
    }
    let (volume, device, device_name) = match instance_volume(k, request.instance) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let attributes = guest::read(request.attributes);
    let in_system_process = state::with(|s| s.process_id.get()) == SYSTEM_PROCESS_ID;
    if !in_system_process && attributes.Attributes & OBJ_KERNEL_HANDLE == 0 {
        k.parameter_violation(
            "OBJ_KERNEL_HANDLE outside the System process",
            format!(
                "Attributes {:#x} in process {}",
                attributes.Attributes,
                state::with(|s| s.process_id.get())
            ),
        );
    }
    if !attributes.RootDirectory.is_null() {
        k.violation(
            ViolationKind::NotEmulated,
            "a create relative to a RootDirectory is not emulated",
            format!("RootDirectory {:p}", attributes.RootDirectory),
        );
        return STATUS_NOT_IMPLEMENTED;
    }
    let name = match guest::unicode_string(attributes.ObjectName) {
        Some(Ok(name)) => name,
        Some(Err(problem)) => {
            k.parameter_violation("ObjectName a valid UNICODE_STRING", problem);
            return invalid;
        }
        None => String::new(),
    };
    if !name.contains('\\') {
        return STATUS_OBJECT_PATH_SYNTAX_BAD;
    }
    let Some(path) = strip_device(&name, &device_name) else {
        return STATUS_MOUNT_POINT_NOT_RESOLVED;
    };
    if k.inject_failure(
        state::with(|s| s.routine.get()),
        "STATUS_INSUFFICIENT_RESOURCES",
    ) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    open_below(
        k,
        (volume, device),
        (&path, request),
        (handle_out, file_object_out, io_status),
    )
}

/// The create sent to the file system below the filter, and its outputs.
fn open_below(
    k: &Kernel,
    (volume, device): (VolumeId, usize),
    (path, request): (&str, &CreateRequest),
    (handle_out, file_object_out, io_status): (
        *mut HANDLE,
        *mut *mut FILE_OBJECT,
        *mut IO_STATUS_BLOCK,
    ),
) -> NTSTATUS {
    let opened = {
        let flt = flt_read(k);
        flt.io.volumes[volume.0]
            .files_mut()
            .open_below(path, request.disposition, request.options)
    };
    let (fs_handle, information) = match opened {
        Ok(opened) => opened,
        Err(status) => {
            guest::write(
                io_status,
                IO_STATUS_BLOCK {
                    Status: status,
                    _Pad: 0,
                    Information: 0,
                },
            );
            return status;
        }
    };
    let file_object = new_file_object(k, volume, device, path, fs_handle);
    let routine = state::with(|s| s.routine.get());
    let handle = {
        let mut objects = lock(&k.objects);
        if !file_object_out.is_null() {
            objects.file_references.insert(file_object, 1);
        }
        objects.open(HandleTarget::File(file_object), routine)
    };
    guest::write(handle_out, handle as HANDLE);
    if !file_object_out.is_null() {
        guest::write(file_object_out, file_object as *mut FILE_OBJECT);
    }
    guest::write(
        io_status,
        IO_STATUS_BLOCK {
            Status: STATUS_SUCCESS,
            _Pad: 0,
            Information: information,
        },
    );
    STATUS_SUCCESS
}

/// The volume-relative path of a fully qualified `name` on the volume `device_name`
/// (case-insensitive, as the object manager compares device names).
fn strip_device(name: &str, device_name: &str) -> Option<String> {
    let prefix = name.get(..device_name.len())?;
    let rest = &name[device_name.len()..];
    (prefix.eq_ignore_ascii_case(device_name) && rest.starts_with('\\')).then(|| rest.to_owned())
}

/// A `FILE_OBJECT` for a file opened below the filter, recorded as open.
fn new_file_object(
    k: &Kernel,
    volume: VolumeId,
    device: usize,
    path: &str,
    fs_handle: u64,
) -> usize {
    let units: Vec<u16> = path.encode_utf16().collect();
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
    let name = GuestAlloc::zeroed(bytes.len() + 2);
    guest::write_bytes(name.as_ptr(), &bytes);
    let object = GuestAlloc::for_type::<FILE_OBJECT>(0);
    let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX - 1);
    // SAFETY: FILE_OBJECT is plain data (integers, raw pointers, KEVENTs of integers): all
    // zeroes is a valid value.
    let mut value: FILE_OBJECT = unsafe { std::mem::zeroed() };
    value.Type = IO_TYPE_FILE;
    value.Size = i16::try_from(size_of::<FILE_OBJECT>()).unwrap_or(i16::MAX);
    value.DeviceObject = device as *mut DEVICE_OBJECT;
    value.FileName = UNICODE_STRING {
        Length: length,
        MaximumLength: length + 2,
        Buffer: name.as_ptr(),
    };
    let address = object.address();
    // SAFETY: kernel-sim's own fresh allocation of a FILE_OBJECT.
    unsafe { object.as_ptr::<FILE_OBJECT>().write(value) };
    let mut record = FileRecord::new(object, name, volume, path.to_owned());
    record.fs_handle = Some(fs_handle);
    record.open = true;
    flt_write(k).io.files.insert(address, record);
    address
}

/// `IO_DRIVER_CREATE_CONTEXT` on x64 without `SiloContext` (Windows 8 to Windows 10 1511, and
/// mingw-w64's declaration): the smallest `Size` `IoInitializeDriverCreateContext` sets.
const DRIVER_CREATE_CONTEXT_MIN_SIZE: i16 = 32;

/// `IO_DRIVER_CREATE_CONTEXT`'s members that come before `SiloContext` (the ones every Windows
/// version has), as `IoInitializeDriverCreateContext` lays them out on x64.
#[derive(Clone, Copy)]
#[repr(C)]
struct DriverCreateContext {
    size: i16,
    extra_create_parameter: PVOID,
    device_object_hint: PVOID,
    txn_parameters: PVOID,
}

/// The arguments of `FltCreateFileEx2` that the emulation reads; `FltCreateFile` and
/// `FltCreateFileEx` are `FltCreateFileEx2` with fewer of them, so all three go through
/// [`create_ex2`].
struct CreateArguments {
    filter: PFLT_FILTER,
    instance: PFLT_INSTANCE,
    handle_out: *mut HANDLE,
    /// NULL for `FltCreateFile` (which has no such parameter) or when the caller wants none.
    file_object_out: *mut *mut FILE_OBJECT,
    attributes: *mut OBJECT_ATTRIBUTES,
    io_status: *mut IO_STATUS_BLOCK,
    disposition: u32,
    options: u32,
    /// NULL for `FltCreateFile` and `FltCreateFileEx`.
    driver_context: *const DriverCreateContext,
}

/// The one create path: `DriverContext`'s checks, then the checks and the open of [`create`].
fn create_ex2(k: &Kernel, arguments: &CreateArguments) -> NTSTATUS {
    if !arguments.driver_context.is_null() {
        let context = guest::read(arguments.driver_context);
        if context.size < DRIVER_CREATE_CONTEXT_MIN_SIZE {
            k.parameter_violation(
                "DriverContext initialized by IoInitializeDriverCreateContext",
                format!("IO_DRIVER_CREATE_CONTEXT.Size is {}", context.size),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if !context.device_object_hint.is_null() {
            k.parameter_violation(
                "DriverContext->DeviceObjectHint is NULL for FltCreateFileEx2",
                format!("DeviceObjectHint {:p}", context.device_object_hint),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if !context.extra_create_parameter.is_null() || !context.txn_parameters.is_null() {
            k.violation(
                ViolationKind::NotEmulated,
                "FltCreateFileEx2 with extra create parameters or a transaction is not emulated",
                format!(
                    "ExtraCreateParameter {:p}, TxnParameters {:p}",
                    context.extra_create_parameter, context.txn_parameters
                ),
            );
            return STATUS_NOT_IMPLEMENTED;
        }
    }
    let request = CreateRequest {
        filter: arguments.filter as usize,
        instance: arguments.instance as usize,
        attributes: arguments.attributes,
        disposition: arguments.disposition,
        options: arguments.options,
    };
    create(
        k,
        &request,
        arguments.handle_out,
        arguments.file_object_out,
        arguments.io_status,
    )
}

/// `FltCreateFileEx2`: PASSIVE_LEVEL. `FltCreateFileEx` with an optional
/// `IO_DRIVER_CREATE_CONTEXT` (its `DeviceObjectHint` must be NULL; extra create parameters
/// and transactions are not emulated).
pub(crate) extern "win64" fn flt_create_file_ex2(
    filter: PFLT_FILTER,
    instance: PFLT_INSTANCE,
    handle_out: *mut HANDLE,
    file_object_out: *mut *mut FILE_OBJECT,
    _desired_access: u32,
    attributes: *mut OBJECT_ATTRIBUTES,
    io_status: *mut IO_STATUS_BLOCK,
    _allocation_size: *mut LARGE_INTEGER,
    _file_attributes: u32,
    _share_access: u32,
    disposition: u32,
    options: u32,
    _ea_buffer: PVOID,
    _ea_length: u32,
    _flags: u32,
    driver_context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltCreateFileEx2, |k| {
        create_ex2(
            k,
            &CreateArguments {
                filter,
                instance,
                handle_out,
                file_object_out,
                attributes,
                io_status,
                disposition,
                options,
                driver_context: driver_context.cast(),
            },
        )
    })
}

/// `FltCreateFileEx`: PASSIVE_LEVEL. `FltCreateFileEx2` without a driver context.
pub(crate) extern "win64" fn flt_create_file_ex(
    filter: PFLT_FILTER,
    instance: PFLT_INSTANCE,
    handle_out: *mut HANDLE,
    file_object_out: *mut *mut FILE_OBJECT,
    _desired_access: u32,
    attributes: *mut OBJECT_ATTRIBUTES,
    io_status: *mut IO_STATUS_BLOCK,
    _allocation_size: *mut LARGE_INTEGER,
    _file_attributes: u32,
    _share_access: u32,
    disposition: u32,
    options: u32,
    _ea_buffer: PVOID,
    _ea_length: u32,
    _flags: u32,
) -> NTSTATUS {
    emulate(Routine::FltCreateFileEx, |k| {
        create_ex2(
            k,
            &CreateArguments {
                filter,
                instance,
                handle_out,
                file_object_out,
                attributes,
                io_status,
                disposition,
                options,
                driver_context: std::ptr::null(),
            },
        )
    })
}

/// `FltCreateFile`: PASSIVE_LEVEL. `FltCreateFileEx2` without the file object or a driver
/// context.
pub(crate) extern "win64" fn flt_create_file(
    filter: PFLT_FILTER,
    instance: PFLT_INSTANCE,
    handle_out: *mut HANDLE,
    _desired_access: u32,
    attributes: *mut OBJECT_ATTRIBUTES,
    io_status: *mut IO_STATUS_BLOCK,
    _allocation_size: *mut LARGE_INTEGER,
    _file_attributes: u32,
    _share_access: u32,
    disposition: u32,
    options: u32,
    _ea_buffer: PVOID,
    _ea_length: u32,
    _flags: u32,
) -> NTSTATUS {
    emulate(Routine::FltCreateFile, |k| {
        create_ex2(
            k,
            &CreateArguments {
                filter,
                instance,
                handle_out,
                file_object_out: std::ptr::null_mut(),
                attributes,
                io_status,
                disposition,
                options,
                driver_context: std::ptr::null(),
            },
        )
    })
}

/// The volume and file-system handle of `file_object`, an open file on the volume of the live
/// `instance`: what every request a filter issues on a file object starts with. A file object
/// that is not open (pre-create, after cleanup, closed) is a violation and
/// `STATUS_FILE_CLOSED`; a file object on another volume than the instance a violation and
/// `STATUS_INVALID_PARAMETER`.
pub(crate) fn open_file(
    k: &Kernel,
    instance: usize,
    file_object: usize,
) -> Result<(VolumeId, FsHandle), NTSTATUS> {
    let (instance_volume, _, _) = instance_volume(k, instance)?;
    let record = flt_read(k).io.files.with(file_object, |r| {
        r.filter(|r| r.open && !r.cleaned_up)
            .map(|r| (r.volume, r.fs_handle))
    });
    match record {
        Some((volume, Some(handle))) if volume == instance_volume => Ok((volume, handle)),
        Some((_, Some(_))) => {
            k.parameter_violation(
                "a FileObject on the Instance's volume",
                format!("{file_object:#x} is on another volume than instance {instance:#x}"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
        _ => {
            k.parameter_violation(
                "a FileObject that is currently open",
                format!("{file_object:#x} is not open (pre-create, after cleanup or closed)"),
            );
            Err(status::FILE_CLOSED)
        }
    }
}

/// A read of `length` bytes at `offset` (`None`: the file object's current offset) into
/// `buffer`, sent below the filter: the status and the bytes read. Shared by `FltReadFile` and
/// `IRP_MJ_READ` through `FltPerformSynchronousIo`/`FltPerformAsynchronousIo`.
pub(crate) fn read_below(
    k: &Kernel,
    (instance, file_object): (usize, usize),
    offset: Option<i64>,
    (length, buffer): (u32, PVOID),
    flags: u32,
) -> (NTSTATUS, usize) {
    let invalid = STATUS_INVALID_PARAMETER;
    let (volume, handle) = match open_file(k, instance, file_object) {
        Ok(found) => found,
        Err(status) => return (status, 0),
    };
    let size = flt_read(k).io.volumes[volume.0]
        .files()
        .size_of_open(handle);
    let size = match size {
        Ok(size) => size,
        Err(status) => return (status, 0),
    };
    let offset_at =
        (file_object + std::mem::offset_of!(FILE_OBJECT, CurrentByteOffset)) as *mut LARGE_INTEGER;
    let current = offset.is_none();
    let offset = offset.unwrap_or_else(|| guest::read(offset_at));
    let Ok(offset) = u64::try_from(offset) else {
        k.parameter_violation("a nonnegative ByteOffset", format!("ByteOffset {offset}"));
        return (invalid, 0);
    };
    if flags & FLTFL_IO_OPERATION_NON_CACHED != 0
        && (!offset.is_multiple_of(SECTOR_SIZE)
            || !u64::from(length).is_multiple_of(SECTOR_SIZE)
            || !(buffer as u64).is_multiple_of(SECTOR_SIZE))
    {
        k.parameter_violation(
            "noncached reads: offset, length and buffer aligned to the sector size",
            format!(
                "offset {offset}, length {length}, buffer {buffer:p}; sector size {SECTOR_SIZE}"
            ),
        );
        return (invalid, 0);
    }
    if offset >= size {
        return (STATUS_END_OF_FILE, 0);
    }
    let count = (size - offset).min(u64::from(length));
    let count = usize::try_from(count).unwrap_or(0);
    if count > 0 {
        if buffer.is_null() {
            k.parameter_violation("a Buffer", "Buffer is NULL".to_owned());
            return (invalid, 0);
        }
        // The bytes the file system holds (zeroes where none were written).
        let length = u32::try_from(count).unwrap_or(u32::MAX);
        let mut data = flt_read(k).io.volumes[volume.0]
            .files()
            .read_below(handle, offset, length)
            .unwrap_or_default();
        data.resize(count, 0);
        guest::write_bytes(buffer.cast(), &data);
    }
    if current && flags & FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET == 0 {
        let advanced = offset + count as u64;
        guest::write(offset_at, i64::try_from(advanced).unwrap_or(i64::MAX));
    }
    (STATUS_SUCCESS, count)
}

/// `FltReadFile`: PASSIVE_LEVEL. Synchronous, or asynchronous with a `CallbackRoutine`.
pub(crate) extern "win64" fn flt_read_file(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    byte_offset: *mut LARGE_INTEGER,
    length: u32,
    buffer: PVOID,
    flags: u32,
    bytes_read: *mut u32,
    callback: Option<crate::fltmgr::callback_data::CompletedAsyncIo>,
    callback_context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltReadFile, |k| {
        if instance.is_null() || file_object.is_null() {
            k.parameter_violation(
                "InitiatingInstance and FileObject",
                "one of them is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let offset = (!byte_offset.is_null()).then(|| guest::read(byte_offset));
        if let Some(callback) = callback {
            return crate::fltmgr::callback_data::read_file_async(
                k,
                (instance, file_object),
                (offset, length, buffer),
                flags,
                (callback, callback_context),
            );
        }
        if !bytes_read.is_null() {
            guest::write(bytes_read, 0);
        }
        let (status, count) = read_below(
            k,
            (instance as usize, file_object as usize),
            offset,
            (length, buffer),
            flags,
        );
        if !bytes_read.is_null() {
            guest::write(bytes_read, u32::try_from(count).unwrap_or(u32::MAX));
        }
        status
    })
}

/// `FltClose`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn flt_close(handle: HANDLE) -> NTSTATUS {
    emulate(Routine::FltClose, |k| {
        let target = {
            let mut objects = lock(&k.objects);
            match objects.get(handle as usize) {
                Some(HandleTarget::File(file)) => {
                    objects.close(handle as usize);
                    Some(file)
                }
                _ => None,
            }
        };
        let Some(file_object) = target else {
            k.violation(
                ViolationKind::InvalidHandle,
                "FltClose: a handle from FltCreateFile or FltCreateFileEx, closed once",
                format!("handle {handle:p} is not an open handle from FltCreateFile(Ex)"),
            );
            return status::INVALID_HANDLE;
        };
        crate::fltmgr::contexts::release_file_contexts(k, file_object);
        crate::fltmgr::names::purge_name_cache(k, Some(file_object));
        let referenced = lock(&k.objects)
            .file_references
            .get(&file_object)
            .is_some_and(|&r| r > 0);
        let mut flt = flt_write(k);
        let io = &mut flt.io;
        let Some(mut record) = io.files.remove(file_object) else {
            return STATUS_SUCCESS;
        };
        if let Some(h) = record.fs_handle.take() {
            io.volumes[record.volume.0].fs.get_mut().close_below(h);
        }
        record.open = false;
        record.cleaned_up = true;
        if referenced {
            // The file object lives until its last reference is dropped.
            io.closed_files.push(record);
        }
        STATUS_SUCCESS
    })
}
