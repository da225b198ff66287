//! Ending the run: the `sifive_test` finisher QEMU virt has at 0x10_0000
//! turns the hypervisor's status into QEMU's exit status (0 a clean
//! verdict, 1 a failed one, 2 a bad boot configuration, 3 a CPU without
//! the H extension, 101 a hypervisor panic).

use core::ptr::write_volatile;
use core::sync::atomic::{AtomicU64, Ordering};

/// The finisher's address (from the DTB once parsed).
static FINISHER: AtomicU64 = AtomicU64::new(0x10_0000);

/// Uses the finisher at `addr`.
pub fn set_finisher(addr: u64) {
    FINISHER.store(addr, Ordering::Release);
}

/// Ends QEMU with exit status `code`.
pub fn off(code: u32) -> ! {
    let value = if code == 0 { 0x5555 } else { (code << 16) | 0x3333 };
    let addr = FINISHER.load(Ordering::Acquire);
    // SAFETY: the finisher's register; writing it ends the machine.
    unsafe { write_volatile(addr as *mut u32, value) };
    loop {
        lantern_arch_riscv::hw::hs::wait_for_interrupt();
    }
}
