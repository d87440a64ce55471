//! Filter Manager's pseudo-operations: the `FsFilter` callback operations the memory manager
//! and the cache manager raise around their own I/O (acquire/release for section
//! synchronization, for the modified page writer and for a cache flush) and the fast I/O
//! operations that have no IRP counterpart (`FastIoCheckIfPossible`, the MDL reads and
//! writes). Built and dispatched as [`Io::issue`] does every operation, with
//! `FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION` or `FLTFL_CALLBACK_DATA_FAST_IO_OPERATION`.
//!
//! From the `FLT_PARAMETERS` pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-acquire-for-mod-write>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ifs/flt-parameters-for-irp-mj-release-for-mod-write>
//! and their siblings): the modified page writer's acquire and release run at APC_LEVEL (the
//! release page: "always runs at IRQL = APC_LEVEL"; the acquire is raised from the same special
//! kernel APC); the acquire stores the resource it took in `*ResourceToRelease` and the release
//! gets it back. Section synchronization and the cache flush pair run at PASSIVE_LEVEL in
//! the thread that maps the file or in the lazy writer. An acquire that fails (a filter
//! completing it with an error) is not followed by its release.
//!
//! Fast I/O: a filter's `FLT_PREOP_DISALLOW_FASTIO` makes the issuer take the IRP path, as the
//! I/O manager does: an MDL read becomes an `IRP_MJ_READ`, a prepared MDL write an
//! `IRP_MJ_WRITE`, and a disallowed check-if-possible answers FALSE. The MDL chain of an MDL
//! read or prepared write describes a cache buffer the file system owns; the matching
//! completion gives it back, and the file system frees it then.

use vigil_sys::{
    APC_LEVEL, FLT_PARAMETERS, FLT_PARAMETERS_ACQUIRE_FOR_MOD_WRITE,
    FLT_PARAMETERS_ACQUIRE_FOR_SECTION_SYNCHRONIZATION, FLT_PARAMETERS_FAST_IO_CHECK_IF_POSSIBLE,
    FLT_PARAMETERS_MDL_READ_COMPLETE, FLT_PARAMETERS_MDL_TRANSFER,
    FLT_PARAMETERS_MDL_WRITE_COMPLETE, FLT_PARAMETERS_RELEASE_FOR_MOD_WRITE,
    IRP_MJ_ACQUIRE_FOR_CC_FLUSH, IRP_MJ_ACQUIRE_FOR_MOD_WRITE,
    IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION, IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE, IRP_MJ_MDL_READ,
    IRP_MJ_MDL_READ_COMPLETE, IRP_MJ_MDL_WRITE_COMPLETE, IRP_MJ_PREPARE_MDL_WRITE,
    IRP_MJ_RELEASE_FOR_CC_FLUSH, IRP_MJ_RELEASE_FOR_MOD_WRITE,
    IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION, MDL, NT_SUCCESS, NTSTATUS, PASSIVE_LEVEL, PVOID,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use super::ops::{
    FileStep, STATUS_FLT_DISALLOW_FAST_IO, mdl_buffer, parameters_at, volume_and_handle,
};
use super::{FileHandle, Io, Path};
use crate::fltmgr::files::IoState;
use crate::fltmgr::instances::FsHandle;
use crate::machine::guest::{self, GuestAlloc};
use crate::ntoskrnl::status;
use crate::world::fs::STATUS_FILE_LOCK_CONFLICT;
use crate::world::volumes::fs_of;

/// `SyncTypeCreateSection`.
const SYNC_TYPE_CREATE_SECTION: i32 = 1;
/// `PAGE_READONLY`.
const PAGE_READONLY: u32 = 0x02;
/// The size of an `ERESOURCE` on x64 (the resource the file system hands the modified page
/// writer; opaque to filters).
const ERESOURCE_SIZE: usize = 0x68;
/// The size of `FS_FILTER_SECTION_SYNC_OUTPUT`.
const SECTION_SYNC_OUTPUT_SIZE: usize = 16;

impl Io {
    /// An `FsFilter` operation on `file` at `irql`, answered with `answer` by the file system.
    fn fs_filter(
        &self,
        file: &FileHandle,
        major: u8,
        irql: u8,
        parameters: FLT_PARAMETERS,
        answer: FileStep<'_>,
    ) -> NTSTATUS {
        self.on_file(
            file,
            (major, 0),
            Path::FsFilter,
            (irql, 0),
            parameters,
            true,
            answer,
        )
        .0
    }

    /// What the memory manager does when it creates a section for `file`:
    /// `IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION` (`SyncTypeCreateSection`, read-only pages),
    /// then, if that succeeded, `IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION`; both statuses
    /// (the release's is `STATUS_SUCCESS` when it was not sent).
    pub fn section_synchronization(&self, file: &FileHandle) -> (NTSTATUS, NTSTATUS) {
        let output = GuestAlloc::zeroed(SECTION_SYNC_OUTPUT_SIZE);
        let parameters = FLT_PARAMETERS {
            AcquireForSectionSynchronization: FLT_PARAMETERS_ACQUIRE_FOR_SECTION_SYNCHRONIZATION {
                SyncType: SYNC_TYPE_CREATE_SECTION,
                PageProtection: PAGE_READONLY,
                OutputInformation: output.as_ptr(),
            },
        };
        let mut succeed = |_: &IoState, _: usize, _: Option<FsHandle>| (STATUS_SUCCESS, 0);
        let acquired = self.fs_filter(
            file,
            IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION,
            PASSIVE_LEVEL,
            parameters,
            &mut succeed,
        );
        if !NT_SUCCESS(acquired) {
            return (acquired, STATUS_SUCCESS);
        }
        let released = self.fs_filter(
            file,
            IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION,
            PASSIVE_LEVEL,
            // SAFETY: FLT_PARAMETERS is plain data; the release has no parameters.
            unsafe { std::mem::zeroed() },
            &mut succeed,
        );
        (acquired, released)
    }

    /// What the modified page writer does around writing `file`'s dirty pages, at APC_LEVEL:
    /// `IRP_MJ_ACQUIRE_FOR_MOD_WRITE` (the file system stores the resource it took), then
    /// `IRP_MJ_RELEASE_FOR_MOD_WRITE` with that resource; both statuses.
    pub fn modified_page_writer(&self, file: &FileHandle) -> (NTSTATUS, NTSTATUS) {
        let size = self
            .query_size(file)
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        let ending = GuestAlloc::zeroed(8);
        guest::write(ending.as_ptr::<i64>(), size);
        let resource_cell = GuestAlloc::zeroed(8);
        let resource = GuestAlloc::zeroed(ERESOURCE_SIZE);
        let parameters = FLT_PARAMETERS {
            AcquireForModifiedPageWriter: FLT_PARAMETERS_ACQUIRE_FOR_MOD_WRITE {
                EndingOffset: ending.as_ptr(),
                ResourceToRelease: resource_cell.as_ptr(),
            },
        };
        let mut acquire = |_: &IoState, base: usize, _: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_ACQUIRE_FOR_MOD_WRITE);
            if p.ResourceToRelease.is_null() {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            guest::write(
                p.ResourceToRelease,
                resource.as_ptr::<u8>().cast::<core::ffi::c_void>(),
            );
            (STATUS_SUCCESS, 0)
        };
        let acquired = self.fs_filter(
            file,
            IRP_MJ_ACQUIRE_FOR_MOD_WRITE,
            APC_LEVEL,
            parameters,
            &mut acquire,
        );
        let taken: PVOID = guest::read(resource_cell.as_ptr::<PVOID>());
        if !NT_SUCCESS(acquired) || taken.is_null() {
            return (acquired, STATUS_SUCCESS);
        }
        let parameters = FLT_PARAMETERS {
            ReleaseForModifiedPageWriter: FLT_PARAMETERS_RELEASE_FOR_MOD_WRITE {
                ResourceToRelease: taken,
            },
        };
        let mut release = |_: &IoState, _: usize, _: Option<FsHandle>| (STATUS_SUCCESS, 0);
        let released = self.fs_filter(
            file,
            IRP_MJ_RELEASE_FOR_MOD_WRITE,
            APC_LEVEL,
            parameters,
            &mut release,
        );
        (acquired, released)
    }

    /// What the cache manager does around flushing `file`: `IRP_MJ_ACQUIRE_FOR_CC_FLUSH` then
    /// `IRP_MJ_RELEASE_FOR_CC_FLUSH`, at PASSIVE_LEVEL; both statuses.
    pub fn cc_flush(&self, file: &FileHandle) -> (NTSTATUS, NTSTATUS) {
        let mut succeed = |_: &IoState, _: usize, _: Option<FsHandle>| (STATUS_SUCCESS, 0);
        // SAFETY: FLT_PARAMETERS is plain data; neither operation has parameters.
        let none: FLT_PARAMETERS = unsafe { std::mem::zeroed() };
        let acquired = self.fs_filter(
            file,
            IRP_MJ_ACQUIRE_FOR_CC_FLUSH,
            PASSIVE_LEVEL,
            none,
            &mut succeed,
        );
        if !NT_SUCCESS(acquired) {
            return (acquired, STATUS_SUCCESS);
        }
        let released = self.fs_filter(
            file,
            IRP_MJ_RELEASE_FOR_CC_FLUSH,
            PASSIVE_LEVEL,
            none,
            &mut succeed,
        );
        (acquired, released)
    }

    /// The file's size, without an operation (for the parameters the memory manager fills).
    fn query_size(&self, file: &FileHandle) -> Option<u64> {
        let handle = self.file_state(file, true).ok()??;
        let flt = crate::fltmgr::flt_read(&self.kernel);
        let volume = flt.io.volumes.get(file.volume.0)?;
        fs_of(volume).standard(handle).ok().map(|s| s.size)
    }

    /// `IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE` for a transfer of `length` bytes at `offset`: whether
    /// the fast path may be taken (not when another process's lock is in the way, nor when a
    /// filter disallows it).
    pub fn fast_io_check_if_possible(
        &self,
        file: &FileHandle,
        offset: u64,
        length: u32,
        read: bool,
    ) -> bool {
        let owner = self.requestor.pid;
        let parameters = FLT_PARAMETERS {
            FastIoCheckIfPossible: FLT_PARAMETERS_FAST_IO_CHECK_IF_POSSIBLE {
                FileOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                Length: length,
                PointerAlignment1: 0,
                LockKey: 0,
                PointerAlignment2: 0,
                CheckForReadOperation: u8::from(read),
            },
        };
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p =
                guest::read(parameters_at(base) as *const FLT_PARAMETERS_FAST_IO_CHECK_IF_POSSIBLE);
            let (Some((_, handle)), Some(volume)) = (
                volume_and_handle(io, file, handle),
                io.volumes.get(file.volume.0),
            ) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            let range = (
                u64::try_from(p.FileOffset).unwrap_or(0),
                u64::from(p.Length),
            );
            match fs_of(volume).range_conflicts(handle, range, owner, p.CheckForReadOperation != 0)
            {
                Ok(false) => (STATUS_SUCCESS, 0),
                Ok(true) => (STATUS_FILE_LOCK_CONFLICT, 0),
                Err(status) => (status, 0),
            }
        };
        let (status, _) = self.on_file(
            file,
            (IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE, 0),
            Path::FastIo,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        );
        NT_SUCCESS(status)
    }

    /// A fast I/O MDL read of at most `length` bytes at `offset` (`IRP_MJ_MDL_READ`, then
    /// `IRP_MJ_MDL_READ_COMPLETE` giving the chain back): the bytes the chain described. A
    /// disallowed MDL read is reissued as an `IRP_MJ_READ`.
    ///
    /// # Errors
    ///
    /// `STATUS_END_OF_FILE`, a filter's status.
    pub fn mdl_read(
        &self,
        file: &FileHandle,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, NTSTATUS> {
        let chain = GuestAlloc::zeroed(8);
        let mut cache: Option<GuestAlloc> = None;
        let reader = self.requestor.pid;
        let parameters = FLT_PARAMETERS {
            MdlRead: FLT_PARAMETERS_MDL_TRANSFER {
                FileOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                Length: length,
                PointerAlignment1: 0,
                Key: 0,
                MdlChain: chain.as_ptr(),
            },
        };
        let kernel = std::sync::Arc::clone(&self.kernel);
        let mut step = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_MDL_TRANSFER);
            let (Some((_, handle)), Some(volume)) = (
                volume_and_handle(io, file, handle),
                io.volumes.get(file.volume.0),
            ) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if p.MdlChain.is_null() {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let offset = u64::try_from(p.FileOffset).unwrap_or(0);
            match fs_of(volume).read_data(handle, offset, p.Length, reader) {
                Ok(bytes) if bytes.is_empty() => (STATUS_SUCCESS, 0),
                Ok(bytes) => {
                    let buffer = GuestAlloc::zeroed(bytes.len());
                    guest::write_bytes(buffer.as_ptr(), &bytes);
                    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                    let mdl = crate::ntoskrnl::mdl::allocate(
                        &kernel,
                        "the file system (IRP_MJ_MDL_READ)",
                        buffer.address(),
                        length,
                    );
                    guest::write(p.MdlChain, mdl as PVOID);
                    cache = Some(buffer);
                    (STATUS_SUCCESS, bytes.len())
                }
                Err(status) => (status, 0),
            }
        };
        let (status, _) = self.on_file(
            file,
            (IRP_MJ_MDL_READ, 0),
            Path::FastIo,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut step,
        );
        if status == STATUS_FLT_DISALLOW_FAST_IO {
            return self.read(file, offset, length);
        }
        let mdl = guest::read(chain.as_ptr::<usize>());
        let bytes = if NT_SUCCESS(status) && mdl != 0 && cache.is_some() {
            let described = guest::read(mdl as *const MDL);
            guest::read_bytes(mdl_buffer(mdl) as *const u8, described.ByteCount as usize)
        } else {
            Vec::new()
        };
        if mdl != 0 && cache.is_some() {
            let parameters = FLT_PARAMETERS {
                MdlReadComplete: FLT_PARAMETERS_MDL_READ_COMPLETE {
                    MdlChain: mdl as PVOID,
                },
            };
            let mut complete = |_: &IoState, _: usize, _: Option<FsHandle>| (STATUS_SUCCESS, 0);
            let _ = self.on_file(
                file,
                (IRP_MJ_MDL_READ_COMPLETE, 0),
                Path::FastIo,
                (PASSIVE_LEVEL, 0),
                parameters,
                true,
                &mut complete,
            );
            self.release_cache_mdl(mdl);
        }
        drop(cache);
        if NT_SUCCESS(status) {
            Ok(bytes)
        } else {
            Err(status)
        }
    }

    /// The file system takes back the MDL of a cache buffer it lent (whatever the filters
    /// did with the completion).
    fn release_cache_mdl(&self, mdl: usize) {
        let live = crate::kernel::lock(&self.kernel.objects)
            .mdls
            .contains_key(&mdl);
        if live {
            let _ = crate::ntoskrnl::mdl::free(&self.kernel, mdl, "the file system (MDL complete)");
        }
    }

    /// A fast I/O MDL write of `data` at `offset` (`IRP_MJ_PREPARE_MDL_WRITE`, the data copied
    /// into the chain, then `IRP_MJ_MDL_WRITE_COMPLETE`, when the file system takes the
    /// bytes); a disallowed one is reissued as an `IRP_MJ_WRITE`.
    pub fn mdl_write(&self, file: &FileHandle, offset: u64, data: &[u8]) -> NTSTATUS {
        let Ok(length) = u32::try_from(data.len()) else {
            return STATUS_INVALID_PARAMETER;
        };
        let chain = GuestAlloc::zeroed(8);
        let mut cache: Option<GuestAlloc> = None;
        let parameters = FLT_PARAMETERS {
            PrepareMdlWrite: FLT_PARAMETERS_MDL_TRANSFER {
                FileOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                Length: length,
                PointerAlignment1: 0,
                Key: 0,
                MdlChain: chain.as_ptr(),
            },
        };
        let kernel = std::sync::Arc::clone(&self.kernel);
        let mut prepare = |_: &IoState, base: usize, _: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_MDL_TRANSFER);
            if p.MdlChain.is_null() || p.Length == 0 {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let buffer = GuestAlloc::zeroed(p.Length as usize);
            let mdl = crate::ntoskrnl::mdl::allocate(
                &kernel,
                "the file system (IRP_MJ_PREPARE_MDL_WRITE)",
                buffer.address(),
                p.Length,
            );
            guest::write(p.MdlChain, mdl as PVOID);
            cache = Some(buffer);
            (STATUS_SUCCESS, p.Length as usize)
        };
        let (status, _) = self.on_file(
            file,
            (IRP_MJ_PREPARE_MDL_WRITE, 0),
            Path::FastIo,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut prepare,
        );
        if status == STATUS_FLT_DISALLOW_FAST_IO {
            return self.write(file, offset, data);
        }
        let mdl = guest::read(chain.as_ptr::<usize>());
        if !NT_SUCCESS(status) || mdl == 0 || cache.is_none() {
            return status;
        }
        let room = (guest::read(mdl as *const MDL).ByteCount as usize).min(data.len());
        guest::write_bytes(mdl_buffer(mdl) as *mut u8, &data[..room]);
        let parameters = FLT_PARAMETERS {
            MdlWriteComplete: FLT_PARAMETERS_MDL_WRITE_COMPLETE {
                FileOffset: i64::try_from(offset).unwrap_or(i64::MAX),
                MdlChain: mdl as PVOID,
            },
        };
        let mut complete = |io: &IoState, base: usize, handle: Option<FsHandle>| {
            let p = guest::read(parameters_at(base) as *const FLT_PARAMETERS_MDL_WRITE_COMPLETE);
            let (Some((_, handle)), Some(volume)) = (
                volume_and_handle(io, file, handle),
                io.volumes.get(file.volume.0),
            ) else {
                return (status::INVALID_DEVICE_REQUEST, 0);
            };
            if p.MdlChain.is_null() {
                return (STATUS_INVALID_PARAMETER, 0);
            }
            let described = guest::read(p.MdlChain as *const MDL);
            let bytes = guest::read_bytes(
                mdl_buffer(p.MdlChain as usize) as *const u8,
                described.ByteCount as usize,
            );
            let offset = u64::try_from(p.FileOffset).unwrap_or(0);
            (
                fs_of(volume)
                    .write_data(handle, offset, &bytes)
                    .err()
                    .unwrap_or(STATUS_SUCCESS),
                0,
            )
        };
        let (completed, _) = self.on_file(
            file,
            (IRP_MJ_MDL_WRITE_COMPLETE, 0),
            Path::FastIo,
            (PASSIVE_LEVEL, 0),
            parameters,
            false,
            &mut complete,
        );
        self.release_cache_mdl(mdl);
        drop(cache);
        completed
    }
}
