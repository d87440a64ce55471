//! The loader refuses images it cannot run faithfully; crafted by mutating a copy of the real
//! vigil.sys.

mod common;

use std::path::Path;

use vigil_kernel_sim::{LoadError, Sim, SimConfig};

/// Minimal PE32+ navigation for the mutations (offsets from the PE/COFF specification).
struct Pe {
    bytes: Vec<u8>,
}

impl Pe {
    fn read() -> Self {
        Self {
            bytes: std::fs::read(common::vigil_image()).expect("reading vigil.sys"),
        }
    }

    fn u16_at(&self, at: usize) -> usize {
        usize::from(u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]]))
    }

    fn u32_at(&self, at: usize) -> usize {
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    fn set_u32(&mut self, at: usize, value: usize) {
        self.bytes[at..at + 4].copy_from_slice(&u32::try_from(value).expect("u32").to_le_bytes());
    }

    fn nt(&self) -> usize {
        self.u32_at(0x3c)
    }

    /// Offsets of the section headers.
    fn sections(&self) -> Vec<usize> {
        let coff = self.nt() + 4;
        let count = self.u16_at(coff + 2);
        let first = coff + 20 + self.u16_at(coff + 16);
        (0..count).map(|i| first + i * 40).collect()
    }

    fn section_named(&self, name: &str) -> usize {
        *self
            .sections()
            .iter()
            .find(|&&h| self.bytes[h..h + 8].starts_with(name.as_bytes()))
            .expect("section")
    }

    fn file_offset(&self, rva: usize) -> usize {
        for h in self.sections() {
            let (va, size, raw) = (
                self.u32_at(h + 12),
                self.u32_at(h + 16),
                self.u32_at(h + 20),
            );
            if rva >= va && rva < va + size {
                return raw + rva - va;
            }
        }
        panic!("rva {rva:#x} not in a section");
    }

    /// File offsets of the import descriptors (20 bytes each).
    fn import_descriptors(&self) -> Vec<usize> {
        let directory = self.nt() + 24 + 112 + 8; // PE32+ data directory 1
        let mut at = self.file_offset(self.u32_at(directory));
        let mut out = Vec::new();
        while self.u32_at(at + 12) != 0 {
            out.push(at);
            at += 20;
        }
        out
    }

    fn module_name(&self, descriptor: usize) -> String {
        let at = self.file_offset(self.u32_at(descriptor + 12));
        let end = self.bytes[at..].iter().position(|&b| b == 0).expect("NUL") + at;
        String::from_utf8_lossy(&self.bytes[at..end]).into_owned()
    }

    /// Appends `text\0` to the slack of `.rdata` (raw data past its `VirtualSize`: the import
    /// table's names must stay in the import table's section), grows the section over it, and
    /// returns its RVA. When the slack is too short (it depends on how much read-only data the
    /// image happens to have), `.rdata`'s raw data first grows by one `FileAlignment` block,
    /// moving the file data of the sections after it.
    fn append_string(&mut self, text: &str) -> usize {
        let len = text.len() + 1;
        let header = self.section_named(".rdata");
        if self.u32_at(header + 8) + len > self.u32_at(header + 16) {
            self.grow_raw(header);
        }
        let (virtual_size, va, raw_size, raw) = (
            self.u32_at(header + 8),
            self.u32_at(header + 12),
            self.u32_at(header + 16),
            self.u32_at(header + 20),
        );
        assert!(
            virtual_size + len <= raw_size,
            ".rdata has slack for the string"
        );
        self.bytes[raw + virtual_size..raw + virtual_size + text.len()]
            .copy_from_slice(text.as_bytes());
        self.bytes[raw + virtual_size + text.len()] = 0;
        self.set_u32(header + 8, virtual_size + len);
        va + virtual_size
    }

    /// Inserts one `FileAlignment` block of zeros at the end of section `header`'s raw data,
    /// shifting every later section's `PointerToRawData`.
    fn grow_raw(&mut self, header: usize) {
        let alignment = self.u32_at(self.nt() + 24 + 36);
        let end = self.u32_at(header + 20) + self.u32_at(header + 16);
        self.bytes
            .splice(end..end, std::iter::repeat_n(0u8, alignment));
        self.set_u32(header + 16, self.u32_at(header + 16) + alignment);
        for other in self.sections() {
            let raw = self.u32_at(other + 20);
            if other != header && raw >= end {
                self.set_u32(other + 20, raw + alignment);
            }
        }
    }

    fn load(&self) -> Result<vigil_kernel_sim::Driver, LoadError> {
        Sim::new(SimConfig::default()).load_bytes(Path::new("mutated.sys"), &self.bytes, None)
    }
}

fn ntoskrnl_descriptor(pe: &Pe) -> usize {
    *pe.import_descriptors()
        .iter()
        .find(|&&d| pe.module_name(d) == "ntoskrnl.exe")
        .expect("ntoskrnl.exe imports")
}

#[test]
fn an_unknown_routine_is_refused_with_every_missing_name() {
    let mut pe = Pe::read();
    let mut renamed = Vec::new();
    for target in [
        b"ExFreePoolWithTag\0".as_slice(),
        b"FltStartFiltering\0".as_slice(),
    ] {
        let at = pe
            .bytes
            .windows(target.len())
            .position(|w| w == target)
            .expect("import name present");
        pe.bytes[at + target.len() - 2] = b'X';
        renamed.push(String::from_utf8_lossy(&target[..target.len() - 2]).into_owned() + "X");
    }
    match pe.load() {
        Err(LoadError::MissingImports(names)) => {
            assert!(
                names.contains(&format!("ntoskrnl.exe!{}", renamed[0])),
                "{names:?}"
            );
            assert!(
                names.contains(&format!("FLTMGR.SYS!{}", renamed[1])),
                "{names:?}"
            );
            assert_eq!(names.len(), 2, "{names:?}");
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("an image importing unknown routines was loaded"),
    }
}

#[test]
fn a_dll_suffixed_kernel_module_is_refused() {
    let mut pe = Pe::read();
    let descriptor = ntoskrnl_descriptor(&pe);
    let rva = pe.append_string("ntoskrnl.exe.dll");
    pe.set_u32(descriptor + 12, rva);
    match pe.load() {
        Err(LoadError::UnsupportedModules(names)) => {
            assert!(
                names.iter().all(|n| n.starts_with("ntoskrnl.exe.dll!")),
                "{names:?}"
            );
            assert!(
                names
                    .iter()
                    .any(|n| n == "ntoskrnl.exe.dll!ExAllocatePool2"),
                "{names:?}"
            );
        }
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("ntoskrnl.exe.dll was accepted"),
    }
}

#[test]
fn module_names_compare_case_insensitively() {
    let mut pe = Pe::read();
    let descriptor = ntoskrnl_descriptor(&pe);
    let at = pe.file_offset(pe.u32_at(descriptor + 12));
    pe.bytes[at..at + 12].copy_from_slice(b"NTOSKRNL.EXE");
    let driver = pe.load().expect("NTOSKRNL.EXE is ntoskrnl.exe");
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn a_writable_executable_section_is_refused() {
    let mut pe = Pe::read();
    let text = pe.section_named(".text");
    let characteristics = pe.u32_at(text + 36);
    pe.set_u32(text + 36, characteristics | 0x8000_0000);
    match pe.load() {
        Err(LoadError::WritableExecutable(names)) => assert_eq!(names, vec![".text".to_owned()]),
        Err(e) => panic!("wrong refusal: {e}"),
        Ok(_) => panic!("a W+X section was accepted"),
    }
}

#[test]
fn garbage_is_malformed() {
    let result =
        Sim::new(SimConfig::default()).load_bytes(Path::new("garbage.sys"), b"MZ not really", None);
    assert!(matches!(result, Err(LoadError::Malformed(_))));
}
