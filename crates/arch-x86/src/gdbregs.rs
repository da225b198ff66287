//! The guest register file in gdb's x86-64 order (core + SSE features): the
//! target description and (de)serialisation from the VMCB, the saved GPRs and
//! the FXSAVE image.

use xen_abi::errno::{Errno, XenResult};

use crate::svm::{FxArea, GuestRegs};
use crate::vmcb::Vmcb;

/// Bytes in the register file: 17×8 (GPRs, rip) + 7×4 (eflags, segments) +
/// 8×10 (st0–7) + 8×4 (x87 control) + 16×16 (xmm) + 4 (mxcsr).
pub const REGS_SIZE: usize = 17 * 8 + 7 * 4 + 80 + 32 + 256 + 4;

/// gdb target description for x86-64 guests.
pub const TARGET_XML: &str = concat!(
    r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0">"#,
    r#"<architecture>i386:x86-64</architecture><feature name="org.gnu.gdb.i386.core">"#,
    r#"<reg name="rax" bitsize="64" type="int64" regnum="0"/><reg name="rbx" bitsize="64" type="int64"/>"#,
    r#"<reg name="rcx" bitsize="64" type="int64"/><reg name="rdx" bitsize="64" type="int64"/>"#,
    r#"<reg name="rsi" bitsize="64" type="int64"/><reg name="rdi" bitsize="64" type="int64"/>"#,
    r#"<reg name="rbp" bitsize="64" type="data_ptr"/><reg name="rsp" bitsize="64" type="data_ptr"/>"#,
    r#"<reg name="r8" bitsize="64" type="int64"/><reg name="r9" bitsize="64" type="int64"/>"#,
    r#"<reg name="r10" bitsize="64" type="int64"/><reg name="r11" bitsize="64" type="int64"/>"#,
    r#"<reg name="r12" bitsize="64" type="int64"/><reg name="r13" bitsize="64" type="int64"/>"#,
    r#"<reg name="r14" bitsize="64" type="int64"/><reg name="r15" bitsize="64" type="int64"/>"#,
    r#"<reg name="rip" bitsize="64" type="code_ptr"/><reg name="eflags" bitsize="32" type="int32"/>"#,
    r#"<reg name="cs" bitsize="32" type="int32"/><reg name="ss" bitsize="32" type="int32"/>"#,
    r#"<reg name="ds" bitsize="32" type="int32"/><reg name="es" bitsize="32" type="int32"/>"#,
    r#"<reg name="fs" bitsize="32" type="int32"/><reg name="gs" bitsize="32" type="int32"/>"#,
    r#"<reg name="st0" bitsize="80" type="i387_ext"/><reg name="st1" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="st2" bitsize="80" type="i387_ext"/><reg name="st3" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="st4" bitsize="80" type="i387_ext"/><reg name="st5" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="st6" bitsize="80" type="i387_ext"/><reg name="st7" bitsize="80" type="i387_ext"/>"#,
    r#"<reg name="fctrl" bitsize="32" type="int" group="float"/><reg name="fstat" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="ftag" bitsize="32" type="int" group="float"/><reg name="fiseg" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fioff" bitsize="32" type="int" group="float"/><reg name="foseg" bitsize="32" type="int" group="float"/>"#,
    r#"<reg name="fooff" bitsize="32" type="int" group="float"/><reg name="fop" bitsize="32" type="int" group="float"/>"#,
    r#"</feature><feature name="org.gnu.gdb.i386.sse">"#,
    r#"<reg name="xmm0" bitsize="128" type="uint128"/><reg name="xmm1" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm2" bitsize="128" type="uint128"/><reg name="xmm3" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm4" bitsize="128" type="uint128"/><reg name="xmm5" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm6" bitsize="128" type="uint128"/><reg name="xmm7" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm8" bitsize="128" type="uint128"/><reg name="xmm9" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm10" bitsize="128" type="uint128"/><reg name="xmm11" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm12" bitsize="128" type="uint128"/><reg name="xmm13" bitsize="128" type="uint128"/>"#,
    r#"<reg name="xmm14" bitsize="128" type="uint128"/><reg name="xmm15" bitsize="128" type="uint128"/>"#,
    r#"<reg name="mxcsr" bitsize="32" type="int" group="vector"/></feature></target>"#
);

fn fx_u16(fx: &FxArea, o: usize) -> u32 {
    u16::from_le_bytes([fx.0[o], fx.0[o + 1]]) as u32
}

fn fx_u32(fx: &FxArea, o: usize) -> u32 {
    u32::from_le_bytes(fx.0[o..o + 4].try_into().unwrap_or([0; 4]))
}

/// Serialises the register file into `out`; returns bytes written (0 if
/// `out` is too small).
pub fn read(vmcb: &Vmcb, r: &GuestRegs, fx: &FxArea, out: &mut [u8]) -> usize {
    if out.len() < REGS_SIZE {
        return 0;
    }
    let s = &vmcb.save;
    let gprs = [
        s.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, s.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        s.rip,
    ];
    let mut o = 0;
    for g in gprs {
        out[o..o + 8].copy_from_slice(&g.to_le_bytes());
        o += 8;
    }
    let small = [
        s.rflags as u32,
        s.cs.selector as u32,
        s.ss.selector as u32,
        s.ds.selector as u32,
        s.es.selector as u32,
        s.fs.selector as u32,
        s.gs.selector as u32,
    ];
    for v in small {
        out[o..o + 4].copy_from_slice(&v.to_le_bytes());
        o += 4;
    }
    for i in 0..8 {
        out[o..o + 10].copy_from_slice(&fx.0[32 + 16 * i..42 + 16 * i]);
        o += 10;
    }
    // FCW, FSW, abridged FTW, FCS, FIP, FDS, FDP, FOP.
    let ctrl = [
        fx_u16(fx, 0),
        fx_u16(fx, 2),
        fx.0[4] as u32,
        fx_u16(fx, 12),
        fx_u32(fx, 8),
        fx_u16(fx, 20),
        fx_u32(fx, 16),
        fx_u16(fx, 6),
    ];
    for v in ctrl {
        out[o..o + 4].copy_from_slice(&v.to_le_bytes());
        o += 4;
    }
    out[o..o + 256].copy_from_slice(&fx.0[160..416]);
    o += 256;
    out[o..o + 4].copy_from_slice(&fx.0[24..28]);
    o + 4
}

/// Loads general registers, rip, eflags and xmm/mxcsr from gdb's bytes
/// (segment selectors and x87 control words are left alone).
pub fn write(vmcb: &mut Vmcb, r: &mut GuestRegs, fx: &mut FxArea, data: &[u8]) -> XenResult<()> {
    if data.len() < 17 * 8 + 4 {
        return Err(Errno::EINVAL);
    }
    let g = |i: usize| u64::from_le_bytes(data[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
    let s = &mut vmcb.save;
    s.rax = g(0);
    r.rbx = g(1);
    r.rcx = g(2);
    r.rdx = g(3);
    r.rsi = g(4);
    r.rdi = g(5);
    r.rbp = g(6);
    s.rsp = g(7);
    r.r8 = g(8);
    r.r9 = g(9);
    r.r10 = g(10);
    r.r11 = g(11);
    r.r12 = g(12);
    r.r13 = g(13);
    r.r14 = g(14);
    r.r15 = g(15);
    s.rip = g(16);
    s.rflags = u32::from_le_bytes(data[136..140].try_into().unwrap_or([2, 0, 0, 0])) as u64 | 2;
    if data.len() >= REGS_SIZE {
        let xmm = 17 * 8 + 7 * 4 + 80 + 32;
        fx.0[160..416].copy_from_slice(&data[xmm..xmm + 256]);
        fx.0[24..28].copy_from_slice(&data[xmm + 256..xmm + 260]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut vmcb = Vmcb::zeroed();
        let mut regs = GuestRegs { rbx: 7, r15: 9, ..GuestRegs::default() };
        let mut fx = crate::svm::initial_fx();
        vmcb.save.rip = 0x1234;
        vmcb.save.rflags = 0x202;
        let mut buf = [0u8; REGS_SIZE];
        assert_eq!(read(&vmcb, &regs, &fx, &mut buf), REGS_SIZE);
        assert_eq!(&buf[128..136], &0x1234u64.to_le_bytes());
        buf[8] = 42;
        write(&mut vmcb, &mut regs, &mut fx, &buf).unwrap();
        assert_eq!(regs.rbx, 42);
        assert_eq!(regs.r15, 9);
        assert!(TARGET_XML.contains("i386:x86-64"));
    }
}
