//! Routines exported by `FLTMGR.SYS`, imported through `raw-dylib`, with their IRQL limits.

use crate::basic::{
    ACCESS_MASK, EX_PUSH_LOCK, HANDLE, LARGE_INTEGER, NTSTATUS, OBJECT_ATTRIBUTES, POOL_TYPE,
    PSECURITY_DESCRIPTOR, PVOID,
};
use crate::flt::{
    FLT_CALLBACK_DATA, FLT_CONTEXT_TYPE, FLT_FILE_NAME_OPTIONS, FLT_REGISTRATION,
    FLT_SET_CONTEXT_OPERATION, PFLT_CONNECT_NOTIFY, PFLT_CONTEXT, PFLT_DISCONNECT_NOTIFY,
    PFLT_FILE_NAME_INFORMATION, PFLT_FILTER, PFLT_INSTANCE, PFLT_MESSAGE_NOTIFY, PFLT_PORT,
};
use crate::io::{DRIVER_OBJECT, FILE_INFORMATION_CLASS, FILE_OBJECT};

#[link(name = "FLTMGR.SYS", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "win64" {
    /// `FltRegisterFilter`: IRQL <= APC_LEVEL (its reference page); Vigil calls it from
    /// DriverEntry at PASSIVE_LEVEL.
    pub fn FltRegisterFilter(
        Driver: *mut DRIVER_OBJECT,
        Registration: *const FLT_REGISTRATION,
        RetFilter: *mut PFLT_FILTER,
    ) -> NTSTATUS;
    /// `FltStartFiltering`: PASSIVE_LEVEL.
    pub fn FltStartFiltering(Filter: PFLT_FILTER) -> NTSTATUS;
    /// `FltUnregisterFilter`: PASSIVE_LEVEL. Waits for callbacks in flight and tears instances down.
    pub fn FltUnregisterFilter(Filter: PFLT_FILTER);

    /// `FltBuildDefaultSecurityDescriptor`: PASSIVE_LEVEL. System and Administrators only.
    pub fn FltBuildDefaultSecurityDescriptor(
        SecurityDescriptor: *mut PSECURITY_DESCRIPTOR,
        DesiredAccess: ACCESS_MASK,
    ) -> NTSTATUS;
    /// `FltFreeSecurityDescriptor`: PASSIVE_LEVEL.
    pub fn FltFreeSecurityDescriptor(SecurityDescriptor: PSECURITY_DESCRIPTOR);
    /// `FltCreateCommunicationPort`: PASSIVE_LEVEL.
    pub fn FltCreateCommunicationPort(
        Filter: PFLT_FILTER,
        ServerPort: *mut PFLT_PORT,
        ObjectAttributes: *mut OBJECT_ATTRIBUTES,
        ServerPortCookie: PVOID,
        ConnectNotifyCallback: PFLT_CONNECT_NOTIFY,
        DisconnectNotifyCallback: PFLT_DISCONNECT_NOTIFY,
        MessageNotifyCallback: PFLT_MESSAGE_NOTIFY,
        MaxConnections: i32,
    ) -> NTSTATUS;
    /// `FltCloseCommunicationPort`: PASSIVE_LEVEL.
    pub fn FltCloseCommunicationPort(ServerPort: PFLT_PORT);
    /// `FltCloseClientPort`: PASSIVE_LEVEL. Sets `*ClientPort` to null under FltMgr's port lock.
    pub fn FltCloseClientPort(Filter: PFLT_FILTER, ClientPort: *mut PFLT_PORT);
    /// `FltSendMessage`: IRQL <= APC_LEVEL. Returns `STATUS_TIMEOUT` (a success code) when the
    /// timeout expires, `STATUS_PORT_DISCONNECTED` when the client port is closed.
    pub fn FltSendMessage(
        Filter: PFLT_FILTER,
        ClientPort: *mut PFLT_PORT,
        SenderBuffer: PVOID,
        SenderBufferLength: u32,
        ReplyBuffer: PVOID,
        ReplyLength: *mut u32,
        Timeout: *mut LARGE_INTEGER,
    ) -> NTSTATUS;

    /// `FltQueryInformationFile`: PASSIVE_LEVEL with APCs enabled (the file must be open).
    pub fn FltQueryInformationFile(
        Instance: PFLT_INSTANCE,
        FileObject: *mut FILE_OBJECT,
        FileInformation: PVOID,
        Length: u32,
        FileInformationClass: FILE_INFORMATION_CLASS,
        LengthReturned: *mut u32,
    ) -> NTSTATUS;
    /// `FltGetFileNameInformation`: IRQL <= APC_LEVEL.
    pub fn FltGetFileNameInformation(
        CallbackData: *mut FLT_CALLBACK_DATA,
        NameOptions: FLT_FILE_NAME_OPTIONS,
        FileNameInformation: *mut PFLT_FILE_NAME_INFORMATION,
    ) -> NTSTATUS;
    /// `FltGetDestinationFileNameInformation`: IRQL PASSIVE_LEVEL. The name a rename or hard
    /// link *targets*, built from the `FILE_RENAME_INFORMATION`/`FILE_LINK_INFORMATION` buffer.
    pub fn FltGetDestinationFileNameInformation(
        Instance: PFLT_INSTANCE,
        FileObject: *mut FILE_OBJECT,
        RootDirectory: HANDLE,
        FileName: *mut u16,
        FileNameLength: u32,
        NameOptions: FLT_FILE_NAME_OPTIONS,
        RetFileNameInformation: *mut PFLT_FILE_NAME_INFORMATION,
    ) -> NTSTATUS;
    /// `FltReleaseFileNameInformation`: IRQL <= APC_LEVEL.
    pub fn FltReleaseFileNameInformation(FileNameInformation: PFLT_FILE_NAME_INFORMATION);
    /// `FltGetRequestorProcessId`: IRQL <= DISPATCH_LEVEL.
    pub fn FltGetRequestorProcessId(CallbackData: *mut FLT_CALLBACK_DATA) -> u32;
    /// `FltCancelFileOpen`: PASSIVE_LEVEL, from a post-create callback only; the callback then
    /// fails the create with an error status.
    pub fn FltCancelFileOpen(Instance: PFLT_INSTANCE, FileObject: *mut FILE_OBJECT);

    /// `FltAllocateContext`: IRQL <= APC_LEVEL.
    pub fn FltAllocateContext(
        Filter: PFLT_FILTER,
        ContextType: FLT_CONTEXT_TYPE,
        ContextSize: usize,
        PoolType: POOL_TYPE,
        ReturnedContext: *mut PFLT_CONTEXT,
    ) -> NTSTATUS;
    /// `FltSetStreamHandleContext`: IRQL <= APC_LEVEL.
    pub fn FltSetStreamHandleContext(
        Instance: PFLT_INSTANCE,
        FileObject: *mut FILE_OBJECT,
        Operation: FLT_SET_CONTEXT_OPERATION,
        NewContext: PFLT_CONTEXT,
        OldContext: *mut PFLT_CONTEXT,
    ) -> NTSTATUS;
    /// `FltGetStreamHandleContext`: IRQL <= APC_LEVEL.
    pub fn FltGetStreamHandleContext(
        Instance: PFLT_INSTANCE,
        FileObject: *mut FILE_OBJECT,
        Context: *mut PFLT_CONTEXT,
    ) -> NTSTATUS;
    /// `FltSetStreamContext`: IRQL <= APC_LEVEL. `STATUS_NOT_SUPPORTED` where the file system
    /// keeps no per-stream contexts; with `FLT_SET_CONTEXT_KEEP_IF_EXISTS`,
    /// `STATUS_FLT_CONTEXT_ALREADY_DEFINED` and the existing context, referenced, in `OldContext`.
    pub fn FltSetStreamContext(
        Instance: PFLT_INSTANCE,
        FileObject: *mut FILE_OBJECT,
        Operation: FLT_SET_CONTEXT_OPERATION,
        NewContext: PFLT_CONTEXT,
        OldContext: *mut PFLT_CONTEXT,
    ) -> NTSTATUS;
    /// `FltGetStreamContext`: IRQL <= APC_LEVEL. The context referenced, or `STATUS_NOT_FOUND`.
    pub fn FltGetStreamContext(
        Instance: PFLT_INSTANCE,
        FileObject: *mut FILE_OBJECT,
        Context: *mut PFLT_CONTEXT,
    ) -> NTSTATUS;
    /// `FltReleaseContext`: IRQL <= DISPATCH_LEVEL.
    pub fn FltReleaseContext(Context: PFLT_CONTEXT);

    /// `FltInitializePushLock`: IRQL <= APC_LEVEL.
    pub fn FltInitializePushLock(PushLock: *mut EX_PUSH_LOCK);
    /// `FltDeletePushLock`: IRQL <= APC_LEVEL.
    pub fn FltDeletePushLock(PushLock: *mut EX_PUSH_LOCK);
    // The `...Ex` routines, not the plain names: current WDK headers define
    // FltAcquirePushLockExclusive/Shared and FltReleasePushLock as macros over these (their
    // reference pages call them macros), so a driver built with the WDK imports these, as
    // Windows' own minifilters do; the plain names stay exported for drivers built with old
    // WDKs, but a driver that imports them depends on that compatibility export.
    /// `FltAcquirePushLockExclusiveEx`: IRQL <= APC_LEVEL; enters a critical region itself.
    pub fn FltAcquirePushLockExclusiveEx(PushLock: *mut EX_PUSH_LOCK, Flags: u32);
    /// `FltAcquirePushLockSharedEx`: IRQL <= APC_LEVEL; enters a critical region itself.
    pub fn FltAcquirePushLockSharedEx(PushLock: *mut EX_PUSH_LOCK, Flags: u32);
    /// `FltReleasePushLockEx`: IRQL <= APC_LEVEL; leaves the critical region.
    pub fn FltReleasePushLockEx(PushLock: *mut EX_PUSH_LOCK, Flags: u32);
}
