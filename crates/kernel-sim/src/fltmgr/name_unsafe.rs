//! `FltGetFileNameInformationUnsafe`: a name query for a file object outside an I/O operation on
//! it (no callback data), from its reference page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetfilenameinformationunsafe>).
//!
//! - IRQL <= APC_LEVEL; `FileObject` and `FileNameInformation` required (NULL: a violation,
//!   `STATUS_INVALID_PARAMETER`, the status the page gives for a bad `FileNameInformation`);
//!   `NameOptions` one format and one query method, as for `FltGetFileNameInformation`.
//! - The file object must be currently open: one that is not (not yet opened, as in its own
//!   pre-create, or unknown) is `STATUS_FLT_INVALID_NAME_REQUEST`, the documented status, and a
//!   violation of the parameter's rule.
//! - `Instance` may be NULL only while the filter has no instance yet (DriverEntry); otherwise
//!   NULL is reserved for the system (a violation). A non-NULL one must be an instance.
//! - Unlike `FltGetFileNameInformation`, the routine does not protect its caller from the
//!   deadlocks a file-system query can cause, so the page lists where the caller must not query
//!   the file system. Each is reported when the query may reach the file system (any method but
//!   `FLT_FILE_NAME_QUERY_CACHE_ONLY`): in the paging I/O path (a callback of a paging
//!   operation); after the file object's `IRP_MJ_CLEANUP` has completed; in a pre- or post-
//!   callback of `IRP_MJ_ACQUIRE_FOR_CC_FLUSH`, `IRP_MJ_ACQUIRE_FOR_MOD_WRITE`,
//!   `IRP_MJ_RELEASE_FOR_CC_FLUSH`, `IRP_MJ_RELEASE_FOR_MOD_WRITE` or
//!   `IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION`; in a post-callback of
//!   `IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION`. (The page's first case, a thread whose
//!   `TopLevelIrp` is set, is covered only as far as kernel-sim sets one: for paging I/O.)
//! - Then the query is `FltGetFileNameInformation`'s: the name cache, the cache-only and APC
//!   rules, fault injection (`STATUS_INSUFFICIENT_RESOURCES`), a new referenced structure the
//!   caller releases with `FltReleaseFileNameInformation`. Short names are not emulated
//!   (`STATUS_NOT_SUPPORTED`, as there).

use vigil_sys::{
    APC_LEVEL, FILE_OBJECT, FLT_CALLBACK_DATA, FLT_FILE_NAME_OPTIONS, FLT_FILE_NAME_SHORT,
    IRP_PAGING_IO, NTSTATUS, PFLT_FILE_NAME_INFORMATION, PFLT_INSTANCE, STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::InstanceState;
use crate::fltmgr::names::{STATUS_FLT_INVALID_NAME_REQUEST, check_options, query};
use crate::kernel::{Kernel, emulate};
use crate::machine::{guest, state};
use crate::report::ViolationKind;

/// `FLT_FILE_NAME_QUERY_CACHE_ONLY`: never reaches the file system.
const QUERY_CACHE_ONLY: u32 = 0x0200;

/// The pseudo-operations of the page's list (fltkernel.h: `((UCHAR)-1)`...).
const ACQUIRE_FOR_SECTION_SYNCHRONIZATION: u8 = 0xFF;
const RELEASE_FOR_SECTION_SYNCHRONIZATION: u8 = 0xFE;
const ACQUIRE_FOR_MOD_WRITE: u8 = 0xFD;
const RELEASE_FOR_MOD_WRITE: u8 = 0xFC;
const ACQUIRE_FOR_CC_FLUSH: u8 = 0xFB;
const RELEASE_FOR_CC_FLUSH: u8 = 0xFA;

/// The rule a query from here breaks, if it does.
const DEADLOCK_RULE: &str = "FltGetFileNameInformationUnsafe: not where a file-system name query can deadlock (paging I/O, after cleanup, the acquire/release pseudo-operations)";

/// Where the thread is, if the page forbids a file-system query from there.
fn unsafe_place(file: &FileState) -> Option<String> {
    let operation = state::with(|s| s.operation.get());
    if operation != 0 {
        let data: FLT_CALLBACK_DATA = guest::read(operation as *const FLT_CALLBACK_DATA);
        let iopb = guest::read(data.Iopb);
        let callback = state::with(|s| s.callback.get());
        let post = callback.starts_with("Post");
        if iopb.IrpFlags & IRP_PAGING_IO != 0 {
            return Some(format!("in {callback} of a paging I/O operation"));
        }
        let forbidden = match iopb.MajorFunction {
            ACQUIRE_FOR_CC_FLUSH
            | ACQUIRE_FOR_MOD_WRITE
            | RELEASE_FOR_CC_FLUSH
            | RELEASE_FOR_MOD_WRITE
            | RELEASE_FOR_SECTION_SYNCHRONIZATION => true,
            ACQUIRE_FOR_SECTION_SYNCHRONIZATION => post,
            _ => false,
        };
        if forbidden {
            return Some(format!(
                "in {callback} of pseudo-operation {:#04x}",
                iopb.MajorFunction
            ));
        }
    }
    file.cleaned_up
        .then(|| "after the file object's IRP_MJ_CLEANUP completed".to_owned())
}

/// What the routine needs to know of the file object.
struct FileState {
    open: bool,
    cleaned_up: bool,
}

/// `FltGetFileNameInformationUnsafe`: IRQL <= APC_LEVEL. Failable:
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_get_file_name_information_unsafe(
    file: *mut FILE_OBJECT,
    instance: PFLT_INSTANCE,
    options: FLT_FILE_NAME_OPTIONS,
    out: *mut PFLT_FILE_NAME_INFORMATION,
) -> NTSTATUS {
    emulate(Routine::FltGetFileNameInformationUnsafe, |k| {
        if out.is_null() || file.is_null() {
            k.parameter_violation(
                "FileObject and FileNameInformation are required",
                "a NULL pointer".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        guest::write(out, std::ptr::null_mut());
        if state::current_irql() > APC_LEVEL {
            // Reported by the IRQL check.
            return STATUS_FLT_INVALID_NAME_REQUEST;
        }
        let format = match check_options(k, "FltGetFileNameInformationUnsafe", options, true) {
            Ok(format) => format,
            Err(status) => return status,
        };
        if let Err(status) = check_instance(k, instance as usize) {
            return status;
        }
        let state = flt_read(k).io.files.with(file as usize, |record| {
            record.map(|r| FileState {
                open: r.open,
                cleaned_up: r.cleaned_up,
            })
        });
        let Some(state) = state.filter(|s| s.open) else {
            k.parameter_violation(
                "a FileObject that is currently open",
                format!("{file:p} is not an open file object (not yet opened, as in its pre-create, or unknown)"),
            );
            return STATUS_FLT_INVALID_NAME_REQUEST;
        };
        if options & 0xF00 != QUERY_CACHE_ONLY
            && let Some(place) = unsafe_place(&state)
        {
            k.violation(
                ViolationKind::CallbackContract,
                DEADLOCK_RULE,
                format!("a name query for {file:p} that may reach the file system {place}"),
            );
        }
        if format == FLT_FILE_NAME_SHORT {
            return STATUS_NOT_SUPPORTED;
        }
        query(
            k,
            "FltGetFileNameInformationUnsafe",
            file as usize,
            options,
            format,
            out,
        )
    })
}

/// A NULL `Instance` only while the filter has no instance; otherwise an instance.
fn check_instance(k: &Kernel, instance: usize) -> Result<(), NTSTATUS> {
    let flt = flt_read(k);
    if instance == 0 {
        let has_instance = flt.io.volumes.iter().any(|v| {
            v.instance
                .as_ref()
                .is_some_and(|i| i.state == InstanceState::Live)
        });
        drop(flt);
        if has_instance {
            k.parameter_violation(
                "a NULL Instance only before the filter has an instance (otherwise reserved for the system)",
                "Instance is NULL and the filter has an instance".to_owned(),
            );
        }
        return Ok(());
    }
    if flt.io.instance(instance).is_none() {
        drop(flt);
        k.parameter_violation("an Instance", format!("{instance:#x} is not an instance"));
        return Err(STATUS_INVALID_PARAMETER);
    }
    Ok(())
}
