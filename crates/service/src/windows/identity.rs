//! The driver's side of the service's identity (issue 14, rule 29): `vigil service install`
//! writes the NT path of `vigil.exe` as the driver's `Parameters` value `ServiceImage`, which
//! the driver reads when it loads and checks, with an Administrators token, when a process
//! connects to its port (`docs/threat-model-protection.md`). Without the value the driver falls
//! back to admitting any administrator, so the installer is what makes the identity real.
//! Windows only: cross-compiled and read, never run here; the path translation it uses is
//! [`crate::paths::service_image_path`], tested on Linux.

use std::path::Path;

use windows::Win32::System::Registry::REG_SZ;

use crate::paths::{DosDevices, service_image_path};
use crate::windows::scm::DRIVER_SERVICE;

/// The value's name, as the driver reads it (`src/config.rs`).
const VALUE: &str = "ServiceImage";

fn parameters_key() -> String {
    format!(r"SYSTEM\CurrentControlSet\Services\{DRIVER_SERVICE}\Parameters")
}

/// Writes `exe`'s NT path as the driver's `ServiceImage`; returns the path written. The driver
/// reads it at its next load.
///
/// # Errors
///
/// A path the drive-letter table cannot translate, or the registry's Win32 error.
pub fn register(exe: &Path) -> Result<String, String> {
    let nt_path = service_image_path(exe, &DosDevices::system())?;
    // REG_SZ: NUL-terminated UTF-16.
    let data: Vec<u8> = nt_path
        .encode_utf16()
        .chain(Some(0))
        .flat_map(u16::to_le_bytes)
        .collect();
    crate::windows::registry::set_value(&parameters_key(), VALUE, REG_SZ, &data)
        .map_err(|e| format!("cannot set the driver's {VALUE}: {e}"))?;
    Ok(nt_path)
}

/// Removes `ServiceImage` (`vigil service uninstall`); a missing value is not an error.
pub fn unregister() {
    crate::windows::registry::delete_value(&parameters_key(), VALUE);
}
