//! A small in-memory file system, one per synthetic volume: directories, files, hard links,
//! open handles, delete-pending and delete-on-close, with the create dispositions and the
//! rename/link/disposition semantics of NTFS as far as a filter can observe them (statuses and
//! `IoStatus.Information`). Pure Rust: no guest memory, no driver calls; the synthetic I/O in
//! [`crate::world::io`] drives it; Filter Manager's name
//! queries reach it through [`VolumeFiles`] between the pre- and post-operation callbacks.
//!
//! Names are case-insensitive and case-preserving: each link keeps the spelling it was created
//! with (the *canonical* name, what a normalized name query returns) and is found by its
//! lower-cased *key*. Paths are volume-relative and start with `\`; `\` alone is the root.
//!
//! Streams, as NTFS names them ("File Streams (Local File Systems)",
//! <https://learn.microsoft.com/windows/win32/fileio/file-streams>, and "Naming Files, Paths,
//! and Namespaces"): the final component of a path may carry `:stream[:type]`. `file::$DATA`
//! is the file itself (its unnamed data stream); `dir:$I30:$INDEX_ALLOCATION` is the directory
//! itself (its index), and creating one makes a directory; `file:name` and `file:name:$DATA`
//! are a named (alternate) data stream, of a file or a directory, created with the file if it
//! does not exist. A stream suffix anywhere but the final component is an invalid name. Name
//! queries give the file's canonical name followed by the suffix as the caller spelled it, so
//! a filter sees every spelling. A named stream is deleted on its own; renaming a named
//! stream is not emulated (`STATUS_INVALID_PARAMETER`).
//!
//! Short names: a link whose final component is not a valid 8.3 name gets a generated short
//! name (`CONFID~1`, `VAULT-~1.KDB`, unique among its siblings), and any component of a path
//! may be spelled by it: the open reaches the same file, the normalized name is the long name,
//! the opened name keeps the short spelling. File IDs: every file has one (its node number),
//! and [`FileSystem::create_by_id`] opens by it.
//!
//! The bytes written, EAs, security descriptors set, byte-range locks and the volume label are
//! kept beside the namespace (`fs/extra.rs`, for the operations of `world/io/ops.rs`).
//!
//! Left out: share access, attributes, reparse points, oplocks, the short-name registry
//! settings (generation is always on, as on a system volume).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

// Fx hashing: these tables are looked up on every emulated I/O, and their keys are not attacker-chosen.
use rustc_hash::FxHashMap as HashMap;

use vigil_sys::{
    FILE_CREATE, FILE_CREATED, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_DISPOSITION_DELETE,
    FILE_DISPOSITION_ON_CLOSE, FILE_DISPOSITION_POSIX_SEMANTICS, FILE_OPEN, FILE_OPEN_IF,
    FILE_OPENED, FILE_OVERWRITE, FILE_OVERWRITE_IF, FILE_OVERWRITTEN, FILE_SUPERSEDE,
    FILE_SUPERSEDED, NTSTATUS, STATUS_ACCESS_DENIED, STATUS_INVALID_PARAMETER,
    STATUS_OBJECT_NAME_NOT_FOUND,
};

use crate::fltmgr::instances::{FsHandle, VolumeFiles};
use crate::fltmgr::query_information::StandardInfo;
use crate::fltmgr::set_information::InfoChange;

mod extra;
pub(crate) mod notify;
use notify::{FILE_ACTION_ADDED, FILE_ACTION_REMOVED};
pub(crate) use notify::{NotifyOutcome, STATUS_NOTIFY_CLEANUP, STATUS_NOTIFY_ENUM_DIR};

use crate::kernel::sharded::ShardedMap;
use crate::ntoskrnl::status;
use crate::ntoskrnl::upcase::upcase_str;
pub(crate) use extra::{STATUS_FILE_LOCK_CONFLICT, Stat};

/// `FILE_NON_DIRECTORY_FILE` create option.
pub(crate) const FILE_NON_DIRECTORY_FILE: u32 = 0x0000_0040;
/// `FILE_RENAME_REPLACE_IF_EXISTS` / `FILE_LINK_REPLACE_IF_EXISTS` (the `Ex` classes' flag).
pub(crate) const REPLACE_IF_EXISTS: u32 = 0x0000_0001;

/// A directory entry: one link of a node.
#[derive(Debug)]
struct Entry {
    /// The name as created (case preserved).
    canonical: String,
    node: u64,
    /// The generated 8.3 short name of its final component, when the long one is not 8.3.
    short: Option<String>,
}

/// A file or directory.
#[derive(Debug, Default)]
struct Node {
    directory: bool,
    size: AtomicU64,
    /// Keys of its links (a directory has exactly one).
    links: BTreeSet<String>,
    /// Handles not yet cleaned up (counted by opens and cleanups under the volume's shared
    /// lock, see [`FileSystem`]).
    open: AtomicU32,
    /// Named data streams: key -> the name as created.
    streams: std::collections::BTreeMap<String, String>,
    /// Keys of links to remove when the last handle is cleaned up.
    delete_pending: BTreeSet<String>,
}

/// An open handle's state.
#[derive(Debug)]
struct Open {
    node: u64,
    /// The key of the link it was opened through (follows renames).
    link: String,
    delete_on_close: bool,
    cleaned_up: bool,
    /// The key of the named data stream it opened (`None`: the file or directory itself).
    stream: Option<String>,
    /// The stream suffix as the caller spelled it (`""`, `::$DATA`, `:ads`, ...).
    suffix: String,
    /// A named stream marked for deletion at cleanup.
    delete_stream: bool,
}

/// What the stream suffix of a path's final component names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StreamSpec {
    /// `::$DATA`: the unnamed data stream, the file itself.
    DefaultData,
    /// `:$I30:$INDEX_ALLOCATION`: the directory's index, the directory itself.
    DirectoryIndex,
    /// `:name` or `:name:$DATA`: a named data stream.
    Named(String),
}

/// What a stream suffix names, and the suffix as spelled.
type StreamSuffix<'a> = (StreamSpec, &'a str);

/// Splits the stream suffix off `path`'s final component: `(base, Some((spec, suffix)))`.
///
/// # Errors
///
/// `STATUS_OBJECT_NAME_INVALID` for a malformed suffix (`file:`, an unknown type, a type
/// without a name other than `$DATA`, more than two `:`).
fn split_stream(path: &str) -> Result<(&str, Option<StreamSuffix<'_>>), NTSTATUS> {
    let component = path.rfind('\\').map_or(0, |at| at + 1);
    let Some(colon) = path[component..].find(':').map(|at| component + at) else {
        return Ok((path, None));
    };
    let (base, suffix) = path.split_at(colon);
    let mut parts = suffix[1..].split(':');
    let name = parts.next().unwrap_or("");
    let kind = parts.next().map(upcase_str);
    if parts.next().is_some()
        || name
            .chars()
            .any(|c| c < ' ' || matches!(c, '"' | '*' | '/' | '<' | '>' | '?' | '|' | '\\'))
    {
        return Err(status::OBJECT_NAME_INVALID);
    }
    let spec = match (name, kind.as_deref()) {
        ("", Some("$DATA")) => StreamSpec::DefaultData,
        ("", Some("$INDEX_ALLOCATION")) => StreamSpec::DirectoryIndex,
        (name, Some("$INDEX_ALLOCATION")) if upcase_str(name) == "$I30" => {
            StreamSpec::DirectoryIndex
        }
        ("", _) => return Err(status::OBJECT_NAME_INVALID),
        (name, None | Some("$DATA")) => StreamSpec::Named(name.to_owned()),
        _ => return Err(status::OBJECT_NAME_INVALID),
    };
    Ok((base, Some((spec, suffix))))
}

/// The open-handle table's key for `handle` (handles count up from 1; a host has 64-bit
/// `usize`, kernel-sim's only target).
#[expect(
    clippy::cast_possible_truncation,
    reason = "kernel-sim runs on 64-bit hosts only: usize is u64"
)]
fn slot(handle: FsHandle) -> usize {
    handle as usize
}

/// One volume's namespace and open handles.
///
/// The volume holds it behind a reader-writer lock. Opening an existing file, writing,
/// cleaning up and closing a handle (the steady state of every I/O thread) need only the
/// shared lock: they change the open handles (a sharded map) and a node's handle count and
/// size (atomics), never the namespace. Whatever changes the namespace or a node's links,
/// streams or pending deletes (creating a file, rename, link, delete, the last cleanup of a
/// delete-pending file) takes the lock exclusively; the shared paths fall back to it whenever
/// such a case comes up, so both paths give the same results.
pub(crate) struct FileSystem {
    entries: HashMap<String, Entry>,
    nodes: HashMap<u64, Node>,
    opens: ShardedMap<Open>,
    next_node: u64,
    next_handle: AtomicU64,
    hard_links: bool,
    /// Short names: the key of a link's parent joined with its upcased short name -> the
    /// link's key.
    short_index: HashMap<String, String>,
    /// File contents, EAs, byte-range locks, the label (`extra`).
    extras: extra::Extras,
    /// Change notification requests held (`notify`).
    watches: notify::Watches,
}

/// The lookup key of a canonical path: upcased unit by unit with the system's upcase table,
/// as NTFS compares names (so `секрет` and `СЕКРЕТ` are one name, and the driver's
/// `RtlUpcaseUnicodeChar` agrees with the file system by construction).
fn key_of(path: &str) -> String {
    upcase_str(path)
}

/// `(parent, final component)` of a canonical or key path; the root has no parent.
fn split(path: &str) -> Option<(&str, &str)> {
    if path == "\\" {
        return None;
    }
    let at = path.rfind('\\')?;
    let parent = if at == 0 { "\\" } else { &path[..at] };
    Some((parent, &path[at + 1..]))
}

/// Joins a directory and a component.
fn join(directory: &str, name: &str) -> String {
    if directory == "\\" {
        format!("\\{name}")
    } else {
        format!("{directory}\\{name}")
    }
}

/// Checks a volume-relative path: starts with `\`, no empty components, no `\` at the end
/// (except the root), no characters NTFS refuses.
fn check_path(path: &str) -> Result<(), NTSTATUS> {
    if path == "\\" {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('\\') else {
        return Err(status::OBJECT_NAME_INVALID);
    };
    for component in rest.split('\\') {
        if component.is_empty()
            || component == "."
            || component == ".."
            || component
                .chars()
                .any(|c| c < ' ' || matches!(c, '"' | '*' | '/' | ':' | '<' | '>' | '?' | '|'))
        {
            return Err(status::OBJECT_NAME_INVALID);
        }
    }
    Ok(())
}

/// Whether `name` is a valid 8.3 name (then NTFS generates no short name for it): a base of 1
/// to 8 and an extension of 0 to 3 characters from the 8.3 set, one dot at most.
fn is_8dot3(name: &str) -> bool {
    let valid = |part: &str| {
        part.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'()-@^_`{}~".contains(c))
    };
    let (base, extension) = name.split_once('.').unwrap_or((name, ""));
    (1..=8).contains(&base.len())
        && extension.len() <= 3
        && !extension.contains('.')
        && valid(base)
        && valid(extension)
}

impl FileSystem {
    /// An empty volume (just the root directory); `hard_links` as the file system supports
    /// them (NTFS and ReFS... ReFS only from Windows 11, kept simple: NTFS-like volumes).
    pub(crate) fn new(hard_links: bool) -> Self {
        let mut fs = Self {
            entries: HashMap::default(),
            nodes: HashMap::default(),
            opens: ShardedMap::default(),
            next_node: 1,
            next_handle: AtomicU64::new(1),
            short_index: HashMap::default(),
            hard_links,
            extras: extra::Extras::default(),
            watches: notify::Watches::default(),
        };
        let root = fs.new_node(true);
        fs.entries.insert(
            "\\".to_owned(),
            Entry {
                canonical: "\\".to_owned(),
                node: root,
                short: None,
            },
        );
        fs.node_mut(root).links.insert("\\".to_owned());
        fs
    }

    fn new_node(&mut self, directory: bool) -> u64 {
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(
            id,
            Node {
                directory,
                ..Node::default()
            },
        );
        id
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .get_mut(&id)
            .expect("every entry names a live node")
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes.get(&id).expect("every entry names a live node")
    }

    /// The canonical directory for `path`'s parent, which must exist and be a directory.
    fn parent_of(&self, path: &str) -> Result<(String, String), NTSTATUS> {
        let (parent, name) = split(path).ok_or(STATUS_ACCESS_DENIED)?;
        let entry = self
            .entries
            .get(&key_of(parent))
            .ok_or(status::OBJECT_PATH_NOT_FOUND)?;
        if !self.node(entry.node).directory {
            return Err(status::OBJECT_PATH_NOT_FOUND);
        }
        Ok((entry.canonical.clone(), name.to_owned()))
    }

    fn has_children(&self, key: &str) -> bool {
        let prefix = if key == "\\" {
            "\\".to_owned()
        } else {
            format!("{key}\\")
        };
        self.entries
            .keys()
            .any(|k| k.len() > prefix.len() && k.starts_with(&prefix))
    }

    fn open_handle(&self, node: u64, link: String, delete_on_close: bool) -> FsHandle {
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.node(node).open.fetch_add(1, Ordering::AcqRel);
        self.opens.insert(
            slot(handle),
            Open {
                node,
                link,
                delete_on_close,
                cleaned_up: false,
                stream: None,
                suffix: String::new(),
                delete_stream: false,
            },
        );
        handle
    }

    fn live_open(&mut self, handle: FsHandle) -> Result<&mut Open, NTSTATUS> {
        match self.opens.get_mut(slot(handle)) {
            Some(open) if !open.cleaned_up => Ok(open),
            _ => Err(status::FILE_CLOSED),
        }
    }

    /// `f` on the open handle `handle` (None when there is none), under the shared lock.
    fn with_open<R>(&self, handle: FsHandle, f: impl FnOnce(Option<&mut Open>) -> R) -> R {
        self.opens.with(slot(handle), f)
    }

    /// Removes a link from the namespace; frees the node when it has no link and no handle.
    fn unlink(&mut self, key: &str) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        if let (Some(short), Some((parent, _))) = (&entry.short, split(key)) {
            self.short_index.remove(&join(parent, short));
        }
        let node = self.node_mut(entry.node);
        node.links.remove(key);
        node.delete_pending.remove(key);
        let directory = node.directory;
        if node.links.is_empty() && *node.open.get_mut() == 0 {
            self.nodes.remove(&entry.node);
        }
        self.notify_change(&entry.canonical, FILE_ACTION_REMOVED, directory);
    }

    /// Adds a link `canonical` to `node` (the parent exists; the name is free).
    fn add_link(&mut self, canonical: String, node: u64) {
        let key = key_of(&canonical);
        let short = self.short_name_for(&canonical);
        if let (Some(short), Some((parent, _))) = (&short, split(&key)) {
            self.short_index.insert(join(parent, short), key.clone());
        }
        self.node_mut(node).links.insert(key.clone());
        let directory = self.node(node).directory;
        self.notify_change(&canonical, FILE_ACTION_ADDED, directory);
        self.entries.insert(
            key,
            Entry {
                canonical,
                node,
                short,
            },
        );
    }

    /// The 8.3 short name NTFS generates for the final component of `canonical` (a new link),
    /// unique among its siblings, or `None` when the name is 8.3 already ("Naming Files,
    /// Paths, and Namespaces", short names:
    /// <https://learn.microsoft.com/windows/win32/fileio/naming-a-file>).
    fn short_name_for(&self, canonical: &str) -> Option<String> {
        let (parent, name) = split(canonical)?;
        if is_8dot3(name) {
            return None;
        }
        let clean = |part: &str, max: usize| -> String {
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || "!#$%&'()-@^_`{}~".contains(*c))
                .map(|c| c.to_ascii_uppercase())
                .take(max)
                .collect()
        };
        let (stem, extension) = match name.rfind('.') {
            Some(dot) if dot > 0 => (&name[..dot], clean(&name[dot + 1..], 3)),
            _ => (name, String::new()),
        };
        let stem = clean(stem, 6);
        let stem = if stem.is_empty() {
            "_".to_owned()
        } else {
            stem
        };
        let parent_key = key_of(parent);
        let with_extension = |base: String| {
            if extension.is_empty() {
                base
            } else {
                format!("{base}.{extension}")
            }
        };
        let free = |short: &String| {
            let at = join(&parent_key, short);
            !self.short_index.contains_key(&at) && !self.entries.contains_key(&at)
        };
        // `STEM~1` to `STEM~4`, then, as NTFS does after four collisions, two characters of
        // the stem and four hexadecimal digits of a hash of the long name.
        let numbered = (1..=4).map(|n| with_extension(format!("{stem}~{n}")));
        let hash = name
            .encode_utf16()
            .fold(0u32, |h, u| h.wrapping_mul(31).wrapping_add(u32::from(u)));
        let two: String = stem.chars().take(2).collect();
        let hashed = (1..=9)
            .map(|n| with_extension(format!("{two}{:04X}~{n}", (hash.wrapping_add(n)) & 0xFFFF)));
        numbered.chain(hashed).find(free)
    }

    /// `path` with every component that is a short name replaced by its long name (as
    /// created), so that an open by short name reaches the same file; components that exist
    /// by neither name are left as spelled, and so is a stream suffix.
    fn long_path(&self, path: &str) -> String {
        if path == "\\" || !path.starts_with('\\') {
            return path.to_owned();
        }
        let (base, suffix) = match split_stream(path) {
            Ok((base, Some((_, suffix)))) => (base, suffix),
            _ => (path, ""),
        };
        let mut resolved = String::from("\\");
        for component in base[1..].split('\\') {
            let candidate = join(&resolved, component);
            let key = key_of(&candidate);
            let next = if let Some(entry) = self.entries.get(&key) {
                entry.canonical.clone()
            } else {
                self.short_index
                    .get(&join(&key_of(&resolved), &upcase_str(component)))
                    .and_then(|long| self.entries.get(long))
                    .map_or(candidate, |e| e.canonical.clone())
            };
            resolved = next;
        }
        format!("{resolved}{suffix}")
    }

    /// The file ID (the node number, as NTFS's file reference number) of the file at `path`.
    pub(crate) fn file_id(&self, path: &str) -> Option<u64> {
        self.entries
            .get(&key_of(&self.long_path(path)))
            .map(|e| e.node)
    }

    /// The short name of the final component of `path`, if it has one.
    pub(crate) fn short_name(&self, path: &str) -> Option<String> {
        self.entries
            .get(&key_of(&self.long_path(path)))
            .and_then(|e| e.short.clone())
    }

    /// `IRP_MJ_CREATE` with `FILE_OPEN_BY_FILE_ID`: opens the file whose ID is `id` through its
    /// first link. An open by ID cannot create a file (no name): `FILE_CREATE` collides with
    /// the existing file, an unknown ID is `STATUS_INVALID_PARAMETER`; the overwriting
    /// dispositions truncate as they do by name (`NtCreateFile`, `FILE_OPEN_BY_FILE_ID`:
    /// <https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/nf-ntifs-ntcreatefile>).
    pub(crate) fn create_by_id(
        &mut self,
        id: u64,
        disposition: u32,
        options: u32,
    ) -> Result<(FsHandle, usize), NTSTATUS> {
        let node = self.nodes.get(&id).ok_or(STATUS_INVALID_PARAMETER)?;
        let link = node
            .links
            .iter()
            .next()
            .cloned()
            .ok_or(STATUS_INVALID_PARAMETER)?;
        let canonical = self.entries[&link].canonical.clone();
        if disposition == FILE_CREATE {
            return Err(status::OBJECT_NAME_COLLISION);
        }
        self.create_plain(&canonical, disposition, options)
    }

    /// `IRP_MJ_CREATE`: `disposition` is `FILE_SUPERSEDE`..`FILE_OVERWRITE_IF`; returns the
    /// handle and `IoStatus.Information` (`FILE_CREATED`, `FILE_OPENED`, ...).
    pub(crate) fn create(
        &mut self,
        path: &str,
        disposition: u32,
        options: u32,
    ) -> Result<(FsHandle, usize), NTSTATUS> {
        let long = self.long_path(path);
        let path = long.as_str();
        let (base, stream) = split_stream(path)?;
        let Some((spec, suffix)) = stream else {
            return self.create_plain(path, disposition, options);
        };
        check_path(base)?;
        let base_node = self.entries.get(&key_of(base)).map(|e| e.node);
        let base_is_directory = base_node.is_some_and(|n| self.node(n).directory);
        let (handle, information) = match &spec {
            StreamSpec::DefaultData => {
                if base_is_directory || options & FILE_DIRECTORY_FILE != 0 {
                    return Err(status::FILE_IS_A_DIRECTORY);
                }
                self.create_plain(base, disposition, options)?
            }
            StreamSpec::DirectoryIndex => {
                if base_node.is_some() && !base_is_directory {
                    return Err(status::NOT_A_DIRECTORY);
                }
                self.create_plain(base, disposition, options | FILE_DIRECTORY_FILE)?
            }
            StreamSpec::Named(name) => {
                return self.create_stream(base, name, suffix, disposition, options);
            }
        };
        if let Some(open) = self.opens.get_mut(slot(handle)) {
            suffix.clone_into(&mut open.suffix);
        }
        Ok((handle, information))
    }

    /// [`create`](Self::create) under the shared lock, for the case that changes no name: an
    /// open (`FILE_OPEN`, `FILE_OPEN_IF`) of an existing file or directory through a path
    /// without a stream suffix, not delete-on-close. `None` when the create is not that case
    /// (the caller then creates under the exclusive lock); otherwise what `create` returns.
    pub(crate) fn open_existing(
        &self,
        path: &str,
        disposition: u32,
        options: u32,
    ) -> Option<Result<(FsHandle, usize), NTSTATUS>> {
        if !matches!(disposition, FILE_OPEN | FILE_OPEN_IF) || options & FILE_DELETE_ON_CLOSE != 0 {
            return None;
        }
        let long = self.long_path(path);
        let path = long.as_str();
        if !matches!(split_stream(path), Ok((_, None))) || check_path(path).is_err() {
            return None;
        }
        let want_directory = options & FILE_DIRECTORY_FILE != 0;
        if want_directory && options & FILE_NON_DIRECTORY_FILE != 0 {
            return None;
        }
        let key = key_of(path);
        let node_id = self.entries.get(&key)?.node;
        let node = self.node(node_id);
        if node.delete_pending.contains(&key) {
            return Some(Err(status::DELETE_PENDING));
        }
        if want_directory && !node.directory {
            return Some(Err(status::NOT_A_DIRECTORY));
        }
        if options & FILE_NON_DIRECTORY_FILE != 0 && node.directory {
            return Some(Err(status::FILE_IS_A_DIRECTORY));
        }
        Some(Ok((self.open_handle(node_id, key, false), FILE_OPENED)))
    }

    /// Creates or opens the named data stream `name` of `base` (creating `base` as a file when
    /// the disposition creates and it does not exist).
    fn create_stream(
        &mut self,
        base: &str,
        name: &str,
        suffix: &str,
        disposition: u32,
        options: u32,
    ) -> Result<(FsHandle, usize), NTSTATUS> {
        if disposition > FILE_OVERWRITE_IF {
            return Err(STATUS_INVALID_PARAMETER);
        }
        if options & FILE_DIRECTORY_FILE != 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let creates = !matches!(disposition, FILE_OPEN | FILE_OVERWRITE);
        let key = key_of(base);
        let node = match self.entries.get(&key) {
            Some(entry) => {
                let node = entry.node;
                if self.node(node).delete_pending.contains(&key) {
                    return Err(status::DELETE_PENDING);
                }
                node
            }
            None if creates => {
                let (handle, _) = self.create_plain(base, FILE_CREATE, 0)?;
                let node = self.live_open(handle)?.node;
                // The file exists now; the handle was only the means to create it.
                self.cleanup(handle)?;
                self.opens.remove(slot(handle));
                node
            }
            None => return Err(STATUS_OBJECT_NAME_NOT_FOUND),
        };
        let stream_key = upcase_str(name);
        let exists = self.node(node).streams.contains_key(&stream_key);
        let information = match (exists, disposition) {
            (true, FILE_CREATE) => return Err(status::OBJECT_NAME_COLLISION),
            (true, FILE_OPEN | FILE_OPEN_IF) => FILE_OPENED,
            (true, FILE_SUPERSEDE) => FILE_SUPERSEDED,
            (true, _) => FILE_OVERWRITTEN,
            (false, _) if !creates => return Err(STATUS_OBJECT_NAME_NOT_FOUND),
            (false, _) => FILE_CREATED,
        };
        self.node_mut(node)
            .streams
            .entry(stream_key.clone())
            .or_insert_with(|| name.to_owned());
        let handle = self.open_handle(node, key, options & FILE_DELETE_ON_CLOSE != 0);
        if let Some(open) = self.opens.get_mut(slot(handle)) {
            open.stream = Some(stream_key);
            suffix.clone_into(&mut open.suffix);
        }
        Ok((handle, information))
    }

    /// `create` of a path without a stream suffix.
    fn create_plain(
        &mut self,
        path: &str,
        disposition: u32,
        options: u32,
    ) -> Result<(FsHandle, usize), NTSTATUS> {
        check_path(path)?;
        if disposition > FILE_OVERWRITE_IF {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let want_directory = options & FILE_DIRECTORY_FILE != 0;
        if want_directory && options & FILE_NON_DIRECTORY_FILE != 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let delete_on_close = options & FILE_DELETE_ON_CLOSE != 0;
        let key = key_of(path);
        if let Some(entry) = self.entries.get(&key) {
            let node_id = entry.node;
            let node = self.node(node_id);
            if node.delete_pending.contains(&key) {
                return Err(status::DELETE_PENDING);
            }
            if want_directory && !node.directory {
                return Err(status::NOT_A_DIRECTORY);
            }
            if options & FILE_NON_DIRECTORY_FILE != 0 && node.directory {
                return Err(status::FILE_IS_A_DIRECTORY);
            }
            let information = match disposition {
                FILE_CREATE => return Err(status::OBJECT_NAME_COLLISION),
                FILE_OPEN | FILE_OPEN_IF => FILE_OPENED,
                _ if node.directory => return Err(STATUS_INVALID_PARAMETER),
                FILE_SUPERSEDE => FILE_SUPERSEDED,
                _ => FILE_OVERWRITTEN,
            };
            if delete_on_close && key == "\\" {
                return Err(status::CANNOT_DELETE);
            }
            if information != FILE_OPENED {
                *self.node_mut(node_id).size.get_mut() = 0;
            }
            return Ok((self.open_handle(node_id, key, delete_on_close), information));
        }
        let (parent, name) = self.parent_of(path)?;
        if matches!(disposition, FILE_OPEN | FILE_OVERWRITE) {
            return Err(STATUS_OBJECT_NAME_NOT_FOUND);
        }
        if want_directory && !matches!(disposition, FILE_CREATE | FILE_OPEN_IF) {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let node = self.new_node(want_directory);
        let canonical = join(&parent, &name);
        self.add_link(canonical, node);
        Ok((self.open_handle(node, key, delete_on_close), FILE_CREATED))
    }

    /// `IRP_MJ_WRITE` of `length` bytes at `offset`, under the shared lock (a write changes
    /// only the node's size).
    pub(crate) fn write(&self, handle: FsHandle, offset: u64, length: u64) -> Result<(), NTSTATUS> {
        let open = self.with_open(handle, |open| match open {
            Some(open) if !open.cleaned_up => Ok((open.node, open.stream.is_some())),
            _ => Err(status::FILE_CLOSED),
        });
        let (node, named_stream) = open?;
        if named_stream {
            // A named stream's contents are not kept.
            return Ok(());
        }
        let node = self.node(node);
        if node.directory {
            return Err(status::INVALID_DEVICE_REQUEST);
        }
        node.size
            .fetch_max(offset.saturating_add(length), Ordering::AcqRel);
        Ok(())
    }

    /// `FileEndOfFileInformation` (`allocation_only`: `FileAllocationInformation`, which
    /// truncates a file whose end is beyond the new allocation and changes nothing else the
    /// model keeps) on the open `handle`: a directory has no data
    /// (`STATUS_INVALID_PARAMETER`), a named stream's contents are not kept.
    pub(crate) fn set_end_of_file(
        &self,
        handle: FsHandle,
        size: u64,
        allocation_only: bool,
    ) -> Result<(), NTSTATUS> {
        let open = self.with_open(handle, |open| match open {
            Some(open) if !open.cleaned_up => Ok((open.node, open.stream.is_some())),
            _ => Err(status::FILE_CLOSED),
        });
        let (node, named_stream) = open?;
        if named_stream {
            return Ok(());
        }
        let node = self.node(node);
        if node.directory {
            return Err(STATUS_INVALID_PARAMETER);
        }
        if allocation_only {
            node.size.fetch_min(size, Ordering::AcqRel);
        } else {
            node.size.store(size, Ordering::Release);
        }
        Ok(())
    }

    /// The canonical name of the link `handle` was opened through (after renames), or `None`
    /// when that link is gone (POSIX delete, replaced by a rename).
    pub(crate) fn name_of(&self, handle: FsHandle) -> Option<String> {
        self.with_open(handle, |open| {
            let open = open?;
            self.entries
                .get(&open.link)
                .map(|e| format!("{}{}", e.canonical, open.suffix))
        })
    }

    /// The canonical form of `path` if it exists; else the canonical parent joined with the
    /// final component as spelled (what a normalized name in pre-create looks like).
    pub(crate) fn normalize(&self, path: &str) -> Result<String, NTSTATUS> {
        let long = self.long_path(path);
        let path = long.as_str();
        let (base, stream) = split_stream(path)?;
        if let Some((_, suffix)) = stream {
            return Ok(format!("{}{suffix}", self.normalize(base)?));
        }
        check_path(path)?;
        if let Some(entry) = self.entries.get(&key_of(path)) {
            return Ok(entry.canonical.clone());
        }
        let (parent, name) = self.parent_of(path)?;
        Ok(join(&parent, &name))
    }

    /// Resolves a rename or link target: a name starting with `\` is volume-relative, any
    /// other is relative to the directory of `handle`'s link. Returns the canonical target
    /// (existing entry's spelling, else canonical parent + the name as given).
    pub(crate) fn resolve_target(
        &self,
        handle: FsHandle,
        target: &str,
    ) -> Result<String, NTSTATUS> {
        let path = if target.starts_with('\\') {
            target.to_owned()
        } else {
            let link = self
                .with_open(handle, |open| open.map(|o| o.link.clone()))
                .ok_or(status::FILE_CLOSED)?;
            let current = self
                .entries
                .get(&link)
                .map(|e| e.canonical.clone())
                .ok_or(status::FILE_CLOSED)?;
            let (directory, _) = split(&current).ok_or(STATUS_ACCESS_DENIED)?;
            join(directory, target)
        };
        self.normalize(&path)
    }

    /// Makes room for a rename or link target: fails on collision unless `replace`, and then
    /// only for a file that is not open.
    fn clear_target(
        &mut self,
        target_key: &str,
        source_node: u64,
        replace: bool,
    ) -> Result<(), NTSTATUS> {
        let Some(existing) = self.entries.get(target_key) else {
            return Ok(());
        };
        if existing.node == source_node {
            return Ok(());
        }
        if !replace {
            return Err(status::OBJECT_NAME_COLLISION);
        }
        let node = self.node(existing.node);
        if node.directory || node.open.load(Ordering::Acquire) > 0 {
            return Err(STATUS_ACCESS_DENIED);
        }
        self.unlink(target_key);
        Ok(())
    }

    /// `FileRenameInformation(Ex)`: moves the handle's link to `target` (see
    /// [`FileSystem::resolve_target`]); a directory moves with its contents.
    pub(crate) fn rename(
        &mut self,
        handle: FsHandle,
        target: &str,
        replace: bool,
    ) -> Result<(), NTSTATUS> {
        let (node, old_key) = {
            let open = self.live_open(handle)?;
            if open.stream.is_some() {
                return Err(STATUS_INVALID_PARAMETER);
            }
            (open.node, open.link.clone())
        };
        if split_stream(target)?.1.is_some() {
            return Err(STATUS_INVALID_PARAMETER);
        }
        if old_key == "\\" {
            return Err(STATUS_ACCESS_DENIED);
        }
        if !self.entries.contains_key(&old_key) {
            return Err(status::FILE_CLOSED);
        }
        let canonical = self.resolve_target(handle, target)?;
        let new_key = key_of(&canonical);
        if new_key == old_key {
            // A change of case only.
            if let Some(entry) = self.entries.get_mut(&old_key) {
                entry.canonical = canonical;
            }
            return Ok(());
        }
        if new_key.starts_with(&format!("{old_key}\\")) {
            return Err(STATUS_INVALID_PARAMETER);
        }
        self.clear_target(&new_key, node, replace)?;
        // Move the entry and everything under it.
        let old_prefix = format!("{old_key}\\");
        let moved: Vec<String> = self
            .entries
            .keys()
            .filter(|k| **k == old_key || k.starts_with(&old_prefix))
            .cloned()
            .collect();
        for key in moved {
            let entry = self.entries.remove(&key).expect("listed above");
            let suffix = &key[old_key.len()..];
            let canonical_suffix =
                entry.canonical[entry.canonical.len() - suffix.len()..].to_owned();
            let moved_key = format!("{new_key}{suffix}");
            let moved_canonical = format!("{canonical}{canonical_suffix}");
            let node = self.node_mut(entry.node);
            node.links.remove(&key);
            node.links.insert(moved_key.clone());
            if node.delete_pending.remove(&key) {
                node.delete_pending.insert(moved_key.clone());
            }
            for open in self.opens.values_mut().filter(|o| o.link == key) {
                open.link.clone_from(&moved_key);
            }
            // The renamed entry gets the short name of its new name; those below keep theirs.
            if let (Some(short), Some((parent, _))) = (&entry.short, split(&key)) {
                self.short_index.remove(&join(parent, short));
            }
            let short = if key == old_key {
                let directory = self.node(entry.node).directory;
                self.notify_rename(&entry.canonical, &moved_canonical, directory);
                self.short_name_for(&moved_canonical)
            } else {
                entry.short
            };
            if let (Some(short), Some((parent, _))) = (&short, split(&moved_key)) {
                self.short_index
                    .insert(join(parent, short), moved_key.clone());
            }
            self.entries.insert(
                moved_key,
                Entry {
                    canonical: moved_canonical,
                    node: entry.node,
                    short,
                },
            );
        }
        Ok(())
    }

    /// `FileLinkInformation(Ex)`: adds a hard link `target` to the handle's file.
    pub(crate) fn link(
        &mut self,
        handle: FsHandle,
        target: &str,
        replace: bool,
    ) -> Result<(), NTSTATUS> {
        if !self.hard_links {
            return Err(status::INVALID_DEVICE_REQUEST);
        }
        let node = self.live_open(handle)?.node;
        if self.node(node).directory {
            return Err(status::FILE_IS_A_DIRECTORY);
        }
        if split_stream(target)?.1.is_some() {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let canonical = self.resolve_target(handle, target)?;
        let key = key_of(&canonical);
        if self.entries.get(&key).is_some_and(|e| e.node == node) {
            return Err(status::OBJECT_NAME_COLLISION);
        }
        self.clear_target(&key, node, replace)?;
        self.add_link(canonical, node);
        Ok(())
    }

    fn check_deletable(&self, key: &str) -> Result<(), NTSTATUS> {
        if key == "\\" {
            return Err(status::CANNOT_DELETE);
        }
        let entry = self.entries.get(key).ok_or(status::FILE_CLOSED)?;
        if self.node(entry.node).directory && self.has_children(key) {
            return Err(status::DIRECTORY_NOT_EMPTY);
        }
        Ok(())
    }

    /// `FileDispositionInformation`: sets or clears delete-pending on the handle's link; the
    /// link goes when the file's last handle is cleaned up.
    pub(crate) fn set_delete(&mut self, handle: FsHandle, delete: bool) -> Result<(), NTSTATUS> {
        let (node, key, stream) = {
            let open = self.live_open(handle)?;
            (open.node, open.link.clone(), open.stream.is_some())
        };
        if stream {
            if let Some(open) = self.opens.get_mut(slot(handle)) {
                open.delete_stream = delete;
            }
            return Ok(());
        }
        if delete {
            self.check_deletable(&key)?;
            self.node_mut(node).delete_pending.insert(key);
        } else {
            self.node_mut(node).delete_pending.remove(&key);
        }
        Ok(())
    }

    /// `FileDispositionInformationEx` with `FILE_DISPOSITION_*` flags: `ON_CLOSE` sets or
    /// clears the handle's delete-on-close; `DELETE | POSIX_SEMANTICS` removes the link from
    /// the namespace at once (open handles keep the file); otherwise like
    /// [`FileSystem::set_delete`].
    pub(crate) fn set_disposition_ex(
        &mut self,
        handle: FsHandle,
        flags: u32,
    ) -> Result<(), NTSTATUS> {
        let key = self.live_open(handle)?.link.clone();
        let delete = flags & FILE_DISPOSITION_DELETE != 0;
        if flags & FILE_DISPOSITION_ON_CLOSE != 0 {
            if delete && self.live_open(handle)?.stream.is_none() {
                self.check_deletable(&key)?;
            }
            if let Some(open) = self.opens.get_mut(slot(handle)) {
                open.delete_on_close = delete;
            }
            return Ok(());
        }
        if delete && flags & FILE_DISPOSITION_POSIX_SEMANTICS != 0 {
            if let Some(stream) = self.live_open(handle)?.stream.clone() {
                let node = self.live_open(handle)?.node;
                self.node_mut(node).streams.remove(&stream);
                return Ok(());
            }
            self.check_deletable(&key)?;
            self.unlink(&key);
            return Ok(());
        }
        self.set_delete(handle, delete)
    }

    /// `IRP_MJ_CLEANUP`: the handle is closed by its last user; delete-on-close marks its link,
    /// and the file's last cleanup removes every delete-pending link.
    pub(crate) fn cleanup(&mut self, handle: FsHandle) -> Result<(), NTSTATUS> {
        let (node_id, key, delete_on_close, stream) = {
            let open = self.live_open(handle)?;
            let stream = open.stream.clone();
            let delete_stream = open.delete_stream;
            (
                open.node,
                open.link.clone(),
                open.delete_on_close || delete_stream,
                stream,
            )
        };
        if let Some(open) = self.opens.get_mut(slot(handle)) {
            open.cleaned_up = true;
        }
        self.notify_cleanup(handle);
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return Ok(());
        };
        if let Some(stream) = stream.filter(|_| delete_on_close) {
            // Deleting a named stream removes that stream only.
            node.streams.remove(&stream);
        } else if delete_on_close && node.links.contains(&key) {
            node.delete_pending.insert(key);
        }
        let open = node.open.get_mut();
        *open -= 1;
        if *open == 0 {
            let pending: Vec<String> = node.delete_pending.iter().cloned().collect();
            for key in pending {
                self.unlink(&key);
            }
            if self.nodes.get(&node_id).is_some_and(|n| n.links.is_empty()) {
                self.nodes.remove(&node_id);
            }
        }
        Ok(())
    }

    /// `IRP_MJ_CLOSE`: forgets the handle (cleaned up first if it was not).
    pub(crate) fn close(&mut self, handle: FsHandle) {
        if self
            .opens
            .get_mut(slot(handle))
            .is_some_and(|o| !o.cleaned_up)
        {
            let _ = self.cleanup(handle);
        }
        self.opens.remove(slot(handle));
    }

    /// [`cleanup`](Self::cleanup) under the shared lock, for the case that changes no name: a
    /// handle that is not delete-on-close (nor deletes its stream) of a file that has links and
    /// no pending delete (so its last cleanup removes nothing). `None` when it is not that case.
    pub(crate) fn cleanup_shared(&self, handle: FsHandle) -> Option<Result<(), NTSTATUS>> {
        let done = self.with_open(handle, |open| {
            let Some(open) = open.filter(|o| !o.cleaned_up) else {
                return Some(Err(status::FILE_CLOSED));
            };
            if open.delete_on_close || open.delete_stream {
                return None;
            }
            let node = self.nodes.get(&open.node)?;
            if !node.delete_pending.is_empty() || node.links.is_empty() {
                return None;
            }
            open.cleaned_up = true;
            node.open.fetch_sub(1, Ordering::AcqRel);
            Some(Ok(()))
        });
        if matches!(done, Some(Ok(()))) {
            self.notify_cleanup(handle);
        }
        done
    }

    /// [`close`](Self::close) under the shared lock, for a handle already cleaned up (or none):
    /// false when the close must clean up first (under the exclusive lock).
    pub(crate) fn close_shared(&self, handle: FsHandle) -> bool {
        let cleaned_up = self.with_open(handle, |open| open.is_none_or(|o| o.cleaned_up));
        if cleaned_up {
            self.opens.remove(slot(handle));
        }
        cleaned_up
    }

    /// Whether `path` names an existing link (delete-pending links still exist).
    pub(crate) fn exists(&self, path: &str) -> bool {
        match split_stream(path) {
            Ok((base, Some((StreamSpec::Named(name), _)))) => self
                .entries
                .get(&key_of(base))
                .is_some_and(|e| self.node(e.node).streams.contains_key(&upcase_str(&name))),
            Ok((base, _)) => self.entries.contains_key(&key_of(&self.long_path(base))),
            Err(_) => false,
        }
    }

    /// Every name on the volume, canonical, sorted, each with its size and its named streams
    /// (`path [size] :s1 :s2`): a snapshot to compare before and after an operation.
    pub(crate) fn listing(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .entries
            .values()
            .map(|e| {
                let node = self.node(e.node);
                let mut line = format!("{} [{}]", e.canonical, node.size.load(Ordering::Acquire));
                for stream in node.streams.values() {
                    line.push_str(" :");
                    line.push_str(stream);
                }
                line
            })
            .collect();
        lines.sort();
        lines
    }

    /// The size of the file at `path`.
    pub(crate) fn size_of(&self, path: &str) -> Option<u64> {
        self.entries
            .get(&key_of(&self.long_path(path)))
            .map(|e| self.node(e.node).size.load(Ordering::Acquire))
    }
}

impl VolumeFiles for FileSystem {
    fn name_of(&self, handle: FsHandle) -> Option<String> {
        Self::name_of(self, handle)
    }

    fn normalize(&self, path: &str) -> Result<String, NTSTATUS> {
        Self::normalize(self, path)
    }

    fn resolve_target(&self, handle: FsHandle, target: &str) -> Result<String, NTSTATUS> {
        Self::resolve_target(self, handle, target)
    }

    fn file_id_of(&self, handle: FsHandle) -> Option<u64> {
        self.with_open(handle, |open| open.map(|o| o.node))
    }

    fn cancel_open(&mut self, handle: FsHandle) {
        Self::close(self, handle);
    }

    fn open_below(
        &mut self,
        path: &str,
        disposition: u32,
        options: u32,
    ) -> Result<(FsHandle, usize), NTSTATUS> {
        Self::create(self, path, disposition, options)
    }

    fn stream_and_file(&self, handle: FsHandle) -> Option<(String, String)> {
        self.with_open(handle, |open| {
            let open = open?;
            let file = format!("{}", open.node);
            let stream = format!("{}:{}", open.node, open.stream.as_deref().unwrap_or(""));
            Some((stream, file))
        })
    }

    fn close_below(&mut self, handle: FsHandle) {
        Self::close(self, handle);
    }

    fn read_below(&self, handle: FsHandle, offset: u64, length: u32) -> Result<Vec<u8>, NTSTATUS> {
        self.read_unlocked(handle, offset, length)
    }

    fn size_of_open(&self, handle: FsHandle) -> Result<u64, NTSTATUS> {
        let (node, named_stream) = self.with_open(handle, |open| match open {
            Some(open) if !open.cleaned_up => Ok((open.node, open.stream.is_some())),
            _ => Err(status::FILE_CLOSED),
        })?;
        if named_stream {
            // A named stream's contents are not kept (see `write`).
            return Ok(0);
        }
        Ok(self.node(node).size.load(Ordering::Acquire))
    }

    fn set_information_below(
        &mut self,
        handle: FsHandle,
        change: &InfoChange,
    ) -> Result<(), NTSTATUS> {
        match change {
            InfoChange::EndOfFile(size) => self.set_end_of_file(handle, *size, false),
            InfoChange::Allocation(size) => self.set_end_of_file(handle, *size, true),
            InfoChange::Rename { target, replace } => self.rename(handle, target, *replace),
            InfoChange::Link { target, replace } => self.link(handle, target, *replace),
            InfoChange::Delete(delete) => self.set_delete(handle, *delete),
            InfoChange::DispositionEx(flags) => self.set_disposition_ex(handle, *flags),
        }
    }

    fn standard_of(&self, handle: FsHandle) -> Option<StandardInfo> {
        self.with_open(handle, |open| {
            let open = open?;
            let node = self.nodes.get(&open.node)?;
            // A named stream's contents are not kept (see `write`).
            let end_of_file = if open.stream.is_some() {
                0
            } else {
                node.size.load(Ordering::Acquire)
            };
            Some(StandardInfo {
                end_of_file,
                links: u32::try_from(node.links.len()).unwrap_or(u32::MAX),
                delete_pending: node.delete_pending.contains(&open.link),
                directory: node.directory,
            })
        })
    }

    fn write_below(&self, handle: FsHandle, offset: u64, data: &[u8]) -> Result<(), NTSTATUS> {
        self.write_data(handle, offset, data)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> FileSystem {
        FileSystem::new(true)
    }

    #[test]
    fn dispositions_report_what_they_did_and_fail_as_ntfs_does() {
        let mut fs = fs();
        assert_eq!(
            fs.create("\\a.txt", FILE_OPEN, 0).err(),
            Some(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        assert_eq!(
            fs.create("\\a.txt", FILE_OVERWRITE, 0).err(),
            Some(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        let (h, info) = fs.create("\\A.txt", FILE_CREATE, 0).unwrap();
        assert_eq!(info, FILE_CREATED);
        assert_eq!(
            fs.create("\\a.TXT", FILE_CREATE, 0).err(),
            Some(status::OBJECT_NAME_COLLISION)
        );
        assert_eq!(fs.create("\\a.txt", FILE_OPEN, 0).unwrap().1, FILE_OPENED);
        assert_eq!(
            fs.create("\\a.txt", FILE_OPEN_IF, 0).unwrap().1,
            FILE_OPENED
        );
        assert_eq!(
            fs.create("\\a.txt", FILE_OVERWRITE, 0).unwrap().1,
            FILE_OVERWRITTEN
        );
        assert_eq!(
            fs.create("\\a.txt", FILE_OVERWRITE_IF, 0).unwrap().1,
            FILE_OVERWRITTEN
        );
        assert_eq!(
            fs.create("\\a.txt", FILE_SUPERSEDE, 0).unwrap().1,
            FILE_SUPERSEDED
        );
        assert_eq!(fs.create("\\b", FILE_SUPERSEDE, 0).unwrap().1, FILE_CREATED);
        assert_eq!(fs.create("\\c", FILE_OPEN_IF, 0).unwrap().1, FILE_CREATED);
        assert_eq!(
            fs.create("\\d", FILE_OVERWRITE_IF, 0).unwrap().1,
            FILE_CREATED
        );
        assert_eq!(
            fs.create("\\missing\\x", FILE_CREATE, 0).err(),
            Some(status::OBJECT_PATH_NOT_FOUND)
        );
        assert_eq!(fs.name_of(h).as_deref(), Some("\\A.txt"));
        assert_eq!(fs.normalize("\\a.TXT").unwrap(), "\\A.txt");
    }

    #[test]
    fn directories_rename_with_their_contents_and_refuse_non_empty_deletes() {
        let mut fs = fs();
        let (dir, _) = fs
            .create("\\Dir", FILE_CREATE, FILE_DIRECTORY_FILE)
            .unwrap();
        let (file, _) = fs.create("\\dir\\f", FILE_CREATE, 0).unwrap();
        assert_eq!(fs.name_of(file).as_deref(), Some("\\Dir\\f"));
        assert_eq!(fs.set_delete(dir, true), Err(status::DIRECTORY_NOT_EMPTY));
        fs.rename(dir, "\\Moved", false).unwrap();
        assert_eq!(fs.name_of(file).as_deref(), Some("\\Moved\\f"));
        assert!(fs.exists("\\moved\\F"));
        assert!(!fs.exists("\\dir\\f"));
    }

    #[test]
    fn rename_collides_unless_replacing_and_resolves_relative_targets() {
        let mut fs = fs();
        let (a, _) = fs.create("\\a", FILE_CREATE, 0).unwrap();
        let (b, _) = fs.create("\\b", FILE_CREATE, 0).unwrap();
        fs.cleanup(b).unwrap();
        assert_eq!(fs.rename(a, "b", false), Err(status::OBJECT_NAME_COLLISION));
        fs.rename(a, "b", true).unwrap();
        assert_eq!(fs.name_of(a).as_deref(), Some("\\b"));
        assert!(!fs.exists("\\a"));
    }

    #[test]
    fn delete_happens_at_the_last_cleanup_unless_posix() {
        let mut fs = fs();
        let (a, _) = fs.create("\\a", FILE_CREATE, 0).unwrap();
        let (a2, _) = fs.create("\\a", FILE_OPEN, 0).unwrap();
        fs.set_delete(a, true).unwrap();
        assert_eq!(
            fs.create("\\a", FILE_OPEN, 0).err(),
            Some(status::DELETE_PENDING)
        );
        fs.cleanup(a).unwrap();
        assert!(fs.exists("\\a"), "another handle is open");
        fs.cleanup(a2).unwrap();
        assert!(!fs.exists("\\a"));

        let (p, _) = fs.create("\\p", FILE_CREATE, 0).unwrap();
        fs.set_disposition_ex(
            p,
            FILE_DISPOSITION_DELETE | FILE_DISPOSITION_POSIX_SEMANTICS,
        )
        .unwrap();
        assert!(!fs.exists("\\p"), "POSIX delete unlinks at once");
        fs.write(p, 0, 10).unwrap();
        fs.cleanup(p).unwrap();

        let (c, _) = fs.create("\\c", FILE_CREATE, FILE_DELETE_ON_CLOSE).unwrap();
        assert!(fs.exists("\\c"));
        fs.cleanup(c).unwrap();
        assert!(!fs.exists("\\c"));

        let (e, _) = fs.create("\\e", FILE_CREATE, 0).unwrap();
        fs.set_disposition_ex(e, FILE_DISPOSITION_DELETE | FILE_DISPOSITION_ON_CLOSE)
            .unwrap();
        fs.cleanup(e).unwrap();
        assert!(!fs.exists("\\e"));
    }

    #[test]
    fn hard_links_share_the_file_and_need_support() {
        let mut fs = fs();
        let (a, _) = fs.create("\\a", FILE_CREATE, 0).unwrap();
        fs.write(a, 0, 5).unwrap();
        fs.link(a, "\\l", false).unwrap();
        assert_eq!(fs.size_of("\\L"), Some(5));
        assert_eq!(fs.link(a, "\\l", false), Err(status::OBJECT_NAME_COLLISION));
        fs.set_delete(a, true).unwrap();
        fs.cleanup(a).unwrap();
        assert!(!fs.exists("\\a"));
        assert!(fs.exists("\\l"), "the other link keeps the file");

        let mut fat = FileSystem::new(false);
        let (f, _) = fat.create("\\f", FILE_CREATE, 0).unwrap();
        assert_eq!(
            fat.link(f, "\\g", false),
            Err(status::INVALID_DEVICE_REQUEST)
        );
    }

    #[test]
    fn streams_name_the_file_or_one_of_its_streams() {
        let mut fs = fs();
        let (d, _) = fs
            .create("\\Dir:$I30:$INDEX_ALLOCATION", FILE_CREATE, 0)
            .unwrap();
        assert_eq!(
            fs.name_of(d).as_deref(),
            Some("\\Dir:$I30:$INDEX_ALLOCATION")
        );
        assert!(fs.exists("\\dir"), "creating the index makes a directory");
        let (f, info) = fs.create("\\Dir\\a.txt::$DATA", FILE_CREATE, 0).unwrap();
        assert_eq!(info, FILE_CREATED);
        fs.write(f, 0, 7).unwrap();
        assert_eq!(
            fs.size_of("\\DIR\\A.TXT"),
            Some(7),
            "::$DATA is the file itself"
        );
        assert_eq!(
            fs.create("\\Dir\\a.txt:ads", FILE_OPEN, 0).err(),
            Some(STATUS_OBJECT_NAME_NOT_FOUND)
        );
        let (s, info) = fs.create("\\Dir\\a.txt:ads:$DATA", FILE_CREATE, 0).unwrap();
        assert_eq!(info, FILE_CREATED);
        assert!(fs.exists("\\dir\\A.txt:ADS"));
        assert_eq!(fs.name_of(s).as_deref(), Some("\\Dir\\a.txt:ads:$DATA"));
        assert_eq!(fs.normalize("\\dir\\A.TXT:x").unwrap(), "\\Dir\\a.txt:x");
        assert_eq!(fs.rename(s, ":other", false), Err(STATUS_INVALID_PARAMETER));
        fs.set_delete(s, true).unwrap();
        fs.cleanup(s).unwrap();
        assert!(
            !fs.exists("\\Dir\\a.txt:ads"),
            "the stream alone is deleted"
        );
        assert!(fs.exists("\\Dir\\a.txt"));
        for bad in ["\\f:", "\\f:s:$BOGUS", "\\f:a:b:c", "\\d:x\\f"] {
            assert_eq!(
                fs.create(bad, FILE_CREATE, 0).err(),
                Some(status::OBJECT_NAME_INVALID),
                "{bad}"
            );
        }
        assert_eq!(
            fs.create("\\Dir::$DATA", FILE_OPEN, 0).err(),
            Some(status::FILE_IS_A_DIRECTORY)
        );
        assert_eq!(
            fs.create("\\Dir\\a.txt:$I30:$INDEX_ALLOCATION", FILE_OPEN, 0)
                .err(),
            Some(status::NOT_A_DIRECTORY)
        );
        // A stream of a file that does not exist creates the file.
        fs.create("\\new.txt:s", FILE_OPEN_IF, 0).unwrap();
        assert!(fs.exists("\\new.txt") && fs.exists("\\new.txt:s"));
    }

    #[test]
    fn names_are_case_insensitive_across_unicode() {
        let mut fs = fs();
        fs.create("\\Секрет", FILE_CREATE, FILE_DIRECTORY_FILE)
            .unwrap();
        assert_eq!(
            fs.create("\\СЕКРЕТ", FILE_CREATE, FILE_DIRECTORY_FILE)
                .err(),
            Some(status::OBJECT_NAME_COLLISION)
        );
        assert_eq!(fs.normalize("\\секрет\\Ωx").unwrap(), "\\Секрет\\Ωx");
        fs.create("\\секрет\\ωx", FILE_CREATE, 0).unwrap();
        assert!(fs.exists("\\СЕКРЕТ\\ΩX"));
    }

    #[test]
    fn short_names_reach_the_same_file_and_normalize_to_the_long_name() {
        let mut fs = fs();
        fs.create("\\Confidential Files", FILE_CREATE, FILE_DIRECTORY_FILE)
            .unwrap();
        fs.create("\\Confidential Notes", FILE_CREATE, FILE_DIRECTORY_FILE)
            .unwrap();
        assert_eq!(
            fs.short_name("\\confidential files").as_deref(),
            Some("CONFID~1")
        );
        assert_eq!(
            fs.short_name("\\Confidential Notes").as_deref(),
            Some("CONFID~2")
        );
        let (f, _) = fs
            .create("\\CONFID~1\\vault-database.kdbx", FILE_CREATE, 0)
            .unwrap();
        assert_eq!(
            fs.name_of(f).as_deref(),
            Some("\\Confidential Files\\vault-database.kdbx")
        );
        assert_eq!(
            fs.short_name("\\Confidential Files\\vault-database.kdbx")
                .as_deref(),
            Some("VAULT-~1.KDB")
        );
        assert_eq!(
            fs.normalize("\\confid~1\\VAULT-~1.KDB:ads").unwrap(),
            "\\Confidential Files\\vault-database.kdbx:ads"
        );
        assert!(fs.exists("\\CONFID~1\\VAULT-~1.KDB"));
        assert_eq!(
            fs.short_name("\\a.txt"),
            None,
            "8.3 names get no short name"
        );
    }

    #[test]
    fn opens_by_file_id_reach_the_file_and_cannot_create() {
        let mut fs = fs();
        let (f, _) = fs.create("\\f.txt", FILE_CREATE, 0).unwrap();
        fs.write(f, 0, 9).unwrap();
        let id = fs.file_id("\\F.TXT").unwrap();
        let (g, info) = fs.create_by_id(id, FILE_OPEN, 0).unwrap();
        assert_eq!(info, FILE_OPENED);
        assert_eq!(fs.name_of(g).as_deref(), Some("\\f.txt"));
        assert_eq!(
            fs.create_by_id(id, FILE_CREATE, 0).err(),
            Some(status::OBJECT_NAME_COLLISION)
        );
        assert_eq!(
            fs.create_by_id(9999, FILE_OPEN, 0).err(),
            Some(STATUS_INVALID_PARAMETER)
        );
        assert_eq!(
            fs.create_by_id(id, FILE_OVERWRITE_IF, 0).unwrap().1,
            FILE_OVERWRITTEN
        );
        assert_eq!(fs.size_of("\\f.txt"), Some(0));
    }
}
