//! The generic timer at EL2: the counter, and the EL2 physical timer (PPI 26)
//! that preempts guests at the end of their time slice.

use core::arch::asm;

use aarch64_cpu::registers::*;

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// The physical counter (CNTPCT_EL0), ordered after earlier instructions.
pub fn now() -> u64 {
    // SAFETY: barrier only, so the count is not read early.
    unsafe { asm!("isb", options(nostack)) };
    CNTPCT_EL0.get()
}

/// Arms the EL2 physical timer to fire `ticks` counter ticks from now.
pub fn arm_hyp_timer(ticks: u64) {
    // SAFETY: CNTHP_TVAL_EL2 has no memory effect; aarch64-cpu has no
    // accessor for it.
    unsafe { asm!("msr cnthp_tval_el2, {}", in(reg) ticks.min(u32::MAX as u64 / 2), options(nostack)) };
    CNTHP_CTL_EL2.set(1); // ENABLE, not masked
                          // SAFETY: barrier only.
    unsafe { asm!("isb", options(nostack)) };
}

/// Arms the EL2 physical timer for an absolute counter value.
pub fn arm_hyp_timer_at(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 has no memory effect.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nostack)) };
    CNTHP_CTL_EL2.set(1);
    // SAFETY: barrier only.
    unsafe { asm!("isb", options(nostack)) };
}

/// Stops the EL2 physical timer (its interrupt line drops).
pub fn disarm_hyp_timer() {
    CNTHP_CTL_EL2.set(0);
}

/// Whether the EL2 physical timer condition is met.
pub fn hyp_timer_fired() -> bool {
    CNTHP_CTL_EL2.get() & (1 << 2) != 0
}
