//! System threads, handles and object references: `PsCreateSystemThread`,
//! `PsTerminateSystemThread`, `PsGetCurrentProcessId`, `PsGetCurrentThreadId`,
//! `ObReferenceObjectByHandle`, `ObfDereferenceObject` (which also drops the references
//! `FltGetDiskDeviceObject` gives), `ZwClose`.
//!
//! A system thread is a real OS thread running the start routine on its own driver stack, in
//! the System process (pid 4). Its thread object becomes signalled only when the thread has
//! stopped running driver code (the start routine returned or called
//! `PsTerminateSystemThread`), so a driver that waits on the object knows its code is no longer
//! executing (RULES.md, rule 2).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use vigil_sys::{
    ACCESS_MASK, CLIENT_ID, HANDLE, KPROCESSOR_MODE, NTSTATUS, OBJ_KERNEL_HANDLE,
    OBJECT_ATTRIBUTES, PASSIVE_LEVEL, PKSTART_ROUTINE, POBJECT_TYPE, PVOID,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UserMode,
};

use crate::kernel::objects::{HandleTarget, ThreadObject};
use crate::kernel::{Kernel, emulate, ensure_thread_id, lock};
use crate::machine::guest;
use crate::machine::state::{self, Abandon};
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;

/// The System process id.
pub(crate) const SYSTEM_PROCESS_ID: usize = 4;

/// Checks `OBJ_KERNEL_HANDLE` in object attributes (RULES.md, rule 16).
pub(crate) fn check_kernel_handle(
    k: &Kernel,
    routine: &str,
    attributes: *mut OBJECT_ATTRIBUTES,
) -> Option<OBJECT_ATTRIBUTES> {
    if attributes.is_null() {
        k.violation(
            ViolationKind::Parameter,
            "RULES.md 16: handles are created with OBJ_KERNEL_HANDLE",
            format!("{routine} with NULL ObjectAttributes: the handle goes into the handle table of whatever process is current"),
        );
        return None;
    }
    let value = guest::read(attributes);
    if value.Attributes & OBJ_KERNEL_HANDLE == 0 {
        k.violation(
            ViolationKind::Parameter,
            "RULES.md 16: handles are created with OBJ_KERNEL_HANDLE",
            format!(
                "{routine} without OBJ_KERNEL_HANDLE (Attributes {:#x})",
                value.Attributes
            ),
        );
    }
    Some(value)
}

/// `PsCreateSystemThread`: PASSIVE_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn ps_create_system_thread(
    handle_out: *mut HANDLE,
    _access: ACCESS_MASK,
    attributes: *mut OBJECT_ATTRIBUTES,
    process: HANDLE,
    client_id: *mut CLIENT_ID,
    start: PKSTART_ROUTINE,
    context: PVOID,
) -> NTSTATUS {
    emulate(Routine::PsCreateSystemThread, |k| {
        if handle_out.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "PsCreateSystemThread: a ThreadHandle out-pointer",
                "ThreadHandle is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let Some(start) = start else {
            k.violation(
                ViolationKind::Parameter,
                "PsCreateSystemThread: a StartRoutine",
                "StartRoutine is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        };
        check_kernel_handle(k, "PsCreateSystemThread", attributes);
        if !process.is_null() {
            k.violation(
                ViolationKind::NotEmulated,
                "PsCreateSystemThread: ProcessHandle NULL (the System process)",
                format!("ProcessHandle {process:p}: threads in other processes are not emulated"),
            );
        }
        if k.inject_failure("PsCreateSystemThread", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let id = crate::kernel::allocate_thread_id();
        let thread = Arc::new(ThreadObject::new(id, start as usize));
        let kernel = k.arc();
        let runner = Arc::clone(&thread);
        let start_address = start as usize;
        let context_address = context as usize;
        let spawned = std::thread::Builder::new()
            .name(format!("kernel-sim system thread {id:#x}"))
            .spawn(move || {
                // "The newly created system thread runs at PASSIVE_LEVEL inside a critical
                // region with normal kernel APCs disabled" (PsCreateSystemThread, Remarks:
                // <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-pscreatesystemthread>).
                state::with(|s| {
                    s.thread_id.set(runner.id);
                    s.process_id.set(SYSTEM_PROCESS_ID);
                    s.system_thread.set(true);
                    s.critical_regions.set(1);
                });
                // SAFETY: the driver gave this start routine (a KSTART_ROUTINE) to
                // PsCreateSystemThread; the image stays mapped while the kernel waits for its
                // threads; the context is the driver's own pointer, passed through.
                let start: unsafe extern "win64" fn(PVOID) =
                    unsafe { std::mem::transmute(start_address) };
                kernel.call_driver("system thread", Some(PASSIVE_LEVEL), || {
                    // SAFETY: see above.
                    unsafe { start(context_address as PVOID) };
                });
                let latency = kernel.config.thread_exit_latency;
                if !latency.is_zero() {
                    std::thread::sleep(latency);
                }
                runner.finished.store(true, Ordering::Release);
                kernel.notify_waiters();
            });
        let Ok(join) = spawned else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        *lock(&thread.join) = Some(join);
        let handle = {
            let mut objects = lock(&k.objects);
            objects
                .threads
                .insert(thread.address(), Arc::clone(&thread));
            objects.open(
                HandleTarget::Thread(Arc::clone(&thread)),
                "PsCreateSystemThread",
            )
        };
        guest::write(handle_out, handle as HANDLE);
        if !client_id.is_null() {
            guest::write(
                client_id,
                CLIENT_ID {
                    UniqueProcess: SYSTEM_PROCESS_ID as HANDLE,
                    UniqueThread: id as HANDLE,
                },
            );
        }
        STATUS_SUCCESS
    })
}

/// `PsTerminateSystemThread`: PASSIVE_LEVEL, from a system thread; does not return.
pub(crate) extern "win64" fn ps_terminate_system_thread(exit_status: NTSTATUS) -> NTSTATUS {
    emulate(Routine::PsTerminateSystemThread, |k| {
        if !state::with(|s| s.system_thread.get()) {
            k.violation(
                ViolationKind::Parameter,
                "PsTerminateSystemThread: called by a system thread",
                "called by a thread PsCreateSystemThread did not create".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        state::with(|s| s.fault.params[0].set(u64::from(exit_status.cast_unsigned())));
        abandon_current_call(Abandon::Terminated)
    })
}

/// `PsGetCurrentProcessId`: any IRQL.
pub(crate) extern "win64" fn ps_get_current_process_id() -> HANDLE {
    emulate(Routine::PsGetCurrentProcessId, |_| {
        state::with(|s| s.process_id.get()) as HANDLE
    })
}

/// `PsGetCurrentThreadId`: any IRQL.
pub(crate) extern "win64" fn ps_get_current_thread_id() -> HANDLE {
    emulate(Routine::PsGetCurrentThreadId, |_| {
        ensure_thread_id() as HANDLE
    })
}

/// `ObReferenceObjectByHandle`: PASSIVE_LEVEL. Thread handles only, type-checked (rule 17).
pub(crate) extern "win64" fn ob_reference_object_by_handle(
    handle: HANDLE,
    access: ACCESS_MASK,
    object_type: POBJECT_TYPE,
    mode: KPROCESSOR_MODE,
    object_out: *mut PVOID,
    handle_information: PVOID,
) -> NTSTATUS {
    emulate(Routine::ObReferenceObjectByHandle, |k| {
        if object_out.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "ObReferenceObjectByHandle: an Object out-pointer",
                "Object is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let target = lock(&k.objects).get(handle as usize);
        let Some(target) = target else {
            k.violation(
                ViolationKind::InvalidHandle,
                "ObReferenceObjectByHandle: an open handle",
                format!("handle {handle:p} is not open"),
            );
            return status::INVALID_HANDLE;
        };
        if mode == UserMode {
            // Kernel handles are not accessible from user mode.
            return status::INVALID_HANDLE;
        }
        if object_type.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "RULES.md 17: check the type of any object referenced from a handle",
                format!(
                    "ObReferenceObjectByHandle of a {} handle with ObjectType NULL",
                    target.type_name()
                ),
            );
        }
        match target {
            HandleTarget::Thread(thread) => {
                if !object_type.is_null()
                    && object_type as usize != crate::ntoskrnl::exports::thread_object_type()
                {
                    return status::OBJECT_TYPE_MISMATCH;
                }
                thread.references.fetch_add(1, Ordering::AcqRel);
                guest::write(object_out, thread.address() as PVOID);
                if !handle_information.is_null() {
                    guest::write(
                        handle_information.cast::<[u32; 2]>(),
                        [OBJ_KERNEL_HANDLE, access],
                    );
                }
                STATUS_SUCCESS
            }
            HandleTarget::File(_) => {
                // Filters take the file object from FltCreateFileEx's FileObject instead.
                k.violation(
                    ViolationKind::NotEmulated,
                    "ObReferenceObjectByHandle",
                    "file objects by handle are not emulated (FltCreateFileEx returns the file object)"
                        .to_owned(),
                );
                vigil_sys::STATUS_NOT_IMPLEMENTED
            }
            HandleTarget::Key(_) => {
                if !object_type.is_null() {
                    return status::OBJECT_TYPE_MISMATCH;
                }
                k.violation(
                    ViolationKind::NotEmulated,
                    "ObReferenceObjectByHandle",
                    "key objects by pointer are not emulated".to_owned(),
                );
                vigil_sys::STATUS_NOT_IMPLEMENTED
            }
        }
    })
}

/// `ObfDereferenceObject`: IRQL <= DISPATCH_LEVEL. Returns the new reference count.
pub(crate) extern "win64" fn obf_dereference_object(object: PVOID) -> isize {
    emulate(Routine::ObfDereferenceObject, |k| {
        let thread = {
            let mut objects = lock(&k.objects);
            if let Some(references) = objects.file_references.get_mut(&(object as usize)) {
                // A file object from FltCreateFileEx: one dereference per reference.
                if *references == 0 {
                    drop(objects);
                    k.violation(
                        ViolationKind::HandleLeak,
                        "ObfDereferenceObject: one dereference per reference",
                        format!("file object {object:p} dereferenced more often than referenced"),
                    );
                    return 0;
                }
                *references -= 1;
                return isize::try_from(*references).unwrap_or(0);
            }
            if let Some(taken) = objects.device_references.get_mut(&(object as usize)) {
                // A disk device object from FltGetDiskDeviceObject.
                if taken.pop().is_none() {
                    drop(objects);
                    k.violation(
                        ViolationKind::HandleLeak,
                        "ObfDereferenceObject: one dereference per reference",
                        format!(
                            "device object {object:p} dereferenced more often than FltGetDiskDeviceObject referenced it"
                        ),
                    );
                    return 0;
                }
                return isize::try_from(taken.len()).unwrap_or(0);
            }
            objects.threads.get(&(object as usize)).cloned()
        };
        let Some(thread) = thread else {
            k.violation(
                ViolationKind::InvalidHandle,
                "ObfDereferenceObject: a referenced object",
                format!("{object:p} is not an object kernel-sim handed out"),
            );
            return 0;
        };
        let count = thread.references.fetch_sub(1, Ordering::AcqRel) - 1;
        if count < 0 {
            thread.references.fetch_add(1, Ordering::AcqRel);
            k.violation(
                ViolationKind::HandleLeak,
                "ObfDereferenceObject: one dereference per reference",
                format!("thread object {object:p} dereferenced more often than referenced"),
            );
            return 0;
        }
        isize::try_from(count).unwrap_or(0)
    })
}

/// `ZwClose`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn zw_close(handle: HANDLE) -> NTSTATUS {
    emulate(Routine::ZwClose, |k| {
        let closed = {
            let mut objects = lock(&k.objects);
            if let Some(HandleTarget::File(_)) = objects.get(handle as usize) {
                drop(objects);
                // "FltClose is only for closing file handles opened by FltCreateFile or
                // FltCreateFileEx" and those handles are closed by it
                // (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltclose>).
                k.violation(
                    ViolationKind::InvalidHandle,
                    "ZwClose: a handle from FltCreateFileEx is closed with FltClose",
                    format!("handle {handle:p} is a file handle from FltCreateFileEx"),
                );
                return status::INVALID_HANDLE;
            }
            objects.close(handle as usize)
        };
        if closed.is_none() {
            k.violation(
                ViolationKind::InvalidHandle,
                "ZwClose: an open handle, closed once",
                format!("handle {handle:p} is not open"),
            );
            return status::INVALID_HANDLE;
        }
        STATUS_SUCCESS
    })
}

/// `ZwWaitForSingleObject`: PASSIVE_LEVEL. Waits on the object an open handle refers to (here:
/// a system thread, signalled when it stops running driver code); `STATUS_TIMEOUT` when the
/// timeout expires. A NULL timeout waits forever, which Vigil's policy flags (rule 7).
pub(crate) extern "win64" fn zw_wait_for_single_object(
    handle: HANDLE,
    _alertable: vigil_sys::BOOLEAN,
    timeout: *mut vigil_sys::LARGE_INTEGER,
) -> NTSTATUS {
    emulate(Routine::ZwWaitForSingleObject, |k| {
        let timeout_value = (!timeout.is_null()).then(|| guest::read(timeout));
        if timeout.is_null() && k.config.flag_infinite_waits {
            k.violation(
                ViolationKind::Policy,
                "RULES.md 7: every wait has a finite timeout",
                "ZwWaitForSingleObject with a NULL Timeout (waits forever)".to_owned(),
            );
        }
        let target = lock(&k.objects).get(handle as usize);
        let Some(HandleTarget::Thread(thread)) = target else {
            k.violation(
                ViolationKind::InvalidHandle,
                "ZwWaitForSingleObject: an open handle to a waitable object",
                format!("handle {handle:p} is not an open thread handle"),
            );
            return status::INVALID_HANDLE;
        };
        let deadline = timeout_value.map(crate::ntoskrnl::event::deadline_of);
        if k.wait_until(deadline, "ZwWaitForSingleObject on a thread", || {
            thread.is_finished()
        }) {
            STATUS_SUCCESS
        } else {
            vigil_sys::STATUS_TIMEOUT
        }
    })
}

/// Waits (bounded) for every system thread of the run to finish; returns those still running.
pub(crate) fn wait_for_threads(k: &Kernel, limit: std::time::Duration) -> Vec<Arc<ThreadObject>> {
    let threads: Vec<Arc<ThreadObject>> = lock(&k.objects).threads.values().cloned().collect();
    let deadline = std::time::Instant::now() + limit;
    for thread in &threads {
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if thread.is_finished()
            && let Some(join) = lock(&thread.join).take()
        {
            let _ = join.join();
        }
    }
    threads.into_iter().filter(|t| !t.is_finished()).collect()
}

/// Reports the references on disk device objects (`FltGetDiskDeviceObject`) still held when the
/// driver is gone (`why`), each attributed to that routine and the callback that took the first
/// reference, as the row of a leak found at the call would be.
pub(crate) fn report_device_reference_leaks(k: &Kernel, why: &str) {
    let leaked: Vec<(usize, Vec<&'static str>)> =
        std::mem::take(&mut lock(&k.objects).device_references)
            .into_iter()
            .filter(|(_, taken)| !taken.is_empty())
            .collect();
    for (device, taken) in leaked {
        let previous = state::with(|s| {
            (
                s.routine.replace("FltGetDiskDeviceObject"),
                s.callback.replace(taken[0]),
            )
        });
        k.violation(
            ViolationKind::HandleLeak,
            "every reference from FltGetDiskDeviceObject is released (ObDereferenceObject) before the driver is gone",
            format!(
                "after {why}: disk device object {device:#x} still has {} reference(s) (taken in {})",
                taken.len(),
                taken.join(", ")
            ),
        );
        state::with(|s| {
            s.routine.set(previous.0);
            s.callback.set(previous.1);
        });
    }
}
