//! Mounting synthetic volumes: each gets its own in-memory file system ([`FileSystem`]),
//! handed to Filter Manager's instance logic ([`instances`]) below. Host code.

use crate::config::VolumeKind;
use std::ops::{Deref, DerefMut};
use std::sync::MutexGuard;

use crate::fltmgr::instances::{self, VolumeFiles, VolumeId, VolumeRecord};
use crate::kernel::Kernel;
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

/// The in-memory file system of a volume, locked (each volume's has its own lock).
pub(crate) fn fs_of(volume: &VolumeRecord) -> FsGuard<'_> {
    FsGuard(volume.files())
}

/// A volume's [`FileSystem`], locked.
pub(crate) struct FsGuard<'a>(MutexGuard<'a, Box<dyn VolumeFiles>>);

impl Deref for FsGuard<'_> {
    type Target = FileSystem;

    fn deref(&self) -> &FileSystem {
        self.0
            .as_any()
            .downcast_ref()
            .expect("every volume is mounted over the world's FileSystem")
    }
}

impl DerefMut for FsGuard<'_> {
    fn deref_mut(&mut self) -> &mut FileSystem {
        self.0
            .as_any_mut()
            .downcast_mut()
            .expect("every volume is mounted over the world's FileSystem")
    }
}
