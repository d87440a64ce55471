/* handlectx.c: a context-heavy minifilter in C: an instance context per volume and a
 * stream-handle context per opened handle, the pattern of Microsoft's ctx sample, written to
 * prove kernel-sim's context rules on a driver that is not Vigil.
 *
 * - InstanceSetup attaches an instance context (the volume's open count) and drops its own
 *   reference: the instance holds the context until it is torn down. It also sets a volume
 *   context (the file system type from FltGetFileSystemType, whether FltIsVolumeWritable says
 *   the volume is writable, a count of handles), which the volume holds until the filter
 *   unregisters.
 * - The post create allocates a context (non-paged: it is read by the pre write, which can run
 *   at APC_LEVEL for paging I/O), records the requestor's process id, attaches it to the handle
 *   with FLT_SET_CONTEXT_KEEP_IF_EXISTS and drops its own reference whatever the outcome: after
 *   a successful set the file object holds the context; after a failed one the release frees it.
 * - Each handle context keeps a pointer to its volume's context, referenced for it with
 *   FltReferenceContext and released by the handle context's cleanup callback.
 * - The post create finds or creates the stream's context (the stream's writes, over every
 *   handle) and the file's context (its opens): allocate, set with KEEP_IF_EXISTS and
 *   OldContext, and on STATUS_FLT_CONTEXT_ALREADY_DEFINED use the existing one, released like
 *   any other. The pre write counts in the stream context. Pipes and mailslots keep no stream
 *   contexts (STATUS_NOT_SUPPORTED): skipped.
 * - The pre write and the pre cleanup look the context up and release what they got.
 * - The cleanup callback counts contexts freed, so a leak shows in the counts as well.
 * - Contexts are also deleted explicitly: the pre cleanup takes the handle's context off its
 *   file object (FltDeleteStreamHandleContext with OldContext, which it then releases);
 *   every ROTATE_OPENS opens on an instance its statistics are rotated (FltDeleteInstanceContext
 *   with OldContext, folded into the totals and released, then a fresh context set); a delete
 *   disposition drops the stream's context (FltDeleteStreamContext, no OldContext: Filter
 *   Manager drops the stream's reference) and the file's (FltDeleteFileContext with OldContext,
 *   released); a rename restarts the file's counts (FltDeleteContext on the context
 *   FltGetFileContext returned, then released: the caller keeps its own reference).
 * - The post create asks for the volume's disk device object (FltGetDiskDeviceObject; network
 *   and pipe volumes have none, STATUS_FLT_NO_DEVICE_OBJECT) and dereferences it
 *   (ObDereferenceObject) once it has read its device type.
 * - After DETACH_AFTER_CREATES creates the filter detaches from the volume of the last one:
 *   not from the create's own callback (FltDetachVolume tears the instance down, which waits
 *   for the operations in flight on it, this one included), but from a generic work item that
 *   holds a rundown reference on the volume (FltGetVolumeFromInstance). The item deletes the
 *   volume's context (FltDeleteVolumeContext), then calls FltDetachVolume, which asks the
 *   filter's InstanceQueryTeardown (it agrees) and tears the instance down. FilterUnload stops
 *   new items and waits for the queued one before it unregisters.
 * - The counters live in a block DriverEntry allocates with ExAllocatePoolWithTag, the
 *   deprecated routine most existing drivers still use, freed with ExFreePool after
 *   FltUnregisterFilter has returned (no callback can run any more).
 *
 * Broken twins, selected at build time:
 * - TWIN_CONTEXT_LEAK: the pre write never releases the context it got, so its reference
 *   outlives the handle and FltUnregisterFilter finds it still referenced.
 * - TWIN_POOL_LEAK: FilterUnload never frees the counters block.
 * - TWIN_INSTANCE_CONTEXT_LEAK: InstanceSetup never releases the reference FltAllocateContext
 *   gave it, so the instance context outlives its instance.
 * - TWIN_INSTANCE_CONTEXT_OVER_RELEASE: the post create releases the instance context it got
 *   twice, taking the instance's own reference.
 * - TWIN_FOUND_STREAM_CONTEXT_LEAK: the post create releases the stream context only when it
 *   created it, never one it found already set (a second open of the stream).
 * - TWIN_VOLUME_CONTEXT_LEAK: the handle context's cleanup never releases the volume context it
 *   referenced, so the volume context outlives the filter's registration.
 * - TWIN_DELETED_CONTEXT_NOT_RELEASED: the pre cleanup never releases the context
 *   FltDeleteStreamHandleContext returned in OldContext.
 * - TWIN_DISK_DEVICE_NOT_DEREFERENCED: the post create never dereferences the disk device object
 *   FltGetDiskDeviceObject referenced for it.
 *
 * Runs in the kernel: create and cleanup at PASSIVE_LEVEL, write at <= APC_LEVEL. */
#include <stdarg.h>
#include <stddef.h>
#include <windef.h>
#include <winternl.h>
#include <ddk/wdm.h>
#include <ddk/ntddk.h>
#include <ddk/ntifs.h>
#include <ddk/fltkernel.h>
#include "flt_documented.h"
#include "entry_gate.h"

/* Pool tags 'Cctx', 'Cins', 'Cvol' and 'Ccnt', as little-endian ULONGs. */
#define HANDLE_CONTEXT_TAG 0x78746343u
#define VOLUME_CONTEXT_TAG 0x6c6f7643u
/* 'Cstr' and 'Cfil'. */
#define STREAM_CONTEXT_TAG 0x72747343u
#define FILE_CONTEXT_TAG 0x6c696643u
#define INSTANCE_CONTEXT_TAG 0x736e6943u
#define COUNTERS_TAG 0x746e6343u

/* Every ROTATE_OPENS opens on an instance, its statistics start afresh. */
#define ROTATE_OPENS 16
/* After this many creates the filter detaches from the volume of the last one. */
#define DETACH_AFTER_CREATES 24

typedef struct _INSTANCE_CONTEXT {
    volatile LONG Opens;
} INSTANCE_CONTEXT, *PINSTANCE_CONTEXT;

typedef struct _VOLUME_CONTEXT {
    FLT_FILESYSTEM_TYPE FileSystemType;
    BOOLEAN Writable;
    volatile LONG Handles;
} VOLUME_CONTEXT, *PVOLUME_CONTEXT;

typedef struct _STREAM_CONTEXT {
    volatile LONG Writes;
} STREAM_CONTEXT, *PSTREAM_CONTEXT;

typedef struct _FILE_CONTEXT {
    volatile LONG Opens;
} FILE_CONTEXT, *PFILE_CONTEXT;

typedef struct _HANDLE_CONTEXT {
    ULONG RequestorProcessId;
    LONG Writes;
    /* Referenced for this handle context (FltReferenceContext); released by its cleanup. */
    PVOLUME_CONTEXT Volume;
} HANDLE_CONTEXT, *PHANDLE_CONTEXT;

typedef struct _COUNTERS {
    volatile LONG ContextsSet;
    volatile LONG ContextsFreed;
    volatile LONG WritesSeen;
    volatile LONG Creates;
    /* Opens counted by instance contexts that were rotated out. */
    volatile LONG RotatedOpens;
    volatile LONG DiskVolumeOpens;
    volatile LONG Detached;
} COUNTERS, *PCOUNTERS;

static PFLT_FILTER g_filter;
/* Detach work items queued and not finished; none is queued once g_unloading is set. */
static volatile LONG g_outstanding;
static volatile LONG g_unloading;
/* Allocated before FltRegisterFilter, freed after FltUnregisterFilter: valid in every callback. */
static PCOUNTERS g_counters;

static FLT_PREOP_CALLBACK_STATUS PreCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                           PVOID *completion_context)
{
    (void)data;
    (void)objects;
    *completion_context = NULL;
    return FLT_PREOP_SUCCESS_WITH_CALLBACK;
}

/* The context of `type` on the stream or file open as `objects->FileObject`, created when it
 * has none (`*created` says which); referenced for the caller (NULL when none can be had). */
static PFLT_CONTEXT FindOrCreate(PCFLT_RELATED_OBJECTS objects, FLT_CONTEXT_TYPE type, SIZE_T size,
                                 BOOLEAN *created)
{
    PFLT_CONTEXT context = NULL;
    PFLT_CONTEXT existing = NULL;
    NTSTATUS status;

    *created = FALSE;
    status = type == FLT_STREAM_CONTEXT
                 ? FltGetStreamContext(objects->Instance, objects->FileObject, &context)
                 : FltGetFileContext(objects->Instance, objects->FileObject, &context);
    if (NT_SUCCESS(status)) {
        return context;
    }
    if (status != STATUS_NOT_FOUND) {
        return NULL; /* STATUS_NOT_SUPPORTED on pipes and mailslots */
    }
    if (!NT_SUCCESS(FltAllocateContext(objects->Filter, type, size, NonPagedPoolNx, &context))) {
        return NULL;
    }
    RtlZeroMemory(context, size);
    status = type == FLT_STREAM_CONTEXT
                 ? FltSetStreamContext(objects->Instance, objects->FileObject,
                                       FLT_SET_CONTEXT_KEEP_IF_EXISTS, context, &existing)
                 : FltSetFileContext(objects->Instance, objects->FileObject,
                                     FLT_SET_CONTEXT_KEEP_IF_EXISTS, context, &existing);
    if (NT_SUCCESS(status)) {
        *created = TRUE;
        return context;
    }
    /* Ours is not needed: another open set one first (or the set failed). */
    FltReleaseContext(context);
    return status == STATUS_FLT_CONTEXT_ALREADY_DEFINED ? existing : NULL;
}

/* Rotates the instance's statistics: the current context is deleted (its reference handed to
 * us through OldContext), its count folded into the totals, and a fresh context set. */
static VOID RotateInstanceContext(PCFLT_RELATED_OBJECTS objects)
{
    PINSTANCE_CONTEXT old = NULL;
    PINSTANCE_CONTEXT fresh = NULL;

    if (!NT_SUCCESS(FltDeleteInstanceContext(objects->Instance, (PFLT_CONTEXT *)&old))) {
        return; /* another open rotated it first (STATUS_NOT_FOUND) */
    }
    InterlockedExchangeAdd(&g_counters->RotatedOpens, old->Opens);
    FltReleaseContext(old);
    if (!NT_SUCCESS(FltAllocateContext(objects->Filter, FLT_INSTANCE_CONTEXT,
                                       sizeof(INSTANCE_CONTEXT), NonPagedPoolNx,
                                       (PFLT_CONTEXT *)&fresh))) {
        return; /* counts stop until the next rotation finds none: fail open */
    }
    fresh->Opens = 0;
    (void)FltSetInstanceContext(objects->Instance, FLT_SET_CONTEXT_KEEP_IF_EXISTS, fresh, NULL);
    FltReleaseContext(fresh);
}

/* Counts an open on a volume that lies on a disk device. */
static VOID CountDiskVolumeOpen(PCFLT_RELATED_OBJECTS objects)
{
    PDEVICE_OBJECT disk = NULL;

    if (!NT_SUCCESS(FltGetDiskDeviceObject(objects->Volume, &disk))) {
        return; /* STATUS_FLT_NO_DEVICE_OBJECT: network and pipe volumes */
    }
    if (disk->DeviceType == FILE_DEVICE_DISK) {
        InterlockedIncrement(&g_counters->DiskVolumeOpens);
    }
#ifndef TWIN_DISK_DEVICE_NOT_DEREFERENCED
    ObfDereferenceObject(disk);
#endif
}

/* The detach work item: the volume comes referenced (FltGetVolumeFromInstance). */
static VOID DetachWorker(PFLT_GENERIC_WORKITEM item, PVOID flt_object, PVOID context)
{
    PFLT_VOLUME volume = context;

    (void)flt_object;
    /* The volume's statistics go with the instance (the handles keep their own references). */
    (void)FltDeleteVolumeContext(g_filter, volume, NULL);
    if (NT_SUCCESS(FltDetachVolume(g_filter, volume, NULL))) {
        InterlockedIncrement(&g_counters->Detached);
    }
    FltObjectDereference(volume);
    FltFreeGenericWorkItem(item);
    InterlockedDecrement(&g_outstanding);
}

/* Queues the detach of the create's volume (fail open: nothing happens when it cannot). */
static VOID QueueDetach(PCFLT_RELATED_OBJECTS objects)
{
    PFLT_VOLUME volume = NULL;
    PFLT_GENERIC_WORKITEM item;

    InterlockedIncrement(&g_outstanding);
    if (g_unloading) {
        InterlockedDecrement(&g_outstanding);
        return;
    }
    item = FltAllocateGenericWorkItem();
    if (item == NULL) {
        InterlockedDecrement(&g_outstanding);
        return;
    }
    if (!NT_SUCCESS(FltGetVolumeFromInstance(objects->Instance, &volume))) {
        FltFreeGenericWorkItem(item);
        InterlockedDecrement(&g_outstanding);
        return;
    }
    if (!NT_SUCCESS(FltQueueGenericWorkItem(item, g_filter, DetachWorker, DelayedWorkQueue,
                                            volume))) {
        FltObjectDereference(volume);
        FltFreeGenericWorkItem(item);
        InterlockedDecrement(&g_outstanding);
    }
}

static FLT_POSTOP_CALLBACK_STATUS PostCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                             PVOID completion_context,
                                             FLT_POST_OPERATION_FLAGS flags)
{
    PHANDLE_CONTEXT context = NULL;
    PINSTANCE_CONTEXT volume = NULL;
    NTSTATUS status;

    (void)completion_context;
    /* Draining (FLTFL_POST_OPERATION_DRAINING): the instance is going away, attach nothing. */
    if (flags & 0x1) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (!NT_SUCCESS(data->IoStatus.Status) || data->IoStatus.Status == STATUS_REPARSE) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    {
        BOOLEAN created;
        PSTREAM_CONTEXT stream =
            FindOrCreate(objects, FLT_STREAM_CONTEXT, sizeof(STREAM_CONTEXT), &created);
        PFILE_CONTEXT file;
#ifdef TWIN_FOUND_STREAM_CONTEXT_LEAK
        if (stream != NULL && created) {
#else
        if (stream != NULL) {
#endif
            FltReleaseContext(stream);
        }
        file = FindOrCreate(objects, FLT_FILE_CONTEXT, sizeof(FILE_CONTEXT), &created);
        if (file != NULL) {
            InterlockedIncrement(&file->Opens);
            FltReleaseContext(file);
        }
    }
    if (NT_SUCCESS(FltGetInstanceContext(objects->Instance, (PFLT_CONTEXT *)&volume))) {
        LONG opens = InterlockedIncrement(&volume->Opens);
        FltReleaseContext(volume);
#ifdef TWIN_INSTANCE_CONTEXT_OVER_RELEASE
        FltReleaseContext(volume);
#endif
        if (opens % ROTATE_OPENS == 0) {
            RotateInstanceContext(objects);
        }
    }
    CountDiskVolumeOpen(objects);
    if (InterlockedIncrement(&g_counters->Creates) == DETACH_AFTER_CREATES) {
        QueueDetach(objects);
    }
    status = FltAllocateContext(objects->Filter, FLT_STREAMHANDLE_CONTEXT, sizeof(HANDLE_CONTEXT),
                                NonPagedPoolNx, (PFLT_CONTEXT *)&context);
    if (!NT_SUCCESS(status)) {
        /* Fail open: tracking one handle less never fails the user's create. */
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    /* FltAllocateContext leaves the memory uninitialized. */
    context->RequestorProcessId = FltGetRequestorProcessId(data);
    context->Writes = 0;
    context->Volume = NULL;
    {
        PVOLUME_CONTEXT volume_context = NULL;
        if (NT_SUCCESS(FltGetVolumeContext(objects->Filter, objects->Volume,
                                           (PFLT_CONTEXT *)&volume_context))) {
            InterlockedIncrement(&volume_context->Handles);
            FltReferenceContext(volume_context);
            context->Volume = volume_context;
            FltReleaseContext(volume_context);
        }
    }
    status = FltSetStreamHandleContext(objects->Instance, objects->FileObject,
                                       FLT_SET_CONTEXT_KEEP_IF_EXISTS, context, NULL);
    if (NT_SUCCESS(status)) {
        InterlockedIncrement(&g_counters->ContextsSet);
    }
    /* Ours is released in every case: on success the file object keeps its own reference. */
    FltReleaseContext(context);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

static FLT_PREOP_CALLBACK_STATUS PreWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    PHANDLE_CONTEXT context = NULL;

    (void)data;
    *completion_context = NULL;
    {
        PSTREAM_CONTEXT stream = NULL;
        if (NT_SUCCESS(FltGetStreamContext(objects->Instance, objects->FileObject,
                                           (PFLT_CONTEXT *)&stream))) {
            InterlockedIncrement(&stream->Writes);
            FltReleaseContext(stream);
        }
    }
    if (NT_SUCCESS(FltGetStreamHandleContext(objects->Instance, objects->FileObject,
                                             (PFLT_CONTEXT *)&context))) {
        InterlockedIncrement(&context->Writes);
        InterlockedIncrement(&g_counters->WritesSeen);
#ifndef TWIN_CONTEXT_LEAK
        FltReleaseContext(context);
#endif
    }
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

static FLT_PREOP_CALLBACK_STATUS PreCleanup(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                            PVOID *completion_context)
{
    PHANDLE_CONTEXT context = NULL;

    (void)data;
    *completion_context = NULL;
    /* The handle is done: its context comes off the file object, and the reference the file
     * object held is ours to release. */
    if (NT_SUCCESS(FltDeleteStreamHandleContext(objects->Instance, objects->FileObject,
                                                (PFLT_CONTEXT *)&context))) {
#ifndef TWIN_DELETED_CONTEXT_NOT_RELEASED
        FltReleaseContext(context);
#endif
    }
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

static BOOLEAN IsDelete(FILE_INFORMATION_CLASS info_class, PVOID buffer)
{
    if (info_class == FileDispositionInformation) {
        return ((PFILE_DISPOSITION_INFORMATION)buffer)->DoDeleteFile;
    }
    if (info_class == FileDispositionInformationExClass) {
        return (*(PULONG)buffer & FILE_DISPOSITION_DELETE) != 0;
    }
    return FALSE;
}

/* Deletes and renames (PASSIVE_LEVEL, where set-information requests arrive) drop the contexts
 * the stream and file will no longer need. Done before the operation: if it fails, the next
 * open sets fresh ones. */
static FLT_PREOP_CALLBACK_STATUS PreSetInformation(PFLT_CALLBACK_DATA data,
                                                   PCFLT_RELATED_OBJECTS objects,
                                                   PVOID *completion_context)
{
    FILE_INFORMATION_CLASS info_class =
        data->Iopb->Parameters.SetFileInformation.FileInformationClass;
    PVOID buffer = data->Iopb->Parameters.SetFileInformation.InfoBuffer;

    *completion_context = NULL;
    if (IsDelete(info_class, buffer)) {
        PFILE_CONTEXT old = NULL;
        /* No OldContext: Filter Manager drops the stream's reference itself. */
        (void)FltDeleteStreamContext(objects->Instance, objects->FileObject, NULL);
        /* STATUS_NOT_FOUND after a rename took it already. */
        if (NT_SUCCESS(FltDeleteFileContext(objects->Instance, objects->FileObject,
                                            (PFLT_CONTEXT *)&old))) {
            FltReleaseContext(old);
        }
    } else if (info_class == FileRenameInformation || info_class == FileRenameInformationExClass) {
        PFILE_CONTEXT file = NULL;
        if (NT_SUCCESS(FltGetFileContext(objects->Instance, objects->FileObject,
                                         (PFLT_CONTEXT *)&file))) {
            /* Unlinks it; the reference the get gave us stays ours to release. */
            FltDeleteContext(file);
            FltReleaseContext(file);
        }
    }
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

/* Agrees to every manual detach (its own FltDetachVolume included). */
static NTSTATUS InstanceQueryTeardown(PCFLT_RELATED_OBJECTS objects,
                                      FLT_INSTANCE_QUERY_TEARDOWN_FLAGS flags)
{
    (void)objects;
    (void)flags;
    return STATUS_SUCCESS;
}

static VOID ContextCleanup(PFLT_CONTEXT context, FLT_CONTEXT_TYPE type)
{
    if (type == FLT_STREAMHANDLE_CONTEXT && ((PHANDLE_CONTEXT)context)->Volume != NULL) {
#ifndef TWIN_VOLUME_CONTEXT_LEAK
        FltReleaseContext(((PHANDLE_CONTEXT)context)->Volume);
#endif
    }
    InterlockedIncrement(&g_counters->ContextsFreed);
}

/* Sets the volume's context (fail open: without it, handles just keep no volume pointer). */
static VOID SetVolumeContext(PCFLT_RELATED_OBJECTS objects)
{
    PVOLUME_CONTEXT context = NULL;
    FLT_FILESYSTEM_TYPE fs_type = FLT_FSTYPE_UNKNOWN;
    BOOLEAN writable = FALSE;

    (void)FltGetFileSystemType(objects->Instance, &fs_type);
    /* Disks only answer IOCTL_DISK_IS_WRITABLE: others stay FALSE. */
    if (!NT_SUCCESS(FltIsVolumeWritable(objects->Volume, &writable))) {
        writable = FALSE;
    }
    if (!NT_SUCCESS(FltAllocateContext(objects->Filter, FLT_VOLUME_CONTEXT, sizeof(VOLUME_CONTEXT),
                                       NonPagedPoolNx, (PFLT_CONTEXT *)&context))) {
        return;
    }
    context->FileSystemType = fs_type;
    context->Writable = writable;
    context->Handles = 0;
    (void)FltSetVolumeContext(objects->Volume, FLT_SET_CONTEXT_KEEP_IF_EXISTS, context, NULL);
    /* Ours is released in every case: on success the volume keeps its own reference. */
    FltReleaseContext(context);
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    /* No detach item is queued from here on; the one queued is waited for, as Filter Manager
     * does not wait for generic work items. */
    InterlockedExchange(&g_unloading, 1);
    {
        LARGE_INTEGER interval;
        interval.QuadPart = -10 * 1000; /* 1 ms, relative */
        while (g_outstanding != 0) {
            KeDelayExecutionThread(KernelMode, FALSE, &interval);
        }
    }
    /* Filter Manager tears the instances down, dropping each handle's context reference. */
    FltUnregisterFilter(g_filter);
#ifndef TWIN_POOL_LEAK
    ExFreePool(g_counters);
#endif
    g_counters = NULL;
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static NTSTATUS InstanceSetup(PCFLT_RELATED_OBJECTS objects, FLT_INSTANCE_SETUP_FLAGS flags,
                              DEVICE_TYPE device_type, FLT_FILESYSTEM_TYPE fs_type)
{
    PINSTANCE_CONTEXT context = NULL;
    NTSTATUS status;

    (void)flags;
    (void)device_type;
    (void)fs_type;
    status = FltAllocateContext(objects->Filter, FLT_INSTANCE_CONTEXT, sizeof(INSTANCE_CONTEXT),
                                NonPagedPoolNx, (PFLT_CONTEXT *)&context);
    if (!NT_SUCCESS(status)) {
        /* Without its context the instance would count nothing: do not attach. */
        return STATUS_FLT_DO_NOT_ATTACH;
    }
    context->Opens = 0;
    SetVolumeContext(objects);
    status = FltSetInstanceContext(objects->Instance, FLT_SET_CONTEXT_KEEP_IF_EXISTS, context,
                                   NULL);
#ifndef TWIN_INSTANCE_CONTEXT_LEAK
    /* Ours is released in every case: on success the instance keeps its own reference. */
    FltReleaseContext(context);
#endif
    return NT_SUCCESS(status) ? STATUS_SUCCESS : STATUS_FLT_DO_NOT_ATTACH;
}

static const FLT_CONTEXT_REGISTRATION g_contexts[] = {
    {.ContextType = FLT_STREAMHANDLE_CONTEXT,
     .ContextCleanupCallback = ContextCleanup,
     .Size = sizeof(HANDLE_CONTEXT),
     .PoolTag = HANDLE_CONTEXT_TAG},
    {.ContextType = FLT_INSTANCE_CONTEXT,
     .ContextCleanupCallback = ContextCleanup,
     .Size = sizeof(INSTANCE_CONTEXT),
     .PoolTag = INSTANCE_CONTEXT_TAG},
    {.ContextType = FLT_STREAM_CONTEXT,
     .ContextCleanupCallback = ContextCleanup,
     .Size = sizeof(STREAM_CONTEXT),
     .PoolTag = STREAM_CONTEXT_TAG},
    {.ContextType = FLT_FILE_CONTEXT,
     .ContextCleanupCallback = ContextCleanup,
     .Size = sizeof(FILE_CONTEXT),
     .PoolTag = FILE_CONTEXT_TAG},
    {.ContextType = FLT_VOLUME_CONTEXT,
     .ContextCleanupCallback = ContextCleanup,
     .Size = sizeof(VOLUME_CONTEXT),
     .PoolTag = VOLUME_CONTEXT_TAG},
    {.ContextType = FLT_CONTEXT_END},
};

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_CREATE, 0, PreCreate, PostCreate, NULL},
    {IRP_MJ_WRITE, 0, PreWrite, NULL, NULL},
    {IRP_MJ_CLEANUP, 0, PreCleanup, NULL, NULL},
    {IRP_MJ_SET_INFORMATION, 0, PreSetInformation, NULL, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .ContextRegistration = g_contexts,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
    .InstanceSetupCallback = InstanceSetup,
    .InstanceQueryTeardownCallback = InstanceQueryTeardown,
};

/* The filter's own setup, run by DriverEntry inside the entry gate (entry_gate.h). */
static NTSTATUS Setup(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    NTSTATUS status;

    (void)registry_path;
    g_counters = ExAllocatePoolWithTag(NonPagedPoolNx, sizeof(COUNTERS), COUNTERS_TAG);
    if (g_counters == NULL) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    /* ExAllocatePoolWithTag leaves the memory uninitialized. */
    g_counters->ContextsSet = 0;
    g_counters->ContextsFreed = 0;
    g_counters->WritesSeen = 0;
    g_counters->Creates = 0;
    g_counters->RotatedOpens = 0;
    g_counters->DiskVolumeOpens = 0;
    g_counters->Detached = 0;
    g_outstanding = 0;
    g_unloading = 0;
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (!NT_SUCCESS(status)) {
        ExFreePool(g_counters);
        g_counters = NULL;
        return status;
    }
    status = FltStartFiltering(g_filter);
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_filter);
        ExFreePool(g_counters);
        g_counters = NULL;
    }
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    return EntryGateRun(driver, registry_path, Setup);
}
