//! Writing and deleting values under `HKEY_LOCAL_MACHINE`, for the installer (the Event Log
//! source, the driver's `ServiceImage`). User mode, Windows only: cross-compiled and read; the
//! Wine stage (`tests/wine.rs`) runs it against Wine's registry.

use windows::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_SET_VALUE, REG_OPTION_NON_VOLATILE, REG_VALUE_TYPE, RegCloseKey,
    RegCreateKeyExW, RegDeleteKeyValueW, RegSetValueExW,
};
use windows::core::PCWSTR;

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// Sets `name` (of type `kind`, raw `data`) under `HKLM\key`, creating the key if it is
/// missing.
///
/// # Errors
///
/// The Win32 error, with the step that failed (opening the key, writing the value).
pub fn set_value(key: &str, name: &str, kind: REG_VALUE_TYPE, data: &[u8]) -> Result<(), String> {
    let key_name = wide(key);
    let mut handle = HKEY::default();
    // SAFETY: `key_name` is NUL-terminated and outlives the call; `handle` is a valid
    // out-pointer; no class, no security attributes (the key inherits its parent's, which
    // only administrators may write), no disposition.
    let status = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(key_name.as_ptr()),
            None,
            PCWSTR::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            None,
            &raw mut handle,
            None,
        )
    };
    if status.0 != 0 {
        return Err(format!("cannot open HKLM\\{key}: Win32 error {}", status.0));
    }
    let value = wide(name);
    // SAFETY: `handle` was opened above with KEY_SET_VALUE; `value` is NUL-terminated; `data`
    // is the value's bytes as `kind` lays them out (the caller's contract).
    let set = unsafe { RegSetValueExW(handle, PCWSTR(value.as_ptr()), None, kind, Some(data)) };
    // SAFETY: `handle` is ours, closed once.
    let _ = unsafe { RegCloseKey(handle) };
    if set.0 == 0 {
        Ok(())
    } else {
        Err(format!("cannot write {name}: Win32 error {}", set.0))
    }
}

/// Deletes `name` under `HKLM\key`; a missing key or value is not an error.
pub fn delete_value(key: &str, name: &str) {
    let (key_name, value) = (wide(key), wide(name));
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let _ = unsafe {
        RegDeleteKeyValueW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(key_name.as_ptr()),
            PCWSTR(value.as_ptr()),
        )
    };
}
