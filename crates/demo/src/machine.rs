//! The simulated machine of `vigil-demo`, the end-to-end tests and the end-to-end bench: the
//! real `vigil.sys` in kernel-sim, loaded and reloaded, with its two synthetic volumes
//! ([`Machine`]). Linux only; user mode (host threads).
//!
//! A driver instance owns its volumes in kernel-sim (they belong to the emulated FltMgr of
//! that load), so [`Machine::load`] mounts them again after each load: files made before an
//! unload are gone after it, which the workload's second phase allows for.

use std::path::{Path, PathBuf};

use vigil_kernel_sim::fixtures::{FAT, NTFS};
use vigil_kernel_sim::inf::{self, Inf};
use vigil_kernel_sim::{
    Driver, Report, Sim, SimConfig, UnloadKind, VolumeId, VolumeKind, WindowsBuild, status_name,
};
use vigil_protocol::Stats;

/// One finished driver instance: its counters just before the unload and kernel-sim's report.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    /// `GetStats` before the unload (`None` when it could not be asked).
    pub stats: Option<Stats>,
    /// Violations, pool statistics, synthetic I/O counters.
    pub report: Report,
}

/// kernel-sim with the real `vigil.sys`, loaded and reloaded, and its two volumes.
pub struct Machine {
    sim: Sim,
    image: PathBuf,
    driver: Option<Driver>,
    finished: Vec<InstanceReport>,
}

/// The volumes of the current driver instance.
#[derive(Debug, Clone, Copy)]
pub struct Volumes {
    /// `\Device\HarddiskVolume1`, NTFS (hard links).
    pub ntfs: VolumeId,
    /// `\Device\HarddiskVolume2`, FAT.
    pub fat: VolumeId,
}

impl Machine {
    /// A machine that will load `image`; nothing is loaded yet.
    pub fn new(image: impl Into<PathBuf>) -> Self {
        Self::with_config(image, SimConfig::default())
    }

    /// As [`new`](Self::new), with a kernel-sim configuration.
    pub fn with_config(image: impl Into<PathBuf>, config: SimConfig) -> Self {
        Self {
            sim: Sim::new(config),
            image: image.into(),
            driver: None,
            finished: Vec::new(),
        }
    }

    /// A machine on which `inf` (the stamped `vigil.inf`) is installed for `build` first, as
    /// `pnputil /add-driver vigil.inf /install` does: the service, Filter Manager's instances
    /// where that build reads them, and the settings DriverEntry reads (RULES.md rule 30).
    ///
    /// # Errors
    ///
    /// The INF cannot be read, parsed or installed on `build`.
    pub fn installed(
        image: impl Into<PathBuf>,
        inf: &Path,
        build: WindowsBuild,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(inf).map_err(|e| format!("{}: {e}", inf.display()))?;
        let parsed = Inf::parse(&text).map_err(|e| format!("{}: {e}", inf.display()))?;
        let mut config = SimConfig::default();
        inf::install(&mut config, &parsed, build)
            .map_err(|e| format!("{} on {build}: {e}", inf.display()))?;
        Ok(Self::with_config(image, config))
    }

    /// The simulator (for connecting clients).
    pub const fn sim(&self) -> &Sim {
        &self.sim
    }

    /// `fltmc load vigil`, then the volumes mounted and attached.
    ///
    /// # Errors
    ///
    /// The loader's refusal, DriverEntry's failure, or an instance not attached.
    pub fn load(&mut self) -> Result<Volumes, String> {
        let driver = self
            .sim
            .load(&self.image)
            .map_err(|e| format!("{}: {e}", self.image.display()))?;
        if let Some(status) = driver.entry_status().filter(|s| *s != 0) {
            let report = driver.finish();
            return Err(format!(
                "DriverEntry failed with {}: {}",
                status_name(status),
                report.summary()
            ));
        }
        let volumes = Volumes {
            ntfs: driver.mount(VolumeKind::Ntfs, NTFS),
            fat: driver.mount(VolumeKind::Fat, FAT),
        };
        for (name, volume) in [(NTFS, volumes.ntfs), (FAT, volumes.fat)] {
            if !driver.is_attached(volume) {
                return Err(format!("vigil did not attach to {name}"));
            }
        }
        self.driver = Some(driver);
        Ok(volumes)
    }

    /// The loaded driver.
    ///
    /// # Panics
    ///
    /// When none is loaded.
    pub fn driver(&self) -> &Driver {
        self.driver.as_ref().expect("a driver is loaded")
    }

    /// `fltmc unload vigil` (mandatory), then kernel-sim's checks; `stats` are the counters
    /// read just before, kept with the report.
    ///
    /// # Errors
    ///
    /// Nothing loaded, or the unload failed (the report is kept either way).
    pub fn unload(&mut self, stats: Option<Stats>) -> Result<&InstanceReport, String> {
        let mut driver = self.driver.take().ok_or("no driver loaded")?;
        let unloaded = driver.unload(UnloadKind::Mandatory);
        let report = driver.finish();
        self.finished.push(InstanceReport { stats, report });
        let last = self.finished.last().ok_or("no report")?;
        match unloaded {
            Ok(_) => Ok(last),
            Err(e) => Err(format!("unload: {e}: {}", last.report.summary())),
        }
    }

    /// Every finished instance, in load order (a driver still loaded is finished unloaded:
    /// kernel-sim then reports what it still holds).
    pub fn finish(mut self) -> Vec<InstanceReport> {
        if let Some(driver) = self.driver.take() {
            self.finished.push(InstanceReport {
                stats: None,
                report: driver.finish(),
            });
        }
        std::mem::take(&mut self.finished)
    }
}
