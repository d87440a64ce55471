/* namer.c: a minifilter in C that works with file names the way content and policy filters do:
 * it parses the names Filter Manager gives it, reads names outside an operation's callback
 * data, and is a name provider for the filters above it. Written to prove kernel-sim's
 * FltParseFileNameInformation, FltGetFileNameInformationUnsafe, FltCheckAndGrowNameControl and
 * name-provider callbacks on a driver that is not Vigil.
 *
 * - As a name provider it passes the file system's names through: GenerateFileNameCallback
 *   asks for the name below it (FltGetFileNameInformation with the callback data, or
 *   FltGetFileNameInformationUnsafe when there is none), grows Filter Manager's name buffer
 *   with FltCheckAndGrowNameControl and copies the name in, letting Filter Manager cache it.
 *   It generates opened names only: asked for a normalized name it answers
 *   STATUS_NOT_SUPPORTED, so Filter Manager asks for the opened name and normalizes it with
 *   NormalizeNameComponentExCallback, one component at a time; this provider opens files by
 *   their long names only, so each component comes back as it is. The normalization keeps a
 *   component count in a pool-allocated NormalizationContext, which
 *   NormalizeContextCleanupCallback frees. Each instance's teardown purges the names it
 *   provided from Filter Manager's cache (FltPurgeFileNameInformationCache).
 * - Pre-create parses the name the caller spelled (FileObject->FileName) with FltParseFileName
 *   to count opens of named streams, and takes the normalized name and passes it to post-create in the completion
 *   context; post-create asks FltGetTunneledName whether tunneling changed it, as the page of
 *   FltGetFileNameInformation requires of a filter that names files in pre-create.
 * - Post-create (PASSIVE_LEVEL) takes the opened file's normalized name, parses it with
 *   FltParseFileNameInformation and traces its final component and extension (%wZ, allowed at
 *   PASSIVE_LEVEL), and on a network volume its share, volume and parent directory, counting
 *   the files whose extension is "txt". A failed parse skips the trace: the components are
 *   only valid after a successful parse.
 * - Pre-cleanup asks for the name of the file object being cleaned up with
 *   FltGetFileNameInformationUnsafe (the file object is open, the cleanup has not completed,
 *   the operation is not paging I/O: none of the places its page forbids).
 * - Unload unregisters and traces its counts.
 *
 * Broken twins, selected at build time:
 * - TWIN_NAME_CONTROL_OVERRUN: GenerateFileNameCallback copies the name into Filter Manager's
 *   buffer without growing it first.
 * - TWIN_NAME_BUFFER_REPLACED: GenerateFileNameCallback puts the name in a pool buffer of its
 *   own and points the name control at it, which FltCheckAndGrowNameControl's page forbids.
 * - TWIN_UNSAFE_IN_PRE_CREATE: pre-create asks FltGetFileNameInformationUnsafe for the name of
 *   the file object being created, which is not open yet.
 * - TWIN_UNSAFE_AFTER_CLEANUP: pre-close asks FltGetFileNameInformationUnsafe for the name of
 *   a file object whose cleanup has completed, a place its page lists as able to deadlock.
 * - TWIN_TUNNELED_NAME_IN_PRE_CREATE: pre-create calls FltGetTunneledName, which its page
 *   allows only in the post-operation callback of a create or set-information.
 * - TWIN_UNSAFE_IN_PAGING_WRITE: pre-write asks FltGetFileNameInformationUnsafe for names
 *   of paging writes too, the paging I/O path its page lists as able to deadlock.
 * - TWIN_NAME_TRIMMED: post-create cuts the extension off the name in place, in a structure
 *   Filter Manager shares with every filter.
 * - TWIN_PARSED_FIELDS_BEFORE_PARSE: post-create looks at the name's extension before calling
 *   FltParseFileNameInformation (the components are empty until it is called).
 *
 * Runs in the kernel: create, cleanup and close callbacks at PASSIVE_LEVEL. */
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
static volatile LONG g_parsed;
static volatile LONG g_text_files;
static volatile LONG g_cleanup_names;
static volatile LONG g_generated;
static volatile LONG g_normalized;
static volatile LONG g_tunnel_checks;
static volatile LONG g_purges;
static volatile LONG g_stream_opens;

#define NAMER_TAG 'cmaN'

/* Whether `string` is `literal` (lower case ASCII), ignoring case. */
static BOOLEAN EqualsAsciiNoCase(PCUNICODE_STRING string, const char *literal)
{
    USHORT i;
    USHORT length = string->Length / sizeof(WCHAR);

    for (i = 0; i < length; i++) {
        WCHAR c = string->Buffer[i];
        if (literal[i] == '\0') {
            return FALSE;
        }
        if (c >= L'A' && c <= L'Z') {
            c = (WCHAR)(c - L'A' + L'a');
        }
        if (c != (WCHAR)literal[i]) {
            return FALSE;
        }
    }
    return literal[length] == '\0';
}

/* The name of `file_object` through FltGetFileNameInformationUnsafe: counted, then released. */
static VOID CountUnsafeName(PFILE_OBJECT file_object, PFLT_INSTANCE instance)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;

    if (NT_SUCCESS(FltGetFileNameInformationUnsafe(
            file_object, instance, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT,
            &name))) {
        InterlockedIncrement(&g_cleanup_names);
        FltReleaseFileNameInformation(name);
    }
}

static FLT_PREOP_CALLBACK_STATUS PreCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                           PVOID *completion_context)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;

    *completion_context = NULL;
#ifdef TWIN_UNSAFE_IN_PRE_CREATE
    CountUnsafeName(objects->FileObject, objects->Instance);
#endif
    /* The name as the caller spelled it (FileObject->FileName, valid in pre-create): does the
     * create name a stream? */
    {
        UNICODE_STRING stream = {0, 0, NULL};
        if (NT_SUCCESS(FltParseFileName(&objects->FileObject->FileName, NULL, &stream, NULL)) &&
            stream.Length != 0) {
            InterlockedIncrement(&g_stream_opens);
        }
    }
    /* The normalized name before the create; the post-create checks it for tunneling. */
    if (NT_SUCCESS(FltGetFileNameInformation(
            data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &name))) {
#ifdef TWIN_TUNNELED_NAME_IN_PRE_CREATE
        PFLT_FILE_NAME_INFORMATION tunneled = NULL;
        if (NT_SUCCESS(FltGetTunneledName(data, name, &tunneled)) && tunneled != NULL) {
            FltReleaseFileNameInformation(tunneled);
        }
#endif
        *completion_context = name;
    }
    return FLT_PREOP_SUCCESS_WITH_CALLBACK;
}

/* Whether tunneling changed the name taken in pre-create (counted); releases it. */
static VOID CheckTunneling(PFLT_CALLBACK_DATA data, PFLT_FILE_NAME_INFORMATION pre_name)
{
    PFLT_FILE_NAME_INFORMATION tunneled = NULL;

    if (NT_SUCCESS(FltGetTunneledName(data, pre_name, &tunneled))) {
        InterlockedIncrement(&g_tunnel_checks);
        if (tunneled != NULL) {
            FltReleaseFileNameInformation(tunneled);
        }
    }
    FltReleaseFileNameInformation(pre_name);
}

static FLT_POSTOP_CALLBACK_STATUS PostCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                             PVOID completion_context,
                                             FLT_POST_OPERATION_FLAGS flags)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;
    static const UNICODE_STRING none = {0, 0, NULL};

    (void)objects;
    if ((flags & FLTFL_POST_OPERATION_DRAINING) || !NT_SUCCESS(data->IoStatus.Status) ||
        data->IoStatus.Status == STATUS_REPARSE) {
        if (completion_context != NULL) {
            FltReleaseFileNameInformation(completion_context);
        }
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (completion_context != NULL) {
        CheckTunneling(data, completion_context);
    }
    if (!NT_SUCCESS(FltGetFileNameInformation(
            data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &name))) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
#ifdef TWIN_PARSED_FIELDS_BEFORE_PARSE
    /* The bug: a quick look at the extension's first letter before parsing. */
    if (name->Extension.Buffer[0] == L't') {
        InterlockedIncrement(&g_text_files);
    }
#endif
    if (NT_SUCCESS(FltParseFileNameInformation(name))) {
        InterlockedIncrement(&g_parsed);
#ifdef TWIN_NAME_TRIMMED
        /* The bug: the name without its extension, made in place in the shared structure. */
        if (name->Extension.Length != 0) {
            name->Name.Length -= name->Extension.Length + sizeof(WCHAR);
        }
#endif
        if (EqualsAsciiNoCase(&name->Extension, "txt")) {
            InterlockedIncrement(&g_text_files);
        }
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL, "namer: '%wZ' extension '%wZ'\n",
                   name->FinalComponent.Length ? &name->FinalComponent : &none,
                   name->Extension.Length ? &name->Extension : &none);
        if (name->Share.Length != 0) {
            DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
                       "namer: on share '%wZ' of '%wZ' in '%wZ'\n", &name->Share, &name->Volume,
                       name->ParentDir.Length ? &name->ParentDir : &none);
        }
    }
    FltReleaseFileNameInformation(name);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

static FLT_PREOP_CALLBACK_STATUS PreCleanup(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                            PVOID *completion_context)
{
    (void)data;
    *completion_context = NULL;
    CountUnsafeName(objects->FileObject, objects->Instance);
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

#ifdef TWIN_UNSAFE_IN_PAGING_WRITE
static FLT_PREOP_CALLBACK_STATUS PreWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    *completion_context = NULL;
    /* The bug: paging writes are not skipped before the name query. */
    CountUnsafeName(objects->FileObject, objects->Instance);
    (void)data;
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}
#endif

#ifdef TWIN_UNSAFE_AFTER_CLEANUP
static FLT_PREOP_CALLBACK_STATUS PreClose(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    (void)data;
    *completion_context = NULL;
    CountUnsafeName(objects->FileObject, objects->Instance);
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}
#endif

/* Pass-through name provider: the name from below, copied into Filter Manager's buffer. */
static NTSTATUS GenerateFileName(PFLT_INSTANCE instance, PFILE_OBJECT file_object,
                                 PFLT_CALLBACK_DATA data, FLT_FILE_NAME_OPTIONS options,
                                 PBOOLEAN cache, PFLT_NAME_CONTROL file_name)
{
    PFLT_FILE_NAME_INFORMATION below = NULL;
    FLT_FILE_NAME_OPTIONS format = options & 0xff;
    /* An intermediate query: not cached (the FLT_FILE_NAME_OPTIONS page). */
    FLT_FILE_NAME_OPTIONS query = format | FLT_FILE_NAME_QUERY_DEFAULT | FLT_FILE_NAME_DO_NOT_CACHE;
    NTSTATUS status;

    InterlockedIncrement(&g_generated);
    if (format == FLT_FILE_NAME_NORMALIZED) {
        /* Filter Manager then asks for the opened name and normalizes it. */
        return STATUS_NOT_SUPPORTED;
    }
    status = data != NULL ? FltGetFileNameInformation(data, query, &below)
                          : FltGetFileNameInformationUnsafe(file_object, instance, query, &below);
    if (!NT_SUCCESS(status)) {
        return status;
    }
#ifdef TWIN_NAME_BUFFER_REPLACED
    /* The bug: the name in a buffer of its own, put in place of Filter Manager's. */
    {
        PWCHAR own = ExAllocatePoolWithTag(PagedPool, below->Name.Length, NAMER_TAG);
        if (own != NULL) {
            RtlCopyMemory(own, below->Name.Buffer, below->Name.Length);
            file_name->Name.Buffer = own;
            file_name->Name.Length = below->Name.Length;
            file_name->Name.MaximumLength = below->Name.Length;
            *cache = TRUE;
        }
        FltReleaseFileNameInformation(below);
        return status;
    }
#endif
#ifndef TWIN_NAME_CONTROL_OVERRUN
    status = FltCheckAndGrowNameControl(file_name, below->Name.Length);
    if (NT_SUCCESS(status))
#endif
    {
        RtlCopyMemory(file_name->Name.Buffer, below->Name.Buffer, below->Name.Length);
        file_name->Name.Length = below->Name.Length;
        *cache = TRUE;
    }
    FltReleaseFileNameInformation(below);
    return status;
}

/* Each component is already in its normalized (long) form: copied as it is. */
static NTSTATUS NormalizeNameComponentEx(PFLT_INSTANCE instance, PFILE_OBJECT file_object,
                                         PCUNICODE_STRING parent, USHORT volume_length,
                                         PCUNICODE_STRING component,
                                         PFILE_NAMES_INFORMATION expanded, ULONG expanded_length,
                                         FLT_NORMALIZE_NAME_FLAGS flags, PVOID *context)
{
    (void)instance;
    (void)file_object;
    (void)parent;
    (void)volume_length;
    (void)flags;
    if (FIELD_OFFSET(FILE_NAMES_INFORMATION, FileName) + (ULONG)component->Length >
        expanded_length) {
        return STATUS_BUFFER_OVERFLOW;
    }
    if (*context == NULL) {
        *context = ExAllocatePoolWithTag(PagedPool, sizeof(LONG), NAMER_TAG);
        if (*context != NULL) {
            *(LONG *)*context = 0;
        }
    }
    if (*context != NULL) {
        (*(LONG *)*context)++;
    }
    expanded->NextEntryOffset = 0;
    expanded->FileIndex = 0;
    expanded->FileNameLength = component->Length;
    RtlCopyMemory(expanded->FileName, component->Buffer, component->Length);
    InterlockedIncrement(&g_normalized);
    return STATUS_SUCCESS;
}

static VOID NormalizeContextCleanup(PVOID *context)
{
    if (context != NULL && *context != NULL) {
        ExFreePoolWithTag(*context, NAMER_TAG);
        *context = NULL;
    }
}

/* A name provider going away purges the names it provided (FltPurgeFileNameInformationCache's
 * page: most commonly done when a name-providing filter unloads). */
static VOID InstanceTeardownStart(PCFLT_RELATED_OBJECTS objects, FLT_INSTANCE_TEARDOWN_FLAGS flags)
{
    (void)flags;
    if (NT_SUCCESS(FltPurgeFileNameInformationCache(objects->Instance, NULL))) {
        InterlockedIncrement(&g_purges);
    }
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    FltUnregisterFilter(g_filter);
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
               "namer: %ld name(s) parsed, %ld txt, %ld cleanup name(s), %ld generated, %ld "
               "component(s) normalized, %ld tunnel check(s), %ld stream open(s)\n",
               g_parsed, g_text_files, g_cleanup_names, g_generated, g_normalized,
               g_tunnel_checks, g_stream_opens);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_CREATE, 0, PreCreate, PostCreate, NULL},
    {IRP_MJ_CLEANUP, 0, PreCleanup, NULL, NULL},
#ifdef TWIN_UNSAFE_AFTER_CLEANUP
    {IRP_MJ_CLOSE, 0, PreClose, NULL, NULL},
#endif
#ifdef TWIN_UNSAFE_IN_PAGING_WRITE
    {IRP_MJ_WRITE, 0, PreWrite, NULL, NULL},
#endif
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .Flags = 0,
    .ContextRegistration = NULL,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
    .InstanceTeardownStartCallback = InstanceTeardownStart,
    .GenerateFileNameCallback = GenerateFileName,
    .NormalizeContextCleanupCallback = NormalizeContextCleanup,
    .NormalizeNameComponentExCallback = NormalizeNameComponentEx,
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
