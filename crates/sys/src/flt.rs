//! Filter Manager (`fltKernel.h`) types, callback signatures and constants.
//!
//! Wine's `fltkernel.h` is the layout oracle for the registration and callback-data structures;
//! for those it lacks (`FLT_RELATED_OBJECTS`, `FLT_FILE_NAME_INFORMATION`, the parameter union's
//! members) the documented layout is asserted in `tests/layout.rs` with the page cited.

use core::ffi::c_void;

use crate::basic::{
    ACCESS_MASK, DEVICE_TYPE, IO_STATUS_BLOCK, KPROCESSOR_MODE, LARGE_INTEGER, NTSTATUS, PETHREAD,
    PVOID, UNICODE_STRING,
};
use crate::io::{FILE_INFORMATION_CLASS, FILE_OBJECT};

/// `PFLT_FILTER`, opaque.
pub type PFLT_FILTER = *mut c_void;
/// `PFLT_VOLUME`, opaque.
pub type PFLT_VOLUME = *mut c_void;
/// `PFLT_INSTANCE`, opaque.
pub type PFLT_INSTANCE = *mut c_void;
/// `PFLT_PORT`, opaque. The client port must live in exactly one variable (RULES.md, rule 5).
pub type PFLT_PORT = *mut c_void;
/// `PFLT_CONTEXT`: a context allocated by `FltAllocateContext`.
pub type PFLT_CONTEXT = *mut c_void;

/// `FLT_REGISTRATION_VERSION` for Windows 8 and later (the structure with
/// `SectionNotificationCallback`).
pub const FLT_REGISTRATION_VERSION: u16 = 0x0203;

/// `FLTFL_REGISTRATION_DO_NOT_SUPPORT_SERVICE_STOP`.
pub const FLTFL_REGISTRATION_DO_NOT_SUPPORT_SERVICE_STOP: u32 = 0x0000_0001;
/// `FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS`: without it FltMgr never offers pipe/mailslot volumes.
pub const FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS: u32 = 0x0000_0002;

/// `IRP_MJ_OPERATION_END`: terminates the operation registration array.
pub const IRP_MJ_OPERATION_END: u8 = 0x80;

/// `FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO`.
pub const FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO: u32 = 0x0000_0001;
/// `FLTFL_OPERATION_REGISTRATION_SKIP_CACHED_IO`.
pub const FLTFL_OPERATION_REGISTRATION_SKIP_CACHED_IO: u32 = 0x0000_0002;
/// `FLTFL_OPERATION_REGISTRATION_SKIP_NON_DASD_IO`.
pub const FLTFL_OPERATION_REGISTRATION_SKIP_NON_DASD_IO: u32 = 0x0000_0004;

/// `FLT_PREOP_CALLBACK_STATUS`.
pub type FLT_PREOP_CALLBACK_STATUS = i32;
/// Call the post-operation callback.
pub const FLT_PREOP_SUCCESS_WITH_CALLBACK: FLT_PREOP_CALLBACK_STATUS = 0;
/// Do not call the post-operation callback.
pub const FLT_PREOP_SUCCESS_NO_CALLBACK: FLT_PREOP_CALLBACK_STATUS = 1;
/// The filter pends the operation.
pub const FLT_PREOP_PENDING: FLT_PREOP_CALLBACK_STATUS = 2;
/// Retry a fast I/O operation as an IRP.
pub const FLT_PREOP_DISALLOW_FASTIO: FLT_PREOP_CALLBACK_STATUS = 3;
/// The filter completed the operation (status in `IoStatus`).
pub const FLT_PREOP_COMPLETE: FLT_PREOP_CALLBACK_STATUS = 4;
/// Call the post-operation callback synchronously, at the pre-operation's IRQL.
pub const FLT_PREOP_SYNCHRONIZE: FLT_PREOP_CALLBACK_STATUS = 5;
/// Refuse a file-system filter operation.
pub const FLT_PREOP_DISALLOW_FSFILTER_IO: FLT_PREOP_CALLBACK_STATUS = 6;

/// `FLT_POSTOP_CALLBACK_STATUS`.
pub type FLT_POSTOP_CALLBACK_STATUS = i32;
/// Post-processing done.
pub const FLT_POSTOP_FINISHED_PROCESSING: FLT_POSTOP_CALLBACK_STATUS = 0;
/// The filter finishes the operation later.
pub const FLT_POSTOP_MORE_PROCESSING_REQUIRED: FLT_POSTOP_CALLBACK_STATUS = 1;
/// Refuse a file-system filter operation.
pub const FLT_POSTOP_DISALLOW_FSFILTER_IO: FLT_POSTOP_CALLBACK_STATUS = 2;

/// `FLTFL_POST_OPERATION_DRAINING`: the instance is detaching; do no work but release.
pub const FLTFL_POST_OPERATION_DRAINING: u32 = 0x0000_0001;

/// `FLTFL_FILTER_UNLOAD_MANDATORY`: the unload cannot be refused.
pub const FLTFL_FILTER_UNLOAD_MANDATORY: u32 = 0x0000_0001;

/// `FLTFL_CALLBACK_DATA_IRP_OPERATION`.
pub const FLTFL_CALLBACK_DATA_IRP_OPERATION: u32 = 0x0000_0001;
/// `FLTFL_CALLBACK_DATA_FAST_IO_OPERATION`.
pub const FLTFL_CALLBACK_DATA_FAST_IO_OPERATION: u32 = 0x0000_0002;
/// `FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION`.
pub const FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION: u32 = 0x0000_0004;
/// `FLTFL_CALLBACK_DATA_GENERATED_IO`: I/O issued by a minifilter.
pub const FLTFL_CALLBACK_DATA_GENERATED_IO: u32 = 0x0001_0000;
/// `FLTFL_CALLBACK_DATA_POST_OPERATION`.
pub const FLTFL_CALLBACK_DATA_POST_OPERATION: u32 = 0x0008_0000;
/// `FLTFL_IO_OPERATION_NON_CACHED`: `FltReadFile`/`FltWriteFile` flag, a noncached request.
pub const FLTFL_IO_OPERATION_NON_CACHED: u32 = 0x1;
/// `FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET`: `FltReadFile`/`FltWriteFile` flag, leave the
/// file object's `CurrentByteOffset` alone.
pub const FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET: u32 = 0x4;
/// `CriticalWorkQueue` (`WORK_QUEUE_TYPE`): real-time priority system worker threads.
pub const CriticalWorkQueue: u32 = 0;
/// `DelayedWorkQueue` (`WORK_QUEUE_TYPE`): variable priority system worker threads.
pub const DelayedWorkQueue: u32 = 1;
/// `FLTFL_CALLBACK_DATA_DIRTY`: the filter changed the parameters.
pub const FLTFL_CALLBACK_DATA_DIRTY: u32 = 0x8000_0000;

/// `FLT_FILESYSTEM_TYPE`.
pub type FLT_FILESYSTEM_TYPE = i32;
/// `FLT_FSTYPE_UNKNOWN`.
pub const FLT_FSTYPE_UNKNOWN: FLT_FILESYSTEM_TYPE = 0;
/// `FLT_FSTYPE_RAW`.
pub const FLT_FSTYPE_RAW: FLT_FILESYSTEM_TYPE = 1;
/// `FLT_FSTYPE_NTFS`.
pub const FLT_FSTYPE_NTFS: FLT_FILESYSTEM_TYPE = 2;
/// `FLT_FSTYPE_FAT`.
pub const FLT_FSTYPE_FAT: FLT_FILESYSTEM_TYPE = 3;
/// `FLT_FSTYPE_CDFS`.
pub const FLT_FSTYPE_CDFS: FLT_FILESYSTEM_TYPE = 4;
/// `FLT_FSTYPE_UDFS`.
pub const FLT_FSTYPE_UDFS: FLT_FILESYSTEM_TYPE = 5;
/// `FLT_FSTYPE_LANMAN`: the SMB redirector.
pub const FLT_FSTYPE_LANMAN: FLT_FILESYSTEM_TYPE = 6;
/// `FLT_FSTYPE_WEBDAV`.
pub const FLT_FSTYPE_WEBDAV: FLT_FILESYSTEM_TYPE = 7;
/// `FLT_FSTYPE_RDPDR`.
pub const FLT_FSTYPE_RDPDR: FLT_FILESYSTEM_TYPE = 8;
/// `FLT_FSTYPE_NFS`.
pub const FLT_FSTYPE_NFS: FLT_FILESYSTEM_TYPE = 9;
/// `FLT_FSTYPE_MUP`: the multiple UNC provider.
pub const FLT_FSTYPE_MUP: FLT_FILESYSTEM_TYPE = 13;
/// `FLT_FSTYPE_EXFAT`.
pub const FLT_FSTYPE_EXFAT: FLT_FILESYSTEM_TYPE = 22;
/// `FLT_FSTYPE_NPFS`: named pipes.
pub const FLT_FSTYPE_NPFS: FLT_FILESYSTEM_TYPE = 25;
/// `FLT_FSTYPE_MSFS`: mailslots.
pub const FLT_FSTYPE_MSFS: FLT_FILESYSTEM_TYPE = 26;
/// `FLT_FSTYPE_CSVFS`.
pub const FLT_FSTYPE_CSVFS: FLT_FILESYSTEM_TYPE = 27;
/// `FLT_FSTYPE_REFS`.
pub const FLT_FSTYPE_REFS: FLT_FILESYSTEM_TYPE = 28;

/// `FLT_CONTEXT_TYPE`.
pub type FLT_CONTEXT_TYPE = u16;
/// `FLT_VOLUME_CONTEXT`.
pub const FLT_VOLUME_CONTEXT: FLT_CONTEXT_TYPE = 0x0001;
/// `FLT_INSTANCE_CONTEXT`.
pub const FLT_INSTANCE_CONTEXT: FLT_CONTEXT_TYPE = 0x0002;
/// `FLT_FILE_CONTEXT`.
pub const FLT_FILE_CONTEXT: FLT_CONTEXT_TYPE = 0x0004;
/// `FLT_STREAM_CONTEXT`.
pub const FLT_STREAM_CONTEXT: FLT_CONTEXT_TYPE = 0x0008;
/// `FLT_STREAMHANDLE_CONTEXT`: one per open handle of a stream.
pub const FLT_STREAMHANDLE_CONTEXT: FLT_CONTEXT_TYPE = 0x0010;
/// `FLT_TRANSACTION_CONTEXT`.
pub const FLT_TRANSACTION_CONTEXT: FLT_CONTEXT_TYPE = 0x0020;
/// `FLT_CONTEXT_END`: terminates the context registration array.
pub const FLT_CONTEXT_END: FLT_CONTEXT_TYPE = 0xffff;

/// `FLT_SET_CONTEXT_OPERATION`.
pub type FLT_SET_CONTEXT_OPERATION = i32;
/// `FLT_SET_CONTEXT_REPLACE_IF_EXISTS`.
pub const FLT_SET_CONTEXT_REPLACE_IF_EXISTS: FLT_SET_CONTEXT_OPERATION = 0;
/// `FLT_SET_CONTEXT_KEEP_IF_EXISTS`.
pub const FLT_SET_CONTEXT_KEEP_IF_EXISTS: FLT_SET_CONTEXT_OPERATION = 1;

/// `FLT_FILE_NAME_OPTIONS`.
pub type FLT_FILE_NAME_OPTIONS = u32;
/// `FLT_FILE_NAME_NORMALIZED`.
pub const FLT_FILE_NAME_NORMALIZED: FLT_FILE_NAME_OPTIONS = 0x01;
/// `FLT_FILE_NAME_OPENED`.
pub const FLT_FILE_NAME_OPENED: FLT_FILE_NAME_OPTIONS = 0x02;
/// `FLT_FILE_NAME_SHORT`.
pub const FLT_FILE_NAME_SHORT: FLT_FILE_NAME_OPTIONS = 0x03;
/// `FLT_FILE_NAME_QUERY_DEFAULT`.
pub const FLT_FILE_NAME_QUERY_DEFAULT: FLT_FILE_NAME_OPTIONS = 0x0100;
/// `FLT_FILE_NAME_QUERY_CACHE_ONLY`.
pub const FLT_FILE_NAME_QUERY_CACHE_ONLY: FLT_FILE_NAME_OPTIONS = 0x0200;
/// `FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY`.
pub const FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY: FLT_FILE_NAME_OPTIONS = 0x0300;
/// `FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP`.
pub const FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP: FLT_FILE_NAME_OPTIONS = 0x0400;

/// `FLT_PORT_CONNECT` access right.
pub const FLT_PORT_CONNECT: ACCESS_MASK = 0x0001;
/// `FLT_PORT_ALL_ACCESS` (`FLT_PORT_CONNECT | STANDARD_RIGHTS_ALL`).
pub const FLT_PORT_ALL_ACCESS: ACCESS_MASK = 0x001F_0001;

/// Pre-operation callback: `FLT_PREOP_CALLBACK_STATUS (Data, FltObjects, CompletionContext)`.
pub type PFLT_PRE_OPERATION_CALLBACK = Option<
    unsafe extern "win64" fn(
        Data: *mut FLT_CALLBACK_DATA,
        FltObjects: *const FLT_RELATED_OBJECTS,
        CompletionContext: *mut PVOID,
    ) -> FLT_PREOP_CALLBACK_STATUS,
>;
/// Post-operation callback: `FLT_POSTOP_CALLBACK_STATUS (Data, FltObjects, CompletionContext, Flags)`.
pub type PFLT_POST_OPERATION_CALLBACK = Option<
    unsafe extern "win64" fn(
        Data: *mut FLT_CALLBACK_DATA,
        FltObjects: *const FLT_RELATED_OBJECTS,
        CompletionContext: PVOID,
        Flags: u32,
    ) -> FLT_POSTOP_CALLBACK_STATUS,
>;
/// `FilterUnloadCallback`: `NTSTATUS (Flags)`.
pub type PFLT_FILTER_UNLOAD_CALLBACK = Option<unsafe extern "win64" fn(Flags: u32) -> NTSTATUS>;
/// `InstanceSetupCallback`.
pub type PFLT_INSTANCE_SETUP_CALLBACK = Option<
    unsafe extern "win64" fn(
        FltObjects: *const FLT_RELATED_OBJECTS,
        Flags: u32,
        VolumeDeviceType: DEVICE_TYPE,
        VolumeFilesystemType: FLT_FILESYSTEM_TYPE,
    ) -> NTSTATUS,
>;
/// `InstanceQueryTeardownCallback`.
pub type PFLT_INSTANCE_QUERY_TEARDOWN_CALLBACK = Option<
    unsafe extern "win64" fn(FltObjects: *const FLT_RELATED_OBJECTS, Flags: u32) -> NTSTATUS,
>;
/// `InstanceTeardownStartCallback` / `InstanceTeardownCompleteCallback`.
pub type PFLT_INSTANCE_TEARDOWN_CALLBACK =
    Option<unsafe extern "win64" fn(FltObjects: *const FLT_RELATED_OBJECTS, Reason: u32)>;
/// `ContextCleanupCallback`.
pub type PFLT_CONTEXT_CLEANUP_CALLBACK =
    Option<unsafe extern "win64" fn(Context: PFLT_CONTEXT, ContextType: FLT_CONTEXT_TYPE)>;
/// Communication port connect notification.
pub type PFLT_CONNECT_NOTIFY = Option<
    unsafe extern "win64" fn(
        ClientPort: PFLT_PORT,
        ServerPortCookie: PVOID,
        ConnectionContext: PVOID,
        SizeOfContext: u32,
        ConnectionPortCookie: *mut PVOID,
    ) -> NTSTATUS,
>;
/// Communication port disconnect notification.
pub type PFLT_DISCONNECT_NOTIFY = Option<unsafe extern "win64" fn(ConnectionCookie: PVOID)>;
/// Communication port message notification. Both buffers are *user-mode* addresses.
pub type PFLT_MESSAGE_NOTIFY = Option<
    unsafe extern "win64" fn(
        PortCookie: PVOID,
        InputBuffer: PVOID,
        InputBufferLength: u32,
        OutputBuffer: PVOID,
        OutputBufferLength: u32,
        ReturnOutputBufferLength: *mut u32,
    ) -> NTSTATUS,
>;

/// `FLT_OPERATION_REGISTRATION` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_OPERATION_REGISTRATION {
    /// `IRP_MJ_*`, or [`IRP_MJ_OPERATION_END`] for the terminator.
    pub MajorFunction: u8,
    /// `FLTFL_OPERATION_REGISTRATION_*`.
    pub Flags: u32,
    /// Pre-operation callback.
    pub PreOperation: PFLT_PRE_OPERATION_CALLBACK,
    /// Post-operation callback.
    pub PostOperation: PFLT_POST_OPERATION_CALLBACK,
    /// Reserved, null.
    pub Reserved1: PVOID,
}

/// `FLT_CONTEXT_REGISTRATION` (56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_CONTEXT_REGISTRATION {
    /// `FLT_*_CONTEXT`, or [`FLT_CONTEXT_END`] for the terminator.
    pub ContextType: FLT_CONTEXT_TYPE,
    /// `FLTFL_CONTEXT_REGISTRATION_*`.
    pub Flags: u16,
    /// Called before the context's memory is freed.
    pub ContextCleanupCallback: PFLT_CONTEXT_CLEANUP_CALLBACK,
    /// Size of the context, or `FLT_VARIABLE_SIZED_CONTEXTS`.
    pub Size: usize,
    /// Pool tag for the context's memory.
    pub PoolTag: u32,
    /// Custom allocation callback, unused (null).
    pub ContextAllocateCallback: PVOID,
    /// Custom free callback, unused (null).
    pub ContextFreeCallback: PVOID,
    /// Reserved, null.
    pub Reserved1: PVOID,
}

/// `FLT_REGISTRATION` (112 bytes, version 0x0203).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_REGISTRATION {
    /// `sizeof(FLT_REGISTRATION)`.
    pub Size: u16,
    /// [`FLT_REGISTRATION_VERSION`].
    pub Version: u16,
    /// `FLTFL_REGISTRATION_*`.
    pub Flags: u32,
    /// Context registrations, terminated by [`FLT_CONTEXT_END`].
    pub ContextRegistration: *const FLT_CONTEXT_REGISTRATION,
    /// Operation registrations, terminated by [`IRP_MJ_OPERATION_END`].
    pub OperationRegistration: *const FLT_OPERATION_REGISTRATION,
    /// Unload callback; null makes the filter unloadable only at shutdown.
    pub FilterUnloadCallback: PFLT_FILTER_UNLOAD_CALLBACK,
    /// Instance setup.
    pub InstanceSetupCallback: PFLT_INSTANCE_SETUP_CALLBACK,
    /// Instance query teardown.
    pub InstanceQueryTeardownCallback: PFLT_INSTANCE_QUERY_TEARDOWN_CALLBACK,
    /// Instance teardown start.
    pub InstanceTeardownStartCallback: PFLT_INSTANCE_TEARDOWN_CALLBACK,
    /// Instance teardown complete.
    pub InstanceTeardownCompleteCallback: PFLT_INSTANCE_TEARDOWN_CALLBACK,
    /// Name provider callbacks, unused (null).
    pub GenerateFileNameCallback: PVOID,
    /// Name provider callbacks, unused (null).
    pub NormalizeNameComponentCallback: PVOID,
    /// Name provider callbacks, unused (null).
    pub NormalizeContextCleanupCallback: PVOID,
    /// Transaction notification, unused (null).
    pub TransactionNotificationCallback: PVOID,
    /// Name provider callbacks, unused (null).
    pub NormalizeNameComponentExCallback: PVOID,
    /// Section conflict notification, unused (null).
    pub SectionNotificationCallback: PVOID,
}

/// `IO_SECURITY_CONTEXT` (24 bytes): create's security parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_SECURITY_CONTEXT {
    /// Security quality of service.
    pub SecurityQos: PVOID,
    /// Access state.
    pub AccessState: PVOID,
    /// The access the caller asked for.
    pub DesiredAccess: ACCESS_MASK,
    /// Full create options.
    pub FullCreateOptions: u32,
}

/// `FLT_PARAMETERS.Create` (the union member for `IRP_MJ_CREATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_CREATE {
    /// Security context (desired access).
    pub SecurityContext: *mut IO_SECURITY_CONTEXT,
    /// Create options in the low 24 bits, create disposition in the high 8.
    pub Options: u32,
    /// Padding: `FileAttributes` is `POINTER_ALIGNMENT` (`DECLSPEC_ALIGN(8)` on x64) in C.
    pub PointerAlignment1: u32,
    /// File attributes (offset 0x10).
    pub FileAttributes: u16,
    /// Share access.
    pub ShareAccess: u16,
    /// Padding: `EaLength` is `POINTER_ALIGNMENT` in C.
    pub PointerAlignment2: u32,
    /// EA length (offset 0x18).
    pub EaLength: u32,
    /// EA buffer.
    pub EaBuffer: PVOID,
    /// Allocation size.
    pub AllocationSize: LARGE_INTEGER,
}

/// `FLT_PARAMETERS.Write`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_WRITE {
    /// Bytes to write.
    pub Length: u32,
    /// Padding: `Key` is `POINTER_ALIGNMENT` (`DECLSPEC_ALIGN(8)` on x64) in C.
    pub PointerAlignment1: u32,
    /// Key (offset 8).
    pub Key: u32,
    /// Offset in the file.
    pub ByteOffset: LARGE_INTEGER,
    /// Buffer (may be a user address).
    pub WriteBuffer: PVOID,
    /// MDL describing the buffer.
    pub MdlAddress: PVOID,
}

/// `FLT_PARAMETERS.SetFileInformation`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_PARAMETERS_SET_FILE_INFORMATION {
    /// Length of `InfoBuffer`.
    pub Length: u32,
    /// Padding: `FileInformationClass` is `POINTER_ALIGNMENT` (`DECLSPEC_ALIGN(8)` on x64) in C.
    pub PointerAlignment1: u32,
    /// `FILE_INFORMATION_CLASS` (offset 8).
    pub FileInformationClass: FILE_INFORMATION_CLASS,
    /// Parent of the target for rename and link.
    pub ParentOfTarget: *mut FILE_OBJECT,
    /// `ReplaceIfExists`/`AdvanceOnly`, `ClusterCount` or `DeleteHandle`, by class.
    pub Union: PVOID,
    /// The information buffer (system buffer).
    pub InfoBuffer: PVOID,
}

/// `FLT_PARAMETERS`: the union of per-operation parameters (48 bytes on x64). The members Vigil
/// reads and those of the operations kernel-sim dispatches are named (see `flt_ops`); `Others`
/// covers the whole union.
#[repr(C)]
#[derive(Clone, Copy)]
pub union FLT_PARAMETERS {
    /// `IRP_MJ_CREATE`.
    pub Create: FLT_PARAMETERS_CREATE,
    /// `IRP_MJ_WRITE`.
    pub Write: FLT_PARAMETERS_WRITE,
    /// `IRP_MJ_SET_INFORMATION`.
    pub SetFileInformation: FLT_PARAMETERS_SET_FILE_INFORMATION,
    /// `IRP_MJ_READ`.
    pub Read: crate::flt_ops::FLT_PARAMETERS_READ,
    /// `IRP_MJ_QUERY_INFORMATION`.
    pub QueryFileInformation: crate::flt_ops::FLT_PARAMETERS_QUERY_FILE_INFORMATION,
    /// `IRP_MJ_QUERY_EA`.
    pub QueryEa: crate::flt_ops::FLT_PARAMETERS_QUERY_EA,
    /// `IRP_MJ_SET_EA`.
    pub SetEa: crate::flt_ops::FLT_PARAMETERS_SET_EA,
    /// `IRP_MJ_QUERY_VOLUME_INFORMATION`.
    pub QueryVolumeInformation: crate::flt_ops::FLT_PARAMETERS_VOLUME_INFORMATION,
    /// `IRP_MJ_SET_VOLUME_INFORMATION`.
    pub SetVolumeInformation: crate::flt_ops::FLT_PARAMETERS_VOLUME_INFORMATION,
    /// `IRP_MJ_DIRECTORY_CONTROL` / `IRP_MN_QUERY_DIRECTORY` (C: `DirectoryControl.QueryDirectory`).
    pub QueryDirectory: crate::flt_ops::FLT_PARAMETERS_QUERY_DIRECTORY,
    /// `IRP_MJ_DIRECTORY_CONTROL` / `IRP_MN_NOTIFY_CHANGE_DIRECTORY` (C:
    /// `DirectoryControl.NotifyDirectory`).
    pub NotifyDirectory: crate::flt_ops::FLT_PARAMETERS_NOTIFY_DIRECTORY,
    /// `IRP_MJ_FILE_SYSTEM_CONTROL` (C: `FileSystemControl.Neither`).
    pub FileSystemControl: crate::flt_ops::FLT_PARAMETERS_CONTROL,
    /// `IRP_MJ_DEVICE_CONTROL`, `IRP_MJ_INTERNAL_DEVICE_CONTROL` (C: `DeviceIoControl.Neither`).
    pub DeviceIoControl: crate::flt_ops::FLT_PARAMETERS_CONTROL,
    /// `IRP_MJ_LOCK_CONTROL`.
    pub LockControl: crate::flt_ops::FLT_PARAMETERS_LOCK_CONTROL,
    /// `IRP_MJ_QUERY_SECURITY`.
    pub QuerySecurity: crate::flt_ops::FLT_PARAMETERS_QUERY_SECURITY,
    /// `IRP_MJ_SET_SECURITY`.
    pub SetSecurity: crate::flt_ops::FLT_PARAMETERS_SET_SECURITY,
    /// `IRP_MJ_SYSTEM_CONTROL`.
    pub WMI: crate::flt_ops::FLT_PARAMETERS_WMI,
    /// `IRP_MJ_QUERY_QUOTA`.
    pub QueryQuota: crate::flt_ops::FLT_PARAMETERS_QUERY_QUOTA,
    /// `IRP_MJ_SET_QUOTA`.
    pub SetQuota: crate::flt_ops::FLT_PARAMETERS_SET_QUOTA,
    /// `IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION`.
    pub AcquireForSectionSynchronization:
        crate::flt_ops::FLT_PARAMETERS_ACQUIRE_FOR_SECTION_SYNCHRONIZATION,
    /// `IRP_MJ_ACQUIRE_FOR_MOD_WRITE`.
    pub AcquireForModifiedPageWriter: crate::flt_ops::FLT_PARAMETERS_ACQUIRE_FOR_MOD_WRITE,
    /// `IRP_MJ_RELEASE_FOR_MOD_WRITE`.
    pub ReleaseForModifiedPageWriter: crate::flt_ops::FLT_PARAMETERS_RELEASE_FOR_MOD_WRITE,
    /// `IRP_MJ_QUERY_OPEN`.
    pub QueryOpen: crate::flt_ops::FLT_PARAMETERS_QUERY_OPEN,
    /// `IRP_MJ_NETWORK_QUERY_OPEN`.
    pub NetworkQueryOpen: crate::flt_ops::FLT_PARAMETERS_NETWORK_QUERY_OPEN,
    /// `IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE`.
    pub FastIoCheckIfPossible: crate::flt_ops::FLT_PARAMETERS_FAST_IO_CHECK_IF_POSSIBLE,
    /// `IRP_MJ_MDL_READ`.
    pub MdlRead: crate::flt_ops::FLT_PARAMETERS_MDL_TRANSFER,
    /// `IRP_MJ_MDL_READ_COMPLETE`.
    pub MdlReadComplete: crate::flt_ops::FLT_PARAMETERS_MDL_READ_COMPLETE,
    /// `IRP_MJ_PREPARE_MDL_WRITE`.
    pub PrepareMdlWrite: crate::flt_ops::FLT_PARAMETERS_MDL_TRANSFER,
    /// `IRP_MJ_MDL_WRITE_COMPLETE`.
    pub MdlWriteComplete: crate::flt_ops::FLT_PARAMETERS_MDL_WRITE_COMPLETE,
    /// `IRP_MJ_VOLUME_MOUNT`.
    pub MountVolume: crate::flt_ops::FLT_PARAMETERS_MOUNT_VOLUME,
    /// Every other operation: six pointer-sized arguments.
    pub Others: [PVOID; 6],
}

/// `FLT_IO_PARAMETER_BLOCK` (72 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FLT_IO_PARAMETER_BLOCK {
    /// `IRP_*` flags of the originating IRP (`IRP_PAGING_IO`, ...).
    pub IrpFlags: u32,
    /// `IRP_MJ_*`.
    pub MajorFunction: u8,
    /// `IRP_MN_*`.
    pub MinorFunction: u8,
    /// `SL_*` operation flags.
    pub OperationFlags: u8,
    /// Reserved.
    pub Reserved: u8,
    /// The file object of the operation.
    pub TargetFileObject: *mut FILE_OBJECT,
    /// The instance the operation goes to.
    pub TargetInstance: PFLT_INSTANCE,
    /// Per-operation parameters.
    pub Parameters: FLT_PARAMETERS,
}

/// `FLT_CALLBACK_DATA` (88 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FLT_CALLBACK_DATA {
    /// `FLTFL_CALLBACK_DATA_*`.
    pub Flags: u32,
    /// The thread that issued the operation.
    pub Thread: PETHREAD,
    /// The parameters.
    pub Iopb: *mut FLT_IO_PARAMETER_BLOCK,
    /// Completion status; set by a filter that returns `FLT_PREOP_COMPLETE`.
    pub IoStatus: IO_STATUS_BLOCK,
    /// Reparse tag data.
    pub TagData: PVOID,
    /// `QueueLinks` + `QueueContext[2]`, or `FilterContext[4]`.
    pub FilterContext: [PVOID; 4],
    /// Mode of the requestor.
    pub RequestorMode: KPROCESSOR_MODE,
}

/// `FLT_RELATED_OBJECTS` (48 bytes; opaque in Wine, layout per Microsoft's
/// "`FLT_RELATED_OBJECTS` structure (fltkernel.h)" page).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_RELATED_OBJECTS {
    /// `sizeof(FLT_RELATED_OBJECTS)`.
    pub Size: u16,
    /// Transaction context, reserved.
    pub TransactionContext: u16,
    /// The filter.
    pub Filter: PFLT_FILTER,
    /// The volume.
    pub Volume: PFLT_VOLUME,
    /// The instance.
    pub Instance: PFLT_INSTANCE,
    /// The file object.
    pub FileObject: *mut FILE_OBJECT,
    /// The transaction.
    pub Transaction: PVOID,
}

/// `FLT_FILE_NAME_INFORMATION` (120 bytes; absent from Wine, layout per Microsoft's
/// "`FLT_FILE_NAME_INFORMATION` structure (fltkernel.h)" page). Returned by
/// `FltGetFileNameInformation`, released by `FltReleaseFileNameInformation`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_FILE_NAME_INFORMATION {
    /// `sizeof(FLT_FILE_NAME_INFORMATION)`.
    pub Size: u16,
    /// `FLTFL_FILE_NAME_PARSED_*` flags.
    pub NamesParsed: u16,
    /// Name format (`FLT_FILE_NAME_NORMALIZED`, ...).
    pub Format: FLT_FILE_NAME_OPTIONS,
    /// The full name.
    pub Name: UNICODE_STRING,
    /// Volume part (after parsing).
    pub Volume: UNICODE_STRING,
    /// Share part (network names).
    pub Share: UNICODE_STRING,
    /// Extension.
    pub Extension: UNICODE_STRING,
    /// Stream.
    pub Stream: UNICODE_STRING,
    /// Final component.
    pub FinalComponent: UNICODE_STRING,
    /// Parent directory.
    pub ParentDir: UNICODE_STRING,
}

/// `PFLT_FILE_NAME_INFORMATION`.
pub type PFLT_FILE_NAME_INFORMATION = *mut FLT_FILE_NAME_INFORMATION;

/// `FLT_VOLUME_PROPERTIES`: what `FltGetVolumeProperties` returns (the three names' buffers
/// follow the structure in the caller's buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FLT_VOLUME_PROPERTIES {
    /// The volume's device type (`FILE_DEVICE_DISK_FILE_SYSTEM`, ...).
    pub DeviceType: DEVICE_TYPE,
    /// `FILE_*` device characteristics.
    pub DeviceCharacteristics: u32,
    /// `DO_*` device object flags.
    pub DeviceObjectFlags: u32,
    /// The device's alignment requirement (`FILE_*_ALIGNMENT`: a mask).
    pub AlignmentRequirement: u32,
    /// Bytes per sector.
    pub SectorSize: u16,
    /// Reserved.
    pub Flags: u16,
    /// The file system driver's name (`\FileSystem\Ntfs`).
    pub FileSystemDriverName: UNICODE_STRING,
    /// The file system's device name.
    pub FileSystemDeviceName: UNICODE_STRING,
    /// The volume's device name (`\Device\HarddiskVolume1`).
    pub RealDeviceName: UNICODE_STRING,
}
