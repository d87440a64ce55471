//! The public API of synthetic volumes on a loaded [`Driver`]: mount, find, detach, dismount,
//! and what their file systems hold.

use crate::config::VolumeKind;
use crate::fltmgr::flt_write;
use crate::fltmgr::instances::{self, InstanceState, VolumeId};
use crate::sim::Driver;
use crate::world;
use crate::world::volumes::fs_of;

/// Mounts and dismounts volumes from another thread while the [`Driver`] is busy (unloading,
/// running a workload): see [`Driver::mounter`].
#[derive(Clone)]
pub struct Mounter {
    kernel: std::sync::Arc<crate::kernel::Kernel>,
}

impl Mounter {
    /// As [`Driver::mount`].
    pub fn mount(&self, kind: VolumeKind, device_name: &str) -> VolumeId {
        world::volumes::mount(&self.kernel, kind, device_name)
    }

    /// As [`Driver::dismount`].
    pub fn dismount(&self, volume: VolumeId) {
        world::volumes::dismount(&self.kernel, volume);
    }
}

impl Driver {
    /// A handle that mounts volumes from another thread (see [`Mounter`]).
    pub fn mounter(&self) -> Mounter {
        Mounter {
            kernel: std::sync::Arc::clone(self.kernel()),
        }
    }

    /// Mounts a synthetic volume of `kind` named `device_name` (`\Device\HarddiskVolume1`,
    /// `\Device\Mup`, `\Device\NamedPipe`...). If the filter has started, it is offered the
    /// volume at once (InstanceSetup with `AUTOMATIC_ATTACHMENT | NEWLY_MOUNTED_VOLUME`);
    /// volumes that must exist before `FltStartFiltering` go in [`IoConfig::volumes`](crate::config::IoConfig::volumes).
    pub fn mount(&self, kind: VolumeKind, device_name: &str) -> VolumeId {
        world::volumes::mount(self.kernel(), kind, device_name)
    }

    /// The volume mounted with `device_name` (case-insensitive), if any.
    pub fn volume(&self, device_name: &str) -> Option<VolumeId> {
        flt_write(self.kernel())
            .io
            .volumes
            .iter()
            .position(|v| v.mounted && v.device_name.eq_ignore_ascii_case(device_name))
            .map(VolumeId)
    }

    /// Whether the filter has a live instance on `volume`.
    pub fn is_attached(&self, volume: VolumeId) -> bool {
        flt_write(self.kernel())
            .io
            .volumes
            .get(volume.0)
            .and_then(|v| v.instance.as_ref())
            .is_some_and(|i| i.state == InstanceState::Live)
    }

    /// A manual detach (`fltmc detach`): InstanceQueryTeardown at PASSIVE_LEVEL, then, if it
    /// agreed, teardown with `FLTFL_INSTANCE_TEARDOWN_MANUAL`. A filter without an
    /// InstanceQueryTeardown callback cannot be detached manually.
    ///
    /// # Errors
    ///
    /// The status that refused the detach (`STATUS_FLT_DO_NOT_DETACH`, or the callback's), or
    /// `STATUS_FLT_DO_NOT_DETACH` when there is no callback or no instance.
    pub fn detach(&self, volume: VolumeId) -> Result<(), i32> {
        instances::detach(self.kernel(), volume)
    }

    /// A manual attach (`fltmc attach <filter> <volume> [-i instance]`): InstanceSetup with
    /// `FLTFL_INSTANCE_SETUP_MANUAL_ATTACHMENT`, also for an instance whose `Flags` suppress
    /// automatic attachment. `instance` is one of the filter's instances as installed (None:
    /// its default instance; without an INF any name is taken).
    ///
    /// # Errors
    ///
    /// `STATUS_FLT_FILTER_NOT_READY` before `FltStartFiltering`, `STATUS_FLT_INSTANCE_NOT_FOUND`
    /// for an instance the filter does not define, `STATUS_FLT_VOLUME_NOT_FOUND`,
    /// `STATUS_FLT_INSTANCE_NAME_COLLISION` when the volume has an instance already, and
    /// `STATUS_FLT_DO_NOT_ATTACH` when InstanceSetup refused.
    pub fn attach(&self, volume: VolumeId, instance: Option<&str>) -> Result<(), i32> {
        instances::attach_manual(self.kernel(), volume, instance)
    }

    /// The device names of the mounted volumes the filter has a live instance on, in mount
    /// order (what `fltmc instances` lists).
    pub fn attached_volumes(&self) -> Vec<String> {
        flt_write(self.kernel())
            .io
            .volumes
            .iter()
            .filter(|v| {
                v.mounted
                    && v.instance
                        .as_ref()
                        .is_some_and(|i| i.state == InstanceState::Live)
            })
            .map(|v| v.device_name.clone())
            .collect()
    }

    /// The default instance `FltRegisterFilter` read from the installed registry: its name and
    /// `Altitude` (None for an image loaded without an INF, or before registration).
    pub fn default_instance(&self) -> Option<(String, String)> {
        let flt = flt_write(self.kernel());
        flt.filters
            .values()
            .filter(|f| !f.unregistered)
            .find_map(|f| f.instance_config.as_ref()?.default_definition().cloned())
            .map(|d| (d.name, d.altitude))
    }

    /// The name of the installed instance whose `Altitude` is `altitude`, if any.
    pub fn instance_at_altitude(&self, altitude: &str) -> Option<String> {
        let flt = flt_write(self.kernel());
        flt.filters
            .values()
            .filter(|f| !f.unregistered)
            .find_map(|f| {
                f.instance_config
                    .as_ref()?
                    .instances
                    .iter()
                    .find(|i| i.altitude == altitude)
                    .map(|i| i.name.clone())
            })
    }

    /// Dismounts `volume`: its instance sees `IRP_MJ_VOLUME_DISMOUNT`, then is torn down
    /// (`FLTFL_INSTANCE_TEARDOWN_VOLUME_DISMOUNT`, no query); further I/O on it fails with
    /// `STATUS_VOLUME_DISMOUNTED`.
    pub fn dismount(&self, volume: VolumeId) {
        world::volumes::dismount(self.kernel(), volume);
    }

    /// Whether `path` (volume-relative, `\dir\file`) exists on `volume` (a delete-pending
    /// file still exists until its last handle is cleaned up).
    pub fn file_exists(&self, volume: VolumeId, path: &str) -> bool {
        flt_write(self.kernel())
            .io
            .volumes
            .get(volume.0)
            .is_some_and(|v| fs_of(v).exists(path))
    }

    /// Every name on `volume` with its size and named streams, sorted: a snapshot a test
    /// compares before and after an operation that must change nothing.
    pub fn listing(&self, volume: VolumeId) -> Vec<String> {
        flt_write(self.kernel())
            .io
            .volumes
            .get(volume.0)
            .map(|v| fs_of(v).listing())
            .unwrap_or_default()
    }

    /// The file ID of the file at `path` on `volume` (for [`Io::create_by_id`]).
    ///
    /// [`Io::create_by_id`]: crate::Io::create_by_id
    pub fn file_id(&self, volume: VolumeId, path: &str) -> Option<u64> {
        flt_write(self.kernel())
            .io
            .volumes
            .get(volume.0)
            .and_then(|v| fs_of(v).file_id(path))
    }

    /// The generated 8.3 short name of the final component of `path` on `volume`, if any.
    pub fn short_name(&self, volume: VolumeId, path: &str) -> Option<String> {
        flt_write(self.kernel())
            .io
            .volumes
            .get(volume.0)
            .and_then(|v| fs_of(v).short_name(path))
    }

    /// The size of the file at `path` on `volume`.
    pub fn file_size(&self, volume: VolumeId, path: &str) -> Option<u64> {
        flt_write(self.kernel())
            .io
            .volumes
            .get(volume.0)
            .and_then(|v| fs_of(v).size_of(path))
    }
}
