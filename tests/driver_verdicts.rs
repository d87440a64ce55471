//! Verdicts from the real vigil.sys in kernel-sim: protected prefixes set by the service, a
//! service that allows, denies, never answers (fail-open and fail-closed defaults), vanishes
//! mid-request, or is absent; the service's own I/O is exempt; a rename or link INTO a
//! protected directory asks too; a denied operation fails with `STATUS_ACCESS_DENIED` and leaves
//! the file system unchanged.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use driver::{
    Answer, DELETE, FILE_CREATE, GENERIC_WRITE, NTFS, SERVICE_PID, STATUS_ACCESS_DENIED,
    STATUS_SUCCESS, Service, assert_clean, config, image, load, nt, registry_multi, requestor,
    volume,
};
use vigil_kernel_sim::{Driver, RegistryValue};
use vigil_protocol::{Config, EventKind, PrefixList, Stats, Utf16Str, Verdict, VerdictOperation};

const PID: u32 = 3131;
const TID: u32 = 9;

fn units(text: &str) -> Vec<u16> {
    text.encode_utf16().collect()
}

/// Protects `\Device\HarddiskVolume1\Protected` with `default` and a `timeout_ms` verdict wait.
fn protect(service: &Service, default: Verdict, timeout_ms: u32) {
    let prefix = units(&nt(NTFS, r"\Protected"));
    let list = [Utf16Str::from_units(&prefix)];
    let config = Config {
        verdict_timeout_ms: timeout_ms,
        default_verdict: default,
        protected_prefixes: PrefixList::from_slice(&list).expect("one prefix"),
        ..Config::DEFAULT
    };
    assert_eq!(service.set_config(&config), STATUS_SUCCESS);
}

/// Creates the `\Protected` and `\Open` directories as the connected service (exempt).
fn directories(driver: &Driver) {
    let io = driver.io(requestor(SERVICE_PID, 1));
    for dir in [r"\Protected", r"\Open"] {
        let d = io
            .create(
                volume(driver, NTFS),
                dir,
                FILE_CREATE,
                driver::FILE_DIRECTORY_FILE,
                0,
            )
            .expect("mkdir");
        io.close(d);
    }
}

fn verdict_counters(stats: &Stats) -> [u64; 5] {
    [
        stats.verdicts_allowed,
        stats.verdicts_denied,
        stats.verdicts_defaulted_open,
        stats.verdicts_defaulted_closed,
        stats.verdict_timeouts,
    ]
}

#[test]
fn allowed_operations_proceed_and_unprotected_paths_never_ask() {
    let (_sim, driver) = load(config(&[]), &image());
    let service = Service::connect(&driver, |_| Answer::Reply(Verdict::Allow));
    directories(&driver);
    protect(&service, Verdict::Deny, 5_000);
    let io = driver.io(requestor(PID, TID));
    let ntfs = volume(&driver, NTFS);
    let f = io
        .create(ntfs, r"\Open\free.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("unprotected");
    io.close(f);
    // Same prefix text, not at a component boundary: not protected.
    let f = io
        .create(ntfs, r"\ProtectedNot.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("unprotected");
    io.close(f);
    assert!(service.requests().is_empty(), "{:?}", service.requests());

    let f = io
        .create(ntfs, r"\protected\a.txt", FILE_CREATE, 0, GENERIC_WRITE)
        .expect("allowed");
    io.close(f);
    let requests = service.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].operation, VerdictOperation::Create);
    assert_eq!(requests[0].process_id, u64::from(PID));
    assert!(
        requests[0]
            .path
            .eq_ignore_ascii_case(&nt(NTFS, r"\Protected\a.txt")),
        "{requests:?}"
    );
    assert!(driver.file_exists(ntfs, r"\Protected\a.txt"));
    let stats = service.stats();
    assert_eq!(verdict_counters(&stats), [1, 0, 0, 0, 0], "{stats:?}");
    drop(service);
    assert_clean(driver);
}

#[test]
fn denied_operations_fail_with_access_denied_and_change_nothing() {
    let (_sim, driver) = load(config(&[]), &image());
    // Creates allowed; everything else (delete, rename, link) denied.
    let service = Service::connect(&driver, |request| {
        Answer::Reply(if request.operation == VerdictOperation::Create {
            Verdict::Allow
        } else {
            Verdict::Deny
        })
    });
    directories(&driver);
    protect(&service, Verdict::Allow, 5_000);
    let io = driver.io(requestor(PID, TID));
    let ntfs = volume(&driver, NTFS);

    // Delete inside the protected directory: denied, the file survives cleanup.
    let f = io
        .create(
            ntfs,
            r"\Protected\keep.txt",
            FILE_CREATE,
            0,
            GENERIC_WRITE | DELETE,
        )
        .expect("allowed create");
    assert_eq!(io.set_disposition(&f, true), STATUS_ACCESS_DENIED);
    io.cleanup(&f);
    io.close(f);
    assert!(driver.file_exists(ntfs, r"\Protected\keep.txt"));

    // Rename and link INTO the protected directory: the target asks, denied, nothing moves.
    let g = io
        .create(ntfs, r"\Open\x.txt", FILE_CREATE, 0, GENERIC_WRITE | DELETE)
        .expect("unprotected create");
    assert_eq!(
        io.rename(&g, r"\Protected\x.txt", false),
        STATUS_ACCESS_DENIED
    );
    assert_eq!(
        io.link(&g, r"\Protected\y.txt", false),
        STATUS_ACCESS_DENIED
    );
    io.cleanup(&g);
    io.close(g);
    assert!(driver.file_exists(ntfs, r"\Open\x.txt"));
    assert!(!driver.file_exists(ntfs, r"\Protected\x.txt"));
    assert!(!driver.file_exists(ntfs, r"\Protected\y.txt"));

    let requests = service.requests();
    let ops: Vec<VerdictOperation> = requests.iter().map(|r| r.operation).collect();
    assert_eq!(
        ops,
        [
            VerdictOperation::Create,
            VerdictOperation::Delete,
            VerdictOperation::Rename,
            VerdictOperation::Link
        ],
        "{requests:#?}"
    );
    assert_eq!(requests[2].path, nt(NTFS, r"\Open\x.txt"));
    assert_eq!(requests[2].target, nt(NTFS, r"\Protected\x.txt"));
    assert_eq!(requests[3].target, nt(NTFS, r"\Protected\y.txt"));

    // Denied operations report no event; the allowed create does.
    let stats = service.quiesce();
    assert_eq!(verdict_counters(&stats), [1, 3, 0, 0, 0], "{stats:?}");
    let events = service.events();
    assert!(
        events.iter().all(|e| !matches!(
            e.kind,
            EventKind::Delete | EventKind::Rename | EventKind::HardLink
        )),
        "{events:#?}"
    );
    drop(service);
    assert_clean(driver);
}

#[test]
fn a_denied_create_fails_and_creates_nothing() {
    let (_sim, driver) = load(config(&[]), &image());
    let service = Service::connect(&driver, |_| Answer::Reply(Verdict::Deny));
    directories(&driver);
    protect(&service, Verdict::Allow, 5_000);
    let io = driver.io(requestor(PID, TID));
    let ntfs = volume(&driver, NTFS);
    assert_eq!(
        io.create(ntfs, r"\Protected\no.txt", FILE_CREATE, 0, GENERIC_WRITE)
            .err(),
        Some(STATUS_ACCESS_DENIED)
    );
    assert!(!driver.file_exists(ntfs, r"\Protected\no.txt"));
    let stats = service.quiesce();
    assert_eq!(verdict_counters(&stats), [0, 1, 0, 0, 0], "{stats:?}");
    assert!(
        service.events().iter().all(|e| !e.path.ends_with("no.txt")),
        "a denied open is not an open"
    );
    drop(service);
    assert_clean(driver);
}

#[test]
fn no_answer_times_out_to_the_configured_default() {
    for (default, counters) in [
        (Verdict::Allow, [0, 0, 1, 0, 1]),
        (Verdict::Deny, [0, 0, 0, 1, 1]),
    ] {
        let (_sim, driver) = load(config(&[]), &image());
        let service = Service::connect(&driver, |_| Answer::Ignore);
        directories(&driver);
        protect(&service, default, 50);
        let io = driver.io(requestor(PID, TID));
        let ntfs = volume(&driver, NTFS);
        let result = io.create(ntfs, r"\Protected\t.txt", FILE_CREATE, 0, GENERIC_WRITE);
        match default {
            Verdict::Allow => io.close(result.expect("fail-open allows")),
            Verdict::Deny => assert_eq!(result.err(), Some(STATUS_ACCESS_DENIED)),
        }
        assert_eq!(
            driver.file_exists(ntfs, r"\Protected\t.txt"),
            default == Verdict::Allow
        );
        assert_eq!(service.requests().len(), 1, "the request was sent");
        let stats = service.stats();
        assert_eq!(verdict_counters(&stats), counters, "{default:?}: {stats:?}");
        drop(service);
        assert_clean(driver);
    }
}

#[test]
fn the_service_vanishing_mid_request_applies_the_default() {
    for (default, counters) in [
        (Verdict::Allow, [0, 0, 1, 0, 0]),
        (Verdict::Deny, [0, 0, 0, 1, 0]),
    ] {
        let (_sim, driver) = load(config(&[]), &image());
        let service = Service::connect(&driver, |_| Answer::Vanish);
        directories(&driver);
        // A long timeout: the default must come from the disconnect, not from a timeout.
        protect(&service, default, 10_000);
        let io = driver.io(requestor(PID, TID));
        let ntfs = volume(&driver, NTFS);
        let result = io.create(ntfs, r"\Protected\v.txt", FILE_CREATE, 0, GENERIC_WRITE);
        match default {
            Verdict::Allow => io.close(result.expect("fail-open allows")),
            Verdict::Deny => assert_eq!(result.err(), Some(STATUS_ACCESS_DENIED)),
        }
        assert!(!service.port.is_connected(), "the service closed its port");
        assert_eq!(service.requests().len(), 1);
        drop(service);
        // A new service connection reads the counters.
        let again = Service::allowing(&driver);
        let stats = again.stats();
        assert_eq!(verdict_counters(&stats), counters, "{default:?}: {stats:?}");
        assert_eq!(stats.disconnects, 1, "{stats:?}");
        drop(again);
        assert_clean(driver);
    }
}

#[test]
fn without_a_service_the_default_applies_at_once() {
    let protected = registry_multi(&[&nt(NTFS, r"\Protected")]);
    for (fail_closed, allowed) in [(0, true), (1, false)] {
        let (_sim, driver) = load(
            config(&[
                ("ProtectedPrefixes", protected.clone()),
                ("FailClosed", RegistryValue::Dword(fail_closed)),
            ]),
            &image(),
        );
        let io = driver.io(requestor(PID, TID));
        let ntfs = volume(&driver, NTFS);
        // The prefix itself is protected (here a file).
        let result = io.create(ntfs, r"\Protected", FILE_CREATE, 0, GENERIC_WRITE);
        assert_eq!(
            result.is_ok(),
            allowed,
            "FailClosed={fail_closed}: {result:?}"
        );
        if let Ok(f) = result {
            io.close(f);
        }
        let service = Service::allowing(&driver);
        let stats = service.stats();
        let expected = if allowed {
            [0, 0, 1, 0, 0]
        } else {
            [0, 0, 0, 1, 0]
        };
        assert_eq!(verdict_counters(&stats), expected, "{stats:?}");
        drop(service);
        assert_clean(driver);
    }
}

#[test]
fn the_services_own_process_is_never_asked() {
    let (_sim, driver) = load(config(&[]), &image());
    let service = Service::connect(&driver, |_| Answer::Reply(Verdict::Deny));
    directories(&driver);
    protect(&service, Verdict::Deny, 5_000);
    let own = driver.io(requestor(SERVICE_PID, 2));
    let ntfs = volume(&driver, NTFS);
    let f = own
        .create(
            ntfs,
            r"\Protected\policy.txt",
            FILE_CREATE,
            0,
            GENERIC_WRITE | DELETE,
        )
        .expect("the service's own create is not asked about");
    assert_eq!(own.write(&f, 0, b"rules"), STATUS_SUCCESS);
    assert_eq!(own.rename(&f, "policy2.txt", false), STATUS_SUCCESS);
    assert_eq!(own.set_disposition(&f, true), STATUS_SUCCESS);
    own.cleanup(&f);
    own.close(f);
    assert!(service.requests().is_empty(), "{:?}", service.requests());
    assert_eq!(verdict_counters(&service.stats()), [0; 5]);
    drop(service);
    assert_clean(driver);
}

/// A denied create, run on `image`; returns the report.
fn one_denied_create(image: &std::path::Path) -> vigil_kernel_sim::Report {
    let (_sim, driver) = load(config(&[]), image);
    let service = Service::connect(&driver, |_| Answer::Reply(Verdict::Deny));
    directories(&driver);
    protect(&service, Verdict::Allow, 5_000);
    let io = driver.io(requestor(PID, TID));
    let result = io.create(
        volume(&driver, NTFS),
        r"\Protected\stack.txt",
        FILE_CREATE,
        0,
        GENERIC_WRITE,
    );
    assert_eq!(result.err(), Some(STATUS_ACCESS_DENIED));
    drop(service);
    driver.finish()
}

/// The reply is received into the request's pool slot (defect 5 of issue 13): `FltSendMessage`
/// waits in user mode, when the kernel stack can be paged out. The production image passes
/// kernel-sim's reply-buffer check; `verdict-reply-on-stack` (the old stack buffer) fails it on
/// every verdict.
#[test]
fn the_verdict_reply_is_received_into_pool_not_onto_the_stack() {
    let report = one_denied_create(&image());
    assert!(report.is_clean(), "{}", report.summary());
    let twin = driver::build(&xtask::Variant::twin(xtask::Twin::VerdictReplyOnStack));
    let report = one_denied_create(&twin);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.kind == vigil_kernel_sim::ViolationKind::Parameter
                && v.message.contains("ReplyBuffer")
                && v.message.contains("kernel stack")),
        "twin-verdict-reply-on-stack not caught: {}",
        report.summary()
    );
}

/// Capacity (issue 14): 64 protected operations at once, more than the configured verdict
/// slots (8 here), with a healthy service that takes a moment per answer. Each waits for a slot
/// within the verdict timeout; none gets the default, all get the service's answer. (The old
/// driver gave the ninth concurrent operation the default at once.)
#[test]
fn sixty_four_concurrent_protected_operations_all_get_the_services_answer() {
    const OPERATIONS: u32 = 64;
    let (_sim, driver) = load(
        config(&[("VerdictSlots", RegistryValue::Dword(8))]),
        &image(),
    );
    let service = Service::connect(&driver, |_| {
        std::thread::sleep(std::time::Duration::from_millis(5));
        Answer::Reply(Verdict::Allow)
    });
    directories(&driver);
    protect(&service, Verdict::Deny, 10_000);
    let ntfs = volume(&driver, NTFS);
    let start = std::sync::Barrier::new(OPERATIONS as usize);
    std::thread::scope(|s| {
        for i in 0..OPERATIONS {
            let io = driver.io(requestor(PID + i, TID + i));
            let start = &start;
            s.spawn(move || {
                start.wait();
                let file = io
                    .create(
                        ntfs,
                        &format!(r"\Protected\parallel-{i}.txt"),
                        FILE_CREATE,
                        0,
                        GENERIC_WRITE,
                    )
                    .expect("allowed by the service");
                io.close(file);
            });
        }
    });
    let stats = service.stats();
    assert_eq!(
        verdict_counters(&stats),
        [u64::from(OPERATIONS), 0, 0, 0, 0],
        "{stats:?}"
    );
    assert_eq!(service.requests().len(), OPERATIONS as usize);
    drop(service);
    assert_clean(driver);
}
