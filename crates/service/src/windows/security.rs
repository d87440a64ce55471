//! [`FileSecurity`] over the Windows security APIs: the protected DACL (SYSTEM and
//! Administrators, full control, inherited by what is created inside, nothing inherited from
//! above) set at creation through `CreateDirectoryW`'s `SECURITY_ATTRIBUTES` and again with
//! `SetNamedSecurityInfoW`, the owner read with `GetNamedSecurityInfoW`, reparse points seen
//! from the file attributes. User mode, Windows only: cross-compiled and read, never run by
//! this project; Wine would not enforce these ACLs anyway.

use std::ffi::c_void;
use std::io;
use std::os::windows::fs::MetadataExt;
use std::path::Path;

use windows::Win32::Foundation::{HLOCAL, LocalFree};
use windows::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows::Win32::Security::{
    ACL, CreateWellKnownSid, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, IsWellKnownSid,
    OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
    SECURITY_ATTRIBUTES, SECURITY_MAX_SID_SIZE, WinBuiltinAdministratorsSid, WinLocalSystemSid,
};
use windows::Win32::Storage::FileSystem::CreateDirectoryW;
use windows::core::{BOOL, PCWSTR, PWSTR};

use crate::datadir::{FileSecurity, Owner};

/// The data directory's security: owner Administrators (`O:BA`, so that the owner check holds
/// whoever of the administrators created it: an elevated token may set that group as owner),
/// and a protected DACL (`P`: nothing inherited from `%ProgramData%`) granting SYSTEM (`SY`)
/// and Administrators (`BA`) full control (`FA`), inherited by files and subdirectories
/// (`OICI`). No one else has an entry, so no one else has access. `protect` sets the DACL
/// only.
const DATA_DIR_SDDL: &str = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// `FILE_ATTRIBUTE_REPARSE_POINT`.
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;

fn wide(path: &Path) -> Vec<u16> {
    use std::os::windows::ffi::OsStrExt;
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

fn win32(code: u32) -> io::Error {
    io::Error::from_raw_os_error(i32::try_from(code).unwrap_or(i32::MAX))
}

fn hresult(e: &windows::core::Error) -> io::Error {
    io::Error::from_raw_os_error(e.code().0 & 0xFFFF)
}

/// A security descriptor from `LocalAlloc`, freed on drop.
struct LocalDescriptor(PSECURITY_DESCRIPTOR);

impl LocalDescriptor {
    fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
        let mut descriptor = PSECURITY_DESCRIPTOR::default();
        // SAFETY: `text` is NUL-terminated and outlives the call; `descriptor` is a valid
        // out-pointer; the size is not asked for (None).
        unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                PCWSTR(text.as_ptr()),
                SDDL_REVISION_1,
                &raw mut descriptor,
                None,
            )
        }
        .map_err(|e| hresult(&e))?;
        Ok(Self(descriptor))
    }

    /// The descriptor's DACL (null when it has none), borrowed from it.
    fn dacl(&self) -> io::Result<*const ACL> {
        let mut present = BOOL::default();
        let mut defaulted = BOOL::default();
        let mut dacl: *mut ACL = std::ptr::null_mut();
        // SAFETY: `self.0` is a valid descriptor from the conversion above; the out-pointers
        // are valid locals.
        unsafe {
            GetSecurityDescriptorDacl(self.0, &raw mut present, &raw mut dacl, &raw mut defaulted)
        }
        .map_err(|e| hresult(&e))?;
        Ok(dacl.cast_const())
    }
}

impl Drop for LocalDescriptor {
    fn drop(&mut self) {
        if !self.0.0.is_null() {
            // SAFETY: the descriptor was allocated by the system with LocalAlloc (documented
            // for both routines that fill it) and is freed once, here.
            let _ = unsafe { LocalFree(Some(HLOCAL(self.0.0))) };
        }
    }
}

/// The Windows implementation; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowsFileSecurity;

impl FileSecurity for WindowsFileSecurity {
    fn exists(&self, path: &Path) -> io::Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn is_reparse_point(&self, path: &Path) -> io::Result<bool> {
        // symlink_metadata does not follow a final reparse point.
        let attributes = std::fs::symlink_metadata(path)?.file_attributes();
        Ok(attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0)
    }

    fn owner(&self, path: &Path) -> io::Result<Owner> {
        let name = wide(path);
        let mut owner = PSID::default();
        let mut descriptor = PSECURITY_DESCRIPTOR::default();
        // SAFETY: `name` is NUL-terminated and outlives the call; `owner` and `descriptor`
        // are valid out-pointers; the owner SID points into the returned descriptor, which is
        // freed below after its last use.
        let status = unsafe {
            GetNamedSecurityInfoW(
                PCWSTR(name.as_ptr()),
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION,
                Some(&raw mut owner),
                None,
                None,
                None,
                &raw mut descriptor,
            )
        };
        if status.0 != 0 {
            return Err(win32(status.0));
        }
        let descriptor = LocalDescriptor(descriptor);
        // SAFETY: `owner` points into `descriptor`, alive until the end of this function.
        let result = if unsafe { IsWellKnownSid(owner, WinLocalSystemSid) }.as_bool() {
            Owner::System
        // SAFETY: as above.
        } else if unsafe { IsWellKnownSid(owner, WinBuiltinAdministratorsSid) }.as_bool() {
            Owner::Administrators
        } else {
            Owner::Other(sid_text(owner))
        };
        drop(descriptor);
        Ok(result)
    }

    fn create_protected_dir(&self, path: &Path) -> io::Result<()> {
        let descriptor = LocalDescriptor::from_sddl(DATA_DIR_SDDL)?;
        let attributes = SECURITY_ATTRIBUTES {
            nLength: u32::try_from(size_of::<SECURITY_ATTRIBUTES>()).unwrap_or(0),
            lpSecurityDescriptor: descriptor.0.0.cast::<c_void>(),
            bInheritHandle: BOOL(0),
        };
        let name = wide(path);
        // SAFETY: `name` is NUL-terminated; `attributes` and the descriptor it points to live
        // until after the call.
        unsafe { CreateDirectoryW(PCWSTR(name.as_ptr()), Some(&raw const attributes)) }
            .map_err(|e| hresult(&e))
    }

    fn set_owner_administrators(&self, path: &Path) -> io::Result<()> {
        let mut sid = [0u8; SECURITY_MAX_SID_SIZE as usize];
        let mut size = SECURITY_MAX_SID_SIZE;
        let psid = PSID(sid.as_mut_ptr().cast());
        // SAFETY: `sid` is a writable buffer of `size` bytes (the documented maximum SID size)
        // that outlives both calls; no domain SID is needed for a builtin group.
        unsafe { CreateWellKnownSid(WinBuiltinAdministratorsSid, None, Some(psid), &raw mut size) }
            .map_err(|e| hresult(&e))?;
        let name = wide(path);
        // SAFETY: `name` is NUL-terminated; `psid` points to the SID built above in `sid`,
        // alive until after the call; only the owner is set.
        let status = unsafe {
            SetNamedSecurityInfoW(
                PCWSTR(name.as_ptr()),
                SE_FILE_OBJECT,
                OWNER_SECURITY_INFORMATION,
                Some(psid),
                None,
                None,
                None,
            )
        };
        if status.0 == 0 {
            Ok(())
        } else {
            Err(win32(status.0))
        }
    }

    fn protect(&self, path: &Path) -> io::Result<()> {
        let descriptor = LocalDescriptor::from_sddl(DATA_DIR_SDDL)?;
        let dacl = descriptor.dacl()?;
        let name = wide(path);
        // SAFETY: `name` is NUL-terminated; `dacl` points into `descriptor`, alive until after
        // the call; no owner, group or SACL is passed.
        let status = unsafe {
            SetNamedSecurityInfoW(
                PCWSTR(name.as_ptr()),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                None,
                None,
                Some(dacl),
                None,
            )
        };
        if status.0 == 0 {
            Ok(())
        } else {
            Err(win32(status.0))
        }
    }
}

/// A SID as text (`S-1-5-21-…`), for the message that refuses its owner.
fn sid_text(sid: PSID) -> String {
    let mut text = PWSTR::null();
    // SAFETY: `sid` is valid for the caller's lifetime of its descriptor; `text` is a valid
    // out-pointer, freed below with LocalFree as documented.
    if unsafe { ConvertSidToStringSidW(sid, &raw mut text) }.is_err() || text.is_null() {
        return "an unknown account".to_owned();
    }
    // SAFETY: on success `text` is a NUL-terminated string the system allocated.
    let result = unsafe { text.to_string() }.unwrap_or_default();
    // SAFETY: allocated by ConvertSidToStringSidW with LocalAlloc; freed once.
    let _ = unsafe { LocalFree(Some(HLOCAL(text.0.cast()))) };
    result
}
