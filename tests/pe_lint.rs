//! PE lint of the real `vigil.sys`, and of deliberately broken copies of it. Host-only (Linux).
//!
//! The image is built exactly as `cargo xtask build` builds it (`xtask::build_driver`) and
//! checked by `xtask::lint::lint_driver_image`. The real image must have no finding. Each rule is
//! then shown to fire on a copy of that image broken in exactly one way (the checksum re-stamped
//! afterwards, so that only the intended rule can fire), with the specific finding asserted: a
//! lint that cannot fail would pass these tests by accident otherwise.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::pe_patch::{
    Layout, MEM_EXECUTE, MEM_WRITE, READ_ONLY_DATA, append_section, field_u32, import_descriptors,
    import_of, rename_first_import, rename_import_module, set_u16, set_u32,
};
use xtask::lint::{DEPRECATED_ROUTINES, Finding, driver_entry_rva, lint_driver_image};
use xtask::{Variant, build_driver, stamp_pe_checksum};

/// The production `vigil.sys`, built once per test binary.
fn image_path() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        build_driver(&Variant::production())
            .unwrap_or_else(|error| panic!("building vigil.sys failed: {error}"))
    })
}

fn real_image() -> Vec<u8> {
    let path = image_path();
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lints `image` after re-stamping its checksum, so that only the mutation under test shows.
fn lint_restamped(mut image: Vec<u8>) -> Vec<Finding> {
    stamp_pe_checksum(&mut image).expect("a PE image");
    lint_driver_image(&image)
}

#[test]
fn real_image_has_no_findings() {
    let findings = lint_driver_image(&real_image());
    assert!(
        findings.is_empty(),
        "vigil.sys fails the lint:\n{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn real_image_imports_only_the_kernel_modules_and_something_from_each_it_names() {
    let image = real_image();
    let descriptors = import_descriptors(&image);
    assert!(
        descriptors.iter().any(|d| d.module == "ntoskrnl.exe"),
        "vigil.sys must import from ntoskrnl.exe (verbatim)"
    );
    assert!(
        descriptors.iter().any(|d| d.module == "FLTMGR.SYS"),
        "a minifilter imports from FLTMGR.SYS (verbatim)"
    );
}

#[test]
fn entry_point_is_the_pdb_public_symbol_driver_entry() {
    let image = real_image();
    let layout = Layout::of(&image);
    let entry_point = field_u32(&image, layout.entry_point());
    assert_eq!(driver_entry_rva(&image), Some(entry_point), "export table");
    let pdb_path = image_path().with_extension("pdb");
    let file =
        std::fs::File::open(&pdb_path).unwrap_or_else(|e| panic!("{}: {e}", pdb_path.display()));
    let mut pdb = pdb::PDB::open(file).expect("a readable PDB");
    let symbols = pdb.global_symbols().expect("global symbols");
    let address_map = pdb.address_map().expect("address map");
    let mut iter = symbols.iter();
    let mut found = None;
    while let Some(symbol) = pdb::FallibleIterator::next(&mut iter).expect("symbol stream") {
        if let Ok(pdb::SymbolData::Public(public)) = symbol.parse()
            && public.name.to_string() == "DriverEntry"
        {
            found = public.offset.to_rva(&address_map).map(|rva| rva.0);
        }
    }
    assert_eq!(
        found,
        Some(entry_point),
        "vigil.pdb's DriverEntry is not the entry point"
    );
}

#[test]
fn appending_a_harmless_section_changes_no_finding() {
    // The control for the tests below: the surgery itself must not trip the lint.
    let mut image = real_image();
    append_section(&mut image, *b".vtest\0\0", b"harmless", READ_ONLY_DATA);
    assert_eq!(lint_restamped(image), []);
}

#[test]
fn rejects_a_machine_other_than_amd64() {
    let mut image = real_image();
    let layout = Layout::of(&image);
    for machine in [0x014c_u16 /* i386 */, 0xaa64 /* ARM64 */] {
        set_u16(&mut image, layout.machine(), machine);
        assert_eq!(
            lint_restamped(image.clone()),
            [Finding::Machine { found: machine }]
        );
    }
}

#[test]
fn rejects_a_subsystem_other_than_native() {
    let mut image = real_image();
    let layout = Layout::of(&image);
    for subsystem in [
        2_u16, /* Windows GUI */
        3,     /* Windows CUI */
        11,    /* EFI boot driver */
    ] {
        set_u16(&mut image, layout.subsystem(), subsystem);
        assert_eq!(
            lint_restamped(image.clone()),
            [Finding::Subsystem { found: subsystem }]
        );
    }
}

#[test]
fn rejects_an_entry_point_that_is_not_driver_entry() {
    let mut image = real_image();
    let layout = Layout::of(&image);
    let driver_entry = field_u32(&image, layout.entry_point());
    let moved = driver_entry + 0x10;
    set_u32(&mut image, layout.entry_point(), moved);
    assert_eq!(
        lint_restamped(image),
        [Finding::EntryPointNotDriverEntry {
            entry_point: moved,
            driver_entry
        }]
    );
}

#[test]
fn rejects_an_image_without_a_driver_entry_export() {
    let mut image = real_image();
    // Rename the export in place: same length, different name.
    let at = image
        .windows(12)
        .position(|w| w == b"DriverEntry\0")
        .expect("export name string");
    image[at..at + 11].copy_from_slice(b"DriverEntrx");
    assert_eq!(lint_restamped(image), [Finding::NoDriverEntryExport]);
}

#[test]
fn rejects_an_import_module_outside_the_allowlist() {
    let mut image = real_image();
    let ntoskrnl = import_of(&image, "ntoskrnl.exe");
    rename_import_module(&mut image, &ntoskrnl, "KERNEL32.dll");
    assert_eq!(
        lint_restamped(image),
        [Finding::ImportModuleNotAllowed {
            module: "KERNEL32.dll".into()
        }]
    );
}

#[test]
fn rejects_dll_appended_to_an_allowed_module() {
    let mut image = real_image();
    let ntoskrnl = import_of(&image, "ntoskrnl.exe");
    rename_import_module(&mut image, &ntoskrnl, "ntoskrnl.exe.dll");
    assert_eq!(
        lint_restamped(image),
        [Finding::ImportModuleDllAppended {
            module: "ntoskrnl.exe.dll".into()
        }]
    );
}

#[test]
fn accepts_allowed_modules_in_any_case() {
    let mut image = real_image();
    let fltmgr = import_of(&image, "FLTMGR.SYS");
    rename_import_module(&mut image, &fltmgr, "fltmgr.sys");
    assert_eq!(lint_restamped(image), []);
}

#[test]
fn rejects_each_deprecated_routine() {
    for routine in DEPRECATED_ROUTINES {
        let mut image = real_image();
        let ntoskrnl = import_of(&image, "ntoskrnl.exe");
        rename_first_import(&mut image, &ntoskrnl, routine);
        assert_eq!(
            lint_restamped(image),
            [Finding::DeprecatedImport {
                module: "ntoskrnl.exe".into(),
                routine: (*routine).into()
            }],
            "{routine}"
        );
    }
}

#[test]
fn rejects_a_reachable_panic() {
    // A driver with a reachable panic imports KeBugCheckEx through its panic handler.
    let mut image = real_image();
    let ntoskrnl = import_of(&image, "ntoskrnl.exe");
    rename_first_import(&mut image, &ntoskrnl, "KeBugCheckEx");
    assert_eq!(lint_restamped(image), [Finding::PanicReachable]);
}

#[test]
fn rejects_a_writable_executable_section() {
    let mut image = real_image();
    let layout = Layout::of(&image);
    let text = layout
        .sections(&image)
        .into_iter()
        .find(|s| s.name == ".text")
        .expect("a .text section");
    let characteristics = field_u32(&image, text.header + 36);
    assert_ne!(characteristics & MEM_EXECUTE, 0, ".text is executable");
    set_u32(&mut image, text.header + 36, characteristics | MEM_WRITE);
    assert_eq!(
        lint_restamped(image),
        [Finding::WritableExecutableSection {
            name: ".text".into(),
            characteristics: characteristics | MEM_WRITE
        }]
    );
}

#[test]
fn rejects_a_wrong_checksum() {
    let mut image = real_image();
    let layout = Layout::of(&image);
    let stored = field_u32(&image, layout.checksum());
    set_u32(&mut image, layout.checksum(), stored ^ 1);
    // Not re-stamped: the checksum is the rule under test.
    assert_eq!(
        lint_driver_image(&image),
        [Finding::Checksum {
            stored: stored ^ 1,
            computed: stored
        }]
    );
    // A changed byte anywhere else is caught too.
    let mut image = real_image();
    let last = image.len() - 1;
    image[last] ^= 0xff;
    assert!(matches!(
        lint_driver_image(&image).as_slice(),
        [Finding::Checksum { .. }]
    ));
}
