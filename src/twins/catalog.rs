//! The names of the driver's test-only builds: the broken twins and the benchmark baselines.
//! This list is the only one: three crates compile this file, each as a module of its own
//! (`#[path]`), because none of them can depend on another:
//!
//! * the driver (`src/twins.rs`, kernel, no allocation): [`Twin`] and [`Baseline`] name the
//!   build that `twins::is` and `twins::is_baseline` test for;
//! * its build script (`build.rs`, host): reads the variable [`Twin::ENV`] or
//!   [`Baseline::ENV`], rejects a name not listed here, and declares exactly these names as the
//!   values of the cfg [`Twin::CFG`] or [`Baseline::CFG`] (`rustc-check-cfg`), so that a
//!   misspelt `cfg(vigil_twin = "...")` is an `unexpected_cfgs` warning, which CI denies;
//! * xtask (host): `Variant::twin(Twin)` and `Variant::baseline(Baseline)`, and the names that
//!   `cargo xtask build --twin NAME` accepts.
//!
//! Plain `core` only, so that it compiles in all three.

#![allow(
    dead_code,
    reason = "compiled into the driver, its build script and xtask, each using a different subset; \
              `expect` would be unfulfilled in the crates that use everything"
)]

/// Calls `$generate!` with the catalog: each kind of test-only build (its enum, what it is
/// called in messages, the environment variable that selects one and the cfg that build.rs sets
/// from it) and its variants with their names. `define_kinds!` below defines the types from it;
/// the driver's `twins` module defines its cfg tests from it.
macro_rules! with_catalog {
    ($generate:ident) => {
        $generate! {
            /// A broken twin: a test-only build of `vigil.sys` with one deliberate bug, which a
            /// kernel-sim check (or, for two of them, an ordering test) must catch. Never shipped.
            Twin("broken twin": VIGIL_TWIN => vigil_twin) {
                /// A pool block allocated at load and never freed (the pool-leak check by tag).
                Leak = "leak",
                /// A file name released twice (the over-release check).
                DoubleRelease = "double-release",
                /// The disconnect callback forgets `FltCloseClientPort` (the disconnect check).
                PortNotClosed = "port-not-closed",
                /// FilterUnload does not wait for DriverEntry to complete (the unload contract).
                UnloadNoWait = "unload-no-wait",
                /// Each batch carries 64 never-written pool bytes (the uninitialized-bytes scan).
                UninitSend = "uninit-send",
                /// A name query at DISPATCH_LEVEL, under a spin lock (the IRQL check).
                WrongIrql = "wrong-irql",
                /// Unload leaves the filter registered (the resource-leak check).
                LeaveRegistered = "leave-registered",
                /// Unload leaves the process-notify routine registered (kernel-sim reports it at
                /// unload, and a later process notification faults in the unloaded image).
                LeaveProcessNotify = "leave-process-notify",
                /// The post-create queries the file ID inside a critical region (under a push lock),
                /// where `FltQueryInformationFile` must not be called (its APCs-enabled check).
                FileIdUnderLock = "file-id-under-lock",
                /// Unload does not wait for the delivery thread (the thread check).
                ThreadRunning = "thread-running",
                /// PreCleanup returns at APC_LEVEL (the IRQL-restored check).
                IrqlNotRestored = "irql-not-restored",
                /// PreCleanup returns an invalid status (the callback-status check).
                BadPreopStatus = "bad-preop-status",
                /// The delivery thread sends without a timeout (RULES.md 7).
                SendInfinite = "send-infinite",
                /// A stream-handle context reference kept forever (the reference-leak check).
                ContextLeak = "context-leak",
                /// The post-create keeps the stream context reference it used for the file ID (the
                /// reference-leak check at FltUnregisterFilter).
                StreamContextLeak = "stream-context-leak",
                /// The command input read without SEH (a bad user pointer faults).
                NoSeh = "no-seh",
                /// PreWrite ends its unload-gate admission at once (an ordering test).
                UnadmittedCallback = "unadmitted-callback",
                /// The port created without its security descriptor (RULES.md 18).
                PortOpenToAll = "port-open-to-all",
                /// A second copy of the client port, closed outside the slot (RULES.md 5).
                PortSecondCopy = "port-second-copy",
                /// The verdict reply received into a kernel-stack buffer (the reply-buffer check
                /// of `FltSendMessage`).
                VerdictReplyOnStack = "verdict-reply-on-stack",
                /// The I/O path reads the connection state under the client-port push lock
                /// (RULES.md 27; the push lock's fairness makes it stall behind a close).
                IoPathPushLock = "io-path-push-lock",
                /// InstanceSetup declines a volume mounted while a refused unload keeps the gate
                /// closed (the volume is never watched; a dedicated lifecycle test).
                UnwatchedVolume = "unwatched-volume",
                /// Ring pushes outside a critical region: a suspended producer holds the
                /// consumer back (`kernel-sim stress --suspend-rate`, a dedicated test).
                SuspendableProducer = "suspendable-producer",
                /// The post callbacks ignore `FLTFL_POST_OPERATION_DRAINING` and do their normal
                /// completion processing on the copy a draining FltMgr passes (the draining
                /// check).
                DrainingIgnored = "draining-ignored",
                /// The set-information post returns on `FLTFL_POST_OPERATION_DRAINING` before it
                /// takes its completion context back: the source name is never released (the
                /// name-reference leak check at FltUnregisterFilter).
                DrainingLeaksName = "draining-leaks-name",
                /// The protection matcher folds Latin-1 only (a Unicode spelling of a protected
                /// name walks around the rule; the adversarial suite, `tests/driver_paths.rs`).
                Latin1Fold = "latin1-fold",
                /// A stream suffix (`::$DATA`, `:name`, `:$I30:$INDEX_ALLOCATION`) is not a
                /// boundary of the match (the adversarial suite).
                StreamEscape = "stream-escape",
                /// Renames and deletes of a protected prefix's ancestors are not checked (the
                /// adversarial suite).
                AncestorUnchecked = "ancestor-unchecked",
                /// A name that cannot be learned allows even under `FailClosed` (the adversarial
                /// suite).
                NameFailureAllows = "name-failure-allows",
                /// Names are taken as opened, never normalized (a short name walks around the
                /// rule; the adversarial suite).
                OpenedNameOnly = "opened-name-only",
                /// A post-create that cancels an open (`FltCancelFileOpen`) leaves the success
                /// status (kernel-sim's `FltCancelFileOpen` check, the adversarial suite).
                CancelKeepsSuccess = "cancel-keeps-success",
                /// The service's identity is its image alone, without the token's
                /// Administrators group (an ordinary user running the service's image passes;
                /// the adversarial suite).
                IdentityImageOnly = "identity-image-only",
                /// The port admits whoever connects first, as before issue 14 (an impostor
                /// administrator becomes the service; the adversarial suite).
                FirstComeService = "first-come-service",
                /// The identity check keeps its token reference (kernel-sim's token-leak check,
                /// `tests/driver_identity.rs`).
                TokenLeak = "token-leak",
                /// A relative open is judged by its relative name alone, which never matches a
                /// full prefix (the adversarial suite's relative-open row).
                RelativeNameOnly = "relative-name-only",
            }
            /// A benchmark baseline: a test-only build of `vigil.sys` measured beside the real
            /// one in the same run. Never shipped.
            Baseline("benchmark baseline": VIGIL_BASELINE => vigil_baseline) {
                /// The same registration with callbacks that do nothing.
                NoopFilter = "noop-filter",
                /// Delivery sends one message per event (as Microsoft's scanner sample does)
                /// instead of batches.
                MessagePerEvent = "message-per-event",
            }
        }
    };
}

/// Defines each kind's enum with its names, its list of every variant and a parser.
macro_rules! define_kinds {
    ($(
        $(#[$kind_doc:meta])*
        $kind:ident($called:literal: $env:ident => $cfg:ident) {
            $( $(#[$doc:meta])* $variant:ident = $name:literal, )*
        }
    )*) => {$(
        $(#[$kind_doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $kind {
            $( $(#[$doc])* $variant, )*
        }

        impl $kind {
            /// Every variant, in catalog order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];
            /// The environment variable that selects one (read by build.rs).
            pub const ENV: &'static str = stringify!($env);
            /// The cfg that build.rs sets to the selected name.
            pub const CFG: &'static str = stringify!($cfg);

            /// Its name: the value of [`Self::ENV`] and of the cfg [`Self::CFG`].
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $name, )*
                }
            }

            /// The variant called `name`.
            ///
            /// # Errors
            ///
            /// [`UnknownName`] (which lists the valid names) if no variant is called `name`.
            pub fn from_name(name: &str) -> Result<Self, UnknownName<'_>> {
                Self::ALL.iter().copied().find(|v| v.name() == name).ok_or(UnknownName {
                    kind: $called,
                    name,
                    valid: &[$($name),*],
                })
            }
        }

        impl core::fmt::Display for $kind {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.pad(self.name())
            }
        }
    )*};
}

with_catalog!(define_kinds);

/// A name that is not in the catalog; its message lists the valid names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownName<'a> {
    /// What was asked for: `broken twin` or `benchmark baseline`.
    pub kind: &'static str,
    /// The name asked for.
    pub name: &'a str,
    /// Every valid name of that kind.
    pub valid: &'static [&'static str],
}

impl core::fmt::Display for UnknownName<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "unknown {} `{}`; the valid names are: ",
            self.kind, self.name
        )?;
        for (i, valid) in self.valid.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{valid}")?;
        }
        Ok(())
    }
}

impl core::error::Error for UnknownName<'_> {}
