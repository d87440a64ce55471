//! `fltmc` in kernel-sim (`vigil_kernel_sim::fltmc` and `kernel-sim fltmc`) on the real
//! vigil.sys installed from its stamped INF: load, filters, instances, detach, attach by
//! instance name, unload, with Filter Manager's statuses for each refusal and the exit codes
//! `scripts/stress-fltmc.ps1` reads (0 = success).

mod common;

use vigil_kernel_sim::fltmc::{
    Fltmc, FltmcError, STATUS_FLT_FILTER_NOT_FOUND, STATUS_FLT_VOLUME_NOT_FOUND,
    STATUS_IMAGE_ALREADY_LOADED,
};
use vigil_kernel_sim::inf::{self, Inf};
use vigil_kernel_sim::{SimConfig, UnloadKind, VolumeKind, WindowsBuild, fixtures};
use vigil_sys::STATUS_OBJECT_NAME_NOT_FOUND;

/// `STATUS_FLT_INSTANCE_NAME_COLLISION`.
const STATUS_FLT_INSTANCE_NAME_COLLISION: i32 = 0xC01C_0012_u32.cast_signed();
/// `STATUS_FLT_INSTANCE_NOT_FOUND`.
const STATUS_FLT_INSTANCE_NOT_FOUND: i32 = 0xC01C_0015_u32.cast_signed();

fn stamped_inf() -> String {
    let beside = common::vigil_image().with_file_name("vigil.inf");
    std::fs::read_to_string(&beside).unwrap_or_else(|_| {
        let template = std::fs::read_to_string(xtask::workspace_root().join("driver.inx"))
            .expect("reading driver.inx");
        xtask::inf::stamp_inf(&template, &xtask::inf::InfStamp::for_crate_version("0.1.0"))
            .expect("stamping driver.inx")
    })
}

fn machine(text: &str, build: WindowsBuild) -> Fltmc {
    let mut config = SimConfig::default();
    config
        .io
        .volumes
        .push((VolumeKind::Ntfs, fixtures::NTFS.to_owned()));
    inf::install(&mut config, &Inf::parse(text).expect("parses"), build).expect("installs");
    Fltmc::new(config, &common::vigil_image())
}

fn status(result: Result<(), FltmcError>) -> Option<i32> {
    result.err().map(|e| e.status())
}

fn assert_clean(machine: Fltmc) {
    for report in machine.finish() {
        assert!(report.is_clean(), "{}", report.summary());
    }
}

#[test]
fn load_list_detach_attach_and_unload_with_filter_managers_statuses() {
    let mut machine = machine(&stamped_inf(), WindowsBuild::WIN10_2004);
    assert_eq!(
        status(machine.load("other")),
        Some(STATUS_OBJECT_NAME_NOT_FOUND),
        "no such service"
    );
    assert_eq!(
        status(machine.unload("vigil", UnloadKind::Optional)),
        Some(STATUS_FLT_FILTER_NOT_FOUND),
        "not loaded"
    );
    machine.load("vigil").expect("fltmc load vigil");
    assert_eq!(
        status(machine.load("VIGIL")),
        Some(STATUS_IMAGE_ALREADY_LOADED)
    );

    let filters = machine.filters();
    assert_eq!(filters.len(), 1);
    assert_eq!(
        (
            filters[0].name.as_str(),
            filters[0].instances,
            filters[0].altitude.as_str()
        ),
        ("vigil", 1, "385100")
    );
    let instances = machine.instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].volume, fixtures::NTFS);
    assert_eq!(instances[0].instance, "Vigil Instance");

    assert_eq!(
        status(machine.detach("vigil", r"\Device\NoSuchVolume")),
        Some(STATUS_FLT_VOLUME_NOT_FOUND)
    );
    machine
        .detach("vigil", fixtures::NTFS)
        .expect("fltmc detach vigil");
    assert!(machine.instances().is_empty());
    assert_eq!(
        status(machine.attach("vigil", fixtures::NTFS, Some("No Such Instance"), None)),
        Some(STATUS_FLT_INSTANCE_NOT_FOUND)
    );
    machine
        .attach("vigil", fixtures::NTFS, Some("vigil instance"), None)
        .expect("fltmc attach vigil -i \"Vigil Instance\"");
    assert_eq!(
        status(machine.attach("vigil", fixtures::NTFS, None, None)),
        Some(STATUS_FLT_INSTANCE_NAME_COLLISION)
    );
    assert_eq!(machine.instances().len(), 1);
    machine
        .detach("vigil", fixtures::NTFS)
        .expect("fltmc detach vigil");
    machine
        .attach("vigil", fixtures::NTFS, None, Some("385100"))
        .expect("fltmc attach vigil -a 385100");
    assert_eq!(machine.instances()[0].altitude, "385100");

    machine
        .unload("vigil", UnloadKind::Optional)
        .expect("fltmc unload vigil");
    assert!(machine.filters().is_empty());
    // Loaded again, then stopped as a service stop does (mandatory).
    machine.load("vigil").expect("fltmc load vigil again");
    machine
        .unload("vigil", UnloadKind::Mandatory)
        .expect("sc stop vigil");
    assert_clean(machine);
}

#[test]
fn a_failed_load_is_reported_with_its_status_and_leaves_nothing_loaded() {
    let twin = stamped_inf().replace(
        "Vigil.FilterManager.Downlevel, Vigil.Settings",
        "Vigil.FilterManager, Vigil.Settings",
    );
    let mut machine = machine(&twin, WindowsBuild::WIN11_22H2);
    assert_eq!(
        status(machine.load("vigil")),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    assert!(machine.filters().is_empty());
    assert_eq!(
        status(machine.unload("vigil", UnloadKind::Optional)),
        Some(STATUS_FLT_FILTER_NOT_FOUND)
    );
    assert_clean(machine);
}

#[test]
fn the_command_line_exits_zero_only_when_every_command_succeeds() {
    let inf = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fltmc-stamped.inf");
    std::fs::write(&inf, stamped_inf()).expect("writing the INF");
    let run = |commands: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
            .arg("fltmc")
            .arg("--image")
            .arg(common::vigil_image())
            .arg("--inf")
            .arg(&inf)
            .args(["--windows-build", "22621"])
            .args(commands)
            .output()
            .expect("running kernel-sim")
    };
    let output = run(&[
        "load",
        "vigil;",
        "instances;",
        "detach",
        "vigil",
        fixtures::NTFS,
        ";",
        "attach",
        "vigil",
        fixtures::NTFS,
        "-i",
        "Vigil Instance",
        ";",
        "unload",
        "vigil",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Vigil Instance"), "{stdout}");

    let output = run(&["unload", "vigil"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "unloading what is not loaded fails"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("STATUS_FLT_FILTER_NOT_FOUND"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
