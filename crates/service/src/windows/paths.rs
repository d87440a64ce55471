//! The drive letters' DOS devices, through `QueryDosDeviceW`. User mode, Windows only:
//! cross-compiled and read, never run by this project.

use windows::Win32::Storage::FileSystem::QueryDosDeviceW;
use windows::core::PCWSTR;

use crate::paths::DosDevices;

/// `A:` … `Z:` and the device each names now (letters with none are left out). A letter can
/// name several devices (a `subst` chain); the first, the current one, is taken.
pub fn dos_devices() -> DosDevices {
    let mut pairs = Vec::new();
    for letter in 'A'..='Z' {
        let name: Vec<u16> = format!("{letter}:").encode_utf16().chain(Some(0)).collect();
        let mut target = vec![0u16; 1024];
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; `target` is
        // a writable buffer whose length the slice carries.
        let written = unsafe { QueryDosDeviceW(PCWSTR(name.as_ptr()), Some(&mut target)) };
        if written == 0 {
            continue;
        }
        let end = target.iter().position(|u| *u == 0).unwrap_or(target.len());
        let device = String::from_utf16_lossy(target.get(..end).unwrap_or(&[]));
        // A `subst` drive names a DOS path (`\??\C:\dir`), not a device: left out, so a rule
        // on it is refused rather than matching nothing.
        if device.starts_with(r"\Device\") {
            pairs.push((letter, device));
        }
    }
    DosDevices::from_pairs(pairs.iter().map(|(l, d)| (*l, d.as_str())))
}
