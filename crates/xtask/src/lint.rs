//! The driver image lint: what a Windows x64 kernel driver image must look like, checked on the
//! bytes of `vigil.sys`. Runs on the Linux development host (tests and `cargo xtask`).
//!
//! [`lint_driver_image`] returns every [`Finding`]; an empty list means the image passes. The
//! rules, each with its reason:
//!
//! * machine `IMAGE_FILE_MACHINE_AMD64`: the only architecture Vigil supports;
//! * subsystem `IMAGE_SUBSYSTEM_NATIVE`: a kernel image, not a user-mode program;
//! * the entry point is the exported `DriverEntry`: the I/O manager calls the entry point with
//!   `DriverEntry`'s signature, so anything else there (a CRT stub, a wrong `/ENTRY`) crashes;
//! * imports only from `ntoskrnl.exe`, `FLTMGR.SYS` and `HAL.dll` (compared case-insensitively,
//!   as the loader does): any other module cannot be resolved in kernel mode;
//! * no allowed module with `.dll` appended (`ntoskrnl.exe.dll`): what a `raw-dylib` import
//!   without `modifiers = "+verbatim"` produces, and the loader finds no such module;
//! * none of the deprecated allocation routines (`ExAllocatePoolWithTag` and kin, which return
//!   uninitialized memory; RULES.md rule 20) nor `MmGetSystemAddressForMdl`;
//! * no import of `KeBugCheckEx`: Vigil's only caller of it is the panic handler, which the
//!   linker keeps only if some panic is reachable; without the import the image provably has no
//!   panic path, so no input or exhaustion can bug-check the machine through Rust (rule 22);
//! * no section both writable and executable (HVCI refuses to load such an image);
//! * the PE checksum is valid: the kernel loader verifies it for drivers.

use std::fmt;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{
    ExportTarget, ImageNtHeaders, ImageOptionalHeader, Import, ImportTable, PeFile64,
};

use crate::pe::pe_checksum;

/// The modules a Vigil driver may import from (compared case-insensitively).
pub const ALLOWED_IMPORT_MODULES: &[&str] = &["ntoskrnl.exe", "FLTMGR.SYS", "HAL.dll"];

/// Routines a driver must not import.
pub const DEPRECATED_ROUTINES: &[&str] = &[
    "ExAllocatePoolWithTag",
    "ExAllocatePool",
    "ExAllocatePoolWithQuotaTag",
    "ExAllocatePoolWithQuota",
    "MmGetSystemAddressForMdl",
];

/// What the panic handler calls: imported only when a panic is reachable.
pub const PANIC_ROUTINE: &str = "KeBugCheckEx";

/// The entry point's export name.
pub const DRIVER_ENTRY: &str = "DriverEntry";

/// One violation of a lint rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The bytes are not a PE32+ image the lint can read.
    Unreadable(String),
    /// `FileHeader.Machine` is not AMD64.
    Machine {
        /// The machine field found.
        found: u16,
    },
    /// `OptionalHeader.Subsystem` is not native.
    Subsystem {
        /// The subsystem field found.
        found: u16,
    },
    /// The image exports no `DriverEntry`.
    NoDriverEntryExport,
    /// `AddressOfEntryPoint` is not the RVA of `DriverEntry`.
    EntryPointNotDriverEntry {
        /// `AddressOfEntryPoint`.
        entry_point: u32,
        /// The RVA of the `DriverEntry` export.
        driver_entry: u32,
    },
    /// An import from a module outside [`ALLOWED_IMPORT_MODULES`].
    ImportModuleNotAllowed {
        /// The module name as the image spells it.
        module: String,
    },
    /// An allowed module with `.dll` appended (`ntoskrnl.exe.dll`).
    ImportModuleDllAppended {
        /// The module name as the image spells it.
        module: String,
    },
    /// An import of one of [`DEPRECATED_ROUTINES`].
    DeprecatedImport {
        /// The module it is imported from.
        module: String,
        /// The routine.
        routine: String,
    },
    /// `KeBugCheckEx` is imported: some panic is reachable from the driver's code.
    PanicReachable,
    /// A section that is both writable and executable.
    WritableExecutableSection {
        /// The section name.
        name: String,
        /// Its characteristics.
        characteristics: u32,
    },
    /// The stored checksum is not the image's checksum.
    Checksum {
        /// `OptionalHeader.CheckSum`.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(why) => write!(f, "not a readable PE32+ image: {why}"),
            Self::Machine { found } => write!(f, "machine {found:#06x}, expected AMD64 (0x8664)"),
            Self::Subsystem { found } => write!(f, "subsystem {found}, expected native (1)"),
            Self::NoDriverEntryExport => write!(f, "no `{DRIVER_ENTRY}` export"),
            Self::EntryPointNotDriverEntry {
                entry_point,
                driver_entry,
            } => write!(
                f,
                "entry point {entry_point:#x} is not {DRIVER_ENTRY} ({driver_entry:#x})"
            ),
            Self::ImportModuleNotAllowed { module } => write!(
                f,
                "imports from `{module}`, outside {}",
                ALLOWED_IMPORT_MODULES.join(", ")
            ),
            Self::ImportModuleDllAppended { module } => write!(
                f,
                "imports from `{module}`: `.dll` appended to an allowed module \
                 (a raw-dylib import without modifiers = \"+verbatim\")"
            ),
            Self::DeprecatedImport { module, routine } => {
                write!(f, "imports the deprecated routine {routine} from {module}")
            }
            Self::PanicReachable => write!(
                f,
                "imports {PANIC_ROUTINE}: a panic is reachable (find it with llvm-symbolizer on \
                 the callers of core::panicking in vigil.pdb)"
            ),
            Self::WritableExecutableSection {
                name,
                characteristics,
            } => write!(
                f,
                "section `{name}` is writable and executable ({characteristics:#010x})"
            ),
            Self::Checksum { stored, computed } => {
                write!(f, "PE checksum {stored:#x} stored, {computed:#x} computed")
            }
        }
    }
}

/// Lints a driver image; an empty list means it passes every rule.
pub fn lint_driver_image(image: &[u8]) -> Vec<Finding> {
    let file = match PeFile64::parse(image) {
        Ok(file) => file,
        Err(error) => return vec![Finding::Unreadable(error.to_string())],
    };
    let mut findings = Vec::new();
    let headers = file.nt_headers();
    let machine = headers.file_header().machine.get(LE);
    if machine != pe::IMAGE_FILE_MACHINE_AMD64 {
        findings.push(Finding::Machine { found: machine.0 });
    }
    let optional = headers.optional_header();
    if optional.subsystem() != pe::IMAGE_SUBSYSTEM_NATIVE {
        findings.push(Finding::Subsystem {
            found: optional.subsystem().0,
        });
    }
    findings.extend(check_entry_point(&file, optional.address_of_entry_point()));
    findings.extend(check_imports(&file, image));
    for section in file.section_table().iter() {
        let characteristics = section.characteristics.get(LE).0;
        let writable = characteristics & pe::IMAGE_SCN_MEM_WRITE.0 != 0;
        let executable = characteristics & pe::IMAGE_SCN_MEM_EXECUTE.0 != 0;
        if writable && executable {
            let name = String::from_utf8_lossy(section.raw_name())
                .trim_end_matches('\0')
                .to_owned();
            findings.push(Finding::WritableExecutableSection {
                name,
                characteristics,
            });
        }
    }
    match pe_checksum(image) {
        Ok(computed) if computed == optional.check_sum() => {}
        Ok(computed) => findings.push(Finding::Checksum {
            stored: optional.check_sum(),
            computed,
        }),
        Err(why) => findings.push(Finding::Unreadable(why.to_owned())),
    }
    findings
}

/// The import table of an image's bytes: each module with the routines imported from it.
///
/// # Errors
///
/// The bytes are not a PE32+ image, or its import table cannot be read.
pub fn imports_of(image: &[u8]) -> Result<Vec<(String, Vec<String>)>, String> {
    let file = PeFile64::parse(image).map_err(|e| e.to_string())?;
    read_imports(&file, image)
}

/// The RVA of the `DriverEntry` export, if the image has one.
pub fn driver_entry_rva(image: &[u8]) -> Option<u32> {
    let file = PeFile64::parse(image).ok()?;
    find_driver_entry(&file).ok().flatten()
}

fn find_driver_entry(file: &PeFile64<'_>) -> Result<Option<u32>, String> {
    let Some(exports) = file.export_table().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    for export in exports.exports().map_err(|e| e.to_string())? {
        if let (Some(b"DriverEntry"), ExportTarget::Address(rva)) = (export.name, export.target) {
            return Ok(Some(rva));
        }
    }
    Ok(None)
}

fn check_entry_point(file: &PeFile64<'_>, entry_point: u32) -> Vec<Finding> {
    match find_driver_entry(file) {
        Err(why) => vec![Finding::Unreadable(format!("export table: {why}"))],
        Ok(None) => vec![Finding::NoDriverEntryExport],
        Ok(Some(driver_entry)) if driver_entry != entry_point => {
            vec![Finding::EntryPointNotDriverEntry {
                entry_point,
                driver_entry,
            }]
        }
        Ok(Some(_)) => Vec::new(),
    }
}

fn check_imports(file: &PeFile64<'_>, image: &[u8]) -> Vec<Finding> {
    match read_imports(file, image) {
        Ok(imports) => {
            let mut findings = Vec::new();
            for (module, routines) in imports {
                if let Some(finding) = check_module(&module) {
                    findings.push(finding);
                }
                for routine in routines {
                    if routine == PANIC_ROUTINE {
                        findings.push(Finding::PanicReachable);
                    }
                    if DEPRECATED_ROUTINES.contains(&routine.as_str()) {
                        findings.push(Finding::DeprecatedImport {
                            module: module.clone(),
                            routine,
                        });
                    }
                }
            }
            findings
        }
        Err(why) => vec![Finding::Unreadable(format!("import table: {why}"))],
    }
}

fn check_module(module: &str) -> Option<Finding> {
    let allowed = |name: &str| {
        ALLOWED_IMPORT_MODULES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name))
    };
    if allowed(module) {
        return None;
    }
    let lower = module.to_ascii_lowercase();
    if lower.strip_suffix(".dll").is_some_and(allowed) {
        return Some(Finding::ImportModuleDllAppended {
            module: module.to_owned(),
        });
    }
    Some(Finding::ImportModuleNotAllowed {
        module: module.to_owned(),
    })
}

/// Largest `SizeOfImage` the lint maps (a driver is far smaller; this bounds a corrupt header).
const MAX_MAPPED_IMAGE: usize = 256 << 20;

/// The image as the loader maps it: headers and each section's file data at their RVAs, zeros
/// elsewhere. Import names and thunks may live in any section, as for the loader.
fn map_image(file: &PeFile64<'_>, image: &[u8]) -> Result<Vec<u8>, String> {
    let optional = file.nt_headers().optional_header();
    let size = usize::try_from(optional.size_of_image()).map_err(|e| e.to_string())?;
    if size > MAX_MAPPED_IMAGE {
        return Err(format!("SizeOfImage {size:#x} is implausible"));
    }
    let mut mapped = vec![0u8; size];
    let headers = usize::try_from(optional.size_of_headers()).map_err(|e| e.to_string())?;
    let headers = headers.min(image.len()).min(size);
    mapped[..headers].copy_from_slice(&image[..headers]);
    for section in file.section_table().iter() {
        let data = section.pe_data(image).map_err(|e| e.to_string())?;
        let at = usize::try_from(section.virtual_address.get(LE)).map_err(|e| e.to_string())?;
        let end = at.checked_add(data.len()).filter(|&end| end <= size);
        let end = end.ok_or_else(|| "a section lies outside SizeOfImage".to_owned())?;
        mapped[at..end].copy_from_slice(data);
    }
    Ok(mapped)
}

/// Every import module with the names of the routines imported from it (ordinal imports have no
/// name and are left out).
///
/// # Errors
///
/// A description of the first malformed part of the import directory.
pub fn read_imports(
    file: &PeFile64<'_>,
    image: &[u8],
) -> Result<Vec<(String, Vec<String>)>, String> {
    let Some(directory) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_IMPORT) else {
        return Ok(Vec::new());
    };
    let mapped = map_image(file, image)?;
    let table = ImportTable::new(&mapped, 0, directory.virtual_address.get(LE));
    let mut modules = Vec::new();
    let mut descriptors = table.descriptors().map_err(|e| e.to_string())?;
    while let Some(descriptor) = descriptors.next().map_err(|e| e.to_string())? {
        let name = table
            .name(descriptor.name.get(LE))
            .map_err(|e| e.to_string())?;
        let module = String::from_utf8_lossy(name).into_owned();
        // The lookup table names the imports; an image without one keeps them in the IAT.
        let lookup = match descriptor.original_first_thunk.get(LE) {
            0 => descriptor.first_thunk.get(LE),
            rva => rva,
        };
        let mut thunks = table.thunks(lookup).map_err(|e| e.to_string())?;
        let mut routines = Vec::new();
        while let Some(thunk) = thunks
            .next::<pe::ImageNtHeaders64>()
            .map_err(|e| e.to_string())?
        {
            if let Import::Name(_hint, routine) = table
                .import::<pe::ImageNtHeaders64>(thunk)
                .map_err(|e| e.to_string())?
            {
                routines.push(String::from_utf8_lossy(routine).into_owned());
            }
        }
        modules.push((module, routines));
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_modules_compare_case_insensitively() {
        assert_eq!(check_module("ntoskrnl.exe"), None);
        assert_eq!(check_module("NTOSKRNL.EXE"), None);
        assert_eq!(check_module("fltmgr.sys"), None);
        assert_eq!(check_module("hal.DLL"), None);
    }

    #[test]
    fn dll_suffix_on_an_allowed_module_is_its_own_finding() {
        assert_eq!(
            check_module("ntoskrnl.exe.dll"),
            Some(Finding::ImportModuleDllAppended {
                module: "ntoskrnl.exe.dll".into()
            })
        );
        assert_eq!(
            check_module("FLTMGR.SYS.DLL"),
            Some(Finding::ImportModuleDllAppended {
                module: "FLTMGR.SYS.DLL".into()
            })
        );
        assert_eq!(
            check_module("kernel32.dll"),
            Some(Finding::ImportModuleNotAllowed {
                module: "kernel32.dll".into()
            })
        );
    }

    #[test]
    fn garbage_is_unreadable() {
        assert!(matches!(
            lint_driver_image(b"MZ not a PE").as_slice(),
            [Finding::Unreadable(_)]
        ));
    }
}
