//! Function names for driver addresses: from the PDB beside the image (procedures and public
//! symbols), falling back to the image's exports.

use std::path::Path;

use pdb::FallibleIterator;

/// Sorted function ranges of one image.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    /// (rva, len, name), sorted by rva; len 0 when unknown (exports, publics).
    entries: Vec<(u32, u32, String)>,
}

impl Symbols {
    /// Reads the procedures and public symbols of `pdb_path`; `None` if it cannot be read.
    pub(crate) fn from_pdb(pdb_path: &Path) -> Option<Self> {
        let file = std::fs::File::open(pdb_path).ok()?;
        let mut pdb = pdb::PDB::open(file).ok()?;
        let address_map = pdb.address_map().ok()?;
        let mut entries = Vec::new();
        if let Ok(globals) = pdb.global_symbols() {
            let mut iter = globals.iter();
            while let Ok(Some(symbol)) = iter.next() {
                if let Ok(pdb::SymbolData::Public(public)) = symbol.parse()
                    && public.function
                    && let Some(rva) = public.offset.to_rva(&address_map)
                {
                    entries.push((rva.0, 0, public.name.to_string().into_owned()));
                }
            }
        }
        let debug = pdb.debug_information().ok()?;
        let mut modules = debug.modules().ok()?;
        while let Ok(Some(module)) = modules.next() {
            let Ok(Some(info)) = pdb.module_info(&module) else {
                continue;
            };
            let Ok(mut symbols) = info.symbols() else {
                continue;
            };
            while let Ok(Some(symbol)) = symbols.next() {
                if let Ok(pdb::SymbolData::Procedure(procedure)) = symbol.parse()
                    && let Some(rva) = procedure.offset.to_rva(&address_map)
                {
                    entries.push((
                        rva.0,
                        procedure.len,
                        procedure.name.to_string().into_owned(),
                    ));
                }
            }
        }
        let mut symbols = Self { entries };
        symbols.sort();
        Some(symbols)
    }

    /// Symbols from the export table only.
    pub(crate) fn from_exports(exports: &[(String, u32)]) -> Self {
        let mut symbols = Self {
            entries: exports
                .iter()
                .map(|(name, rva)| (*rva, 0, name.clone()))
                .collect(),
        };
        symbols.sort();
        symbols
    }

    fn sort(&mut self) {
        // Procedures (with a length) first at equal addresses, so they win over publics.
        self.entries
            .sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        self.entries.dedup_by(|later, earlier| later.0 == earlier.0);
    }

    /// Whether any symbol is known.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `name + 0xoffset` of the nearest symbol at or below `rva`, if any (and within its
    /// length when the length is known).
    pub(crate) fn describe(&self, rva: u32) -> Option<String> {
        let index = self
            .entries
            .partition_point(|e| e.0 <= rva)
            .checked_sub(1)?;
        let (start, len, name) = &self.entries[index];
        let offset = rva - start;
        if *len != 0 && offset >= *len {
            return None;
        }
        Some(if offset == 0 {
            name.clone()
        } else {
            format!("{name} + {offset:#x}")
        })
    }
}
