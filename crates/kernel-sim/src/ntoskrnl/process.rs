//! Who a process is: `IoGetCurrentProcess`, `ZwQueryInformationProcess` (its image name and parent),
//! `PsReferencePrimaryToken`, `SeTokenIsAdmin` and `PsDereferencePrimaryToken`, answered from
//! [`SimConfig::processes`](crate::SimConfig::processes) for the process the calling thread runs
//! in (the requestor of synthetic I/O, the connecting process in a port's connect callback).
//!
//! `EPROCESS` and token pointers are opaque to drivers: kernel-sim hands out non-canonical
//! addresses that encode the process id (touching one faults). Token references are counted per
//! run: a dereference of a token with no reference left is an over-release, and a reference
//! still held when the driver is gone is a leak.

use std::collections::HashMap;
use std::sync::Mutex;

use vigil_sys::{
    BOOLEAN, HANDLE, NTSTATUS, PACCESS_TOKEN, PEPROCESS, PROCESS_BASIC_INFORMATION, PVOID,
    ProcessBasicInformation, ProcessImageFileName, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::kernel::{Kernel, emulate};
use crate::machine::guest;
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// Tag bits of the opaque `EPROCESS` pointers (non-canonical: a dereference faults).
const PROCESS_TAG: usize = 0xA5A5_0000_0000_0000;
/// Tag bits of the opaque token pointers.
const TOKEN_TAG: usize = 0xA6A6_0000_0000_0000;
const TAG_MASK: usize = 0xFFFF_0000_0000_0000;

/// Token references held, by (kernel, process id).
static TOKEN_REFERENCES: Mutex<Option<HashMap<(usize, usize), i64>>> = Mutex::new(None);

/// The image and admin flag of process `pid` (see the module documentation and
/// `kernel::processes`).
pub(crate) fn process_identity(k: &Kernel, pid: usize) -> (String, bool) {
    let pid = u32::try_from(pid).unwrap_or(u32::MAX);
    let p = crate::kernel::lock(&k.processes).get_or_running(&k.config, pid);
    (p.image, p.admin)
}

/// The opaque `EPROCESS` pointer of process `pid`.
pub(crate) fn process_pointer(pid: usize) -> PEPROCESS {
    std::ptr::without_provenance_mut(PROCESS_TAG | (pid << 4))
}

/// The pid a `PEPROCESS` from [`process_pointer`] encodes.
pub(crate) fn process_of(pointer: PEPROCESS) -> Option<usize> {
    decode(pointer.addr(), PROCESS_TAG)
}

/// The pid whose primary token `token` is.
pub(crate) fn token_process(token: PACCESS_TOKEN) -> Option<usize> {
    decode(token.addr(), TOKEN_TAG)
}

fn current_pid() -> usize {
    state::with(|s| s.process_id.get())
}

fn decode(pointer: usize, tag: usize) -> Option<usize> {
    (pointer & TAG_MASK == tag).then_some((pointer & !TAG_MASK) >> 4)
}

/// `IoGetCurrentProcess`: IRQL <= DISPATCH_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iogetcurrentprocess>).
pub(crate) extern "win64" fn io_get_current_process() -> PEPROCESS {
    emulate(Routine::IoGetCurrentProcess, |_| {
        process_pointer(current_pid())
    })
}

/// `PsReferencePrimaryToken`: PASSIVE_LEVEL; every call is paired with a dereference
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-psreferenceprimarytoken>).
pub(crate) extern "win64" fn ps_reference_primary_token(process: PEPROCESS) -> PACCESS_TOKEN {
    emulate(Routine::PsReferencePrimaryToken, |k| {
        let Some(pid) = decode(process.addr(), PROCESS_TAG) else {
            k.parameter_violation(
                "PsReferencePrimaryToken: a PEPROCESS",
                format!("{process:p} is not a process object"),
            );
            return std::ptr::null_mut();
        };
        let key = (std::ptr::from_ref(k).addr(), pid);
        *TOKEN_REFERENCES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default() += 1;
        std::ptr::without_provenance_mut(TOKEN_TAG | (pid << 4))
    })
}

/// `PsDereferencePrimaryToken`: IRQL < DISPATCH_LEVEL
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-psdereferenceprimarytoken>).
pub(crate) extern "win64" fn ps_dereference_primary_token(token: PACCESS_TOKEN) {
    emulate(Routine::PsDereferencePrimaryToken, |k| {
        let Some(pid) = decode(token.addr(), TOKEN_TAG) else {
            k.parameter_violation(
                "PsDereferencePrimaryToken: a token from PsReferencePrimaryToken",
                format!("{token:p} is not a token"),
            );
            return;
        };
        let key = (std::ptr::from_ref(k).addr(), pid);
        let left = {
            let mut table = TOKEN_REFERENCES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = table
                .get_or_insert_with(HashMap::new)
                .entry(key)
                .or_default();
            *count -= 1;
            *count
        };
        if left < 0 {
            k.violation(
                ViolationKind::OverRelease,
                "PsDereferencePrimaryToken: once per PsReferencePrimaryToken",
                format!("the token of process {pid} has no reference left"),
            );
        }
    });
}

/// `SeTokenIsAdmin`: PASSIVE_LEVEL; TRUE when the token holds the local Administrators group
/// (`LocalSystem`'s does)
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-setokenisadmin>).
pub(crate) extern "win64" fn se_token_is_admin(token: PACCESS_TOKEN) -> BOOLEAN {
    emulate(Routine::SeTokenIsAdmin, |k| {
        let Some(pid) = decode(token.addr(), TOKEN_TAG) else {
            k.parameter_violation(
                "SeTokenIsAdmin: a token",
                format!("{token:p} is not a token"),
            );
            return 0;
        };
        BOOLEAN::from(process_identity(k, pid).1)
    })
}

/// `ZwQueryInformationProcess`: PASSIVE_LEVEL
/// (<https://learn.microsoft.com/windows/win32/procthread/zwqueryinformationprocess>). Emulated
/// for the current process (`NtCurrentProcess()`) and two classes:
/// - `ProcessImageFileName`: the buffer gets a `UNICODE_STRING` whose `Buffer` points just
///   after it, at the image's NT path; a buffer too small gets `STATUS_INFO_LENGTH_MISMATCH`
///   and the needed size in `ReturnLength`;
/// - `ProcessBasicInformation`: a `PROCESS_BASIC_INFORMATION` (the length must be its size
///   exactly, else `STATUS_INFO_LENGTH_MISMATCH`): `STATUS_PENDING` as the exit status of a
///   running process, no PEB (kernel-sim has no user address space), the process's id and its
///   parent's.
pub(crate) extern "win64" fn zw_query_information_process(
    handle: HANDLE,
    class: u32,
    information: PVOID,
    length: u32,
    returned: *mut u32,
) -> NTSTATUS {
    emulate(Routine::ZwQueryInformationProcess, |k| {
        if handle.addr() != usize::MAX
            || (class != ProcessImageFileName && class != ProcessBasicInformation)
        {
            k.violation(
                ViolationKind::NotEmulated,
                "ZwQueryInformationProcess",
                format!(
                    "handle {handle:p}, class {class}: only NtCurrentProcess() with ProcessImageFileName or ProcessBasicInformation is emulated"
                ),
            );
            return STATUS_NOT_SUPPORTED;
        }
        if information.is_null() && length > 0 {
            k.parameter_violation(
                "ZwQueryInformationProcess: a ProcessInformation buffer of ProcessInformationLength bytes",
                "a NULL buffer".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if class == ProcessBasicInformation {
            basic_information(k, information, length, returned)
        } else {
            image_file_name(k, information, length, returned)
        }
    })
}

/// `ProcessImageFileName` of the current process (see [`zw_query_information_process`]).
fn image_file_name(k: &Kernel, information: PVOID, length: u32, returned: *mut u32) -> NTSTATUS {
    let (image, _) = process_identity(k, current_pid());
    let units: Vec<u16> = image.encode_utf16().collect();
    let header = size_of::<UNICODE_STRING>();
    let needed = header + (units.len() + 1) * 2;
    if !returned.is_null() {
        guest::write(returned, u32::try_from(needed).unwrap_or(u32::MAX));
    }
    if (length as usize) < needed {
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let text = information.addr() + header;
    let bytes: Vec<u8> = units
        .iter()
        .chain(std::iter::once(&0))
        .flat_map(|u| u.to_le_bytes())
        .collect();
    guest::write_bytes(std::ptr::with_exposed_provenance_mut::<u8>(text), &bytes);
    let name_bytes = u16::try_from(units.len() * 2).unwrap_or(u16::MAX);
    guest::write(
        information.cast::<UNICODE_STRING>(),
        UNICODE_STRING {
            Length: name_bytes,
            MaximumLength: name_bytes.saturating_add(2),
            Buffer: std::ptr::with_exposed_provenance_mut(text),
        },
    );
    STATUS_SUCCESS
}

/// `ProcessBasicInformation` of the current process (see [`zw_query_information_process`]).
fn basic_information(k: &Kernel, information: PVOID, length: u32, returned: *mut u32) -> NTSTATUS {
    const SIZE: usize = size_of::<PROCESS_BASIC_INFORMATION>();
    if length as usize != SIZE {
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let pid = current_pid();
    let parent = {
        let pid = u32::try_from(pid).unwrap_or(u32::MAX);
        crate::kernel::lock(&k.processes)
            .get_or_running(&k.config, pid)
            .parent_pid
    };
    guest::write(
        information.cast::<PROCESS_BASIC_INFORMATION>(),
        PROCESS_BASIC_INFORMATION {
            ExitStatus: STATUS_PENDING,
            PebBaseAddress: std::ptr::null_mut(),
            AffinityMask: 0b11,
            BasePriority: 8,
            UniqueProcessId: pid,
            InheritedFromUniqueProcessId: parent as usize,
        },
    );
    if !returned.is_null() {
        guest::write(returned, u32::try_from(SIZE).unwrap_or(u32::MAX));
    }
    STATUS_SUCCESS
}

/// Reports the token references the driver still holds (it is gone), and forgets them.
pub(crate) fn report_token_leaks(k: &Kernel, why: &str) {
    let kernel = std::ptr::from_ref(k).addr();
    let held: Vec<(usize, i64)> = {
        let mut table = TOKEN_REFERENCES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let table = table.get_or_insert_with(HashMap::new);
        let held = table
            .iter()
            .filter(|((owner, _), count)| *owner == kernel && **count > 0)
            .map(|((_, pid), count)| (*pid, *count))
            .collect();
        table.retain(|(owner, _), _| *owner != kernel);
        held
    };
    for (pid, count) in held {
        k.violation(
            ViolationKind::ReferenceLeak,
            "PsReferencePrimaryToken: every reference is released with PsDereferencePrimaryToken",
            format!("after {why}: {count} reference(s) to the token of process {pid}"),
        );
    }
}
