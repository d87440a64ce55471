//! Faults in driver code: reported with the driver-relative address and symbol, the test
//! process surviving; access violations on user buffers dispatched to the driver's `__except`.

mod common;

use vigil_kernel_sim::{Sim, SimConfig, ViolationKind};

#[test]
fn a_bad_kernel_pointer_in_a_callback_is_a_reported_fault_with_a_symbol() {
    let sim = Sim::new(SimConfig::default());
    let driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    // ReturnOutputBufferLength is a kernel pointer FltMgr provides: 0x10 is not one.
    let status = driver.call_message_notify("\\VigilPort", 0, 0, 0, 0, 0x10);
    assert_eq!(status, None, "the call was abandoned");
    let report = driver.finish();
    let fault = report
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::Fault)
        .expect("a fault was reported");
    assert!(fault.fatal);
    assert!(fault.message.contains("vigil.sys+0x"), "{}", fault.message);
    assert!(
        fault.message.contains("message"),
        "the symbol names the callback: {}",
        fault.message
    );
    assert!(fault.message.contains("0x10"), "{}", fault.message);
    assert_eq!(fault.callback, "MessageNotify");
}

#[test]
fn a_bad_user_buffer_is_caught_by_the_drivers_except_block() {
    let sim = Sim::new(SimConfig::default());
    let driver = sim.load(common::vigil_image()).expect("vigil.sys loads");
    assert_eq!(driver.entry_status(), Some(0), "{:#?}", driver.violations());
    let mut returned: u32 = 0xFFFF_FFFF;
    let mut output = [0u8; 256];
    // An unmapped address in the emulated user range: the copy faults inside the SEH helper.
    let bad_user_input = 0x0000_0100_0000_0000usize;
    assert!(bad_user_input < vigil_kernel_sim::MM_USER_PROBE_ADDRESS);
    let status = driver
        .call_message_notify(
            "\\VigilPort",
            bad_user_input,
            64,
            output.as_mut_ptr() as usize,
            256,
            (&raw mut returned) as usize,
        )
        .unwrap_or_else(|| {
            panic!(
                "the driver returns a status, no crash: {:#?}",
                driver.violations()
            )
        });
    assert!(
        status < 0,
        "a bad user buffer is an error status: {status:#x}"
    );
    assert_eq!(returned, 0, "nothing returned");
    let report = driver.finish();
    assert!(report.is_clean(), "{}", report.summary());
    assert_eq!(
        report.seh_dispatches, 1,
        "one access violation went to the __except block"
    );
}
