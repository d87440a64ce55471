//! What the in-memory file system keeps beyond names and sizes, for the operations other than
//! create/write/set-information/cleanup/close: the bytes written (a read returns them), extended
//! attributes, byte-range locks and the volume label. Kept beside the namespace (its own
//! mutex), so that the operations that only read or add this state need the volume's lock
//! shared. Host code.
//!
//! Left out: the contents of named streams (their reads end at offset 0), EA names and
//! flags (an EA list is kept and returned as the bytes it was set with), lock waits (a
//! conflicting lock fails with `STATUS_LOCK_NOT_GRANTED` whether or not `FailImmediately`).

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use rustc_hash::FxHashMap as HashMap;

use vigil_sys::{NTSTATUS, STATUS_END_OF_FILE};

use crate::fltmgr::instances::FsHandle;
use crate::kernel::lock;
use crate::ntoskrnl::status;
use crate::world::fs::{FileSystem, key_of, split};

/// `STATUS_NO_EAS_ON_FILE` (ntstatus.h).
const STATUS_NO_EAS_ON_FILE: NTSTATUS = 0xC000_0052_u32.cast_signed();
/// `STATUS_FILE_LOCK_CONFLICT` (ntstatus.h).
pub(crate) const STATUS_FILE_LOCK_CONFLICT: NTSTATUS = 0xC000_0054_u32.cast_signed();
/// `STATUS_LOCK_NOT_GRANTED` (ntstatus.h).
const STATUS_LOCK_NOT_GRANTED: NTSTATUS = 0xC000_0055_u32.cast_signed();
/// `STATUS_RANGE_NOT_LOCKED` (ntstatus.h).
const STATUS_RANGE_NOT_LOCKED: NTSTATUS = 0xC000_007E_u32.cast_signed();

/// One byte-range lock.
#[derive(Clone, Copy, Debug)]
struct ByteLock {
    offset: u64,
    length: u64,
    exclusive: bool,
    /// The process that holds it (its lock is its own: a process may read what it locked).
    owner: u32,
    key: u32,
    /// The open it was taken through: the file system releases a handle's locks at its
    /// cleanup, which here is when the handle is found cleaned up or closed.
    handle: FsHandle,
}

impl ByteLock {
    fn overlaps(&self, offset: u64, length: u64) -> bool {
        let end = self.offset.saturating_add(self.length);
        offset < end && self.offset < offset.saturating_add(length)
    }
}

/// The extra state of one file.
#[derive(Default)]
struct NodeExtra {
    data: Vec<u8>,
    eas: Vec<u8>,
    /// The security descriptor set on it (self-relative), if any.
    security: Option<Vec<u8>>,
    locks: Vec<ByteLock>,
}

/// The extra state of a volume's files, by node.
#[derive(Default)]
pub(crate) struct Extras {
    nodes: Mutex<HashMap<u64, NodeExtra>>,
    label: Mutex<String>,
}

/// What a query by name (`IRP_MJ_QUERY_OPEN`, `IRP_MJ_NETWORK_QUERY_OPEN`) finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub file_id: u64,
    pub size: u64,
    pub links: u32,
    pub directory: bool,
}

/// What `FileStandardInformation` reports about an open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Standard {
    pub size: u64,
    pub links: u32,
    pub delete_pending: bool,
    pub directory: bool,
}

impl FileSystem {
    /// The node `handle` opened and whether it opened a named stream; `STATUS_FILE_CLOSED`
    /// after its cleanup.
    pub(super) fn open_node(&self, handle: FsHandle) -> Result<(u64, bool), NTSTATUS> {
        self.with_open(handle, |open| match open {
            Some(open) if !open.cleaned_up => Ok((open.node, open.stream.is_some())),
            _ => Err(status::FILE_CLOSED),
        })
    }

    /// `IRP_MJ_WRITE` of `data` at `offset`: the size as [`FileSystem::write`] keeps it, and
    /// the bytes (after a truncation, bytes beyond the size are gone).
    pub(crate) fn write_data(
        &self,
        handle: FsHandle,
        offset: u64,
        data: &[u8],
    ) -> Result<(), NTSTATUS> {
        let (node, named_stream) = self.open_node(handle)?;
        let size_before = self.node(node).size.load(Ordering::Acquire);
        self.write(handle, offset, data.len() as u64)?;
        if named_stream {
            return Ok(());
        }
        let (Ok(start), Ok(kept)) = (usize::try_from(offset), usize::try_from(size_before)) else {
            return Ok(());
        };
        let mut nodes = lock(&self.extras.nodes);
        let extra = nodes.entry(node).or_default();
        extra.data.truncate(kept);
        let end = start.saturating_add(data.len());
        if extra.data.len() < end {
            extra.data.resize(end, 0);
        }
        extra.data[start..end].copy_from_slice(data);
        Ok(())
    }

    /// `IRP_MJ_READ` of at most `length` bytes at `offset` by process `reader`:
    /// `STATUS_END_OF_FILE` at or past the end, `STATUS_FILE_LOCK_CONFLICT` on a range another
    /// process locked exclusively, `STATUS_INVALID_DEVICE_REQUEST` on a directory.
    pub(crate) fn read_data(
        &self,
        handle: FsHandle,
        offset: u64,
        length: u32,
        reader: u32,
    ) -> Result<Vec<u8>, NTSTATUS> {
        self.read_bytes(handle, offset, length, Some(reader))
    }

    /// A read by `reader` (checked against the other processes' locks) or below the locks.
    fn read_bytes(
        &self,
        handle: FsHandle,
        offset: u64,
        length: u32,
        reader: Option<u32>,
    ) -> Result<Vec<u8>, NTSTATUS> {
        let (node, named_stream) = self.open_node(handle)?;
        let node_record = self.node(node);
        if node_record.directory {
            return Err(status::INVALID_DEVICE_REQUEST);
        }
        let size = if named_stream {
            0
        } else {
            node_record.size.load(Ordering::Acquire)
        };
        if length == 0 {
            return Ok(Vec::new());
        }
        if offset >= size {
            return Err(STATUS_END_OF_FILE);
        }
        let count = (size - offset).min(u64::from(length));
        let nodes = lock(&self.extras.nodes);
        let extra = nodes.get(&node);
        if let Some(reader) = reader
            && extra.is_some_and(|e| {
                e.locks.iter().any(|l| {
                    l.exclusive
                        && l.owner != reader
                        && l.overlaps(offset, count)
                        && self.open_node(l.handle).is_ok()
                })
            })
        {
            return Err(STATUS_FILE_LOCK_CONFLICT);
        }
        let data = extra.map_or(&[][..], |e| &e.data[..]);
        let mut bytes = vec![0u8; usize::try_from(count).unwrap_or(0)];
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start < data.len() {
            let available = (data.len() - start).min(bytes.len());
            bytes[..available].copy_from_slice(&data[start..start + available]);
        }
        Ok(bytes)
    }

    /// The file `path` names (no stream suffix), without opening it;
    /// `STATUS_OBJECT_NAME_NOT_FOUND` when there is none.
    pub(crate) fn stat_path(&self, path: &str) -> Result<Stat, NTSTATUS> {
        let entry = self
            .entries
            .get(&key_of(&self.long_path(path)))
            .ok_or(vigil_sys::STATUS_OBJECT_NAME_NOT_FOUND)?;
        let node = self.node(entry.node);
        Ok(Stat {
            file_id: entry.node,
            size: node.size.load(Ordering::Acquire),
            links: u32::try_from(node.links.len()).unwrap_or(u32::MAX),
            directory: node.directory,
        })
    }

    /// A read that no byte-range lock holds back (a filter's own read below itself).
    pub(crate) fn read_unlocked(
        &self,
        handle: FsHandle,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, NTSTATUS> {
        self.read_bytes(handle, offset, length, None)
    }

    /// `FileStandardInformation` of an open file.
    pub(crate) fn standard(&self, handle: FsHandle) -> Result<Standard, NTSTATUS> {
        let (node, named_stream) = self.open_node(handle)?;
        let node = self.node(node);
        Ok(Standard {
            size: if named_stream {
                0
            } else {
                node.size.load(Ordering::Acquire)
            },
            links: u32::try_from(node.links.len()).unwrap_or(u32::MAX),
            delete_pending: !node.delete_pending.is_empty(),
            directory: node.directory,
        })
    }

    /// The canonical names of the entries of the directory `handle` opened, sorted;
    /// `STATUS_INVALID_PARAMETER` for a file.
    pub(crate) fn children(&self, handle: FsHandle) -> Result<Vec<String>, NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        if !self.node(node).directory {
            return Err(vigil_sys::STATUS_INVALID_PARAMETER);
        }
        let Some(directory) = self.with_open(handle, |open| open.map(|o| o.link.clone())) else {
            return Err(status::FILE_CLOSED);
        };
        let mut names: Vec<String> = self
            .entries
            .iter()
            .filter(|(key, _)| key.as_str() != "\\")
            .filter(|(key, _)| split(key).is_some_and(|(parent, _)| parent == directory))
            .filter_map(|(_, entry)| split(&entry.canonical).map(|(_, name)| name.to_owned()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `IRP_MJ_SET_EA`: the file's EA list becomes `eas`.
    pub(crate) fn set_eas(&self, handle: FsHandle, eas: &[u8]) -> Result<(), NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        lock(&self.extras.nodes).entry(node).or_default().eas = eas.to_vec();
        Ok(())
    }

    /// `IRP_MJ_QUERY_EA`: the file's EA list; `STATUS_NO_EAS_ON_FILE` when it has none.
    pub(crate) fn eas(&self, handle: FsHandle) -> Result<Vec<u8>, NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        let nodes = lock(&self.extras.nodes);
        match nodes.get(&node) {
            Some(extra) if !extra.eas.is_empty() => Ok(extra.eas.clone()),
            _ => Err(STATUS_NO_EAS_ON_FILE),
        }
    }

    /// `IRP_MJ_SET_SECURITY`: the file's security descriptor becomes `descriptor`.
    pub(crate) fn set_security(&self, handle: FsHandle, descriptor: &[u8]) -> Result<(), NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        lock(&self.extras.nodes).entry(node).or_default().security = Some(descriptor.to_vec());
        Ok(())
    }

    /// The security descriptor set on the file, if any.
    pub(crate) fn security(&self, handle: FsHandle) -> Result<Option<Vec<u8>>, NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        Ok(lock(&self.extras.nodes)
            .get(&node)
            .and_then(|e| e.security.clone()))
    }

    /// `IRP_MN_LOCK` of `length` bytes at `offset` for process `owner`:
    /// `STATUS_LOCK_NOT_GRANTED` when it conflicts (an exclusive lock overlaps any other; a
    /// shared one overlaps another process's exclusive lock).
    pub(crate) fn lock_range(
        &self,
        handle: FsHandle,
        (offset, length): (u64, u64),
        exclusive: bool,
        (owner, key): (u32, u32),
    ) -> Result<(), NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        let mut nodes = lock(&self.extras.nodes);
        let extra = nodes.entry(node).or_default();
        extra.locks.retain(|l| self.open_node(l.handle).is_ok());
        let conflict = extra.locks.iter().any(|l| {
            l.overlaps(offset, length) && (exclusive || (l.exclusive && l.owner != owner))
        });
        if conflict {
            return Err(STATUS_LOCK_NOT_GRANTED);
        }
        extra.locks.push(ByteLock {
            offset,
            length,
            exclusive,
            owner,
            key,
            handle,
        });
        Ok(())
    }

    /// `IRP_MN_UNLOCK_SINGLE`: `STATUS_RANGE_NOT_LOCKED` unless `owner` holds exactly that
    /// range with `key`.
    pub(crate) fn unlock_range(
        &self,
        handle: FsHandle,
        (offset, length): (u64, u64),
        (owner, key): (u32, u32),
    ) -> Result<(), NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        let mut nodes = lock(&self.extras.nodes);
        let extra = nodes.entry(node).or_default();
        let at = extra.locks.iter().position(|l| {
            l.offset == offset && l.length == length && l.owner == owner && l.key == key
        });
        match at {
            Some(at) => {
                extra.locks.remove(at);
                Ok(())
            }
            None => Err(STATUS_RANGE_NOT_LOCKED),
        }
    }

    /// Whether a transfer of `length` bytes at `offset` by `owner` would hit another process's
    /// lock (what fast I/O checks before it takes the fast path).
    pub(crate) fn range_conflicts(
        &self,
        handle: FsHandle,
        (offset, length): (u64, u64),
        owner: u32,
        read: bool,
    ) -> Result<bool, NTSTATUS> {
        let (node, _) = self.open_node(handle)?;
        let nodes = lock(&self.extras.nodes);
        Ok(nodes.get(&node).is_some_and(|e| {
            e.locks.iter().any(|l| {
                l.owner != owner
                    && l.overlaps(offset, length)
                    && (l.exclusive || !read)
                    && self.open_node(l.handle).is_ok()
            })
        }))
    }

    /// `FileFsLabelInformation` set on the volume.
    pub(crate) fn set_label(&self, label: &str) {
        label.clone_into(&mut lock(&self.extras.label));
    }
}

#[cfg(test)]
mod tests {
    use vigil_sys::{FILE_CREATE, FILE_OVERWRITE_IF, STATUS_END_OF_FILE};

    use super::{
        STATUS_FILE_LOCK_CONFLICT, STATUS_LOCK_NOT_GRANTED, STATUS_NO_EAS_ON_FILE,
        STATUS_RANGE_NOT_LOCKED,
    };
    use crate::world::fs::FileSystem;

    #[test]
    fn reads_return_the_bytes_written_and_nothing_past_a_truncation() {
        let mut fs = FileSystem::new(true);
        let (a, _) = fs.create(r"\f", FILE_CREATE, 0).expect("created");
        fs.write_data(a, 0, b"hello world").expect("written");
        assert_eq!(fs.read_data(a, 6, 100, 1).expect("read"), b"world");
        assert_eq!(fs.read_data(a, 11, 1, 1), Err(STATUS_END_OF_FILE));
        fs.cleanup(a).expect("cleanup");
        fs.close(a);
        // An overwrite truncates; a write past the old bytes leaves zeroes, not them.
        let (b, _) = fs.create(r"\f", FILE_OVERWRITE_IF, 0).expect("overwritten");
        fs.write_data(b, 4, b"!").expect("written");
        assert_eq!(fs.read_data(b, 0, 16, 1).expect("read"), b"\0\0\0\0!");
        assert_eq!(fs.standard(b).expect("standard").size, 5);
    }

    #[test]
    fn byte_range_locks_conflict_across_processes_and_go_with_their_handle() {
        let mut fs = FileSystem::new(true);
        let (a, _) = fs.create(r"\f", FILE_CREATE, 0).expect("created");
        fs.write_data(a, 0, b"0123456789").expect("written");
        let (b, _) = fs.create(r"\f", vigil_sys::FILE_OPEN, 0).expect("opened");
        fs.lock_range(a, (0, 4), true, (1, 0)).expect("locked");
        assert_eq!(
            fs.lock_range(b, (2, 4), false, (2, 0)),
            Err(STATUS_LOCK_NOT_GRANTED)
        );
        assert_eq!(fs.read_data(b, 0, 4, 2), Err(STATUS_FILE_LOCK_CONFLICT));
        assert_eq!(fs.read_data(a, 0, 4, 1).expect("own range"), b"0123");
        assert_eq!(
            fs.unlock_range(b, (0, 4), (2, 0)),
            Err(STATUS_RANGE_NOT_LOCKED)
        );
        // The lock goes when its handle is cleaned up.
        fs.cleanup(a).expect("cleanup");
        assert_eq!(fs.read_data(b, 0, 4, 2).expect("read"), b"0123");
        fs.lock_range(b, (0, 4), true, (2, 0)).expect("locked");
    }

    #[test]
    fn eas_and_directory_entries_are_the_file_systems_own() {
        let mut fs = FileSystem::new(true);
        let (d, _) = fs
            .create(r"\d", FILE_CREATE, vigil_sys::FILE_DIRECTORY_FILE)
            .expect("directory");
        let (f, _) = fs.create(r"\d\Name.txt", FILE_CREATE, 0).expect("created");
        assert_eq!(fs.eas(f), Err(STATUS_NO_EAS_ON_FILE));
        fs.set_eas(f, b"ea").expect("set");
        assert_eq!(fs.eas(f).expect("eas"), b"ea");
        assert_eq!(fs.children(d).expect("listing"), ["Name.txt"]);
        assert!(fs.children(f).is_err());
    }
}
