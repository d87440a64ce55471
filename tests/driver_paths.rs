//! The adversarial suite of RULES.md rule 28: protected paths that cannot be walked around.
//! One table row per attempt an ordinary process makes on a protected tree, each run against the
//! real vigil.sys in kernel-sim on a fresh machine: by an intruder the service denies, the
//! attempt fails with `STATUS_ACCESS_DENIED`, the driver counts it as denied (by the service, or
//! by the `FailClosed` default when the name cannot be learned) and the volume's listing (every
//! name, size and stream) is unchanged; by an excepted process, which the service allows, the
//! same attempt succeeds (but for an overwrite by file ID: a destructive create the driver
//! cannot name beforehand is denied to everyone). The broken twins of the matcher (`latin1-fold`, `stream-escape`,
//! `ancestor-unchecked`, `name-failure-allows`) each let at least one row through.
//!
//! The machine: `\Data\Secret` (protected) holds `vault.txt` (5 bytes); `\Секрет` (protected,
//! Cyrillic, configured as `\СЕКРЕТ`) holds `ключ.txt`; `\Vault` is an empty directory above the protected (not yet
//! created) `\Vault\Inner`; `\Confidential Files` (protected, short name `CONFID~1`) holds
//! `plan.txt`; `\Open\loot.txt` is unprotected.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use driver::{
    Answer, DELETE, FILE_CREATE, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE,
    FILE_DISPOSITION_DELETE, FILE_DISPOSITION_POSIX_SEMANTICS, FILE_OPEN, FILE_OVERWRITE_IF,
    GENERIC_READ, GENERIC_WRITE, NTFS, SERVICE_PID, STATUS_ACCESS_DENIED, STATUS_SUCCESS, Service,
    build, config, image, load, nt, requestor, volume,
};
use vigil_kernel_sim::{Driver, FileHandle, Io, Report, ViolationKind, VolumeId};
use vigil_protocol::{Config, PrefixList, Stats, Utf16Str, Verdict};
use xtask::{Twin, Variant};

/// The intruder: every verdict it asks for is denied.
const INTRUDER: u32 = 6660;
/// The excepted process (a backup): every verdict it asks for is allowed.
const EXCEPTED: u32 = 3100;

const FILE_SUPERSEDE: u32 = 0;

type Attempt = fn(&Driver, &Io, VolumeId) -> i32;

/// One attempt on the protected tree.
struct Row {
    name: &'static str,
    attempt: Attempt,
    /// Run with normalized name queries failing (FltMgr cannot build the name) and `FailClosed`.
    names_fail: bool,
    /// With `names_fail`, the default verdict is allow (fail-open) rather than deny.
    fail_open: bool,
    /// Whether the excepted process succeeds: not for a destructive create the driver cannot
    /// name before it happens (an overwrite by file ID), which is denied to everyone.
    excepted_succeeds: bool,
}

fn open(
    io: &Io,
    v: VolumeId,
    path: &str,
    disposition: u32,
    options: u32,
    access: u32,
) -> Result<FileHandle, i32> {
    io.create(v, path, disposition, options, access)
}

/// Runs `step` on a handle opened with `path`, then cleans up and closes it; the status of the
/// open if it failed, else `step`'s.
fn with_open(
    io: &Io,
    v: VolumeId,
    path: &str,
    options: u32,
    step: impl FnOnce(&FileHandle) -> i32,
) -> i32 {
    match open(io, v, path, FILE_OPEN, options, GENERIC_READ | DELETE) {
        Ok(file) => {
            let status = step(&file);
            io.cleanup(&file);
            io.close(file);
            status
        }
        Err(status) => status,
    }
}

/// Creates (or opens) `path` and closes it at once; the create's status.
fn touch(io: &Io, v: VolumeId, path: &str, disposition: u32, options: u32) -> i32 {
    match open(io, v, path, disposition, options, GENERIC_WRITE | DELETE) {
        Ok(file) => {
            io.cleanup(&file);
            io.close(file);
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

const ROWS: &[Row] = &[
    Row {
        name: "open the protected file by its name",
        attempt: |_, io, v| touch(io, v, r"\Data\Secret\vault.txt", FILE_OPEN, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open it in another case (ASCII)",
        attempt: |_, io, v| touch(io, v, r"\DATA\secret\VAULT.TXT", FILE_OPEN, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open a file of the Cyrillic tree in another case",
        attempt: |_, io, v| touch(io, v, r"\СЕКРЕТ\КЛЮЧ.TXT", FILE_OPEN, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open its unnamed data stream (::$DATA)",
        attempt: |_, io, v| touch(io, v, r"\Data\Secret\vault.txt::$DATA", FILE_OPEN, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "overwrite it through ::$DATA",
        attempt: |_, io, v| {
            touch(
                io,
                v,
                r"\Data\Secret\vault.txt::$DATA",
                FILE_OVERWRITE_IF,
                0,
            )
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "create an alternate data stream on it (:hidden)",
        attempt: |_, io, v| touch(io, v, r"\Data\Secret\vault.txt:hidden", FILE_CREATE, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "create an alternate data stream on the protected directory",
        attempt: |_, io, v| touch(io, v, r"\Data\Secret:hidden:$DATA", FILE_CREATE, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open the protected directory as its index ($I30:$INDEX_ALLOCATION)",
        attempt: |_, io, v| touch(io, v, r"\Data\Secret:$I30:$INDEX_ALLOCATION", FILE_OPEN, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "supersede the protected file",
        attempt: |_, io, v| touch(io, v, r"\Data\Secret\vault.txt", FILE_SUPERSEDE, 0),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "rename the protected directory itself",
        attempt: |_, io, v| {
            with_open(io, v, r"\Data\Secret", FILE_DIRECTORY_FILE, |f| {
                io.rename(f, r"\Data\Moved", false)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "rename an ancestor of the protected directory",
        attempt: |_, io, v| {
            with_open(io, v, r"\Data", FILE_DIRECTORY_FILE, |f| {
                io.rename(f, r"\Elsewhere", false)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "rename an ancestor opened as its index ($I30)",
        attempt: |_, io, v| {
            with_open(io, v, r"\Data:$I30:$INDEX_ALLOCATION", 0, |f| {
                io.rename_ex(f, r"\Elsewhere", 0)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "delete-on-close of an ancestor",
        attempt: |_, io, v| touch(io, v, r"\Vault", FILE_OPEN, FILE_DELETE_ON_CLOSE),
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "FileDispositionInformation on an ancestor",
        attempt: |_, io, v| {
            with_open(io, v, r"\Vault", FILE_DIRECTORY_FILE, |f| {
                io.set_disposition(f, true)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "FileDispositionInformationEx (POSIX) on an ancestor",
        attempt: |_, io, v| {
            with_open(io, v, r"\Vault", FILE_DIRECTORY_FILE, |f| {
                io.set_disposition_ex(
                    f,
                    FILE_DISPOSITION_DELETE | FILE_DISPOSITION_POSIX_SEMANTICS,
                )
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "hard link into the protected tree",
        attempt: |_, io, v| {
            with_open(io, v, r"\Open\loot.txt", 0, |f| {
                io.link(f, r"\Data\Secret\loot.txt", false)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "hard link into the tree, spelled in another Unicode case",
        attempt: |_, io, v| {
            with_open(io, v, r"\Open\loot.txt", 0, |f| {
                io.link_ex(f, r"\секрет\loot.txt", 0)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "hard link out of the protected tree",
        attempt: |_, io, v| {
            with_open(io, v, r"\Data\Secret\vault.txt", 0, |f| {
                io.link(f, r"\Open\vault-copy.txt", false)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "rename a file into the protected tree",
        attempt: |_, io, v| {
            with_open(io, v, r"\Open\loot.txt", 0, |f| {
                io.rename(f, r"\Data\Secret\loot.txt", false)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "rename a file out of the protected tree",
        attempt: |_, io, v| {
            with_open(io, v, r"\Data\Secret\vault.txt", 0, |f| {
                io.rename(f, r"\Open\vault.txt", false)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "delete the protected file",
        attempt: |_, io, v| {
            with_open(io, v, r"\Data\Secret\vault.txt", 0, |f| {
                io.set_disposition(f, true)
            })
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open by a name FltMgr cannot normalize (FailClosed)",
        attempt: |_, io, v| touch(io, v, r"\Open\loot.txt", FILE_OPEN, 0),
        names_fail: true,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "create a file through a short name FltMgr cannot normalize (FailClosed)",
        attempt: |driver, io, v| {
            let short = driver
                .short_name(v, r"\Confidential Files")
                .expect("a short name");
            touch(io, v, &format!(r"\{short}\planted.txt"), FILE_CREATE, 0)
        },
        names_fail: true,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open the protected file by its file ID",
        attempt: |driver, io, v| {
            let id = driver.file_id(v, r"\Data\Secret\vault.txt").expect("an ID");
            match io.create_by_id(v, id, FILE_OPEN, 0, GENERIC_READ) {
                Ok(file) => {
                    io.cleanup(&file);
                    io.close(file);
                    STATUS_SUCCESS
                }
                Err(status) => status,
            }
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "overwrite the protected file by its file ID",
        attempt: |driver, io, v| {
            let id = driver.file_id(v, r"\Data\Secret\vault.txt").expect("an ID");
            match io.create_by_id(v, id, FILE_OVERWRITE_IF, 0, GENERIC_WRITE) {
                Ok(file) => {
                    io.cleanup(&file);
                    io.close(file);
                    STATUS_SUCCESS
                }
                Err(status) => status,
            }
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: false,
    },
    Row {
        name: "open a protected file through its directory's 8.3 short name",
        attempt: |driver, io, v| {
            let short = driver
                .short_name(v, r"\Confidential Files")
                .expect("a short name");
            touch(io, v, &format!(r"\{short}\plan.txt"), FILE_OPEN, 0)
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
    Row {
        name: "open the protected file relative to a handle on an ancestor",
        attempt: |_, io, v| match open(io, v, r"\Data", FILE_OPEN, FILE_DIRECTORY_FILE, 0) {
            Ok(dir) => {
                let status = match io.create_relative(&dir, r"Secret\vault.txt", FILE_OPEN, 0, 0) {
                    Ok(file) => {
                        io.cleanup(&file);
                        io.close(file);
                        STATUS_SUCCESS
                    }
                    Err(status) => status,
                };
                io.cleanup(&dir);
                io.close(dir);
                status
            }
            Err(status) => status,
        },
        names_fail: false,
        fail_open: false,
        excepted_succeeds: true,
    },
];

/// The protected prefixes, with `default` when no verdict arrives.
fn protect(service: &Service, default: Verdict) {
    // The Cyrillic prefix is configured in capitals; the directory was created in lower case
    // (the normalized names FltMgr gives keep the case of the disk).
    let prefixes: Vec<Vec<u16>> = [
        r"\Data\Secret",
        r"\СЕКРЕТ",
        r"\Vault\Inner",
        r"\Confidential Files",
    ]
    .iter()
    .map(|p| nt(NTFS, p).encode_utf16().collect())
    .collect();
    let list: Vec<Utf16Str<'_>> = prefixes.iter().map(|p| Utf16Str::from_units(p)).collect();
    let config = Config {
        verdict_timeout_ms: 5_000,
        default_verdict: default,
        protected_prefixes: PrefixList::from_slice(&list).expect("four prefixes"),
        ..Config::DEFAULT
    };
    assert_eq!(service.set_config(&config), STATUS_SUCCESS);
}

/// The machine's files, created by the service (exempt).
fn populate(driver: &Driver) {
    let io = driver.io(requestor(SERVICE_PID, 1));
    let v = volume(driver, NTFS);
    for dir in [
        r"\Data",
        r"\Data\Secret",
        r"\Секрет",
        r"\Vault",
        r"\Open",
        r"\Confidential Files",
    ] {
        assert_eq!(
            touch(&io, v, dir, FILE_CREATE, FILE_DIRECTORY_FILE),
            STATUS_SUCCESS,
            "{dir}"
        );
    }
    for file in [
        r"\Data\Secret\vault.txt",
        r"\Секрет\ключ.txt",
        r"\Open\loot.txt",
        r"\Confidential Files\plan.txt",
    ] {
        let f = open(&io, v, file, FILE_CREATE, 0, GENERIC_WRITE).expect(file);
        assert_eq!(io.write(&f, 0, b"12345"), STATUS_SUCCESS);
        io.cleanup(&f);
        io.close(f);
    }
}

/// What one attempt did.
struct Outcome {
    status: i32,
    before: Vec<String>,
    after: Vec<String>,
    stats: Stats,
}

/// Runs `row` as `pid` on a fresh machine with `image`; the run must be clean.
fn run(row: &Row, pid: u32, image: &std::path::Path) -> Outcome {
    let (outcome, report) = run_with_report(row, pid, image);
    assert!(report.is_clean(), "{}: {}", row.name, report.summary());
    outcome
}

/// Runs `row` as `pid` on a fresh machine with `image`, returning kernel-sim's report too.
fn run_with_report(row: &Row, pid: u32, image: &std::path::Path) -> (Outcome, Report) {
    let mut sim_config = config(&[]);
    // The service's own I/O (populating the machine) asks for no name, so failing every
    // normalized name query from the start reaches only the attempt.
    sim_config.io.fail_normalized_names = row.names_fail;
    let (_sim, driver) = load(sim_config, image);
    let service = Service::connect(&driver, |request| {
        Answer::Reply(if request.process_id == u64::from(EXCEPTED) {
            Verdict::Allow
        } else {
            Verdict::Deny
        })
    });
    populate(&driver);
    let default = if row.names_fail && !row.fail_open {
        Verdict::Deny
    } else {
        Verdict::Allow
    };
    protect(&service, default);
    let v = volume(&driver, NTFS);
    let before = driver.listing(v);
    let status = (row.attempt)(&driver, &driver.io(requestor(pid, 7)), v);
    if std::env::var_os("VIGIL_DEBUG_PATHS").is_some() {
        eprintln!("{}: {status:#x} {before:#?}", row.name);
    }
    let after = driver.listing(v);
    let counters = service.stats();
    drop(service);
    let report = driver.finish();
    (
        Outcome {
            status,
            before,
            after,
            stats: counters,
        },
        report,
    )
}

fn denied(stats: &Stats) -> u64 {
    stats.verdicts_denied + stats.verdicts_defaulted_closed
}

#[test]
fn every_attempt_on_a_protected_tree_is_denied_reported_and_changes_nothing() {
    let image = image();
    let mut failures = Vec::new();
    for row in ROWS {
        let intruder = run(row, INTRUDER, &image);
        let held = intruder.status == STATUS_ACCESS_DENIED
            && intruder.before == intruder.after
            && denied(&intruder.stats) >= 1;
        println!(
            "{:<70} intruder: {} (status {:#x}, denied verdicts {})",
            row.name,
            if held { "denied" } else { "GOT THROUGH" },
            intruder.status.cast_unsigned(),
            denied(&intruder.stats)
        );
        if !held {
            failures.push(format!(
                "{}: status {:#x}, denied {}, listing {:?} -> {:?}",
                row.name,
                intruder.status.cast_unsigned(),
                denied(&intruder.stats),
                intruder.before,
                intruder.after
            ));
        }
        // The excepted process (or, when no name can be learned, the service itself, the only
        // process FailClosed cannot judge) does the same successfully.
        let excepted_pid = if row.names_fail && !row.fail_open {
            SERVICE_PID
        } else {
            EXCEPTED
        };
        let excepted = run(row, excepted_pid, &image);
        let expected = if row.excepted_succeeds {
            STATUS_SUCCESS
        } else {
            STATUS_ACCESS_DENIED
        };
        if excepted.status != expected {
            failures.push(format!(
                "{} by the excepted process {excepted_pid}: status {:#x}",
                row.name,
                excepted.status.cast_unsigned()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Each broken twin of the matcher lets at least one row of the table through, and which one:
/// the suite is able to see each of the holes it closes.
#[test]
fn each_hole_reopened_by_a_broken_twin_is_caught_by_its_row() {
    let cases: [(Twin, &str); 8] = [
        (
            Twin::Latin1Fold,
            "open a file of the Cyrillic tree in another case",
        ),
        (
            Twin::StreamEscape,
            "create an alternate data stream on it (:hidden)",
        ),
        (
            Twin::AncestorUnchecked,
            "rename an ancestor of the protected directory",
        ),
        (
            Twin::NameFailureAllows,
            "open by a name FltMgr cannot normalize (FailClosed)",
        ),
        (
            Twin::NameFailureAllows,
            "open the protected file by its file ID",
        ),
        (
            Twin::NameFailureAllows,
            "create a file through a short name FltMgr cannot normalize (FailClosed)",
        ),
        (
            Twin::RelativeNameOnly,
            "open the protected file relative to a handle on an ancestor",
        ),
        (
            Twin::OpenedNameOnly,
            "open a protected file through its directory's 8.3 short name",
        ),
    ];
    for (twin, row_name) in cases {
        let image = build(&Variant::twin(twin));
        let row = ROWS
            .iter()
            .find(|row| row.name == row_name)
            .expect("a row of the table");
        let outcome = run(row, INTRUDER, &image);
        assert_ne!(
            outcome.status, STATUS_ACCESS_DENIED,
            "{twin:?}: '{row_name}' was still denied, so the row cannot see this hole"
        );
    }
}

/// kernel-sim's `FltCancelFileOpen` rule: the post-create that cancels an open must fail it.
/// The `cancel-keeps-success` twin cancels the open by file ID of the protected file but leaves
/// the success status: the check reports it (and the create still fails, as FltMgr's would).
#[test]
fn a_canceled_open_left_successful_is_caught_by_kernel_sim() {
    let row = ROWS
        .iter()
        .find(|row| row.name == "open the protected file by its file ID")
        .expect("a row of the table");
    let (_, clean) = run_with_report(row, INTRUDER, &image());
    assert!(clean.is_clean(), "{}", clean.summary());
    let (outcome, report) = run_with_report(
        row,
        INTRUDER,
        &build(&Variant::twin(Twin::CancelKeepsSuccess)),
    );
    assert_ne!(outcome.status, STATUS_SUCCESS);
    assert!(
        report.violations.iter().any(
            |v| v.kind == ViolationKind::CallbackStatus && v.rule.contains("FltCancelFileOpen")
        ),
        "{}",
        report.summary()
    );
}
