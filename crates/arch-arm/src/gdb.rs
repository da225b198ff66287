//! The vCPU register file as gdb sees it: the `org.gnu.gdb.aarch64.core`
//! feature (x0..x30, sp, pc, cpsr) and Lantern's `org.lantern.aarch64.el1`
//! feature (the EL1 system registers a guest-kernel developer needs: SCTLR,
//! TTBR0/1, TCR, MAIR, VBAR, ESR, FAR, ELR, SPSR), little-endian, in the order
//! of [`TARGET_XML`]. SP is the stack pointer of the guest's current mode.

use xen_abi::errno::{Errno, XenResult};

use crate::context::VcpuContext;

/// gdb target description: the AArch64 core registers only (small, so gdb
/// attaches quickly over a serial line).
pub const TARGET_XML: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0"><architecture>aarch64</architecture><feature name="org.gnu.gdb.aarch64.core"><reg name="x0" bitsize="64" type="int"/><reg name="x1" bitsize="64" type="int"/><reg name="x2" bitsize="64" type="int"/><reg name="x3" bitsize="64" type="int"/><reg name="x4" bitsize="64" type="int"/><reg name="x5" bitsize="64" type="int"/><reg name="x6" bitsize="64" type="int"/><reg name="x7" bitsize="64" type="int"/><reg name="x8" bitsize="64" type="int"/><reg name="x9" bitsize="64" type="int"/><reg name="x10" bitsize="64" type="int"/><reg name="x11" bitsize="64" type="int"/><reg name="x12" bitsize="64" type="int"/><reg name="x13" bitsize="64" type="int"/><reg name="x14" bitsize="64" type="int"/><reg name="x15" bitsize="64" type="int"/><reg name="x16" bitsize="64" type="int"/><reg name="x17" bitsize="64" type="int"/><reg name="x18" bitsize="64" type="int"/><reg name="x19" bitsize="64" type="int"/><reg name="x20" bitsize="64" type="int"/><reg name="x21" bitsize="64" type="int"/><reg name="x22" bitsize="64" type="int"/><reg name="x23" bitsize="64" type="int"/><reg name="x24" bitsize="64" type="int"/><reg name="x25" bitsize="64" type="int"/><reg name="x26" bitsize="64" type="int"/><reg name="x27" bitsize="64" type="int"/><reg name="x28" bitsize="64" type="int"/><reg name="x29" bitsize="64" type="int"/><reg name="x30" bitsize="64" type="int"/><reg name="sp" bitsize="64" type="data_ptr"/><reg name="pc" bitsize="64" type="code_ptr"/><reg name="cpsr" bitsize="32" type="int"/></feature><feature name="org.lantern.aarch64.el1"><reg name="sctlr_el1" bitsize="64" type="int" group="system"/><reg name="ttbr0_el1" bitsize="64" type="int" group="system"/><reg name="ttbr1_el1" bitsize="64" type="int" group="system"/><reg name="tcr_el1" bitsize="64" type="int" group="system"/><reg name="mair_el1" bitsize="64" type="int" group="system"/><reg name="vbar_el1" bitsize="64" type="code_ptr" group="system"/><reg name="esr_el1" bitsize="64" type="int" group="system"/><reg name="far_el1" bitsize="64" type="data_ptr" group="system"/><reg name="elr_el1" bitsize="64" type="code_ptr" group="system"/><reg name="spsr_el1" bitsize="64" type="int" group="system"/></feature></target>"#;

/// Size of the core feature: 33 × 8 + 4 bytes.
const CORE_SIZE: usize = 33 * 8 + 4;
/// Number of EL1 system registers in the second feature.
const SYS_REGS: usize = 10;
/// Size of the register file in bytes.
pub const REGS_SIZE: usize = CORE_SIZE + SYS_REGS * 8;

/// The EL1 system registers in target-description order.
fn sysregs_mut(ctx: &mut VcpuContext) -> [&mut u64; SYS_REGS] {
    let s = &mut ctx.sys;
    [
        &mut s.sctlr_el1,
        &mut s.ttbr0_el1,
        &mut s.ttbr1_el1,
        &mut s.tcr_el1,
        &mut s.mair_el1,
        &mut s.vbar_el1,
        &mut s.esr_el1,
        &mut s.far_el1,
        &mut s.elr_el1,
        &mut s.spsr_el1,
    ]
}

fn sp_uses_el1(pstate: u64) -> bool {
    // M[3:0] = 0b0101: EL1h (SP_EL1); EL1t and EL0t use SP_EL0.
    pstate & 0xf == 0b0101
}

/// Serialises `ctx` into `out`; returns the bytes written (0 if `out` is too small).
pub fn read_registers(ctx: &VcpuContext, out: &mut [u8]) -> usize {
    if out.len() < REGS_SIZE {
        return 0;
    }
    for (i, x) in ctx.regs.x.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
    let sp = if sp_uses_el1(ctx.regs.pstate) { ctx.sys.sp_el1 } else { ctx.sys.sp_el0 };
    out[248..256].copy_from_slice(&sp.to_le_bytes());
    out[256..264].copy_from_slice(&ctx.regs.pc.to_le_bytes());
    out[264..268].copy_from_slice(&(ctx.regs.pstate as u32).to_le_bytes());
    let s = &ctx.sys;
    let sys = [
        s.sctlr_el1,
        s.ttbr0_el1,
        s.ttbr1_el1,
        s.tcr_el1,
        s.mair_el1,
        s.vbar_el1,
        s.esr_el1,
        s.far_el1,
        s.elr_el1,
        s.spsr_el1,
    ];
    for (i, r) in sys.iter().enumerate() {
        out[CORE_SIZE + i * 8..CORE_SIZE + i * 8 + 8].copy_from_slice(&r.to_le_bytes());
    }
    REGS_SIZE
}

/// Loads the register file from gdb's bytes.
pub fn write_registers(ctx: &mut VcpuContext, data: &[u8]) -> XenResult<()> {
    if data.len() < REGS_SIZE {
        return Err(Errno::EINVAL);
    }
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or([0; 8]));
    for i in 0..31 {
        ctx.regs.x[i] = u64_at(i * 8);
    }
    let sp = u64_at(248);
    if sp_uses_el1(ctx.regs.pstate) {
        ctx.sys.sp_el1 = sp;
    } else {
        ctx.sys.sp_el0 = sp;
    }
    ctx.regs.pc = u64_at(256);
    let cpsr = u32::from_le_bytes(data[264..268].try_into().unwrap_or([0; 4])) as u64;
    // Only the condition flags may change: the mode and masks stay the
    // hypervisor's business.
    ctx.regs.pstate = (ctx.regs.pstate & !0xf000_0000) | (cpsr & 0xf000_0000);
    // The EL1 system registers are the guest's own: a debugger may change
    // them (they are loaded on the next entry).
    for (i, r) in sysregs_mut(ctx).into_iter().enumerate() {
        *r = u64_at(CORE_SIZE + i * 8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = VcpuContext::new(0x1000, 7, 0);
        c.sys.sp_el1 = 0x8000;
        let mut buf = [0u8; REGS_SIZE];
        assert_eq!(read_registers(&c, &mut buf), REGS_SIZE);
        assert_eq!(&buf[0..8], &7u64.to_le_bytes());
        assert_eq!(&buf[248..256], &0x8000u64.to_le_bytes());
        assert_eq!(&buf[256..264], &0x1000u64.to_le_bytes());
        buf[8] = 9;
        buf[267] = 0x60; // Z and C flags
        write_registers(&mut c, &buf).unwrap();
        assert_eq!(c.regs.x[1], 9);
        assert_eq!(c.regs.pstate, 0x6000_03c5);
        assert!(TARGET_XML.contains("x30"));
        assert_eq!(TARGET_XML.matches("<reg ").count(), 34 + SYS_REGS);
        // The EL1 system registers follow the core ones, in XML order.
        c.sys.vbar_el1 = 0xffff_0000_0008_0000;
        assert_eq!(read_registers(&c, &mut buf), REGS_SIZE);
        assert_eq!(&buf[CORE_SIZE + 5 * 8..CORE_SIZE + 6 * 8], &0xffff_0000_0008_0000u64.to_le_bytes());
        buf[CORE_SIZE + 6 * 8] = 0x56; // esr_el1
        write_registers(&mut c, &buf).unwrap();
        assert_eq!(c.sys.esr_el1, 0x56);
    }
}
