//! The IRP-based operations beyond create/write/set-information/cleanup/close: read (cached
//! and paging), query information, query/set EA, flush, query/set volume information,
//! directory query, file system control, device and internal device control, shutdown, lock
//! control, query/set security, system control (WMI), query/set quota and `PnP`. Each is built
//! as [`Io::issue`] builds every operation (the parameter union's member for its major, buffers
//! in guest memory of the lengths the parameters give, the requestor's mode) and answered by
//! the volume's in-memory file system ([`crate::world::fs`]) from the parameters as the filters
//! left them.
//!
//! What the file system answers, per volume kind (kept simple, never inventing state):
//! - read returns the bytes written (`STATUS_END_OF_FILE` at the end, a lock conflict with
//!   another process's exclusive lock); query information `FileStandardInformation` from the
//!   file's real size, links and delete state; query directory `FileNamesInformation` of the
//!   directory's real entries (with `.` and `..` below the root); EAs are kept as set
//!   (`STATUS_NO_EAS_ON_FILE` before); volume information `FileFsAttributeInformation` with the
//!   file system's name; the label is kept;
//! - security is kept as set, a self-relative descriptor owned by SYSTEM before (NTFS, ReFS and
//!   the network volumes; FAT, exFAT, NPFS and MSFS have no security:
//!   `STATUS_INVALID_DEVICE_REQUEST`); EAs on exFAT, NPFS and MSFS:
//!   `STATUS_EAS_NOT_SUPPORTED`;
//! - `FSCTL_IS_VOLUME_MOUNTED` succeeds; `FSCTL_GET_REPARSE_POINT` is
//!   `STATUS_NOT_A_REPARSE_POINT` (no reparse points); every device control is
//!   `STATUS_INVALID_DEVICE_REQUEST` (no storage stack below the synthetic volumes); WMI too
//!   (file systems register no WMI provider); quotas are not kept (answered as by a file system
//!   without quota support, `STATUS_INVALID_DEVICE_REQUEST`);
//! - `PnP`: `IRP_MN_QUERY_REMOVE_DEVICE` is refused with `STATUS_ACCESS_DENIED` (the workload
//!   issues it while it holds a file open on the volume), `IRP_MN_CANCEL_REMOVE_DEVICE`
//!   succeeds; shutdown and flush succeed.
//!
//! - `IRP_MJ_CREATE_NAMED_PIPE` and `IRP_MJ_CREATE_MAILSLOT` create a pipe or mailslot by name
//!   on a named-pipe or mailslot volume (`STATUS_INVALID_DEVICE_REQUEST` on any other), with
//!   the `CreatePipe`/`CreateMailslot` parameters pointing at the documented
//!   `NAMED_PIPE_CREATE_PARAMETERS`/`MAILSLOT_CREATE_PARAMETERS`; the handle is then cleaned up
//!   and closed as any other.
//!
//! Not dispatched: `IRP_MJ_POWER` and `IRP_MJ_DEVICE_CHANGE` (file system stacks do not get
//! them) and the `IRP_MN_MDL` reads and writes. The volume mount and dismount are in
//! `volume_ops`, change notifications in `notify`.

use std::mem::offset_of;

use vigil_sys::{
    FLT_IO_PARAMETER_BLOCK, FLT_IO_PARAMETER_BLOCK as Iopb, FLT_PARAMETERS, FLT_PARAMETERS_CONTROL,
    FLT_PARAMETERS_LOCK_CONTROL, FLT_PARAMETERS_QUERY_DIRECTORY, FLT_PARAMETERS_QUERY_EA,
    FLT_PARAMETERS_QUERY_FILE_INFORMATION, FLT_PARAMETERS_QUERY_QUOTA,
    FLT_PARAMETERS_QUERY_SECURITY, FLT_PARAMETERS_READ, FLT_PARAMETERS_SET_EA,
    FLT_PARAMETERS_SET_QUOTA, FLT_PARAMETERS_SET_SECURITY, FLT_PARAMETERS_VOLUME_INFORMATION,
    FLT_PARAMETERS_WMI, FLT_RELATED_OBJECTS, FLTFL_OPERATION_REGISTRATION_SKIP_CACHED_IO,
    FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO, IRP_MJ_DEVICE_CONTROL, IRP_MJ_DIRECTORY_CONTROL,
    IRP_MJ_FILE_SYSTEM_CONTROL, IRP_MJ_FLUSH_BUFFERS, IRP_MJ_INTERNAL_DEVICE_CONTROL,
    IRP_MJ_LOCK_CONTROL, IRP_MJ_PNP, IRP_MJ_QUERY_EA, IRP_MJ_QUERY_INFORMATION, IRP_MJ_QUERY_QUOTA,
    IRP_MJ_QUERY_SECURITY, IRP_MJ_QUERY_VOLUME_INFORMATION, IRP_MJ_READ, IRP_MJ_SET_EA,
    IRP_MJ_SET_QUOTA, IRP_MJ_SET_SECURITY, IRP_MJ_SET_VOLUME_INFORMATION, IRP_MJ_SHUTDOWN,
    IRP_MJ_SYSTEM_CONTROL, IRP_NOCACHE, IRP_PAGING_IO, MDL, NT_SUCCESS, NTSTATUS, PASSIVE_LEVEL,
    PVOID, STATUS_ACCESS_DENIED, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL,
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use super::{BlockAddresses, CreateTarget, FileHandle, Io, OperationBlock, Path, Request};
use crate::config::VolumeKind;
use crate::fltmgr::files::IoState;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::FsHandle;
use crate::fltmgr::instances::{VolumeId, VolumeRecord};
use crate::kernel::Kernel;
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;
use crate::world::volumes::fs_mut;
use crate::world::volumes::fs_of;

/// `STATUS_FLT_DISALLOW_FAST_IO` (ntstatus.h): what a fast I/O operation a filter disallowed
/// ends with (its issuer then sends the IRP).
pub(crate) const STATUS_FLT_DISALLOW_FAST_IO: NTSTATUS = 0xC01C_0004_u32.cast_signed();
/// `STATUS_EAS_NOT_SUPPORTED` (ntstatus.h).
pub(crate) const STATUS_EAS_NOT_SUPPORTED: NTSTATUS = 0xC000_004F_u32.cast_signed();
/// `STATUS_NOT_A_REPARSE_POINT` (ntstatus.h).
pub(crate) const STATUS_NOT_A_REPARSE_POINT: NTSTATUS = 0xC000_0275_u32.cast_signed();
/// `STATUS_INVALID_VOLUME_LABEL` (ntstatus.h).
const STATUS_INVALID_VOLUME_LABEL: NTSTATUS = 0xC000_0086_u32.cast_signed();

/// `FileStandardInformation`.
pub(crate) const FILE_STANDARD_INFORMATION_CLASS: i32 = 5;
/// `FileNamesInformation`.
const FILE_NAMES_INFORMATION_CLASS: i32 = 12;
/// `FileFsLabelInformation`.
const FILE_FS_LABEL_INFORMATION: u32 = 2;
/// `FileFsAttributeInformation`.
const FILE_FS_ATTRIBUTE_INFORMATION: u32 = 5;
/// `IRP_MN_QUERY_DIRECTORY`.
const IRP_MN_QUERY_DIRECTORY: u8 = 0x01;
/// `IRP_MN_USER_FS_REQUEST`.
const IRP_MN_USER_FS_REQUEST: u8 = 0x00;
/// `IRP_MN_LOCK`.
const IRP_MN_LOCK: u8 = 0x01;
/// `IRP_MN_UNLOCK_SINGLE`.
const IRP_MN_UNLOCK_SINGLE: u8 = 0x02;
/// `IRP_MN_QUERY_ALL_DATA` (WMI).
const IRP_MN_QUERY_ALL_DATA: u8 = 0x00;
/// `IRP_MN_QUERY_REMOVE_DEVICE`.
pub(crate) const IRP_MN_QUERY_REMOVE_DEVICE: u8 = 0x01;
/// `IRP_MN_CANCEL_REMOVE_DEVICE`.
pub(crate) const IRP_MN_CANCEL_REMOVE_DEVICE: u8 = 0x03;
/// `FSCTL_IS_VOLUME_MOUNTED`: `CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 10, METHOD_BUFFERED, 0)`.
pub(crate) const FSCTL_IS_VOLUME_MOUNTED: u32 = 0x0009_0028;
/// `FSCTL_GET_REPARSE_POINT`: `CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 42, METHOD_BUFFERED, 0)`.
pub(crate) const FSCTL_GET_REPARSE_POINT: u32 = 0x0009_00A8;
/// `OWNER_SECURITY_INFORMATION`.
pub(crate) const OWNER_SECURITY_INFORMATION: u32 = 0x1;
/// The size of `FILE_STANDARD_INFORMATION` on x64.
const FILE_STANDARD_INFORMATION_SIZE: usize = 24;
/// The same as a `ULONG` length.
const FILE_STANDARD_INFORMATION_LENGTH: u32 = 24;
/// The cluster size allocation sizes are rounded to.
const CLUSTER: u64 = 4096;

/// The file-system step of an operation on an open file: the state, the operation block's
/// address and the file's handle in its file system.
pub(super) type FileStep<'a> =
    &'a mut dyn FnMut(&IoState, usize, Option<FsHandle>) -> (NTSTATUS, usize);

/// The names of the pre- and post-operation callbacks of `major`, as reports show them.
pub(super) fn callback_names(major: u8) -> (&'static str, &'static str) {
    use vigil_sys as s;
    match major {
        s::IRP_MJ_CREATE_NAMED_PIPE => ("PreCreateNamedPipe", "PostCreateNamedPipe"),
        s::IRP_MJ_READ => ("PreRead", "PostRead"),
        s::IRP_MJ_QUERY_INFORMATION => ("PreQueryInformation", "PostQueryInformation"),
        s::IRP_MJ_QUERY_EA => ("PreQueryEa", "PostQueryEa"),
        s::IRP_MJ_SET_EA => ("PreSetEa", "PostSetEa"),
        s::IRP_MJ_FLUSH_BUFFERS => ("PreFlushBuffers", "PostFlushBuffers"),
        s::IRP_MJ_QUERY_VOLUME_INFORMATION => {
            ("PreQueryVolumeInformation", "PostQueryVolumeInformation")
        }
        s::IRP_MJ_SET_VOLUME_INFORMATION => ("PreSetVolumeInformation", "PostSetVolumeInformation"),
        s::IRP_MJ_DIRECTORY_CONTROL => ("PreDirectoryControl", "PostDirectoryControl"),
        s::IRP_MJ_FILE_SYSTEM_CONTROL => ("PreFileSystemControl", "PostFileSystemControl"),
        s::IRP_MJ_DEVICE_CONTROL => ("PreDeviceControl", "PostDeviceControl"),
        s::IRP_MJ_INTERNAL_DEVICE_CONTROL => {
            ("PreInternalDeviceControl", "PostInternalDeviceControl")
        }
        s::IRP_MJ_SHUTDOWN => ("PreShutdown", "PostShutdown"),
        s::IRP_MJ_LOCK_CONTROL => ("PreLockControl", "PostLockControl"),
        s::IRP_MJ_CREATE_MAILSLOT => ("PreCreateMailslot", "PostCreateMailslot"),
        s::IRP_MJ_QUERY_SECURITY => ("PreQuerySecurity", "PostQuerySecurity"),
        s::IRP_MJ_SET_SECURITY => ("PreSetSecurity", "PostSetSecurity"),
        s::IRP_MJ_SYSTEM_CONTROL => ("PreSystemControl", "PostSystemControl"),
        s::IRP_MJ_QUERY_QUOTA => ("PreQueryQuota", "PostQueryQuota"),
        s::IRP_MJ_SET_QUOTA => ("PreSetQuota", "PostSetQuota"),
        s::IRP_MJ_PNP => ("PrePnp", "PostPnp"),
        s::IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION => (
            "PreAcquireForSectionSynchronization",
            "PostAcquireForSectionSynchronization",
        ),
        s::IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION => (
            "PreReleaseForSectionSynchronization",
            "PostReleaseForSectionSynchronization",
        ),
        s::IRP_MJ_ACQUIRE_FOR_MOD_WRITE => ("PreAcquireForModWrite", "PostAcquireForModWrite"),
        s::IRP_MJ_RELEASE_FOR_MOD_WRITE => ("PreReleaseForModWrite", "PostReleaseForModWrite"),
        s::IRP_MJ_ACQUIRE_FOR_CC_FLUSH => ("PreAcquireForCcFlush", "PostAcquireForCcFlush"),
        s::IRP_MJ_RELEASE_FOR_CC_FLUSH => ("PreReleaseForCcFlush", "PostReleaseForCcFlush"),
        s::IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE => {
            ("PreFastIoCheckIfPossible", "PostFastIoCheckIfPossible")
        }
        s::IRP_MJ_MDL_READ => ("PreMdlRead", "PostMdlRead"),
        s::IRP_MJ_MDL_READ_COMPLETE => ("PreMdlReadComplete", "PostMdlReadComplete"),
        s::IRP_MJ_PREPARE_MDL_WRITE => ("PrePrepareMdlWrite", "PostPrepareMdlWrite"),
        s::IRP_MJ_MDL_WRITE_COMPLETE => ("PreMdlWriteComplete", "PostMdlWriteComplete"),
        _ => ("PreOperation", "PostOperation"),
    }
}

/// Reports `FLT_PREOP_PENDING` from the pre-operation callback of an operation that is not
/// IRP-based: "only for IRP-based I/O operations"
/// (<https://learn.microsoft.com/windows-hardware/drivers/ifs/pending-an-i-o-operation-in-a-preoperation-callback-routine>).
pub(super) fn report_pended_non_irp(k: &crate::kernel::Kernel, pre_name: &'static str) {
    let previous = state::with(|s| s.callback.replace(pre_name));
    k.violation(
        ViolationKind::CallbackStatus,
        "FLT_PREOP_PENDING only for IRP-based operations (not fast I/O or FsFilter callbacks)",
        format!("{pre_name} returned FLT_PREOP_PENDING for an operation that is not IRP-based"),
    );
    state::with(|s| s.callback.set(previous));
}

/// The address of the parameter union of the operation block at `base`.
pub(super) fn parameters_at(base: usize) -> usize {
    base + offset_of!(OperationBlock, iopb) + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters)
}

/// The buffer an MDL describes (kernel-sim's memory is flat).
pub(super) fn mdl_buffer(mdl: usize) -> usize {
    let value = guest::read(mdl as *const MDL);
    value.StartVa as usize + value.ByteOffset as usize
}

/// The buffer a transfer goes to or comes from, when the file system can touch `length`
/// bytes of it: the MDL's if the parameters carry one, else `buffer`. `None` when the MDL is no
/// live MDL or the bytes are not mapped readable (special pool a filter freed, for one): the
/// file system then leaves the contents alone rather than fault kernel-sim itself (such a
/// use-after-free is the filter's bug; it only surfaces here as data not transferred).
pub(super) fn transfer_buffer(
    k: &Kernel,
    mdl: PVOID,
    buffer: PVOID,
    length: usize,
) -> Option<usize> {
    let address = if mdl.is_null() {
        buffer as usize
    } else {
        if !crate::kernel::lock(&k.objects)
            .mdls
            .contains_key(&(mdl as usize))
        {
            return None;
        }
        mdl_buffer(mdl as usize)
    };
    (address != 0 && mapped(address, length)).then_some(address)
}

/// Whether the `length` bytes at `address` can be read without faulting: the kernel copies
/// them (`process_vm_readv` on this process answers `EFAULT` for a page that is not mapped
/// readable, where a plain read would crash).
fn mapped(address: usize, length: usize) -> bool {
    if length == 0 {
        return true;
    }
    let mut copy = vec![0u8; length];
    let local = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: length,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: length,
    };
    // SAFETY: getpid has no preconditions and cannot fail.
    let me = unsafe { libc::getpid() };
    // SAFETY: `local` describes `copy`, writable for `length` bytes; the kernel checks `remote`
    // and reports a fault as EFAULT instead of delivering a signal; one vector each.
    let copied =
        unsafe { libc::process_vm_readv(me, &raw const local, 1, &raw const remote, 1, 0) };
    usize::try_from(copied).is_ok_and(|n| n == length)
}

/// The `FLTFL_OPERATION_REGISTRATION_SKIP_*` flags with which a registration does not see this
/// operation (`FLT_OPERATION_REGISTRATION`'s page and "Operations That Can Be IRP-Based or Fast
/// I/O", <https://learn.microsoft.com/windows-hardware/drivers/ifs/operations-that-can-be-irp-based-or-fast-i-o>):
/// paging I/O (IRP-based only); cached reads and writes, which every fast I/O read and write
/// is.
pub(super) fn skipped_by(major: u8, path: Path, irp_flags: u32) -> u32 {
    let mut skip = 0;
    if path == Path::Irp && irp_flags & IRP_PAGING_IO != 0 {
        skip |= FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO;
    }
    let cached = match path {
        Path::FastIo => true,
        Path::Irp => irp_flags & (IRP_NOCACHE | IRP_PAGING_IO) == 0,
        Path::FsFilter => false,
    };
    if (major == IRP_MJ_READ || major == vigil_sys::IRP_MJ_WRITE) && cached {
        skip |= FLTFL_OPERATION_REGISTRATION_SKIP_CACHED_IO;
    }
    skip
}

/// Whether a filter may refuse `major` with `FLT_PREOP_DISALLOW_FSFILTER_IO` or
/// `FLT_POSTOP_DISALLOW_FSFILTER_IO`: `IRP_MJ_QUERY_OPEN` only.
pub(super) fn fs_filter_io_disallowable(major: u8) -> bool {
    major == vigil_sys::IRP_MJ_QUERY_OPEN
}

/// Marks the operation whose callback data is at `data` as refused by its post-operation
/// callback: its issuer takes the slow path.
pub(super) fn mark_disallowed(data: usize) {
    let status_at = data + std::mem::offset_of!(vigil_sys::FLT_CALLBACK_DATA, IoStatus);
    guest::write(status_at as *mut NTSTATUS, STATUS_FLT_DISALLOW_FAST_IO);
}

/// Whether `major` creates a named pipe or a mailslot.
pub(super) fn is_pipe_or_mailslot_create(major: u8) -> bool {
    major == vigil_sys::IRP_MJ_CREATE_NAMED_PIPE || major == vigil_sys::IRP_MJ_CREATE_MAILSLOT
}

/// The major of a create of `target`; for a pipe or mailslot, `parameters` become its
/// `CreatePipe`/`CreateMailslot` member: `SecurityContext` (set at dispatch), `Options` (the
/// create's), `Reserved` and `ShareAccess` zero, `Parameters` the create parameters' address.
pub(super) fn create_major(target: &CreateTarget, parameters: &mut FLT_PARAMETERS) -> u8 {
    match target {
        CreateTarget::Pipe {
            major,
            parameters: at,
            options,
            ..
        } => {
            *parameters = FLT_PARAMETERS {
                Others: [
                    std::ptr::null_mut(),
                    *options as usize as PVOID,
                    std::ptr::null_mut(),
                    *at as PVOID,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                ],
            };
            *major
        }
        _ => vigil_sys::IRP_MJ_CREATE,
    }
}

/// The file system side of a pipe or mailslot create: only NPFS creates pipes and only MSFS
/// mailslots.
pub(super) fn create_pipe_or_mailslot(
    volume: &VolumeRecord,
    path: &str,
    major: u8,
    options: u32,
) -> Result<(FsHandle, usize), NTSTATUS> {
    let served = match volume.kind {
        VolumeKind::NamedPipe => major == vigil_sys::IRP_MJ_CREATE_NAMED_PIPE,
        VolumeKind::Mailslot => major == vigil_sys::IRP_MJ_CREATE_MAILSLOT,
        _ => false,
    };
    if !served {
        return Err(status::INVALID_DEVICE_REQUEST);
    }
    fs_mut(volume).create(path, options >> 24, options & 0x00FF_FFFF)
}

/// The size of `NAMED_PIPE_CREATE_PARAMETERS` on x64.
const NAMED_PIPE_CREATE_PARAMETERS_SIZE: usize = 40;
/// The size of `MAILSLOT_CREATE_PARAMETERS` on x64.
const MAILSLOT_CREATE_PARAMETERS_SIZE: usize = 24;
/// `FILE_CREATE`.
const FILE_CREATE: u32 = 2;

/// `FILE_STANDARD_INFORMATION` as a query returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStandard {
    /// `AllocationSize` (the size rounded up to whole clusters).
    pub allocation_size: u64,
    /// `EndOfFile`.
    pub end_of_file: u64,
    /// `NumberOfLinks`.
    pub links: u32,
    /// `DeletePending`.
    pub delete_pending: bool,
    /// `Directory`.
    pub directory: bool,
}

/// The volume kind and file-system handle of an operation's file, under the state's lock.
pub(super) fn volume_and_handle(
    io: &IoState,
    file: &FileHandle,
    handle: Option<FsHandle>,
) -> Option<(VolumeKind, FsHandle)> {
    Some((io.volumes.get(file.volume.0)?.kind, handle?))
}

/// A self-relative security descriptor owned by SYSTEM (S-1-5-18), 32 bytes.
fn system_owned_descriptor() -> Vec<u8> {
    let mut sd = vec![1u8, 0, 0x00, 0x80]; // Revision 1, Sbz1, Control SE_SELF_RELATIVE
    sd.extend_from_slice(&20u32.to_le_bytes()); // Owner at 20
    sd.extend_from_slice(&[0; 12]); // Group, Sacl, Dacl
    sd.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 5]); // S-1-5
    sd.extend_from_slice(&18u32.to_le_bytes()); // -18
    sd
}

/// Whether volumes of `kind` keep security descriptors.
fn has_security(kind: VolumeKind) -> bool {
    !matches!(
        kind,
        VolumeKind::Fat | VolumeKind::ExFat | VolumeKind::NamedPipe | VolumeKind::Mailslot
    )
}

/// Whether volumes of `kind` keep EAs.
fn has_eas(kind: VolumeKind) -> bool {
    !matches!(
        kind,
        VolumeKind::ExFat | VolumeKind::NamedPipe | VolumeKind::Mailslot
    )
}

/// The file system name `FileFsAttributeInformation` gives, and its attribute flags.
fn file_system_name(kind: VolumeKind) -> (&'static str, u32) {
    // FILE_CASE_PRESERVED_NAMES | FILE_UNICODE_ON_DISK, plus FILE_PERSISTENT_ACLS and
    // FILE_SUPPORTS_REPARSE_POINTS where the file system has them.
    match kind {
        VolumeKind::Ntfs | VolumeKind::Network | VolumeKind::Lanman => ("NTFS", 0x0000_008E),
        VolumeKind::Refs => ("ReFS", 0x0000_008E),
        VolumeKind::Fat => ("FAT", 0x0000_0006),
        VolumeKind::ExFat => ("exFAT", 0x0000_0006),
        VolumeKind::NamedPipe => ("NPFS", 0x0000_0006),
        VolumeKind::Mailslot => ("MSFS", 0x0000_0006),
    }
}

/// UTF-16LE bytes of `text`.
pub(super) fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `FILE_NAMES_INFORMATION` entries for `names` in at most `length` bytes: the bytes and
/// whether every name fitted.
fn names_information(names: &[String], length: usize) -> (Vec<u8>, bool) {
    let mut out: Vec<u8> = Vec::new();
    let mut last_entry: Option<usize> = None;
    for (index, name) in names.iter().enumerate() {
        let name = utf16(name);
        let start = out.len().next_multiple_of(8);
        let end = start + 12 + name.len();
        if end > length {
            return (out, false);
        }
        out.resize(start, 0);
        if let Some(last) = last_entry {
            let next = u32::try_from(start - last).unwrap_or(0);
            out[last..last + 4].copy_from_slice(&next.to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&u32::try_from(index).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&name);
        last_entry = Some(start);
    }
    (out, true)
}

/// The entries of a chain of records laid out as `FILE_NAMES_INFORMATION` and
/// `FILE_NOTIFY_INFORMATION` both are (`NextEntryOffset`, a word, the name's length in bytes,
/// the name): the word (`FileIndex`, `Action`) and the name of each.
pub(super) fn named_entries(bytes: &[u8]) -> Vec<(u32, String)> {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map_or(0, |w| u32::from_le_bytes(w.try_into().unwrap_or([0; 4])))
    };
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let (next, name_length) = (word(at) as usize, word(at + 8) as usize);
        let end = (at + 12 + name_length).min(bytes.len());
        let units: Vec<u16> = bytes[at + 12..end]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        entries.push((word(at + 4), String::from_utf16_lossy(&units)));
        if next == 0 {
            break;
        }
        at += next;
    }
    entries
}

impl Io {
    /// `IRP_MJ_CREATE_NAMED_PIPE` of `path` on a named-pipe volume: a byte-stream pipe,
    /// one instance, 4 KB quotas, no timeout (`NAMED_PIPE_CREATE_PARAMETERS`).
    ///
    /// # Errors
    ///
    /// As a create; `STATUS_INVALID_DEVICE_REQUEST` on a volume that is not NPFS.
    pub fn create_named_pipe(&self, volume: VolumeId, path: &str) -> Result<FileHandle, NTSTATUS> {
        let parameters = GuestAlloc::zeroed(NAMED_PIPE_CREATE_PARAMETERS_SIZE);
        let mut bytes = Vec::with_capacity(NAMED_PIPE_CREATE_PARAMETERS_SIZE);
        // NamedPipeType (byte stream), ReadMode, CompletionMode (queue), MaximumInstances,
        // InboundQuota, OutboundQuota, DefaultTimeout, TimeoutSpecified.
        for value in [0u32, 0, 0, 1, 4096, 4096] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        guest::write_bytes(parameters.as_ptr(), &bytes);
        self.create_special(
            volume,
            path,
            vigil_sys::IRP_MJ_CREATE_NAMED_PIPE,
            &parameters,
        )
    }

    /// `IRP_MJ_CREATE_MAILSLOT` of `path` on a mailslot volume: no quota, 424-byte messages,
    /// no read timeout (`MAILSLOT_CREATE_PARAMETERS`).
    ///
    /// # Errors
    ///
    /// As a create; `STATUS_INVALID_DEVICE_REQUEST` on a volume that is not MSFS.
    pub fn create_mailslot(&self, volume: VolumeId, path: &str) -> Result<FileHandle, NTSTATUS> {
        let parameters = GuestAlloc::zeroed(MAILSLOT_CREATE_PARAMETERS_SIZE);
        let mut bytes = 0u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&424u32.to_le_bytes());
        guest::write_bytes(parameters.as_ptr(), &bytes);
        self.create_special(volume, path, vigil_sys::IRP_MJ_CREATE_MAILSLOT, &parameters)
    }

    fn create_special(
        &self,
        volume: VolumeId,
        path: &str,
        major: u8,
        parameters: &GuestAlloc,
    ) -> Result<FileHandle, NTSTATUS> {
        let name: Vec<u8> = utf16(path);
        self.create_object(
            volume,
            &name,
            path.to_owned(),
            0,
            &CreateTarget::Pipe {
                path: path.to_owned(),
                major,
                parameters: parameters.address(),
                options: FILE_CREATE << 24,
            },
            (FILE_CREATE, 0, 0),
        )
    }

    /// Runs the status callbacks (`FltRequestOperationStatusCallback`) asked for on the
    /// operation at `at`, with the file system's `status`, at the pre's IRQL (at most
    /// APC_LEVEL).
    pub(super) fn run_status_callbacks(&self, at: &BlockAddresses, status: NTSTATUS, irql: u8) {
        type StatusCallback =
            unsafe extern "win64" fn(*const FLT_RELATED_OBJECTS, *mut Iopb, NTSTATUS, PVOID);
        let requests =
            crate::fltmgr::operation_requests::take_status_callbacks(&self.kernel, at.data);
        for request in requests {
            // SAFETY: `callback` is the PFLT_GET_OPERATION_STATUS_CALLBACK the driver passed to
            // FltRequestOperationStatusCallback during this operation's pre-operation callback;
            // its image is mapped while the operation is in flight.
            let callback: StatusCallback = unsafe { std::mem::transmute(request.callback) };
            let snapshot = request.snapshot.as_ptr::<Iopb>();
            // SAFETY: as above; the arguments point into this operation's block and a snapshot
            // alive for the call.
            let _ = self.call_as(
                "OperationStatusCallback",
                irql.min(vigil_sys::APC_LEVEL),
                || unsafe {
                    callback(
                        at.objects as *const FLT_RELATED_OBJECTS,
                        snapshot,
                        status,
                        request.context as PVOID,
                    );
                },
            );
        }
    }

    /// Issues `major`/`minor` on `file` by `path` at `irql` with `parameters`, the file
    /// system answering with `step`; `after_cleanup` lets it run on a cleaned-up file (paging
    /// I/O and the operations the memory manager issues).
    #[expect(
        clippy::too_many_arguments,
        reason = "one request, spelled out by each operation"
    )]
    pub(super) fn on_file(
        &self,
        file: &FileHandle,
        (major, minor): (u8, u8),
        path: Path,
        (irql, irp_flags): (u8, u32),
        parameters: FLT_PARAMETERS,
        after_cleanup: bool,
        step: FileStep<'_>,
    ) -> (NTSTATUS, usize) {
        let handle = match self.file_state(file, after_cleanup) {
            Ok(handle) => handle,
            Err(status) => return (status, 0),
        };
        let mut fs_step = |io: &IoState, base: usize| step(io, base, handle);
        self.issue(
            Request {
                volume: file.volume,
                file_object: file.file_object,
                major,
                minor,
                irp_flags,
                irql,
                parameters,
                desired_access: 0,
                path,
            },
            &mut fs_step,
        )
    }

    /// [`on_file`](Self::on_file) for the common case: an IRP with no minor function, at
    /// PASSIVE_LEVEL, no IRP flags, on a handle not yet cleaned up.
    fn irp_on_file(
        &self,
        file: &FileHandle,
        major: u8,
        parameters: FLT_PARAMETERS,
        step: FileStep<'_>,
    ) -> (NTSTATUS, usize) {
        self.on_file(
            file,
            (major, 0),
            Path::Irp,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            step,
        )
    }

    /// `IRP_MJ_READ` of at most `length` bytes at `offset` (a cached read by the requestor,
    /// at `PASSIVE_LEVEL`): the bytes read.
    ///
    /// # Errors
    ///
    /// The operation's failure status (`STATUS_END_OF_FILE`, a filter's status...).
    pub fn read(&self, file: &FileHandle, offset: u64, length: u32) -> Result<Vec<u8>, NTSTATUS> {
        self.read_by(file, offset, length, (Path::Irp, 0))
    }

    /// `IRP_MJ_READ` as paging I/O (`IRP_PAGING_IO | IRP_NOCACHE`, kernel-mode requestor):
    /// not seen by operations registered with `FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO`.
    ///
    /// # Errors
    ///
    /// As [`Io::read`].
    pub fn read_paging(
        &self,
        file: &FileHandle,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, NTSTATUS> {
        self.read_by(
            file,
            offset,
            length,
            (Path::Irp, IRP_PAGING_IO | IRP_NOCACHE),
        )
    }

    /// A fast I/O read (`FLTFL_CALLBACK_DATA_FAST_IO_OPERATION`), reissued as an IRP when a
    /// filter returns `FLT_PREOP_DISALLOW_FASTIO`, as the I/O manager does.
    ///
    /// # Errors
    ///
    /// As [`Io::read`].
    pub fn fast_io_read(
        &self,
        file: &FileHandle,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, NTSTATUS> {
        match self.read_by(file, offset, length, (Path::FastIo, 0)) {
            Err(STATUS_FLT_DISALLOW_FAST_IO) => self.read(file, offset, length),
            other => other,
        }
    }

    pub(super) fn read_by(
        &self,
        file: &FileHandle,
        offset: u64,
        length: u32,
        (path, irp_flags): (Path, u32),
    ) -> Result<Vec<u8>, NTSTATUS> {
        let kernel = &self.kernel;
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        // Paging I/O comes with the memory manager's MDL for the pages (freed at completion,
        // as the I/O system frees an IRP's MDL).
        let paging_mdl = if irp_flags & IRP_PAGING_IO != 0 && length > 0 {
            crate::ntoskrnl::mdl::allocate(
                &self.kernel,
                "the memory manager",
                buffer.address(),
                length,
            )
        } else {
            0
        };
        let parameters = FLT_PARAMETERS {
            Read: FLT_PARAMETERS_READ {
                Length: length,
                PointerAlignment1: 0,
                Key: 0,
                ByteOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                ReadBuffer: buffer.as_ptr(),
                MdlAddress: paging_mdl as PVOID,
            },
        };
        let reader = self.requestor.pid;
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_READ);
            let Some((_, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            let offset = u64::try_from(p.ByteOffset).unwrap_or(0);
            match fs_of(volume).read_data(handle, offset, p.Length, reader) {
                Ok(bytes) => match transfer_buffer(kernel, p.MdlAddress, p.ReadBuffer, bytes.len())
                {
                    Some(target) => {
                        guest::write_bytes(target as *mut u8, &bytes);
                        (STATUS_SUCCESS, bytes.len())
                    }
                    None => (vigil_sys::STATUS_INVALID_USER_BUFFER, 0),
                },
                Err(status) => (status, 0),
            }
        };
        let paging = irp_flags & IRP_PAGING_IO != 0;
        let (status, information) = self.on_file(
            file,
            (IRP_MJ_READ, 0),
            path,
            (PASSIVE_LEVEL, irp_flags),
            parameters,
            paging,
            &mut step,
        );
        if NT_SUCCESS(status) {
            Ok(guest::read_bytes(
                buffer.as_ptr(),
                information.min(length as usize),
            ))
        } else {
            Err(status)
        }
    }

    /// `IRP_MJ_QUERY_INFORMATION` for `FileStandardInformation`.
    ///
    /// # Errors
    ///
    /// The operation's failure status.
    pub fn query_standard_information(&self, file: &FileHandle) -> Result<FileStandard, NTSTATUS> {
        self.query_standard_by(file, Path::Irp)
    }

    /// The same as a fast I/O query (`FastIoQueryStandardInfo`), reissued as an IRP when a
    /// filter disallows it.
    ///
    /// # Errors
    ///
    /// The operation's failure status.
    pub fn fast_io_query_standard_information(
        &self,
        file: &FileHandle,
    ) -> Result<FileStandard, NTSTATUS> {
        match self.query_standard_by(file, Path::FastIo) {
            Err(STATUS_FLT_DISALLOW_FAST_IO) => self.query_standard_information(file),
            other => other,
        }
    }

    fn query_standard_by(&self, file: &FileHandle, path: Path) -> Result<FileStandard, NTSTATUS> {
        let buffer = GuestAlloc::zeroed(FILE_STANDARD_INFORMATION_SIZE);
        let parameters = FLT_PARAMETERS {
            QueryFileInformation: FLT_PARAMETERS_QUERY_FILE_INFORMATION {
                Length: FILE_STANDARD_INFORMATION_LENGTH,
                PointerAlignment1: 0,
                FileInformationClass: FILE_STANDARD_INFORMATION_CLASS,
                InfoBuffer: buffer.as_ptr(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p =
                guest::read(parameters_at(base) as *const FLT_PARAMETERS_QUERY_FILE_INFORMATION);
            let Some((_, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if p.FileInformationClass != FILE_STANDARD_INFORMATION_CLASS || p.InfoBuffer.is_null() {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            if (p.Length as usize) < FILE_STANDARD_INFORMATION_SIZE {
                return (STATUS_INFO_LENGTH_MISMATCH, 0);
            }
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            match fs_of(volume).standard(handle) {
                Ok(standard) => {
                    let mut bytes = Vec::with_capacity(FILE_STANDARD_INFORMATION_SIZE);
                    bytes.extend_from_slice(&standard.size.next_multiple_of(CLUSTER).to_le_bytes());
                    bytes.extend_from_slice(&standard.size.to_le_bytes());
                    bytes.extend_from_slice(&standard.links.to_le_bytes());
                    bytes.push(u8::from(standard.delete_pending));
                    bytes.push(u8::from(standard.directory));
                    bytes.resize(FILE_STANDARD_INFORMATION_SIZE, 0);
                    guest::write_bytes(p.InfoBuffer.cast(), &bytes);
                    (STATUS_SUCCESS, FILE_STANDARD_INFORMATION_SIZE)
                }
                Err(status) => (status, 0),
            }
        };
        let (status, _) = self.on_file(
            file,
            (IRP_MJ_QUERY_INFORMATION, 0),
            path,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        );
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        let bytes = guest::read_bytes(buffer.as_ptr(), FILE_STANDARD_INFORMATION_SIZE);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Ok(FileStandard {
            allocation_size: u64_at(0),
            end_of_file: u64_at(8),
            links: u32::from_le_bytes(bytes[16..20].try_into().unwrap_or([0; 4])),
            delete_pending: bytes[20] != 0,
            directory: bytes[21] != 0,
        })
    }

    /// `IRP_MJ_SET_EA` with one `FILE_FULL_EA_INFORMATION` entry, `name` = `value`.
    pub fn set_ea(&self, file: &FileHandle, name: &str, value: &[u8]) -> NTSTATUS {
        let kernel = &self.kernel;
        let (Ok(name_length), Ok(value_length)) =
            (u8::try_from(name.len()), u16::try_from(value.len()))
        else {
            return STATUS_INVALID_PARAMETER;
        };
        let mut ea = vec![0u8; 4];
        ea.push(0);
        ea.push(name_length);
        ea.extend_from_slice(&value_length.to_le_bytes());
        ea.extend_from_slice(name.as_bytes());
        ea.push(0);
        ea.extend_from_slice(value);
        let buffer = GuestAlloc::zeroed(ea.len());
        guest::write_bytes(buffer.as_ptr(), &ea);
        let parameters = FLT_PARAMETERS {
            SetEa: FLT_PARAMETERS_SET_EA {
                Length: u32::try_from(ea.len()).unwrap_or(u32::MAX),
                EaBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_SET_EA);
            let Some((kind, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if !has_eas(kind) {
                return (STATUS_EAS_NOT_SUPPORTED, 0);
            }
            let Some(source) = transfer_buffer(kernel, p.MdlAddress, p.EaBuffer, p.Length as usize)
            else {
                return (vigil_sys::STATUS_INVALID_USER_BUFFER, 0);
            };
            if p.Length < 9 {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let bytes = guest::read_bytes(source as *const u8, p.Length as usize);
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            match fs_of(volume).set_eas(handle, &bytes) {
                Ok(()) => (STATUS_SUCCESS, 0),
                Err(status) => (status, 0),
            }
        };
        self.irp_on_file(file, IRP_MJ_SET_EA, parameters, &mut step)
            .0
    }

    /// `IRP_MJ_QUERY_EA` of every EA into a buffer of `length` bytes: the
    /// `FILE_FULL_EA_INFORMATION` entries.
    ///
    /// # Errors
    ///
    /// `STATUS_NO_EAS_ON_FILE`, `STATUS_BUFFER_TOO_SMALL`, `STATUS_EAS_NOT_SUPPORTED`, a
    /// filter's status.
    pub fn query_ea(&self, file: &FileHandle, length: u32) -> Result<Vec<u8>, NTSTATUS> {
        let kernel = &self.kernel;
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        let parameters = FLT_PARAMETERS {
            QueryEa: FLT_PARAMETERS_QUERY_EA {
                Length: length,
                EaList: std::ptr::null_mut(),
                EaListLength: 0,
                PointerAlignment1: 0,
                EaIndex: 0,
                EaBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_QUERY_EA);
            let Some((kind, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if !has_eas(kind) {
                return (STATUS_EAS_NOT_SUPPORTED, 0);
            }
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            match fs_of(volume).eas(handle) {
                Ok(eas) if eas.len() > p.Length as usize => (STATUS_BUFFER_TOO_SMALL, 0),
                Ok(eas) => match transfer_buffer(kernel, p.MdlAddress, p.EaBuffer, eas.len()) {
                    Some(target) => {
                        guest::write_bytes(target as *mut u8, &eas);
                        (STATUS_SUCCESS, eas.len())
                    }
                    None => (vigil_sys::STATUS_INVALID_USER_BUFFER, 0),
                },
                Err(status) => (status, 0),
            }
        };
        let (status, information) = self.irp_on_file(file, IRP_MJ_QUERY_EA, parameters, &mut step);
        if NT_SUCCESS(status) {
            Ok(guest::read_bytes(
                buffer.as_ptr(),
                information.min(length as usize),
            ))
        } else {
            Err(status)
        }
    }

    /// `IRP_MJ_FLUSH_BUFFERS` (nothing is cached: it succeeds).
    pub fn flush(&self, file: &FileHandle) -> NTSTATUS {
        self.simple_on_file(file, (IRP_MJ_FLUSH_BUFFERS, 0), |_| STATUS_SUCCESS)
    }

    /// An operation without parameters on `file`, answered by `answer(volume kind)`.
    pub(super) fn simple_on_file(
        &self,
        file: &FileHandle,
        (major, minor): (u8, u8),
        answer: impl Fn(VolumeKind) -> NTSTATUS,
    ) -> NTSTATUS {
        let mut step =
            |io: &IoState, _base: usize, handle: Option<FsHandle>| match volume_and_handle(
                io, file, handle,
            ) {
                Some((kind, _)) => (answer(kind), 0),
                None => (status::INVALID_DEVICE_REQUEST, 0),
            };
        self.on_file(
            file,
            (major, minor),
            Path::Irp,
            (PASSIVE_LEVEL, 0),
            // SAFETY: FLT_PARAMETERS is plain data; these operations have no parameters.
            unsafe { std::mem::zeroed() },
            false,
            &mut step,
        )
        .0
    }

    /// `IRP_MJ_QUERY_VOLUME_INFORMATION` for `FileFsAttributeInformation` into `length`
    /// bytes: the file system's name.
    ///
    /// # Errors
    ///
    /// `STATUS_INFO_LENGTH_MISMATCH`, `STATUS_BUFFER_OVERFLOW` (name cut), a filter's status.
    pub fn query_file_system_name(
        &self,
        file: &FileHandle,
        length: u32,
    ) -> Result<String, NTSTATUS> {
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        let parameters = FLT_PARAMETERS {
            QueryVolumeInformation: FLT_PARAMETERS_VOLUME_INFORMATION {
                Length: length,
                PointerAlignment1: 0,
                FsInformationClass: FILE_FS_ATTRIBUTE_INFORMATION,
                VolumeBuffer: buffer.as_ptr(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_VOLUME_INFORMATION);
            let Some((kind, _)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if p.FsInformationClass != FILE_FS_ATTRIBUTE_INFORMATION || p.VolumeBuffer.is_null() {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            if p.Length < 12 {
                return (STATUS_INFO_LENGTH_MISMATCH, 0);
            }
            let (name, attributes) = file_system_name(kind);
            let name = utf16(name);
            let room = (p.Length as usize - 12).min(name.len());
            let mut bytes = attributes.to_le_bytes().to_vec();
            bytes.extend_from_slice(&255i32.to_le_bytes());
            bytes.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_le_bytes());
            bytes.extend_from_slice(&name[..room]);
            guest::write_bytes(p.VolumeBuffer.cast(), &bytes);
            let status = if room < name.len() {
                STATUS_BUFFER_OVERFLOW
            } else {
                STATUS_SUCCESS
            };
            (status, bytes.len())
        };
        let (status, information) =
            self.irp_on_file(file, IRP_MJ_QUERY_VOLUME_INFORMATION, parameters, &mut step);
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        let bytes = guest::read_bytes(buffer.as_ptr(), information.min(length as usize));
        if bytes.len() < 12 {
            return Err(STATUS_INFO_LENGTH_MISMATCH);
        }
        let units: Vec<u16> = bytes[12..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&units))
    }

    /// `IRP_MJ_SET_VOLUME_INFORMATION` for `FileFsLabelInformation`: the volume's label.
    pub fn set_volume_label(&self, file: &FileHandle, label: &str) -> NTSTATUS {
        let name = utf16(label);
        let mut info = u32::try_from(name.len())
            .unwrap_or(0)
            .to_le_bytes()
            .to_vec();
        info.extend_from_slice(&name);
        let buffer = GuestAlloc::zeroed(info.len());
        guest::write_bytes(buffer.as_ptr(), &info);
        let parameters = FLT_PARAMETERS {
            SetVolumeInformation: FLT_PARAMETERS_VOLUME_INFORMATION {
                Length: u32::try_from(info.len()).unwrap_or(u32::MAX),
                PointerAlignment1: 0,
                FsInformationClass: FILE_FS_LABEL_INFORMATION,
                VolumeBuffer: buffer.as_ptr(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_VOLUME_INFORMATION);
            let Some((kind, _)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if matches!(kind, VolumeKind::NamedPipe | VolumeKind::Mailslot) {
                return (status::INVALID_DEVICE_REQUEST, 0);
            }
            if p.FsInformationClass != FILE_FS_LABEL_INFORMATION
                || p.VolumeBuffer.is_null()
                || p.Length < 4
            {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let bytes = guest::read_bytes(p.VolumeBuffer.cast(), p.Length as usize);
            let label_length = u32::from_le_bytes(bytes[..4].try_into().unwrap_or([0; 4])) as usize;
            // A label of at most 32 characters (NTFS's limit), in the buffer.
            if label_length > bytes.len() - 4
                || !label_length.is_multiple_of(2)
                || label_length > 64
            {
                return (STATUS_INVALID_VOLUME_LABEL, 0);
            }
            let units: Vec<u16> = bytes[4..4 + label_length]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            fs_of(volume).set_label(&String::from_utf16_lossy(&units));
            (STATUS_SUCCESS, 0)
        };
        self.irp_on_file(file, IRP_MJ_SET_VOLUME_INFORMATION, parameters, &mut step)
            .0
    }

    /// `IRP_MJ_DIRECTORY_CONTROL`/`IRP_MN_QUERY_DIRECTORY` for `FileNamesInformation` on the
    /// open directory `directory`, one query into `length` bytes: the names.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` for a file, `STATUS_BUFFER_OVERFLOW` when not even one
    /// entry fits, a filter's status.
    pub fn query_directory(
        &self,
        directory: &FileHandle,
        length: u32,
    ) -> Result<Vec<String>, NTSTATUS> {
        let kernel = &self.kernel;
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        let parameters = FLT_PARAMETERS {
            QueryDirectory: FLT_PARAMETERS_QUERY_DIRECTORY {
                Length: length,
                FileName: std::ptr::null_mut::<UNICODE_STRING>(),
                FileInformationClass: FILE_NAMES_INFORMATION_CLASS,
                PointerAlignment1: 0,
                FileIndex: 0,
                DirectoryBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_QUERY_DIRECTORY);
            let Some((_, handle)) = volume_and_handle(io, directory, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if p.FileInformationClass != FILE_NAMES_INFORMATION_CLASS {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let Some(volume) = io.volumes.get(directory.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            let fs = fs_of(volume);
            let mut names = match fs.children(handle) {
                Ok(names) => names,
                Err(status) => return (status, 0),
            };
            if fs.name_of(handle).is_some_and(|n| n != "\\") {
                names.insert(0, "..".to_owned());
                names.insert(0, ".".to_owned());
            }
            drop(fs);
            let (bytes, _) = names_information(&names, p.Length as usize);
            if bytes.is_empty() && !names.is_empty() {
                return (STATUS_BUFFER_OVERFLOW, 0);
            }
            let Some(target) =
                transfer_buffer(kernel, p.MdlAddress, p.DirectoryBuffer, bytes.len())
            else {
                return (vigil_sys::STATUS_INVALID_USER_BUFFER, 0);
            };
            guest::write_bytes(target as *mut u8, &bytes);
            (STATUS_SUCCESS, bytes.len())
        };
        let (status, information) = self.on_file(
            directory,
            (IRP_MJ_DIRECTORY_CONTROL, IRP_MN_QUERY_DIRECTORY),
            Path::Irp,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        );
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        let bytes = guest::read_bytes(buffer.as_ptr(), information.min(length as usize));
        Ok(named_entries(&bytes)
            .into_iter()
            .map(|(_, name)| name)
            .collect())
    }

    /// `IRP_MJ_FILE_SYSTEM_CONTROL` (`IRP_MN_USER_FS_REQUEST`) with `code`, `input` and an
    /// output buffer of `output_length` bytes (the transfer method from the code's low bits):
    /// the status and the output.
    pub fn fs_control(
        &self,
        file: &FileHandle,
        code: u32,
        input: &[u8],
        output_length: u32,
    ) -> (NTSTATUS, Vec<u8>) {
        self.control(
            file,
            (IRP_MJ_FILE_SYSTEM_CONTROL, IRP_MN_USER_FS_REQUEST),
            code,
            input,
            output_length,
        )
    }

    /// `IRP_MJ_DEVICE_CONTROL` (or, with `internal`, `IRP_MJ_INTERNAL_DEVICE_CONTROL`) with
    /// `code`, `input` and an output buffer of `output_length` bytes.
    pub fn device_control(
        &self,
        file: &FileHandle,
        code: u32,
        input: &[u8],
        output_length: u32,
        internal: bool,
    ) -> (NTSTATUS, Vec<u8>) {
        let major = if internal {
            IRP_MJ_INTERNAL_DEVICE_CONTROL
        } else {
            IRP_MJ_DEVICE_CONTROL
        };
        self.control(file, (major, 0), code, input, output_length)
    }

    fn control(
        &self,
        file: &FileHandle,
        (major, minor): (u8, u8),
        code: u32,
        input: &[u8],
        output_length: u32,
    ) -> (NTSTATUS, Vec<u8>) {
        let Ok(input_length) = u32::try_from(input.len()) else {
            return (STATUS_INVALID_PARAMETER, Vec::new());
        };
        let method = code & 3;
        // METHOD_BUFFERED: one system buffer for both; otherwise separate buffers, and for the
        // direct methods an MDL the I/O manager built for the output.
        let system = GuestAlloc::zeroed(input.len().max(output_length as usize).max(1));
        let input_buffer = GuestAlloc::zeroed(input.len().max(1));
        let output = GuestAlloc::zeroed(output_length.max(1) as usize);
        let (in_at, out_at): (PVOID, PVOID) = if method == 0 {
            guest::write_bytes(system.as_ptr(), input);
            (system.as_ptr(), std::ptr::null_mut())
        } else {
            guest::write_bytes(input_buffer.as_ptr(), input);
            (input_buffer.as_ptr(), output.as_ptr())
        };
        let mdl = if (method == 1 || method == 2) && output_length > 0 {
            crate::ntoskrnl::mdl::allocate(
                &self.kernel,
                "the I/O manager",
                output.address(),
                output_length,
            )
        } else {
            0
        };
        let parameters = FLT_PARAMETERS {
            FileSystemControl: FLT_PARAMETERS_CONTROL {
                OutputBufferLength: output_length,
                PointerAlignment1: 0,
                InputBufferLength: input_length,
                PointerAlignment2: 0,
                ControlCode: code,
                InputBuffer: if input.is_empty() && method != 0 {
                    std::ptr::null_mut()
                } else {
                    in_at
                },
                OutputBuffer: out_at,
                OutputMdlAddress: mdl as PVOID,
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_CONTROL);
            let Some((kind, _)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            let local = !matches!(kind, VolumeKind::NamedPipe | VolumeKind::Mailslot);
            match (major, p.ControlCode) {
                (IRP_MJ_FILE_SYSTEM_CONTROL, FSCTL_IS_VOLUME_MOUNTED) => (STATUS_SUCCESS, 0),
                (IRP_MJ_FILE_SYSTEM_CONTROL, FSCTL_GET_REPARSE_POINT)
                    if local && has_security(kind) =>
                {
                    (STATUS_NOT_A_REPARSE_POINT, 0)
                }
                _ => (status::INVALID_DEVICE_REQUEST, 0),
            }
        };
        let (status, information) = self.on_file(
            file,
            (major, minor),
            Path::Irp,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        );
        let source = if method == 0 { &system } else { &output };
        let out = guest::read_bytes(source.as_ptr(), information.min(output_length as usize));
        (status, out)
    }

    /// `IRP_MJ_SHUTDOWN` on `file`'s volume (no file object, as the I/O manager sends it to
    /// the file system's device).
    pub fn shutdown(&self, file: &FileHandle) -> NTSTATUS {
        let mut step = |_: &IoState, _base: usize| (STATUS_SUCCESS, 0);
        self.issue(
            Request {
                volume: file.volume,
                file_object: 0,
                major: IRP_MJ_SHUTDOWN,
                minor: 0,
                irp_flags: 0,
                irql: PASSIVE_LEVEL,
                // SAFETY: FLT_PARAMETERS is plain data; shutdown has no parameters.
                parameters: unsafe { std::mem::zeroed() },
                desired_access: 0,
                path: Path::Irp,
            },
            &mut step,
        )
        .0
    }

    /// `IRP_MJ_LOCK_CONTROL` `IRP_MN_LOCK` (exclusive or shared, failing immediately).
    pub fn lock(&self, file: &FileHandle, offset: u64, length: u64, exclusive: bool) -> NTSTATUS {
        self.lock_control(file, IRP_MN_LOCK, (offset, length), exclusive, Path::Irp)
    }

    /// `IRP_MJ_LOCK_CONTROL` `IRP_MN_UNLOCK_SINGLE`.
    pub fn unlock(&self, file: &FileHandle, offset: u64, length: u64) -> NTSTATUS {
        self.lock_control(
            file,
            IRP_MN_UNLOCK_SINGLE,
            (offset, length),
            false,
            Path::Irp,
        )
    }

    /// The fast I/O lock (`FastIoLock`), reissued as an IRP when disallowed.
    pub fn fast_io_lock(
        &self,
        file: &FileHandle,
        offset: u64,
        length: u64,
        exclusive: bool,
    ) -> NTSTATUS {
        match self.lock_control(file, IRP_MN_LOCK, (offset, length), exclusive, Path::FastIo) {
            STATUS_FLT_DISALLOW_FAST_IO => self.lock(file, offset, length, exclusive),
            other => other,
        }
    }

    fn lock_control(
        &self,
        file: &FileHandle,
        minor: u8,
        (offset, length): (u64, u64),
        exclusive: bool,
        path: Path,
    ) -> NTSTATUS {
        let length_cell = GuestAlloc::zeroed(8);
        guest::write(
            length_cell.as_ptr::<i64>(),
            i64::try_from(length).unwrap_or(i64::MAX),
        );
        let owner = self.requestor.pid;
        let parameters = FLT_PARAMETERS {
            LockControl: FLT_PARAMETERS_LOCK_CONTROL {
                Length: length_cell.as_ptr(),
                Key: 0,
                ByteOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                ProcessId: crate::ntoskrnl::process::process_pointer(owner as usize),
                FailImmediately: 1,
                ExclusiveLock: u8::from(exclusive),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_LOCK_CONTROL);
            let Some((kind, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if matches!(kind, VolumeKind::NamedPipe | VolumeKind::Mailslot) || p.Length.is_null() {
                return (status::INVALID_DEVICE_REQUEST, 0);
            }
            let length = u64::try_from(guest::read(p.Length)).unwrap_or(0);
            let offset = u64::try_from(p.ByteOffset).unwrap_or(0);
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            let fs = fs_of(volume);
            let result = if minor == IRP_MN_LOCK {
                fs.lock_range(
                    handle,
                    (offset, length),
                    p.ExclusiveLock != 0,
                    (owner, p.Key),
                )
            } else {
                fs.unlock_range(handle, (offset, length), (owner, p.Key))
            };
            (result.err().unwrap_or(STATUS_SUCCESS), 0)
        };
        self.on_file(
            file,
            (IRP_MJ_LOCK_CONTROL, minor),
            path,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        )
        .0
    }

    /// `IRP_MJ_QUERY_SECURITY` of the owner into `length` bytes: the self-relative security
    /// descriptor.
    ///
    /// # Errors
    ///
    /// `STATUS_BUFFER_TOO_SMALL`, `STATUS_INVALID_DEVICE_REQUEST` (no security on the volume),
    /// a filter's status.
    pub fn query_security(&self, file: &FileHandle, length: u32) -> Result<Vec<u8>, NTSTATUS> {
        let kernel = &self.kernel;
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        let parameters = FLT_PARAMETERS {
            QuerySecurity: FLT_PARAMETERS_QUERY_SECURITY {
                SecurityInformation: OWNER_SECURITY_INFORMATION,
                PointerAlignment1: 0,
                Length: length,
                SecurityBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_QUERY_SECURITY);
            let Some((kind, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if !has_security(kind) {
                return (status::INVALID_DEVICE_REQUEST, 0);
            }
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            let descriptor = match fs_of(volume).security(handle) {
                Ok(Some(sd)) => sd,
                Ok(None) => system_owned_descriptor(),
                Err(status) => return (status, 0),
            };
            if descriptor.len() > p.Length as usize {
                // The size needed, in Information.
                return (STATUS_BUFFER_TOO_SMALL, descriptor.len());
            }
            let Some(target) =
                transfer_buffer(kernel, p.MdlAddress, p.SecurityBuffer, descriptor.len())
            else {
                return (vigil_sys::STATUS_INVALID_USER_BUFFER, 0);
            };
            guest::write_bytes(target as *mut u8, &descriptor);
            (STATUS_SUCCESS, descriptor.len())
        };
        let (status, information) =
            self.irp_on_file(file, IRP_MJ_QUERY_SECURITY, parameters, &mut step);
        if NT_SUCCESS(status) {
            Ok(guest::read_bytes(
                buffer.as_ptr(),
                information.min(length as usize),
            ))
        } else {
            Err(status)
        }
    }

    /// `IRP_MJ_SET_SECURITY` of the owner from the self-relative descriptor `descriptor`.
    pub fn set_security(&self, file: &FileHandle, descriptor: &[u8]) -> NTSTATUS {
        let buffer = GuestAlloc::zeroed(descriptor.len().max(1));
        guest::write_bytes(buffer.as_ptr(), descriptor);
        let parameters = FLT_PARAMETERS {
            SetSecurity: FLT_PARAMETERS_SET_SECURITY {
                SecurityInformation: OWNER_SECURITY_INFORMATION,
                SecurityDescriptor: buffer.as_ptr(),
            },
        };
        let length = descriptor.len();
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_SET_SECURITY);
            let Some((kind, handle)) = volume_and_handle(io, file, handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if !has_security(kind) {
                return (status::INVALID_DEVICE_REQUEST, 0);
            }
            if p.SecurityDescriptor.is_null() || length < 20 {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let bytes = guest::read_bytes(p.SecurityDescriptor.cast(), length);
            let Some(volume) = io.volumes.get(file.volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            (
                fs_of(volume)
                    .set_security(handle, &bytes)
                    .err()
                    .unwrap_or(STATUS_SUCCESS),
                0,
            )
        };
        self.irp_on_file(file, IRP_MJ_SET_SECURITY, parameters, &mut step)
            .0
    }

    /// `IRP_MJ_SYSTEM_CONTROL` `IRP_MN_QUERY_ALL_DATA` with a buffer of `length` bytes (file
    /// systems register no WMI provider: `STATUS_INVALID_DEVICE_REQUEST`).
    pub fn system_control(&self, file: &FileHandle, length: u32) -> NTSTATUS {
        let guid = GuestAlloc::zeroed(16);
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        let device = flt_read(&self.kernel)
            .io
            .volumes
            .get(file.volume.0)
            .map_or(0, |v| v.device.address());
        let parameters = FLT_PARAMETERS {
            WMI: FLT_PARAMETERS_WMI {
                ProviderId: device,
                DataPath: guid.as_ptr(),
                BufferSize: length,
                Buffer: buffer.as_ptr(),
            },
        };
        let mut step = |_: &IoState, _base: usize, _handle: Option<FsHandle>| {
            (status::INVALID_DEVICE_REQUEST, 0)
        };
        self.on_file(
            file,
            (IRP_MJ_SYSTEM_CONTROL, IRP_MN_QUERY_ALL_DATA),
            Path::Irp,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        )
        .0
    }

    /// `IRP_MJ_QUERY_QUOTA` into `length` bytes (quotas are not kept:
    /// `STATUS_INVALID_DEVICE_REQUEST`).
    pub fn query_quota(&self, file: &FileHandle, length: u32) -> NTSTATUS {
        let buffer = GuestAlloc::zeroed(length.max(1) as usize);
        let parameters = FLT_PARAMETERS {
            QueryQuota: FLT_PARAMETERS_QUERY_QUOTA {
                Length: length,
                StartSid: std::ptr::null_mut(),
                SidList: std::ptr::null_mut(),
                SidListLength: 0,
                QuotaBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let mut step = |_: &IoState, _base: usize, _handle: Option<FsHandle>| {
            (status::INVALID_DEVICE_REQUEST, 0)
        };
        self.irp_on_file(file, IRP_MJ_QUERY_QUOTA, parameters, &mut step)
            .0
    }

    /// `IRP_MJ_SET_QUOTA` of one zeroed `FILE_QUOTA_INFORMATION`-sized entry (quotas are not
    /// kept: `STATUS_INVALID_DEVICE_REQUEST`).
    pub fn set_quota(&self, file: &FileHandle) -> NTSTATUS {
        let buffer = GuestAlloc::zeroed(56);
        let parameters = FLT_PARAMETERS {
            SetQuota: FLT_PARAMETERS_SET_QUOTA {
                Length: 56,
                QuotaBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let mut step = |_: &IoState, _base: usize, _handle: Option<FsHandle>| {
            (status::INVALID_DEVICE_REQUEST, 0)
        };
        self.irp_on_file(file, IRP_MJ_SET_QUOTA, parameters, &mut step)
            .0
    }

    /// `IRP_MJ_PNP` `IRP_MN_QUERY_REMOVE_DEVICE` then `IRP_MN_CANCEL_REMOVE_DEVICE` through
    /// `file` (open on the volume, so the query is refused): both statuses.
    pub fn pnp_query_and_cancel_remove(&self, file: &FileHandle) -> (NTSTATUS, NTSTATUS) {
        let query = self.simple_on_file(file, (IRP_MJ_PNP, IRP_MN_QUERY_REMOVE_DEVICE), |_| {
            STATUS_ACCESS_DENIED
        });
        let cancel = self.simple_on_file(file, (IRP_MJ_PNP, IRP_MN_CANCEL_REMOVE_DEVICE), |_| {
            STATUS_SUCCESS
        });
        (query, cancel)
    }
}

#[cfg(test)]
mod tests {
    use vigil_sys::{
        FLTFL_OPERATION_REGISTRATION_SKIP_CACHED_IO as CACHED,
        FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO as PAGING, IRP_MJ_ACQUIRE_FOR_MOD_WRITE,
        IRP_MJ_QUERY_INFORMATION, IRP_MJ_READ, IRP_MJ_WRITE, IRP_NOCACHE, IRP_PAGING_IO,
    };

    use super::{Path, names_information, skipped_by};

    #[test]
    fn registrations_skip_paging_io_and_cached_reads_and_writes_as_documented() {
        assert_eq!(skipped_by(IRP_MJ_READ, Path::Irp, 0), CACHED);
        assert_eq!(skipped_by(IRP_MJ_WRITE, Path::Irp, IRP_NOCACHE), 0);
        assert_eq!(
            skipped_by(IRP_MJ_READ, Path::Irp, IRP_PAGING_IO | IRP_NOCACHE),
            PAGING
        );
        // Every fast I/O read or write is cached; SKIP_PAGING_IO is for IRPs only.
        assert_eq!(skipped_by(IRP_MJ_READ, Path::FastIo, 0), CACHED);
        assert_eq!(skipped_by(IRP_MJ_QUERY_INFORMATION, Path::FastIo, 0), 0);
        assert_eq!(
            skipped_by(IRP_MJ_ACQUIRE_FOR_MOD_WRITE, Path::FsFilter, 0),
            0
        );
    }

    #[test]
    fn directory_entries_are_chained_and_aligned() {
        let names = ["a".to_owned(), "bcd".to_owned()];
        let (bytes, all) = names_information(&names, 4096);
        assert!(all);
        // The first entry (12 + 2 bytes) is followed by the second at the next 8-byte boundary.
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 16);
        assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 0);
        assert_eq!(bytes.len(), 16 + 12 + 6);
        // Not even the first entry fits.
        assert_eq!(names_information(&names, 10), (Vec::new(), false));
    }
}
