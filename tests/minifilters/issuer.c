/* issuer.c: a minifilter in C that issues its own I/O below its instance with the routines
 * real scanners and backup filters use when FltReadFile is not enough: FltCreateFileEx2 (with
 * a driver create context), callback data it builds itself (FltAllocateCallbackData,
 * FltPerformAsynchronousIo with a completion routine, FltReuseCallbackData,
 * FltPerformSynchronousIo, FltFreeCallbackData), FltFsControlFile and FltSetInformationFile.
 * Written to prove kernel-sim's emulation of that surface on a driver that is not Vigil.
 *
 * - Pre-cleanup (PASSIVE_LEVEL) works on the file object being cleaned up (open still, even
 *   when its file is delete-pending). It meets the routines' documented failures on purpose
 *   (an information class that cannot be set, a short buffer, a reparse-point buffer too
 *   small, a create through FltPerformAsynchronousIo) and cancels an asynchronous read with
 *   FltCancelIo (its completion routine checks FltIsIoCanceled). It reads the file's first
 *   bytes twice through one callback data: asynchronously (the completion routine, called on
 *   another thread, records the result and sets an event the pre-cleanup waits on; the
 *   callback data is the filter's again only once the routine has been called), then, after
 *   FltReuseCallbackData, synchronously; both must agree, and an asynchronous FltReadFile must
 *   read as much. It asks for the file's reparse point twice, with FltFsControlFile and as an
 *   IRP_MJ_FILE_SYSTEM_CONTROL through the same callback data; both must agree. Then it frees
 *   the callback data and queues a generic work item with the file's normalized name.
 * - The worker opens the file with FltCreateFileEx2 through the filter's instance (below the
 *   filter: none of this I/O reaches this filter's own callbacks, the worker's close included),
 *   sets its (unchanged) basic information, and grows every file named *.pad to 4096 bytes
 *   with FileEndOfFileInformation (and reads the size back with FltQueryInformationFile).
 * - Its pre-read, pre-set-information and pre-file-system-control callbacks count what reaches
 *   them: the filter's own I/O never should.
 * - Unload unregisters (after which no callback queues more work), then waits until every
 *   queued work item has finished (their routines are in this image), and traces its counts.
 *
 * Fail open everywhere: any failure (no work item, no pool, no callback data, an I/O error)
 * skips the rest of that file's scan.
 *
 * Broken twins, selected at build time:
 * - TWIN_CALLBACK_DATA_LEAK: the pre-cleanup never frees its callback data.
 * - TWIN_CREATE_CONTEXT_NOT_INITIALIZED: the worker fills the driver create context's
 *   members by hand instead of with IoInitializeDriverCreateContext, leaving Size as the stack
 *   had it.
 * - TWIN_FREE_BEFORE_COMPLETION: the pre-cleanup frees the callback data as soon as
 *   FltPerformAsynchronousIo returns, before the completion routine has been called.
 *
 * Runs in the kernel: callbacks and work items at PASSIVE_LEVEL; the completion routine at
 * IRQL <= DISPATCH_LEVEL (it only copies a status and sets an event). */
#include <stdarg.h>
#include <stddef.h>
#include <windef.h>
#include <winternl.h>
#include <ddk/wdm.h>
#include <ddk/ntddk.h>
#include <ddk/ntifs.h>
#include <ddk/fltkernel.h>
#include <dpfilter.h>
#include <winioctl.h>
#include "flt_documented.h"
#include "entry_gate.h"

#define ISSUER_TAG 'rssI'
#define HEAD_BYTES 16
#define PADDED_SIZE 4096

/* What the scan worker needs: the instance the cleanup came through and the file's name. */
typedef struct _SCAN_REQUEST {
    PFLT_INSTANCE instance;
    UNICODE_STRING name;
    WCHAR buffer[1];
} SCAN_REQUEST, *PSCAN_REQUEST;

/* What the completion routine hands back to the thread waiting for it (on its KernelMode
 * wait, so the stack it lives on stays resident). */
typedef struct _ASYNC_READ {
    KEVENT done;
    NTSTATUS status;
    ULONG_PTR information;
    BOOLEAN canceled;
} ASYNC_READ, *PASYNC_READ;

static PFLT_FILTER g_filter;
static volatile LONG g_outstanding;
static volatile LONG g_unloading;
static volatile LONG g_scans;
static volatile LONG g_bytes_read;
static volatile LONG g_not_reparse;
static volatile LONG g_padded;
static volatile LONG g_unexpected;
static volatile LONG g_own_seen;

static VOID ReadDone(PFLT_CALLBACK_DATA data, PFLT_CONTEXT context)
{
    PASYNC_READ read = context;

    read->status = data->IoStatus.Status;
    read->information = data->IoStatus.Information;
    read->canceled = FltIsIoCanceled(data);
    KeSetEvent(&read->done, 0, FALSE);
}

/* Waits for the completion routine (called in every case, failures included). */
static VOID WaitForCompletion(PASYNC_READ read)
{
    LARGE_INTEGER second;

    second.QuadPart = -10 * 1000 * 1000;
    while (KeWaitForSingleObject(&read->done, Executive, KernelMode, FALSE, &second) ==
           STATUS_TIMEOUT) {
    }
}

static BOOLEAN SameBytes(const UCHAR *a, const UCHAR *b, ULONG_PTR count)
{
    ULONG_PTR i;

    for (i = 0; i < count; i++) {
        if (a[i] != b[i]) {
            return FALSE;
        }
    }
    return TRUE;
}

static VOID SetRead(PFLT_CALLBACK_DATA data, PUCHAR buffer)
{
    data->Iopb->MajorFunction = IRP_MJ_READ;
    data->Iopb->Parameters.Read.Length = HEAD_BYTES;
    data->Iopb->Parameters.Read.ByteOffset.QuadPart = 0;
    data->Iopb->Parameters.Read.ReadBuffer = buffer;
}

/* The first bytes again with an asynchronous FltReadFile (Filter Manager's own callback data
 * reaches the same completion routine): the count must be the one the other reads gave. */
static VOID ReadHeadWithFltReadFile(PFLT_INSTANCE instance, PFILE_OBJECT file_object,
                                    PUCHAR buffer, ULONG_PTR expected)
{
    ASYNC_READ read;
    LARGE_INTEGER offset;
    NTSTATUS status;

    offset.QuadPart = 0;
    KeInitializeEvent(&read.done, NotificationEvent, FALSE);
    status = FltReadFile(instance, file_object, &offset, HEAD_BYTES, buffer, 0, NULL, ReadDone,
                         &read);
    /* The routine is called once the read was started (pending or already done). */
    if (status == STATUS_PENDING || NT_SUCCESS(status)) {
        WaitForCompletion(&read);
        if (NT_SUCCESS(read.status) && read.information != expected) {
            InterlockedIncrement(&g_unexpected);
        }
    }
}

/* The first bytes of the file, read asynchronously then synchronously through `data`: both
 * reads must agree. FALSE when `data` is no longer the caller's (the twin freed it). */
static BOOLEAN ReadHeadTwice(PFLT_CALLBACK_DATA data, PUCHAR heads)
{
    ASYNC_READ read;
    PUCHAR first = heads;
    PUCHAR second = heads + HEAD_BYTES;

    KeInitializeEvent(&read.done, NotificationEvent, FALSE);
    SetRead(data, first);
    FltPerformAsynchronousIo(data, ReadDone, &read);
#ifdef TWIN_FREE_BEFORE_COMPLETION
    FltFreeCallbackData(data);
    WaitForCompletion(&read);
    return FALSE;
#endif
    WaitForCompletion(&read);
    if (read.canceled) {
        InterlockedIncrement(&g_unexpected);
    }
    FltReuseCallbackData(data);
    SetRead(data, second);
    FltPerformSynchronousIo(data);
    if (NT_SUCCESS(read.status) && NT_SUCCESS(data->IoStatus.Status)) {
        if (read.information != data->IoStatus.Information ||
            read.information > HEAD_BYTES ||
            !SameBytes(first, second, read.information)) {
            InterlockedIncrement(&g_unexpected);
        } else {
            InterlockedExchangeAdd(&g_bytes_read, (LONG)read.information);
            ReadHeadWithFltReadFile(data->Iopb->TargetInstance, data->Iopb->TargetFileObject,
                                    second, read.information);
        }
    }
    return TRUE;
}

/* FSCTL_GET_REPARSE_POINT with FltFsControlFile and through `data`: both must agree. */
static VOID AskReparsePoint(PFLT_INSTANCE instance, PFILE_OBJECT file_object,
                            PFLT_CALLBACK_DATA data, PUCHAR buffer, ULONG length)
{
    ULONG returned = 0;
    NTSTATUS direct = FltFsControlFile(instance, file_object, FSCTL_GET_REPARSE_POINT, NULL, 0,
                                       buffer, length, &returned);

    FltReuseCallbackData(data);
    data->Iopb->MajorFunction = IRP_MJ_FILE_SYSTEM_CONTROL;
    data->Iopb->MinorFunction = IRP_MN_USER_FS_REQUEST;
    data->Iopb->Parameters.FileSystemControl.Buffered.OutputBufferLength = length;
    data->Iopb->Parameters.FileSystemControl.Buffered.InputBufferLength = 0;
    data->Iopb->Parameters.FileSystemControl.Buffered.FsControlCode = FSCTL_GET_REPARSE_POINT;
    data->Iopb->Parameters.FileSystemControl.Buffered.SystemBuffer = buffer;
    FltPerformSynchronousIo(data);
    if (direct == STATUS_INSUFFICIENT_RESOURCES ||
        data->IoStatus.Status == STATUS_INSUFFICIENT_RESOURCES) {
        return;
    }
    if (direct != data->IoStatus.Status) {
        InterlockedIncrement(&g_unexpected);
    } else if (direct == STATUS_NOT_A_REPARSE_POINT) {
        InterlockedIncrement(&g_not_reparse);
    }
}

/* The documented failures of the routines, which a careful filter may meet: an information
 * class that cannot be set, a buffer shorter than the class's structure, an output buffer too
 * small for a reparse point's header (or a file system without reparse points), a create
 * through FltPerformAsynchronousIo (whose completion routine is called all the same). Each
 * other answer (but a lack of resources) is counted as unexpected. */
static VOID ProbeStatuses(PFLT_INSTANCE instance, PFILE_OBJECT file_object, PUCHAR buffer)
{
    FILE_END_OF_FILE_INFORMATION end;
    PFLT_CALLBACK_DATA data = NULL;
    ASYNC_READ create;
    ULONG returned = 0;
    NTSTATUS status;

    end.EndOfFile.QuadPart = 0;
    status = FltSetInformationFile(instance, file_object, &end, sizeof(end), FileNameInformation);
    if (status != STATUS_INVALID_INFO_CLASS && status != STATUS_INSUFFICIENT_RESOURCES) {
        InterlockedIncrement(&g_unexpected);
    }
    status = FltSetInformationFile(instance, file_object, &end, sizeof(ULONG),
                                   FileEndOfFileInformation);
    if (status != STATUS_INFO_LENGTH_MISMATCH && status != STATUS_INSUFFICIENT_RESOURCES) {
        InterlockedIncrement(&g_unexpected);
    }
    status = FltFsControlFile(instance, file_object, FSCTL_GET_REPARSE_POINT, NULL, 0, buffer,
                              sizeof(ULONG), &returned);
    if (!(status == STATUS_BUFFER_TOO_SMALL && returned == 8) &&
        status != STATUS_INVALID_DEVICE_REQUEST && status != STATUS_INSUFFICIENT_RESOURCES) {
        InterlockedIncrement(&g_unexpected);
    }
    if (!NT_SUCCESS(FltAllocateCallbackData(instance, NULL, &data))) {
        return;
    }
    data->Iopb->MajorFunction = IRP_MJ_CREATE;
    KeInitializeEvent(&create.done, NotificationEvent, FALSE);
    status = FltPerformAsynchronousIo(data, ReadDone, &create);
    WaitForCompletion(&create);
    if (status != STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST || create.status != status) {
        InterlockedIncrement(&g_unexpected);
    }
    FltFreeCallbackData(data);
}

/* Cancels an asynchronous read as soon as it is issued. A TRUE from FltCancelIo means the read
 * was canceled: it completes with STATUS_CANCELLED and its completion routine sees the cancel
 * bit. (FALSE, when the file system was already at work, promises nothing to check.) */
static VOID ProbeCancel(PFLT_INSTANCE instance, PFILE_OBJECT file_object, PUCHAR buffer)
{
    PFLT_CALLBACK_DATA data = NULL;
    ASYNC_READ read;

    if (!NT_SUCCESS(FltAllocateCallbackData(instance, file_object, &data))) {
        return;
    }
    KeInitializeEvent(&read.done, NotificationEvent, FALSE);
    SetRead(data, buffer);
    if (FltPerformAsynchronousIo(data, ReadDone, &read) == STATUS_PENDING && FltCancelIo(data)) {
        WaitForCompletion(&read);
        if (read.status != STATUS_CANCELLED || !read.canceled) {
            InterlockedIncrement(&g_unexpected);
        }
    } else {
        WaitForCompletion(&read);
    }
    FltFreeCallbackData(data);
}

static BOOLEAN EndsWithPad(PCUNICODE_STRING name)
{
    static const WCHAR pad[] = L".pad";
    USHORT units = name->Length / sizeof(WCHAR);
    USHORT i;

    if (units < 4) {
        return FALSE;
    }
    for (i = 0; i < 4; i++) {
        WCHAR c = name->Buffer[units - 4 + i];
        if (c >= L'A' && c <= L'Z') {
            c = (WCHAR)(c - L'A' + L'a');
        }
        if (c != pad[i]) {
            return FALSE;
        }
    }
    return TRUE;
}

/* The requests on the file object being cleaned up (still open, even when delete-pending):
 * the documented failures first, then the reads and the reparse point through one callback
 * data. */
static VOID Inspect(PFLT_INSTANCE instance, PFILE_OBJECT file_object)
{
    PFLT_CALLBACK_DATA data = NULL;
    /* Non-paged: the asynchronous read completes at up to DISPATCH_LEVEL. */
    PUCHAR buffers = ExAllocatePoolWithTag(NonPagedPoolNx, 2 * HEAD_BYTES, ISSUER_TAG);

    if (buffers == NULL) {
        return;
    }
    ProbeStatuses(instance, file_object, buffers);
    ProbeCancel(instance, file_object, buffers);
    if (NT_SUCCESS(FltAllocateCallbackData(instance, file_object, &data)) &&
        ReadHeadTwice(data, buffers)) {
        AskReparsePoint(instance, file_object, data, buffers, 2 * HEAD_BYTES);
#ifndef TWIN_CALLBACK_DATA_LEAK
        FltFreeCallbackData(data);
#endif
    }
    ExFreePoolWithTag(buffers, ISSUER_TAG);
}

/* The requests on the worker's own open of the file. */
static VOID Scan(PSCAN_REQUEST request, PFILE_OBJECT file_object)
{
    FILE_BASIC_INFORMATION basic;

    /* All zero: change nothing (what a filter does to touch a file's times only on purpose). */
    RtlZeroMemory(&basic, sizeof(basic));
    FltSetInformationFile(request->instance, file_object, &basic, sizeof(basic),
                          FileBasicInformation);
    if (EndsWithPad(&request->name)) {
        FILE_END_OF_FILE_INFORMATION end;
        end.EndOfFile.QuadPart = PADDED_SIZE;
        if (NT_SUCCESS(FltSetInformationFile(request->instance, file_object, &end, sizeof(end),
                                             FileEndOfFileInformation))) {
            FILE_STANDARD_INFORMATION standard;
            NTSTATUS status = FltQueryInformationFile(request->instance, file_object, &standard,
                                                      sizeof(standard), FileStandardInformation,
                                                      NULL);
            /* The file system below must say what it was told. */
            if (NT_SUCCESS(status) && standard.EndOfFile.QuadPart != PADDED_SIZE) {
                InterlockedIncrement(&g_unexpected);
            }
            InterlockedIncrement(&g_padded);
        }
    }
    InterlockedIncrement(&g_scans);
}

static VOID ScanWorker(PFLT_GENERIC_WORKITEM item, PVOID flt_object, PVOID context)
{
    PSCAN_REQUEST request = context;
    IO_DRIVER_CREATE_CONTEXT driver_context;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK io_status;
    HANDLE handle = NULL;
    PFILE_OBJECT file_object = NULL;

    (void)flt_object;
#ifdef TWIN_CREATE_CONTEXT_NOT_INITIALIZED
    /* Filled in by hand: every member but Size, which IoInitializeDriverCreateContext sets. */
    driver_context.ExtraCreateParameter = NULL;
    driver_context.DeviceObjectHint = NULL;
    driver_context.TxnParameters = NULL;
    driver_context.SiloContext = NULL;
#else
    IoInitializeDriverCreateContext(&driver_context);
#endif
    InitializeObjectAttributes(&attributes, &request->name, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
                               NULL, NULL);
    if (NT_SUCCESS(FltCreateFileEx2(g_filter, request->instance, &handle, &file_object,
                                    FILE_READ_DATA | FILE_WRITE_DATA | SYNCHRONIZE, &attributes,
                                    &io_status, NULL, FILE_ATTRIBUTE_NORMAL,
                                    FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                                    FILE_OPEN,
                                    FILE_NON_DIRECTORY_FILE | FILE_SYNCHRONOUS_IO_NONALERT, NULL,
                                    0, 0, &driver_context))) {
        Scan(request, file_object);
        ObfDereferenceObject(file_object);
        FltClose(handle);
    }
    ExFreePoolWithTag(request, ISSUER_TAG);
    FltFreeGenericWorkItem(item);
    InterlockedDecrement(&g_outstanding);
}

static FLT_PREOP_CALLBACK_STATUS PreCleanup(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                            PVOID *completion_context)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;
    PFLT_GENERIC_WORKITEM item;
    PSCAN_REQUEST request;
    SIZE_T size;

    *completion_context = NULL;
    if (g_unloading) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    Inspect(objects->Instance, data->Iopb->TargetFileObject);
    if (!NT_SUCCESS(FltGetFileNameInformation(
                           data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &name))) {
        /* Fail open: an unnamed file is not scanned. */
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    size = FIELD_OFFSET(SCAN_REQUEST, buffer) + name->Name.Length;
    request = ExAllocatePoolWithTag(NonPagedPoolNx, size, ISSUER_TAG);
    item = request == NULL ? NULL : FltAllocateGenericWorkItem();
    if (item != NULL) {
        request->instance = objects->Instance;
        request->name.Buffer = request->buffer;
        request->name.Length = name->Name.Length;
        request->name.MaximumLength = name->Name.Length;
        RtlCopyMemory(request->buffer, name->Name.Buffer, name->Name.Length);
        InterlockedIncrement(&g_outstanding);
        if (NT_SUCCESS(FltQueueGenericWorkItem(item, objects->Instance, ScanWorker,
                                               DelayedWorkQueue, request))) {
            request = NULL;
        } else {
            InterlockedDecrement(&g_outstanding);
            FltFreeGenericWorkItem(item);
        }
    }
    if (request != NULL) {
        ExFreePoolWithTag(request, ISSUER_TAG);
    }
    FltReleaseFileNameInformation(name);
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

/* Read, set-information and file-system-control requests that reach this filter: none of its
 * own may (they go below it). */
static FLT_PREOP_CALLBACK_STATUS PreCount(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    (void)data;
    (void)objects;
    *completion_context = NULL;
    InterlockedIncrement(&g_own_seen);
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    LARGE_INTEGER interval;

    (void)flags;
    InterlockedExchange(&g_unloading, 1);
    /* Unregistering first: once it returns no callback runs, so nothing queues more work. */
    FltUnregisterFilter(g_filter);
    interval.QuadPart = -10 * 1000; /* 1 ms, relative */
    while (g_outstanding != 0) {
        KeDelayExecutionThread(KernelMode, FALSE, &interval);
    }
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
               "issuer: %ld scan(s), %ld byte(s) read, %ld not a reparse point, %ld padded, "
               "%ld unexpected, %ld request(s) seen\n",
               g_scans, g_bytes_read, g_not_reparse, g_padded, g_unexpected, g_own_seen);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_CLEANUP, 0, PreCleanup, NULL, NULL},
    {IRP_MJ_READ, 0, PreCount, NULL, NULL},
    {IRP_MJ_SET_INFORMATION, 0, PreCount, NULL, NULL},
    {IRP_MJ_FILE_SYSTEM_CONTROL, 0, PreCount, NULL, NULL},
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
