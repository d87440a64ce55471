/* Declarations that neither Wine nor mingw-w64 provides, transcribed from the "Syntax" block of
 * Microsoft's reference pages, so that clang computes their x64 layout from the documented
 * declaration (with Wine's base types) and the Rust test compares it like any oracle's.
 * Prefixed VIGIL_DOC_ so that they never collide with a header that gains the real thing. */

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_related_objects
 * (Wine's fltkernel.h declares the type only as an incomplete `struct _FLT_RELATED_OBJECTS`.) */
typedef struct VIGIL_DOC_FLT_RELATED_OBJECTS {
    USHORT Size;
    USHORT TransactionContext;
    PFLT_FILTER Filter;
    void *Volume;          /* PFLT_VOLUME: an opaque pointer */
    PFLT_INSTANCE Instance;
    PFILE_OBJECT FileObject;
    void *Transaction;     /* PKTRANSACTION: an opaque pointer */
} VIGIL_DOC_FLT_RELATED_OBJECTS;

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_file_name_information
 * FLT_FILE_NAME_PARSED_FLAGS is a USHORT, FLT_FILE_NAME_OPTIONS a ULONG (fltkernel.h). */
typedef struct VIGIL_DOC_FLT_FILE_NAME_INFORMATION {
    USHORT Size;
    USHORT NamesParsed;
    ULONG Format;
    UNICODE_STRING Name;
    UNICODE_STRING Volume;
    UNICODE_STRING Share;
    UNICODE_STRING Extension;
    UNICODE_STRING Stream;
    UNICODE_STRING FinalComponent;
    UNICODE_STRING ParentDir;
} VIGIL_DOC_FLT_FILE_NAME_INFORMATION;

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_file_disposition_information_ex
 * (Wine 8 and mingw-w64 10 have only the older FILE_DISPOSITION_INFORMATION.) */
typedef struct VIGIL_DOC_FILE_DISPOSITION_INFORMATION_EX {
    ULONG Flags;
} VIGIL_DOC_FILE_DISPOSITION_INFORMATION_EX;

/* https://learn.microsoft.com/en-us/windows-hardware/drivers/ddi/fltkernel/ns-fltkernel-_flt_volume_properties
 * (Wine's fltkernel.h lacks it; DEVICE_TYPE is a ULONG). */
typedef struct VIGIL_DOC_FLT_VOLUME_PROPERTIES {
    ULONG DeviceType;
    ULONG DeviceCharacteristics;
    ULONG DeviceObjectFlags;
    ULONG AlignmentRequirement;
    USHORT SectorSize;
    USHORT Flags;
    UNICODE_STRING FileSystemDriverName;
    UNICODE_STRING FileSystemDeviceName;
    UNICODE_STRING RealDeviceName;
} VIGIL_DOC_FLT_VOLUME_PROPERTIES;
