//! Contexts: `FltAllocateContext`, `FltSetStreamHandleContext`, `FltGetStreamHandleContext`,
//! `FltReferenceContext`, `FltReleaseContext` (instance and volume contexts are set and got in
//! `fltmgr::instance_contexts` and `fltmgr::volume_contexts`, on this table).
//!
//! A context is a block of the special pool ([`crate::machine::pool`]) with the pool tag of its
//! registration, not zeroed (`FltAllocateContext` leaves it uninitialized, so it is poisoned),
//! with FltMgr's bookkeeping kept by kernel-sim beside it. Reference counts follow the
//! reference pages: allocation gives the caller one reference; a successful set gives the file
//! object one (dropped when the file object is closed, or when its instance is torn down);
//! a get gives the caller one; `FLT_SET_CONTEXT_KEEP_IF_EXISTS` with an existing context
//! returns `STATUS_FLT_CONTEXT_ALREADY_DEFINED` and the existing context referenced in
//! `*OldContext`; `FLT_SET_CONTEXT_REPLACE_IF_EXISTS` hands the replaced context's object
//! reference to the caller through `*OldContext` (or drops it when `OldContext` is NULL). At
//! zero the registered `ContextCleanupCallback` runs, then the memory is freed.
//!
//! Checks: IRQL (<= APC_LEVEL; release <= DISPATCH_LEVEL), registered type and size, a release
//! below zero (reported with type, tag and size), and contexts the driver still references when
//! the filter unregisters (a leak; FltMgr would wait for them forever).

// Fx hashing: looked up on every context call; keys are addresses.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rustc_hash::FxHashMap as HashMap;

use vigil_sys::{
    APC_LEVEL, FILE_OBJECT, FLT_CONTEXT_TYPE, FLT_SET_CONTEXT_KEEP_IF_EXISTS,
    FLT_SET_CONTEXT_OPERATION, FLT_SET_CONTEXT_REPLACE_IF_EXISTS, FLT_STREAMHANDLE_CONTEXT,
    NTSTATUS, NonPagedPoolNx, PFLT_CONTEXT, PFLT_FILTER, PFLT_INSTANCE, POOL_TYPE, PagedPool,
    STATUS_FLT_CONTEXT_ALREADY_DEFINED, STATUS_FLT_DELETING_OBJECT, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::files::{Count, Retired};
use crate::fltmgr::instances::InstanceState;
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::check::{check, reject};
use crate::kernel::sharded::{Sharded, ShardedMap, shard_count};
use crate::kernel::{Kernel, emulate, lock};
use crate::machine::guest;
use crate::machine::pool::{AllocRequest, Pool, tag_text};
use crate::machine::state;
use crate::report::ViolationKind;

/// `NonPagedPool`.
const NON_PAGED_POOL: POOL_TYPE = 0;
/// `FLT_VARIABLE_SIZED_CONTEXTS`: a registration that accepts any size.
const VARIABLE_SIZED: usize = usize::MAX;
use vigil_sys::{STATUS_FLT_CONTEXT_ALLOCATION_NOT_FOUND, STATUS_FLT_CONTEXT_ALREADY_LINKED};
/// How many freed contexts stay recognizable.
const RETIRED_CONTEXTS: usize = 65_536;

/// A live context.
pub(crate) struct ContextRecord {
    pub(crate) context_type: FLT_CONTEXT_TYPE,
    size: usize,
    tag: u32,
    pub(crate) references: i64,
    cleanup: usize,
    /// Allocated from paged pool (its registration's `PoolType`).
    paged: bool,
    /// The file object (0 for an instance context) and instance it is set on.
    pub(crate) attached: Option<(usize, usize)>,
    allocated_by: &'static str,
    /// The delete routine and driver callback that unlinked it (`fltmgr::context_deletion`), named
    /// in a leak report: a context deleted with its `OldContext` never released.
    pub(crate) deleted_in: Option<(&'static str, &'static str)>,
}

/// What is remembered of a freed context.
#[derive(Clone)]
pub(crate) struct FreedContext {
    context_type: FLT_CONTEXT_TYPE,
    size: usize,
    tag: u32,
}

/// Every context of a run. The live and freed ones are sharded by address, as every I/O thread
/// allocates, looks up and releases contexts; a change that also touches a file object's
/// contexts locks the file's shard first, then the context's (never the other way round).
pub(crate) struct ContextTable {
    pub(crate) live: ShardedMap<ContextRecord>,
    pub(crate) freed: Sharded<Retired<FreedContext>>,
    /// Instance contexts, by instance (`fltmgr::instance_contexts`).
    pub(crate) by_instance: HashMap<usize, usize>,
    /// Volume contexts, by volume (`fltmgr::volume_contexts`).
    pub(crate) by_volume: HashMap<usize, usize>,
    /// Stream and file contexts (`fltmgr::stream_contexts`), by (type, instance, the stream's
    /// or file's identity on its volume).
    pub(crate) by_object: HashMap<(FLT_CONTEXT_TYPE, usize, String), usize>,
    /// Transaction contexts (`fltmgr::transactions`), by (instance, transaction).
    pub(crate) by_transaction: HashMap<(usize, usize), usize>,
    /// Contexts whose last reference is gone and whose cleanup callback and free are still
    /// running on some thread: `FltUnregisterFilter` waits for them before it reports what is
    /// left (a name a cleanup callback is releasing is not a leak).
    freeing: AtomicUsize,
    /// Set while `FltUnregisterFilter` waits for `freeing` to reach zero: only then does the
    /// free that gets it there wake the waiters (waking every waiter after every free would
    /// cost each close a system call and the driver's threads a spurious wake).
    awaited: AtomicBool,
}

impl FreedContext {
    /// Its type, size and tag, as reports name them.
    pub(crate) fn describe(&self) -> String {
        describe(self.context_type, self.tag, self.size)
    }
}

impl ContextTable {
    /// The live context at `address`.
    pub(crate) fn live_mut(&mut self, address: usize) -> Option<&mut ContextRecord> {
        self.live.get_mut(address)
    }

    /// Adds a reference to the live context at `address`; false if it is not live.
    pub(crate) fn reference(&self, address: usize) -> bool {
        self.live
            .with(address, |c| c.map(|c| c.references += 1).is_some())
    }
}

impl Default for ContextTable {
    fn default() -> Self {
        Self {
            live: ShardedMap::default(),
            freed: Sharded::new(|| Retired::new(RETIRED_CONTEXTS / shard_count())),
            by_instance: HashMap::default(),
            by_volume: HashMap::default(),
            by_object: HashMap::default(),
            by_transaction: HashMap::default(),
            freeing: AtomicUsize::new(0),
            awaited: AtomicBool::new(false),
        }
    }
}

pub(crate) fn type_name(context_type: FLT_CONTEXT_TYPE) -> &'static str {
    match context_type {
        0x1 => "volume",
        0x2 => "instance",
        0x4 => "file",
        0x8 => "stream",
        0x10 => "stream-handle",
        0x20 => "transaction",
        0x40 => "section",
        _ => "unknown",
    }
}

fn describe(context_type: FLT_CONTEXT_TYPE, tag: u32, size: usize) -> String {
    format!(
        "{} context ({size} bytes, tag '{}')",
        type_name(context_type),
        tag_text(tag)
    )
}

/// Where a linked context hangs: the key of one of the [`ContextTable`]'s link maps.
pub(crate) enum LinkKey {
    /// `FltSetInstanceContext`: by instance.
    Instance(usize),
    /// `FltSetVolumeContext`: by volume.
    Volume(usize),
    /// `FltSet{Stream,File}Context`: by (type, instance, the stream's or file's identity).
    Object((FLT_CONTEXT_TYPE, usize, String)),
    /// `FltSetTransactionContext`: by (instance, transaction).
    Transaction((usize, usize)),
}

impl ContextTable {
    /// The context linked at `key`.
    fn linked(&self, key: &LinkKey) -> Option<usize> {
        match key {
            LinkKey::Instance(instance) => self.by_instance.get(instance).copied(),
            LinkKey::Volume(volume) => self.by_volume.get(volume).copied(),
            LinkKey::Object(object) => self.by_object.get(object).copied(),
            LinkKey::Transaction(key) => self.by_transaction.get(key).copied(),
        }
    }

    /// Unlinks and returns the context linked at `key`.
    pub(crate) fn unlink(&mut self, key: &LinkKey) -> Option<usize> {
        match key {
            LinkKey::Instance(instance) => self.by_instance.remove(instance),
            LinkKey::Volume(volume) => self.by_volume.remove(volume),
            LinkKey::Object(object) => self.by_object.remove(object),
            LinkKey::Transaction(key) => self.by_transaction.remove(key),
        }
    }

    /// Links `context` at `key`.
    fn link(&mut self, key: LinkKey, context: usize) {
        match key {
            LinkKey::Instance(instance) => self.by_instance.insert(instance, context),
            LinkKey::Volume(volume) => self.by_volume.insert(volume, context),
            LinkKey::Object(object) => self.by_object.insert(object, context),
            LinkKey::Transaction(key) => self.by_transaction.insert(key, context),
        };
    }
}

/// The link step of `FltSet{Instance,Volume,Stream,File}Context`, once the caller has checked
/// its target and `Operation`: `new` must be a live, unlinked `context_type` context; an
/// existing one is kept (`KEEP_IF_EXISTS`, referenced for `old`) or replaced (its reference
/// handed to `old`, or dropped in the same critical section that unlinked it and settled as
/// `replaced_by`). `attached` is what the context records (file object or 0, and the
/// instance or volume).
pub(crate) fn set_linked(
    k: &Kernel,
    (key, context_type, attached): (LinkKey, FLT_CONTEXT_TYPE, (usize, usize)),
    operation: FLT_SET_CONTEXT_OPERATION,
    (new, old): (usize, *mut PFLT_CONTEXT),
    replaced_by: &str,
) -> NTSTATUS {
    let mut flt = flt_write(k);
    let io = &mut flt.io;
    let problem = match io.contexts.live_mut(new) {
        None => Some("NewContext is not a live context".to_owned()),
        Some(c) if c.context_type != context_type => Some(format!(
            "NewContext is a {} context",
            type_name(c.context_type)
        )),
        Some(c) if c.attached.is_some() => return STATUS_FLT_CONTEXT_ALREADY_LINKED,
        Some(_) => None,
    };
    if let Some(problem) = problem {
        drop(flt);
        let name = type_name(context_type);
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        reject!(k, &format!("NewContext is {article} {name} context from FltAllocateContext")
            => STATUS_INVALID_PARAMETER, "{problem}");
    }
    let existing = io.contexts.linked(&key);
    if let Some(existing) = existing
        && operation == FLT_SET_CONTEXT_KEEP_IF_EXISTS
    {
        if !old.is_null() {
            io.contexts.reference(existing);
            drop(flt);
            guest::write(old, existing as PFLT_CONTEXT);
        }
        return STATUS_FLT_CONTEXT_ALREADY_DEFINED;
    }
    io.contexts.link(key, new);
    if let Some(c) = io.contexts.live_mut(new) {
        c.attached = Some(attached);
        c.references += 1;
    }
    let Some(existing) = existing else {
        return STATUS_SUCCESS;
    };
    if let Some(c) = io.contexts.live_mut(existing) {
        c.attached = None;
    }
    if old.is_null() {
        // Unlinked and released in one critical section (see `detach_and_release`).
        let dropped = drop_reference_locked(io, existing);
        drop(flt);
        settle(k, existing, replaced_by, dropped);
    } else {
        // The replaced context's reference goes to the caller.
        drop(flt);
        guest::write(old, existing as PFLT_CONTEXT);
    }
    STATUS_SUCCESS
}

/// The lookup of `FltGet{Instance,Volume,Stream,File}Context`: the context linked at `key`,
/// referenced for the caller. Shared: links change only under the exclusive lock, and a
/// linked context holds a reference, so it stays live until this one is taken; one the driver
/// over-released is returned all the same (FltMgr has only the link), so its use faults.
pub(crate) fn get_linked(k: &Kernel, key: &LinkKey) -> Option<usize> {
    let flt = flt_read(k);
    let context = flt.io.contexts.linked(key);
    if let Some(c) = context {
        flt.io.contexts.reference(c);
    }
    context
}

/// What dropping a reference did (see [`drop_reference_locked`]).
pub(crate) type Dropped = Result<Option<ContextRecord>, Option<FreedContext>>;

/// Drops one reference; at zero calls the cleanup callback and frees the memory. Returns false
/// (after reporting) when `context` has no reference left or is unknown.
/// Drops one reference of `context`, with the `flt` lock held by the caller: `Ok(Some(record))`
/// when that was the last one (the context moves to `freed`; the caller frees it, cleanup callback
/// included, after releasing the lock), `Ok(None)` while references remain, `Err` with what is
/// known of an address that is no live context.
///
/// Callers that also change the context's attachment do both in one critical section: a context
/// detached from its file but not yet released must never be visible (to the leak report at
/// `FltUnregisterFilter`, for one) as a live context with a reference nobody holds.
pub(crate) fn drop_reference_locked(io: &crate::fltmgr::files::IoState, context: usize) -> Dropped {
    let table = &io.contexts;
    let record = {
        let mut shard = table.live.lock_shard(context);
        let Some(record) = shard.get_mut(&context) else {
            drop(shard);
            return Err(table.freed.find_map(|freed| freed.get(context).cloned()));
        };
        record.references -= 1;
        if record.references > 0 {
            return Ok(None);
        }
        shard.remove(&context).expect("present")
    };
    table.freed.lock_mine().insert(
        context,
        FreedContext {
            context_type: record.context_type,
            size: record.size,
            tag: record.tag,
        },
    );
    io.stats.add(Count::ContextsFreed, 1);
    io.contexts.freeing.fetch_add(1, Ordering::AcqRel);
    Ok(Some(record))
}

/// Waits until no context is being freed (see `ContextTable::freeing`).
pub(crate) fn wait_for_frees(k: &Kernel) {
    flt_read(k)
        .io
        .contexts
        .awaited
        .store(true, Ordering::SeqCst);
    k.wait_until(
        None,
        "FltUnregisterFilter (context cleanup in progress)",
        || flt_read(k).io.contexts.freeing.load(Ordering::SeqCst) == 0,
    );
    flt_read(k)
        .io
        .contexts
        .awaited
        .store(false, Ordering::SeqCst);
}

fn release(k: &Kernel, context: usize, who: &str) -> bool {
    let dropped = drop_reference_locked(&flt_read(k).io, context);
    settle(k, context, who, dropped)
}

/// Acts on what [`drop_reference_locked`] returned, once the lock is dropped: frees a context
/// whose last reference went, reports a release of one that is not live. `false` for the latter.
pub(crate) fn settle(
    k: &Kernel,
    context: usize,
    who: &str,
    dropped: Result<Option<ContextRecord>, Option<FreedContext>>,
) -> bool {
    match dropped {
        Ok(None) => true,
        Ok(Some(record)) => {
            free(k, context, &record);
            let last = {
                let flt = flt_read(k);
                let contexts = &flt.io.contexts;
                contexts.freeing.fetch_sub(1, Ordering::SeqCst) == 1
                    && contexts.awaited.load(Ordering::SeqCst)
            };
            if last {
                k.notify_waiters();
            }
            true
        }
        Err(known) => {
            report_bad_release(k, context, who, known);
            false
        }
    }
}

/// The violation for releasing `context`, which is not live: already freed (`known`), or never a
/// context.
pub(crate) fn report_bad_release(
    k: &Kernel,
    context: usize,
    who: &str,
    known: Option<FreedContext>,
) {
    match known {
        Some(freed) => k.violation(
            ViolationKind::OverRelease,
            "RULES.md 19: a context is released exactly once per reference",
            format!(
                "{who} of {} at {context:#x}, which has no reference left (already freed)",
                describe(freed.context_type, freed.tag, freed.size)
            ),
        ),
        None => k.violation(
            ViolationKind::Parameter,
            "FltReleaseContext: a context from FltAllocateContext",
            format!("{context:#x} is not a context"),
        ),
    }
}

/// Calls the cleanup callback (at <= APC_LEVEL, as FltMgr does) and frees the pool block.
fn free(k: &Kernel, context: usize, record: &ContextRecord) {
    if record.cleanup != 0 && !k.crashed.load(std::sync::atomic::Ordering::Acquire) {
        // SAFETY: the ContextCleanupCallback the driver registered for this type (its image is
        // mapped while any of its contexts lives); FltMgr calls it with the context and type.
        let cleanup: unsafe extern "win64" fn(PFLT_CONTEXT, FLT_CONTEXT_TYPE) =
            unsafe { std::mem::transmute(record.cleanup) };
        let irql = state::current_irql().min(APC_LEVEL);
        // SAFETY: see above.
        k.call_driver("ContextCleanup", Some(irql), || unsafe {
            cleanup(context as PFLT_CONTEXT, record.context_type);
        });
    }
    let callback = state::with(|s| s.callback.get());
    let freed = lock(&k.pool).free(context, callback);
    match freed {
        Ok((block, before, after)) => {
            if before + after > 0 {
                k.violation(
                    ViolationKind::PoolCorruption,
                    "no writes outside an allocation",
                    format!(
                        "{before} byte(s) before and {after} byte(s) after the {} at {context:#x} were overwritten",
                        describe(record.context_type, record.tag, record.size)
                    ),
                );
            }
            Pool::retire(block);
        }
        Err(_) => k.violation(
            ViolationKind::Internal,
            "kernel-sim",
            format!("context {context:#x} was not a pool block"),
        ),
    }
}

/// `FltAllocateContext`: IRQL <= APC_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
/// The parameter checks follow the reference page's order.
pub(crate) extern "win64" fn flt_allocate_context(
    filter: PFLT_FILTER,
    context_type: FLT_CONTEXT_TYPE,
    size: usize,
    pool_type: POOL_TYPE,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltAllocateContext, |k| {
        let invalid = STATUS_INVALID_PARAMETER;
        let not_found = STATUS_FLT_CONTEXT_ALLOCATION_NOT_FOUND;
        check!(k, !out.is_null(), "a ReturnedContext out-pointer" => invalid, "NULL");
        guest::write(out, std::ptr::null_mut());
        let registrations = match flt_read(k).filters.get(&(filter as usize)) {
            None => None,
            Some(f) if f.unregistered => return STATUS_FLT_DELETING_OBJECT,
            Some(f) => Some(f.contexts_of(context_type)),
        };
        let Some(registrations) = registrations else {
            reject!(k, "a registered filter" => invalid, "Filter {filter:p}")
        };
        check!(k, size != 0 && u16::try_from(size).is_ok(),
            "0 < ContextSize <= MAXUSHORT" => invalid, "ContextSize {size}");
        let type_name = type_name(context_type);
        check!(k, !registrations.is_empty(),
            "a context type registered in FLT_REGISTRATION" => not_found,
            "{type_name} contexts are not registered");
        let Some(registration) = registrations
            .iter()
            .find(|r| r.size == size || r.size == VARIABLE_SIZED)
        else {
            reject!(k,
                "the size registered for the context type (or FLT_VARIABLE_SIZED_CONTEXTS)" => not_found,
                "{size} bytes requested for a {type_name} context registered with {} bytes",
                registrations[0].size)
        };
        let paged = pool_type == PagedPool;
        check!(k, paged || pool_type == NON_PAGED_POOL || pool_type == NonPagedPoolNx,
            "PoolType NonPagedPool(Nx) or PagedPool" => invalid, "PoolType {pool_type}");
        check!(k, !(paged && context_type == vigil_sys::FLT_VOLUME_CONTEXT),
            "volume contexts from non-paged pool" => invalid, "PagedPool for a volume context");
        if k.inject_failure("FltAllocateContext", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let irql = state::current_irql();
        let callback = state::with(|s| s.callback.get());
        let address = lock(&k.pool).allocate(&AllocRequest {
            size,
            tag: registration.pool_tag,
            zeroed: false,
            paged,
            irql,
            callback,
            during_entry: false,
            align: 16,
            device_aligned: false,
        });
        let Some(address) = address else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        let flt = flt_read(k);
        flt.io.stats.add(Count::ContextsAllocated, 1);
        flt.io.contexts.live.insert(
            address,
            ContextRecord {
                context_type,
                size,
                tag: registration.pool_tag,
                references: 1,
                cleanup: registration.cleanup,
                paged,
                attached: None,
                allocated_by: callback,
                deleted_in: None,
            },
        );
        drop(flt);
        guest::write(out, address as PFLT_CONTEXT);
        STATUS_SUCCESS
    })
}

/// Checks the instance and file object of a stream-handle context call: `Err` with the status
/// to return (a violation is recorded for a bad argument).
pub(crate) fn check_target(
    k: &Kernel,
    routine: &str,
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
) -> Result<(), NTSTATUS> {
    let flt = flt_read(k);
    let state = flt.io.instance(instance as usize);
    let record = flt
        .io
        .files
        .with(file as usize, |r| r.map(|r| (r.volume, r.open)));
    let problem = match (state, record) {
        (None, _) => format!("{instance:p} is not a live instance"),
        (Some((_, InstanceState::TearingDown)), _) => return Err(STATUS_FLT_DELETING_OBJECT),
        (_, None) => format!("{file:p} is not an open file object"),
        (Some((volume, _)), Some((file_volume, _))) if file_volume != volume => {
            format!("file object {file:p} is not on the instance's volume")
        }
        (_, Some((_, open))) if !open => format!(
            "file object {file:p} is not opened yet (a pre-create callback cannot set a stream-handle context)"
        ),
        _ => return Ok(()),
    };
    drop(flt);
    k.violation(
        ViolationKind::Parameter,
        format!("{routine}: a live instance and an open file object of its volume"),
        problem,
    );
    Err(STATUS_INVALID_PARAMETER)
}

/// `FltSetStreamHandleContext`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_set_stream_handle_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    operation: FLT_SET_CONTEXT_OPERATION,
    new: PFLT_CONTEXT,
    old: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltSetStreamHandleContext, |k| {
        if !old.is_null() {
            guest::write(old, std::ptr::null_mut());
        }
        if let Err(status) = check_target(k, "FltSetStreamHandleContext", instance, file) {
            return status;
        }
        if operation != FLT_SET_CONTEXT_KEEP_IF_EXISTS
            && operation != FLT_SET_CONTEXT_REPLACE_IF_EXISTS
        {
            k.violation(
                ViolationKind::Parameter,
                "FltSetStreamHandleContext: Operation KEEP_IF_EXISTS or REPLACE_IF_EXISTS",
                format!("Operation {operation}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let (instance, file, new) = (instance as usize, file as usize, new as usize);
        let flt = flt_read(k);
        let io = &flt.io;
        // The file's shard, then the contexts' (see `ContextTable`): one step for the check,
        // the link and the replaced context's release.
        let mut files = io.files.lock_shard(file);
        let problem = io.contexts.live.with(new, |c| match c {
            None => Ok(Some("NewContext is not a live context".to_owned())),
            Some(c) if c.context_type != FLT_STREAMHANDLE_CONTEXT => Ok(Some(format!(
                "NewContext is a {} context",
                type_name(c.context_type)
            ))),
            Some(c) if c.attached.is_some() => Err(STATUS_FLT_CONTEXT_ALREADY_LINKED),
            Some(_) => Ok(None),
        });
        let problem = match problem {
            Ok(problem) => problem,
            Err(status) => return status,
        };
        if let Some(problem) = problem {
            drop(files);
            drop(flt);
            k.violation(
                ViolationKind::Parameter,
                "FltSetStreamHandleContext: NewContext is a stream-handle context from FltAllocateContext",
                problem,
            );
            return STATUS_INVALID_PARAMETER;
        }
        let Some(record) = files.get_mut(&file) else {
            return STATUS_INVALID_PARAMETER;
        };
        let existing = record
            .contexts
            .iter()
            .position(|&(i, _)| i == instance)
            .map(|at| (at, record.contexts[at].1));
        let attach = |address: usize| {
            io.contexts.live.with(address, |c| {
                if let Some(c) = c {
                    c.attached = Some((file, instance));
                    c.references += 1;
                }
            });
        };
        if let Some((at, existing)) = existing {
            if operation == FLT_SET_CONTEXT_KEEP_IF_EXISTS {
                if !old.is_null() {
                    io.contexts.reference(existing);
                    drop(files);
                    drop(flt);
                    guest::write(old, existing as PFLT_CONTEXT);
                }
                return STATUS_FLT_CONTEXT_ALREADY_DEFINED;
            }
            record.contexts[at].1 = new;
            io.contexts.live.with(existing, |c| {
                if let Some(c) = c {
                    c.attached = None;
                }
            });
            attach(new);
            // The replaced context's reference is dropped in the same critical section that
            // detached it (see `detach_and_release`).
            let dropped = old
                .is_null()
                .then(|| (existing, drop_reference_locked(io, existing)));
            drop(files);
            drop(flt);
            if let Some((existing, dropped)) = dropped {
                settle(k, existing, "FltSetStreamHandleContext (replaced)", dropped);
            } else {
                // The replaced context's object reference goes to the caller.
                guest::write(old, existing as PFLT_CONTEXT);
            }
            return STATUS_SUCCESS;
        }
        record.contexts.push((instance, new));
        attach(new);
        STATUS_SUCCESS
    })
}

/// `FltGetStreamHandleContext`: IRQL <= APC_LEVEL. `STATUS_NOT_FOUND` when none is set.
pub(crate) extern "win64" fn flt_get_stream_handle_context(
    instance: PFLT_INSTANCE,
    file: *mut FILE_OBJECT,
    out: *mut PFLT_CONTEXT,
) -> NTSTATUS {
    emulate(Routine::FltGetStreamHandleContext, |k| {
        if out.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "FltGetStreamHandleContext: a Context out-pointer",
                "NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        guest::write(out, std::ptr::null_mut());
        if let Err(status) = check_target(k, "FltGetStreamHandleContext", instance, file) {
            return if status == STATUS_INVALID_PARAMETER {
                status
            } else {
                STATUS_NOT_FOUND
            };
        }
        let found = {
            let flt = flt_read(k);
            let io = &flt.io;
            // The file's shard, then the context's: the context cannot be detached and freed
            // between the lookup and the reference.
            io.files.with(file as usize, |record| {
                let context = record
                    .and_then(|r| r.contexts.iter().find(|&&(i, _)| i == instance as usize))
                    .map(|&(_, c)| c);
                // Returned even if over-released (see `flt_get_instance_context`).
                if let Some(c) = context {
                    io.contexts.reference(c);
                }
                context
            })
        };
        match found {
            Some(context) => {
                guest::write(out, context as PFLT_CONTEXT);
                STATUS_SUCCESS
            }
            None => STATUS_NOT_FOUND,
        }
    })
}

/// `FltReleaseContext`: IRQL <= DISPATCH_LEVEL, and <= APC_LEVEL for a context allocated from
/// paged pool ("If the context was allocated from paged pool, callers must be running at
/// IRQL <= APC_LEVEL",
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreleasecontext>).
pub(crate) extern "win64" fn flt_release_context(context: PFLT_CONTEXT) {
    emulate(Routine::FltReleaseContext, |k| {
        if context.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "FltReleaseContext: a context",
                "NULL".to_owned(),
            );
            return;
        }
        let paged = flt_read(k)
            .io
            .contexts
            .live
            .with(context as usize, |record| record.is_some_and(|r| r.paged));
        let irql = state::current_irql();
        if paged && irql > APC_LEVEL {
            k.violation(
                ViolationKind::Irql,
                "FltReleaseContext: IRQL <= APC_LEVEL for a paged context",
                format!("called at {}", crate::kernel::irql_name(irql)),
            );
        }
        release(k, context as usize, "FltReleaseContext");
    });
}

/// The file object `file` is closed (or its create failed): FltMgr drops the references it
/// holds on the file object's contexts.
pub(crate) fn release_file_contexts(k: &Kernel, file: usize) {
    let dropped = {
        let flt = flt_read(k);
        let io = &flt.io;
        io.files.with(file, |record| {
            let contexts = record
                .map(|record| record.contexts.drain(..).map(|(_, c)| c).collect())
                .unwrap_or_default();
            detach_and_drop(io, contexts)
        })
    };
    settle_all(k, "close of the file object", dropped);
}

/// Detaches `contexts` from their file objects and drops the references those held. Called
/// with the contexts already taken off their files in the same critical section (the file's
/// shard locked, or the Filter Manager lock held exclusively); the ones that reached zero are
/// freed after it ([`settle_all`]).
///
/// One section, because between taking a context off its file and dropping the file's
/// reference the context is attached to nothing yet still referenced: `FltUnregisterFilter` on
/// another thread (tearing down the instance, which no longer finds it on the file) would see a
/// leak and free it, and the close would then release a context that is gone. A teardown holds
/// the Filter Manager lock exclusively, so it never runs inside such a section.
fn detach_and_drop(
    io: &crate::fltmgr::files::IoState,
    contexts: Vec<usize>,
) -> Vec<(usize, Dropped)> {
    contexts
        .into_iter()
        .map(|context| {
            io.contexts.live.with(context, |c| {
                if let Some(c) = c {
                    c.attached = None;
                }
            });
            (context, drop_reference_locked(io, context))
        })
        .collect()
}

/// Frees what [`detach_and_drop`] dropped to zero, reports what was not live.
fn settle_all(k: &Kernel, who: &str, dropped: Vec<(usize, Dropped)>) {
    for (context, dropped) in dropped {
        settle(k, context, who, dropped);
    }
}

/// The instance `instance` is torn down (or its InstanceSetup declined to attach): FltMgr drops
/// the references file objects hold on its contexts, and the instance's on its own context.
pub(crate) fn release_instance_contexts(k: &Kernel, instance: usize) {
    detach_and_release(k, "instance teardown", |io| {
        let mut contexts = Vec::new();
        for record in io.files.values_mut() {
            record.contexts.retain(|&(i, c)| {
                if i == instance {
                    contexts.push(c);
                }
                i != instance
            });
        }
        contexts.extend(io.contexts.by_instance.remove(&instance));
        io.contexts.by_object.retain(|(_, i, _), &mut c| {
            if *i == instance {
                contexts.push(c);
            }
            *i != instance
        });
        io.contexts.by_transaction.retain(|&(i, _), &mut c| {
            if i == instance {
                contexts.push(c);
            }
            i != instance
        });
        contexts
    });
}

/// Takes the contexts `select` unlinks (under the exclusive lock), detaches them and drops the
/// references their links held in the same critical section ([`detach_and_drop`]), then frees
/// the ones that reached zero.
pub(crate) fn detach_and_release(
    k: &Kernel,
    who: &str,
    select: impl FnOnce(&mut crate::fltmgr::files::IoState) -> Vec<usize>,
) {
    let dropped = {
        let mut flt = flt_write(k);
        let contexts = select(&mut flt.io);
        detach_and_drop(&flt.io, contexts)
    };
    settle_all(k, who, dropped);
}

/// The filter unregisters: FltMgr "removes any contexts that the minifilter driver has set on
/// ... volumes"
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltunregisterfilter>),
/// dropping each volume's reference on its context.
pub(crate) fn release_volume_contexts(k: &Kernel) {
    detach_and_release(k, "FltUnregisterFilter (volume contexts)", |io| {
        io.contexts.by_volume.drain().map(|(_, c)| c).collect()
    });
}

/// `FltReferenceContext`: IRQL <= DISPATCH_LEVEL. One more reference on a live context
/// (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreferencecontext>),
/// which the caller releases with `FltReleaseContext`.
pub(crate) extern "win64" fn flt_reference_context(context: PFLT_CONTEXT) {
    emulate(Routine::FltReferenceContext, |k| {
        let flt = flt_read(k);
        let table = &flt.io.contexts;
        if table.reference(context as usize) {
            return;
        }
        let known = table
            .freed
            .find_map(|freed| freed.get(context as usize).cloned());
        drop(flt);
        let what = match known {
            Some(freed) => format!(
                "{context:p} is a freed {}",
                describe(freed.context_type, freed.tag, freed.size)
            ),
            None => format!("{context:p} is not a context"),
        };
        k.parameter_violation("a live context", what);
    });
}

/// Reports contexts the driver still references (at `FltUnregisterFilter`) and frees them.
pub(crate) fn report_leaks(k: &Kernel, when: &str) {
    let mut leaked: Vec<(usize, ContextRecord)> = {
        let mut flt = flt_write(k);
        let leaked: Vec<(usize, ContextRecord)> = flt.io.contexts.live.drain();
        flt.io.stats.add(Count::ContextsFreed, leaked.len() as u64);
        leaked
    };
    // The clearest culprit first (the report's example is the first): a context the driver
    // deleted but kept a reference to, the fewest references first (a context many others
    // still reference leaks because they do), then by kind and address (the map has no order).
    leaked.sort_by_key(|(address, record)| {
        (
            record.deleted_in.is_none(),
            record.references,
            record.context_type,
            *address,
        )
    });
    for (address, record) in leaked {
        k.violation(
            ViolationKind::ReferenceLeak,
            "RULES.md 19: every context reference is released (FltReleaseContext); FltUnregisterFilter waits for them",
            format!(
                "at {when}: {} at {address:#x} still has {} reference(s) (allocated in {}{})",
                describe(record.context_type, record.tag, record.size),
                record.references,
                record.allocated_by,
                record
                    .deleted_in
                    .map(|(routine, callback)| format!("; deleted by {routine} in {callback}"))
                    .unwrap_or_default(),
            ),
        );
        let freed = lock(&k.pool).free(address, "FltUnregisterFilter");
        if let Ok((block, _, _)) = freed {
            Pool::retire(block);
        }
    }
}
