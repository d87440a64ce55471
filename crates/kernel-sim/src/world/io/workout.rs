//! The synthetic workload's pass over every operation beyond create/write/set-information/
//! cleanup/close, on one open file (and its directory): what `stress`, `sweep`, `verify` and
//! `bench` issue so that a filter registered for any operation gets callbacks. Each status is
//! compared with what the volume's file system answers for it ([`super::ops`]); anything else
//! (a filter's failure, an injected fault) is counted as unexpected.

use vigil_sys::{
    NTSTATUS, STATUS_ACCESS_DENIED, STATUS_END_OF_FILE, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_SUCCESS,
};

use super::ops::{
    FSCTL_GET_REPARSE_POINT, FSCTL_IS_VOLUME_MOUNTED, STATUS_EAS_NOT_SUPPORTED,
    STATUS_NOT_A_REPARSE_POINT,
};
use super::{FileHandle, Io};
use crate::config::VolumeKind;
use crate::fltmgr::flt_read;
use crate::world::volumes::fs_of;

/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_NEITHER, FILE_ANY_ACCESS)`: a device control
/// no file system knows.
const IOCTL_PRIVATE_NEITHER: u32 = 0x0022_2003;
/// The same with `METHOD_BUFFERED`.
const IOCTL_PRIVATE_BUFFERED: u32 = 0x0022_2000;
/// The same with `METHOD_OUT_DIRECT`.
const IOCTL_PRIVATE_OUT_DIRECT: u32 = 0x0022_2002;

/// What [`Io::workout`] issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Workout {
    /// Operations issued (each pseudo-operation pair counts two).
    pub operations: u64,
    /// Statuses other than the file system's answer.
    pub unexpected: u64,
}

impl Workout {
    fn check(&mut self, status: NTSTATUS, expected: &[NTSTATUS]) {
        self.operations += 1;
        if !expected.contains(&status) {
            self.unexpected += 1;
        }
    }

    fn check_result<T>(&mut self, result: Result<T, NTSTATUS>, expected_error: &[NTSTATUS]) {
        self.check(
            result.err().unwrap_or(STATUS_SUCCESS),
            &[&[STATUS_SUCCESS][..], expected_error].concat(),
        );
    }
}

impl Io {
    /// The kind of the volume `file` is on.
    fn kind_of(&self, file: &FileHandle) -> Option<VolumeKind> {
        flt_read(&self.kernel)
            .io
            .volumes
            .get(file.volume.0)
            .map(|v| v.kind)
    }

    /// The name of the open `file` in its file system.
    fn path_of_open(&self, file: &FileHandle) -> Option<String> {
        let handle = self.file_state(file, false).ok()??;
        let flt = flt_read(&self.kernel);
        let volume = flt.io.volumes.get(file.volume.0)?;
        fs_of(volume).name_of(handle)
    }

    /// Every operation beyond create/write/set-information/cleanup/close on the open file
    /// `file` (a file, not a directory): reads (cached, paging, fast I/O, MDL), query
    /// information (IRP and fast I/O), EAs, flush, volume information, file system and device
    /// controls, lock control (IRP and fast I/O), security, WMI, quota, `PnP`, the `FsFilter`
    /// acquire/release pairs, `FastIoCheckIfPossible`, an MDL write of one byte at the end, the
    /// queries by name (query open, network query open) of its path, and shutdown.
    pub fn workout(&self, file: &FileHandle) -> Workout {
        let mut w = Workout::default();
        let Some(kind) = self.kind_of(file) else {
            return w;
        };
        let no_fs = matches!(kind, VolumeKind::NamedPipe | VolumeKind::Mailslot);
        let secure = !matches!(
            kind,
            VolumeKind::Fat | VolumeKind::ExFat | VolumeKind::NamedPipe | VolumeKind::Mailslot
        );
        let eas = !matches!(
            kind,
            VolumeKind::ExFat | VolumeKind::NamedPipe | VolumeKind::Mailslot
        );
        let idr = STATUS_INVALID_DEVICE_REQUEST;
        // Reads of an empty file end at once.
        w.check_result(self.read(file, 0, 5), &[STATUS_END_OF_FILE]);
        w.check_result(self.read_paging(file, 0, 4096), &[STATUS_END_OF_FILE]);
        w.check_result(self.fast_io_read(file, 0, 16), &[STATUS_END_OF_FILE]);
        w.check_result(self.mdl_read(file, 0, 8), &[STATUS_END_OF_FILE]);
        w.check_result(self.query_standard_information(file), &[]);
        w.check_result(self.fast_io_query_standard_information(file), &[]);
        let ea = if eas {
            STATUS_SUCCESS
        } else {
            STATUS_EAS_NOT_SUPPORTED
        };
        w.check(self.set_ea(file, "KSIM", b"1"), &[ea]);
        w.check_result(self.query_ea(file, 256), &[STATUS_EAS_NOT_SUPPORTED]);
        w.check(self.flush(file), &[STATUS_SUCCESS]);
        w.check_result(self.query_file_system_name(file, 64), &[]);
        w.check(
            self.set_volume_label(file, "KSIM"),
            &[if no_fs { idr } else { STATUS_SUCCESS }],
        );
        w.check(
            self.fs_control(file, FSCTL_IS_VOLUME_MOUNTED, &[], 0).0,
            &[STATUS_SUCCESS],
        );
        let reparse = if secure {
            STATUS_NOT_A_REPARSE_POINT
        } else {
            idr
        };
        w.check(
            self.fs_control(file, FSCTL_GET_REPARSE_POINT, &[], 512).0,
            &[reparse],
        );
        for (code, internal) in [
            (IOCTL_PRIVATE_NEITHER, false),
            (IOCTL_PRIVATE_BUFFERED, false),
            (IOCTL_PRIVATE_OUT_DIRECT, true),
        ] {
            w.check(
                self.device_control(file, code, &[1, 2, 3, 4], 16, internal)
                    .0,
                &[idr],
            );
        }
        let locked = if no_fs { idr } else { STATUS_SUCCESS };
        w.check(self.lock(file, 0, 4, true), &[locked]);
        w.check(self.unlock(file, 0, 4), &[locked]);
        w.check(self.fast_io_lock(file, 4, 4, false), &[locked]);
        w.check(self.unlock(file, 4, 4), &[locked]);
        let descriptor = self.query_security(file, 256);
        w.check_result(descriptor.clone(), &[idr]);
        if let Ok(descriptor) = descriptor {
            w.check(self.set_security(file, &descriptor), &[STATUS_SUCCESS]);
        }
        w.check(self.system_control(file, 64), &[idr]);
        w.check(self.query_quota(file, 64), &[idr]);
        w.check(self.set_quota(file), &[idr]);
        let (query, cancel) = self.pnp_query_and_cancel_remove(file);
        w.check(query, &[STATUS_ACCESS_DENIED]);
        w.check(cancel, &[STATUS_SUCCESS]);
        for (acquired, released) in [
            self.section_synchronization(file),
            self.modified_page_writer(file),
            self.cc_flush(file),
        ] {
            w.check(acquired, &[STATUS_SUCCESS]);
            w.check(released, &[STATUS_SUCCESS]);
        }
        w.operations += 1;
        let _ = self.fast_io_check_if_possible(file, 0, 4, true);
        w.check(self.mdl_write(file, 0, b"!"), &[STATUS_SUCCESS]);
        if let Some(path) = self.path_of_open(file) {
            w.check_result(self.query_open(file.volume(), &path), &[idr]);
            w.check_result(self.network_query_open(file.volume(), &path), &[idr]);
        }
        w.check(self.shutdown(file), &[STATUS_SUCCESS]);
        w
    }

    /// A directory query on the open directory `directory`.
    pub fn workout_directory(&self, directory: &FileHandle) -> Workout {
        let mut w = Workout::default();
        w.check_result(self.query_directory(directory, 4096), &[]);
        w
    }
}
