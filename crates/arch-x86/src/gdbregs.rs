//! The guest register file in gdb's x86-64 order — the core, SSE and
//! segment-base features gdb knows, then Lantern's system-register feature
//! (k_gs_base, cr0, cr2, cr3, cr4, cr8, efer), then gdb's GNU/Linux
//! feature (`orig_rax`, for `catch syscall`) — the target description and
//! (de)serialisation from the VMCB, the saved GPRs and the FXSAVE image.
//!
//! Writes (`G`, `P`) are validated as a whole before anything changes: the
//! general registers, rip, eflags, x87 and SSE state, cr2 and the segment
//! bases are the guest's own; the mode-defining registers (cr0, cr4, efer)
//! and the segment selectors are shown but may not change (a new value would
//! switch paging or code size under the guest, and an inconsistent one makes
//! VMRUN fail), cr8 likewise (the virtual APIC owns the TPR); cr3 may change
//! if its reserved bits are clear; mxcsr only within the MXCSR mask (an
//! invalid value would fault the hypervisor's own FXRSTOR); the bases only to
//! canonical addresses.

use lantern_common::arch::{NarrowRegisters, RegPiece};
use xen_abi::errno::{Errno, XenResult};

use crate::svm::{FxArea, GuestRegs};
use crate::vmcb::{int_ctl, Vmcb};

/// Offset of the segment selectors (after 16 GPRs and rip, 8 bytes each, and
/// eflags, 4).
const SELECTORS: usize = 17 * 8 + 4;
/// Offset of st0–st7 (after the six 4-byte selectors).
const X87: usize = SELECTORS + 6 * 4;
/// Offset of the eight 4-byte x87 control words.
const X87_CTRL: usize = X87 + 8 * 10;
/// Offset of xmm0–xmm15.
const XMM: usize = X87_CTRL + 8 * 4;
/// Offset of mxcsr.
const MXCSR: usize = XMM + 16 * 16;
/// Offset of the `org.gnu.gdb.i386.segments` feature: fs_base, gs_base.
const SEGMENT_BASES: usize = MXCSR + 4;
/// Offset of Lantern's system feature: k_gs_base, cr0, cr2, cr3, cr4, cr8, efer.
const SYSTEM: usize = SEGMENT_BASES + 2 * 8;
/// Registers in the system feature.
const SYSTEM_REGS: usize = 7;

/// Offset of `orig_rax`, gdb's GNU/Linux feature.
const ORIG_RAX: usize = SYSTEM + SYSTEM_REGS * 8;
/// What `orig_rax` always reads: -1, "in no system call" (a guest's
/// hypercall is never restarted here). It exists because gdb applies its
/// GNU/Linux OS ABI — which `catch syscall` needs — only to a description
/// with this feature; writes of it (gdb's when it moves the PC) are ignored.
const ORIG_RAX_VALUE: u64 = u64::MAX;

/// Bytes in the register file: 17×8 (GPRs, rip) + 7×4 (eflags, segments) +
/// 8×10 (st0–7) + 8×4 (x87 control) + 16×16 (xmm) + 4 (mxcsr) + 2×8 (fs_base,
/// gs_base) + 7×8 (system registers) + 8 (orig_rax).
pub const REGS_SIZE: usize = ORIG_RAX + 8;

/// CR3 bits 63–52, reserved (must be zero) in every paging mode.
const CR3_RESERVED: u64 = 0xFFF0_0000_0000_0000;
/// MXCSR mask assumed when the FXSAVE image has none (AMD64 APM vol. 2,
/// §11.5.9: the default without DAZ support).
const MXCSR_MASK_DEFAULT: u32 = 0xFFBF;
/// Offset of MXCSR_MASK in the FXSAVE image.
const FX_MXCSR_MASK: usize = 28;
/// Offset of MXCSR in the FXSAVE image.
const FX_MXCSR: usize = 24;
/// Offset of xmm0 in the FXSAVE image.
const FX_XMM: usize = 160;
/// Offset of st0 in the FXSAVE image (each register in a 16-byte slot).
const FX_ST: usize = 32;
/// Virtual-address bits of a canonical address (4-level paging).
const VA_BITS: u32 = 48;

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
    r#"<reg name="mxcsr" bitsize="32" type="int" group="vector"/></feature>"#,
    // gdb's own feature for the segment bases (its 64bit-segments.xml).
    r#"<feature name="org.gnu.gdb.i386.segments">"#,
    r#"<reg name="fs_base" bitsize="64" type="int"/><reg name="gs_base" bitsize="64" type="int"/></feature>"#,
    // gdb has no standard feature for the system registers: gdb shows the
    // registers of an unknown feature as they are described.
    r#"<feature name="org.lantern.x86.system">"#,
    r#"<reg name="k_gs_base" bitsize="64" type="int" group="system"/>"#,
    r#"<reg name="cr0" bitsize="64" type="int" group="system"/><reg name="cr2" bitsize="64" type="data_ptr" group="system"/>"#,
    r#"<reg name="cr3" bitsize="64" type="int" group="system"/><reg name="cr4" bitsize="64" type="int" group="system"/>"#,
    r#"<reg name="cr8" bitsize="64" type="int" group="system"/><reg name="efer" bitsize="64" type="int" group="system"/>"#,
    r#"</feature><feature name="org.gnu.gdb.i386.linux"><reg name="orig_rax" bitsize="64" type="int"/></feature>"#,
    r#"</target>"#
);

/// gdb target description for a 32-bit guest in a session of its own:
/// gdb's i386 core and SSE features (eight xmm registers), Lantern's system
/// feature as in [`TARGET_XML`], and gdb's GNU/Linux feature (`orig_eax`).
pub const I386_TARGET_XML: &str = concat!(
    r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0">"#,
    r#"<architecture>i386</architecture><feature name="org.gnu.gdb.i386.core">"#,
    r#"<reg name="eax" bitsize="32" type="int32" regnum="0"/><reg name="ecx" bitsize="32" type="int32"/>"#,
    r#"<reg name="edx" bitsize="32" type="int32"/><reg name="ebx" bitsize="32" type="int32"/>"#,
    r#"<reg name="esp" bitsize="32" type="data_ptr"/><reg name="ebp" bitsize="32" type="data_ptr"/>"#,
    r#"<reg name="esi" bitsize="32" type="int32"/><reg name="edi" bitsize="32" type="int32"/>"#,
    r#"<reg name="eip" bitsize="32" type="code_ptr"/><reg name="eflags" bitsize="32" type="int32"/>"#,
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
    r#"<reg name="mxcsr" bitsize="32" type="int" group="vector"/></feature>"#,
    r#"<feature name="org.lantern.x86.system">"#,
    r#"<reg name="k_gs_base" bitsize="64" type="int" group="system"/>"#,
    // Not `data_ptr`: gdb sizes a pointer-typed register by the
    // architecture's pointers (4 bytes on i386), whatever its bitsize says.
    r#"<reg name="cr0" bitsize="64" type="int" group="system"/><reg name="cr2" bitsize="64" type="int" group="system"/>"#,
    r#"<reg name="cr3" bitsize="64" type="int" group="system"/><reg name="cr4" bitsize="64" type="int" group="system"/>"#,
    r#"<reg name="cr8" bitsize="64" type="int" group="system"/><reg name="efer" bitsize="64" type="int" group="system"/>"#,
    r#"</feature><feature name="org.gnu.gdb.i386.linux"><reg name="orig_eax" bitsize="32" type="int"/></feature>"#,
    r#"</target>"#
);

/// Offset of eip in the i386 file (after eight 4-byte GPRs).
const I386_EIP: usize = 8 * 4;
/// Offset of eflags and the selectors in the i386 file.
const I386_SMALL: usize = I386_EIP + 4;
/// Offset of st0–st7 in the i386 file.
const I386_X87: usize = I386_SMALL + 7 * 4;
/// Offset of the x87 control words in the i386 file.
const I386_X87_CTRL: usize = I386_X87 + 8 * 10;
/// Offset of xmm0–xmm7 in the i386 file.
const I386_XMM: usize = I386_X87_CTRL + 8 * 4;
/// Offset of mxcsr in the i386 file.
const I386_MXCSR: usize = I386_XMM + 8 * 16;
/// Offset of the system feature in the i386 file.
const I386_SYSTEM: usize = I386_MXCSR + 4;
/// Offset of orig_eax in the i386 file.
const I386_ORIG_EAX: usize = I386_SYSTEM + SYSTEM_REGS * 8;

/// The full file's offset of each i386 GPR in gdb's i386 order (eax, ecx,
/// edx, ebx, esp, ebp, esi, edi): the low halves of rax, rcx, rdx, rbx,
/// rsp, rbp, rsi, rdi, whose places follow [`read`]'s order (rax, rbx, rcx,
/// rdx, rsi, rdi, rbp, rsp).
const I386_GPR_SOURCES: [usize; 8] = [0, 2 * 8, 3 * 8, 8, 7 * 8, 6 * 8, 4 * 8, 5 * 8];

/// gdb's i386 layout as pieces of the x86-64 file: a 32-bit guest's own
/// session sees what its code sees, read and validated as the full file.
pub static I386: NarrowRegisters = NarrowRegisters {
    target_xml: I386_TARGET_XML,
    pieces: &[
        RegPiece { narrow: 0, full: I386_GPR_SOURCES[0], len: 4 },
        RegPiece { narrow: 4, full: I386_GPR_SOURCES[1], len: 4 },
        RegPiece { narrow: 8, full: I386_GPR_SOURCES[2], len: 4 },
        RegPiece { narrow: 12, full: I386_GPR_SOURCES[3], len: 4 },
        RegPiece { narrow: 16, full: I386_GPR_SOURCES[4], len: 4 },
        RegPiece { narrow: 20, full: I386_GPR_SOURCES[5], len: 4 },
        RegPiece { narrow: 24, full: I386_GPR_SOURCES[6], len: 4 },
        RegPiece { narrow: 28, full: I386_GPR_SOURCES[7], len: 4 },
        // eip: the low half of rip.
        RegPiece { narrow: I386_EIP, full: 16 * 8, len: 4 },
        // eflags and the six selectors: the same 4-byte fields.
        RegPiece { narrow: I386_SMALL, full: SELECTORS - 4, len: 7 * 4 },
        RegPiece { narrow: I386_X87, full: X87, len: 8 * 10 + 8 * 4 },
        // xmm0–xmm7 only, then mxcsr.
        RegPiece { narrow: I386_XMM, full: XMM, len: 8 * 16 },
        RegPiece { narrow: I386_MXCSR, full: MXCSR, len: 4 },
        RegPiece { narrow: I386_SYSTEM, full: SYSTEM, len: SYSTEM_REGS * 8 },
        RegPiece { narrow: I386_ORIG_EAX, full: ORIG_RAX, len: 4 },
    ],
};

fn fx_u16(fx: &FxArea, o: usize) -> u32 {
    u16::from_le_bytes([fx.0[o], fx.0[o + 1]]) as u32
}

fn fx_u32(fx: &FxArea, o: usize) -> u32 {
    u32::from_le_bytes(fx.0[o..o + 4].try_into().unwrap_or([0; 4]))
}

/// The FXSAVE offsets (and widths) the eight x87 control words of gdb's
/// order come from: FCW, FSW, abridged FTW, FCS, FIP, FDS, FDP, FOP.
const X87_CTRL_FX: [(usize, usize); 8] = [(0, 2), (2, 2), (4, 1), (12, 2), (8, 4), (20, 2), (16, 4), (6, 2)];

/// The system feature's values, in description order.
fn system_regs(vmcb: &Vmcb) -> [u64; SYSTEM_REGS] {
    let s = &vmcb.save;
    [s.kernel_gs_base, s.cr0, s.cr2, s.cr3, s.cr4, vmcb.control.int_ctl & int_ctl::V_TPR, s.efer]
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
        out[o..o + 10].copy_from_slice(&fx.0[FX_ST + 16 * i..FX_ST + 10 + 16 * i]);
        o += 10;
    }
    for (at, width) in X87_CTRL_FX {
        let v = match width {
            1 => fx.0[at] as u32,
            2 => fx_u16(fx, at),
            _ => fx_u32(fx, at),
        };
        out[o..o + 4].copy_from_slice(&v.to_le_bytes());
        o += 4;
    }
    out[o..o + 256].copy_from_slice(&fx.0[FX_XMM..FX_XMM + 256]);
    o += 256;
    out[o..o + 4].copy_from_slice(&fx.0[FX_MXCSR..FX_MXCSR + 4]);
    o += 4;
    for v in [s.fs.base, s.gs.base].into_iter().chain(system_regs(vmcb)).chain([ORIG_RAX_VALUE]) {
        out[o..o + 8].copy_from_slice(&v.to_le_bytes());
        o += 8;
    }
    o
}

/// Whether `va` is canonical: bits 63..47 all equal.
fn canonical(va: u64) -> bool {
    let top = (va as i64) >> (VA_BITS - 1);
    top == 0 || top == -1
}

/// Loads the register file from gdb's bytes (a whole `G` file, or a shorter
/// one of only the general registers, rip and eflags). Nothing changes if
/// any value is refused (see the module documentation).
pub fn write(vmcb: &mut Vmcb, r: &mut GuestRegs, fx: &mut FxArea, data: &[u8]) -> XenResult<()> {
    if data.len() < SELECTORS {
        return Err(Errno::EINVAL);
    }
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap_or([0; 8]));
    let full = data.len() >= REGS_SIZE;
    if full {
        let s = &vmcb.save;
        let selectors = [s.cs.selector, s.ss.selector, s.ds.selector, s.es.selector, s.fs.selector, s.gs.selector];
        let selectors_kept = selectors.iter().enumerate().all(|(i, &sel)| u32_at(SELECTORS + 4 * i) == sel as u32);
        let mask = match fx_u32(fx, FX_MXCSR_MASK) {
            0 => MXCSR_MASK_DEFAULT,
            m => m,
        };
        let now = system_regs(vmcb);
        let new: [u64; SYSTEM_REGS] = core::array::from_fn(|i| u64_at(SYSTEM + 8 * i));
        // k_gs_base, cr0, cr2, cr3, cr4, cr8, efer.
        let system_ok = canonical(new[0])
            && new[1] == now[1]
            && new[3] & CR3_RESERVED == 0
            && new[4] == now[4]
            && new[5] == now[5]
            && new[6] == now[6];
        let bases_ok = canonical(u64_at(SEGMENT_BASES)) && canonical(u64_at(SEGMENT_BASES + 8));
        if !selectors_kept || u32_at(MXCSR) & !mask != 0 || !system_ok || !bases_ok {
            return Err(Errno::EINVAL);
        }
    }
    let g = |i: usize| u64_at(8 * i);
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
    // Bit 1 of RFLAGS always reads as one.
    s.rflags = u32_at(17 * 8) as u64 | 2;
    if full {
        for i in 0..8 {
            fx.0[FX_ST + 16 * i..FX_ST + 10 + 16 * i].copy_from_slice(&data[X87 + 10 * i..X87 + 10 * i + 10]);
        }
        for (i, (at, width)) in X87_CTRL_FX.into_iter().enumerate() {
            fx.0[at..at + width].copy_from_slice(&data[X87_CTRL + 4 * i..X87_CTRL + 4 * i + width]);
        }
        fx.0[FX_XMM..FX_XMM + 256].copy_from_slice(&data[XMM..XMM + 256]);
        fx.0[FX_MXCSR..FX_MXCSR + 4].copy_from_slice(&data[MXCSR..MXCSR + 4]);
        s.fs.base = u64_at(SEGMENT_BASES);
        s.gs.base = u64_at(SEGMENT_BASES + 8);
        s.kernel_gs_base = u64_at(SYSTEM);
        s.cr2 = u64_at(SYSTEM + 2 * 8);
        s.cr3 = u64_at(SYSTEM + 3 * 8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, bytes)` of every register of [`TARGET_XML`], in order.
    fn described() -> Vec<(&'static str, usize)> {
        let attr = |tag: &'static str, key: &str| {
            let start = tag.find(&format!(" {key}=\"")).unwrap() + key.len() + 3;
            &tag[start..start + tag[start..].find('"').unwrap()]
        };
        TARGET_XML
            .split("<reg")
            .skip(1)
            .map(|tag| (attr(tag, "name"), attr(tag, "bitsize").parse::<usize>().unwrap() / 8))
            .collect()
    }

    /// The offset of register `name` in the file.
    fn offset_of(name: &str) -> usize {
        described().iter().take_while(|r| r.0 != name).map(|r| r.1).sum()
    }

    fn fixture() -> (Box<Vmcb>, GuestRegs, FxArea) {
        let mut vmcb = Box::new(Vmcb::zeroed());
        vmcb.save.rip = 0x1234;
        vmcb.save.rflags = 0x202;
        vmcb.save.cr0 = 0x8000_0011;
        vmcb.save.cr3 = 0x10_3000;
        vmcb.save.cr4 = 0x20;
        vmcb.save.efer = 0x1500;
        vmcb.save.fs.base = 0x7000;
        vmcb.save.gs.base = 0xffff_8000_0000_1000;
        vmcb.save.kernel_gs_base = 0x9000;
        vmcb.save.cr2 = 0xdead_0000;
        vmcb.save.cs.selector = 0x10;
        vmcb.control.int_ctl = int_ctl::V_INTR_MASKING | 5;
        (vmcb, GuestRegs { rbx: 7, r15: 9, ..GuestRegs::default() }, crate::svm::initial_fx())
    }

    fn u64_at(buf: &[u8], name: &str) -> u64 {
        let o = offset_of(name);
        u64::from_le_bytes(buf[o..o + 8].try_into().unwrap())
    }

    fn put(buf: &mut [u8], name: &str, v: u64) {
        let o = offset_of(name);
        let n = described().iter().find(|r| r.0 == name).unwrap().1;
        buf[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    #[test]
    fn the_description_matches_the_file() {
        let regs = described();
        assert_eq!(regs.iter().map(|r| r.1).sum::<usize>(), REGS_SIZE);
        assert_eq!(regs.len(), 17 + 7 + 16 + 16 + 1 + 2 + SYSTEM_REGS + 1);
        assert_eq!(offset_of("orig_rax"), ORIG_RAX);
        assert_eq!(offset_of("mxcsr"), MXCSR);
        assert_eq!(offset_of("fs_base"), SEGMENT_BASES);
        assert_eq!(offset_of("k_gs_base"), SYSTEM);
        assert!(TARGET_XML.contains("i386:x86-64"));
        let (vmcb, regs, fx) = fixture();
        let mut buf = [0u8; REGS_SIZE + 8];
        assert_eq!(read(&vmcb, &regs, &fx, &mut buf), REGS_SIZE);
        assert_eq!(read(&vmcb, &regs, &fx, &mut buf[..REGS_SIZE - 1]), 0);
        let expect = [
            ("rip", 0x1234),
            ("rbx", 7),
            ("fs_base", 0x7000),
            ("gs_base", 0xffff_8000_0000_1000),
            ("k_gs_base", 0x9000),
            ("cr0", 0x8000_0011),
            ("cr2", 0xdead_0000),
            ("cr3", 0x10_3000),
            ("cr4", 0x20),
            ("cr8", 5),
            ("efer", 0x1500),
            ("orig_rax", u64::MAX),
        ];
        for (name, v) in expect {
            assert_eq!(u64_at(&buf, name), v, "{name}");
        }
        let o = offset_of("cs");
        assert_eq!(&buf[o..o + 4], &0x10u32.to_le_bytes());
    }

    #[test]
    fn writes_reach_the_guest_state() {
        let (mut vmcb, mut regs, mut fx) = fixture();
        let mut buf = [0u8; REGS_SIZE];
        read(&vmcb, &regs, &fx, &mut buf);
        put(&mut buf, "rbx", 42);
        put(&mut buf, "cr3", 0x20_5000);
        put(&mut buf, "cr2", 0x77);
        put(&mut buf, "fs_base", 0xffff_ffff_ffff_f000);
        put(&mut buf, "k_gs_base", 0x5000);
        put(&mut buf, "mxcsr", 0x1f80 | 0x40);
        put(&mut buf, "fctrl", 0x27f);
        write(&mut vmcb, &mut regs, &mut fx, &buf).unwrap();
        assert_eq!((regs.rbx, regs.r15), (42, 9));
        assert_eq!((vmcb.save.cr3, vmcb.save.cr2, vmcb.save.kernel_gs_base), (0x20_5000, 0x77, 0x5000));
        assert_eq!(vmcb.save.fs.base, 0xffff_ffff_ffff_f000);
        assert_eq!(fx_u32(&fx, FX_MXCSR), 0x1fc0);
        assert_eq!(fx_u16(&fx, 0), 0x27f);
        // Reading back gives what was written.
        let mut again = [0u8; REGS_SIZE];
        read(&vmcb, &regs, &fx, &mut again);
        assert_eq!(again, buf);
    }

    #[test]
    fn refused_writes_change_nothing() {
        let refusals: [(&str, u64); 9] = [
            ("cr0", 0x11),
            ("cr4", 0x20 | 0x80),
            ("efer", 0x1400),
            ("cr8", 2),
            ("cr3", 1 << 60),
            ("fs_base", 0x0000_8000_0000_0000),
            ("k_gs_base", 0x1234_5678_9abc_def0),
            ("mxcsr", 0x1_0000),
            ("cs", 0x18),
        ];
        for (name, v) in refusals {
            let (mut vmcb, mut regs, mut fx) = fixture();
            let mut buf = [0u8; REGS_SIZE];
            read(&vmcb, &regs, &fx, &mut buf);
            let before = buf;
            put(&mut buf, "rax", 0x55);
            put(&mut buf, name, v);
            assert_eq!(write(&mut vmcb, &mut regs, &mut fx, &buf), Err(Errno::EINVAL), "{name}");
            let mut after = [0u8; REGS_SIZE];
            read(&vmcb, &regs, &fx, &mut after);
            assert_eq!(after, before, "{name}: nothing changed");
        }
    }

    /// The fixture as a vCPU's register file.
    struct Regs(Box<Vmcb>, GuestRegs, FxArea);

    impl lantern_common::arch::GdbRegisters for Regs {
        fn target_xml(&self) -> &'static str {
            TARGET_XML
        }
        fn read_registers(&self, out: &mut [u8]) -> usize {
            read(&self.0, &self.1, &self.2, out)
        }
        fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
            write(&mut self.0, &mut self.1, &mut self.2, data)
        }
        fn narrow_registers(&self) -> Option<&'static NarrowRegisters> {
            Some(&I386)
        }
    }

    /// `(name, offset, bytes)` of every register `xml` describes.
    fn layout(xml: &'static str) -> Vec<(&'static str, usize, usize)> {
        let mut at = 0;
        xml.split("<reg")
            .skip(1)
            .map(|tag| {
                let name = &tag[tag.find("name=\"").unwrap() + 6..];
                let name = &name[..name.find('"').unwrap()];
                let bits = &tag[tag.find("bitsize=\"").unwrap() + 9..];
                let n = bits[..bits.find('"').unwrap()].parse::<usize>().unwrap() / 8;
                at += n;
                (name, at - n, n)
            })
            .collect()
    }

    #[test]
    fn the_i386_view_is_the_low_half_of_each_register() {
        use lantern_common::register_view::RegisterView;
        let (vmcb, mut regs, fx) = fixture();
        regs.rcx = 0x1111_2222_3333_4444;
        let mut v = Regs(vmcb, regs, fx);
        v.0.save.rsp = 0x8000_0ff0;
        let narrow = layout(I386_TARGET_XML);
        // gdb gives a pointer-typed register the architecture's pointer
        // size, not its bitsize: on i386 only 32-bit ones may be pointers.
        for reg in I386_TARGET_XML.split("<reg ").skip(1) {
            if reg.contains("_ptr\"") {
                assert!(reg.contains("bitsize=\"32\""), "a pointer wider than i386's: {reg}");
            }
        }
        assert_eq!(narrow.iter().map(|r| r.2).sum::<usize>(), I386.size(), "the pieces cover the description");
        let mut covered = vec![false; I386.size()];
        for p in I386.pieces {
            covered[p.narrow..p.narrow + p.len].iter_mut().for_each(|c| *c = true);
        }
        assert!(covered.iter().all(|c| *c));
        let mut full = [0u8; REGS_SIZE];
        read(&v.0, &v.1, &v.2, &mut full);
        let mut small = [0u8; 512];
        let n = RegisterView::Narrow.read(&v, &mut small);
        assert_eq!(n, I386.size());
        // Each i386 register is the low bytes of its x86-64 namesake.
        let wide = |n: &str| match n.strip_prefix('e') {
            Some(r) if ["ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip"].contains(&r) => format!("r{r}"),
            _ if n == "orig_eax" => "orig_rax".to_string(),
            _ => n.to_string(),
        };
        for (name, at, len) in &narrow {
            let o = offset_of(&wide(name));
            assert_eq!(&small[*at..at + len], &full[o..o + len], "{name}");
        }
        let eip = narrow.iter().find(|r| r.0 == "eip").unwrap();
        assert_eq!(&small[eip.1..eip.1 + 4], &0x1234u32.to_le_bytes());
        // A write through the view reaches the guest, validated as a whole.
        let ecx = narrow.iter().find(|r| r.0 == "ecx").unwrap().1;
        small[ecx..ecx + 4].copy_from_slice(&0xabcdu32.to_le_bytes());
        RegisterView::Narrow.write(&mut v, &small[..n]).unwrap();
        assert_eq!(v.1.rcx, 0x1111_2222_0000_abcd);
        let cr0 = narrow.iter().find(|r| r.0 == "cr0").unwrap().1;
        small[cr0] ^= 1;
        assert_eq!(RegisterView::Narrow.write(&mut v, &small[..n]), Err(Errno::EINVAL));
        assert_eq!(RegisterView::Narrow.target_xml(&v), I386_TARGET_XML);
        assert_eq!(RegisterView::Full.target_xml(&v), TARGET_XML);
        // One register (`p`): gdb's number 8 is eip.
        let mut one = [0u8; 8];
        assert_eq!(RegisterView::Narrow.read_one(&v, 8, &mut one), 4);
        assert_eq!(&one[..4], &0x1234u32.to_le_bytes());
    }

    #[test]
    fn a_short_file_sets_the_general_registers_only() {
        let (mut vmcb, mut regs, mut fx) = fixture();
        let mut buf = [0u8; REGS_SIZE];
        read(&vmcb, &regs, &fx, &mut buf);
        put(&mut buf, "rdx", 3);
        write(&mut vmcb, &mut regs, &mut fx, &buf[..SELECTORS]).unwrap();
        assert_eq!((regs.rdx, vmcb.save.cr3), (3, 0x10_3000));
        assert_eq!(write(&mut vmcb, &mut regs, &mut fx, &buf[..SELECTORS - 1]), Err(Errno::EINVAL));
    }
}
