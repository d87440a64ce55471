//! Byte-level surgery on a PE32+ image, for tests that feed the lint deliberately broken copies
//! of the real `vigil.sys`. Host-only. Every helper panics with a message on an image it cannot
//! patch: a test that cannot build its bad input must fail, not pass vacuously.

/// Offset of `e_lfanew` in the DOS header.
const E_LFANEW: usize = 0x3c;
/// Size of one section header.
const SECTION_HEADER: usize = 40;
/// Size of one import descriptor.
const IMPORT_DESCRIPTOR: usize = 20;

/// `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`: a read-only data section.
pub const READ_ONLY_DATA: u32 = 0x0000_0040 | 0x4000_0000;
/// `IMAGE_SCN_MEM_WRITE`.
pub const MEM_WRITE: u32 = 0x8000_0000;
/// `IMAGE_SCN_MEM_EXECUTE`.
pub const MEM_EXECUTE: u32 = 0x2000_0000;

fn read_u16(image: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(image[at..at + 2].try_into().expect("two bytes"))
}

fn read_u32(image: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(image[at..at + 4].try_into().expect("four bytes"))
}

fn write_u16(image: &mut [u8], at: usize, value: u16) {
    image[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn write_u32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn write_u64(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn to_usize(value: u32) -> usize {
    usize::try_from(value).expect("u32 fits in usize")
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("offset fits in u32")
}

fn align_up(value: usize, alignment: usize) -> usize {
    value.div_ceil(alignment) * alignment
}

/// File offsets of the headers of one image.
pub struct Layout {
    /// `PE\0\0`.
    pub pe: usize,
}

/// One section header, decoded.
pub struct Section {
    /// File offset of the header.
    pub header: usize,
    /// Name, without NUL padding.
    pub name: String,
    /// `VirtualAddress`.
    pub rva: usize,
    /// `VirtualSize`.
    pub virtual_size: usize,
    /// `PointerToRawData`.
    pub raw: usize,
    /// `SizeOfRawData`.
    pub raw_size: usize,
}

impl Layout {
    /// Locates the headers; panics on anything but a PE32+ image.
    pub fn of(image: &[u8]) -> Self {
        assert_eq!(&image[..2], b"MZ", "not an MZ image");
        let pe = to_usize(read_u32(image, E_LFANEW));
        assert_eq!(&image[pe..pe + 4], b"PE\0\0", "no PE signature");
        let layout = Self { pe };
        assert_eq!(read_u16(image, layout.optional()), 0x20b, "not PE32+");
        layout
    }

    /// `FileHeader.Machine`.
    pub fn machine(&self) -> usize {
        self.pe + 4
    }

    fn number_of_sections(&self) -> usize {
        self.pe + 6
    }

    fn size_of_optional_header(&self) -> usize {
        self.pe + 20
    }

    /// The optional header.
    pub fn optional(&self) -> usize {
        self.pe + 24
    }

    /// `AddressOfEntryPoint`.
    pub fn entry_point(&self) -> usize {
        self.optional() + 16
    }

    fn section_alignment(&self) -> usize {
        self.optional() + 32
    }

    fn file_alignment(&self) -> usize {
        self.optional() + 36
    }

    fn size_of_image(&self) -> usize {
        self.optional() + 56
    }

    fn size_of_headers(&self) -> usize {
        self.optional() + 60
    }

    /// `CheckSum`.
    pub fn checksum(&self) -> usize {
        self.optional() + 64
    }

    /// `Subsystem`.
    pub fn subsystem(&self) -> usize {
        self.optional() + 68
    }

    /// The import directory's RVA field (data directory 1).
    fn import_directory(&self) -> usize {
        self.optional() + 112 + 8
    }

    /// Every section header.
    pub fn sections(&self, image: &[u8]) -> Vec<Section> {
        let first = self.optional() + usize::from(read_u16(image, self.size_of_optional_header()));
        (0..usize::from(read_u16(image, self.number_of_sections())))
            .map(|index| {
                let header = first + index * SECTION_HEADER;
                let name = String::from_utf8_lossy(&image[header..header + 8])
                    .trim_end_matches('\0')
                    .to_owned();
                Section {
                    header,
                    name,
                    virtual_size: to_usize(read_u32(image, header + 8)),
                    rva: to_usize(read_u32(image, header + 12)),
                    raw_size: to_usize(read_u32(image, header + 16)),
                    raw: to_usize(read_u32(image, header + 20)),
                }
            })
            .collect()
    }

    /// The file offset of `rva`, which must lie in a section's raw data.
    pub fn offset_of_rva(&self, image: &[u8], rva: usize) -> usize {
        self.sections(image)
            .iter()
            .find(|s| rva >= s.rva && rva < s.rva + s.virtual_size.min(s.raw_size))
            .map_or_else(
                || panic!("RVA {rva:#x} is in no section's file data"),
                |s| s.raw + (rva - s.rva),
            )
    }
}

/// Appends a new section holding `data` and returns its RVA. The image stays well formed: the
/// header fits in the existing header space, and `NumberOfSections`/`SizeOfImage` follow.
pub fn append_section(
    image: &mut Vec<u8>,
    name: [u8; 8],
    data: &[u8],
    characteristics: u32,
) -> usize {
    let layout = Layout::of(image);
    let sections = layout.sections(image);
    let last = sections.last().expect("an image has sections");
    let new_header = last.header + SECTION_HEADER;
    let size_of_headers = to_usize(read_u32(image, layout.size_of_headers()));
    let first_raw = sections
        .iter()
        .map(|s| s.raw)
        .filter(|&raw| raw != 0)
        .min()
        .unwrap_or(size_of_headers);
    assert!(
        new_header + SECTION_HEADER <= size_of_headers.min(first_raw),
        "no room for another section header"
    );
    let section_alignment = to_usize(read_u32(image, layout.section_alignment()));
    let file_alignment = to_usize(read_u32(image, layout.file_alignment()));
    let rva = sections
        .iter()
        .map(|s| align_up(s.rva + s.virtual_size, section_alignment))
        .max()
        .expect("sections");
    let raw = align_up(image.len(), file_alignment);
    let raw_size = align_up(data.len(), file_alignment);
    image.resize(raw + raw_size, 0);
    image[raw..raw + data.len()].copy_from_slice(data);
    image[new_header..new_header + 8].copy_from_slice(&name);
    write_u32(image, new_header + 8, to_u32(data.len()));
    write_u32(image, new_header + 12, to_u32(rva));
    write_u32(image, new_header + 16, to_u32(raw_size));
    write_u32(image, new_header + 20, to_u32(raw));
    write_u32(image, new_header + 36, characteristics);
    let count = read_u16(image, layout.number_of_sections());
    write_u16(image, layout.number_of_sections(), count + 1);
    write_u32(
        image,
        layout.size_of_image(),
        to_u32(align_up(rva + data.len(), section_alignment)),
    );
    rva
}

/// One import descriptor, decoded.
pub struct ImportDescriptor {
    /// File offset of the descriptor.
    pub at: usize,
    /// The module name.
    pub module: String,
    /// RVA of the import lookup table (`OriginalFirstThunk`).
    pub lookup: usize,
    /// RVA of the import address table (`FirstThunk`).
    pub address: usize,
}

/// Every import descriptor of `image`.
pub fn import_descriptors(image: &[u8]) -> Vec<ImportDescriptor> {
    let layout = Layout::of(image);
    let directory = to_usize(read_u32(image, layout.import_directory()));
    assert_ne!(directory, 0, "the image has no import directory");
    let mut at = layout.offset_of_rva(image, directory);
    let mut descriptors = Vec::new();
    while image[at..at + IMPORT_DESCRIPTOR].iter().any(|&b| b != 0) {
        let name = layout.offset_of_rva(image, to_usize(read_u32(image, at + 12)));
        let end = image[name..]
            .iter()
            .position(|&b| b == 0)
            .expect("NUL-terminated module name");
        descriptors.push(ImportDescriptor {
            at,
            module: String::from_utf8_lossy(&image[name..name + end]).into_owned(),
            lookup: to_usize(read_u32(image, at)),
            address: to_usize(read_u32(image, at + 16)),
        });
        at += IMPORT_DESCRIPTOR;
    }
    descriptors
}

/// The descriptor of `module` (case-insensitive).
pub fn import_of(image: &[u8], module: &str) -> ImportDescriptor {
    import_descriptors(image)
        .into_iter()
        .find(|d| d.module.eq_ignore_ascii_case(module))
        .unwrap_or_else(|| panic!("the image imports nothing from {module}"))
}

/// Renames the module of `descriptor` to `new_name` (a new string in an appended section).
pub fn rename_import_module(image: &mut Vec<u8>, descriptor: &ImportDescriptor, new_name: &str) {
    let mut data = new_name.as_bytes().to_vec();
    data.push(0);
    let rva = append_section(image, *b".vname\0\0", &data, READ_ONLY_DATA);
    write_u32(image, descriptor.at + 12, to_u32(rva));
}

/// Makes the first routine imported through `descriptor` be `routine` instead: a new hint/name
/// entry in an appended section, referenced from both the lookup table and the IAT.
pub fn rename_first_import(image: &mut Vec<u8>, descriptor: &ImportDescriptor, routine: &str) {
    let mut data = vec![0, 0]; // hint
    data.extend_from_slice(routine.as_bytes());
    data.push(0);
    let rva = append_section(image, *b".vhint\0\0", &data, READ_ONLY_DATA);
    let layout = Layout::of(image);
    for table in [descriptor.lookup, descriptor.address] {
        if table != 0 {
            let at = layout.offset_of_rva(image, table);
            write_u64(image, at, u64::try_from(rva).expect("RVA fits in u64"));
        }
    }
}

/// Reads a header field.
pub fn field_u32(image: &[u8], at: usize) -> u32 {
    read_u32(image, at)
}

/// Writes a header field.
pub fn set_u16(image: &mut [u8], at: usize, value: u16) {
    write_u16(image, at, value);
}

/// Writes a header field.
pub fn set_u32(image: &mut [u8], at: usize, value: u32) {
    write_u32(image, at, value);
}
