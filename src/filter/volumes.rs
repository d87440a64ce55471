//! Volume identifiers: a small number per attached volume, carried by every event. A fixed
//! table of atomics (no lock), so that any callback at any IRQL can look its volume up.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use vigil_sys::PFLT_VOLUME;

/// Policy: at most this many attached volumes get their own id; further ones report id 0
/// ("unknown") but are still watched.
pub const MAX_TRACKED_VOLUMES: usize = 64;

/// A placeholder for a slot being filled: never a valid object address.
fn reserved() -> *mut core::ffi::c_void {
    ptr::without_provenance_mut(1)
}

/// The table.
pub struct VolumeTable {
    volumes: [AtomicPtr<core::ffi::c_void>; MAX_TRACKED_VOLUMES],
    ids: [AtomicU32; MAX_TRACKED_VOLUMES],
    next_id: AtomicU32,
}

impl VolumeTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            volumes: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_TRACKED_VOLUMES],
            ids: [const { AtomicU32::new(0) }; MAX_TRACKED_VOLUMES],
            next_id: AtomicU32::new(1),
        }
    }

    /// Gives `volume` an id (InstanceSetup). Returns 0 when the table is full.
    pub fn insert(&self, volume: PFLT_VOLUME) -> u32 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        for (slot, slot_id) in self.volumes.iter().zip(&self.ids) {
            // Reserve the slot (no real volume has the reserved address), write the id, then
            // publish the volume: a reader that finds the volume (Acquire) sees its id.
            if slot
                .compare_exchange(
                    ptr::null_mut(),
                    reserved(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                slot_id.store(id, Ordering::Relaxed);
                slot.store(volume, Ordering::Release);
                return id;
            }
        }
        0
    }

    /// The id of `volume`, 0 if untracked. Any IRQL.
    pub fn id_of(&self, volume: PFLT_VOLUME) -> u32 {
        self.volumes
            .iter()
            .zip(&self.ids)
            .find(|(slot, _)| slot.load(Ordering::Acquire) == volume)
            .map_or(0, |(_, id)| id.load(Ordering::Relaxed))
    }

    /// Forgets `volume` (instance teardown).
    pub fn remove(&self, volume: PFLT_VOLUME) {
        for slot in &self.volumes {
            if slot
                .compare_exchange(volume, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}
