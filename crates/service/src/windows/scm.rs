//! The Windows service: install, uninstall, start and stop through the service control manager
//! (SCM), and the service's own entry point. User mode, Windows only: cross-compiled and read,
//! never run by this project (the order of statuses it reports is `crate::lifecycle`'s, tested
//! on Linux).
//!
//! Policy:
//! * Name `VigilService` (the driver's service is `vigil`, INF-installed); automatic start,
//!   `LocalSystem` (the port admits Administrators and SYSTEM only), dependent on `FltMgr` and
//!   `vigil`, so the SCM loads the driver first.
//! * Restart on failure after 5 s, three times a day, for crashes and, with
//!   `failure_actions_on_non_crash_failures` set, for a stop with a service-specific exit code
//!   (`crate::lifecycle::StopReason`): a service that died or gave up comes back, and the
//!   driver counts what it missed meanwhile.
//! * `START_PENDING` (wait hint 10 s, checkpoints every half second) while the policy is read
//!   and the output opened; `RUNNING` only then. `vigil service start` waits for `RUNNING` or
//!   `STOPPED` and reports the exit code of a service that stopped.
//! * Stop and pre-shutdown controls request a stop (pre-shutdown, not shutdown: the SCM then
//!   waits for the service, up to the pre-shutdown timeout set at install, 10 s, before the
//!   system goes down, so the last batch is written); the core notices it within its poll
//!   interval (100 ms), drains for at most 2 s, closes its sinks; `STOP_PENDING` is reported
//!   with a 5 s wait hint and moving checkpoints. A parameter-change control
//!   (`sc control VigilService paramchange`) reloads the policy file; a bad file is refused and
//!   the running policy kept (see the log).
//! * The core waits for the driver (it may be unloaded and reloaded under it: `fltmc` stress)
//!   and logs to `vigil-service.log` in the data directory (size-bounded, repeats collapsed:
//!   `crate::logfile`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl as ScmControl,
    ServiceControlAccept, ServiceDependency, ServiceErrorControl, ServiceExitCode,
    ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceSidType,
    ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::cli::{
    default_dir, open_sinks, platform_connector, resume_point, with_platform_process_names,
};
use crate::control::{ServiceControl, SystemClock};
use crate::datadir::{check_output_path, secure_data_dir, trusted_policy_file};
use crate::lifecycle::{self, Readiness, State, Status, StatusReporter, StopReason};
use crate::logfile::{LogFileOptions, RotatingFileLog};
use crate::policy::Policy;
use crate::service::{Level, Log, Service, ServiceOptions, TeeLog};
use crate::windows::eventlog::EventLog;
use crate::windows::security::WindowsFileSecurity;

/// The service's name in the SCM.
pub const SERVICE_NAME: &str = "VigilService";
/// Its display name.
pub const DISPLAY_NAME: &str = "Vigil file activity service";
/// The driver's service (installed by the INF).
pub const DRIVER_SERVICE: &str = "vigil";
/// How long `stop` and `uninstall` wait for the service to reach STOPPED.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long `start` waits for RUNNING or STOPPED: the start wait hint, with margin.
const START_WAIT: Duration = Duration::from_secs(30);
/// The pre-shutdown timeout set at install: the stop bound (`lifecycle::STOP_WAIT_HINT`)
/// twice over; the SCM's default is three minutes, which would hold a shutdown up needlessly.
const PRESHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

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

/// `%ProgramData%\Vigil`.
fn data_dir() -> Result<PathBuf, String> {
    default_dir().ok_or_else(|| "no data directory on this platform".to_owned())
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
    // The data directory first: created protected, or refused if a user got there first.
    let dir = data_dir()?;
    secure_data_dir(&WindowsFileSecurity, &dir).map_err(|e| e.to_string())?;
    let policy = match policy {
        Some(p) => Some(absolute(p)?),
        None => Some(dir.join("policy.toml")).filter(|p| p.exists()),
    };
    if let Some(p) = &policy {
        // Only a file no user could have written or replaced is adopted.
        trusted_policy_file(&WindowsFileSecurity, p).map_err(|e| e.to_string())?;
        let loaded = Policy::load(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if let Some(jsonl) = &loaded.output.jsonl {
            check_output_path(&dir, jsonl).map_err(|e| e.to_string())?;
        }
        arguments.extend(["--policy".into(), p.clone().into_os_string()]);
    }
    if let Some(o) = output {
        let o = absolute(o)?;
        check_output_path(&dir, &o).map_err(|e| e.to_string())?;
        arguments.extend(["--output".into(), o.into_os_string()]);
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
    crate::windows::eventlog::register_source()?;
    // The driver knows the service by this image (and an Administrators token), not by being
    // first to connect: rule 29.
    let image = crate::windows::identity::register(&info.executable_path)?;
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
    // The settings below are reported when refused rather than failing an install that is
    // done (Wine's SCM refuses the first: ERROR_INVALID_LEVEL); the warning names each.
    let mut warnings = String::new();
    // Without this flag the actions above fire only when the process dies, not when the service
    // stops with a service-specific exit code (a refused policy, an output that failed).
    if let Err(e) = service.set_failure_actions_on_non_crash_failures(true) {
        warnings.push_str("\nwarning: ");
        warnings.push_str(&scm_error("restart on failed stops not enabled")(e));
    }
    if let Err(e) = service.set_preshutdown_timeout(PRESHUTDOWN_TIMEOUT) {
        warnings.push_str("\nwarning: ");
        warnings.push_str(&scm_error("pre-shutdown timeout not set")(e));
    }
    // A service SID (NT SERVICE\VigilService) in the service's token: lets an administrator
    // grant this service, and not every SYSTEM process, access to something later.
    if let Err(e) = service.set_config_service_sid_info(ServiceSidType::Unrestricted) {
        warnings.push_str("\nwarning: ");
        warnings.push_str(&scm_error("service SID type not set")(e));
    }
    Ok(format!(
        "installed {SERVICE_NAME} (automatic start, LocalSystem, after FltMgr and {DRIVER_SERVICE}); \
         the driver knows it as {image} from its next load; \
         start it with `vigil service start`{warnings}"
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
    crate::windows::eventlog::unregister_source();
    crate::windows::identity::unregister();
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
        .open_service(
            SERVICE_NAME,
            ServiceAccess::START | ServiceAccess::QUERY_STATUS,
        )
        .map_err(scm_error("cannot open the service (is it installed?)"))?;
    // ERROR_SERVICE_ALREADY_RUNNING: started already (Wine's SCM starts an automatic service
    // on its own): the wait below still says whether it runs.
    let already = match service.start(&[] as &[&OsStr]) {
        Ok(()) => false,
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(1056) => true,
        Err(e) => return Err(scm_error("cannot start the service")(e)),
    };
    let started = if already {
        "already running"
    } else {
        "started"
    };
    // Started means RUNNING: the service reports it only once its policy and output are ready.
    let deadline = Instant::now() + START_WAIT;
    loop {
        let status = service
            .query_status()
            .map_err(scm_error("cannot query the service"))?;
        match status.current_state {
            ServiceState::Running => return Ok(format!("{started} {SERVICE_NAME}")),
            ServiceState::Stopped => {
                return Err(format!(
                    "{SERVICE_NAME} stopped while starting: {}; see vigil-service.log in the \
                     data directory",
                    exit_text(status.exit_code)
                ));
            }
            state if Instant::now() >= deadline => {
                return Err(format!(
                    "{SERVICE_NAME} did not reach RUNNING within {} s (state {state:?})",
                    START_WAIT.as_secs()
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The words for a stopped service's exit code.
fn exit_text(code: ServiceExitCode) -> String {
    const REASONS: [StopReason; 6] = [
        StopReason::PolicyRefused,
        StopReason::OutputUnavailable,
        StopReason::DriverIncompatible,
        StopReason::DriverRefused,
        StopReason::OutputFailed,
        StopReason::Internal,
    ];
    match code {
        ServiceExitCode::ServiceSpecific(n) => REASONS.iter().find(|r| r.code() == n).map_or_else(
            || format!("exit code {n}"),
            |r| format!("{r} (exit code {n})"),
        ),
        ServiceExitCode::Win32(0) => "no error reported".to_owned(),
        ServiceExitCode::Win32(n) => format!("Win32 error {n}"),
    }
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

/// Reports the core's statuses to the SCM.
struct ScmReporter {
    handle: ServiceStatusHandle,
}

impl StatusReporter for ScmReporter {
    fn report(&mut self, status: Status) {
        let state = match status.state {
            State::StartPending => ServiceState::StartPending,
            State::Running => ServiceState::Running,
            State::StopPending => ServiceState::StopPending,
            State::Stopped => ServiceState::Stopped,
        };
        let controls_accepted = if status.accepts_controls {
            ServiceControlAccept::STOP
                | ServiceControlAccept::PRESHUTDOWN
                | ServiceControlAccept::PARAM_CHANGE
        } else {
            ServiceControlAccept::empty()
        };
        let exit_code = status.exit.map_or(ServiceExitCode::Win32(0), |reason| {
            ServiceExitCode::ServiceSpecific(reason.code())
        });
        let _ = self.handle.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: status.checkpoint,
            wait_hint: status.wait_hint,
            process_id: None,
        });
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let control = ServiceControl::new();
    let handler_control = control.clone();
    let handler = move |event| match event {
        // Pre-shutdown is accepted instead of shutdown: a service that takes it has stopped
        // before the shutdown notification would come.
        ScmControl::Stop | ScmControl::Preshutdown | ScmControl::Shutdown => {
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
    let mut reporter = ScmReporter { handle };
    let core_control = control.clone();
    let _ = lifecycle::drive(&mut reporter, &control, move |readiness| {
        run_core(&core_control, readiness)
    });
}

/// Sets the core up (policy, output), says it is ready, runs it until stopped.
fn run_core(control: &ServiceControl, readiness: &Readiness) -> Result<(), StopReason> {
    let (policy_path, output) = ARGUMENTS.get().cloned().unwrap_or_default();
    let mut log: Box<dyn Log + Send> = Box::new(EventLog::open());
    let Ok(dir) = data_dir() else {
        return Err(StopReason::OutputUnavailable);
    };
    // Checked at every start, not only at install: the directory is where every user's file
    // activity is written, and rotation renames and deletes there as SYSTEM.
    if let Err(e) = secure_data_dir(&WindowsFileSecurity, &dir) {
        log.log(Level::Error, &e.to_string());
        return Err(StopReason::OutputUnavailable);
    }
    if let Ok(file) = RotatingFileLog::open(LogFileOptions::new(dir.join("vigil-service.log"))) {
        log = Box::new(TeeLog(file, EventLog::open()));
    }
    let policy = match &policy_path {
        Some(path) => match trusted_policy_file(&WindowsFileSecurity, path)
            .map_err(|e| e.to_string())
            .and_then(|()| Policy::load(path).map_err(|e| format!("{}: {e}", path.display())))
        {
            Ok(p) => p,
            Err(e) => {
                log.log(Level::Error, &e);
                return Err(StopReason::PolicyRefused);
            }
        },
        None => Policy::default(),
    };
    let output = output
        .or_else(|| policy.output.jsonl.clone())
        .unwrap_or_else(|| dir.join("vigil.jsonl"));
    if let Err(e) = check_output_path(&dir, &output) {
        log.log(Level::Error, &e.to_string());
        return Err(StopReason::OutputUnavailable);
    }
    // Continue the numbering of what the last run wrote (read before the sink opens it).
    let resume = resume_point(Some(&output), |warning| log.log(Level::Warn, &warning));
    let sinks = match open_sinks(&policy, Some(&output), false) {
        Ok(s) => s,
        Err(e) => {
            log.log(Level::Error, &format!("{}: {e}", output.display()));
            return Err(StopReason::OutputUnavailable);
        }
    };
    let Some(mut connector) = platform_connector() else {
        return Err(StopReason::Internal);
    };
    readiness.ready();
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
    // A reload reads the file under the same rule as the start.
    service = service.with_policy_loader(|path| {
        trusted_policy_file(&WindowsFileSecurity, path).map_err(|e| crate::PolicyError {
            line: 0,
            column: 0,
            field: String::new(),
            reason: e.to_string(),
        })?;
        Policy::load(path)
    });
    let mut service = with_platform_process_names(service);
    service
        .run(&mut connector, &SystemClock)
        .map(drop)
        .map_err(|e| StopReason::of(&e))
}
