//! Fault handling: CR8 emulation, SEH dispatch for the driver's `__try/__except`, and turning
//! any other fault in a driver call into an abandoned call.
//!
//! The handler is installed once per process for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGTRAP,
//! with `SA_ONSTACK`; every thread that runs driver code gets its own alternate signal stack,
//! so a driver stack overflow (a hit on the guard page) is handled and reported instead of
//! killing the process. The handler is async-signal-safe: it reads and writes only the
//! thread-local [`ThreadState`](crate::machine::state) cells and the interrupted context, and the
//! driver image's read-only exception data. Everything that allocates (symbol names, messages)
//! happens on the host stack after the call has been abandoned.
//!
//! Decisions, in order:
//! 1. A general-protection fault (`SI_KERNEL`) on `mov reg, cr8` / `mov cr8, reg`
//!    (`[REX.R] 0F 20 /r`, `[REX.R] 0F 22 /r`): emulate against the thread's IRQL, skip the
//!    instruction. Works on any thread, in or out of a driver call.
//! 2. Not in a driver call: not ours; chain to the previous handler (Rust's own stack-overflow
//!    handler) or the default action.
//! 3. An access violation at a *user-range* address in a leaf function of the image whose return
//!    address lies in an `__except` scope of its caller (the SEH helper's exact shape, see
//!    `src/seh/user_copy.c`): resume at the scope's jump target with RAX = 0xC0000005 and the
//!    leaf's frame popped, as `RtlDispatchException` and `__C_specific_handler` would.
//! 4. Anything else: record the fault and resume on the host stack (abandon the driver call).

#![expect(
    clippy::cast_possible_truncation,
    reason = "x86-64 only: registers are 64-bit, image RVAs fit 32 bits"
)]

use std::ffi::c_void;
use std::sync::{Once, OnceLock};

use libc::{c_int, siginfo_t, ucontext_t};

use crate::machine::state::{self, Abandon, ImageBounds, ThreadState};
use crate::machine::switch::abandon_landing;

/// Upper bound of the emulated user-mode address range (`MmUserProbeAddress`).
///
/// kernel-sim maps the buffers it presents as user-mode memory below this address and
/// everything it presents as kernel memory (pool, images, stacks) above it, where Linux places
/// mappings by default; an access violation is dispatched to an `__except` only below it, as on
/// Windows, where a bad *kernel* address is a bug check whatever the handlers.
///
/// It is not x64 Windows' value, `0x7FFF_FFFF_0000`, on purpose. On Windows every kernel address
/// lies above that value; kernel-sim's kernel memory is host user memory, which a host with
/// 4-level paging places below `0x8000_0000_0000`, mostly at `0x7F..`. With Windows' value a
/// driver's probe would accept a pointer to pool, an image or a driver stack as a user buffer,
/// and a fault there would reach the driver's `__except` instead of being reported: kernel-sim
/// would be looser than Windows, which the fidelity rule forbids. The value kept splits the
/// host's address space the way Windows' splits its own: every address kernel-sim presents as
/// user memory is below it, every address it presents as kernel memory above it, so a probe
/// answers as it would on Windows. (A host with 5-level paging could put kernel memory above
/// 2^47 and export Windows' value; CI hosts do not have it.)
pub const MM_USER_PROBE_ADDRESS: usize = 0x0000_1000_0000_0000;

/// `STATUS_ACCESS_VIOLATION` as the 64-bit RAX value the `__except` block reads.
const STATUS_ACCESS_VIOLATION: u64 = 0xC000_0005;

const SIGNALS: [c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];
/// `SI_KERNEL`: the code of a SIGSEGV raised for a general-protection fault.
const SI_KERNEL: c_int = 0x80;
const ALT_STACK_SIZE: usize = 64 * 1024;

/// The actions in place before ours, indexed like `SIGNALS`, for chaining.
static PREVIOUS: OnceLock<[libc::sigaction; 5]> = OnceLock::new();
static INSTALL: Once = Once::new();

/// Installs the process-wide handlers (once) and this thread's alternate signal stack (once per
/// thread). Called before every outermost driver call; cheap after the first.
pub(crate) fn prepare_thread() {
    INSTALL.call_once(install_handlers);
    ALT_STACK.with(|alt| {
        if alt.borrow().is_none() {
            *alt.borrow_mut() = Some(AltStack::install());
        }
    });
}

/// Makes sure the handlers are installed (for threads that execute CR8 instructions without a
/// driver call, such as the tests of the CR8 emulation).
pub fn install() {
    prepare_thread();
}

fn install_handlers() {
    // SAFETY: a zeroed sigaction is a valid value (SIG_DFL, empty mask).
    let mut previous: [libc::sigaction; 5] = unsafe { std::mem::zeroed() };
    for (index, &signal) in SIGNALS.iter().enumerate() {
        // SAFETY: a zeroed sigaction is a valid starting value (no handler, empty mask).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `action.sa_mask` is a valid sigset_t to initialize.
        unsafe { libc::sigemptyset(&raw mut action.sa_mask) };
        // SAFETY: installing a handler with a valid action and out-pointer.
        let rc = unsafe { libc::sigaction(signal, &raw const action, &raw mut previous[index]) };
        assert_eq!(rc, 0, "sigaction({signal}) failed");
    }
    let _ = PREVIOUS.set(previous);
}

/// A thread's alternate signal stack, removed and unmapped when the thread exits.
struct AltStack {
    region: crate::machine::pages::Region,
}

impl AltStack {
    fn install() -> Self {
        let region =
            crate::machine::pages::Region::map(ALT_STACK_SIZE).expect("mapping a signal stack");
        let stack = libc::stack_t {
            ss_sp: region.base() as *mut c_void,
            ss_flags: 0,
            ss_size: region.len(),
        };
        // SAFETY: `stack` describes a mapped, writable region that lives until this value is
        // dropped, when it is disabled first.
        let rc = unsafe { libc::sigaltstack(&raw const stack, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "sigaltstack failed");
        Self { region }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack of this thread before its memory is unmapped.
        unsafe { libc::sigaltstack(&raw const disable, std::ptr::null_mut()) };
        let _ = &self.region;
    }
}

thread_local! {
    static ALT_STACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Index into `gregs` of each x86-64 register number (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
/// R8..R15), as encoded in ModRM/REX.
const GREG_OF: [c_int; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

/// A decoded `mov` to or from CR8.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cr8Access {
    /// True for `mov cr8, reg` (a write).
    pub write: bool,
    /// General register number (0 = RAX .. 15 = R15).
    pub register: usize,
    /// Instruction length.
    pub len: usize,
}

/// Decodes `[REX] 0F 20 /r` or `[REX] 0F 22 /r` with control register 8 (REX.R set, ModRM.reg
/// = 0, ModRM.mod = 3).
pub(crate) fn decode_cr8(bytes: [u8; 4]) -> Option<Cr8Access> {
    let rex = bytes[0];
    if rex & 0xF0 != 0x40 || rex & 0x04 == 0 || bytes[1] != 0x0F {
        return None;
    }
    let write = match bytes[2] {
        0x20 => false,
        0x22 => true,
        _ => return None,
    };
    let modrm = bytes[3];
    if modrm >> 6 != 3 || (modrm >> 3) & 7 != 0 {
        return None;
    }
    let register = usize::from(modrm & 7) | (usize::from(rex & 1) << 3);
    Some(Cr8Access {
        write,
        register,
        len: 4,
    })
}

extern "C" fn on_fault(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid ucontext_t for an SA_SIGINFO handler; this handler is
    // the only code touching it until it returns.
    let uc = unsafe { &mut *context.cast::<ucontext_t>() };
    // SAFETY: as above, a valid siginfo_t.
    let info_ref = unsafe { &*info };
    let gregs = &mut uc.uc_mcontext.gregs;
    let rip = greg(gregs, libc::REG_RIP);

    if signal == libc::SIGSEGV && info_ref.si_code == SI_KERNEL && emulate_cr8(gregs, rip) {
        return;
    }

    let handled = state::with(|s| {
        if s.host_rsp.get() == 0 {
            return false;
        }
        // SAFETY: si_addr is valid to read for SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGTRAP.
        let addr = unsafe { info_ref.si_addr() } as usize;
        if signal == libc::SIGSEGV && dispatch_seh(s, gregs, rip, addr) {
            return true;
        }
        let f = &s.fault;
        f.signal.set(signal);
        f.code.set(info_ref.si_code);
        f.rip.set(rip);
        f.addr.set(addr);
        f.rsp.set(greg(gregs, libc::REG_RSP));
        set_greg(gregs, libc::REG_RSP, s.host_rsp.get());
        set_greg(gregs, libc::REG_RAX, Abandon::Fault as usize);
        set_greg(gregs, libc::REG_RIP, abandon_landing());
        true
    });
    if !handled {
        chain(signal, info, context);
    }
}

fn greg(gregs: &[libc::greg_t; 23], index: c_int) -> usize {
    gregs[index.unsigned_abs() as usize].cast_unsigned() as usize
}

fn set_greg(gregs: &mut [libc::greg_t; 23], index: c_int, value: usize) {
    gregs[index.unsigned_abs() as usize] = (value as u64).cast_signed();
}

fn emulate_cr8(gregs: &mut [libc::greg_t; 23], rip: usize) -> bool {
    // SAFETY: a #GP was raised by the instruction at RIP, so its bytes were fetched and are
    // readable; the longest form read here is 4 bytes, the length of the instruction itself.
    let bytes = unsafe { std::ptr::read_unaligned(rip as *const [u8; 4]) };
    let Some(access) = decode_cr8(bytes) else {
        return false;
    };
    let register = GREG_OF[access.register];
    state::with(|s| {
        if access.write {
            s.irql.set((greg(gregs, register) & 0xF) as u8);
        } else {
            set_greg(gregs, register, usize::from(s.irql.get()));
        }
    });
    set_greg(gregs, libc::REG_RIP, rip + access.len);
    true
}

/// Reads `N` little-endian u32 at `address`.
///
/// # Safety
///
/// `address..address + 4 * N` is mapped readable memory.
unsafe fn read_u32s<const N: usize>(address: usize) -> [u32; N] {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::read_unaligned(address as *const [u32; N]) }
}

/// Finds the `RUNTIME_FUNCTION` covering `rva`: (begin, end, unwind info RVA).
fn runtime_function(image: &ImageBounds, rva: u32) -> Option<(u32, u32, u32)> {
    if image.pdata_size == 0 {
        return None;
    }
    let table = image.base + image.pdata_rva as usize;
    let count = image.pdata_size as usize / 12;
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = usize::midpoint(lo, hi);
        let entry = table + mid * 12;
        // SAFETY: the exception directory lies inside the mapped image (checked at load) and
        // is read-only for the image's lifetime; entry is one of its 12-byte records.
        let [begin, end, unwind] = unsafe { read_u32s::<3>(entry) };
        if rva < begin {
            hi = mid;
        } else if rva >= end {
            lo = mid + 1;
        } else {
            return Some((begin, end, unwind));
        }
    }
    None
}

/// Step 3 of the module docs. Returns true when the context was redirected to an `__except`.
fn dispatch_seh(s: &ThreadState, gregs: &mut [libc::greg_t; 23], rip: usize, addr: usize) -> bool {
    let image = s.image.get();
    if !image.contains(rip) || addr >= MM_USER_PROBE_ADDRESS || image.c_specific_handler_slot == 0 {
        return false;
    }
    // The faulting function must be a leaf without unwind data: its frame is just the return
    // address.
    if runtime_function(&image, (rip - image.base) as u32).is_some() {
        return false;
    }
    let rsp = greg(gregs, libc::REG_RSP);
    if rsp < s.stack_low.get() || rsp + 8 > s.stack_high.get() {
        return false;
    }
    // SAFETY: RSP lies inside this thread's mapped driver stack (checked just above).
    let return_address = unsafe { std::ptr::read(rsp as *const usize) };
    if !image.contains(return_address) {
        return false;
    }
    let return_rva = (return_address - image.base) as u32;
    let Some((_, _, unwind_rva)) = runtime_function(&image, return_rva) else {
        return false;
    };
    let Some(target) = except_target(&image, unwind_rva, return_rva) else {
        return false;
    };
    set_greg(gregs, libc::REG_RIP, image.base + target as usize);
    set_greg(gregs, libc::REG_RSP, rsp + 8);
    set_greg(gregs, libc::REG_RAX, STATUS_ACCESS_VIOLATION as usize);
    s.seh_dispatches.set(s.seh_dispatches.get() + 1);
    true
}

/// Reads the `UNWIND_INFO` at `unwind_rva`; if its handler is `__C_specific_handler` and a scope
/// with the constant filter `EXCEPTION_EXECUTE_HANDLER` covers `control_rva`, returns the scope's
/// jump target.
fn except_target(image: &ImageBounds, unwind_rva: u32, control_rva: u32) -> Option<u32> {
    const UNW_FLAG_EHANDLER: u8 = 1;
    let in_image = |rva: u32, len: u32| {
        rva.checked_add(len)
            .is_some_and(|end| end as usize <= image.size)
    };
    if !in_image(unwind_rva, 4) {
        return None;
    }
    let info = image.base + unwind_rva as usize;
    // SAFETY: in_image checked the 4-byte header lies inside the mapped image.
    let [header] = unsafe { read_u32s::<1>(info) };
    let flags = ((header & 0xFF) >> 3) as u8;
    let code_count = (header >> 16) & 0xFF;
    if flags & UNW_FLAG_EHANDLER == 0 {
        return None;
    }
    let handler_offset = 4 + ((code_count + 1) & !1) * 2;
    let handler_rva_at = unwind_rva + handler_offset;
    if !in_image(handler_rva_at, 8) {
        return None;
    }
    // SAFETY: checked inside the image just above.
    let [handler_rva, scope_count] =
        unsafe { read_u32s::<2>(image.base + handler_rva_at as usize) };
    if !is_c_specific_handler(image, handler_rva) {
        return None;
    }
    let scopes = handler_rva_at + 8;
    if scope_count > 1024 || !in_image(scopes, scope_count * 16) {
        return None;
    }
    (0..scope_count).find_map(|i| {
        let entry = image.base + (scopes + i * 16) as usize;
        // SAFETY: the scope table was checked to lie inside the image.
        let [begin, end, handler, jump] = unsafe { read_u32s::<4>(entry) };
        // HandlerAddress 1 is the constant filter EXCEPTION_EXECUTE_HANDLER; a zero jump target
        // is a __finally, which an exception passes through.
        (begin <= control_rva && control_rva < end && handler == 1 && jump != 0).then_some(jump)
    })
}

/// Whether `handler_rva` is the import thunk `jmp [__imp___C_specific_handler]`.
fn is_c_specific_handler(image: &ImageBounds, handler_rva: u32) -> bool {
    if handler_rva as usize + 6 > image.size {
        return false;
    }
    let thunk = image.base + handler_rva as usize;
    // SAFETY: the 6-byte thunk lies inside the mapped image (checked above).
    let bytes = unsafe { std::ptr::read_unaligned(thunk as *const [u8; 6]) };
    if bytes[0] != 0xFF || bytes[1] != 0x25 {
        return false;
    }
    let displacement = i32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let slot = (thunk + 6).wrapping_add_signed(displacement as isize);
    slot == image.c_specific_handler_slot
}

/// Passes a fault that is not kernel-sim's to the handler installed before it, or restores the
/// default action so that the fault, re-raised on return, ends the process as it would have.
fn chain(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let Some(index) = SIGNALS.iter().position(|&s| s == signal) else {
        return;
    };
    let Some(previous) = PREVIOUS.get().map(|all| all[index]) else {
        // Not yet recorded (a fault while the handlers are being installed): the default.
        // SAFETY: resetting the action to its default.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        return;
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: resetting the action to its default; the faulting instruction re-executes and
        // the default action (terminate with a core) applies.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action is an SA_SIGINFO handler with this signature.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: the previous action is a plain handler with this signature.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_cr8_moves() {
        // mov rax, cr8 = 44 0F 20 C0
        assert_eq!(
            decode_cr8([0x44, 0x0F, 0x20, 0xC0]),
            Some(Cr8Access {
                write: false,
                register: 0,
                len: 4
            })
        );
        // mov cr8, r9 = 45 0F 22 C1 (REX.R | REX.B)
        assert_eq!(
            decode_cr8([0x45, 0x0F, 0x22, 0xC1]),
            Some(Cr8Access {
                write: true,
                register: 9,
                len: 4
            })
        );
        // mov rax, cr0 (no REX.R) is not CR8.
        assert_eq!(decode_cr8([0x48, 0x0F, 0x20, 0xC0]), None);
        // mov rax, cr3 (ModRM.reg = 3).
        assert_eq!(decode_cr8([0x44, 0x0F, 0x20, 0xD8]), None);
    }
}
