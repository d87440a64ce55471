//! Synthetic I/O: a test issues creates, writes, set-information requests, cleanups and closes
//! as a chosen process and thread ([`Io`]); each operation is built from `vigil-sys`'s
//! structures in memory the driver can read (`FLT_CALLBACK_DATA`, `FLT_IO_PARAMETER_BLOCK`,
//! `FLT_RELATED_OBJECTS`, the `FILE_OBJECT` of the open, system buffers) and dispatched as
//! FltMgr does:
//!
//! 1. the pre-operation callback of the filter's instance on the volume, on a driver stack, at
//!    the IRQL Windows uses (PASSIVE_LEVEL; writes optionally at APC_LEVEL), with
//!    `PsGetCurrentProcessId`/`PsGetCurrentThreadId` answering the requestor's ids; paging
//!    I/O skips operations registered with `FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO`;
//! 2. its status: `SUCCESS_WITH_CALLBACK` (post later), `SUCCESS_NO_CALLBACK`, `COMPLETE` (the
//!    operation ends with the `IoStatus` the filter set; the file system is not touched),
//!    `SYNCHRONIZE` (post on the same thread at the pre's IRQL), `PENDING` (the issuing
//!    thread waits, at most `SimConfig::pend_limit`, for `FltCompletePendedPreOperation`, then
//!    goes on as the status given there directs; [`crate::fltmgr::pending`]); anything else
//!    is a violation, as is a completion context set with a status that has no post callback,
//!    or `WITH_CALLBACK`/`SYNCHRONIZE` for an operation without one;
//! 3. the file system operation ([`crate::world::fs`]), reading the parameters back from the
//!    callback data (a filter may change them);
//! 4. the post-operation callback, at PASSIVE_LEVEL (post-create always; other posts at
//!    DISPATCH_LEVEL with [`IoConfig::post_ops_at_dispatch`], which Windows may do), which
//!    returns `FLT_POSTOP_FINISHED_PROCESSING`, or `FLT_POSTOP_MORE_PROCESSING_REQUIRED` and the
//!    operation waits (at most `SimConfig::pend_limit`) for `FltCompletePendedPostOperation`.
//!
//! Operations are synchronous: the calling test thread runs the callbacks. Each instance counts
//! its operations in flight, which teardown and `FltUnregisterFilter` drain. The other majors,
//! fast I/O and the `FsFilter` pseudo-operations are in [`ops`], [`fs_filter`],
//! [`query_open`] and [`workout`] (fast I/O and `FsFilter` callback data,
//! `FLT_PREOP_DISALLOW_FASTIO` honoured for fast I/O, posts of non-IRP operations at the pre's
//! IRQL). Left out: the operations those modules list, `ParentOfTarget` (NULL), transactions'
//! isolation ([`transacted`]: a file object opened in a transaction carries it in
//! `FLT_RELATED_OBJECTS::Transaction`). A pre-operation callback's changes to the parameter
//! block reach the file system only if it marked the callback data dirty
//! ([`crate::fltmgr::dirty`]); a write's final `MdlAddress` is freed when it completes, as the
//! I/O system does.

use std::mem::offset_of;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vigil_sys::{
    APC_LEVEL, DEVICE_OBJECT, DISPATCH_LEVEL, FILE_DISPOSITION_INFORMATION,
    FILE_DISPOSITION_INFORMATION_EX, FILE_INFORMATION_CLASS, FILE_OBJECT, FILE_OPEN_BY_FILE_ID,
    FILE_RENAME_INFORMATION, FLT_CALLBACK_DATA, FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED,
    FLT_IO_PARAMETER_BLOCK, FLT_PARAMETERS, FLT_PARAMETERS_CREATE,
    FLT_PARAMETERS_SET_FILE_INFORMATION, FLT_PARAMETERS_WRITE, FLT_POSTOP_DISALLOW_FSFILTER_IO,
    FLT_POSTOP_FINISHED_PROCESSING, FLT_POSTOP_MORE_PROCESSING_REQUIRED, FLT_PREOP_COMPLETE,
    FLT_PREOP_DISALLOW_FASTIO, FLT_PREOP_DISALLOW_FSFILTER_IO, FLT_PREOP_PENDING,
    FLT_PREOP_SUCCESS_NO_CALLBACK, FLT_PREOP_SUCCESS_WITH_CALLBACK, FLT_PREOP_SYNCHRONIZE,
    FLT_RELATED_OBJECTS, FLTFL_CALLBACK_DATA_FAST_IO_OPERATION,
    FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION, FLTFL_CALLBACK_DATA_IRP_OPERATION,
    FLTFL_CALLBACK_DATA_POST_OPERATION, FileDispositionInformation, FileDispositionInformationEx,
    FileLinkInformation, FileLinkInformationEx, FileRenameInformation, FileRenameInformationEx,
    IO_SECURITY_CONTEXT, IO_STATUS_BLOCK, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE,
    IRP_MJ_SET_INFORMATION, IRP_MJ_WRITE, IRP_NOCACHE, IRP_PAGING_IO, KernelMode, NT_SUCCESS,
    NTSTATUS, PASSIVE_LEVEL, PVOID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
    UNICODE_STRING, UserMode,
};

use crate::fltmgr::draining::{AwaitingPost, HoldGate};
use crate::fltmgr::files::{Count, FileRecord, IoState};
use crate::fltmgr::instances::{FsHandle, InstanceState, VolumeId};
use crate::fltmgr::name_provider;
use crate::fltmgr::pending::Pend;
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::Kernel;
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::state;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;
use crate::world::fs::{FileSystem, REPLACE_IF_EXISTS};
use crate::world::volumes::{fs_mut, fs_of};

mod fs_filter;
mod notify;
mod ops;
mod query_open;
mod transacted;
mod volume_ops;
mod workout;

pub use notify::NotifyRecord;
pub use ops::FileStandard;
pub(crate) use transacted::STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED;
pub use transacted::Transaction;
pub use workout::Workout;

/// `IO_TYPE_FILE`.
const IO_TYPE_FILE: i16 = 5;

/// How an operation reaches the filters (its callback data's `FLTFL_CALLBACK_DATA_*` kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// An IRP.
    Irp,
    /// A fast I/O call (`FLT_PREOP_DISALLOW_FASTIO` sends it back to be reissued as an IRP).
    FastIo,
    /// An `FsFilter` callback (the Acquire/Release pseudo-operations).
    FsFilter,
}

/// One operation to issue ([`Io::issue`]).
#[derive(Clone, Copy)]
struct Request {
    volume: VolumeId,
    file_object: usize,
    major: u8,
    minor: u8,
    irp_flags: u32,
    irql: u8,
    parameters: FLT_PARAMETERS,
    desired_access: u32,
    path: Path,
}

impl Request {
    /// An operation at PASSIVE_LEVEL with no minor function, IRP flags or desired access.
    fn at_passive(
        volume: VolumeId,
        file_object: usize,
        major: u8,
        path: Path,
        parameters: FLT_PARAMETERS,
    ) -> Self {
        Self {
            volume,
            file_object,
            major,
            minor: 0,
            irp_flags: 0,
            irql: PASSIVE_LEVEL,
            parameters,
            desired_access: 0,
            path,
        }
    }
}

/// Who issues a synthetic operation: the ids `PsGetCurrentProcessId`/`PsGetCurrentThreadId`
/// and `FltGetRequestorProcessId` return inside its callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requestor {
    /// Process id.
    pub pid: u32,
    /// Thread id: below `0x0100_0000`, where the ids kernel-sim allocates to its own and the
    /// driver's threads begin (one id for two threads would share lock ownership).
    pub tid: u32,
}

/// How a write is issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Paging I/O (`IRP_PAGING_IO | IRP_NOCACHE`, kernel-mode requestor): not seen by
    /// operations registered with `FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO`.
    pub paging_io: bool,
    /// Call the pre-write callback at APC_LEVEL instead of PASSIVE_LEVEL.
    pub at_apc_level: bool,
}

/// An open of a file: one `FILE_OBJECT`, kept until [`Io::close`].
#[derive(Debug)]
pub struct FileHandle {
    file_object: usize,
    volume: VolumeId,
    information: usize,
}

impl FileHandle {
    /// The create's `IoStatus.Information` (`FILE_CREATED`, `FILE_OPENED`, ...).
    pub fn information(&self) -> usize {
        self.information
    }

    /// The volume it was opened on.
    pub fn volume(&self) -> VolumeId {
        self.volume
    }

    /// The address of its `FILE_OBJECT`.
    pub fn file_object(&self) -> usize {
        self.file_object
    }
}

/// Everything one operation hands the driver, in one block of guest memory.
#[repr(C)]
#[derive(Clone, Copy)]
struct OperationBlock {
    data: FLT_CALLBACK_DATA,
    iopb: FLT_IO_PARAMETER_BLOCK,
    objects: FLT_RELATED_OBJECTS,
    security: IO_SECURITY_CONTEXT,
    completion: PVOID,
    /// The body `Data->Thread` points to (opaque to filters).
    thread: [u64; 8],
}

/// Where the filter's callbacks for one operation are.
struct Dispatch {
    pre: usize,
    post: usize,
    instance: usize,
}

/// What [`Io::begin`] found: the filter's callbacks if it sees the operation, and the handles
/// its related objects name.
struct Begun {
    dispatch: Option<Dispatch>,
    filter: usize,
    volume_handle: usize,
}

/// Where the parts of an operation's block are (guest addresses).
struct BlockAddresses {
    path: Path,
    major: u8,
    base: usize,
    data: usize,
    iopb: usize,
    objects: usize,
    security: usize,
    completion: usize,
}

impl BlockAddresses {
    fn of(base: usize, path: Path, major: u8) -> Self {
        Self {
            path,
            major,
            base,
            data: base + offset_of!(OperationBlock, data),
            iopb: base + offset_of!(OperationBlock, iopb),
            objects: base + offset_of!(OperationBlock, objects),
            security: base + offset_of!(OperationBlock, security),
            completion: base + offset_of!(OperationBlock, completion),
        }
    }
}

/// What the file-system step of an operation reads and changes.
type FsStep<'a> = &'a mut dyn FnMut(&IoState, usize) -> (NTSTATUS, usize);

type PreCallback =
    unsafe extern "win64" fn(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, *mut PVOID) -> i32;
type PostCallback =
    unsafe extern "win64" fn(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, PVOID, u32) -> i32;

fn callback_names(major: u8) -> (&'static str, &'static str) {
    match major {
        IRP_MJ_CREATE => ("PreCreate", "PostCreate"),
        IRP_MJ_WRITE => ("PreWrite", "PostWrite"),
        IRP_MJ_SET_INFORMATION => ("PreSetInformation", "PostSetInformation"),
        IRP_MJ_CLEANUP => ("PreCleanup", "PostCleanup"),
        IRP_MJ_CLOSE => ("PreClose", "PostClose"),
        _ => ops::callback_names(major),
    }
}

/// `text` as UTF-16LE bytes, sized once (every create names its file object this way).
fn utf16_bytes(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() * 2);
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

/// Issues synthetic I/O as one requestor. Cheap to create; usable from any thread (several
/// threads may issue I/O at once, each with its own `Io`).
pub struct Io {
    kernel: Arc<Kernel>,
    requestor: Requestor,
    /// The requestor's current transaction (its creates are transacted; 0: none), as
    /// `RtlSetCurrentTransaction` sets a thread's ([`transacted`]).
    transaction: std::sync::atomic::AtomicUsize,
}

impl Io {
    pub(crate) fn new(kernel: Arc<Kernel>, requestor: Requestor) -> Self {
        Self {
            kernel,
            requestor,
            transaction: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// An I/O of the same kernel for another requestor.
    pub(crate) fn with_requestor(&self, requestor: Requestor) -> Self {
        Self::new(Arc::clone(&self.kernel), requestor)
    }

    /// The system process's I/O: volume mounts and dismounts.
    pub(crate) fn system(kernel: Arc<Kernel>) -> Self {
        Self::new(kernel, volume_ops::SYSTEM_REQUESTOR)
    }

    /// The requestor.
    pub fn requestor(&self) -> Requestor {
        self.requestor
    }

    /// Runs a driver callback as the requestor's thread.
    fn call_as<R>(&self, name: &'static str, irql: u8, f: impl FnOnce() -> R) -> Option<R> {
        let saved = state::with(|s| {
            (
                s.process_id.replace(self.requestor.pid as usize),
                s.thread_id.replace(self.requestor.tid as usize),
            )
        });
        let result = self.kernel.call_driver(name, Some(irql), f);
        state::with(|s| {
            s.process_id.set(saved.0);
            s.thread_id.set(saved.1);
        });
        result
    }

    /// Counts the operation, finds the callbacks for `major` on `volume` (none when registered
    /// with one of the `skip` flags) and, if the filter sees it, counts it in flight under `data` (its callback data): one lock for all of it,
    /// as every lock of the shared state taken per operation is contended by the other I/O
    /// threads.
    fn begin(
        &self,
        volume: VolumeId,
        major: u8,
        skip: u32,
        data: usize,
    ) -> Result<Begun, NTSTATUS> {
        let k = &self.kernel;
        let crashed = k.crashed.load(Ordering::Acquire);
        let flt = flt_read(k);
        let v = flt
            .io
            .volumes
            .get(volume.0)
            .filter(|v| v.mounted)
            .ok_or(status::VOLUME_DISMOUNTED)?;
        flt.io.stats.add(Count::Operations, 1);
        let mut begun = Begun {
            dispatch: None,
            filter: v.instance.as_ref().map_or(0, |i| i.filter),
            volume_handle: v.handle.address(),
        };
        let Some(instance) = v
            .instance
            .as_ref()
            .filter(|i| i.state == InstanceState::Live)
        else {
            return Ok(begun);
        };
        let Some(filter) = flt
            .filters
            .get(&instance.filter)
            .filter(|f| !f.unregistered)
        else {
            return Ok(begun);
        };
        if crashed {
            return Ok(begun);
        }
        let Some(operation) = filter.operations.iter().find(|o| o.major == major) else {
            return Ok(begun);
        };
        if (operation.pre == 0 && operation.post == 0) || operation.flags & skip != 0 {
            return Ok(begun);
        }
        // Counted under the shared lock: a teardown changes the state under the exclusive
        // one, so it sees every operation that saw the instance live.
        instance.in_flight.add(1);
        begun.dispatch = Some(Dispatch {
            pre: operation.pre,
            post: operation.post,
            instance: instance.handle.address(),
        });
        flt.io.in_flight.insert(data, self.requestor.pid);
        if operation.pre != 0 {
            flt.io.stats.add(Count::PreCallbacks, 1);
        }
        Ok(begun)
    }

    fn end(&self, volume: VolumeId, data: usize) {
        // Only a teardown waits for operations in flight: waking every waiter (a driver's
        // threads in their timed waits) after each operation would cost more than the I/O.
        let draining = {
            let flt = flt_read(&self.kernel);
            flt.io.in_flight.remove(data);
            // A drained operation no longer counts against its instance (the teardown took it
            // off, and the volume may have a new instance by now).
            if flt.io.posts.lock(data).take_drained(data) {
                return;
            }
            flt.io
                .volumes
                .get(volume.0)
                .and_then(|v| v.instance.as_ref())
                .is_none_or(|instance| {
                    instance.in_flight.add(-1);
                    instance.state == InstanceState::TearingDown
                })
        };
        if draining {
            self.kernel.notify_waiters();
        }
    }

    /// Builds the operation, runs the callbacks around `fs_step`, returns the final `IoStatus`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one internal entry point for every major function, read top to bottom"
    )]
    fn perform(
        &self,
        volume: VolumeId,
        file_object: usize,
        major: u8,
        irp_flags: u32,
        irql: u8,
        parameters: FLT_PARAMETERS,
        desired_access: u32,
        fs_step: FsStep<'_>,
    ) -> (NTSTATUS, usize) {
        let request = Request {
            volume,
            file_object,
            major,
            minor: 0,
            irp_flags,
            irql,
            parameters,
            desired_access,
            path: Path::Irp,
        };
        self.issue(request, fs_step)
    }

    /// Builds the operation `request`, runs the callbacks around `fs_step`, returns the final
    /// `IoStatus` (`STATUS_FLT_DISALLOW_FAST_IO` for a fast I/O operation a filter disallowed).
    fn issue(&self, request: Request, fs_step: FsStep<'_>) -> (NTSTATUS, usize) {
        self.issue_waiting(request, None, fs_step)
    }

    /// [`Io::issue`] for an operation the file system holds before it answers: `wait` runs
    /// first, outside every lock, with the operation block's address (a change notification
    /// waits there for a change).
    #[expect(
        clippy::too_many_lines,
        reason = "one operation from its block to its completion, read top to bottom"
    )]
    fn issue_waiting(
        &self,
        request: Request,
        wait: Option<&mut dyn FnMut(usize)>,
        fs_step: FsStep<'_>,
    ) -> (NTSTATUS, usize) {
        let Request {
            volume,
            file_object,
            major,
            minor,
            irp_flags,
            irql,
            parameters,
            desired_access,
            path,
        } = request;
        let block = GuestAlloc::for_type::<OperationBlock>(0);
        let at = BlockAddresses::of(block.address(), path, major);
        let begun = match self.begin(
            volume,
            major,
            ops::skipped_by(major, path, irp_flags),
            at.data,
        ) {
            Ok(begun) => begun,
            Err(status) => return (status, 0),
        };
        let dispatch = begun.dispatch;
        let k = &self.kernel;
        let instance = dispatch.as_ref().map_or(0, |d| d.instance);
        let mut parameters = parameters;
        if major == IRP_MJ_CREATE || ops::is_pipe_or_mailslot_create(major) {
            // `Create`, `CreatePipe` and `CreateMailslot` all start with it.
            parameters.Create.SecurityContext = at.security as *mut IO_SECURITY_CONTEXT;
        }
        let iopb = FLT_IO_PARAMETER_BLOCK {
            IrpFlags: irp_flags,
            MajorFunction: major,
            MinorFunction: minor,
            OperationFlags: 0,
            Reserved: 0,
            TargetFileObject: file_object as *mut FILE_OBJECT,
            TargetInstance: instance as PVOID,
            Parameters: parameters,
        };
        Self::write_block(
            &block,
            &at,
            (begun.filter, begun.volume_handle),
            iopb,
            desired_access,
        );
        self.write_transaction(file_object, &at);
        let (pre_name, post_name) = callback_names(major);
        let mut post_at = None;
        let mut completed = false;
        if let Some(d) = &dispatch {
            let before = crate::fltmgr::dirty::snapshot(at.iopb);
            let outcome = self.run_pre(d, pre_name, irql, &at);
            if matches!(outcome, Some(o) if o != PreOutcome::Abandoned) {
                crate::fltmgr::dirty::check_parameters(k, at.data, at.iopb, &before, pre_name);
            }
            match outcome {
                None => {
                    self.end(volume, at.data);
                    return (STATUS_UNSUCCESSFUL, 0);
                }
                Some(PreOutcome::Post) => post_at = Some(self.default_post_irql(major, path, irql)),
                Some(PreOutcome::Synchronize) => post_at = Some(irql),
                Some(PreOutcome::NoPost) => {}
                Some(PreOutcome::Complete) => completed = true,
                Some(PreOutcome::Disallowed) => {
                    crate::fltmgr::operation_requests::complete(k, at.data, at.iopb);
                    self.end(volume, at.data);
                    return (ops::STATUS_FLT_DISALLOW_FAST_IO, 0);
                }
                Some(PreOutcome::Abandoned) => {
                    // The filter may still hold the callback data: never free it.
                    std::mem::forget(block);
                    self.end(volume, at.data);
                    return (STATUS_UNSUCCESSFUL, 0);
                }
            }
        }
        if let (Some(d), Some(_)) = (&dispatch, post_at) {
            self.await_post(d, volume, post_name, &at);
        }
        let status_at = (at.data + offset_of!(FLT_CALLBACK_DATA, IoStatus)) as *mut IO_STATUS_BLOCK;
        if !completed {
            let (status, information) =
                self.file_system(dispatch.is_some(), wait, fs_step, at.base);
            if dispatch.is_some() {
                self.run_status_callbacks(&at, status, irql);
            }
            guest::write(
                status_at,
                IO_STATUS_BLOCK {
                    Status: status,
                    _Pad: 0,
                    Information: information,
                },
            );
        }
        if let (Some(d), Some(post_irql)) = (&dispatch, post_at) {
            // Unless a teardown drained the operation meanwhile (its post ran or is running).
            let post_now = {
                let flt = flt_read(k);
                let post_now = flt.io.posts.lock(at.data).begin_post(at.data);
                flt.io.stats.add(Count::PostCallbacks, u64::from(post_now));
                post_now
            };
            if !post_now {
                // Drained: its post may still be running on the tearing-down thread.
                crate::fltmgr::draining::wait_for_draining_post(k, at.data);
            } else if !self.run_post(d, post_name, post_irql, &at) {
                // The filter may still hold the callback data: never free it.
                std::mem::forget(block);
                self.end(volume, at.data);
                return (STATUS_UNSUCCESSFUL, 0);
            }
        }
        let result = guest::read(status_at);
        if major == IRP_MJ_WRITE {
            crate::fltmgr::dirty::complete_write_mdl(k, at.iopb);
        }
        crate::fltmgr::operation_requests::complete(k, at.data, at.iopb);
        if dispatch.is_some() {
            self.end(volume, at.data);
        }
        (result.Status, result.Information)
    }

    /// Records that the operation awaits its post, so that a teardown can drain it; wakes a
    /// teardown already waiting for the instance's operations.
    fn await_post(
        &self,
        d: &Dispatch,
        volume: VolumeId,
        post_name: &'static str,
        at: &BlockAddresses,
    ) {
        let tearing_down = {
            let flt = flt_read(&self.kernel);
            flt.io.posts.lock(at.data).await_post(
                at.data,
                AwaitingPost {
                    instance: d.instance,
                    post: d.post,
                    post_name,
                    objects: at.objects,
                    completion: at.completion,
                },
            );
            flt.io.volumes[volume.0]
                .instance
                .as_ref()
                .is_none_or(|i| i.state == InstanceState::TearingDown)
        };
        if tearing_down {
            self.kernel.notify_waiters();
        }
    }

    /// The file-system step of an operation, under the state's lock. An operation the filter
    /// saw first waits while a test holds the file system ([`Driver::hold_file_system`]).
    ///
    /// [`Driver::hold_file_system`]: crate::Driver::hold_file_system
    fn file_system(
        &self,
        filtered: bool,
        wait: Option<&mut dyn FnMut(usize)>,
        fs_step: FsStep<'_>,
        base: usize,
    ) -> (NTSTATUS, usize) {
        let k = &self.kernel;
        let mut flt = flt_read(k);
        if filtered {
            while let Some(gate) = flt.io.fs_hold.clone() {
                drop(flt);
                gate.wait();
                flt = flt_read(k);
            }
        }
        if let Some(wait) = wait {
            drop(flt);
            wait(base);
            flt = flt_read(k);
        }
        fs_step(&flt.io, base)
    }

    /// Fills an operation's block: the callback data (status pending as success), the
    /// parameter block `iopb`, the related objects and the create's security context.
    fn write_block(
        block: &GuestAlloc,
        at: &BlockAddresses,
        (filter, volume_handle): (usize, usize),
        iopb: FLT_IO_PARAMETER_BLOCK,
        desired_access: u32,
    ) {
        let kernel_mode = iopb.IrpFlags & IRP_PAGING_IO != 0 || at.path == Path::FsFilter;
        guest::write(
            block.as_ptr::<OperationBlock>(),
            OperationBlock {
                data: FLT_CALLBACK_DATA {
                    Flags: match at.path {
                        Path::Irp => FLTFL_CALLBACK_DATA_IRP_OPERATION,
                        Path::FastIo => FLTFL_CALLBACK_DATA_FAST_IO_OPERATION,
                        Path::FsFilter => FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION,
                    },
                    Thread: (at.base + offset_of!(OperationBlock, thread)) as PVOID,
                    Iopb: at.iopb as *mut FLT_IO_PARAMETER_BLOCK,
                    IoStatus: IO_STATUS_BLOCK {
                        Status: STATUS_SUCCESS,
                        _Pad: 0,
                        Information: 0,
                    },
                    TagData: std::ptr::null_mut(),
                    FilterContext: [std::ptr::null_mut(); 4],
                    RequestorMode: if kernel_mode { KernelMode } else { UserMode },
                },
                objects: FLT_RELATED_OBJECTS {
                    Size: u16::try_from(size_of::<FLT_RELATED_OBJECTS>()).unwrap_or(u16::MAX),
                    TransactionContext: 0,
                    Filter: filter as PVOID,
                    Volume: volume_handle as PVOID,
                    Instance: iopb.TargetInstance,
                    FileObject: iopb.TargetFileObject,
                    Transaction: std::ptr::null_mut(),
                },
                iopb,
                security: IO_SECURITY_CONTEXT {
                    SecurityQos: std::ptr::null_mut(),
                    AccessState: std::ptr::null_mut(),
                    DesiredAccess: desired_access,
                    FullCreateOptions: 0,
                },
                completion: std::ptr::null_mut(),
                thread: [0; 8],
            },
        );
    }

    /// Runs the pre-operation callback (if one is registered) and checks what it returned;
    /// `None` if the call was abandoned.
    fn run_pre(
        &self,
        d: &Dispatch,
        pre_name: &'static str,
        irql: u8,
        at: &BlockAddresses,
    ) -> Option<PreOutcome> {
        if d.pre == 0 {
            // No pre-operation callback: the post is called at its usual IRQL.
            return Some(PreOutcome::Post);
        }
        // SAFETY: `d.pre` is the PreOperation callback the driver registered for this major
        // function; the image is mapped while its instance is live.
        let pre: PreCallback = unsafe { std::mem::transmute(d.pre) };
        // A work item may complete the operation before the pre has returned PENDING.
        flt_read(&self.kernel).io.pended.open(at.data);
        crate::fltmgr::operation_requests::enter_pre(&self.kernel, at.data);
        let outer = state::with(|s| s.operation.replace(at.data));
        // SAFETY: as above; the arguments point into this operation's block, alive for the call.
        let returned = self.call_as(pre_name, irql, || unsafe {
            pre(
                at.data as *mut FLT_CALLBACK_DATA,
                at.objects as *const FLT_RELATED_OBJECTS,
                at.completion as *mut PVOID,
            )
        });
        crate::fltmgr::operation_requests::leave_pre(&self.kernel, at.data);
        state::with(|s| s.operation.set(outer));
        let Some(returned) = returned else {
            flt_read(&self.kernel).io.pended.close(at.data);
            return None;
        };
        if returned == FLT_PREOP_PENDING {
            if at.path != Path::Irp {
                ops::report_pended_non_irp(&self.kernel, pre_name);
            }
            return Some(self.await_pended(pre_name, at, d.post != 0));
        }
        let slot = flt_read(&self.kernel).io.pended.close(at.data);
        if let Some(Pend::Completed(..)) = slot {
            let previous = state::with(|s| s.callback.replace(pre_name));
            self.kernel.violation(
                ViolationKind::CallbackStatus,
                "FltCompletePendedPreOperation only for an operation whose pre-operation callback returned FLT_PREOP_PENDING",
                format!("{pre_name} completed its operation and returned {returned:#x}"),
            );
            state::with(|s| s.callback.set(previous));
        }
        let context = guest::read(at.completion as *const PVOID);
        Some(self.check_pre_status(pre_name, returned, context, (d.post != 0, at)))
    }

    /// Waits for `FltCompletePendedPreOperation` on an operation its pre pended, at most
    /// `SimConfig::pend_limit` (on Windows the requestor would wait forever); then goes on as
    /// the completion's status directs. An operation never completed is reported and ends as
    /// completed by the filter with `STATUS_UNSUCCESSFUL`; its block stays allocated, since the
    /// filter may still hold it.
    fn await_pended(
        &self,
        pre_name: &'static str,
        at: &BlockAddresses,
        has_post: bool,
    ) -> PreOutcome {
        let k = &self.kernel;
        let limit = k.config.pend_limit.min(k.config.hang_timeout / 2);
        let deadline = Instant::now() + limit;
        crate::world::cancel::maybe_cancel(k, at.data, deadline);
        let completed = k.wait_until(Some(deadline), "a pended pre-operation", || {
            matches!(
                flt_read(k).io.pended.get(at.data),
                Some(Pend::Completed(..))
            )
        });
        let slot = {
            let flt = flt_read(k);
            if completed {
                flt.io.pended.close(at.data)
            } else {
                flt.io.pended.abandon(at.data);
                None
            }
        };
        let Some(Pend::Completed(status, context)) = slot else {
            let previous = state::with(|s| s.callback.replace(pre_name));
            k.violation(
                ViolationKind::CallbackContract,
                "an operation pended with FLT_PREOP_PENDING is completed with FltCompletePendedPreOperation",
                format!("{pre_name} returned FLT_PREOP_PENDING and the operation was not completed within {limit:?}: its requestor would wait forever"),
            );
            state::with(|s| s.callback.set(previous));
            guest::write(
                (at.data + offset_of!(FLT_CALLBACK_DATA, IoStatus)) as *mut IO_STATUS_BLOCK,
                IO_STATUS_BLOCK {
                    Status: STATUS_UNSUCCESSFUL,
                    _Pad: 0,
                    Information: 0,
                },
            );
            return PreOutcome::Abandoned;
        };
        guest::write(at.completion as *mut PVOID, context as PVOID);
        self.check_pre_status(pre_name, status, context as PVOID, (has_post, at))
    }

    /// Marks the operation as in its post phase and runs the post-operation callback at
    /// `post_irql`, checking its status; false when the post pended the operation and it was
    /// never completed (the block must then stay allocated).
    fn run_post(
        &self,
        d: &Dispatch,
        post_name: &'static str,
        post_irql: u8,
        at: &BlockAddresses,
    ) -> bool {
        let k = &self.kernel;
        let flags_at = (at.data + offset_of!(FLT_CALLBACK_DATA, Flags)) as *mut u32;
        guest::write(
            flags_at,
            guest::read(flags_at) | FLTFL_CALLBACK_DATA_POST_OPERATION,
        );
        // SAFETY: `d.post` is the PostOperation callback the driver registered for this
        // major function (non-zero: checked by check_pre_status / default_post_irql's caller).
        let post: PostCallback = unsafe { std::mem::transmute(d.post) };
        let context = guest::read(at.completion as *const PVOID);
        // A worker may complete the operation before the post has returned.
        flt_read(k).io.pended.open_post(at.data);
        let outer = state::with(|s| s.operation.replace(at.data));
        // SAFETY: as above; the arguments point into this operation's block.
        let returned = self.call_as(post_name, post_irql, || unsafe {
            post(
                at.data as *mut FLT_CALLBACK_DATA,
                at.objects as *const FLT_RELATED_OBJECTS,
                context,
                0,
            )
        });
        state::with(|s| s.operation.set(outer));
        if returned == Some(FLT_POSTOP_MORE_PROCESSING_REQUIRED) {
            return self.await_pended_post(post_name, at);
        }
        let early = flt_read(k).io.pended.close(at.data) == Some(Pend::Completed(0, 0));
        let previous = state::with(|s| s.callback.replace(post_name));
        if early {
            k.violation(
                ViolationKind::CallbackStatus,
                "FltCompletePendedPostOperation only for an operation whose post-operation callback returned FLT_POSTOP_MORE_PROCESSING_REQUIRED",
                format!("{post_name} completed its operation and returned {returned:?}"),
            );
        }
        match returned {
            Some(FLT_POSTOP_FINISHED_PROCESSING) | None => {}
            Some(FLT_POSTOP_DISALLOW_FSFILTER_IO) if ops::fs_filter_io_disallowable(at.major) => {
                // The issuer takes the slow path (open, query, close) instead.
                ops::mark_disallowed(at.data);
            }
            Some(other) => k.violation(
                ViolationKind::CallbackStatus,
                "a post-operation callback returns FLT_POSTOP_FINISHED_PROCESSING or FLT_POSTOP_MORE_PROCESSING_REQUIRED",
                format!("{post_name} returned {other:#x}"),
            ),
        }
        state::with(|s| s.callback.set(previous));
        true
    }

    /// Waits for `FltCompletePendedPostOperation` on an operation whose post returned
    /// `FLT_POSTOP_MORE_PROCESSING_REQUIRED`, at most `SimConfig::pend_limit` (on Windows the
    /// requestor would wait forever). False when it never came (reported): the operation's
    /// block must then stay allocated, since the filter may still hold it.
    fn await_pended_post(&self, post_name: &'static str, at: &BlockAddresses) -> bool {
        let k = &self.kernel;
        let limit = k.config.pend_limit.min(k.config.hang_timeout / 2);
        let deadline = Instant::now() + limit;
        let completed = k.wait_until(Some(deadline), "a pended post-operation", || {
            matches!(
                flt_read(k).io.pended.get(at.data),
                Some(Pend::Completed(..))
            )
        });
        let flt = flt_read(k);
        if completed {
            flt.io.pended.close(at.data);
            return true;
        }
        flt.io.pended.abandon(at.data);
        drop(flt);
        let previous = state::with(|s| s.callback.replace(post_name));
        k.violation(
            ViolationKind::CallbackContract,
            "an operation pended with FLT_POSTOP_MORE_PROCESSING_REQUIRED is completed with FltCompletePendedPostOperation",
            format!("{post_name} returned FLT_POSTOP_MORE_PROCESSING_REQUIRED and the operation was not completed within {limit:?}: its requestor would wait forever"),
        );
        state::with(|s| s.callback.set(previous));
        false
    }

    fn default_post_irql(&self, major: u8, path: Path, pre_irql: u8) -> u8 {
        if path != Path::Irp {
            // Fast I/O and FsFilter operations complete on the calling thread.
            pre_irql
        } else if major != IRP_MJ_CREATE && self.kernel.config.io.post_ops_at_dispatch {
            DISPATCH_LEVEL
        } else {
            PASSIVE_LEVEL
        }
    }

    /// Checks a pre-operation callback's status and completion context.
    fn check_pre_status(
        &self,
        callback: &'static str,
        returned: i32,
        context: PVOID,
        (has_post, at): (bool, &BlockAddresses),
    ) -> PreOutcome {
        // Violations found here are the callback's: attribute them to it.
        let previous = state::with(|s| s.callback.replace(callback));
        let outcome = self.check_pre_status_of(callback, returned, context, (has_post, at));
        state::with(|s| s.callback.set(previous));
        outcome
    }

    fn check_pre_status_of(
        &self,
        callback: &str,
        returned: i32,
        context: PVOID,
        (has_post, at): (bool, &BlockAddresses),
    ) -> PreOutcome {
        let k = &self.kernel;
        let path = at.path;
        let (outcome, name) = match returned {
            FLT_PREOP_DISALLOW_FASTIO if path == Path::FastIo => {
                (PreOutcome::Disallowed, "FLT_PREOP_DISALLOW_FASTIO")
            }
            // Only for IRP_MJ_QUERY_OPEN (PFLT_PRE_OPERATION_CALLBACK's page).
            FLT_PREOP_DISALLOW_FSFILTER_IO if ops::fs_filter_io_disallowable(at.major) => {
                (PreOutcome::Disallowed, "FLT_PREOP_DISALLOW_FSFILTER_IO")
            }
            // Not IRP-based: Filter Manager treats SYNCHRONIZE as SUCCESS_WITH_CALLBACK
            // (https://learn.microsoft.com/windows-hardware/drivers/ifs/returning-flt-preop-synchronize).
            FLT_PREOP_SYNCHRONIZE if path != Path::Irp => {
                (PreOutcome::Post, "FLT_PREOP_SYNCHRONIZE")
            }
            FLT_PREOP_SUCCESS_WITH_CALLBACK => {
                (PreOutcome::Post, "FLT_PREOP_SUCCESS_WITH_CALLBACK")
            }
            FLT_PREOP_SYNCHRONIZE => (PreOutcome::Synchronize, "FLT_PREOP_SYNCHRONIZE"),
            FLT_PREOP_SUCCESS_NO_CALLBACK => (PreOutcome::NoPost, "FLT_PREOP_SUCCESS_NO_CALLBACK"),
            FLT_PREOP_COMPLETE => (PreOutcome::Complete, "FLT_PREOP_COMPLETE"),
            other => {
                k.violation(
                    ViolationKind::CallbackStatus,
                    "RULES.md 24: a pre-operation callback returns a valid FLT_PREOP_CALLBACK_STATUS for an IRP operation",
                    format!("invalid pre-operation status {other:#x} from {callback}; the operation continues as SUCCESS_NO_CALLBACK"),
                );
                return PreOutcome::NoPost;
            }
        };
        match outcome {
            PreOutcome::Post | PreOutcome::Synchronize if !has_post => {
                k.violation(
                    ViolationKind::CallbackStatus,
                    "RULES.md 24: SUCCESS_WITH_CALLBACK or SYNCHRONIZE only for operations with a post-operation callback",
                    format!("{callback} returned {name} but registered no post-operation callback"),
                );
                PreOutcome::NoPost
            }
            PreOutcome::NoPost | PreOutcome::Complete | PreOutcome::Disallowed
                if !context.is_null() =>
            {
                k.violation(
                    ViolationKind::CallbackStatus,
                    "RULES.md 24: a completion context only when a post-operation callback will receive it",
                    format!("{callback} set completion context {context:p} and returned {name}: it is never passed on (leaked)"),
                );
                outcome
            }
            _ => outcome,
        }
    }

    fn volume_device(&self, volume: VolumeId) -> Option<(usize, String)> {
        let flt = flt_read(&self.kernel);
        flt.io
            .volumes
            .get(volume.0)
            .filter(|v| v.mounted)
            .map(|v| (v.device.address(), v.device_name.clone()))
    }

    /// `IRP_MJ_CREATE` of `path` (volume-relative, `\dir\file`) with `disposition`
    /// (`FILE_SUPERSEDE`..`FILE_OVERWRITE_IF`), create `options` (`FILE_DIRECTORY_FILE`,
    /// `FILE_DELETE_ON_CLOSE`, ...) and `desired_access`.
    ///
    /// # Errors
    ///
    /// The create's failure status (`STATUS_OBJECT_NAME_NOT_FOUND`,
    /// `STATUS_OBJECT_NAME_COLLISION`, a filter's `STATUS_ACCESS_DENIED`...).
    pub fn create(
        &self,
        volume: VolumeId,
        path: &str,
        disposition: u32,
        options: u32,
        desired_access: u32,
    ) -> Result<FileHandle, NTSTATUS> {
        let target = CreateTarget::Path(path.to_owned());
        self.create_object(
            volume,
            &utf16_bytes(path),
            path.to_owned(),
            0,
            &target,
            (disposition, options, desired_access),
        )
    }

    /// `IRP_MJ_CREATE` of `name` relative to the open directory `directory`
    /// (`OBJECT_ATTRIBUTES.RootDirectory`: the I/O manager sets the new file object's
    /// `RelatedFileObject` to the directory's and its `FileName` to `name` alone; FltMgr's
    /// names are the full ones). Otherwise as [`Io::create`].
    ///
    /// # Errors
    ///
    /// As [`Io::create`]; `STATUS_INVALID_PARAMETER` for a `name` starting with `\`, which a
    /// relative open refuses.
    pub fn create_relative(
        &self,
        directory: &FileHandle,
        name: &str,
        disposition: u32,
        options: u32,
        desired_access: u32,
    ) -> Result<FileHandle, NTSTATUS> {
        if name.starts_with('\\') {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let base = {
            let flt = flt_read(&self.kernel);
            let fs_handle = flt
                .io
                .files
                .with(directory.file_object, |r| r.map(|r| r.fs_handle))
                .ok_or(status::INVALID_HANDLE)?;
            let volume = flt
                .io
                .volumes
                .get(directory.volume.0)
                .ok_or(status::VOLUME_DISMOUNTED)?;
            fs_handle
                .and_then(|h| volume.files().name_of(h))
                .ok_or(status::FILE_CLOSED)?
        };
        let full = if base == "\\" {
            format!("\\{name}")
        } else {
            format!("{base}\\{name}")
        };
        self.create_object(
            directory.volume,
            &utf16_bytes(name),
            full.clone(),
            directory.file_object,
            &CreateTarget::Path(full),
            (disposition, options, desired_access),
        )
    }

    /// `IRP_MJ_CREATE` with `FILE_OPEN_BY_FILE_ID`: the file object's `FileName` is the 8-byte
    /// ID. In pre-create FltMgr has no path for it: the opened name is the volume followed by
    /// the ID's bytes, and a normalized name cannot be built before the file is open (the query
    /// fails with `STATUS_OBJECT_PATH_NOT_FOUND`); after the open, names are the file's.
    ///
    /// # Errors
    ///
    /// As [`Io::create`]; `STATUS_INVALID_PARAMETER` for an unknown ID.
    pub fn create_by_id(
        &self,
        volume: VolumeId,
        id: u64,
        disposition: u32,
        options: u32,
        desired_access: u32,
    ) -> Result<FileHandle, NTSTATUS> {
        let bytes = id.to_le_bytes();
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let opened = format!("\\{}", String::from_utf16_lossy(&units));
        self.create_object(
            volume,
            &bytes,
            opened,
            0,
            &CreateTarget::Id(id),
            (disposition, options | FILE_OPEN_BY_FILE_ID, desired_access),
        )
    }

    /// The common part of the creates: a new `FILE_OBJECT` named `name_bytes` (with
    /// `related` as its `RelatedFileObject`), its record with `opened_path`, and the operation.
    #[expect(
        clippy::too_many_lines,
        reason = "one create from file object to outcome, read top to bottom"
    )]
    fn create_object(
        &self,
        volume: VolumeId,
        name_bytes: &[u8],
        opened_path: String,
        related: usize,
        target: &CreateTarget,
        (disposition, options, desired_access): (u32, u32, u32),
    ) -> Result<FileHandle, NTSTATUS> {
        let Some((device, _)) = self.volume_device(volume) else {
            return Err(status::VOLUME_DISMOUNTED);
        };
        let transaction = self.transaction_for_create(volume, desired_access)?;
        let name = GuestAlloc::zeroed(name_bytes.len() + 2);
        guest::write_bytes(name.as_ptr(), name_bytes);
        let object = GuestAlloc::for_type::<FILE_OBJECT>(0);
        let file_object = object.address();
        let length = u16::try_from(name_bytes.len()).map_err(|_| STATUS_INVALID_PARAMETER)?;
        // SAFETY: FILE_OBJECT is plain data (integers, raw pointers, KEVENTs of integers):
        // all zeroes is a valid value.
        let mut value: FILE_OBJECT = unsafe { std::mem::zeroed() };
        value.Type = IO_TYPE_FILE;
        value.Size = i16::try_from(size_of::<FILE_OBJECT>()).unwrap_or(i16::MAX);
        value.DeviceObject = device as *mut DEVICE_OBJECT;
        value.RelatedFileObject = related as *mut FILE_OBJECT;
        value.FileName = UNICODE_STRING {
            Length: length,
            MaximumLength: length + 2,
            Buffer: name.as_ptr(),
        };
        // SAFETY: kernel-sim's own fresh allocation of a FILE_OBJECT.
        unsafe { object.as_ptr::<FILE_OBJECT>().write(value) };
        let mut record = FileRecord::new(object, name, volume, opened_path);
        record.by_id = matches!(target, CreateTarget::Id(_));
        record.transaction = transaction;
        flt_read(&self.kernel).io.files.insert(file_object, record);
        let mut parameters = FLT_PARAMETERS {
            Create: FLT_PARAMETERS_CREATE {
                SecurityContext: std::ptr::null_mut(),
                Options: (disposition << 24) | (options & 0x00FF_FFFF),
                PointerAlignment1: 0,
                FileAttributes: 0,
                ShareAccess: 0,
                PointerAlignment2: 0,
                EaLength: 0,
                EaBuffer: std::ptr::null_mut(),
                AllocationSize: 0,
            },
        };
        let major = ops::create_major(target, &mut parameters);
        let mut step = |io: &IoState, base: usize| {
            let options_at = base
                + offset_of!(OperationBlock, iopb)
                + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters)
                + offset_of!(FLT_PARAMETERS_CREATE, Options);
            let options = guest::read(options_at as *const u32);
            let Some(v) = io.volumes.get(volume.0) else {
                return (status::VOLUME_DISMOUNTED, 0);
            };
            let created = match target {
                CreateTarget::Path(path) => {
                    let (disposition, options) = (options >> 24, options & 0x00FF_FFFF);
                    // An open that changes no name needs the file system only shared.
                    let opened = fs_of(v).open_existing(path, disposition, options);
                    opened.unwrap_or_else(|| fs_mut(v).create(path, disposition, options))
                }
                CreateTarget::Id(id) => fs_mut(v).create_by_id(
                    *id,
                    options >> 24,
                    options & 0x00FF_FFFF & !FILE_OPEN_BY_FILE_ID,
                ),
                CreateTarget::Pipe { path, major, .. } => {
                    ops::create_pipe_or_mailslot(v, path, *major, options)
                }
            };
            match created {
                Ok((handle, information)) => {
                    io.files.with(file_object, |record| {
                        if let Some(record) = record {
                            record.fs_handle = Some(handle);
                            record.open = true;
                        }
                    });
                    (STATUS_SUCCESS, information)
                }
                Err(status) => (status, 0),
            }
        };
        let (status, information) = self.perform(
            volume,
            file_object,
            major,
            0,
            PASSIVE_LEVEL,
            parameters,
            desired_access,
            &mut step,
        );
        let canceled = flt_read(&self.kernel)
            .io
            .files
            .with(file_object, |r| r.is_some_and(|r| r.canceled));
        if canceled && NT_SUCCESS(status) {
            self.kernel.violation(
                ViolationKind::CallbackStatus,
                "FltCancelFileOpen: the post-create callback then fails the create with an error status",
                format!("the open of '{}' was canceled but completed with {status:#x}", path_of(target)),
            );
        }
        if NT_SUCCESS(status) && !canceled {
            flt_read(&self.kernel).io.files.with(file_object, |record| {
                if let Some(record) = record {
                    // A filter that completed the create successfully owns the open.
                    record.open = true;
                }
            });
            // A filter above a name provider names the file it just saw opened.
            name_provider::ask_from_above(&self.kernel, file_object, &[FLT_FILE_NAME_NORMALIZED]);
            Ok(FileHandle {
                file_object,
                volume,
                information,
            })
        } else {
            self.discard(file_object);
            Err(if NT_SUCCESS(status) {
                STATUS_UNSUCCESSFUL
            } else {
                status
            })
        }
    }

    /// Frees a file object whose create failed (or that was closed): FltMgr drops the
    /// references it holds on its contexts first.
    fn discard(&self, file_object: usize) {
        crate::fltmgr::contexts::release_file_contexts(&self.kernel, file_object);
        crate::fltmgr::names::purge_name_cache(&self.kernel, Some(file_object));
        let record = flt_read(&self.kernel).io.files.remove(file_object);
        drop(record);
    }

    /// The file's record state for an operation: volume and file-system handle; `Err` when it
    /// was cleaned up (and the operation is not paging I/O).
    fn file_state(
        &self,
        file: &FileHandle,
        after_cleanup_ok: bool,
    ) -> Result<Option<FsHandle>, NTSTATUS> {
        flt_read(&self.kernel)
            .io
            .files
            .with(file.file_object, |record| {
                let record = record.ok_or(status::FILE_CLOSED)?;
                if record.cleaned_up && !after_cleanup_ok {
                    return Err(status::FILE_CLOSED);
                }
                Ok(record.fs_handle)
            })
    }

    /// `IRP_MJ_WRITE` of `data` at `offset`, at PASSIVE_LEVEL. Returns the final status.
    pub fn write(&self, file: &FileHandle, offset: u64, data: &[u8]) -> NTSTATUS {
        self.write_with(file, offset, data, WriteOptions::default())
    }

    /// `IRP_MJ_WRITE` with [`WriteOptions`] (paging I/O, APC_LEVEL).
    pub fn write_with(
        &self,
        file: &FileHandle,
        offset: u64,
        data: &[u8],
        options: WriteOptions,
    ) -> NTSTATUS {
        let fs_handle = match self.file_state(file, options.paging_io) {
            Ok(h) => h,
            Err(status) => return status,
        };
        let Ok(length) = u32::try_from(data.len()) else {
            return STATUS_INVALID_PARAMETER;
        };
        let buffer = GuestAlloc::zeroed(data.len());
        guest::write_bytes(buffer.as_ptr(), data);
        let parameters = FLT_PARAMETERS {
            Write: FLT_PARAMETERS_WRITE {
                Length: length,
                PointerAlignment1: 0,
                Key: 0,
                ByteOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                WriteBuffer: buffer.as_ptr(),
                MdlAddress: std::ptr::null_mut(),
            },
        };
        let volume = file.volume;
        let k = &self.kernel;
        let mut step = |io: &IoState, base: usize| {
            let write_at = base
                + offset_of!(OperationBlock, iopb)
                + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters);
            let write = guest::read(write_at as *const FLT_PARAMETERS_WRITE);
            let (Some(v), Some(handle)) = (io.volumes.get(volume.0), fs_handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            let offset = u64::try_from(write.ByteOffset).unwrap_or(0);
            let length = write.Length as usize;
            // The bytes the file system gets: the MDL's if the parameters carry one (a buffer
            // it cannot touch leaves the contents alone, the size as before).
            let written = match ops::transfer_buffer(k, write.MdlAddress, write.WriteBuffer, length)
            {
                Some(source) => fs_of(v).write_data(
                    handle,
                    offset,
                    &guest::read_bytes(source as *const u8, length),
                ),
                None => fs_of(v).write(handle, offset, length as u64),
            };
            match written {
                Ok(()) => (STATUS_SUCCESS, write.Length as usize),
                Err(status) => (status, 0),
            }
        };
        let irp_flags = if options.paging_io {
            IRP_PAGING_IO | IRP_NOCACHE
        } else {
            0
        };
        let irql = if options.at_apc_level {
            APC_LEVEL
        } else {
            PASSIVE_LEVEL
        };
        self.perform(
            volume,
            file.file_object,
            IRP_MJ_WRITE,
            irp_flags,
            irql,
            parameters,
            0,
            &mut step,
        )
        .0
    }

    /// `IRP_MJ_SET_INFORMATION` with `class` and the information structure `info` in a system
    /// buffer; `union` is the parameter union's value (`ReplaceIfExists` for rename/link).
    fn set_information(
        &self,
        file: &FileHandle,
        class: FILE_INFORMATION_CLASS,
        info: &[u8],
        union: usize,
    ) -> NTSTATUS {
        let fs_handle = match self.file_state(file, false) {
            Ok(h) => h,
            Err(status) => return status,
        };
        if [
            FileRenameInformation,
            FileRenameInformationEx,
            FileLinkInformation,
            FileLinkInformationEx,
        ]
        .contains(&class)
        {
            crate::fltmgr::names::purge_name_cache(&self.kernel, None);
        }
        let buffer = GuestAlloc::zeroed(info.len());
        guest::write_bytes(buffer.as_ptr(), info);
        let parameters = FLT_PARAMETERS {
            SetFileInformation: FLT_PARAMETERS_SET_FILE_INFORMATION {
                Length: u32::try_from(info.len()).unwrap_or(u32::MAX),
                PointerAlignment1: 0,
                FileInformationClass: class,
                ParentOfTarget: std::ptr::null_mut(),
                Union: union as PVOID,
                InfoBuffer: buffer.as_ptr(),
            },
        };
        let volume = file.volume;
        let mut step = |io: &IoState, base: usize| {
            let at = base
                + offset_of!(OperationBlock, iopb)
                + offset_of!(FLT_IO_PARAMETER_BLOCK, Parameters);
            let p = guest::read(at as *const FLT_PARAMETERS_SET_FILE_INFORMATION);
            let (Some(v), Some(handle)) = (io.volumes.get(volume.0), fs_handle) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            let result = apply_set_information(&mut fs_mut(v), handle, &p);
            (result.err().unwrap_or(STATUS_SUCCESS), 0)
        };
        self.perform(
            volume,
            file.file_object,
            IRP_MJ_SET_INFORMATION,
            0,
            PASSIVE_LEVEL,
            parameters,
            0,
            &mut step,
        )
        .0
    }

    fn rename_or_link(
        &self,
        file: &FileHandle,
        class: FILE_INFORMATION_CLASS,
        target: &str,
        flags: u32,
    ) -> NTSTATUS {
        let name = utf16_bytes(target);
        let name_offset = offset_of!(FILE_RENAME_INFORMATION, FileName);
        let mut info =
            vec![0u8; (name_offset + name.len()).max(size_of::<FILE_RENAME_INFORMATION>())];
        info[..4].copy_from_slice(&flags.to_le_bytes());
        let length_offset = offset_of!(FILE_RENAME_INFORMATION, FileNameLength);
        info[length_offset..length_offset + 4]
            .copy_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
        info[name_offset..name_offset + name.len()].copy_from_slice(&name);
        self.set_information(file, class, &info, (flags & 1) as usize)
    }

    /// `FileRenameInformation` to `target` (`\`-prefixed: volume-relative; otherwise relative
    /// to the file's directory), replacing an existing target only with `replace_if_exists`.
    pub fn rename(&self, file: &FileHandle, target: &str, replace_if_exists: bool) -> NTSTATUS {
        self.rename_or_link(
            file,
            FileRenameInformation,
            target,
            u32::from(replace_if_exists),
        )
    }

    /// `FileRenameInformationEx` with `FILE_RENAME_*` flags (`FILE_RENAME_REPLACE_IF_EXISTS`
    /// = 1 is the one the file system honours here).
    pub fn rename_ex(&self, file: &FileHandle, target: &str, flags: u32) -> NTSTATUS {
        self.rename_or_link(file, FileRenameInformationEx, target, flags)
    }

    /// `FileLinkInformation`: a hard link `target` to the file (NTFS volumes).
    pub fn link(&self, file: &FileHandle, target: &str, replace_if_exists: bool) -> NTSTATUS {
        self.rename_or_link(
            file,
            FileLinkInformation,
            target,
            u32::from(replace_if_exists),
        )
    }

    /// `FileLinkInformationEx` with `FILE_LINK_*` flags (`FILE_LINK_REPLACE_IF_EXISTS` = 1).
    pub fn link_ex(&self, file: &FileHandle, target: &str, flags: u32) -> NTSTATUS {
        self.rename_or_link(file, FileLinkInformationEx, target, flags)
    }

    /// `FileDispositionInformation { DeleteFile }`: delete (or undelete) at the last cleanup.
    pub fn set_disposition(&self, file: &FileHandle, delete: bool) -> NTSTATUS {
        let mut info = [0u8; 8];
        info[0] = u8::from(delete);
        self.set_information(
            file,
            FileDispositionInformation,
            &info[..size_of::<FILE_DISPOSITION_INFORMATION>().max(1)],
            0,
        )
    }

    /// `FileDispositionInformationEx { Flags }` (`FILE_DISPOSITION_DELETE`, `_POSIX_SEMANTICS`,
    /// `_ON_CLOSE`...).
    pub fn set_disposition_ex(&self, file: &FileHandle, flags: u32) -> NTSTATUS {
        self.set_information(
            file,
            FileDispositionInformationEx,
            &flags.to_le_bytes()[..size_of::<FILE_DISPOSITION_INFORMATION_EX>()],
            0,
        )
    }

    /// `IRP_MJ_CLEANUP`: the last user handle of the file object is closed (delete-on-close
    /// and pending deletes happen at the file's last cleanup).
    pub fn cleanup(&self, file: &FileHandle) -> NTSTATUS {
        let fs_handle = match self.file_state(file, false) {
            Ok(h) => h,
            Err(status) => return status,
        };
        // A filter above a name provider names the file before its cleanup (from the cache
        // when the provider let Filter Manager keep the name).
        name_provider::ask_from_above(
            &self.kernel,
            file.file_object,
            &[FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED],
        );
        let volume = file.volume;
        let file_object = file.file_object;
        let mut step = |io: &IoState, _base: usize| {
            let result = match (io.volumes.get(volume.0), fs_handle) {
                (Some(v), Some(handle)) => {
                    let shared = fs_of(v).cleanup_shared(handle);
                    shared.unwrap_or_else(|| fs_mut(v).cleanup(handle))
                }
                _ => Ok(()),
            };
            (result.err().unwrap_or(STATUS_SUCCESS), 0)
        };
        let (status, _) = self.perform(
            volume,
            file_object,
            IRP_MJ_CLEANUP,
            0,
            PASSIVE_LEVEL,
            // SAFETY: FLT_PARAMETERS is plain data; cleanup has no parameters (all zero).
            unsafe { std::mem::zeroed() },
            0,
            &mut step,
        );
        flt_read(&self.kernel).io.files.with(file_object, |record| {
            if let Some(record) = record {
                record.cleaned_up = true;
            }
        });
        status
    }

    /// The name of `file` as a filter above the loaded filter gets it (normalized or opened):
    /// when the loaded filter is a name provider with an instance on the file's volume, the
    /// name its `GenerateFileNameCallback` (and normalize callback) produced, through Filter
    /// Manager's name cache; otherwise the file system's.
    ///
    /// # Errors
    ///
    /// The status of the provider's callback or of the file system's name query.
    pub fn name_from_above(&self, file: &FileHandle, normalized: bool) -> Result<String, NTSTATUS> {
        let format = if normalized {
            FLT_FILE_NAME_NORMALIZED
        } else {
            FLT_FILE_NAME_OPENED
        };
        name_provider::name_from_above(&self.kernel, file.file_object, format)
    }

    /// `IRP_MJ_CLOSE` (after [`Io::cleanup`], which it sends first if needed): the last
    /// reference to the file object is gone; FltMgr releases the references it holds on the
    /// file object's stream-handle contexts, and the `FILE_OBJECT` is freed.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "close spends the handle, so that it cannot be used again"
    )]
    pub fn close(&self, file: FileHandle) {
        let Ok(fs_handle) = self.file_state(&file, true) else {
            return;
        };
        let cleaned_up = flt_read(&self.kernel)
            .io
            .files
            .with(file.file_object, |r| r.is_some_and(|r| r.cleaned_up));
        if !cleaned_up {
            let _ = self.cleanup(&file);
        }
        let (file_object, volume) = (file.file_object, file.volume);
        let mut step = |io: &IoState, _base: usize| {
            if let (Some(v), Some(handle)) = (io.volumes.get(volume.0), fs_handle) {
                // The shared guard is gone before the exclusive one is taken.
                let closed = fs_of(v).close_shared(handle);
                if !closed {
                    fs_mut(v).close(handle);
                }
            }
            (STATUS_SUCCESS, 0)
        };
        let _ = self.perform(
            volume,
            file_object,
            IRP_MJ_CLOSE,
            0,
            PASSIVE_LEVEL,
            // SAFETY: FLT_PARAMETERS is plain data; close has no parameters (all zero).
            unsafe { std::mem::zeroed() },
            0,
            &mut step,
        );
        self.discard(file_object);
    }
}

/// What a create opens: a path, or a file ID (`FILE_OPEN_BY_FILE_ID`).
enum CreateTarget {
    Path(String),
    Id(u64),
    /// A named pipe or mailslot (`major`) at a path, with the address of its
    /// `NAMED_PIPE_CREATE_PARAMETERS`/`MAILSLOT_CREATE_PARAMETERS`.
    Pipe {
        path: String,
        major: u8,
        parameters: usize,
        /// Create options (disposition in the high byte), as `CreatePipe.Options` has them.
        options: u32,
    },
}

/// A create's target, for messages.
fn path_of(target: &CreateTarget) -> String {
    match target {
        CreateTarget::Path(path) | CreateTarget::Pipe { path, .. } => path.clone(),
        CreateTarget::Id(id) => format!("file ID {id:#x}"),
    }
}

/// What a pre-operation status asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PreOutcome {
    Post,
    Synchronize,
    NoPost,
    Complete,
    /// A fast I/O operation the filter disallowed: no file system, no post.
    Disallowed,
    /// Pended and never completed (reported): ends as completed, its block left allocated.
    Abandoned,
}

/// The file-system side of `IRP_MJ_SET_INFORMATION`, from the (possibly filter-changed)
/// parameters and system buffer.
fn apply_set_information(
    fs: &mut FileSystem,
    handle: FsHandle,
    p: &FLT_PARAMETERS_SET_FILE_INFORMATION,
) -> Result<(), NTSTATUS> {
    let length = p.Length as usize;
    let buffer = p.InfoBuffer;
    if buffer.is_null() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let class = p.FileInformationClass;
    let is_rename = class == FileRenameInformation || class == FileRenameInformationEx;
    let is_link = class == FileLinkInformation || class == FileLinkInformationEx;
    if is_rename || is_link {
        {
            let name_offset = offset_of!(FILE_RENAME_INFORMATION, FileName);
            if length < name_offset {
                return Err(STATUS_INVALID_PARAMETER);
            }
            let header = guest::read(buffer.cast::<FILE_RENAME_INFORMATION>());
            let name_length = header.FileNameLength as usize;
            if name_length > length - name_offset || !name_length.is_multiple_of(2) {
                return Err(STATUS_INVALID_PARAMETER);
            }
            let bytes =
                guest::read_bytes(buffer.cast::<u8>().wrapping_add(name_offset), name_length);
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let target = String::from_utf16_lossy(&units);
            let replace = if class == FileRenameInformation || class == FileLinkInformation {
                header.Flags & 0xFF != 0
            } else {
                header.Flags & REPLACE_IF_EXISTS != 0
            };
            if is_rename {
                fs.rename(handle, &target, replace)
            } else {
                fs.link(handle, &target, replace)
            }
        }
    } else if class == FileDispositionInformation
        && length >= size_of::<FILE_DISPOSITION_INFORMATION>()
    {
        let info = guest::read(buffer.cast::<FILE_DISPOSITION_INFORMATION>());
        fs.set_delete(handle, info.DeleteFile != 0)
    } else if class == FileDispositionInformationEx
        && length >= size_of::<FILE_DISPOSITION_INFORMATION_EX>()
    {
        let info = guest::read(buffer.cast::<FILE_DISPOSITION_INFORMATION_EX>());
        fs.set_disposition_ex(handle, info.Flags)
    } else {
        Err(STATUS_INVALID_PARAMETER)
    }
}

/// Operations held in the file system, as a slow disk or an I/O pended by the file system
/// keeps them: while this guard lives, every operation a filter sees stops after its
/// pre-operation callback, before the file system runs it, so a test can tear the instance
/// down with posts awaited (Filter Manager then drains them; see `fltmgr::draining`). Dropping
/// the guard lets them go on.
pub struct FileSystemHold {
    kernel: Arc<Kernel>,
    gate: Arc<HoldGate>,
}

impl FileSystemHold {
    pub(crate) fn new(kernel: Arc<Kernel>) -> Self {
        let gate = Arc::new(HoldGate::closed());
        flt_write(&kernel).io.fs_hold = Some(Arc::clone(&gate));
        Self { kernel, gate }
    }

    /// Waits until at least `count` operations await their post-operation callback (their
    /// pre-operation callback returned and asked for one); false if `limit` passes first.
    pub fn wait_for_awaiting_posts(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let mut awaiting = 0;
            flt_read(&self.kernel).io.posts.find_map(|posts| {
                awaiting += posts.awaiting.len();
                None::<()>
            });
            if awaiting >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for FileSystemHold {
    fn drop(&mut self) {
        flt_write(&self.kernel).io.fs_hold = None;
        self.gate.open();
    }
}
