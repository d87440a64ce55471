//! Mounting synthetic volumes: each gets its own in-memory file system ([`FileSystem`]),
//! handed to Filter Manager's instance logic ([`instances`]) below. Host code.

use std::ops::{Deref, DerefMut};

use crate::config::VolumeKind;

use crate::fltmgr::instances::{self, VolumeFiles, VolumeId, VolumeRecord};
use crate::kernel::Kernel;
use crate::kernel::sharded::{BrRead, BrWrite};
use crate::world::fs::FileSystem;

/// Mounts a volume of `kind` with a fresh file system; offers it to the filter if filtering
/// has started.
pub(crate) fn mount(k: &Kernel, kind: VolumeKind, device_name: &str) -> VolumeId {
    instances::mount(
        k,
        kind,
        device_name,
        Box::new(FileSystem::new(kind.hard_links())),
    )
}

/// Mounts the volumes of `SimConfig::io` (before DriverEntry: offered at `FltStartFiltering`).
pub(crate) fn mount_configured(k: &Kernel) {
    for (kind, name) in k.config.io.volumes.clone() {
        mount(k, kind, &name);
    }
}

/// The in-memory file system of a volume, locked shared (see [`FileSystem`] for what that
/// allows).
pub(crate) fn fs_of(volume: &VolumeRecord) -> FsRead<'_> {
    FsRead(volume.files())
}

/// The in-memory file system of a volume, locked exclusively, to change its namespace.
pub(crate) fn fs_mut(volume: &VolumeRecord) -> FsWrite<'_> {
    FsWrite(volume.files_mut())
}

/// A volume's [`FileSystem`], locked shared.
pub(crate) struct FsRead<'a>(BrRead<'a, Box<dyn VolumeFiles>>);

/// A volume's [`FileSystem`], locked exclusively.
pub(crate) struct FsWrite<'a>(BrWrite<'a, Box<dyn VolumeFiles>>);

fn downcast(files: &dyn VolumeFiles) -> &FileSystem {
    files
        .as_any()
        .downcast_ref()
        .expect("every volume is mounted over the world's FileSystem")
}

impl Deref for FsRead<'_> {
    type Target = FileSystem;

    fn deref(&self) -> &FileSystem {
        downcast(self.0.as_ref())
    }
}

impl Deref for FsWrite<'_> {
    type Target = FileSystem;

    fn deref(&self) -> &FileSystem {
        downcast(self.0.as_ref())
    }
}

impl DerefMut for FsWrite<'_> {
    fn deref_mut(&mut self) -> &mut FileSystem {
        self.0
            .as_any_mut()
            .downcast_mut()
            .expect("every volume is mounted over the world's FileSystem")
    }
}
