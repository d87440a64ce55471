//! `FltRegisterFilter` (with validation of the `FLT_REGISTRATION`), `FltStartFiltering`,
//! `FltUnregisterFilter`.

use std::collections::BTreeSet;

use vigil_sys::{
    DRIVER_OBJECT, FLT_CONTEXT_END, FLT_CONTEXT_REGISTRATION, FLT_OPERATION_REGISTRATION,
    FLT_REGISTRATION, IRP_MJ_MAXIMUM_FUNCTION, IRP_MJ_OPERATION_END, NTSTATUS, PFLT_FILTER,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_SUCCESS,
};

use crate::config::RegistryValue;
use crate::fltmgr::exports::Routine;
use crate::fltmgr::{ContextRegistration, FilterRecord, Operation};
use crate::fltmgr::{flt_read, flt_write};
use crate::kernel::{Kernel, emulate};
use crate::machine::guest::{self, GuestAlloc};
use crate::report::ViolationKind;

/// Registration versions FltMgr accepts (Windows 8+, Vista SP1/7, Vista).
const ACCEPTED_VERSIONS: [u16; 3] = [0x0203, 0x0202, 0x0201];
/// Bound on the operation and context arrays (FltMgr has fewer than 64 distinct majors).
const ARRAY_BOUND: usize = 64;
/// FltMgr's own negative majors: `IRP_MJ_VOLUME_DISMOUNT` ((UCHAR)-20) ..=
/// `IRP_MJ_ACQUIRE_FOR_SECTION_SYNCHRONIZATION` ((UCHAR)-1).
const FIRST_FLTMGR_MAJOR: u8 = 0xEC;
/// Documented `FLTFL_REGISTRATION_*` bits.
const KNOWN_REGISTRATION_FLAGS: u32 = 0x1 | 0x2 | 0x4 | 0x8;
/// Documented `FLTFL_OPERATION_REGISTRATION_*` bits.
const KNOWN_OPERATION_FLAGS: u32 = 0x1 | 0x2 | 0x4;
/// Context types (single bits up to `FLT_SECTION_CONTEXT` 0x40).
const KNOWN_CONTEXT_TYPES: [u16; 7] = [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40];

fn invalid(k: &Kernel, rule: &str, message: String) -> NTSTATUS {
    k.violation(
        ViolationKind::Registration,
        format!("FltRegisterFilter: {rule}"),
        message,
    );
    STATUS_INVALID_PARAMETER
}

/// Reads and checks the operation array.
fn read_operations(
    k: &Kernel,
    array: *const FLT_OPERATION_REGISTRATION,
) -> Result<Vec<Operation>, NTSTATUS> {
    let mut operations = Vec::new();
    if array.is_null() {
        return Ok(operations);
    }
    let mut seen = BTreeSet::new();
    for index in 0..ARRAY_BOUND {
        let entry = guest::read(array.wrapping_add(index));
        if entry.MajorFunction == IRP_MJ_OPERATION_END {
            return Ok(operations);
        }
        let major = entry.MajorFunction;
        if major > IRP_MJ_MAXIMUM_FUNCTION && major < FIRST_FLTMGR_MAJOR {
            return Err(invalid(
                k,
                "valid IRP_MJ codes",
                format!("operation {index} has MajorFunction {major:#x}"),
            ));
        }
        if !seen.insert(major) {
            k.violation(
                ViolationKind::Registration,
                "FltRegisterFilter: one registration per major function",
                format!("MajorFunction {major:#x} registered twice (entry {index}); FltMgr uses one of them"),
            );
        }
        if entry.PreOperation.is_none() && entry.PostOperation.is_none() {
            k.violation(
                ViolationKind::Registration,
                "FltRegisterFilter: each operation has a callback",
                format!("operation {index} ({major:#x}) has neither"),
            );
        }
        if entry.Flags & !KNOWN_OPERATION_FLAGS != 0 {
            k.violation(
                ViolationKind::Registration,
                "FltRegisterFilter: documented FLTFL_OPERATION_REGISTRATION_* flags",
                format!("operation {index} flags {:#x}", entry.Flags),
            );
        }
        operations.push(Operation {
            major,
            flags: entry.Flags,
            pre: entry.PreOperation.map_or(0, |f| f as usize),
            post: entry.PostOperation.map_or(0, |f| f as usize),
        });
    }
    Err(invalid(
        k,
        "the operation array ends with IRP_MJ_OPERATION_END",
        format!("no terminator within {ARRAY_BOUND} entries"),
    ))
}

/// Reads and checks the context array.
fn read_contexts(
    k: &Kernel,
    array: *const FLT_CONTEXT_REGISTRATION,
) -> Result<Vec<ContextRegistration>, NTSTATUS> {
    let mut contexts = Vec::new();
    if array.is_null() {
        return Ok(contexts);
    }
    for index in 0..ARRAY_BOUND {
        let entry = guest::read(array.wrapping_add(index));
        if entry.ContextType == FLT_CONTEXT_END {
            return Ok(contexts);
        }
        if !KNOWN_CONTEXT_TYPES.contains(&entry.ContextType) {
            return Err(invalid(
                k,
                "valid context types",
                format!("context {index} has type {:#x}", entry.ContextType),
            ));
        }
        if entry.Size == 0 {
            return Err(invalid(
                k,
                "a context size (or FLT_VARIABLE_SIZED_CONTEXTS)",
                format!("context {index} has size 0"),
            ));
        }
        if !entry.ContextAllocateCallback.is_null() || !entry.ContextFreeCallback.is_null() {
            k.violation(
                ViolationKind::NotEmulated,
                "FltRegisterFilter",
                format!("context {index}: custom allocate/free callbacks are not emulated"),
            );
        }
        contexts.push(ContextRegistration {
            context_type: entry.ContextType,
            size: entry.Size,
            pool_tag: entry.PoolTag,
            cleanup: entry.ContextCleanupCallback.map_or(0, |f| f as usize),
        });
    }
    Err(invalid(
        k,
        "the context array ends with FLT_CONTEXT_END",
        format!("no terminator within {ARRAY_BOUND} entries"),
    ))
}

/// An instance's `Flags` bit that suppresses automatic attachment: FltMgr attaches the instance
/// only when asked (`fltmc attach`, `FilterAttach`, `FltAttachVolume`). The minifilter INF page
/// documents it beside `MiniSpy`'s instances, "`Instance1.Flags = 0x1 ; Suppress automatic
/// attachments`" (Creating an INF File for a Minifilter Driver,
/// <https://learn.microsoft.com/windows-hardware/drivers/ifs/creating-an-inf-file-for-a-minifilter-driver>).
/// No other bit is documented, so no other bit changes what kernel-sim does.
pub(crate) const INSTANCE_SUPPRESS_AUTOMATIC_ATTACHMENT: u32 = 0x1;

/// One instance a filter's `Instances` key defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InstanceDefinition {
    /// The subkey's name (the instance name `fltmc attach -i` takes).
    pub name: String,
    /// The `Altitude` string.
    pub altitude: String,
    /// The `Flags` DWORD (0 when absent).
    pub flags: u32,
}

/// What `FltRegisterFilter` read from the `Instances` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InstanceConfig {
    /// The `DefaultInstance` value: the instance automatic attachment creates.
    pub default_instance: String,
    /// Every instance with an `Altitude` (the default one included).
    pub instances: Vec<InstanceDefinition>,
}

impl InstanceConfig {
    /// The default instance's definition.
    pub(crate) fn default_definition(&self) -> Option<&InstanceDefinition> {
        self.instance(&self.default_instance)
    }

    /// The instance named `name` (case-insensitive).
    pub(crate) fn instance(&self, name: &str) -> Option<&InstanceDefinition> {
        self.instances
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// Whether FltMgr attaches the default instance to volumes by itself.
    pub(crate) fn attaches_automatically(&self) -> bool {
        self.default_definition()
            .is_some_and(|d| d.flags & INSTANCE_SUPPRESS_AUTOMATIC_ATTACHMENT == 0)
    }
}

/// Reads the filter's instance configuration from the installed registry, where the emulated
/// build's Filter Manager reads it: `Services\<name>\Instances` before 10.0.25952,
/// `Services\<name>\Parameters\Instances` from it on (Creating an INF File for a Minifilter
/// Driver: "The following values should be under the Parameters subkey starting with Windows 11
/// version 24H2";
/// <https://learn.microsoft.com/windows-hardware/drivers/ifs/creating-an-inf-file-for-a-minifilter-driver>).
/// Without `DefaultInstance`, or without the default instance's `Altitude`, Filter Manager
/// cannot create the filter's instances and `FltRegisterFilter` fails with
/// `STATUS_OBJECT_NAME_NOT_FOUND`, the registry's own status for the missing name. None when
/// the image was loaded without an INF (no registry to read: today's attach-everything
/// behaviour).
fn read_instance_config(k: &Kernel) -> Result<Option<InstanceConfig>, NTSTATUS> {
    let Some(registry) = &k.config.machine_registry else {
        return Ok(None);
    };
    let mut key = k.config.service_key_path();
    let parent = k.config.windows_build.instances_parent();
    if !parent.is_empty() {
        key = format!("{key}\\{parent}");
    }
    let key = format!("{key}\\Instances");
    let text = |value: Option<&RegistryValue>| match value {
        Some(RegistryValue::Sz(s) | RegistryValue::ExpandSz(s)) => Some(s.clone()),
        _ => None,
    };
    let Some(default_instance) = text(registry.value(&key, "DefaultInstance")) else {
        return Err(STATUS_OBJECT_NAME_NOT_FOUND);
    };
    let mut instances = Vec::new();
    for name in registry.subkeys(&key) {
        let path = format!("{key}\\{name}");
        let Some(altitude) = text(registry.value(&path, "Altitude")) else {
            continue;
        };
        let flags = match registry.value(&path, "Flags") {
            Some(RegistryValue::Dword(flags)) => *flags,
            _ => 0,
        };
        instances.push(InstanceDefinition {
            name,
            altitude,
            flags,
        });
    }
    let config = InstanceConfig {
        default_instance,
        instances,
    };
    if config.default_definition().is_none() {
        return Err(STATUS_OBJECT_NAME_NOT_FOUND);
    }
    Ok(Some(config))
}

/// `FltRegisterFilter`: IRQL <= APC_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`. With an
/// installed registry, `STATUS_OBJECT_NAME_NOT_FOUND` when the instance configuration is
/// missing where the emulated build reads it ([`read_instance_config`]).
pub(crate) extern "win64" fn flt_register_filter(
    driver: *mut DRIVER_OBJECT,
    registration: *const FLT_REGISTRATION,
    out: *mut PFLT_FILTER,
) -> NTSTATUS {
    emulate(Routine::FltRegisterFilter, |k| {
        if driver as usize != k.driver_object.address() {
            return invalid(
                k,
                "the driver object DriverEntry received",
                format!("Driver {driver:p}"),
            );
        }
        if registration.is_null() || out.is_null() {
            return invalid(k, "Registration and RetFilter", "a NULL pointer".to_owned());
        }
        let reg = guest::read(registration);
        if usize::from(reg.Size) != size_of::<FLT_REGISTRATION>() {
            return invalid(
                k,
                "Size == sizeof(FLT_REGISTRATION)",
                format!(
                    "Size {} (expected {})",
                    reg.Size,
                    size_of::<FLT_REGISTRATION>()
                ),
            );
        }
        if !ACCEPTED_VERSIONS.contains(&reg.Version) {
            return invalid(
                k,
                "Version FLT_REGISTRATION_VERSION",
                format!("Version {:#06x}", reg.Version),
            );
        }
        if reg.Flags & !KNOWN_REGISTRATION_FLAGS != 0 {
            k.violation(
                ViolationKind::Registration,
                "FltRegisterFilter: documented FLTFL_REGISTRATION_* flags",
                format!("Flags {:#x}", reg.Flags),
            );
        }
        // A name provider: its callbacks serve the filters above it (`name_provider.rs`).
        let name_provider = crate::fltmgr::name_provider::Callbacks::from_registration(&reg);
        let operations = match read_operations(k, reg.OperationRegistration) {
            Ok(ops) => ops,
            Err(status) => return status,
        };
        let contexts = match read_contexts(k, reg.ContextRegistration) {
            Ok(c) => c,
            Err(status) => return status,
        };
        let instance_config = match read_instance_config(k) {
            Ok(config) => config,
            Err(status) => return status,
        };
        if flt_write(k).any_registered() {
            k.violation(
                ViolationKind::Registration,
                "FltRegisterFilter: a driver registers one filter",
                "a filter of this driver is already registered".to_owned(),
            );
        }
        if k.inject_failure("FltRegisterFilter", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let handle = GuestAlloc::zeroed(64);
        let address = handle.address();
        flt_write(k).filters.insert(
            address,
            FilterRecord {
                handle,
                version: reg.Version,
                flags: reg.Flags,
                unload: reg.FilterUnloadCallback,
                instance_setup: reg.InstanceSetupCallback.map_or(0, |f| f as usize),
                instance_query_teardown: reg
                    .InstanceQueryTeardownCallback
                    .map_or(0, |f| f as usize),
                instance_teardown_start: reg
                    .InstanceTeardownStartCallback
                    .map_or(0, |f| f as usize),
                instance_teardown_complete: reg
                    .InstanceTeardownCompleteCallback
                    .map_or(0, |f| f as usize),
                transaction_notification: reg.TransactionNotificationCallback as usize,
                operations,
                contexts,
                started: false,
                unregistered: false,
                unregister_returned: false,
                instance_config,
                name_provider,
            },
        );
        if name_provider.is_some() {
            flt_read(k).io.providers.note_provider();
        }
        guest::write(out, address as PFLT_FILTER);
        // The scenario hook: FltMgr may call FilterUnload from now on (RULES.md, rule 1).
        crate::fltmgr::unload::start_race_unload(k);
        STATUS_SUCCESS
    })
}

/// `FltStartFiltering`: IRQL <= APC_LEVEL. `STATUS_INVALID_PARAMETER` if already started.
pub(crate) extern "win64" fn flt_start_filtering(filter: PFLT_FILTER) -> NTSTATUS {
    emulate(Routine::FltStartFiltering, |k| {
        let mut flt = flt_write(k);
        let Some(record) = flt.live_filter(filter as usize) else {
            drop(flt);
            k.violation(
                ViolationKind::InvalidHandle,
                "FltStartFiltering: a registered filter",
                format!("{filter:p} is not a registered filter"),
            );
            return STATUS_INVALID_PARAMETER;
        };
        if record.started {
            drop(flt);
            k.violation(
                ViolationKind::Parameter,
                "FltStartFiltering: called once",
                "filtering already started".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        record.started = true;
        drop(flt);
        // FltMgr offers every mounted volume to the filter now (InstanceSetup).
        crate::fltmgr::instances::attach_at_start(k, filter as usize);
        STATUS_SUCCESS
    })
}

/// `FltUnregisterFilter`: PASSIVE_LEVEL. Every communication port of the filter must be closed
/// first (an open port keeps a reference that makes the real routine wait forever); kernel-sim
/// reports and closes them.
pub(crate) extern "win64" fn flt_unregister_filter(filter: PFLT_FILTER) {
    emulate(Routine::FltUnregisterFilter, |k| {
        k.check_teardown_race("FltUnregisterFilter");
        let open_ports: Vec<String> = {
            let mut flt = flt_write(k);
            if flt.live_filter(filter as usize).is_none() {
                let known = flt.filters.contains_key(&(filter as usize));
                drop(flt);
                k.violation(
                    ViolationKind::InvalidHandle,
                    "FltUnregisterFilter: a registered filter, unregistered once",
                    if known {
                        format!("filter {filter:p} was already unregistered")
                    } else {
                        format!("{filter:p} is not a filter handle")
                    },
                );
                return;
            }
            let mut names = Vec::new();
            for port in flt
                .ports
                .values_mut()
                .filter(|p| p.filter == filter as usize && !p.closed)
            {
                port.closed = true;
                names.push(port.name.clone());
            }
            if let Some(record) = flt.filters.get_mut(&(filter as usize)) {
                record.unregistered = true;
            }
            names
        };
        if !open_ports.is_empty() {
            k.violation(
                ViolationKind::ResourceLeak,
                "FltUnregisterFilter: close every communication port first",
                format!("server port(s) still open: {}", open_ports.join(", ")),
            );
        }
        // The filter's own asynchronous I/O is in flight on its instances: it completes first.
        crate::fltmgr::callback_data::drain_async_io(k, None);
        // FltMgr calls DisconnectNotify for client ports still open, then drains the port
        // callbacks in flight.
        crate::fltmgr::ports::unregister_client_ports(k, filter as usize);
        // Drain the operations in flight and tear every instance down (teardown
        // callbacks), drop FltMgr's context references, report what the driver still holds.
        crate::fltmgr::instances::teardown_filter(k, filter as usize);
        if let Some(record) = flt_write(k).filters.get_mut(&(filter as usize)) {
            record.unregister_returned = true;
        }
    });
}
