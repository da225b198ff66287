//! The per-vCPU EL1 context that the EL2 world switch saves and restores.
//!
//! [`GuestRegs`] is shared with the assembly in `hw/el2.rs`, so its layout is
//! fixed (`#[repr(C)]`, offsets asserted below). The EL1 system registers and
//! the virtual GIC interface state are saved/restored from Rust around each
//! guest entry.

use core::mem::offset_of;

/// Registers the entry/exit assembly moves: GPRs, PC/PSTATE, FP/SIMD.
#[repr(C, align(16))]
#[derive(Clone, Debug)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// Guest PC (ELR_EL2 at exit / entry).
    pub pc: u64,
    /// Guest PSTATE (SPSR_EL2 at exit / entry).
    pub pstate: u64,
    /// The host stack pointer while the guest runs (written by the entry stub).
    pub host_sp: u64,
    /// q0..q31.
    pub v: [u128; 32],
    /// FPSR.
    pub fpsr: u64,
    /// FPCR.
    pub fpcr: u64,
}

/// Offset of `x` (used by the assembly).
pub const OFF_X: usize = 0;
/// Offset of `pc` (used by the assembly).
pub const OFF_PC: usize = 248;
/// Offset of `pstate` (used by the assembly).
pub const OFF_PSTATE: usize = 256;
/// Offset of `host_sp` (used by the assembly).
pub const OFF_HOST_SP: usize = 264;
/// Offset of `v` (used by the assembly).
pub const OFF_V: usize = 272;
/// Offset of `fpsr` (used by the assembly).
pub const OFF_FPSR: usize = 784;
/// Offset of `fpcr` (used by the assembly).
pub const OFF_FPCR: usize = 792;

// The assembly hard-codes these offsets; a layout change must fail the build.
const _: () = {
    assert!(offset_of!(GuestRegs, x) == OFF_X);
    assert!(offset_of!(GuestRegs, pc) == OFF_PC);
    assert!(offset_of!(GuestRegs, pstate) == OFF_PSTATE);
    assert!(offset_of!(GuestRegs, host_sp) == OFF_HOST_SP);
    assert!(offset_of!(GuestRegs, v) == OFF_V);
    assert!(offset_of!(GuestRegs, fpsr) == OFF_FPSR);
    assert!(offset_of!(GuestRegs, fpcr) == OFF_FPCR);
};

/// SPSR value for entering a guest at EL1h with D, A, I and F masked, as the
/// arm64 Linux boot protocol requires.
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

impl Default for GuestRegs {
    fn default() -> Self {
        GuestRegs { x: [0; 31], pc: 0, pstate: SPSR_EL1H_MASKED, host_sp: 0, v: [0; 32], fpsr: 0, fpcr: 0 }
    }
}

/// The EL1 (and EL0) system registers a guest owns. They are live in the CPU
/// only while the vCPU runs.
#[derive(Clone, Debug, Default)]
#[allow(missing_docs)] // Each field is the register of the same name.
pub struct El1Sysregs {
    pub sctlr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
    pub tcr_el1: u64,
    pub mair_el1: u64,
    pub amair_el1: u64,
    pub vbar_el1: u64,
    pub contextidr_el1: u64,
    pub tpidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub afsr0_el1: u64,
    pub afsr1_el1: u64,
    pub par_el1: u64,
    pub cpacr_el1: u64,
    pub cntkctl_el1: u64,
    pub cntv_ctl_el0: u64,
    pub cntv_cval_el0: u64,
    pub csselr_el1: u64,
    pub mdscr_el1: u64,
    /// The pointer-authentication keys (APIA, APIB, APDA, APDB, APGA; each
    /// Lo then Hi), switched only when the CPU implements PAuth.
    pub pauth_keys: [u64; 10],
    /// SVE's predicate registers P0..P15 and then FFR, 16 bits each at the
    /// 128-bit vector length Lantern gives every guest (the Z registers are
    /// then the V registers in [`GuestRegs::v`]); switched only when the CPU
    /// implements SVE.
    pub sve_predicates: [u16; 17],
    /// ZCR_EL1 (the guest's requested vector length), with the predicates.
    pub zcr_el1: u64,
}

/// SCTLR_EL1 reset value with the MMU and caches off (RES1 bits set).
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// Maximum number of list registers the architecture allows.
pub const MAX_LRS: usize = 16;

/// The guest's view of the GIC virtual CPU interface (ICH_* registers).
#[derive(Clone, Debug, Default)]
pub struct VgicState {
    /// ICH_LR<n>_EL2.
    pub lr: [u64; MAX_LRS],
    /// ICH_VMCR_EL2 (the guest's ICV_PMR, BPR and group enables).
    pub vmcr: u64,
    /// ICH_AP0R0_EL2.
    pub ap0r0: u64,
    /// ICH_AP1R0_EL2.
    pub ap1r0: u64,
    /// Changed since it was last saved from the hardware (an injection), so
    /// the list registers must be written before the next entry.
    pub dirty: bool,
}

/// List register: state field shift (bits 63:62).
pub const LR_STATE_SHIFT: u32 = 62;
/// List register state: pending.
pub const LR_STATE_PENDING: u64 = 1;
/// List register state: active.
pub const LR_STATE_ACTIVE: u64 = 2;
/// List register: Group 1 bit.
pub const LR_GROUP1: u64 = 1 << 60;
/// List register: priority field shift (bits 55:48).
pub const LR_PRIORITY_SHIFT: u32 = 48;

impl VgicState {
    /// State (0 invalid, 1 pending, 2 active, 3 both) of list register `i`.
    pub fn lr_state(&self, i: usize) -> u64 {
        self.lr[i] >> LR_STATE_SHIFT
    }

    /// Whether virtual interrupt `intid` sits in a list register (pending or
    /// active) among the first `nr_lrs`.
    pub fn holds(&self, intid: u32, nr_lrs: usize) -> bool {
        (0..nr_lrs.min(MAX_LRS)).any(|i| self.lr_state(i) != 0 && (self.lr[i] & 0xffff_ffff) as u32 == intid)
    }

    /// Makes virtual interrupt `intid` pending with `priority`, unless it is
    /// already pending or active. Returns false when every list register is
    /// in use (the caller retries after the next exit).
    pub fn inject(&mut self, intid: u32, priority: u8, nr_lrs: usize) -> bool {
        if self.holds(intid, nr_lrs) {
            return true;
        }
        for i in 0..nr_lrs.min(MAX_LRS) {
            if self.lr_state(i) == 0 {
                self.lr[i] = (LR_STATE_PENDING << LR_STATE_SHIFT)
                    | LR_GROUP1
                    | ((priority as u64) << LR_PRIORITY_SHIFT)
                    | intid as u64;
                self.dirty = true;
                return true;
            }
        }
        false
    }

    /// Whether any list register holds a pending (not yet acknowledged) interrupt.
    pub fn any_pending(&self, nr_lrs: usize) -> bool {
        (0..nr_lrs.min(MAX_LRS)).any(|i| self.lr_state(i) & LR_STATE_PENDING != 0)
    }
}

/// Everything that makes up one vCPU's hardware context on arm64.
#[derive(Clone, Debug, Default)]
pub struct VcpuContext {
    /// GPRs, PC, PSTATE, FP/SIMD.
    pub regs: GuestRegs,
    /// EL1 system registers.
    pub sys: El1Sysregs,
    /// Virtual GIC CPU interface.
    pub vgic: VgicState,
    /// VMPIDR_EL2: the MPIDR the guest reads for this vCPU.
    pub vmpidr: u64,
    /// What the debugger armed (loaded on every entry while armed).
    pub debug: crate::debug::DebugRegs,
}

impl VcpuContext {
    /// A vCPU in the arm64 Linux boot state: EL1h, interrupts masked, MMU off,
    /// at `entry` with `x0 = arg0`; `mpidr` is its affinity value.
    pub fn new(entry: u64, arg0: u64, mpidr: u64) -> Self {
        let mut c = VcpuContext::default();
        c.reset(entry, arg0);
        // Bit 31 is RES1 in MPIDR; affinity 0 is the vCPU id.
        c.vmpidr = (1 << 31) | mpidr;
        c
    }

    /// Resets the registers to the boot state at `entry` with `x0 = arg0`
    /// (PSCI CPU_ON semantics: the MPIDR is kept).
    pub fn reset(&mut self, entry: u64, arg0: u64) {
        self.regs = GuestRegs::default();
        self.regs.pc = entry;
        self.regs.x[0] = arg0;
        self.sys = El1Sysregs { sctlr_el1: SCTLR_EL1_RESET, ..El1Sysregs::default() };
        self.vgic = VgicState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inject_uses_free_lr_once() {
        let mut v = VgicState::default();
        assert!(v.inject(31, 0xa0, 4));
        assert!(v.inject(31, 0xa0, 4));
        assert_eq!(v.lr.iter().filter(|l| **l != 0).count(), 1);
        assert!(v.holds(31, 4));
        assert!(v.any_pending(4));
        assert_eq!(v.lr[0] >> 62, 1);
        assert_eq!(v.lr[0] & 0xffff_ffff, 31);
        assert_eq!((v.lr[0] >> 48) & 0xff, 0xa0);
    }

    #[test]
    fn inject_full() {
        let mut v = VgicState::default();
        for i in 0..4 {
            assert!(v.inject(20 + i, 0, 4));
        }
        assert!(!v.inject(31, 0, 4));
    }

    #[test]
    fn boot_state() {
        let c = VcpuContext::new(0x4008_0000, 0x4000_0000, 1);
        assert_eq!(c.regs.pc, 0x4008_0000);
        assert_eq!(c.regs.x[0], 0x4000_0000);
        assert_eq!(c.regs.pstate, 0x3c5);
        assert_eq!(c.vmpidr, 0x8000_0001);
    }
}
