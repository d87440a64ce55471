//! The volume pseudo-operations `IRP_MJ_VOLUME_MOUNT` and `IRP_MJ_VOLUME_DISMOUNT`: what a
//! filter registered for them sees when a volume comes and goes under it.
//!
//! The documentation gives the mount only a parameters page
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-volume-mount>):
//! a fast I/O operation whose `MountVolume.DeviceType` is the device type of the newly mounted
//! volume's file system device object (`FILE_DEVICE_CD_ROM_FILE_SYSTEM`,
//! `FILE_DEVICE_DISK_FILE_SYSTEM` or `FILE_DEVICE_NETWORK_FILE_SYSTEM`). The dismount has no
//! page and no parameters. What kernel-sim does, and where it had to choose:
//! - callbacks run on the instance of the volume concerned, so the mount comes right after the
//!   new volume's InstanceSetup attached an instance (no instance exists before), and the
//!   dismount right before the instance is torn down with
//!   `FLTFL_INSTANCE_TEARDOWN_VOLUME_DISMOUNT`;
//! - both come as fast I/O (the dismount like the mount, the only operation of its kind with a
//!   page), at PASSIVE_LEVEL, from the system process, with no file object: neither is about a
//!   file, so a filter must not assume `FltObjects->FileObject`;
//! - the file system answers both with `STATUS_SUCCESS`; a filter's failure or
//!   `FLT_PREOP_DISALLOW_FASTIO` changes nothing: a volume's arrival or departure is not the
//!   filter's to refuse (the status is returned; mounting and dismounting go on regardless).

use vigil_sys::{FLT_PARAMETERS, FLT_PARAMETERS_MOUNT_VOLUME, NTSTATUS, STATUS_SUCCESS};

use super::{Io, Path, Request};
use crate::fltmgr::files::IoState;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::VolumeId;

/// The system process and a thread of its own: who mounts and dismounts volumes.
pub(crate) const SYSTEM_REQUESTOR: super::Requestor = super::Requestor { pid: 4, tid: 8 };

impl Io {
    /// `IRP_MJ_VOLUME_MOUNT` on `volume`, just mounted: its file system's device type in
    /// `MountVolume.DeviceType`. The status the callbacks left.
    pub(crate) fn volume_mount(&self, volume: VolumeId) -> NTSTATUS {
        let device_type = flt_read(&self.kernel)
            .io
            .volumes
            .get(volume.0)
            .map_or(0, |v| v.kind.device_type());
        let parameters = FLT_PARAMETERS {
            MountVolume: FLT_PARAMETERS_MOUNT_VOLUME {
                DeviceType: device_type,
            },
        };
        self.volume_operation(volume, vigil_sys::IRP_MJ_VOLUME_MOUNT, parameters)
    }

    /// `IRP_MJ_VOLUME_DISMOUNT` on `volume`, about to be dismounted (no parameters). The status
    /// the callbacks left.
    pub(crate) fn volume_dismount(&self, volume: VolumeId) -> NTSTATUS {
        let parameters = FLT_PARAMETERS {
            Others: [std::ptr::null_mut(); 6],
        };
        self.volume_operation(volume, vigil_sys::IRP_MJ_VOLUME_DISMOUNT, parameters)
    }

    fn volume_operation(
        &self,
        volume: VolumeId,
        major: u8,
        parameters: FLT_PARAMETERS,
    ) -> NTSTATUS {
        let request = Request::at_passive(volume, 0, major, Path::FastIo, parameters);
        let mut step = |_: &IoState, _: usize| (STATUS_SUCCESS, 0);
        self.issue(request, &mut step).0
    }
}
