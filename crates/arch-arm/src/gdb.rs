//! The vCPU register file as gdb sees it: the `org.gnu.gdb.aarch64.core`
//! feature (x0..x30, sp, pc, cpsr) and Lantern's `org.lantern.aarch64.el1`
//! feature (the EL1 system registers a guest-kernel developer needs: SCTLR,
//! TTBR0/1, TCR, MAIR, VBAR, ESR, FAR, ELR, SPSR), then gdb's
//! `org.gnu.gdb.aarch64.pauth` (the pointer-authentication code masks, from
//! the guest's TCR_EL1, so gdb strips the codes Linux signs its return
//! addresses with: Lantern passes PAuth through), little-endian, in the
//! order of [`TARGET_XML`]. SP is the stack pointer of the guest's current
//! mode.

use xen_abi::errno::{Errno, XenResult};

use crate::context::VcpuContext;

/// gdb target description: the AArch64 core registers, then the EL1 system
/// registers, one register per line. Whitespace between the elements is not
/// significant to gdb's parser.
pub const TARGET_XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
  <architecture>aarch64</architecture>
  <feature name="org.gnu.gdb.aarch64.core">
    <reg name="x0" bitsize="64" type="int"/>
    <reg name="x1" bitsize="64" type="int"/>
    <reg name="x2" bitsize="64" type="int"/>
    <reg name="x3" bitsize="64" type="int"/>
    <reg name="x4" bitsize="64" type="int"/>
    <reg name="x5" bitsize="64" type="int"/>
    <reg name="x6" bitsize="64" type="int"/>
    <reg name="x7" bitsize="64" type="int"/>
    <reg name="x8" bitsize="64" type="int"/>
    <reg name="x9" bitsize="64" type="int"/>
    <reg name="x10" bitsize="64" type="int"/>
    <reg name="x11" bitsize="64" type="int"/>
    <reg name="x12" bitsize="64" type="int"/>
    <reg name="x13" bitsize="64" type="int"/>
    <reg name="x14" bitsize="64" type="int"/>
    <reg name="x15" bitsize="64" type="int"/>
    <reg name="x16" bitsize="64" type="int"/>
    <reg name="x17" bitsize="64" type="int"/>
    <reg name="x18" bitsize="64" type="int"/>
    <reg name="x19" bitsize="64" type="int"/>
    <reg name="x20" bitsize="64" type="int"/>
    <reg name="x21" bitsize="64" type="int"/>
    <reg name="x22" bitsize="64" type="int"/>
    <reg name="x23" bitsize="64" type="int"/>
    <reg name="x24" bitsize="64" type="int"/>
    <reg name="x25" bitsize="64" type="int"/>
    <reg name="x26" bitsize="64" type="int"/>
    <reg name="x27" bitsize="64" type="int"/>
    <reg name="x28" bitsize="64" type="int"/>
    <reg name="x29" bitsize="64" type="int"/>
    <reg name="x30" bitsize="64" type="int"/>
    <reg name="sp" bitsize="64" type="data_ptr"/>
    <reg name="pc" bitsize="64" type="code_ptr"/>
    <reg name="cpsr" bitsize="32" type="int"/>
  </feature>
  <feature name="org.lantern.aarch64.el1">
    <reg name="sctlr_el1" bitsize="64" type="int" group="system"/>
    <reg name="ttbr0_el1" bitsize="64" type="int" group="system"/>
    <reg name="ttbr1_el1" bitsize="64" type="int" group="system"/>
    <reg name="tcr_el1" bitsize="64" type="int" group="system"/>
    <reg name="mair_el1" bitsize="64" type="int" group="system"/>
    <reg name="vbar_el1" bitsize="64" type="code_ptr" group="system"/>
    <reg name="esr_el1" bitsize="64" type="int" group="system"/>
    <reg name="far_el1" bitsize="64" type="data_ptr" group="system"/>
    <reg name="elr_el1" bitsize="64" type="code_ptr" group="system"/>
    <reg name="spsr_el1" bitsize="64" type="int" group="system"/>
  </feature>
  <feature name="org.gnu.gdb.aarch64.pauth">
    <reg name="pauth_dmask" bitsize="64" type="int"/>
    <reg name="pauth_cmask" bitsize="64" type="int"/>
  </feature>
</target>
"#;

/// Size of the core feature: 33 × 8 + 4 bytes.
const CORE_SIZE: usize = 33 * 8 + 4;
/// Number of EL1 system registers in the second feature.
const SYS_REGS: usize = 10;
/// Offset of the pauth feature (data mask, then code mask).
const PAUTH_AT: usize = CORE_SIZE + SYS_REGS * 8;
/// Size of the register file in bytes.
pub const REGS_SIZE: usize = PAUTH_AT + 2 * 8;

/// The bits of a pointer that hold its authentication code under
/// `tcr_el1`, as gdb's pauth masks want them (Linux's ptrace gives the same
/// for its processes): bits 54 down to the virtual-address size of either
/// half (T0SZ, T1SZ; the top byte and bit 55 gdb handles itself). None
/// where a half's size leaves no room (TxSZ 0: translation not set up).
pub fn pac_mask(tcr_el1: u64) -> u64 {
    let half = |txsz: u64| {
        let va_bits = 64 - txsz.min(64);
        if va_bits >= 55 {
            0
        } else {
            ((1u64 << 55) - 1) & !((1u64 << va_bits) - 1)
        }
    };
    half(tcr_el1 & 0x3f) | half((tcr_el1 >> 16) & 0x3f)
}

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
    let mask = pac_mask(s.tcr_el1);
    out[PAUTH_AT..PAUTH_AT + 8].copy_from_slice(&mask.to_le_bytes());
    out[PAUTH_AT + 8..PAUTH_AT + 16].copy_from_slice(&mask.to_le_bytes());
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
    // The pauth masks follow from TCR_EL1: what gdb writes there is ignored.
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
        assert_eq!(TARGET_XML.matches("<reg ").count(), 34 + SYS_REGS + 2);
        // The EL1 system registers follow the core ones, in XML order.
        c.sys.vbar_el1 = 0xffff_0000_0008_0000;
        assert_eq!(read_registers(&c, &mut buf), REGS_SIZE);
        assert_eq!(&buf[CORE_SIZE + 5 * 8..CORE_SIZE + 6 * 8], &0xffff_0000_0008_0000u64.to_le_bytes());
        buf[CORE_SIZE + 6 * 8] = 0x56; // esr_el1
        write_registers(&mut c, &buf).unwrap();
        assert_eq!(c.sys.esr_el1, 0x56);
    }

    /// `(name, bitsize)` of every `<reg>` of a target description, in order,
    /// after checking that the elements nest properly, that no text stands
    /// outside `<architecture>` and that each register has a line of its own.
    fn registers(xml: &'static str) -> Vec<(&'static str, usize)> {
        let attr = |tag: &'static str, key: &str| -> &'static str {
            let start = tag.find(&format!(" {key}=\"")).unwrap_or_else(|| panic!("no {key} in {tag}")) + key.len() + 3;
            &tag[start..start + tag[start..].find('"').expect("unclosed attribute")]
        };
        let mut open: Vec<&str> = Vec::new();
        let mut regs = Vec::new();
        let mut pos = 0;
        while let Some(lt) = xml[pos..].find('<').map(|i| pos + i) {
            let text = &xml[pos..lt];
            assert!(text.trim().is_empty() || open.last() == Some(&"architecture"), "stray text {text:?}");
            let gt = lt + xml[lt..].find('>').expect("unclosed tag");
            let tag = &xml[lt..=gt];
            if let Some(closing) = tag.strip_prefix("</") {
                assert_eq!(open.pop(), Some(closing.trim_end_matches('>')), "mismatched {tag}");
            } else if tag.starts_with("<?") || tag.starts_with("<!") {
                // The XML declaration and the DTD reference.
            } else {
                let name = tag[1..].split([' ', '>', '/']).next().unwrap();
                if !tag.ends_with("/>") {
                    open.push(name);
                } else if name == "reg" {
                    let line_start = xml[..lt].rfind('\n').map_or(0, |i| i + 1);
                    assert!(
                        xml[line_start..lt].trim().is_empty() && xml[gt + 1..].starts_with('\n'),
                        "{tag}: own line"
                    );
                    regs.push((attr(tag, "name"), attr(tag, "bitsize").parse().unwrap()));
                }
            }
            pos = gt + 1;
        }
        assert!(xml[pos..].trim().is_empty() && open.is_empty(), "unclosed {open:?}");
        regs
    }

    #[test]
    fn target_xml_lists_what_read_registers_writes() {
        let regs = registers(TARGET_XML);
        let names: Vec<&str> = regs.iter().map(|r| r.0).collect();
        let mut expected: Vec<String> = (0..31).map(|i| format!("x{i}")).collect();
        expected.extend(["sp", "pc", "cpsr"].map(String::from));
        expected.extend(
            ["sctlr", "ttbr0", "ttbr1", "tcr", "mair", "vbar", "esr", "far", "elr", "spsr"].map(|r| format!("{r}_el1")),
        );
        expected.extend(["pauth_dmask", "pauth_cmask"].map(String::from));
        assert_eq!(names, expected);
        let bytes: usize = regs.iter().map(|r| r.1 / 8).sum();
        assert_eq!(bytes, REGS_SIZE);
        let mut c = VcpuContext::new(0, 0, 0);
        let mut out = [0u8; REGS_SIZE + 16];
        assert_eq!(read_registers(&c, &mut out), bytes);
        assert_eq!(read_registers(&c, &mut out[..REGS_SIZE - 1]), 0, "too small a buffer");

        // Every register sits at the offset its place in the XML gives it.
        for (i, x) in c.regs.x.iter_mut().enumerate() {
            *x = 0x1000 + i as u64;
        }
        c.sys.sp_el1 = 0x2000;
        c.regs.pc = 0x3000;
        for (i, r) in sysregs_mut(&mut c).into_iter().enumerate() {
            *r = 0x4000 + i as u64;
        }
        // TCR_EL1 (0x4003): T0SZ 3 (a 61-bit space): no room for a code.
        let tcr_at = CORE_SIZE + 3 * 8;
        read_registers(&c, &mut out);
        let mut offset = 0;
        for (i, (name, bits)) in regs.iter().enumerate() {
            let size = bits / 8;
            let mut value = [0u8; 8];
            value[..size].copy_from_slice(&out[offset..offset + size]);
            let want = match i {
                0..=30 => 0x1000 + i as u64,
                31 => 0x2000,
                32 => 0x3000,
                33 => c.regs.pstate & 0xffff_ffff,
                34..=43 => 0x4000 + (i - 34) as u64,
                _ => pac_mask(u64::from_le_bytes(out[tcr_at..tcr_at + 8].try_into().unwrap())),
            };
            assert_eq!(u64::from_le_bytes(value), want, "{name} at {offset}");
            offset += size;
        }
    }

    /// The masks gdb strips authentication codes with: bits 54 down to the
    /// address size, from T0SZ and T1SZ (Linux: 48-bit halves, T0SZ = T1SZ
    /// = 16; 39-bit with 25), none while translation is not set up.
    #[test]
    fn pac_masks_follow_tcr() {
        assert_eq!(pac_mask((16 << 16) | 16), 0x007f_0000_0000_0000);
        assert_eq!(pac_mask((25 << 16) | 25), 0x007f_ff80_0000_0000);
        // The halves differ: the union.
        assert_eq!(pac_mask((25 << 16) | 16), 0x007f_ff80_0000_0000);
        assert_eq!(pac_mask(0), 0);
        // What gdb reads follows TCR_EL1; what it writes there is ignored.
        let mut c = VcpuContext::new(0, 0, 0);
        c.sys.tcr_el1 = (16 << 16) | 16;
        let mut buf = [0u8; REGS_SIZE];
        read_registers(&c, &mut buf);
        assert_eq!(&buf[PAUTH_AT + 8..], &0x007f_0000_0000_0000u64.to_le_bytes());
        buf[PAUTH_AT..].fill(0xff);
        write_registers(&mut c, &buf).unwrap();
        assert_eq!(c.sys.tcr_el1, (16 << 16) | 16);
    }

    #[test]
    #[should_panic(expected = "own line")]
    fn the_checker_refuses_two_registers_on_a_line() {
        registers(
            "<target><feature>\n<reg name=\"a\" bitsize=\"8\"/><reg name=\"b\" bitsize=\"8\"/>\n</feature></target>",
        );
    }

    #[test]
    #[should_panic(expected = "mismatched")]
    fn the_checker_refuses_misnested_elements() {
        registers("<target><feature>\n</target></feature>");
    }

    #[test]
    fn target_xml_is_the_one_line_description_laid_out() {
        // Dropping the whitespace between elements gives back, byte for byte,
        // the single-line description gdb was given before the layout
        // (2,247 bytes, FNV-1a 0xc3ae6d48479af2bf) with the pauth feature
        // added before `</target>`: a change here is deliberate, never a
        // reflow.
        let mut compact = String::new();
        for line in TARGET_XML.lines() {
            compact.push_str(line.trim());
        }
        assert_eq!(compact.len(), 2397);
        let fnv1a = compact.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        assert_eq!(fnv1a, 0x93de_5299_ca8c_d9eb);
        assert!(TARGET_XML.starts_with("<?xml"), "nothing may precede the XML declaration");
    }
}
