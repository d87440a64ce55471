//! Routines and data exported by `ntoskrnl.exe`, imported through `raw-dylib`.
//!
//! Each routine's IRQL limit, from its reference page, is in its doc line: kernel-sim enforces
//! the same limits.

use crate::basic::DEVICE_TYPE;
use crate::basic::{
    ACCESS_MASK, BOOLEAN, CLIENT_ID, EVENT_TYPE, HANDLE, KEVENT, KIRQL, KPRIORITY, KPROCESSOR_MODE,
    KSPIN_LOCK, KWAIT_REASON, LARGE_INTEGER, NTSTATUS, OBJECT_ATTRIBUTES, PACCESS_TOKEN, PEPROCESS,
    PKSTART_ROUTINE, POBJECT_TYPE, POOL_FLAGS, PVOID, UNICODE_STRING,
};
use crate::io::{DEVICE_OBJECT, DRIVER_OBJECT};
use crate::process::PCREATE_PROCESS_NOTIFY_ROUTINE_EX;

#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "win64" {
    /// `ExAllocatePool2`: IRQL <= DISPATCH_LEVEL (non-paged above APC_LEVEL). Returns null on
    /// failure unless `POOL_FLAG_RAISE_ON_FAILURE`, which Vigil never passes.
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: u32) -> PVOID;
    /// `ExFreePoolWithTag`: IRQL <= DISPATCH_LEVEL.
    pub fn ExFreePoolWithTag(P: PVOID, Tag: u32);

    /// `KeInitializeEvent`: any IRQL (the event must be in non-paged memory).
    pub fn KeInitializeEvent(Event: *mut KEVENT, Type: EVENT_TYPE, State: BOOLEAN);
    /// `KeSetEvent`: IRQL <= DISPATCH_LEVEL (with `Wait` false).
    pub fn KeSetEvent(Event: *mut KEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> i32;
    /// `KeClearEvent`: IRQL <= DISPATCH_LEVEL.
    pub fn KeClearEvent(Event: *mut KEVENT);
    /// `KeReadStateEvent`: IRQL <= DISPATCH_LEVEL.
    pub fn KeReadStateEvent(Event: *mut KEVENT) -> i32;
    /// `KeWaitForSingleObject`: IRQL <= APC_LEVEL for a non-zero timeout, <= DISPATCH_LEVEL for a
    /// zero one. Returns `STATUS_TIMEOUT` (a success code) when the timeout expires.
    pub fn KeWaitForSingleObject(
        Object: PVOID,
        WaitReason: KWAIT_REASON,
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Timeout: *mut LARGE_INTEGER,
    ) -> NTSTATUS;
    /// `KeDelayExecutionThread`: IRQL <= APC_LEVEL. Negative interval = relative, 100 ns units.
    pub fn KeDelayExecutionThread(
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Interval: *mut LARGE_INTEGER,
    ) -> NTSTATUS;
    /// `KeQuerySystemTimePrecise`: any IRQL. 100 ns units since 1601-01-01 UTC.
    pub fn KeQuerySystemTimePrecise(CurrentTime: *mut LARGE_INTEGER);
    /// `KeAcquireSpinLockRaiseToDpc`: IRQL <= DISPATCH_LEVEL; returns the previous IRQL.
    pub fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KSPIN_LOCK) -> KIRQL;
    /// `KeReleaseSpinLock`: IRQL == DISPATCH_LEVEL; restores `NewIrql`.
    pub fn KeReleaseSpinLock(SpinLock: *mut KSPIN_LOCK, NewIrql: KIRQL);
    /// `KeEnterCriticalRegion`: IRQL <= APC_LEVEL. Disables normal kernel APCs; does *not* raise
    /// IRQL (RULES.md, rule 6).
    pub fn KeEnterCriticalRegion();
    /// `KeLeaveCriticalRegion`: IRQL <= APC_LEVEL.
    pub fn KeLeaveCriticalRegion();
    /// `KeBugCheckEx`: any IRQL; never returns.
    pub fn KeBugCheckEx(
        BugCheckCode: u32,
        BugCheckParameter1: usize,
        BugCheckParameter2: usize,
        BugCheckParameter3: usize,
        BugCheckParameter4: usize,
    ) -> !;

    /// `PsCreateSystemThread`: PASSIVE_LEVEL.
    pub fn PsCreateSystemThread(
        ThreadHandle: *mut HANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectAttributes: *mut OBJECT_ATTRIBUTES,
        ProcessHandle: HANDLE,
        ClientId: *mut CLIENT_ID,
        StartRoutine: PKSTART_ROUTINE,
        StartContext: PVOID,
    ) -> NTSTATUS;
    /// `PsTerminateSystemThread`: PASSIVE_LEVEL, from the thread itself; never returns.
    pub fn PsTerminateSystemThread(ExitStatus: NTSTATUS) -> NTSTATUS;
    /// `IoGetCurrentProcess` (what the WDK's `PsGetCurrentProcess` is): IRQL <= DISPATCH_LEVEL.
    pub fn IoGetCurrentProcess() -> PEPROCESS;
    /// `PsReferencePrimaryToken`: PASSIVE_LEVEL. Every call is paired with
    /// `PsDereferencePrimaryToken`.
    pub fn PsReferencePrimaryToken(Process: PEPROCESS) -> PACCESS_TOKEN;
    /// `PsDereferencePrimaryToken`: IRQL < DISPATCH_LEVEL.
    pub fn PsDereferencePrimaryToken(PrimaryToken: PACCESS_TOKEN);
    /// `SeTokenIsAdmin`: PASSIVE_LEVEL. Whether the token holds the local Administrators group.
    pub fn SeTokenIsAdmin(Token: PACCESS_TOKEN) -> BOOLEAN;
    /// `ZwQueryInformationProcess`: PASSIVE_LEVEL. With `ProcessImageFileName` the buffer
    /// receives a `UNICODE_STRING` followed by the image's NT path.
    pub fn ZwQueryInformationProcess(
        ProcessHandle: HANDLE,
        ProcessInformationClass: u32,
        ProcessInformation: PVOID,
        ProcessInformationLength: u32,
        ReturnLength: *mut u32,
    ) -> NTSTATUS;

    /// `PsSetCreateProcessNotifyRoutineEx`: PASSIVE_LEVEL. The image holding the routine must
    /// be linked with `/INTEGRITYCHECK` (else `STATUS_ACCESS_DENIED`); a removal waits for the
    /// notifications in flight.
    pub fn PsSetCreateProcessNotifyRoutineEx(
        NotifyRoutine: PCREATE_PROCESS_NOTIFY_ROUTINE_EX,
        Remove: BOOLEAN,
    ) -> NTSTATUS;
    /// `PsGetProcessStartKey`: IRQL <= DISPATCH_LEVEL. A process identifier that no other
    /// process of the boot session has.
    pub fn PsGetProcessStartKey(Process: PEPROCESS) -> u64;
    /// `PsGetProcessExitStatus`: IRQL <= APC_LEVEL. The process's exit status.
    pub fn PsGetProcessExitStatus(Process: PEPROCESS) -> NTSTATUS;
    /// `SeQueryInformationToken`: PASSIVE_LEVEL. For `TokenUser` the routine allocates the
    /// answer, which the caller frees with `ExFreePool`; for `TokenSessionId` it writes a `ULONG`.
    pub fn SeQueryInformationToken(
        Token: PACCESS_TOKEN,
        TokenInformationClass: u32,
        TokenInformation: *mut PVOID,
    ) -> NTSTATUS;
    /// `ExFreePool`: IRQL <= DISPATCH_LEVEL. Frees what a routine allocated for the caller
    /// (`SeQueryInformationToken`).
    pub fn ExFreePool(P: PVOID);

    /// `RtlUpcaseUnicodeChar`: IRQL <= APC_LEVEL. The uppercase of one UTF-16 unit, from the
    /// system's upcase table.
    pub fn RtlUpcaseUnicodeChar(SourceCharacter: u16) -> u16;

    /// `PsGetCurrentProcessId`: any IRQL.
    pub fn PsGetCurrentProcessId() -> HANDLE;
    /// `PsGetCurrentThreadId`: any IRQL.
    pub fn PsGetCurrentThreadId() -> HANDLE;

    /// `ObReferenceObjectByHandle`: PASSIVE_LEVEL. Pass the expected object type (rule 17).
    pub fn ObReferenceObjectByHandle(
        Handle: HANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectType: POBJECT_TYPE,
        AccessMode: KPROCESSOR_MODE,
        Object: *mut PVOID,
        HandleInformation: PVOID,
    ) -> NTSTATUS;
    /// `ObfDereferenceObject` (what the `ObDereferenceObject` macro calls): IRQL <= DISPATCH_LEVEL.
    pub fn ObfDereferenceObject(Object: PVOID) -> isize;
    /// `ZwWaitForSingleObject`: PASSIVE_LEVEL. Waits on the object a (kernel) handle refers to;
    /// `STATUS_TIMEOUT` (a success code) when the timeout expires.
    pub fn ZwWaitForSingleObject(
        Handle: HANDLE,
        Alertable: BOOLEAN,
        Timeout: *mut LARGE_INTEGER,
    ) -> NTSTATUS;
    /// `ZwClose`: PASSIVE_LEVEL.
    pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
    /// `ZwOpenKey`: PASSIVE_LEVEL.
    pub fn ZwOpenKey(
        KeyHandle: *mut HANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectAttributes: *mut OBJECT_ATTRIBUTES,
    ) -> NTSTATUS;
    /// `ZwQueryValueKey`: PASSIVE_LEVEL.
    pub fn ZwQueryValueKey(
        KeyHandle: HANDLE,
        ValueName: *mut UNICODE_STRING,
        KeyValueInformationClass: i32,
        KeyValueInformation: PVOID,
        Length: u32,
        ResultLength: *mut u32,
    ) -> NTSTATUS;

    /// `IoCreateDevice`: PASSIVE_LEVEL. The new device has `DO_DEVICE_INITIALIZING` set.
    pub fn IoCreateDevice(
        DriverObject: *mut DRIVER_OBJECT,
        DeviceExtensionSize: u32,
        DeviceName: *mut UNICODE_STRING,
        DeviceType: DEVICE_TYPE,
        DeviceCharacteristics: u32,
        Exclusive: BOOLEAN,
        DeviceObject: *mut *mut DEVICE_OBJECT,
    ) -> NTSTATUS;
    /// `IoDeleteDevice`: PASSIVE_LEVEL.
    pub fn IoDeleteDevice(DeviceObject: *mut DEVICE_OBJECT);

    /// `memcpy`, exported by ntoskrnl; the compiler's calls bind here.
    pub fn memcpy(dest: PVOID, src: *const core::ffi::c_void, count: usize) -> PVOID;
    /// `memmove`.
    pub fn memmove(dest: PVOID, src: *const core::ffi::c_void, count: usize) -> PVOID;
    /// `memset`.
    pub fn memset(dest: PVOID, c: i32, count: usize) -> PVOID;
    /// `memcmp`.
    pub fn memcmp(a: *const core::ffi::c_void, b: *const core::ffi::c_void, count: usize) -> i32;

    /// `__C_specific_handler`: the language handler named by the unwind data of C functions with
    /// `__try/__except` (the SEH user-copy helper). Never called directly; the exception
    /// dispatcher calls it.
    pub fn __C_specific_handler(
        ExceptionRecord: PVOID,
        EstablisherFrame: PVOID,
        ContextRecord: PVOID,
        DispatcherContext: PVOID,
    ) -> i32;

    /// `PsThreadType`: the thread object type, for `ObReferenceObjectByHandle`.
    ///
    /// The C header declares `POBJECT_TYPE *PsThreadType` because, linked through ntoskrnl.lib,
    /// that name is the import-table slot; a `raw-dylib` static *is* the kernel variable (the
    /// compiler goes through the slot itself), so its type is the variable's: `POBJECT_TYPE`.
    pub static PsThreadType: POBJECT_TYPE;
    /// `MmUserProbeAddress`: the first address above the user-mode range.
    pub static MmUserProbeAddress: usize;
}
