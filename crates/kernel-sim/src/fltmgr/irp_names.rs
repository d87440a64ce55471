//! `FltGetIrpName`: the name of a major function code as a printable string
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltgetirpname>):
//! any IRQL; a valid code gives its name (`"IRP_MJ_CREATE"`), anything else
//! `"<Invalid IRP code>"`.
//! The codes are the IRP major functions (0x00 to 0x1B) and Filter Manager's pseudo-operations
//! (the negative `IRP_MJ_*` codes of fltkernel.h, as a `UCHAR`), which a minifilter's callback
//! data carries in `Iopb->MajorFunction` too.
//!
//! The strings are static and NUL-terminated in kernel-sim's read-only data: a driver that
//! writes to one faults, as it would writing to FltMgr's image.

use crate::fltmgr::exports::Routine;
use crate::kernel::emulate;

/// The IRP major functions, by code (wdm.h).
const IRP_MAJOR: [&str; 0x1c] = [
    "IRP_MJ_CREATE\0",
    "IRP_MJ_CREATE_NAMED_PIPE\0",
    "IRP_MJ_CLOSE\0",
    "IRP_MJ_READ\0",
    "IRP_MJ_WRITE\0",
    "IRP_MJ_QUERY_INFORMATION\0",
    "IRP_MJ_SET_INFORMATION\0",
    "IRP_MJ_QUERY_EA\0",
    "IRP_MJ_SET_EA\0",
    "IRP_MJ_FLUSH_BUFFERS\0",
    "IRP_MJ_QUERY_VOLUME_INFORMATION\0",
    "IRP_MJ_SET_VOLUME_INFORMATION\0",
    "IRP_MJ_DIRECTORY_CONTROL\0",
    "IRP_MJ_FILE_SYSTEM_CONTROL\0",
    "IRP_MJ_DEVICE_CONTROL\0",
    "IRP_MJ_INTERNAL_DEVICE_CONTROL\0",
    "IRP_MJ_SHUTDOWN\0",
    "IRP_MJ_LOCK_CONTROL\0",
    "IRP_MJ_CLEANUP\0",
    "IRP_MJ_CREATE_MAILSLOT\0",
    "IRP_MJ_QUERY_SECURITY\0",
    "IRP_MJ_SET_SECURITY\0",
    "IRP_MJ_POWER\0",
    "IRP_MJ_SYSTEM_CONTROL\0",
    "IRP_MJ_DEVICE_CHANGE\0",
    "IRP_MJ_QUERY_QUOTA\0",
    "IRP_MJ_SET_QUOTA\0",
    "IRP_MJ_PNP\0",
];

/// Filter Manager's pseudo-operations, by their negative code (fltkernel.h: `((UCHAR)-1)`...).
const PSEUDO: [(i8, &str); 15] = [
    (-1, "IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION\0"),
    (-2, "IRP_MJ_RELEASE_FOR_SECTION_SYNCHRONIZATION\0"),
    (-3, "IRP_MJ_ACQUIRE_FOR_MOD_WRITE\0"),
    (-4, "IRP_MJ_RELEASE_FOR_MOD_WRITE\0"),
    (-5, "IRP_MJ_ACQUIRE_FOR_CC_FLUSH\0"),
    (-6, "IRP_MJ_RELEASE_FOR_CC_FLUSH\0"),
    (-7, "IRP_MJ_QUERY_OPEN\0"),
    (-13, "IRP_MJ_FAST_IO_CHECK_IF_POSSIBLE\0"),
    (-14, "IRP_MJ_NETWORK_QUERY_OPEN\0"),
    (-15, "IRP_MJ_MDL_READ\0"),
    (-16, "IRP_MJ_MDL_READ_COMPLETE\0"),
    (-17, "IRP_MJ_PREPARE_MDL_WRITE\0"),
    (-18, "IRP_MJ_MDL_WRITE_COMPLETE\0"),
    (-19, "IRP_MJ_VOLUME_MOUNT\0"),
    (-20, "IRP_MJ_VOLUME_DISMOUNT\0"),
];

const INVALID: &str = "<Invalid IRP code>\0";

/// The NUL-terminated name of `code`.
fn irp_name(code: u8) -> &'static str {
    if let Some(name) = IRP_MAJOR.get(usize::from(code)) {
        return name;
    }
    PSEUDO
        .iter()
        .find(|(pseudo, _)| pseudo.cast_unsigned() == code)
        .map_or(INVALID, |(_, name)| name)
}

/// `FltGetIrpName`: any IRQL.
pub(crate) extern "win64" fn flt_get_irp_name(code: u8) -> *const u8 {
    emulate(Routine::FltGetIrpName, |_| irp_name(code).as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_their_operation_and_anything_else_is_invalid() {
        assert_eq!(irp_name(0x00), "IRP_MJ_CREATE\0");
        assert_eq!(irp_name(0x12), "IRP_MJ_CLEANUP\0");
        assert_eq!(irp_name(0x1b), "IRP_MJ_PNP\0");
        assert_eq!(
            irp_name(0xff),
            "IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION\0"
        );
        assert_eq!(irp_name(0xec), "IRP_MJ_VOLUME_DISMOUNT\0");
        assert_eq!(irp_name(0x1c), INVALID);
        assert_eq!(irp_name(0x80), INVALID);
        assert_eq!(irp_name(0xf5), INVALID);
    }
}
