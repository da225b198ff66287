//! The debugger on arm64: what the world switch loads so that `BRK`,
//! software step, hardware breakpoints and watchpoints of a guest at EL1
//! are taken to EL2 (MDCR_EL2.TDE), and the encodings of those registers.
//!
//! The guest's own debug registers stay a shadow (the debug registers trap,
//! see `crate::vcpu::EmulatedSysreg`): only the debugger's points are ever
//! armed in the CPU, and the guest's MDSCR_EL1 is loaded whenever the
//! debugger arms nothing.

use lantern_common::debug::{DebugControl, HwKind};
use xen_abi::errno::{Errno, XenResult};

/// `BRK #0`, the breakpoint the debugger plants (gdb's aarch64 breakpoint).
pub const BRK0: [u8; 4] = 0xd420_0000u32.to_le_bytes();

/// Breakpoint and watchpoint register pairs the world switch handles (the
/// architecture guarantees at least 2 of each; QEMU's `max` CPU has 6 and 4).
pub const HW_SLOTS: usize = 4;

/// MDSCR_EL1.SS: software step.
pub const MDSCR_SS: u64 = 1 << 0;
/// MDSCR_EL1.MDE: hardware breakpoints and watchpoints enabled.
pub const MDSCR_MDE: u64 = 1 << 15;
/// SPSR.SS: the step is active-not-pending on the return to the guest.
pub const SPSR_SS: u64 = 1 << 21;
/// MDCR_EL2.TDE: debug exceptions of EL1 and EL0 go to EL2.
pub const MDCR_TDE: u64 = 1 << 8;

/// DBGBCR / DBGWCR.E: the point is enabled.
const CTRL_ENABLE: u64 = 1;
/// DBGBCR.PMC / DBGWCR.PAC = 0b11: match at EL1 and EL0.
const CTRL_EL1_EL0: u64 = 0b11 << 1;
/// DBGBCR.BAS = 0b1111: an A64 instruction (all four bytes).
const BCR_BAS_A64: u64 = 0b1111 << 5;
/// DBGWCR.LSC (bits 3-4): loads, stores or both.
const WCR_LSC_SHIFT: u32 = 3;
/// DBGWCR.BAS (bits 5-12): which bytes of the doubleword match.
const WCR_BAS_SHIFT: u32 = 5;

/// What the world switch loads while the debugger has this vCPU armed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugRegs {
    /// Route debug exceptions to EL2 and load the fields below; when clear
    /// the CPU holds the guest's MDSCR_EL1 and no enabled point.
    pub armed: bool,
    /// Hold virtual interrupts back (a single-step must land on the next
    /// instruction).
    pub hold_interrupts: bool,
    /// MDSCR_EL1 to run with.
    pub mdscr: u64,
    /// DBGBVR / DBGBCR values, slot by slot (control 0: unused).
    pub breakpoints: [(u64, u64); HW_SLOTS],
    /// DBGWVR / DBGWCR values, slot by slot.
    pub watchpoints: [(u64, u64); HW_SLOTS],
    /// Which hardware point of the control each breakpoint / watchpoint
    /// slot is (to report the one that triggered).
    pub breakpoint_of: [usize; HW_SLOTS],
    /// See `breakpoint_of`.
    pub watchpoint_of: [usize; HW_SLOTS],
}

/// The registers for `ctl`, on a vCPU whose guest MDSCR_EL1 is `guest_mdscr`.
pub fn debug_regs(ctl: &DebugControl, guest_mdscr: u64) -> XenResult<DebugRegs> {
    let mut r = DebugRegs::default();
    let (mut nb, mut nw) = (0usize, 0usize);
    for (i, p) in ctl.hw_points.iter().enumerate() {
        if p.kind == HwKind::Execute {
            if nb == HW_SLOTS {
                return Err(Errno::ENOSPC);
            }
            if p.addr % 4 != 0 {
                return Err(Errno::EINVAL);
            }
            r.breakpoints[nb] = (p.addr, CTRL_ENABLE | CTRL_EL1_EL0 | BCR_BAS_A64);
            r.breakpoint_of[nb] = i;
            nb += 1;
        } else {
            if nw == HW_SLOTS {
                return Err(Errno::ENOSPC);
            }
            // A watchpoint covers bytes of one aligned doubleword.
            let offset = p.addr & 7;
            // (`len` is gdb's, any 64-bit number: compared, never added.)
            if p.len == 0 || p.len > 8 - offset {
                return Err(Errno::EINVAL);
            }
            let lsc = match p.kind {
                HwKind::Read => 0b01,
                HwKind::Write => 0b10,
                _ => 0b11,
            };
            let bas = ((1u64 << p.len) - 1) << offset;
            let ctrl = CTRL_ENABLE | CTRL_EL1_EL0 | (lsc << WCR_LSC_SHIFT) | (bas << WCR_BAS_SHIFT);
            r.watchpoints[nw] = (p.addr & !7, ctrl);
            r.watchpoint_of[nw] = i;
            nw += 1;
        }
    }
    r.armed = ctl.single_step || ctl.trap_breakpoints || !ctl.hw_points.is_empty();
    if !r.armed {
        return Ok(DebugRegs::default());
    }
    r.hold_interrupts = ctl.single_step;
    r.mdscr = (guest_mdscr & !MDSCR_SS)
        | if ctl.single_step { MDSCR_SS } else { 0 }
        | if ctl.hw_points.is_empty() { 0 } else { MDSCR_MDE };
    Ok(r)
}

impl DebugRegs {
    /// The control's hardware point a watchpoint exception at data address
    /// `far` is for.
    pub fn watchpoint_hit(&self, far: u64) -> Option<usize> {
        (0..HW_SLOTS)
            .find(|&n| {
                let (base, ctrl) = self.watchpoints[n];
                let bas = (ctrl >> WCR_BAS_SHIFT) & 0xff;
                ctrl & CTRL_ENABLE != 0 && far & !7 == base && bas != 0
            })
            .map(|n| self.watchpoint_of[n])
    }

    /// The control's hardware point a breakpoint exception at `pc` is for.
    pub fn breakpoint_hit(&self, pc: u64) -> Option<usize> {
        (0..HW_SLOTS)
            .find(|&n| self.breakpoints[n].1 & CTRL_ENABLE != 0 && self.breakpoints[n].0 == pc)
            .map(|n| self.breakpoint_of[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lantern_common::debug::HwPoint;

    #[test]
    fn brk0_is_gdbs_aarch64_breakpoint() {
        assert_eq!(BRK0, [0x00, 0x00, 0x20, 0xd4]);
    }

    #[test]
    fn points_are_encoded_and_found_again() {
        let ctl = DebugControl {
            hw_points: vec![
                HwPoint { addr: 0x4000_1000, len: 1, kind: HwKind::Execute },
                HwPoint { addr: 0x4000_2004, len: 4, kind: HwKind::Write },
                HwPoint { addr: 0x4000_3000, len: 8, kind: HwKind::Access },
            ],
            ..DebugControl::default()
        };
        let r = debug_regs(&ctl, 0x1000).unwrap();
        assert!(r.armed && !r.hold_interrupts);
        assert_eq!(r.mdscr, 0x1000 | MDSCR_MDE);
        assert_eq!(r.breakpoints[0], (0x4000_1000, 0b1_1110_0111));
        // Store (LSC 10), bytes 4..8 of the doubleword (BAS 0xf0).
        assert_eq!(r.watchpoints[0], (0x4000_2000, 1 | 0b110 | (0b10 << 3) | (0xf0 << 5)));
        assert_eq!(r.watchpoints[1], (0x4000_3000, 1 | 0b110 | (0b11 << 3) | (0xff << 5)));
        assert_eq!(r.breakpoint_hit(0x4000_1000), Some(0));
        assert_eq!(r.watchpoint_hit(0x4000_2006), Some(1));
        assert_eq!(r.watchpoint_hit(0x4000_3003), Some(2));
        assert_eq!(r.watchpoint_hit(0x4000_4000), None);
    }

    #[test]
    fn stepping_holds_interrupts_and_sets_ss() {
        let ctl = DebugControl { single_step: true, ..DebugControl::default() };
        let r = debug_regs(&ctl, 0).unwrap();
        assert!(r.armed && r.hold_interrupts);
        assert_eq!(r.mdscr, MDSCR_SS);
        assert_eq!(debug_regs(&DebugControl::default(), 0x8000).unwrap(), DebugRegs::default());
    }

    #[test]
    fn what_the_registers_cannot_hold_is_refused() {
        let p = HwPoint { addr: 0x1000, len: 1, kind: HwKind::Execute };
        let ctl = DebugControl { hw_points: vec![p; 5], ..DebugControl::default() };
        assert_eq!(debug_regs(&ctl, 0), Err(Errno::ENOSPC));
        let straddle = HwPoint { addr: 0x1006, len: 4, kind: HwKind::Write };
        let ctl = DebugControl { hw_points: vec![straddle], ..DebugControl::default() };
        assert_eq!(debug_regs(&ctl, 0), Err(Errno::EINVAL));
    }

    /// gdb's `Z2,addr,len` gives the length as any 64-bit number: one that
    /// wraps `offset + len` round to a small sum is refused like any other
    /// too-long watchpoint (it overflowed, then shifted BAS past its field).
    #[test]
    fn a_watchpoint_length_that_wraps_is_refused() {
        for (addr, len) in [(0x1001, u64::MAX), (0x1007, u64::MAX - 6), (0x1000, 64), (0x1000, u64::MAX)] {
            let p = HwPoint { addr, len, kind: HwKind::Write };
            let ctl = DebugControl { hw_points: vec![p], ..DebugControl::default() };
            assert_eq!(debug_regs(&ctl, 0), Err(Errno::EINVAL), "{addr:#x}, {len:#x}");
        }
    }
}
