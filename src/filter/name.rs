//! File name information from FltMgr, released exactly once (RULES.md, rule 19). IRQL <=
//! APC_LEVEL (the name routines' limit); never called from a post-operation callback that may
//! run at DISPATCH_LEVEL.

use core::ptr::{self, NonNull};

use vigil_sys::{
    FLT_FILE_NAME_INFORMATION, FLT_FILE_NAME_NORMALIZED, FLT_FILE_NAME_OPENED,
    FLT_FILE_NAME_QUERY_DEFAULT, FltGetDestinationFileNameInformation, FltGetFileNameInformation,
    FltReleaseFileNameInformation, PFLT_FILE_NAME_INFORMATION,
};

use crate::error::{NtStatus, Result, check};
use crate::filter::operation::Operation;
use crate::filter::set_information::LinkTarget;
use crate::twins::{self, Twin};

/// A referenced `FLT_FILE_NAME_INFORMATION`, released on drop.
///
/// # Invariants
///
/// `info` holds one reference from a FltMgr name routine.
pub struct FileName {
    info: NonNull<FLT_FILE_NAME_INFORMATION>,
    normalized: bool,
}

impl FileName {
    /// The operation's file name: normalized if possible, else the opened name (the fallback is
    /// reported in the event's flags).
    pub fn query(operation: &mut Operation<'_>) -> Result<Self> {
        if twins::is(Twin::OpenedNameOnly) {
            return Self::query_format(operation, FLT_FILE_NAME_OPENED);
        }
        match Self::query_format(operation, FLT_FILE_NAME_NORMALIZED) {
            Ok(name) => Ok(name),
            Err(_) => Self::query_format(operation, FLT_FILE_NAME_OPENED),
        }
    }

    fn query_format(operation: &mut Operation<'_>, format: u32) -> Result<Self> {
        let mut info: PFLT_FILE_NAME_INFORMATION = ptr::null_mut();
        // SAFETY: valid callback data; out-pointer valid; IRQL <= APC is the caller's contract.
        check(unsafe {
            FltGetFileNameInformation(
                operation.raw(),
                format | FLT_FILE_NAME_QUERY_DEFAULT,
                &raw mut info,
            )
        })?;
        let info = NonNull::new(info).ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(Self {
            info,
            normalized: format == FLT_FILE_NAME_NORMALIZED,
        })
    }

    /// The name a rename or link *targets*, from the operation's parsed information buffer.
    /// PASSIVE_LEVEL.
    pub fn destination(operation: &Operation<'_>, target: &LinkTarget<'_>) -> Result<Self> {
        let name_bytes =
            u32::try_from(size_of_val(target.name)).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut info: PFLT_FILE_NAME_INFORMATION = ptr::null_mut();
        // SAFETY: the operation's own instance and file object; the root handle and the name
        // come from its information buffer (LinkTarget), valid for the callback, and FltMgr only
        // reads the name; out-pointer valid; PASSIVE_LEVEL (set information).
        check(unsafe {
            FltGetDestinationFileNameInformation(
                operation.instance(),
                operation.file_object(),
                target.root_directory,
                target.name.as_ptr().cast_mut(),
                name_bytes,
                FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT,
                &raw mut info,
            )
        })?;
        let info = NonNull::new(info).ok_or(NtStatus::UNSUCCESSFUL)?;
        Ok(Self {
            info,
            normalized: true,
        })
    }

    /// Whether this is the normalized name (false: the opened-name fallback).
    pub fn is_normalized(&self) -> bool {
        self.normalized
    }

    /// The full name in UTF-16.
    pub fn units(&self) -> &[u16] {
        // SAFETY: referenced (invariant): FltMgr keeps the structure and buffer alive.
        let name = unsafe { &(*self.info.as_ptr()).Name };
        if name.Buffer.is_null() {
            return &[];
        }
        // SAFETY: `Length` bytes of UTF-16 at `Buffer`, alive while referenced.
        unsafe { core::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) }
    }

    /// Gives the reference up as a raw pointer (a completion context); take it back with
    /// [`FileName::from_raw`] exactly once. The structure is pointer-aligned, so bit 0 carries
    /// "opened-name fallback".
    pub fn into_raw(self) -> *mut core::ffi::c_void {
        let raw = self.info.as_ptr().cast::<core::ffi::c_void>();
        let tagged = raw.map_addr(|addr| addr | usize::from(!self.normalized));
        core::mem::forget(self);
        tagged
    }

    /// The units and normalized flag of a reference given up by [`FileName::into_raw`],
    /// without taking it back.
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` and is not taken back while the returned slice lives.
    pub unsafe fn view_raw<'a>(raw: *mut core::ffi::c_void) -> (&'a [u16], bool) {
        let normalized = raw.addr() & 1 == 0;
        let info = raw
            .map_addr(|addr| addr & !1)
            .cast::<FLT_FILE_NAME_INFORMATION>();
        // SAFETY: a referenced structure (contract), alive while the reference is held.
        let Some(info) = (unsafe { info.as_ref() }) else {
            return (&[], normalized);
        };
        if info.Name.Buffer.is_null() {
            return (&[], normalized);
        }
        // SAFETY: `Length` bytes of UTF-16 at `Buffer`, alive while referenced (contract).
        let units = unsafe {
            core::slice::from_raw_parts(info.Name.Buffer, usize::from(info.Name.Length) / 2)
        };
        (units, normalized)
    }

    /// Takes back a reference given up by [`FileName::into_raw`].
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` and is taken back exactly once.
    pub unsafe fn from_raw(raw: *mut core::ffi::c_void) -> Option<Self> {
        let normalized = raw.addr() & 1 == 0;
        let info = raw.map_addr(|addr| addr & !1).cast();
        NonNull::new(info).map(|info| Self { info, normalized })
    }
}

impl Drop for FileName {
    fn drop(&mut self) {
        // SAFETY: releases the one reference held (invariant), exactly once.
        unsafe { FltReleaseFileNameInformation(self.info.as_ptr()) };
        if twins::is(Twin::DoubleRelease) {
            // SAFETY: none: the `double-release` broken twin releases twice on purpose.
            unsafe { FltReleaseFileNameInformation(self.info.as_ptr()) };
        }
    }
}
