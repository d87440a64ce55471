//! Directory change notification, the file system's side of `IRP_MN_NOTIFY_CHANGE_DIRECTORY`
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/irp-mj-directory-control>): the
//! file system holds the request until a change the `CompletionFilter` selects happens in the
//! directory (or below it, with `SL_WATCH_TREE`), then completes it with
//! `FILE_NOTIFY_INFORMATION` records; a cleanup of the handle completes it with
//! `STATUS_NOTIFY_CLEANUP`.
//!
//! What the model records: names added (a create, a hard link), removed (the last cleanup of
//! a deleted link) and renamed (old and new name within one directory; removed and added across
//! two), each as `FILE_NOTIFY_CHANGE_FILE_NAME` or `FILE_NOTIFY_CHANGE_DIR_NAME`. Left out: the
//! attribute, size, time and security changes (no request selecting only those completes but by
//! cleanup), and the changes NTFS buffers on a handle between two requests (each request
//! watches from when the file system receives it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{FileSystem, key_of, split};
use crate::fltmgr::instances::FsHandle;
use crate::kernel::lock;
use crate::ntoskrnl::status;

/// `FILE_NOTIFY_CHANGE_FILE_NAME`.
pub const FILE_NOTIFY_CHANGE_FILE_NAME: u32 = 0x1;
/// `FILE_NOTIFY_CHANGE_DIR_NAME`.
pub const FILE_NOTIFY_CHANGE_DIR_NAME: u32 = 0x2;
/// `FILE_NOTIFY_VALID_MASK`: the bits a `CompletionFilter` may hold.
const FILE_NOTIFY_VALID_MASK: u32 = 0x0000_0fff;

/// `FILE_ACTION_ADDED`.
pub const FILE_ACTION_ADDED: u32 = 1;
/// `FILE_ACTION_REMOVED`.
pub const FILE_ACTION_REMOVED: u32 = 2;
/// `FILE_ACTION_RENAMED_OLD_NAME`.
pub const FILE_ACTION_RENAMED_OLD_NAME: u32 = 4;
/// `FILE_ACTION_RENAMED_NEW_NAME`.
pub const FILE_ACTION_RENAMED_NEW_NAME: u32 = 5;

/// How a held notification ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NotifyOutcome {
    /// The changes seen: (action, name relative to the watched directory).
    Changes(Vec<(u32, String)>),
    /// The handle was cleaned up first.
    Cleanup,
}

/// One held notification request.
pub(crate) struct Watch {
    /// The key of the watched directory.
    directory: String,
    tree: bool,
    filter: u32,
    handle: FsHandle,
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    changes: Vec<(u32, String)>,
    cleaned: bool,
}

impl Watch {
    /// Waits until a change or a cleanup ends the request; `None` once `limit` has passed.
    pub(crate) fn wait(&self, limit: Duration) -> Option<NotifyOutcome> {
        let deadline = Instant::now() + limit;
        let mut state = lock(&self.state);
        loop {
            if !state.changes.is_empty() {
                return Some(NotifyOutcome::Changes(std::mem::take(&mut state.changes)));
            }
            if state.cleaned {
                return Some(NotifyOutcome::Cleanup);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The name of `key` relative to the watched directory, if the request sees it.
    fn relative<'k>(&self, key: &str, canonical: &'k str) -> Option<&'k str> {
        let (parent, name) = split(canonical)?;
        if key_of(parent) == self.directory {
            return Some(name);
        }
        let prefix = if self.directory == "\\" {
            "\\".to_owned()
        } else {
            format!("{}\\", self.directory)
        };
        (self.tree && key.starts_with(&prefix)).then(|| &canonical[prefix.len()..])
    }
}

/// The requests a volume holds.
#[derive(Default)]
pub(crate) struct Watches {
    held: Mutex<Vec<Arc<Watch>>>,
    /// How many requests are held: every create, delete and cleanup checks it, and takes the
    /// lock only when there is one.
    count: AtomicUsize,
}

impl Watches {
    /// Records one change, made of the `(link, action)` pairs in `changes` (a rename's old and
    /// new names come together, as one completion reports them); `directory` says whether the
    /// links name a directory.
    fn record(&self, changes: &[(&str, u32)], directory: bool) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let selects = if directory {
            FILE_NOTIFY_CHANGE_DIR_NAME
        } else {
            FILE_NOTIFY_CHANGE_FILE_NAME
        };
        for watch in lock(&self.held).iter() {
            if watch.filter & selects == 0 {
                continue;
            }
            let mut state = lock(&watch.state);
            let before = state.changes.len();
            for &(canonical, action) in changes {
                if let Some(name) = watch.relative(&key_of(canonical), canonical) {
                    state.changes.push((action, name.to_owned()));
                }
            }
            if state.changes.len() > before {
                watch.changed.notify_all();
            }
        }
    }

    /// The handle `handle` was cleaned up: the requests on it end.
    fn cleaned_up(&self, handle: FsHandle) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        for watch in lock(&self.held).iter().filter(|w| w.handle == handle) {
            lock(&watch.state).cleaned = true;
            watch.changed.notify_all();
        }
    }
}

impl FileSystem {
    /// Receives a change notification request on the directory `handle` opened: the request
    /// to wait on, until [`unwatch`](Self::unwatch). `STATUS_INVALID_PARAMETER` for a file or
    /// a `completion_filter` with no valid bit or bits beyond `FILE_NOTIFY_VALID_MASK`;
    /// `STATUS_NOTIFY_CLEANUP` for a handle already cleaned up.
    pub(crate) fn watch(
        &self,
        handle: FsHandle,
        completion_filter: u32,
        tree: bool,
    ) -> Result<Arc<Watch>, i32> {
        if completion_filter == 0 || completion_filter & !FILE_NOTIFY_VALID_MASK != 0 {
            return Err(vigil_sys::STATUS_INVALID_PARAMETER);
        }
        let (node, _) = self.open_node(handle).map_err(|_| STATUS_NOTIFY_CLEANUP)?;
        if !self.node(node).directory {
            return Err(vigil_sys::STATUS_INVALID_PARAMETER);
        }
        let Some(directory) = self.with_open(handle, |open| open.map(|o| o.link.clone())) else {
            return Err(status::FILE_CLOSED);
        };
        let watch = Arc::new(Watch {
            directory,
            tree,
            filter: completion_filter,
            handle,
            state: Mutex::new(WatchState::default()),
            changed: Condvar::new(),
        });
        let mut held = lock(&self.watches.held);
        held.push(Arc::clone(&watch));
        self.watches.count.store(held.len(), Ordering::Release);
        Ok(watch)
    }

    /// Forgets the request `watch` (answered).
    pub(crate) fn unwatch(&self, watch: &Arc<Watch>) {
        let mut held = lock(&self.watches.held);
        held.retain(|w| !Arc::ptr_eq(w, watch));
        self.watches.count.store(held.len(), Ordering::Release);
    }

    /// Hook: the link `canonical` was added (`FILE_ACTION_ADDED`), removed or renamed.
    pub(super) fn notify_change(&self, canonical: &str, action: u32, directory: bool) {
        self.watches.record(&[(canonical, action)], directory);
    }

    /// Hook: the link `old` was renamed `new`: old and new name within one directory, removed
    /// and added across two.
    pub(super) fn notify_rename(&self, old: &str, new: &str, directory: bool) {
        let same_parent = match (split(old), split(new)) {
            (Some((a, _)), Some((b, _))) => key_of(a) == key_of(b),
            _ => false,
        };
        let changes = if same_parent {
            [
                (old, FILE_ACTION_RENAMED_OLD_NAME),
                (new, FILE_ACTION_RENAMED_NEW_NAME),
            ]
        } else {
            [(old, FILE_ACTION_REMOVED), (new, FILE_ACTION_ADDED)]
        };
        self.watches.record(&changes, directory);
    }

    /// Hook: `handle` was cleaned up.
    pub(super) fn notify_cleanup(&self, handle: FsHandle) {
        self.watches.cleaned_up(handle);
    }
}

/// `STATUS_NOTIFY_CLEANUP`: the handle's cleanup ended the request (a success status).
pub(crate) const STATUS_NOTIFY_CLEANUP: i32 = 0x0000_010B;
/// `STATUS_NOTIFY_ENUM_DIR`: more changes than the buffer holds; enumerate the directory (a
/// success status, nothing returned).
pub(crate) const STATUS_NOTIFY_ENUM_DIR: i32 = 0x0000_010C;
