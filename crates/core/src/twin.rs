//! Broken twins: each model in `tests/loom_*.rs` runs once on the real code and once with exactly
//! one of these guards removed, and must reject the second run. Only loom builds can remove a
//! guard: outside `cfg(loom)` [`keeps`] is the constant `true`, so normal builds contain no twin.

use crate::Platform;

/// A synchronization guard that a broken twin removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// `UnloadGate::wait_until_entry_complete` polls the `DriverEntry`-returned probe.
    EntryProbe,
    /// `UnloadGate::try_enter` refuses once rundown has begun.
    RundownRefuse,
    /// `UnloadGate::wait_for_callbacks` waits for the guards in flight.
    RundownWait,
    /// `ClientPortSlot::close` holds the lock exclusively while it closes the port.
    SlotCloseExclusive,
    /// `ClientPortSlot::send` holds the lock shared while the send routine runs.
    SlotSendShared,
    /// `ClientPortSlot::send` announces itself before it checks for writers, and writers wait
    /// for announced sends before they take the lock (no send queues behind a writer).
    SlotSendAnnounce,
    /// A ring producer commits its record with a release store.
    RingCommitRelease,
    /// The ring consumer stops at the first record not yet committed.
    RingStopAtBusy,
    /// The ring consumer gives space back only after it has copied the records out.
    RingTailAfterCopy,
    /// The ring consumer zeroes the space it read before giving it back.
    RingZeroBeforeRelease,
    /// A ring producer reads `tail` with acquire before writing into the space it frees.
    RingTailAcquire,
}

/// Whether platform `P` keeps `guard`: always, except for a loom twin that removes it.
#[inline]
#[cfg_attr(
    not(loom),
    expect(clippy::extra_unused_type_parameters, reason = "used under loom")
)]
pub(crate) fn keeps<P: Platform>(guard: Guard) -> bool {
    #[cfg(loom)]
    {
        P::REMOVED_GUARD != Some(guard)
    }
    #[cfg(not(loom))]
    {
        let _ = guard;
        true
    }
}

/// Names the guard a loom twin platform removes (`LoomPlatform<R>`).
#[cfg(loom)]
pub trait Removal: 'static {
    /// The guard removed, or `None` for the sound platform.
    const GUARD: Option<Guard>;
}

/// The sound loom platform: no guard removed.
#[cfg(loom)]
#[derive(Debug)]
pub enum Sound {}

#[cfg(loom)]
impl Removal for Sound {
    const GUARD: Option<Guard> = None;
}

macro_rules! twins {
    ($($(#[$doc:meta])* $name:ident => $guard:ident;)*) => {$(
        $(#[$doc])*
        #[cfg(loom)]
        #[derive(Debug)]
        pub enum $name {}
        #[cfg(loom)]
        impl Removal for $name {
            const GUARD: Option<Guard> = Some(Guard::$guard);
        }
    )*};
}

twins! {
    /// Unload does not poll the `DriverEntry`-returned probe.
    WithoutEntryProbe => EntryProbe;
    /// `try_enter` admits callbacks after rundown has begun.
    WithoutRundownRefuse => RundownRefuse;
    /// Rundown does not wait for callbacks in flight.
    WithoutRundownWait => RundownWait;
    /// `close` does not take the slot's lock exclusively.
    WithoutCloseExclusive => SlotCloseExclusive;
    /// `send` does not take the slot's lock.
    WithoutSendShared => SlotSendShared;
    /// `send` checks for writers without announcing itself (the old code): a send can queue
    /// behind a writer that waits for the sends in flight.
    WithoutSendAnnounce => SlotSendAnnounce;
    /// Producers commit with a relaxed store.
    WithoutCommitRelease => RingCommitRelease;
    /// The consumer reads records that are still being filled.
    WithoutStopAtBusy => RingStopAtBusy;
    /// The consumer frees space before copying the records out.
    WithoutTailAfterCopy => RingTailAfterCopy;
    /// The consumer gives space back without zeroing it (stale headers reach producers).
    WithoutZeroBeforeRelease => RingZeroBeforeRelease;
    /// A producer reads `tail` relaxed, so its writes can overtake the consumer's reads.
    WithoutTailAcquire => RingTailAcquire;
}
