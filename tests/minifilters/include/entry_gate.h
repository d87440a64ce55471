/* entry_gate.h: FilterUnload never tears down while DriverEntry is still running.
 *
 * Filter Manager accepts an unload (fltmc unload, a service stop) as soon as FltRegisterFilter
 * has returned, and older Windows versions do not serialize a driver's load and unload, so a
 * filter's unload callback can run while DriverEntry is still creating its port or starting
 * filtering (the field crash behind the project's RULES.md 1; kernel-sim's stress and verify
 * play it in their race cycles). Each C filter therefore wraps its own setup and teardown:
 *
 *   NTSTATUS DriverEntry(...)   { return EntryGateRun(driver, registry_path, Setup); }
 *   FilterUnload(flags)         { return EntryGateUnload(flags, Teardown); }
 *
 * and the unload waits in two steps, as the project's own driver does:
 * 1. for an event DriverEntry sets as its last action, which also says whether DriverEntry
 *    succeeded (if not, it unwound everything itself: nothing is left to tear down);
 * 2. until DO_DEVICE_INITIALIZING is clear on a device object DriverEntry created: the I/O
 *    manager clears it only once DriverEntry has returned
 *    (https://learn.microsoft.com/windows-hardware/drivers/kernel/initializing-a-device-object),
 *    and after step 1 DriverEntry is still running its last instructions.
 * Each wait is bounded (100 ms, 1 ms) and repeated: no wait without a timeout.
 *
 * Included once per driver, after the DDK headers. */
#ifndef ENTRY_GATE_H
#define ENTRY_GATE_H

/* https://learn.microsoft.com/windows-hardware/drivers/kernel/specifying-device-types */
#ifndef FILE_DEVICE_UNKNOWN
#define FILE_DEVICE_UNKNOWN 0x00000022
#endif

typedef NTSTATUS (*ENTRY_SETUP)(PDRIVER_OBJECT Driver, PUNICODE_STRING RegistryPath);
typedef NTSTATUS (*ENTRY_TEARDOWN)(FLT_FILTER_UNLOAD_FLAGS Flags);

static KEVENT g_entry_done;
static volatile LONG g_entry_succeeded;
static PDEVICE_OBJECT g_entry_device;

/* DriverEntry: the gate's device object, then the filter's own setup; the event is set last,
 * on every path. */
static NTSTATUS EntryGateRun(PDRIVER_OBJECT driver, PUNICODE_STRING registry_path,
                             ENTRY_SETUP setup)
{
    NTSTATUS status;

    KeInitializeEvent(&g_entry_done, NotificationEvent, FALSE);
    g_entry_succeeded = 0;
    status = IoCreateDevice(driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &g_entry_device);
    if (NT_SUCCESS(status)) {
        status = setup(driver, registry_path);
        if (!NT_SUCCESS(status)) {
            IoDeleteDevice(g_entry_device);
            g_entry_device = NULL;
        }
    }
    InterlockedExchange(&g_entry_succeeded, NT_SUCCESS(status) ? 1 : 0);
    KeSetEvent(&g_entry_done, IO_NO_INCREMENT, FALSE);
    return status;
}

/* FilterUnload: waits for DriverEntry to have returned, then tears down and deletes the gate's
 * device object. */
static NTSTATUS EntryGateUnload(FLT_FILTER_UNLOAD_FLAGS flags, ENTRY_TEARDOWN teardown)
{
    LARGE_INTEGER wait;
    NTSTATUS status;

    wait.QuadPart = -100 * 10 * 1000; /* 100 ms, relative */
    while (KeWaitForSingleObject(&g_entry_done, Executive, KernelMode, FALSE, &wait) !=
           STATUS_SUCCESS) {
    }
    if (!g_entry_succeeded) {
        return STATUS_SUCCESS;
    }
    wait.QuadPart = -10 * 1000; /* 1 ms, relative */
    while (*(volatile ULONG *)&g_entry_device->Flags & DO_DEVICE_INITIALIZING) {
        KeDelayExecutionThread(KernelMode, FALSE, &wait);
    }
    status = teardown(flags);
    if (NT_SUCCESS(status)) {
        /* Not after a refused (optional) unload: the driver stays, and so does its gate. */
        IoDeleteDevice(g_entry_device);
        g_entry_device = NULL;
    }
    return status;
}

#endif /* ENTRY_GATE_H */
