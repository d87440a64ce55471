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

use io_workload::{
    FILE_CREATE, FILE_DIRECTORY_FILE, FILE_OPEN, GENERIC_WRITE, NTFS, config, requestor, volume,
};
use vigil_kernel_sim::{Sim, VolumeKind, WriteOptions};

/// The network volume's device name.
const MUP: &str = r"\Device\Mup";

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
    let trace = c_filters::trace(&report);
    assert_eq!(
        trace,
        [
            "namer: 'notes.txt' extension 'txt'\n",
            "namer: 'Makefile' extension ''\n",
            "namer: 'archive.tar.gz:meta' extension 'gz'\n",
            "namer: 3 name(s) parsed, 1 txt, 3 cleanup name(s), 6 generated, 3 component(s) normalized, 3 tunnel check(s), 1 stream open(s)\n",
        ]
    );
    assert_eq!(
        report.routine_calls.get("FltParseFileNameInformation"),
        Some(&3)
    );
    // One purge per instance torn down at unload.
    assert!(
        report
            .routine_calls
            .get("FltPurgeFileNameInformationCache")
            .is_some_and(|n| *n >= 1),
        "{:?}",
        report.routine_calls
    );
    // Three from its pre-cleanup, three from its GenerateFileNameCallback (kernel-sim's filter
    // above asks with no callback data).
    assert_eq!(
        report.routine_calls.get("FltGetFileNameInformationUnsafe"),
        Some(&6)
    );
}

/// The filter above the namer gets the names the namer provides: the normalized name through
/// a refused normalized request, the opened name and one normalized component; both names are
/// cached (the provider allowed it), so asking again, and the cleanup's requests, call no
/// callback; a file opened again after its close is asked for again.
#[test]
fn namer_provides_names_to_the_filter_above_through_the_name_cache() {
    let Some(image) = build("namer", None) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\report.txt:side", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("created");
    let expected = format!(r"{NTFS}\report.txt:side");
    assert_eq!(io.name_from_above(&f, true), Ok(expected.clone()));
    assert_eq!(io.name_from_above(&f, false), Ok(expected.clone()));
    assert_eq!(io.name_from_above(&f, true), Ok(expected.clone()));
    assert_eq!(io.cleanup(&f), 0);
    io.close(f);
    let again = io
        .create(ntfs, r"\report.txt:side", FILE_OPEN, 0, 0)
        .expect("opened");
    assert_eq!(io.name_from_above(&again, true), Ok(expected));
    io.close(again);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert_eq!(
        report.debug_output.last().map(|line| line.text.as_str()),
        Some(
            "namer: 2 name(s) parsed, 2 txt, 2 cleanup name(s), 4 generated, 2 component(s) normalized, 2 tunnel check(s), 2 stream open(s)\n"
        )
    );
    // One grow per generated name: the first buffer holds 8 characters.
    assert_eq!(
        report.routine_calls.get("FltCheckAndGrowNameControl"),
        Some(&2)
    );
}

/// On the network (MUP) volume the parsed name has a share: the namer traces it with the volume
/// and parent directory, and the filter above gets the normalized name the namer built from
/// the share onwards.
#[test]
fn namer_parses_network_names_with_their_share() {
    let Some(image) = build("namer", None) else {
        return;
    };
    let mut configuration = config();
    configuration
        .io
        .volumes
        .push((VolumeKind::Network, MUP.to_owned()));
    let sim = Sim::new(configuration);
    let driver = sim.load(&image).expect("loads");
    let io = driver.io(requestor(1));
    let mup = volume(&driver, MUP);
    for directory in [r"\server", r"\server\share", r"\server\share\docs"] {
        let d = io
            .create(mup, directory, FILE_CREATE, FILE_DIRECTORY_FILE, 0)
            .unwrap_or_else(|s| panic!("{directory}: {s:#x}"));
        io.close(d);
    }
    let f = io
        .create(
            mup,
            r"\server\share\docs\report.docx",
            FILE_CREATE,
            0,
            GENERIC_WRITE,
        )
        .expect("created");
    assert_eq!(
        io.name_from_above(&f, true),
        Ok(format!(r"{MUP}\server\share\docs\report.docx"))
    );
    io.close(f);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    let trace: Vec<&str> = report
        .debug_output
        .iter()
        .map(|line| line.text.as_str())
        .filter(|text| text.contains("report.docx") || text.contains("share '"))
        .collect();
    assert_eq!(
        trace,
        [
            // The directories: a lone server is all share, a share's root has no parent
            // directory, a directory in it has the root.
            "namer: on share '\\server' of '\\Device\\Mup' in ''\n",
            "namer: on share '\\server\\share' of '\\Device\\Mup' in ''\n",
            "namer: on share '\\server\\share' of '\\Device\\Mup' in '\\'\n",
            "namer: 'report.docx' extension 'docx'\n",
            "namer: on share '\\server\\share' of '\\Device\\Mup' in '\\docs\\'\n",
        ]
    );
}

/// A provider that copies the name into Filter Manager's buffer without growing it: the 16-byte
/// buffer ends at a guard page, and the copy faults in the callback.
#[test]
fn namer_name_control_overrun_twin_is_caught() {
    let Some(twin) = build("namer", Some("name-control-overrun")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Fault",
        "",
        "GenerateFileNameCallback",
        "no faults in driver code",
    );
}

/// A provider that replaces Filter Manager's name buffer with its own: reported when its
/// callback returns.
#[test]
fn namer_name_buffer_replaced_twin_is_caught() {
    let Some(twin) = build("namer", Some("name-buffer-replaced")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "CallbackContract",
        "",
        "GenerateFileNameCallback",
        "the name goes into the FLT_NAME_CONTROL buffer Filter Manager owns",
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

/// Asking for a tunneled name in pre-create, which the page calls a programming error.
#[test]
fn namer_tunneled_name_in_pre_create_twin_is_caught() {
    let Some(twin) = build("namer", Some("tunneled-name-in-pre-create")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Parameter",
        "FltGetTunneledName",
        "PreCreate",
        "called only from the post-operation callback of IRP_MJ_CREATE or IRP_MJ_SET_INFORMATION",
    );
}

/// Changing the shared name structure in place: reported when it is released.
#[test]
fn namer_name_trimmed_twin_is_caught() {
    let Some(twin) = build("namer", Some("name-trimmed")) else {
        return;
    };
    assert_caught(
        &twin,
        None,
        "Parameter",
        "FltReleaseFileNameInformation",
        "PostCreate",
        "FLT_FILE_NAME_INFORMATION is not modified by its users",
    );
}

/// Asking for a name in the pre-write of a paging write: reported against the pre-write (the
/// verify workload issues no paging I/O, so the test drives one). An ordinary write is fine.
#[test]
fn namer_unsafe_in_paging_write_twin_is_caught() {
    let Some(twin) = build("namer", Some("unsafe-in-paging-write")) else {
        return;
    };
    let sim = Sim::new(config());
    let driver = sim.load(&twin).expect("loads");
    let io = driver.io(requestor(1));
    let f = io
        .create(
            volume(&driver, NTFS),
            r"\paged.txt",
            FILE_CREATE,
            0,
            GENERIC_WRITE,
        )
        .expect("created");
    assert_eq!(io.write(&f, 0, b"cached"), 0);
    assert!(driver.violations().is_empty(), "{:#?}", driver.violations());
    let paging = WriteOptions {
        paging_io: true,
        ..WriteOptions::default()
    };
    assert_eq!(io.write_with(&f, 0, b"paged", paging), 0);
    io.close(f);
    let report = driver.finish();
    let caught: Vec<_> = report
        .violations
        .iter()
        .filter(|v| {
            v.routine == "FltGetFileNameInformationUnsafe"
                && v.callback == "PreWrite"
                && v.rule
                    .contains("not where a file-system name query can deadlock")
                && v.message.contains("paging I/O")
        })
        .collect();
    assert_eq!(caught.len(), 1, "{:#?}", report.violations);
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
