//! `vigil-demo` (`cargo xtask demo`): the real `vigil.sys` in kernel-sim with two synthetic
//! volumes, a scripted workload from several processes, the service core connected through
//! kernel-sim's client with a policy that denies a protected tree, a live event stream, a
//! driver unload and reload in the middle that the service rides through, and a summary.
//! Exits non-zero on any kernel-sim violation or leaked byte. Linux only; user mode.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    demo::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("vigil-demo runs the driver in kernel-sim: Linux x86-64 only");
    std::process::ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
mod demo {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use anstream::println;
    use anstyle::{AnsiColor, Effects, Style};
    use clap::Parser;
    use vigil_demo::jsonl::read_jsonl;
    use vigil_demo::machine::{InstanceReport, Machine};
    use vigil_demo::service_thread::{ServiceHandle, ServiceSetup, WatchLog};
    use vigil_demo::workload::{
        PROCESSES, SECRET, combined, demo_policy_toml, phase_one, phase_two, process_names,
    };
    use vigil_kernel_sim::WindowsBuild;
    use vigil_kernel_sim::fixtures::{FAT, NTFS};
    use vigil_service::{HumanSink, JsonlSink, Level, Log, Policy, Sink, Summary};

    /// Runs the real vigil.sys in kernel-sim with the service, a workload and a reload.
    #[derive(Parser)]
    #[command(name = "vigil-demo")]
    struct Args {
        /// The driver image (`cargo xtask build` prints its path).
        #[arg(long)]
        image: PathBuf,
        /// Where the policy and the JSON Lines file go.
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
        /// The INF installed before the first load (default: `vigil.inf` beside the image,
        /// as `cargo xtask build` writes it).
        #[arg(long)]
        inf: Option<PathBuf>,
        /// The Windows build the install and Filter Manager emulate (19041, 22621, 26100).
        #[arg(long, default_value_t = 26100)]
        windows_build: u32,
        /// Pause after each operation of the workload, in milliseconds (0: full speed).
        #[arg(long, default_value_t = 450)]
        pace_ms: u64,
    }

    /// Longest wait for the service or the driver at any step.
    const WAIT: Duration = Duration::from_secs(20);

    fn style(color: AnsiColor) -> Style {
        Style::new().fg_color(Some(anstyle::Color::Ansi(color)))
    }

    fn banner(text: &str) {
        let s = style(AnsiColor::Magenta).effects(Effects::BOLD);
        println!("{s}==> {text}{s:#}");
    }

    /// The service's log lines worth seeing on the terminal, styled.
    struct TerminalLog {
        connections: usize,
    }

    impl Log for TerminalLog {
        fn log(&mut self, level: Level, message: &str) {
            let (tag, s) = if message.starts_with("denied:") {
                ("", style(AnsiColor::Red).effects(Effects::BOLD))
            } else {
                match level {
                    Level::Info => ("service: ", style(AnsiColor::Blue)),
                    Level::Warn => ("service: ", style(AnsiColor::Yellow)),
                    Level::Error => ("service error: ", style(AnsiColor::Red)),
                }
            };
            if message.starts_with("connected:") {
                self.connections += 1;
                if self.connections > 1 {
                    let b = style(AnsiColor::Green).effects(Effects::BOLD);
                    println!(
                        "{b}service reconnected (connection {}){b:#}",
                        self.connections
                    );
                }
            }
            println!("{s}{tag}{message}{s:#}");
        }
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        match run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(message) => {
                eprintln!("vigil-demo: {message}");
                ExitCode::FAILURE
            }
        }
    }

    fn run(args: &Args) -> Result<bool, String> {
        let started = Instant::now();
        let pace = Duration::from_millis(args.pace_ms);
        std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
        let policy_path = args.out.join("policy.toml");
        let jsonl_path = args.out.join("vigil.jsonl");
        std::fs::write(&policy_path, demo_policy_toml("allow"))
            .map_err(|e| format!("{}: {e}", policy_path.display()))?;
        for stale in [jsonl_path.clone(), args.out.join("vigil.jsonl.1")] {
            let _ = std::fs::remove_file(stale);
        }
        let policy = Policy::load(&policy_path).map_err(|e| e.to_string())?;

        banner(&format!(
            "vigil.sys in kernel-sim: {} (policy {})",
            args.image.display(),
            policy_path.display()
        ));
        let inf = args
            .inf
            .clone()
            .unwrap_or_else(|| args.image.with_file_name("vigil.inf"));
        let build = WindowsBuild(args.windows_build);
        let mut machine = Machine::installed(&args.image, &inf, build)?;
        println!(
            "installed {} on Windows {build} (pnputil /add-driver vigil.inf /install)",
            inf.display()
        );
        let volumes = machine.load()?;
        println!(
            "DriverEntry returned STATUS_SUCCESS; vigil attached to {NTFS} (NTFS) and {FAT} (FAT)"
        );

        let sinks: Vec<Box<dyn Sink + Send>> = vec![
            Box::new(
                JsonlSink::open(policy.output.jsonl_options(&jsonl_path))
                    .map_err(|e| format!("{}: {e}", jsonl_path.display()))?,
            ),
            Box::new(HumanSink::stdout()),
        ];
        let mut setup = ServiceSetup::new(policy, sinks);
        setup.log = WatchLog::forwarding(TerminalLog { connections: 0 });
        setup.names = process_names();
        let service = ServiceHandle::start(machine.sim(), setup);
        if !service.wait_connected(1, WAIT) {
            return Err("the service did not connect".into());
        }

        banner(&format!(
            "workload: {} on {NTFS}{SECRET} is denied to all but backup.exe",
            PROCESSES
                .iter()
                .map(|(pid, name, tids)| format!("{name} (pid {pid}, {} thread(s))", tids.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let first = phase_one(machine.driver(), volumes, pace);
        let stats_1 = service
            .wait_drained(WAIT)
            .ok_or("no counters from the driver")?;

        banner("driver unloading (fltmc unload vigil), the service keeps running");
        let report = machine.unload(Some(stats_1))?;
        println!(
            "unloaded: {} violation(s), {} byte(s) leaked",
            report.report.violations.len(),
            report.report.pool.leaked_bytes
        );
        std::thread::sleep(Duration::from_millis(400));
        banner("loading the same vigil.sys again (fltmc load vigil), volumes mounted again");
        let volumes = machine.load()?;
        if !service.wait_connected(2, WAIT) {
            return Err("the service did not reconnect".into());
        }
        let second = phase_two(machine.driver(), volumes, pace);
        let stats_2 = service
            .wait_drained(WAIT)
            .ok_or("no counters from the driver")?;

        banner("stopping the service, unloading the driver");
        let summary = service.stop().map_err(|e| e.to_string())?;
        machine.unload(Some(stats_2))?;
        let instances = machine.finish();
        let workload = combined(first, second);
        let contents =
            read_jsonl(&jsonl_path).map_err(|e| format!("{}: {e}", jsonl_path.display()))?;
        Ok(print_summary(
            &instances,
            &summary,
            workload.event_count(),
            (contents.events.len(), contents.gaps.len(), &jsonl_path),
            started.elapsed(),
        ))
    }

    /// Prints the summary; `true` when kernel-sim found nothing wrong.
    fn print_summary(
        instances: &[InstanceReport],
        summary: &Summary,
        expected_events: usize,
        (file_events, file_gaps, path): (usize, usize, &PathBuf),
        elapsed: Duration,
    ) -> bool {
        let head = Style::new().effects(Effects::BOLD);
        println!();
        println!("{head}summary{head:#} ({:.1} s)", elapsed.as_secs_f64());
        // Generated, delivered, dropped, defaulted verdicts: over every driver instance.
        let mut total = [0u64; 4];
        for (n, instance) in instances.iter().enumerate() {
            let Some(s) = instance.stats else {
                println!("  driver instance {}: no counters", n + 1);
                continue;
            };
            println!(
                "  driver instance {}: {} events generated, {} delivered, {} dropped \
                 (ring full {}, send timeout {}, no service {}); verdicts {} allowed, {} denied, \
                 {} defaulted",
                n + 1,
                s.events_generated,
                s.events_delivered,
                s.dropped_total(),
                s.dropped_ring_full,
                s.dropped_send_timeout,
                s.dropped_disconnected,
                s.verdicts_allowed,
                s.verdicts_denied,
                s.verdicts_defaulted_open + s.verdicts_defaulted_closed
            );
            let this: [u64; 4] = [
                s.events_generated,
                s.events_delivered,
                s.dropped_total(),
                s.verdicts_defaulted_open + s.verdicts_defaulted_closed,
            ];
            for (sum, value) in total.iter_mut().zip(this) {
                *sum += value;
            }
        }
        let c = &summary.counters;
        println!(
            "  events: {} generated, {} delivered, {} dropped; the workload expected {}",
            total[0], total[1], total[2], expected_events
        );
        println!(
            "  service: {} events written in {} batches over {} connection(s) to {} driver \
             instance(s); {} gap(s), {} event(s) missing, {} duplicate(s)",
            c.events_written,
            c.batches,
            c.connections,
            c.driver_instances,
            c.gaps,
            c.events_missing,
            c.duplicates
        );
        println!(
            "  {}: {file_events} event records, {file_gaps} gap records",
            path.display()
        );
        println!(
            "  verdicts: {} allowed, {} denied by the service; {} defaulted by the driver",
            c.verdicts_allowed, c.verdicts_denied, total[3]
        );
        let violations: Vec<_> = instances
            .iter()
            .flat_map(|i| i.report.violations.iter())
            .collect();
        let leaked: u64 = instances.iter().map(|i| i.report.pool.leaked_bytes).sum();
        let clean = violations.is_empty() && leaked == 0;
        let verdict = if clean {
            style(AnsiColor::Green).effects(Effects::BOLD)
        } else {
            style(AnsiColor::Red).effects(Effects::BOLD)
        };
        println!(
            "  {verdict}kernel-sim: {} violation(s), {leaked} byte(s) leaked over {} driver \
             instance(s){verdict:#}",
            violations.len(),
            instances.len()
        );
        for v in violations {
            println!("    {v}");
        }
        clean
    }
}
