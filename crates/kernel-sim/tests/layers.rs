//! kernel-sim's layers: every module under `src/` belongs to one layer, and a module reaches
//! (by `use crate::…` or an inline `crate::…` path) only into its own layer or those below.
//! The order is the one in `docs/architecture.md`; it lives here, in [`LAYERS`], and nowhere
//! else. The checker has its broken twin: synthetic files with a climbing import, which it must
//! reject.

use std::path::{Path, PathBuf};

/// The layers, lowest first, each with the top-level modules (`src/<name>.rs` or
/// `src/<name>/`) that form it. A module missing from this table fails the test, so a new
/// module has to be given its place.
const LAYERS: &[(&str, &[&str])] = &[
    ("config", &["config", "report", "faults", "fixtures"]),
    ("machine", &["machine"]),
    ("image", &["image"]),
    ("kernel", &["kernel"]),
    ("ntoskrnl", &["ntoskrnl"]),
    ("fltmgr", &["fltmgr"]),
    ("world", &["world"]),
    ("sim", &["sim"]),
    ("harness", &["harness"]),
];

/// The layer index of a top-level module, if it has one.
fn layer_of_module(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// One reach into another module that breaks the layering.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    file: String,
    line: usize,
    message: String,
}

/// The top-level module a source file (path relative to `src/`) belongs to; `None` for the
/// crate root and the binaries, which sit above every layer.
fn module_of_file(relative: &str) -> Option<&str> {
    if relative == "lib.rs" || relative.starts_with("bin/") {
        return None;
    }
    let first = relative.split('/').next().unwrap_or(relative);
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// The source with comments blanked out (kept as spaces so line numbers stay), so that doc
/// links such as ``[`crate::Sim`]`` are not read as imports.
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of every `crate::` path in `code`, with its line (1-based). A
/// group (`crate::{a::b, c}`) yields each member's first segment.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(offset) = code[search..].find("crate::") {
        let at = search + offset;
        search = at + "crate::".len();
        let preceded_by_ident = at > 0
            && (bytes[at - 1].is_ascii_alphanumeric()
                || bytes[at - 1] == b'_'
                || bytes[at - 1] == b'$');
        if preceded_by_ident {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[search..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level members of the group, up to its closing brace.
            let mut depth = 0usize;
            let mut member = String::new();
            let mut members = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => members.push(std::mem::take(&mut member)),
                    _ => member.push(c),
                }
            }
            members.push(member);
            for m in members {
                let segment = first_segment(m.trim());
                if !segment.is_empty() {
                    found.push((line, segment));
                }
            }
        } else {
            found.push((line, first_segment(rest)));
        }
    }
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Checks a set of source files (path relative to `src/`, text) against [`LAYERS`].
fn check(files: &[(String, String)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (file, text) in files {
        let Some(module) = module_of_file(file) else {
            continue;
        };
        let Some(own) = layer_of_module(module) else {
            findings.push(Finding {
                file: file.clone(),
                line: 0,
                message: format!("module `{module}` has no layer in the table"),
            });
            continue;
        };
        for (line, segment) in crate_paths(&strip_comments(text)) {
            if segment == "self" || segment == module {
                continue;
            }
            match layer_of_module(&segment) {
                Some(target) if target <= own => {}
                Some(target) => findings.push(Finding {
                    file: file.clone(),
                    line,
                    message: format!(
                        "layer `{}` imports `crate::{segment}` from layer `{}`, above it",
                        LAYERS[own].0, LAYERS[target].0
                    ),
                }),
                None => findings.push(Finding {
                    file: file.clone(),
                    line,
                    message: format!(
                        "`crate::{segment}` goes through the crate root (or an unlayered \
                         module): name the module that defines it"
                    ),
                }),
            }
        }
    }
    findings
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reading src/")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .expect("under src/")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            out.push((relative, text));
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files
}

#[test]
fn every_module_imports_only_from_its_own_layer_or_below() {
    let files = sources();
    assert!(
        files.len() > 20,
        "found the sources ({} files)",
        files.len()
    );
    let findings = check(&files);
    let listing: Vec<String> = findings
        .iter()
        .map(|f| format!("src/{}:{}: {}", f.file, f.line, f.message))
        .collect();
    assert!(
        listing.is_empty(),
        "layering broken:\n{}",
        listing.join("\n")
    );
}

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

#[test]
fn twin_a_climbing_import_is_rejected_with_file_line_and_layers() {
    let files = [
        file(
            "machine/state.rs",
            "use std::cell::Cell;\n\nuse crate::kernel::Kernel;\n",
        ),
        file("kernel/mod.rs", "use crate::machine::state;\n"),
    ];
    let findings = check(&files);
    assert_eq!(
        findings,
        [Finding {
            file: "machine/state.rs".into(),
            line: 3,
            message: "layer `machine` imports `crate::kernel` from layer `kernel`, above it".into(),
        }]
    );
}

#[test]
fn twin_a_climb_inside_a_grouped_or_inline_path_is_rejected() {
    let files = [
        file(
            "image/mod.rs",
            "use crate::{\n    machine::pages::Region,\n    ntoskrnl::exports,\n};\n",
        ),
        file(
            "kernel/objects.rs",
            "fn f() {\n    crate::fltmgr::volumes::attach(k);\n}\n",
        ),
    ];
    let findings = check(&files);
    let places: Vec<(&str, usize)> = findings.iter().map(|f| (f.file.as_str(), f.line)).collect();
    assert_eq!(places, [("image/mod.rs", 1), ("kernel/objects.rs", 2)]);
    assert!(findings[0].message.contains("`image`") && findings[0].message.contains("`ntoskrnl`"));
    assert!(findings[1].message.contains("`kernel`") && findings[1].message.contains("`fltmgr`"));
}

#[test]
fn twin_the_crate_root_and_unlayered_modules_are_rejected() {
    let files = [
        file("fltmgr/ports.rs", "let p = [crate::POOL_POISON];\n"),
        file("stray.rs", "use crate::config::SimConfig;\n"),
    ];
    let findings = check(&files);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(findings[0].message.contains("crate root"));
    assert!(findings[1].message.contains("no layer"));
}

#[test]
fn same_layer_lower_layers_comments_and_macros_pass() {
    let files = [
        file(
            "sim/mod.rs",
            "//! See [`crate::harness`].\nuse crate::{config::SimConfig, fltmgr, world::io::Io};\nuse crate::sim::x;\nmacro_rules! m { () => { $crate::harness::y } }\n",
        ),
        file("report.rs", "use crate::faults::FaultPlan;\n"),
        file(
            "lib.rs",
            "pub use harness::scenario;\nuse crate::harness::x;\n",
        ),
    ];
    assert_eq!(check(&files), []);
}
