//! The driver's side of the service's identity (issue 14, rule 29): `vigil service install`
//! writes the NT path of `vigil.exe` as the driver's `Parameters` value `ServiceImage`, which
//! the driver reads when it loads and checks, with an Administrators token, when a process
//! connects to its port (`docs/threat-model-protection.md`). Without the value the driver falls
//! back to admitting any administrator, so the installer is what makes the identity real.
//! Windows only: cross-compiled and read, never run here; the path translation it uses is
//! [`crate::paths::service_image_path`], tested on Linux.

use std::path::Path;

use windows::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE, REG_SZ, RegCloseKey,
    RegCreateKeyExW, RegDeleteKeyValueW, RegSetValueExW,
};
use windows::core::PCWSTR;

use crate::paths::{DosDevices, service_image_path};
use crate::windows::scm::DRIVER_SERVICE;

/// The value's name, as the driver reads it (`src/config.rs`).
const VALUE: &str = "ServiceImage";

fn parameters_key() -> Vec<u16> {
    format!(r"SYSTEM\CurrentControlSet\Services\{DRIVER_SERVICE}\Parameters")
        .encode_utf16()
        .chain(Some(0))
        .collect()
}

/// Writes `exe`'s NT path as the driver's `ServiceImage`; returns the path written. The driver
/// reads it at its next load.
///
/// # Errors
///
/// A path the drive-letter table cannot translate, or the registry's Win32 error.
pub fn register(exe: &Path) -> Result<String, String> {
    let nt_path = service_image_path(exe, &DosDevices::system())?;
    let key_name = parameters_key();
    let mut key = HKEY::default();
    // SAFETY: `key_name` is NUL-terminated and outlives the call; `key` is a valid
    // out-pointer; no class, no security attributes (the key inherits the driver's service
    // key's, which only administrators may write), no disposition.
    let status = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(key_name.as_ptr()),
            None,
            PCWSTR::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            None,
            &raw mut key,
            None,
        )
    };
    if status.0 != 0 {
        return Err(format!(
            "cannot open the driver's Parameters key: Win32 error {}",
            status.0
        ));
    }
    let name: Vec<u16> = VALUE.encode_utf16().chain(Some(0)).collect();
    let data: Vec<u8> = nt_path
        .encode_utf16()
        .chain(Some(0))
        .flat_map(u16::to_le_bytes)
        .collect();
    // SAFETY: `key` was opened above with KEY_SET_VALUE; `name` is NUL-terminated; `data` is
    // a NUL-terminated UTF-16 string, as REG_SZ wants.
    let set = unsafe { RegSetValueExW(key, PCWSTR(name.as_ptr()), None, REG_SZ, Some(&data)) };
    // SAFETY: `key` is ours, closed once.
    let _ = unsafe { RegCloseKey(key) };
    if set.0 == 0 {
        Ok(nt_path)
    } else {
        Err(format!("cannot write {VALUE}: Win32 error {}", set.0))
    }
}

/// Removes `ServiceImage` (`vigil service uninstall`); a missing value is not an error.
pub fn unregister() {
    let key_name = parameters_key();
    let name: Vec<u16> = VALUE.encode_utf16().chain(Some(0)).collect();
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let _ = unsafe {
        RegDeleteKeyValueW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(key_name.as_ptr()),
            PCWSTR(name.as_ptr()),
        )
    };
}
