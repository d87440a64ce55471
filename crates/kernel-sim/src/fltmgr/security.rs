//! `FltBuildDefaultSecurityDescriptor` / `FltFreeSecurityDescriptor`: opaque descriptors
//! (System and Administrators only, as the real default), tracked so that a leak or a double
//! free is reported, and evaluated when a client connects to a port created with one
//! ([`PortAccess`]).
//!
//! Simplification: only descriptors from `FltBuildDefaultSecurityDescriptor` are understood (the
//! Rtl routines that build others are not emulated); a port created with any other pointer is
//! refused, and one created with none admits everyone (and is a RULES.md 18 violation).

use vigil_sys::{
    ACCESS_MASK, FLT_PORT_CONNECT, NTSTATUS, PSECURITY_DESCRIPTOR, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_write;

/// The account a client process runs as, for the port's access check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Account {
    /// A member of the Administrators group, elevated (the service run from an admin console).
    #[default]
    Administrator,
    /// `LocalSystem` (the service run by the service control manager).
    System,
    /// Any other user.
    User,
}

/// Who may connect to a server port, fixed when it is created (the object keeps its own copy of
/// the descriptor, so freeing the descriptor afterwards changes nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortAccess {
    /// `FltBuildDefaultSecurityDescriptor(access)`: SYSTEM and Administrators get `access`,
    /// nobody else gets anything.
    SystemAndAdministrators(ACCESS_MASK),
    /// No security descriptor: any client may connect.
    Everyone,
}

impl PortAccess {
    /// Whether `account` may connect (needs `FLT_PORT_CONNECT`).
    pub(crate) fn admits(self, account: Account) -> bool {
        match self {
            Self::Everyone => true,
            Self::SystemAndAdministrators(access) => {
                access & FLT_PORT_CONNECT != 0
                    && matches!(account, Account::System | Account::Administrator)
            }
        }
    }
}

/// What `FltCreateCommunicationPort` makes of the descriptor in its object attributes:
/// `Err(problem)` for a pointer that is no live descriptor from
/// `FltBuildDefaultSecurityDescriptor`.
pub(crate) fn port_access(
    flt: &crate::fltmgr::FltState,
    descriptor: PSECURITY_DESCRIPTOR,
) -> Result<PortAccess, String> {
    if descriptor.is_null() {
        return Ok(PortAccess::Everyone);
    }
    match flt.security_descriptors.get(&(descriptor as usize)) {
        None => Err(format!(
            "{descriptor:p} was not built by FltBuildDefaultSecurityDescriptor (kernel-sim understands no other)"
        )),
        Some(record) if record.freed => Err(format!("{descriptor:p} was already freed")),
        Some(record) => Ok(PortAccess::SystemAndAdministrators(record.access)),
    }
}

use crate::fltmgr::SecurityDescriptorRecord;
use crate::kernel::emulate;
use crate::machine::guest::{self, GuestAlloc};
use crate::report::ViolationKind;

/// `FltBuildDefaultSecurityDescriptor`: PASSIVE_LEVEL. Failable:
/// `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn flt_build_default_security_descriptor(
    out: *mut PSECURITY_DESCRIPTOR,
    access: ACCESS_MASK,
) -> NTSTATUS {
    emulate(Routine::FltBuildDefaultSecurityDescriptor, |k| {
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
        flt_write(k).security_descriptors.insert(
            address,
            SecurityDescriptorRecord {
                memory,
                freed: false,
                access,
            },
        );
        guest::write(out, address as PSECURITY_DESCRIPTOR);
        STATUS_SUCCESS
    })
}

/// `FltFreeSecurityDescriptor`: PASSIVE_LEVEL.
pub(crate) extern "win64" fn flt_free_security_descriptor(descriptor: PSECURITY_DESCRIPTOR) {
    emulate(Routine::FltFreeSecurityDescriptor, |k| {
        let problem = {
            let mut flt = flt_write(k);
            match flt.security_descriptors.get_mut(&(descriptor as usize)) {
                None => Some(format!(
                    "{descriptor:p} was not built by FltBuildDefaultSecurityDescriptor"
                )),
                Some(record) if record.freed => Some(format!("{descriptor:p} was already freed")),
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
    });
}
