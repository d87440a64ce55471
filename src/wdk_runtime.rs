//! The `wdk` feature's runtime: what windows-drivers-rs supplies in place of `src/runtime.rs`,
//! wired the way its crates document it (the `wdk` crate's README, "Kernel Mode crates"), and
//! the layout oracle DESIGN.md describes: every kernel structure that both `wdk-sys` and
//! `vigil-sys` declare must have the same size, alignment and field offsets, checked at compile
//! time.
//!
//! Windows hosts with the WDK only (`cargo make`). `wdk-build` stops with `compile_error!` on any
//! other host, so nothing here has been compiled by this project's Linux CI: it was checked by
//! reading the sources of the pinned versions (wdk 0.5.0, wdk-sys 0.5.2, wdk-alloc 0.4.2,
//! wdk-panic 0.5.0, wdk-build 0.6.0). The Windows workflow builds it.
//!
//! What each crate provides here:
//! * `wdk-panic`: the panic handler (a bug check). Linking it is all it takes; like
//!   `runtime.rs`'s handler, it must stay unreachable (RULES.md rule 22).
//! * `wdk-alloc`: the global allocator (`ExAllocatePool2`, non-paged). Vigil allocates through
//!   its own typed pool wrappers; the allocator exists so that any `alloc` use is safe.
//! * `wdk-sys`: `_fltused` and the `__CxxFrameHandler*` stubs the image needs (which
//!   `runtime.rs` defines without the feature), and the layout oracle below.
//! * `wdk`: `DbgPrint` through `println!`, used for the one message a driver engineer needs in
//!   the debugger: why DriverEntry failed.

// The panic handler is linked, not called.
extern crate wdk_panic;

/// The global allocator, as windows-drivers-rs documents it.
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

/// Tells the kernel debugger why DriverEntry failed (`DbgPrint`, so IRQL <= DIRQL; DriverEntry
/// runs at PASSIVE_LEVEL). The message is formatted into a fixed 512-byte buffer on the stack:
/// no allocation.
pub fn report_entry_failure(status: i32) {
    wdk::println!("vigil: DriverEntry failed with NTSTATUS {status:#010x}");
}

/// Asserts at compile time that `vigil_sys::$ty` and `wdk_sys::$ty` agree in size, alignment
/// and the offsets of the named fields. Fields that the WDK puts in an anonymous union
/// (bindgen's `__bindgen_anon_N`) are compared through the size and the fields around them.
macro_rules! same_layout {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        const _: () = {
            assert!(
                core::mem::size_of::<vigil_sys::$ty>() == core::mem::size_of::<wdk_sys::$ty>(),
                concat!("vigil-sys and wdk-sys disagree on the size of ", stringify!($ty)),
            );
            assert!(
                core::mem::align_of::<vigil_sys::$ty>() == core::mem::align_of::<wdk_sys::$ty>(),
                concat!("vigil-sys and wdk-sys disagree on the alignment of ", stringify!($ty)),
            );
            $(
                assert!(
                    core::mem::offset_of!(vigil_sys::$ty, $field)
                        == core::mem::offset_of!(wdk_sys::$ty, $field),
                    concat!(
                        "vigil-sys and wdk-sys disagree on the offset of ",
                        stringify!($ty), "::", stringify!($field),
                    ),
                );
            )*
        };
    };
}

same_layout!(UNICODE_STRING {
    Length,
    MaximumLength,
    Buffer
});
same_layout!(LIST_ENTRY { Flink, Blink });
// `Lock` sits in the WDK's anonymous union of type/size/flag bytes.
same_layout!(DISPATCHER_HEADER {
    SignalState,
    WaitListHead
});
same_layout!(KEVENT { Header });
same_layout!(OBJECT_ATTRIBUTES {
    Length,
    RootDirectory,
    ObjectName,
    Attributes,
    SecurityDescriptor,
    SecurityQualityOfService,
});
same_layout!(CLIENT_ID {
    UniqueProcess,
    UniqueThread
});
// `Status` shares an anonymous union with `Pointer`.
same_layout!(IO_STATUS_BLOCK { Information });
same_layout!(KEY_VALUE_PARTIAL_INFORMATION {
    TitleIndex,
    Type,
    DataLength,
    Data
});
same_layout!(DRIVER_OBJECT {
    Type,
    Size,
    DeviceObject,
    Flags,
    DriverStart,
    DriverSize,
    DriverSection,
    DriverExtension,
    DriverName,
    HardwareDatabase,
    FastIoDispatch,
    DriverInit,
    DriverStartIo,
    DriverUnload,
    MajorFunction,
});
// The WDK declares it DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT): 16-byte aligned, 0x150 bytes.
same_layout!(DEVICE_OBJECT {
    Type,
    Size,
    ReferenceCount,
    DriverObject,
    NextDevice,
    AttachedDevice,
    CurrentIrp,
    Timer,
    Flags,
    Characteristics,
    Vpb,
    DeviceExtension,
    DeviceType,
    StackSize,
    Queue,
    AlignmentRequirement,
    DeviceQueue,
    Dpc,
    ActiveThreadCount,
    SecurityDescriptor,
    DeviceLock,
    SectorSize,
    Spare1,
    DeviceObjectExtension,
    Reserved,
});
same_layout!(FILE_OBJECT {
    Type,
    Size,
    DeviceObject,
    Vpb,
    FsContext,
    SectionObjectPointer,
    PrivateCacheMap,
    FinalStatus,
    RelatedFileObject,
    LockOperation,
    DeletePending,
    ReadAccess,
    WriteAccess,
    DeleteAccess,
    SharedRead,
    SharedWrite,
    SharedDelete,
    Flags,
    FileName,
    CurrentByteOffset,
    Waiters,
    Busy,
    LastLock,
    Lock,
    Event,
    CompletionContext,
    IrpListLock,
    IrpList,
    FileObjectExtension,
});
same_layout!(FILE_DISPOSITION_INFORMATION { DeleteFile });
same_layout!(FILE_DISPOSITION_INFORMATION_EX { Flags });
// `Flags` shares an anonymous union with `ReplaceIfExists` (ntifs.h, Windows 10 1607 and later).
same_layout!(FILE_RENAME_INFORMATION {
    RootDirectory,
    FileNameLength,
    FileName
});
// wdm.h's, though Vigil meets it inside FltMgr's create parameters.
same_layout!(IO_SECURITY_CONTEXT {
    SecurityQos,
    AccessState,
    DesiredAccess,
    FullCreateOptions
});
