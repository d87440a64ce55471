//! Process images for the policy's `except_processes`, through `QueryFullProcessImageNameW`
//! in NT form (`PROCESS_NAME_NATIVE`: `\Device\HarddiskVolume3\...`, the terms the policy's
//! paths are translated to). User mode, Windows only: cross-compiled and read, never run here.

use windows::Win32::Foundation::CloseHandle;
use windows::Win32::System::Threading::{
    OpenProcess, PROCESS_NAME_NATIVE, PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW,
};
use windows::core::PWSTR;

use crate::policy::ProcessNames;

/// Looks image paths up with the least access that allows it
/// (`PROCESS_QUERY_LIMITED_INFORMATION`, granted to the service's `LocalSystem` account for
/// ordinary and most protected processes).
#[derive(Debug, Default, Clone, Copy)]
pub struct WindowsProcessNames;

impl ProcessNames for WindowsProcessNames {
    fn image_name(&self, pid: u64) -> Option<String> {
        let pid = u32::try_from(pid).ok()?;
        // SAFETY: plain call; the returned handle is closed below.
        let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }.ok()?;
        let mut buffer = [0u16; 1024];
        let mut len = u32::try_from(buffer.len()).unwrap_or(0);
        // SAFETY: `buffer` holds `len` UTF-16 units and outlives the call; `len` is a valid
        // in/out pointer.
        let queried = unsafe {
            QueryFullProcessImageNameW(
                process,
                PROCESS_NAME_NATIVE,
                PWSTR(buffer.as_mut_ptr()),
                &raw mut len,
            )
        };
        // SAFETY: `process` is the handle opened above, closed once.
        let _ = unsafe { CloseHandle(process) };
        queried.ok()?;
        // The whole path: a bare file name is anyone's to choose.
        Some(String::from_utf16_lossy(buffer.get(..len as usize)?))
    }
}
