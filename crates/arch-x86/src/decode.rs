//! The little x86 instruction decoding the exits need: QEMU's TCG offers no
//! SVM decode assists, so an intercepted `mov cr4, reg` is read back from
//! guest memory and decoded here, and its source register is found by its
//! ModRM/REX number; a MOV store to unclaimed MMIO is decoded for its
//! length only, so it can be skipped; and the MOV/XCHG forms guests use on
//! emulated MMIO (the local APIC's xAPIC page) are decoded into what the
//! access does.

use crate::svm::GuestRegs;
use crate::vmcb::VmcbSave;

/// Decodes `[prefixes] [REX] 0F op /r`, a move to or from a control or
/// debug register (always the register form, whatever ModRM.mod says);
/// returns (instruction length, ModRM.reg with REX.R, ModRM.rm with REX.B).
fn decode_mov_special(bytes: &[u8], long: bool, op: u8) -> Option<(usize, u8, u8)> {
    let mut i = 0;
    // Legacy prefixes carry no meaning for these moves (operand size is fixed).
    while i < 4 && matches!(bytes.get(i)?, 0x66 | 0x67 | 0xF2 | 0xF3 | 0x2E | 0x3E | 0x26 | 0x36 | 0x64 | 0x65) {
        i += 1;
    }
    let mut rex = 0u8;
    if long && (0x40..=0x4F).contains(bytes.get(i)?) {
        rex = bytes[i];
        i += 1;
    }
    if bytes.get(i..i + 2)? != [0x0F, op] {
        return None;
    }
    let modrm = *bytes.get(i + 2)?;
    let reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    let rm = (modrm & 7) | ((rex & 1) << 3);
    Some((i + 3, reg, rm))
}

/// Decodes `[prefixes] [REX] 0F 22 /r` with ModRM.reg = 4 (CR4) and a
/// register operand; returns (instruction length, source register number).
pub fn decode_mov_to_cr4(bytes: &[u8], long: bool) -> Option<(usize, u8)> {
    match decode_mov_special(bytes, long, 0x22)? {
        (len, 4, rm) => Some((len, rm)),
        _ => None,
    }
}

/// Decodes a move between debug register `dr` and a general register:
/// `0F 21 /r` (from DRn, `to_dr` false) or `0F 23 /r` (to DRn); returns
/// (instruction length, general register number).
pub fn decode_mov_dr(bytes: &[u8], long: bool, dr: u8, to_dr: bool) -> Option<(usize, u8)> {
    match decode_mov_special(bytes, long, if to_dr { 0x23 } else { 0x21 })? {
        (len, reg, rm) if reg == dr => Some((len, rm)),
        _ => None,
    }
}

/// The default operand and address size of the code a vCPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSize {
    /// Real mode or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment (CS.D = 1).
    Bits32,
    /// 64-bit mode (long mode, CS.L = 1).
    Bits64,
}

/// The longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// Where a decoded memory access gets or puts its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreSrc {
    /// A general register (ModRM/REX number, 0 = rax … 15 = r15).
    Reg(u8),
    /// An immediate; for an 8-byte store (REX.W C7) the CPU sign-extends it.
    Imm(u32),
}

/// What a decoded MMIO instruction does with the memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioOp {
    /// Register ← memory. A 4-byte load zero-extends into the full register
    /// (in 64-bit mode); 1- and 2-byte loads replace only the low bytes.
    Load { reg: u8 },
    /// Memory ← register or immediate.
    Store { src: StoreSrc },
    /// Swap memory and register (always locked; both sides `width` wide).
    Xchg { reg: u8 },
}

/// A decoded MMIO instruction: its length (to advance RIP), the access
/// width in bytes (1, 2, 4 or 8) and the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInsn {
    pub len: usize,
    pub width: u8,
    pub op: MmioOp,
}

/// The shape of a decoded access before its immediate (if any) is read.
struct MmioForm {
    len: usize,
    width: u8,
    kind: MmioKind,
    /// The register operand is AH/CH/DH/BH, which [`MmioOp`] cannot name.
    high_byte: bool,
}

enum MmioKind {
    Load(u8),
    StoreReg(u8),
    /// The immediate's offset and size in bytes.
    StoreImm(usize, usize),
    Xchg(u8),
}

/// Decodes the forms guests use to access MMIO: `mov r/m, r` (88/89),
/// `mov r, r/m` (8A/8B), `mov r/m, imm` (C6 /0, C7 /0), the moffs forms
/// `mov al/eAX, [moffs]` / `mov [moffs], al/eAX` (A0–A3; what gas emits
/// for an absolute address with eAX, as a 32-bit kernel's fixmap APIC
/// accesses are) and `xchg r/m, r` (86/87, optionally LOCK-prefixed), after
/// operand-size (66), address-size (67) and segment prefixes and, in 64-bit
/// mode, a REX prefix (REX.R extends the register, REX.B/X only the
/// address, REX.W makes the access 8 bytes); ModRM with SIB, disp8/16/32,
/// SIB without base and RIP-relative. Register-only forms (ModRM.mod = 3),
/// the AH/CH/DH/BH byte registers (no REX, reg 4–7) and anything else give
/// `None`. The address is not computed: the caller has it from the fault.
pub fn decode_mmio(bytes: &[u8], mode: CodeSize) -> Option<MmioInsn> {
    let form = decode_mmio_form(bytes, mode)?;
    if form.high_byte {
        return None;
    }
    let op = match form.kind {
        MmioKind::Load(reg) => MmioOp::Load { reg },
        MmioKind::StoreReg(reg) => MmioOp::Store { src: StoreSrc::Reg(reg) },
        MmioKind::Xchg(reg) => MmioOp::Xchg { reg },
        MmioKind::StoreImm(at, size) => {
            let imm = bytes.get(at..at + size)?;
            let mut value = [0u8; 4];
            value[..size].copy_from_slice(imm);
            MmioOp::Store { src: StoreSrc::Imm(u32::from_le_bytes(value)) }
        }
    };
    Some(MmioInsn { len: form.len, width: form.width, op })
}

fn decode_mmio_form(bytes: &[u8], mode: CodeSize) -> Option<MmioForm> {
    let (mut opsize16, mut addrsize_override, mut lock) = (mode == CodeSize::Bits16, false, false);
    let mut i = 0;
    loop {
        match *bytes.get(i)? {
            0x66 => opsize16 = mode != CodeSize::Bits16,
            0x67 => addrsize_override = true,
            0xF0 => lock = true,
            0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 => {}
            _ => break,
        }
        i += 1;
        if i >= MAX_INSN_LEN {
            return None;
        }
    }
    let mut rex = 0u8;
    if mode == CodeSize::Bits64 && (0x40..=0x4F).contains(bytes.get(i)?) {
        rex = bytes[i];
        i += 1;
    }
    let rex_w = rex & 8 != 0;
    // Effective address size, in bytes.
    let addr = match (mode, addrsize_override) {
        (CodeSize::Bits64, false) => 8,
        (CodeSize::Bits64, true) | (CodeSize::Bits32, false) | (CodeSize::Bits16, true) => 4,
        (CodeSize::Bits32, true) | (CodeSize::Bits16, false) => 2,
    };
    let full_width = match (rex_w, opsize16) {
        (true, _) => 8,
        (false, true) => 2,
        (false, false) => 4,
    };
    let opcode = *bytes.get(i)?;
    i += 1;
    if lock && !matches!(opcode, 0x86 | 0x87) {
        return None;
    }
    let width = if opcode & 1 == 0 { 1 } else { full_width };
    if let 0xA0..=0xA3 = opcode {
        let len = i + addr;
        let kind = if opcode < 0xA2 { MmioKind::Load(0) } else { MmioKind::StoreReg(0) };
        return (len <= MAX_INSN_LEN && len <= bytes.len()).then_some(MmioForm { len, width, kind, high_byte: false });
    }
    if !matches!(opcode, 0x86..=0x8B | 0xC6 | 0xC7) {
        return None;
    }
    let modrm = *bytes.get(i)?;
    i += 1;
    let (md, reg_field, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None;
    }
    let reg = reg_field | ((rex & 4) << 1);
    // Without any REX, byte registers 4–7 are AH, CH, DH, BH.
    let high_byte = width == 1 && rex == 0 && reg_field >= 4;
    let disp = if addr == 2 {
        // 16-bit addressing: no SIB; mod 0 with r/m 6 is a bare disp16.
        match (md, rm) {
            (0, 6) => 2,
            (0, _) => 0,
            (1, _) => 1,
            _ => 2,
        }
    } else {
        let mut base = rm;
        if rm == 4 {
            base = *bytes.get(i)? & 7;
            i += 1;
        }
        match (md, base) {
            // disp32: absolute, RIP-relative (64-bit mode, no SIB) or
            // SIB without a base.
            (0, 5) => 4,
            (0, _) => 0,
            (1, _) => 1,
            _ => 4,
        }
    };
    i += disp;
    // The displacement must be among the bytes (the immediate need not be
    // for the length alone, see decode_mov_store_len).
    if i > bytes.len() {
        return None;
    }
    let (kind, imm) = match opcode {
        0x86 | 0x87 => (MmioKind::Xchg(reg), 0),
        0x88 | 0x89 => (MmioKind::StoreReg(reg), 0),
        0x8A | 0x8B => (MmioKind::Load(reg), 0),
        // C6/C7 /0 only; imm32 even with REX.W (sign-extended to 64 bits).
        _ if reg_field != 0 => return None,
        _ => {
            let imm = width.min(4) as usize;
            (MmioKind::StoreImm(i, imm), imm)
        }
    };
    let len = i + imm;
    (len <= MAX_INSN_LEN).then_some(MmioForm { len, width, kind, high_byte })
}

/// Decodes the length of a MOV store to memory, the forms guests use for
/// MMIO writes: the store forms [`decode_mmio`] knows (88, 89, C6 /0,
/// C7 /0, A2, A3). Only the length is needed, so an immediate need not be
/// among `bytes` (everything before it must be). Anything else (loads, XCHG, register destinations) is
/// refused (`None`).
pub fn decode_mov_store_len(bytes: &[u8], mode: CodeSize) -> Option<usize> {
    let form = decode_mmio_form(bytes, mode)?;
    matches!(form.kind, MmioKind::StoreReg(_) | MmioKind::StoreImm(..)).then_some(form.len)
}

/// General register `n` in ModRM/REX numbering (0 = rax … 15 = r15), full
/// 64 bits: RAX and RSP live in the VMCB's save area, the others in the
/// registers the entry stub saves. The caller truncates to the operand size.
pub fn gpr(save: &VmcbSave, regs: &GuestRegs, n: u8) -> u64 {
    match n {
        0 => save.rax,
        1 => regs.rcx,
        2 => regs.rdx,
        3 => regs.rbx,
        4 => save.rsp,
        5 => regs.rbp,
        6 => regs.rsi,
        7 => regs.rdi,
        8 => regs.r8,
        9 => regs.r9,
        10 => regs.r10,
        11 => regs.r11,
        12 => regs.r12,
        13 => regs.r13,
        14 => regs.r14,
        _ => regs.r15,
    }
}

/// General register `n` (numbered as for [`gpr`]), to write.
pub fn gpr_mut<'a>(save: &'a mut VmcbSave, regs: &'a mut GuestRegs, n: u8) -> &'a mut u64 {
    match n {
        0 => &mut save.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut save.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        _ => &mut regs.r15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcb::Vmcb;

    #[test]
    fn mov_to_cr4_decoding() {
        assert_eq!(decode_mov_to_cr4(&[0x0F, 0x22, 0xE5], true), Some((3, 5))); // mov cr4, rbp
        assert_eq!(decode_mov_to_cr4(&[0x41, 0x0F, 0x22, 0xE0], true), Some((4, 8))); // mov cr4, r8
        assert_eq!(decode_mov_to_cr4(&[0x0F, 0x22, 0xE0], false), Some((3, 0))); // mov cr4, eax
        assert_eq!(decode_mov_to_cr4(&[0x0F, 0x22, 0xC0], true), None); // mov cr0, rax
        assert_eq!(decode_mov_to_cr4(&[0x44, 0x0F, 0x22, 0xE0], true), None); // cr12
        assert_eq!(decode_mov_to_cr4(&[0x90; 15], true), None);
    }

    #[test]
    fn mov_dr_decoding() {
        // mov dr7, rax; mov rcx, dr6; mov dr0, r9 (REX.B); mov eax, dr7 (32-bit).
        assert_eq!(decode_mov_dr(&[0x0F, 0x23, 0xF8], true, 7, true), Some((3, 0)));
        assert_eq!(decode_mov_dr(&[0x0F, 0x21, 0xF1], true, 6, false), Some((3, 1)));
        assert_eq!(decode_mov_dr(&[0x41, 0x0F, 0x23, 0xC1], true, 0, true), Some((4, 9)));
        assert_eq!(decode_mov_dr(&[0x0F, 0x21, 0xF8], false, 7, false), Some((3, 0)));
        // The register the exit named must be the one encoded; CR moves are not DR moves.
        assert_eq!(decode_mov_dr(&[0x0F, 0x23, 0xF8], true, 6, true), None);
        assert_eq!(decode_mov_dr(&[0x0F, 0x22, 0xE0], true, 4, true), None);
    }

    #[test]
    fn mov_store_lengths() {
        use CodeSize::{Bits16, Bits32, Bits64};
        #[rustfmt::skip]
        let table: &[(&[u8], CodeSize, Option<usize>)] = &[
            (&[0x89, 0x08], Bits64, Some(2)),                                  // mov [rax], ecx
            (&[0x88, 0x08], Bits32, Some(2)),                                  // mov [eax], cl
            (&[0x48, 0x89, 0x08], Bits64, Some(3)),                            // mov [rax], rcx
            (&[0x66, 0x89, 0x08], Bits64, Some(3)),                            // mov [rax], cx
            (&[0x44, 0x89, 0x40, 0x10], Bits64, Some(4)),                      // mov [rax+0x10], r8d
            (&[0x89, 0x88, 0, 1, 0, 0], Bits64, Some(6)),                      // mov [rax+0x100], ecx
            (&[0x89, 0x04, 0x24], Bits64, Some(3)),                            // mov [rsp], eax
            (&[0x89, 0x44, 0x24, 0x08], Bits64, Some(4)),                      // mov [rsp+8], eax
            (&[0x89, 0x84, 0x24, 0, 1, 0, 0], Bits64, Some(7)),                // mov [rsp+0x100], eax
            (&[0x89, 0x04, 0x25, 0, 0, 0xC0, 0xFE], Bits64, Some(7)),          // mov [0xFEC00000], eax
            (&[0x89, 0x05, 0x10, 0, 0, 0], Bits64, Some(6)),                   // mov [rip+0x10], eax
            (&[0x89, 0x05, 0, 0, 0xC0, 0xFE], Bits32, Some(6)),                // mov [0xFEC00000], eax
            (&[0x89, 0x45, 0x00], Bits64, Some(3)),                            // mov [rbp+0], eax
            (&[0x41, 0x89, 0x45, 0x00], Bits64, Some(4)),                      // mov [r13+0], eax
            (&[0xC6, 0x00, 0x12], Bits64, Some(3)),                            // mov byte [rax], 0x12
            (&[0xC7, 0x00, 1, 2, 3, 4], Bits64, Some(6)),                      // mov dword [rax], imm32
            (&[0x66, 0xC7, 0x00, 1, 2], Bits64, Some(5)),                      // mov word [rax], imm16
            (&[0x48, 0xC7, 0x00, 1, 2, 3, 4], Bits64, Some(7)),                // mov qword [rax], imm32
            (&[0x66, 0x48, 0xC7, 0x00, 1, 2, 3, 4], Bits64, Some(8)),          // REX.W beats 66
            (&[0xC7, 0x05, 0, 0, 0xC0, 0xFE, 1, 2, 3, 4], Bits32, Some(10)),   // mov dword [abs], imm32
            (&[0xC7, 0x05, 0, 0, 0, 0, 1, 2, 3, 4], Bits64, Some(10)),         // mov dword [rip+0], imm32
            (&[0xC7, 0x44, 0x24, 0x08, 1, 2, 3, 4], Bits64, Some(8)),          // mov dword [rsp+8], imm32
            (&[0x67, 0x89, 0x08], Bits64, Some(3)),                            // mov [eax], ecx
            (&[0x67, 0x89, 0x0E, 0x34, 0x12], Bits32, Some(5)),                // mov [0x1234], ecx (16-bit addressing)
            (&[0x89, 0x0E, 0x34, 0x12], Bits16, Some(4)),                      // mov [0x1234], cx
            (&[0x89, 0x47, 0x02], Bits16, Some(3)),                            // mov [bx+2], ax
            (&[0xC7, 0x07, 1, 2], Bits16, Some(4)),                            // mov word [bx], imm16
            (&[0x66, 0xC7, 0x07, 1, 2, 3, 4], Bits16, Some(7)),                // mov dword [bx], imm32
            (&[0x64, 0x89, 0x08], Bits32, Some(3)),                            // mov fs:[eax], ecx
            (&[0xA3, 0, 0, 0xC0, 0xFE], Bits32, Some(5)),                      // mov [moffs32], eax
            (&[0xA3, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0], Bits64, Some(9)),          // mov [moffs64], eax
            (&[0x89, 0xC8], Bits64, None),                                     // mov eax, ecx (register)
            (&[0xC7, 0x08, 1, 2, 3, 4], Bits64, None),                         // C7 /1 is not a MOV
            (&[0x8B, 0x08], Bits64, None),                                     // mov ecx, [rax] (a load)
            (&[0x01, 0x08], Bits64, None),                                     // add [rax], ecx
            (&[0xF3, 0xA5], Bits64, None),                                     // rep movsd
            (&[0x89], Bits64, None),                                           // truncated
            (&[0xC7, 0x05, 0, 0, 0, 0], Bits64, Some(10)),                     // the immediate need not be there
            (&[0xC7, 0x05, 0, 0], Bits64, None),                               // the displacement must
            (&[0x89, 0x44, 0x24], Bits64, None),                               // disp8 missing
            (&[0xA3, 0, 0, 0xC0], Bits32, None),                               // moffs32 cut short
            (&[0x66; 15], Bits64, None),                                       // prefixes only
            (&[0x40, 0x48, 0x89, 0x08], Bits32, None),                         // no REX outside 64-bit mode
        ];
        for &(bytes, mode, len) in table {
            assert_eq!(decode_mov_store_len(bytes, mode), len, "{bytes:02x?} in {mode:?}");
        }
        // 14 prefixes and a 2-byte MOV: 16 bytes, too long.
        let mut long = [0x3E; 16];
        long[14..].copy_from_slice(&[0x89, 0x08]);
        assert_eq!(decode_mov_store_len(&long, Bits64), None);
    }

    /// Encodings from GNU as (`as --64` / `as --32`, then `objdump -d`).
    #[test]
    fn mmio_decoding() {
        use CodeSize::{Bits16, Bits32, Bits64};
        use MmioOp::{Load, Store, Xchg};
        use StoreSrc::{Imm, Reg};
        let insn = |len, width, op| Some(MmioInsn { len, width, op });
        #[rustfmt::skip]
        let table: &[(&[u8], CodeSize, Option<MmioInsn>)] = &[
            // mov %eax,0xb0(%rdx)
            (&[0x89, 0x82, 0xb0, 0, 0, 0], Bits64, insn(6, 4, Store { src: Reg(0) })),
            // mov %ecx,-0xb50(%rip)
            (&[0x89, 0x0d, 0xb0, 0xf4, 0xff, 0xff], Bits64, insn(6, 4, Store { src: Reg(1) })),
            // mov %r9d,0x300(%r12)
            (&[0x45, 0x89, 0x8c, 0x24, 0, 3, 0, 0], Bits64, insn(8, 4, Store { src: Reg(9) })),
            // mov %eax,0xffffffffff5fd0b0 (SIB, no base)
            (&[0x89, 0x04, 0x25, 0xb0, 0xd0, 0x5f, 0xff], Bits64, insn(7, 4, Store { src: Reg(0) })),
            // mov 0x20(%rax),%eax
            (&[0x8b, 0x40, 0x20], Bits64, insn(3, 4, Load { reg: 0 })),
            // mov 0xffffffffff5fd030,%r15d
            (&[0x44, 0x8b, 0x3c, 0x25, 0x30, 0xd0, 0x5f, 0xff], Bits64, insn(8, 4, Load { reg: 15 })),
            // mov 0x10(%rsp,%rbx,4),%r10d
            (&[0x44, 0x8b, 0x54, 0x9c, 0x10], Bits64, insn(5, 4, Load { reg: 10 })),
            // mov 0x830(,%rsi,8),%edx
            (&[0x8b, 0x14, 0xf5, 0x30, 0x08, 0, 0], Bits64, insn(7, 4, Load { reg: 2 })),
            // mov 0x0(%rip),%r11 (REX.W: 8 bytes)
            (&[0x4c, 0x8b, 0x1d, 0, 0, 0, 0], Bits64, insn(7, 8, Load { reg: 11 })),
            // movl $0x8fe,0x300(%rdi)
            (&[0xc7, 0x87, 0, 3, 0, 0, 0xfe, 0x08, 0, 0], Bits64, insn(10, 4, Store { src: Imm(0x8fe) })),
            // movq $-1,(%rax)
            (&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], Bits64, insn(7, 8, Store { src: Imm(0xffff_ffff) })),
            // xchg %eax,0xffffffffff5fd0b0
            (&[0x87, 0x04, 0x25, 0xb0, 0xd0, 0x5f, 0xff], Bits64, insn(7, 4, Xchg { reg: 0 })),
            // xchg %r8d,0x80(%r13)
            (&[0x45, 0x87, 0x85, 0x80, 0, 0, 0], Bits64, insn(7, 4, Xchg { reg: 8 })),
            // lock xchg %edx,(%rcx)
            (&[0xf0, 0x87, 0x11], Bits64, insn(3, 4, Xchg { reg: 2 })),
            // mov %sil,(%rax) (REX: byte register 6 is sil)
            (&[0x40, 0x88, 0x30], Bits64, insn(3, 1, Store { src: Reg(6) })),
            // mov 0x3(%rbx),%bpl
            (&[0x40, 0x8a, 0x6b, 0x03], Bits64, insn(4, 1, Load { reg: 5 })),
            // movw $0x1234,0x4(%rax)
            (&[0x66, 0xc7, 0x40, 0x04, 0x34, 0x12], Bits64, insn(6, 2, Store { src: Imm(0x1234) })),
            // mov %ax,0x2(%rcx)
            (&[0x66, 0x89, 0x41, 0x02], Bits64, insn(4, 2, Store { src: Reg(0) })),
            // mov 0x0(%rbp),%ecx
            (&[0x8b, 0x4d, 0x00], Bits64, insn(3, 4, Load { reg: 1 })),
            // movabs %eax,0xffffffffff5fd0b0
            (&[0xa3, 0xb0, 0xd0, 0x5f, 0xff, 0xff, 0xff, 0xff, 0xff], Bits64, insn(9, 4, Store { src: Reg(0) })),
            // 32-bit: mov %eax,0xffffd0b0 (moffs)
            (&[0xa3, 0xb0, 0xd0, 0xff, 0xff], Bits32, insn(5, 4, Store { src: Reg(0) })),
            // mov 0xffffd030,%eax
            (&[0xa1, 0x30, 0xd0, 0xff, 0xff], Bits32, insn(5, 4, Load { reg: 0 })),
            // mov 0xffffd0b0,%al
            (&[0xa0, 0xb0, 0xd0, 0xff, 0xff], Bits32, insn(5, 1, Load { reg: 0 })),
            // mov %edx,0xffffd300 (disp32, no base)
            (&[0x89, 0x15, 0, 0xd3, 0xff, 0xff], Bits32, insn(6, 4, Store { src: Reg(2) })),
            // mov 0xffffd020,%ecx
            (&[0x8b, 0x0d, 0x20, 0xd0, 0xff, 0xff], Bits32, insn(6, 4, Load { reg: 1 })),
            // movl $0x0,0xffffd0b0
            (&[0xc7, 0x05, 0xb0, 0xd0, 0xff, 0xff, 0, 0, 0, 0], Bits32, insn(10, 4, Store { src: Imm(0) })),
            // xchg %eax,0xffffd0b0 (Linux's APIC write on the 11AP erratum)
            (&[0x87, 0x05, 0xb0, 0xd0, 0xff, 0xff], Bits32, insn(6, 4, Xchg { reg: 0 })),
            // xchg %ebx,0xffffd380
            (&[0x87, 0x1d, 0x80, 0xd3, 0xff, 0xff], Bits32, insn(6, 4, Xchg { reg: 3 })),
            // mov %ecx,0x300(%ebx)
            (&[0x89, 0x8b, 0, 3, 0, 0], Bits32, insn(6, 4, Store { src: Reg(1) })),
            // mov -0x2f50(%esi),%edi
            (&[0x8b, 0xbe, 0xb0, 0xd0, 0xff, 0xff], Bits32, insn(6, 4, Load { reg: 7 })),
            // mov %eax,0x10(%esp)
            (&[0x89, 0x44, 0x24, 0x10], Bits32, insn(4, 4, Store { src: Reg(0) })),
            // mov (%eax,%ecx,4),%ebp
            (&[0x8b, 0x2c, 0x88], Bits32, insn(3, 4, Load { reg: 5 })),
            // mov %dl,(%edi)
            (&[0x88, 0x17], Bits32, insn(2, 1, Store { src: Reg(2) })),
            // movw $0x7,(%esi)
            (&[0x66, 0xc7, 0x06, 0x07, 0x00], Bits32, insn(5, 2, Store { src: Imm(7) })),
            // 16-bit code: mov [bx+2], ax; 66 makes it 4 bytes.
            (&[0x89, 0x47, 0x02], Bits16, insn(3, 2, Store { src: Reg(0) })),
            (&[0x66, 0x8b, 0x47, 0x02], Bits16, insn(4, 4, Load { reg: 0 })),
            // Refused: mov %ah,(%rax) (no way to name AH), register forms,
            // LOCK on a MOV, C7 /1, REX outside 64-bit mode, truncation.
            (&[0x88, 0x20], Bits64, None),
            (&[0x8b, 0xc1], Bits64, None),
            (&[0x87, 0xc1], Bits64, None),
            (&[0xf0, 0x89, 0x08], Bits64, None),
            (&[0xc7, 0x08, 1, 2, 3, 4], Bits64, None),
            (&[0x40, 0x8b, 0x08], Bits32, None),
            (&[0xc7, 0x05, 0, 0, 0, 0, 1, 2], Bits64, None),
            (&[0x8b, 0x04], Bits64, None),
            (&[0x8b, 0x05, 0x30, 0x00], Bits64, None),
            (&[0xa1, 0x30, 0xd0, 0xff], Bits32, None),
            (&[0x0f, 0xb6, 0x00], Bits64, None),
        ];
        for &(bytes, mode, expected) in table {
            assert_eq!(decode_mmio(bytes, mode), expected, "{bytes:02x?} in {mode:?}");
        }
        // The length-only decoder still skips an AH store and refuses loads.
        assert_eq!(decode_mov_store_len(&[0x88, 0x20], Bits64), Some(2));
        assert_eq!(decode_mov_store_len(&[0x87, 0x05, 0, 0, 0, 0], Bits32), None);
    }

    #[test]
    fn gpr_numbering() {
        let mut vmcb = Vmcb::zeroed();
        vmcb.save.rax = 100;
        vmcb.save.rsp = 104;
        let regs = GuestRegs {
            rcx: 101,
            rdx: 102,
            rbx: 103,
            rbp: 105,
            rsi: 106,
            rdi: 107,
            r8: 108,
            r9: 109,
            r10: 110,
            r11: 111,
            r12: 112,
            r13: 113,
            r14: 114,
            r15: 115,
        };
        for n in 0..16u8 {
            assert_eq!(gpr(&vmcb.save, &regs, n), 100 + n as u64, "register {n}");
        }
    }
}
