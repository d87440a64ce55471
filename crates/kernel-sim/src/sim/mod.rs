//! The public API: configure a [`Sim`], load a driver image into it, drive its lifecycle, and
//! collect the [`Report`].

#[cfg(test)]
mod context_volume_tests;
pub(crate) mod exports;
#[cfg(test)]
mod filter_routine_tests;
mod io;
pub(crate) mod processes;
#[cfg(test)]
mod verifier_tests;
mod volumes;

pub use volumes::Mounter;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vigil_sys::{DRIVER_OBJECT, NT_SUCCESS, PASSIVE_LEVEL, UNICODE_STRING};

use crate::config::{SimConfig, UnloadKind};
use crate::fltmgr::flt_write;
use crate::image::symbols::Symbols;
use crate::image::{self, LoadError, LoadedImage};
use crate::kernel::{Kernel, RawUnload, lock};
use crate::machine::guest::{self, GuestAlloc};
use crate::machine::pool::tag_text;
use crate::ntoskrnl::{self, status_text};
use crate::report::{Report, ViolationKind};
use crate::world::client::{ConnectError, ConnectOptions, Namespace, PortConnection};

/// How an unload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnloadOutcome {
    /// The filter unloaded; the image is unmapped.
    Unloaded,
    /// An optional unload refused with this status; the driver stays loaded.
    Refused(i32),
}

/// Why an unload could not be attempted or completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnloadError {
    /// The driver is not loaded (DriverEntry failed, or it was already unloaded).
    NotLoaded,
    /// No filter with a `FilterUnloadCallback` is registered: FltMgr cannot unload it.
    NotUnloadable,
    /// The unload callback faulted or bug-checked (see the report).
    Crashed,
}

impl std::fmt::Display for UnloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotLoaded => "the driver is not loaded",
            Self::NotUnloadable => "no registered filter with an unload callback",
            Self::Crashed => "the unload callback crashed",
        })
    }
}

impl std::error::Error for UnloadError {}

/// A simulated machine configuration that loads driver images. Clones share one object
/// namespace: a client connects by port name to whichever driver loaded through them owns it.
#[derive(Clone, Debug, Default)]
pub struct Sim {
    config: SimConfig,
    namespace: Namespace,
}

impl Sim {
    /// A simulator with `config`.
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            namespace: Namespace::default(),
        }
    }

    /// Connects a client to the open server port `port_name` (for example `\VigilPort`) of
    /// any driver loaded through this `Sim` (see [`PortConnection`]).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: no such port, the connection limit, or the driver's refusal.
    pub fn connect(
        &self,
        port_name: &str,
        options: &ConnectOptions,
    ) -> Result<PortConnection, ConnectError> {
        self.namespace.connect(port_name, options)
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Loads the image at `path` (with `path.pdb` beside it for symbols, if present) and runs
    /// DriverEntry on the calling thread at PASSIVE_LEVEL.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or the loader refuses the image (see [`LoadError`]). A
    /// DriverEntry that fails or crashes is not an error here: see [`Driver::entry_status`].
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Driver, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(LoadError::Io)?;
        let pdb = path.with_extension("pdb");
        self.load_bytes(path, &bytes, pdb.exists().then_some(pdb.as_path()))
    }

    /// Loads an image from memory; `name` is used in messages, `pdb` for symbols.
    ///
    /// # Errors
    ///
    /// The loader refuses the image (see [`LoadError`]).
    pub fn load_bytes(
        &self,
        name: &Path,
        bytes: &[u8],
        pdb: Option<&Path>,
    ) -> Result<Driver, LoadError> {
        let image = image::load(bytes, &exports::bind)?;
        let symbols = pdb
            .and_then(Symbols::from_pdb)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| Symbols::from_exports(&image.exports));
        let image_name = name
            .file_name()
            .map_or_else(|| "driver".to_owned(), |n| n.to_string_lossy().into_owned());
        let kernel = Kernel::new(
            self.config.clone(),
            image_name,
            image.bounds,
            image.sections.clone(),
            symbols,
        );
        if let Some(point) = self.config.pause_at {
            kernel.pause.arm(exports::routine_named(point.routine));
        }
        self.namespace.register(&kernel);
        crate::world::volumes::mount_configured(&kernel);
        let mut driver = Driver {
            kernel,
            image: Some(image),
            path: name.to_path_buf(),
            entry_status: None,
            unload: None,
            loaded: false,
            finished: false,
            extension: GuestAlloc::zeroed(64),
            object_name: None,
        };
        driver.run_driver_entry();
        Ok(driver)
    }
}

/// A loaded driver image and the world it runs in.
pub struct Driver {
    kernel: Arc<Kernel>,
    image: Option<LoadedImage>,
    path: PathBuf,
    entry_status: Option<i32>,
    unload: Option<String>,
    loaded: bool,
    finished: bool,
    /// The `DRIVER_EXTENSION` the driver object points to.
    extension: GuestAlloc,
    /// `\\Driver\\<service>`, the driver object's name (its buffer outlives the object).
    object_name: Option<guest::GuestUnicode>,
}

impl Driver {
    /// The driver's world (for the API implemented beside the emulation).
    pub(crate) fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }

    /// A handle for another thread of the test: releases a call held at
    /// [`SimConfig::pause_at`], tells when the unload thread blocks, reads the routine calls
    /// so far (while this `Driver` is busy unloading, say).
    pub fn observer(&self) -> crate::kernel::pause::Observer {
        crate::kernel::pause::Observer::new(Arc::clone(&self.kernel))
    }

    /// Threads now waiting for exclusive access to one of the driver's push locks (a test
    /// waits for a writer to queue before it checks what the writer holds back; see
    /// `fltmgr::pushlock` for the fairness rule).
    pub fn push_lock_exclusive_waiters(&self) -> usize {
        crate::fltmgr::pushlock::all_exclusive_waiters(&self.kernel)
    }

    fn run_driver_entry(&mut self) {
        let k = Arc::clone(&self.kernel);
        let image = self.image.as_ref().expect("mapped");
        let driver_object = k.driver_object.as_ptr::<DRIVER_OBJECT>();
        let name = guest::GuestUnicode::new(&format!("\\Driver\\{}", k.config.service_name));
        let entry_address = image.entry_point();
        // SAFETY: DRIVER_OBJECT is plain data (integers, raw pointers, optional function
        // pointers): all zeroes is a valid value.
        let mut value: DRIVER_OBJECT = unsafe { std::mem::zeroed() };
        value.Type = 4;
        value.Size = i16::try_from(size_of::<DRIVER_OBJECT>()).unwrap_or(i16::MAX);
        value.DriverStart = image.bounds.base as *mut _;
        value.DriverSize = u32::try_from(image.bounds.size).unwrap_or(u32::MAX);
        value.DriverExtension = self.extension.as_ptr();
        value.DriverName = guest::read(name.as_ptr());
        // SAFETY: `driver_object` is kernel-sim's own allocation of a DRIVER_OBJECT, not yet
        // shared with the driver.
        unsafe { driver_object.write(value) };
        // The name's buffer lives as long as the driver object.
        self.object_name = Some(name);
        // SAFETY: the entry point of a mapped PE image whose DriverEntry has the
        // DRIVER_INITIALIZE signature (the image is a driver: /DRIVER, /ENTRY:DriverEntry).
        let entry: unsafe extern "win64" fn(*mut DRIVER_OBJECT, *mut UNICODE_STRING) -> i32 =
            unsafe { std::mem::transmute(entry_address) };
        let registry_path = k.registry_path.as_ptr();
        k.lifecycle.in_entry.store(true, Ordering::Release);
        // SAFETY: as above; the arguments are a valid driver object and registry path.
        let status = k.call_driver("DriverEntry", Some(PASSIVE_LEVEL), || unsafe {
            entry(driver_object, registry_path)
        });
        k.lifecycle.in_entry.store(false, Ordering::Release);
        k.lifecycle.entry_returned.store(true, Ordering::Release);
        ntoskrnl::io::finish_initializing(&k);
        self.entry_status = status;
        match status {
            Some(s) if NT_SUCCESS(s) => self.loaded = true,
            Some(_) => {
                // The I/O manager unloads a driver whose DriverEntry failed, without calling
                // any unload routine: everything must already be released.
                self.driver_gone("DriverEntry failed");
            }
            None => self.driver_gone("DriverEntry crashed"),
        }
    }

    /// DriverEntry's status; `None` if DriverEntry crashed (see the report).
    pub fn entry_status(&self) -> Option<i32> {
        self.entry_status
    }

    /// Whether the driver is loaded (DriverEntry succeeded and it has not been unloaded).
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Unloads the filter as FltMgr does: calls its `FilterUnloadCallback` (or, when the
    /// unload-race scenario already did, collects that call's outcome), then, if it agreed,
    /// checks that everything was released and unmaps the image.
    ///
    /// # Errors
    ///
    /// See [`UnloadError`]: not loaded, not unloadable, or a crash (now or earlier).
    pub fn unload(&mut self, kind: UnloadKind) -> Result<UnloadOutcome, UnloadError> {
        if !self.loaded {
            return Err(UnloadError::NotLoaded);
        }
        if self.kernel.crashed.load(Ordering::Acquire) {
            return Err(UnloadError::Crashed);
        }
        let k = Arc::clone(&self.kernel);
        let raced = lock(&k.lifecycle.race).take();
        let raw = match raced {
            Some(handle) => handle.join().unwrap_or(RawUnload::Abandoned),
            None => crate::fltmgr::unload::run_unload_callback(&k, kind),
        };
        match raw {
            RawUnload::NoCallback => Err(UnloadError::NotUnloadable),
            RawUnload::Abandoned => {
                self.unload = Some("crashed".into());
                self.driver_gone("the unload callback crashed");
                Err(UnloadError::Crashed)
            }
            RawUnload::Status(status) if !NT_SUCCESS(status) && kind == UnloadKind::Optional => {
                self.unload = Some(format!("refused ({})", status_text(status)));
                Ok(UnloadOutcome::Refused(status))
            }
            RawUnload::Status(status) => {
                if !NT_SUCCESS(status) {
                    k.violation(
                        ViolationKind::CallbackContract,
                        "FilterUnloadCallback: a mandatory unload cannot be refused",
                        format!(
                            "FilterUnload returned {} for a mandatory unload",
                            status_text(status)
                        ),
                    );
                }
                if flt_write(&k).any_registered() {
                    k.violation(
                        ViolationKind::CallbackContract,
                        "FilterUnloadCallback: unregisters the filter (FltUnregisterFilter) before returning",
                        "the unload callback returned with the filter still registered".to_owned(),
                    );
                }
                self.unload = Some(format!("unloaded ({})", status_text(status)));
                self.driver_gone("unload");
                Ok(UnloadOutcome::Unloaded)
            }
        }
    }

    /// The driver is gone (DriverEntry failed, or unload completed): wait for its threads,
    /// report everything it left behind, and unmap the image.
    fn driver_gone(&mut self, why: &str) {
        self.loaded = false;
        let k = Arc::clone(&self.kernel);
        if let Some(handle) = lock(&k.lifecycle.race).take() {
            let _ = handle.join();
        }
        let crashed = k.crashed.load(Ordering::Acquire);
        // After a crash the driver's threads may never stop (Windows would have halted): do
        // not wait for them, and do not report what the crash left behind.
        let limit = if crashed {
            Duration::ZERO
        } else {
            k.config.thread_exit_timeout
        };
        if !crashed {
            crate::fltmgr::callback_data::report_in_flight(&k, why);
            crate::fltmgr::workitems::driver_gone(&k, why);
            crate::fltmgr::callback_data::driver_gone(&k, why);
        }
        let still_running = ntoskrnl::thread::wait_for_threads(&k, limit);
        for thread in still_running.iter().filter(|_| !crashed) {
            k.violation(
                ViolationKind::ThreadStillRunning,
                "RULES.md 2: every driver thread has terminated before unload returns",
                format!(
                    "system thread {:#x} (start {}) still running after {why}",
                    thread.id,
                    k.describe_code(thread.start)
                ),
            );
        }
        if !crashed {
            report_leaks(&k, why);
        }
        crate::fltmgr::instances::driver_gone(&k);
        if let Some(mut image) = self.image.take() {
            image.unmap();
        }
    }

    /// Every violation so far.
    pub fn violations(&self) -> Vec<crate::report::Violation> {
        self.kernel.violations()
    }

    /// The calls of each emulated routine so far (what the report's `routine_calls` will
    /// hold), to wait on work the driver does on its own threads.
    pub fn routine_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.kernel.routine_calls()
    }

    /// Ends the run and returns its report. A driver still loaded is unloaded first
    /// (mandatory), as at system shutdown with the service stopping.
    pub fn finish(mut self) -> Report {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Report {
        if self.loaded && self.kernel.crashed.load(Ordering::Acquire) {
            // A driver call crashed: Windows would have stopped with a bug check, and nothing
            // of the driver may run again. Unmap it without calling its unload.
            self.unload = Some("not attempted: a driver call crashed".into());
            self.driver_gone("a crash");
        }
        if self.loaded {
            match self.unload(UnloadKind::Mandatory) {
                Ok(_) | Err(UnloadError::Crashed | UnloadError::NotLoaded) => {}
                Err(UnloadError::NotUnloadable) => {
                    self.unload = Some("not unloadable".into());
                    self.driver_gone("the end of the run (not unloadable)");
                }
            }
        }
        self.finished = true;
        let k = &self.kernel;
        let (debug_output, debug_output_dropped) = {
            let output = lock(&k.debug_output);
            (output.lines.clone(), output.dropped)
        };
        Report {
            image: self.path.display().to_string(),
            entry_status: self.entry_status.map(status_text),
            unload: self.unload.clone(),
            violations: k.violations(),
            pool: lock(&k.pool).stats.clone(),
            failable_calls: k.faults.calls(),
            injected: k.faults.injected(),
            driver_calls: k.driver_calls(),
            routine_calls: k.routine_calls(),
            seh_dispatches: k.seh_dispatches(),
            io: flt_write(k).io.stats.snapshot(),
            debug_output,
            debug_output_dropped,
        }
    }

    /// Test hook: the message-notify callback of the open server port named `name`, to call
    /// with arbitrary arguments (see [`Driver::call_message_notify`]).
    pub fn has_port(&self, name: &str) -> bool {
        flt_write(&self.kernel)
            .ports
            .values()
            .any(|p| !p.closed && p.name == name)
    }

    /// Connects a client to this driver's open server port `port_name` (see
    /// [`PortConnection`]).
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: no such port, the connection limit, or the driver's refusal.
    pub fn connect(
        &self,
        port_name: &str,
        options: &ConnectOptions,
    ) -> Result<PortConnection, ConnectError> {
        crate::world::client::connect(&self.kernel, port_name, options)
    }

    /// Test hook: calls the message-notify callback of server port `name` directly, with raw
    /// arguments, at PASSIVE_LEVEL, with no client connected. Returns the status, or `None` if
    /// the call crashed (see the report). [`Driver::connect`] is the real client side.
    pub fn call_message_notify(
        &self,
        name: &str,
        input: usize,
        input_len: u32,
        output: usize,
        output_len: u32,
        returned_len: usize,
    ) -> Option<i32> {
        let (message, cookie) = {
            let flt = flt_write(&self.kernel);
            let port = flt.ports.values().find(|p| !p.closed && p.name == name)?;
            (port.message, port.cookie as usize)
        };
        if message == 0 {
            return None;
        }
        // SAFETY: the driver registered this address as its PFLT_MESSAGE_NOTIFY callback and
        // the image is mapped while the port is open.
        let callback: unsafe extern "win64" fn(usize, usize, u32, usize, u32, usize) -> i32 =
            unsafe { std::mem::transmute(message) };
        // SAFETY: as above; the arguments are the caller's (a test exercising bad pointers).
        self.kernel
            .call_driver("MessageNotify", Some(PASSIVE_LEVEL), || unsafe {
                callback(cookie, input, input_len, output, output_len, returned_len)
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish_inner();
        }
    }
}

/// Reports what a gone driver left behind, then releases it.
pub(crate) fn report_leaks(k: &Kernel, why: &str) {
    crate::ntoskrnl::process::report_token_leaks(k, why);
    crate::ntoskrnl::mdl::report_leaks(k, why);
    crate::ntoskrnl::resource::report_leaks(k, why);
    crate::ntoskrnl::thread::report_device_reference_leaks(k, why);
    crate::ntoskrnl::report_list_and_mutex_leaks(k, why);
    crate::ntoskrnl::process_notify::report_registered_at_unload(k, why);
    report_pool_leaks(k, why);
    let (handles, referenced, devices) = {
        let mut objects = lock(&k.objects);
        let handles = objects.open_handles();
        objects.close_all();
        let referenced: Vec<(usize, i64)> = objects
            .threads
            .values()
            .map(|t| (t.address(), t.references.load(Ordering::Acquire)))
            .filter(|&(_, r)| r > 0)
            .collect();
        let referenced: Vec<(usize, i64)> = referenced
            .into_iter()
            .chain(std::mem::take(&mut objects.file_references))
            .filter(|&(_, r)| r > 0)
            .collect();
        let devices: Vec<usize> = objects.devices.keys().copied().collect();
        (handles, referenced, devices)
    };
    for (handle, kind, by) in handles {
        k.violation(
            ViolationKind::HandleLeak,
            "every handle is closed (ZwClose) before the driver is gone",
            format!("after {why}: {kind} handle {handle:#x} from {by} still open"),
        );
    }
    for (object, references) in referenced {
        k.violation(
            ViolationKind::HandleLeak,
            "every object reference is released (ObDereferenceObject) before the driver is gone",
            format!("after {why}: object {object:#x} (thread or file) still has {references} reference(s)"),
        );
    }
    for device in devices {
        k.violation(
            ViolationKind::ResourceLeak,
            "every device object is deleted (IoDeleteDevice)",
            format!("after {why}: device object {device:#x} not deleted"),
        );
    }
    report_filter_manager_leaks(k, why);
}

/// Pool blocks the gone driver never freed, by tag.
fn report_pool_leaks(k: &Kernel, why: &str) {
    let leaks = lock(&k.pool).drain_leaks();
    for (tag, blocks) in &leaks {
        let total: usize = blocks.iter().map(|b| b.0).sum();
        let sizes: Vec<String> = blocks
            .iter()
            .map(|(size, by, irql)| {
                format!("{size} B from {by} at {}", crate::kernel::irql_name(*irql))
            })
            .collect();
        k.violation(
            ViolationKind::PoolLeak,
            "every pool block is freed before the driver is gone",
            format!(
                "after {why}: {} block(s), {total} bytes, tag '{}': {}",
                blocks.len(),
                tag_text(*tag),
                sizes.join(", ")
            ),
        );
    }
}

/// Filter Manager objects the gone driver left: a registration, ports, security descriptors.
fn report_filter_manager_leaks(k: &Kernel, why: &str) {
    let flt = flt_write(k);
    let filters = flt.filters.values().filter(|f| !f.unregistered).count();
    let mut ports: Vec<String> = flt
        .ports
        .values()
        .filter(|p| !p.closed)
        .map(|p| p.name.clone())
        .collect();
    let descriptors = flt
        .security_descriptors
        .values()
        .filter(|d| !d.freed)
        .count();
    drop(flt);
    ports.extend(crate::fltmgr::ports::close_client_ports_of_gone_driver(k));
    if filters > 0 {
        k.violation(
            ViolationKind::ResourceLeak,
            "the filter is unregistered (FltUnregisterFilter) before the driver is gone",
            format!("after {why}: {filters} filter(s) still registered"),
        );
    }
    if !ports.is_empty() {
        k.violation(
            ViolationKind::ResourceLeak,
            "every communication port is closed before the driver is gone",
            format!("after {why}: port(s) {} still open", ports.join(", ")),
        );
    }
    if descriptors > 0 {
        k.violation(
            ViolationKind::ResourceLeak,
            "every security descriptor is freed (FltFreeSecurityDescriptor)",
            format!("after {why}: {descriptors} security descriptor(s) not freed"),
        );
    }
}
