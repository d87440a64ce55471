//! Reads of the driver's `Parameters` registry key (`<service key>\Parameters`). PASSIVE_LEVEL,
//! from DriverEntry. Every value is optional: absent or malformed values leave the default.

use core::ptr;

use vigil_sys::{
    HANDLE, KEY_READ, KEY_VALUE_PARTIAL_INFORMATION, KeyValuePartialInformation,
    OBJ_CASE_INSENSITIVE, OBJ_KERNEL_HANDLE, REG_DWORD, REG_MULTI_SZ, REG_SZ, UNICODE_STRING,
    ZwClose, ZwOpenKey, ZwQueryValueKey,
};

use crate::error::{NtStatus, Result, check};
use crate::kernel::pool::{PoolBuffer, tags};

/// `\Parameters`, appended to the service key path.
const PARAMETERS_SUFFIX: &[u16] = &[
    b'\\' as u16,
    b'P' as u16,
    b'a' as u16,
    b'r' as u16,
    b'a' as u16,
    b'm' as u16,
    b'e' as u16,
    b't' as u16,
    b'e' as u16,
    b'r' as u16,
    b's' as u16,
];

/// Largest value read (a `REG_MULTI_SZ` of protected prefixes): bounds the one scratch buffer.
const MAX_VALUE_BYTES_U32: u32 = 64 * 1024;
const MAX_VALUE_BYTES: usize = MAX_VALUE_BYTES_U32 as usize;

/// An open `Parameters` key, closed on drop.
pub struct ParametersKey {
    handle: HANDLE,
    /// Scratch buffer for value reads.
    scratch: PoolBuffer,
}

impl ParametersKey {
    /// Opens `<registry_path>\Parameters`; `Ok(None)` when the key does not exist.
    ///
    /// # Safety
    ///
    /// `registry_path` is the `UNICODE_STRING` DriverEntry received (valid during DriverEntry).
    pub unsafe fn open(registry_path: *const UNICODE_STRING) -> Result<Option<Self>> {
        // SAFETY: valid for reads during DriverEntry (contract).
        let service = unsafe { &*registry_path };
        let service_len = usize::from(service.Length) / 2;
        let total = service_len + PARAMETERS_SUFFIX.len();
        let byte_len = u16::try_from(total * 2).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut path = PoolBuffer::try_zeroed(total * 2, tags::REGISTRY)?;
        #[expect(clippy::cast_ptr_alignment, reason = "pool blocks are 16-byte aligned")]
        let path_units = path.as_mut_ptr().cast::<u16>();
        // SAFETY: `path` holds `total` u16; the service path has `service_len` units at `Buffer`
        // (contract); the ranges do not overlap.
        unsafe { ptr::copy_nonoverlapping(service.Buffer, path_units, service_len) };
        // SAFETY: `service_len < total`: the address stays inside the block.
        let suffix_at = unsafe { path_units.add(service_len) };
        // SAFETY: the suffix fills the rest of the block exactly.
        unsafe {
            ptr::copy_nonoverlapping(
                PARAMETERS_SUFFIX.as_ptr(),
                suffix_at,
                PARAMETERS_SUFFIX.len(),
            );
        }
        let mut name = UNICODE_STRING {
            Length: byte_len,
            MaximumLength: byte_len,
            Buffer: path_units,
        };
        let mut attributes = crate::kernel::object_attributes(
            &raw mut name,
            OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
            ptr::null_mut(),
        );
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: all pointers valid for the call; a kernel handle (rule 16).
        let status = unsafe { ZwOpenKey(&raw mut handle, KEY_READ, &raw mut attributes) };
        drop(path);
        if status == vigil_sys::STATUS_OBJECT_NAME_NOT_FOUND {
            return Ok(None);
        }
        check(status)?;
        let scratch = match PoolBuffer::try_zeroed(MAX_VALUE_BYTES, tags::REGISTRY) {
            Ok(scratch) => scratch,
            Err(error) => {
                // SAFETY: our kernel handle, closed once.
                unsafe { ZwClose(handle) };
                return Err(error);
            }
        };
        Ok(Some(Self { handle, scratch }))
    }

    /// Reads a `REG_DWORD` value; `None` when absent or of another type.
    pub fn dword(&mut self, name: &[u16]) -> Option<u32> {
        let (value_type, data) = self.query(name)?;
        if value_type != REG_DWORD {
            return None;
        }
        data.try_into().ok().map(u32::from_le_bytes)
    }

    /// Reads a `REG_MULTI_SZ` value and calls `each` with the code units of every non-empty
    /// string (no terminator); `false` when absent or of another type.
    pub fn multi_string(
        &mut self,
        name: &[u16],
        mut each: impl FnMut(&mut dyn Iterator<Item = u16>),
    ) -> bool {
        let Some((value_type, data)) = self.query(name) else {
            return false;
        };
        if value_type != REG_MULTI_SZ {
            return false;
        }
        crate::config::split_multi_sz(data, &mut each);
        true
    }

    /// Reads a `REG_SZ` value and calls `each` with its code units (up to the first NUL);
    /// `false` when absent, empty or of another type.
    pub fn string(
        &mut self,
        name: &[u16],
        each: impl FnOnce(&mut dyn Iterator<Item = u16>),
    ) -> bool {
        let Some((value_type, data)) = self.query(name) else {
            return false;
        };
        if value_type != REG_SZ {
            return false;
        }
        let mut each = Some(each);
        crate::config::split_multi_sz(data, &mut |units| {
            if let Some(each) = each.take() {
                each(units);
            }
        });
        each.is_none()
    }

    fn query(&mut self, name: &[u16]) -> Option<(u32, &[u8])> {
        let byte_len = u16::try_from(size_of_val(name)).ok()?;
        let mut value_name = UNICODE_STRING {
            Length: byte_len,
            MaximumLength: byte_len,
            Buffer: name.as_ptr().cast_mut(),
        };
        let mut result_len = 0u32;
        // SAFETY: the scratch block holds MAX_VALUE_BYTES; the handle is open; pointers valid.
        let status = unsafe {
            ZwQueryValueKey(
                self.handle,
                &raw mut value_name,
                KeyValuePartialInformation,
                self.scratch.as_mut_ptr().cast(),
                MAX_VALUE_BYTES_U32,
                &raw mut result_len,
            )
        };
        check(status).ok()?;
        // On success the block starts with a KEY_VALUE_PARTIAL_INFORMATION: read its fields from
        // the bytes (little-endian u32s), then bound the data by subtraction, never addition.
        let bytes = self.scratch.as_slice();
        let field = |offset: usize| -> Option<u32> {
            let word = bytes.get(offset..)?.first_chunk::<4>()?;
            Some(u32::from_le_bytes(*word))
        };
        let value_type = field(core::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Type))?;
        let data_len = field(core::mem::offset_of!(
            KEY_VALUE_PARTIAL_INFORMATION,
            DataLength
        ))?;
        let data = bytes.get(core::mem::offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data)..)?;
        Some((value_type, data.get(..usize::try_from(data_len).ok()?)?))
    }
}

impl Drop for ParametersKey {
    fn drop(&mut self) {
        // SAFETY: our kernel handle, closed once.
        unsafe { ZwClose(self.handle) };
    }
}
