//! The stack switch: how every call into driver code is made.
//!
//! Driver code runs on a *driver stack* that kernel-sim owns (an anonymous mapping with a
//! `PROT_NONE` guard page below it), never on the host thread's stack. The switch is a dozen
//! instructions of assembly rather than `makecontext`/`swapcontext`, for three reasons:
//! * `swapcontext` saves and restores the signal mask with a system call on every switch (two
//!   per driver call), which would dominate a no-op filter callback;
//! * the fault handler must be able to *abandon* a driver call: it rewrites the interrupted
//!   context so that the thread resumes on the host stack, at the switch's return path, with a
//!   reason code in RAX. With our own switch the saved host state is exactly one stack pointer
//!   (the callee-saved registers are pushed on the host stack), so abandoning is "set RSP, RIP
//!   and RAX", and the same path serves `KeBugCheckEx` and `PsTerminateSystemThread`, which
//!   never return to the driver;
//! * there is no `ucontext_t` to keep alive per call.
//!
//! Abandoning skips the frames on the driver stack without running anything in them. The
//! frames there are driver frames (which have no destructors) and kernel-sim's emulation
//! frames, which are written not to hold locks or owned resources across a point that can
//! abandon (a driver pointer access, a bug check, a thread exit).

use std::cell::RefCell;
use std::ffi::c_void;

use crate::machine::pages::Region;
use crate::machine::state::{self, Abandon};

std::arch::global_asm!(
    // kvsim_switch_call(arg: rdi, entry: rsi, stack_top: rdx, host_rsp_slot: rcx) -> rax
    // Saves the callee-saved registers on the host stack, records the host RSP in the slot,
    // calls entry(arg) on the driver stack, then returns 0 on the host stack.
    ".globl kvsim_switch_call",
    ".type kvsim_switch_call,@function",
    "kvsim_switch_call:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rcx], rsp",
    "mov rbx, rcx",
    "mov rsp, rdx",
    "call rsi",
    "mov rsp, [rbx]",
    "xor eax, eax",
    // The abandon path lands here with RSP = the saved host RSP and RAX = the reason.
    ".globl kvsim_switch_return",
    "kvsim_switch_return:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size kvsim_switch_call, . - kvsim_switch_call",
    // kvsim_abandon(host_rsp: rdi, reason: rsi) -> !
    ".globl kvsim_abandon",
    ".type kvsim_abandon,@function",
    "kvsim_abandon:",
    "mov rsp, rdi",
    "mov rax, rsi",
    "jmp kvsim_switch_return",
    ".size kvsim_abandon, . - kvsim_abandon",
);

unsafe extern "C" {
    fn kvsim_switch_call(
        arg: *mut c_void,
        entry: unsafe extern "C" fn(*mut c_void),
        stack_top: usize,
        host_rsp_slot: *mut usize,
    ) -> u64;
    fn kvsim_switch_return();
    fn kvsim_abandon(host_rsp: usize, reason: u64) -> !;
}

/// The address the fault handler resumes at to abandon a driver call.
pub(crate) fn abandon_landing() -> usize {
    kvsim_switch_return as *const () as usize
}

/// Ends the current driver call from an emulated routine running on the driver stack (bug
/// check, thread termination, a deadlock kernel-sim detected). Never returns.
///
/// The caller must hold no lock and own nothing that needs dropping: its frames are skipped.
pub(crate) fn abandon_current_call(reason: Abandon) -> ! {
    let host_rsp = state::with(|s| s.host_rsp.get());
    assert!(host_rsp != 0, "abandon_current_call outside a driver call");
    // SAFETY: `host_rsp` is the value saved by kvsim_switch_call for the driver call this
    // thread is running (non-zero only between the switch and its return); the host frames
    // above it are intact, and the driver-stack frames being skipped hold nothing that needs
    // dropping (the contract of this function).
    unsafe { kvsim_abandon(host_rsp, reason as u64) }
}

/// Poison written over the driver stack before each outermost call.
pub const STACK_POISON: u8 = 0xC5;

/// A driver stack: a mapping of `size` bytes above one guard page.
pub(crate) struct DriverStack {
    region: Region,
}

impl DriverStack {
    fn new(size: usize) -> std::io::Result<Self> {
        let page = crate::machine::pages::page_size();
        let size = size.next_multiple_of(page);
        let region = Region::map(size + page)?;
        region.protect(0, page, libc::PROT_NONE)?;
        Ok(Self { region })
    }

    fn usable_len(&self) -> usize {
        self.region.len() - crate::machine::pages::page_size()
    }

    fn low(&self) -> usize {
        self.region.base() + crate::machine::pages::page_size()
    }

    fn high(&self) -> usize {
        self.region.base() + self.region.len()
    }
}

thread_local! {
    static DRIVER_STACK: RefCell<Option<DriverStack>> = const { RefCell::new(None) };
}

/// How a call on the driver stack ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The function returned.
    Returned,
    /// The call was abandoned for this reason.
    Abandoned(Abandon),
}

unsafe extern "C" fn trampoline(arg: *mut c_void) {
    // SAFETY: `arg` is the `&mut &mut dyn FnMut()` that run_on_driver_stack passed, alive for
    // the duration of the switch.
    let f = unsafe { &mut *arg.cast::<&mut dyn FnMut()>() };
    f();
}

/// Runs `f` on this thread's driver stack (allocating it on first use), with the stack top
/// `poison_len` bytes filled with [`STACK_POISON`]. A nested call (already on the driver stack)
/// runs `f` in place, as a kernel callback runs on the caller's kernel stack.
///
/// `f` must not unwind (the caller wraps driver calls in `catch_unwind` before they get here).
pub(crate) fn run_on_driver_stack(
    stack_size: usize,
    poison_len: usize,
    f: &mut dyn FnMut(),
) -> Ended {
    if state::with(|s| s.depth.get()) > 0 {
        state::with(|s| s.depth.set(s.depth.get() + 1));
        f();
        state::with(|s| s.depth.set(s.depth.get() - 1));
        return Ended::Returned;
    }
    crate::machine::signals::prepare_thread();
    let (low, high) = DRIVER_STACK.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|s| {
            s.usable_len() != stack_size.next_multiple_of(crate::machine::pages::page_size())
        }) {
            *slot = Some(DriverStack::new(stack_size).expect("mapping a driver stack"));
        }
        let stack = slot.as_ref().expect("just set");
        (stack.low(), stack.high())
    });
    let poison_len = poison_len.min(high - low);
    // SAFETY: [high - poison_len, high) lies inside the driver stack mapping, which is
    // read-write and not in use (no driver call is active on this thread: depth is 0).
    unsafe { std::ptr::write_bytes((high - poison_len) as *mut u8, STACK_POISON, poison_len) };

    state::with(|s| {
        s.stack_low.set(low);
        s.stack_high.set(high);
        s.guard_low.set(low - crate::machine::pages::page_size());
        s.depth.set(1);
    });
    let mut f_ref: &mut dyn FnMut() = f;
    let arg = (&raw mut f_ref).cast::<c_void>();
    // The slot the handler and abandon_current_call read is the thread-state cell; the switch
    // writes the host RSP into it before leaving the host stack.
    let slot_ptr = state::with(|s| s.host_rsp.as_ptr());
    // SAFETY: `stack_top` (= high) is the 16-byte-aligned top of a mapped, otherwise unused
    // stack; `trampoline` is a C-ABI function taking `arg`, which points at a live
    // `&mut dyn FnMut()` on this (host) stack; `slot_ptr` is this thread's host-RSP cell,
    // valid for the whole call.
    let code = unsafe { kvsim_switch_call(arg, trampoline, high, slot_ptr) };
    state::with(|s| {
        s.host_rsp.set(0);
        s.depth.set(0);
    });
    match Abandon::from_code(code) {
        None => Ended::Returned,
        Some(reason) => Ended::Abandoned(reason),
    }
}
