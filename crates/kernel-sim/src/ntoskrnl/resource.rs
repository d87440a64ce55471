//! Executive resources (`ERESOURCE`): `ExInitializeResourceLite`,
//! `ExAcquireResourceExclusiveLite`, `ExAcquireResourceSharedLite`, `ExReleaseResourceLite`,
//! `ExDeleteResourceLite`. The driver supplies the storage; kernel-sim keeps the owners beside
//! it, by address, in the kernel's object table.
//!
//! From the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exinitializeresourcelite>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exacquireresourceexclusivelite>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exacquireresourcesharedlite>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exreleaseresourcelite>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exdeleteresourcelite>):
//! - initialize: IRQL <= DISPATCH_LEVEL; storage 8-byte aligned, from nonpaged memory (a paged
//!   pool block is reported); deleted with `ExDeleteResourceLite` before its memory is freed
//!   (a pool free over a live resource, or the driver gone with one, is reported);
//! - acquire: IRQL <= APC_LEVEL with normal kernel APCs disabled (`KeEnterCriticalRegion`),
//!   and kept disabled until the release; exclusive: granted when unowned or recursively to its
//!   exclusive owner; a thread holding it shared that asks for it exclusive waits forever (the
//!   page's note), reported at once as a deadlock; shared: granted when unowned, recursively to
//!   any owner, or to a new sharer while it is owned shared and no thread waits for exclusive
//!   access (a waiting writer holds new sharers back); `Wait` FALSE returns FALSE instead of
//!   waiting;
//! - release: IRQL <= DISPATCH_LEVEL, by a thread that owns it, APCs still disabled;
//! - delete: IRQL <= APC_LEVEL, of an initialized resource nobody owns.

use std::collections::BTreeMap;

use vigil_sys::{APC_LEVEL, BOOLEAN, NTSTATUS, PVOID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS};

use crate::kernel::objects::ResourceRecord;
use crate::kernel::{Kernel, emulate, ensure_thread_id, lock};
use crate::machine::state::{self, Abandon};
use crate::machine::switch::abandon_current_call;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// Reports when normal kernel APCs are enabled (the acquire and release rule).
fn check_apcs_disabled(k: &Kernel, routine: &str) {
    let disabled =
        state::current_irql() >= APC_LEVEL || !crate::kernel::apc::normal_kernel_apcs_enabled();
    if !disabled {
        k.violation(
            ViolationKind::CallbackContract,
            format!("{routine}: normal kernel APCs disabled (KeEnterCriticalRegion) until the release"),
            format!("{routine} with normal kernel APCs enabled: a suspension (a normal kernel APC) can stop the thread while it owns the resource"),
        );
    }
}

/// Whether `resource` is initialized (a parameter violation otherwise).
fn check_live(k: &Kernel, resource: usize) -> bool {
    let live = lock(&k.objects).resources.contains_key(&resource);
    if !live {
        k.parameter_violation(
            "a resource initialized by ExInitializeResourceLite (and not deleted)",
            format!("{resource:#x} is not an initialized resource"),
        );
    }
    live
}

/// `ExInitializeResourceLite`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ex_initialize_resource_lite(resource: PVOID) -> NTSTATUS {
    emulate(Routine::ExInitializeResourceLite, |k| {
        let at = resource as usize;
        if at == 0 || !at.is_multiple_of(8) {
            k.parameter_violation(
                "8-byte aligned storage for the resource",
                format!("Resource {resource:p}"),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if let Some((_, _, true)) = lock(&k.pool).live_block_at(at) {
            k.parameter_violation(
                "storage from nonpaged memory",
                format!("Resource {resource:p} is in a paged pool block"),
            );
        }
        let initialized_in = state::with(|s| s.callback.get());
        let mut objects = lock(&k.objects);
        if objects.resources.contains_key(&at) {
            drop(objects);
            k.parameter_violation(
                "storage that holds no live resource (ExDeleteResourceLite first)",
                format!("Resource {resource:p} is initialized already"),
            );
            return STATUS_SUCCESS;
        }
        objects.resources.insert(
            at,
            ResourceRecord {
                exclusive: None,
                shared: BTreeMap::new(),
                exclusive_waiters: 0,
                initialized_in,
            },
        );
        STATUS_SUCCESS
    })
}

/// `ExAcquireResourceExclusiveLite`: IRQL <= APC_LEVEL, normal kernel APCs disabled.
pub(crate) extern "win64" fn ex_acquire_resource_exclusive_lite(
    resource: PVOID,
    wait: BOOLEAN,
) -> BOOLEAN {
    emulate(Routine::ExAcquireResourceExclusiveLite, |k| {
        check_apcs_disabled(k, "ExAcquireResourceExclusiveLite");
        let at = resource as usize;
        if !check_live(k, at) {
            return 0;
        }
        let me = ensure_thread_id();
        let try_take = |k: &Kernel| -> Option<bool> {
            let mut objects = lock(&k.objects);
            let record = objects.resources.get_mut(&at)?;
            let free = match record.exclusive {
                Some((owner, _)) => owner == me,
                None => record.shared.is_empty(),
            };
            if free {
                let count = record.exclusive.map_or(0, |(_, n)| n);
                record.exclusive = Some((me, count + 1));
            }
            Some(free)
        };
        match try_take(k) {
            None => return 0,
            Some(true) => return 1,
            Some(false) if wait == 0 => return 0,
            Some(false) => {}
        }
        let holds_shared = lock(&k.objects)
            .resources
            .get(&at)
            .is_some_and(|r| r.shared.contains_key(&me));
        if holds_shared {
            k.fatal(
                ViolationKind::Deadlock,
                "ExAcquireResourceExclusiveLite: release shared access before acquiring exclusive access",
                format!("the thread owns {resource:p} shared and waits for it exclusive: it waits forever"),
            );
            abandon_current_call(Abandon::Stopped);
        }
        if let Some(r) = lock(&k.objects).resources.get_mut(&at) {
            r.exclusive_waiters += 1;
        }
        let mut granted = false;
        k.wait_until(None, "ExAcquireResourceExclusiveLite", || {
            granted = try_take(k) == Some(true);
            granted
        });
        if let Some(r) = lock(&k.objects).resources.get_mut(&at) {
            r.exclusive_waiters -= 1;
        }
        k.notify_waiters();
        BOOLEAN::from(granted)
    })
}

/// `ExAcquireResourceSharedLite`: IRQL <= APC_LEVEL, normal kernel APCs disabled.
pub(crate) extern "win64" fn ex_acquire_resource_shared_lite(
    resource: PVOID,
    wait: BOOLEAN,
) -> BOOLEAN {
    emulate(Routine::ExAcquireResourceSharedLite, |k| {
        check_apcs_disabled(k, "ExAcquireResourceSharedLite");
        let at = resource as usize;
        if !check_live(k, at) {
            return 0;
        }
        let me = ensure_thread_id();
        let try_take = |k: &Kernel| -> Option<bool> {
            let mut objects = lock(&k.objects);
            let record = objects.resources.get_mut(&at)?;
            match record.exclusive {
                // Its exclusive owner gets it again, exclusive (not converted to shared).
                Some((owner, n)) if owner == me => {
                    record.exclusive = Some((owner, n + 1));
                    return Some(true);
                }
                Some(_) => return Some(false),
                None => {}
            }
            let mine = record.shared.contains_key(&me);
            if record.exclusive_waiters > 0 && !mine {
                return Some(false);
            }
            *record.shared.entry(me).or_insert(0) += 1;
            Some(true)
        };
        match try_take(k) {
            None => return 0,
            Some(true) => return 1,
            Some(false) if wait == 0 => return 0,
            Some(false) => {}
        }
        let mut granted = false;
        k.wait_until(None, "ExAcquireResourceSharedLite", || {
            granted = try_take(k) == Some(true);
            granted
        });
        BOOLEAN::from(granted)
    })
}

/// `ExReleaseResourceLite`: IRQL <= DISPATCH_LEVEL, by an owner, normal kernel APCs disabled.
pub(crate) extern "win64" fn ex_release_resource_lite(resource: PVOID) {
    emulate(Routine::ExReleaseResourceLite, |k| {
        check_apcs_disabled(k, "ExReleaseResourceLite");
        let at = resource as usize;
        if !check_live(k, at) {
            return;
        }
        let me = ensure_thread_id();
        let released = {
            let mut objects = lock(&k.objects);
            let Some(record) = objects.resources.get_mut(&at) else {
                return;
            };
            match record.exclusive {
                Some((owner, n)) if owner == me => {
                    record.exclusive = (n > 1).then_some((owner, n - 1));
                    true
                }
                _ => match record.shared.get_mut(&me) {
                    Some(n) => {
                        *n -= 1;
                        if *n == 0 {
                            record.shared.remove(&me);
                        }
                        true
                    }
                    None => false,
                },
            }
        };
        if released {
            k.notify_waiters();
        } else {
            k.parameter_violation(
                "a resource owned by the current thread",
                format!("{resource:p} is not owned by this thread"),
            );
        }
    });
}

/// `ExDeleteResourceLite`: IRQL <= APC_LEVEL, of a resource nobody owns.
pub(crate) extern "win64" fn ex_delete_resource_lite(resource: PVOID) -> NTSTATUS {
    emulate(Routine::ExDeleteResourceLite, |k| {
        let at = resource as usize;
        if !check_live(k, at) {
            return STATUS_INVALID_PARAMETER;
        }
        let owned = {
            let mut objects = lock(&k.objects);
            let owned = objects
                .resources
                .get(&at)
                .is_some_and(|r| r.exclusive.is_some() || !r.shared.is_empty());
            if !owned {
                objects.resources.remove(&at);
            }
            owned
        };
        if owned {
            k.parameter_violation(
                "a resource nobody owns",
                format!("{resource:p} is still owned"),
            );
        }
        STATUS_SUCCESS
    })
}

/// A pool block `[block, block + size)` is being freed: live resources in it are reported (and
/// forgotten: their storage is gone).
pub(crate) fn check_free(k: &Kernel, routine: &str, block: usize, size: usize) {
    let inside: Vec<(usize, &'static str)> = {
        let mut objects = lock(&k.objects);
        let inside: Vec<(usize, &'static str)> = objects
            .resources
            .range(block..block + size.max(1))
            .map(|(&at, r)| (at, r.initialized_in))
            .collect();
        for (at, _) in &inside {
            objects.resources.remove(at);
        }
        inside
    };
    for (at, initialized_in) in inside {
        k.violation(
            ViolationKind::ResourceLeak,
            format!("{routine}: ExDeleteResourceLite before the memory of a resource is freed"),
            format!("resource {at:#x} (initialized in {initialized_in}) lies in the freed block {block:#x}"),
        );
    }
}

/// Resources never deleted when the driver is gone (`why`).
pub(crate) fn report_leaks(k: &Kernel, why: &str) {
    let leaked: Vec<(usize, &'static str)> = {
        let mut objects = lock(&k.objects);
        let leaked = objects
            .resources
            .iter()
            .map(|(&at, r)| (at, r.initialized_in))
            .collect();
        objects.resources.clear();
        leaked
    };
    for (at, initialized_in) in leaked {
        k.violation(
            ViolationKind::ResourceLeak,
            "every resource is deleted (ExDeleteResourceLite) before the driver is gone",
            format!("after {why}: resource {at:#x} initialized in {initialized_in} never deleted"),
        );
    }
}
