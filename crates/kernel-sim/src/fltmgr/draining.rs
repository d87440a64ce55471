//! Post-operation draining: what Filter Manager does with operations that have had their
//! pre-operation callback and wait for their post when the instance is torn down.
//!
//! "Performing Completion Processing for an I/O Operation"
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/performing-completion-processing-for-an-i-o-operation>):
//! when an instance is torn down, FltMgr drains every operation for which the instance received
//! a pre-operation callback and awaits a post-operation callback. It calls the post callback even
//! though the I/O has not completed, with `FLTFL_POST_OPERATION_DRAINING` in `Flags`; the filter
//! must do no normal completion processing, only release what its pre callback handed over (the
//! completion context), and return `FLT_POSTOP_FINISHED_PROCESSING`.
//! `PFLT_POST_OPERATION_CALLBACK`
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_post_operation_callback>)
//! adds that `Data` then points to a copy of the callback data, not the original, and that the
//! draining call is made at IRQL <= APC_LEVEL.
//!
//! kernel-sim drains every operation awaiting its post, synchronized ones included (the
//! documentation names no exception, so a filter must handle the flag in every post callback).
//! It calls the post on the tearing-down thread at APC_LEVEL, the highest IRQL the page allows,
//! with a copy of the callback data whose `IoStatus` says `STATUS_PENDING` (the I/O has not
//! completed). Any Filter Manager routine given that copy as an operation's callback data is
//! normal completion processing on a drained operation and is reported
//! ([`misuse_of_drained_copy`]). When the I/O later completes, its post is not called again,
//! and its I/O thread keeps the operation's callback data, related objects and completion slot
//! until a draining post still running on them has returned ([`wait_for_draining_post`]).
//!
//! An open question the pages leave: a filter that swapped in a buffer of its own and frees it
//! in a draining post (Microsoft's `SwapBuffers` sample frees unconditionally in post-write, and
//! so does the project's `swapper.c`) frees memory the file system may still be transferring
//! to or from, since the drained I/O has "not been completed"; yet the
//! `FltRetainSwappedBufferMdlAddress` page says Filter Manager itself frees the swapped MDL
//! when the post returns, which could not be safe either if the I/O were still using it. The
//! pages give no way for a filter to learn when a drained I/O is done, so neither reading can
//! be held against a filter: when the file system finds a transfer buffer no longer mapped
//! (`world/io/ops.rs`, `transfer_buffer`), it transfers nothing (a read fails with
//! `STATUS_INVALID_USER_BUFFER`, a write keeps the size only) and reports nothing.

use std::sync::{Condvar, Mutex};

use rustc_hash::FxHashSet as HashSet;
use vigil_sys::{
    APC_LEVEL, FLT_CALLBACK_DATA, FLT_POSTOP_FINISHED_PROCESSING, FLT_RELATED_OBJECTS,
    FLTFL_CALLBACK_DATA_POST_OPERATION, FLTFL_POST_OPERATION_DRAINING, IO_STATUS_BLOCK, PVOID,
    STATUS_PENDING,
};

use crate::fltmgr::files::Count;
use crate::fltmgr::instances::VolumeId;
use crate::fltmgr::{FltState, flt_read, flt_write};
use crate::kernel::Kernel;
use crate::machine::guest::{self, GuestAlloc};
use crate::report::ViolationKind;

/// The rule a draining post-operation callback is held to (see the module docs).
const RULE: &str = "a post-operation callback called with FLTFL_POST_OPERATION_DRAINING does no \
                    normal completion processing: it releases its completion context and returns \
                    FLT_POSTOP_FINISHED_PROCESSING";

type PostCallback =
    unsafe extern "win64" fn(*mut FLT_CALLBACK_DATA, *const FLT_RELATED_OBJECTS, PVOID, u32) -> i32;

/// An operation whose pre-operation callback asked for a post that has not begun.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AwaitingPost {
    /// The instance whose callbacks saw the operation.
    pub instance: usize,
    /// The post-operation callback and its name in reports.
    pub post: usize,
    pub post_name: &'static str,
    /// The operation's related objects and completion-context slot (guest addresses).
    pub objects: usize,
    pub completion: usize,
}

/// FltMgr's view of the posts still owed, inside [`IoState`](crate::fltmgr::files::IoState).
#[derive(Default)]
pub(crate) struct PostTable {
    /// Callback data of operations awaiting their post -> how to drain them.
    pub awaiting: rustc_hash::FxHashMap<usize, AwaitingPost>,
    /// Callback data of operations drained: their I/O ends without a post.
    pub drained: HashSet<usize>,
    /// Callback data whose draining post is being called: the operation's I/O thread keeps its
    /// block (callback data, related objects, completion slot) until the post has returned
    /// ([`wait_for_draining_post`]).
    draining_now: HashSet<usize>,
    /// The copies of callback data handed to draining posts (kept for the run, so that a
    /// later use of one is recognized and its address is not reused).
    copies: Vec<GuestAlloc>,
    copy_addresses: HashSet<usize>,
}

impl PostTable {
    /// Records that the operation at `data` awaits its post.
    pub(crate) fn await_post(&mut self, data: usize, awaiting: AwaitingPost) {
        self.awaiting.insert(data, awaiting);
    }

    /// The I/O of `data` completed: true if its post is still to be called (the operation
    /// was not drained), which also ends its wait.
    pub(crate) fn begin_post(&mut self, data: usize) -> bool {
        self.awaiting.remove(&data).is_some()
    }

    /// True if `data` was drained (its instance no longer counts it); forgets it.
    pub(crate) fn take_drained(&mut self, data: usize) -> bool {
        self.drained.remove(&data)
    }

    fn any_for(&self, instance: usize) -> bool {
        self.awaiting.values().any(|a| a.instance == instance)
    }
}

/// A Filter Manager routine was given `data` as an operation's callback data: if `data` is a
/// copy handed to a draining post, reports it under the draining rule and returns true (the
/// caller then fails the call without its own, vaguer, report).
pub(crate) fn misuse_of_drained_copy(k: &Kernel, routine: &str, data: usize) -> bool {
    let is_copy = flt_read(k)
        .io
        .posts
        .lock(data)
        .copy_addresses
        .contains(&data);
    if is_copy {
        k.violation(
            ViolationKind::CallbackContract,
            RULE,
            format!(
                "{routine} called with the callback data of a drained operation ({data:#x}, \
                 the copy FltMgr passes with FLTFL_POST_OPERATION_DRAINING)"
            ),
        );
    }
    is_copy
}

/// Drains the instance `instance` on `volume` (teardown, after InstanceTeardownStart): calls
/// the post of every operation awaiting it with `FLTFL_POST_OPERATION_DRAINING`, and waits for
/// the operations still in a callback, draining those that come to await a post meanwhile. On
/// return no operation counts against the instance.
pub(crate) fn drain_instance(k: &Kernel, volume: VolumeId, instance: usize) {
    loop {
        let batch: Vec<(usize, AwaitingPost)> = {
            let mut flt = flt_write(k);
            let io = &mut flt.io;
            let mut batch: Vec<(usize, AwaitingPost)> = Vec::new();
            for posts in io.posts.iter_mut() {
                let drained: Vec<(usize, AwaitingPost)> = posts
                    .awaiting
                    .iter()
                    .filter(|(_, a)| a.instance == instance)
                    .map(|(&data, &a)| (data, a))
                    .collect();
                for (data, _) in &drained {
                    posts.awaiting.remove(data);
                    posts.drained.insert(*data);
                    posts.draining_now.insert(*data);
                }
                batch.extend(drained);
            }
            if let Some(record) = io
                .volumes
                .get_mut(volume.0)
                .and_then(|v| v.instance.as_mut())
            {
                record
                    .in_flight
                    .add(-i64::try_from(batch.len()).unwrap_or(i64::MAX));
            }
            batch
        };
        for (data, awaiting) in batch {
            call_draining_post(k, data, &awaiting);
        }
        let settled = |flt: &FltState| {
            let in_flight = flt
                .io
                .volumes
                .get(volume.0)
                .and_then(|v| v.instance.as_ref())
                .map_or(0, |i| i.in_flight.get());
            let awaiting = flt
                .io
                .posts
                .find_map(|posts| posts.any_for(instance).then_some(()))
                .is_some();
            (in_flight, awaiting)
        };
        k.wait_until(None, "instance teardown (operations in flight)", || {
            let (in_flight, awaiting) = settled(&flt_read(k));
            in_flight == 0 || awaiting
        });
        let (in_flight, awaiting) = settled(&flt_read(k));
        let done = !awaiting && in_flight == 0;
        if done {
            return;
        }
    }
}

/// Calls the post callback of the drained operation `data` with a copy of its callback data.
fn call_draining_post(k: &Kernel, data: usize, awaiting: &AwaitingPost) {
    call_post_on_copy(k, data, awaiting);
    flt_read(k).io.posts.lock(data).draining_now.remove(&data);
    k.notify_waiters();
}

/// The I/O of the drained operation `data` has completed: waits until its draining post (on
/// the tearing-down thread) has returned, since that post reads the operation's callback data,
/// related objects and completion slot, which the I/O thread frees next. Filter Manager keeps
/// its callback data alive the same way while a post runs on it.
pub(crate) fn wait_for_draining_post(k: &Kernel, data: usize) {
    k.wait_until(
        None,
        "the draining post-operation callback of an operation",
        || !flt_read(k).io.posts.lock(data).draining_now.contains(&data),
    );
}

/// Calls the post of the drained operation `data` on a copy of its callback data.
fn call_post_on_copy(k: &Kernel, data: usize, awaiting: &AwaitingPost) {
    if k.crashed.load(std::sync::atomic::Ordering::Acquire) {
        return;
    }
    let mut copy_value: FLT_CALLBACK_DATA = guest::read(data as *const FLT_CALLBACK_DATA);
    copy_value.Flags |= FLTFL_CALLBACK_DATA_POST_OPERATION;
    copy_value.IoStatus = IO_STATUS_BLOCK {
        Status: STATUS_PENDING,
        _Pad: 0,
        Information: 0,
    };
    let copy = GuestAlloc::for_type::<FLT_CALLBACK_DATA>(0);
    guest::write(copy.as_ptr::<FLT_CALLBACK_DATA>(), copy_value);
    let copy_address = copy.address();
    {
        let flt = flt_read(k);
        let mut posts = flt.io.posts.lock(copy_address);
        posts.copy_addresses.insert(copy_address);
        posts.copies.push(copy);
        flt.io.stats.add(Count::DrainingPosts, 1);
    }
    let context = guest::read(awaiting.completion as *const PVOID);
    // SAFETY: `awaiting.post` is the PostOperation callback the driver registered for the
    // operation's major function; the image is mapped while the instance is being torn down
    // (FltUnregisterFilter has not returned).
    let post: PostCallback = unsafe { std::mem::transmute(awaiting.post) };
    // SAFETY: as above; the copy lives for the run, the related objects and completion slot
    // are in the operation's block, alive while its I/O thread is in the file system.
    let returned = k.call_driver(awaiting.post_name, Some(APC_LEVEL), || unsafe {
        post(
            copy_address as *mut FLT_CALLBACK_DATA,
            awaiting.objects as *const FLT_RELATED_OBJECTS,
            context,
            FLTFL_POST_OPERATION_DRAINING,
        )
    });
    if let Some(status) = returned.filter(|&s| s != FLT_POSTOP_FINISHED_PROCESSING) {
        k.violation(
            ViolationKind::CallbackStatus,
            RULE,
            format!(
                "{} returned {status:#x} while draining (only FLT_POSTOP_FINISHED_PROCESSING)",
                awaiting.post_name
            ),
        );
    }
}

/// The gate a test's `world::io::FileSystemHold` closes: operations wait on it between their
/// pre-operation callback and the file system.
pub(crate) struct HoldGate {
    held: Mutex<bool>,
    released: Condvar,
}

impl HoldGate {
    /// A closed gate.
    pub(crate) fn closed() -> Self {
        Self {
            held: Mutex::new(true),
            released: Condvar::new(),
        }
    }

    /// Waits until the gate is opened.
    pub(crate) fn wait(&self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *held {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Opens the gate for every waiter.
    pub(crate) fn open(&self) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        self.released.notify_all();
    }
}
