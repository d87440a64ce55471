//! kernel-sim: runs a real Windows minifilter image (`.sys`) inside a Linux process, with
//! Driver-Verifier-style checks and fault injection. Vigil's `vigil.sys` is its first user;
//! nothing in it is specific to Vigil beyond a few switchable policies.
//!
//! Linux on x86-64 only: the driver's machine code runs natively.
//!
//! # Use
//!
//! ```no_run
//! use vigil_kernel_sim::{Sim, SimConfig, UnloadKind};
//!
//! let sim = Sim::new(SimConfig::default());
//! let mut driver = sim.load("target/driver/vigil/vigil.sys")?;   // maps it, runs DriverEntry
//! assert_eq!(driver.entry_status(), Some(0));
//! driver.unload(UnloadKind::Mandatory)?;                          // FilterUnload, checks, unmap
//! let report = driver.finish();
//! assert!(report.is_clean(), "{}", report.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To load the driver as a user installs it, install its INF first ([`inf::install`]: the
//! `DefaultInstall` section of the build [`SimConfig::windows_build`], applied to
//! [`SimConfig::machine_registry`]); `FltRegisterFilter` then reads the instance configuration
//! where that build's Filter Manager does (RULES.md rule 30).
//!
//! [`sweep()`] runs the fault-injection sweep and [`fltmc`] `fltmc`'s commands; the
//! `kernel-sim` binary wraps them for the command line (`kernel-sim stress`, `soak`, `sweep`,
//! `bench`, `load-unload [--inf INF --windows-build N]`, `fltmc`, `--json FILE`).
//!
//! # Architecture
//!
//! The modules form layers, each importing only from itself and the layers below it (checked
//! by `tests/layers.rs`, which reads every `crate::` path):
//!
//! 1. `config`, `report`, `faults`: the run's configuration (the registry tree and the Windows
//!    build included), the verdict, fault injection;
//! 2. `machine`: pages, pool, guest memory, per-thread CPU state and IRQL, driver stacks and
//!    the stack switch, signal handlers;
//! 3. `image`: the PE loader and symbols, binding imports through a resolver it is given;
//! 4. `kernel`: the dispatcher, objects, counters, the pause, calls into the driver and
//!    `emulate`; what a layer above keeps per kernel sits in an extension slot whose type the
//!    kernel does not know;
//! 5. `ntoskrnl`: one file per routine family, plus its export table;
//! 6. `fltmgr`: its own export table and state (filters, ports, instances, files in flight,
//!    names, contexts, push locks, unload);
//! 7. `world`: what drives the driver from outside (file system, volumes, I/O, the port's
//!    client side, the INF reader and install);
//! 8. `sim`: [`Sim`], [`Driver`] and every public entry point, and the combined export table;
//! 9. `harness`: [`scenario`], [`sweep`](mod@sweep) and [`fltmc`].
//!
//! * **Loader** (`image`, `object` crate): one anonymous mapping of
//!   `SizeOfImage`, sections copied, `DIR64` relocations applied, the import table bound to
//!   emulations from the tables in `ntoskrnl::exports` and `fltmgr::exports`, sections `mprotect`ed to their characteristics.
//!   Refused: imports not emulated (all listed), modules other than `ntoskrnl.exe`,
//!   `FLTMGR.SYS`, `HAL.dll` (`ntoskrnl.exe.dll` included), W+X sections. Unload leaves the
//!   range `PROT_NONE` in a quarantine, so a stale call faults at a known address. Symbols come
//!   from the PDB beside the image (`pdb` crate), else from its exports.
//! * **Calls into the driver** (`machine::switch`, `Kernel::call_driver`): every call runs on a
//!   driver stack (a mapping with a guard page, poisoned with `0xC5` before each call) entered
//!   through a small assembly stack switch (`swapcontext` would make two system calls per
//!   call). The driver's function pointers are `extern "win64"`, so Rust handles the Windows
//!   calling convention. A call that faults, bug-checks or ends its thread is *abandoned*: the
//!   thread resumes on the host stack at the switch's return path, and the run records a
//!   violation; the test process survives.
//! * **Signals** (`machine::signals`): SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGTRAP handlers with
//!   `SA_ONSTACK` and a per-thread alternate stack. They emulate `mov reg, cr8` / `mov cr8,
//!   reg` (the WDK's inline `KeGetCurrentIrql`/`KeLowerIrql`), dispatch access violations at
//!   user-range addresses to the driver's `__except` blocks (the SEH helper's frame shape:
//!   leaf fault, scope table of `__C_specific_handler`, constant filter), and abandon the call
//!   on any other fault, with the driver-relative address and nearest symbol.
//! * **IRQL** (`machine::state`): a per-thread IRQL in a `const` thread-local, readable from the
//!   signal handler. Routines that raise or lower IRQL do (spin locks); every routine checks
//!   its documented limit; a callback must return at the IRQL it was called at.
//! * **Pool** (`machine::pool`): special pool. Each block on its own pages against a `PROT_NONE`
//!   guard, 16-byte aligned, slack checked at free, zeroed or poisoned (`0xA5`) per
//!   `POOL_FLAG_UNINITIALIZED`; freed pages `PROT_NONE` and quarantined; double frees, wrong
//!   tags, bad frees and leaks (by tag, at the end of the run) reported. `PoolKind::Standard`
//!   (in [`SimConfig::for_measurement`], with stack poisoning off) takes blocks from the host
//!   heap between checked slack instead: no guard page or quarantine, everything else kept, so
//!   a benchmark measures the driver rather than `mmap`.
//! * **Objects** (`kernel::objects`, `ntoskrnl`): `DRIVER_OBJECT` and registry path, device objects
//!   (`DO_DEVICE_INITIALIZING` cleared after DriverEntry returns), KEVENTs in the driver's own
//!   memory, waits with the kernel's timeout semantics, spin locks, critical regions, system
//!   threads (real threads on driver stacks; thread objects signalled when the thread stops
//!   running driver code), kernel handles and object references, an emulated registry.
//! * **FltMgr** (`fltmgr`): registration (validated), start, unregister (ports must be closed;
//!   operations in flight drained; instances torn down; contexts and names still referenced
//!   reported), security descriptors, server ports, push locks.
//! * **Volumes and instances** (`fltmgr::instances`, `world::volumes`): [`Driver::mount`] a synthetic volume of a
//!   [`VolumeKind`] (NTFS, ReFS, FAT, exFAT, network, named pipe, mailslot); volumes in
//!   [`IoConfig::volumes`] exist before DriverEntry and are offered at `FltStartFiltering`,
//!   later ones when mounted; InstanceSetup at PASSIVE_LEVEL with the device and file-system
//!   types, `STATUS_FLT_DO_NOT_ATTACH` honoured, pipes and mailslots only offered with
//!   `FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS`; [`Driver::detach`] (InstanceQueryTeardown) and
//!   [`Driver::dismount`] tear down (teardown start, drain, teardown complete). Draining
//!   (`fltmgr::draining`) calls the post of every operation that awaits one with
//!   `FLTFL_POST_OPERATION_DRAINING`, at APC_LEVEL, on a copy of its callback data, and never
//!   again when the I/O completes; a Filter Manager routine given that copy is reported.
//!   [`Driver::hold_file_system`] keeps operations in the file system so a test can tear down
//!   with posts awaited.
//! * **Synthetic I/O** (`world::io`, `world::fs`): [`Driver::io`] gives an [`Io`] for a
//!   [`Requestor`] (process and thread id) with create (every disposition, directories,
//!   delete-on-close), write (paging, APC_LEVEL), rename, hard link, both disposition classes,
//!   cleanup and close, on an in-memory file system per volume. Each operation builds real
//!   `FLT_CALLBACK_DATA`/`FLT_IO_PARAMETER_BLOCK`/`FLT_RELATED_OBJECTS`/`FILE_OBJECT`s and runs
//!   the pre- and post-operation callbacks at Windows' IRQLs (posts optionally at
//!   DISPATCH_LEVEL, [`IoConfig::post_ops_at_dispatch`]). Checked: pre/post statuses,
//!   completion-context misuse, IRQL restored. Requestors cancel some pended operations
//!   ([`IoConfig::cancel_pended`], a [`CancelPolicy`]; `world::cancel`, `fltmgr::cbdq`).
//! * **Names and contexts** (`fltmgr::names`, `fltmgr::contexts`): reference-counted
//!   `FLT_FILE_NAME_INFORMATION` (normalized = canonical, opened = as spelled; failable,
//!   [`IoConfig::fail_normalized_names`]) and stream-handle and instance contexts from the
//!   special pool with the registration's tag. Checked: IRQL, double release, over-release, leaks at
//!   `FltUnregisterFilter`; [`IoStats`] in the report balances them.
//! * **Communication ports** (`fltmgr::ports`, `world::client`): a client side
//!   ([`Sim::connect`] as an [`Account`], refused unless the port's security descriptor admits
//!   it; [`PortConnection`]: get message, reply, commands with user-range
//!   buffers and bad-pointer hooks, close) and a blocking `FltSendMessage` with timeouts and
//!   `STATUS_PORT_DISCONNECTED`, `FltCloseClientPort` synchronized with it through the port
//!   variable. Checked: the disconnect callback closes the client port, no client port is
//!   left at `FltUnregisterFilter`, every message and command reply is scanned for runs of
//!   pool or stack poison (uninitialized bytes sent to user mode), a command's returned length
//!   fits its output buffer, sends have a finite timeout.
//! * **Debug output** (`ntoskrnl::debug`): `DbgPrint`/`DbgPrintEx` lines, formatted as the
//!   debugger shows them, with the entry point that printed them, in
//!   [`Report::debug_output`]; Unicode format codes above PASSIVE_LEVEL are reported.
//! * **Verifier** ([`report`]): each broken rule is a [`Violation`] with a
//!   [`ViolationKind`], the rule's text and a message; the [`Report`] adds pool statistics,
//!   per-routine call counts and the failable-call count, and serializes to JSON.
//! * **Fault injection** ([`faults`]): failable routines count their calls; the N-th (or a
//!   seeded random subset) fails with the routine's documented failure. [`sweep()`] runs every N.
//! * **Scenarios**: [`SimConfig::race_unload_on_register`] calls FilterUnload on another
//!   thread the moment `FltRegisterFilter` returns, and holds DriverEntry until that unload has
//!   returned or blocks in a wait (the worst interleaving, deterministically); teardown calls it
//!   makes before DriverEntry has returned are violations. [`SimConfig::pause_at`] holds the
//!   first call of a routine from one callback until the test releases it through an
//!   [`Observer`] (which also tells when the unload thread blocks and what the driver has
//!   called so far): a callback caught mid-flight, every run. [`scenario`] runs many load/unload cycles, each with
//!   volumes, I/O from several threads and requestors, a port client that drains messages,
//!   sends commands, churns (disconnect/reconnect during I/O) and vanishes with sends pending,
//!   mandatory and optional unloads, unload races and seeded random failures, and sums them up
//!   ([`ScenarioSummary`]); [`scenario::sweep_scenario`] sweeps faults over a whole cycle
//!   (callbacks and the message handler included) and [`scenario::bench`] measures callbacks
//!   per second (`kernel-sim stress`, `soak`, `sweep`, `bench`).

#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod config;
pub mod faults;
pub mod fixtures;
mod fltmgr;
mod harness;
mod image;
mod kernel;
mod machine;
mod ntoskrnl;
pub mod report;
mod sim;
mod world;

pub use config::{
    CancelPolicy, IoConfig, PausePoint, PoolKind, ProcessConfig, Registry, RegistryKey,
    RegistryValue, SimConfig, SuspendPlan, UnloadKind, VolumeKind, WindowsBuild,
};
pub use faults::{FaultPlan, RandomFailures};
pub use fltmgr::instances::VolumeId;
pub use fltmgr::ports::POISON_RUN;
pub use fltmgr::security::Account;
pub use harness::{fltmc, scenario, sweep, verify};
pub use image::LoadError;
pub use kernel::pause::Observer;
pub use machine::pool::{POOL_POISON, SLACK_FILL};
pub use machine::signals::{MM_USER_PROBE_ADDRESS, install as install_fault_handlers};
pub use machine::state::{current_irql, set_irql};
pub use machine::switch::STACK_POISON;
pub use report::{DebugPrint, IoStats, Report, Violation, ViolationKind, status_name};
pub use scenario::{ScenarioConfig, ScenarioSummary, UnloadPlan, run_scenario};
pub use sim::exports::emulated;
pub use sim::processes::NewProcess;
pub use sim::{Driver, Mounter, Sim, UnloadError, UnloadOutcome};
pub use sweep::{SweepReport, SweepRun, sweep};
pub use world::client::{
    CommandResult, ConnectError, ConnectOptions, PortConnection, PortError, RawCommand,
    ReceivedMessage, USER_OUTPUT_FILL, UserPointer,
};
pub use world::fs::notify::{
    FILE_ACTION_ADDED, FILE_ACTION_REMOVED, FILE_ACTION_RENAMED_NEW_NAME,
    FILE_ACTION_RENAMED_OLD_NAME, FILE_NOTIFY_CHANGE_DIR_NAME, FILE_NOTIFY_CHANGE_FILE_NAME,
};
pub use world::inf;
pub use world::io::{
    FileHandle, FileStandard, FileSystemHold, Io, NotifyRecord, Requestor, Transaction, Workout,
    WriteOptions,
};
