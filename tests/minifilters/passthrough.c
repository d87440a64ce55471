/* passthrough.c: a scanner-lite minifilter in C, the shape of Microsoft's passThrough and
 * scanner samples, written to prove kernel-sim on a driver that is not Vigil.
 *
 * - Registers pre/post create and pre cleanup callbacks; the post create asks for the opened
 *   file's normalized name (when the create succeeded) and counts opens in a global.
 * - Creates a communication port, \CPassthroughPort, with the default security descriptor
 *   (administrators and system) and OBJ_KERNEL_HANDLE; one client at a time; the disconnect
 *   callback closes the client port, as FltCloseClientPort's page requires.
 * - FilterUnload closes the server port, then unregisters: in that order, because
 *   FltUnregisterFilter waits for every port of the filter to be closed.
 * - Traces with DbgPrint/DbgPrintEx and FltGetIrpName, as most drivers do while being
 *   developed; the post create prints the name with %wZ, which DbgPrintEx allows only at
 *   PASSIVE_LEVEL (a create's post-operation callback runs there).
 *
 * Broken twins, selected at build time:
 * - TWIN_DOUBLE_RELEASE: the post create releases the name information twice.
 * - TWIN_PRINT_UNDER_SPIN_LOCK: the post create prints the name (%wZ) while holding a spin
 *   lock, at DISPATCH_LEVEL, where DbgPrintEx's Unicode format codes are not allowed.
 *
 * Runs in the kernel (Filter Manager callbacks at PASSIVE_LEVEL for create and cleanup). */
#include <stdarg.h>
#include <stddef.h>
#include <windef.h>
#include <winternl.h>
#include <winioctl.h>
#include <ddk/wdm.h>
#include <ddk/ntddk.h>
#include <ddk/ntifs.h>
#include <ddk/fltkernel.h>
#include <dpfilter.h>
#include "flt_documented.h"
#include "entry_gate.h"

#define PORT_NAME L"\\CPassthroughPort"

static PFLT_FILTER g_filter;
static PFLT_PORT g_server_port;
static PFLT_PORT g_client_port;
static volatile LONG g_opens;
static volatile LONG g_names;
#ifdef TWIN_PRINT_UNDER_SPIN_LOCK
static KSPIN_LOCK g_trace_lock;
#endif

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
    NTSTATUS status;

    (void)objects;
    (void)completion_context;
    /* While draining (FLTFL_POST_OPERATION_DRAINING) the callback data is not the real one:
     * ask nothing of Filter Manager. */
    if (flags & 0x1) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (!NT_SUCCESS(data->IoStatus.Status) || data->IoStatus.Status == STATUS_REPARSE) {
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    InterlockedIncrement(&g_opens);
    status = FltGetFileNameInformation(data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT,
                                       &name);
    if (!NT_SUCCESS(status)) {
        /* Fail open: a name that cannot be had is not a reason to fail the user's create. */
        return FLT_POSTOP_FINISHED_PROCESSING;
    }
    if (name->Name.Length > 0) {
        InterlockedIncrement(&g_names);
    }
#ifdef TWIN_PRINT_UNDER_SPIN_LOCK
    {
        KIRQL irql = KeAcquireSpinLockRaiseToDpc(&g_trace_lock);
#endif
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL, "passthrough: %s %wZ (open %ld)\n",
                   FltGetIrpName(data->Iopb->MajorFunction), &name->Name, g_opens);
#ifdef TWIN_PRINT_UNDER_SPIN_LOCK
        KeReleaseSpinLock(&g_trace_lock, irql);
    }
#endif
    FltReleaseFileNameInformation(name);
#ifdef TWIN_DOUBLE_RELEASE
    FltReleaseFileNameInformation(name);
#endif
    return FLT_POSTOP_FINISHED_PROCESSING;
}

static FLT_PREOP_CALLBACK_STATUS PreCleanup(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                            PVOID *completion_context)
{
    (void)data;
    (void)objects;
    *completion_context = NULL;
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

static NTSTATUS Connect(PFLT_PORT client_port, PVOID server_cookie, PVOID context, ULONG size,
                        PVOID *connection_cookie)
{
    (void)server_cookie;
    (void)context;
    (void)size;
    g_client_port = client_port;
    *connection_cookie = NULL;
    return STATUS_SUCCESS;
}

static VOID Disconnect(PVOID connection_cookie)
{
    (void)connection_cookie;
    FltCloseClientPort(g_filter, &g_client_port);
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    FltCloseCommunicationPort(g_server_port);
    FltUnregisterFilter(g_filter);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static NTSTATUS InstanceSetup(PCFLT_RELATED_OBJECTS objects, FLT_INSTANCE_SETUP_FLAGS flags,
                              DEVICE_TYPE device_type, FLT_FILESYSTEM_TYPE fs_type)
{
    (void)objects;
    (void)flags;
    (void)fs_type;
    /* Disk file systems only, as the samples do. */
    return device_type == FILE_DEVICE_DISK_FILE_SYSTEM ? STATUS_SUCCESS : STATUS_FLT_DO_NOT_ATTACH;
}

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_CREATE, 0, PreCreate, PostCreate, NULL},
    {IRP_MJ_CLEANUP, 0, PreCleanup, NULL, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
    .InstanceSetupCallback = InstanceSetup,
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
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (!NT_SUCCESS(status)) {
        return status;
    }
    status = FltBuildDefaultSecurityDescriptor(&descriptor, FLT_PORT_ALL_ACCESS);
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_filter);
        return status;
    }
    name.Buffer = (PWSTR)port_name;
    name.Length = sizeof(port_name) - sizeof(WCHAR);
    name.MaximumLength = sizeof(port_name);
    InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, NULL,
                               descriptor);
    status = FltCreateCommunicationPort(g_filter, &g_server_port, &attributes, NULL, Connect,
                                        Disconnect, NULL, 1);
    FltFreeSecurityDescriptor(descriptor);
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_filter);
        return status;
    }
    status = FltStartFiltering(g_filter);
    if (!NT_SUCCESS(status)) {
        FltCloseCommunicationPort(g_server_port);
        FltUnregisterFilter(g_filter);
        return status;
    }
    DbgPrint("passthrough: filtering, port %ws\n", port_name);
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path)
{
    return EntryGateRun(driver, registry_path, Setup);
}
