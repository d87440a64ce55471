//! Basic types of `ntdef.h` and `wdm.h`: strings, handles, events, locks, pool and thread
//! routines' parameter types.

use core::ffi::c_void;

/// `NTSTATUS`: negative values are errors, see [`NT_SUCCESS`].
pub type NTSTATUS = i32;
/// `BOOLEAN`: one byte, 0 or 1.
pub type BOOLEAN = u8;
/// `TRUE` as a [`BOOLEAN`].
pub const TRUE: BOOLEAN = 1;
/// `FALSE` as a [`BOOLEAN`].
pub const FALSE: BOOLEAN = 0;
/// `HANDLE`.
pub type HANDLE = *mut c_void;
/// `PVOID`.
pub type PVOID = *mut c_void;
/// `ACCESS_MASK`.
pub type ACCESS_MASK = u32;
/// `KIRQL`: the interrupt request level of a processor.
pub type KIRQL = u8;
/// `KPROCESSOR_MODE`: [`KernelMode`] or [`UserMode`].
pub type KPROCESSOR_MODE = i8;
/// `KPRIORITY`.
pub type KPRIORITY = i32;
/// `KSPIN_LOCK`: a pointer-sized word, zero when free.
pub type KSPIN_LOCK = usize;
/// `EX_PUSH_LOCK`: a pointer-sized word, initialized by `FltInitializePushLock`.
pub type EX_PUSH_LOCK = usize;
/// `POOL_FLAGS` for `ExAllocatePool2`.
pub type POOL_FLAGS = u64;
/// `POOL_TYPE` (for routines that still take one, such as `FltAllocateContext`).
pub type POOL_TYPE = i32;
/// `DEVICE_TYPE`.
pub type DEVICE_TYPE = u32;
/// `EVENT_TYPE`.
pub type EVENT_TYPE = i32;
/// `KWAIT_REASON`.
pub type KWAIT_REASON = i32;
/// `LOGICAL`.
pub type LOGICAL = u32;
/// `SECURITY_DESCRIPTOR`, opaque: Vigil only passes pointers built by `FltBuildDefaultSecurityDescriptor`.
pub type PSECURITY_DESCRIPTOR = *mut c_void;
/// `POBJECT_TYPE`, opaque.
pub type POBJECT_TYPE = *mut c_void;
/// `PEPROCESS`, opaque.
pub type PEPROCESS = *mut c_void;
/// `PACCESS_TOKEN`, opaque.
pub type PACCESS_TOKEN = *mut c_void;
/// `ProcessImageFileName`: the `PROCESSINFOCLASS` of a process's image name (NT path).
pub const ProcessImageFileName: u32 = 27;
/// `ProcessBasicInformation`: the `PROCESSINFOCLASS` of [`PROCESS_BASIC_INFORMATION`].
pub const ProcessBasicInformation: u32 = 0;

/// `PROCESS_BASIC_INFORMATION`: what `ZwQueryInformationProcess(ProcessBasicInformation)`
/// answers; Vigil reads the parent's id (`InheritedFromUniqueProcessId`) of a process it first
/// sees after it started.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PROCESS_BASIC_INFORMATION {
    /// `STATUS_PENDING` while the process runs.
    pub ExitStatus: NTSTATUS,
    /// The process environment block: a user-mode address.
    pub PebBaseAddress: PVOID,
    /// `KAFFINITY`.
    pub AffinityMask: usize,
    /// `KPRIORITY`.
    pub BasePriority: i32,
    /// The process's id.
    pub UniqueProcessId: usize,
    /// The id of the process that created it.
    pub InheritedFromUniqueProcessId: usize,
}

/// `NtCurrentProcess()`: the pseudo-handle of the current process.
pub const NT_CURRENT_PROCESS: HANDLE = core::ptr::without_provenance_mut(usize::MAX);
/// `PETHREAD`, opaque.
pub type PETHREAD = *mut c_void;

/// `NT_SUCCESS`: true for success and informational codes (`0 ..= 0x7FFF_FFFF`).
///
/// Note that `STATUS_TIMEOUT` (0x102) *is* a success code: callers that wait must test for it.
#[inline]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

/// `KernelMode`.
pub const KernelMode: KPROCESSOR_MODE = 0;
/// `UserMode`.
pub const UserMode: KPROCESSOR_MODE = 1;

/// `PASSIVE_LEVEL`.
pub const PASSIVE_LEVEL: KIRQL = 0;
/// `APC_LEVEL`.
pub const APC_LEVEL: KIRQL = 1;
/// `DISPATCH_LEVEL`.
pub const DISPATCH_LEVEL: KIRQL = 2;

/// `NotificationEvent`: stays signalled until cleared, releases every waiter.
pub const NotificationEvent: EVENT_TYPE = 0;
/// `SynchronizationEvent`: auto-clears after releasing one waiter.
pub const SynchronizationEvent: EVENT_TYPE = 1;
/// `Executive` wait reason.
pub const Executive: KWAIT_REASON = 0;

/// `LARGE_INTEGER`, as the 64-bit value (the union's `QuadPart`); 8-byte aligned on x64.
pub type LARGE_INTEGER = i64;

/// `UNICODE_STRING`: counted UTF-16, lengths in bytes, not necessarily NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    /// Length of the string in bytes, without any terminator.
    pub Length: u16,
    /// Size of the buffer in bytes.
    pub MaximumLength: u16,
    /// The UTF-16 code units.
    pub Buffer: *mut u16,
}

/// `LIST_ENTRY`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LIST_ENTRY {
    /// Next entry.
    pub Flink: *mut LIST_ENTRY,
    /// Previous entry.
    pub Blink: *mut LIST_ENTRY,
}

/// `DISPATCHER_HEADER`: the common head of every waitable object (24 bytes on x64).
///
/// Its bit-packed first word is declared as bytes: only the kernel interprets it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DISPATCHER_HEADER {
    /// `Type`, `Signalling`, `Size`, `Reserved1` (the packed first word; Type is byte 0).
    pub Lock: i32,
    /// Non-zero while the object is signalled.
    pub SignalState: i32,
    /// Threads waiting on the object.
    pub WaitListHead: LIST_ENTRY,
}

/// `KEVENT`. Must live in non-paged memory; initialized by `KeInitializeEvent`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KEVENT {
    /// The dispatcher header.
    pub Header: DISPATCHER_HEADER,
}

/// `OBJECT_ATTRIBUTES`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OBJECT_ATTRIBUTES {
    /// `sizeof(OBJECT_ATTRIBUTES)`.
    pub Length: u32,
    /// Directory the name is relative to, or null.
    pub RootDirectory: HANDLE,
    /// The object name.
    pub ObjectName: *mut UNICODE_STRING,
    /// `OBJ_*` flags.
    pub Attributes: u32,
    /// Security descriptor applied to a created object.
    pub SecurityDescriptor: PSECURITY_DESCRIPTOR,
    /// Security quality of service, unused by Vigil.
    pub SecurityQualityOfService: PVOID,
}

/// `OBJ_CASE_INSENSITIVE`.
pub const OBJ_CASE_INSENSITIVE: u32 = 0x0000_0040;
/// `OBJ_KERNEL_HANDLE`: the handle is valid in the system process only (RULES.md, rule 16).
pub const OBJ_KERNEL_HANDLE: u32 = 0x0000_0200;

/// `CLIENT_ID`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CLIENT_ID {
    /// Process id.
    pub UniqueProcess: HANDLE,
    /// Thread id.
    pub UniqueThread: HANDLE,
}

/// `IO_STATUS_BLOCK` (the union's `Status` view).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STATUS_BLOCK {
    /// Final status (shares storage with a pointer in C, hence the 8-byte slot).
    pub Status: NTSTATUS,
    /// Padding that the C union's `Pointer` member occupies.
    #[expect(
        clippy::pub_underscore_fields,
        reason = "padding named as the layout tests name it"
    )]
    pub _Pad: u32,
    /// Operation-specific information (bytes transferred, create disposition taken, ...).
    pub Information: usize,
}

/// `KSTART_ROUTINE`: a system thread's entry point.
pub type PKSTART_ROUTINE = Option<unsafe extern "win64" fn(StartContext: PVOID)>;

/// `SYNCHRONIZE` access right.
pub const SYNCHRONIZE: ACCESS_MASK = 0x0010_0000;
/// `THREAD_ALL_ACCESS` (Vista and later).
pub const THREAD_ALL_ACCESS: ACCESS_MASK = 0x001F_FFFF;
/// `KEY_READ`.
pub const KEY_READ: ACCESS_MASK = 0x0002_0019;

/// `POOL_FLAG_USE_QUOTA`: never used by Vigil.
pub const POOL_FLAG_USE_QUOTA: POOL_FLAGS = 0x0000_0001;
/// `POOL_FLAG_UNINITIALIZED`: skip zeroing (kernel-sim poisons such blocks).
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0002;
/// `POOL_FLAG_RAISE_ON_FAILURE`: never used by Vigil (RULES.md, rule 20).
pub const POOL_FLAG_RAISE_ON_FAILURE: POOL_FLAGS = 0x0000_0020;
/// `POOL_FLAG_NON_PAGED`: non-paged, non-executable.
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0040;
/// `POOL_FLAG_PAGED`.
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x0000_0100;

/// `NonPagedPoolNx`: the no-execute non-paged pool type.
pub const NonPagedPoolNx: POOL_TYPE = 512;
/// `PagedPool`.
pub const PagedPool: POOL_TYPE = 1;

/// `KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation`.
pub const KeyValuePartialInformation: i32 = 2;
/// `REG_SZ`.
pub const REG_SZ: u32 = 1;
/// `REG_DWORD`.
pub const REG_DWORD: u32 = 4;
/// `REG_MULTI_SZ`.
pub const REG_MULTI_SZ: u32 = 7;

/// `KEY_VALUE_PARTIAL_INFORMATION`; `Data` is the first byte of `DataLength` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    /// Title index, unused.
    pub TitleIndex: u32,
    /// `REG_*` type of the value.
    pub Type: u32,
    /// Length of the data in bytes.
    pub DataLength: u32,
    /// First byte of the data (variable length in C).
    pub Data: [u8; 1],
}
