//! kernel-sim's name routines on a C minifilter that is not Vigil: `tests/minifilters/namer.c`
//! parses names with `FltParseFileNameInformation` and reads names outside an operation's
//! callback data with `FltGetFileNameInformationUnsafe`. The production build runs clean
//! through `kernel-sim verify` and `kernel-sim bench`; each broken twin is caught with the rule,
//! the routine and the driver function that broke it.
//!
//! Without clang the tests say so and stop, except under CI (`CI` set).

mod c_filters;
mod io_workload;

use std::process::Command;

use io_workload::{FILE_CREATE, GENERIC_WRITE, NTFS, config, requestor, volume};
use vigil_kernel_sim::Sim;

use c_filters::{assert_caught, assert_clean, build};

/// The namer is clean through verify (load/unload cycles, stress, both fault sweeps: a failed
/// parse or name query is handled) and bench.
#[test]
fn namer_is_clean_through_verify_and_bench() {
    let Some(image) = build("namer", None) else {
        return;
    };
    assert_clean(&image, None);
    for configuration in [&[][..], &["--measurement"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
            .arg("bench")
            .arg("--image")
            .arg(&image)
            .args(["--threads", "2", "--seconds", "0.2"])
            .args(configuration)
            .output()
            .expect("kernel-sim runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{configuration:?}: {output:?}");
        assert!(stdout.contains(", 0 violation(s)"), "{stdout}");
    }
}

/// What the namer traces is what `FltParseFileNameInformation` parsed: the final component
/// with its stream, the extension without the dot (none for a file without one), and the
/// cleanup's `FltGetFileNameInformationUnsafe` query succeeds for each file.
#[test]
fn namer_traces_the_parsed_components() {
    let Some(image) = build("namer", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    for path in [r"\notes.txt", r"\Makefile", r"\archive.tar.gz:meta"] {
        let f = io
            .create(ntfs, path, FILE_CREATE, 0, GENERIC_WRITE)
            .unwrap_or_else(|s| panic!("{path}: {s:#x}"));
        assert_eq!(io.cleanup(&f), 0);
        io.close(f);
    }
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    let trace: Vec<&str> = report
        .debug_output
        .iter()
        .map(|line| line.text.as_str())
        .collect();
    assert_eq!(
        trace,
        [
            "namer: 'notes.txt' extension 'txt'\n",
            "namer: 'Makefile' extension ''\n",
            "namer: 'archive.tar.gz:meta' extension 'gz'\n",
            "namer: 3 name(s) parsed, 1 txt, 3 cleanup name(s)\n",
        ]
    );
    assert_eq!(
        report.routine_calls.get("FltParseFileNameInformation"),
        Some(&3)
    );
    assert_eq!(
        report.routine_calls.get("FltGetFileNameInformationUnsafe"),
        Some(&3)
    );
}

/// Asking for the name of the file object being created in pre-create: the file object is not
/// open, which `FltGetFileNameInformationUnsafe`'s page requires.
#[test]
fn namer_unsafe_in_pre_create_twin_is_caught() {
    let Some(twin) = build("namer", Some("unsafe-in-pre-create")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Parameter",
        "FltGetFileNameInformationUnsafe",
        "PreCreate",
        "a FileObject that is currently open",
    );
}

/// Asking for a name after the file object's cleanup completed, where the page says a
/// file-system name query can deadlock.
#[test]
fn namer_unsafe_after_cleanup_twin_is_caught() {
    let Some(twin) = build("namer", Some("unsafe-after-cleanup")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "CallbackContract",
        "FltGetFileNameInformationUnsafe",
        "PreClose",
        "not where a file-system name query can deadlock",
    );
}

/// Reading a component before parsing: Filter Manager leaves them empty, so the driver
/// dereferences a NULL buffer in its post-create.
#[test]
fn namer_parsed_fields_before_parse_twin_is_caught() {
    let Some(twin) = build("namer", Some("parsed-fields-before-parse")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Fault",
        "",
        "PostCreate",
        "no faults in driver code",
    );
}
