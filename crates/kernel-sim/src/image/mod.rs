//! The image layer: the PE loader, which maps a driver image into the process as the Windows
//! loader would, and the image's symbols ([`symbols`]). Host code; above the machine layer
//! (mappings, image bounds), below the kernel.
//!
//! One anonymous mapping of `SizeOfImage`; headers and raw section data copied in; `DIR64`
//! base relocations applied with the delta from `ImageBase`; the import address table bound through
//! the resolver the caller gives [`load`] (so this layer does not know which routines exist or
//! where they are emulated): functions to `extern "win64"` routines, data imports such as
//! `PsThreadType` to the addresses of emulated variables); then every section `mprotect`ed to
//! its characteristics. The loader refuses: an image that imports a routine kernel-sim does not
//! emulate (with the full list), a module other than `ntoskrnl.exe`, `FLTMGR.SYS` or `HAL.dll`
//! (compared case-insensitively; `ntoskrnl.exe.dll` is the mark of a raw-dylib import declared
//! without `+verbatim` and is refused), and any section both writable and executable.
//!
//! Unloading does not free the addresses: the mapping becomes `PROT_NONE` in the quarantine
//! (see [`crate::machine::pages::quarantine`]), so a stale call into the unloaded driver faults at
//! an address kernel-sim can name.

pub(crate) mod symbols;

use std::fmt;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile64};

use crate::machine::pages::{Region, page_size};
use crate::machine::state::ImageBounds;

/// Why an image was not loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io(std::io::Error),
    /// Not a well-formed x64 PE image (the reason).
    Malformed(String),
    /// Imports from modules kernel-sim does not provide (`module!routine`, every one).
    UnsupportedModules(Vec<String>),
    /// Imports kernel-sim does not emulate (`module!routine`, every one).
    MissingImports(Vec<String>),
    /// Sections that are both writable and executable.
    WritableExecutable(Vec<String>),
    /// The process could not map or protect memory.
    Map(std::io::Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the image: {e}"),
            Self::Malformed(why) => write!(f, "malformed image: {why}"),
            Self::UnsupportedModules(names) => {
                write!(
                    f,
                    "imports from modules kernel-sim does not provide: {}",
                    names.join(", ")
                )
            }
            Self::MissingImports(names) => write!(
                f,
                "imports kernel-sim does not emulate: {}",
                names.join(", ")
            ),
            Self::WritableExecutable(names) => {
                write!(f, "writable and executable sections: {}", names.join(", "))
            }
            Self::Map(e) => write!(f, "cannot map the image: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

fn malformed(e: impl fmt::Display) -> LoadError {
    LoadError::Malformed(e.to_string())
}

/// A section as mapped.
#[derive(Clone, Debug)]
pub(crate) struct SectionInfo {
    pub name: String,
    pub rva: u32,
    pub size: u32,
}

/// An image mapped in the process.
///
/// # Invariants
///
/// While `region` is `Some`, `bounds` describes it and its imports are bound.
pub(crate) struct LoadedImage {
    region: Option<Region>,
    /// Base, size and exception data.
    pub bounds: ImageBounds,
    /// RVA of the entry point (DriverEntry).
    pub entry_rva: u32,
    /// Sections, for describing addresses.
    pub sections: Vec<SectionInfo>,
    /// Exported names and RVAs.
    pub exports: Vec<(String, u32)>,
}

impl LoadedImage {
    /// The address of the entry point.
    pub(crate) fn entry_point(&self) -> usize {
        self.bounds.base + self.entry_rva as usize
    }

    /// Unmaps the image into the quarantine: a later access faults.
    pub(crate) fn unmap(&mut self) {
        if let Some(region) = self.region.take() {
            region.leak_into_quarantine();
        }
    }
}

impl Drop for LoadedImage {
    fn drop(&mut self) {
        self.unmap();
    }
}

/// One import of the image.
struct ImportEntry {
    module: String,
    name: String,
    /// RVA of its IAT slot.
    slot_rva: u32,
}

/// What the resolver given to [`load`] says about one import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// Bind the IAT slot to this address.
    Address(usize),
    /// The module is one the resolver knows, but not this name: a missing import.
    NotEmulated,
    /// The module is not one a driver may import from (refused, with every such import).
    UnknownModule,
}

/// Parses, checks, maps, relocates, binds (asking `resolve(module, name)` for every import)
/// and protects `bytes`.
pub(crate) fn load(
    bytes: &[u8],
    resolve: &dyn Fn(&str, &str) -> Binding,
) -> Result<LoadedImage, LoadError> {
    let file = PeFile64::parse(bytes).map_err(malformed)?;
    let nt = file.nt_headers();
    if nt.file_header().machine.get(LE) != pe::IMAGE_FILE_MACHINE_AMD64 {
        return Err(LoadError::Malformed("not an x86-64 image".into()));
    }
    let optional = nt.optional_header();
    let image_base = optional.image_base();
    let size_of_image = optional.size_of_image() as usize;
    let size_of_headers = optional.size_of_headers() as usize;
    let section_alignment = optional.section_alignment() as usize;
    if !section_alignment.is_multiple_of(page_size()) {
        return Err(LoadError::Malformed(format!(
            "section alignment {section_alignment:#x} is not page-aligned"
        )));
    }
    if size_of_headers > bytes.len() || size_of_headers > size_of_image {
        return Err(LoadError::Malformed("SizeOfHeaders out of range".into()));
    }

    let sections = section_plan(&file, bytes.len(), size_of_image)?;
    let wx: Vec<String> = sections
        .iter()
        .filter(|s| s.write && s.execute)
        .map(|s| s.name.clone())
        .collect();
    if !wx.is_empty() {
        return Err(LoadError::WritableExecutable(wx));
    }

    let imports = import_entries(&file)?;
    let mut unsupported = Vec::new();
    let mut missing = Vec::new();
    let mut bindings = Vec::with_capacity(imports.len());
    for import in &imports {
        let qualified = format!("{}!{}", import.module, import.name);
        match resolve(&import.module, &import.name) {
            Binding::UnknownModule => unsupported.push(qualified),
            Binding::Address(address) => {
                bindings.push((import.slot_rva, address, import.name.as_str()));
            }
            Binding::NotEmulated => missing.push(qualified),
        }
    }
    if !unsupported.is_empty() {
        return Err(LoadError::UnsupportedModules(unsupported));
    }
    if !missing.is_empty() {
        return Err(LoadError::MissingImports(missing));
    }

    // Map and fill.
    let region = Region::map(size_of_image).map_err(LoadError::Map)?;
    let base = region.base();
    // SAFETY: the region is a fresh read-write mapping of size_of_image bytes, and
    // size_of_headers <= min(bytes.len(), size_of_image) (checked above).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base as *mut u8, size_of_headers) };
    for s in &sections {
        if s.raw_len > 0 {
            let source = &bytes[s.raw_offset..s.raw_offset + s.raw_len];
            // SAFETY: rva + raw_len <= size_of_image (section_plan), so the destination lies in
            // the fresh read-write mapping; the source is a slice of that length.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    source.as_ptr(),
                    (base + s.rva as usize) as *mut u8,
                    s.raw_len,
                );
            }
        }
    }

    apply_relocations(&file, bytes, base, size_of_image, image_base)?;

    let c_specific_handler_slot = bind_imports(base, size_of_image, &bindings)?;
    protect_sections(&region, size_of_headers, size_of_image, &sections)?;

    let exception = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION);
    let (pdata_rva, pdata_size) =
        exception.map_or((0, 0), |d| (d.virtual_address.get(LE), d.size.get(LE)));
    if pdata_rva as usize + pdata_size as usize > size_of_image {
        return Err(LoadError::Malformed(
            "exception directory outside the image".into(),
        ));
    }

    let exports = read_exports(&file)?;

    Ok(LoadedImage {
        region: Some(region),
        bounds: ImageBounds {
            base,
            size: size_of_image,
            pdata_rva,
            pdata_size,
            c_specific_handler_slot,
        },
        entry_rva: optional.address_of_entry_point(),
        sections: sections
            .iter()
            .map(|s| SectionInfo {
                name: s.name.clone(),
                rva: s.rva,
                size: s.virtual_len,
            })
            .collect(),
        exports,
    })
}

/// The image's exported names and RVAs (forwarders skipped).
fn read_exports(file: &PeFile64<'_>) -> Result<Vec<(String, u32)>, LoadError> {
    let exports = match file.export_table().map_err(malformed)? {
        Some(table) => table
            .exports()
            .map_err(malformed)?
            .into_iter()
            .filter_map(|e| match (e.name, e.target) {
                (Some(name), object::read::pe::ExportTarget::Address(rva)) => {
                    Some((String::from_utf8_lossy(name).into_owned(), rva))
                }
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };

    Ok(exports)
}

/// Writes each binding into its IAT slot; returns the address of `__C_specific_handler`'s slot
/// (0 if not imported).
fn bind_imports(
    base: usize,
    size_of_image: usize,
    bindings: &[(u32, usize, &str)],
) -> Result<usize, LoadError> {
    let mut c_specific_handler_slot = 0;
    for &(slot_rva, address, name) in bindings {
        let slot = slot_rva as usize;
        if slot + 8 > size_of_image {
            return Err(LoadError::Malformed(format!(
                "IAT slot of {name} outside the image"
            )));
        }
        // SAFETY: the slot lies inside the image's read-write mapping (checked just above),
        // before any protection is applied.
        unsafe { std::ptr::write_unaligned((base + slot) as *mut u64, address as u64) };
        if name == "__C_specific_handler" {
            c_specific_handler_slot = base + slot;
        }
    }
    Ok(c_specific_handler_slot)
}

/// Headers read-only, then each section to its characteristics.
fn protect_sections(
    region: &Region,
    size_of_headers: usize,
    size_of_image: usize,
    sections: &[SectionPlan],
) -> Result<(), LoadError> {
    let headers = size_of_headers
        .next_multiple_of(page_size())
        .min(size_of_image);
    region
        .protect(0, headers, libc::PROT_READ)
        .map_err(LoadError::Map)?;
    for s in sections {
        let len = (s.virtual_len as usize)
            .next_multiple_of(page_size())
            .min(size_of_image - s.rva as usize);
        region
            .protect(s.rva as usize, len, s.prot())
            .map_err(LoadError::Map)?;
    }
    Ok(())
}

struct SectionPlan {
    name: String,
    rva: u32,
    virtual_len: u32,
    raw_offset: usize,
    raw_len: usize,
    read: bool,
    write: bool,
    execute: bool,
}

impl SectionPlan {
    fn prot(&self) -> i32 {
        let mut prot = libc::PROT_NONE;
        if self.read || self.write || self.execute {
            prot |= libc::PROT_READ;
        }
        if self.write {
            prot |= libc::PROT_WRITE;
        }
        if self.execute {
            prot |= libc::PROT_EXEC;
        }
        prot
    }
}

fn section_plan(
    file: &PeFile64<'_>,
    file_len: usize,
    size_of_image: usize,
) -> Result<Vec<SectionPlan>, LoadError> {
    let mut plans = Vec::new();
    for header in file.section_table().iter() {
        let name = String::from_utf8_lossy(header.name.split(|&b| b == 0).next().unwrap_or(&[]))
            .into_owned();
        let rva = header.virtual_address.get(LE);
        let virtual_len = header
            .virtual_size
            .get(LE)
            .max(header.size_of_raw_data.get(LE).min(1));
        let raw_offset = header.pointer_to_raw_data.get(LE) as usize;
        let raw_len =
            (header.size_of_raw_data.get(LE) as usize).min(header.virtual_size.get(LE) as usize);
        let flags = header.characteristics.get(LE).0;
        if raw_len > 0
            && raw_offset
                .checked_add(raw_len)
                .is_none_or(|end| end > file_len)
        {
            return Err(LoadError::Malformed(format!(
                "section {name} raw data outside the file"
            )));
        }
        if (rva as usize)
            .checked_add(virtual_len as usize)
            .is_none_or(|end| end > size_of_image)
        {
            return Err(LoadError::Malformed(format!(
                "section {name} outside SizeOfImage"
            )));
        }
        if !(rva as usize).is_multiple_of(page_size()) {
            return Err(LoadError::Malformed(format!(
                "section {name} is not page-aligned"
            )));
        }
        plans.push(SectionPlan {
            name,
            rva,
            virtual_len,
            raw_offset,
            raw_len,
            read: flags & pe::IMAGE_SCN_MEM_READ.0 != 0,
            write: flags & pe::IMAGE_SCN_MEM_WRITE.0 != 0,
            execute: flags & pe::IMAGE_SCN_MEM_EXECUTE.0 != 0,
        });
    }
    Ok(plans)
}

fn import_entries(file: &PeFile64<'_>) -> Result<Vec<ImportEntry>, LoadError> {
    let mut entries = Vec::new();
    let Some(table) = file.import_table().map_err(malformed)? else {
        return Ok(entries);
    };
    let mut descriptors = table.descriptors().map_err(malformed)?;
    while let Some(descriptor) = descriptors.next().map_err(malformed)? {
        let module =
            String::from_utf8_lossy(table.name(descriptor.name.get(LE)).map_err(malformed)?)
                .into_owned();
        let first_thunk = descriptor.first_thunk.get(LE);
        let lookup = match descriptor.original_first_thunk.get(LE) {
            0 => first_thunk,
            rva => rva,
        };
        let mut thunks = table.thunks(lookup).map_err(malformed)?;
        let mut index = 0u32;
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().map_err(malformed)? {
            let name = if thunk.is_ordinal() {
                format!("#{}", thunk.ordinal())
            } else {
                let (_, name) = table.hint_name(thunk.address()).map_err(malformed)?;
                String::from_utf8_lossy(name).into_owned()
            };
            entries.push(ImportEntry {
                module: module.clone(),
                name,
                slot_rva: first_thunk + index * 8,
            });
            index += 1;
        }
    }
    Ok(entries)
}

fn apply_relocations(
    file: &PeFile64<'_>,
    bytes: &[u8],
    base: usize,
    size_of_image: usize,
    image_base: u64,
) -> Result<(), LoadError> {
    let delta = (base as u64).wrapping_sub(image_base);
    let Some(mut blocks) = file
        .data_directories()
        .relocation_blocks(bytes, &file.section_table())
        .map_err(malformed)?
    else {
        return Ok(());
    };
    while let Some(block) = blocks.next().map_err(malformed)? {
        for reloc in block {
            match reloc.typ {
                pe::IMAGE_REL_BASED_ABSOLUTE => {}
                pe::IMAGE_REL_BASED_DIR64 => {
                    let at = reloc.virtual_address as usize;
                    if at + 8 > size_of_image {
                        return Err(LoadError::Malformed(format!(
                            "relocation at {at:#x} outside the image"
                        )));
                    }
                    let slot = (base + at) as *mut u64;
                    // SAFETY: the 8 bytes lie inside the read-write mapping (checked above),
                    // before any protection is applied.
                    let value = unsafe { std::ptr::read_unaligned(slot) };
                    // SAFETY: as above.
                    unsafe { std::ptr::write_unaligned(slot, value.wrapping_add(delta)) };
                }
                other => {
                    return Err(LoadError::Malformed(format!(
                        "unsupported relocation type {other:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}
