//! The emulated registry. `ZwOpenKey`, `ZwQueryValueKey`. Two sources: the machine registry an
//! INF install left ([`SimConfig::machine_registry`](crate::SimConfig::machine_registry)), any
//! key of it; or, for an image loaded without an INF, the driver's service key and its
//! `Parameters` subkey with the values a test sets in [`SimConfig::registry`](crate::SimConfig::registry).

use vigil_sys::{
    ACCESS_MASK, HANDLE, KEY_VALUE_PARTIAL_INFORMATION, KeyValuePartialInformation, NTSTATUS,
    OBJECT_ATTRIBUTES, PVOID, REG_DWORD, REG_MULTI_SZ, REG_SZ, STATUS_BUFFER_OVERFLOW,
    STATUS_BUFFER_TOO_SMALL, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::config::RegistryValue;
use crate::kernel::objects::{HandleTarget, KeyObject};
use crate::kernel::{emulate, lock};
use crate::machine::guest;
use crate::ntoskrnl::exports::Routine;
use crate::ntoskrnl::status;
use crate::ntoskrnl::thread::check_kernel_handle;
use crate::report::ViolationKind;

/// `REG_EXPAND_SZ`.
const REG_EXPAND_SZ: u32 = 2;
/// `REG_BINARY`.
const REG_BINARY: u32 = 3;
/// `KeyValueBasicInformation` and `KeyValueFullInformation` (not emulated yet).
const KEY_VALUE_BASIC_INFORMATION: i32 = 0;
const KEY_VALUE_FULL_INFORMATION: i32 = 1;

/// `ZwOpenKey`: PASSIVE_LEVEL. Failable: `STATUS_INSUFFICIENT_RESOURCES`.
pub(crate) extern "win64" fn zw_open_key(
    key_out: *mut HANDLE,
    _access: ACCESS_MASK,
    attributes: *mut OBJECT_ATTRIBUTES,
) -> NTSTATUS {
    emulate(Routine::ZwOpenKey, |k| {
        if key_out.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "ZwOpenKey: a KeyHandle out-pointer",
                "KeyHandle is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let Some(value) = check_kernel_handle(k, "ZwOpenKey", attributes) else {
            return STATUS_INVALID_PARAMETER;
        };
        let name = match guest::unicode_string(value.ObjectName) {
            None => String::new(),
            Some(Ok(name)) => name,
            Some(Err(why)) => {
                k.violation(
                    ViolationKind::Parameter,
                    "ZwOpenKey: a well-formed ObjectName",
                    why,
                );
                return STATUS_INVALID_PARAMETER;
            }
        };
        let path = if value.RootDirectory.is_null() {
            name
        } else {
            let root = lock(&k.objects).get(value.RootDirectory as usize);
            let Some(HandleTarget::Key(root)) = root else {
                k.violation(
                    ViolationKind::InvalidHandle,
                    "ZwOpenKey: RootDirectory is an open key handle",
                    format!("{:p}", value.RootDirectory),
                );
                return status::INVALID_HANDLE;
            };
            format!("{}\\{name}", root.path)
        };
        let service = k.config.service_key_path();
        let known = if let Some(registry) = &k.config.machine_registry {
            registry.key(&path).is_some()
        } else {
            path.eq_ignore_ascii_case(&service)
                || (k.config.parameters_key
                    && path.eq_ignore_ascii_case(&format!("{service}\\Parameters")))
        };
        if !known {
            return STATUS_OBJECT_NAME_NOT_FOUND;
        }
        if k.inject_failure("ZwOpenKey", "STATUS_INSUFFICIENT_RESOURCES") {
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        let handle = lock(&k.objects).open(HandleTarget::Key(KeyObject { path }), "ZwOpenKey");
        guest::write(key_out, handle as HANDLE);
        STATUS_SUCCESS
    })
}

fn encode(value: &RegistryValue) -> (u32, Vec<u8>) {
    let utf16z = |s: &str| {
        s.encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    match value {
        RegistryValue::Dword(v) => (REG_DWORD, v.to_le_bytes().to_vec()),
        RegistryValue::Sz(s) => (REG_SZ, utf16z(s)),
        RegistryValue::ExpandSz(s) => (REG_EXPAND_SZ, utf16z(s)),
        RegistryValue::MultiSz(list) => {
            let mut bytes: Vec<u8> = list.iter().flat_map(|s| utf16z(s)).collect();
            bytes.extend_from_slice(&[0, 0]);
            (REG_MULTI_SZ, bytes)
        }
        RegistryValue::Binary(b) => (REG_BINARY, b.clone()),
    }
}

/// `ZwQueryValueKey`: PASSIVE_LEVEL. `KeyValuePartialInformation`; `STATUS_BUFFER_TOO_SMALL`
/// when not even the fixed part fits (nothing written), `STATUS_BUFFER_OVERFLOW` when only the
/// fixed part fits (it is written); `*ResultLength` is the size needed in both cases.
pub(crate) extern "win64" fn zw_query_value_key(
    key: HANDLE,
    value_name: *mut UNICODE_STRING,
    class: i32,
    buffer: PVOID,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    emulate(Routine::ZwQueryValueKey, |k| {
        let target = lock(&k.objects).get(key as usize);
        let path = match target {
            Some(HandleTarget::Key(key)) => key.path,
            Some(_) => return status::OBJECT_TYPE_MISMATCH,
            None => {
                k.violation(
                    ViolationKind::InvalidHandle,
                    "ZwQueryValueKey: an open key handle",
                    format!("handle {key:p} is not open"),
                );
                return status::INVALID_HANDLE;
            }
        };
        if result_length.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "ZwQueryValueKey: a ResultLength out-pointer",
                "ResultLength is NULL".to_owned(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        match class {
            c if c == KeyValuePartialInformation => {}
            KEY_VALUE_BASIC_INFORMATION | KEY_VALUE_FULL_INFORMATION => {
                k.violation(
                    ViolationKind::NotEmulated,
                    "ZwQueryValueKey",
                    format!("information class {class} is not emulated yet"),
                );
                return vigil_sys::STATUS_NOT_IMPLEMENTED;
            }
            _ => return STATUS_INVALID_PARAMETER,
        }
        let name = match guest::unicode_string(value_name) {
            Some(Ok(name)) => name,
            None => String::new(),
            Some(Err(why)) => {
                k.violation(
                    ViolationKind::Parameter,
                    "ZwQueryValueKey: a well-formed ValueName",
                    why,
                );
                return STATUS_INVALID_PARAMETER;
            }
        };
        let parameters = format!("{}\\Parameters", k.config.service_key_path());
        let value = if let Some(registry) = &k.config.machine_registry {
            registry.value(&path, &name).cloned()
        } else if path.eq_ignore_ascii_case(&parameters) {
            k.config
                .registry
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(_, v)| v.clone())
        } else {
            None
        };
        let Some(value) = value else {
            return STATUS_OBJECT_NAME_NOT_FOUND;
        };
        let (kind, data) = encode(&value);
        let fixed = std::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);
        let needed = fixed + data.len();
        let needed_u32 = u32::try_from(needed).unwrap_or(u32::MAX);
        guest::write(result_length, needed_u32);
        if (length as usize) < fixed {
            return STATUS_BUFFER_TOO_SMALL;
        }
        let header = [0u32, kind, u32::try_from(data.len()).unwrap_or(u32::MAX)];
        guest::write(buffer.cast::<[u32; 3]>(), header);
        if (length as usize) < needed {
            return STATUS_BUFFER_OVERFLOW;
        }
        guest::write_bytes((buffer as usize + fixed) as *mut u8, &data);
        STATUS_SUCCESS
    })
}
