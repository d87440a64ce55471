//! The current IRQL.
//!
//! On x64 the WDK's `KeGetCurrentIrql` is an inline read of CR8; this does the same. (kernel-sim
//! traps the privileged instruction and answers from its per-thread IRQL.)

use vigil_sys::KIRQL;

/// The current processor's IRQL. Any IRQL.
#[inline]
pub fn current() -> KIRQL {
    let cr8: u64;
    // SAFETY: reading CR8 is the documented x64 implementation of KeGetCurrentIrql; it has no
    // side effect, touches no memory and is valid in kernel mode at any IRQL.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) cr8, options(nomem, nostack, preserves_flags));
    }
    // CR8 holds the task priority in its low four bits; IRQL values are 0..=15.
    (cr8 & 0xf) as KIRQL
}

/// Raises the IRQL to APC_LEVEL and leaves it there: only for the `irql-not-restored` broken
/// twin, which must return from a callback at the wrong IRQL.
pub fn twin_raise_to_apc() {
    let apc: u64 = u64::from(vigil_sys::APC_LEVEL);
    // SAFETY: writing CR8 is how the WDK raises IRQL on x64; deliberately not restored (twin).
    unsafe {
        core::arch::asm!("mov cr8, {}", in(reg) apc, options(nomem, nostack, preserves_flags));
    }
}
