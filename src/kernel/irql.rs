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
