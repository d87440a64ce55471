/* reader.c: a minifilter in C that issues its own I/O and pends operations to work items, the
 * shape of content scanners that look at a file's first bytes after it is opened. Written to
 * prove kernel-sim's generic work items, pended pre-operations and filter-initiated I/O on a
 * driver that is not Vigil.
 *
 * - Post-create (PASSIVE_LEVEL) takes the normalized name, copies it into a request and queues
 *   a generic work item with it: the create is not held up by the scan. The worker opens the
 *   file itself with FltCreateFileEx through the filter's instance (so the create goes only to
 *   what is below the filter: no recursion into this post-create), reads its first bytes with
 *   FltReadFile, dereferences the file object and closes the handle with FltClose.
 * - Pre-write pends every write (FLT_PREOP_PENDING) to a deferred-I/O work item, the routine
 *   made for posting an operation, whose worker completes it with
 *   FltCompletePendedPreOperation. When no work item can be had or the operation cannot be
 *   posted (paging I/O: STATUS_FLT_NOT_SAFE_TO_POST_OPERATION), the write goes ahead unpended
 *   (fail open: never pend what nothing will complete).
 * - Post-cleanup (which Filter Manager may call at DISPATCH_LEVEL) counts the cleanup through
 *   FltDoCompletionProcessingWhenSafe: at once below DISPATCH_LEVEL, else on a worker thread
 *   with the operation pended until the safe callback is done.
 * - Unload unregisters (after which no callback queues more work), then waits until every
 *   queued work item has finished (their routines are in this image). Filter Manager does not document that it waits for
 *   generic work items, so the filter counts its own.
 *
 * Broken twins, selected at build time:
 * - TWIN_UNLOAD_WITHOUT_DRAIN: unload unregisters and returns without waiting for the queued
 *   work items, which then run in an unloaded image.
 * - TWIN_PEND_NEVER_COMPLETED: the write worker returns early on its first run after load (a
 *   lazy first-run path) without completing the write it was given.
 *
 * Runs in the kernel: create/write callbacks and work items at PASSIVE_LEVEL. */
#include <stdarg.h>
#include <stddef.h>
#include <windef.h>
#include <winternl.h>
#include <ddk/wdm.h>
#include <ddk/ntddk.h>
#include <ddk/ntifs.h>
#include <ddk/fltkernel.h>
#include <dpfilter.h>
#include "flt_documented.h"
#include "entry_gate.h"

#define READER_TAG 'rdrC'
#define HEAD_BYTES 16

/* What the scan worker needs: the instance the create came through and the file's name. */
typedef struct _SCAN_REQUEST {
    PFLT_INSTANCE instance;
    UNICODE_STRING name;
    WCHAR buffer[1];
} SCAN_REQUEST, *PSCAN_REQUEST;

static PFLT_FILTER g_filter;
static volatile LONG g_outstanding;
static volatile LONG g_unloading;
static volatile LONG g_scans;
static volatile LONG g_pended;
static volatile LONG g_cleanups;
#ifdef TWIN_PEND_NEVER_COMPLETED
static volatile LONG g_write_worker_started;
#endif

static VOID ScanWorker(PFLT_GENERIC_WORKITEM item, PVOID flt_object, PVOID context)
{
    PSCAN_REQUEST request = context;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK io_status;
    HANDLE handle = NULL;
    PFILE_OBJECT file_object = NULL;
    LARGE_INTEGER offset;
    UCHAR head[HEAD_BYTES];
    ULONG read = 0;
    NTSTATUS status;

    (void)flt_object;
    InitializeObjectAttributes(&attributes, &request->name, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
                               NULL, NULL);
    status = FltCreateFileEx(g_filter, request->instance, &handle, &file_object,
                             FILE_READ_DATA | SYNCHRONIZE, &attributes, &io_status, NULL,
                             FILE_ATTRIBUTE_NORMAL,
                             FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, FILE_OPEN,
                             FILE_NON_DIRECTORY_FILE | FILE_SYNCHRONOUS_IO_NONALERT, NULL, 0, 0);
    if (NT_SUCCESS(status)) {
        offset.QuadPart = 0;
        status = FltReadFile(request->instance, file_object, &offset, sizeof(head), head, 0, &read,
                             NULL, NULL);
        /* An empty file reads as STATUS_END_OF_FILE: scanned all the same. */
        if (NT_SUCCESS(status) || status == STATUS_END_OF_FILE) {
            InterlockedIncrement(&g_scans);
        }
        ObfDereferenceObject(file_object);
        FltClose(handle);
    }
    ExFreePoolWithTag(request, READER_TAG);
    FltFreeGenericWorkItem(item);
    InterlockedDecrement(&g_outstanding);
}

/* Queues `routine` with `context`; FALSE (nothing queued, nothing counted) when no work item
 * can be had or the instance is going away. */
static BOOLEAN QueueWork(PFLT_INSTANCE instance, PFLT_GENERIC_WORKITEM_ROUTINE routine,
                         PVOID context)
{
    PFLT_GENERIC_WORKITEM item = FltAllocateGenericWorkItem();

    if (item == NULL) {
        return FALSE;
    }
    InterlockedIncrement(&g_outstanding);
    if (!NT_SUCCESS(FltQueueGenericWorkItem(item, instance, routine, DelayedWorkQueue, context))) {
        InterlockedDecrement(&g_outstanding);
        FltFreeGenericWorkItem(item);
        return FALSE;
    }
    return TRUE;
}

static FLT_POSTOP_CALLBACK_STATUS PostCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                             PVOID completion_context,
                                             FLT_POST_OPERATION_FLAGS flags)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;
    PSCAN_REQUEST request;
    SIZE_T size;

    (void)completion_context;
    if ((flags & FLTFL_POST_OPERATION_DRAINING) || g_unloading ||
        !NT_SUCCESS(data->IoStatus.Status) || data->IoStatus.Status == STATUS_REPARSE) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (!NT_SUCCESS(FltGetFileNameInformation(
            data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &name))) {
        /* Fail open: an unnamed file is not scanned. */
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    size = FIELD_OFFSET(SCAN_REQUEST, buffer) + name->Name.Length;
    request = ExAllocatePoolWithTag(NonPagedPoolNx, size, READER_TAG);
    if (request != NULL) {
        request->instance = objects->Instance;
        request->name.Buffer = request->buffer;
        request->name.Length = name->Name.Length;
        request->name.MaximumLength = name->Name.Length;
        RtlCopyMemory(request->buffer, name->Name.Buffer, name->Name.Length);
        if (!QueueWork(objects->Instance, ScanWorker, request)) {
            ExFreePoolWithTag(request, READER_TAG);
        }
    }
    FltReleaseFileNameInformation(name);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

static VOID CompleteWrite(PFLT_DEFERRED_IO_WORKITEM item, PFLT_CALLBACK_DATA data, PVOID context)
{
    (void)context;
    InterlockedIncrement(&g_pended);
#ifdef TWIN_PEND_NEVER_COMPLETED
    if (InterlockedIncrement(&g_write_worker_started) == 1) {
        FltFreeDeferredIoWorkItem(item);
        InterlockedDecrement(&g_outstanding);
        return;
    }
#endif
    FltCompletePendedPreOperation(data, FLT_PREOP_SUCCESS_NO_CALLBACK, NULL);
    FltFreeDeferredIoWorkItem(item);
    InterlockedDecrement(&g_outstanding);
}

static FLT_PREOP_CALLBACK_STATUS PreWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    PFLT_DEFERRED_IO_WORKITEM item;

    (void)objects;
    *completion_context = NULL;
    if (g_unloading) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    item = FltAllocateDeferredIoWorkItem();
    if (item == NULL) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    InterlockedIncrement(&g_outstanding);
    if (!NT_SUCCESS(FltQueueDeferredIoWorkItem(item, data, CompleteWrite, DelayedWorkQueue, NULL))) {
        InterlockedDecrement(&g_outstanding);
        FltFreeDeferredIoWorkItem(item);
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    return FLT_PREOP_PENDING;
}

static FLT_POSTOP_CALLBACK_STATUS SafePostCleanup(PFLT_CALLBACK_DATA data,
                                                  PCFLT_RELATED_OBJECTS objects,
                                                  PVOID completion_context,
                                                  FLT_POST_OPERATION_FLAGS flags)
{
    (void)data;
    (void)objects;
    (void)completion_context;
    (void)flags;
    InterlockedIncrement(&g_cleanups);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

static FLT_POSTOP_CALLBACK_STATUS PostCleanup(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                              PVOID completion_context,
                                              FLT_POST_OPERATION_FLAGS flags)
{
    FLT_POSTOP_CALLBACK_STATUS status = FLT_POSTOP_FINISHED_PROCESSING;

    /* Never while draining: the instance is going away, count nothing. */
    if (flags & FLTFL_POST_OPERATION_DRAINING) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (!FltDoCompletionProcessingWhenSafe(data, objects, completion_context, flags,
                                           SafePostCleanup, &status)) {
        /* Could not be posted (paging I/O): uncounted. */
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    return status;
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    InterlockedExchange(&g_unloading, 1);
    /* Unregistering first: once it returns no callback runs, so nothing queues more work. */
    FltUnregisterFilter(g_filter);
#ifndef TWIN_UNLOAD_WITHOUT_DRAIN
    {
        LARGE_INTEGER interval;
        interval.QuadPart = -10 * 1000; /* 1 ms, relative */
        while (g_outstanding != 0) {
            KeDelayExecutionThread(KernelMode, FALSE, &interval);
        }
    }
#endif
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
               "reader: %ld scan(s), %ld pended write(s), %ld cleanup(s)\n", g_scans, g_pended,
               g_cleanups);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_CREATE, 0, NULL, PostCreate, NULL},
    {IRP_MJ_WRITE, 0, PreWrite, NULL, NULL},
    {IRP_MJ_CLEANUP, 0, NULL, PostCleanup, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
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
