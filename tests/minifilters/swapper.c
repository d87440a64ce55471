/* swapper.c: a buffer-swapping minifilter in C, the shape of encryption and compression filters
 * that hand the file system a buffer of their own instead of the caller's. Written to prove
 * kernel-sim's device-aligned pool, MDLs, volume properties and dirty callback data on a
 * driver that is not Vigil.
 *
 * - InstanceSetup attaches to disk file systems only; it takes the volume from the instance
 *   (FltGetVolumeFromInstance), reads its sector size from FltGetVolumeProperties, traces its
 *   names (FltGetVolumeName, FltGetVolumeGuidName), drops the volume reference
 *   (FltObjectDereference) and keeps the sector size in an instance context.
 * - Pre-write allocates a buffer aligned for the volume's device, rounded up to a whole number
 *   of sectors (FltAllocatePoolAlignedWithTag), describes it with an MDL (IoAllocateMdl,
 *   MmBuildMdlForNonPagedPool), copies the caller's data into it (from the caller's MDL through
 *   MmGetSystemAddressForMdlSafe when there is one, else from the caller's buffer, under SEH:
 *   it may be a user address), puts both in the parameter block and marks the callback data
 *   dirty (FltSetCallbackDataDirty) so that the file system below sees them. The swapped MDL is
 *   the I/O system's to free when the write completes; the buffer is freed in post-write
 *   (FltFreePoolAlignedWithTag), draining included. Anything that cannot be had lets the write
 *   through unswapped (fail open); a fault reading the caller's buffer fails the write.
 *
 * Broken twins, selected at build time:
 * - TWIN_NOT_DIRTY: the parameters are swapped without FltSetCallbackDataDirty.
 * - TWIN_FREED_WITH_EX_FREE_POOL: post-write frees the aligned buffer with ExFreePool.
 *
 * Runs in the kernel: InstanceSetup and pre-write at PASSIVE_LEVEL (or APC_LEVEL), post-write
 * at <= DISPATCH_LEVEL (nonpaged memory only there). */
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

#define SWAP_BUFFER_TAG 'bwsC'
#define SWAP_CONTEXT_TAG 'cwsC'
#define INSTANCE_CONTEXT_TAG 'iwsC'

typedef struct _INSTANCE_CONTEXT {
    ULONG SectorSize;
} INSTANCE_CONTEXT, *PINSTANCE_CONTEXT;

/* Handed from pre-write to post-write. */
typedef struct _SWAP_CONTEXT {
    PVOID Buffer;
} SWAP_CONTEXT, *PSWAP_CONTEXT;

static PFLT_FILTER g_filter;

/* A byte loop of its own, not inlined, so that a fault on the caller's buffer is raised inside
 * this image's guarded region (the way the project's SEH helper copies). */
__declspec(noinline) static void CopyBytes(volatile UCHAR *to, const volatile UCHAR *from, ULONG n)
{
    for (ULONG i = 0; i < n; i++) {
        to[i] = from[i];
    }
}

/* Copies `n` bytes from a buffer that may be a user address; the exception code on a fault. */
static NTSTATUS CopyFromCaller(PVOID to, const VOID *from, ULONG n)
{
    NTSTATUS status = STATUS_SUCCESS;
    __try {
        CopyBytes(to, from, n);
    } __except (1) {
        status = (NTSTATUS)_exception_code();
    }
    return status;
}

static ULONG SectorSizeOf(PFLT_INSTANCE instance)
{
    PINSTANCE_CONTEXT context = NULL;
    ULONG sector = 0;

    if (NT_SUCCESS(FltGetInstanceContext(instance, (PFLT_CONTEXT *)&context))) {
        sector = context->SectorSize;
        FltReleaseContext(context);
    }
    return sector;
}

static FLT_PREOP_CALLBACK_STATUS PreWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                          PVOID *completion_context)
{
    PFLT_IO_PARAMETER_BLOCK iopb = data->Iopb;
    ULONG length = iopb->Parameters.Write.Length;
    ULONG sector;
    PVOID buffer;
    PVOID original;
    PMDL mdl;
    PSWAP_CONTEXT swap;
    NTSTATUS status;

    *completion_context = NULL;
    sector = SectorSizeOf(objects->Instance);
    if (length == 0 || sector == 0) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    buffer = FltAllocatePoolAlignedWithTag(objects->Instance, NonPagedPoolNx,
                                           (length + sector - 1) / sector * sector,
                                           SWAP_BUFFER_TAG);
    if (buffer == NULL) {
        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }
    swap = ExAllocatePoolWithTag(NonPagedPoolNx, sizeof(SWAP_CONTEXT), SWAP_CONTEXT_TAG);
    mdl = IoAllocateMdl(buffer, length, FALSE, FALSE, NULL);
    if (swap == NULL || mdl == NULL) {
        goto let_through;
    }
    MmBuildMdlForNonPagedPool(mdl);
    if (iopb->Parameters.Write.MdlAddress != NULL) {
        original = MmGetSystemAddressForMdlSafe(iopb->Parameters.Write.MdlAddress,
                                                NormalPagePriority | MdlMappingNoExecute);
        if (original == NULL) {
            goto let_through;
        }
    } else {
        original = iopb->Parameters.Write.WriteBuffer;
    }
    status = CopyFromCaller(buffer, original, length);
    if (!NT_SUCCESS(status)) {
        IoFreeMdl(mdl);
        ExFreePoolWithTag(swap, SWAP_CONTEXT_TAG);
        FltFreePoolAlignedWithTag(objects->Instance, buffer, SWAP_BUFFER_TAG);
        data->IoStatus.Status = status;
        data->IoStatus.Information = 0;
        return FLT_PREOP_COMPLETE;
    }
    iopb->Parameters.Write.WriteBuffer = buffer;
    iopb->Parameters.Write.MdlAddress = mdl;
#ifndef TWIN_NOT_DIRTY
    FltSetCallbackDataDirty(data);
#endif
    swap->Buffer = buffer;
    *completion_context = swap;
    return FLT_PREOP_SUCCESS_WITH_CALLBACK;

let_through:
    if (mdl != NULL) {
        IoFreeMdl(mdl);
    }
    if (swap != NULL) {
        ExFreePoolWithTag(swap, SWAP_CONTEXT_TAG);
    }
    FltFreePoolAlignedWithTag(objects->Instance, buffer, SWAP_BUFFER_TAG);
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}

static FLT_POSTOP_CALLBACK_STATUS PostWrite(PFLT_CALLBACK_DATA data, PCFLT_RELATED_OBJECTS objects,
                                            PVOID completion_context,
                                            FLT_POST_OPERATION_FLAGS flags)
{
    PSWAP_CONTEXT swap = completion_context;

    (void)data;
    (void)objects;
    (void)flags;
    /* Draining or not, the buffer is ours to free; the MDL went with the operation. */
#ifdef TWIN_FREED_WITH_EX_FREE_POOL
    ExFreePool(swap->Buffer);
#else
    FltFreePoolAlignedWithTag(objects->Instance, swap->Buffer, SWAP_BUFFER_TAG);
#endif
    ExFreePoolWithTag(swap, SWAP_CONTEXT_TAG);
    return FLT_POSTOP_FINISHED_PROCESSING;
}

/* Traces the volume's device and GUID names: the size first (FltGetVolumeName with no string),
 * then both names into buffers that hold them. */
static VOID TraceVolume(PFLT_VOLUME volume, USHORT sector)
{
    WCHAR name_buffer[64];
    WCHAR guid_buffer[64];
    UNICODE_STRING name = {0, sizeof(name_buffer), name_buffer};
    UNICODE_STRING guid = {0, sizeof(guid_buffer), guid_buffer};
    ULONG needed = 0;

    if (FltGetVolumeName(volume, NULL, &needed) != STATUS_BUFFER_TOO_SMALL ||
        needed > sizeof(name_buffer)) {
        return;
    }
    if (NT_SUCCESS(FltGetVolumeName(volume, &name, NULL)) &&
        NT_SUCCESS(FltGetVolumeGuidName(volume, &guid, &needed))) {
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL,
                   "swapper: %wZ is %wZ, sectors of %u bytes\n", &name, &guid, (ULONG)sector);
    }
}

static NTSTATUS InstanceSetup(PCFLT_RELATED_OBJECTS objects, FLT_INSTANCE_SETUP_FLAGS flags,
                              DEVICE_TYPE device_type, FLT_FILESYSTEM_TYPE fs_type)
{
    /* The fixed part and room for the three names. */
    union {
        FLT_VOLUME_PROPERTIES properties;
        UCHAR bytes[sizeof(FLT_VOLUME_PROPERTIES) + 512];
    } buffer;
    PFLT_VOLUME volume = NULL;
    PINSTANCE_CONTEXT context = NULL;
    ULONG returned = 0;
    NTSTATUS status;

    (void)flags;
    (void)fs_type;
    if (device_type != FILE_DEVICE_DISK_FILE_SYSTEM) {
        return STATUS_FLT_DO_NOT_ATTACH;
    }
    status = FltGetVolumeFromInstance(objects->Instance, &volume);
    if (!NT_SUCCESS(status)) {
        return STATUS_FLT_DO_NOT_ATTACH;
    }
    status = FltGetVolumeProperties(volume, &buffer.properties, sizeof(buffer), &returned);
    TraceVolume(volume, buffer.properties.SectorSize);
    FltObjectDereference(volume);
    /* STATUS_BUFFER_OVERFLOW still returns the fixed part, which holds the sector size. */
    if ((!NT_SUCCESS(status) && status != STATUS_BUFFER_OVERFLOW) ||
        buffer.properties.SectorSize == 0) {
        return STATUS_FLT_DO_NOT_ATTACH;
    }
    status = FltAllocateContext(objects->Filter, FLT_INSTANCE_CONTEXT, sizeof(INSTANCE_CONTEXT),
                                NonPagedPoolNx, (PFLT_CONTEXT *)&context);
    if (!NT_SUCCESS(status)) {
        return STATUS_FLT_DO_NOT_ATTACH;
    }
    context->SectorSize = buffer.properties.SectorSize;
    status = FltSetInstanceContext(objects->Instance, FLT_SET_CONTEXT_KEEP_IF_EXISTS, context,
                                   NULL);
    FltReleaseContext(context);
    return NT_SUCCESS(status) ? STATUS_SUCCESS : STATUS_FLT_DO_NOT_ATTACH;
}

/* The filter's own teardown, run by FilterUnload once DriverEntry has returned
 * (entry_gate.h). */
static NTSTATUS Teardown(FLT_FILTER_UNLOAD_FLAGS flags)
{
    (void)flags;
    FltUnregisterFilter(g_filter);
    return STATUS_SUCCESS;
}

static NTSTATUS FilterUnload(FLT_FILTER_UNLOAD_FLAGS flags)
{
    return EntryGateUnload(flags, Teardown);
}

static const FLT_CONTEXT_REGISTRATION g_contexts[] = {
    {.ContextType = FLT_INSTANCE_CONTEXT,
     .Size = sizeof(INSTANCE_CONTEXT),
     .PoolTag = INSTANCE_CONTEXT_TAG},
    {.ContextType = FLT_CONTEXT_END},
};

static const FLT_OPERATION_REGISTRATION g_callbacks[] = {
    {IRP_MJ_WRITE, 0, PreWrite, PostWrite, NULL},
    {IRP_MJ_OPERATION_END, 0, NULL, NULL, NULL},
};

static const FLT_REGISTRATION g_registration = {
    .Size = sizeof(FLT_REGISTRATION),
    .Version = FLT_REGISTRATION_VERSION,
    .ContextRegistration = g_contexts,
    .OperationRegistration = g_callbacks,
    .FilterUnloadCallback = FilterUnload,
    .InstanceSetupCallback = InstanceSetup,
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
