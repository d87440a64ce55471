//! The `vigil` command line: `run`, `service install|uninstall|start|stop`, `status`, `stats`,
//! `tail`, `check-policy`. User mode; every command but `service` is portable, and commands that
//! need the driver take their port client from the caller ([`Context::connector`]): on Windows
//! `main` supplies the `fltlib` client, on Linux nothing (they then fail with a clear message)
//! unless an embedding program, such as the kernel-sim demo, supplies its own.
//!
//! Exit codes: 0 success, 1 the command failed (driver unreachable, refused, I/O), 2 bad usage
//! or a refused policy file.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{ClientError, PortClient};
use crate::commands;
use crate::control::{ServiceControl, SystemClock};
use crate::ecs::HostInfo;
use crate::policy::Policy;
use crate::record::RecordFormat;
use crate::service::{Service, ServiceOptions, Summary};
use crate::sink::{HumanSink, JsonlSink, Sink};
use crate::tail::{Follower, print_lines};

/// A connection of any implementation.
pub type BoxedClient = Box<dyn PortClient>;
/// A connector of any implementation (it is a [`Connector`](crate::Connector) too).
pub type BoxedConnector = Box<dyn FnMut() -> Result<BoxedClient, ClientError>>;

/// What the command line runs with.
pub struct Context {
    /// How to reach the driver; `None` where no client exists (Linux without kernel-sim).
    pub connector: Option<BoxedConnector>,
    /// Stops `run` and `tail` (Ctrl-C is wired to it when [`Context::handle_ctrl_c`] is set).
    pub control: ServiceControl,
    /// Install a Ctrl-C handler that requests a stop (once per process; tests leave it off).
    pub handle_ctrl_c: bool,
}

impl Context {
    /// The context `main` uses: this platform's port client, Ctrl-C handled.
    pub fn for_platform() -> Self {
        Self {
            connector: platform_connector(),
            control: ServiceControl::new(),
            handle_ctrl_c: true,
        }
    }
}

/// This platform's port client: the `fltlib.dll` one on Windows, none elsewhere.
pub fn platform_connector() -> Option<BoxedConnector> {
    #[cfg(windows)]
    {
        let mut connector = crate::windows::port::WindowsConnector::default();
        Some(Box::new(move || {
            crate::client::Connector::connect(&mut connector).map(|c| Box::new(c) as BoxedClient)
        }))
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// Vigil's service and tools.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run in this console: connect, write events, answer verdicts; Ctrl-C stops cleanly.
    Run(RunArgs),
    /// Manage the Windows service (Windows only).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Is the driver reachable, which versions, the connection.
    Status,
    /// The driver's counters.
    Stats,
    /// Follow the JSON Lines file, human-readable (coloured on a terminal).
    Tail(TailArgs),
    /// Check a policy file: prints OK, or the line, field and reason of the first problem.
    CheckPolicy {
        /// The policy file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Args, Clone, Default)]
struct RunArgs {
    /// Policy file (TOML); the protocol's defaults without one.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// JSON Lines output (overrides the policy's `[output] jsonl`).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Also print events on standard output, human-readable.
    #[arg(long)]
    stdout: bool,
    /// Wait for the driver to be loaded instead of failing at once.
    #[arg(long)]
    wait: bool,
    /// Field names of the output file: Vigil's JSON Lines, or Elastic Common Schema (ndjson a
    /// stock Filebeat `filestream` input with the `ndjson` parser ingests; docs/ecs.md).
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    format: FormatArg,
}

/// `--format`'s values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// Vigil's own JSON Lines fields (`crate::record`).
    #[default]
    Jsonl,
    /// Elastic Common Schema.
    Ecs,
}

impl From<FormatArg> for RecordFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Jsonl => Self::JsonLines,
            FormatArg::Ecs => Self::Ecs,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Register `vigil` with the service control manager (automatic start, as Local System).
    Install(ServiceArgs),
    /// Stop and remove the service.
    Uninstall,
    /// Start the service.
    Start,
    /// Stop the service (it drains and exits within a few seconds).
    Stop,
    /// Entry point the service control manager starts (not for interactive use).
    #[command(hide = true)]
    Run(ServiceArgs),
}

#[derive(Debug, Args, Clone, Default)]
struct ServiceArgs {
    /// Policy file the service reads (and re-reads on a parameter-change control).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// JSON Lines output (overrides the policy's).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TailArgs {
    /// The JSON Lines file (default: the policy's `[output] jsonl`, else the platform default).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Policy file naming the output.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Print the whole file first instead of starting at its end.
    #[arg(long)]
    from_start: bool,
}

/// Where the service keeps its files by default: `%ProgramData%\Vigil` on Windows.
pub fn default_dir() -> Option<PathBuf> {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        Some(PathBuf::from(base).join("Vigil"))
    } else {
        None
    }
}

/// The process's entry: parses `args` and runs the command. Returns the exit code.
pub fn main(args: impl IntoIterator<Item = OsString>, mut context: Context) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let mut out = io::stdout();
    let mut err = io::stderr();
    execute(cli, &mut context, &mut out, &mut err)
}

/// Runs one parsed command, writing to `out` and `err`.
pub fn execute(cli: Cli, context: &mut Context, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match cli.command {
        Command::CheckPolicy { file } => check_policy(&file, out, err),
        Command::Run(args) => run(&args, context, err),
        Command::Service(command) => service(command, err),
        Command::Status => status(context, out, err),
        Command::Stats => stats(context, out, err),
        Command::Tail(args) => tail(&args, context, out, err),
    }
}

fn check_policy(file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match Policy::load(file) {
        Ok(policy) => {
            let _ = writeln!(
                out,
                "{}: OK ({} rule(s), {} protected prefix(es), default verdict {}, verdict \
                 timeout {} ms, send timeout {} ms, batch size {}, network volumes {})",
                file.display(),
                policy.rules.len(),
                policy.protected_prefixes().len(),
                verdict_word(policy.default_verdict),
                policy.verdict_timeout_ms,
                policy.send_timeout_ms,
                policy.batch_size,
                if policy.attach_network_volumes {
                    "attached"
                } else {
                    "not attached"
                }
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "{}: {e}", file.display());
            2
        }
    }
}

const fn verdict_word(v: vigil_protocol::Verdict) -> &'static str {
    match v {
        vigil_protocol::Verdict::Allow => "allow (fail-open)",
        vigil_protocol::Verdict::Deny => "deny (fail-closed)",
    }
}

fn load_policy(path: Option<&Path>, err: &mut dyn Write) -> Result<Policy, u8> {
    match path {
        None => Ok(Policy::default()),
        Some(path) => Policy::load(path).map_err(|e| {
            let _ = writeln!(err, "{}: {e}", path.display());
            2
        }),
    }
}

/// Where to continue the numbering of the JSON Lines file at `output`, which a previous run
/// (perhaps one that crashed) wrote: the console and the Windows service both start from it. A
/// file that cannot be read is reported through `warn` (naming it) and numbering starts afresh;
/// a missing one is simply a first run.
pub fn resume_point(
    output: Option<&Path>,
    warn: impl FnOnce(String),
) -> Option<crate::ResumePoint> {
    let path = output?;
    match crate::record::last_event_position(path) {
        Ok(point) => point,
        Err(e) => {
            warn(format!(
                "{}: cannot read where the last run stopped ({e}); sequence checks start afresh",
                path.display()
            ));
            None
        }
    }
}

/// The sinks `run` and the Windows service write to.
///
/// # Errors
///
/// Opening the JSON Lines file; or nothing to write to.
pub fn open_sinks(
    policy: &Policy,
    output: Option<&Path>,
    stdout: bool,
) -> io::Result<Vec<Box<dyn Sink + Send>>> {
    open_sinks_as(policy, output, stdout, RecordFormat::JsonLines)
}

/// [`open_sinks`], with the output file's records in `format`.
///
/// # Errors
///
/// As [`open_sinks`].
pub fn open_sinks_as(
    policy: &Policy,
    output: Option<&Path>,
    stdout: bool,
    format: RecordFormat,
) -> io::Result<Vec<Box<dyn Sink + Send>>> {
    let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
    if let Some(path) = output
        .map(Path::to_path_buf)
        .or(policy.output.jsonl.clone())
    {
        let sink = JsonlSink::open(policy.output.jsonl_options(path))?
            .with_format(format, HostInfo::current());
        sinks.push(Box::new(sink));
    }
    if stdout {
        sinks.push(Box::new(HumanSink::stdout()));
    }
    if sinks.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to write events to: give --output FILE or --stdout, or `[output] jsonl` in \
             the policy",
        ));
    }
    Ok(sinks)
}

fn no_client(err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "vigil: {}", ClientError::Unsupported);
    1
}

fn run(args: &RunArgs, context: &mut Context, err: &mut dyn Write) -> u8 {
    let policy = match load_policy(args.policy.as_deref(), err) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(connector) = context.connector.as_mut() else {
        return no_client(err);
    };
    let format = RecordFormat::from(args.format);
    let sinks = match open_sinks_as(&policy, args.output.as_deref(), args.stdout, format) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "vigil: {e}");
            return 2;
        }
    };
    if context.handle_ctrl_c {
        let control = context.control.clone();
        if let Err(e) = ctrlc::set_handler(move || control.request_stop()) {
            let _ = writeln!(err, "vigil: warning: Ctrl-C will not stop cleanly: {e}");
        }
    }
    let options = ServiceOptions {
        wait_for_driver: args.wait,
        ..ServiceOptions::default()
    };
    let output = args.output.clone().or_else(|| policy.output.jsonl.clone());
    let resume = resume_point(output.as_deref(), |warning| {
        let _ = writeln!(err, "vigil: warning: {warning}");
    });
    let mut service = Service::new(policy, sinks, options)
        .with_control(context.control.clone())
        .with_resume(resume);
    if let Some(path) = &args.policy {
        service = service.with_policy_path(path);
    }
    service = with_platform_process_names(service);
    match service.run(connector, &SystemClock) {
        Ok(summary) => {
            print_summary(err, &summary);
            0
        }
        Err(e) => {
            let _ = writeln!(err, "vigil: {e}");
            1
        }
    }
}

/// Gives the core this platform's process-name lookup (for `except_processes`).
pub fn with_platform_process_names<S: Sink + Send>(service: Service<S>) -> Service<S> {
    #[cfg(windows)]
    {
        service.with_process_names(crate::windows::process::WindowsProcessNames)
    }
    #[cfg(not(windows))]
    {
        service
    }
}

fn print_summary(err: &mut dyn Write, summary: &Summary) {
    let c = &summary.counters;
    let _ = writeln!(
        err,
        "summary: {} events written ({} batches), {} gaps / {} events missing, {} duplicates \
         skipped, verdicts {} allowed / {} denied, {} connection(s), {} disconnect(s), {} \
         driver instance(s)",
        c.events_written,
        c.batches,
        c.gaps,
        c.events_missing,
        c.duplicates,
        c.verdicts_allowed,
        c.verdicts_denied,
        c.connections,
        c.disconnects,
        c.driver_instances
    );
    if let Some(s) = &summary.driver_stats {
        let _ = writeln!(
            err,
            "driver: {} generated, {} delivered, {} dropped",
            s.events_generated,
            s.events_delivered,
            s.dropped_total()
        );
    }
}

#[cfg_attr(
    not(windows),
    expect(
        clippy::needless_pass_by_value,
        reason = "consumed by the Windows branch only"
    )
)]
fn service(command: ServiceCommand, err: &mut dyn Write) -> u8 {
    #[cfg(windows)]
    {
        let result = match command {
            ServiceCommand::Install(args) => {
                crate::windows::scm::install(args.policy.as_deref(), args.output.as_deref())
            }
            ServiceCommand::Uninstall => crate::windows::scm::uninstall(),
            ServiceCommand::Start => crate::windows::scm::start(),
            ServiceCommand::Stop => crate::windows::scm::stop(),
            ServiceCommand::Run(args) => {
                crate::windows::scm::run_dispatcher(args.policy, args.output)
            }
        };
        match result {
            Ok(message) => {
                let _ = writeln!(err, "{message}");
                0
            }
            Err(e) => {
                let _ = writeln!(err, "vigil: {e}");
                1
            }
        }
    }
    #[cfg(not(windows))]
    {
        let _ = command;
        let _ = writeln!(
            err,
            "vigil: `vigil service` manages the Windows service and works only on Windows; here, \
             use `vigil run`"
        );
        1
    }
}

fn connect_for_command(context: &mut Context, err: &mut dyn Write) -> Result<BoxedClient, u8> {
    let Some(connector) = context.connector.as_mut() else {
        return Err(no_client(err));
    };
    connector().map_err(|e| {
        let _ = writeln!(err, "vigil: {e}");
        if e == ClientError::Busy {
            let _ = writeln!(
                err,
                "vigil: the port admits one client; while the Vigil service runs, its summary \
                 and the JSON Lines file (`vigil tail`) are the way in"
            );
        }
        1
    })
}

fn status(context: &mut Context, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    #[cfg(windows)]
    {
        let _ = writeln!(
            out,
            "service: {}",
            crate::windows::scm::state().unwrap_or_else(|e| e)
        );
    }
    let mut client = match connect_for_command(context, err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = commands::hello(&mut client, u64::from(std::process::id()))
        .and_then(|hello| commands::stats(&mut client).map(|stats| (hello, stats)));
    client.close();
    match result {
        Ok((hello, stats)) => {
            let service = vigil_protocol::Version::CURRENT;
            let _ = writeln!(
                out,
                "driver: reachable (port {})\nprotocol: driver {}.{}, service {}.{} (compatible)\n\
                 ring: {} KiB, largest message {} bytes\nconnections since load: {} (this one \
                 included), disconnects {}",
                vigil_protocol::PORT_NAME,
                hello.version.major,
                hello.version.minor,
                service.major,
                service.minor,
                hello.ring_capacity_bytes / 1024,
                hello.max_message_size,
                stats.connections,
                stats.disconnects
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "vigil: {e}");
            1
        }
    }
}

fn stats(context: &mut Context, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut client = match connect_for_command(context, err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = commands::hello(&mut client, u64::from(std::process::id()))
        .and_then(|_| commands::stats(&mut client));
    client.close();
    match result {
        Ok(s) => {
            let rows: [(&str, u64); 20] = [
                ("events generated", s.events_generated),
                ("events delivered", s.events_delivered),
                ("dropped: ring full", s.dropped_ring_full),
                ("dropped: too large", s.dropped_too_large),
                ("dropped: no memory", s.dropped_no_memory),
                ("dropped: send timeout", s.dropped_send_timeout),
                ("dropped: no service", s.dropped_disconnected),
                ("dropped: total", s.dropped_total()),
                ("batches sent", s.batches_sent),
                ("verdicts allowed", s.verdicts_allowed),
                ("verdicts denied", s.verdicts_denied),
                ("verdicts defaulted open", s.verdicts_defaulted_open),
                ("verdicts defaulted closed", s.verdicts_defaulted_closed),
                ("verdict timeouts", s.verdict_timeouts),
                ("connections", s.connections),
                ("disconnects", s.disconnects),
                ("allocation failures", s.allocation_failures),
                ("name query failures", s.name_query_failures),
                ("process table overflows", s.process_table_overflows),
                ("process records dropped", s.process_records_dropped),
            ];
            for (name, value) in rows {
                let _ = writeln!(out, "{name:<26} {value}");
            }
            0
        }
        Err(e) => {
            let _ = writeln!(err, "vigil: {e}");
            1
        }
    }
}

fn tail(args: &TailArgs, context: &Context, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let policy = match load_policy(args.policy.as_deref(), err) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = args
        .file
        .clone()
        .or(policy.output.jsonl)
        .or_else(|| default_dir().map(|d| d.join("vigil.jsonl")));
    let Some(file) = file else {
        let _ = writeln!(
            err,
            "vigil: which file? give --file FILE (or a policy with `[output] jsonl`)"
        );
        return 2;
    };
    let mut follower = match Follower::new(&file, args.from_start) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(err, "vigil: {}: {e}", file.display());
            return 1;
        }
    };
    if context.handle_ctrl_c {
        let control = context.control.clone();
        let _ = ctrlc::set_handler(move || control.request_stop());
    }
    let color = !matches!(
        anstream::stdout().current_choice(),
        anstream::ColorChoice::Never
    );
    loop {
        match follower.poll() {
            Ok(lines) => {
                if print_lines(out, &lines, color).is_err() {
                    return 0; // the reader went away (a closed pipe)
                }
            }
            Err(e) => {
                let _ = writeln!(err, "vigil: {}: {e}", follower.path().display());
                return 1;
            }
        }
        // A poll that stopped at its budget has more to read: no pause before the next.
        let pause = if follower.caught_up() {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        };
        if context.control.sleep_unless_stopped(pause) {
            return 0;
        }
    }
}
