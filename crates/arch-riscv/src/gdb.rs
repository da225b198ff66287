//! The vCPU register file as gdb sees it: gdb's `org.gnu.gdb.riscv.cpu`
//! feature (x0..x31 under their ABI names, then pc), `org.gnu.gdb.riscv.fpu`
//! (f0..f31, fflags, frm, fcsr) and `org.gnu.gdb.riscv.csr` with the
//! guest's own supervisor CSRs (its `sstatus` .. `satp`, which are the VS
//! CSRs while it runs), little-endian, in the order of [`TARGET_XML`].

use xen_abi::errno::{Errno, XenResult};

use crate::context::VcpuContext;

/// gdb target description, one register per line.
pub const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>riscv:rv64</architecture>
  <feature name="org.gnu.gdb.riscv.cpu">
    <reg name="zero" bitsize="64" type="int"/>
    <reg name="ra" bitsize="64" type="code_ptr"/>
    <reg name="sp" bitsize="64" type="data_ptr"/>
    <reg name="gp" bitsize="64" type="data_ptr"/>
    <reg name="tp" bitsize="64" type="data_ptr"/>
    <reg name="t0" bitsize="64" type="int"/>
    <reg name="t1" bitsize="64" type="int"/>
    <reg name="t2" bitsize="64" type="int"/>
    <reg name="fp" bitsize="64" type="data_ptr"/>
    <reg name="s1" bitsize="64" type="int"/>
    <reg name="a0" bitsize="64" type="int"/>
    <reg name="a1" bitsize="64" type="int"/>
    <reg name="a2" bitsize="64" type="int"/>
    <reg name="a3" bitsize="64" type="int"/>
    <reg name="a4" bitsize="64" type="int"/>
    <reg name="a5" bitsize="64" type="int"/>
    <reg name="a6" bitsize="64" type="int"/>
    <reg name="a7" bitsize="64" type="int"/>
    <reg name="s2" bitsize="64" type="int"/>
    <reg name="s3" bitsize="64" type="int"/>
    <reg name="s4" bitsize="64" type="int"/>
    <reg name="s5" bitsize="64" type="int"/>
    <reg name="s6" bitsize="64" type="int"/>
    <reg name="s7" bitsize="64" type="int"/>
    <reg name="s8" bitsize="64" type="int"/>
    <reg name="s9" bitsize="64" type="int"/>
    <reg name="s10" bitsize="64" type="int"/>
    <reg name="s11" bitsize="64" type="int"/>
    <reg name="t3" bitsize="64" type="int"/>
    <reg name="t4" bitsize="64" type="int"/>
    <reg name="t5" bitsize="64" type="int"/>
    <reg name="t6" bitsize="64" type="int"/>
    <reg name="pc" bitsize="64" type="code_ptr"/>
  </feature>
  <feature name="org.gnu.gdb.riscv.fpu">
    <reg name="ft0" bitsize="64" type="ieee_double"/>
    <reg name="ft1" bitsize="64" type="ieee_double"/>
    <reg name="ft2" bitsize="64" type="ieee_double"/>
    <reg name="ft3" bitsize="64" type="ieee_double"/>
    <reg name="ft4" bitsize="64" type="ieee_double"/>
    <reg name="ft5" bitsize="64" type="ieee_double"/>
    <reg name="ft6" bitsize="64" type="ieee_double"/>
    <reg name="ft7" bitsize="64" type="ieee_double"/>
    <reg name="fs0" bitsize="64" type="ieee_double"/>
    <reg name="fs1" bitsize="64" type="ieee_double"/>
    <reg name="fa0" bitsize="64" type="ieee_double"/>
    <reg name="fa1" bitsize="64" type="ieee_double"/>
    <reg name="fa2" bitsize="64" type="ieee_double"/>
    <reg name="fa3" bitsize="64" type="ieee_double"/>
    <reg name="fa4" bitsize="64" type="ieee_double"/>
    <reg name="fa5" bitsize="64" type="ieee_double"/>
    <reg name="fa6" bitsize="64" type="ieee_double"/>
    <reg name="fa7" bitsize="64" type="ieee_double"/>
    <reg name="fs2" bitsize="64" type="ieee_double"/>
    <reg name="fs3" bitsize="64" type="ieee_double"/>
    <reg name="fs4" bitsize="64" type="ieee_double"/>
    <reg name="fs5" bitsize="64" type="ieee_double"/>
    <reg name="fs6" bitsize="64" type="ieee_double"/>
    <reg name="fs7" bitsize="64" type="ieee_double"/>
    <reg name="fs8" bitsize="64" type="ieee_double"/>
    <reg name="fs9" bitsize="64" type="ieee_double"/>
    <reg name="fs10" bitsize="64" type="ieee_double"/>
    <reg name="fs11" bitsize="64" type="ieee_double"/>
    <reg name="ft8" bitsize="64" type="ieee_double"/>
    <reg name="ft9" bitsize="64" type="ieee_double"/>
    <reg name="ft10" bitsize="64" type="ieee_double"/>
    <reg name="ft11" bitsize="64" type="ieee_double"/>
    <reg name="fflags" bitsize="32" type="int" group="float"/>
    <reg name="frm" bitsize="32" type="int" group="float"/>
    <reg name="fcsr" bitsize="32" type="int" group="float"/>
  </feature>
  <feature name="org.gnu.gdb.riscv.csr">
    <reg name="sstatus" bitsize="64" type="int" group="system"/>
    <reg name="sie" bitsize="64" type="int" group="system"/>
    <reg name="stvec" bitsize="64" type="int" group="system"/>
    <reg name="sscratch" bitsize="64" type="int" group="system"/>
    <reg name="sepc" bitsize="64" type="int" group="system"/>
    <reg name="scause" bitsize="64" type="int" group="system"/>
    <reg name="stval" bitsize="64" type="int" group="system"/>
    <reg name="satp" bitsize="64" type="int" group="system"/>
  </feature>
</target>
"#;

/// Bytes of the cpu feature: 32 registers and the PC.
const CPU_SIZE: usize = 33 * 8;
/// Offset of fflags, frm and fcsr (4 bytes each) after f0..f31.
const FCSR_AT: usize = CPU_SIZE + 32 * 8;
/// Offset of the CSR feature.
const CSR_AT: usize = FCSR_AT + 3 * 4;
/// Number of CSRs in the CSR feature.
const CSRS: usize = 8;
/// Size of the register file in bytes.
pub const REGS_SIZE: usize = CSR_AT + CSRS * 8;

/// The CSR feature's registers in description order.
fn csrs_mut(ctx: &mut VcpuContext) -> [&mut u64; CSRS] {
    let s = &mut ctx.vs;
    [
        &mut s.vsstatus,
        &mut s.vsie,
        &mut s.vstvec,
        &mut s.vsscratch,
        &mut s.vsepc,
        &mut s.vscause,
        &mut s.vstval,
        &mut s.vsatp,
    ]
}

/// Serialises `ctx` into `out`; returns the bytes written (0 if `out` is too small).
pub fn read_registers(ctx: &VcpuContext, out: &mut [u8]) -> usize {
    if out.len() < REGS_SIZE {
        return 0;
    }
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    for (i, x) in ctx.x.iter().enumerate() {
        put(i * 8, &x.to_le_bytes());
    }
    put(32 * 8, &ctx.pc.to_le_bytes());
    for (i, f) in ctx.f.iter().enumerate() {
        put(CPU_SIZE + i * 8, &f.to_le_bytes());
    }
    let fcsr = ctx.fcsr as u32;
    put(FCSR_AT, &(fcsr & 0x1f).to_le_bytes());
    put(FCSR_AT + 4, &((fcsr >> 5) & 7).to_le_bytes());
    put(FCSR_AT + 8, &(fcsr & 0xff).to_le_bytes());
    let mut copy = ctx.clone();
    for (i, r) in csrs_mut(&mut copy).into_iter().enumerate() {
        put(CSR_AT + i * 8, &r.to_le_bytes());
    }
    REGS_SIZE
}

/// Loads the register file from gdb's bytes. x0 stays 0; fcsr is taken
/// from fflags and frm where gdb changed those, else from fcsr.
pub fn write_registers(ctx: &mut VcpuContext, data: &[u8]) -> XenResult<()> {
    if data.len() < REGS_SIZE {
        return Err(Errno::EINVAL);
    }
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or([0; 4]));
    for i in 1..32 {
        ctx.x[i] = u64_at(i * 8);
    }
    ctx.pc = u64_at(32 * 8);
    for i in 0..32 {
        ctx.f[i] = u64_at(CPU_SIZE + i * 8);
    }
    let old = ctx.fcsr as u32;
    let (fflags, frm, fcsr) = (u32_at(FCSR_AT) & 0x1f, u32_at(FCSR_AT + 4) & 7, u32_at(FCSR_AT + 8) & 0xff);
    let new = if fcsr != old & 0xff { fcsr } else { fflags | (frm << 5) };
    ctx.fcsr = u64::from(new);
    for (i, r) in csrs_mut(ctx).into_iter().enumerate() {
        *r = u64_at(CSR_AT + i * 8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, bitsize)` of every `<reg>`, in order, each on a line of its own.
    fn registers(xml: &str) -> Vec<(String, usize)> {
        let mut regs = Vec::new();
        for line in xml.lines() {
            let line = line.trim();
            if !line.starts_with("<reg ") {
                assert!(!line.contains("<reg "), "one register per line: {line}");
                continue;
            }
            assert!(line.ends_with("/>") && line.matches("<reg ").count() == 1, "{line}");
            let attr = |key: &str| {
                let start = line.find(&format!(" {key}=\"")).unwrap() + key.len() + 3;
                line[start..start + line[start..].find('"').unwrap()].to_string()
            };
            regs.push((attr("name"), attr("bitsize").parse().unwrap()));
        }
        regs
    }

    #[test]
    fn target_xml_lists_what_read_registers_writes() {
        let regs = registers(TARGET_XML);
        assert_eq!(regs.len(), 33 + 35 + CSRS);
        assert_eq!(regs.iter().map(|r| r.1 / 8).sum::<usize>(), REGS_SIZE);
        assert_eq!(regs[0].0, "zero");
        assert_eq!(regs[10].0, "a0");
        assert_eq!(regs[32].0, "pc");
        assert_eq!(regs[33].0, "ft0");
        assert_eq!(regs[67].0, "fcsr");
        assert_eq!(regs[68].0, "sstatus");
        for feature in ["org.gnu.gdb.riscv.cpu", "org.gnu.gdb.riscv.fpu", "org.gnu.gdb.riscv.csr"] {
            assert!(TARGET_XML.contains(&format!("<feature name=\"{feature}\">")), "{feature}");
        }
        assert!(TARGET_XML.starts_with("<?xml"));
        assert_eq!(TARGET_XML.matches("<feature ").count(), TARGET_XML.matches("</feature>").count());

        let mut c = VcpuContext::new(0x20_0000, 1, 2);
        for (i, x) in c.x.iter_mut().enumerate().skip(1) {
            *x = 0x1000 + i as u64;
        }
        for (i, f) in c.f.iter_mut().enumerate() {
            *f = 0x2000 + i as u64;
        }
        c.fcsr = (3 << 5) | 0x11;
        for (i, r) in csrs_mut(&mut c).into_iter().enumerate() {
            *r = 0x4000 + i as u64;
        }
        let mut out = [0u8; REGS_SIZE];
        assert_eq!(read_registers(&c, &mut out[..REGS_SIZE - 1]), 0, "too small a buffer");
        assert_eq!(read_registers(&c, &mut out), REGS_SIZE);
        let mut offset = 0;
        for (i, (name, bits)) in regs.iter().enumerate() {
            let size = bits / 8;
            let mut value = [0u8; 8];
            value[..size].copy_from_slice(&out[offset..offset + size]);
            let want = match i {
                0 => 0,
                1..=31 => 0x1000 + i as u64,
                32 => 0x20_0000,
                33..=64 => 0x2000 + (i - 33) as u64,
                65 => 0x11,
                66 => 3,
                67 => (3 << 5) | 0x11,
                _ => 0x4000 + (i - 68) as u64,
            };
            assert_eq!(u64::from_le_bytes(value), want, "{name} at {offset}");
            offset += size;
        }
    }

    #[test]
    fn writes_round_trip_and_keep_x0_zero() {
        let mut c = VcpuContext::new(0x20_0000, 0, 0);
        let mut buf = [0u8; REGS_SIZE];
        read_registers(&c, &mut buf);
        buf[0] = 0x55; // x0: ignored
        buf[8] = 0x42; // ra
        buf[32 * 8] = 0x10; // pc low byte
        buf[FCSR_AT + 4] = 2; // frm = RDN
        buf[CSR_AT + 7 * 8 + 7] = 0x80; // satp: mode 8 (Sv39)
        write_registers(&mut c, &buf).unwrap();
        assert_eq!(c.x[0], 0);
        assert_eq!(c.x[1], 0x42);
        assert_eq!(c.pc, 0x20_0010);
        assert_eq!(c.fcsr, 2 << 5);
        assert_eq!(c.vs.vsatp, 8 << 60);
        // fcsr written directly wins.
        read_registers(&c, &mut buf);
        buf[FCSR_AT + 8] = 0x1f;
        write_registers(&mut c, &buf).unwrap();
        assert_eq!(c.fcsr, 0x1f);
        assert_eq!(write_registers(&mut c, &buf[..REGS_SIZE - 1]), Err(Errno::EINVAL));
    }
}
