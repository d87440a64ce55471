//! The routines and variables kernel-sim provides, by module and name: the loader binds a
//! driver's imports from this table and refuses any import missing from it.
//!
//! Each exporting module keeps its own table (`ntoskrnl::exports`, `fltmgr::exports`); this
//! file only puts them together under the module names a driver's import directory uses.

use crate::image::Binding;
use crate::kernel::Export;
use crate::kernel::routine::Routine;
use crate::{fltmgr, ntoskrnl};

/// A module a driver may import from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KnownModule {
    /// `ntoskrnl.exe`.
    Ntoskrnl,
    /// `FLTMGR.SYS`.
    FltMgr,
    /// `HAL.dll` (nothing emulated yet: any import from it is reported missing).
    Hal,
}

impl KnownModule {
    /// The module for an import directory name, compared case-insensitively. A raw-dylib
    /// import declared without `+verbatim` (`ntoskrnl.exe.dll`) matches nothing.
    pub(crate) fn from_import_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "ntoskrnl.exe" => Some(Self::Ntoskrnl),
            "fltmgr.sys" => Some(Self::FltMgr),
            "hal.dll" => Some(Self::Hal),
            _ => None,
        }
    }
}

/// `HAL.dll`: nothing emulated yet.
const HAL: &[Export] = &[];

fn table(module: KnownModule) -> &'static [Export] {
    match module {
        KnownModule::Ntoskrnl => ntoskrnl::exports::EXPORTS,
        KnownModule::FltMgr => fltmgr::exports::EXPORTS,
        KnownModule::Hal => HAL,
    }
}

/// The emulated routine called `name`, from whichever module's table declares it.
pub(crate) fn routine_named(name: &str) -> Option<Routine> {
    let ntoskrnl = ntoskrnl::exports::Routine::ALL.iter().map(|r| r.routine());
    let fltmgr = fltmgr::exports::Routine::ALL.iter().map(|r| r.routine());
    ntoskrnl.chain(fltmgr).find(|r| r.name() == name)
}

/// The loader's resolver: what to bind for an import of `name` from the module the import
/// directory calls `module`.
pub(crate) fn bind(module: &str, name: &str) -> Binding {
    match KnownModule::from_import_name(module) {
        None => Binding::UnknownModule,
        Some(known) => resolve(known, name).map_or(Binding::NotEmulated, Binding::Address),
    }
}

/// The address to bind for `module!name`, if emulated.
pub(crate) fn resolve(module: KnownModule, name: &str) -> Option<usize> {
    table(module)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, address)| address())
}

/// Every emulated routine and variable, as `(module, name)`.
pub fn emulated() -> Vec<(&'static str, &'static str)> {
    let mut all = Vec::new();
    for (module, name) in [
        (KnownModule::Ntoskrnl, "ntoskrnl.exe"),
        (KnownModule::FltMgr, "FLTMGR.SYS"),
        (KnownModule::Hal, "HAL.dll"),
    ] {
        all.extend(table(module).iter().map(|(n, _)| (name, *n)));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routine_has_its_own_index_and_name_and_an_export_line() {
        let routines: Vec<Routine> = ntoskrnl::exports::Routine::ALL
            .iter()
            .map(|r| r.routine())
            .chain(fltmgr::exports::Routine::ALL.iter().map(|r| r.routine()))
            .collect();
        for (position, routine) in routines.iter().enumerate() {
            assert_eq!(routine.index(), position, "{}", routine.name());
            assert_eq!(routine_named(routine.name()), Some(*routine));
        }
        let names: std::collections::BTreeSet<&str> = routines.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), routines.len(), "a name declared twice");
        for (module, name) in emulated() {
            let known = KnownModule::from_import_name(module).expect("a known module");
            assert!(resolve(known, name).is_some(), "{module}!{name}");
        }
        let variables = ["PsThreadType", "MmUserProbeAddress"];
        assert_eq!(emulated().len(), routines.len() + variables.len());
        assert!(routine_named("NotARoutine").is_none());
    }
}
