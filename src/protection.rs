//! What a protection rule covers (RULES.md, rule 28), over the matcher of `crate::prefix`: the
//! names an operation reaches, in the file system's own case-insensitivity, and the ancestors a
//! rename or delete would move or remove. Pre-operation callbacks, PASSIVE_LEVEL (the upcase
//! routine's limit is APC_LEVEL).

use crate::globals::Globals;
use crate::kernel::rtl::upcase_unicode_char;
use crate::twins::{self, Twin};

/// Upcases a code unit as file names compare: the kernel's upcase table. IRQL <= APC_LEVEL.
pub fn fold(unit: u16) -> u16 {
    if twins::is(Twin::Latin1Fold) {
        // The old matcher folded Latin-1 only.
        return match unit {
            0xe0..=0xf6 | 0xf8..=0xfe => unit - 0x20,
            _ => unit,
        };
    }
    upcase_unicode_char(unit)
}

/// Whether `path` has a stream suffix (`:` in its final component).
fn names_a_stream(path: &[u16]) -> bool {
    path.iter()
        .rev()
        .take_while(|&&unit| unit != u16::from(b'\\'))
        .any(|&unit| unit == u16::from(b':'))
}

/// Whether `path` (a file, directory or stream name) is inside a protected tree.
pub fn protects(globals: &Globals, path: &[u16]) -> bool {
    if twins::is(Twin::StreamEscape) && names_a_stream(path) {
        // The old matcher accepted only `\` or the end of the name after a prefix.
        return false;
    }
    globals.prefixes.read(|list| list.matches(path, fold))
}

/// Whether renaming or deleting `path` would move or remove a protected tree: `path` is
/// protected itself or is an ancestor of a protected prefix.
pub fn guards_tree(globals: &Globals, path: &[u16]) -> bool {
    if twins::is(Twin::AncestorUnchecked) {
        return protects(globals, path);
    }
    protects(globals, path)
        || globals
            .prefixes
            .read(|list| list.is_ancestor_or_equal(path, fold))
}
