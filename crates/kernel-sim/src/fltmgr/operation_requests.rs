//! What a filter asks of one operation in progress: `FltLockUserBuffer` (an MDL for the
//! operation's buffer) and `FltRequestOperationStatusCallback` (a callback with the status the
//! file system returned). The world layer's dispatch marks the operation's pre-operation
//! callback while it runs ([`enter_pre`], [`leave_pre`]), runs the status callbacks after the
//! file system ([`take_status_callbacks`]) and, when the operation completes, frees the MDL
//! left in its parameters as the I/O system frees an IRP's ([`complete`]).
//!
//! From the reference pages:
//! - `FltLockUserBuffer`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltlockuserbuffer>):
//!   IRQL <= APC_LEVEL; for the operations with a buffer: device, internal device and file
//!   system control, directory control, query/set EA, query/set quota, query security, and
//!   read and write except `IRP_MN_MDL`; it sets the parameters' `MdlAddress`
//!   (or `OutputMdlAddress`) to an MDL for the locked pages, allocating one if there is none
//!   (and, before the operation reaches the file system, sets `FLTFL_CALLBACK_DATA_DIRTY` so
//!   that the I/O system frees it at completion), and returns `STATUS_SUCCESS` also when the
//!   buffer is already locked; it can be called for fast I/O and IRP-based operations (an
//!   `FsFilter` operation has no buffer: `STATUS_INVALID_PARAMETER`);
//!   `STATUS_INSUFFICIENT_RESOURCES` when an allocation fails; `STATUS_INVALID_PARAMETER`
//!   for an operation without an MDL parameter or a read/write with `IRP_MN_MDL`. The MDL is
//!   the I/O system's to free at completion: the caller never frees it (`IoFreeMdl` on it is
//!   reported, `ntoskrnl::mdl`).
//! - `FltRequestOperationStatusCallback`
//!   (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltrequestoperationstatuscallback>,
//!   callback type
//!   <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_get_operation_status_callback>):
//!   `Data` and `CallbackRoutine` are required; only from a pre-operation callback and only for
//!   IRP-based operations other than `IRP_MJ_CLOSE` (`STATUS_INVALID_PARAMETER` otherwise;
//!   a non-IRP operation is also reported); `STATUS_FLT_DELETING_OBJECT` when the instance is
//!   being torn down; `STATUS_INSUFFICIENT_RESOURCES` on an allocation failure. The callback
//!   gets the related objects, a snapshot of the parameter block and the status the file
//!   system returned, at IRQL <= APC_LEVEL (kernel-sim: the pre's IRQL, at most APC_LEVEL).
//!
//! Both are failable through fault injection (`STATUS_INSUFFICIENT_RESOURCES`).

use std::mem::offset_of;

use vigil_sys::{
    FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK, FLTFL_CALLBACK_DATA_DIRTY,
    FLTFL_CALLBACK_DATA_FAST_IO_OPERATION, FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION,
    FLTFL_CALLBACK_DATA_IRP_OPERATION, FLTFL_CALLBACK_DATA_POST_OPERATION, IRP_MJ_CLOSE,
    IRP_MJ_DEVICE_CONTROL, IRP_MJ_DIRECTORY_CONTROL, IRP_MJ_FILE_SYSTEM_CONTROL,
    IRP_MJ_INTERNAL_DEVICE_CONTROL, IRP_MJ_QUERY_EA, IRP_MJ_QUERY_QUOTA, IRP_MJ_QUERY_SECURITY,
    IRP_MJ_READ, IRP_MJ_SET_EA, IRP_MJ_SET_QUOTA, IRP_MJ_WRITE, NTSTATUS, PVOID,
    STATUS_FLT_DELETING_OBJECT, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::InstanceState;
use crate::kernel::sharded::ShardedMap;
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest::{self, GuestAlloc};

/// `METHOD_BUFFERED`: the transfer method of a control code (its low two bits).
const METHOD_BUFFERED: u32 = 0;

/// The transfer method of an I/O or file system control code.
fn transfer_method(code: u32) -> u32 {
    code & 3
}

/// `IRP_MN_MDL`: a read or write whose buffer is an MDL the file system builds.
pub(crate) const IRP_MN_MDL: u8 = 0x02;

/// A status callback a pre-operation callback asked for.
pub(crate) struct StatusRequest {
    /// The `PFLT_GET_OPERATION_STATUS_CALLBACK`.
    pub callback: usize,
    /// Its `RequesterContext`.
    pub context: usize,
    /// The parameter block as it was when asked for (the callback's `IopbSnapshot`).
    pub snapshot: GuestAlloc,
}

/// One operation's requests.
#[derive(Default)]
struct Requests {
    /// The thread running the operation's pre-operation callback, while it runs.
    pre_thread: Option<std::thread::ThreadId>,
    status: Vec<StatusRequest>,
}

/// The requests of the operations in progress, by callback data address (sharded: each
/// operation a filter sees marks its pre-operation callback here).
#[derive(Default)]
pub(crate) struct OperationRequests {
    by_data: ShardedMap<Requests>,
}

/// Before the pre-operation callback of the operation whose callback data is `data` runs.
pub(crate) fn enter_pre(k: &Kernel, data: usize) {
    let flt = flt_read(k);
    let current = std::thread::current().id();
    let found = flt
        .io
        .operation_requests
        .by_data
        .with(data, |r| r.map(|r| r.pre_thread = Some(current)).is_some());
    if !found {
        flt.io.operation_requests.by_data.insert(
            data,
            Requests {
                pre_thread: Some(current),
                status: Vec::new(),
            },
        );
    }
}

/// After it returned.
pub(crate) fn leave_pre(k: &Kernel, data: usize) {
    let flt = flt_read(k);
    let empty = flt.io.operation_requests.by_data.with(data, |r| {
        r.is_some_and(|r| {
            r.pre_thread = None;
            r.status.is_empty()
        })
    });
    if empty {
        flt.io.operation_requests.by_data.remove(data);
    }
}

/// The status callbacks asked for on `data`, taken (run once, after the file system).
pub(crate) fn take_status_callbacks(k: &Kernel, data: usize) -> Vec<StatusRequest> {
    flt_read(k)
        .io
        .operation_requests
        .by_data
        .remove(data)
        .map(|r| r.status)
        .unwrap_or_default()
}

/// Where an operation's buffer and its MDL slot are, as offsets in `FLT_PARAMETERS`:
/// `(buffer, length, mdl)`; `None` for a major without an MDL parameter.
fn buffer_slots(major: u8, minor: u8, control_code: u32) -> Option<(usize, usize, usize)> {
    Some(match major {
        IRP_MJ_READ | IRP_MJ_WRITE => (0x18, 0x00, 0x20),
        // QueryDirectory and NotifyDirectory: DirectoryBuffer, MdlAddress (at the same offsets
        // in both, every ULONG of NotifyDirectory being POINTER_ALIGNMENT).
        IRP_MJ_DIRECTORY_CONTROL if minor == 1 || minor == 2 => (0x20, 0x00, 0x28),
        IRP_MJ_QUERY_EA | IRP_MJ_QUERY_QUOTA => (0x20, 0x00, 0x28),
        IRP_MJ_SET_EA | IRP_MJ_SET_QUOTA => (0x08, 0x00, 0x10),
        IRP_MJ_QUERY_SECURITY => (0x10, 0x08, 0x18),
        IRP_MJ_FILE_SYSTEM_CONTROL | IRP_MJ_DEVICE_CONTROL | IRP_MJ_INTERNAL_DEVICE_CONTROL => {
            // METHOD_BUFFERED: the system buffer (at the input buffer's place) is what there
            // is to lock; every other method has an output buffer. OutputMdlAddress either way.
            if transfer_method(control_code) == METHOD_BUFFERED {
                (0x18, 0x00, 0x28)
            } else {
                (0x20, 0x00, 0x28)
            }
        }
        _ => return None,
    })
}

/// The parameters of the callback data at `data`: `(flags, major, minor, parameters address)`.
fn operation_of(data: usize) -> (u32, u8, u8, usize) {
    let flags = guest::read((data + offset_of!(FLT_CALLBACK_DATA, Flags)) as *const u32);
    let iopb = guest::read((data + offset_of!(FLT_CALLBACK_DATA, Iopb)) as *const usize);
    let block = guest::read(iopb as *const FLT_IO_PARAMETER_BLOCK);
    (
        flags,
        block.MajorFunction,
        block.MinorFunction,
        iopb + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters),
    )
}

/// Reports `data` unless it is the callback data of an operation in progress.
fn check_in_flight(k: &Kernel, routine: &str, data: usize) -> bool {
    if flt_read(k).io.in_flight.contains(data) {
        return true;
    }
    if crate::fltmgr::draining::misuse_of_drained_copy(k, routine, data) {
        return false;
    }
    k.parameter_violation(
        "the callback data of an operation in progress",
        format!("{data:#x} is not the callback data of an operation in progress"),
    );
    false
}

/// Reports a call for an operation that is not IRP-based.
fn report_not_irp(k: &Kernel, routine: &str, flags: u32) {
    let kind = if flags & FLTFL_CALLBACK_DATA_FAST_IO_OPERATION != 0 {
        "a fast I/O operation"
    } else if flags & FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION != 0 {
        "an FsFilter callback operation"
    } else {
        "an operation that is not IRP-based"
    };
    k.parameter_violation(
        "IRP-based operations only (FLT_IS_IRP_OPERATION)",
        format!("{routine} called for {kind} (callback data flags {flags:#x})"),
    );
}

/// `FltLockUserBuffer`: IRQL <= APC_LEVEL (the routine table checks it).
pub(crate) extern "win64" fn flt_lock_user_buffer(data: *mut FLT_CALLBACK_DATA) -> NTSTATUS {
    emulate(Routine::FltLockUserBuffer, |k| {
        let data = data as usize;
        if !check_in_flight(k, "FltLockUserBuffer", data) {
            return STATUS_INVALID_PARAMETER;
        }
        let (flags, major, minor, parameters) = operation_of(data);
        if flags & FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION != 0 {
            // An FsFilter operation has no buffer parameter to lock.
            return STATUS_INVALID_PARAMETER;
        }
        if (major == IRP_MJ_READ || major == IRP_MJ_WRITE) && minor & IRP_MN_MDL != 0 {
            return STATUS_INVALID_PARAMETER;
        }
        let code = guest::read((parameters + 0x10) as *const u32);
        let Some((buffer_at, length_at, mdl_at)) = buffer_slots(major, minor, code) else {
            return STATUS_INVALID_PARAMETER;
        };
        let mdl_slot = (parameters + mdl_at) as *mut usize;
        if guest::read(mdl_slot) != 0 {
            // Locked already (by an earlier call, or the operation came with an MDL).
            return STATUS_SUCCESS;
        }
        let buffer = guest::read((parameters + buffer_at) as *const usize);
        let length = if matches!(
            major,
            IRP_MJ_FILE_SYSTEM_CONTROL | IRP_MJ_DEVICE_CONTROL | IRP_MJ_INTERNAL_DEVICE_CONTROL
        ) && transfer_method(code) == METHOD_BUFFERED
        {
            // The system buffer is as long as the longer of the two.
            guest::read((parameters) as *const u32)
                .max(guest::read((parameters + 0x08) as *const u32))
        } else {
            guest::read((parameters + length_at) as *const u32)
        };
        if buffer == 0 || length == 0 {
            // Nothing to lock: no MDL to make.
            return STATUS_SUCCESS;
        }
        if k.inject_failure("FltLockUserBuffer", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let mdl = crate::ntoskrnl::mdl::allocate(k, "FltLockUserBuffer", buffer, length);
        guest::write(mdl_slot, mdl);
        if flags & FLTFL_CALLBACK_DATA_POST_OPERATION == 0 {
            // Before the file system: the I/O system is to free the MDL at completion, so the
            // callback data is marked dirty (the page's Remarks).
            let flags_at = (data + offset_of!(FLT_CALLBACK_DATA, Flags)) as *mut u32;
            guest::write(flags_at, guest::read(flags_at) | FLTFL_CALLBACK_DATA_DIRTY);
        }
        STATUS_SUCCESS
    })
}

/// `FltRequestOperationStatusCallback`: IRQL <= APC_LEVEL (the routine table checks it).
pub(crate) extern "win64" fn flt_request_operation_status_callback(
    data: *mut FLT_CALLBACK_DATA,
    callback: PVOID,
    context: PVOID,
) -> NTSTATUS {
    emulate(Routine::FltRequestOperationStatusCallback, |k| {
        let data = data as usize;
        if callback.is_null() {
            k.parameter_violation(
                "a CallbackRoutine (required)",
                "CallbackRoutine is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if !check_in_flight(k, "FltRequestOperationStatusCallback", data) {
            return STATUS_INVALID_PARAMETER;
        }
        let (flags, major, _, _) = operation_of(data);
        if flags & FLTFL_CALLBACK_DATA_IRP_OPERATION == 0 {
            report_not_irp(k, "FltRequestOperationStatusCallback", flags);
            return STATUS_INVALID_PARAMETER;
        }
        let current = std::thread::current().id();
        let in_pre = flags & FLTFL_CALLBACK_DATA_POST_OPERATION == 0
            && flt_read(k)
                .io
                .operation_requests
                .by_data
                .with(data, |r| r.is_some_and(|r| r.pre_thread == Some(current)));
        if !in_pre || major == IRP_MJ_CLOSE {
            return STATUS_INVALID_PARAMETER;
        }
        if instance_tearing_down(k, data) {
            return STATUS_FLT_DELETING_OBJECT;
        }
        if k.inject_failure(
            "FltRequestOperationStatusCallback",
            "STATUS_INSUFFICIENT_RESOURCES",
        ) {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let iopb = guest::read((data + offset_of!(FLT_CALLBACK_DATA, Iopb)) as *const usize);
        let snapshot = GuestAlloc::for_type::<FLT_IO_PARAMETER_BLOCK>(0);
        guest::write(
            snapshot.as_ptr::<FLT_IO_PARAMETER_BLOCK>(),
            guest::read(iopb as *const FLT_IO_PARAMETER_BLOCK),
        );
        let request = StatusRequest {
            callback: callback as usize,
            context: context as usize,
            snapshot,
        };
        flt_read(k).io.operation_requests.by_data.with(data, |r| {
            if let Some(r) = r {
                r.status.push(request);
            }
        });
        STATUS_SUCCESS
    })
}

/// Whether the instance the operation at `data` goes to is being torn down.
fn instance_tearing_down(k: &Kernel, data: usize) -> bool {
    let iopb = guest::read((data + offset_of!(FLT_CALLBACK_DATA, Iopb)) as *const usize);
    let instance = guest::read(iopb as *const FLT_IO_PARAMETER_BLOCK).TargetInstance as usize;
    let flt = flt_read(k);
    flt.io.volumes.iter().any(|v| {
        v.instance.as_ref().is_some_and(|i| {
            i.handle.address() == instance && i.state == InstanceState::TearingDown
        })
    })
}

/// When the operation whose parameter block is at `iopb` completes: the MDL left in its MDL
/// slot, if the driver or `FltLockUserBuffer` allocated it, is freed as the I/O system frees an
/// IRP's MDL at completion; what was asked of the operation is dropped.
pub(crate) fn complete(k: &Kernel, data: usize, iopb: usize) {
    let block = guest::read(iopb as *const FLT_IO_PARAMETER_BLOCK);
    let parameters = iopb + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters);
    let code = guest::read((parameters + 0x10) as *const u32);
    // A write's MDL is `dirty::complete_write_mdl`'s.
    let slots = buffer_slots(block.MajorFunction, block.MinorFunction, code)
        .filter(|_| block.MajorFunction != IRP_MJ_WRITE);
    if let Some((_, _, mdl_at)) = slots {
        let mdl = guest::read((parameters + mdl_at) as *const usize);
        if mdl != 0 && lock(&k.objects).mdls.contains_key(&mdl) {
            // Cannot fail: checked live just above, and only this thread completes the operation.
            let _ = crate::ntoskrnl::mdl::free(k, mdl, "the I/O system (operation completed)");
        }
    }
    flt_read(k).io.operation_requests.by_data.remove(data);
}
