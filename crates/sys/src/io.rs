//! I/O manager types: driver, device and file objects, major function codes, and the file
//! information classes Vigil inspects.
//!
//! Sub-structures the driver never touches (the device queue, the DPC, the wait context block) are
//! declared as opaque, correctly sized and aligned words so that the offsets of the fields Vigil
//! does touch are exact; `tests/layout.rs` checks them.

use crate::basic::{
    ACCESS_MASK, BOOLEAN, DEVICE_TYPE, HANDLE, KEVENT, KSPIN_LOCK, LARGE_INTEGER, LIST_ENTRY,
    NTSTATUS, PSECURITY_DESCRIPTOR, PVOID, UNICODE_STRING,
};

/// `IRP_MJ_CREATE`.
pub const IRP_MJ_CREATE: u8 = 0x00;
/// `IRP_MJ_CLOSE`.
pub const IRP_MJ_CLOSE: u8 = 0x02;
/// `IRP_MJ_READ`.
pub const IRP_MJ_READ: u8 = 0x03;
/// `IRP_MJ_WRITE`.
pub const IRP_MJ_WRITE: u8 = 0x04;
/// `IRP_MJ_SET_INFORMATION`.
pub const IRP_MJ_SET_INFORMATION: u8 = 0x06;
/// `IRP_MJ_CLEANUP`.
pub const IRP_MJ_CLEANUP: u8 = 0x12;
/// `IRP_MJ_MAXIMUM_FUNCTION`.
pub const IRP_MJ_MAXIMUM_FUNCTION: u8 = 0x1b;

/// `IRP_NOCACHE`.
pub const IRP_NOCACHE: u32 = 0x0000_0001;
/// `IRP_PAGING_IO`: paging I/O, which Vigil never reports.
pub const IRP_PAGING_IO: u32 = 0x0000_0002;
/// `IRP_SYNCHRONOUS_PAGING_IO`.
pub const IRP_SYNCHRONOUS_PAGING_IO: u32 = 0x0000_0040;

/// `DO_DEVICE_INITIALIZING`: set on a new device object; the I/O manager clears it for devices
/// created in DriverEntry once DriverEntry returns (RULES.md, rule 1).
pub const DO_DEVICE_INITIALIZING: u32 = 0x0000_0080;

/// `FILE_DEVICE_CD_ROM_FILE_SYSTEM`.
pub const FILE_DEVICE_CD_ROM_FILE_SYSTEM: DEVICE_TYPE = 0x0000_0003;
/// `FILE_DEVICE_DISK_FILE_SYSTEM`.
pub const FILE_DEVICE_DISK_FILE_SYSTEM: DEVICE_TYPE = 0x0000_0008;
/// `FILE_DEVICE_MAILSLOT`.
pub const FILE_DEVICE_MAILSLOT: DEVICE_TYPE = 0x0000_000c;
/// `FILE_DEVICE_NAMED_PIPE`.
pub const FILE_DEVICE_NAMED_PIPE: DEVICE_TYPE = 0x0000_0011;
/// `FILE_DEVICE_NETWORK_FILE_SYSTEM`.
pub const FILE_DEVICE_NETWORK_FILE_SYSTEM: DEVICE_TYPE = 0x0000_0014;
/// `FILE_DEVICE_UNKNOWN`.
pub const FILE_DEVICE_UNKNOWN: DEVICE_TYPE = 0x0000_0022;

/// `FILE_DEVICE_SECURE_OPEN` device characteristic.
pub const FILE_DEVICE_SECURE_OPEN: u32 = 0x0000_0100;

/// `DRIVER_INITIALIZE`: the signature of `DriverEntry`.
pub type PDRIVER_INITIALIZE = Option<
    unsafe extern "win64" fn(
        DriverObject: *mut DRIVER_OBJECT,
        RegistryPath: *mut UNICODE_STRING,
    ) -> NTSTATUS,
>;
/// `DRIVER_UNLOAD`.
pub type PDRIVER_UNLOAD = Option<unsafe extern "win64" fn(DriverObject: *mut DRIVER_OBJECT)>;
/// `DRIVER_DISPATCH`.
pub type PDRIVER_DISPATCH =
    Option<unsafe extern "win64" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: PVOID) -> NTSTATUS>;

/// `DRIVER_OBJECT` (x64: 0x150 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct DRIVER_OBJECT {
    /// `IO_TYPE_DRIVER` (4).
    pub Type: i16,
    /// `sizeof(DRIVER_OBJECT)`.
    pub Size: i16,
    /// First device object created by the driver.
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// Driver flags.
    pub Flags: u32,
    /// Image base.
    pub DriverStart: PVOID,
    /// Image size.
    pub DriverSize: u32,
    /// Loader data, opaque.
    pub DriverSection: PVOID,
    /// `DRIVER_EXTENSION`, opaque to Vigil.
    pub DriverExtension: PVOID,
    /// `\Driver\<name>`.
    pub DriverName: UNICODE_STRING,
    /// Hardware database path, unused.
    pub HardwareDatabase: *mut UNICODE_STRING,
    /// Fast I/O dispatch table, unused by minifilters.
    pub FastIoDispatch: PVOID,
    /// The entry point.
    pub DriverInit: PDRIVER_INITIALIZE,
    /// StartIo, unused.
    pub DriverStartIo: PVOID,
    /// Unload routine: a minifilter leaves it null (FltMgr unloads through FilterUnloadCallback).
    pub DriverUnload: PDRIVER_UNLOAD,
    /// IRP dispatch table.
    pub MajorFunction: [PDRIVER_DISPATCH; IRP_MJ_MAXIMUM_FUNCTION as usize + 1],
}

/// `DEVICE_OBJECT` (x64: fields end at 0x148; the WDK declares it
/// `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`, so its size is 0x150).
///
/// Vigil touches only `Flags` (for `DO_DEVICE_INITIALIZING`). Wine and mingw-w64 omit the
/// alignment, so their `sizeof` is 0x148 while every offset agrees; the layout test compares
/// offsets and documents that difference.
#[repr(C, align(16))]
#[derive(Debug)]
pub struct DEVICE_OBJECT {
    /// `IO_TYPE_DEVICE` (3).
    pub Type: i16,
    /// `sizeof(DEVICE_OBJECT)` plus the extension.
    pub Size: u16,
    /// Reference count.
    pub ReferenceCount: i32,
    /// Owning driver.
    pub DriverObject: *mut DRIVER_OBJECT,
    /// Next device of the same driver.
    pub NextDevice: *mut DEVICE_OBJECT,
    /// Device attached above this one.
    pub AttachedDevice: *mut DEVICE_OBJECT,
    /// Current IRP (StartIo drivers).
    pub CurrentIrp: PVOID,
    /// IO timer.
    pub Timer: PVOID,
    /// `DO_*` flags, among them [`DO_DEVICE_INITIALIZING`].
    pub Flags: u32,
    /// Characteristics.
    pub Characteristics: u32,
    /// Volume parameter block.
    pub Vpb: PVOID,
    /// Device extension.
    pub DeviceExtension: PVOID,
    /// Device type.
    pub DeviceType: DEVICE_TYPE,
    /// Stack size.
    pub StackSize: i8,
    /// `Queue` (union of `LIST_ENTRY` and `WAIT_CONTEXT_BLOCK`, 0x48 bytes), opaque.
    pub Queue: [u64; 9],
    /// Alignment requirement.
    pub AlignmentRequirement: u32,
    /// `KDEVICE_QUEUE` (0x28 bytes), opaque.
    pub DeviceQueue: [u64; 5],
    /// `KDPC` (0x40 bytes), opaque.
    pub Dpc: [u64; 8],
    /// Active thread count (file systems).
    pub ActiveThreadCount: u32,
    /// Security descriptor.
    pub SecurityDescriptor: PSECURITY_DESCRIPTOR,
    /// Device lock.
    pub DeviceLock: KEVENT,
    /// Sector size.
    pub SectorSize: u16,
    /// Spare.
    pub Spare1: u16,
    /// `DEVOBJ_EXTENSION`, opaque.
    pub DeviceObjectExtension: PVOID,
    /// Reserved.
    pub Reserved: PVOID,
}

/// `FILE_OBJECT` (x64: 0xD8 bytes). Filters treat it as opaque apart from identity; it is
/// declared in full because kernel-sim builds them.
#[repr(C)]
#[derive(Debug)]
pub struct FILE_OBJECT {
    /// `IO_TYPE_FILE` (5).
    pub Type: i16,
    /// `sizeof(FILE_OBJECT)`.
    pub Size: i16,
    /// Device the file was opened on.
    pub DeviceObject: *mut DEVICE_OBJECT,
    /// Volume parameter block.
    pub Vpb: PVOID,
    /// File system context (per stream).
    pub FsContext: PVOID,
    /// File system context (per handle).
    pub FsContext2: PVOID,
    /// Section object pointers.
    pub SectionObjectPointer: PVOID,
    /// Cache map.
    pub PrivateCacheMap: PVOID,
    /// Final status.
    pub FinalStatus: NTSTATUS,
    /// Related file object (relative opens).
    pub RelatedFileObject: *mut FILE_OBJECT,
    /// Lock operation.
    pub LockOperation: BOOLEAN,
    /// Delete pending.
    pub DeletePending: BOOLEAN,
    /// Read access granted.
    pub ReadAccess: BOOLEAN,
    /// Write access granted.
    pub WriteAccess: BOOLEAN,
    /// Delete access granted.
    pub DeleteAccess: BOOLEAN,
    /// Shared read.
    pub SharedRead: BOOLEAN,
    /// Shared write.
    pub SharedWrite: BOOLEAN,
    /// Shared delete.
    pub SharedDelete: BOOLEAN,
    /// `FO_*` flags.
    pub Flags: u32,
    /// Name as opened (valid only during create).
    pub FileName: UNICODE_STRING,
    /// Current byte offset.
    pub CurrentByteOffset: LARGE_INTEGER,
    /// Waiters.
    pub Waiters: u32,
    /// Busy.
    pub Busy: u32,
    /// Last lock.
    pub LastLock: PVOID,
    /// Lock event.
    pub Lock: KEVENT,
    /// Completion event.
    pub Event: KEVENT,
    /// Completion context.
    pub CompletionContext: PVOID,
    /// IRP list lock.
    pub IrpListLock: KSPIN_LOCK,
    /// IRP list.
    pub IrpList: LIST_ENTRY,
    /// File object extension.
    pub FileObjectExtension: PVOID,
}

/// `FILE_SUPERSEDE` create disposition.
pub const FILE_SUPERSEDE: u32 = 0;
/// `FILE_OPEN`.
pub const FILE_OPEN: u32 = 1;
/// `FILE_CREATE`.
pub const FILE_CREATE: u32 = 2;
/// `FILE_OPEN_IF`.
pub const FILE_OPEN_IF: u32 = 3;
/// `FILE_OVERWRITE`.
pub const FILE_OVERWRITE: u32 = 4;
/// `FILE_OVERWRITE_IF`.
pub const FILE_OVERWRITE_IF: u32 = 5;

/// `FILE_DIRECTORY_FILE` create option.
pub const FILE_DIRECTORY_FILE: u32 = 0x0000_0001;
/// `FILE_DELETE_ON_CLOSE` create option.
pub const FILE_DELETE_ON_CLOSE: u32 = 0x0000_1000;
/// `FILE_OPEN_BY_FILE_ID` create option: the name is the file's 8-byte ID.
pub const FILE_OPEN_BY_FILE_ID: u32 = 0x0000_2000;

/// `FILE_SUPERSEDED`: create's `IoStatus.Information`.
pub const FILE_SUPERSEDED: usize = 0;
/// `FILE_OPENED`.
pub const FILE_OPENED: usize = 1;
/// `FILE_CREATED`.
pub const FILE_CREATED: usize = 2;
/// `FILE_OVERWRITTEN`.
pub const FILE_OVERWRITTEN: usize = 3;

/// `FILE_WRITE_DATA` access right.
pub const FILE_WRITE_DATA: ACCESS_MASK = 0x0002;
/// `FILE_APPEND_DATA` access right.
pub const FILE_APPEND_DATA: ACCESS_MASK = 0x0004;
/// `DELETE` access right.
pub const DELETE: ACCESS_MASK = 0x0001_0000;
/// `GENERIC_WRITE` access right (mapped to the file's write rights by the I/O manager).
pub const GENERIC_WRITE: ACCESS_MASK = 0x4000_0000;
/// `GENERIC_READ` access right (mapped to the file's read rights by the I/O manager).
pub const GENERIC_READ: ACCESS_MASK = 0x8000_0000;

/// `FILE_INFORMATION_CLASS`.
pub type FILE_INFORMATION_CLASS = i32;
/// `FileInternalInformation`: the file system's 64-bit file ID (`FILE_INTERNAL_INFORMATION`).
pub const FileInternalInformation: FILE_INFORMATION_CLASS = 6;
/// `FileIdInformation`: the volume serial number and 128-bit file ID (`FILE_ID_INFORMATION`).
pub const FileIdInformation: FILE_INFORMATION_CLASS = 59;
/// `FileRenameInformation`.
pub const FileRenameInformation: FILE_INFORMATION_CLASS = 10;
/// `FileLinkInformation`.
pub const FileLinkInformation: FILE_INFORMATION_CLASS = 11;
/// `FileDispositionInformation`.
pub const FileDispositionInformation: FILE_INFORMATION_CLASS = 13;
/// `FileDispositionInformationEx` (Windows 10 1607 and later).
pub const FileDispositionInformationEx: FILE_INFORMATION_CLASS = 64;
/// `FileRenameInformationEx` (Windows 10 1709 and later).
pub const FileRenameInformationEx: FILE_INFORMATION_CLASS = 65;
/// `FileLinkInformationEx` (Windows 10 1809 and later).
pub const FileLinkInformationEx: FILE_INFORMATION_CLASS = 72;

/// `FILE_DISPOSITION_INFORMATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FILE_DISPOSITION_INFORMATION {
    /// Non-zero to mark the file for deletion.
    pub DeleteFile: BOOLEAN,
}

/// `FILE_DISPOSITION_INFORMATION_EX`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FILE_DISPOSITION_INFORMATION_EX {
    /// `FILE_DISPOSITION_*` flags.
    pub Flags: u32,
}

/// `FILE_DISPOSITION_DELETE` (in `FILE_DISPOSITION_INFORMATION_EX::Flags`).
pub const FILE_DISPOSITION_DELETE: u32 = 0x0000_0001;
/// `FILE_DISPOSITION_POSIX_SEMANTICS`.
pub const FILE_DISPOSITION_POSIX_SEMANTICS: u32 = 0x0000_0002;
/// `FILE_DISPOSITION_ON_CLOSE`: set or clear delete-on-close instead of the disposition.
pub const FILE_DISPOSITION_ON_CLOSE: u32 = 0x0000_0008;

/// `FILE_RENAME_INFORMATION` and `FILE_LINK_INFORMATION` (identical layouts). `FileName` is the
/// first code unit of `FileNameLength` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FILE_RENAME_INFORMATION {
    /// `ReplaceIfExists` (a BOOLEAN) or, for the `Ex` classes, the `FILE_RENAME_*` flags.
    pub Flags: u32,
    /// Directory the name is relative to, or null.
    pub RootDirectory: HANDLE,
    /// Length of the target name in bytes.
    pub FileNameLength: u32,
    /// First code unit of the target name (variable length in C).
    pub FileName: [u16; 1],
}

/// `FILE_LINK_INFORMATION`: the same layout as [`FILE_RENAME_INFORMATION`].
pub type FILE_LINK_INFORMATION = FILE_RENAME_INFORMATION;

/// `MDL`: a memory descriptor list's header (the page frame numbers follow it).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MDL {
    /// The next MDL of a chain.
    pub Next: *mut MDL,
    /// Bytes of the header and its page frame array.
    pub Size: i16,
    /// `MDL_*` flags.
    pub MdlFlags: i16,
    /// The process whose address space the pages belong to.
    pub Process: PVOID,
    /// The system address of the buffer once mapped.
    pub MappedSystemVa: PVOID,
    /// The page-aligned virtual address the buffer starts in.
    pub StartVa: PVOID,
    /// Bytes described.
    pub ByteCount: u32,
    /// Offset of the buffer in its first page.
    pub ByteOffset: u32,
}

/// `MDL_MAPPED_TO_SYSTEM_VA`: `MappedSystemVa` is valid.
pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
/// `MDL_SOURCE_IS_NONPAGED_POOL`: built by `MmBuildMdlForNonPagedPool`.
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;

/// `FILE_INTERNAL_INFORMATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FILE_INTERNAL_INFORMATION {
    /// The 64-bit file ID (0 where the file system has none).
    pub IndexNumber: i64,
}

/// `FILE_ID_128`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FILE_ID_128 {
    /// The identifier's bytes.
    pub Identifier: [u8; 16],
}

/// `FILE_ID_INFORMATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FILE_ID_INFORMATION {
    /// The volume's serial number.
    pub VolumeSerialNumber: u64,
    /// The 128-bit file ID; zero on a file system without 128-bit IDs.
    pub FileId: FILE_ID_128,
}
