//! The CR8 emulation, independent of any driver: `mov rax, cr8` and `mov cr8, rax` executed by
//! this test thread trap (#GP in user mode) and are answered from the thread's emulated IRQL.

use vigil_kernel_sim::{current_irql, install_fault_handlers, set_irql};

fn read_cr8() -> u64 {
    let value: u64;
    // SAFETY: a privileged instruction that faults in user mode; kernel-sim's handler (installed
    // by the caller) emulates it and skips it. It touches no memory.
    unsafe {
        std::arch::asm!("mov {}, cr8", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

fn write_cr8(value: u64) {
    // SAFETY: as in read_cr8. Not `nomem`: here the emulation stores the IRQL in this thread's
    // state, which the test then reads; with `nomem` an optimized build may keep the value
    // `set_irql` stored across the instruction (on Windows CR8 is a register, so the driver's
    // own `nomem` is right).
    unsafe {
        std::arch::asm!("mov cr8, {}", in(reg) value, options(nostack, preserves_flags));
    }
}

#[test]
fn reads_and_writes_of_cr8_use_the_thread_irql() {
    install_fault_handlers();
    set_irql(0);
    assert_eq!(read_cr8(), 0);
    set_irql(2);
    assert_eq!(read_cr8(), 2);
    write_cr8(1);
    assert_eq!(current_irql(), 1);
    assert_eq!(read_cr8(), 1);
    set_irql(0);
}

#[test]
fn the_irql_is_per_thread() {
    install_fault_handlers();
    set_irql(2);
    let other = std::thread::spawn(|| {
        install_fault_handlers();
        read_cr8()
    })
    .join()
    .expect("thread");
    assert_eq!(other, 0, "a new thread starts at PASSIVE_LEVEL");
    assert_eq!(read_cr8(), 2);
    set_irql(0);
}

#[test]
fn every_general_register_is_decoded() {
    install_fault_handlers();
    set_irql(2);
    let (r9, r15): (u64, u64);
    // SAFETY: as in read_cr8; the outputs are plain registers.
    unsafe {
        std::arch::asm!("mov r9, cr8", "mov r15, cr8", out("r9") r9, out("r15") r15, options(nomem, nostack, preserves_flags));
    }
    assert_eq!((r9, r15), (2, 2));
    set_irql(0);
}
