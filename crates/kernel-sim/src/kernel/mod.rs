//! The world of one loaded driver: its pool, objects, handles, filter state and violations,
//! and the two doors between kernel-sim and the driver:
//!
//! * [`Kernel::call_driver`]: kernel-sim calls a driver function (DriverEntry, a filter or port
//!   callback, a system thread's start routine). The call runs on a driver stack at a chosen
//!   IRQL; when it returns, the callback contract is checked (IRQL restored, critical regions
//!   balanced); when it faults or bug-checks, it is abandoned and reported.
//! * [`emulate`]: the driver calls an emulated routine. The routine finds its kernel through
//!   the thread-local state set by `call_driver`, counts the call, checks the routine's
//!   documented IRQL, and runs its body; a panic in kernel-sim's own code becomes an `Internal`
//!   violation instead of unwinding through driver frames.

pub(crate) mod apc;
pub(crate) mod check;
pub(crate) mod counters;
pub(crate) mod objects;
pub(crate) mod pause;
pub(crate) mod processes;
pub(crate) mod routine;
pub(crate) mod sharded;

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::config::SimConfig;
use crate::faults::FaultInjector;
use crate::image::SectionInfo;
use crate::image::symbols::Symbols;
use crate::machine::guest::{GuestAlloc, GuestUnicode};
use crate::machine::pages::quarantine;
use crate::machine::pool::{Pool, PoolPlace, tag_text};
use crate::machine::state::{self, Abandon, ImageBounds};
use crate::machine::switch::{self, Ended};
use crate::report::{Violation, ViolationKind};

/// Locks a mutex, ignoring poisoning (a panic in one driver call must not wedge the run).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value of a mutex reached through exclusive access (no lock taken), ignoring poisoning.
pub(crate) fn exclusive<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// IRQL names for messages.
pub(crate) fn irql_name(irql: u8) -> String {
    match irql {
        0 => "PASSIVE_LEVEL".into(),
        1 => "APC_LEVEL".into(),
        2 => "DISPATCH_LEVEL".into(),
        other => format!("IRQL {other}"),
    }
}

/// One line of an exporting module's table (`ntoskrnl::exports`, `fltmgr::exports`): the
/// name a driver imports and a function giving the address to bind.
pub(crate) type Export = (&'static str, fn() -> usize);

/// The IRQL a routine may be called at, from its reference page.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IrqlRule {
    /// Any IRQL.
    Any,
    /// At most this IRQL.
    AtMost(u8),
    /// Exactly this IRQL.
    Exactly(u8),
}

/// The dispatcher: one condition variable for every waitable object of the run, and a
/// generation counter bumped (under its lock) by every signal state change.
///
/// Signal states live in driver memory, which the driver may free while a thread waits (a bug
/// kernel-sim must survive): waiters therefore test their condition *without* holding the lock,
/// so that a fault there abandons the call holding nothing, and the generation closes the
/// window between that test and the sleep.
#[derive(Debug, Default)]
pub(crate) struct Dispatcher {
    pub lock: Mutex<u64>,
    pub changed: Condvar,
}

/// Load/unload bookkeeping (RULES.md, rule 1).
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// DriverEntry is running.
    pub in_entry: AtomicBool,
    /// DriverEntry has returned (the I/O manager has control again).
    pub entry_returned: AtomicBool,
    /// The racing unload thread has been started.
    pub race_started: AtomicBool,
    /// The racing unload thread, if started.
    pub race: Mutex<Option<std::thread::JoinHandle<RawUnload>>>,
    /// The racing unload thread has entered a wait (it is blocked, as a correct unload is until
    /// DriverEntry completes).
    pub race_waiting: AtomicBool,
    /// Times the unload callback's thread went to sleep in a wait (one satisfied at once does
    /// not count): a test holding a callback watches it to know the unload got as far as it can.
    pub unload_blocks: AtomicU64,
}

/// What running the filter's unload callback produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawUnload {
    /// The callback returned this status.
    Status(i32),
    /// The callback was abandoned (fault, bug check).
    Abandoned,
    /// There is no registered filter with an unload callback.
    NoCallback,
}

/// The first emulated thread id kernel-sim allocates. Tests and the harness give the synthetic
/// I/O's requestors their own thread ids (`Requestor::tid`, all far below this), and two
/// threads with one id would share push-lock ownership and the like: ids allocated from
/// 0x1000, as they once were, reached the harness's requestor ids (5000 and up) after a few
/// hundred threads, and a driver thread was then taken for an I/O thread holding its lock.
pub(crate) const FIRST_ALLOCATED_THREAD_ID: usize = 0x0100_0000;

static NEXT_THREAD_ID: AtomicUsize = AtomicUsize::new(FIRST_ALLOCATED_THREAD_ID);

/// A fresh emulated thread id (never below [`FIRST_ALLOCATED_THREAD_ID`]).
pub(crate) fn allocate_thread_id() -> usize {
    NEXT_THREAD_ID.fetch_add(4, Ordering::Relaxed)
}

/// Gives the current OS thread an emulated thread id if it has none.
pub(crate) fn ensure_thread_id() -> usize {
    state::with(|s| {
        if s.thread_id.get() == 0 {
            s.thread_id.set(allocate_thread_id());
        }
        s.thread_id.get()
    })
}

/// One loaded driver's world.
pub(crate) struct Kernel {
    me: Weak<Kernel>,
    /// The configuration of the run.
    pub config: SimConfig,
    /// The image's file name, for messages.
    pub image_name: String,
    /// The mapped image.
    pub bounds: ImageBounds,
    sections: Vec<SectionInfo>,
    symbols: Symbols,
    violations: Mutex<Vec<Violation>>,
    /// Fault injection.
    pub faults: FaultInjector,
    /// The special pool.
    pub pool: Mutex<Pool>,
    /// Waitable objects.
    pub dispatcher: Dispatcher,
    /// Handles, threads, devices.
    pub objects: Mutex<objects::Objects>,
    /// Processes and process-notify routines.
    pub(crate) processes: Mutex<processes::Processes>,
    /// State the layers above keep per kernel (Filter Manager's), created by its first user;
    /// the kernel never looks inside (see [`Kernel::extension`]).
    extension: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Load/unload state.
    pub lifecycle: Lifecycle,
    driver_calls: counters::ShardedCount,
    /// Calls per routine (lock-free: every emulated call counts itself).
    routine_calls: counters::RoutineCounters,
    /// The test's hold on one callback (`SimConfig::pause_at`, armed by the layer that knows
    /// the routines' names: see `Pause::arm`).
    pub(crate) pause: pause::Pause,
    /// The `DRIVER_OBJECT` handed to DriverEntry.
    pub driver_object: GuestAlloc,
    /// The registry path handed to DriverEntry.
    pub registry_path: GuestUnicode,
    /// A call was abandoned: the driver is in the state a bug check would have frozen.
    pub crashed: AtomicBool,
    seh_dispatches: AtomicU64,
    /// Threads suspended by `SimConfig::suspend` (see `apc`).
    pub(crate) suspensions: apc::Suspensions,
    /// What the driver printed (`DbgPrint`, `DbgPrintEx`).
    pub(crate) debug_output: Mutex<crate::report::DebugOutput>,
}

impl Kernel {
    pub(crate) fn new(
        config: SimConfig,
        image_name: String,
        bounds: ImageBounds,
        sections: Vec<SectionInfo>,
        symbols: Symbols,
    ) -> Arc<Self> {
        let registry_path = GuestUnicode::new(&config.service_key_path());
        let pool_kind = config.pool;
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            faults: FaultInjector::new(config.faults.clone()),
            config,
            image_name,
            bounds,
            sections,
            symbols,
            violations: Mutex::new(Vec::new()),
            pool: Mutex::new(Pool::new(pool_kind)),
            dispatcher: Dispatcher::default(),
            objects: Mutex::new(objects::Objects::default()),
            processes: Mutex::new(processes::Processes::default()),
            extension: OnceLock::new(),
            lifecycle: Lifecycle::default(),
            driver_calls: counters::ShardedCount::default(),
            routine_calls: counters::RoutineCounters::default(),
            pause: pause::Pause::default(),
            driver_object: GuestAlloc::for_type::<vigil_sys::DRIVER_OBJECT>(0),
            registry_path,
            crashed: AtomicBool::new(false),
            seh_dispatches: AtomicU64::new(0),
            debug_output: Mutex::new(crate::report::DebugOutput::default()),
            suspensions: apc::Suspensions::default(),
        })
    }

    /// A strong reference to this kernel (for threads it starts).
    pub(crate) fn arc(&self) -> Arc<Self> {
        self.me
            .upgrade()
            .expect("the kernel is alive while its routines run")
    }

    /// The per-kernel state of a layer above, of type `T`, made by `init` on first use. One
    /// layer owns the slot (Filter Manager); the kernel below it holds the state without
    /// knowing its type, which keeps the layers acyclic.
    ///
    /// # Panics
    ///
    /// If the slot already holds a state of another type (a second owner: a kernel-sim bug).
    pub(crate) fn extension<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> &T {
        self.extension
            .get_or_init(|| Box::new(init()))
            .downcast_ref::<T>()
            .expect("one layer owns the kernel's extension slot")
    }

    // ----- violations -------------------------------------------------------------------

    /// Records a violation, attributed to the routine and callback in progress on this thread.
    pub(crate) fn violation(
        &self,
        kind: ViolationKind,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.record(kind, rule.into(), message.into(), false);
    }

    /// Records a violation that ends the driver call.
    pub(crate) fn fatal(
        &self,
        kind: ViolationKind,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.record(kind, rule.into(), message.into(), true);
    }

    fn record(&self, kind: ViolationKind, rule: String, message: String, fatal: bool) {
        let (routine, callback) = state::with(|s| (s.routine.get(), s.callback.get()));
        lock(&self.violations).push(Violation {
            kind,
            rule,
            message,
            routine: routine.to_owned(),
            callback: callback.to_owned(),
            fatal,
        });
    }

    /// Every violation so far.
    pub(crate) fn violations(&self) -> Vec<Violation> {
        lock(&self.violations).clone()
    }

    /// Counts one emulated routine call.
    fn count_routine(&self, routine: routine::Routine) {
        self.routine_calls.count(routine);
    }

    /// Calls per routine.
    pub(crate) fn routine_calls(&self) -> BTreeMap<String, u64> {
        self.routine_calls.snapshot()
    }

    /// Driver calls made.
    pub(crate) fn driver_calls(&self) -> u64 {
        self.driver_calls.total()
    }

    /// SEH dispatches made.
    pub(crate) fn seh_dispatches(&self) -> u64 {
        self.seh_dispatches.load(Ordering::Relaxed)
    }

    /// This thread is about to sleep in a wait: counted when it is the unload callback's
    /// (see `Lifecycle::unload_blocks`).
    pub(crate) fn note_blocking_wait(&self) {
        if state::with(|s| s.unload_thread.get()) {
            self.lifecycle.unload_blocks.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Checks `rule` against the current IRQL and records a violation naming `routine`.
    pub(crate) fn check_irql(&self, routine: &str, rule: IrqlRule) {
        let irql = state::current_irql();
        let ok = match rule {
            IrqlRule::Any => true,
            IrqlRule::AtMost(max) => irql <= max,
            IrqlRule::Exactly(level) => irql == level,
        };
        if !ok {
            // Formatted only on a violation: this check runs on every emulated routine.
            let text = match rule {
                IrqlRule::Any => String::new(),
                IrqlRule::AtMost(max) => format!("IRQL <= {}", irql_name(max)),
                IrqlRule::Exactly(level) => format!("IRQL == {}", irql_name(level)),
            };
            self.violation(
                ViolationKind::Irql,
                format!("{routine}: {text}"),
                format!("called at {}", irql_name(irql)),
            );
        }
    }

    /// Fault injection: whether this failable call of `routine` fails with `status`.
    pub(crate) fn inject_failure(&self, routine: &str, status: &str) -> bool {
        let callback = state::with(|s| s.callback.get());
        self.faults.should_fail(routine, status, callback)
    }

    /// Flags a teardown call made by the unload thread while DriverEntry is still running
    /// (RULES.md, rule 1: the field crash of unload racing DriverEntry).
    pub(crate) fn check_teardown_race(&self, what: &str) {
        let unload_thread = state::with(|s| s.unload_thread.get());
        if unload_thread && !self.lifecycle.entry_returned.load(Ordering::Acquire) {
            self.violation(
                ViolationKind::UnloadRace,
                "RULES.md 1: unload waits until DriverEntry has returned",
                format!("{what} called by the unload callback while DriverEntry was still running"),
            );
        }
    }

    // ----- calls into the driver --------------------------------------------------------

    /// Calls driver code: runs `f` (which calls a driver function pointer) on the driver
    /// stack, at `irql` (or the current IRQL for `None`), as entry point `callback`. Returns
    /// `None` if the call was abandoned (fault, bug check, thread termination, deadlock); the
    /// violation is already recorded.
    pub(crate) fn call_driver<R>(
        &self,
        callback: &'static str,
        irql: Option<u8>,
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        ensure_thread_id();
        let saved = state::with(|s| {
            let saved = (
                s.owner.get(),
                s.image.get(),
                s.callback.get(),
                s.routine.get(),
                s.irql.get(),
            );
            s.owner.set(std::ptr::from_ref(self).cast());
            s.image.set(self.bounds);
            s.callback.set(callback);
            s.routine.set("");
            if let Some(level) = irql {
                s.irql.set(level);
            }
            saved
        });
        let outermost = state::with(|s| s.depth.get()) == 0;
        let irql_before = state::current_irql();
        let critical_before = state::with(|s| s.critical_regions.get());
        let seh_before = state::with(|s| s.seh_dispatches.get());
        self.driver_calls.add(1);

        let mut result = None;
        let mut f = Some(f);
        let mut body = || {
            if let Some(f) = f.take() {
                match std::panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(value) => result = Some(value),
                    Err(_) => self.violation(
                        ViolationKind::Internal,
                        "kernel-sim",
                        format!("panic while calling {callback}"),
                    ),
                }
            }
        };
        let ended = switch::run_on_driver_stack(
            self.config.stack_size,
            self.config.stack_poison_len,
            &mut body,
        );

        let seh = state::with(|s| s.seh_dispatches.get()) - seh_before;
        if seh != 0 {
            self.seh_dispatches.fetch_add(seh, Ordering::Relaxed);
        }
        match ended {
            Ended::Returned => {
                let irql_after = state::current_irql();
                if irql_after != irql_before {
                    self.violation(
                        ViolationKind::CallbackContract,
                        "a callback returns at the IRQL it was called at",
                        format!(
                            "{callback} was called at {} and returned at {}",
                            irql_name(irql_before),
                            irql_name(irql_after)
                        ),
                    );
                }
                let critical_after = state::with(|s| s.critical_regions.get());
                if critical_after != critical_before {
                    self.violation(
                        ViolationKind::CallbackContract,
                        "KeEnterCriticalRegion/KeLeaveCriticalRegion balanced in a callback",
                        format!("{callback} returned with {critical_after} critical region(s) entered, called with {critical_before}"),
                    );
                }
            }
            Ended::Abandoned(reason) => {
                debug_assert!(outermost, "only the outermost call sees an abandonment");
                self.report_abandon(reason, callback);
                if reason != Abandon::Terminated {
                    result = None;
                    self.crashed.store(true, Ordering::Release);
                }
            }
        }
        state::with(|s| {
            s.owner.set(saved.0);
            s.image.set(saved.1);
            s.callback.set(saved.2);
            s.routine.set(saved.3);
            s.critical_regions.set(critical_before);
            s.irql.set(saved.4);
        });
        result
    }

    fn report_abandon(&self, reason: Abandon, callback: &'static str) {
        match reason {
            Abandon::Fault => {
                let (signal, code, rip, addr, routine) = state::with(|s| {
                    (
                        s.fault.signal.get(),
                        s.fault.code.get(),
                        s.fault.rip.get(),
                        s.fault.addr.get(),
                        s.routine.get(),
                    )
                });
                let what = match signal {
                    libc::SIGSEGV if code == 0x80 => "general-protection fault".to_owned(),
                    libc::SIGSEGV => "access violation".to_owned(),
                    libc::SIGBUS => "bus error".to_owned(),
                    libc::SIGILL => "illegal instruction".to_owned(),
                    libc::SIGFPE => "arithmetic exception (division by zero?)".to_owned(),
                    libc::SIGTRAP => "breakpoint".to_owned(),
                    other => format!("signal {other}"),
                };
                let at = if self.bounds.contains(rip) {
                    // A call into the image after it was unmapped (a callback left registered).
                    let gone = if quarantine::contains(rip) {
                        " in the unloaded image"
                    } else {
                        ""
                    };
                    format!("at {}{gone}", self.describe_code(rip))
                } else if !routine.is_empty() {
                    format!(
                        "in kernel-sim's {routine} (rip {rip:#x}): the driver passed it a bad pointer"
                    )
                } else {
                    format!(
                        "at {rip:#x}, outside the image{}",
                        if quarantine::contains(rip) {
                            " (unloaded or freed memory)"
                        } else {
                            ""
                        }
                    )
                };
                let target = if signal == libc::SIGSEGV || signal == libc::SIGBUS {
                    format!(", address {addr:#x} ({})", self.describe_data(addr))
                } else {
                    String::new()
                };
                self.fatal(
                    ViolationKind::Fault,
                    "no faults in driver code",
                    format!("{what} in {callback} {at}{target}"),
                );
            }
            Abandon::BugCheck => {
                let p = state::with(|s| s.fault.params.each_ref().map(std::cell::Cell::get));
                self.fatal(
                    ViolationKind::BugCheck,
                    "KeBugCheckEx: the driver bug-checked the system",
                    format!(
                        "bug check {:#010x} ({:#x}, {:#x}, {:#x}, {:#x}) during {callback}",
                        p[0], p[1], p[2], p[3], p[4]
                    ),
                );
            }
            Abandon::Terminated | Abandon::Stopped => {}
        }
    }

    /// `vigil.sys+0x1234 (symbol + 0x1c)`.
    pub(crate) fn describe_code(&self, address: usize) -> String {
        let rva = u32::try_from(address - self.bounds.base).unwrap_or(u32::MAX);
        let symbol = self.symbols.describe(rva).map_or_else(
            || {
                self.section_of(rva)
                    .map_or_else(String::new, |s| format!(" ({s})"))
            },
            |s| format!(" ({s})"),
        );
        format!("{}+{rva:#x}{symbol}", self.image_name)
    }

    fn section_of(&self, rva: u32) -> Option<String> {
        self.sections
            .iter()
            .find(|s| rva >= s.rva && rva - s.rva < s.size.max(1))
            .map(|s| s.name.clone())
    }

    /// What lies at a data address: the image, a pool block, the driver stack guard, freed or
    /// unloaded memory, the null page.
    pub(crate) fn describe_data(&self, address: usize) -> String {
        if address < 0x1_0000 {
            return "null pointer dereference".into();
        }
        if self.bounds.contains(address) {
            let rva = u32::try_from(address - self.bounds.base).unwrap_or(u32::MAX);
            return format!(
                "{} section {}",
                self.image_name,
                self.section_of(rva).unwrap_or_else(|| "headers".into())
            );
        }
        let guard = state::with(|s| s.guard_low.get());
        if guard != 0 && address >= guard && address < guard + crate::machine::pages::page_size() {
            return "the driver stack's guard page: stack overflow".into();
        }
        // try_lock: describing must never wait on a lock the abandoned call might hold.
        if let Ok(pool) = self.pool.try_lock() {
            match pool.place(address) {
                Some(PoolPlace::Live { tag, size, offset }) => {
                    return if offset >= 0 && offset.unsigned_abs() >= size {
                        format!(
                            "{} byte(s) past the end of a {size}-byte pool block tagged '{}'",
                            offset.unsigned_abs() - size,
                            tag_text(tag)
                        )
                    } else {
                        format!(
                            "offset {offset} of a {size}-byte pool block tagged '{}'",
                            tag_text(tag)
                        )
                    };
                }
                Some(PoolPlace::Freed {
                    tag,
                    size,
                    freed_by,
                }) => {
                    return format!(
                        "use after free of a {size}-byte pool block tagged '{}' freed in {freed_by}",
                        tag_text(tag)
                    );
                }
                None => {}
            }
        }
        if quarantine::contains(address) {
            return "freed pool or an unloaded image".into();
        }
        if address >= crate::machine::signals::MM_USER_PROBE_ADDRESS && address >> 47 != 0 {
            return "non-canonical address".into();
        }
        "unmapped memory".into()
    }

    // ----- waiting ----------------------------------------------------------------------

    /// Waits on the dispatcher until `ready` (called under the dispatcher lock) returns true or
    /// `deadline` passes; `None` deadline = forever, bounded by the hang limit, past which the
    /// driver call is reported as a deadlock and abandoned. Returns false on timeout.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if state::with(|s| s.unload_thread.get()) {
            self.lifecycle.race_waiting.store(true, Ordering::Release);
        }
        let hang_limit = Instant::now() + self.config.hang_timeout;
        loop {
            // Test without the lock (see `Dispatcher`), then sleep only if nothing changed.
            let generation = *lock(&self.dispatcher.lock);
            if ready() {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            if now >= hang_limit {
                self.fatal(
                    ViolationKind::Deadlock,
                    "a wait completes",
                    format!(
                        "{what} still waiting after {:?} (the hang limit)",
                        self.config.hang_timeout
                    ),
                );
                switch::abandon_current_call(Abandon::Stopped);
            }
            let until = deadline.map_or(hang_limit, |d| d.min(hang_limit));
            let guard = lock(&self.dispatcher.lock);
            if *guard != generation {
                continue;
            }
            self.note_blocking_wait();
            let _ = self
                .dispatcher
                .changed
                .wait_timeout(
                    guard,
                    until
                        .saturating_duration_since(now)
                        .max(Duration::from_micros(50)),
                )
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Wakes every waiter after a signal state change (call with the change made).
    pub(crate) fn notify_waiters(&self) {
        let mut generation = lock(&self.dispatcher.lock);
        *generation = generation.wrapping_add(1);
        self.dispatcher.changed.notify_all();
    }
}

/// The kernel of the driver call in progress on this thread, null outside one. `call_driver`
/// is the only writer of the thread state's `owner`, and always stores a `*const Kernel`.
pub(crate) fn current_kernel() -> *const Kernel {
    state::with(|s| s.owner.get()).cast::<Kernel>()
}

/// Runs an emulated routine's `body` for the kernel of the calling driver thread, after
/// counting the call and checking the IRQL rule its table gives it (see the module docs).
pub(crate) fn emulate<R>(
    routine: impl Into<routine::Routine>,
    body: impl FnOnce(&Kernel) -> R,
) -> R {
    let declared = routine.into();
    let routine = declared.name();
    let kernel = current_kernel();
    if kernel.is_null() {
        eprintln!("kernel-sim: {routine} called outside any driver call; aborting");
        std::process::abort();
    }
    // SAFETY: the pointer was set by call_driver from a live `&Kernel` for the duration of the
    // driver call that is calling this routine (this thread is inside it), and the kernel is
    // kept alive by an Arc held by the caller of call_driver.
    let kernel = unsafe { &*kernel };
    let previous = state::with(|s| s.routine.replace(routine));
    kernel.count_routine(declared);
    kernel.check_irql(routine, declared.irql());
    pause::Pause::check(kernel, declared);
    // Routine boundaries are where a queued suspension (a normal kernel APC) is delivered.
    apc::boundary(kernel, routine);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| body(kernel)));
    state::with(|s| s.routine.set(previous));
    if result.is_ok() {
        apc::boundary(kernel, routine);
    }
    match result {
        Ok(value) => value,
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            kernel.fatal(
                ViolationKind::Internal,
                "kernel-sim",
                format!("kernel-sim panicked in {routine}: {text}"),
            );
            drop(payload);
            switch::abandon_current_call(Abandon::Stopped)
        }
    }
}
