//! Process identity on every event (issue 16, service half), through the public API against the
//! fake driver: process records build the service's table; events carry the process key; the
//! JSON Lines `process` object and the ECS output say who did it; policy exceptions by user SID
//! use the table. No wall-clock time is measured or asserted.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::fake::{FAKE_PATH, FakeDriver, FakeProcess, SYSTEM_SID, USER_SID, sample_event};
use serde_json::Value;
use vigil_protocol::{
    EventFlags, EventKind, EventRepr, ProcessEvent, Utf16Str, Verdict, VerdictOperation,
    VerdictReply, VerdictRequestRepr,
};
use vigil_service::ecs::HostInfo;
use vigil_service::{
    HumanSink, JsonlOptions, JsonlSink, ManualClock, MemorySink, Policy, RecordFormat, Service,
    ServiceOptions, record::last_event_position,
};

fn options() -> ServiceOptions {
    ServiceOptions {
        own_pid: 4242,
        ..ServiceOptions::default()
    }
}

fn units(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

const NOTEPAD: &str = r"\Device\HarddiskVolume1\Windows\System32\notepad.exe";
const CMD: &str = r"\Device\HarddiskVolume1\Windows\System32\cmd.exe";
const SERVICES: &str = r"\Device\HarddiskVolume1\Windows\System32\services.exe";

fn notepad(key: u64, pid: u64) -> FakeProcess<'static> {
    FakeProcess {
        key,
        pid,
        parent_pid: 900,
        image: NOTEPAD,
        sid: &USER_SID,
        session: 1,
    }
}

/// Runs the service with a memory sink until the fake's script is done; the JSON lines.
fn run_to_memory(driver: &FakeDriver, policy: Policy) -> (Vec<Value>, Service<MemorySink>) {
    let mut service = Service::new(policy, MemorySink::default(), options());
    driver.stop_when_idle(&service.control());
    service
        .run(&mut driver.connector(), &ManualClock::new())
        .expect("the run ends with a stop");
    let lines = String::from_utf8(service.sinks().json.clone()).unwrap();
    let values = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (values, service)
}

fn event_with(seq: u64, key: u64, pid: u64, path: &[u16]) -> EventRepr<'_> {
    EventRepr {
        process_key: key,
        process_id: pid,
        ..sample_event(seq, path)
    }
}

#[test]
fn a_reused_pid_stays_two_processes_told_apart_by_key() {
    let driver = FakeDriver::new();
    let path = units(FAKE_PATH);
    // notepad runs as pid 500, exits; cmd gets pid 500 next, as a system process.
    driver.push_process(ProcessEvent::Start, &notepad(0x1_0000_0010, 500));
    driver.push_batch(&[event_with(0, 0x1_0000_0010, 500, &path)]);
    driver.push_process(ProcessEvent::Exit, &notepad(0x1_0000_0010, 500));
    let cmd = FakeProcess {
        key: 0x1_0000_0011,
        pid: 500,
        parent_pid: 4,
        image: CMD,
        sid: &SYSTEM_SID,
        session: 0,
    };
    driver.push_process(ProcessEvent::Start, &cmd);
    driver.push_batch(&[event_with(1, 0x1_0000_0011, 500, &path)]);
    let (lines, service) = run_to_memory(&driver, Policy::default());
    assert_eq!(lines.len(), 2);
    let (first, second) = (&lines[0]["process"], &lines[1]["process"]);
    assert_eq!(first["pid"], 500);
    assert_eq!(second["pid"], 500);
    assert_eq!(first["key"], 0x1_0000_0010_u64);
    assert_eq!(second["key"], 0x1_0000_0011_u64);
    assert_eq!(first["image"], NOTEPAD);
    assert_eq!(second["image"], CMD);
    assert_eq!(first["user_sid"], "S-1-5-21-1-2-3-1001");
    assert_eq!(second["user_sid"], "S-1-5-18");
    assert_eq!(
        (first["parent_pid"].clone(), first["session"].clone()),
        (900.into(), 1.into())
    );
    assert_eq!(
        (second["parent_pid"].clone(), second["session"].clone()),
        (4.into(), 0.into())
    );
    assert_eq!(
        service.processes().len(),
        2,
        "both kept, the first marked exited"
    );
    assert!(service.processes().get(0x1_0000_0010).unwrap().exited);
}

#[test]
fn a_process_running_before_the_load_is_named_from_its_first_sight_record() {
    let driver = FakeDriver::new();
    let path = units(FAKE_PATH);
    let early = FakeProcess {
        key: 0x1_0000_0003,
        pid: 640,
        parent_pid: 500,
        image: SERVICES,
        sid: &SYSTEM_SID,
        session: 0,
    };
    driver.push_process(ProcessEvent::Seen, &early);
    driver.push_batch(&[
        event_with(0, early.key, early.pid, &path),
        // A key the service never got a record for, and no key at all (a driver without a
        // process table): both still written, with what the event says.
        event_with(1, 0x1_0000_0099, 77, &path),
        event_with(2, 0, 78, &path),
    ]);
    let (lines, _) = run_to_memory(&driver, Policy::default());
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["process"]["image"], SERVICES);
    assert_eq!(lines[0]["process"]["user_sid"], "S-1-5-18");
    let unknown = &lines[1]["process"];
    assert_eq!(unknown["pid"], 77);
    assert_eq!(unknown["key"], 0x1_0000_0099_u64);
    for field in ["image", "parent_pid", "user_sid", "session"] {
        assert!(
            unknown[field].is_null(),
            "{field} of an unknown process is null"
        );
        assert!(
            unknown.get(field).is_some(),
            "{field} is present even when null"
        );
    }
    assert!(
        lines[2]["process"]["key"].is_null(),
        "key 0 is written as null"
    );
    assert_eq!(lines[2]["process"]["pid"], 78);
}

#[test]
fn the_terminal_shows_the_image_name_of_a_known_process() {
    let driver = FakeDriver::new();
    let path = units(FAKE_PATH);
    driver.push_process(ProcessEvent::Start, &notepad(0x1_0000_0040, 55));
    driver.push_batch(&[
        event_with(0, 0x1_0000_0040, 55, &path),
        event_with(1, 0x1_0000_0041, 56, &path),
    ]);
    let mut service = Service::new(
        Policy::default(),
        HumanSink::new(Vec::new(), false),
        options(),
    );
    driver.stop_when_idle(&service.control());
    service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    let text = String::from_utf8(service.into_sinks().into_inner()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with(r"\fake\file.txt (notepad.exe)"),
        "{text}"
    );
    assert!(
        !lines[1].contains('('),
        "an unknown process has no name: {text}"
    );
}

#[test]
fn the_table_outlives_a_reconnection() {
    let driver = FakeDriver::new();
    let path = units(FAKE_PATH);
    driver.push_process(ProcessEvent::Start, &notepad(0x1_0000_0030, 321));
    driver.push_disconnect();
    // Same driver instance, new connection: the driver does not send the start again.
    driver.push_batch(&[event_with(0, 0x1_0000_0030, 321, &path)]);
    let (lines, _) = run_to_memory(&driver, Policy::default());
    assert_eq!(driver.connections_made(), 2);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["process"]["image"], NOTEPAD);
}

#[test]
fn file_ids_are_hex_and_null_only_when_the_driver_sent_none() {
    let driver = FakeDriver::new();
    let path = units(FAKE_PATH);
    let mut id128 = [0u8; 16];
    id128[0] = 0x12;
    id128[15] = 0xEF;
    let mut id64 = [0u8; 16];
    id64[..8].copy_from_slice(&0x0001_0000_0000_1234_u64.to_le_bytes());
    driver.push_batch(&[
        EventRepr {
            file_id: id128,
            ..sample_event(0, &path)
        },
        EventRepr {
            file_id: id64,
            flags: EventFlags::FILE_ID_64,
            ..sample_event(1, &path)
        },
        sample_event(2, &path),
    ]);
    let (lines, _) = run_to_memory(&driver, Policy::default());
    assert_eq!(lines[0]["file_id"], "120000000000000000000000000000ef");
    assert_eq!(lines[1]["file_id"], "34120000000001000000000000000000");
    assert_eq!(lines[1]["flags"], serde_json::json!(["file_id_64"]));
    assert!(lines[2]["file_id"].is_null());
}

const SYSTEM_EXEMPT: &str = r#"
[[rule]]
prefix = '\Device\HarddiskVolume1\Secret'
verdict = "deny"
except_users = ['S-1-5-18']
"#;

#[test]
fn a_rule_exempts_a_user_by_sid_as_the_process_table_knows_it() {
    let driver = FakeDriver::new();
    let secret = units(r"\Device\HarddiskVolume1\Secret\plans.txt");
    let system = FakeProcess {
        key: 0x1_0000_0020,
        pid: 700,
        parent_pid: 4,
        image: SERVICES,
        sid: &SYSTEM_SID,
        session: 0,
    };
    driver.push_process(ProcessEvent::Start, &system);
    driver.push_process(ProcessEvent::Start, &notepad(0x1_0000_0021, 701));
    let request = |id, pid| VerdictRequestRepr {
        request_id: id,
        operation: VerdictOperation::Create,
        flags: EventFlags::NONE,
        process_id: pid,
        path: Utf16Str::from_units(&secret),
        target: Utf16Str::EMPTY,
    };
    driver.push_verdict_request(&request(1, 700));
    driver.push_verdict_request(&request(2, 701));
    // A requester the table does not know: its user is unknown, so it is not exempt.
    driver.push_verdict_request(&request(3, 702));
    let _ = run_to_memory(&driver, Policy::parse(SYSTEM_EXEMPT).unwrap());
    let verdicts: Vec<(u64, Verdict)> = driver
        .replies()
        .iter()
        .map(|(_, b)| VerdictReply::parse(b).unwrap())
        .map(|r| (r.request_id, r.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [(1, Verdict::Allow), (2, Verdict::Deny), (3, Verdict::Deny)]
    );
}

#[test]
fn a_sid_that_is_not_a_sid_is_refused_with_its_line() {
    for bad in [
        "S-1",
        "S-2-5-18",
        "X-1-5-18",
        "S-1-5-eighteen",
        "S-1-0x12-1",
    ] {
        let text = format!(
            "[[rule]]\nprefix = '\\Device\\V\\S'\nverdict = \"deny\"\nexcept_users = ['{bad}']\n"
        );
        let error = Policy::parse(&text).unwrap_err();
        assert_eq!(
            (error.line, error.field.as_str()),
            (4, "rule[1].except_users"),
            "{bad}"
        );
    }
    let ok = "[[rule]]\nprefix = '\\Device\\V\\S'\nverdict = \"deny\"\n\
              except_users = ['s-1-5-21-1-2-3-1001', 'S-1-0x123456789abc-7']\n";
    let policy = Policy::parse(ok).unwrap();
    assert_eq!(
        policy.rules[0].except_users,
        ["S-1-5-21-1-2-3-1001", "S-1-0x123456789ABC-7"]
    );
}

// ---- ECS ----------------------------------------------------------------------------------------

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("identity-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// ECS's allowed values for the categorization fields (ECS reference, "Categorization
/// fields").
const EVENT_KINDS: [&str; 8] = [
    "alert",
    "asset",
    "enrichment",
    "event",
    "metric",
    "state",
    "pipeline_error",
    "signal",
];
const EVENT_TYPES: [&str; 17] = [
    "access",
    "admin",
    "allowed",
    "change",
    "connection",
    "creation",
    "deletion",
    "denied",
    "end",
    "error",
    "group",
    "indicator",
    "info",
    "installation",
    "protocol",
    "start",
    "user",
];

/// The ECS type of each field this output writes, as ECS defines it.
#[derive(Clone, Copy, Debug)]
enum EcsType {
    Keyword,
    KeywordArray,
    Long,
    Date,
}

const ECS_FIELDS: [(&str, EcsType); 19] = [
    ("/@timestamp", EcsType::Date),
    ("/ecs/version", EcsType::Keyword),
    ("/event/kind", EcsType::Keyword),
    ("/event/category", EcsType::KeywordArray),
    ("/event/type", EcsType::KeywordArray),
    ("/event/action", EcsType::Keyword),
    ("/event/outcome", EcsType::Keyword),
    ("/event/sequence", EcsType::Long),
    ("/file/path", EcsType::Keyword),
    ("/file/name", EcsType::Keyword),
    ("/file/type", EcsType::Keyword),
    ("/process/pid", EcsType::Long),
    ("/process/thread/id", EcsType::Long),
    ("/process/entity_id", EcsType::Keyword),
    ("/process/executable", EcsType::Keyword),
    ("/process/name", EcsType::Keyword),
    ("/process/parent/pid", EcsType::Long),
    ("/user/id", EcsType::Keyword),
    ("/host/name", EcsType::Keyword),
];

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`: ISO 8601 with a timezone, the layout Filebeat reads
/// `@timestamp` in.
fn is_iso8601_utc_ms(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

#[track_caller]
fn check_type(line: &Value, pointer: &str, ty: EcsType) {
    let value = line
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing in {line}"));
    let ok = match ty {
        EcsType::Keyword => value.is_string(),
        EcsType::KeywordArray => value
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string)),
        EcsType::Long => value.is_i64() || value.is_u64(),
        EcsType::Date => value.as_str().is_some_and(is_iso8601_utc_ms),
    };
    assert!(ok, "{pointer} = {value} is not an ECS {ty:?}");
}

/// No key holds a dot: every field is a nested object, which the ndjson parser passes through
/// and Elasticsearch maps to the dotted ECS name.
fn assert_nested_only(value: &Value, at: &str) {
    if let Some(map) = value.as_object() {
        for (key, inner) in map {
            assert!(!key.contains('.'), "dotted key {at}/{key}");
            assert_nested_only(inner, &format!("{at}/{key}"));
        }
    }
}

#[test]
fn ecs_output_has_the_documented_fields_with_the_types_ecs_defines() {
    let dir = fresh_dir("ecs");
    let path = dir.join("vigil.ecs.ndjson");
    let file_path = units(FAKE_PATH);
    let renamed = units(r"\Device\HarddiskVolume1\Users\a\renamed.txt");
    let driver = FakeDriver::new();
    let key = 0x1_0000_0042;
    driver.push_process(ProcessEvent::Start, &notepad(key, 1234));
    driver.push_batch(&[
        EventRepr {
            kind: EventKind::Open,
            information: 2, // FILE_CREATED
            file_id: [0x5A; 16],
            ..event_with(0, key, 1234, &file_path)
        },
        EventRepr {
            kind: EventKind::Rename,
            target: Utf16Str::from_units(&renamed),
            ..event_with(1, key, 1234, &file_path)
        },
        EventRepr {
            kind: EventKind::Delete,
            status: 0xC000_0022_u32.cast_signed(),
            ..event_with(2, key, 1234, &renamed)
        },
    ]);
    let host = HostInfo {
        name: "vigil-test".into(),
        os_type: "windows",
    };
    let sink = JsonlSink::open(JsonlOptions::new(&path))
        .unwrap()
        .with_format(RecordFormat::Ecs, host);
    let mut service = Service::new(Policy::default(), sink, options());
    driver.stop_when_idle(&service.control());
    service
        .run(&mut driver.connector(), &ManualClock::new())
        .unwrap();
    drop(service);

    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&Value> = lines
        .iter()
        .filter(|l| l.pointer("/event/kind") == Some(&Value::from("event")))
        .collect();
    assert_eq!(events.len(), 3, "{text}");
    for line in &lines {
        assert_nested_only(line, "");
        check_type(line, "/@timestamp", EcsType::Date);
        let kind = line.pointer("/event/kind").and_then(Value::as_str).unwrap();
        assert!(EVENT_KINDS.contains(&kind), "event.kind {kind}");
    }
    for event in &events {
        for (pointer, ty) in ECS_FIELDS {
            check_type(event, pointer, ty);
        }
        for ty in event["event"]["type"].as_array().unwrap() {
            assert!(
                EVENT_TYPES.contains(&ty.as_str().unwrap()),
                "event.type {ty}"
            );
        }
        assert_eq!(event["event"]["category"], serde_json::json!(["file"]));
        assert_eq!(event["process"]["entity_id"], key.to_string());
        assert_eq!(event["process"]["executable"], NOTEPAD);
        assert_eq!(event["process"]["name"], "notepad.exe");
        assert_eq!(event["process"]["parent"]["pid"], 900);
        assert_eq!(event["user"]["id"], "S-1-5-21-1-2-3-1001");
        assert_eq!(event["host"]["os"]["type"], "windows");
        assert_eq!(event["vigil"]["process"]["session"], 1);
    }
    let (open, rename, delete) = (events[0], events[1], events[2]);
    assert_eq!(open["event"]["action"], "open");
    assert_eq!(open["event"]["type"], serde_json::json!(["creation"]));
    assert_eq!(open["event"]["sequence"], 0);
    assert_eq!(open["file"]["path"], FAKE_PATH);
    assert_eq!(open["file"]["inode"], "5a".repeat(16));
    assert_eq!(open["event"]["outcome"], "success");
    // A rename is about its new name; the original is kept under vigil.
    assert_eq!(rename["event"]["action"], "rename");
    assert_eq!(
        rename["file"]["path"],
        r"\Device\HarddiskVolume1\Users\a\renamed.txt"
    );
    assert_eq!(rename["file"]["name"], "renamed.txt");
    assert_eq!(rename["vigil"]["file"]["original_path"], FAKE_PATH);
    assert_eq!(delete["event"]["type"], serde_json::json!(["deletion"]));
    assert_eq!(delete["event"]["outcome"], "failure");
    assert_eq!(delete["vigil"]["status"], "0xc0000022");
    assert!(open.pointer("/file/inode").is_some() && delete.pointer("/file/inode").is_none());

    // A restarted service continues the numbering of an ECS file too.
    let point = last_event_position(&path).unwrap().unwrap();
    assert_eq!((point.epoch, point.seq), (1, 2));
}
