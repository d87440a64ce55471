/* tracker.c: a delete/rename tracker in C, the kind of minifilter backup and audit products
 * carry: it watches IRP_MJ_SET_INFORMATION for renames and deletes. Written to prove
 * kernel-sim's set-information parameters and destination names on a driver that is not Vigil.
 *
 * - The pre set-information callback reads the class and buffer from the callback data's
 *   SetFileInformation parameters. For a rename (FileRenameInformation or its Ex form) it asks
 *   for the normalized destination name (FltGetDestinationFileNameInformation, PASSIVE_LEVEL,
 *   where renames arrive) and hands it to the post callback as the completion context; for a
 *   delete (FileDispositionInformation with DeleteFile, or the Ex form with
 *   FILE_DISPOSITION_DELETE) it only counts.
 * - The post callback counts renames that succeeded, traces them, and releases the
 *   destination name on every path, draining included: a completion context is the post's to
 *   free whatever happens to the operation.
 * - The counters sit behind an executive resource (ERESOURCE): the pre reads whether tracking
 *   is on under shared access, the post counts under exclusive access, each inside a critical
 *   region (normal kernel APCs disabled from the acquire to the release, as the resource
 *   routines require). DriverEntry initializes it first; FilterUnload deletes it once
 *   FltUnregisterFilter has returned and no callback can run.
 * - Transacted deletes and renames (FltObjects->Transaction set: only NTFS takes transacted
 *   opens) are also counted per transaction: the pre set-information finds the transaction's
 *   context (FltGetTransactionContext) or sets a new one (FltSetTransactionContext,
 *   KEEP_IF_EXISTS) and enlists in the transaction for its commit and rollback
 *   (FltEnlistInTransaction), releasing its own reference either way. The
 *   TransactionNotificationCallback folds a committed transaction's counts into the totals,
 *   counts rollbacks, and deletes the context (FltDeleteTransactionContext, releasing what
 *   OldContext returns) rather than wait for the transaction object to go. A transacted rename
 *   whose destination cannot be named is not let through untracked: the tracker rolls the
 *   transaction back (FltRollbackEnlistment). Where transactions are not supported the
 *   operations arrive untransacted and are counted as the others.
 *
 * Broken twin, selected at build time:
 * - TWIN_DESTINATION_LEAK: the post callback returns straight after tracing a successful
 *   rename, before releasing the destination name.
 * - TWIN_LOCK_WITHOUT_CRITICAL_REGION: the post callback takes the resource exclusive without
 *   entering a critical region (a suspension could stop it while it holds the resource).
 * - TWIN_TRANSACTION_CONTEXT_LEAK: the pre set-information never releases the transaction
 *   context it found or set.
 *
 * Runs in the kernel: set-information callbacks at PASSIVE_LEVEL (posts of renames too); the
 * transaction notification at PASSIVE_LEVEL. */
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

static PFLT_FILTER g_filter;
/* Guards the three counters below (8-byte aligned, in the image's nonpaged data). */
static ERESOURCE g_lock;
static BOOLEAN g_tracking = TRUE;
static LONG g_renames;
static volatile LONG g_deletes;
/* Transactions: committed ones' deletes and renames, commits and rollbacks seen. */
static volatile LONG g_committed_changes;
static volatile LONG g_commits;
static volatile LONG g_rollbacks;

/* Pool tag 'Ctrx'. */
#define TRANSACTION_CONTEXT_TAG 0x78727443u

typedef struct _TRANSACTION_CONTEXT {
    volatile LONG Changes;
} TRANSACTION_CONTEXT, *PTRANSACTION_CONTEXT;

/* Counts a transacted delete or rename in its transaction's context, setting one (and
 * enlisting for the commit and rollback) on the first. Fail open: an untracked change. */
static VOID CountTransacted(PCFLT_RELATED_OBJECTS objects)
{
    PTRANSACTION_CONTEXT context = NULL;
    NTSTATUS status =
        FltGetTransactionContext(objects->Instance, objects->Transaction, (PFLT_CONTEXT *)&context);

    if (status == STATUS_NOT_FOUND) {
        PTRANSACTION_CONTEXT existing = NULL;
        if (!NT_SUCCESS(FltAllocateContext(g_filter, FLT_TRANSACTION_CONTEXT,
                                           sizeof(TRANSACTION_CONTEXT), NonPagedPoolNx,
                                           (PFLT_CONTEXT *)&context))) {
            return;
        }
        context->Changes = 0;
        status = FltSetTransactionContext(objects->Instance, objects->Transaction,
                                          FLT_SET_CONTEXT_KEEP_IF_EXISTS, context,
                                          (PFLT_CONTEXT *)&existing);
        if (NT_SUCCESS(status)) {
            /* STATUS_FLT_ALREADY_ENLISTED cannot happen for a context just set; any failure
             * leaves the context to go with the transaction. */
            (void)FltEnlistInTransaction(objects->Instance, objects->Transaction, context,
                                         TRANSACTION_NOTIFY_COMMIT | TRANSACTION_NOTIFY_ROLLBACK);
        } else {
            FltReleaseContext(context);
            context = existing; /* NULL unless STATUS_FLT_CONTEXT_ALREADY_DEFINED */
        }
    } else if (!NT_SUCCESS(status)) {
        return;
    }
    if (context == NULL) {
        return;
    }
    InterlockedIncrement(&context->Changes);
#ifndef TWIN_TRANSACTION_CONTEXT_LEAK
    FltReleaseContext(context);
#endif
}

/* Commit: the transaction's changes count; rollback: they never happened. Either way the
 * filter is done with the transaction and deletes its context. */
static NTSTATUS TransactionNotify(PCFLT_RELATED_OBJECTS objects, PFLT_CONTEXT transaction_context,
                                  ULONG notification)
{
    PTRANSACTION_CONTEXT context = transaction_context;
    PFLT_CONTEXT old = NULL;

    if (notification & TRANSACTION_NOTIFY_COMMIT) {
        InterlockedExchangeAdd(&g_committed_changes, context->Changes);
        InterlockedIncrement(&g_commits);
    } else if (notification & TRANSACTION_NOTIFY_ROLLBACK) {
        InterlockedIncrement(&g_rollbacks);
    }
    if (NT_SUCCESS(FltDeleteTransactionContext(objects->Instance, objects->Transaction, &old))) {
        FltReleaseContext(old);
    }
    return STATUS_SUCCESS;
}

/* Whether tracking is on, read under shared access. */
static BOOLEAN Tracking(void)
{
    BOOLEAN on;

    KeEnterCriticalRegion();
    ExAcquireResourceSharedLite(&g_lock, TRUE);
    on = g_tracking;
    ExReleaseResourceLite(&g_lock);
    KeLeaveCriticalRegion();
    return on;
}

static BOOLEAN IsRename(FILE_INFORMATION_CLASS info_class)
{
    return info_class == FileRenameInformation || info_class == FileRenameInformationExClass;
}

static FLT_PREOP_CALLBACK_STATUS PreSetInformation(PFLT_CALLBACK_DATA data,
                                                   PCFLT_RELATED_OBJECTS objects,
                                                   PVOID *completion_context)
{
    FILE_INFORMATION_CLASS info_class =
        data->Iopb->Parameters.SetFileInformation.FileInformationClass;
    PVOID buffer = data->Iopb->Parameters.SetFileInformation.InfoBuffer;
    PFLT_FILE_NAME_INFORMATION destination = NULL;

    *completion_context = NULL;
    if (!Tracking()) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if (objects->Transaction != NULL &&
        (IsRename(info_class) || info_class == FileDispositionInformation ||
         info_class == FileDispositionInformationExClass)) {
        CountTransacted(objects);
    }
    if (info_class == FileDispositionInformation) {
        if (((PFILE_DISPOSITION_INFORMATION)buffer)->DoDeleteFile) {
            InterlockedIncrement(&g_deletes);
        }
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if (info_class == FileDispositionInformationExClass) {
        if (*(PULONG)buffer & FILE_DISPOSITION_DELETE) {
            InterlockedIncrement(&g_deletes);
        }
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    if (!IsRename(info_class)) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    {
        PFILE_RENAME_INFORMATION rename = buffer;
        if (!NT_SUCCESS(FltGetDestinationFileNameInformation(
                objects->Instance, objects->FileObject, rename->RootDirectory, rename->FileName,
                rename->FileNameLength, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT,
                &destination))) {
            /* Fail open: the rename goes ahead untracked. Inside a transaction an untracked
             * change must not commit: the tracker rolls its enlistment back (nothing to do if
             * it never enlisted). */
            if (objects->Transaction != NULL) {
                (void)FltRollbackEnlistment(objects->Instance, objects->Transaction, NULL);
            }
            return FLT_PREOP_SUCCESS_NO_CALLBACK;
        }
    }
    *completion_context = destination;
    return FLT_PREOP_SUCCESS_WITH_CALLBACK;
}

static FLT_POSTOP_CALLBACK_STATUS PostSetInformation(PFLT_CALLBACK_DATA data,
                                                     PCFLT_RELATED_OBJECTS objects,
                                                     PVOID completion_context,
                                                     FLT_POST_OPERATION_FLAGS flags)
{
    PFLT_FILE_NAME_INFORMATION destination = completion_context;

    (void)objects;
    if (!(flags & FLTFL_POST_OPERATION_DRAINING) && NT_SUCCESS(data->IoStatus.Status)) {
#ifndef TWIN_LOCK_WITHOUT_CRITICAL_REGION
        KeEnterCriticalRegion();
#endif
        ExAcquireResourceExclusiveLite(&g_lock, TRUE);
        g_renames++;
        ExReleaseResourceLite(&g_lock);
#ifndef TWIN_LOCK_WITHOUT_CRITICAL_REGION
        KeLeaveCriticalRegion();
#endif
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL, "tracker: renamed to %wZ\n",
                   &destination->Name);
#ifdef TWIN_DESTINATION_LEAK
        return FLT_POSTOP_FINISHED_PROCESSING;
#endif
    }
    FltReleaseFileNameInformation(destination);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    FltUnregisterFilter(g_filter);
    /* No callback runs any more: nothing can own the resource. */
    ExDeleteResourceLite(&g_lock);
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
               "tracker: %ld commit(s) with %ld change(s), %ld rollback(s)\n", g_commits,
               g_committed_changes, g_rollbacks);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_SET_INFORMATION, 0, PreSetInformation, PostSetInformation, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_CONTEXT_REGISTRATION g_contexts[] = {
    {.ContextType = FLT_TRANSACTION_CONTEXT,
     .Size = sizeof(TRANSACTION_CONTEXT),
     .PoolTag = TRANSACTION_CONTEXT_TAG},
    {.ContextType = FLT_CONTEXT_END},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .ContextRegistration = g_contexts,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
    .TransactionNotificationCallback = TransactionNotify,
};

/* The filter's own setup, run by DriverEntry inside the entry gate (entry_gate.h). */
static NTSTATUS Setup(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    NTSTATUS status;

    (void)registry_path;
    /* Set up before registering: callbacks may run as soon as filtering starts. */
    ExInitializeResourceLite(&g_lock);
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (!NT_SUCCESS(status)) {
        ExDeleteResourceLite(&g_lock);
        return status;
    }
    status = FltStartFiltering(g_filter);
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_filter);
        ExDeleteResourceLite(&g_lock);
    }
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    return EntryGateRun(driver, registry_path, Setup);
}
