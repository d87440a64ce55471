/* queue.c: a minifilter in C that pends writes to matching files in a cancel-safe callback
 * data queue and completes them from a worker, the shape of filters that hold I/O back
 * (replication, delayed scanning, throttling). Written to prove kernel-sim's FltCbdq routines
 * and the cancel of pended operations, the Rtl string routines, FsRtlIsNameInExpression,
 * lookaside lists, SLists and fast mutexes on a driver that is not Vigil.
 *
 * - DriverEntry builds the expression the filter pends for with RtlInitUnicodeString:
 *   "*\FILE<"TXT" (any directory, FILE, anything up to the extension's period, which DOS_DOT
 *   takes, then TXT), upper case because FsRtlIsNameInExpression upcases only the name. It
 *   initializes a nonpaged lookaside list for the queue entries, an Ex lookaside list for the
 *   worker's labels (ExInitializeLookasideListEx) and an SList of done entries.
 * - InstanceSetup gives each instance a context holding its callback data queue
 *   (FltCbdqInitialize): a list of callback data linked through their QueueLinks, under a fast
 *   mutex taken by the queue's acquire routine (ExTryToAcquireFastMutex first, counting the
 *   contended acquires).
 * - Pre-write takes the file's normalized name; when it matches (IgnoreCase), an entry from the
 *   lookaside list keeps a copy of the name (RtlCopyUnicodeString into the entry's buffer) and
 *   the queue's IO context; the write goes into the queue with FltCbdqInsertIo, a generic work
 *   item (holding the instance context's reference) is queued, and the write is pended. Anything
 *   that cannot be had (a name, an entry, a work item, paging I/O, which must not be posted)
 *   lets the write go on unpended: fail open, never pend what nothing will complete; a write the
 *   worker cannot be queued for is taken back with FltCbdqRemoveIo.
 * - The worker takes writes off the queue with FltCbdqRemoveNextIo, upcases the name with
 *   RtlUpcaseUnicodeString (allocating) to check it against the expression again, compares it
 *   with the original (RtlEqualUnicodeString, RtlCompareUnicodeString, RtlPrefixUnicodeString),
 *   builds a short label in a buffer from the Ex lookaside list (RtlAppendUnicodeToString, then
 *   RtlAppendUnicodeStringToString of the name, which does not fit: STATUS_BUFFER_TOO_SMALL leaves the label unchanged), converts the
 *   name to ANSI for the first log line, frees what the Rtl routines allocated, completes the
 *   write with FltCompletePendedPreOperation and pushes the entry onto the done SList; then
 *   flushes the SList and returns its entries to the lookaside list.
 * - A write canceled by its requestor while queued is taken out of the queue by Filter Manager,
 *   which calls the queue's CompleteCanceledIo: the write is completed with STATUS_CANCELLED.
 * - Writes to files whose name also matches "*\FILE<1"TXT" (the number ends in 1) are posted
 *   another way: a cancel routine (FltSetCancelCompletion) and a deferred-I/O work item. The
 *   worker completes the write only if FltClearCancelCompletion says the cancel has not begun;
 *   otherwise the cancel routine completes it, with STATUS_CANCELLED.
 * - The queue refuses writes (FltCbdqDisable) until InstanceSetup has attached its context
 *   (FltCbdqEnable), and again from InstanceTeardownStart.
 * - Unload stops new pends, waits for the outstanding work items (each holds an instance
 *   context), unregisters, then deletes the lookaside lists.
 *
 * Broken twins, selected at build time:
 * - TWIN_LOOKASIDE_NOT_DELETED: unload returns without ExDeleteNPagedLookasideList.
 * - TWIN_FAST_MUTEX_AT_DISPATCH: pre-write inserts into the queue while holding a spin lock, so
 *   the queue's acquire takes its fast mutex at DISPATCH_LEVEL (it needs <= APC_LEVEL).
 * - TWIN_EXPRESSION_NOT_UPCASED: the expression is written in lower case and matched with
 *   IgnoreCase TRUE (it never matches: nothing is pended).
 * - TWIN_FREE_NOT_RTL_STRING: the worker releases the entry's own name (a buffer inside the
 *   entry) with RtlFreeUnicodeString, which frees only what an Rtl routine allocated.
 * - TWIN_WRONG_LOOKASIDE: done entries go back to a second list of larger blocks.
 * - TWIN_CANCELED_NOT_COMPLETED: CompleteCanceledIo only counts the canceled write: it is never
 *   completed, and its requestor waits forever.
 * - TWIN_CANCEL_NOT_CLEARED: the deferred worker completes its write without
 *   FltClearCancelCompletion, so a write whose cancel routine ran is completed twice.
 *
 * Runs in the kernel: pre-write, the worker and the cancel routines at PASSIVE_LEVEL (APC_LEVEL
 * under the queue's fast mutex). */
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

#define QUEUE_TAG 'quqC'
#define SPARE_TAG 'qsqC'
#define INSTANCE_TAG 'qiqC'
#define NAME_CHARS 96
#define LABEL_TAG 'qlqC'
#define LABEL_BYTES 32
/* FLTFL_CALLBACK_DATA_IRP_OPERATION (the FLT_CALLBACK_DATA page's Flags), missing from Wine. */
#define QUEUE_IRP_OPERATION 0x00000001

/* One pended write: kept in its callback data's QueueContext[0] while queued. The SLIST_ENTRY
 * comes first: entries sit on the done SList, and on the lookaside list's own, through it. */
typedef struct DECLSPEC_ALIGN(16) _QUEUE_ENTRY {
    SLIST_ENTRY done;
    FLT_CALLBACK_DATA_QUEUE_IO_CONTEXT io_context;
    UNICODE_STRING name;
    WCHAR buffer[NAME_CHARS];
} QUEUE_ENTRY, *PQUEUE_ENTRY;

/* The instance context: the instance's cancel-safe queue. */
typedef struct _QUEUE_INSTANCE {
    FLT_CALLBACK_DATA_QUEUE cbdq;
    LIST_ENTRY queue;
    FAST_MUTEX lock;
} QUEUE_INSTANCE, *PQUEUE_INSTANCE;

static PFLT_FILTER g_filter;
static UNICODE_STRING g_expression;
static DECLSPEC_ALIGN(64) NPAGED_LOOKASIDE_LIST g_entries;
#ifdef TWIN_WRONG_LOOKASIDE
static DECLSPEC_ALIGN(64) NPAGED_LOOKASIDE_LIST g_spares;
#endif
static DECLSPEC_ALIGN(64) LOOKASIDE_LIST_EX g_labels;
static SLIST_HEADER g_done;
static volatile LONG g_contended;
static volatile LONG g_outstanding;
static volatile LONG g_unloading;
static volatile LONG g_pended;
static volatile LONG g_completed;
static volatile LONG g_canceled;
static volatile LONG g_recycled;
static volatile LONG g_deepest;
static volatile LONG g_mismatches;
static volatile LONG g_logged;
#ifdef TWIN_FAST_MUTEX_AT_DISPATCH
static KSPIN_LOCK g_spin;
#endif

#ifdef TWIN_EXPRESSION_NOT_UPCASED
static const WCHAR g_expression_text[] = L"*\\file<\"txt";
#else
static const WCHAR g_expression_text[] = L"*\\FILE<\"TXT";
#endif
static const WCHAR g_posted_text[] = L"*\\FILE<1\"TXT";
static UNICODE_STRING g_posted_expression;
static volatile LONG g_posted;
static const WCHAR g_marker[] = L"pended: ";
static const WCHAR g_volume_prefix[] = L"\\DEVICE\\";

#define QUEUE_OF(cbdq) CONTAINING_RECORD((cbdq), QUEUE_INSTANCE, cbdq)

/* The queue's routines: Filter Manager calls the first three under the acquire/release pair. */
static NTSTATUS QueueInsert(PFLT_CALLBACK_DATA_QUEUE cbdq, PFLT_CALLBACK_DATA data,
                            PVOID insert_context)
{
    (void)insert_context;
    InsertTailList(&QUEUE_OF(cbdq)->queue, &data->QueueLinks);
    return STATUS_SUCCESS;
}

static VOID QueueRemove(PFLT_CALLBACK_DATA_QUEUE cbdq, PFLT_CALLBACK_DATA data)
{
    (void)cbdq;
    RemoveEntryList(&data->QueueLinks);
}

static PFLT_CALLBACK_DATA QueuePeekNext(PFLT_CALLBACK_DATA_QUEUE cbdq, PFLT_CALLBACK_DATA data,
                                        PVOID peek_context)
{
    PLIST_ENTRY head = &QUEUE_OF(cbdq)->queue;
    PLIST_ENTRY next = data == NULL ? head->Flink : data->QueueLinks.Flink;

    (void)peek_context;
    return next == head ? NULL : CONTAINING_RECORD(next, FLT_CALLBACK_DATA, QueueLinks);
}

static VOID QueueAcquire(PFLT_CALLBACK_DATA_QUEUE cbdq, PKIRQL irql)
{
    (void)irql;
    if (!ExTryToAcquireFastMutex(&QUEUE_OF(cbdq)->lock)) {
        InterlockedIncrement(&g_contended);
        ExAcquireFastMutex(&QUEUE_OF(cbdq)->lock);
    }
}

static VOID QueueRelease(PFLT_CALLBACK_DATA_QUEUE cbdq, KIRQL irql)
{
    (void)irql;
    ExReleaseFastMutex(&QUEUE_OF(cbdq)->lock);
}

/* Checks the entry's name once more in upper case and logs the first one. */
static VOID CheckName(PQUEUE_ENTRY entry)
{
    UNICODE_STRING upper;
    UNICODE_STRING prefix;
    UNICODE_STRING label;
    PWCHAR label_buffer;
    ANSI_STRING ansi;

    /* A short label from the labels' lookaside list (none when it cannot be had): the name
     * rarely fits, and STATUS_BUFFER_TOO_SMALL leaves the label as it was (the marker alone),
     * which is all the log needs. */
    label_buffer = ExAllocateFromLookasideListEx(&g_labels);
    label.Buffer = label_buffer;
    label.Length = 0;
    label.MaximumLength = label_buffer == NULL ? 0 : LABEL_BYTES;
    if (label_buffer != NULL &&
        (!NT_SUCCESS(RtlAppendUnicodeToString(&label, g_marker)) ||
         (RtlAppendUnicodeStringToString(&label, &entry->name) != STATUS_BUFFER_TOO_SMALL &&
          entry->name.Length > LABEL_BYTES))) {
        InterlockedIncrement(&g_mismatches);
    }

    if (!NT_SUCCESS(RtlUpcaseUnicodeString(&upper, &entry->name, TRUE))) {
        if (label_buffer != NULL) {
            ExFreeToLookasideListEx(&g_labels, label_buffer);
        }
        return;
    }
    RtlInitUnicodeString(&prefix, g_volume_prefix);
    if (!RtlEqualUnicodeString(&upper, &entry->name, TRUE) ||
        RtlCompareUnicodeString(&upper, &entry->name, TRUE) != 0 ||
        !RtlPrefixUnicodeString(&prefix, &upper, FALSE) ||
        !FsRtlIsNameInExpression(&g_expression, &upper, FALSE, NULL)) {
        InterlockedIncrement(&g_mismatches);
    }
    if (InterlockedIncrement(&g_logged) == 1 &&
        NT_SUCCESS(RtlUnicodeStringToAnsiString(&ansi, &upper, TRUE))) {
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL, "queue: first pended write: %Z%wZ\n",
                   &ansi, &label);
        RtlFreeAnsiString(&ansi);
    }
    RtlFreeUnicodeString(&upper);
    if (label_buffer != NULL) {
        ExFreeToLookasideListEx(&g_labels, label_buffer);
    }
}

/* Returns the done entries to the lookaside list. */
static VOID RecycleDone(VOID)
{
    PSLIST_ENTRY next;
    PSLIST_ENTRY entry;
    LONG depth = ExQueryDepthSList(&g_done);

    if (depth > g_deepest) {
        InterlockedExchange(&g_deepest, depth);
    }
    entry = ExpInterlockedFlushSList(&g_done);
    while (entry != NULL) {
        next = entry->Next;
#ifdef TWIN_WRONG_LOOKASIDE
        ExFreeToNPagedLookasideList(&g_spares, entry);
#else
        ExFreeToNPagedLookasideList(&g_entries, entry);
#endif
        InterlockedIncrement(&g_recycled);
        entry = next;
    }
}

static VOID QueueCompleteCanceled(PFLT_CALLBACK_DATA_QUEUE cbdq, PFLT_CALLBACK_DATA data)
{
    PQUEUE_ENTRY entry = data->QueueContext[0];

    (void)cbdq;
    InterlockedIncrement(&g_canceled);
#ifndef TWIN_CANCELED_NOT_COMPLETED
    data->IoStatus.Status = STATUS_CANCELLED;
    data->IoStatus.Information = 0;
    FltCompletePendedPreOperation(data, FLT_PREOP_COMPLETE, NULL);
#endif
    ExpInterlockedPushEntrySList(&g_done, &entry->done);
}

static VOID Worker(PFLT_GENERIC_WORKITEM item, PVOID flt_object, PVOID context)
{
    PQUEUE_INSTANCE instance = context;
    PFLT_CALLBACK_DATA data;
    PQUEUE_ENTRY entry;

    (void)flt_object;
    while ((data = FltCbdqRemoveNextIo(&instance->cbdq, NULL)) != NULL) {
        entry = data->QueueContext[0];
        CheckName(entry);
#ifdef TWIN_FREE_NOT_RTL_STRING
        RtlFreeUnicodeString(&entry->name);
#endif
        FltCompletePendedPreOperation(data, FLT_PREOP_SUCCESS_NO_CALLBACK, NULL);
        InterlockedIncrement(&g_completed);
        ExpInterlockedPushEntrySList(&g_done, &entry->done);
    }
    RecycleDone();
    FltReleaseContext(instance);
    FltFreeGenericWorkItem(item);
    InterlockedDecrement(&g_outstanding);
}

/* Whether the write's file is one to pend: its normalized name matches the expression. Sets
 * `entry`'s name on a match. */
static BOOLEAN Matches(PFLT_CALLBACK_DATA data, PQUEUE_ENTRY entry)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;
    BOOLEAN matches;

    if (!NT_SUCCESS(FltGetFileNameInformation(
            data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &name))) {
        return FALSE;
    }
    matches = FsRtlIsNameInExpression(&g_expression, &name->Name, TRUE, NULL);
    if (matches) {
        /* Cut to the entry's buffer when longer (the worker then counts a mismatch). */
        entry->name.Buffer = entry->buffer;
        entry->name.Length = 0;
        entry->name.MaximumLength = sizeof(entry->buffer);
        RtlCopyUnicodeString(&entry->name, &name->Name);
    }
    FltReleaseFileNameInformation(name);
    return matches;
}

/* The cancel routine of a posted write: completes it as canceled. The deferred worker still
 * runs and returns the entry. */
static VOID CanceledPosted(PFLT_CALLBACK_DATA data)
{
    InterlockedIncrement(&g_canceled);
    data->IoStatus.Status = STATUS_CANCELLED;
    data->IoStatus.Information = 0;
    FltCompletePendedPreOperation(data, FLT_PREOP_COMPLETE, NULL);
}

static VOID PostedWorker(PFLT_DEFERRED_IO_WORKITEM item, PFLT_CALLBACK_DATA data, PVOID context)
{
    PQUEUE_ENTRY entry = context;

#ifdef TWIN_CANCEL_NOT_CLEARED
    if (TRUE) {
#else
    /* STATUS_CANCELLED: the cancel routine has run or is running, and completes the write. */
    if (FltClearCancelCompletion(data) == STATUS_SUCCESS) {
#endif
        CheckName(entry);
        FltCompletePendedPreOperation(data, FLT_PREOP_SUCCESS_NO_CALLBACK, NULL);
        InterlockedIncrement(&g_completed);
    }
    ExpInterlockedPushEntrySList(&g_done, &entry->done);
    RecycleDone();
    FltFreeDeferredIoWorkItem(item);
    InterlockedDecrement(&g_outstanding);
}

/* Posts `data` to a deferred-I/O work item with a cancel routine; FALSE when it cannot be
 * posted (then nothing is kept). */
static BOOLEAN Post(PFLT_CALLBACK_DATA data, PQUEUE_ENTRY entry)
{
    PFLT_DEFERRED_IO_WORKITEM item = FltAllocateDeferredIoWorkItem();

    if (item == NULL) {
        return FALSE;
    }
    if (!NT_SUCCESS(FltSetCancelCompletion(data, CanceledPosted))) {
        FltFreeDeferredIoWorkItem(item);
        return FALSE;
    }
    if (!NT_SUCCESS(FltQueueDeferredIoWorkItem(item, data, PostedWorker, DelayedWorkQueue,
                                               entry))) {
        FltFreeDeferredIoWorkItem(item);
        if (FltClearCancelCompletion(data) == STATUS_SUCCESS) {
            return FALSE;
        }
        /* Canceled meanwhile: the cancel routine completes it; the entry is done. */
        ExpInterlockedPushEntrySList(&g_done, &entry->done);
        InterlockedDecrement(&g_outstanding);
    }
    InterlockedIncrement(&g_posted);
    return TRUE;
}

static NTSTATUS Insert(PQUEUE_INSTANCE instance, PFLT_CALLBACK_DATA data, PQUEUE_ENTRY entry)
{
#ifdef TWIN_FAST_MUTEX_AT_DISPATCH
    KIRQL old_irql = KeAcquireSpinLockRaiseToDpc(&g_spin);
    NTSTATUS status = FltCbdqInsertIo(&instance->cbdq, data, &entry->io_context, NULL);
    KeReleaseSpinLock(&g_spin, old_irql);
    return status;
#else
    return FltCbdqInsertIo(&instance->cbdq, data, &entry->io_context, NULL);
#endif
}

/* Pends `data` into `instance`'s queue with `entry`; FALSE (nothing pended, nothing kept) when
 * no work item can be had or queued. The instance context's reference goes to the worker. */
static BOOLEAN Pend(PFLT_INSTANCE flt_instance, PQUEUE_INSTANCE instance, PFLT_CALLBACK_DATA data,
                    PQUEUE_ENTRY entry)
{
    PFLT_GENERIC_WORKITEM item = FltAllocateGenericWorkItem();

    if (item == NULL) {
        return FALSE;
    }
    data->QueueContext[0] = entry;
    if (!NT_SUCCESS(Insert(instance, data, entry))) {
        FltFreeGenericWorkItem(item);
        return FALSE;
    }
    if (!NT_SUCCESS(FltQueueGenericWorkItem(item, flt_instance, Worker, DelayedWorkQueue,
                                            instance))) {
        FltFreeGenericWorkItem(item);
        if (FltCbdqRemoveIo(&instance->cbdq, &entry->io_context) != NULL) {
            return FALSE;
        }
        /* Canceled meanwhile: the cancel completes it, and the context reference is ours. */
        FltReleaseContext(instance);
        InterlockedDecrement(&g_outstanding);
    }
    return TRUE;
}

static FLT_PREOP_CALLBACK_STATUS PreWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    PQUEUE_INSTANCE instance = NULL;
    PQUEUE_ENTRY entry;

    *completion_context = NULL;
    if ((data->Flags & QUEUE_IRP_OPERATION) == 0 || (data->Iopb->IrpFlags & IRP_PAGING_IO) != 0) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    /* Counted before the unloading test: unload waits for every pend that got past it. */
    InterlockedIncrement(&g_outstanding);
    if (g_unloading || !NT_SUCCESS(FltGetInstanceContext(objects->Instance,
                                                         (PFLT_CONTEXT *)&instance))) {
        InterlockedDecrement(&g_outstanding);
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    entry = ExAllocateFromNPagedLookasideList(&g_entries);
    if (entry != NULL && Matches(data, entry)) {
        BOOLEAN pended;

        if (FsRtlIsNameInExpression(&g_posted_expression, &entry->name, TRUE, NULL)) {
            /* The worker does not need the instance context. */
            FltReleaseContext(instance);
            instance = NULL;
            pended = Post(data, entry);
        } else {
            pended = Pend(objects->Instance, instance, data, entry);
        }
        if (pended) {
            InterlockedIncrement(&g_pended);
            return FLT_PREOP_PENDING;
        }
    }
    if (entry != NULL) {
        ExFreeToNPagedLookasideList(&g_entries, entry);
    }
    if (instance != NULL) {
        FltReleaseContext(instance);
    }
    InterlockedDecrement(&g_outstanding);
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

static NTSTATUS InstanceSetup(PCFLT_RELATED_OBJECTS objects, FLT_INSTANCE_SETUP_FLAGS flags,
                              DEVICE_TYPE device_type, FLT_FILESYSTEM_TYPE fs_type)
{
    PQUEUE_INSTANCE instance = NULL;
    NTSTATUS status;

    (void)flags;
    (void)device_type;
    (void)fs_type;
    status = FltAllocateContext(objects->Filter, FLT_INSTANCE_CONTEXT, sizeof(QUEUE_INSTANCE),
                                NonPagedPoolNx, (PFLT_CONTEXT *)&instance);
    if (!NT_SUCCESS(status)) {
        return STATUS_FLT_DO_NOT_ATTACH;
    }
    InitializeListHead(&instance->queue);
    ExInitializeFastMutex(&instance->lock);
    status = FltCbdqInitialize(objects->Instance, &instance->cbdq, QueueInsert, QueueRemove,
                               QueuePeekNext, QueueAcquire, QueueRelease, QueueCompleteCanceled);
    if (NT_SUCCESS(status)) {
        /* No write goes in before the context is attached. */
        FltCbdqDisable(&instance->cbdq);
        status = FltSetInstanceContext(objects->Instance, FLT_SET_CONTEXT_KEEP_IF_EXISTS, instance,
                                       NULL);
        if (NT_SUCCESS(status)) {
            FltCbdqEnable(&instance->cbdq);
        }
    }
    FltReleaseContext(instance);
    return NT_SUCCESS(status) ? STATUS_SUCCESS : STATUS_FLT_DO_NOT_ATTACH;
}

/* No more writes into a queue whose instance is going away (those queued are still completed
 * by their workers). */
static VOID InstanceTeardownStart(PCFLT_RELATED_OBJECTS objects, FLT_INSTANCE_TEARDOWN_FLAGS flags)
{
    PQUEUE_INSTANCE instance = NULL;

    (void)flags;
    if (NT_SUCCESS(FltGetInstanceContext(objects->Instance, (PFLT_CONTEXT *)&instance))) {
        FltCbdqDisable(&instance->cbdq);
        FltReleaseContext(instance);
    }
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    LARGE_INTEGER interval;

    (void)flags;
    /* No new pend after this; the work items already queued hold instance contexts, which
     * must be released before the filter unregisters. */
    InterlockedExchange(&g_unloading, 1);
    interval.QuadPart = -10 * 1000; /* 1 ms, relative */
    while (g_outstanding != 0) {
        KeDelayExecutionThread(KernelMode, FALSE, &interval);
    }
    FltUnregisterFilter(g_filter);
    if (RtlFirstEntrySList(&g_done) != NULL) {
        RecycleDone();
    }
#ifndef TWIN_LOOKASIDE_NOT_DELETED
    ExDeleteNPagedLookasideList(&g_entries);
#endif
    ExDeleteLookasideListEx(&g_labels);
#ifdef TWIN_WRONG_LOOKASIDE
    ExDeleteNPagedLookasideList(&g_spares);
#endif
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
               "queue: %ld pended (%ld posted), %ld completed, %ld canceled, %ld recycled, "
               "%ld mismatch(es)\n",
               g_pended, g_posted, g_completed, g_canceled, g_recycled, g_mismatches);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_CONTEXT_REGISTRATION g_contexts[] = {
    {.ContextType = FLT_INSTANCE_CONTEXT, .Size = sizeof(QUEUE_INSTANCE), .PoolTag = INSTANCE_TAG},
    {.ContextType = FLT_CONTEXT_END},
};

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_WRITE, 0, PreWrite, NULL, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .ContextRegistration = g_contexts,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
    .InstanceSetupCallback = InstanceSetup,
    .InstanceTeardownStartCallback = InstanceTeardownStart,
};

/* The filter's own setup, run by DriverEntry inside the entry gate (entry_gate.h). */
static NTSTATUS Setup(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    NTSTATUS status;

    (void)registry_path;
    RtlInitUnicodeString(&g_expression, g_expression_text);
    RtlInitUnicodeString(&g_posted_expression, g_posted_text);
    ExInitializeNPagedLookasideList(&g_entries, NULL, NULL, POOL_NX_ALLOCATION,
                                    sizeof(QUEUE_ENTRY), QUEUE_TAG, 0);
#ifdef TWIN_WRONG_LOOKASIDE
    ExInitializeNPagedLookasideList(&g_spares, NULL, NULL, POOL_NX_ALLOCATION,
                                    2 * sizeof(QUEUE_ENTRY), SPARE_TAG, 0);
#endif
    InitializeSListHead(&g_done);
    status = ExInitializeLookasideListEx(&g_labels, NULL, NULL, NonPagedPoolNx, 0, LABEL_BYTES,
                                         LABEL_TAG, 0);
    if (!NT_SUCCESS(status)) {
        ExDeleteNPagedLookasideList(&g_entries);
#ifdef TWIN_WRONG_LOOKASIDE
        ExDeleteNPagedLookasideList(&g_spares);
#endif
        return status;
    }
#ifdef TWIN_FAST_MUTEX_AT_DISPATCH
    KeInitializeSpinLock(&g_spin);
#endif
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (NT_SUCCESS(status)) {
        status = FltStartFiltering(g_filter);
        if (!NT_SUCCESS(status)) {
            FltUnregisterFilter(g_filter);
        }
    }
    if (!NT_SUCCESS(status)) {
        ExDeleteLookasideListEx(&g_labels);
        ExDeleteNPagedLookasideList(&g_entries);
#ifdef TWIN_WRONG_LOOKASIDE
        ExDeleteNPagedLookasideList(&g_spares);
#endif
    }
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    return EntryGateRun(driver, registry_path, Setup);
}
