//! Process creation and exit as a driver learns of them: `PsSetCreateProcessNotifyRoutineEx`,
//! the notifications it registers for, `PsGetProcessStartKey`, `PsGetProcessExitStatus` and
//! `SeQueryInformationToken` (`TokenUser`, `TokenSessionId`), over the process table of
//! `kernel::processes`.
//!
//! From the reference pages:
//! * `PsSetCreateProcessNotifyRoutineEx`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-pssetcreateprocessnotifyroutineex>):
//!   PASSIVE_LEVEL; `STATUS_ACCESS_DENIED` when the image holding the routine was not linked
//!   with `IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY`; `STATUS_INVALID_PARAMETER` for a routine
//!   already registered or when the system's limit of routines is reached (the fault injector's
//!   failure), and for removing one that is not registered; a removal waits for the
//!   notifications in flight before it returns.
//! * `PCREATE_PROCESS_NOTIFY_ROUTINE_EX`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nc-ntddk-pcreate_process_notify_routine_ex>):
//!   called at PASSIVE_LEVEL inside a critical region (normal kernel APCs disabled; the remarks
//!   of `PsSetCreateProcessNotifyRoutineEx`) in the creating thread (here: a thread of the
//!   parent process) with
//!   a `PS_CREATE_NOTIFY_INFO`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_ps_create_notify_info>),
//!   whose `CreationStatus` the routine may set to a failure to refuse the creation (every routine then sees the refused process exit: its initial thread existed); on exit,
//!   with `CreateInfo` NULL, in the exiting process.
//! * `PsGetProcessStartKey`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-psgetprocessstartkey>):
//!   IRQL <= DISPATCH_LEVEL; a key no other process of the boot session has.
//! * `SeQueryInformationToken`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-sequeryinformationtoken>):
//!   PASSIVE_LEVEL; `TokenUser` answers a buffer the routine allocates from paged pool, which
//!   the caller frees with `ExFreePool` (a leak is reported by its tag); `TokenSessionId` writes
//!   the session id itself (a DWORD, not a pointer) into `*TokenInformation`. Failable
//!   (`STATUS_INSUFFICIENT_RESOURCES`).
//!
//! A routine still registered when its image is gone is reported at unload, and a later
//! notification calls into the unmapped image, which faults like any stale call (the report
//! names the address as unloaded memory).
//!
//! Left out: a refused creation (`CreationStatus` set to a failure) is not followed by exit
//! notifications to the routines that saw it; the `FileObject` is a zeroed `FILE_OBJECT`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use vigil_sys::{
    BOOLEAN, CLIENT_ID, FILE_OBJECT, HANDLE, IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY, NTSTATUS,
    PACCESS_TOKEN, PASSIVE_LEVEL, PCREATE_PROCESS_NOTIFY_ROUTINE_EX, PEPROCESS,
    PS_CREATE_NOTIFY_INFO, PVOID, STATUS_ACCESS_DENIED, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_SUCCESS, TokenSessionId,
    TokenUser,
};

use crate::kernel::processes::SimProcess;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest::{self, GuestAlloc, GuestUnicode};
use crate::machine::pool::AllocRequest;
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::process::{process_of, process_pointer, token_process};
use crate::report::ViolationKind;

/// Process-notify routines the system accepts (`PsSetCreateProcessNotifyRoutineEx` fails with
/// `STATUS_INVALID_PARAMETER` beyond its limit, 64 on current Windows).
const NOTIFY_LIMIT: usize = 64;

/// The tag of the buffers `SeQueryInformationToken` allocates for its caller.
const TOKEN_INFORMATION_TAG: u32 = u32::from_le_bytes(*b"SeTi");

/// Whether the mapped image holding `address` has `FORCE_INTEGRITY` in its optional header.
fn image_forces_integrity(k: &Kernel, address: usize) -> bool {
    if !k.bounds.contains(address) {
        return false;
    }
    let base = k.bounds.base;
    let pe_offset = guest::read(std::ptr::with_exposed_provenance::<u32>(base + 0x3C)) as usize;
    // Signature (4) + COFF header (20) + the optional header's DllCharacteristics (offset 70).
    let at = base + pe_offset + 4 + 20 + 70;
    let characteristics = guest::read(std::ptr::with_exposed_provenance::<u16>(at));
    characteristics & IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY != 0
}

/// `PsSetCreateProcessNotifyRoutineEx`: PASSIVE_LEVEL (see the module documentation).
pub(crate) extern "win64" fn ps_set_create_process_notify_routine_ex(
    routine: PCREATE_PROCESS_NOTIFY_ROUTINE_EX,
    remove: BOOLEAN,
) -> NTSTATUS {
    emulate(Routine::PsSetCreateProcessNotifyRoutineEx, |k| {
        let Some(routine) = routine else {
            k.parameter_violation("a NotifyRoutine", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        };
        let address = routine as usize;
        if remove != 0 {
            let removed = {
                let mut processes = lock(&k.processes);
                let before = processes.notify_routines.len();
                processes.notify_routines.retain(|&r| r != address);
                processes.notify_routines.len() != before
            };
            if !removed {
                return STATUS_INVALID_PARAMETER;
            }
            // A removal waits for the notifications in flight.
            let _ = k.wait_until(None, "PsSetCreateProcessNotifyRoutineEx (removal)", || {
                lock(&k.processes)
                    .in_flight
                    .get(&address)
                    .is_none_or(|&n| n == 0)
            });
            return STATUS_SUCCESS;
        }
        if !image_forces_integrity(k, address) {
            return STATUS_ACCESS_DENIED;
        }
        let processes = lock(&k.processes);
        if processes.notify_routines.contains(&address)
            || processes.notify_routines.len() >= NOTIFY_LIMIT
        {
            return STATUS_INVALID_PARAMETER;
        }
        drop(processes);
        if k.inject_failure(
            "PsSetCreateProcessNotifyRoutineEx",
            "STATUS_INVALID_PARAMETER (the system's limit of routines)",
        ) {
            return STATUS_INVALID_PARAMETER;
        }
        lock(&k.processes).notify_routines.push(address);
        STATUS_SUCCESS
    })
}

/// `PsGetProcessStartKey`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ps_get_process_start_key(process: PEPROCESS) -> u64 {
    emulate(Routine::PsGetProcessStartKey, |k| {
        let Some(pid) = process_of(process) else {
            k.parameter_violation(
                "a PEPROCESS",
                format!("{process:p} is not a process object"),
            );
            return 0;
        };
        let pid = u32::try_from(pid).unwrap_or(u32::MAX);
        lock(&k.processes).get_or_running(&k.config, pid).start_key
    })
}

/// `PsGetProcessExitStatus`: IRQL <= APC_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/nf-ntddk-psgetprocessexitstatus>):
/// the status the process exited with; `STATUS_PENDING` while it runs.
pub(crate) extern "win64" fn ps_get_process_exit_status(process: PEPROCESS) -> NTSTATUS {
    emulate(Routine::PsGetProcessExitStatus, |k| {
        let Some(pid) = process_of(process) else {
            k.parameter_violation(
                "a PEPROCESS",
                format!("{process:p} is not a process object"),
            );
            return STATUS_INVALID_PARAMETER;
        };
        let pid = u32::try_from(pid).unwrap_or(u32::MAX);
        lock(&k.processes)
            .get_or_running(&k.config, pid)
            .exit_status
            .unwrap_or(STATUS_PENDING)
    })
}

/// `SeQueryInformationToken`: PASSIVE_LEVEL (see the module documentation).
pub(crate) extern "win64" fn se_query_information_token(
    token: PACCESS_TOKEN,
    class: u32,
    information: *mut PVOID,
) -> NTSTATUS {
    emulate(Routine::SeQueryInformationToken, |k| {
        let Some(pid) = token_process(token) else {
            k.parameter_violation("a token", format!("{token:p} is not a token"));
            return STATUS_INVALID_PARAMETER;
        };
        if information.is_null() {
            k.parameter_violation("a TokenInformation pointer", "NULL".to_owned());
            return STATUS_INVALID_PARAMETER;
        }
        let pid = u32::try_from(pid).unwrap_or(u32::MAX);
        let process = lock(&k.processes).get_or_running(&k.config, pid);
        match class {
            c if c == TokenSessionId => {
                // The DWORD itself, in the pointer-sized slot.
                guest::write(information.cast::<u32>(), process.session_id);
                STATUS_SUCCESS
            }
            c if c == TokenUser => token_user(k, &process, information),
            other => {
                k.violation(
                    ViolationKind::NotEmulated,
                    "SeQueryInformationToken",
                    format!("class {other}: only TokenUser and TokenSessionId are emulated"),
                );
                STATUS_NOT_SUPPORTED
            }
        }
    })
}

/// A `TOKEN_USER` followed by the SID, in a pool block the caller frees with `ExFreePool`.
fn token_user(k: &Kernel, process: &SimProcess, information: *mut PVOID) -> NTSTATUS {
    if k.inject_failure("SeQueryInformationToken", "STATUS_INSUFFICIENT_RESOURCES") {
        lock(&k.pool).stats.injected_failures += 1;
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let header = size_of::<vigil_sys::TOKEN_USER>();
    let callback = state::with(|s| s.callback.get());
    let request = AllocRequest {
        size: header + process.user_sid.len(),
        tag: TOKEN_INFORMATION_TAG,
        zeroed: true,
        paged: true,
        irql: state::current_irql(),
        callback,
        during_entry: k.lifecycle.in_entry.load(Ordering::Acquire) && callback == "DriverEntry",
        align: 16,
        device_aligned: false,
    };
    let Some(block) = lock(&k.pool).allocate(&request) else {
        return STATUS_INSUFFICIENT_RESOURCES;
    };
    let sid = block + header;
    guest::write_bytes(
        std::ptr::with_exposed_provenance_mut(sid),
        &process.user_sid,
    );
    guest::write(
        std::ptr::with_exposed_provenance_mut::<vigil_sys::TOKEN_USER>(block),
        vigil_sys::TOKEN_USER {
            User: vigil_sys::SID_AND_ATTRIBUTES {
                Sid: std::ptr::with_exposed_provenance_mut(sid),
                Attributes: 0,
            },
        },
    );
    guest::write(information, std::ptr::with_exposed_provenance_mut(block));
    STATUS_SUCCESS
}

/// One registered routine, called with `(process, pid, create_info)` as the thread of process
/// `context_pid`, at PASSIVE_LEVEL inside a critical region (normal kernel APCs disabled), as
/// the routine type's reference page says the system calls it: a routine that needs APCs
/// enabled (an alertable wait, a routine documented for APCs enabled) fails here as on Windows.
///
/// The routine is referenced, as Windows references a callback block before calling through
/// it, only while it is still registered: a removal that came after the caller listed the
/// routines (and then found nothing in flight, returned, and let the driver unload) must not be
/// followed by a call into the driver.
pub(super) fn call_routine(
    k: &Arc<Kernel>,
    routine: usize,
    context_pid: u32,
    pid: u32,
    info: PVOID,
) {
    {
        let mut processes = lock(&k.processes);
        if !processes.notify_routines.contains(&routine) {
            return;
        }
        *processes.in_flight.entry(routine).or_default() += 1;
    }
    // SAFETY: an address the driver registered as a PCREATE_PROCESS_NOTIFY_ROUTINE_EX (checked
    // to lie in its image at registration); if the image is gone, the call faults at an unmapped
    // address and is reported as such, which is the point.
    let callback: unsafe extern "win64" fn(PEPROCESS, HANDLE, PVOID) =
        unsafe { std::mem::transmute(routine) };
    let process = process_pointer(pid as usize);
    let handle: HANDLE = std::ptr::without_provenance_mut(pid as usize);
    let saved = state::with(|s| {
        s.critical_regions.set(s.critical_regions.get() + 1);
        s.process_id.replace(context_pid as usize)
    });
    // SAFETY: see above; the arguments are a process object, its id and a PS_CREATE_NOTIFY_INFO
    // (or NULL) that outlives the call.
    let _ = k.call_driver("ProcessNotify", Some(PASSIVE_LEVEL), || unsafe {
        callback(process, handle, info);
    });
    state::with(|s| {
        s.process_id.set(saved);
        s.critical_regions
            .set(s.critical_regions.get().saturating_sub(1));
    });
    if let Some(n) = lock(&k.processes).in_flight.get_mut(&routine) {
        *n = n.saturating_sub(1);
    }
    k.notify_waiters();
}

/// Creates process `spec` (its start key is assigned here) and notifies every registered
/// routine, in the parent's context. `Err` with the status a routine set in
/// `CreationStatus` (the process then does not exist), or `Err(STATUS_INVALID_PARAMETER)` for
/// a pid in use.
///
/// A refused process still had its initial thread (the notification comes after that thread
/// is created and before it runs), and the exit notification comes as the last thread of a
/// process is destroyed: so every registered routine then sees the refused process exit, with
/// the refusal as its exit status. A driver must expect an exit for a process whose creation
/// it saw refused (or never saw).
pub(crate) fn create_process(k: &Arc<Kernel>, spec: SimProcess) -> Result<u64, NTSTATUS> {
    let process = lock(&k.processes)
        .create(&k.config, spec)
        .map_err(|_| STATUS_INVALID_PARAMETER)?;
    let image = GuestUnicode::new(&process.image);
    let command_line = GuestUnicode::new(&format!("\"{}\"", process.image));
    let file_object = GuestAlloc::for_type::<FILE_OBJECT>(0);
    let info = GuestAlloc::for_type::<PS_CREATE_NOTIFY_INFO>(0);
    guest::write(
        info.as_ptr::<PS_CREATE_NOTIFY_INFO>(),
        PS_CREATE_NOTIFY_INFO {
            Size: size_of::<PS_CREATE_NOTIFY_INFO>(),
            Flags: 1,
            ParentProcessId: std::ptr::without_provenance_mut(process.parent_pid as usize),
            CreatingThreadId: CLIENT_ID {
                UniqueProcess: std::ptr::without_provenance_mut(process.parent_pid as usize),
                UniqueThread: std::ptr::without_provenance_mut(crate::kernel::ensure_thread_id()),
            },
            FileObject: file_object.as_ptr(),
            ImageFileName: image.as_ptr(),
            CommandLine: command_line.as_ptr(),
            CreationStatus: STATUS_SUCCESS,
        },
    );
    let routines = lock(&k.processes).notify_routines.clone();
    for routine in routines {
        call_routine(k, routine, process.parent_pid, process.pid, info.as_ptr());
        let status = guest::read(info.as_ptr::<PS_CREATE_NOTIFY_INFO>()).CreationStatus;
        if status < 0 {
            lock(&k.processes).set_exit_status(process.pid, status);
            notify_exit(k, process.pid);
            let _ = lock(&k.processes).exit(&k.config, process.pid);
            return Err(status);
        }
    }
    Ok(process.start_key)
}

/// Process `pid` exits: every registered routine is notified (`CreateInfo` NULL) in its context,
/// then the pid is free for reuse. `false` when no such process runs.
pub(crate) fn exit_process(k: &Arc<Kernel>, pid: u32, status: NTSTATUS) -> bool {
    if !lock(&k.processes).is_live(&k.config, pid) {
        return false;
    }
    lock(&k.processes).set_exit_status(pid, status);
    notify_exit(k, pid);
    lock(&k.processes).exit(&k.config, pid).is_some()
}

/// Every registered routine sees process `pid` exit (`CreateInfo` NULL), in its context.
fn notify_exit(k: &Arc<Kernel>, pid: u32) {
    let routines = lock(&k.processes).notify_routines.clone();
    for routine in routines {
        call_routine(k, routine, pid, pid, std::ptr::null_mut());
    }
}

/// The driver is gone: a notify routine it left registered is a callback into an unloaded
/// image (Windows stops with a bug check when the next process starts or exits).
pub(crate) fn report_registered_at_unload(k: &Kernel, why: &str) {
    let left: Vec<usize> = lock(&k.processes)
        .notify_routines
        .iter()
        .copied()
        .filter(|&r| k.bounds.contains(r))
        .collect();
    for routine in left {
        k.violation(
            ViolationKind::ResourceLeak,
            "PsSetCreateProcessNotifyRoutineEx: the routine is removed (Remove = TRUE) before the driver unloads",
            format!(
                "after {why}: process-notify routine {} is still registered in the unloaded image",
                k.describe_code(routine)
            ),
        );
    }
}
