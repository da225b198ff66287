//! The debugger on SVM: `int3` intercepted while the debugger has planted
//! breakpoints in the domain (as the #BP exception on hardware, as an INTn
//! exit under QEMU's TCG), single-step by RFLAGS.TF and the #DB intercept,
//! hardware breakpoints and watchpoints in DR0..DR3 and DR7.
//!
//! The guest's own debug registers are a shadow: every `mov` to or from a
//! debug register exits and is served from [`GuestDebugRegs`], so the
//! guest reads back what it wrote while only the debugger's points are ever
//! armed in the CPU (SVM does not switch DR0..DR3, so a guest's could not be
//! kept per vCPU anyway). The guest's own `int3`, `int n` and #DB reach it
//! as they would without the debugger.

use lantern_common::addr::Gva;
use lantern_common::arch::VcpuExit;
use lantern_common::debug::{DebugControl, DebugEvent, HwKind};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, VirtMem};
use xen_abi::errno::{Errno, XenResult};

use crate::decode::{decode_mov_dr, gpr, gpr_mut};
use crate::vcpu::SvmVcpu;
use crate::vmcb::{dr, event, exit, intercept1, rflags, vector};

/// `int3`, the breakpoint the debugger plants.
pub const INT3: [u8; 1] = [0xCC];
/// `int imm8`.
const INT_IMM8: u8 = 0xCD;

/// The debug registers as the guest last wrote them (never loaded into the
/// CPU; see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestDebugRegs {
    /// DR0..DR3.
    pub addr: [u64; dr::SLOTS],
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
}

impl Default for GuestDebugRegs {
    fn default() -> Self {
        GuestDebugRegs { addr: [0; dr::SLOTS], dr6: dr::DR6_RESET, dr7: dr::DR7_RESET }
    }
}

/// DR7 and DR0..DR3 for the debugger's hardware points, or the reason they
/// cannot be armed (computed once when they are armed, loaded on every
/// entry).
pub fn debug_registers(ctl: &DebugControl) -> XenResult<(u64, [u64; dr::SLOTS])> {
    if ctl.hw_points.len() > dr::SLOTS {
        return Err(Errno::ENOSPC);
    }
    let mut dr7 = dr::DR7_RESET;
    let mut addrs = [0u64; dr::SLOTS];
    for (n, p) in ctl.hw_points.iter().enumerate() {
        let (rw, len) = match p.kind {
            // An instruction breakpoint's length field must be 0 (1 byte).
            HwKind::Execute => (dr::RW_EXEC, 1),
            HwKind::Write => (dr::RW_WRITE, p.len),
            // x86 cannot watch reads alone: reads and writes it is.
            HwKind::Read | HwKind::Access => (dr::RW_ACCESS, p.len),
        };
        let len_bits = match len {
            1 => 0b00,
            2 => 0b01,
            4 => 0b11,
            8 => 0b10,
            _ => return Err(Errno::EINVAL),
        };
        if p.addr % len != 0 {
            return Err(Errno::EINVAL);
        }
        let shift = dr::DR7_RW_SHIFT + 4 * n as u32;
        dr7 |= (1 << (dr::DR7_LOCAL_SHIFT * n as u32)) | (rw << shift) | (len_bits << (shift + 2));
        addrs[n] = p.addr;
    }
    Ok((dr7, addrs))
}

impl SvmVcpu {
    /// Arms `ctl` (see [`lantern_common::arch::ArchVcpu::set_debug`]).
    pub(in crate::vcpu) fn arm_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        self.debug_dr = debug_registers(ctl)?;
        self.debug = ctl.clone();
        self.apply_debug_intercepts();
        Ok(())
    }

    /// Sets the intercepts the current control needs; called again after a
    /// reset rebuilt the VMCB.
    pub(in crate::vcpu) fn apply_debug_intercepts(&mut self) {
        let c = &mut self.vmcb.control;
        // Every debug-register access exits (the guest's are a shadow).
        c.intercept_dr = 0xFF | (0xFF << 16);
        let db = self.debug.single_step || !self.debug.hw_points.is_empty();
        let bp = self.debug.trap_breakpoints;
        c.intercept_exceptions = (c.intercept_exceptions & !((1 << vector::DB) | (1 << vector::BP)))
            | if db { 1 << vector::DB } else { 0 }
            | if bp { 1 << vector::BP } else { 0 };
        c.intercept_misc1 = (c.intercept_misc1 & !intercept1::INTN) | if bp { intercept1::INTN } else { 0 };
    }

    /// Before an entry: the trap flag for a step, the debugger's points in
    /// DR7 and DR0..DR3. Returns whether TF was the guest's own.
    pub(in crate::vcpu) fn enter_debug(&mut self) -> bool {
        let guest_tf = self.vmcb.save.rflags & rflags::TF != 0;
        if self.debug.single_step {
            self.vmcb.save.rflags |= rflags::TF;
        }
        let (dr7, addrs) = self.debug_dr;
        self.vmcb.save.dr7 = dr7;
        if !self.debug.hw_points.is_empty() {
            crate::svm::load_debug_addrs(&addrs);
        }
        guest_tf
    }

    /// After an exit: the trap flag the debugger set goes again.
    pub(in crate::vcpu) fn leave_debug(&mut self, guest_tf: bool) {
        if self.debug.single_step && !guest_tf {
            self.vmcb.save.rflags &= !rflags::TF;
        }
    }

    /// Whether an exit the hypervisor completed in place (the guest's
    /// instruction emulated) ends a single-step.
    pub(in crate::vcpu) fn step_ends_here(&self) -> bool {
        self.debug.single_step
    }

    /// A #DB exit: the debugger's step or hardware point, else the guest's
    /// own (delivered to it, with its DR6).
    pub(in crate::vcpu) fn debug_exception(&mut self) -> Option<VcpuExit> {
        let dr6 = self.vmcb.save.dr6;
        self.vmcb.save.dr6 = dr::DR6_RESET;
        let hit = (0..self.debug.hw_points.len()).find(|n| dr6 & (1 << n) != 0);
        if let Some(slot) = hit {
            if self.debug.hw_points[slot].kind == HwKind::Execute {
                // An instruction breakpoint is a fault at the instruction:
                // resume past it once, or it fires again at once.
                self.vmcb.save.rflags |= rflags::RF;
            }
            return Some(VcpuExit::Debug(DebugEvent::HwPoint { slot }));
        }
        if dr6 & dr::DR6_BS != 0 && self.debug.single_step {
            return Some(VcpuExit::Debug(DebugEvent::Step));
        }
        self.guest_dr.dr6 =
            (self.guest_dr.dr6 & !(dr::DR6_BS | dr::DR6_B_MASK)) | (dr6 & (dr::DR6_BS | dr::DR6_B_MASK));
        self.inject_exception(vector::DB, None);
        None
    }

    /// A #BP or INTn exit, RIP at the instruction: `int3` is reported for
    /// the core to tell the debugger's breakpoints from the guest's own; any
    /// other `int n` goes to the guest.
    pub(in crate::vcpu) fn breakpoint_exit(&mut self, d: &Domain, code: u64) -> Option<VcpuExit> {
        let rip = self.vmcb.save.cs.base.wrapping_add(self.vmcb.save.rip);
        if code == exit::EXCP_BASE + vector::BP as u64 {
            return Some(VcpuExit::Debug(DebugEvent::Breakpoint { pc: rip }));
        }
        let mut insn = [0u8; 2];
        let n = VirtMem::new(d, self).read_prefix(Gva(rip), &mut insn);
        match insn[..n] {
            [0xCC, ..] => Some(VcpuExit::Debug(DebugEvent::Breakpoint { pc: rip })),
            [INT_IMM8, n] => {
                self.advance_rip(2);
                self.vmcb.control.eventinj = event::VALID | event::TYPE_SOFT_INT | n as u64;
                None
            }
            // Unreadable, or no INTn form this exit comes from: entering
            // the guest again would only exit here again, so the domain is
            // crashed with a diagnostic instead.
            _ => Some(self.crash(d, "INTn exit at an instruction that is not one")),
        }
    }

    /// Delivers `int3` to the guest: the trap's return address is past it.
    pub(in crate::vcpu) fn deliver_int3(&mut self) {
        self.advance_rip(1);
        self.vmcb.control.eventinj = event::VALID | event::TYPE_SOFT_INT | vector::BP as u64;
    }

    /// A `mov` to or from DRn (`code` is the exit code), served from the
    /// guest's shadow registers.
    pub(in crate::vcpu) fn dr_access(&mut self, d: &Domain, code: u64) -> Option<VcpuExit> {
        let (to_dr, n) =
            if code >= exit::WRITE_DR0 { (true, code - exit::WRITE_DR0) } else { (false, code - exit::READ_DR0) };
        let mut bytes = [0u8; 15];
        let rip = self.vmcb.save.cs.base.wrapping_add(self.vmcb.save.rip);
        let read = VirtMem::new(d, self).read_prefix(Gva(rip), &mut bytes);
        let long = self.is_long();
        let Some((len, reg)) = decode_mov_dr(&bytes[..read], long, n as u8, to_dr) else {
            return Some(self.crash(d, "debug-register access by an instruction the hypervisor cannot decode"));
        };
        // DR4 and DR5 alias DR6 and DR7 (CR4.DE is never set for guests).
        let slot = match n {
            4 => 6,
            5 => 7,
            n => n as usize,
        };
        let g = &mut self.guest_dr;
        if to_dr {
            let mut value = gpr(&self.vmcb.save, &self.regs, reg);
            if !long {
                value &= 0xFFFF_FFFF;
            }
            match slot {
                0..=3 => g.addr[slot] = value,
                6 => g.dr6 = value,
                7 => g.dr7 = value,
                _ => {
                    self.inject_exception(vector::UD, None);
                    return None;
                }
            }
        } else {
            let value = match slot {
                0..=3 => g.addr[slot],
                6 => g.dr6,
                7 => g.dr7,
                _ => {
                    self.inject_exception(vector::UD, None);
                    return None;
                }
            };
            *gpr_mut(&mut self.vmcb.save, &mut self.regs, reg) = if long { value } else { value & 0xFFFF_FFFF };
        }
        self.advance_rip(len as u64);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lantern_common::debug::HwPoint;

    fn ctl(points: &[HwPoint]) -> DebugControl {
        DebugControl { hw_points: points.to_vec(), ..DebugControl::default() }
    }

    #[test]
    fn dr7_encodes_each_point_in_its_slot() {
        let (dr7, addrs) = debug_registers(&ctl(&[
            HwPoint { addr: 0x1000, len: 1, kind: HwKind::Execute },
            HwPoint { addr: 0x2008, len: 8, kind: HwKind::Write },
            HwPoint { addr: 0x3004, len: 4, kind: HwKind::Access },
        ]))
        .unwrap();
        assert_eq!(addrs, [0x1000, 0x2008, 0x3004, 0]);
        // L0, L1, L2; slot 1 R/W=01 LEN=10 (8 bytes); slot 2 R/W=11 LEN=11.
        let want = 0x400 | 0b01_0101 | (0b10_01 << 20) | (0b11_11 << 24);
        assert_eq!(dr7, want, "{dr7:#x}");
    }

    #[test]
    fn points_the_registers_cannot_hold_are_refused() {
        let p = HwPoint { addr: 0x1000, len: 1, kind: HwKind::Execute };
        assert_eq!(debug_registers(&ctl(&[p; 5])), Err(Errno::ENOSPC));
        let odd = HwPoint { addr: 0x1002, len: 4, kind: HwKind::Write };
        assert_eq!(debug_registers(&ctl(&[odd])), Err(Errno::EINVAL));
        let wide = HwPoint { addr: 0x1000, len: 16, kind: HwKind::Write };
        assert_eq!(debug_registers(&ctl(&[wide])), Err(Errno::EINVAL));
    }
}
