//! Driver-independent tests of the requests a filter sends below its instance
//! (`FltCreateFileEx2`, `FltSetInformationFile`, `FltFsControlFile`, callback data performed
//! synchronously): a filter written in Rust, with a pre-operation callback that counts what
//! reaches it, is registered and started on NTFS and FAT volumes, and each test plays its
//! worker, asserting the statuses, what the file systems below now hold, and that none of it
//! came back through the filter.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vigil_sys::{
    FILE_CREATE, FILE_OBJECT, FILE_RENAME_INFORMATION, FLT_CALLBACK_DATA,
    FLT_OPERATION_REGISTRATION, FLT_PREOP_SUCCESS_NO_CALLBACK, FLT_REGISTRATION,
    FLT_REGISTRATION_VERSION, FLT_RELATED_OBJECTS, FileDispositionInformation, FileLinkInformation,
    FileRenameInformation, HANDLE, IO_STATUS_BLOCK, IRP_MJ_OPERATION_END, IRP_MJ_READ,
    IRP_MJ_SET_INFORMATION, IRP_MJ_WRITE, NTSTATUS, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES,
    PASSIVE_LEVEL, PFLT_FILTER, PFLT_INSTANCE, PVOID, STATUS_END_OF_FILE,
    STATUS_INFO_LENGTH_MISMATCH, STATUS_SUCCESS,
};

use crate::config::{IoConfig, SimConfig, VolumeKind};
use crate::fltmgr::callback_data::{
    flt_allocate_callback_data, flt_free_callback_data, flt_perform_synchronous_io,
};
use crate::fltmgr::filter_io::{flt_close, flt_create_file_ex2};
use crate::fltmgr::fs_control::{FSCTL_GET_REPARSE_POINT, STATUS_NOT_A_REPARSE_POINT};
use crate::fltmgr::instances::VolumeId;
use crate::fltmgr::set_information::{
    FILE_ALLOCATION_INFORMATION_CLASS, FILE_END_OF_FILE_INFORMATION_CLASS,
    FILE_POSITION_INFORMATION_CLASS, STATUS_INVALID_INFO_CLASS, STATUS_NOT_SAME_DEVICE,
    flt_set_information_file,
};
use crate::fltmgr::{flt_read, registration};
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::guest::{self, GuestAlloc, GuestUnicode};
use crate::machine::state::ImageBounds;
use crate::ntoskrnl::status;
use crate::report::ViolationKind;
use crate::world::fs::FileSystem;

const NTFS: &str = r"\Device\HarddiskVolume1";
const FAT: &str = r"\Device\HarddiskVolume2";

/// Set-information requests that reached the test filter's pre-operation callback.
static SEEN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "win64" fn count(
    _data: *mut FLT_CALLBACK_DATA,
    _objects: *const FLT_RELATED_OBJECTS,
    _completion: *mut PVOID,
) -> i32 {
    SEEN.fetch_add(1, Ordering::SeqCst);
    FLT_PREOP_SUCCESS_NO_CALLBACK
}

unsafe extern "win64" fn unload(_flags: u32) -> NTSTATUS {
    STATUS_SUCCESS
}

fn kernel() -> Arc<Kernel> {
    let k = Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(5),
            io: IoConfig {
                volumes: vec![
                    (VolumeKind::Ntfs, NTFS.to_owned()),
                    (VolumeKind::Fat, FAT.to_owned()),
                ],
                ..IoConfig::default()
            },
            ..SimConfig::default()
        },
        "test.sys".into(),
        ImageBounds::EMPTY,
        Vec::new(),
        Symbols::default(),
    );
    crate::world::volumes::mount_configured(&k);
    k
}

/// Registers and starts a filter whose only callback counts set-information requests.
fn start(k: &Kernel) -> PFLT_FILTER {
    let operations: &'static [FLT_OPERATION_REGISTRATION] = Box::leak(Box::new([
        FLT_OPERATION_REGISTRATION {
            MajorFunction: IRP_MJ_SET_INFORMATION,
            Flags: 0,
            PreOperation: Some(count),
            PostOperation: None,
            Reserved1: std::ptr::null_mut(),
        },
        FLT_OPERATION_REGISTRATION {
            MajorFunction: IRP_MJ_OPERATION_END,
            Flags: 0,
            PreOperation: None,
            PostOperation: None,
            Reserved1: std::ptr::null_mut(),
        },
    ]));
    // SAFETY: FLT_REGISTRATION is plain data (integers, raw pointers, optional function
    // pointers): all zeroes is a valid value.
    let mut value: FLT_REGISTRATION = unsafe { std::mem::zeroed() };
    value.Size = u16::try_from(size_of::<FLT_REGISTRATION>()).expect("small");
    value.Version = FLT_REGISTRATION_VERSION;
    value.OperationRegistration = operations.as_ptr();
    value.FilterUnloadCallback = Some(unload);
    let registration: &'static FLT_REGISTRATION = Box::leak(Box::new(value));
    let driver_object = k.driver_object.as_ptr();
    k.call_driver("DriverEntry", Some(0), || {
        let mut filter: PFLT_FILTER = std::ptr::null_mut();
        assert_eq!(
            registration::flt_register_filter(driver_object, registration, &raw mut filter),
            STATUS_SUCCESS
        );
        assert_eq!(registration::flt_start_filtering(filter), STATUS_SUCCESS);
        filter
    })
    .expect("returned")
}

fn volume(k: &Kernel, name: &str) -> (VolumeId, PFLT_INSTANCE) {
    let flt = flt_read(k);
    let index = flt
        .io
        .volumes
        .iter()
        .position(|v| v.device_name == name)
        .expect("mounted");
    let instance = flt.io.volumes[index]
        .instance
        .as_ref()
        .expect("attached")
        .handle
        .address();
    (VolumeId(index), instance as PFLT_INSTANCE)
}

/// Whether `path` exists on `volume`, and its size.
fn file(k: &Kernel, volume: VolumeId, path: &str) -> Option<u64> {
    let flt = flt_read(k);
    let files = flt.io.volumes[volume.0].files();
    let fs = (**files)
        .as_any()
        .downcast_ref::<FileSystem>()
        .expect("the world's file system");
    fs.exists(path).then(|| fs.size_of(path).unwrap_or(0))
}

/// Creates `device\path` below the filter with `FltCreateFileEx2`: the handle and file object.
fn create(filter: PFLT_FILTER, instance: PFLT_INSTANCE, name: &str) -> (HANDLE, *mut FILE_OBJECT) {
    let name = GuestUnicode::new(name);
    let attributes = GuestAlloc::for_type::<OBJECT_ATTRIBUTES>(0);
    guest::write(
        attributes.as_ptr::<OBJECT_ATTRIBUTES>(),
        OBJECT_ATTRIBUTES {
            Length: u32::try_from(size_of::<OBJECT_ATTRIBUTES>()).expect("small"),
            RootDirectory: std::ptr::null_mut(),
            ObjectName: name.as_ptr(),
            Attributes: OBJ_KERNEL_HANDLE,
            SecurityDescriptor: std::ptr::null_mut(),
            SecurityQualityOfService: std::ptr::null_mut(),
        },
    );
    let status_block = GuestAlloc::for_type::<IO_STATUS_BLOCK>(0);
    let mut handle: HANDLE = std::ptr::null_mut();
    let mut file_object: *mut FILE_OBJECT = std::ptr::null_mut();
    let status = flt_create_file_ex2(
        filter,
        instance,
        &raw mut handle,
        &raw mut file_object,
        0,
        attributes.as_ptr(),
        status_block.as_ptr(),
        std::ptr::null_mut(),
        0,
        0,
        FILE_CREATE,
        0,
        std::ptr::null_mut(),
        0,
        0,
        std::ptr::null_mut(),
    );
    assert_eq!(status, STATUS_SUCCESS);
    (handle, file_object)
}

/// `FltSetInformationFile` with `bytes` as the information buffer.
fn set(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    class: i32,
    bytes: &[u8],
) -> NTSTATUS {
    let buffer = GuestAlloc::zeroed(bytes.len().max(1));
    guest::write_bytes(buffer.as_ptr(), bytes);
    flt_set_information_file(
        instance,
        file_object,
        buffer.as_ptr(),
        u32::try_from(bytes.len()).expect("small"),
        class,
    )
}

/// A `FILE_RENAME_INFORMATION` (or link) naming `target`, not replacing an existing file.
fn named(target: &str) -> Vec<u8> {
    let name: Vec<u8> = target.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let name_offset = std::mem::offset_of!(FILE_RENAME_INFORMATION, FileName);
    let mut info = vec![0u8; name_offset + name.len()];
    let length_at = std::mem::offset_of!(FILE_RENAME_INFORMATION, FileNameLength);
    info[length_at..length_at + 4]
        .copy_from_slice(&u32::try_from(name.len()).expect("small").to_le_bytes());
    info[name_offset..].copy_from_slice(&name);
    info
}

/// Asserts that the filter's own callback saw nothing and that `k` recorded one violation, of
/// `kind` with `rule`.
fn assert_only(k: &Kernel, kind: ViolationKind, rule: &str) {
    assert_eq!(
        SEEN.load(Ordering::SeqCst),
        0,
        "the filter's own requests came back to it"
    );
    let found: Vec<(ViolationKind, String)> = k
        .violations()
        .into_iter()
        .map(|v| (v.kind, v.rule))
        .collect();
    assert_eq!(found, [(kind, rule.to_owned())]);
}

/// Performs `major` (read or write, `length` bytes at `offset`, to or from `buffer`) through a
/// callback data the filter allocated: the status and information.
fn transfer(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    major: u8,
    (offset, length): (i64, u32),
    buffer: PVOID,
) -> (NTSTATUS, usize) {
    let mut data: *mut FLT_CALLBACK_DATA = std::ptr::null_mut();
    assert_eq!(
        flt_allocate_callback_data(instance, file_object, &raw mut data),
        STATUS_SUCCESS
    );
    let mut iopb = guest::read(guest::read(data).Iopb);
    iopb.MajorFunction = major;
    // The read/write member of the parameter union (`Read` has `Write`'s layout).
    iopb.Parameters.Write.Length = length;
    iopb.Parameters.Write.ByteOffset = offset;
    iopb.Parameters.Write.WriteBuffer = buffer;
    guest::write(guest::read(data).Iopb, iopb);
    flt_perform_synchronous_io(data);
    let result = guest::read(data).IoStatus;
    flt_free_callback_data(data);
    (result.Status, result.Information)
}

/// [`transfer`] with a zeroed buffer of `length` bytes.
fn perform(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    major: u8,
    (offset, length): (i64, u32),
) -> (NTSTATUS, usize) {
    let buffer = GuestAlloc::zeroed(length as usize);
    transfer(
        instance,
        file_object,
        major,
        (offset, length),
        buffer.as_ptr(),
    )
}

/// A write of `bytes` at `offset`, then a read of as many bytes at `offset`, both through
/// callback data the filter allocated and performed synchronously: the bytes read.
fn write_then_read(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    offset: i64,
    bytes: &[u8],
) -> Vec<u8> {
    let length = u32::try_from(bytes.len()).expect("a short write");
    let source = GuestAlloc::zeroed(bytes.len());
    guest::write_bytes(source.as_ptr::<u8>(), bytes);
    let done = (STATUS_SUCCESS, bytes.len());
    let at = (offset, length);
    assert_eq!(
        transfer(instance, file_object, IRP_MJ_WRITE, at, source.as_ptr()),
        done
    );
    let target = GuestAlloc::zeroed(bytes.len());
    assert_eq!(
        transfer(instance, file_object, IRP_MJ_READ, at, target.as_ptr()),
        done
    );
    guest::read_bytes(target.as_ptr::<u8>(), bytes.len())
}

/// What a filter writes below itself through `FltPerformSynchronousIo` is what the file system
/// then holds: its own read below, at the start and past earlier bytes, gets the bytes back.
#[test]
fn a_filter_s_own_write_keeps_its_bytes() {
    let k = kernel();
    let filter = start(&k);
    let (_, on_ntfs) = volume(&k, NTFS);
    k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
        let (handle, f) = create(filter, on_ntfs, &format!(r"{NTFS}\kept.txt"));
        assert_eq!(
            write_then_read(on_ntfs, f, 0, b"first bytes"),
            b"first bytes"
        );
        assert_eq!(
            write_then_read(on_ntfs, f, 6, b"BYTES, more"),
            b"BYTES, more"
        );
        assert_eq!(
            write_then_read(on_ntfs, f, 0, b"first BYTES"),
            b"first BYTES"
        );
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(f.cast());
    })
    .expect("returned");
    assert!(k.violations().is_empty(), "{:#?}", k.violations());
}

/// A write below the filter whose parameters give a length and no buffer is refused and
/// reported (the file system would fault on it).
#[test]
fn a_filter_s_own_write_without_a_buffer_is_reported() {
    let k = kernel();
    let filter = start(&k);
    let (ntfs, on_ntfs) = volume(&k, NTFS);
    k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
        let (handle, f) = create(filter, on_ntfs, &format!(r"{NTFS}\empty.txt"));
        assert_eq!(
            transfer(on_ntfs, f, IRP_MJ_WRITE, (0, 16), std::ptr::null_mut()),
            (vigil_sys::STATUS_INVALID_PARAMETER, 0)
        );
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(f.cast());
    })
    .expect("returned");
    assert_eq!(file(&k, ntfs, r"\empty.txt"), Some(0));
    assert_only(
        &k,
        ViolationKind::Parameter,
        "FltPerformSynchronousIo: a WriteBuffer",
    );
}

/// End of file, allocation, position, renames (on the volume, to a sibling, to another volume),
/// a link and a delete disposition, with reads and writes through callback data: each answered
/// by NTFS below the filter, none seen by the filter's own callback.
#[test]
fn set_information_and_callback_data_reach_the_file_system_below_the_filter() {
    let k = kernel();
    let filter = start(&k);
    let (ntfs, on_ntfs) = volume(&k, NTFS);
    k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
        let (handle, f) = create(filter, on_ntfs, &format!(r"{NTFS}\a.txt"));
        assert_eq!(
            perform(on_ntfs, f, IRP_MJ_WRITE, (0, 300)),
            (STATUS_SUCCESS, 300)
        );
        assert_eq!(file(&k, ntfs, r"\a.txt"), Some(300));
        // End of file, then an allocation below it truncates.
        let eof = 1000i64.to_le_bytes();
        assert_eq!(
            set(on_ntfs, f, FILE_END_OF_FILE_INFORMATION_CLASS, &eof),
            STATUS_SUCCESS
        );
        assert_eq!(
            perform(on_ntfs, f, IRP_MJ_READ, (0, 4096)),
            (STATUS_SUCCESS, 1000)
        );
        let allocation = 200i64.to_le_bytes();
        assert_eq!(
            set(on_ntfs, f, FILE_ALLOCATION_INFORMATION_CLASS, &allocation),
            STATUS_SUCCESS
        );
        assert_eq!(file(&k, ntfs, r"\a.txt"), Some(200));
        assert_eq!(
            perform(on_ntfs, f, IRP_MJ_READ, (200, 16)),
            (STATUS_END_OF_FILE, 0)
        );
        // The position is the file object's, and a read at the current offset uses it.
        assert_eq!(
            set(
                on_ntfs,
                f,
                FILE_POSITION_INFORMATION_CLASS,
                &150i64.to_le_bytes()
            ),
            STATUS_SUCCESS
        );
        assert_eq!(
            perform(on_ntfs, f, IRP_MJ_READ, (-2, 100)),
            (STATUS_SUCCESS, 50)
        );
        // Documented statuses: a class that cannot be set, a short buffer.
        assert_eq!(set(on_ntfs, f, 9, &eof), STATUS_INVALID_INFO_CLASS);
        assert_eq!(
            set(on_ntfs, f, FILE_END_OF_FILE_INFORMATION_CLASS, &eof[..4]),
            STATUS_INFO_LENGTH_MISMATCH
        );
        // Renames: fully qualified on the volume, a sibling's name, another volume.
        assert_eq!(
            set(
                on_ntfs,
                f,
                FileRenameInformation,
                &named(&format!(r"{NTFS}\b.txt"))
            ),
            STATUS_SUCCESS
        );
        assert_eq!(file(&k, ntfs, r"\b.txt"), Some(200));
        assert_eq!(
            set(on_ntfs, f, FileRenameInformation, &named("c.txt")),
            STATUS_SUCCESS
        );
        assert_eq!(file(&k, ntfs, r"\b.txt"), None);
        assert_eq!(
            set(
                on_ntfs,
                f,
                FileRenameInformation,
                &named(&format!(r"{FAT}\c.txt"))
            ),
            STATUS_NOT_SAME_DEVICE
        );
        assert_eq!(
            set(
                on_ntfs,
                f,
                FileLinkInformation,
                &named(r"\Device\HarddiskVolume1\d.txt")
            ),
            STATUS_SUCCESS
        );
        assert_eq!(file(&k, ntfs, r"\d.txt"), Some(200));
        // Delete at the last cleanup: FltClose.
        assert_eq!(
            set(on_ntfs, f, FileDispositionInformation, &[1]),
            STATUS_SUCCESS
        );
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(f.cast());
        assert_eq!(file(&k, ntfs, r"\c.txt"), None);
        assert_eq!(file(&k, ntfs, r"\d.txt"), Some(200));
    })
    .expect("returned");
    assert_only(
        &k,
        ViolationKind::Parameter,
        "FltSetInformationFile: a rename or link target on the file's own volume (FltSetInformationFile does not check it)",
    );
}

/// FAT has no hard links and no reparse points; NTFS says a file is not a reparse point; other
/// control codes are reported as not emulated.
#[test]
fn links_and_reparse_points_are_answered_as_each_file_system_does() {
    let k = kernel();
    let filter = start(&k);
    let (fat, on_fat) = volume(&k, FAT);
    let (_, on_ntfs) = volume(&k, NTFS);
    k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
        let (handle, g) = create(filter, on_fat, &format!(r"{FAT}\e.txt"));
        assert_eq!(file(&k, fat, r"\e.txt"), Some(0));
        assert_eq!(
            set(on_fat, g, FileLinkInformation, &named("f.txt")),
            status::INVALID_DEVICE_REQUEST
        );
        let mut returned = 0u32;
        let output = GuestAlloc::zeroed(64);
        let answer = |instance, file_object, code, returned: &mut u32| {
            crate::fltmgr::fs_control::flt_fs_control_file(
                instance,
                file_object,
                code,
                std::ptr::null_mut(),
                0,
                output.as_ptr(),
                64,
                returned,
            )
        };
        assert_eq!(
            answer(on_fat, g, FSCTL_GET_REPARSE_POINT, &mut returned),
            status::INVALID_DEVICE_REQUEST
        );
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(g.cast());
        let (handle, h) = create(filter, on_ntfs, &format!(r"{NTFS}\g.txt"));
        assert_eq!(
            answer(on_ntfs, h, FSCTL_GET_REPARSE_POINT, &mut returned),
            STATUS_NOT_A_REPARSE_POINT
        );
        // FSCTL_IS_VOLUME_DIRTY: not emulated.
        assert_eq!(
            answer(on_ntfs, h, 0x0009_0078, &mut returned),
            status::INVALID_DEVICE_REQUEST
        );
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(h.cast());
    })
    .expect("returned");
    assert_only(
        &k,
        ViolationKind::NotEmulated,
        "FltFsControlFile: only FSCTL_GET_REPARSE_POINT is emulated",
    );
}

/// A read through a callback data whose parameters name an MDL (no buffer address) transfers
/// into the MDL's system address, as a file system does; an MDL not mapped to system space is
/// reported as not emulated.
#[test]
fn a_read_through_an_mdl_fills_its_mapped_buffer() {
    let k = kernel();
    let filter = start(&k);
    let (_, on_ntfs) = volume(&k, NTFS);
    k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
        let (handle, f) = create(filter, on_ntfs, &format!(r"{NTFS}\mdl.txt"));
        assert_eq!(
            perform(on_ntfs, f, IRP_MJ_WRITE, (0, 64)),
            (STATUS_SUCCESS, 64)
        );
        let tag = u32::from_le_bytes(*b"Tmdl");
        let buffer =
            crate::ntoskrnl::pool::ex_allocate_pool2(vigil_sys::POOL_FLAG_NON_PAGED, 32, tag);
        guest::write_bytes(buffer.cast(), &[0xEE; 32]);
        let mdl = crate::ntoskrnl::mdl::io_allocate_mdl(buffer, 32, 0, 0, std::ptr::null_mut());
        let mut data: *mut FLT_CALLBACK_DATA = std::ptr::null_mut();
        assert_eq!(
            flt_allocate_callback_data(on_ntfs, f, &raw mut data),
            STATUS_SUCCESS
        );
        let read = |data: *mut FLT_CALLBACK_DATA| {
            let mut iopb = guest::read(guest::read(data).Iopb);
            iopb.MajorFunction = IRP_MJ_READ;
            iopb.Parameters.Write.Length = 32;
            iopb.Parameters.Write.ByteOffset = 0;
            iopb.Parameters.Write.WriteBuffer = std::ptr::null_mut();
            iopb.Parameters.Write.MdlAddress = mdl;
            guest::write(guest::read(data).Iopb, iopb);
            flt_perform_synchronous_io(data);
            guest::read(data).IoStatus
        };
        // Not built yet: not mapped to system space.
        assert_eq!(read(data).Status, vigil_sys::STATUS_NOT_IMPLEMENTED);
        crate::ntoskrnl::mdl::mm_build_mdl_for_non_paged_pool(mdl.cast());
        crate::fltmgr::callback_data::flt_reuse_callback_data(data);
        let status = read(data);
        assert_eq!((status.Status, status.Information), (STATUS_SUCCESS, 32));
        assert_eq!(
            guest::read_bytes(buffer.cast(), 32),
            [0; 32],
            "zeroes read into the MDL's buffer"
        );
        flt_free_callback_data(data);
        crate::ntoskrnl::mdl::io_free_mdl(mdl);
        crate::ntoskrnl::pool::ex_free_pool_with_tag(buffer, tag);
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(f.cast());
    })
    .expect("returned");
    assert_only(
        &k,
        ViolationKind::NotEmulated,
        "FltPerform(A)synchronousIo: a transfer through an MDL not mapped to system space is not emulated",
    );
}

/// `FltQueryInformationFile` with `class` into a buffer of `length` bytes: the status and the
/// bytes.
fn query(
    instance: PFLT_INSTANCE,
    file_object: *mut FILE_OBJECT,
    class: i32,
    length: usize,
) -> (NTSTATUS, Vec<u8>) {
    let buffer = GuestAlloc::zeroed(length);
    let status = crate::fltmgr::query_information::flt_query_information_file(
        instance,
        file_object,
        buffer.as_ptr(),
        u32::try_from(length).expect("small"),
        class,
        std::ptr::null_mut(),
    );
    (status, guest::read_bytes(buffer.as_ptr(), length))
}

/// `FileStandardInformation` through `FltPerformSynchronousIo`: the bytes.
fn query_through_callback_data(instance: PFLT_INSTANCE, file_object: *mut FILE_OBJECT) -> Vec<u8> {
    let mut data: *mut FLT_CALLBACK_DATA = std::ptr::null_mut();
    assert_eq!(
        flt_allocate_callback_data(instance, file_object, &raw mut data),
        STATUS_SUCCESS
    );
    let buffer = GuestAlloc::zeroed(24);
    let mut iopb = guest::read(guest::read(data).Iopb);
    iopb.MajorFunction = crate::fltmgr::callback_data::IRP_MJ_QUERY_INFORMATION;
    // `QueryFileInformation`: `Length`, `FileInformationClass`, `InfoBuffer`, a word each.
    let none = std::ptr::null_mut();
    iopb.Parameters.Others = [24 as PVOID, 5 as PVOID, buffer.as_ptr(), none, none, none];
    guest::write(guest::read(data).Iopb, iopb);
    flt_perform_synchronous_io(data);
    let status = guest::read(data).IoStatus;
    assert_eq!((status.Status, status.Information), (STATUS_SUCCESS, 24));
    flt_free_callback_data(data);
    guest::read_bytes(buffer.as_ptr(), 24)
}

/// What a filter sets below itself it reads back with `FltQueryInformationFile`: the end of
/// file (and the cluster-rounded allocation), the links, delete pending, the position.
#[test]
fn what_a_filter_sets_it_queries_back() {
    let k = kernel();
    let filter = start(&k);
    let (_, on_ntfs) = volume(&k, NTFS);
    k.call_driver("Worker", Some(PASSIVE_LEVEL), || {
        let (handle, f) = create(filter, on_ntfs, &format!(r"{NTFS}\q.txt"));
        let standard = |f| query(on_ntfs, f, 5, 24);
        let (status, bytes) = standard(f);
        assert_eq!(status, STATUS_SUCCESS);
        assert_eq!(&bytes[..16], &[0; 16], "empty: no allocation, no data");
        assert_eq!(
            &bytes[16..22],
            &[1, 0, 0, 0, 0, 0],
            "one link, not deleted, a file"
        );
        let eof = 5000i64.to_le_bytes();
        assert_eq!(
            set(on_ntfs, f, FILE_END_OF_FILE_INFORMATION_CLASS, &eof),
            STATUS_SUCCESS
        );
        assert_eq!(
            set(on_ntfs, f, FileLinkInformation, &named("q2.txt")),
            STATUS_SUCCESS
        );
        assert_eq!(
            set(on_ntfs, f, FileDispositionInformation, &[1]),
            STATUS_SUCCESS
        );
        let (_, bytes) = standard(f);
        assert_eq!(bytes[..8], 8192u64.to_le_bytes(), "allocation in clusters");
        assert_eq!(bytes[8..16], 5000u64.to_le_bytes());
        assert_eq!(
            &bytes[16..22],
            &[2, 0, 0, 0, 1, 0],
            "two links, delete pending"
        );
        assert_eq!(
            set(
                on_ntfs,
                f,
                FILE_POSITION_INFORMATION_CLASS,
                &77i64.to_le_bytes()
            ),
            STATUS_SUCCESS
        );
        assert_eq!(
            query(on_ntfs, f, FILE_POSITION_INFORMATION_CLASS, 8),
            (STATUS_SUCCESS, 77i64.to_le_bytes().to_vec())
        );
        assert_eq!(query(on_ntfs, f, 5, 16).0, STATUS_INFO_LENGTH_MISMATCH);
        // The same question as an IRP_MJ_QUERY_INFORMATION through a callback data.
        assert_eq!(query_through_callback_data(on_ntfs, f), bytes);
        assert_eq!(flt_close(handle), STATUS_SUCCESS);
        let _ = crate::ntoskrnl::thread::obf_dereference_object(f.cast());
    })
    .expect("returned");
    assert!(k.violations().is_empty(), "{:#?}", k.violations());
}
