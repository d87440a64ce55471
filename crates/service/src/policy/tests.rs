//! Policy parsing: a good file, and each kind of bad file refused with line, field and reason.

use std::fmt::Write as _;

use super::*;

const GOOD: &str = r#"# A complete policy.
[driver]
default_verdict = "deny"
verdict_timeout_ms = 250
send_timeout_ms = 2000
batch_size = 128
attach_network_volumes = true

[output]
jsonl = '/var/log/vigil.jsonl'
max_file_mb = 2
keep_files = 3
sync_interval_ms = 500

[[rule]]
prefix = '\Device\HarddiskVolume3\Secret\'
verdict = "deny"
operations = ["create", "delete"]
except_processes = ['\Device\HarddiskVolume3\Tools\Backup.exe']

[[rule]]
prefix = '\Device\HarddiskVolume3\Audit'
verdict = "allow"

[[rule]]
prefix = '\device\harddiskvolume3\SECRET'
verdict = "deny"
"#;

fn refused(text: &str) -> PolicyError {
    Policy::parse(text).expect_err("the policy must be refused")
}

fn units(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

#[test]
fn a_good_file_gives_every_setting() {
    let p = Policy::parse(GOOD).unwrap();
    assert_eq!(p.default_verdict, Verdict::Deny);
    assert_eq!(
        (p.verdict_timeout_ms, p.send_timeout_ms, p.batch_size),
        (250, 2000, 128)
    );
    assert!(p.attach_network_volumes);
    assert_eq!(
        p.output.jsonl.as_deref(),
        Some(std::path::Path::new("/var/log/vigil.jsonl"))
    );
    assert_eq!((p.output.max_bytes, p.output.keep), (2 * 1024 * 1024, 3));
    assert_eq!(p.output.sync_interval, Duration::from_millis(500));
    assert_eq!(p.rules.len(), 3);
    assert_eq!(
        p.rules[0].except_processes,
        ["\\device\\harddiskvolume3\\tools\\backup.exe"]
    );
    assert!(p.rules[0].operations.contains(VerdictOperation::Delete));
    assert!(!p.rules[0].operations.contains(VerdictOperation::Rename));
    assert_eq!(p.rules[1].operations, Operations::ALL);
    // Rules 1 and 3 name the same prefix (case and trailing separator aside): sent once.
    let prefixes = p.protected_prefixes();
    assert_eq!(prefixes.len(), 2);
    assert_eq!(
        prefixes[0],
        units("\\Device\\HarddiskVolume3\\Secret").as_slice()
    );
    let config = p.driver_config(&prefixes);
    config.validate().unwrap();
    assert_eq!(config.protected_prefixes.len(), 2);
    assert_eq!(config.default_verdict, Verdict::Deny);
}

#[test]
fn an_empty_file_is_the_protocol_defaults() {
    let p = Policy::parse("").unwrap();
    assert_eq!(p, Policy::default());
    let config = p.driver_config(&p.protected_prefixes());
    assert_eq!(config, Config::DEFAULT);
}

#[test]
fn out_of_range_numbers_name_line_field_and_range() {
    let e = refused("[driver]\nverdict_timeout_ms = 250\nbatch_size = 0\n");
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (3, 14, "driver.batch_size")
    );
    assert_eq!(e.reason, "0 is out of range 1..=629 (records per batch)");
    assert_eq!(
        e.to_string(),
        "line 3, column 14: field `driver.batch_size`: 0 is out of range 1..=629 (records per batch)"
    );
    let e = refused("[driver]\nverdict_timeout_ms = 10001\n");
    assert_eq!((e.line, e.field.as_str()), (2, "driver.verdict_timeout_ms"));
    assert!(e.reason.contains("10..=10000"), "{e}");
    let e = refused("[driver]\nsend_timeout_ms = -5\n");
    assert_eq!((e.line, e.field.as_str()), (2, "driver.send_timeout_ms"));
    let e = refused("[output]\nmax_file_mb = 0\n");
    assert_eq!((e.line, e.field.as_str()), (2, "output.max_file_mb"));
}

#[test]
fn a_bad_verdict_word_is_refused() {
    let e = refused("[driver]\ndefault_verdict = \"maybe\"\n");
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (2, 19, "driver.default_verdict")
    );
    assert!(e.reason.contains("expected \"allow\" or \"deny\""), "{e}");
    let e = refused("[[rule]]\nprefix = '\\X'\nverdict = \"block\"\n");
    assert_eq!((e.line, e.field.as_str()), (3, "rule[1].verdict"));
}

#[test]
fn a_wrong_type_names_the_field() {
    let e = refused("[driver]\n\nattach_network_volumes = \"yes\"\n");
    assert_eq!(
        (e.line, e.field.as_str()),
        (3, "driver.attach_network_volumes")
    );
    assert!(e.reason.contains("invalid type"), "{e}");
    let e = refused("[driver]\nbatch_size = \"64\"\n");
    assert_eq!((e.line, e.field.as_str()), (2, "driver.batch_size"));
}

#[test]
fn an_unknown_or_misspelt_key_is_refused() {
    let e = refused("[driver]\nbatch_size = 64\nverdict_timeout = 100\n");
    assert_eq!((e.line, e.field.as_str()), (3, "driver.verdict_timeout"));
    assert!(
        e.reason.starts_with("unknown field `verdict_timeout`"),
        "{e}"
    );
    let e = refused("[drivers]\n");
    assert_eq!((e.line, e.field.as_str()), (1, "drivers"));
}

#[test]
fn a_missing_required_key_is_refused() {
    let e = refused("[driver]\nbatch_size = 1\n\n[[rule]]\nverdict = \"deny\"\n");
    assert_eq!(e.field, "rule[1].prefix");
    assert_eq!(e.line, 4, "the rule's table: {e}");
    assert!(e.reason.contains("missing field `prefix`"), "{e}");
}

#[test]
fn a_syntax_error_gives_its_line() {
    let e = refused("[driver]\nbatch_size = 64\nsend_timeout_ms = = 3\n");
    assert_eq!(e.line, 3, "{e}");
    assert_eq!(e.field, "driver.send_timeout_ms");
}

#[test]
fn bad_prefixes_are_refused() {
    let e = refused("[[rule]]\nprefix = ''\nverdict = \"deny\"\n");
    assert_eq!((e.line, e.field.as_str()), (2, "rule[1].prefix"));
    assert!(e.reason.contains("empty prefix"));
    let e = refused("[[rule]]\nprefix = '\\\\'\nverdict = \"deny\"\n");
    assert!(
        e.reason.contains("empty prefix"),
        "a lone separator is empty too: {e}"
    );
    // Without a drive table (Policy::parse) a drive path cannot be translated.
    let e = refused("[[rule]]\nprefix = 'C:\\Secret'\nverdict = \"deny\"\n");
    assert!(e.reason.contains("drive C: is not mapped"), "{e}");
    let e = refused("[[rule]]\nprefix = 'Secret'\nverdict = \"deny\"\n");
    assert!(e.reason.contains("neither a drive path"), "{e}");
    let long = format!("\\{}", "a".repeat(MAX_PREFIX_UNITS));
    let e = refused(&format!(
        "[[rule]]\nverdict = \"deny\"\nprefix = '{long}'\n"
    ));
    assert_eq!((e.line, e.field.as_str()), (3, "rule[1].prefix"));
    assert!(e.reason.contains("at most 1024"), "{e}");
}

#[test]
fn too_many_distinct_prefixes_are_refused_at_the_first_extra_one() {
    let mut text = String::new();
    for i in 0..=MAX_PROTECTED_PREFIXES {
        let _ = write!(text, "[[rule]]\nprefix = '\\P{i}'\nverdict = \"deny\"\n");
    }
    let e = refused(&text);
    assert_eq!(e.field, "rule[17].prefix");
    assert_eq!(e.line, 16 * 3 + 2);
    // The same prefix repeated does not count twice.
    let mut text = String::new();
    for _ in 0..=MAX_PROTECTED_PREFIXES {
        text.push_str("[[rule]]\nprefix = '\\P'\nverdict = \"deny\"\n");
    }
    assert_eq!(Policy::parse(&text).unwrap().protected_prefixes().len(), 1);
}

#[test]
fn bad_operations_and_process_names_are_refused() {
    let e = refused(
        "[[rule]]\nprefix = '\\X'\nverdict = \"deny\"\noperations = [\"create\", \"write\"]\n",
    );
    assert_eq!(
        (e.line, e.column, e.field.as_str()),
        (4, 25, "rule[1].operations")
    );
    assert!(e.reason.contains("\"write\" is not an operation"));
    let e = refused("[[rule]]\nprefix = '\\X'\nverdict = \"deny\"\noperations = []\n");
    assert!(e.reason.contains("never apply"));
    let e =
        refused("[[rule]]\nprefix = '\\X'\nverdict = \"deny\"\nexcept_processes = ['C:\\a.exe']\n");
    assert_eq!((e.line, e.field.as_str()), (4, "rule[1].except_processes"));
}

fn request<'a>(
    op: VerdictOperation,
    pid: u64,
    path: &'a [u16],
    target: &'a [u16],
) -> VerdictRequestRepr<'a> {
    VerdictRequestRepr {
        request_id: 1,
        operation: op,
        flags: vigil_protocol::EventFlags::NONE,
        process_id: pid,
        path: Utf16Str::from_units(path),
        target: Utf16Str::from_units(target),
    }
}

#[test]
fn verdicts_follow_the_rules_in_order() {
    let p = Policy::parse(GOOD).unwrap();
    let names: std::collections::HashMap<u64, String> = [
        (
            77,
            "\\Device\\HarddiskVolume3\\TOOLS\\BACKUP.EXE".to_owned(),
        ),
        (
            78,
            "\\Device\\HarddiskVolume3\\Windows\\notepad.exe".to_owned(),
        ),
    ]
    .into();
    let inside = units("\\DEVICE\\HarddiskVolume3\\secret\\a.txt");
    let sibling = units("\\Device\\HarddiskVolume3\\SecretNot\\a.txt");
    let audit = units("\\Device\\HarddiskVolume3\\Audit\\x");
    let decide = |op, pid, path: &[u16], target: &[u16]| {
        p.decide(&request(op, pid, path, target), 1, &names)
    };
    // Rule 1 denies creates under Secret, case-insensitively.
    assert_eq!(
        decide(VerdictOperation::Create, 78, &inside, &[]),
        Decision {
            verdict: Verdict::Deny,
            reason: 1
        }
    );
    // Not at a component boundary: no rule.
    assert_eq!(
        decide(VerdictOperation::Create, 78, &sibling, &[]).reason,
        REASON_NO_RULE
    );
    // The excepted process skips rule 1, and rule 3 (same prefix, every operation) denies.
    assert_eq!(
        decide(VerdictOperation::Create, 77, &inside, &[]),
        Decision {
            verdict: Verdict::Deny,
            reason: 3
        }
    );
    // Rename is not in rule 1's operations: rule 3 applies.
    assert_eq!(decide(VerdictOperation::Rename, 78, &inside, &[]).reason, 3);
    // A rename *into* the protected directory is caught by the target.
    assert_eq!(
        decide(VerdictOperation::Rename, 78, &audit, &inside),
        Decision {
            verdict: Verdict::Deny,
            reason: 3
        }
    );
    // An allow rule answers allow, with its number.
    assert_eq!(
        decide(VerdictOperation::Delete, 78, &audit, &[]),
        Decision {
            verdict: Verdict::Allow,
            reason: 2
        }
    );
    // The prefix itself is covered.
    assert_eq!(
        decide(
            VerdictOperation::Delete,
            78,
            &units("\\Device\\HarddiskVolume3\\Secret"),
            &[]
        )
        .verdict,
        Verdict::Deny
    );
}

#[test]
fn streams_unicode_case_and_ancestors_are_covered() {
    let p = Policy::parse("[[rule]]\nprefix = '\\Device\\V\\Data\\Секрет'\nverdict = \"deny\"\n")
        .unwrap();
    let names: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let decide = |op, path: &str| {
        p.decide(&request(op, 78, &units(path), &[]), 1, &names)
            .verdict
    };
    for path in [
        "\\Device\\V\\Data\\СЕКРЕТ\\a.txt",
        "\\Device\\V\\Data\\секрет::$DATA",
        "\\Device\\V\\Data\\Секрет:ads",
        "\\Device\\V\\Data\\Секрет:$I30:$INDEX_ALLOCATION",
    ] {
        assert_eq!(
            decide(VerdictOperation::Create, path),
            Verdict::Deny,
            "{path}"
        );
    }
    // Renaming or deleting an ancestor moves the tree; opening it does not.
    for path in [
        "\\Device\\V\\Data",
        "\\device\\v\\DATA:$I30:$INDEX_ALLOCATION",
    ] {
        assert_eq!(
            decide(VerdictOperation::Rename, path),
            Verdict::Deny,
            "{path}"
        );
        assert_eq!(
            decide(VerdictOperation::Delete, path),
            Verdict::Deny,
            "{path}"
        );
        assert_eq!(
            decide(VerdictOperation::Create, path),
            Verdict::Allow,
            "{path}"
        );
    }
    assert_eq!(
        decide(VerdictOperation::Delete, "\\Device\\V\\Dat"),
        Verdict::Allow
    );
}

#[test]
fn the_services_own_process_is_always_allowed() {
    let p = Policy::parse(GOOD).unwrap();
    let inside = units("\\Device\\HarddiskVolume3\\Secret\\a.txt");
    let own = 4242;
    let d = p.decide(
        &request(VerdictOperation::Delete, own, &inside, &[]),
        own,
        &NoProcessNames,
    );
    assert_eq!(
        d,
        Decision {
            verdict: Verdict::Allow,
            reason: REASON_OWN_PROCESS
        }
    );
    let d = p.decide(
        &request(VerdictOperation::Delete, own + 1, &inside, &[]),
        own,
        &NoProcessNames,
    );
    assert_eq!(d.verdict, Verdict::Deny);
}

#[test]
fn without_process_names_an_exception_never_applies() {
    let p = Policy::parse(
        "[[rule]]\nprefix='\\S'\nverdict='deny'\nexcept_processes=['\\V\\backup.exe']\n",
    )
    .unwrap();
    let path = units("\\S\\x");
    let d = p.decide(
        &request(VerdictOperation::Create, 9, &path, &[]),
        1,
        &NoProcessNames,
    );
    assert_eq!(
        d,
        Decision {
            verdict: Verdict::Deny,
            reason: 1
        }
    );
}

#[test]
fn a_bare_image_name_is_refused_and_only_the_full_path_is_excepted() {
    let e = refused(
        "[[rule]]\nprefix = '\\S'\nverdict = \"deny\"\nexcept_processes = ['backup.exe']\n",
    );
    assert_eq!((e.line, e.field.as_str()), (4, "rule[1].except_processes"));
    assert!(e.reason.contains("not a full image path"), "{e}");
    let paths = PathContext {
        dos_devices: crate::paths::DosDevices::from_pairs([('C', "\\Device\\HarddiskVolume3")]),
        data_dir: None,
    };
    let p = Policy::parse_in(
        "[[rule]]\nprefix = 'C:\\S'\nverdict = \"deny\"\n\
         except_processes = ['C:\\Program Files\\Backup\\backup.exe']\n",
        &paths,
    )
    .unwrap();
    let names: std::collections::HashMap<u64, String> = [
        (
            1,
            "\\Device\\HarddiskVolume3\\Program Files\\Backup\\backup.exe".to_owned(),
        ),
        // Same file name, in a directory any user can write: not the excepted program.
        (
            2,
            "\\Device\\HarddiskVolume3\\Users\\eve\\backup.exe".to_owned(),
        ),
    ]
    .into();
    let path = units("\\Device\\HarddiskVolume3\\S\\x");
    let decide = |pid| {
        p.decide(
            &request(VerdictOperation::Create, pid, &path, &[]),
            99,
            &names,
        )
        .verdict
    };
    assert_eq!(decide(1), Verdict::Allow);
    assert_eq!(decide(2), Verdict::Deny);
}

#[test]
fn drive_paths_are_translated_to_device_paths_at_load() {
    let paths = PathContext {
        dos_devices: crate::paths::DosDevices::from_pairs([('C', "\\Device\\HarddiskVolume3")]),
        data_dir: Some(std::path::PathBuf::from("/data/vigil")),
    };
    let p = Policy::parse_in(
        "[output]\njsonl = 'events.jsonl'\n[[rule]]\nprefix = 'C:\\Secret\\'\nverdict = \"deny\"\n",
        &paths,
    )
    .unwrap();
    assert_eq!(
        p.protected_prefixes()[0],
        units("\\Device\\HarddiskVolume3\\Secret").as_slice()
    );
    assert_eq!(
        p.output.jsonl.as_deref(),
        Some(std::path::Path::new("/data/vigil/events.jsonl")),
        "relative to the data directory, not the working directory"
    );
    // A drive this machine does not have is refused with its line.
    let e =
        Policy::parse_in("[[rule]]\nprefix = 'Q:\\x'\nverdict = \"deny\"\n", &paths).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (2, "rule[1].prefix"));
    assert!(e.reason.contains("drive Q: is not mapped"), "{e}");
}
