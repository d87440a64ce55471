//! The filter's callbacks: instance setup and teardown, and the operations Vigil reports.
//! Each callback enters the unload gate first (a guard for as long as it touches the globals)
//! and lets the operation through untouched when the gate refuses (unload has begun).
//!
//! Operations and their IRQL (FltMgr's guarantees):
//! * create: pre at PASSIVE (verdicts), post at PASSIVE (the open event);
//! * write: pre at <= APC for non-paging I/O (first write per handle); paging I/O is skipped by
//!   registration;
//! * set information: pre at PASSIVE (verdicts, source name), synchronized post (rename, link,
//!   delete events);
//! * cleanup: pre at PASSIVE (close after modification).

pub mod cleanup;
pub mod create;
pub mod instance;
pub mod set_info;
pub mod write;

use core::ptr;

use vigil_sys::{
    FLT_OPERATION_REGISTRATION, FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO, IRP_MJ_CLEANUP,
    IRP_MJ_CREATE, IRP_MJ_OPERATION_END, IRP_MJ_SET_INFORMATION, IRP_MJ_WRITE,
};

use crate::filter::operation::Operation;
use crate::filter::registration::StaticTable;
use crate::globals::Globals;
use crate::twins::{self, Baseline};

/// The operations Vigil registers for, terminated by `IRP_MJ_OPERATION_END`.
pub static OPERATIONS: StaticTable<[FLT_OPERATION_REGISTRATION; 5]> = StaticTable([
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_CREATE,
        Flags: 0,
        PreOperation: Some(create::pre_create),
        PostOperation: Some(create::post_create),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_WRITE,
        Flags: FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO,
        PreOperation: Some(write::pre_write),
        PostOperation: None,
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_SET_INFORMATION,
        Flags: FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO,
        PreOperation: Some(set_info::pre_set_information),
        PostOperation: Some(set_info::post_set_information),
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_CLEANUP,
        Flags: 0,
        PreOperation: Some(cleanup::pre_cleanup),
        PostOperation: None,
        Reserved1: ptr::null_mut(),
    },
    FLT_OPERATION_REGISTRATION {
        MajorFunction: IRP_MJ_OPERATION_END,
        Flags: 0,
        PreOperation: None,
        PostOperation: None,
        Reserved1: ptr::null_mut(),
    },
]);

/// A callback admitted through the unload gate, with its operation.
///
/// The admission is private and the globals and the operation are reached only through
/// [`Admitted::parts`], whose borrows keep this value (and so the admission) alive for as long
/// as the callback uses them.
pub struct Admitted<'a> {
    admission: crate::entry::Admission<'static>,
    operation: Operation<'a>,
}

impl<'a> Admitted<'a> {
    /// The driver's state and the operation, for as long as this admission is borrowed.
    pub fn parts(&mut self) -> (&Globals, &mut Operation<'a>) {
        (&self.admission, &mut self.operation)
    }

    /// `unadmitted-callback` broken twin: ends the admission at once while the callback goes
    /// on (unload may then tear down under it).
    pub fn twin_end_admission(&mut self) {
        self.admission.twin_end_admission();
    }
}

/// Admits a callback: `None` (let the operation through untouched) once unload has begun or if
/// FltMgr passed a null pointer.
///
/// # Safety
///
/// `data` and `objects` are the callback's own `Data` and `FltObjects` arguments, and the result
/// is used only during the callback.
pub unsafe fn admit<'a>(
    data: *mut vigil_sys::FLT_CALLBACK_DATA,
    objects: *const vigil_sys::FLT_RELATED_OBJECTS,
) -> Option<Admitted<'a>> {
    if twins::is_baseline(Baseline::NoopFilter) {
        // The baseline of the benchmarks: registered for the same operations, doing nothing.
        return None;
    }
    let admission = crate::entry::try_access()?;
    // SAFETY: the callback's own arguments, used only during it (contract).
    let operation = unsafe { Operation::from_callback(data, objects) }?;
    Some(Admitted {
        admission,
        operation,
    })
}

/// Who issued an operation.
pub struct Requestor {
    /// Process id.
    pub process_id: u64,
    /// Thread id (the current thread: pre-operation callbacks and the post-create run in the
    /// requesting thread).
    pub thread_id: u64,
}

/// The requestor of `operation`, or `None` when it is the connected service itself: its own I/O
/// (writing the event log, reading its policy) is neither reported nor sent for a verdict, which
/// would loop or deadlock.
pub fn requestor(globals: &Globals, operation: &mut Operation<'_>) -> Option<Requestor> {
    let process_id = u64::from(operation.requestor_process_id());
    if globals.is_service(process_id) {
        return None;
    }
    let thread_id = crate::kernel::thread::current_thread_id();
    Some(Requestor {
        process_id,
        thread_id,
    })
}

/// A file's name for an event, with the flags that describe how it was obtained.
pub struct EventName<'c> {
    /// The name, when a query succeeded.
    pub name: Option<crate::filter::name::FileName>,
    /// The name the handle's open cached (borrowed from its context), used instead of a query.
    cached: Option<&'c [u16]>,
    /// `NAME_NOT_NORMALIZED` or `NAME_UNAVAILABLE` as the case may be.
    pub flags: vigil_protocol::EventFlags,
}

impl<'c> EventName<'c> {
    /// Wraps a query's outcome, counting a failure.
    pub fn from_query(
        globals: &Globals,
        result: crate::error::Result<crate::filter::name::FileName>,
    ) -> Self {
        use vigil_protocol::EventFlags;
        if let Ok(name) = result {
            let flags = if name.is_normalized() {
                EventFlags::NONE
            } else {
                EventFlags::NAME_NOT_NORMALIZED
            };
            Self {
                name: Some(name),
                cached: None,
                flags,
            }
        } else {
            crate::stats::bump(&globals.counters.name_query_failures);
            Self {
                name: None,
                cached: None,
                flags: EventFlags::NAME_UNAVAILABLE,
            }
        }
    }

    /// The name the handle's open cached in `context` if no rename has begun since, else a
    /// query: at most one name query per handle for its open, first write and close.
    /// IRQL <= APC_LEVEL.
    pub fn cached_or_query(
        globals: &Globals,
        operation: &mut Operation<'_>,
        context: &'c crate::filter::context::HandleContext,
    ) -> Self {
        match context.cached_name(globals.name_generation()) {
            Some((units, normalized)) => Self {
                name: None,
                cached: Some(units),
                flags: if normalized {
                    vigil_protocol::EventFlags::NONE
                } else {
                    vigil_protocol::EventFlags::NAME_NOT_NORMALIZED
                },
            },
            None => Self::of(globals, operation),
        }
    }

    /// No name (the query failed earlier and was counted then).
    pub fn unavailable() -> Self {
        Self {
            name: None,
            cached: None,
            flags: vigil_protocol::EventFlags::NAME_UNAVAILABLE,
        }
    }

    /// The operation's own name (normalized, else opened). IRQL <= APC_LEVEL.
    pub fn of(globals: &Globals, operation: &mut Operation<'_>) -> Self {
        Self::from_query(globals, crate::filter::name::FileName::query(operation))
    }

    /// The name's code units (empty when unavailable).
    pub fn units(&self) -> &[u16] {
        if let Some(units) = self.cached {
            return units;
        }
        self.name
            .as_ref()
            .map_or(&[], crate::filter::name::FileName::units)
    }
}
