//! I/O a filter builds itself in a callback data: `FltAllocateCallbackData`,
//! `FltPerformSynchronousIo`, `FltPerformAsynchronousIo` (its completion routine called on
//! another thread), `FltCancelIo`, `FltIsIoCanceled`, `FltReuseCallbackData`,
//! `FltFreeCallbackData`; the wait in
//! `FltUnregisterFilter` for the filter's asynchronous I/O ([`drain_async_io`]) and the reports
//! when the driver is gone ([`report_in_flight`], [`driver_gone`]).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltallocatecallbackdata>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltperformsynchronousio>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltperformasynchronousio>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_completed_async_io_callback>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreusecallbackdata>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltfreecallbackdata>):
//! - allocate: IRQL <= APC_LEVEL; `Instance` required, `FileObject` optional;
//!   `STATUS_INSUFFICIENT_RESOURCES` when pool is short (failable); the I/O goes only to the
//!   instances below `Instance` and the file system, never to the filter's own callbacks; only
//!   IRP-based operations; the caller frees the callback data with `FltFreeCallbackData`;
//! - synchronous: IRQL <= APC_LEVEL; the callback data is the filter's again when it returns
//!   (to free, reuse or reissue); the operation's status is in `IoStatus`;
//! - asynchronous: PASSIVE_LEVEL, or <= APC_LEVEL for paging I/O (`IRP_PAGING_IO` in
//!   `IrpFlags`); `CallbackRoutine` required; `IRP_MJ_CREATE` cannot be asynchronous
//!   (`STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST`); the routine is called in every case, the
//!   failed ones included, in an arbitrary thread at IRQL <= DISPATCH_LEVEL (kernel-sim: a
//!   thread of its own, at DISPATCH_LEVEL with `IoConfig::post_ops_at_dispatch`, else
//!   PASSIVE_LEVEL, after `SimConfig::work_item_latency`); `STATUS_PENDING` says it was
//!   started (kernel-sim always completes later, so never answers `STATUS_SUCCESS`, which
//!   says the routine was called already; nor `STATUS_FLT_IO_COMPLETE`, which needs a filter
//!   below the caller's instance); the callback data may be freed or reused only once the routine has been called
//!   (a free before is reported, and kernel-sim keeps the memory so that the completion does
//!   not corrupt the run);
//! - reuse: IRQL <= APC_LEVEL; a callback data from `FltAllocateCallbackData` whose I/O is
//!   done; everything is reinitialized but the parameter block's `TargetInstance` and
//!   `TargetFileObject`;
//! - free: IRQL <= DISPATCH_LEVEL; only a callback data from `FltAllocateCallbackData`, once;
//! - cancel (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcancelio>,
//!   <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltisiocanceled>):
//!   `FltCancelIo` at IRQL <= DISPATCH_LEVEL by the filter that issued the I/O, TRUE only when
//!   the I/O was canceled (the model's file systems are cancelable until they start on it),
//!   FALSE when already canceled or with no cancel routine (the cancel bit is set all the
//!   same); `FltIsIoCanceled` at any IRQL, for IRP-based operations only.
//!
//! Operations performed: `IRP_MJ_READ` and `IRP_MJ_WRITE` (sizes only: data read is zeroes),
//! `IRP_MJ_QUERY_INFORMATION` ([`crate::fltmgr::query_information`]),
//! `IRP_MJ_SET_INFORMATION` ([`crate::fltmgr::set_information`]) and
//! `IRP_MJ_FILE_SYSTEM_CONTROL` ([`crate::fltmgr::fs_control`]), each through the path the
//! dedicated routine takes. Others (a synchronous create among them) are reported as not
//! emulated. The synchronous and asynchronous routines are failable: the IRP Filter Manager
//! allocates (`STATUS_INSUFFICIENT_RESOURCES` in `IoStatus`, and through the completion routine).
//!
//! Filter Manager cannot tear down an instance with I/O in flight on it, so an instance's
//! teardown (after `InstanceTeardownStart`, the drain of its operations) and `FltUnregisterFilter`
//! (first) wait, at most `SimConfig::pend_limit`, for the filter's asynchronous I/O to complete,
//! reporting what does not. Asynchronous I/O still in flight when the driver is gone (issued
//! after that drain) is reported against the driver function that issued it
//! ([`report_in_flight`]), callback data still allocated against the one that allocated it.

use std::mem::offset_of;

// Fx hashing: kernel-sim's own addresses as keys.
use rustc_hash::FxHashMap as HashMap;
use vigil_sys::{
    DISPATCH_LEVEL, FILE_OBJECT, FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK,
    FLT_PARAMETERS_SET_FILE_INFORMATION, FLT_PARAMETERS_WRITE, FLTFL_CALLBACK_DATA_GENERATED_IO,
    FLTFL_CALLBACK_DATA_IRP_OPERATION, FLTFL_IO_OPERATION_NON_CACHED, IO_STATUS_BLOCK,
    IRP_MJ_CREATE, IRP_MJ_READ, IRP_MJ_SET_INFORMATION, IRP_MJ_WRITE, IRP_NOCACHE, IRP_PAGING_IO,
    KernelMode, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL, NTSTATUS, PASSIVE_LEVEL,
    PFLT_INSTANCE, PVOID, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_NOT_IMPLEMENTED, STATUS_PENDING, STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::files::Retired;
use crate::fltmgr::filter_io::{instance_volume, open_file, read_below};
use crate::fltmgr::fs_control::{ControlBuffers, control_below};
use crate::fltmgr::query_information::query_below;
use crate::fltmgr::set_information::set_below;
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::{Kernel, allocate_thread_id, emulate};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::thread::SYSTEM_PROCESS_ID;
use crate::report::ViolationKind;

/// `IRP_MJ_QUERY_INFORMATION`.
pub(crate) const IRP_MJ_QUERY_INFORMATION: u8 = 0x05;
/// `IRP_MJ_FILE_SYSTEM_CONTROL`.
pub(crate) const IRP_MJ_FILE_SYSTEM_CONTROL: u8 = 0x0d;
/// `IRP_MN_USER_FS_REQUEST`: an `FSCTL_*` request.
const IRP_MN_USER_FS_REQUEST: u8 = 0x00;
/// `IRP_MN_KERNEL_CALL`: an `FSCTL_*` request from kernel mode.
const IRP_MN_KERNEL_CALL: u8 = 0x04;
/// `STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST`.
pub(crate) const STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST: NTSTATUS = 0xC01C_0003_u32.cast_signed();
/// `STATUS_CANCELLED`: what a canceled I/O completes with.
pub(crate) const STATUS_CANCELLED: NTSTATUS = 0xC000_0120_u32.cast_signed();
/// `FILE_USE_FILE_POINTER_POSITION` as a `ByteOffset` (`HighPart` -1): the file object's
/// current offset.
const USE_FILE_POINTER_POSITION: i64 = -2;
/// Who freed Filter Manager's own callback data (for a stale use of it).
const FREED_BY_FLTMGR: &str = "Filter Manager, once FltReadFile's CallbackRoutine returned";
/// The entry point name under which the completion routine runs in reports.
const COMPLETION_ENTRY: &str = "CompletedAsyncIoCallback";

/// `PFLT_COMPLETED_ASYNC_IO_CALLBACK`.
pub(crate) type CompletedAsyncIo = unsafe extern "win64" fn(*mut FLT_CALLBACK_DATA, PVOID);

/// Where a callback data is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataState {
    /// Allocated, its I/O (if any) done: the filter's to fill, perform, reuse or free.
    Idle,
    /// `FltPerformSynchronousIo` runs it.
    Synchronous,
    /// Its asynchronous I/O is in flight; its completion routine not called yet.
    Outstanding,
    /// Its completion routine runs (it may free or reuse the callback data).
    Completing,
}

/// A callback data from `FltAllocateCallbackData`.
struct DataRecord {
    /// The `FLT_CALLBACK_DATA` and, after it, its `FLT_IO_PARAMETER_BLOCK`.
    memory: GuestAlloc,
    state: DataState,
    /// The driver entry point that allocated it.
    allocated_in: &'static str,
    /// The driver entry point that last issued its asynchronous I/O.
    issued_in: &'static str,
    /// The target instance of its last asynchronous I/O.
    instance: usize,
    /// Freed (in that entry point) while its asynchronous I/O was outstanding: reported, and
    /// kept until the completion is done with it.
    freed_early: Option<&'static str>,
    /// Its I/O was canceled (`FltCancelIo`): the IRP's cancel bit.
    canceled: bool,
    /// Its asynchronous I/O reached the file system (no longer cancelable: the model's file
    /// systems set no cancel routine while they work).
    performing: bool,
}

/// The callback data of a run.
pub(crate) struct CallbackDataTable {
    live: HashMap<usize, DataRecord>,
    /// Filter Manager's own callback data of asynchronous `FltReadFile` calls in flight: the
    /// entry point that issued each and its instance. Freed when the completion routine returns.
    fltmgr_owned: HashMap<usize, (GuestAlloc, &'static str, usize)>,
    /// Freed callback data (and where), kept a while so that a stale pointer is recognized.
    freed: Retired<(GuestAlloc, &'static str)>,
}

impl Default for CallbackDataTable {
    fn default() -> Self {
        Self {
            live: HashMap::default(),
            fltmgr_owned: HashMap::default(),
            freed: Retired::new(4096),
        }
    }
}

impl CallbackDataTable {
    /// Asynchronous I/O in flight (issued, its completion routine not returned), on
    /// `instance` or on any: `(callback data, entry point that issued it)`.
    fn in_flight(&self, instance: Option<usize>) -> Vec<(usize, &'static str)> {
        let owned = self
            .fltmgr_owned
            .iter()
            .filter(|(_, (_, _, on))| instance.is_none_or(|i| i == *on))
            .map(|(&a, (_, issued_in, _))| (a, *issued_in));
        self.live
            .iter()
            .filter(|(_, r)| matches!(r.state, DataState::Outstanding | DataState::Completing))
            .filter(|(_, r)| instance.is_none_or(|i| i == r.instance))
            .map(|(&a, r)| (a, r.issued_in))
            .chain(owned)
            .collect()
    }

    /// What is wrong with using `data` for a new operation (`None`: it may be used).
    fn misuse(&self, data: usize) -> Option<String> {
        match self.live.get(&data) {
            Some(r) if r.freed_early.is_some() => Some(format!(
                "{data:#x} was freed in {}",
                r.freed_early.unwrap_or_default()
            )),
            Some(r) => match r.state {
                DataState::Idle | DataState::Completing => None,
                DataState::Synchronous => Some(format!("{data:#x} is in synchronous I/O")),
                DataState::Outstanding => Some(format!(
                    "{data:#x} has asynchronous I/O outstanding (issued in {})",
                    r.issued_in
                )),
            },
            None => Some(match self.freed.get(data) {
                Some((_, freed_in)) => format!("{data:#x} was freed in {freed_in}"),
                None => format!("{data:#x} is not from FltAllocateCallbackData"),
            }),
        }
    }
}

/// The `FLT_IO_PARAMETER_BLOCK` kernel-sim placed after the callback data at `data`.
fn iopb_of(data: usize) -> *mut FLT_IO_PARAMETER_BLOCK {
    (data + size_of::<FLT_CALLBACK_DATA>()) as *mut FLT_IO_PARAMETER_BLOCK
}

/// Writes the operation's final status and information into the callback data.
fn set_io_status(data: usize, status: NTSTATUS, information: usize) {
    guest::write(
        (data + offset_of!(FLT_CALLBACK_DATA, IoStatus)) as *mut IO_STATUS_BLOCK,
        IO_STATUS_BLOCK {
            Status: status,
            _Pad: 0,
            Information: information,
        },
    );
}

/// Runs `record` with the routine and driver entry point in progress set to `routine` and
/// `callback` (for work done, or reported, on a thread of kernel-sim's own).
fn attributed<R>(routine: &'static str, callback: &'static str, record: impl FnOnce() -> R) -> R {
    let previous = state::with(|s| (s.routine.replace(routine), s.callback.replace(callback)));
    let result = record();
    state::with(|s| {
        s.routine.set(previous.0);
        s.callback.set(previous.1);
    });
    result
}

/// `FltAllocateCallbackData`: IRQL <= APC_LEVEL. Failable.
pub(crate) extern "win64" fn flt_allocate_callback_data(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    data_out: *mut *mut FLT_CALLBACK_DATA,
) -> NTSTATUS {
    emulate(Routine::FltAllocateCallbackData, |k| {
        if instance.is_null() || data_out.is_null() {
            k.parameter_violation(
                "Instance and RetNewCallbackData (required, not NULL)",
                format!("{instance:p}, {data_out:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        guest::write(data_out, std::ptr::null_mut());
        if let Err(status) = instance_volume(k, instance as usize) {
            return status;
        }
        // `FileObject` is checked when the operation is performed: a file object the filter
        // still references after closing its handle is a valid argument here.
        if k.inject_failure("FltAllocateCallbackData", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let memory = GuestAlloc::zeroed(
            size_of::<FLT_CALLBACK_DATA>() + size_of::<FLT_IO_PARAMETER_BLOCK>(),
        );
        let data = memory.address();
        initialize(data, instance, file_object);
        let allocated_in = state::with(|s| s.callback.get());
        flt_write(k).io.callback_data.live.insert(
            data,
            DataRecord {
                memory,
                state: DataState::Idle,
                allocated_in,
                issued_in: "",
                instance: 0,
                freed_early: None,
                canceled: false,
                performing: false,
            },
        );
        guest::write(data_out, data as *mut FLT_CALLBACK_DATA);
        STATUS_SUCCESS
    })
}

/// Fills a fresh (or reused) callback data: an IRP-based operation the filter generates, its
/// parameter block empty but for its target.
fn initialize(data: usize, instance: PFLT_INSTANCE, file_object: *mut FILE_OBJECT) {
    let iopb = iopb_of(data);
    // SAFETY: FLT_IO_PARAMETER_BLOCK is plain data (integers, raw pointers, a union of them):
    // all zeroes is a valid value.
    let mut block: FLT_IO_PARAMETER_BLOCK = unsafe { std::mem::zeroed() };
    block.TargetInstance = instance;
    block.TargetFileObject = file_object;
    guest::write(iopb, block);
    // SAFETY: as above, FLT_CALLBACK_DATA is plain data.
    let mut value: FLT_CALLBACK_DATA = unsafe { std::mem::zeroed() };
    value.Flags = FLTFL_CALLBACK_DATA_IRP_OPERATION | FLTFL_CALLBACK_DATA_GENERATED_IO;
    value.Iopb = iopb;
    value.RequestorMode = KernelMode;
    guest::write(data as *mut FLT_CALLBACK_DATA, value);
}

/// Performs the operation the filter described in the callback data at `data`, below its
/// target instance, and sets its `IoStatus`.
fn perform(k: &Kernel, data: usize) {
    let iopb = guest::read(iopb_of(data));
    let target = (iopb.TargetInstance as usize, iopb.TargetFileObject as usize);
    if target.1 == 0 {
        k.parameter_violation(
            "Iopb->TargetFileObject, the file object of the operation",
            "TargetFileObject is NULL".to_owned(),
        );
        set_io_status(data, STATUS_INVALID_PARAMETER, 0);
        return;
    }
    let (status, information) = match iopb.MajorFunction {
        IRP_MJ_READ | IRP_MJ_WRITE => {
            // SAFETY: the union's member for reads and writes (`Read` has `Write`'s layout:
            // `Length`, `Key`, `ByteOffset`, buffer, `MdlAddress`); any bits are valid.
            let mut p: FLT_PARAMETERS_WRITE = unsafe { iopb.Parameters.Write };
            let offset = (p.ByteOffset != USE_FILE_POINTER_POSITION).then_some(p.ByteOffset);
            if !p.MdlAddress.is_null() {
                // The file system transfers through the MDL when there is one: its system
                // address (the model's MDLs describe mapped, non-paged buffers).
                let mdl = guest::read(p.MdlAddress.cast::<MDL>());
                if mdl.MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) == 0 {
                    k.violation(
                        ViolationKind::NotEmulated,
                        "FltPerform(A)synchronousIo: a transfer through an MDL not mapped to system space is not emulated",
                        format!("MdlAddress {:p}, MdlFlags {:#x}", p.MdlAddress, mdl.MdlFlags),
                    );
                    set_io_status(data, STATUS_NOT_IMPLEMENTED, 0);
                    return;
                }
                p.WriteBuffer = mdl.MappedSystemVa;
            }
            if iopb.MajorFunction == IRP_MJ_READ {
                let flags = if iopb.IrpFlags & IRP_NOCACHE == 0 {
                    0
                } else {
                    FLTFL_IO_OPERATION_NON_CACHED
                };
                read_below(k, target, offset, (p.Length, p.WriteBuffer), flags)
            } else {
                write_below(k, target, offset, (p.Length, p.WriteBuffer))
            }
        }
        IRP_MJ_SET_INFORMATION => {
            // SAFETY: the union's member for IRP_MJ_SET_INFORMATION; any bits are valid.
            let p: FLT_PARAMETERS_SET_FILE_INFORMATION =
                unsafe { iopb.Parameters.SetFileInformation };
            let status = set_below(k, target, p.FileInformationClass, (p.InfoBuffer, p.Length));
            (status, 0)
        }
        IRP_MJ_QUERY_INFORMATION => {
            // SAFETY: every member of the union is pointer-sized words;
            // `QueryFileInformation` puts `Length` and `FileInformationClass` in the low halves
            // of the first two words, then `InfoBuffer`.
            let words = unsafe { iopb.Parameters.Others };
            let low = |word: PVOID| u32::try_from(word as usize & 0xFFFF_FFFF).unwrap_or(0);
            let (status, returned) = query_below(
                k,
                target,
                low(words[1]).cast_signed(),
                (words[2], low(words[0])),
                false,
            );
            (status, returned as usize)
        }
        IRP_MJ_FILE_SYSTEM_CONTROL
            if matches!(
                iopb.MinorFunction,
                IRP_MN_USER_FS_REQUEST | IRP_MN_KERNEL_CALL
            ) =>
        {
            // SAFETY: every member of the union is pointer-sized words; the
            // `FileSystemControl` members put `OutputBufferLength`, `InputBufferLength` and
            // `FsControlCode` in the low halves of the first three words, then the buffers.
            let words = unsafe { iopb.Parameters.Others };
            let low = |word: PVOID| u32::try_from(word as usize & 0xFFFF_FFFF).unwrap_or(0);
            let code = low(words[2]);
            // METHOD_BUFFERED (0 in the low two bits): one system buffer for input and output.
            let buffered = code.trailing_zeros() >= 2;
            let output = if buffered { words[3] } else { words[4] };
            let (status, returned) = control_below(
                k,
                target,
                code,
                &ControlBuffers {
                    input: words[3],
                    input_length: low(words[1]),
                    output,
                    output_length: low(words[0]),
                },
            );
            (status, returned as usize)
        }
        major => {
            k.violation(
                ViolationKind::NotEmulated,
                "FltPerform(A)synchronousIo: only IRP_MJ_READ, IRP_MJ_WRITE, IRP_MJ_QUERY_INFORMATION, IRP_MJ_SET_INFORMATION and IRP_MJ_FILE_SYSTEM_CONTROL (FSCTL requests) are emulated",
                format!("MajorFunction {major:#x}, MinorFunction {:#x}", iopb.MinorFunction),
            );
            (STATUS_NOT_IMPLEMENTED, 0)
        }
    };
    set_io_status(data, status, information);
}

/// A write of the `length` bytes at `buffer` at `offset` (`None`: the current offset, which it
/// advances) sent below the filter: the status and the bytes written. The file system keeps
/// the bytes, as it keeps those of the synthetic workload's writes.
fn write_below(
    k: &Kernel,
    (instance, file_object): (usize, usize),
    offset: Option<i64>,
    (length, buffer): (u32, PVOID),
) -> (NTSTATUS, usize) {
    if length > 0 && buffer.is_null() {
        k.parameter_violation("a WriteBuffer", "WriteBuffer is NULL".to_owned());
        return (STATUS_INVALID_PARAMETER, 0);
    }
    let (volume, handle) = match open_file(k, instance, file_object) {
        Ok(found) => found,
        Err(status) => return (status, 0),
    };
    let offset_at = (file_object + offset_of!(FILE_OBJECT, CurrentByteOffset)) as *mut i64;
    let start = offset.unwrap_or_else(|| guest::read(offset_at));
    let Ok(start) = u64::try_from(start) else {
        k.parameter_violation("a nonnegative ByteOffset", format!("ByteOffset {start}"));
        return (STATUS_INVALID_PARAMETER, 0);
    };
    let written = flt_read(k).io.volumes[volume.0].files().write_below(
        handle,
        start,
        &guest::read_bytes(buffer.cast::<u8>(), length as usize),
    );
    if let Err(status) = written {
        return (status, 0);
    }
    if offset.is_none() {
        let end = start.saturating_add(u64::from(length));
        guest::write(offset_at, i64::try_from(end).unwrap_or(i64::MAX));
    }
    (STATUS_SUCCESS, length as usize)
}

/// Checks that `data` is a callback data of the filter's that may start an operation, and
/// marks it `next`: `false` (reported) when it may not.
fn claim(k: &Kernel, data: usize, next: DataState, rule: &str) -> bool {
    let mut flt = flt_write(k);
    let table = &mut flt.io.callback_data;
    if let Some(problem) = table.misuse(data) {
        drop(flt);
        k.parameter_violation(rule, problem);
        return false;
    }
    if let Some(record) = table.live.get_mut(&data) {
        record.state = next;
        if next != DataState::Idle {
            record.canceled = false;
            record.performing = false;
        }
        if next == DataState::Outstanding {
            record.issued_in = state::with(|s| s.callback.get());
            record.instance = guest::read(iopb_of(data)).TargetInstance as usize;
        }
    }
    true
}

/// `FltPerformSynchronousIo`: IRQL <= APC_LEVEL. Failable (in `IoStatus`).
pub(crate) extern "win64" fn flt_perform_synchronous_io(data: *mut FLT_CALLBACK_DATA) {
    emulate(Routine::FltPerformSynchronousIo, |k| {
        let data = data as usize;
        if !claim(
            k,
            data,
            DataState::Synchronous,
            "CallbackData from FltAllocateCallbackData, not freed, with no I/O in progress",
        ) {
            return;
        }
        if k.inject_failure("FltPerformSynchronousIo", "STATUS_INSUFFICIENT_RESOURCES") {
            set_io_status(data, STATUS_INSUFFICIENT_RESOURCES, 0);
        } else if guest::read(iopb_of(data)).MajorFunction == IRP_MJ_CREATE {
            k.violation(
                ViolationKind::NotEmulated,
                "FltPerformSynchronousIo with IRP_MJ_CREATE is not emulated (use FltCreateFileEx2)",
                String::new(),
            );
            set_io_status(data, STATUS_NOT_IMPLEMENTED, 0);
        } else {
            perform(k, data);
        }
        if let Some(record) = flt_write(k).io.callback_data.live.get_mut(&data)
            && record.state == DataState::Synchronous
        {
            record.state = DataState::Idle;
        }
    });
}

/// `FltPerformAsynchronousIo`: PASSIVE_LEVEL (<= APC_LEVEL for paging I/O). Failable (the
/// completion routine is called all the same).
pub(crate) extern "win64" fn flt_perform_asynchronous_io(
    data: *mut FLT_CALLBACK_DATA,
    callback: Option<CompletedAsyncIo>,
    context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltPerformAsynchronousIo, |k| {
        let data = data as usize;
        let Some(callback) = callback else {
            k.parameter_violation(
                "CallbackRoutine (required, not NULL)",
                "CallbackRoutine is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        };
        if !claim(
            k,
            data,
            DataState::Outstanding,
            "CallbackData from FltAllocateCallbackData, not freed, with no I/O in progress",
        ) {
            return STATUS_INVALID_PARAMETER;
        }
        let iopb = guest::read(iopb_of(data));
        let irql = state::current_irql();
        if irql > PASSIVE_LEVEL && iopb.IrpFlags & IRP_PAGING_IO == 0 {
            k.violation(
                ViolationKind::Irql,
                "FltPerformAsynchronousIo: PASSIVE_LEVEL (APC_LEVEL only for paging I/O)",
                format!("called at IRQL {irql} without IRP_PAGING_IO"),
            );
        }
        let failure = if iopb.MajorFunction == IRP_MJ_CREATE {
            Some(STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST)
        } else if k.inject_failure("FltPerformAsynchronousIo", "STATUS_INSUFFICIENT_RESOURCES") {
            Some(STATUS_INSUFFICIENT_RESOURCES)
        } else {
            None
        };
        if spawn_completion(
            k,
            data,
            (callback, context as usize),
            Completion::Perform(failure),
        ) {
            failure.unwrap_or(STATUS_PENDING)
        } else {
            STATUS_INSUFFICIENT_RESOURCES
        }
    })
}

/// What a completion thread does before it calls the completion routine.
#[derive(Clone, Copy)]
enum Completion {
    /// `FltPerformAsynchronousIo`: performs the callback data's operation, or fails it with
    /// the status.
    Perform(Option<NTSTATUS>),
    /// An asynchronous `FltReadFile`: reads into Filter Manager's own callback data (freed once
    /// the completion routine returns), with `FltReadFile`'s flags, at the offset (`None`: the
    /// file object's current one).
    Read { flags: u32, offset: Option<i64> },
}

/// Performs the asynchronous I/O of `data` (`work`) on a thread of its own and calls the
/// filter's completion routine there; `false` when no thread could be had (reported; a
/// filter's callback data is the filter's again, Filter Manager's own is freed).
fn spawn_completion(
    k: &Kernel,
    data: usize,
    (callback, context): (CompletedAsyncIo, usize),
    work: Completion,
) -> bool {
    let routine = match work {
        Completion::Perform(_) => "FltPerformAsynchronousIo",
        Completion::Read { .. } => "FltReadFile",
    };
    let kernel = k.arc();
    let latency = k.config.work_item_latency;
    let irql = if k.config.io.post_ops_at_dispatch {
        DISPATCH_LEVEL
    } else {
        PASSIVE_LEVEL
    };
    let issued_in = state::with(|s| s.callback.get());
    let spawned = std::thread::Builder::new()
        .name(format!("kernel-sim async I/O {data:#x}"))
        .spawn(move || {
            let id = allocate_thread_id();
            state::with(|s| {
                s.thread_id.set(id);
                s.process_id.set(SYSTEM_PROCESS_ID);
                s.system_thread.set(true);
            });
            // The file system completes the I/O some time after it was issued.
            std::thread::sleep(latency);
            let canceled = flt_write(&kernel)
                .io
                .callback_data
                .live
                .get_mut(&data)
                .is_some_and(|record| {
                    record.performing = true;
                    record.canceled
                });
            attributed(routine, issued_in, || match work {
                Completion::Perform(Some(status)) => set_io_status(data, status, 0),
                Completion::Perform(None) if canceled => set_io_status(data, STATUS_CANCELLED, 0),
                Completion::Perform(None) => perform(&kernel, data),
                Completion::Read { flags, offset } => {
                    let iopb = guest::read(iopb_of(data));
                    // SAFETY: the read member of the union Filter Manager filled (`Read` has
                    // `Write`'s layout); any bits are valid.
                    let p: FLT_PARAMETERS_WRITE = unsafe { iopb.Parameters.Write };
                    let target = (iopb.TargetInstance as usize, iopb.TargetFileObject as usize);
                    let (status, count) =
                        read_below(&kernel, target, offset, (p.Length, p.WriteBuffer), flags);
                    set_io_status(data, status, count);
                }
            });
            if let Some(record) = flt_write(&kernel).io.callback_data.live.get_mut(&data) {
                record.state = DataState::Completing;
            }
            kernel.call_driver(COMPLETION_ENTRY, Some(irql), || {
                // SAFETY: the driver passed this PFLT_COMPLETED_ASYNC_IO_CALLBACK to
                // FltPerformAsynchronousIo; FltUnregisterFilter waits for it to return and the
                // image stays mapped until this thread is joined (`workitems::driver_gone`);
                // the arguments are the callback data it issued and its own context.
                unsafe { callback(data as *mut FLT_CALLBACK_DATA, context as PVOID) };
            });
            let mut flt = flt_write(&kernel);
            let table = &mut flt.io.callback_data;
            if let Some((memory, _, _)) = table.fltmgr_owned.remove(&data) {
                table.freed.insert(data, (memory, FREED_BY_FLTMGR));
            }
            let early = table.live.get(&data).and_then(|r| r.freed_early);
            if let Some(freed_in) = early {
                if let Some(record) = table.live.remove(&data) {
                    table.freed.insert(data, (record.memory, freed_in));
                }
            } else if let Some(record) = table.live.get_mut(&data)
                && record.state == DataState::Completing
            {
                record.state = DataState::Idle;
            }
            drop(flt);
            kernel.notify_waiters();
        });
    match spawned {
        Ok(join) => {
            flt_write(k).io.work_items.adopt(join);
            true
        }
        Err(error) => {
            k.violation(
                ViolationKind::Internal,
                "kernel-sim",
                format!("no thread for the asynchronous I/O of {data:#x}: {error}"),
            );
            let mut flt = flt_write(k);
            let table = &mut flt.io.callback_data;
            if let Some(record) = table.live.get_mut(&data) {
                record.state = DataState::Idle;
            }
            table.fltmgr_owned.remove(&data);
            false
        }
    }
}

/// `FltReadFile` with a `CallbackRoutine`: the read goes below `instance` asynchronously in a
/// callback data of Filter Manager's own (the completion routine may read it, never free or
/// reuse it), on a thread of its own as `FltPerformAsynchronousIo`'s; `STATUS_PENDING`.
/// `BytesRead` is ignored (the routine finds the count in `IoStatus.Information`).
pub(crate) fn read_file_async(
    k: &Kernel,
    (instance, file_object): (PFLT_INSTANCE, *mut FILE_OBJECT),
    (offset, length, buffer): (Option<i64>, u32, PVOID),
    flags: u32,
    (callback, context): (CompletedAsyncIo, PVOID),
) -> NTSTATUS {
    let memory =
        GuestAlloc::zeroed(size_of::<FLT_CALLBACK_DATA>() + size_of::<FLT_IO_PARAMETER_BLOCK>());
    let data = memory.address();
    initialize(data, instance, file_object);
    let mut iopb = guest::read(iopb_of(data));
    iopb.MajorFunction = IRP_MJ_READ;
    if flags & FLTFL_IO_OPERATION_NON_CACHED != 0 {
        iopb.IrpFlags |= IRP_NOCACHE;
    }
    // The read member of the parameter union (`Read` has `Write`'s layout).
    iopb.Parameters.Write.Length = length;
    iopb.Parameters.Write.ByteOffset = offset.unwrap_or(USE_FILE_POINTER_POSITION);
    iopb.Parameters.Write.WriteBuffer = buffer;
    guest::write(iopb_of(data), iopb);
    let issued_in = state::with(|s| s.callback.get());
    flt_write(k)
        .io
        .callback_data
        .fltmgr_owned
        .insert(data, (memory, issued_in, instance as usize));
    if spawn_completion(
        k,
        data,
        (callback, context as usize),
        Completion::Read { flags, offset },
    ) {
        STATUS_PENDING
    } else {
        STATUS_INSUFFICIENT_RESOURCES
    }
}

/// `FltReuseCallbackData`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_reuse_callback_data(data: *mut FLT_CALLBACK_DATA) {
    emulate(Routine::FltReuseCallbackData, |k| {
        let data = data as usize;
        if !claim(
            k,
            data,
            DataState::Idle,
            "CallbackData from FltAllocateCallbackData, not freed, its I/O complete",
        ) {
            return;
        }
        let iopb = guest::read(iopb_of(data));
        initialize(data, iopb.TargetInstance, iopb.TargetFileObject);
    });
}

/// `FltFreeCallbackData`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn flt_free_callback_data(data: *mut FLT_CALLBACK_DATA) {
    emulate(Routine::FltFreeCallbackData, |k| {
        let data = data as usize;
        let freed_in = state::with(|s| s.callback.get());
        let mut flt = flt_write(k);
        let table = &mut flt.io.callback_data;
        let problem = match table.live.get_mut(&data) {
            Some(record) if record.freed_early.is_some() => Some(format!(
                "{data:#x} was already freed in {}",
                record.freed_early.unwrap_or_default()
            )),
            Some(record) if record.state == DataState::Outstanding => {
                // Kept until the completion is done with it.
                record.freed_early = Some(freed_in);
                Some(format!(
                    "{data:#x} freed while its asynchronous I/O (issued in {}) is outstanding",
                    record.issued_in
                ))
            }
            Some(record) if record.state == DataState::Synchronous => {
                Some(format!("{data:#x} is in synchronous I/O on another thread"))
            }
            Some(_) => {
                if let Some(record) = table.live.remove(&data) {
                    table.freed.insert(data, (record.memory, freed_in));
                }
                None
            }
            None => Some(match table.freed.get(data) {
                Some((_, earlier)) => format!("{data:#x} was already freed in {earlier}"),
                None => format!("{data:#x} is not from FltAllocateCallbackData"),
            }),
        };
        drop(flt);
        if let Some(problem) = problem {
            k.parameter_violation(
                "CallbackData from FltAllocateCallbackData, freed once, after its asynchronous I/O's CallbackRoutine has been called",
                problem,
            );
        }
    });
}

/// `FltCancelIo`: IRQL <= DISPATCH_LEVEL. Cancels the asynchronous I/O the filter issued with
/// `data`: TRUE while the I/O waits for the file system (it completes with `STATUS_CANCELLED`);
/// once the file system works on it, only the cancel bit is set (no cancel routine) and the
/// answer is FALSE, as it is for I/O already canceled or already completed (a race with the
/// completion a filter cannot always avoid). A callback data with no asynchronous I/O ever
/// issued, or not from `FltAllocateCallbackData`, is reported.
pub(crate) extern "win64" fn flt_cancel_io(data: *mut FLT_CALLBACK_DATA) -> u8 {
    emulate(Routine::FltCancelIo, |k| {
        let data = data as usize;
        let mut flt = flt_write(k);
        let outcome = match flt.io.callback_data.live.get_mut(&data) {
            Some(record) if record.state == DataState::Outstanding => {
                let first = !record.canceled;
                record.canceled = true;
                Ok(first && !record.performing)
            }
            Some(record) if record.issued_in.is_empty() => Err(format!(
                "{data:#x} was never used for asynchronous I/O (allocated in {})",
                record.allocated_in
            )),
            Some(_) => Ok(false),
            None => Err(format!(
                "{data:#x} is not a callback data the caller allocated (FltAllocateCallbackData)"
            )),
        };
        drop(flt);
        match outcome {
            Ok(canceled) => u8::from(canceled),
            Err(problem) => {
                k.parameter_violation(
                    "CallbackData of asynchronous I/O the caller issued (FltPerformAsynchronousIo)",
                    problem,
                );
                0
            }
        }
    })
}

/// `FltIsIoCanceled`: any IRQL. For callback data of the filter's own, whether `FltCancelIo`
/// set its cancel bit; for an operation in flight through the filter, FALSE (the synthetic
/// requestors never cancel); a callback data that is neither, or an operation that is not
/// IRP-based (a programming error, its page says), is reported.
pub(crate) extern "win64" fn flt_is_io_canceled(data: *mut FLT_CALLBACK_DATA) -> u8 {
    emulate(Routine::FltIsIoCanceled, |k| {
        let address = data as usize;
        let (own, in_flight) = {
            let flt = flt_read(k);
            let table = &flt.io.callback_data;
            let own = table.live.get(&address).map(|r| r.canceled).or_else(|| {
                // An asynchronous FltReadFile's: never canceled (the filter cannot reach it
                // before its completion).
                table.fltmgr_owned.contains_key(&address).then_some(false)
            });
            (own, flt.io.in_flight.contains(address))
        };
        if let Some(canceled) = own {
            return u8::from(canceled);
        }
        if !in_flight {
            k.parameter_violation(
                "CallbackData of an operation in progress",
                format!("{data:p} is not the callback data of an operation in progress"),
            );
            return 0;
        }
        let flags = guest::read(data).Flags;
        if flags & FLTFL_CALLBACK_DATA_IRP_OPERATION == 0 {
            k.parameter_violation(
                "an IRP-based operation (FLT_IS_IRP_OPERATION)",
                format!("{data:p} is not IRP-based (Flags {flags:#x})"),
            );
        }
        0
    })
}

/// `FltUnregisterFilter` is tearing the filter down (`instance` `None`), or one instance is
/// being torn down after its `InstanceTeardownStart`: waits (at most `SimConfig::pend_limit`)
/// for the asynchronous I/O the filter issued (through that instance) to complete, and reports
/// what does not (Windows would wait for it forever).
pub(crate) fn drain_async_io(k: &Kernel, instance: Option<usize>) {
    let deadline = std::time::Instant::now() + k.config.pend_limit;
    loop {
        let in_flight = flt_read(k).io.callback_data.in_flight(instance);
        if in_flight.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            for (data, issued_in) in in_flight {
                attributed("FltPerformAsynchronousIo", issued_in, || {
                    k.violation(
                        ViolationKind::ThreadStillRunning,
                        "asynchronous I/O the filter issued completes (its CallbackRoutine returns) before the instance it went through is torn down (FltUnregisterFilter, detach, dismount)",
                        format!(
                            "the I/O of callback data {data:#x} issued in {issued_in} has not completed"
                        ),
                    );
                });
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The driver is gone (`why`), its threads not yet waited for: reports every asynchronous I/O
/// still in flight, whose completion routine would run in an unloaded image (I/O issued after
/// `FltUnregisterFilter` drained the filter's, or by a driver that never unregistered).
pub(crate) fn report_in_flight(k: &Kernel, why: &str) {
    let in_flight = flt_read(k).io.callback_data.in_flight(None);
    for (data, issued_in) in in_flight {
        attributed("FltPerformAsynchronousIo", issued_in, || {
            k.violation(
                ViolationKind::ThreadStillRunning,
                "asynchronous I/O the filter issued completes (its CallbackRoutine returns) before the driver is gone",
                format!("the I/O of callback data {data:#x} issued in {issued_in} is still in flight after {why}"),
            );
        });
    }
}

/// The driver is gone (`why`): reports every callback data it never freed, against the entry
/// point that allocated it.
pub(crate) fn driver_gone(k: &Kernel, why: &str) {
    let unfreed: Vec<(usize, &'static str)> = {
        let mut flt = flt_write(k);
        let table = &mut flt.io.callback_data;
        let unfreed = table
            .live
            .iter()
            .filter(|(_, r)| r.freed_early.is_none())
            .map(|(&a, r)| (a, r.allocated_in))
            .collect();
        table.live.clear();
        unfreed
    };
    for (data, allocated_in) in unfreed {
        attributed("FltAllocateCallbackData", allocated_in, || {
            k.violation(
                ViolationKind::ResourceLeak,
                "every callback data from FltAllocateCallbackData is freed (FltFreeCallbackData) before the driver is gone",
                format!("callback data {data:#x} allocated in {allocated_in} not freed after {why}"),
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::SimConfig;
    use crate::fltmgr::filter_io::flt_create_file_ex2;
    use crate::fltmgr::fs_control::flt_fs_control_file;
    use crate::fltmgr::set_information::flt_set_information_file;
    use crate::image::symbols::Symbols;
    use crate::machine::state::ImageBounds;

    fn kernel() -> Arc<Kernel> {
        Kernel::new(
            SimConfig {
                hang_timeout: Duration::from_secs(2),
                ..SimConfig::default()
            },
            "test.sys".into(),
            ImageBounds::EMPTY,
            Vec::new(),
            Symbols::default(),
        )
    }

    /// Each violation's kind, rule, routine and driver entry point.
    fn found(k: &Kernel) -> Vec<(ViolationKind, String, String, String)> {
        k.violations()
            .into_iter()
            .map(|v| (v.kind, v.rule, v.routine, v.callback))
            .collect()
    }

    /// A callback data in `state`, as `FltAllocateCallbackData` would have left it in
    /// `Worker` (there is no instance to allocate one through in a test without a driver).
    fn planted(k: &Kernel, state: DataState) -> usize {
        let memory = GuestAlloc::zeroed(
            size_of::<FLT_CALLBACK_DATA>() + size_of::<FLT_IO_PARAMETER_BLOCK>(),
        );
        let data = memory.address();
        initialize(data, std::ptr::null_mut(), std::ptr::null_mut());
        let mut record = record(state);
        record.memory = memory;
        flt_write(k).io.callback_data.live.insert(data, record);
        data
    }

    #[test]
    fn required_arguments_are_checked_with_the_documented_statuses() {
        let k = kernel();
        k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
            let mut out: *mut FLT_CALLBACK_DATA = std::ptr::dangling_mut();
            let status = flt_allocate_callback_data(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &raw mut out,
            );
            assert_eq!(status, STATUS_INVALID_PARAMETER);
            // Not an instance: reported, and no callback data comes back.
            let status = flt_allocate_callback_data(
                0x1000 as PFLT_INSTANCE,
                std::ptr::null_mut(),
                &raw mut out,
            );
            assert_eq!(status, STATUS_INVALID_PARAMETER);
            assert!(out.is_null());
            let status = flt_perform_asynchronous_io(
                0x2000 as *mut FLT_CALLBACK_DATA,
                None,
                std::ptr::null_mut(),
            );
            assert_eq!(status, STATUS_INVALID_PARAMETER);
            let status = flt_set_information_file(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                4,
            );
            assert_eq!(status, STATUS_INVALID_PARAMETER);
            let mut returned = 7u32;
            let status = flt_fs_control_file(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                0,
                &raw mut returned,
            );
            assert_eq!(status, STATUS_INVALID_PARAMETER);
            assert_eq!(returned, 0, "LengthReturned is cleared first");
        })
        .expect("returned");
        let rules: Vec<String> = found(&k).into_iter().map(|(_, rule, _, _)| rule).collect();
        assert_eq!(
            rules,
            [
                "FltAllocateCallbackData: Instance and RetNewCallbackData (required, not NULL)",
                "FltAllocateCallbackData: an instance of the calling filter",
                "FltPerformAsynchronousIo: CallbackRoutine (required, not NULL)",
                "FltSetInformationFile: Instance, FileObject and FileInformation (required, not NULL)",
                "FltFsControlFile: Instance and FileObject (required, not NULL)",
            ]
        );
    }

    #[test]
    fn a_driver_create_context_must_be_initialized_and_name_no_device() {
        let k = kernel();
        k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
            let mut context = [0u64; 5];
            let create = |context: &mut [u64; 5]| {
                let mut handle: vigil_sys::HANDLE = std::ptr::null_mut();
                flt_create_file_ex2(
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &raw mut handle,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                    0,
                    0,
                    0,
                    std::ptr::null_mut(),
                    0,
                    0,
                    context.as_mut_ptr().cast(),
                )
            };
            // Size 0: never initialized by IoInitializeDriverCreateContext.
            assert_eq!(create(&mut context), STATUS_INVALID_PARAMETER);
            context[0] = 40;
            context[2] = 0x1000;
            assert_eq!(create(&mut context), STATUS_INVALID_PARAMETER);
        })
        .expect("returned");
        let rules: Vec<String> = found(&k).into_iter().map(|(_, rule, _, _)| rule).collect();
        assert_eq!(
            rules,
            [
                "FltCreateFileEx2: DriverContext initialized by IoInitializeDriverCreateContext",
                "FltCreateFileEx2: DriverContext->DeviceObjectHint is NULL for FltCreateFileEx2",
            ]
        );
    }

    #[test]
    fn a_callback_data_freed_before_its_completion_is_reported_and_kept() {
        let k = kernel();
        let (outstanding, idle) = (
            planted(&k, DataState::Outstanding),
            planted(&k, DataState::Idle),
        );
        k.call_driver("PreCleanup", Some(PASSIVE_LEVEL), || {
            flt_reuse_callback_data(outstanding as *mut FLT_CALLBACK_DATA);
            flt_perform_synchronous_io(outstanding as *mut FLT_CALLBACK_DATA);
            flt_free_callback_data(outstanding as *mut FLT_CALLBACK_DATA);
            flt_free_callback_data(outstanding as *mut FLT_CALLBACK_DATA);
            flt_free_callback_data(idle as *mut FLT_CALLBACK_DATA);
            flt_free_callback_data(idle as *mut FLT_CALLBACK_DATA);
            flt_free_callback_data(0x3000 as *mut FLT_CALLBACK_DATA);
        })
        .expect("returned");
        let messages: Vec<String> = k.violations().into_iter().map(|v| v.message).collect();
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(messages[0].contains("asynchronous I/O outstanding (issued in Worker)"));
        assert!(messages[1].contains("asynchronous I/O outstanding"));
        assert!(
            messages[2]
                .contains("freed while its asynchronous I/O (issued in Worker) is outstanding")
        );
        assert!(messages[3].contains("already freed in PreCleanup"));
        assert!(messages[4].contains("already freed in PreCleanup"));
        assert!(messages[5].contains("not from FltAllocateCallbackData"));
        // Kept for the completion, which is still to come; the idle one is gone.
        let table = &flt_read(&k).io.callback_data;
        assert!(table.live.contains_key(&outstanding));
        assert!(!table.live.contains_key(&idle));
    }

    #[test]
    fn io_is_canceled_until_the_file_system_starts_on_it() {
        let k = kernel();
        let waiting = planted(&k, DataState::Outstanding);
        let working = planted(&k, DataState::Outstanding);
        let never_issued = planted(&k, DataState::Idle);
        if let Some(record) = flt_write(&k).io.callback_data.live.get_mut(&working) {
            record.performing = true;
        }
        if let Some(record) = flt_write(&k).io.callback_data.live.get_mut(&never_issued) {
            record.issued_in = "";
        }
        let answers = k
            .call_driver("Worker", Some(DISPATCH_LEVEL), || {
                [
                    flt_cancel_io(waiting as *mut FLT_CALLBACK_DATA),
                    // Already canceled.
                    flt_cancel_io(waiting as *mut FLT_CALLBACK_DATA),
                    flt_is_io_canceled(waiting as *mut FLT_CALLBACK_DATA),
                    // No cancel routine: the cancel bit only.
                    flt_cancel_io(working as *mut FLT_CALLBACK_DATA),
                    flt_is_io_canceled(working as *mut FLT_CALLBACK_DATA),
                    flt_cancel_io(never_issued as *mut FLT_CALLBACK_DATA),
                    flt_is_io_canceled(never_issued as *mut FLT_CALLBACK_DATA),
                    flt_is_io_canceled(0x4000 as *mut FLT_CALLBACK_DATA),
                ]
            })
            .expect("returned");
        assert_eq!(answers, [1, 0, 1, 0, 1, 0, 0, 0]);
        let rules: Vec<String> = found(&k).into_iter().map(|(_, rule, _, _)| rule).collect();
        assert_eq!(
            rules,
            [
                "FltCancelIo: CallbackData of asynchronous I/O the caller issued (FltPerformAsynchronousIo)",
                "FltIsIoCanceled: CallbackData of an operation in progress",
            ]
        );
    }

    /// The status the test completion routine saw, 0 until it ran.
    static COMPLETED_WITH: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

    unsafe extern "win64" fn completed(data: *mut FLT_CALLBACK_DATA, _context: PVOID) {
        let status = guest::read(data).IoStatus.Status;
        COMPLETED_WITH.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn an_asynchronous_create_is_refused_above_passive_level_and_still_completed() {
        let k = kernel();
        let data = planted(&k, DataState::Idle);
        let mut iopb = guest::read(iopb_of(data));
        iopb.MajorFunction = IRP_MJ_CREATE;
        guest::write(iopb_of(data), iopb);
        let status = k
            .call_driver("PreCleanup", Some(vigil_sys::APC_LEVEL), || {
                flt_perform_asynchronous_io(
                    data as *mut FLT_CALLBACK_DATA,
                    Some(completed),
                    std::ptr::null_mut(),
                )
            })
            .expect("returned");
        assert_eq!(status, STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST);
        // The completion routine is called all the same, on another thread.
        drain_async_io(&k, None);
        assert_eq!(
            COMPLETED_WITH.load(std::sync::atomic::Ordering::SeqCst),
            STATUS_FLT_INVALID_ASYNCHRONOUS_REQUEST
        );
        let found = found(&k);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, ViolationKind::Irql);
        assert_eq!(found[0].3, "PreCleanup");
        assert_eq!(
            flt_read(&k)
                .io
                .callback_data
                .live
                .get(&data)
                .map(|r| r.state),
            Some(DataState::Idle),
            "the filter's again once its completion routine returned"
        );
    }

    #[test]
    fn filter_managers_own_callback_data_is_not_the_filters_to_free() {
        let k = kernel();
        let memory = GuestAlloc::zeroed(
            size_of::<FLT_CALLBACK_DATA>() + size_of::<FLT_IO_PARAMETER_BLOCK>(),
        );
        let data = memory.address();
        flt_write(&k)
            .io
            .callback_data
            .fltmgr_owned
            .insert(data, (memory, "PreCleanup", 0x77));
        let canceled = k
            .call_driver(COMPLETION_ENTRY, Some(DISPATCH_LEVEL), || {
                let canceled = flt_is_io_canceled(data as *mut FLT_CALLBACK_DATA);
                flt_free_callback_data(data as *mut FLT_CALLBACK_DATA);
                canceled
            })
            .expect("returned");
        assert_eq!(canceled, 0);
        let found = found(&k);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].2, "FltFreeCallbackData");
        assert_eq!(found[0].3, COMPLETION_ENTRY);
        // Its read is in flight on its instance: teardown waits for it.
        assert_eq!(flt_read(&k).io.callback_data.in_flight(Some(0x77)).len(), 1);
    }

    #[test]
    fn callback_data_never_freed_is_reported_against_its_allocator_when_the_driver_is_gone() {
        let k = kernel();
        let _ = planted(&k, DataState::Idle);
        driver_gone(&k, "unload");
        assert_eq!(
            found(&k),
            [(
                ViolationKind::ResourceLeak,
                "every callback data from FltAllocateCallbackData is freed (FltFreeCallbackData) before the driver is gone".to_owned(),
                "FltAllocateCallbackData".to_owned(),
                "Worker".to_owned(),
            )]
        );
        assert!(flt_read(&k).io.callback_data.live.is_empty());
    }

    #[test]
    fn asynchronous_io_in_flight_when_the_driver_is_gone_is_reported() {
        let k = kernel();
        let _ = planted(&k, DataState::Outstanding);
        let _ = planted(&k, DataState::Idle);
        report_in_flight(&k, "unload");
        let found = found(&k);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, ViolationKind::ThreadStillRunning);
        assert_eq!(found[0].2, "FltPerformAsynchronousIo");
    }

    #[test]
    fn unregistering_reports_asynchronous_io_that_never_completes() {
        let k = Kernel::new(
            SimConfig {
                pend_limit: Duration::from_millis(20),
                ..SimConfig::default()
            },
            "test.sys".into(),
            ImageBounds::EMPTY,
            Vec::new(),
            Symbols::default(),
        );
        let _ = planted(&k, DataState::Outstanding);
        drain_async_io(&k, None);
        let found = found(&k);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, ViolationKind::ThreadStillRunning);
        assert_eq!(found[0].2, "FltPerformAsynchronousIo");
        assert_eq!(found[0].3, "Worker");
    }

    fn record(state: DataState) -> DataRecord {
        DataRecord {
            memory: GuestAlloc::zeroed(8),
            state,
            allocated_in: "Worker",
            issued_in: "Worker",
            instance: 0,
            freed_early: None,
            canceled: false,
            performing: false,
        }
    }

    #[test]
    fn a_callback_data_starts_new_io_only_when_its_last_io_is_done() {
        let mut table = CallbackDataTable::default();
        for (address, state) in [
            (0x10, DataState::Idle),
            (0x20, DataState::Completing),
            (0x30, DataState::Outstanding),
            (0x40, DataState::Synchronous),
        ] {
            table.live.insert(address, record(state));
        }
        assert_eq!(table.misuse(0x10), None);
        assert_eq!(
            table.misuse(0x20),
            None,
            "reuse from the completion routine"
        );
        assert!(
            table
                .misuse(0x30)
                .is_some_and(|m| m.contains("outstanding"))
        );
        assert!(
            table
                .misuse(0x40)
                .is_some_and(|m| m.contains("synchronous"))
        );
        assert!(
            table
                .misuse(0x50)
                .is_some_and(|m| m.contains("not from FltAllocateCallbackData"))
        );
        table.freed.insert(0x60, (GuestAlloc::zeroed(8), "Unload"));
        assert!(
            table
                .misuse(0x60)
                .is_some_and(|m| m.contains("freed in Unload"))
        );
        assert_eq!(table.in_flight(None).len(), 2);
        assert_eq!(table.in_flight(Some(0x99)).len(), 0);
    }

    #[test]
    fn the_parameter_block_follows_the_callback_data() {
        let memory = GuestAlloc::zeroed(
            size_of::<FLT_CALLBACK_DATA>() + size_of::<FLT_IO_PARAMETER_BLOCK>(),
        );
        let data = memory.address();
        initialize(data, 0x1234 as PFLT_INSTANCE, 0x5678 as *mut FILE_OBJECT);
        let value = guest::read(data as *const FLT_CALLBACK_DATA);
        assert_eq!(value.Iopb, iopb_of(data));
        assert_eq!(
            value.Flags,
            FLTFL_CALLBACK_DATA_IRP_OPERATION | FLTFL_CALLBACK_DATA_GENERATED_IO
        );
        let iopb = guest::read(iopb_of(data));
        assert_eq!(iopb.TargetInstance as usize, 0x1234);
        assert_eq!(iopb.TargetFileObject as usize, 0x5678);
        assert_eq!(iopb.MajorFunction, 0);
    }
}
