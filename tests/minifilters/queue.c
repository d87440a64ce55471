/* queue.c: a minifilter in C that pends writes to matching files into its own queue and
 * completes them from a worker, the shape of filters that hold I/O back (replication, delayed
 * scanning, throttling). Written to prove kernel-sim's Rtl string routines,
 * FsRtlIsNameInExpression, lookaside lists, SLists and fast mutexes on a driver that is not
 * Vigil.
 *
 * - DriverEntry builds the expression the filter pends for with RtlInitUnicodeString:
 *   "*\FILE<"TXT" (any directory, FILE, anything up to the extension's period, which DOS_DOT
 *   takes, then TXT), upper case because FsRtlIsNameInExpression upcases only the name. It
 *   initializes a nonpaged lookaside list for the queue entries, a fast mutex over the queue and
 *   an SList of completed entries.
 * - Pre-write takes the file's normalized name; when it matches (IgnoreCase), an entry from the
 *   lookaside list records the callback data and a copy of the name (RtlCopyUnicodeString
 *   into the entry's buffer); the entry goes on the queue
 *   under the fast mutex, a generic work item is queued, and the write is pended. Anything that
 *   cannot be had (a name, an entry, a work item, paging I/O, which must not be posted) lets the
 *   write go on unpended: fail open, never pend what nothing will complete.
 * - The worker takes entries off the queue under the fast mutex, upcases the name with
 *   RtlUpcaseUnicodeString (allocating) to check it against the expression again, compares it
 *   with the original (RtlEqualUnicodeString, RtlCompareUnicodeString, RtlPrefixUnicodeString),
 *   builds a short label (RtlAppendUnicodeToString, then RtlAppendUnicodeStringToString of the
 *   name, which does not fit: STATUS_BUFFER_TOO_SMALL leaves the label unchanged), converts the
 *   name to ANSI for the first log line, frees what the Rtl routines allocated, completes
 *   the write with FltCompletePendedPreOperation and pushes the entry onto the done SList; then
 *   flushes the SList and returns its entries to the lookaside list (counting them with
 *   ExQueryDepthSList).
 * - Unload unregisters (after which no pre-write queues more), waits for the outstanding work
 *   items, then deletes the lookaside list.
 *
 * Broken twins, selected at build time:
 * - TWIN_LOOKASIDE_NOT_DELETED: unload returns without ExDeleteNPagedLookasideList.
 * - TWIN_FAST_MUTEX_AT_DISPATCH: pre-write takes the queue's fast mutex while holding a spin lock
 *   (at DISPATCH_LEVEL; ExAcquireFastMutex needs <= APC_LEVEL).
 * - TWIN_EXPRESSION_NOT_UPCASED: the expression is written in lower case and matched with
 *   IgnoreCase TRUE (it never matches: nothing is pended).
 * - TWIN_FREE_NOT_RTL_STRING: the worker releases the entry's own name (a buffer inside the
 *   entry) with RtlFreeUnicodeString, which frees only what an Rtl routine allocated.
 * - TWIN_WRONG_LOOKASIDE: the worker returns an entry to a second list of larger blocks.
 *
 * Runs in the kernel: pre-write and the worker at PASSIVE_LEVEL (APC_LEVEL under the mutex). */
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

#define QUEUE_TAG 'quqC'
/* FLTFL_CALLBACK_DATA_IRP_OPERATION (the FLT_CALLBACK_DATA page's Flags), missing from Wine. */
#define QUEUE_IRP_OPERATION 0x00000001
#define SPARE_TAG 'qsqC'
#define NAME_CHARS 96

/* One pended write. The SLIST_ENTRY comes first: entries sit on the done SList, and a
 * lookaside list's own SList, through it. */
typedef struct DECLSPEC_ALIGN(16) _QUEUE_ENTRY {
    SLIST_ENTRY done;
    LIST_ENTRY link;
    PFLT_CALLBACK_DATA data;
    UNICODE_STRING name;
    WCHAR buffer[NAME_CHARS];
} QUEUE_ENTRY, *PQUEUE_ENTRY;

static PFLT_FILTER g_filter;
static UNICODE_STRING g_expression;
static DECLSPEC_ALIGN(64) NPAGED_LOOKASIDE_LIST g_entries;
#ifdef TWIN_WRONG_LOOKASIDE
static DECLSPEC_ALIGN(64) NPAGED_LOOKASIDE_LIST g_spares;
#endif
static FAST_MUTEX g_queue_lock;
static LIST_ENTRY g_queue;
static SLIST_HEADER g_done;
static volatile LONG g_outstanding;
static volatile LONG g_unloading;
static volatile LONG g_pended;
static volatile LONG g_completed;
static volatile LONG g_recycled;
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
static const WCHAR g_marker[] = L"pended: ";
static const WCHAR g_volume_prefix[] = L"\\DEVICE\\";

/* Checks the entry's name once more in upper case and logs the first one. */
static VOID CheckName(PQUEUE_ENTRY entry)
{
    UNICODE_STRING upper;
    UNICODE_STRING prefix;
    UNICODE_STRING label;
    WCHAR label_buffer[16];
    ANSI_STRING ansi;

    /* A short label: the name rarely fits, and STATUS_BUFFER_TOO_SMALL leaves the label as it
     * was (the marker alone), which is all the log needs. */
    label.Buffer = label_buffer;
    label.Length = 0;
    label.MaximumLength = sizeof(label_buffer);
    if (!NT_SUCCESS(RtlAppendUnicodeToString(&label, g_marker)) ||
        (RtlAppendUnicodeStringToString(&label, &entry->name) != STATUS_BUFFER_TOO_SMALL &&
         entry->name.Length > sizeof(label_buffer))) {
        InterlockedIncrement(&g_mismatches);
    }

    if (!NT_SUCCESS(RtlUpcaseUnicodeString(&upper, &entry->name, TRUE))) {
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
}

/* Returns the done entries to the lookaside list. */
static VOID RecycleDone(VOID)
{
    PSLIST_ENTRY next;
    PSLIST_ENTRY entry;
    USHORT depth = ExQueryDepthSList(&g_done);

    entry = ExpInterlockedFlushSList(&g_done);
    InterlockedExchangeAdd(&g_recycled, depth);
    while (entry != NULL) {
        next = entry->Next;
#ifdef TWIN_WRONG_LOOKASIDE
        ExFreeToNPagedLookasideList(&g_spares, entry);
#else
        ExFreeToNPagedLookasideList(&g_entries, entry);
#endif
        entry = next;
    }
}

static VOID Worker(PFLT_GENERIC_WORKITEM item, PVOID flt_object, PVOID context)
{
    PQUEUE_ENTRY entry;
    PLIST_ENTRY link;

    (void)flt_object;
    (void)context;
    for (;;) {
        ExAcquireFastMutex(&g_queue_lock);
        link = IsListEmpty(&g_queue) ? NULL : RemoveHeadList(&g_queue);
        ExReleaseFastMutex(&g_queue_lock);
        if (link == NULL) {
            break;
        }
        entry = CONTAINING_RECORD(link, QUEUE_ENTRY, link);
        CheckName(entry);
#ifdef TWIN_FREE_NOT_RTL_STRING
        RtlFreeUnicodeString(&entry->name);
#endif
        FltCompletePendedPreOperation(entry->data, FLT_PREOP_SUCCESS_NO_CALLBACK, NULL);
        InterlockedIncrement(&g_completed);
        ExpInterlockedPushEntrySList(&g_done, &entry->done);
    }
    RecycleDone();
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

static FLT_PREOP_CALLBACK_STATUS PreWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    PQUEUE_ENTRY entry;
    PFLT_GENERIC_WORKITEM item;
#ifdef TWIN_FAST_MUTEX_AT_DISPATCH
    KIRQL old_irql;
#endif

    *completion_context = NULL;
    if (g_unloading || (data->Flags & QUEUE_IRP_OPERATION) == 0 ||
        (data->Iopb->IrpFlags & IRP_PAGING_IO) != 0) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    entry = ExAllocateFromNPagedLookasideList(&g_entries);
    if (entry == NULL) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if (!Matches(data, entry)) {
        ExFreeToNPagedLookasideList(&g_entries, entry);
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    item = FltAllocateGenericWorkItem();
    if (item == NULL) {
        ExFreeToNPagedLookasideList(&g_entries, entry);
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    entry->data = data;
#ifdef TWIN_FAST_MUTEX_AT_DISPATCH
    old_irql = KeAcquireSpinLockRaiseToDpc(&g_spin);
    ExAcquireFastMutex(&g_queue_lock);
    InsertTailList(&g_queue, &entry->link);
    ExReleaseFastMutex(&g_queue_lock);
    KeReleaseSpinLock(&g_spin, old_irql);
#else
    ExAcquireFastMutex(&g_queue_lock);
    InsertTailList(&g_queue, &entry->link);
    ExReleaseFastMutex(&g_queue_lock);
#endif
    InterlockedIncrement(&g_outstanding);
    if (!NT_SUCCESS(FltQueueGenericWorkItem(item, objects->Instance, Worker, DelayedWorkQueue,
                                            NULL))) {
        /* Nothing will run the queue for this entry: take it back if it is still there. */
        BOOLEAN taken = FALSE;
        PLIST_ENTRY link;

        InterlockedDecrement(&g_outstanding);
        FltFreeGenericWorkItem(item);
        ExAcquireFastMutex(&g_queue_lock);
        for (link = g_queue.Flink; link != &g_queue; link = link->Flink) {
            if (link == &entry->link) {
                RemoveEntryList(link);
                taken = TRUE;
                break;
            }
        }
        ExReleaseFastMutex(&g_queue_lock);
        if (taken) {
            ExFreeToNPagedLookasideList(&g_entries, entry);
            return FLT_PREOP_SUCCESS_NO_CALLBACK;
        }
        /* A worker already took it and will complete it. */
    }
    InterlockedIncrement(&g_pended);
    return FLT_PREOP_PENDING;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    LARGE_INTEGER interval;

    (void)flags;
    InterlockedExchange(&g_unloading, 1);
    /* Unregistering first: once it returns no pre-write runs, so nothing queues more work. */
    FltUnregisterFilter(g_filter);
    interval.QuadPart = -10 * 1000; /* 1 ms, relative */
    while (g_outstanding != 0) {
        KeDelayExecutionThread(KernelMode, FALSE, &interval);
    }
    if (RtlFirstEntrySList(&g_done) != NULL) {
        RecycleDone();
    }
#ifndef TWIN_LOOKASIDE_NOT_DELETED
    ExDeleteNPagedLookasideList(&g_entries);
#endif
#ifdef TWIN_WRONG_LOOKASIDE
    ExDeleteNPagedLookasideList(&g_spares);
#endif
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
               "queue: %ld pended, %ld completed, %ld recycled, %ld mismatch(es)\n", g_pended,
               g_completed, g_recycled, g_mismatches);
    return STATUS_SUCCESS;
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_WRITE, 0, PreWrite, NULL, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
};

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    NTSTATUS status;

    (void)registry_path;
    RtlInitUnicodeString(&g_expression, g_expression_text);
    ExInitializeNPagedLookasideList(&g_entries, NULL, NULL, POOL_NX_ALLOCATION,
                                    sizeof(QUEUE_ENTRY), QUEUE_TAG, 0);
#ifdef TWIN_WRONG_LOOKASIDE
    ExInitializeNPagedLookasideList(&g_spares, NULL, NULL, POOL_NX_ALLOCATION,
                                    2 * sizeof(QUEUE_ENTRY), SPARE_TAG, 0);
#endif
    ExInitializeFastMutex(&g_queue_lock);
    InitializeListHead(&g_queue);
    InitializeSListHead(&g_done);
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
        ExDeleteNPagedLookasideList(&g_entries);
#ifdef TWIN_WRONG_LOOKASIDE
        ExDeleteNPagedLookasideList(&g_spares);
#endif
    }
    return status;
}
