//! Mounting and dismounting synthetic volumes: each gets its own in-memory file system
//! ([`FileSystem`]), handed to Filter Manager's instance logic ([`instances`]) below; a filter
//! attached to the volume sees `IRP_MJ_VOLUME_MOUNT` after its InstanceSetup and
//! `IRP_MJ_VOLUME_DISMOUNT` before its teardown (see [`crate::world::io`]'s `volume_ops`).
//! Host code.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::config::VolumeKind;

use crate::fltmgr::instances::{self, InstanceState, VolumeFiles, VolumeId, VolumeRecord};
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::Kernel;
use crate::kernel::sharded::{BrRead, BrWrite};
use crate::world::fs::FileSystem;

/// Mounts a volume of `kind` with a fresh file system; offers it to the filter if filtering
/// has started, and an instance it attaches sees the mount (`IRP_MJ_VOLUME_MOUNT`).
pub(crate) fn mount(k: &Arc<Kernel>, kind: VolumeKind, device_name: &str) -> VolumeId {
    let volume = mount_quietly(k, kind, device_name);
    if sees_volume_operations(k, volume) {
        let _ = crate::world::io::Io::system(Arc::clone(k)).volume_mount(volume);
    }
    volume
}

/// Dismounts `volume`: an instance on it sees the dismount (`IRP_MJ_VOLUME_DISMOUNT`), then is
/// torn down (`FLTFL_INSTANCE_TEARDOWN_VOLUME_DISMOUNT`, no query); further I/O on the volume
/// fails with `STATUS_VOLUME_DISMOUNTED`.
pub(crate) fn dismount(k: &Arc<Kernel>, volume: VolumeId) {
    if sees_volume_operations(k, volume) {
        let _ = crate::world::io::Io::system(Arc::clone(k)).volume_dismount(volume);
    }
    instances::teardown_instance(k, volume, instances::TEARDOWN_VOLUME_DISMOUNT);
    if let Some(v) = flt_write(k).io.volumes.get_mut(volume.0) {
        v.mounted = false;
    }
}

/// Whether a live instance on `volume` is there to see the mount pseudo-operations: volumes of
/// disk, CD-ROM and network file systems only (the three device types `MountVolume.DeviceType`
/// may hold; the named-pipe and mailslot file systems mount no volumes).
fn sees_volume_operations(k: &Kernel, volume: VolumeId) -> bool {
    flt_read(k).io.volumes.get(volume.0).is_some_and(|v| {
        v.mounted
            && !matches!(v.kind, VolumeKind::NamedPipe | VolumeKind::Mailslot)
            && v.instance
                .as_ref()
                .is_some_and(|i| i.state == InstanceState::Live)
    })
}

/// Mounts a volume with no mount operation (before DriverEntry, no filter can see one).
fn mount_quietly(k: &Kernel, kind: VolumeKind, device_name: &str) -> VolumeId {
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
        mount_quietly(k, kind, &name);
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
