//! Every operation a minifilter can register for: the remaining `IRP_MJ_*` major function codes
//! (wdm.h), Filter Manager's pseudo-operations (the negative codes of fltkernel.h, as a
//! `UCHAR`), and the `FLT_PARAMETERS` members of the operations kernel-sim dispatches
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_parameters>).
//! Layouts are the x64 ones; `PointerAlignmentN` fields are the gaps `POINTER_ALIGNMENT`
//! (`DECLSPEC_ALIGN(8)`) opens in C. `tests/layout.rs` checks every one against Wine's
//! fltkernel.h.

use crate::basic::{LARGE_INTEGER, PSECURITY_DESCRIPTOR, PVOID, UNICODE_STRING};
use crate::io::FILE_INFORMATION_CLASS;

/// `IRP_MJ_CREATE_NAMED_PIPE`.
pub const IRP_MJ_CREATE_NAMED_PIPE: u8 = 0x01;
/// `IRP_MJ_QUERY_INFORMATION`.
pub const IRP_MJ_QUERY_INFORMATION: u8 = 0x05;
/// `IRP_MJ_QUERY_EA`.
pub const IRP_MJ_QUERY_EA: u8 = 0x07;
/// `IRP_MJ_SET_EA`.
pub const IRP_MJ_SET_EA: u8 = 0x08;
/// `IRP_MJ_FLUSH_BUFFERS`.
pub const IRP_MJ_FLUSH_BUFFERS: u8 = 0x09;
/// `IRP_MJ_QUERY_VOLUME_INFORMATION`.
pub const IRP_MJ_QUERY_VOLUME_INFORMATION: u8 = 0x0a;
/// `IRP_MJ_SET_VOLUME_INFORMATION`.
pub const IRP_MJ_SET_VOLUME_INFORMATION: u8 = 0x0b;
/// `IRP_MJ_DIRECTORY_CONTROL`.
pub const IRP_MJ_DIRECTORY_CONTROL: u8 = 0x0c;
/// `IRP_MJ_FILE_SYSTEM_CONTROL`.
pub const IRP_MJ_FILE_SYSTEM_CONTROL: u8 = 0x0d;
/// `IRP_MJ_DEVICE_CONTROL`.
pub const IRP_MJ_DEVICE_CONTROL: u8 = 0x0e;
/// `IRP_MJ_INTERNAL_DEVICE_CONTROL`.
pub const IRP_MJ_INTERNAL_DEVICE_CONTROL: u8 = 0x0f;
/// `IRP_MJ_SHUTDOWN`.
pub const IRP_MJ_SHUTDOWN: u8 = 0x10;
/// `IRP_MJ_LOCK_CONTROL`.
pub const IRP_MJ_LOCK_CONTROL: u8 = 0x11;
/// `IRP_MJ_CREATE_MAILSLOT`.
pub const IRP_MJ_CREATE_MAILSLOT: u8 = 0x13;
/// `IRP_MJ_QUERY_SECURITY`.
pub const IRP_MJ_QUERY_SECURITY: u8 = 0x14;
/// `IRP_MJ_SET_SECURITY`.
pub const IRP_MJ_SET_SECURITY: u8 = 0x15;
/// `IRP_MJ_POWER`.
pub const IRP_MJ_POWER: u8 = 0x16;
/// `IRP_MJ_SYSTEM_CONTROL`.
pub const IRP_MJ_SYSTEM_CONTROL: u8 = 0x17;
/// `IRP_MJ_DEVICE_CHANGE`.
pub const IRP_MJ_DEVICE_CHANGE: u8 = 0x18;
/// `IRP_MJ_QUERY_QUOTA`.
pub const IRP_MJ_QUERY_QUOTA: u8 = 0x19;
/// `IRP_MJ_SET_QUOTA`.
pub const IRP_MJ_SET_QUOTA: u8 = 0x1a;
/// `IRP_MJ_PNP`.
pub const IRP_MJ_PNP: u8 = 0x1b;

/// `IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION` (`(UCHAR)-1`).
pub const IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION: u8 = 0xff;
/// `IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION` (`(UCHAR)-2`).
pub const IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION: u8 = 0xfe;
/// `IRP_MJ_ACQUIRE_FOR_MOD_WRITE` (`(UCHAR)-3`).
pub const IRP_MJ_ACQUIRE_FOR_MOD_WRITE: u8 = 0xfd;
/// `IRP_MJ_RELEASE_FOR_MOD_WRITE` (`(UCHAR)-4`).
pub const IRP_MJ_RELEASE_FOR_MOD_WRITE: u8 = 0xfc;
/// `IRP_MJ_ACQUIRE_FOR_CC_FLUSH` (`(UCHAR)-5`).
pub const IRP_MJ_ACQUIRE_FOR_CC_FLUSH: u8 = 0xfb;
/// `IRP_MJ_RELEASE_FOR_CC_FLUSH` (`(UCHAR)-6`).
pub const IRP_MJ_RELEASE_FOR_CC_FLUSH: u8 = 0xfa;
/// `IRP_MJ_QUERY_OPEN` (`(UCHAR)-7`).
pub const IRP_MJ_QUERY_OPEN: u8 = 0xf9;
/// `IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE` (`(UCHAR)-13`).
pub const IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE: u8 = 0xf3;
/// `IRP_MJ_NETWORK_QUERY_OPEN` (`(UCHAR)-14`).
pub const IRP_MJ_NETWORK_QUERY_OPEN: u8 = 0xf2;
/// `IRP_MJ_MDL_READ` (`(UCHAR)-15`).
pub const IRP_MJ_MDL_READ: u8 = 0xf1;
/// `IRP_MJ_MDL_READ_COMPLETE` (`(UCHAR)-16`).
pub const IRP_MJ_MDL_READ_COMPLETE: u8 = 0xf0;
/// `IRP_MJ_PREPARE_MDL_WRITE` (`(UCHAR)-17`).
pub const IRP_MJ_PREPARE_MDL_WRITE: u8 = 0xef;
/// `IRP_MJ_MDL_WRITE_COMPLETE` (`(UCHAR)-18`).
pub const IRP_MJ_MDL_WRITE_COMPLETE: u8 = 0xee;
/// `IRP_MJ_VOLUME_MOUNT` (`(UCHAR)-19`).
pub const IRP_MJ_VOLUME_MOUNT: u8 = 0xed;
/// `IRP_MJ_VOLUME_DISMOUNT` (`(UCHAR)-20`).
pub const IRP_MJ_VOLUME_DISMOUNT: u8 = 0xec;

/// `FLT_PARAMETERS.Read`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_READ {
    /// Bytes to read.
    pub Length: u32,
    /// Padding: `Key` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Key (offset 8).
    pub Key: u32,
    /// Offset in the file.
    pub ByteOffset: LARGE_INTEGER,
    /// The buffer that receives the data (may be a user address).
    pub ReadBuffer: PVOID,
    /// MDL describing the buffer.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.QueryFileInformation`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_QUERY_FILE_INFORMATION {
    /// Length of `InfoBuffer`.
    pub Length: u32,
    /// Padding: `FileInformationClass` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// The class asked for (offset 8).
    pub FileInformationClass: FILE_INFORMATION_CLASS,
    /// The buffer that receives the information.
    pub InfoBuffer: PVOID,
}

/// `FLT_PARAMETERS.QueryEa`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_QUERY_EA {
    /// Length of `EaBuffer`.
    pub Length: u32,
    /// `FILE_GET_EA_INFORMATION` list of the EAs asked for, or NULL.
    pub EaList: PVOID,
    /// Length of `EaList`.
    pub EaListLength: u32,
    /// Padding: `EaIndex` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Index of the first EA to return (offset 0x18).
    pub EaIndex: u32,
    /// The buffer that receives the `FILE_FULL_EA_INFORMATION` entries.
    pub EaBuffer: PVOID,
    /// MDL describing `EaBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.SetEa`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_SET_EA {
    /// Length of `EaBuffer`.
    pub Length: u32,
    /// The `FILE_FULL_EA_INFORMATION` entries to set.
    pub EaBuffer: PVOID,
    /// MDL describing `EaBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.QueryVolumeInformation` and `.SetVolumeInformation` (one layout).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_VOLUME_INFORMATION {
    /// Length of `VolumeBuffer`.
    pub Length: u32,
    /// Padding: `FsInformationClass` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// `FS_INFORMATION_CLASS` (offset 8).
    pub FsInformationClass: u32,
    /// The buffer.
    pub VolumeBuffer: PVOID,
}

/// `FLT_PARAMETERS.DirectoryControl.QueryDirectory`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_QUERY_DIRECTORY {
    /// Length of `DirectoryBuffer`.
    pub Length: u32,
    /// The search expression, or NULL for every entry.
    pub FileName: *mut UNICODE_STRING,
    /// The class of the entries (`FileNamesInformation`, ...).
    pub FileInformationClass: FILE_INFORMATION_CLASS,
    /// Padding: `FileIndex` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Index to resume at (offset 0x18).
    pub FileIndex: u32,
    /// The buffer that receives the entries.
    pub DirectoryBuffer: PVOID,
    /// MDL describing `DirectoryBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.DirectoryControl.NotifyDirectory` (`IRP_MN_NOTIFY_CHANGE_DIRECTORY`). Every
/// `ULONG` after `Length` is `POINTER_ALIGNMENT` (so Wine's fltkernel.h has it, and so the buffer
/// and its MDL sit where `QueryDirectory` has them; the reference page's syntax block omits the
/// alignment of `Spare1`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_NOTIFY_DIRECTORY {
    /// Length of `DirectoryBuffer`.
    pub Length: u32,
    /// Padding: `CompletionFilter` is `POINTER_ALIGNMENT`.
    pub PointerAlignment1: u32,
    /// The `FILE_NOTIFY_CHANGE_*` changes that complete the request.
    pub CompletionFilter: u32,
    /// Padding: `Spare1` is `POINTER_ALIGNMENT`.
    pub PointerAlignment2: u32,
    /// Unused.
    pub Spare1: u32,
    /// Padding: `Spare2` is `POINTER_ALIGNMENT`.
    pub PointerAlignment3: u32,
    /// Unused.
    pub Spare2: u32,
    /// Padding before `DirectoryBuffer`.
    pub PointerAlignment4: u32,
    /// The buffer that receives the `FILE_NOTIFY_INFORMATION` records (offset 0x20).
    pub DirectoryBuffer: PVOID,
    /// MDL describing `DirectoryBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.FileSystemControl.Neither` and `.DeviceIoControl.Neither`: the layout every
/// transfer method shares (`METHOD_BUFFERED` has its `SystemBuffer` where `InputBuffer` is;
/// `METHOD_IN/OUT_DIRECT` its `InputSystemBuffer`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_CONTROL {
    /// Length of the output buffer.
    pub OutputBufferLength: u32,
    /// Padding: `InputBufferLength` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Length of the input buffer (offset 8).
    pub InputBufferLength: u32,
    /// Padding: the code is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment2: u32,
    /// `FsControlCode` or `IoControlCode` (offset 0x10).
    pub ControlCode: u32,
    /// Input buffer (`SystemBuffer` for `METHOD_BUFFERED`).
    pub InputBuffer: PVOID,
    /// Output buffer (`METHOD_NEITHER`, `METHOD_*_DIRECT`).
    pub OutputBuffer: PVOID,
    /// MDL describing the output buffer.
    pub OutputMdlAddress: PVOID,
}

/// `FLT_PARAMETERS.LockControl`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_LOCK_CONTROL {
    /// The length of the byte range.
    pub Length: *mut LARGE_INTEGER,
    /// Key (offset 8).
    pub Key: u32,
    /// The start of the byte range.
    pub ByteOffset: LARGE_INTEGER,
    /// The process that asks (`PEPROCESS`).
    pub ProcessId: PVOID,
    /// Fail rather than wait for a conflicting lock.
    pub FailImmediately: u8,
    /// Exclusive rather than shared.
    pub ExclusiveLock: u8,
}

/// `FLT_PARAMETERS.QuerySecurity`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_QUERY_SECURITY {
    /// `SECURITY_INFORMATION` bits asked for.
    pub SecurityInformation: u32,
    /// Padding: `Length` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Length of `SecurityBuffer` (offset 8).
    pub Length: u32,
    /// The buffer that receives the self-relative security descriptor.
    pub SecurityBuffer: PVOID,
    /// MDL describing `SecurityBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.SetSecurity`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_SET_SECURITY {
    /// `SECURITY_INFORMATION` bits to set.
    pub SecurityInformation: u32,
    /// The security descriptor.
    pub SecurityDescriptor: PSECURITY_DESCRIPTOR,
}

/// `FLT_PARAMETERS.WMI` (`IRP_MJ_SYSTEM_CONTROL`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_WMI {
    /// WMI provider id.
    pub ProviderId: usize,
    /// Data path (GUID).
    pub DataPath: PVOID,
    /// Length of `Buffer`.
    pub BufferSize: u32,
    /// The buffer.
    pub Buffer: PVOID,
}

/// `FLT_PARAMETERS.QueryQuota`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_QUERY_QUOTA {
    /// Length of `QuotaBuffer`.
    pub Length: u32,
    /// The SID to start at, or NULL.
    pub StartSid: PVOID,
    /// `FILE_GET_QUOTA_INFORMATION` list, or NULL.
    pub SidList: PVOID,
    /// Length of `SidList`.
    pub SidListLength: u32,
    /// The buffer that receives the entries.
    pub QuotaBuffer: PVOID,
    /// MDL describing `QuotaBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.SetQuota`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_SET_QUOTA {
    /// Length of `QuotaBuffer`.
    pub Length: u32,
    /// The `FILE_QUOTA_INFORMATION` entries to set.
    pub QuotaBuffer: PVOID,
    /// MDL describing `QuotaBuffer`.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.AcquireForSectionSynchronization`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_ACQUIRE_FOR_SECTION_SYNCHRONIZATION {
    /// `FS_FILTER_SECTION_SYNC_TYPE` (`SyncTypeCreateSection` = 1).
    pub SyncType: i32,
    /// The page protection of the section (`PAGE_READONLY`, ...).
    pub PageProtection: u32,
    /// `PFS_FILTER_SECTION_SYNC_OUTPUT`, or NULL.
    pub OutputInformation: PVOID,
}

/// `FLT_PARAMETERS.AcquireForModifiedPageWriter`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_ACQUIRE_FOR_MOD_WRITE {
    /// The offset of the last byte to be written, plus one.
    pub EndingOffset: *mut LARGE_INTEGER,
    /// Where the file system stores the resource it acquired (`PERESOURCE *`).
    pub ResourceToRelease: *mut PVOID,
}

/// `FLT_PARAMETERS.ReleaseForModifiedPageWriter`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_RELEASE_FOR_MOD_WRITE {
    /// The resource to release (`PERESOURCE`).
    pub ResourceToRelease: PVOID,
}

/// `FLT_PARAMETERS.QueryOpen`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_QUERY_OPEN {
    /// The IRP of the operation (`PIRP`).
    pub Irp: PVOID,
    /// The buffer that receives the information.
    pub FileInformation: PVOID,
    /// The length of `FileInformation` (`PULONG`).
    pub Length: *mut u32,
    /// `FileStatInformation`, `FileStatLxInformation`, `FileCaseSensitiveInformation` or
    /// `FileStatBasicInformation`.
    pub FileInformationClass: FILE_INFORMATION_CLASS,
}

/// `FLT_PARAMETERS.NetworkQueryOpen`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_NETWORK_QUERY_OPEN {
    /// The create IRP that represents the open (`PIRP`; never completed).
    pub Irp: PVOID,
    /// The `FILE_NETWORK_OPEN_INFORMATION` that receives the information.
    pub NetworkInformation: PVOID,
}

/// `FLT_PARAMETERS.FastIoCheckIfPossible`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_FAST_IO_CHECK_IF_POSSIBLE {
    /// Offset of the transfer.
    pub FileOffset: LARGE_INTEGER,
    /// Length of the transfer.
    pub Length: u32,
    /// Padding: `LockKey` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Lock key (offset 0x10).
    pub LockKey: u32,
    /// Padding: `CheckForReadOperation` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment2: u32,
    /// A read (TRUE) or a write (FALSE), offset 0x18.
    pub CheckForReadOperation: u8,
}

/// `FLT_PARAMETERS.MdlRead` and `.PrepareMdlWrite` (one layout).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_MDL_TRANSFER {
    /// Offset of the transfer.
    pub FileOffset: LARGE_INTEGER,
    /// Length of the transfer (offset 8).
    pub Length: u32,
    /// Padding: `Key` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment1: u32,
    /// Key (offset 0x10).
    pub Key: u32,
    /// Where the file system stores the MDL chain describing the cached data (`PMDL *`).
    pub MdlChain: *mut PVOID,
}

/// `FLT_PARAMETERS.MdlReadComplete`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_MDL_READ_COMPLETE {
    /// The MDL chain `IRP_MJ_MDL_READ` returned.
    pub MdlChain: PVOID,
}

/// `FLT_PARAMETERS.MdlWriteComplete`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_MDL_WRITE_COMPLETE {
    /// Offset of the transfer.
    pub FileOffset: LARGE_INTEGER,
    /// The MDL chain `IRP_MJ_PREPARE_MDL_WRITE` returned.
    pub MdlChain: PVOID,
}

/// `FLT_PARAMETERS.MountVolume`, for `IRP_MJ_VOLUME_MOUNT` (a fast I/O operation:
/// <https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-volume-mount>).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_MOUNT_VOLUME {
    /// The device type of the newly mounted volume's file system device object:
    /// `FILE_DEVICE_CD_ROM_FILE_SYSTEM`, `FILE_DEVICE_DISK_FILE_SYSTEM` or
    /// `FILE_DEVICE_NETWORK_FILE_SYSTEM`.
    pub DeviceType: u32,
}
