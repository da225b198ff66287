//! Orderly power-off: a closing line, then semihosting exit (when enabled,
//! so QEMU's exit status carries the result) or PSCI SYSTEM_OFF.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

use lantern_arch_arm::psci;

use super::Machine;

static SEMIHOSTING: AtomicBool = AtomicBool::new(false);

/// `ADP_Stopped_ApplicationExit`: the SYS_EXIT reason that carries a status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;
/// Semihosting operation SYS_EXIT.
const SYS_EXIT: u64 = 0x18;

/// Whether power-off reports the status through semihosting.
pub fn set_semihosting(on: bool) {
    SEMIHOSTING.store(on, Ordering::Release);
}

/// Prints the power-off line and powers off with exit status `code`.
pub fn off(code: i32, m: &Machine) -> ! {
    let ms = (super::timer::now() - m.boot_ticks) * 1000 / m.freq.max(1);
    crate::println!("(lantern) powering off: status {}, {} ms since entry", code, ms);
    off_raw(code)
}

/// Powers off without printing anything (early or panic paths).
pub fn off_raw(code: i32) -> ! {
    if SEMIHOSTING.load(Ordering::Acquire) {
        let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
        // SAFETY: the semihosting call reads the two-word block and ends the
        // QEMU process; enabled only when QEMU was started with semihosting.
        unsafe {
            asm!(
                "hlt #0xf000",
                in("x0") SYS_EXIT,
                in("x1") block.as_ptr(),
                options(nostack)
            )
        };
    }
    psci::host::system_off();
    loop {
        aarch64_cpu::asm::wfe();
    }
}
