//! `FltDetachVolume`: a filter detaches its own instance from a volume, through the manual
//! detach of `fltmgr::instances` (InstanceQueryTeardown, then teardown with
//! `FLTFL_INSTANCE_TEARDOWN_MANUAL`).
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nf-fltkernel-fltdetachvolume>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_instance_query_teardown_callback>):
//! IRQL <= APC_LEVEL; `Filter` and `Volume` required; `InstanceName` optional (NULL: the
//! highest matching instance; kernel-sim attaches one instance per volume, the filter's default
//! one, so a name must be that one's); `STATUS_FLT_INSTANCE_NOT_FOUND` when the filter has no
//! matching instance on the volume, `STATUS_FLT_DELETING_OBJECT` when it is being torn down.
//! The request is a manual detach: InstanceQueryTeardown is asked first, and a filter that
//! registered none cannot detach its instances this way (`STATUS_FLT_DO_NOT_DETACH`, as the
//! callback's refusal). The teardown drains the operations in flight on the instance, so a
//! call from one of the instance's own operation callbacks waits for itself: it deadlocks in
//! Windows, and kernel-sim reports the deadlock at its hang limit. From the instance's
//! teardown callbacks it is `STATUS_FLT_DELETING_OBJECT`; from its InstanceSetup the instance
//! is not attached yet (`STATUS_FLT_INSTANCE_NOT_FOUND`).

use vigil_sys::{
    NTSTATUS, PFLT_FILTER, PVOID, STATUS_FLT_DELETING_OBJECT, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS, UNICODE_STRING,
};

use crate::fltmgr::exports::Routine;
use crate::fltmgr::flt_read;
use crate::fltmgr::instances::{self, InstanceState, STATUS_FLT_INSTANCE_NOT_FOUND, VolumeId};
use crate::kernel::check::{check, reject};
use crate::kernel::{Kernel, emulate};
use crate::machine::guest;

/// What `FltDetachVolume` found on the volume for the filter.
enum Target {
    /// The filter's live instance on the volume: detach it.
    Live(VolumeId),
    /// A status to return.
    Status(NTSTATUS),
}

/// The filter's instance on the volume at `volume`, named `name` (None: any); `Err` for a
/// `volume` that is no volume.
fn find_instance(
    k: &Kernel,
    filter: usize,
    volume: usize,
    name: Option<&str>,
) -> Result<Target, ()> {
    let flt = flt_read(k);
    let index = flt
        .io
        .volumes
        .iter()
        .position(|v| v.handle.address() == volume)
        .ok_or(())?;
    let Some(instance) = flt.io.volumes[index]
        .instance
        .as_ref()
        .filter(|i| i.filter == filter)
    else {
        return Ok(Target::Status(STATUS_FLT_INSTANCE_NOT_FOUND));
    };
    if let Some(name) = name {
        let default = flt
            .filters
            .get(&filter)
            .and_then(|f| f.instance_config.as_ref())
            .map(|c| c.default_instance.clone());
        if !default.is_some_and(|d| d.eq_ignore_ascii_case(name)) {
            return Ok(Target::Status(STATUS_FLT_INSTANCE_NOT_FOUND));
        }
    }
    Ok(match instance.state {
        InstanceState::Live => Target::Live(VolumeId(index)),
        InstanceState::TearingDown => Target::Status(STATUS_FLT_DELETING_OBJECT),
        // InstanceSetup is still deciding: nothing is attached to detach.
        InstanceState::Setup => Target::Status(STATUS_FLT_INSTANCE_NOT_FOUND),
    })
}

/// `FltDetachVolume`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn flt_detach_volume(
    filter: PFLT_FILTER,
    volume: PVOID,
    instance_name: *const UNICODE_STRING,
) -> NTSTATUS {
    emulate(Routine::FltDetachVolume, |k| {
        let invalid = STATUS_INVALID_PARAMETER;
        let registered = flt_read(k)
            .filters
            .get(&(filter as usize))
            .map(|f| f.unregistered);
        check!(k, registered.is_some(), "Filter from FltRegisterFilter (required)" => invalid,
            "Filter {filter:p}");
        if registered == Some(true) {
            return STATUS_FLT_DELETING_OBJECT;
        }
        let name = match guest::unicode_string(instance_name) {
            None => None,
            Some(Ok(name)) => Some(name),
            Some(Err(problem)) => {
                reject!(k, "InstanceName, a valid UNICODE_STRING or NULL" => invalid, "{problem}")
            }
        };
        let target = find_instance(k, filter as usize, volume as usize, name.as_deref());
        let Ok(target) = target else {
            reject!(k, "Volume, an opaque volume pointer (required)" => invalid,
                "{volume:p} is not a volume")
        };
        match target {
            Target::Status(status) => status,
            Target::Live(volume) => match instances::detach(k, volume) {
                Ok(()) => STATUS_SUCCESS,
                Err(status) => status,
            },
        }
    })
}
