//! The demo's machine installs vigil.sys from the stamped `vigil.inf` beside it, as a user
//! does on a test VM (RULES.md rule 30): on each supported build the driver loads from that
//! install, attaches to both volumes, reloads and unloads cleanly; the broken twin with the
//! instances only under `Parameters\Instances` does not load on 10.0.19041.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use vigil_demo::machine::Machine;
use vigil_kernel_sim::WindowsBuild;

fn vigil_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            xtask::build_driver(&xtask::Variant::production()).expect("building vigil.sys")
        })
        .clone()
}

fn stamped_inf() -> PathBuf {
    let inf = vigil_image().with_file_name("vigil.inf");
    assert!(inf.exists(), "the build writes vigil.inf beside vigil.sys");
    inf
}

fn installed(inf: &Path, build: WindowsBuild) -> Machine {
    Machine::installed(vigil_image(), inf, build).expect("vigil.inf installs")
}

#[test]
fn the_demo_machine_loads_vigil_installed_from_its_inf_on_every_build() {
    let inf = stamped_inf();
    for build in [
        WindowsBuild::WIN10_2004,
        WindowsBuild::WIN11_22H2,
        WindowsBuild::WIN11_24H2,
    ] {
        let mut machine = installed(&inf, build);
        machine.load().expect("loads from the install");
        machine.unload(None).expect("unloads");
        machine.load().expect("loads again");
        machine.unload(None).expect("unloads again");
        for instance in machine.finish() {
            assert!(
                instance.report.is_clean(),
                "{build}: {}",
                instance.report.summary()
            );
        }
    }
}

#[test]
fn the_parameters_only_twin_does_not_load_on_19041() {
    let text = std::fs::read_to_string(stamped_inf()).expect("reading vigil.inf");
    let twin = text.replace(
        "Vigil.FilterManager.Downlevel, Vigil.Settings",
        "Vigil.FilterManager, Vigil.Settings",
    );
    assert_ne!(
        twin, text,
        "the downlevel service names its Filter Manager section"
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-parameters-only.inf");
    std::fs::write(&path, twin).expect("writing the twin");
    let mut machine = installed(&path, WindowsBuild::WIN10_2004);
    let error = machine
        .load()
        .expect_err("FltRegisterFilter finds no instances");
    assert!(error.contains("STATUS_OBJECT_NAME_NOT_FOUND"), "{error}");
}
