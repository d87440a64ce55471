/* allops.c: a minifilter registered for every operation Filter Manager knows, every IRP major
 * function and every pseudo-operation, the shape of the monitoring filters (procmon-style
 * tracers, minispy) that watch everything. Written to prove that kernel-sim dispatches each
 * operation with the parameters its FLT_PARAMETERS page describes.
 *
 * - Registered with FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS, so that named-pipe and mailslot
 *   volumes get an instance (and their creates come by).
 * - One pre-operation and one post-operation callback for all of them. The pre checks what it
 *   is given: the operation's name (FltGetIrpName), the kind of the callback data (IRP, fast
 *   I/O or FsFilter, as the operation allows), the IRQL (the modified page writer's acquire
 *   and release at APC_LEVEL, every other pre at most APC_LEVEL), a file object (all but
 *   shutdown and the volume mount and dismount, which must have none but a volume), the mount's
 *   device type (one of the three its page lists) and, for every operation with a buffer, a
 *   buffer (or an MDL) whenever the length is not zero, in the member of the minor function (a
 *   directory query's or a change notification's). It counts the operation, and the change
 *   notifications that come back with records.
 * - It locks the buffer of reads (IRP and fast I/O alike), directory queries and security
 *   queries (FltLockUserBuffer) and checks that the parameters then carry an MDL; it asks for
 *   the file system's status of flushes and volume queries (FltRequestOperationStatusCallback)
 *   and checks the snapshot it gets back; it disallows the first, third... fast I/O
 *   query-information (FLT_PREOP_DISALLOW_FASTIO), which kernel-sim must reissue as an IRP,
 *   and refuses query opens (FLT_PREOP_DISALLOW_FSFILTER_IO in the pre of the first and third
 *   of every four, FLT_POSTOP_DISALLOW_FSFILTER_IO in the post of the second), which
 *   kernel-sim must serve by an open, a query and a close.
 * - Anything wrong is printed (DbgPrint, "allops: ANOMALY ...") and the callback returns a status
 *   no callback may return, which kernel-sim reports as a broken rule: verify fails.
 * - At the first cleanup of a file with data it reads the file's first bytes below itself
 *   (FltReadFile) and prints them.
 * - FilterUnload prints the count of pre and post callbacks of every operation seen, and the
 *   totals of anomalies, locked buffers, status callbacks and disallowed fast I/O.
 * - The statuses the pages document for misuse are checked too: FltLockUserBuffer on a flush
 *   (no buffer) and FltRequestOperationStatusCallback for a close or from a post-operation
 *   callback give STATUS_INVALID_PARAMETER.
 *
 * Broken twins, selected at build time:
 * - TWIN_FREE_LOCKED_MDL: the pre-read frees the MDL FltLockUserBuffer put in the parameters,
 *   which is the I/O system's to free when the operation completes.
 * - TWIN_DISALLOW_FASTIO_ON_IRP: the pre-read returns FLT_PREOP_DISALLOW_FASTIO for IRP reads
 *   too, a status that is only for fast I/O.
 * - TWIN_STATUS_CALLBACK_FAST_IO: the pre of a fast I/O query-information asks for a status
 *   callback (FltRequestOperationStatusCallback is for IRP-based operations too).
 * - TWIN_NOTIFY_READ_AS_QUERY: the pre of every directory control reads the search expression
 *   of a query (QueryDirectory.FileName) without looking at the minor function: on a change
 *   notification that member is its CompletionFilter.
 *
 * Runs in the kernel: pre-operation callbacks at PASSIVE_LEVEL or APC_LEVEL, post-operation
 * callbacks at <= DISPATCH_LEVEL (counters only there). */
#include <stdarg.h>
#include <stddef.h>
#include <windef.h>
#include <winternl.h>
#include <winioctl.h>
#include <ddk/wdm.h>
#include <ddk/ntddk.h>
#include <ddk/ntifs.h>
#include <ddk/fltkernel.h>
#include "flt_documented.h"
#include "entry_gate.h"

/* IRQLs (wdm.h's values; Wine's wdm.h does not define them for x64). */
#ifndef APC_LEVEL
#define APC_LEVEL 1
#endif
#ifndef DISPATCH_LEVEL
#define DISPATCH_LEVEL 2
#endif
/* https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-erref/596a1078-e883-4972-9bbc-49e60bebca55 */
#ifndef STATUS_FLT_DELETING_OBJECT
#define STATUS_FLT_DELETING_OBJECT ((NTSTATUS)0xC01C000BL)
#endif

/* IRP majors 0x00..0x1B, then the pseudo-operations 0xEC..0xFF. */
#define SLOTS 48
/* A status no pre- or post-operation callback may return. */
#define BROKEN_STATUS 0x77

static PFLT_FILTER g_filter;
static volatile LONG g_pre[SLOTS];
static volatile LONG g_post[SLOTS];
static volatile LONG g_anomalies;
static volatile LONG g_locked;
static volatile LONG g_status_requested;
static volatile LONG g_status_called;
static volatile LONG g_disallowed;
/* Change notifications that came back with records. */
static volatile LONG g_notified;
static volatile LONG g_fast_queries;
static volatile LONG g_query_opens;
static volatile LONG g_head_printed;

/* At the first cleanup of a file with data, reads its first bytes below the filter
 * (FltReadFile) and prints them: the file system's own bytes, whatever the operations did. */
static VOID print_head(PCFLT_RELATED_OBJECTS objects)
{
    char head[9];
    LARGE_INTEGER offset;
    ULONG read = 0;
    NTSTATUS status;

    if (g_head_printed != 0 || objects->FileObject == NULL) {
        return;
    }
    offset.QuadPart = 0;
    status = FltReadFile(objects->Instance, objects->FileObject, &offset, sizeof(head) - 1, head,
                         0, &read, NULL, NULL);
    if (NT_SUCCESS(status) && read > 0 && InterlockedCompareExchange(&g_head_printed, 1, 0) == 0) {
        head[read] = 0;
        DbgPrint("allops: head %s\n", head);
    }
}

static int slot_of(UCHAR major)
{
    if (major <= 0x1b) {
        return major;
    }
    if (major >= 0xec) {
        return 0x1c + (major - 0xec);
    }
    return -1;
}

static UCHAR major_of(int slot)
{
    return slot <= 0x1b ? (UCHAR)slot : (UCHAR)(0xec + (slot - 0x1c));
}

static KIRQL current_irql(void)
{
    unsigned long long value;
    /* CR8 is the IRQL on x64 (what KeGetCurrentIrql reads). */
    __asm__ volatile("mov %%cr8, %0" : "=r"(value));
    return (KIRQL)value;
}

static BOOLEAN anomaly(UCHAR major, const char *what)
{
    InterlockedIncrement(&g_anomalies);
    DbgPrint("allops: ANOMALY %s: %s\n", FltGetIrpName(major), what);
    return TRUE;
}

/* The callback data kinds an operation may come as. */
static ULONG allowed_kinds(UCHAR major)
{
    switch (major) {
    case IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION:
    case IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION:
    case IRP_MJ_ACQUIRE_FOR_MOD_WRITE:
    case IRP_MJ_RELEASE_FOR_MOD_WRITE:
    case IRP_MJ_ACQUIRE_FOR_CC_FLUSH:
    case IRP_MJ_RELEASE_FOR_CC_FLUSH:
    case IRP_MJ_QUERY_OPEN:
        return FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION;
    case IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE:
    case IRP_MJ_NETWORK_QUERY_OPEN:
    case IRP_MJ_MDL_READ:
    case IRP_MJ_MDL_READ_COMPLETE:
    case IRP_MJ_PREPARE_MDL_WRITE:
    case IRP_MJ_MDL_WRITE_COMPLETE:
    case IRP_MJ_VOLUME_MOUNT:
    case IRP_MJ_VOLUME_DISMOUNT:
        return FLTFL_CALLBACK_DATA_FAST_IO_OPERATION;
    case IRP_MJ_READ:
    case IRP_MJ_WRITE:
    case IRP_MJ_QUERY_INFORMATION:
    case IRP_MJ_LOCK_CONTROL:
    case IRP_MJ_DEVICE_CONTROL:
        return FLTFL_CALLBACK_DATA_IRP_OPERATION | FLTFL_CALLBACK_DATA_FAST_IO_OPERATION;
    default:
        return FLTFL_CALLBACK_DATA_IRP_OPERATION;
    }
}

/* A buffer (or MDL) whenever the length is not zero. */
static BOOLEAN has_buffer(ULONG length, PVOID buffer, PMDL mdl)
{
    return length == 0 || buffer != NULL || mdl != NULL;
}

/* The parameters of the operation: FALSE when something the page promises is missing. */
static BOOLEAN parameters_valid(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects)
{
    PFLT_IO_PARAMETER_BLOCK iopb = data->Iopb;
    FLT_PARAMETERS *p = &iopb->Parameters;
    ULONG method;

    /* The volume operations are about no file. */
    if (iopb->MajorFunction == IRP_MJ_VOLUME_MOUNT || iopb->MajorFunction == IRP_MJ_VOLUME_DISMOUNT) {
        if (objects->FileObject != NULL || objects->Volume == NULL) {
            return !anomaly(iopb->MajorFunction, "a file object, or no volume");
        }
    } else if (objects->FileObject == NULL && iopb->MajorFunction != IRP_MJ_SHUTDOWN) {
        return !anomaly(iopb->MajorFunction, "no file object");
    }
    switch (iopb->MajorFunction) {
    case IRP_MJ_VOLUME_MOUNT:
        return p->MountVolume.DeviceType == FILE_DEVICE_DISK_FILE_SYSTEM ||
               p->MountVolume.DeviceType == FILE_DEVICE_CD_ROM_FILE_SYSTEM ||
               p->MountVolume.DeviceType == FILE_DEVICE_NETWORK_FILE_SYSTEM;
    case IRP_MJ_CREATE_NAMED_PIPE:
        return p->CreatePipe.Parameters != NULL && p->CreatePipe.SecurityContext != NULL;
    case IRP_MJ_CREATE_MAILSLOT:
        return p->CreateMailslot.Parameters != NULL && p->CreateMailslot.SecurityContext != NULL;
    case IRP_MJ_READ:
        return has_buffer(p->Read.Length, p->Read.ReadBuffer, p->Read.MdlAddress);
    case IRP_MJ_WRITE:
        return has_buffer(p->Write.Length, p->Write.WriteBuffer, p->Write.MdlAddress);
    case IRP_MJ_QUERY_INFORMATION:
        return has_buffer(p->QueryFileInformation.Length, p->QueryFileInformation.InfoBuffer,
                          NULL);
    case IRP_MJ_SET_INFORMATION:
        return has_buffer(p->SetFileInformation.Length, p->SetFileInformation.InfoBuffer, NULL);
    case IRP_MJ_QUERY_EA:
        return has_buffer(p->QueryEa.Length, p->QueryEa.EaBuffer, p->QueryEa.MdlAddress);
    case IRP_MJ_SET_EA:
        return has_buffer(p->SetEa.Length, p->SetEa.EaBuffer, p->SetEa.MdlAddress);
    case IRP_MJ_QUERY_VOLUME_INFORMATION:
        return has_buffer(p->QueryVolumeInformation.Length,
                          p->QueryVolumeInformation.VolumeBuffer, NULL);
    case IRP_MJ_SET_VOLUME_INFORMATION:
        return has_buffer(p->SetVolumeInformation.Length, p->SetVolumeInformation.VolumeBuffer,
                          NULL);
    case IRP_MJ_DIRECTORY_CONTROL:
        /* Each minor has its own member (their buffers share an offset by design). */
        if (iopb->MinorFunction == IRP_MN_NOTIFY_CHANGE_DIRECTORY) {
            return p->DirectoryControl.NotifyDirectory.CompletionFilter != 0 &&
                   has_buffer(p->DirectoryControl.NotifyDirectory.Length,
                              p->DirectoryControl.NotifyDirectory.DirectoryBuffer,
                              p->DirectoryControl.NotifyDirectory.MdlAddress);
        }
        return iopb->MinorFunction == IRP_MN_QUERY_DIRECTORY &&
               has_buffer(p->DirectoryControl.QueryDirectory.Length,
                          p->DirectoryControl.QueryDirectory.DirectoryBuffer,
                          p->DirectoryControl.QueryDirectory.MdlAddress);
    case IRP_MJ_FILE_SYSTEM_CONTROL:
        method = p->FileSystemControl.Common.FsControlCode & 3;
        if (method == METHOD_BUFFERED) {
            ULONG longer = p->FileSystemControl.Buffered.InputBufferLength;
            if (p->FileSystemControl.Buffered.OutputBufferLength > longer) {
                longer = p->FileSystemControl.Buffered.OutputBufferLength;
            }
            return has_buffer(longer, p->FileSystemControl.Buffered.SystemBuffer, NULL);
        }
        return has_buffer(p->FileSystemControl.Neither.OutputBufferLength,
                          p->FileSystemControl.Neither.OutputBuffer,
                          p->FileSystemControl.Neither.OutputMdlAddress);
    case IRP_MJ_DEVICE_CONTROL:
    case IRP_MJ_INTERNAL_DEVICE_CONTROL:
        method = p->DeviceIoControl.Common.IoControlCode & 3;
        if (method == METHOD_BUFFERED) {
            ULONG longer = p->DeviceIoControl.Buffered.InputBufferLength;
            if (p->DeviceIoControl.Buffered.OutputBufferLength > longer) {
                longer = p->DeviceIoControl.Buffered.OutputBufferLength;
            }
            return has_buffer(longer, p->DeviceIoControl.Buffered.SystemBuffer, NULL);
        }
        if (method == METHOD_NEITHER) {
            return has_buffer(p->DeviceIoControl.Neither.InputBufferLength,
                              p->DeviceIoControl.Neither.InputBuffer, NULL) &&
                   has_buffer(p->DeviceIoControl.Neither.OutputBufferLength,
                              p->DeviceIoControl.Neither.OutputBuffer, NULL);
        }
        /* The direct methods: the I/O manager describes the output with an MDL. */
        return has_buffer(p->DeviceIoControl.Direct.OutputBufferLength, NULL,
                          p->DeviceIoControl.Direct.OutputMdlAddress);
    case IRP_MJ_LOCK_CONTROL:
        return p->LockControl.Length != NULL && p->LockControl.ProcessId != NULL;
    case IRP_MJ_QUERY_SECURITY:
        return has_buffer(p->QuerySecurity.Length, p->QuerySecurity.SecurityBuffer,
                          p->QuerySecurity.MdlAddress);
    case IRP_MJ_SET_SECURITY:
        return p->SetSecurity.SecurityDescriptor != NULL;
    case IRP_MJ_SYSTEM_CONTROL:
        return has_buffer(p->WMI.BufferSize, p->WMI.Buffer, NULL);
    case IRP_MJ_QUERY_QUOTA:
        return has_buffer(p->QueryQuota.Length, p->QueryQuota.QuotaBuffer,
                          p->QueryQuota.MdlAddress);
    case IRP_MJ_SET_QUOTA:
        return has_buffer(p->SetQuota.Length, p->SetQuota.QuotaBuffer, p->SetQuota.MdlAddress);
    case IRP_MJ_ACQUIRE_FOR_MOD_WRITE:
        return p->AcquireForModifiedPageWriter.EndingOffset != NULL &&
               p->AcquireForModifiedPageWriter.ResourceToRelease != NULL;
    case IRP_MJ_RELEASE_FOR_MOD_WRITE:
        return p->ReleaseForModifiedPageWriter.ResourceToRelease != NULL;
    case IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION:
        return p->AcquireForSectionSynchronization.SyncType == SyncTypeCreateSection;
    case IRP_MJ_MDL_READ:
        return p->MdlRead.MdlChain != NULL && p->MdlRead.Length > 0;
    case IRP_MJ_PREPARE_MDL_WRITE:
        return p->PrepareMdlWrite.MdlChain != NULL && p->PrepareMdlWrite.Length > 0;
    case IRP_MJ_MDL_READ_COMPLETE:
        return p->MdlReadComplete.MdlChain != NULL;
    case IRP_MJ_MDL_WRITE_COMPLETE:
        return p->MdlWriteComplete.MdlChain != NULL;
    case IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE:
        return p->FastIoCheckIfPossible.Length > 0;
    case IRP_MJ_QUERY_OPEN:
        return p->QueryOpen.Irp != NULL && p->QueryOpen.FileInformation != NULL &&
               p->QueryOpen.Length != NULL && *p->QueryOpen.Length > 0;
    case IRP_MJ_NETWORK_QUERY_OPEN:
        return p->NetworkQueryOpen.Irp != NULL && p->NetworkQueryOpen.NetworkInformation != NULL;
    default:
        return TRUE;
    }
}

static VOID StatusCallback(PCFLT_RELATED_OBJECTS objects, PFLT_IO_PARAMETER_BLOCK snapshot,
                           NTSTATUS status, PVOID context)
{
    (void)objects;
    (void)status;
    InterlockedIncrement(&g_status_called);
    if (current_irql() > APC_LEVEL) {
        anomaly(snapshot->MajorFunction, "status callback above APC_LEVEL");
    }
    if ((UCHAR)(ULONG_PTR)context != snapshot->MajorFunction) {
        anomaly(snapshot->MajorFunction, "status callback with another operation's snapshot");
    }
}

/* Locks the operation's buffer; FALSE on an anomaly. */
static BOOLEAN lock_buffer(PFLT_CALLBACK_DATA data)
{
    PFLT_IO_PARAMETER_BLOCK iopb = data->Iopb;
    NTSTATUS status = FltLockUserBuffer(data);
    PMDL mdl;
    ULONG length;

    if (status == STATUS_INSUFFICIENT_RESOURCES) {
        return TRUE;
    }
    if (!NT_SUCCESS(status)) {
        return !anomaly(iopb->MajorFunction, "FltLockUserBuffer failed");
    }
    switch (iopb->MajorFunction) {
    case IRP_MJ_READ:
        mdl = iopb->Parameters.Read.MdlAddress;
        length = iopb->Parameters.Read.Length;
        break;
    case IRP_MJ_DIRECTORY_CONTROL:
        if (iopb->MinorFunction == IRP_MN_NOTIFY_CHANGE_DIRECTORY) {
            mdl = iopb->Parameters.DirectoryControl.NotifyDirectory.MdlAddress;
            length = iopb->Parameters.DirectoryControl.NotifyDirectory.Length;
        } else {
            mdl = iopb->Parameters.DirectoryControl.QueryDirectory.MdlAddress;
            length = iopb->Parameters.DirectoryControl.QueryDirectory.Length;
        }
        break;
    default:
        mdl = iopb->Parameters.QuerySecurity.MdlAddress;
        length = iopb->Parameters.QuerySecurity.Length;
        break;
    }
    if (length > 0 && mdl == NULL) {
        return !anomaly(iopb->MajorFunction, "FltLockUserBuffer left no MDL");
    }
    InterlockedIncrement(&g_locked);
    return TRUE;
}

static FLT_PREOP_CALLBACK_STATUS PreOperation(PFLT_CALLBACK_DATA data,
                                              PCFLT_RELATED_OBJECTS objects,
                                              PVOID *completion_context)
{
    PFLT_IO_PARAMETER_BLOCK iopb = data->Iopb;
    UCHAR major = iopb->MajorFunction;
    ULONG kind = data->Flags & (FLTFL_CALLBACK_DATA_IRP_OPERATION |
                                FLTFL_CALLBACK_DATA_FAST_IO_OPERATION |
                                FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION);
    KIRQL irql = current_irql();
    const char *name = FltGetIrpName(major);
    int slot = slot_of(major);
    BOOLEAN ok = TRUE;

    *completion_context = NULL;
    if (slot < 0 || name == NULL || name[0] != 'I') {
        anomaly(major, "not an operation FltGetIrpName knows");
        return (FLT_PREOP_CALLBACK_STATUS)BROKEN_STATUS;
    }
    InterlockedIncrement(&g_pre[slot]);
    if (kind == 0 || (kind & (kind - 1)) != 0 || (kind & allowed_kinds(major)) == 0) {
        ok = !anomaly(major, "callback data of the wrong kind");
    }
    if (major == IRP_MJ_ACQUIRE_FOR_MOD_WRITE || major == IRP_MJ_RELEASE_FOR_MOD_WRITE) {
        if (irql != APC_LEVEL) {
            ok = !anomaly(major, "the modified page writer's callbacks run at APC_LEVEL");
        }
    } else if (irql > APC_LEVEL) {
        ok = !anomaly(major, "pre-operation callback above APC_LEVEL");
    }
    if (!parameters_valid(data, objects)) {
        ok = !anomaly(major, "parameters without the buffer their length promises");
    }
    /* FltLockUserBuffer works for fast I/O and IRP-based reads alike. */
    if (major == IRP_MJ_READ) {
        ok = lock_buffer(data) && ok;
#ifdef TWIN_FREE_LOCKED_MDL
        if (iopb->Parameters.Read.MdlAddress != NULL) {
            IoFreeMdl(iopb->Parameters.Read.MdlAddress);
        }
#endif
    }
    if ((major == IRP_MJ_DIRECTORY_CONTROL || major == IRP_MJ_QUERY_SECURITY) &&
        kind == FLTFL_CALLBACK_DATA_IRP_OPERATION) {
        ok = lock_buffer(data) && ok;
    }
    if (major == IRP_MJ_CLEANUP && kind == FLTFL_CALLBACK_DATA_IRP_OPERATION) {
        print_head(objects);
    }
    if (major == IRP_MJ_FLUSH_BUFFERS) {
        /* A flush has no buffer to lock. */
        if (FltLockUserBuffer(data) != STATUS_INVALID_PARAMETER) {
            ok = !anomaly(major, "FltLockUserBuffer without STATUS_INVALID_PARAMETER");
        }
    }
    if (major == IRP_MJ_CLOSE &&
        FltRequestOperationStatusCallback(data, StatusCallback, NULL) != STATUS_INVALID_PARAMETER) {
        ok = !anomaly(major, "a status callback for a close");
    }
#ifdef TWIN_STATUS_CALLBACK_FAST_IO
    if (major == IRP_MJ_QUERY_INFORMATION && kind == FLTFL_CALLBACK_DATA_FAST_IO_OPERATION) {
        (void)FltRequestOperationStatusCallback(data, StatusCallback, (PVOID)(ULONG_PTR)major);
    }
#endif
    if (major == IRP_MJ_FLUSH_BUFFERS || major == IRP_MJ_QUERY_VOLUME_INFORMATION) {
        NTSTATUS status =
            FltRequestOperationStatusCallback(data, StatusCallback, (PVOID)(ULONG_PTR)major);
        if (NT_SUCCESS(status)) {
            InterlockedIncrement(&g_status_requested);
        } else if (status != STATUS_INSUFFICIENT_RESOURCES && status != STATUS_FLT_DELETING_OBJECT) {
            ok = !anomaly(major, "FltRequestOperationStatusCallback failed");
        }
    }
    if (!ok) {
        return (FLT_PREOP_CALLBACK_STATUS)BROKEN_STATUS;
    }
    if (major == IRP_MJ_QUERY_INFORMATION && kind == FLTFL_CALLBACK_DATA_FAST_IO_OPERATION &&
        (InterlockedIncrement(&g_fast_queries) & 1) == 1) {
        InterlockedIncrement(&g_disallowed);
        return FLT_PREOP_DISALLOW_FASTIO;
    }
#ifdef TWIN_NOTIFY_READ_AS_QUERY
    if (major == IRP_MJ_DIRECTORY_CONTROL) {
        PUNICODE_STRING expression = iopb->Parameters.DirectoryControl.QueryDirectory.FileName;
        if (expression != NULL && expression->Length > 0 && expression->Buffer[0] == L'*') {
            InterlockedIncrement(&g_locked);
        }
    }
#endif
#ifdef TWIN_DISALLOW_FASTIO_ON_IRP
    /* Only fast I/O can be disallowed: an IRP read cannot. */
    if (major == IRP_MJ_READ && kind == FLTFL_CALLBACK_DATA_IRP_OPERATION) {
        return FLT_PREOP_DISALLOW_FASTIO;
    }
#endif
    /* Every other query open goes the slow way (open, query, close); the second of every four
     * is refused in the post-operation callback instead. */
    if (major == IRP_MJ_QUERY_OPEN && (InterlockedIncrement(&g_query_opens) & 1) == 1) {
        InterlockedIncrement(&g_disallowed);
        return FLT_PREOP_DISALLOW_FSFILTER_IO;
    }
    return FLT_PREOP_SUCCESS_WITH_CALLBACK;
}

static FLT_POSTOP_CALLBACK_STATUS PostOperation(PFLT_CALLBACK_DATA data,
                                                PCFLT_RELATED_OBJECTS objects,
                                                PVOID completion_context,
                                                FLT_POST_OPERATION_FLAGS flags)
{
    UCHAR major = data->Iopb->MajorFunction;
    int slot = slot_of(major);

    (void)objects;
    if (flags & FLTFL_POST_OPERATION_DRAINING) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (slot < 0 || completion_context != NULL || current_irql() > DISPATCH_LEVEL ||
        (data->Flags & FLTFL_CALLBACK_DATA_POST_OPERATION) == 0) {
        InterlockedIncrement(&g_anomalies);
        return (FLT_POSTOP_CALLBACK_STATUS)BROKEN_STATUS;
    }
    /* Status callbacks are asked for in pre-operation callbacks only. */
    if (major == IRP_MJ_FLUSH_BUFFERS && current_irql() <= APC_LEVEL &&
        FltRequestOperationStatusCallback(data, StatusCallback, (PVOID)(ULONG_PTR)major) !=
            STATUS_INVALID_PARAMETER) {
        anomaly(major, "a status callback asked for in a post-operation callback");
        return (FLT_POSTOP_CALLBACK_STATUS)BROKEN_STATUS;
    }
    InterlockedIncrement(&g_post[slot]);
    if (major == IRP_MJ_DIRECTORY_CONTROL &&
        data->Iopb->MinorFunction == IRP_MN_NOTIFY_CHANGE_DIRECTORY &&
        data->IoStatus.Status == STATUS_SUCCESS && data->IoStatus.Information > 0) {
        InterlockedIncrement(&g_notified);
    }
    /* The second query open of every four is refused after the file system answered. */
    if (major == IRP_MJ_QUERY_OPEN && (g_query_opens & 3) == 2) {
        InterlockedIncrement(&g_disallowed);
        return FLT_POSTOP_DISALLOW_FSFILTER_IO;
    }
    return FLT_POSTOP_FINISHED_PROCESSING;
}

#define OP(major) {(major), 0, PreOperation, PostOperation, NULL}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    OP(IRP_MJ_CREATE), OP(IRP_MJ_CREATE_NAMED_PIPE), OP(IRP_MJ_CLOSE), OP(IRP_MJ_READ),
    OP(IRP_MJ_WRITE), OP(IRP_MJ_QUERY_INFORMATION), OP(IRP_MJ_SET_INFORMATION),
    OP(IRP_MJ_QUERY_EA), OP(IRP_MJ_SET_EA), OP(IRP_MJ_FLUSH_BUFFERS),
    OP(IRP_MJ_QUERY_VOLUME_INFORMATION), OP(IRP_MJ_SET_VOLUME_INFORMATION),
    OP(IRP_MJ_DIRECTORY_CONTROL), OP(IRP_MJ_FILE_SYSTEM_CONTROL), OP(IRP_MJ_DEVICE_CONTROL),
    OP(IRP_MJ_INTERNAL_DEVICE_CONTROL), OP(IRP_MJ_SHUTDOWN), OP(IRP_MJ_LOCK_CONTROL),
    OP(IRP_MJ_CLEANUP), OP(IRP_MJ_CREATE_MAILSLOT), OP(IRP_MJ_QUERY_SECURITY),
    OP(IRP_MJ_SET_SECURITY), OP(IRP_MJ_POWER), OP(IRP_MJ_SYSTEM_CONTROL),
    OP(IRP_MJ_DEVICE_CHANGE), OP(IRP_MJ_QUERY_QUOTA), OP(IRP_MJ_SET_QUOTA), OP(IRP_MJ_PNP),
    OP(IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION), OP(IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION),
    OP(IRP_MJ_ACQUIRE_FOR_MOD_WRITE), OP(IRP_MJ_RELEASE_FOR_MOD_WRITE),
    OP(IRP_MJ_ACQUIRE_FOR_CC_FLUSH), OP(IRP_MJ_RELEASE_FOR_CC_FLUSH), OP(IRP_MJ_QUERY_OPEN),
    OP(IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE), OP(IRP_MJ_NETWORK_QUERY_OPEN), OP(IRP_MJ_MDL_READ),
    OP(IRP_MJ_MDL_READ_COMPLETE), OP(IRP_MJ_PREPARE_MDL_WRITE), OP(IRP_MJ_MDL_WRITE_COMPLETE),
    OP(IRP_MJ_VOLUME_MOUNT), OP(IRP_MJ_VOLUME_DISMOUNT),
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    int slot;

    (void)flags;
    FltUnregisterFilter(g_filter);
    for (slot = 0; slot < SLOTS; slot++) {
        if (g_pre[slot] != 0 || g_post[slot] != 0) {
            DbgPrint("allops: %s pre %ld post %ld\n", FltGetIrpName(major_of(slot)), g_pre[slot],
                     g_post[slot]);
        }
    }
    DbgPrint("allops: anomalies %ld locked %ld status %ld/%ld disallowed %ld\n", g_anomalies,
             g_locked, g_status_called, g_status_requested, g_disallowed);
    DbgPrint("allops: notified %ld\n", g_notified);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_REGISTRATION g_registration = {
    sizeof(FLT_REGISTRATION),
    FLT_REGISTRATION_VERSION,
    /* Named pipes and mailslots too, so that their creates come by. */
    FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS,
    NULL,
    g_callbacks,
    FilterUnload,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* The filter's own setup, run by DriverEntry inside the entry gate (entry_gate.h). */
static NTSTATUS Setup(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    NTSTATUS status;

    (void)registry_path;
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (!NT_SUCCESS(status)) {
        return status;
    }
    status = FltStartFiltering(g_filter);
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_filter);
    }
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    return EntryGateRun(driver, registry_path, Setup);
}
