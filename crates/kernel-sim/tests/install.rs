//! RULES.md rule 30: the INF installs on every Windows build Vigil supports, and kernel-sim
//! installs from it for the build it emulates. The stamped `vigil.inf` (beside the image, as
//! `cargo xtask build` writes it) is installed into kernel-sim's registry on 10.0.19041,
//! 10.0.22621 and 10.0.26100 and the driver loads from it; its broken twin, which writes the
//! instance configuration only under `Parameters\Instances` (as `driver.inx` did before the
//! decorated sections), fails `FltRegisterFilter` with `STATUS_OBJECT_NAME_NOT_FOUND` on the
//! two older builds and loads on the newer one. The INF's settings reach DriverEntry through
//! that registry, `FLG_ADDREG_NOCLOBBER` keeps what an administrator changed, and an instance
//! whose `Flags` suppress automatic attachment attaches only when asked.

mod common;

use std::path::PathBuf;

use vigil_kernel_sim::inf::{self, Inf};
use vigil_kernel_sim::{Driver, RegistryValue, Sim, SimConfig, VolumeKind, WindowsBuild};
use vigil_sys::STATUS_OBJECT_NAME_NOT_FOUND;

/// The builds the issue names: Windows 10 2004, Windows 11 22H2, Windows 11 24H2.
const BUILDS: [WindowsBuild; 3] = [
    WindowsBuild::WIN10_2004,
    WindowsBuild::WIN11_22H2,
    WindowsBuild::WIN11_24H2,
];
const NTFS: &str = r"\Device\HarddiskVolume1";
const NETWORK: &str = r"\Device\Mup";
/// `STATUS_FLT_INSTANCE_NAME_COLLISION`.
const STATUS_FLT_INSTANCE_NAME_COLLISION: i32 = 0xC01C_0012_u32.cast_signed();

/// The stamped INF: `vigil.inf` beside the image when the build wrote one (the production
/// build does), otherwise `driver.inx` stamped here the same way (a foreign image's run).
fn stamped_inf_text() -> String {
    let beside = common::vigil_image().with_file_name("vigil.inf");
    if let Ok(text) = std::fs::read_to_string(&beside) {
        return text;
    }
    let template = std::fs::read_to_string(xtask::workspace_root().join("driver.inx"))
        .expect("reading driver.inx");
    xtask::inf::stamp_inf(&template, &xtask::inf::InfStamp::for_crate_version("0.1.0"))
        .expect("stamping driver.inx")
}

/// The broken twin: the downlevel service writes the 24H2 Filter Manager section, so every
/// build finds the instances only under `Parameters\Instances`.
fn parameters_only_twin(stamped: &str) -> String {
    const DOWNLEVEL: &str = "Vigil.FilterManager.Downlevel, Vigil.Settings";
    assert!(
        stamped.contains(DOWNLEVEL),
        "the stamped INF's downlevel service adds {DOWNLEVEL}"
    );
    stamped.replace(DOWNLEVEL, "Vigil.FilterManager, Vigil.Settings")
}

/// Writes `text` as a file for the command-line test and returns its path.
fn write_fixture(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("writing the INF fixture");
    path
}

/// A configuration with `text` installed on `build` (and an NTFS and a network volume).
fn installed(text: &str, build: WindowsBuild) -> SimConfig {
    let mut config = SimConfig::default();
    config.io.volumes.push((VolumeKind::Ntfs, NTFS.to_owned()));
    config
        .io
        .volumes
        .push((VolumeKind::Network, NETWORK.to_owned()));
    let inf = Inf::parse(text).expect("the INF parses");
    inf::install(&mut config, &inf, build).expect("the INF installs");
    config
}

fn load(config: SimConfig) -> (Sim, Driver) {
    let sim = Sim::new(config);
    let driver = sim.load(common::vigil_image()).expect("vigil.sys maps");
    (sim, driver)
}

fn volume(driver: &Driver, name: &str) -> vigil_kernel_sim::VolumeId {
    driver.volume(name).expect("the volume is mounted")
}

fn assert_clean(driver: Driver) {
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
}

#[test]
fn the_stamped_inf_installs_and_loads_on_every_build() {
    let text = stamped_inf_text();
    for build in BUILDS {
        let config = installed(&text, build);
        let registry = config.machine_registry.as_ref().expect("installed");
        let service = config.service_key_path();
        let instances = match build.instances_parent() {
            "" => format!(r"{service}\Instances"),
            parent => format!(r"{service}\{parent}\Instances"),
        };
        assert_eq!(
            registry.value(&instances, "DefaultInstance"),
            Some(&RegistryValue::Sz("Vigil Instance".into())),
            "{build}: the instances where this build's Filter Manager reads them"
        );
        let (_sim, driver) = load(config);
        assert_eq!(
            driver.entry_status(),
            Some(0),
            "{build}: {:#?}",
            driver.violations()
        );
        assert!(driver.is_attached(volume(&driver, NTFS)), "{build}");
        assert_clean(driver);
    }
}

#[test]
fn the_parameters_only_twin_fails_before_25952_and_loads_from_it_on() {
    let twin = parameters_only_twin(&stamped_inf_text());
    for build in BUILDS {
        let (_sim, driver) = load(installed(&twin, build));
        if build < WindowsBuild::FLTMGR_READS_PARAMETERS {
            assert_eq!(
                driver.entry_status(),
                Some(STATUS_OBJECT_NAME_NOT_FOUND),
                "{build}: FltRegisterFilter finds no Services\\vigil\\Instances"
            );
            assert!(!driver.is_loaded(), "{build}");
        } else {
            assert_eq!(driver.entry_status(), Some(0), "{build}");
            assert!(driver.is_attached(volume(&driver, NTFS)), "{build}");
        }
        assert_clean(driver);
    }
}

#[test]
fn a_value_the_inf_sets_reaches_the_drivers_settings() {
    const STOCK: &str = r#"HKR,"Parameters","AttachNetworkVolumes",0x00010003,0"#;
    let text = stamped_inf_text();
    assert!(
        text.contains(STOCK),
        "the INF sets AttachNetworkVolumes = 0"
    );
    for build in BUILDS {
        let (_sim, driver) = load(installed(&text, build));
        assert!(
            !driver.is_attached(volume(&driver, NETWORK)),
            "{build}: AttachNetworkVolumes = 0 leaves the network volume alone"
        );
        assert_clean(driver);

        let changed = text.replace(
            STOCK,
            r#"HKR,"Parameters","AttachNetworkVolumes",0x00010003,1"#,
        );
        let (_sim, driver) = load(installed(&changed, build));
        assert!(
            driver.is_attached(volume(&driver, NETWORK)),
            "{build}: AttachNetworkVolumes = 1 from the INF attaches the network volume"
        );
        assert_clean(driver);
    }
}

#[test]
fn noclobber_keeps_a_value_an_administrator_changed_across_a_reinstall() {
    let text = stamped_inf_text();
    let inf = Inf::parse(&text).expect("the INF parses");
    for build in BUILDS {
        let mut config = installed(&text, build);
        let parameters = format!(r"{}\Parameters", config.service_key_path());
        let registry = config.machine_registry.as_mut().expect("installed");
        assert_eq!(
            registry.value(&parameters, "AttachNetworkVolumes"),
            Some(&RegistryValue::Dword(0))
        );
        // The administrator's change, then the same INF installed again (an update).
        registry.set_value(&parameters, "AttachNetworkVolumes", RegistryValue::Dword(1));
        inf::install(&mut config, &inf, build).expect("the INF installs again");
        let registry = config.machine_registry.as_ref().expect("installed");
        assert_eq!(
            registry.value(&parameters, "AttachNetworkVolumes"),
            Some(&RegistryValue::Dword(1)),
            "{build}: FLG_ADDREG_NOCLOBBER keeps the administrator's value"
        );
        let (_sim, driver) = load(config);
        assert!(
            driver.is_attached(volume(&driver, NETWORK)),
            "{build}: the driver runs with the administrator's value"
        );
        assert_clean(driver);
    }
}

#[test]
fn an_instance_that_suppresses_automatic_attachment_attaches_only_when_asked() {
    const AUTOMATIC: &str = "Instance1.Flags    = 0x0";
    let text = stamped_inf_text();
    assert!(
        text.contains(AUTOMATIC),
        "the INF's instance attaches automatically"
    );
    let manual = text.replace(AUTOMATIC, "Instance1.Flags    = 0x1");
    for build in BUILDS {
        let (_sim, driver) = load(installed(&manual, build));
        assert_eq!(driver.entry_status(), Some(0), "{build}");
        let ntfs = volume(&driver, NTFS);
        assert!(
            !driver.is_attached(ntfs),
            "{build}: Flags 0x1 suppresses automatic attachment at FltStartFiltering"
        );
        let later = driver.mount(VolumeKind::Ntfs, r"\Device\HarddiskVolume2");
        assert!(
            !driver.is_attached(later),
            "{build}: nor when a volume mounts later"
        );
        driver
            .attach(ntfs, Some("Vigil Instance"))
            .expect("a manual attach by instance name");
        assert!(driver.is_attached(ntfs), "{build}");
        assert_eq!(
            driver.attach(ntfs, None),
            Err(STATUS_FLT_INSTANCE_NAME_COLLISION),
            "{build}: the default instance is on the volume already"
        );
        assert_clean(driver);
    }
}

#[test]
fn an_image_loaded_without_an_inf_attaches_as_before() {
    let mut config = SimConfig::default();
    config.io.volumes.push((VolumeKind::Ntfs, NTFS.to_owned()));
    let (_sim, driver) = load(config);
    assert_eq!(driver.entry_status(), Some(0));
    assert!(driver.is_attached(volume(&driver, NTFS)));
    assert_clean(driver);
}

#[test]
fn load_unload_with_inf_and_windows_build_on_the_command_line() {
    let image = common::vigil_image();
    let stamped = write_fixture("install-stamped.inf", &stamped_inf_text());
    let twin = write_fixture(
        "install-parameters-only.inf",
        &parameters_only_twin(&stamped_inf_text()),
    );
    let run = |inf: &PathBuf, build: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kernel-sim"))
            .arg("load-unload")
            .arg("--image")
            .arg(&image)
            .arg("--inf")
            .arg(inf)
            .args(["--windows-build", build, "--cycles", "2"])
            .output()
            .expect("running kernel-sim")
    };
    for build in ["19041", "22621", "26100"] {
        let output = run(&stamped, build);
        assert!(
            output.status.success(),
            "{build}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run(&twin, "19041");
    assert!(!output.status.success(), "the twin fails to load on 19041");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("STATUS_OBJECT_NAME_NOT_FOUND"),
        "{printed}"
    );
    assert!(
        run(&twin, "26100").status.success(),
        "the twin loads on 26100"
    );
}
