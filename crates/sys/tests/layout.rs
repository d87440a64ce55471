//! Layout and constant tests of `vigil-sys` against independent oracles. Host-only (Linux).
//!
//! kernel-sim builds the kernel's structures for the real `vigil.sys` from these declarations,
//! and the driver reads Windows' structures through them, so a wrong offset is a silent memory
//! corruption on both sides. Every `#[repr(C)]` type and every constant is compared with the same
//! thing compiled by clang for `x86_64-pc-windows-msvc` against:
//!
//! * Debian's Wine DDK headers (`libwine-dev`: wdm.h, ntddk.h, ntifs.h, fltkernel.h);
//! * mingw-w64's DDK headers (`mingw-w64-x86-64-dev`: wdm.h, ntddk.h, ntifs.h; no fltkernel.h);
//! * for what neither declares, Microsoft's documented declaration (`layout/documented.h`, each
//!   citing its page), compiled with Wine's base types, plus the documented offsets written here.
//!
//! Sizes, alignments and every field offset are compared. The oracles are fetched on first use
//! (see `layout/oracle.rs`); if they cannot be, the tests fail, never pass silently. Two coverage
//! tests read `src/` so that a new type, field or constant without a check fails here too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::mem::{align_of, offset_of, size_of};

use vigil_sys::*;

#[path = "layout/oracle.rs"]
mod oracle;

use oracle::Oracle;

/// Where one oracle finds the C counterpart of a Rust type.
#[derive(Clone, Copy)]
struct CObject {
    oracle: Oracle,
    /// The C type (`FLT_PARAMETERS`).
    ty: &'static str,
    /// A member of it that is the counterpart (`Create` of the union), or none for the whole type.
    member: Option<&'static str>,
}

impl CObject {
    fn size(&self) -> String {
        match self.member {
            None => format!("sizeof({})", self.ty),
            Some(member) => format!("sizeof((({}*)0)->{member})", self.ty),
        }
    }

    fn align(&self) -> String {
        match self.member {
            None => format!("__alignof({})", self.ty),
            Some(member) => format!("__alignof((({}*)0)->{member})", self.ty),
        }
    }

    fn offset(&self, field: &str) -> String {
        match self.member {
            None => format!("offsetof({}, {field})", self.ty),
            Some(member) => {
                format!(
                    "offsetof({ty}, {member}.{field}) - offsetof({ty}, {member})",
                    ty = self.ty
                )
            }
        }
    }
}

/// One field of a Rust type.
struct Field {
    rust: &'static str,
    /// The C member name, or `None` for a Rust-only padding field.
    c: Option<&'static str>,
    offset: usize,
    /// For Rust-only fields: the offset the C layout implies (documented beside the table).
    rust_only_offset: Option<usize>,
}

/// How a type's whole size may legitimately differ from the oracle's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SizeRule {
    /// Size and alignment equal the oracle's.
    Exact,
    /// The WDK declares the type `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` (16 on x64);
    /// Wine and mingw-w64 omit it. The Rust type follows the WDK: its alignment is 16 and its
    /// size the oracle's rounded up to 16, while every field offset must agree.
    WdkAligned16,
}

struct TypeLayout {
    rust: &'static str,
    size: usize,
    align: usize,
    fields: Vec<Field>,
    c: Vec<CObject>,
    size_rule: SizeRule,
}

/// `layout!(RustType, "CType" [. "member"], [oracles], { field [= "c_name"] [@ offset], ... })`
///
/// `@ offset` marks a Rust-only field (no C member) and states the offset the C layout implies.
macro_rules! layout {
    (@build $ty:ty, $name:expr, $cty:literal, [$($member:literal)?], [$($oracle:ident),*], $rule:expr, { $($field:ident $(= $cname:literal)? $(@ $at:literal)?),* }) => {
        {
        let member: Option<&'static str> = first(&[$($member)?]);
        TypeLayout {
            rust: $name,
            size: size_of::<$ty>(),
            align: align_of::<$ty>(),
            fields: vec![$(
                Field {
                    rust: stringify!($field),
                    c: c_name(stringify!($field), &[$($cname)?], &[$($at)?]),
                    offset: offset_of!($ty, $field),
                    rust_only_offset: first_offset(&[$($at)?]),
                }
            ),*],
            c: vec![$(CObject { oracle: Oracle::$oracle, ty: $cty, member }),*],
            size_rule: $rule,
        }
        }
    };
    ($ty:ty, $cty:literal $(. $member:literal)?, [$($oracle:ident),*], { $($field:ident $(= $cname:literal)? $(@ $at:literal)?),* $(,)? }) => {
        layout!(@build $ty, stringify!($ty), $cty, [$($member)?], [$($oracle),*], SizeRule::Exact,
            { $($field $(= $cname)? $(@ $at)?),* })
    };
}

fn first(items: &[&'static str]) -> Option<&'static str> {
    items.first().copied()
}

fn first_offset(items: &[usize]) -> Option<usize> {
    items.first().copied()
}

fn c_name(
    rust: &'static str,
    renamed: &[&'static str],
    rust_only: &[usize],
) -> Option<&'static str> {
    if rust_only.is_empty() {
        Some(renamed.first().copied().unwrap_or(rust))
    } else {
        None
    }
}

/// Every `#[repr(C)]` type of vigil-sys (and the C types its aliases stand for).
#[expect(clippy::too_many_lines, reason = "one table, one entry per type")]
fn base_layouts() -> Vec<TypeLayout> {
    let mut device_object = layout!(DEVICE_OBJECT, "DEVICE_OBJECT", [Wine, Mingw], {
        Type, Size, ReferenceCount, DriverObject, NextDevice, AttachedDevice, CurrentIrp, Timer,
        Flags, Characteristics, Vpb, DeviceExtension, DeviceType, StackSize, Queue,
        AlignmentRequirement, DeviceQueue, Dpc, ActiveThreadCount, SecurityDescriptor, DeviceLock,
        SectorSize, Spare1, DeviceObjectExtension, Reserved,
    });
    device_object.size_rule = SizeRule::WdkAligned16;
    vec![
        // basic.rs
        layout!(UNICODE_STRING, "UNICODE_STRING", [Wine, Mingw], { Length, MaximumLength, Buffer }),
        layout!(LIST_ENTRY, "LIST_ENTRY", [Wine, Mingw], { Flink, Blink }),
        // The packed first word is `Type` (byte 0) in Wine and a union with `Lock` in mingw-w64.
        layout!(DISPATCHER_HEADER, "DISPATCHER_HEADER", [Wine, Mingw], {
            Lock = "Type", SignalState, WaitListHead,
        }),
        layout!(KEVENT, "KEVENT", [Wine, Mingw], { Header }),
        layout!(OBJECT_ATTRIBUTES, "OBJECT_ATTRIBUTES", [Wine, Mingw], {
            Length, RootDirectory, ObjectName, Attributes, SecurityDescriptor,
            SecurityQualityOfService,
        }),
        layout!(CLIENT_ID, "CLIENT_ID", [Wine, Mingw], { UniqueProcess, UniqueThread }),
        // `_Pad` is the upper half of the C union { NTSTATUS Status; PVOID Pointer; }.
        layout!(IO_STATUS_BLOCK, "IO_STATUS_BLOCK", [Wine, Mingw], {
            Status, _Pad @ 4, Information,
        }),
        layout!(KEY_VALUE_PARTIAL_INFORMATION, "KEY_VALUE_PARTIAL_INFORMATION", [Wine, Mingw], {
            TitleIndex, Type, DataLength, Data,
        }),
        // io.rs
        layout!(DRIVER_OBJECT, "DRIVER_OBJECT", [Wine, Mingw], {
            Type, Size, DeviceObject, Flags, DriverStart, DriverSize, DriverSection,
            DriverExtension, DriverName, HardwareDatabase, FastIoDispatch, DriverInit,
            DriverStartIo, DriverUnload, MajorFunction,
        }),
        device_object,
        // Wine's FILE_OBJECT is an outdated declaration (184 bytes, without the fields Vista
        // added); mingw-w64's matches the WDK's 216 bytes.
        layout!(FILE_OBJECT, "FILE_OBJECT", [Mingw], {
            Type, Size, DeviceObject, Vpb, FsContext, FsContext2, SectionObjectPointer,
            PrivateCacheMap, FinalStatus, RelatedFileObject, LockOperation, DeletePending,
            ReadAccess, WriteAccess, DeleteAccess, SharedRead, SharedWrite, SharedDelete, Flags,
            FileName, CurrentByteOffset, Waiters, Busy, LastLock, Lock, Event, CompletionContext,
            IrpListLock, IrpList, FileObjectExtension,
        }),
        // The one member is `DeleteFile` in the WDK and mingw-w64, `DoDeleteFile` in Wine.
        layout!(FILE_DISPOSITION_INFORMATION, "FILE_DISPOSITION_INFORMATION", [Mingw], {
            DeleteFile,
        }),
        layout!(FILE_DISPOSITION_INFORMATION, "FILE_DISPOSITION_INFORMATION", [Wine], {
            DeleteFile = "DoDeleteFile",
        }),
        layout!(FILE_DISPOSITION_INFORMATION_EX, "VIGIL_DOC_FILE_DISPOSITION_INFORMATION_EX", [Documented], {
            Flags,
        }),
        // `Flags` shares storage with the BOOLEAN `ReplaceIfExists` (a union in current WDKs).
        layout!(FILE_RENAME_INFORMATION, "FILE_RENAME_INFORMATION", [Wine, Mingw], {
            Flags = "ReplaceIfExists", RootDirectory, FileNameLength, FileName,
        }),
        layout!(@build FILE_LINK_INFORMATION, "FILE_LINK_INFORMATION", "FILE_LINK_INFORMATION", [],
            [Wine, Mingw], SizeRule::Exact, {
            Flags = "ReplaceIfExists", RootDirectory, FileNameLength, FileName
        }),
        // flt.rs: mingw-w64 has no fltkernel.h.
        layout!(FLT_OPERATION_REGISTRATION, "FLT_OPERATION_REGISTRATION", [Wine], {
            MajorFunction, Flags, PreOperation, PostOperation, Reserved1,
        }),
        layout!(FLT_CONTEXT_REGISTRATION, "FLT_CONTEXT_REGISTRATION", [Wine], {
            ContextType, Flags, ContextCleanupCallback, Size, PoolTag, ContextAllocateCallback,
            ContextFreeCallback, Reserved1,
        }),
        layout!(FLT_REGISTRATION, "FLT_REGISTRATION", [Wine], {
            Size, Version, Flags, ContextRegistration, OperationRegistration, FilterUnloadCallback,
            InstanceSetupCallback, InstanceQueryTeardownCallback, InstanceTeardownStartCallback,
            InstanceTeardownCompleteCallback, GenerateFileNameCallback,
            NormalizeNameComponentCallback, NormalizeContextCleanupCallback,
            TransactionNotificationCallback, NormalizeNameComponentExCallback,
            SectionNotificationCallback,
        }),
        layout!(IO_SECURITY_CONTEXT, "IO_SECURITY_CONTEXT", [Wine, Mingw], {
            SecurityQos, AccessState, DesiredAccess, FullCreateOptions,
        }),
        // `PointerAlignmentN` are the gaps that `POINTER_ALIGNMENT` (DECLSPEC_ALIGN(8) on x64) opens
        // before the next member in C.
        layout!(FLT_PARAMETERS_CREATE, "FLT_PARAMETERS"."Create", [Wine], {
            SecurityContext, Options, PointerAlignment1 @ 0xc, FileAttributes, ShareAccess, PointerAlignment2 @ 0x14,
            EaLength, EaBuffer, AllocationSize,
        }),
        layout!(FLT_PARAMETERS_WRITE, "FLT_PARAMETERS"."Write", [Wine], {
            Length, PointerAlignment1 @ 0x4, Key, ByteOffset, WriteBuffer, MdlAddress,
        }),
        // `Union` is the anonymous union { ReplaceIfExists/AdvanceOnly; ClusterCount; DeleteHandle }.
        layout!(FLT_PARAMETERS_SET_FILE_INFORMATION, "FLT_PARAMETERS"."SetFileInformation", [Wine], {
            Length, PointerAlignment1 @ 0x4, FileInformationClass, ParentOfTarget, Union = "DeleteHandle",
            InfoBuffer,
        }),
        layout!(FLT_PARAMETERS, "FLT_PARAMETERS", [Wine], {
            Create, Write, SetFileInformation, Read, QueryFileInformation, QueryEa, SetEa,
            QueryVolumeInformation, SetVolumeInformation,
            QueryDirectory = "DirectoryControl.QueryDirectory",
            NotifyDirectory = "DirectoryControl.NotifyDirectory",
            FileSystemControl = "FileSystemControl.Neither",
            DeviceIoControl = "DeviceIoControl.Neither", LockControl, QuerySecurity, SetSecurity,
            WMI, QueryQuota, SetQuota, AcquireForSectionSynchronization,
            AcquireForModifiedPageWriter, ReleaseForModifiedPageWriter, QueryOpen,
            NetworkQueryOpen, FastIoCheckIfPossible,
            MdlRead, MdlReadComplete, PrepareMdlWrite, MdlWriteComplete, MountVolume, Others,
        }),
        layout!(FLT_IO_PARAMETER_BLOCK, "FLT_IO_PARAMETER_BLOCK", [Wine], {
            IrpFlags, MajorFunction, MinorFunction, OperationFlags, Reserved, TargetFileObject,
            TargetInstance, Parameters,
        }),
        layout!(FLT_CALLBACK_DATA, "FLT_CALLBACK_DATA", [Wine], {
            Flags, Thread, Iopb, IoStatus, TagData, FilterContext, RequestorMode,
        }),
        // Neither header set declares these two: see documented.h and the offsets test below.
        layout!(FLT_RELATED_OBJECTS, "VIGIL_DOC_FLT_RELATED_OBJECTS", [Documented], {
            Size, TransactionContext, Filter, Volume, Instance, FileObject, Transaction,
        }),
        layout!(FLT_FILE_NAME_INFORMATION, "VIGIL_DOC_FLT_FILE_NAME_INFORMATION", [Documented], {
            Size, NamesParsed, Format, Name, Volume, Share, Extension, Stream, FinalComponent,
            ParentDir,
        }),
        layout!(FLT_VOLUME_PROPERTIES, "VIGIL_DOC_FLT_VOLUME_PROPERTIES", [Documented], {
            DeviceType, DeviceCharacteristics, DeviceObjectFlags, AlignmentRequirement, SectorSize,
            Flags, FileSystemDriverName, FileSystemDeviceName, RealDeviceName,
        }),
        layout!(MDL, "MDL", [Wine, Mingw], {
            Next, Size, MdlFlags, Process, MappedSystemVa, StartVa, ByteCount, ByteOffset,
        }),
    ]
}

/// Every `#[repr(C)]` type of vigil-sys: [`base_layouts`], [`identity_layouts`] and
/// [`operation_layouts`].
fn layouts() -> Vec<TypeLayout> {
    let mut all = base_layouts();
    all.extend(identity_layouts());
    all.extend(operation_layouts());
    all
}

/// The parameter-union members of `flt_ops.rs`, each against its member of Wine's `FLT_PARAMETERS`
/// (which declares the whole union of the documented page). `PointerAlignmentN` are the gaps
/// `POINTER_ALIGNMENT` opens, at the offsets written beside them.
fn operation_layouts() -> Vec<TypeLayout> {
    vec![
        layout!(FLT_PARAMETERS_READ, "FLT_PARAMETERS"."Read", [Wine], {
            Length, PointerAlignment1 @ 0x4, Key, ByteOffset, ReadBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_QUERY_FILE_INFORMATION, "FLT_PARAMETERS"."QueryFileInformation", [Wine], {
            Length, PointerAlignment1 @ 0x4, FileInformationClass, InfoBuffer,
        }),
        layout!(FLT_PARAMETERS_QUERY_EA, "FLT_PARAMETERS"."QueryEa", [Wine], {
            Length, EaList, EaListLength, PointerAlignment1 @ 0x14, EaIndex, EaBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_SET_EA, "FLT_PARAMETERS"."SetEa", [Wine], {
            Length, EaBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_VOLUME_INFORMATION, "FLT_PARAMETERS"."QueryVolumeInformation", [Wine], {
            Length, PointerAlignment1 @ 0x4, FsInformationClass, VolumeBuffer,
        }),
        layout!(FLT_PARAMETERS_VOLUME_INFORMATION, "FLT_PARAMETERS"."SetVolumeInformation", [Wine], {
            Length, PointerAlignment1 @ 0x4, FsInformationClass, VolumeBuffer,
        }),
        layout!(FLT_PARAMETERS_QUERY_DIRECTORY, "FLT_PARAMETERS"."DirectoryControl.QueryDirectory", [Wine], {
            Length, FileName, FileInformationClass, PointerAlignment1 @ 0x14, FileIndex,
            DirectoryBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_CONTROL, "FLT_PARAMETERS"."FileSystemControl.Neither", [Wine], {
            OutputBufferLength, PointerAlignment1 @ 0x4, InputBufferLength,
            PointerAlignment2 @ 0xc, ControlCode = "FsControlCode", InputBuffer, OutputBuffer,
            OutputMdlAddress,
        }),
        layout!(FLT_PARAMETERS_CONTROL, "FLT_PARAMETERS"."DeviceIoControl.Neither", [Wine], {
            OutputBufferLength, PointerAlignment1 @ 0x4, InputBufferLength,
            PointerAlignment2 @ 0xc, ControlCode = "IoControlCode", InputBuffer, OutputBuffer,
            OutputMdlAddress,
        }),
        layout!(FLT_PARAMETERS_LOCK_CONTROL, "FLT_PARAMETERS"."LockControl", [Wine], {
            Length, Key, ByteOffset, ProcessId, FailImmediately, ExclusiveLock,
        }),
        layout!(FLT_PARAMETERS_QUERY_SECURITY, "FLT_PARAMETERS"."QuerySecurity", [Wine], {
            SecurityInformation, PointerAlignment1 @ 0x4, Length, SecurityBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_SET_SECURITY, "FLT_PARAMETERS"."SetSecurity", [Wine], {
            SecurityInformation, SecurityDescriptor,
        }),
        layout!(FLT_PARAMETERS_WMI, "FLT_PARAMETERS"."WMI", [Wine], {
            ProviderId, DataPath, BufferSize, Buffer,
        }),
        layout!(FLT_PARAMETERS_QUERY_QUOTA, "FLT_PARAMETERS"."QueryQuota", [Wine], {
            Length, StartSid, SidList, SidListLength, QuotaBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_SET_QUOTA, "FLT_PARAMETERS"."SetQuota", [Wine], {
            Length, QuotaBuffer, MdlAddress,
        }),
        layout!(FLT_PARAMETERS_ACQUIRE_FOR_SECTION_SYNCHRONIZATION, "FLT_PARAMETERS"."AcquireForSectionSynchronization", [Wine], {
            SyncType, PageProtection, OutputInformation,
        }),
        layout!(FLT_PARAMETERS_ACQUIRE_FOR_MOD_WRITE, "FLT_PARAMETERS"."AcquireForModifiedPageWriter", [Wine], {
            EndingOffset, ResourceToRelease,
        }),
        layout!(FLT_PARAMETERS_RELEASE_FOR_MOD_WRITE, "FLT_PARAMETERS"."ReleaseForModifiedPageWriter", [Wine], {
            ResourceToRelease,
        }),
        layout!(FLT_PARAMETERS_QUERY_OPEN, "FLT_PARAMETERS"."QueryOpen", [Wine], {
            Irp, FileInformation, Length, FileInformationClass,
        }),
        layout!(FLT_PARAMETERS_NETWORK_QUERY_OPEN, "FLT_PARAMETERS"."NetworkQueryOpen", [Wine], {
            Irp, NetworkInformation,
        }),
        layout!(FLT_PARAMETERS_FAST_IO_CHECK_IF_POSSIBLE, "FLT_PARAMETERS"."FastIoCheckIfPossible", [Wine], {
            FileOffset, Length, PointerAlignment1 @ 0xc, LockKey, PointerAlignment2 @ 0x14,
            CheckForReadOperation,
        }),
        layout!(FLT_PARAMETERS_MDL_TRANSFER, "FLT_PARAMETERS"."MdlRead", [Wine], {
            FileOffset, Length, PointerAlignment1 @ 0xc, Key, MdlChain,
        }),
        layout!(FLT_PARAMETERS_MDL_TRANSFER, "FLT_PARAMETERS"."PrepareMdlWrite", [Wine], {
            FileOffset, Length, PointerAlignment1 @ 0xc, Key, MdlChain,
        }),
        layout!(FLT_PARAMETERS_MDL_READ_COMPLETE, "FLT_PARAMETERS"."MdlReadComplete", [Wine], {
            MdlChain,
        }),
        layout!(FLT_PARAMETERS_MDL_WRITE_COMPLETE, "FLT_PARAMETERS"."MdlWriteComplete", [Wine], {
            FileOffset, MdlChain,
        }),
        layout!(FLT_PARAMETERS_MOUNT_VOLUME, "FLT_PARAMETERS"."MountVolume", [Wine], {
            DeviceType,
        }),
        layout!(FLT_PARAMETERS_NOTIFY_DIRECTORY, "FLT_PARAMETERS"."DirectoryControl.NotifyDirectory", [Wine], {
            Length, PointerAlignment1 @ 0x4, CompletionFilter, PointerAlignment2 @ 0xc, Spare1,
            PointerAlignment3 @ 0x14, Spare2, PointerAlignment4 @ 0x1c, DirectoryBuffer,
            MdlAddress,
        }),
    ]
}

/// The process-identity and file-identity types (process.rs, io.rs).
fn identity_layouts() -> Vec<TypeLayout> {
    vec![
        // process.rs (`Flags` is the union's ULONG view; the Wine probe does not include ntddk.h).
        layout!(PS_CREATE_NOTIFY_INFO, "PS_CREATE_NOTIFY_INFO", [Mingw], {
            Size, Flags, ParentProcessId, CreatingThreadId, FileObject, ImageFileName, CommandLine,
            CreationStatus,
        }),
        layout!(
            FILE_INTERNAL_INFORMATION,
            "FILE_INTERNAL_INFORMATION",
            [Wine, Mingw],
            { IndexNumber }
        ),
        layout!(FILE_ID_128, "FILE_ID_128", [Wine], { Identifier }),
        layout!(FILE_ID_INFORMATION, "FILE_ID_INFORMATION", [Wine], { VolumeSerialNumber, FileId }),
        layout!(SID_AND_ATTRIBUTES, "SID_AND_ATTRIBUTES", [Wine, Mingw], { Sid, Attributes }),
        layout!(PROCESS_BASIC_INFORMATION, "PROCESS_BASIC_INFORMATION", [Mingw], {
            ExitStatus, PebBaseAddress, AffinityMask, BasePriority, UniqueProcessId,
            InheritedFromUniqueProcessId,
        }),
        layout!(TOKEN_USER, "TOKEN_USER", [Wine, Mingw], { User }),
    ]
}

/// Compares every table entry that `oracle` checks; returns one line per disagreement.
fn compare_layouts(oracle: Oracle) -> Vec<String> {
    let table = layouts();
    let mut expressions = Vec::new();
    // (type, what, rust value, index of the C expression)
    let mut expected: Vec<(String, String, i128, usize)> = Vec::new();
    let mut checked = 0;
    for layout in &table {
        for c in layout.c.iter().filter(|c| c.oracle == oracle) {
            checked += 1;
            let mut push = |what: String, rust: usize, expression: String| {
                expected.push((layout.rust.to_owned(), what, widen(rust), expressions.len()));
                expressions.push(expression);
            };
            let (size, align) = match layout.size_rule {
                SizeRule::Exact => (layout.size, layout.align),
                // Compared with the oracle's unaligned declaration: 8-byte alignment, the
                // size before rounding up to 16 (asserted on its own in `device_object_...`).
                SizeRule::WdkAligned16 => (last_field_end(layout), 8),
            };
            push("size".into(), size, c.size());
            push("alignment".into(), align, c.align());
            for field in &layout.fields {
                if let Some(name) = field.c {
                    push(
                        format!("offset of {}", field.rust),
                        field.offset,
                        c.offset(name),
                    );
                }
            }
        }
    }
    assert!(checked > 0, "no type is checked against {oracle}");
    let output = oracle::probe(oracle, "layouts", &expressions);
    assert!(
        output.errors.is_empty(),
        "clang could not compile the {oracle} layout probe:\n{}",
        output.errors.join("\n")
    );
    expected
        .into_iter()
        .filter_map(|(ty, what, rust, index)| match output.values.get(&index) {
            Some(&c) if c == rust => None,
            Some(&c) => Some(format!(
                "{ty}: {what}: Rust {rust:#x}, C {c:#x} ({})",
                expressions[index]
            )),
            None => Some(format!(
                "{ty}: {what}: no value read back for `{}`",
                expressions[index]
            )),
        })
        .collect()
}

/// The end of a WDK-aligned type's fields: what its size is without the 16-byte alignment.
/// `DEVICE_OBJECT` ends with a pointer, so that end is its 8-aligned size.
fn last_field_end(layout: &TypeLayout) -> usize {
    let last = layout.fields.iter().map(|f| f.offset).max().unwrap_or(0);
    last + size_of::<PVOID>()
}

fn widen<T: TryInto<i128>>(value: T) -> i128 {
    value
        .try_into()
        .unwrap_or_else(|_| panic!("value does not fit in i128"))
}

#[test]
fn layouts_match_wine_ddk_headers() {
    let mismatches = compare_layouts(Oracle::Wine);
    assert!(
        mismatches.is_empty(),
        "layouts differ from {}:\n{}",
        Oracle::Wine,
        mismatches.join("\n")
    );
}

#[test]
fn layouts_match_mingw_ddk_headers() {
    let mismatches = compare_layouts(Oracle::Mingw);
    assert!(
        mismatches.is_empty(),
        "layouts differ from {}:\n{}",
        Oracle::Mingw,
        mismatches.join("\n")
    );
}

#[test]
fn layouts_match_documented_declarations() {
    let mismatches = compare_layouts(Oracle::Documented);
    assert!(
        mismatches.is_empty(),
        "layouts differ from {}:\n{}",
        Oracle::Documented,
        mismatches.join("\n")
    );
}

/// The offsets of the two types that no header declares, written out from the documented
/// declarations (x64: pointers 8 bytes, `UNICODE_STRING` 16 bytes aligned to 8), so that a
/// reader can check them against the pages without running clang.
#[test]
fn documented_offsets_of_types_no_header_declares() {
    // https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_related_objects
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, Size), 0x00);
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, TransactionContext), 0x02);
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, Filter), 0x08);
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, Volume), 0x10);
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, Instance), 0x18);
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, FileObject), 0x20);
    assert_eq!(offset_of!(FLT_RELATED_OBJECTS, Transaction), 0x28);
    assert_eq!(size_of::<FLT_RELATED_OBJECTS>(), 0x30);
    // https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_file_name_information
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Size), 0x00);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, NamesParsed), 0x02);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Format), 0x04);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Name), 0x08);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Volume), 0x18);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Share), 0x28);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Extension), 0x38);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, Stream), 0x48);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, FinalComponent), 0x58);
    assert_eq!(offset_of!(FLT_FILE_NAME_INFORMATION, ParentDir), 0x68);
    assert_eq!(size_of::<FLT_FILE_NAME_INFORMATION>(), 0x78);
    // The parameter union's members that Vigil reads are checked against Wine's fltkernel.h,
    // whose declarations match https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_parameters
    // (`POINTER_ALIGNMENT` is `DECLSPEC_ALIGN(8)` on x64: FileAttributes, EaLength, Key and
    // FileInformationClass each start on an 8-byte boundary).
    assert_eq!(size_of::<FLT_PARAMETERS>(), 0x30);
}

/// The WDK's `DEVICE_OBJECT` is `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`: 16-byte aligned,
/// 0x150 bytes on x64, while Wine and mingw-w64 declare 0x148 bytes (their offsets are compared
/// above; `Flags` is at 0x30 in all three).
#[test]
fn device_object_has_the_wdk_alignment() {
    assert_eq!(align_of::<DEVICE_OBJECT>(), 16);
    assert_eq!(size_of::<DEVICE_OBJECT>(), 0x150);
    assert_eq!(offset_of!(DEVICE_OBJECT, Flags), 0x30);
    let table = layouts();
    let entry = table
        .iter()
        .find(|t| t.rust == "DEVICE_OBJECT")
        .expect("DEVICE_OBJECT in the table");
    assert_eq!(last_field_end(entry), 0x148, "the headers' unaligned size");
}

/// `(name, value)` of constants, widened to i128.
macro_rules! consts {
    ($($name:ident),* $(,)?) => { vec![$((stringify!($name), widen($name))),*] };
}

/// Every constant of vigil-sys.
#[expect(clippy::too_many_lines, reason = "one table, one line per constant")]
fn constants() -> Vec<(&'static str, i128)> {
    let mut table = consts![
        // basic.rs
        TRUE,
        FALSE,
        KernelMode,
        UserMode,
        PASSIVE_LEVEL,
        APC_LEVEL,
        DISPATCH_LEVEL,
        NotificationEvent,
        SynchronizationEvent,
        Executive,
        OBJ_CASE_INSENSITIVE,
        OBJ_KERNEL_HANDLE,
        SYNCHRONIZE,
        THREAD_ALL_ACCESS,
        KEY_READ,
        POOL_FLAG_USE_QUOTA,
        POOL_FLAG_UNINITIALIZED,
        POOL_FLAG_RAISE_ON_FAILURE,
        POOL_FLAG_NON_PAGED,
        POOL_FLAG_PAGED,
        NonPagedPoolNx,
        PagedPool,
        KeyValuePartialInformation,
        REG_SZ,
        REG_DWORD,
        REG_MULTI_SZ,
        // io.rs
        IRP_MJ_CREATE,
        IRP_MJ_CLOSE,
        IRP_MJ_READ,
        IRP_MJ_WRITE,
        IRP_MJ_SET_INFORMATION,
        IRP_MJ_CLEANUP,
        IRP_MJ_MAXIMUM_FUNCTION,
        IRP_NOCACHE,
        IRP_PAGING_IO,
        IRP_SYNCHRONOUS_PAGING_IO,
        DO_DEVICE_INITIALIZING,
        FILE_DEVICE_CD_ROM_FILE_SYSTEM,
        FILE_DEVICE_DISK_FILE_SYSTEM,
        FILE_DEVICE_MAILSLOT,
        FILE_DEVICE_NAMED_PIPE,
        FILE_DEVICE_NETWORK_FILE_SYSTEM,
        FILE_DEVICE_UNKNOWN,
        FILE_DEVICE_SECURE_OPEN,
        FILE_SUPERSEDE,
        FILE_OPEN,
        FILE_CREATE,
        FILE_OPEN_IF,
        FILE_OVERWRITE,
        FILE_OVERWRITE_IF,
        FILE_DIRECTORY_FILE,
        FILE_DELETE_ON_CLOSE,
        FILE_OPEN_BY_FILE_ID,
        FILE_SUPERSEDED,
        FILE_OPENED,
        FILE_CREATED,
        FILE_OVERWRITTEN,
        FILE_WRITE_DATA,
        FILE_APPEND_DATA,
        DELETE,
        GENERIC_WRITE,
        GENERIC_READ,
        FileRenameInformation,
        FileInternalInformation,
        FileIdInformation,
        FileLinkInformation,
        FileDispositionInformation,
        FileDispositionInformationEx,
        FileRenameInformationEx,
        FileLinkInformationEx,
        FILE_DISPOSITION_DELETE,
        FILE_DISPOSITION_POSIX_SEMANTICS,
        FILE_DISPOSITION_ON_CLOSE,
        // flt.rs
        FLT_REGISTRATION_VERSION,
        FLTFL_REGISTRATION_DO_NOT_SUPPORT_SERVICE_STOP,
        FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS,
        IRP_MJ_OPERATION_END,
        FLTFL_OPERATION_REGISTRATION_SKIP_PAGING_IO,
        FLTFL_OPERATION_REGISTRATION_SKIP_CACHED_IO,
        FLTFL_OPERATION_REGISTRATION_SKIP_NON_DASD_IO,
        FLT_PREOP_SUCCESS_WITH_CALLBACK,
        FLT_PREOP_SUCCESS_NO_CALLBACK,
        FLT_PREOP_PENDING,
        FLTFL_IO_OPERATION_NON_CACHED,
        FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET,
        CriticalWorkQueue,
        DelayedWorkQueue,
        MDL_MAPPED_TO_SYSTEM_VA,
        MDL_SOURCE_IS_NONPAGED_POOL,
        FLT_PREOP_DISALLOW_FASTIO,
        FLT_PREOP_COMPLETE,
        FLT_PREOP_SYNCHRONIZE,
        FLT_PREOP_DISALLOW_FSFILTER_IO,
        FLT_POSTOP_FINISHED_PROCESSING,
        FLT_POSTOP_MORE_PROCESSING_REQUIRED,
        FLT_POSTOP_DISALLOW_FSFILTER_IO,
        FLTFL_POST_OPERATION_DRAINING,
        FLTFL_FILTER_UNLOAD_MANDATORY,
        FLTFL_CALLBACK_DATA_IRP_OPERATION,
        FLTFL_CALLBACK_DATA_FAST_IO_OPERATION,
        FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION,
        FLTFL_CALLBACK_DATA_GENERATED_IO,
        FLTFL_CALLBACK_DATA_POST_OPERATION,
        FLTFL_CALLBACK_DATA_DIRTY,
        FLT_FSTYPE_UNKNOWN,
        FLT_FSTYPE_RAW,
        FLT_FSTYPE_NTFS,
        FLT_FSTYPE_FAT,
        FLT_FSTYPE_CDFS,
        FLT_FSTYPE_UDFS,
        FLT_FSTYPE_LANMAN,
        FLT_FSTYPE_WEBDAV,
        FLT_FSTYPE_RDPDR,
        FLT_FSTYPE_NFS,
        FLT_FSTYPE_MUP,
        FLT_FSTYPE_EXFAT,
        FLT_FSTYPE_NPFS,
        FLT_FSTYPE_MSFS,
        FLT_FSTYPE_CSVFS,
        FLT_FSTYPE_REFS,
        FLT_VOLUME_CONTEXT,
        FLT_INSTANCE_CONTEXT,
        FLT_FILE_CONTEXT,
        FLT_STREAM_CONTEXT,
        FLT_STREAMHANDLE_CONTEXT,
        FLT_TRANSACTION_CONTEXT,
        FLT_CONTEXT_END,
        FLT_SET_CONTEXT_REPLACE_IF_EXISTS,
        FLT_SET_CONTEXT_KEEP_IF_EXISTS,
        FLT_FILE_NAME_NORMALIZED,
        FLT_FILE_NAME_OPENED,
        FLT_FILE_NAME_SHORT,
        FLT_FILE_NAME_QUERY_DEFAULT,
        FLT_FILE_NAME_QUERY_CACHE_ONLY,
        FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY,
        FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP,
        FLT_PORT_CONNECT,
        FLT_PORT_ALL_ACCESS,
        // status.rs
        STATUS_SUCCESS,
        STATUS_REPARSE,
        STATUS_ALERTED,
        STATUS_TIMEOUT,
        STATUS_PENDING,
        STATUS_DATATYPE_MISALIGNMENT,
        STATUS_BUFFER_OVERFLOW,
        STATUS_UNSUCCESSFUL,
        STATUS_NOT_IMPLEMENTED,
        STATUS_ACCESS_VIOLATION,
        STATUS_INVALID_PARAMETER,
        STATUS_INVALID_DEVICE_REQUEST,
        STATUS_ACCESS_DENIED,
        STATUS_BUFFER_TOO_SMALL,
        STATUS_OBJECT_NAME_NOT_FOUND,
        STATUS_OBJECT_NAME_COLLISION,
        STATUS_PORT_DISCONNECTED,
        STATUS_DELETE_PENDING,
        STATUS_REVISION_MISMATCH,
        STATUS_INSUFFICIENT_RESOURCES,
        STATUS_DEVICE_NOT_READY,
        STATUS_NOT_SUPPORTED,
        STATUS_INVALID_USER_BUFFER,
        STATUS_INVALID_DEVICE_STATE,
        STATUS_INVALID_BUFFER_SIZE,
        STATUS_NOT_FOUND,
        STATUS_CONNECTION_COUNT_LIMIT,
        STATUS_FLT_CONTEXT_ALREADY_DEFINED,
        STATUS_FLT_DELETING_OBJECT,
        STATUS_END_OF_FILE,
        STATUS_FLT_NOT_SAFE_TO_POST_OPERATION,
        STATUS_OBJECT_PATH_SYNTAX_BAD,
        STATUS_MOUNT_POINT_NOT_RESOLVED,
        STATUS_FLT_DO_NOT_ATTACH,
        STATUS_FLT_DO_NOT_DETACH,
        STATUS_FLT_NO_WAITER_FOR_REPLY,
        STATUS_INVALID_HANDLE,
        STATUS_OBJECT_TYPE_MISMATCH,
        STATUS_OBJECT_NAME_INVALID,
        STATUS_OBJECT_PATH_NOT_FOUND,
        STATUS_FILE_IS_A_DIRECTORY,
        STATUS_DIRECTORY_NOT_EMPTY,
        STATUS_NOT_A_DIRECTORY,
        STATUS_CANNOT_DELETE,
        STATUS_FILE_CLOSED,
        STATUS_VOLUME_DISMOUNTED,
        STATUS_FLT_INVALID_NAME_REQUEST,
        STATUS_FLT_CONTEXT_ALLOCATION_NOT_FOUND,
        STATUS_FLT_NAME_CACHE_MISS,
        STATUS_FLT_CONTEXT_ALREADY_LINKED,
        STATUS_INFO_LENGTH_MISMATCH,
        ProcessImageFileName,
        ProcessBasicInformation,
        // process.rs
        TokenUser,
        TokenSessionId,
        IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
    ];
    // A handle value, not an integer: compared as the address it is.
    table.push(("NT_CURRENT_PROCESS", widen(NT_CURRENT_PROCESS.addr())));
    table.extend(operation_constants());
    table
}

/// The major function codes of `flt_ops.rs` (wdm.h's in both header sets; the pseudo-operations
/// are in [`DOCUMENTED_CONSTANTS`]).
fn operation_constants() -> Vec<(&'static str, i128)> {
    consts![
        IRP_MJ_CREATE_NAMED_PIPE,
        IRP_MJ_QUERY_INFORMATION,
        IRP_MJ_QUERY_EA,
        IRP_MJ_SET_EA,
        IRP_MJ_FLUSH_BUFFERS,
        IRP_MJ_QUERY_VOLUME_INFORMATION,
        IRP_MJ_SET_VOLUME_INFORMATION,
        IRP_MJ_DIRECTORY_CONTROL,
        IRP_MJ_FILE_SYSTEM_CONTROL,
        IRP_MJ_DEVICE_CONTROL,
        IRP_MJ_INTERNAL_DEVICE_CONTROL,
        IRP_MJ_SHUTDOWN,
        IRP_MJ_LOCK_CONTROL,
        IRP_MJ_CREATE_MAILSLOT,
        IRP_MJ_QUERY_SECURITY,
        IRP_MJ_SET_SECURITY,
        IRP_MJ_POWER,
        IRP_MJ_SYSTEM_CONTROL,
        IRP_MJ_DEVICE_CHANGE,
        IRP_MJ_QUERY_QUOTA,
        IRP_MJ_SET_QUOTA,
        IRP_MJ_PNP,
        IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION,
        IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION,
        IRP_MJ_ACQUIRE_FOR_MOD_WRITE,
        IRP_MJ_RELEASE_FOR_MOD_WRITE,
        IRP_MJ_ACQUIRE_FOR_CC_FLUSH,
        IRP_MJ_RELEASE_FOR_CC_FLUSH,
        IRP_MJ_QUERY_OPEN,
        IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE,
        IRP_MJ_NETWORK_QUERY_OPEN,
        IRP_MJ_MDL_READ,
        IRP_MJ_MDL_READ_COMPLETE,
        IRP_MJ_PREPARE_MDL_WRITE,
        IRP_MJ_MDL_WRITE_COMPLETE,
        IRP_MJ_VOLUME_MOUNT,
        IRP_MJ_VOLUME_DISMOUNT,
    ]
}

/// The reference pages cited by [`DOCUMENTED_CONSTANTS`].
const POOL_FLAGS_PAGE: &str =
    "https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/pool_flags";
const DISPOSITION_EX_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_file_disposition_information_ex";
const REGISTRATION_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_registration";
const OPERATION_REGISTRATION_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_operation_registration";
const POST_CALLBACK_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_post_operation_callback";
const UNLOAD_CALLBACK_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_filter_unload_callback";
const CALLBACK_DATA_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_callback_data";
const CONTEXT_REGISTRATION_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_context_registration";
const SET_CONTEXT_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltsetstreamcontext";
const NAME_OPTIONS_PAGE: &str =
    "https://learn.microsoft.com/en-us/windows-hardware/drivers/ifs/flt-file-name-options";
const CURRENT_PROCESS_PAGE: &str =
    "https://learn.microsoft.com/en-us/windows-hardware/drivers/kernel/zwcurrentprocess";
const READ_FILE_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltreadfile";
const PARAMETERS_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_parameters";
const PORT_PAGE: &str = "https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltcreatecommunicationport";

/// Constants neither header set defines (Wine's fltkernel.h is a small subset; neither knows
/// `ExAllocatePool2` or `FILE_DISPOSITION_INFORMATION_EX`), with the value of the WDK's
/// `wdm.h`/`ntddk.h`/`fltKernel.h` and the page that documents the constant. Pages that show
/// only the name (most fltkernel ones) are cited for meaning; the value is the header's.
const DOCUMENTED_CONSTANTS: &[(&str, i128, &str)] = &[
    // `NtCurrentProcess()`, the pseudo-handle `(HANDLE)(LONG_PTR)-1`.
    (
        "NT_CURRENT_PROCESS",
        0xFFFF_FFFF_FFFF_FFFF,
        CURRENT_PROCESS_PAGE,
    ),
    ("POOL_FLAG_USE_QUOTA", 0x1, POOL_FLAGS_PAGE),
    ("POOL_FLAG_UNINITIALIZED", 0x2, POOL_FLAGS_PAGE),
    ("POOL_FLAG_RAISE_ON_FAILURE", 0x20, POOL_FLAGS_PAGE),
    ("POOL_FLAG_NON_PAGED", 0x40, POOL_FLAGS_PAGE),
    ("POOL_FLAG_PAGED", 0x100, POOL_FLAGS_PAGE),
    ("FILE_DISPOSITION_DELETE", 0x1, DISPOSITION_EX_PAGE),
    ("FILE_DISPOSITION_POSIX_SEMANTICS", 0x2, DISPOSITION_EX_PAGE),
    ("FILE_DISPOSITION_ON_CLOSE", 0x8, DISPOSITION_EX_PAGE),
    ("FLT_REGISTRATION_VERSION", 0x0203, REGISTRATION_PAGE),
    (
        "FLTFL_REGISTRATION_DO_NOT_SUPPORT_SERVICE_STOP",
        0x1,
        REGISTRATION_PAGE,
    ),
    (
        "FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS",
        0x2,
        REGISTRATION_PAGE,
    ),
    ("IRP_MJ_OPERATION_END", 0x80, OPERATION_REGISTRATION_PAGE),
    ("FLTFL_POST_OPERATION_DRAINING", 0x1, POST_CALLBACK_PAGE),
    ("FLTFL_FILTER_UNLOAD_MANDATORY", 0x1, UNLOAD_CALLBACK_PAGE),
    ("FLTFL_CALLBACK_DATA_IRP_OPERATION", 0x1, CALLBACK_DATA_PAGE),
    (
        "FLTFL_CALLBACK_DATA_FAST_IO_OPERATION",
        0x2,
        CALLBACK_DATA_PAGE,
    ),
    (
        "FLTFL_CALLBACK_DATA_FS_FILTER_OPERATION",
        0x4,
        CALLBACK_DATA_PAGE,
    ),
    (
        "FLTFL_CALLBACK_DATA_GENERATED_IO",
        0x0001_0000,
        CALLBACK_DATA_PAGE,
    ),
    (
        "FLTFL_CALLBACK_DATA_POST_OPERATION",
        0x0008_0000,
        CALLBACK_DATA_PAGE,
    ),
    ("FLTFL_CALLBACK_DATA_DIRTY", 0x8000_0000, CALLBACK_DATA_PAGE),
    ("FLT_CONTEXT_END", 0xffff, CONTEXT_REGISTRATION_PAGE),
    ("FLT_SET_CONTEXT_REPLACE_IF_EXISTS", 0, SET_CONTEXT_PAGE),
    ("FLT_SET_CONTEXT_KEEP_IF_EXISTS", 1, SET_CONTEXT_PAGE),
    ("FLT_FILE_NAME_NORMALIZED", 0x01, NAME_OPTIONS_PAGE),
    ("FLT_FILE_NAME_OPENED", 0x02, NAME_OPTIONS_PAGE),
    ("FLT_FILE_NAME_SHORT", 0x03, NAME_OPTIONS_PAGE),
    ("FLT_FILE_NAME_QUERY_DEFAULT", 0x0100, NAME_OPTIONS_PAGE),
    ("FLT_FILE_NAME_QUERY_CACHE_ONLY", 0x0200, NAME_OPTIONS_PAGE),
    (
        "FLT_FILE_NAME_QUERY_FILESYSTEM_ONLY",
        0x0300,
        NAME_OPTIONS_PAGE,
    ),
    (
        "FLT_FILE_NAME_QUERY_ALWAYS_ALLOW_CACHE_LOOKUP",
        0x0400,
        NAME_OPTIONS_PAGE,
    ),
    // FLT_PORT_CONNECT | STANDARD_RIGHTS_ALL (0x001F0000).
    ("FLT_PORT_CONNECT", 0x0001, PORT_PAGE),
    ("FLTFL_IO_OPERATION_NON_CACHED", 0x1, READ_FILE_PAGE),
    (
        "FLTFL_IO_OPERATION_DO_NOT_UPDATE_BYTE_OFFSET",
        0x4,
        READ_FILE_PAGE,
    ),
    ("FLT_PORT_ALL_ACCESS", 0x001F_0001, PORT_PAGE),
    // Filter Manager's pseudo-operations, `((UCHAR)-1)` to `((UCHAR)-20)` in fltKernel.h (Wine's
    // fltkernel.h has none of them); the page lists them with their FLT_PARAMETERS members.
    (
        "IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION",
        0xff,
        PARAMETERS_PAGE,
    ),
    (
        "IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION",
        0xfe,
        PARAMETERS_PAGE,
    ),
    ("IRP_MJ_ACQUIRE_FOR_MOD_WRITE", 0xfd, PARAMETERS_PAGE),
    ("IRP_MJ_RELEASE_FOR_MOD_WRITE", 0xfc, PARAMETERS_PAGE),
    ("IRP_MJ_ACQUIRE_FOR_CC_FLUSH", 0xfb, PARAMETERS_PAGE),
    ("IRP_MJ_RELEASE_FOR_CC_FLUSH", 0xfa, PARAMETERS_PAGE),
    ("IRP_MJ_QUERY_OPEN", 0xf9, PARAMETERS_PAGE),
    ("IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE", 0xf3, PARAMETERS_PAGE),
    ("IRP_MJ_NETWORK_QUERY_OPEN", 0xf2, PARAMETERS_PAGE),
    ("IRP_MJ_MDL_READ", 0xf1, PARAMETERS_PAGE),
    ("IRP_MJ_MDL_READ_COMPLETE", 0xf0, PARAMETERS_PAGE),
    ("IRP_MJ_PREPARE_MDL_WRITE", 0xef, PARAMETERS_PAGE),
    ("IRP_MJ_MDL_WRITE_COMPLETE", 0xee, PARAMETERS_PAGE),
    ("IRP_MJ_VOLUME_MOUNT", 0xed, PARAMETERS_PAGE),
    ("IRP_MJ_VOLUME_DISMOUNT", 0xec, PARAMETERS_PAGE),
];

/// Values of `constants()` as `oracle` defines them: (checked names, mismatch lines).
fn compare_constants(oracle: Oracle) -> (BTreeSet<&'static str>, Vec<String>) {
    let table = constants();
    let mut remaining: Vec<(&'static str, i128)> = table.clone();
    // clang names every undeclared identifier; drop those and compile again.
    for _attempt in 0..3 {
        let expressions: Vec<String> = remaining
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        let output = oracle::probe(oracle, "constants", &expressions);
        if output.errors.is_empty() {
            let mut mismatches = Vec::new();
            let mut checked = BTreeSet::new();
            for (index, (name, rust)) in remaining.iter().enumerate() {
                match output.values.get(&index) {
                    Some(c) if c == rust => {
                        checked.insert(*name);
                    }
                    Some(c) => mismatches.push(format!("{name}: Rust {rust:#x}, {oracle} {c:#x}")),
                    None => mismatches.push(format!("{name}: no value read back")),
                }
            }
            return (checked, mismatches);
        }
        let undeclared: BTreeSet<String> = output.undeclared.into_iter().collect();
        let other: Vec<&String> = output
            .errors
            .iter()
            .filter(|e| !e.contains("use of undeclared identifier"))
            .collect();
        assert!(
            other.is_empty() && !undeclared.is_empty(),
            "clang could not compile the {oracle} constants probe:\n{}",
            output.errors.join("\n")
        );
        remaining.retain(|(name, _)| !undeclared.contains(*name));
    }
    panic!("the {oracle} constants probe did not settle");
}

#[test]
fn constants_match_the_headers_that_define_them() {
    let mut report = String::new();
    let mut checked_by: BTreeMap<&str, Vec<Oracle>> = BTreeMap::new();
    for oracle in Oracle::HEADERS {
        let (checked, mismatches) = compare_constants(oracle);
        for line in mismatches {
            writeln!(report, "{line}").unwrap();
        }
        for name in checked {
            checked_by.entry(name).or_default().push(oracle);
        }
    }
    let table = constants();
    for (name, value, page) in DOCUMENTED_CONSTANTS {
        let rust = table.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        if rust != Some(*value) {
            writeln!(
                report,
                "{name}: Rust {rust:?}, documented {value:#x} ({page})"
            )
            .unwrap();
        }
    }
    let documented: BTreeSet<&str> = DOCUMENTED_CONSTANTS.iter().map(|(n, _, _)| *n).collect();
    for (name, _) in &table {
        if !checked_by.contains_key(name) && !documented.contains(name) {
            writeln!(
                report,
                "{name}: defined by neither header set and not in DOCUMENTED_CONSTANTS"
            )
            .unwrap();
        }
    }
    assert!(
        report.is_empty(),
        "constants disagree with their oracles:\n{report}"
    );
}

/// What the sources declare: `#[repr(C)]` types with their fields, and constants.
struct Declared {
    types: BTreeMap<String, Vec<String>>,
    constants: BTreeSet<String>,
}

/// Reads `src/*.rs` (rustfmt-formatted): the crate's own inventory, so that the tables above
/// cannot silently fall behind it.
fn declared_in_sources() -> Declared {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut declared = Declared {
        types: BTreeMap::new(),
        constants: BTreeSet::new(),
    };
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .expect("crates/sys/src")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source file");
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line.starts_with("pub const fn ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("pub const ") {
                if let Some((name, _)) = rest.split_once(':') {
                    declared.constants.insert(name.trim().to_owned());
                }
            } else if line.starts_with("#[repr(C") {
                let header =
                    lines.find(|l| l.starts_with("pub struct ") || l.starts_with("pub union "));
                let header = header.expect("a repr(C) attribute is followed by a type");
                let name = header
                    .split_whitespace()
                    .nth(2)
                    .expect("type name")
                    .trim_end_matches('{');
                let mut fields = Vec::new();
                for field in lines.by_ref() {
                    if field == "}" {
                        break;
                    }
                    if let Some((field_name, _)) =
                        field.strip_prefix("pub ").and_then(|f| f.split_once(':'))
                    {
                        fields.push(field_name.trim().to_owned());
                    }
                }
                declared.types.insert(name.to_owned(), fields);
            }
        }
    }
    declared
}

#[test]
fn every_repr_c_type_and_field_is_in_the_layout_table() {
    let declared = declared_in_sources();
    assert!(
        declared.types.len() >= 20,
        "the source scan found too few types: {:?}",
        declared.types.keys()
    );
    let table = layouts();
    let mut report = String::new();
    for (name, fields) in &declared.types {
        match table.iter().find(|t| t.rust == name) {
            None => writeln!(report, "{name}: no entry in layouts()").unwrap(),
            Some(entry) => {
                let listed: Vec<&str> = entry.fields.iter().map(|f| f.rust).collect();
                if listed != *fields {
                    writeln!(
                        report,
                        "{name}: fields in src {fields:?}, in layouts() {listed:?}"
                    )
                    .unwrap();
                }
                if entry.c.is_empty() {
                    writeln!(report, "{name}: no oracle checks it").unwrap();
                }
            }
        }
    }
    for entry in &table {
        for field in entry.fields.iter().filter(|f| f.c.is_none()) {
            if field.rust_only_offset != Some(field.offset) {
                writeln!(
                    report,
                    "{}.{}: Rust-only field at {:#x}, expected {:?}",
                    entry.rust, field.rust, field.offset, field.rust_only_offset
                )
                .unwrap();
            }
        }
    }
    assert!(
        report.is_empty(),
        "layout table out of date with crates/sys/src:\n{report}"
    );
}

#[test]
fn every_constant_is_in_the_constant_table() {
    let declared = declared_in_sources();
    assert!(
        declared.constants.len() >= 100,
        "the source scan found too few constants"
    );
    let listed: BTreeSet<String> = constants().iter().map(|(n, _)| (*n).to_owned()).collect();
    let missing: Vec<&String> = declared.constants.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "constants without a check in constants(): {missing:?}"
    );
}
