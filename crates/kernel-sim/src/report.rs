//! What a run found: violations (each naming its rule) and counters, serializable as JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The class of a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A routine called at an IRQL its reference page does not allow.
    Irql,
    /// A fault (access violation, illegal instruction, stack overflow...) in a driver call.
    Fault,
    /// `KeBugCheckEx` was called.
    BugCheck,
    /// Pool still allocated when the driver was gone.
    PoolLeak,
    /// A block freed twice.
    PoolDoubleFree,
    /// A free of an address that is not a live block.
    PoolBadFree,
    /// A block freed with a tag other than its allocation tag.
    PoolWrongTag,
    /// Bytes written outside a block (the slack between the block and its guard page).
    PoolCorruption,
    /// `ExAllocatePool2` flags the rules forbid or the routine rejects.
    PoolFlags,
    /// A parameter the routine's contract forbids.
    Parameter,
    /// A handle or object reference not released by the time the driver was gone.
    HandleLeak,
    /// A handle that is not open (double close, never opened, wrong type).
    InvalidHandle,
    /// An invalid `FLT_REGISTRATION`.
    Registration,
    /// A resource (device, filter, port, security descriptor) not released.
    ResourceLeak,
    /// A callback broke its contract (IRQL not restored, critical region unbalanced, refused
    /// mandatory unload, success without unregistering...).
    CallbackContract,
    /// Unload touched driver state before DriverEntry had returned.
    UnloadRace,
    /// A driver thread still running when the driver was gone.
    ThreadStillRunning,
    /// A Vigil policy (switchable for other drivers), such as waits without a timeout.
    Policy,
    /// A routine kernel-sim does not emulate yet was called.
    NotEmulated,
    /// A wait or lock that could not complete (deadlock), ended by kernel-sim.
    Deadlock,
    /// kernel-sim itself failed while serving the driver.
    Internal,
    /// Uninitialized bytes (pool or stack poison) in a message or reply sent to user mode.
    UninitializedBytes,
    /// A client port the disconnect callback did not close, or still open at
    /// `FltUnregisterFilter`.
    PortNotClosed,
    /// A filter callback returned a status its contract does not allow (an invalid
    /// pre-/post-operation status, `WITH_CALLBACK`/`SYNCHRONIZE` without a post callback, a
    /// completion context no post callback will receive).
    CallbackStatus,
    /// Name information or a context released more often than it was referenced.
    OverRelease,
    /// Name information or a context still referenced by the driver when the filter
    /// unregistered.
    ReferenceLeak,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Its class.
    pub kind: ViolationKind,
    /// The rule, e.g. `"ExAllocatePool2: IRQL <= DISPATCH_LEVEL"` or `"RULES.md 20"`.
    pub rule: String,
    /// What happened, with addresses and symbols where known.
    pub message: String,
    /// The emulated routine in progress (empty if none).
    pub routine: String,
    /// The driver entry point in progress (DriverEntry, FilterUnload, a system thread...).
    pub callback: String,
    /// True if it ended the driver call (a bug check on Windows).
    pub fatal: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}: {}", self.kind, self.rule, self.message)?;
        if !self.routine.is_empty() {
            write!(f, " (in {}", self.routine)?;
            if !self.callback.is_empty() {
                write!(f, ", called from {}", self.callback)?;
            }
            write!(f, ")")?;
        } else if !self.callback.is_empty() {
            write!(f, " (during {})", self.callback)?;
        }
        if self.fatal {
            write!(f, " [fatal]")?;
        }
        Ok(())
    }
}

/// Pool counters of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Successful allocations.
    pub allocations: u64,
    /// Frees of live blocks.
    pub frees: u64,
    /// Allocations failed by fault injection.
    pub injected_failures: u64,
    /// Bytes requested over the run.
    pub bytes_allocated: u64,
    /// Most blocks live at once.
    pub peak_blocks: u64,
    /// Most bytes live at once.
    pub peak_bytes: u64,
    /// Blocks still live when the driver was gone.
    pub leaked_blocks: u64,
    /// Their bytes.
    pub leaked_bytes: u64,
}

/// A failure kernel-sim injected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InjectedFault {
    /// The ordinal of the failable call that was failed (1-based).
    pub ordinal: u64,
    /// The routine that was failed.
    pub routine: String,
    /// The status (or null pointer, as 0) it returned.
    pub status: String,
    /// The driver entry point in progress.
    pub callback: String,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The image path.
    pub image: String,
    /// DriverEntry's status (hex), if it ran to completion.
    pub entry_status: Option<String>,
    /// How unload went, if it was attempted.
    pub unload: Option<String>,
    /// Every violation, in the order found.
    pub violations: Vec<Violation>,
    /// Pool counters.
    pub pool: PoolStats,
    /// Failable calls made (allocations, registrations, ...), the range of a fault sweep.
    pub failable_calls: u64,
    /// Failures injected.
    pub injected: Vec<InjectedFault>,
    /// Calls into the driver (entry points, callbacks, threads).
    pub driver_calls: u64,
    /// Calls per emulated routine.
    pub routine_calls: BTreeMap<String, u64>,
    /// Access violations dispatched to a driver `__except` block.
    pub seh_dispatches: u64,
    /// Synthetic I/O counters.
    pub io: IoStats,
    /// What the driver printed with `DbgPrint`/`DbgPrintEx`, in order (the first 10,000 lines).
    pub debug_output: Vec<DebugPrint>,
    /// Lines printed after the first 10,000, not kept.
    pub debug_output_dropped: u64,
}

/// One line a driver printed with `DbgPrint` or `DbgPrintEx`, as the debugger would show it
/// (formatted, at most 512 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DebugPrint {
    /// `DbgPrint` or `DbgPrintEx`.
    pub routine: String,
    /// `DbgPrintEx`'s `ComponentId`.
    pub component: Option<u32>,
    /// `DbgPrintEx`'s `Level`.
    pub level: Option<u32>,
    /// The driver entry point that printed it.
    pub callback: String,
    /// The formatted text.
    pub text: String,
}

/// The debug output a run has captured so far.
#[derive(Debug, Default)]
pub(crate) struct DebugOutput {
    /// Lines kept.
    pub lines: Vec<DebugPrint>,
    /// Lines printed beyond the limit.
    pub dropped: u64,
}

/// Synthetic I/O counters of a run: operations, callbacks, and the references the checks
/// balance (every name acquired is released, every context allocated is freed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IoStats {
    /// Operations issued (create, write, set information, cleanup, close).
    pub operations: u64,
    /// Pre-operation callbacks called.
    pub pre_callbacks: u64,
    /// Post-operation callbacks called.
    pub post_callbacks: u64,
    /// Post-operation callbacks called with `FLTFL_POST_OPERATION_DRAINING` (an instance torn
    /// down while the operation was in the file system); not counted in `post_callbacks`.
    pub draining_posts: u64,
    /// Instances attached (InstanceSetup agreed).
    pub instances_attached: u64,
    /// Instances torn down.
    pub instances_torn_down: u64,
    /// Name information references handed out (`FltGet*FileNameInformation`).
    pub names_acquired: u64,
    /// Name information references released (`FltReleaseFileNameInformation`).
    pub names_released: u64,
    /// Contexts allocated (`FltAllocateContext`).
    pub contexts_allocated: u64,
    /// Contexts freed (last reference released, or reported leaked and freed at unregister).
    pub contexts_freed: u64,
}

impl Report {
    /// True when no rule was broken.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// A human-readable summary naming every violation.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: entry {}, unload {}, {} violation(s), pool {} alloc / {} free (peak {} B), {} failable call(s)",
            self.image,
            self.entry_status.as_deref().unwrap_or("not completed"),
            self.unload.as_deref().unwrap_or("not attempted"),
            self.violations.len(),
            self.pool.allocations,
            self.pool.frees,
            self.pool.peak_bytes,
            self.failable_calls,
        );
        for v in &self.violations {
            out.push_str("\n  ");
            out.push_str(&v.to_string());
        }
        out
    }
}

/// The symbolic name of an NTSTATUS kernel-sim can return or a driver commonly does
/// (`STATUS_OBJECT_NAME_NOT_FOUND`), or its hexadecimal value (`0xc0000034`) when the name is
/// not in this table. For messages meant for people and for tools that match on the name.
#[must_use]
pub fn status_name(status: i32) -> String {
    const NAMES: [(u32, &str); 25] = [
        (0x0000_0000, "STATUS_SUCCESS"),
        (0x0000_0102, "STATUS_TIMEOUT"),
        (0x8000_0005, "STATUS_BUFFER_OVERFLOW"),
        (0xC000_0001, "STATUS_UNSUCCESSFUL"),
        (0xC000_0002, "STATUS_NOT_IMPLEMENTED"),
        (0xC000_0008, "STATUS_INVALID_HANDLE"),
        (0xC000_000D, "STATUS_INVALID_PARAMETER"),
        (0xC000_0010, "STATUS_INVALID_DEVICE_REQUEST"),
        (0xC000_0022, "STATUS_ACCESS_DENIED"),
        (0xC000_0023, "STATUS_BUFFER_TOO_SMALL"),
        (0xC000_0024, "STATUS_OBJECT_TYPE_MISMATCH"),
        (0xC000_0034, "STATUS_OBJECT_NAME_NOT_FOUND"),
        (0xC000_0035, "STATUS_OBJECT_NAME_COLLISION"),
        (0xC000_003A, "STATUS_OBJECT_PATH_NOT_FOUND"),
        (0xC000_009A, "STATUS_INSUFFICIENT_RESOURCES"),
        (0xC000_00BB, "STATUS_NOT_SUPPORTED"),
        (0xC000_010E, "STATUS_IMAGE_ALREADY_LOADED"),
        (0xC000_0225, "STATUS_NOT_FOUND"),
        (0xC01C_0008, "STATUS_FLT_FILTER_NOT_READY"),
        (0xC01C_000F, "STATUS_FLT_DO_NOT_ATTACH"),
        (0xC01C_0010, "STATUS_FLT_DO_NOT_DETACH"),
        (0xC01C_0012, "STATUS_FLT_INSTANCE_NAME_COLLISION"),
        (0xC01C_0013, "STATUS_FLT_FILTER_NOT_FOUND"),
        (0xC01C_0014, "STATUS_FLT_VOLUME_NOT_FOUND"),
        (0xC01C_0015, "STATUS_FLT_INSTANCE_NOT_FOUND"),
    ];
    let code = status.cast_unsigned();
    NAMES
        .iter()
        .find(|(value, _)| *value == code)
        .map_or_else(|| format!("{code:#010x}"), |(_, name)| (*name).to_owned())
}
