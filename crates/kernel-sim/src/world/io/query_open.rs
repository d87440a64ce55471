//! The queries of a file by name that need no open: `IRP_MJ_QUERY_OPEN` (an `FsFilter` callback
//! operation, `FileStatInformation`) and `IRP_MJ_NETWORK_QUERY_OPEN` (a fast I/O operation,
//! `FILE_NETWORK_OPEN_INFORMATION`), each on a file object for the name that is never opened,
//! as the I/O manager's stack-based one.
//!
//! From the pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-query-open>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-network-query-open>):
//! a filter refuses a query open with `FLT_PREOP_DISALLOW_FSFILTER_IO` (pre) or
//! `FLT_POSTOP_DISALLOW_FSFILTER_IO` (post), a network query open with
//! `FLT_PREOP_DISALLOW_FASTIO`; the I/O manager then serves the request the slow way: an
//! `IRP_MJ_CREATE`, an `IRP_MJ_QUERY_INFORMATION` and the cleanup and close, which this module
//! issues the same way. The file system does not fill `IoStatus.Information` for a query
//! open. Left out: the IRP both carry is an IRP header only (its `Type` and `Size`;
//! kernel-sim has no IRP bodies), the times (zero: the file system keeps none), and the classes
//! other than `FileStatInformation` (`STATUS_INVALID_PARAMETER`).

use vigil_sys::{
    DEVICE_OBJECT, FILE_OBJECT, FLT_PARAMETERS, FLT_PARAMETERS_NETWORK_QUERY_OPEN,
    FLT_PARAMETERS_QUERY_OPEN, IRP_MJ_NETWORK_QUERY_OPEN, IRP_MJ_QUERY_OPEN, NTSTATUS,
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, UNICODE_STRING,
};

use super::ops::{FileStandard, STATUS_FLT_DISALLOW_FAST_IO, parameters_at};
use super::{IO_TYPE_FILE, Io, Path, Request};
use crate::config::VolumeKind;
use crate::fltmgr::files::{FileRecord, IoState};
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::VolumeId;
use crate::machine::guest::{self, GuestAlloc};
use crate::ntoskrnl::status;
use crate::world::fs::Stat;
use crate::world::volumes::fs_of;

/// `FileStatInformation`.
const FILE_STAT_INFORMATION_CLASS: i32 = 68;
/// The size of `FILE_STAT_INFORMATION` on x64.
const FILE_STAT_INFORMATION_SIZE: u32 = 72;
/// The size of `FILE_NETWORK_OPEN_INFORMATION` on x64.
const FILE_NETWORK_OPEN_INFORMATION_SIZE: usize = 56;
/// `IO_TYPE_IRP`.
const IO_TYPE_IRP: i16 = 6;
/// `sizeof(IRP)` on x64.
const IRP_SIZE: usize = 0xD0;
/// `FILE_ATTRIBUTE_DIRECTORY`.
const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
/// `FILE_ATTRIBUTE_ARCHIVE`.
const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x20;
/// `FILE_ALL_ACCESS`: the requestor's effective access (no security is checked).
const FILE_ALL_ACCESS: u32 = 0x001F_01FF;
/// `FILE_OPEN`.
const FILE_OPEN: u32 = 1;
/// The cluster size allocation sizes are rounded to.
const CLUSTER: u64 = 4096;

/// `FILE_STAT_INFORMATION` of `stat`.
fn stat_information(stat: &Stat) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FILE_STAT_INFORMATION_SIZE as usize);
    bytes.extend_from_slice(&stat.file_id.to_le_bytes());
    bytes.extend_from_slice(&[0; 32]); // CreationTime, LastAccessTime, LastWriteTime, ChangeTime
    bytes.extend_from_slice(&stat.size.next_multiple_of(CLUSTER).to_le_bytes());
    bytes.extend_from_slice(&stat.size.to_le_bytes());
    bytes.extend_from_slice(&attributes(stat).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes()); // ReparseTag
    bytes.extend_from_slice(&stat.links.to_le_bytes());
    bytes.extend_from_slice(&FILE_ALL_ACCESS.to_le_bytes());
    bytes
}

/// `FILE_NETWORK_OPEN_INFORMATION` of `stat`.
fn network_open_information(stat: &Stat) -> Vec<u8> {
    let mut bytes = vec![0u8; 32]; // the four times
    bytes.extend_from_slice(&stat.size.next_multiple_of(CLUSTER).to_le_bytes());
    bytes.extend_from_slice(&stat.size.to_le_bytes());
    bytes.extend_from_slice(&attributes(stat).to_le_bytes());
    bytes.resize(FILE_NETWORK_OPEN_INFORMATION_SIZE, 0);
    bytes
}

fn attributes(stat: &Stat) -> u32 {
    if stat.directory {
        FILE_ATTRIBUTE_DIRECTORY
    } else {
        FILE_ATTRIBUTE_ARCHIVE
    }
}

/// The file system's answer for `path` on the volume, under the state's lock.
fn stat_of(io: &IoState, volume: VolumeId, path: &str) -> Result<Stat, NTSTATUS> {
    let v = io.volumes.get(volume.0).ok_or(status::VOLUME_DISMOUNTED)?;
    if matches!(v.kind, VolumeKind::NamedPipe | VolumeKind::Mailslot) {
        return Err(status::INVALID_DEVICE_REQUEST);
    }
    fs_of(v).stat_path(path)
}

impl Io {
    /// A file object for `path` on `volume` that is never opened (what a query by name runs
    /// on), recorded so that name queries find it; `discard` frees it.
    fn unopened_file_object(&self, volume: VolumeId, path: &str) -> Result<usize, NTSTATUS> {
        let Some((device, _)) = self.volume_device(volume) else {
            return Err(status::VOLUME_DISMOUNTED);
        };
        let units: Vec<u8> = path.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let length = u16::try_from(units.len()).map_err(|_| STATUS_INVALID_PARAMETER)?;
        let name = GuestAlloc::zeroed(units.len() + 2);
        guest::write_bytes(name.as_ptr(), &units);
        let object = GuestAlloc::for_type::<FILE_OBJECT>(0);
        // SAFETY: FILE_OBJECT is plain data (integers, raw pointers, KEVENTs of integers):
        // all zeroes is a valid value.
        let mut value: FILE_OBJECT = unsafe { std::mem::zeroed() };
        value.Type = IO_TYPE_FILE;
        value.Size = i16::try_from(size_of::<FILE_OBJECT>()).unwrap_or(i16::MAX);
        value.DeviceObject = device as *mut DEVICE_OBJECT;
        value.FileName = UNICODE_STRING {
            Length: length,
            MaximumLength: length + 2,
            Buffer: name.as_ptr(),
        };
        // SAFETY: kernel-sim's own fresh allocation of a FILE_OBJECT.
        unsafe { object.as_ptr::<FILE_OBJECT>().write(value) };
        let file_object = object.address();
        let record = FileRecord::new(object, name, volume, path.to_owned());
        flt_read(&self.kernel).io.files.insert(file_object, record);
        Ok(file_object)
    }

    /// An IRP header (`Type`, `Size`) for the operations whose parameters carry one.
    fn irp_header() -> GuestAlloc {
        let irp = GuestAlloc::zeroed(IRP_SIZE);
        guest::write(irp.as_ptr::<i16>(), IO_TYPE_IRP);
        guest::write(
            irp.as_ptr::<u16>().wrapping_add(1),
            u16::try_from(IRP_SIZE).unwrap_or(u16::MAX),
        );
        irp
    }

    /// `IRP_MJ_QUERY_OPEN` of `path` on `volume` for `FileStatInformation`; when a filter
    /// disallows it, the open/query/close the I/O manager does instead.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND`, a filter's status.
    pub fn query_open(&self, volume: VolumeId, path: &str) -> Result<FileStandard, NTSTATUS> {
        let file_object = self.unopened_file_object(volume, path)?;
        let irp = Self::irp_header();
        let buffer = GuestAlloc::zeroed(FILE_STAT_INFORMATION_SIZE as usize);
        let length = GuestAlloc::zeroed(4);
        guest::write(length.as_ptr::<u32>(), FILE_STAT_INFORMATION_SIZE);
        let parameters = FLT_PARAMETERS {
            QueryOpen: FLT_PARAMETERS_QUERY_OPEN {
                Irp: irp.as_ptr(),
                FileInformation: buffer.as_ptr(),
                Length: length.as_ptr(),
                FileInformationClass: FILE_STAT_INFORMATION_CLASS,
            },
        };
        let mut step = |io: &IoState, base: usize| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_QUERY_OPEN);
            if p.FileInformationClass != FILE_STAT_INFORMATION_CLASS
                || p.FileInformation.is_null()
                || p.Length.is_null()
            {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            if guest::read(p.Length) < FILE_STAT_INFORMATION_SIZE {
                return (STATUS_INFO_LENGTH_MISMATCH, 0);
            }
            match stat_of(io, volume, path) {
                Ok(stat) => {
                    guest::write_bytes(p.FileInformation.cast(), &stat_information(&stat));
                    (STATUS_SUCCESS, 0)
                }
                Err(status) => (status, 0),
            }
        };
        let (status, _) = self.by_name(
            volume,
            file_object,
            IRP_MJ_QUERY_OPEN,
            Path::FsFilter,
            parameters,
            &mut step,
        );
        if status == STATUS_FLT_DISALLOW_FAST_IO {
            return self.open_query_close(volume, path);
        }
        if !vigil_sys::NT_SUCCESS(status) {
            return Err(status);
        }
        let bytes = guest::read_bytes(buffer.as_ptr(), FILE_STAT_INFORMATION_SIZE as usize);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        Ok(FileStandard {
            allocation_size: u64_at(40),
            end_of_file: u64_at(48),
            links: u32_at(64),
            delete_pending: false,
            directory: u32_at(56) & FILE_ATTRIBUTE_DIRECTORY != 0,
        })
    }

    /// `IRP_MJ_NETWORK_QUERY_OPEN` of `path` on `volume` (`FILE_NETWORK_OPEN_INFORMATION`);
    /// when a filter disallows the fast I/O, the open/query/close the I/O manager does instead.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND`, a filter's status.
    pub fn network_query_open(
        &self,
        volume: VolumeId,
        path: &str,
    ) -> Result<FileStandard, NTSTATUS> {
        let file_object = self.unopened_file_object(volume, path)?;
        let irp = Self::irp_header();
        let buffer = GuestAlloc::zeroed(FILE_NETWORK_OPEN_INFORMATION_SIZE);
        let parameters = FLT_PARAMETERS {
            NetworkQueryOpen: FLT_PARAMETERS_NETWORK_QUERY_OPEN {
                Irp: irp.as_ptr(),
                NetworkInformation: buffer.as_ptr(),
            },
        };
        let mut step = |io: &IoState, base: usize| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_NETWORK_QUERY_OPEN);
            if p.NetworkInformation.is_null() {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            match stat_of(io, volume, path) {
                Ok(stat) => {
                    let bytes = network_open_information(&stat);
                    guest::write_bytes(p.NetworkInformation.cast(), &bytes);
                    (STATUS_SUCCESS, bytes.len())
                }
                Err(status) => (status, 0),
            }
        };
        let (status, _) = self.by_name(
            volume,
            file_object,
            IRP_MJ_NETWORK_QUERY_OPEN,
            Path::FastIo,
            parameters,
            &mut step,
        );
        if status == STATUS_FLT_DISALLOW_FAST_IO {
            return self.open_query_close(volume, path);
        }
        if !vigil_sys::NT_SUCCESS(status) {
            return Err(status);
        }
        let bytes = guest::read_bytes(buffer.as_ptr(), FILE_NETWORK_OPEN_INFORMATION_SIZE);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let attributes = u32::from_le_bytes(bytes[48..52].try_into().unwrap_or([0; 4]));
        Ok(FileStandard {
            allocation_size: u64_at(32),
            end_of_file: u64_at(40),
            links: 1,
            delete_pending: false,
            directory: attributes & FILE_ATTRIBUTE_DIRECTORY != 0,
        })
    }

    /// Issues a query by name on the unopened `file_object`, then frees it.
    fn by_name(
        &self,
        volume: VolumeId,
        file_object: usize,
        major: u8,
        path: Path,
        parameters: FLT_PARAMETERS,
        step: &mut dyn FnMut(&IoState, usize) -> (NTSTATUS, usize),
    ) -> (NTSTATUS, usize) {
        let result = self.issue(
            Request::at_passive(volume, file_object, major, path, parameters),
            step,
        );
        self.discard(file_object);
        result
    }

    /// What the I/O manager does when a query by name is refused: open, query, close.
    fn open_query_close(&self, volume: VolumeId, path: &str) -> Result<FileStandard, NTSTATUS> {
        let file = self.create(volume, path, FILE_OPEN, 0, 0)?;
        let standard = self.query_standard_information(&file);
        let _ = self.cleanup(&file);
        self.close(file);
        standard
    }
}
