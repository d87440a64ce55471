//! The service's identity (RULES.md, rule 29): the image the administrator configured
//! (`ServiceImage`, an NT path) run by a process whose token holds the Administrators group.
//! The port's connect callback admits only that identity, so an administrator's other process
//! cannot become "the service" by connecting first; and before the service connects, its own
//! I/O is exempted by the same identity, so `FailClosed` cannot lock it out during its
//! start-up. The token check is what an ordinary user cannot pass: running the service's image
//! as oneself (and injecting code into that process) gives the right image, not the group.
//! Without a configured image any administrator's process may connect, as before (the port's
//! security descriptor admits only Administrators and SYSTEM), and nothing is exempt before a
//! connection. PASSIVE_LEVEL (the process routines' limit).

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::kernel::process::{current_process_is_admin, with_current_image};
use crate::protection::fold;
use crate::twins::{self, Twin};

/// Longest image path kept, in UTF-16 units (Windows paths reach 32 Ki units, but a service
/// installed under a path longer than this is refused as unconfigured).
pub const MAX_IMAGE_UNITS: usize = 512;

/// The configured image, upcased.
///
/// # Invariants
///
/// `units[..len]` is written only while the driver loads (before any callback can read it).
pub struct ServiceIdentity {
    units: core::cell::UnsafeCell<[u16; MAX_IMAGE_UNITS]>,
    len: AtomicUsize,
}

// SAFETY: written only during load, before publication (invariant); read-only afterwards.
unsafe impl Sync for ServiceIdentity {}

impl ServiceIdentity {
    /// No identity configured.
    pub const fn unconfigured() -> Self {
        Self {
            units: core::cell::UnsafeCell::new([0; MAX_IMAGE_UNITS]),
            len: AtomicUsize::new(0),
        }
    }

    /// Sets the configured image (load time only, before the driver is reachable). A path
    /// longer than [`MAX_IMAGE_UNITS`] leaves the identity unconfigured.
    pub fn configure(&self, image: &mut dyn Iterator<Item = u16>) {
        // SAFETY: load time, before any reader exists (invariant).
        let units = unsafe { &mut *self.units.get() };
        let mut len = 0;
        for unit in image {
            let Some(slot) = units.get_mut(len) else {
                self.len.store(0, Ordering::Release);
                return;
            };
            *slot = fold(unit);
            len += 1;
        }
        self.len.store(len, Ordering::Release);
    }

    /// Whether an identity is configured.
    pub fn is_configured(&self) -> bool {
        self.len.load(Ordering::Acquire) > 0
    }

    /// Whether the current process is the service by identity: the configured image, and an
    /// administrator's (or SYSTEM's) token. PASSIVE_LEVEL. False when nothing is configured.
    pub fn is_current_process(&self) -> bool {
        let len = self.len.load(Ordering::Acquire);
        if len == 0 {
            return false;
        }
        // SAFETY: read-only after load (invariant).
        let expected = unsafe { &*self.units.get() }.get(..len).unwrap_or(&[]);
        let same_image = with_current_image(|image| {
            image.len() == expected.len()
                && image
                    .iter()
                    .zip(expected)
                    .all(|(&a, &b)| a == b || fold(a) == b)
        })
        .unwrap_or(false);
        // `identity-image-only` keeps the hole: the image alone, which an ordinary user can
        // run as themselves.
        same_image && (twins::is(Twin::IdentityImageOnly) || current_process_is_admin())
    }
}
