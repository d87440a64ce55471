//! RULES.md rule 29: the service is known by an identity the driver checks when the port is
//! connected (the image configured as `ServiceImage`, run with an Administrators token), not by
//! being first; an ordinary user can neither pass for it nor lock it out. On the real vigil.sys
//! in kernel-sim, whose `ZwQueryInformationProcess` and `SeTokenIsAdmin` answer from
//! `SimConfig::processes`:
//!
//! * an administrator's other process connecting first is refused (`STATUS_ACCESS_DENIED`),
//!   its I/O stays judged, and the real service connects after it;
//! * under `FailClosed`, before the service connects, its own start-up I/O on a protected path
//!   is exempt by identity, while an ordinary user running the very same image is denied;
//! * without a configured identity any administrator's process may connect (as before).
//!
//! The twins `first-come-service` and `identity-image-only` reopen the two holes.

#![cfg(target_os = "linux")]

#[path = "common/driver.rs"]
mod driver;

use driver::{
    Answer, FILE_CREATE, FILE_DIRECTORY_FILE, NTFS, PORT, SERVICE_PID, STATUS_ACCESS_DENIED,
    Service, build, config, image, load, nt, requestor, volume,
};
use vigil_kernel_sim::{
    Account, ConnectError, ConnectOptions, Driver, ProcessConfig, RegistryValue, SimConfig,
    ViolationKind,
};
use vigil_protocol::Verdict;
use xtask::{Twin, Variant};

const SERVICE_IMAGE: &str = r"\Device\HarddiskVolume1\Program Files\Vigil\vigil.exe";
/// An administrator's process that is not the service.
const IMPOSTOR: u32 = 4444;
/// An ordinary user running the service's image as themselves.
const USER_WITH_SERVICE_IMAGE: u32 = 5555;

/// The machine: the identity configured, `FailClosed`, `\Secret` protected from load.
fn machine() -> SimConfig {
    let mut sim = config(&[
        ("ServiceImage", RegistryValue::Sz(SERVICE_IMAGE.to_owned())),
        ("FailClosed", RegistryValue::Dword(1)),
        (
            "ProtectedPrefixes",
            RegistryValue::MultiSz(vec![nt(NTFS, r"\Secret")]),
        ),
    ]);
    sim.processes = vec![
        ProcessConfig {
            pid: SERVICE_PID,
            // Spelled in another case: the comparison is case-insensitive, as paths are.
            image: SERVICE_IMAGE.to_uppercase(),
            admin: true,
            parent_pid: 4,
        },
        ProcessConfig {
            pid: IMPOSTOR,
            image: r"\Device\HarddiskVolume1\Tools\admin-tool.exe".to_owned(),
            admin: true,
            parent_pid: 4,
        },
        ProcessConfig {
            pid: USER_WITH_SERVICE_IMAGE,
            image: SERVICE_IMAGE.to_owned(),
            admin: false,
            parent_pid: 4,
        },
    ];
    sim
}

fn connect_as(driver: &Driver, pid: u32) -> Result<vigil_kernel_sim::PortConnection, ConnectError> {
    driver.connect(
        PORT,
        &ConnectOptions {
            process_id: u64::from(pid),
            context: Vec::new(),
            account: Account::Administrator,
        },
    )
}

fn mkdir_secret(driver: &Driver, pid: u32) -> Result<(), i32> {
    let io = driver.io(requestor(pid, 1));
    let dir = io.create(
        volume(driver, NTFS),
        r"\Secret",
        FILE_CREATE,
        FILE_DIRECTORY_FILE,
        0,
    )?;
    io.close(dir);
    Ok(())
}

#[test]
fn an_impostor_administrator_connecting_first_is_refused_and_the_service_connects() {
    let (_sim, driver) = load(machine(), &image());
    assert!(
        matches!(
            connect_as(&driver, IMPOSTOR),
            Err(ConnectError::Refused(STATUS_ACCESS_DENIED))
        ),
        "the impostor must be refused"
    );
    let service = Service::connect(&driver, |_| Answer::Reply(Verdict::Deny));
    // The impostor's I/O is judged: the service denies it.
    let io = driver.io(requestor(IMPOSTOR, 2));
    let v = volume(&driver, NTFS);
    assert_eq!(
        io.create(v, r"\Secret", FILE_CREATE, FILE_DIRECTORY_FILE, 0)
            .err(),
        Some(STATUS_ACCESS_DENIED)
    );
    assert!(!driver.file_exists(v, r"\Secret"));
    assert_eq!(service.requests().len(), 1, "{:?}", service.requests());
    assert_eq!(service.requests()[0].process_id, u64::from(IMPOSTOR));
    // The service's own I/O is exempt (no request).
    assert_eq!(mkdir_secret(&driver, SERVICE_PID), Ok(()));
    assert_eq!(service.requests().len(), 1);
    drop(service);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn fail_closed_never_locks_the_service_out_before_it_connects_but_an_ordinary_user_with_its_image_is_denied()
 {
    let (_sim, driver) = load(machine(), &image());
    // Nobody connected, FailClosed: the default denies...
    assert_eq!(
        mkdir_secret(&driver, USER_WITH_SERVICE_IMAGE),
        Err(STATUS_ACCESS_DENIED)
    );
    // ...but not the service's start-up I/O.
    assert_eq!(mkdir_secret(&driver, SERVICE_PID), Ok(()));
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn without_a_configured_identity_any_administrator_may_connect() {
    let mut sim = machine();
    sim.registry.retain(|(name, _)| name != "ServiceImage");
    let (_sim, driver) = load(sim, &image());
    let impostor = connect_as(&driver, IMPOSTOR).expect("no identity to check");
    drop(impostor);
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

/// The broken twins: whoever connects first is the service; the image alone is the identity.
#[test]
fn the_twins_reopen_the_holes_and_are_caught() {
    let (_sim, driver) = load(machine(), &build(&Variant::twin(Twin::FirstComeService)));
    assert!(
        connect_as(&driver, IMPOSTOR).is_ok(),
        "first-come-service: the impostor becomes the service"
    );
    drop(driver.finish());

    let (_sim, driver) = load(machine(), &build(&Variant::twin(Twin::IdentityImageOnly)));
    assert_eq!(
        mkdir_secret(&driver, USER_WITH_SERVICE_IMAGE),
        Ok(()),
        "identity-image-only: an ordinary user running the image passes for the service"
    );
    drop(driver.finish());
}

/// kernel-sim counts token references: the `token-leak` twin's identity check keeps one, and
/// the run reports it when the driver is gone; production's checks leave none.
#[test]
fn a_token_reference_kept_is_reported_at_unload() {
    for (image, leaks) in [
        (image(), false),
        (build(&Variant::twin(Twin::TokenLeak)), true),
    ] {
        let (_sim, driver) = load(machine(), &image);
        // Nobody connected, FailClosed: the identity is checked for the service's start-up I/O.
        assert_eq!(mkdir_secret(&driver, SERVICE_PID), Ok(()));
        let report = driver.finish();
        let leaked = report.violations.iter().any(|v| {
            v.kind == ViolationKind::ReferenceLeak && v.rule.contains("PsReferencePrimaryToken")
        });
        assert_eq!(leaked, leaks, "{}", report.summary());
    }
}
