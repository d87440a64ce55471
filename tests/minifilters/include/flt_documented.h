/* flt_documented.h: the Filter Manager declarations that Wine's DDK headers (Debian libwine-dev,
 * ddk/fltkernel.h) lack, for the C minifilters under tests/minifilters. Each is transcribed from
 * the "Syntax" block of its Microsoft reference page, cited beside it; nothing here comes from a
 * WDK. Included after <ddk/fltkernel.h>, which supplies FLT_REGISTRATION, FLT_CALLBACK_DATA,
 * FLT_IO_PARAMETER_BLOCK and FltRegisterFilter/FltStartFiltering/FltUnregisterFilter.
 *
 * Built by xtask::build_c_minifilter with clang --target=x86_64-pc-windows-msvc. */
#ifndef FLT_DOCUMENTED_H
#define FLT_DOCUMENTED_H

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_registration
 * (Version: FLT_REGISTRATION_VERSION, 0x0203 since Windows 8). */
#define FLT_REGISTRATION_VERSION 0x0203
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_operation_registration
 * (the array ends with an entry whose MajorFunction is IRP_MJ_OPERATION_END). */
#define IRP_MJ_OPERATION_END ((UCHAR)0x80)
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_context_registration */
#define FLT_CONTEXT_END 0xffff

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_related_objects
 * (Wine declares the type only as an incomplete struct). */
typedef struct _FLT_RELATED_OBJECTS {
    USHORT const Size;
    USHORT const TransactionContext;
    PFLT_FILTER const Filter;
    void *const Volume; /* PFLT_VOLUME */
    PFLT_INSTANCE const Instance;
    PFILE_OBJECT const FileObject;
    void *const Transaction; /* PKTRANSACTION */
} FLT_RELATED_OBJECTS, *PFLT_RELATED_OBJECTS;

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_file_name_information */
typedef USHORT FLT_FILE_NAME_PARSED_FLAGS;
typedef struct _FLT_FILE_NAME_INFORMATION {
    USHORT Size;
    FLT_FILE_NAME_PARSED_FLAGS NamesParsed;
    FLT_FILE_NAME_OPTIONS Format;
    UNICODE_STRING Name;
    UNICODE_STRING Volume;
    UNICODE_STRING Share;
    UNICODE_STRING Extension;
    UNICODE_STRING Stream;
    UNICODE_STRING FinalComponent;
    UNICODE_STRING ParentDir;
} FLT_FILE_NAME_INFORMATION, *PFLT_FILE_NAME_INFORMATION;

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilenameinformation
 * (NameOptions: one format, one query method). */
#define FLT_FILE_NAME_NORMALIZED 0x01
#define FLT_FILE_NAME_OPENED 0x02
#define FLT_FILE_NAME_QUERY_DEFAULT 0x0100
NTSTATUS FltGetFileNameInformation(PFLT_CALLBACK_DATA CallbackData,
                                   FLT_FILE_NAME_OPTIONS NameOptions,
                                   PFLT_FILE_NAME_INFORMATION *FileNameInformation);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreleasefilenameinformation */
VOID FltReleaseFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetdestinationfilenameinformation */
NTSTATUS FltGetDestinationFileNameInformation(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                              HANDLE RootDirectory, PWSTR FileName,
                                              ULONG FileNameLength,
                                              FLT_FILE_NAME_OPTIONS NameOptions,
                                              PFLT_FILE_NAME_INFORMATION *RetFileNameInformation);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/ne-wdm-_file_information_class
 * (the Ex classes, Windows 10 1607 and 1709 on, are missing from Wine 8's enumeration). */
#define FileDispositionInformationExClass ((FILE_INFORMATION_CLASS)64)
#define FileRenameInformationExClass ((FILE_INFORMATION_CLASS)65)
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_file_disposition_information_ex */
#define FILE_DISPOSITION_DELETE 0x00000001
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_post_operation_callback
 * (Flags). */
#define FLTFL_POST_OPERATION_DRAINING 0x00000001

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetrequestorprocessid */
ULONG FltGetRequestorProcessId(PFLT_CALLBACK_DATA CallbackData);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetirpname */
PCHAR FltGetIrpName(UCHAR IrpMajorCode);

/* Communication ports.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatecommunicationport
 * and its callbacks' pages (nc-fltkernel-pflt_connect_notify, -pflt_disconnect_notify,
 * -pflt_message_notify). */
typedef struct _FLT_PORT *PFLT_PORT;
#define FLT_PORT_CONNECT 0x0001
#define FLT_PORT_ALL_ACCESS (FLT_PORT_CONNECT | STANDARD_RIGHTS_ALL)
typedef NTSTATUS (*PFLT_CONNECT_NOTIFY)(PFLT_PORT ClientPort, PVOID ServerPortCookie,
                                        PVOID ConnectionContext, ULONG SizeOfContext,
                                        PVOID *ConnectionPortCookie);
typedef VOID (*PFLT_DISCONNECT_NOTIFY)(PVOID ConnectionCookie);
typedef NTSTATUS (*PFLT_MESSAGE_NOTIFY)(PVOID PortCookie, PVOID InputBuffer,
                                        ULONG InputBufferLength, PVOID OutputBuffer,
                                        ULONG OutputBufferLength,
                                        PULONG ReturnOutputBufferLength);
NTSTATUS FltCreateCommunicationPort(PFLT_FILTER Filter, PFLT_PORT *ServerPort,
                                    POBJECT_ATTRIBUTES ObjectAttributes, PVOID ServerPortCookie,
                                    PFLT_CONNECT_NOTIFY ConnectNotifyCallback,
                                    PFLT_DISCONNECT_NOTIFY DisconnectNotifyCallback,
                                    PFLT_MESSAGE_NOTIFY MessageNotifyCallback,
                                    LONG MaxConnections);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsendmessage */
NTSTATUS FltSendMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer,
                        ULONG SenderBufferLength, PVOID ReplyBuffer, PULONG ReplyLength,
                        PLARGE_INTEGER Timeout);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltclosecommunicationport */
VOID FltCloseCommunicationPort(PFLT_PORT ServerPort);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcloseclientport */
VOID FltCloseClientPort(PFLT_FILTER Filter, PFLT_PORT *ClientPort);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltbuilddefaultsecuritydescriptor */
NTSTATUS FltBuildDefaultSecurityDescriptor(PSECURITY_DESCRIPTOR *SecurityDescriptor,
                                           ACCESS_MASK DesiredAccess);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreesecuritydescriptor */
VOID FltFreeSecurityDescriptor(PSECURITY_DESCRIPTOR SecurityDescriptor);

/* Contexts.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatecontext */
NTSTATUS FltAllocateContext(PFLT_FILTER Filter, FLT_CONTEXT_TYPE ContextType, SIZE_T ContextSize,
                            POOL_TYPE PoolType, PFLT_CONTEXT *ReturnedContext);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ne-fltkernel-_flt_set_context_operation */
typedef enum _FLT_SET_CONTEXT_OPERATION {
    FLT_SET_CONTEXT_REPLACE_IF_EXISTS,
    FLT_SET_CONTEXT_KEEP_IF_EXISTS
} FLT_SET_CONTEXT_OPERATION, *PFLT_SET_CONTEXT_OPERATION;
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetstreamhandlecontext */
NTSTATUS FltSetStreamHandleContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                   FLT_SET_CONTEXT_OPERATION Operation, PFLT_CONTEXT NewContext,
                                   PFLT_CONTEXT *OldContext);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetstreamhandlecontext */
NTSTATUS FltGetStreamHandleContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                   PFLT_CONTEXT *Context);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetinstancecontext */
NTSTATUS FltSetInstanceContext(PFLT_INSTANCE Instance, FLT_SET_CONTEXT_OPERATION Operation,
                               PFLT_CONTEXT NewContext, PFLT_CONTEXT *OldContext);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetinstancecontext */
NTSTATUS FltGetInstanceContext(PFLT_INSTANCE Instance, PFLT_CONTEXT *Context);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreleasecontext */
VOID FltReleaseContext(PFLT_CONTEXT Context);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/ne-wdm-_pool_type
 * (NonPagedPoolNx = 512; Wine 8's POOL_TYPE stops before it). */
#define NonPagedPoolNx ((POOL_TYPE)512)

/* Push locks. EX_PUSH_LOCK is pointer-sized (Wine declares it only as an incomplete struct,
 * so a filter keeps a ULONG_PTR and passes its address). The WDK maps FltAcquirePushLockShared
 * and friends to the ...Ex routines with Flags 0.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltinitializepushlock
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltacquirepushlocksharedex
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltacquirepushlockexclusiveex
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreleasepushlockex
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletepushlock */
VOID FltInitializePushLock(PEX_PUSH_LOCK PushLock);
VOID FltDeletePushLock(PEX_PUSH_LOCK PushLock);
VOID FltAcquirePushLockSharedEx(PEX_PUSH_LOCK PushLock, ULONG Flags);
VOID FltAcquirePushLockExclusiveEx(PEX_PUSH_LOCK PushLock, ULONG Flags);
VOID FltReleasePushLockEx(PEX_PUSH_LOCK PushLock, ULONG Flags);

/* Generic work items.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocategenericworkitem
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltqueuegenericworkitem
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreegenericworkitem */
typedef struct _FLT_GENERIC_WORKITEM *PFLT_GENERIC_WORKITEM;
typedef VOID (*PFLT_GENERIC_WORKITEM_ROUTINE)(PFLT_GENERIC_WORKITEM FltWorkItem, PVOID FltObject,
                                              PVOID Context);
PFLT_GENERIC_WORKITEM FltAllocateGenericWorkItem(VOID);
NTSTATUS FltQueueGenericWorkItem(PFLT_GENERIC_WORKITEM FltWorkItem, PVOID FltObject,
                                 PFLT_GENERIC_WORKITEM_ROUTINE WorkerRoutine,
                                 WORK_QUEUE_TYPE QueueType, PVOID Context);
VOID FltFreeGenericWorkItem(PFLT_GENERIC_WORKITEM FltWorkItem);

/* Deferred-I/O work items.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatedeferredioworkitem
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltqueuedeferredioworkitem
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreedeferredioworkitem */
typedef struct _FLT_DEFERRED_IO_WORKITEM *PFLT_DEFERRED_IO_WORKITEM;
typedef VOID (*PFLT_DEFERRED_IO_WORKITEM_ROUTINE)(PFLT_DEFERRED_IO_WORKITEM FltWorkItem,
                                                  PFLT_CALLBACK_DATA CallbackData, PVOID Context);
PFLT_DEFERRED_IO_WORKITEM FltAllocateDeferredIoWorkItem(VOID);
NTSTATUS FltQueueDeferredIoWorkItem(PFLT_DEFERRED_IO_WORKITEM FltWorkItem, PFLT_CALLBACK_DATA Data,
                                    PFLT_DEFERRED_IO_WORKITEM_ROUTINE WorkerRoutine,
                                    WORK_QUEUE_TYPE QueueType, PVOID Context);
VOID FltFreeDeferredIoWorkItem(PFLT_DEFERRED_IO_WORKITEM FltWorkItem);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcompletependedpreoperation */
VOID FltCompletePendedPreOperation(PFLT_CALLBACK_DATA CallbackData,
                                   FLT_PREOP_CALLBACK_STATUS CallbackStatus, PVOID Context);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcompletependedpostoperation
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdocompletionprocessingwhensafe */
VOID FltCompletePendedPostOperation(PFLT_CALLBACK_DATA CallbackData);
BOOLEAN FltDoCompletionProcessingWhenSafe(PFLT_CALLBACK_DATA Data, PCFLT_RELATED_OBJECTS FltObjects,
                                          PVOID CompletionContext, FLT_POST_OPERATION_FLAGS Flags,
                                          PFLT_POST_OPERATION_CALLBACK SafePostCallback,
                                          PFLT_POSTOP_CALLBACK_STATUS RetPostOperationStatus);

/* I/O a filter issues itself.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatefileex
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreadfile
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltclose */
NTSTATUS FltCreateFileEx(PFLT_FILTER Filter, PFLT_INSTANCE Instance, PHANDLE FileHandle,
                         PFILE_OBJECT *FileObject, ACCESS_MASK DesiredAccess,
                         POBJECT_ATTRIBUTES ObjectAttributes, PIO_STATUS_BLOCK IoStatusBlock,
                         PLARGE_INTEGER AllocationSize, ULONG FileAttributes, ULONG ShareAccess,
                         ULONG CreateDisposition, ULONG CreateOptions, PVOID EaBuffer,
                         ULONG EaLength, ULONG Flags);
typedef VOID (*PFLT_COMPLETED_ASYNC_IO_CALLBACK)(PFLT_CALLBACK_DATA CallbackData,
                                                 PFLT_CONTEXT Context);
NTSTATUS FltReadFile(PFLT_INSTANCE InitiatingInstance, PFILE_OBJECT FileObject,
                     PLARGE_INTEGER ByteOffset, ULONG Length, PVOID Buffer, ULONG Flags,
                     PULONG BytesRead, PFLT_COMPLETED_ASYNC_IO_CALLBACK CallbackRoutine,
                     PVOID CallbackContext);
NTSTATUS FltClose(HANDLE FileHandle);

/* ObDereferenceObject is a macro over ObfDereferenceObject in the WDK, which is what
 * ntoskrnl.exe exports (Wine declares ObDereferenceObject as a function instead).
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-obdereferenceobject */
LONG_PTR ObfDereferenceObject(PVOID Object);

/* Buffer swapping.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatepoolalignedwithtag
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreepoolalignedwithtag
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetcallbackdatadirty */
PVOID FltAllocatePoolAlignedWithTag(PFLT_INSTANCE Instance, POOL_TYPE PoolType,
                                    SIZE_T NumberOfBytes, ULONG Tag);
VOID FltFreePoolAlignedWithTag(PFLT_INSTANCE Instance, PVOID Buffer, ULONG Tag);
VOID FltSetCallbackDataDirty(PFLT_CALLBACK_DATA Data);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/mm-bad-pointer
 * (MmGetSystemAddressForMdlSafe's Priority may be OR'd with MdlMappingNoExecute, Windows 8 on). */
#ifndef MdlMappingNoExecute
#define MdlMappingNoExecute 0x40000000
#endif

/* Volumes.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumefrominstance
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumeproperties
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_volume_properties
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltobjectdereference */
typedef struct _FLT_VOLUME *PFLT_VOLUME;
typedef struct _FLT_VOLUME_PROPERTIES {
    DEVICE_TYPE DeviceType;
    ULONG DeviceCharacteristics;
    ULONG DeviceObjectFlags;
    ULONG AlignmentRequirement;
    USHORT SectorSize;
    USHORT Flags;
    UNICODE_STRING FileSystemDriverName;
    UNICODE_STRING FileSystemDeviceName;
    UNICODE_STRING RealDeviceName;
} FLT_VOLUME_PROPERTIES, *PFLT_VOLUME_PROPERTIES;
NTSTATUS FltGetVolumeFromInstance(PFLT_INSTANCE Instance, PFLT_VOLUME *RetVolume);
NTSTATUS FltGetVolumeProperties(PFLT_VOLUME Volume, PFLT_VOLUME_PROPERTIES VolumeProperties,
                                ULONG Length, PULONG LengthReturned);
VOID FltObjectDereference(PVOID FltObject);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumename
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumeguidname */
NTSTATUS FltGetVolumeName(PFLT_VOLUME Volume, PUNICODE_STRING VolumeName, PULONG BufferSizeNeeded);
NTSTATUS FltGetVolumeGuidName(PFLT_VOLUME Volume, PUNICODE_STRING VolumeGuidName,
                              PULONG BufferSizeNeeded);

/* More contexts and volume queries.
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetvolumecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetvolumecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreferencecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltisvolumewritable
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilesystemtype */
NTSTATUS FltSetVolumeContext(PFLT_VOLUME Volume, FLT_SET_CONTEXT_OPERATION Operation,
                             PFLT_CONTEXT NewContext, PFLT_CONTEXT *OldContext);
NTSTATUS FltGetVolumeContext(PFLT_FILTER Filter, PFLT_VOLUME Volume, PFLT_CONTEXT *Context);
VOID FltReferenceContext(PFLT_CONTEXT Context);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetstreamcontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetstreamcontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetfilecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilecontext */
NTSTATUS FltSetStreamContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                             FLT_SET_CONTEXT_OPERATION Operation, PFLT_CONTEXT NewContext,
                             PFLT_CONTEXT *OldContext);
NTSTATUS FltGetStreamContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                             PFLT_CONTEXT *Context);
NTSTATUS FltSetFileContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                           FLT_SET_CONTEXT_OPERATION Operation, PFLT_CONTEXT NewContext,
                           PFLT_CONTEXT *OldContext);
NTSTATUS FltGetFileContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject, PFLT_CONTEXT *Context);
NTSTATUS FltIsVolumeWritable(PVOID FltObject, PBOOLEAN IsWritable);
NTSTATUS FltGetFileSystemType(PVOID FltObject, PFLT_FILESYSTEM_TYPE FileSystemType);

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-exreleaseresourcelite
 * (the WDK declares it; Wine's wdm.h has only ExReleaseResourceForThreadLite). */
VOID ExReleaseResourceLite(PERESOURCE Resource);

/* Status values a filter returns or tests, from the NTSTATUS values page
 * https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-erref/596a1078-e883-4972-9bbc-49e60bebca55 */
#ifndef STATUS_FLT_CONTEXT_ALREADY_DEFINED
#define STATUS_FLT_CONTEXT_ALREADY_DEFINED ((NTSTATUS)0xC01C0002L)
#endif
#ifndef STATUS_FLT_DO_NOT_ATTACH
#define STATUS_FLT_DO_NOT_ATTACH ((NTSTATUS)0xC01C000FL)
#endif
#ifndef STATUS_NOT_FOUND
#define STATUS_NOT_FOUND ((NTSTATUS)0xC0000225L)
#endif

/* Context deletion, disk device objects and FltDetachVolume (issue 18), from
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeleteinstancecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletevolumecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletestreamcontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletefilecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletestreamhandlecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetdiskdeviceobject
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdetachvolume */
VOID FltDeleteContext(PFLT_CONTEXT Context);
NTSTATUS FltDeleteInstanceContext(PFLT_INSTANCE Instance, PFLT_CONTEXT *OldContext);
NTSTATUS FltDeleteVolumeContext(PFLT_FILTER Filter, PFLT_VOLUME Volume, PFLT_CONTEXT *OldContext);
NTSTATUS FltDeleteStreamContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                PFLT_CONTEXT *OldContext);
NTSTATUS FltDeleteFileContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                              PFLT_CONTEXT *OldContext);
NTSTATUS FltDeleteStreamHandleContext(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                      PFLT_CONTEXT *OldContext);
NTSTATUS FltGetDiskDeviceObject(PFLT_VOLUME Volume, PDEVICE_OBJECT *DiskDeviceObject);
NTSTATUS FltDetachVolume(PFLT_FILTER Filter, PFLT_VOLUME Volume, PCUNICODE_STRING InstanceName);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/specifying-device-types */
#ifndef FILE_DEVICE_DISK
#define FILE_DEVICE_DISK 0x00000007
#endif
#ifndef STATUS_FLT_NO_DEVICE_OBJECT
#define STATUS_FLT_NO_DEVICE_OBJECT ((NTSTATUS)0xC01C0019L)
#endif

/* Transactions (issue 18), from
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsettransactioncontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgettransactioncontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdeletetransactioncontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltenlistintransaction
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltrollbackenlistment
 * The transaction is the opaque PKTRANSACTION of FLT_RELATED_OBJECTS (declared above as void *);
 * the notification values are those of ktmtypes.h (NOTIFICATION_MASK is a ULONG). */
NTSTATUS FltSetTransactionContext(PFLT_INSTANCE Instance, PVOID Transaction,
                                  FLT_SET_CONTEXT_OPERATION Operation, PFLT_CONTEXT NewContext,
                                  PFLT_CONTEXT *OldContext);
NTSTATUS FltGetTransactionContext(PFLT_INSTANCE Instance, PVOID Transaction, PFLT_CONTEXT *Context);
NTSTATUS FltDeleteTransactionContext(PFLT_INSTANCE Instance, PVOID Transaction,
                                     PFLT_CONTEXT *OldContext);
NTSTATUS FltEnlistInTransaction(PFLT_INSTANCE Instance, PVOID Transaction,
                                PFLT_CONTEXT TransactionContext, ULONG NotificationMask);
NTSTATUS FltRollbackEnlistment(PFLT_INSTANCE Instance, PVOID Transaction,
                               PFLT_CONTEXT TransactionContext);
#ifndef TRANSACTION_NOTIFY_COMMIT
#define TRANSACTION_NOTIFY_PREPREPARE 0x00000001
#define TRANSACTION_NOTIFY_PREPARE 0x00000002
#define TRANSACTION_NOTIFY_COMMIT 0x00000004
#define TRANSACTION_NOTIFY_ROLLBACK 0x00000008
#define TRANSACTION_NOTIFY_COMMIT_FINALIZE 0x40000000
#endif
#ifndef FLT_TRANSACTION_CONTEXT
#define FLT_TRANSACTION_CONTEXT 0x0020
#endif
#ifndef STATUS_FLT_ALREADY_ENLISTED
#define STATUS_FLT_ALREADY_ENLISTED ((NTSTATUS)0xC01C001BL)
#endif
/* Names (issue 18).
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltparsefilenameinformation
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilenameinformationunsafe
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_file_name_information
 * (NamesParsed flags) and the FLT_FILE_NAME_OPTIONS page (query methods, flags)
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/flt-file-name-options */
#define FLTFL_FILE_NAME_PARSED_FINAL_COMPONENT 0x0001
#define FLTFL_FILE_NAME_PARSED_EXTENSION 0x0002
#define FLTFL_FILE_NAME_PARSED_STREAM 0x0004
#define FLTFL_FILE_NAME_PARSED_PARENT_DIR 0x0008
#define FLT_FILE_NAME_SHORT 0x03
#define FLT_FILE_NAME_QUERY_CACHE_ONLY 0x0200
#define FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY 0x0300
#define FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP 0x0400
#define FLT_FILE_NAME_DO_NOT_CACHE 0x02000000
NTSTATUS FltParseFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltparsefilename */
NTSTATUS FltParseFileName(PCUNICODE_STRING FileName, PUNICODE_STRING Extension,
                          PUNICODE_STRING Stream, PUNICODE_STRING FinalComponent);
NTSTATUS FltGetFileNameInformationUnsafe(PFILE_OBJECT FileObject, PFLT_INSTANCE Instance,
                                         FLT_FILE_NAME_OPTIONS NameOptions,
                                         PFLT_FILE_NAME_INFORMATION *FileNameInformation);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcheckandgrownamecontrol
 * (FLT_NAME_CONTROL and the name-provider callback types are in Wine's fltkernel.h). */
NTSTATUS FltCheckAndGrowNameControl(PFLT_NAME_CONTROL NameCtrl, USHORT NewSize);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltpurgefilenameinformationcache */
NTSTATUS FltPurgeFileNameInformationCache(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgettunneledname */
NTSTATUS FltGetTunneledName(PFLT_CALLBACK_DATA CallbackData,
                            PFLT_FILE_NAME_INFORMATION FileNameInformation,
                            PFLT_FILE_NAME_INFORMATION *RetTunneledFileNameInformation);

/* I/O a filter issues itself: FltCreateFileEx2, FltSetInformationFile, FltFsControlFile and
 * callback data it builds and performs (issue 18).
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatefileex2
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_io_driver_create_context
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/nf-ntddk-ioinitializedrivercreatecontext
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetinformationfile
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfscontrolfile
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatecallbackdata
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltperformsynchronousio
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltperformasynchronousio
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreusecallbackdata
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreecallbackdata */
typedef struct _IO_DRIVER_CREATE_CONTEXT {
    CSHORT Size;
    PVOID ExtraCreateParameter; /* struct _ECP_LIST * */
    PVOID DeviceObjectHint;
    PVOID TxnParameters;        /* PTXN_PARAMETER_BLOCK */
    PVOID SiloContext;          /* PESILO, Windows 10 1607 on */
} IO_DRIVER_CREATE_CONTEXT, *PIO_DRIVER_CREATE_CONTEXT;
/* Documented as zeroing the structure and setting Size; an inline function in the WDK. */
static inline VOID IoInitializeDriverCreateContext(PIO_DRIVER_CREATE_CONTEXT DriverContext)
{
    RtlZeroMemory(DriverContext, sizeof(IO_DRIVER_CREATE_CONTEXT));
    DriverContext->Size = sizeof(IO_DRIVER_CREATE_CONTEXT);
}
NTSTATUS FltCreateFileEx2(PFLT_FILTER Filter, PFLT_INSTANCE Instance, PHANDLE FileHandle,
                          PFILE_OBJECT *FileObject, ACCESS_MASK DesiredAccess,
                          POBJECT_ATTRIBUTES ObjectAttributes, PIO_STATUS_BLOCK IoStatusBlock,
                          PLARGE_INTEGER AllocationSize, ULONG FileAttributes, ULONG ShareAccess,
                          ULONG CreateDisposition, ULONG CreateOptions, PVOID EaBuffer,
                          ULONG EaLength, ULONG Flags, PIO_DRIVER_CREATE_CONTEXT DriverContext);
NTSTATUS FltSetInformationFile(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                               PVOID FileInformation, ULONG Length,
                               FILE_INFORMATION_CLASS FileInformationClass);
NTSTATUS FltFsControlFile(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject, ULONG FsControlCode,
                          PVOID InputBuffer, ULONG InputBufferLength, PVOID OutputBuffer,
                          ULONG OutputBufferLength, PULONG LengthReturned);
NTSTATUS FltAllocateCallbackData(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                 PFLT_CALLBACK_DATA *RetNewCallbackData);
VOID FltPerformSynchronousIo(PFLT_CALLBACK_DATA CallbackData);
NTSTATUS FltPerformAsynchronousIo(PFLT_CALLBACK_DATA CallbackData,
                                  PFLT_COMPLETED_ASYNC_IO_CALLBACK CallbackRoutine,
                                  PVOID CallbackContext);
VOID FltReuseCallbackData(PFLT_CALLBACK_DATA CallbackData);
VOID FltFreeCallbackData(PFLT_CALLBACK_DATA CallbackData);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltqueryinformationfile */
NTSTATUS FltQueryInformationFile(PFLT_INSTANCE Instance, PFILE_OBJECT FileObject,
                                 PVOID FileInformation, ULONG Length,
                                 FILE_INFORMATION_CLASS FileInformationClass,
                                 PULONG LengthReturned);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcancelio
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltisiocanceled */
BOOLEAN FltCancelIo(PFLT_CALLBACK_DATA CallbackData);
BOOLEAN FltIsIoCanceled(PFLT_CALLBACK_DATA CallbackData);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/irp-mj-file-system-control */
#ifndef IRP_MN_USER_FS_REQUEST
#define IRP_MN_USER_FS_REQUEST 0x00
#endif
#ifndef STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST
#define STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST ((NTSTATUS)0xC01C0003L)
#endif

/* Memory and locks (issue 18): what Wine's headers leave out, written from the reference pages.
 * On x64 the WDK's InterlockedPushEntrySList, InterlockedPopEntrySList and
 * InterlockedFlushSList are macros for the Exp... exports, and the allocate/free of lookaside
 * lists are inline: they pop or push the list's SList head and call its Allocate / Free
 * pointers when it is empty / full (the behaviour the pages describe; mingw-w64's wdm.h has
 * the same shape).
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-initializeslisthead
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-exquerydepthslist
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-extrytoacquirefastmutex
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-exinitializelookasidelistex
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatefromnpagedlookasidelist
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/wdm/nf-wdm-exfreetonpagedlookasidelist */
VOID InitializeSListHead(PSLIST_HEADER SListHead);
PSLIST_ENTRY ExpInterlockedPushEntrySList(PSLIST_HEADER ListHead, PSLIST_ENTRY ListEntry);
PSLIST_ENTRY ExpInterlockedPopEntrySList(PSLIST_HEADER ListHead);
PSLIST_ENTRY ExpInterlockedFlushSList(PSLIST_HEADER ListHead);
USHORT ExQueryDepthSList(PSLIST_HEADER SListHead);
BOOLEAN ExTryToAcquireFastMutex(PFAST_MUTEX FastMutex);
NTSTATUS ExInitializeLookasideListEx(PLOOKASIDE_LIST_EX Lookaside, PALLOCATE_FUNCTION_EX Allocate,
                                     PFREE_FUNCTION_EX Free, POOL_TYPE PoolType, ULONG Flags,
                                     SIZE_T Size, ULONG Tag, USHORT Depth);
VOID ExDeleteLookasideListEx(PLOOKASIDE_LIST_EX Lookaside);

static inline PVOID ExAllocateFromNPagedLookasideList(PNPAGED_LOOKASIDE_LIST Lookaside)
{
    PVOID entry;

    Lookaside->L.TotalAllocates += 1;
    entry = ExpInterlockedPopEntrySList(&Lookaside->L.ListHead);
    if (entry == NULL) {
        Lookaside->L.AllocateMisses += 1;
        entry = Lookaside->L.Allocate(Lookaside->L.Type, Lookaside->L.Size, Lookaside->L.Tag);
    }
    return entry;
}

static inline VOID ExFreeToNPagedLookasideList(PNPAGED_LOOKASIDE_LIST Lookaside, PVOID Entry)
{
    Lookaside->L.TotalFrees += 1;
    if (ExQueryDepthSList(&Lookaside->L.ListHead) >= Lookaside->L.Depth) {
        Lookaside->L.FreeMisses += 1;
        Lookaside->L.Free(Entry);
    } else {
        ExpInterlockedPushEntrySList(&Lookaside->L.ListHead, (PSLIST_ENTRY)Entry);
    }
}

static inline PVOID ExAllocateFromLookasideListEx(PLOOKASIDE_LIST_EX Lookaside)
{
    PVOID entry;

    Lookaside->L.TotalAllocates += 1;
    entry = ExpInterlockedPopEntrySList(&Lookaside->L.ListHead);
    if (entry == NULL) {
        Lookaside->L.AllocateMisses += 1;
        entry = Lookaside->L.AllocateEx(Lookaside->L.Type, Lookaside->L.Size, Lookaside->L.Tag,
                                        Lookaside);
    }
    return entry;
}

static inline VOID ExFreeToLookasideListEx(PLOOKASIDE_LIST_EX Lookaside, PVOID Entry)
{
    Lookaside->L.TotalFrees += 1;
    if (ExQueryDepthSList(&Lookaside->L.ListHead) >= Lookaside->L.Depth) {
        Lookaside->L.FreeMisses += 1;
        Lookaside->L.FreeEx(Entry, Lookaside);
    } else {
        ExpInterlockedPushEntrySList(&Lookaside->L.ListHead, (PSLIST_ENTRY)Entry);
    }
}

/* The DOS wildcards of FsRtlIsNameInExpression
 * (https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntifs/nf-ntifs-_fsrtl_advanced_fcb_header-fsrtlisnameinexpression). */
#ifndef DOS_STAR
#define DOS_STAR (L'<')
#define DOS_QM (L'>')
#define DOS_DOT (L'"')
#endif

/* Cancel-safe callback data queues and cancel routines (issue 18). FLT_CALLBACK_DATA_QUEUE is
 * opaque (its page): room for Filter Manager's IO_CSQ, flags, instance and the six routines
 * (128 bytes on x64). FLT_CALLBACK_DATA_QUEUE_IO_CONTEXT is an IO_CSQ_IRP_CONTEXT (Type, Irp,
 * Csq).
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqinitialize
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqinsertio
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqremoveio
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqremovenextio
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqdisable
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcbdqenable
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetcancelcompletion
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltclearcancelcompletion */
typedef struct _FLT_CALLBACK_DATA_QUEUE {
    PVOID Opaque[16];
} FLT_CALLBACK_DATA_QUEUE, *PFLT_CALLBACK_DATA_QUEUE;
typedef struct _FLT_CALLBACK_DATA_QUEUE_IO_CONTEXT {
    ULONG Type;
    PVOID Irp;
    PVOID Csq;
} FLT_CALLBACK_DATA_QUEUE_IO_CONTEXT, *PFLT_CALLBACK_DATA_QUEUE_IO_CONTEXT;
typedef NTSTATUS (*PFLT_CALLBACK_DATA_QUEUE_INSERT_IO)(PFLT_CALLBACK_DATA_QUEUE Cbdq,
                                                       PFLT_CALLBACK_DATA Cbd, PVOID InsertContext);
typedef VOID (*PFLT_CALLBACK_DATA_QUEUE_REMOVE_IO)(PFLT_CALLBACK_DATA_QUEUE Cbdq,
                                                   PFLT_CALLBACK_DATA Cbd);
typedef PFLT_CALLBACK_DATA (*PFLT_CALLBACK_DATA_QUEUE_PEEK_NEXT_IO)(PFLT_CALLBACK_DATA_QUEUE Cbdq,
                                                                    PFLT_CALLBACK_DATA Cbd,
                                                                    PVOID PeekContext);
typedef VOID (*PFLT_CALLBACK_DATA_QUEUE_ACQUIRE)(PFLT_CALLBACK_DATA_QUEUE Cbdq, PKIRQL Irql);
typedef VOID (*PFLT_CALLBACK_DATA_QUEUE_RELEASE)(PFLT_CALLBACK_DATA_QUEUE Cbdq, KIRQL Irql);
typedef VOID (*PFLT_CALLBACK_DATA_QUEUE_COMPLETE_CANCELED_IO)(PFLT_CALLBACK_DATA_QUEUE Cbdq,
                                                              PFLT_CALLBACK_DATA Cbd);
typedef VOID (*PFLT_COMPLETE_CANCELED_CALLBACK)(PFLT_CALLBACK_DATA CallbackData);
NTSTATUS FltCbdqInitialize(PFLT_INSTANCE Instance, PFLT_CALLBACK_DATA_QUEUE Cbdq,
                           PFLT_CALLBACK_DATA_QUEUE_INSERT_IO CbdqInsertIo,
                           PFLT_CALLBACK_DATA_QUEUE_REMOVE_IO CbdqRemoveIo,
                           PFLT_CALLBACK_DATA_QUEUE_PEEK_NEXT_IO CbdqPeekNextIo,
                           PFLT_CALLBACK_DATA_QUEUE_ACQUIRE CbdqAcquire,
                           PFLT_CALLBACK_DATA_QUEUE_RELEASE CbdqRelease,
                           PFLT_CALLBACK_DATA_QUEUE_COMPLETE_CANCELED_IO CbdqCompleteCanceledIo);
NTSTATUS FltCbdqInsertIo(PFLT_CALLBACK_DATA_QUEUE Cbdq, PFLT_CALLBACK_DATA Cbd,
                         PFLT_CALLBACK_DATA_QUEUE_IO_CONTEXT Context, PVOID InsertContext);
PFLT_CALLBACK_DATA FltCbdqRemoveIo(PFLT_CALLBACK_DATA_QUEUE Cbdq,
                                   PFLT_CALLBACK_DATA_QUEUE_IO_CONTEXT Context);
PFLT_CALLBACK_DATA FltCbdqRemoveNextIo(PFLT_CALLBACK_DATA_QUEUE Cbdq, PVOID PeekContext);
VOID FltCbdqDisable(PFLT_CALLBACK_DATA_QUEUE Cbdq);
VOID FltCbdqEnable(PFLT_CALLBACK_DATA_QUEUE Cbdq);
NTSTATUS FltSetCancelCompletion(PFLT_CALLBACK_DATA CallbackData,
                                PFLT_COMPLETE_CANCELED_CALLBACK CanceledCallback);
NTSTATUS FltClearCancelCompletion(PFLT_CALLBACK_DATA CallbackData);
#ifndef STATUS_FLT_CBDQ_DISABLED
#define STATUS_FLT_CBDQ_DISABLED ((NTSTATUS)0xC01C000EL)
#endif

/* Every operation (issue 18): the pseudo-operation codes of fltKernel.h, listed on
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_parameters
 * (Wine's fltkernel.h has none of them), and the callback data flags of
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_callback_data */
#define IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION ((UCHAR)-1)
#define IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION ((UCHAR)-2)
#define IRP_MJ_ACQUIRE_FOR_MOD_WRITE ((UCHAR)-3)
#define IRP_MJ_RELEASE_FOR_MOD_WRITE ((UCHAR)-4)
#define IRP_MJ_ACQUIRE_FOR_CC_FLUSH ((UCHAR)-5)
#define IRP_MJ_RELEASE_FOR_CC_FLUSH ((UCHAR)-6)
#define IRP_MJ_QUERY_OPEN ((UCHAR)-7)
#define IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE ((UCHAR)-13)
#define IRP_MJ_NETWORK_QUERY_OPEN ((UCHAR)-14)
#define IRP_MJ_MDL_READ ((UCHAR)-15)
#define IRP_MJ_MDL_READ_COMPLETE ((UCHAR)-16)
#define IRP_MJ_PREPARE_MDL_WRITE ((UCHAR)-17)
#define IRP_MJ_MDL_WRITE_COMPLETE ((UCHAR)-18)
#define IRP_MJ_VOLUME_MOUNT ((UCHAR)-19)
#define IRP_MJ_VOLUME_DISMOUNT ((UCHAR)-20)
/* The minor functions of IRP_MJ_DIRECTORY_CONTROL, from
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/irp-mj-directory-control */
#ifndef IRP_MN_QUERY_DIRECTORY
#define IRP_MN_QUERY_DIRECTORY 0x01
#endif
#ifndef IRP_MN_NOTIFY_CHANGE_DIRECTORY
#define IRP_MN_NOTIFY_CHANGE_DIRECTORY 0x02
#endif
#define FLTFL_CALLBACK_DATA_IRP_OPERATION 0x00000001
#define FLTFL_CALLBACK_DATA_FAST_IO_OPERATION 0x00000002
#define FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION 0x00000004
#define FLTFL_CALLBACK_DATA_POST_OPERATION 0x00080000
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_registration */
#define FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS 0x00000002
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltlockuserbuffer */
NTSTATUS FltLockUserBuffer(PFLT_CALLBACK_DATA CallbackData);
/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_get_operation_status_callback
 * https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltrequestoperationstatuscallback */
typedef VOID (*PFLT_GET_OPERATION_STATUS_CALLBACK)(PCFLT_RELATED_OBJECTS FltObjects,
                                                   PFLT_IO_PARAMETER_BLOCK IopbSnapshot,
                                                   NTSTATUS OperationStatus,
                                                   PVOID RequesterContext);
NTSTATUS FltRequestOperationStatusCallback(PFLT_CALLBACK_DATA Data,
                                           PFLT_GET_OPERATION_STATUS_CALLBACK CallbackRoutine,
                                           PVOID RequesterContext);

#endif /* FLT_DOCUMENTED_H */
