/* scanner.c: a scanner-style minifilter in C, the shape of Microsoft's scanner sample: every
 * successful create is sent to a user-mode scanner through a communication port, and the
 * filter waits (briefly) for its verdict. Written to prove kernel-sim's port rules on a driver
 * that is not Vigil.
 *
 * - \CScannerPort admits one client (default security descriptor, OBJ_KERNEL_HANDLE).
 * - The client port lives in a slot guarded by a push lock: a send holds it shared from the
 *   check of the slot through FltSendMessage, the disconnect callback holds it exclusive to
 *   close the client port, so no send ever goes through a slot a close is clearing. Push locks
 *   are taken inside a critical region, as their pages require.
 * - The request and the reply buffer come from pool (ExAllocatePoolWithTag), zeroed before
 *   use: the reply buffer must stay resident while the user-mode scanner answers, and no
 *   uninitialized byte may reach user mode.
 * - Fail open: no client, a timeout (100 ms; STATUS_TIMEOUT is a success code, tested for
 *   explicitly), a disconnect or no memory lets the create through unscanned. A verdict of
 *   "infected" is only counted: cancelling the open is left out.
 *
 * Broken twin, selected at build time:
 * - TWIN_REPLY_ON_STACK: the reply buffer is a local variable, on the kernel stack, which may
 *   be paged out or unwound while the user-mode scanner writes to it.
 *
 * Runs in the kernel: the post create at PASSIVE_LEVEL, the port callbacks at PASSIVE_LEVEL. */
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

#define PORT_NAME L"\\CScannerPort"
/* Pool tag 'Cscn', as a little-endian ULONG. */
#define SCANNER_TAG 0x6e637343u
#define MAX_NAME_CHARS 260
/* 100 ms, relative (negative, 100 ns units). */
#define SCAN_TIMEOUT (-1000000LL)

/* The wire format shared with the user-mode scanner: fixed size, every byte written. */
typedef struct _SCAN_REQUEST {
    ULONG ProcessId;
    USHORT NameBytes;
    USHORT Reserved;
    WCHAR Name[MAX_NAME_CHARS];
} SCAN_REQUEST, *PSCAN_REQUEST;

typedef struct _SCAN_REPLY {
    UCHAR Infected;
    UCHAR Reserved[7];
} SCAN_REPLY, *PSCAN_REPLY;

static PFLT_FILTER g_filter;
static PFLT_PORT g_server_port;
/* The connected scanner's port; guarded by g_port_lock (see above). */
static PFLT_PORT g_client_port;
static ULONG_PTR g_port_lock;
static volatile LONG g_scanned;
static volatile LONG g_infected;

#define PORT_LOCK ((PEX_PUSH_LOCK)&g_port_lock)

/* Sends one request and waits for the verdict; fail open on anything but a reply. */
static void Scan(PSCAN_REQUEST request)
{
#ifdef TWIN_REPLY_ON_STACK
    SCAN_REPLY stack_reply;
    PSCAN_REPLY reply = &stack_reply;
#else
    PSCAN_REPLY reply = ExAllocatePoolWithTag(NonPagedPoolNx, sizeof(SCAN_REPLY), SCANNER_TAG);
#endif
    ULONG reply_length = sizeof(SCAN_REPLY);
    LARGE_INTEGER timeout;
    NTSTATUS status = STATUS_PORT_DISCONNECTED;

    if (reply == NULL) {
        return;
    }
    memset(reply, 0, sizeof(*reply));
    timeout.QuadPart = SCAN_TIMEOUT;
    KeEnterCriticalRegion();
    FltAcquirePushLockSharedEx(PORT_LOCK, 0);
    if (g_client_port != NULL) {
        status = FltSendMessage(g_filter, &g_client_port, request, sizeof(*request), reply,
                                &reply_length, &timeout);
    }
    FltReleasePushLockEx(PORT_LOCK, 0);
    KeLeaveCriticalRegion();
    /* STATUS_TIMEOUT is a success code: no verdict came. */
    if (status == STATUS_SUCCESS && reply_length >= sizeof(UCHAR)) {
        InterlockedIncrement(&g_scanned);
        if (reply->Infected) {
            InterlockedIncrement(&g_infected);
        }
    }
#ifndef TWIN_REPLY_ON_STACK
    ExFreePoolWithTag(reply, SCANNER_TAG);
#endif
}

static FLT_PREOP_CALLBACK_STATUS PreCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                           PVOID *completion_context)
{
    (void)data;
    (void)objects;
    *completion_context = NULL;
    return FLT_PREOP_SUCCESS_WITH_CALLBACK;
}

static FLT_POSTOP_CALLBACK_STATUS PostCreate(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                             PVOID completion_context,
                                             FLT_POST_OPERATION_FLAGS flags)
{
    PFLT_FILE_NAME_INFORMATION name = NULL;
    PSCAN_REQUEST request;
    USHORT bytes;

    (void)objects;
    (void)completion_context;
    if ((flags & 0x1) || !NT_SUCCESS(data->IoStatus.Status) ||
        data->IoStatus.Status == STATUS_REPARSE) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (!NT_SUCCESS(FltGetFileNameInformation(
            data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &name))) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    request = ExAllocatePoolWithTag(NonPagedPoolNx, sizeof(SCAN_REQUEST), SCANNER_TAG);
    if (request != NULL) {
        memset(request, 0, sizeof(*request));
        request->ProcessId = FltGetRequestorProcessId(data);
        bytes = name->Name.Length;
        if (bytes > sizeof(request->Name)) {
            bytes = sizeof(request->Name);
        }
        memcpy(request->Name, name->Name.Buffer, bytes);
        request->NameBytes = bytes;
        Scan(request);
        ExFreePoolWithTag(request, SCANNER_TAG);
    }
    FltReleaseFileNameInformation(name);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

static NTSTATUS Connect(PFLT_PORT client_port, PVOID server_cookie, PVOID context, ULONG size,
                        PVOID *connection_cookie)
{
    (void)server_cookie;
    (void)context;
    (void)size;
    KeEnterCriticalRegion();
    FltAcquirePushLockExclusiveEx(PORT_LOCK, 0);
    g_client_port = client_port;
    FltReleasePushLockEx(PORT_LOCK, 0);
    KeLeaveCriticalRegion();
    *connection_cookie = NULL;
    return STATUS_SUCCESS;
}

static VOID Disconnect(PVOID connection_cookie)
{
    (void)connection_cookie;
    KeEnterCriticalRegion();
    FltAcquirePushLockExclusiveEx(PORT_LOCK, 0);
    FltCloseClientPort(g_filter, &g_client_port);
    FltReleasePushLockEx(PORT_LOCK, 0);
    KeLeaveCriticalRegion();
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    FltCloseCommunicationPort(g_server_port);
    FltUnregisterFilter(g_filter);
    FltDeletePushLock(PORT_LOCK);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_CREATE, 0, PreCreate, PostCreate, NULL},
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
    static const WCHAR port_name[] = PORT_NAME;
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    PSECURITY_DESCRIPTOR descriptor;
    NTSTATUS status;

    (void)registry_path;
    FltInitializePushLock(PORT_LOCK);
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (!NT_SUCCESS(status)) {
        FltDeletePushLock(PORT_LOCK);
        return status;
    }
    status = FltBuildDefaultSecurityDescriptor(&descriptor, FLT_PORT_ALL_ACCESS);
    if (NT_SUCCESS(status)) {
        name.Buffer = (PWSTR)port_name;
        name.Length = sizeof(port_name) - sizeof(WCHAR);
        name.MaximumLength = sizeof(port_name);
        InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
                                   NULL, descriptor);
        status = FltCreateCommunicationPort(g_filter, &g_server_port, &attributes, NULL, Connect,
                                            Disconnect, NULL, 1);
        FltFreeSecurityDescriptor(descriptor);
    }
    if (NT_SUCCESS(status)) {
        status = FltStartFiltering(g_filter);
        if (!NT_SUCCESS(status)) {
            FltCloseCommunicationPort(g_server_port);
        }
    }
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_filter);
        FltDeletePushLock(PORT_LOCK);
    }
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    return EntryGateRun(driver, registry_path, Setup);
}
