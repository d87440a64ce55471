//! The Windows service: install, uninstall, start and stop through the service control manager
//! (SCM), and the service's own entry point. User mode, Windows only.
//!
//! Policy:
//! * Name `VigilService` (the driver's service is `vigil`, INF-installed); automatic start,
//!   `LocalSystem` (the port admits Administrators and SYSTEM only), dependent on `FltMgr` and
//!   `vigil`, so the SCM loads the driver first.
//! * Restart on failure after 5 s, three times a day: a service that died (the field crash)
//!   comes back, and the driver counts what it missed meanwhile.
//! * Stop and shutdown controls request a stop; the core notices it within its poll interval
//!   (100 ms), drains for at most 2 s, closes its sinks; `STOP_PENDING` is reported with a 5 s
//!   wait hint so the SCM never sees a hung service. A parameter-change control
//!   (`sc control VigilService paramchange`) reloads the policy file; a bad file is refused and
//!   the running policy kept (see the log).
//! * The core waits for the driver (it may be unloaded and reloaded under it: `fltmc` stress)
//!   and logs to `vigil-service.log` beside its JSON Lines file.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl as ScmControl,
    ServiceControlAccept, ServiceDependency, ServiceErrorControl, ServiceExitCode,
    ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceState,
    ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::cli::{
    default_dir, open_sinks, platform_connector, resume_point, with_platform_process_names,
};
use crate::control::{ServiceControl, SystemClock};
use crate::policy::Policy;
use crate::service::{Level, Log, Service, ServiceOptions};

/// The service's name in the SCM.
pub const SERVICE_NAME: &str = "VigilService";
/// Its display name.
pub const DISPLAY_NAME: &str = "Vigil file activity service";
/// The driver's service (installed by the INF).
pub const DRIVER_SERVICE: &str = "vigil";
/// How long `stop` and `uninstall` wait for the service to reach STOPPED.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// The wait hint reported with `STOP_PENDING`: poll interval + drain limit + closing, with margin.
const STOP_WAIT_HINT: Duration = Duration::from_secs(5);

fn scm_error(what: &str) -> impl Fn(windows_service::Error) -> String + '_ {
    move |e| {
        let detail = std::error::Error::source(&e).map_or(String::new(), |s| format!(": {s}"));
        format!("{what}: {e}{detail}")
    }
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, String> {
    ServiceManager::local_computer(None::<&str>, access).map_err(scm_error(
        "cannot open the service control manager (run as Administrator)",
    ))
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Registers the service; `policy` and `output` become its command line.
///
/// # Errors
///
/// A refused policy file, or the SCM's refusal (already installed, not an administrator).
pub fn install(policy: Option<&Path>, output: Option<&Path>) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find vigil.exe: {e}"))?;
    let mut arguments: Vec<OsString> = vec!["service".into(), "run".into()];
    let policy = match policy {
        Some(p) => Some(absolute(p)?),
        None => default_dir()
            .map(|d| d.join("policy.toml"))
            .filter(|p| p.exists()),
    };
    if let Some(p) = &policy {
        Policy::load(p).map_err(|e| format!("{}: {e}", p.display()))?;
        arguments.extend(["--policy".into(), p.clone().into_os_string()]);
    }
    if let Some(o) = output {
        arguments.extend(["--output".into(), absolute(o)?.into_os_string()]);
    }
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: arguments,
        dependencies: vec![
            ServiceDependency::Service("FltMgr".into()),
            ServiceDependency::Service(DRIVER_SERVICE.into()),
        ],
        account_name: None,
        account_password: None,
    };
    let manager = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(scm_error("cannot create the service"))?;
    service
        .set_description(
            "Writes the Vigil minifilter's file activity events to JSON Lines and answers its \
             verdict requests for protected paths.",
        )
        .map_err(scm_error("cannot set the description"))?;
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(5),
    };
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_hours(24)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart.clone(), restart.clone(), restart]),
        })
        .map_err(scm_error("cannot set the restart policy"))?;
    Ok(format!(
        "installed {SERVICE_NAME} (automatic start, LocalSystem, after FltMgr and {DRIVER_SERVICE}); \
         start it with `vigil service start`"
    ))
}

fn wait_stopped(service: &windows_service::service::Service) -> Result<(), String> {
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        let status = service
            .query_status()
            .map_err(scm_error("cannot query the service"))?;
        if status.current_state == ServiceState::Stopped {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{SERVICE_NAME} did not stop within {} s (state {:?})",
                STOP_WAIT.as_secs(),
                status.current_state
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops (if running) and deletes the service.
///
/// # Errors
///
/// The SCM's refusal, or a service that does not stop in time.
pub fn uninstall() -> Result<String, String> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::STOP | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE,
        )
        .map_err(scm_error("cannot open the service (is it installed?)"))?;
    let status = service
        .query_status()
        .map_err(scm_error("cannot query the service"))?;
    if status.current_state != ServiceState::Stopped {
        service
            .stop()
            .map_err(scm_error("cannot stop the service"))?;
        wait_stopped(&service)?;
    }
    service
        .delete()
        .map_err(scm_error("cannot delete the service"))?;
    Ok(format!("uninstalled {SERVICE_NAME}"))
}

/// Starts the service.
///
/// # Errors
///
/// The SCM's refusal.
pub fn start() -> Result<String, String> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::START)
        .map_err(scm_error("cannot open the service (is it installed?)"))?;
    service
        .start(&[] as &[&OsStr])
        .map_err(scm_error("cannot start the service"))?;
    Ok(format!("started {SERVICE_NAME}"))
}

/// Stops the service and waits (bounded) until it has.
///
/// # Errors
///
/// The SCM's refusal, or a service that does not stop in time.
pub fn stop() -> Result<String, String> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::STOP | ServiceAccess::QUERY_STATUS,
        )
        .map_err(scm_error("cannot open the service (is it installed?)"))?;
    service
        .stop()
        .map_err(scm_error("cannot stop the service"))?;
    wait_stopped(&service)?;
    Ok(format!("stopped {SERVICE_NAME}"))
}

/// The service's state, as `vigil status` prints it.
///
/// # Errors
///
/// The SCM's refusal.
pub fn state() -> Result<String, String> {
    let manager = manager(ServiceManagerAccess::CONNECT)?;
    let Ok(service) = manager.open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS) else {
        return Ok(format!("{SERVICE_NAME} not installed"));
    };
    let status = service
        .query_status()
        .map_err(scm_error("cannot query the service"))?;
    Ok(format!("{SERVICE_NAME} {:?}", status.current_state).to_lowercase())
}

/// The command line the SCM started us with.
static ARGUMENTS: OnceLock<(Option<PathBuf>, Option<PathBuf>)> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the SCM's dispatcher (`vigil service run`, the installed command
/// line); returns when the service has stopped.
///
/// # Errors
///
/// When not started by the SCM (run interactively), or the dispatcher's failure.
pub fn run_dispatcher(policy: Option<PathBuf>, output: Option<PathBuf>) -> Result<String, String> {
    let _ = ARGUMENTS.set((policy, output));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(scm_error(
        "`vigil service run` is the entry point the service control manager starts; to run in \
         a console use `vigil run`",
    ))?;
    Ok(format!("{SERVICE_NAME} stopped"))
}

/// Appends log lines to a file (a service has no console).
struct FileLog {
    file: Option<File>,
}

impl Log for FileLog {
    fn log(&mut self, level: Level, message: &str) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(file, "{seconds} {level:?}: {message}");
    }
}

fn status(
    state: ServiceState,
    accept: ServiceControlAccept,
    exit: u32,
    hint: Duration,
) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: hint,
        process_id: None,
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let control = ServiceControl::new();
    let handler_control = control.clone();
    let handler = move |event| match event {
        ScmControl::Stop | ScmControl::Shutdown => {
            handler_control.request_stop();
            ServiceControlHandlerResult::NoError
        }
        ScmControl::ParamChange => {
            handler_control.request_reload();
            ServiceControlHandlerResult::NoError
        }
        ScmControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(handle) = service_control_handler::register(SERVICE_NAME, handler) else {
        return;
    };
    let accept = ServiceControlAccept::STOP
        | ServiceControlAccept::SHUTDOWN
        | ServiceControlAccept::PARAM_CHANGE;
    let _ = handle.set_service_status(status(ServiceState::Running, accept, 0, Duration::ZERO));
    // The core runs on its own thread so that this one can report STOP_PENDING at once.
    let core_control = control.clone();
    let worker = std::thread::spawn(move || run_core(&core_control));
    while !worker.is_finished() {
        if control.sleep_unless_stopped(Duration::from_millis(250)) {
            let _ = handle.set_service_status(status(
                ServiceState::StopPending,
                ServiceControlAccept::empty(),
                0,
                STOP_WAIT_HINT,
            ));
            break;
        }
    }
    let exit = worker.join().unwrap_or(1);
    let _ = handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit,
        Duration::ZERO,
    ));
}

/// Runs the core until stopped; returns the Win32 exit code for the SCM.
fn run_core(control: &ServiceControl) -> u32 {
    let (policy_path, output) = ARGUMENTS.get().cloned().unwrap_or_default();
    let dir = default_dir().unwrap_or_else(|| PathBuf::from("."));
    let _ = std::fs::create_dir_all(&dir);
    let mut log = FileLog {
        file: OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("vigil-service.log"))
            .ok(),
    };
    let policy = match &policy_path {
        Some(path) => match Policy::load(path) {
            Ok(p) => p,
            Err(e) => {
                log.log(Level::Error, &format!("{}: {e}", path.display()));
                return 1;
            }
        },
        None => Policy::default(),
    };
    let output = output
        .or_else(|| policy.output.jsonl.clone())
        .unwrap_or_else(|| dir.join("vigil.jsonl"));
    // Continue the numbering of what the last run wrote (read before the sink opens it).
    let resume = resume_point(Some(&output), |warning| log.log(Level::Warn, &warning));
    let sinks = match open_sinks(&policy, Some(&output), false) {
        Ok(s) => s,
        Err(e) => {
            log.log(Level::Error, &format!("{}: {e}", output.display()));
            return 1;
        }
    };
    let Some(mut connector) = platform_connector() else {
        return 1;
    };
    let options = ServiceOptions {
        wait_for_driver: true,
        ..ServiceOptions::default()
    };
    let mut service = Service::new(policy, sinks, options)
        .with_control(control.clone())
        .with_resume(resume)
        .with_log(log);
    if let Some(path) = policy_path {
        service = service.with_policy_path(path);
    }
    let mut service = with_platform_process_names(service);
    match service.run(&mut connector, &SystemClock) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}
