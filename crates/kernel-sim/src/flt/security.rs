//! `FltBuildDefaultSecurityDescriptor` / `FltFreeSecurityDescriptor`: opaque descriptors
//! (System and Administrators only, as the real default), tracked so that a leak or a double
//! free is reported.

use vigil_sys::{
    ACCESS_MASK, NTSTATUS, PASSIVE_LEVEL, PSECURITY_DESCRIPTOR, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::flt::SecurityDescriptorRecord;
use crate::kernel::{IrqlRule, emulate, lock};
use crate::mem::guest::{self, GuestAlloc};
use crate::report::ViolationKind;

/// `FltBuildDefaultSecurityDescriptor`: PASSIVE_LEVEL. Failable:
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_build_default_security_descriptor(
    out: *mut PSECURITY_DESCRIPTOR,
    _access: ACCESS_MASK,
) -> NTSTATUS {
    emulate(
        "FltBuildDefaultSecurityDescriptor",
        IrqlRule::AtMost(PASSIVE_LEVEL),
        |k| {
            if out.is_null() {
                k.violation(
                    ViolationKind::Parameter,
                    "FltBuildDefaultSecurityDescriptor: a SecurityDescriptor out-pointer",
                    "NULL".to_owned(),
                );
                return STATUS_INVALID_PARAMETER;
            }
            if k.inject_failure(
                "FltBuildDefaultSecurityDescriptor",
                "STATUS_INSUFFICIENT_RESOURCES",
            ) {
                return STATUS_INSUFFICIENT_RESOURCES;
            }
            let memory = GuestAlloc::zeroed(64);
            let address = memory.address();
            lock(&k.flt).security_descriptors.insert(
                address,
                SecurityDescriptorRecord {
                    memory,
                    freed: false,
                },
            );
            guest::write(out, address as PSECURITY_DESCRIPTOR);
            STATUS_SUCCESS
        },
    )
}

/// `FltFreeSecurityDescriptor`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn flt_free_security_descriptor(descriptor: PSECURITY_DESCRIPTOR) {
    emulate(
        "FltFreeSecurityDescriptor",
        IrqlRule::AtMost(PASSIVE_LEVEL),
        |k| {
            let problem = {
                let mut flt = lock(&k.flt);
                match flt.security_descriptors.get_mut(&(descriptor as usize)) {
                    None => Some(format!(
                        "{descriptor:p} was not built by FltBuildDefaultSecurityDescriptor"
                    )),
                    Some(record) if record.freed => {
                        Some(format!("{descriptor:p} was already freed"))
                    }
                    Some(record) => {
                        record.freed = true;
                        let _ = &record.memory;
                        None
                    }
                }
            };
            if let Some(message) = problem {
                k.violation(ViolationKind::InvalidHandle, "FltFreeSecurityDescriptor: a descriptor from FltBuildDefaultSecurityDescriptor, freed once", message);
            }
        },
    );
}
