//! `fltmc` in kernel-sim: the Filter Manager control program's `load`, `unload`, `filters`,
//! `instances`, `attach` and `detach` on one emulated machine, with Filter Manager's semantics.
//! Host code; the command line's `kernel-sim fltmc` runs a sequence of these commands, and the
//! `load-unload`, `stress` and `soak` commands load and unload through the same
//! [`Sim::load`] and [`Driver::unload`] that [`Fltmc::load`] and [`Fltmc::unload`] use.
//!
//! The semantics, each from its reference page:
//! * `fltmc load` (`FilterLoad`,
//!   <https://learn.microsoft.com/windows/win32/api/fltuser/nf-fltuser-filterload>) loads the
//!   driver of the service: DriverEntry runs, and its failure is the load's status. A service
//!   the registry does not have fails as opening its missing key does,
//!   `STATUS_OBJECT_NAME_NOT_FOUND` (which `fltmc` shows as the Win32 `ERROR_FILE_NOT_FOUND`).
//! * `fltmc unload` is a non-mandatory unload (FilterUnloadCallback without
//!   `FLTFL_FILTER_UNLOAD_MANDATORY`), which the filter may refuse; a service stop (`sc stop`)
//!   is the mandatory one, which it cannot; a filter that registered no FilterUnloadCallback
//!   cannot be unloaded at all (When the FilterUnloadCallback Routine Is Called,
//!   <https://learn.microsoft.com/windows-hardware/drivers/ifs/when-the-filterunloadcallback-routine-is-called>;
//!   `PFLT_FILTER_UNLOAD_CALLBACK`,
//!   <https://learn.microsoft.com/windows-hardware/drivers/ddi/fltkernel/nc-fltkernel-pflt_filter_unload_callback>).
//! * `fltmc attach` attaches an instance by name (`-i`) or the default one, also when its
//!   `Flags` suppress automatic attachment ([`Driver::attach`]); `fltmc detach` asks the
//!   filter's InstanceQueryTeardown first ([`Driver::detach`]).

use std::fmt;
use std::path::{Path, PathBuf};

use vigil_sys::{STATUS_FLT_DO_NOT_DETACH, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_UNSUCCESSFUL};

use crate::config::{SimConfig, UnloadKind};
use crate::fltmgr::instances::VolumeId;
use crate::image::LoadError;
use crate::report::{Report, status_name};
use crate::sim::{Driver, Sim, UnloadError, UnloadOutcome};

/// `STATUS_IMAGE_ALREADY_LOADED`: the service's driver is loaded already.
pub const STATUS_IMAGE_ALREADY_LOADED: i32 = 0xC000_010E_u32.cast_signed();
/// `STATUS_FLT_FILTER_NOT_FOUND`: no loaded filter of that name.
pub const STATUS_FLT_FILTER_NOT_FOUND: i32 = 0xC01C_0013_u32.cast_signed();
/// `STATUS_FLT_VOLUME_NOT_FOUND`: no mounted volume of that name.
pub const STATUS_FLT_VOLUME_NOT_FOUND: i32 = 0xC01C_0014_u32.cast_signed();

/// Why an `fltmc` command failed.
#[derive(Debug)]
pub enum FltmcError {
    /// Filter Manager's (or the driver's) status.
    Status(i32),
    /// The image file could not be read or mapped.
    Image(LoadError),
}

impl FltmcError {
    /// The NTSTATUS this failure reports (`STATUS_UNSUCCESSFUL` for an unreadable image).
    pub fn status(&self) -> i32 {
        match self {
            Self::Status(status) => *status,
            Self::Image(_) => STATUS_UNSUCCESSFUL,
        }
    }
}

impl fmt::Display for FltmcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(
                f,
                "{} ({:#010x})",
                status_name(*status),
                status.cast_unsigned()
            ),
            Self::Image(error) => write!(f, "the image cannot be loaded: {error}"),
        }
    }
}

impl std::error::Error for FltmcError {}

/// One row of `fltmc filters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRow {
    /// The filter (service) name.
    pub name: String,
    /// Its live instances.
    pub instances: usize,
    /// The default instance's altitude (`-` without an installed INF).
    pub altitude: String,
}

/// One row of `fltmc instances`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRow {
    /// The filter name.
    pub filter: String,
    /// The volume's device name.
    pub volume: String,
    /// The instance's altitude (`-` without an installed INF).
    pub altitude: String,
    /// The instance's name (`-` without an installed INF).
    pub instance: String,
}

/// One emulated machine as `fltmc` sees it: the filter of `image`, loaded or not.
pub struct Fltmc {
    sim: Sim,
    image: PathBuf,
    driver: Option<Driver>,
    reports: Vec<Report>,
}

impl Fltmc {
    /// A machine configured by `config` (with an INF installed into it, or not) on which
    /// `image` is the driver of the service `config.service_name`.
    pub fn new(config: SimConfig, image: &Path) -> Self {
        Self {
            sim: Sim::new(config),
            image: image.to_path_buf(),
            driver: None,
            reports: Vec::new(),
        }
    }

    /// The loaded driver, if any.
    pub fn driver(&self) -> Option<&Driver> {
        self.driver.as_ref()
    }

    fn filter_name(&self) -> &str {
        &self.sim.config().service_name
    }

    /// Whether `name` is this machine's filter service.
    fn knows(&self, name: &str) -> bool {
        let config = self.sim.config();
        name.eq_ignore_ascii_case(&config.service_name)
            && config
                .machine_registry
                .as_ref()
                .is_none_or(|r| r.key(&config.service_key_path()).is_some())
    }

    /// `fltmc load NAME`.
    ///
    /// # Errors
    ///
    /// `STATUS_OBJECT_NAME_NOT_FOUND` for a service that is not installed,
    /// `STATUS_IMAGE_ALREADY_LOADED` when it is loaded, DriverEntry's failure status (its
    /// report is kept), or the image's [`LoadError`].
    pub fn load(&mut self, name: &str) -> Result<(), FltmcError> {
        if !self.knows(name) {
            return Err(FltmcError::Status(STATUS_OBJECT_NAME_NOT_FOUND));
        }
        if self.driver.is_some() {
            return Err(FltmcError::Status(STATUS_IMAGE_ALREADY_LOADED));
        }
        let driver = self.sim.load(&self.image).map_err(FltmcError::Image)?;
        match driver.entry_status() {
            Some(status) if vigil_sys::NT_SUCCESS(status) => {
                self.driver = Some(driver);
                Ok(())
            }
            status => {
                self.reports.push(driver.finish());
                Err(FltmcError::Status(status.unwrap_or(STATUS_UNSUCCESSFUL)))
            }
        }
    }

    /// `fltmc unload NAME` (`kind` [`UnloadKind::Optional`]), or a service stop
    /// ([`UnloadKind::Mandatory`]).
    ///
    /// # Errors
    ///
    /// `STATUS_FLT_FILTER_NOT_FOUND` when it is not loaded, `STATUS_FLT_DO_NOT_DETACH` when it
    /// registered no unload callback, the unload callback's refusal of an optional unload,
    /// `STATUS_UNSUCCESSFUL` when the callback crashed (see the report).
    pub fn unload(&mut self, name: &str, kind: UnloadKind) -> Result<(), FltmcError> {
        if !name.eq_ignore_ascii_case(self.filter_name()) {
            return Err(FltmcError::Status(STATUS_FLT_FILTER_NOT_FOUND));
        }
        let Some(driver) = self.driver.as_mut() else {
            return Err(FltmcError::Status(STATUS_FLT_FILTER_NOT_FOUND));
        };
        match driver.unload(kind) {
            Ok(UnloadOutcome::Unloaded) => {
                self.finish_driver();
                Ok(())
            }
            Ok(UnloadOutcome::Refused(status)) => Err(FltmcError::Status(status)),
            Err(UnloadError::NotUnloadable) => Err(FltmcError::Status(STATUS_FLT_DO_NOT_DETACH)),
            Err(UnloadError::NotLoaded) => {
                self.finish_driver();
                Err(FltmcError::Status(STATUS_FLT_FILTER_NOT_FOUND))
            }
            Err(UnloadError::Crashed) => {
                self.finish_driver();
                Err(FltmcError::Status(STATUS_UNSUCCESSFUL))
            }
        }
    }

    fn finish_driver(&mut self) {
        if let Some(driver) = self.driver.take() {
            self.reports.push(driver.finish());
        }
    }

    /// `fltmc filters`.
    pub fn filters(&self) -> Vec<FilterRow> {
        self.driver
            .iter()
            .map(|driver| FilterRow {
                name: self.filter_name().to_owned(),
                instances: driver.attached_volumes().len(),
                altitude: driver
                    .default_instance()
                    .map_or_else(|| "-".to_owned(), |(_, altitude)| altitude),
            })
            .collect()
    }

    /// `fltmc instances`.
    pub fn instances(&self) -> Vec<InstanceRow> {
        let Some(driver) = &self.driver else {
            return Vec::new();
        };
        let (instance, altitude) = driver
            .default_instance()
            .unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
        driver
            .attached_volumes()
            .into_iter()
            .map(|volume| InstanceRow {
                filter: self.filter_name().to_owned(),
                volume,
                altitude: altitude.clone(),
                instance: instance.clone(),
            })
            .collect()
    }

    /// The loaded filter named `name` and the mounted volume `volume` (device name).
    fn target(&self, name: &str, volume: &str) -> Result<(&Driver, VolumeId), FltmcError> {
        let driver = self
            .driver
            .as_ref()
            .filter(|_| name.eq_ignore_ascii_case(self.filter_name()))
            .ok_or(FltmcError::Status(STATUS_FLT_FILTER_NOT_FOUND))?;
        let volume = driver
            .volume(volume)
            .ok_or(FltmcError::Status(STATUS_FLT_VOLUME_NOT_FOUND))?;
        Ok((driver, volume))
    }

    /// `fltmc attach NAME VOLUME [-i INSTANCE]` (`FilterAttach`), or with an altitude
    /// (`-a ALTITUDE`, `FilterAttachAtAltitude`,
    /// <https://learn.microsoft.com/windows/win32/api/fltuser/nf-fltuser-filterattachataltitude>):
    /// the instance defined at that altitude if there is one, else the named or default
    /// instance (kernel-sim keeps one instance per volume and does not order instances by
    /// altitude, so any altitude is taken).
    ///
    /// # Errors
    ///
    /// `STATUS_FLT_FILTER_NOT_FOUND`, `STATUS_FLT_VOLUME_NOT_FOUND`, or
    /// [`Driver::attach`]'s status.
    pub fn attach(
        &self,
        name: &str,
        volume: &str,
        instance: Option<&str>,
        altitude: Option<&str>,
    ) -> Result<(), FltmcError> {
        let (driver, volume) = self.target(name, volume)?;
        let at_altitude = altitude.and_then(|a| driver.instance_at_altitude(a));
        driver
            .attach(volume, at_altitude.as_deref().or(instance))
            .map_err(FltmcError::Status)
    }

    /// `fltmc detach NAME VOLUME`.
    ///
    /// # Errors
    ///
    /// `STATUS_FLT_FILTER_NOT_FOUND`, `STATUS_FLT_VOLUME_NOT_FOUND`, or
    /// [`Driver::detach`]'s status.
    pub fn detach(&self, name: &str, volume: &str) -> Result<(), FltmcError> {
        let (driver, volume) = self.target(name, volume)?;
        driver.detach(volume).map_err(FltmcError::Status)
    }

    /// Ends the session: a driver still loaded is unloaded mandatorily (the machine shuts
    /// down), and every driver instance's report is returned, in load order.
    pub fn finish(mut self) -> Vec<Report> {
        self.finish_driver();
        self.reports
    }
}
