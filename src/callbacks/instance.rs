//! Instance setup and teardown: attach by policy (`crate::attach`), and give each attached
//! volume an id. PASSIVE_LEVEL.

use core::sync::atomic::Ordering;

use vigil_sys::{
    DEVICE_TYPE, FLT_FILESYSTEM_TYPE, FLT_RELATED_OBJECTS, NTSTATUS, STATUS_FLT_DO_NOT_ATTACH,
    STATUS_SUCCESS,
};

use crate::attach::{AttachDecision, decide};
use crate::entry::{globals_for_teardown, try_access};
use crate::twins::{self, Twin};

/// `InstanceSetupCallback`.
///
/// # Safety
///
/// Called only by FltMgr, as the instance setup callback registered in `REGISTRATION`, with `objects` valid
/// for the call, at PASSIVE_LEVEL.
pub unsafe extern "win64" fn instance_setup(
    objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
    _device_type: DEVICE_TYPE,
    fs_type: FLT_FILESYSTEM_TYPE,
) -> NTSTATUS {
    // Filter Manager offers a volume once. While an unload has closed the gate, this setup is
    // not admitted, but the volume is still attached: if the unload is refused (an optional one
    // whose wait expired) the instance is watched from the moment the gate reopens, when its
    // callbacks are admitted again; if it goes on, FltUnregisterFilter waits for this setup and
    // tears the instance down with the others. The globals are reached as the teardown
    // callbacks reach them: freed only after FltUnregisterFilter, which waits for this call.
    // `unwatched-volume` keeps the old answer, STATUS_FLT_DO_NOT_ATTACH, and the volume is
    // never watched for the rest of the driver's life.
    let admission = try_access();
    let globals = match admission.as_deref() {
        Some(globals) => globals,
        None if twins::is(Twin::UnwatchedVolume) => return STATUS_FLT_DO_NOT_ATTACH,
        None => match globals_for_teardown() {
            Some(globals) => globals,
            None => return STATUS_FLT_DO_NOT_ATTACH,
        },
    };
    let attach_network = globals.settings.attach_network.load(Ordering::Relaxed);
    match decide(fs_type, attach_network) {
        AttachDecision::Attach => {
            // SAFETY: FltMgr passes valid related objects for the callback's duration.
            if let Some(objects) = unsafe { objects.as_ref() } {
                globals.volumes.insert(objects.Volume);
            }
            STATUS_SUCCESS
        }
        AttachDecision::Decline => STATUS_FLT_DO_NOT_ATTACH,
    }
}

/// `InstanceQueryTeardownCallback`: a manual detach (`fltmc detach`) is allowed; nothing is lost
/// but the volume's future events.
///
/// # Safety
///
/// Called only by FltMgr, as the instance query-teardown callback registered in `REGISTRATION`, with `objects` valid
/// for the call, at PASSIVE_LEVEL.
pub unsafe extern "win64" fn instance_query_teardown(
    _objects: *const FLT_RELATED_OBJECTS,
    _flags: u32,
) -> NTSTATUS {
    STATUS_SUCCESS
}

/// `InstanceTeardownCompleteCallback`: forget the volume id. Always runs, even during unload.
///
/// # Safety
///
/// Called only by FltMgr, as the instance teardown-complete callback registered in `REGISTRATION`, with `objects` valid
/// for the call, at PASSIVE_LEVEL.
pub unsafe extern "win64" fn instance_teardown_complete(
    objects: *const FLT_RELATED_OBJECTS,
    _reason: u32,
) {
    let Some(globals) = globals_for_teardown() else {
        return;
    };
    // SAFETY: as in instance_setup.
    if let Some(objects) = unsafe { objects.as_ref() } {
        globals.volumes.remove(objects.Volume);
    }
}
