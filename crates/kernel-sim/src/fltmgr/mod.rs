//! The Filter Manager (`FLTMGR.SYS`) emulation.
//!
//! Registration (validated), start/unregister, security descriptors, communication ports and
//! their client side, push locks; and the I/O side: synthetic volumes and instances
//! ([`volumes`]), each with an in-memory file system ([`fs`]), synthetic I/O through the
//! filter's callbacks ([`io`]), name information ([`names`]) and contexts ([`contexts`]); for
//! minifilters other than Vigil also work items ([`workitems`]), pended operations
//! ([`pending`], [`safe_completion`]), I/O the filter issues ([`filter_io`]), device-aligned
//! pool ([`aligned_pool`]), changed callback data ([`dirty`]), volumes ([`volume_objects`],
//! [`volume_names`]),
//! the volume, stream and file contexts ([`volume_contexts`], [`stream_contexts`]), and the
//! filter's own requests below its instance ([`set_information`], [`fs_control`],
//! [`callback_data`]).
//!
//! All filter state of a run is in [`FltState`], behind a mutex in the kernel's extension slot
//! ([`flt_state`]). Handles the
//! driver receives (`PFLT_FILTER`, `PFLT_PORT`, security descriptors) are addresses of small
//! zeroed blocks kernel-sim owns; records are kept (marked closed) until the end of the run so
//! that a stale handle is recognized, not confused with a new object at a reused address.

pub(crate) mod aligned_pool;
pub(crate) mod callback_data;
pub(crate) mod cancel;
pub(crate) mod cbdq;
pub(crate) mod context_deletion;
pub(crate) mod contexts;
pub(crate) mod dirty;
pub(crate) mod disk_devices;
pub(crate) mod draining;
pub(crate) mod exports;
pub(crate) mod files;
pub(crate) mod filter_io;
pub(crate) mod fs_control;
pub(crate) mod instance_contexts;
pub(crate) mod instances;
pub(crate) mod irp_names;
pub(crate) mod name_parse;
pub(crate) mod name_provider;
pub(crate) mod name_tunnel;
pub(crate) mod name_unsafe;
pub(crate) mod names;
pub(crate) mod operation_requests;
pub(crate) mod pending;
pub(crate) mod ports;
pub(crate) mod pushlock;
pub(crate) mod query_information;
pub(crate) mod registration;
pub(crate) mod routine_address;
pub(crate) mod safe_completion;
pub(crate) mod security;
pub(crate) mod set_information;
pub(crate) mod stream_contexts;
pub(crate) mod transactions;
pub(crate) mod unload;
pub(crate) mod volume_contexts;
pub(crate) mod volume_detach;
pub(crate) mod volume_names;
pub(crate) mod volume_objects;
pub(crate) mod workitems;

use std::collections::BTreeMap;
use std::sync::Arc;

use vigil_sys::{NTSTATUS, PVOID};

use crate::kernel::Kernel;
use crate::kernel::sharded::{BrLock, BrRead, BrWrite};
use crate::machine::guest::GuestAlloc;

/// `FilterUnloadCallback`'s function type.
pub(crate) type UnloadCallback = unsafe extern "win64" fn(u32) -> NTSTATUS;

/// One operation registration, copied from the driver's array.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operation {
    pub major: u8,
    pub flags: u32,
    pub pre: usize,
    pub post: usize,
}

/// One context registration, copied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ContextRegistration {
    pub context_type: u16,
    pub size: usize,
    pub pool_tag: u32,
    pub cleanup: usize,
}

/// A registered filter.
#[expect(
    dead_code,
    reason = "the instance callbacks and operations are read by phase 2"
)]
pub(crate) struct FilterRecord {
    pub handle: GuestAlloc,
    pub version: u16,
    pub flags: u32,
    pub unload: Option<UnloadCallback>,
    pub instance_setup: usize,
    pub instance_query_teardown: usize,
    pub instance_teardown_start: usize,
    pub instance_teardown_complete: usize,
    /// `TransactionNotificationCallback` (0: none; `FltEnlistInTransaction` refuses).
    pub transaction_notification: usize,
    pub operations: Vec<Operation>,
    pub contexts: Vec<ContextRegistration>,
    pub started: bool,
    /// `FltUnregisterFilter` has begun: no new instance, port or registration use.
    pub unregistered: bool,
    /// `FltUnregisterFilter` has returned. Until then the handle stays valid for the
    /// callbacks it is draining (a post-operation or port callback may still send a message).
    pub unregister_returned: bool,
    /// The instance configuration `FltRegisterFilter` read from an installed registry; None
    /// for an image loaded without an INF (every volume is offered automatically).
    pub instance_config: Option<registration::InstanceConfig>,
    /// The name-provider callbacks, when the filter registered any.
    pub name_provider: Option<name_provider::Callbacks>,
}

impl FilterRecord {
    /// The filter's context registrations of `context_type`.
    pub(crate) fn contexts_of(&self, context_type: u16) -> Vec<ContextRegistration> {
        self.contexts
            .iter()
            .filter(|c| c.context_type == context_type)
            .copied()
            .collect()
    }
}

/// A server communication port.
#[expect(dead_code, reason = "the handle is kept alive, never read")]
pub(crate) struct ServerPortRecord {
    pub handle: GuestAlloc,
    pub filter: usize,
    pub name: String,
    pub cookie: PVOID,
    pub connect: usize,
    pub disconnect: usize,
    pub message: usize,
    pub max_connections: i32,
    pub closed: bool,
    /// Who may connect, from the security descriptor the port was created with.
    pub access: security::PortAccess,
}

// SAFETY: `cookie` is the driver's opaque pointer, only passed back to the driver, never
// dereferenced by kernel-sim.
unsafe impl Send for ServerPortRecord {}
// SAFETY: as above: sharing a record shares only the pointer's value.
unsafe impl Sync for ServerPortRecord {}

/// A security descriptor from `FltBuildDefaultSecurityDescriptor`.
pub(crate) struct SecurityDescriptorRecord {
    pub memory: GuestAlloc,
    pub freed: bool,
    /// The `DesiredAccess` it grants (to SYSTEM and Administrators only).
    pub access: vigil_sys::ACCESS_MASK,
}

/// The Filter Manager state of `k`'s run, kept in the kernel's extension slot (the kernel,
/// a layer below, holds it without knowing its type).
///
/// A big-reader lock ([`BrLock`]): every emulated I/O reads it (the volume, its instance, the filter's
/// operations) from every I/O thread at once, and keeps what it changes per operation in
/// tables of its own (sharded maps, atomic counters, the post table's mutex) that a reader
/// may change. Whatever changes the shape of the state (registration, mounts, attaches,
/// teardown, unload) holds it exclusively, so it never runs beside an operation's
/// bookkeeping.
pub(crate) fn flt_state(k: &Kernel) -> &BrLock<FltState> {
    k.extension(|| BrLock::new(FltState::default()))
}

/// [`flt_state`] held exclusively (ignoring poisoning, as [`lock`](crate::kernel::lock) does).
///
/// # Panics
///
/// If this thread holds the lock already (see [`Held`]).
pub(crate) fn flt_write(k: &Kernel) -> FltWrite<'_> {
    let held = Held::take();
    FltWrite(flt_state(k).write(), held)
}

/// [`flt_state`] shared with the other readers (the I/O path).
///
/// # Panics
///
/// If this thread holds the lock already (see [`Held`]).
pub(crate) fn flt_read(k: &Kernel) -> FltRead<'_> {
    let held = Held::take();
    FltRead(flt_state(k).read(), held)
}

/// This thread holds the Filter Manager lock. Taking it again on the same thread is a
/// kernel-sim bug that deadlocks only sometimes (a second shared hold waits behind a waiting
/// writer), so it is caught on every attempt instead.
pub(crate) struct Held(());

thread_local! {
    static HOLDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Held {
    fn take() -> Self {
        let again = HOLDING.with(|h| h.replace(true));
        assert!(
            !again,
            "kernel-sim bug: the Filter Manager lock taken again by the thread that holds it"
        );
        Self(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HOLDING.with(|h| h.set(false));
    }
}

/// [`flt_write`]'s guard.
pub(crate) struct FltWrite<'a>(BrWrite<'a, FltState>, Held);

/// [`flt_read`]'s guard.
pub(crate) struct FltRead<'a>(BrRead<'a, FltState>, Held);

impl std::ops::Deref for FltWrite<'_> {
    type Target = FltState;

    fn deref(&self) -> &FltState {
        &self.0
    }
}

impl std::ops::DerefMut for FltWrite<'_> {
    fn deref_mut(&mut self) -> &mut FltState {
        &mut self.0
    }
}

impl std::ops::Deref for FltRead<'_> {
    type Target = FltState;

    fn deref(&self) -> &FltState {
        &self.0
    }
}

/// The Filter Manager state of a run.
#[derive(Default)]
pub(crate) struct FltState {
    /// Filters by handle.
    pub filters: BTreeMap<usize, FilterRecord>,
    /// Server ports by handle.
    pub ports: BTreeMap<usize, ServerPortRecord>,
    /// Client ports (one per connection) by handle.
    pub client_ports: BTreeMap<usize, ports::ClientPortRecord>,
    /// The last `FltSendMessage` message id given out.
    pub next_message_id: u64,
    /// Security descriptors by address.
    pub security_descriptors: BTreeMap<usize, SecurityDescriptorRecord>,
    /// Push locks by the address of their `EX_PUSH_LOCK`.
    pub push_locks: BTreeMap<usize, Arc<pushlock::PushLock>>,
    /// Volumes, instances, open files, name information and contexts.
    pub io: files::IoState,
    /// Callback data queues and the cancel state of pended operations (its own lock).
    pub cancel: cbdq::CancelTable,
}

impl FltState {
    /// The unload callback of the registered filter, if any.
    pub(crate) fn unload_callback(&self) -> Option<UnloadCallback> {
        self.filters
            .values()
            .find(|f| !f.unregistered)
            .and_then(|f| f.unload)
    }

    /// Whether a filter is still registered.
    pub(crate) fn any_registered(&self) -> bool {
        self.filters.values().any(|f| !f.unregistered)
    }

    /// The live filter for a handle.
    pub(crate) fn live_filter(&mut self, handle: usize) -> Option<&mut FilterRecord> {
        self.filters.get_mut(&handle).filter(|f| !f.unregistered)
    }

    /// Filter `handle` if it is still a valid handle: registered, and `FltUnregisterFilter`
    /// (if called) has not returned yet, so the callbacks it drains may still use it.
    pub(crate) fn valid_filter(&mut self, handle: usize) -> Option<&mut FilterRecord> {
        self.filters
            .get_mut(&handle)
            .filter(|f| !f.unregister_returned)
    }
}
