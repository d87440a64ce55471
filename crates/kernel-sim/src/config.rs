//! How a run is set up: [`SimConfig`] and the plain types it is made of. This is kernel-sim's
//! lowest layer (with `report` and `faults`): every layer above reads the configuration, none
//! of it reads anything above. Host code only; nothing here touches driver memory.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use vigil_sys::{
    DEVICE_TYPE, FILE_DEVICE_DISK_FILE_SYSTEM, FILE_DEVICE_MAILSLOT, FILE_DEVICE_NAMED_PIPE,
    FILE_DEVICE_NETWORK_FILE_SYSTEM, FLT_FILESYSTEM_TYPE, FLT_FSTYPE_EXFAT, FLT_FSTYPE_FAT,
    FLT_FSTYPE_LANMAN, FLT_FSTYPE_MSFS, FLT_FSTYPE_MUP, FLT_FSTYPE_NPFS, FLT_FSTYPE_NTFS,
    FLT_FSTYPE_REFS,
};

use crate::faults::FaultPlan;

/// A registry value of the driver's `Parameters` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryValue {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ`.
    Sz(String),
    /// `REG_EXPAND_SZ` (an INF's `FLG_ADDREG_TYPE_EXPAND_SZ`, `AddService`'s `ImagePath`).
    ExpandSz(String),
    /// `REG_MULTI_SZ`.
    MultiSz(Vec<String>),
    /// `REG_BINARY`.
    Binary(Vec<u8>),
}

/// A Windows build that kernel-sim emulates, as INF decorations compare it (major 10, minor 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WindowsBuild(pub u32);

impl WindowsBuild {
    /// Windows 10 2004 (20H1), the oldest build Vigil supports (the first with `ExAllocatePool2`).
    pub const WIN10_2004: Self = Self(19041);
    /// Windows 11 22H2.
    pub const WIN11_22H2: Self = Self(22621);
    /// Windows 11 24H2, of the generation whose Filter Manager reads `Parameters\Instances`.
    pub const WIN11_24H2: Self = Self(26100);
    /// The first build whose Filter Manager reads the instance configuration under the service's
    /// `Parameters` key rather than under the service key itself.
    pub const FLTMGR_READS_PARAMETERS: Self = Self(25952);

    /// The key, relative to the service key, under which this build's Filter Manager reads the
    /// `Instances` subkey: `Parameters` from 10.0.25952 on, the service key itself before.
    pub fn instances_parent(self) -> &'static str {
        if self >= Self::FLTMGR_READS_PARAMETERS {
            "Parameters"
        } else {
            ""
        }
    }
}

impl fmt::Display for WindowsBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "10.0.{}", self.0)
    }
}

/// A registry: keys by full NT path (`\Registry\Machine\System\...`), each with typed
/// values. Key and value names compare case-insensitively, as the configuration manager's
/// do; a key's path keeps the spelling it was created with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// Keys by lower-cased path.
    keys: BTreeMap<String, RegistryKey>,
}

/// One key of a [`Registry`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryKey {
    /// The key's full path, as first created.
    pub path: String,
    /// Its values, in the order they were first written (the empty name is the default value).
    pub values: Vec<(String, RegistryValue)>,
}

/// A path without trailing separators, lower-cased: the map key of a registry key.
fn registry_key_id(path: &str) -> String {
    path.trim_end_matches('\\').to_ascii_lowercase()
}

impl Registry {
    /// Creates the key at `path` and every missing ancestor (as `RegCreateKeyEx` and an
    /// INF's `AddReg` do).
    pub fn create_key(&mut self, path: &str) -> &mut RegistryKey {
        let path = path.trim_end_matches('\\');
        for (index, _) in path.match_indices('\\') {
            if index > 0 {
                let ancestor = &path[..index];
                self.keys
                    .entry(registry_key_id(ancestor))
                    .or_insert_with(|| RegistryKey {
                        path: ancestor.to_owned(),
                        values: Vec::new(),
                    });
            }
        }
        self.keys
            .entry(registry_key_id(path))
            .or_insert_with(|| RegistryKey {
                path: path.to_owned(),
                values: Vec::new(),
            })
    }

    /// The key at `path`.
    pub fn key(&self, path: &str) -> Option<&RegistryKey> {
        self.keys.get(&registry_key_id(path))
    }

    /// The value `name` of the key at `path`.
    pub fn value(&self, path: &str, name: &str) -> Option<&RegistryValue> {
        self.key(path)?
            .values
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Writes `value` as `name` under `path` (creating the key), replacing any value of that
    /// name.
    pub fn set_value(&mut self, path: &str, name: &str, value: RegistryValue) {
        let key = self.create_key(path);
        if let Some(slot) = key
            .values
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            slot.1 = value;
        } else {
            key.values.push((name.to_owned(), value));
        }
    }

    /// Deletes the value `name` under `path`; whether it existed.
    pub fn delete_value(&mut self, path: &str, name: &str) -> bool {
        let Some(key) = self.keys.get_mut(&registry_key_id(path)) else {
            return false;
        };
        let before = key.values.len();
        key.values.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        key.values.len() != before
    }

    /// The names of the immediate subkeys of `path`, in case-insensitive order.
    pub fn subkeys(&self, path: &str) -> Vec<String> {
        let prefix = format!("{}\\", registry_key_id(path));
        self.keys
            .iter()
            .filter_map(|(id, key)| {
                let rest = id.strip_prefix(&prefix)?;
                (!rest.contains('\\')).then(|| key.path[key.path.len() - rest.len()..].to_owned())
            })
            .collect()
    }
}

/// Which unload FltMgr performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnloadKind {
    /// `FLTFL_FILTER_UNLOAD_MANDATORY`: the filter cannot refuse (service stop, `fltmc unload`
    /// of a filter that does not support refusal).
    Mandatory,
    /// Without the flag: the filter may refuse with an error status.
    Optional,
}

/// How a run is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The driver's service name (registry key, driver object name).
    pub service_name: String,
    /// Values of the service's `Parameters` key.
    pub registry: Vec<(String, RegistryValue)>,
    /// Whether the `Parameters` key exists.
    pub parameters_key: bool,
    /// The machine's registry as an INF install left it
    /// ([`inf::install`](crate::inf::install)). When present it replaces [`Self::registry`]
    /// and [`Self::parameters_key`] (`ZwOpenKey` and `ZwQueryValueKey` read it) and
    /// `FltRegisterFilter` reads the filter's instance configuration from it, where
    /// [`Self::windows_build`] reads it. None (the default): an image loaded without an INF,
    /// whose `Parameters` come from [`Self::registry`] and which attaches without instance
    /// configuration, as before INF installs were emulated.
    pub machine_registry: Option<Registry>,
    /// The Windows build emulated where builds differ (where Filter Manager reads the
    /// instance configuration). Windows 11 24H2 by default.
    pub windows_build: WindowsBuild,
    /// Flag `KeWaitForSingleObject` with a NULL timeout (a Vigil policy, RULES.md rule 7; the
    /// kernel allows it: switch off for other drivers).
    pub flag_infinite_waits: bool,
    /// A wait, lock or sleep longer than this is a deadlock: reported, and the call abandoned.
    pub hang_timeout: Duration,
    /// Fault injection.
    pub faults: FaultPlan,
    /// Call FilterUnload on another thread the moment `FltRegisterFilter` returns, while
    /// DriverEntry continues (the field crash of RULES.md rule 1). DriverEntry resumes only once
    /// that unload has returned or is blocked in a wait, so the worst interleaving happens every
    /// run, not when the scheduler allows.
    pub race_unload_on_register: Option<UnloadKind>,
    /// Size of each driver stack (kernel-sim's own emulation frames run on it too).
    pub stack_size: usize,
    /// How many bytes at the top of the driver stack are poisoned before each call.
    pub stack_poison_len: usize,
    /// Where pool blocks come from (special pool by default).
    pub pool: PoolKind,
    /// Hold the first call of a routine from one callback until the test releases it through
    /// [`Driver::observer`](crate::Driver::observer): a callback caught mid-flight every run. None by default.
    pub pause_at: Option<PausePoint>,
    /// How long to wait for driver threads to finish once the driver is gone.
    pub thread_exit_timeout: Duration,
    /// How long after its start routine ends a system thread's object becomes signalled.
    /// Windows bounds this by nothing, so a driver that does not wait on the thread object may
    /// unload while its thread is still finishing; a latency makes that window certain in a
    /// test instead of a matter of scheduling. Zero by default.
    pub thread_exit_latency: Duration,
    /// How long after `FltQueueGenericWorkItem` a system worker thread picks the item up.
    /// Windows promises no time (its worker threads may all be busy), so a filter that unloads
    /// without waiting for its queued items races them; a latency makes that window certain
    /// instead of a matter of scheduling. 5 ms by default.
    pub work_item_latency: Duration,
    /// How long an operation a pre-operation callback pended (`FLT_PREOP_PENDING`) may wait
    /// for `FltCompletePendedPreOperation` before kernel-sim reports it never completed and
    /// ends it (on Windows the requestor would hang). 5 s by default.
    pub pend_limit: Duration,
    /// Synthetic volumes and I/O options.
    pub io: IoConfig,
    /// Suspend I/O threads as `SuspendThread` does (see [`SuspendPlan`]). None by default.
    pub suspend: Option<SuspendPlan>,
    /// The processes that issue I/O or connect, by id: their image and whether their token
    /// holds the Administrators group (what `ZwQueryInformationProcess` and `SeTokenIsAdmin`
    /// answer). A process not listed runs `\Device\HarddiskVolume1\Users\user\app<pid>.exe`
    /// as an ordinary user.
    pub processes: Vec<ProcessConfig>,
}

/// One process of the machine (see [`SimConfig::processes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessConfig {
    /// Its id.
    pub pid: u32,
    /// Its image, an NT path (`\Device\HarddiskVolume1\Program Files\Vigil\vigil.exe`).
    pub image: String,
    /// Its primary token holds the Administrators group (an elevated administrator, or
    /// `LocalSystem`).
    pub admin: bool,
    /// The process that created it (`PROCESS_BASIC_INFORMATION.InheritedFromUniqueProcessId`).
    pub parent_pid: u32,
}

/// Thread suspension as `SuspendThread` does it: a normal kernel APC queued to the thread, which
/// runs (and blocks the thread) as soon as normal kernel APCs are enabled for it, that is at
/// `PASSIVE_LEVEL` outside a critical region
/// (<https://learn.microsoft.com/windows-hardware/drivers/kernel/types-of-apcs>,
/// <https://learn.microsoft.com/windows-hardware/drivers/kernel/critical-regions-and-guarded-regions>).
/// kernel-sim delivers it at emulated routine boundaries (each call's entry and exit) of the
/// threads a test marks as application threads (`mark_application_thread`), inside a filter
/// callback (where a suspension can hold driver state).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuspendPlan {
    /// Probability (0..=1) that an eligible boundary suspends the thread.
    pub rate: f64,
    /// Seed of the draws.
    pub seed: u64,
    /// A suspension that is resumed lasts a random time below this.
    pub max_delay: Duration,
    /// Probability (0..=1) that a suspension is never resumed by its "application": the thread
    /// stays suspended until the harness resumes every thread at the end of the cycle (as a
    /// terminated process's threads finally are).
    pub never_share: f64,
    /// Deliver suspensions only at the boundaries of this routine (its export name), so that
    /// a test can place a suspension at one exact point of a driver's code (every eligible
    /// thread that reaches it is suspended there when `rate` is 1); `None`: at every routine.
    pub only_at: Option<&'static str>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            service_name: "vigil".into(),
            registry: Vec::new(),
            parameters_key: true,
            machine_registry: None,
            windows_build: WindowsBuild::WIN11_24H2,
            flag_infinite_waits: true,
            hang_timeout: Duration::from_secs(30),
            faults: FaultPlan::default(),
            race_unload_on_register: None,
            stack_size: 128 * 1024,
            stack_poison_len: 64 * 1024,
            pool: PoolKind::Special,
            pause_at: None,
            thread_exit_timeout: Duration::from_secs(5),
            thread_exit_latency: Duration::ZERO,
            work_item_latency: Duration::from_millis(5),
            pend_limit: Duration::from_secs(5),
            io: IoConfig::default(),
            suspend: None,
            processes: Vec::new(),
        }
    }
}

impl SimConfig {
    /// The configuration for measuring a driver's own cost: the standard pool instead of the
    /// special pool and no stack poisoning, as on a machine without those Verifier options.
    /// Every other check (IRQL, leaks, references, contexts, ports, lifecycle) stays on.
    #[must_use]
    pub fn for_measurement() -> Self {
        let mut config = Self::default();
        config.use_measurement_checks();
        config
    }

    /// Switches this configuration to [`SimConfig::for_measurement`]'s pool and stack, keeping
    /// everything else it sets.
    pub fn use_measurement_checks(&mut self) {
        self.pool = PoolKind::Standard;
        self.stack_poison_len = 0;
    }

    /// `\REGISTRY\MACHINE\SYSTEM\CurrentControlSet\Services\<service>`.
    pub fn service_key_path(&self) -> String {
        format!(
            "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{}",
            self.service_name
        )
    }
}

/// Where pool blocks come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum PoolKind {
    /// Driver Verifier's special pool: a block per mapping against a guard page, freed pages
    /// quarantined. The default.
    #[default]
    Special,
    /// The host heap with checked slack on both sides, freed memory reused at once (for
    /// measurements).
    Standard,
}

/// Where to hold a callback: the first call of `routine` made from entry point `callback`
/// (kernel-sim's names: `"PreWrite"`, `"PostCreate"`, `"MessageNotify"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PausePoint {
    /// The emulated routine, as imported (`"FltGetRequestorProcessId"`).
    pub routine: &'static str,
    /// The driver entry point in progress.
    pub callback: &'static str,
}

/// The synthetic I/O settings of a run (part of [`SimConfig`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoConfig {
    /// Volumes mounted before the driver loads: offered to the filter when it calls
    /// `FltStartFiltering` (kind, device name such as `\Device\HarddiskVolume1`).
    pub volumes: Vec<(VolumeKind, String)>,
    /// Call post-operation callbacks other than post-create and synchronized ones at
    /// DISPATCH\_LEVEL (FltMgr may complete an operation there): catches posts that query
    /// names, wait or touch paged memory at that IRQL (RULES.md 25).
    pub post_ops_at_dispatch: bool,
    /// Make every normalized name query fail (`STATUS_OBJECT_PATH_NOT_FOUND`, as when a parent
    /// directory cannot be opened for normalization), to exercise opened-name fallbacks.
    pub fail_normalized_names: bool,
    /// Requestors cancel some of the operations a filter pends (as `CancelIoEx` would), so
    /// that the filter's cancel paths run (`world::cancel`); `None`: never.
    pub cancel_pended: Option<CancelPolicy>,
}

/// Which pended operations their requestors cancel, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelPolicy {
    /// Cancel every `every`-th operation a pre-operation callback pends (1: all of them).
    pub every: u64,
    /// How long the requestor waits for the completion before it cancels.
    pub after: Duration,
}

impl CancelPolicy {
    /// The stress workload's: every third pended operation, canceled after 1 ms (before a
    /// work item, queued 5 ms after, has run).
    pub const STRESS: Self = Self {
        every: 3,
        after: Duration::from_millis(1),
    };
}

/// The kind of file system a synthetic volume has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VolumeKind {
    /// NTFS (local disk; hard links).
    Ntfs,
    /// ReFS (local disk; no hard links in this emulation).
    Refs,
    /// FAT (local disk; no hard links).
    Fat,
    /// exFAT (local disk; no hard links).
    ExFat,
    /// A network volume as minifilters see it since Vista: the MUP volume (`\Device\Mup`,
    /// `FLT_FSTYPE_MUP`), behind which the SMB redirector (LANMAN) serves UNC paths.
    Network,
    /// The SMB redirector as its own volume (`FLT_FSTYPE_LANMAN`), as older systems showed it.
    Lanman,
    /// The named-pipe file system (`\Device\NamedPipe`, `FLT_FSTYPE_NPFS`).
    NamedPipe,
    /// The mailslot file system (`\Device\Mailslot`, `FLT_FSTYPE_MSFS`).
    Mailslot,
}

impl VolumeKind {
    /// The `VolumeDeviceType` InstanceSetup receives.
    pub fn device_type(self) -> DEVICE_TYPE {
        match self {
            Self::Ntfs | Self::Refs | Self::Fat | Self::ExFat => FILE_DEVICE_DISK_FILE_SYSTEM,
            Self::Network | Self::Lanman => FILE_DEVICE_NETWORK_FILE_SYSTEM,
            Self::NamedPipe => FILE_DEVICE_NAMED_PIPE,
            Self::Mailslot => FILE_DEVICE_MAILSLOT,
        }
    }

    /// The `VolumeFilesystemType` InstanceSetup receives.
    pub fn filesystem_type(self) -> FLT_FILESYSTEM_TYPE {
        match self {
            Self::Ntfs => FLT_FSTYPE_NTFS,
            Self::Refs => FLT_FSTYPE_REFS,
            Self::Fat => FLT_FSTYPE_FAT,
            Self::ExFat => FLT_FSTYPE_EXFAT,
            Self::Network => FLT_FSTYPE_MUP,
            Self::Lanman => FLT_FSTYPE_LANMAN,
            Self::NamedPipe => FLT_FSTYPE_NPFS,
            Self::Mailslot => FLT_FSTYPE_MSFS,
        }
    }

    /// Whether the file system supports hard links (`FileLinkInformation`).
    pub(crate) fn hard_links(self) -> bool {
        matches!(self, Self::Ntfs | Self::Network | Self::Lanman)
    }

    /// Pipes and mailslots: offered only with `FLTFL_REGISTRATION_SUPPORT_NPFS_MSFS`.
    pub(crate) fn is_pipe_or_mailslot(self) -> bool {
        matches!(self, Self::NamedPipe | Self::Mailslot)
    }
}
