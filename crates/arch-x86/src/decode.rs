//! The little x86 instruction decoding the exits need: QEMU's TCG offers no
//! SVM decode assists, so an intercepted `mov cr4, reg` is read back from
//! guest memory and decoded here, and its source register is found by its
//! ModRM/REX number; a MOV store to unclaimed MMIO is decoded for its
//! length only, so it can be skipped.

use crate::svm::GuestRegs;
use crate::vmcb::VmcbSave;

/// Decodes `[prefixes] [REX] 0F 22 /r` with ModRM.reg = 4 (CR4) and a
/// register operand; returns (instruction length, source register number).
pub fn decode_mov_to_cr4(bytes: &[u8], long: bool) -> Option<(usize, u8)> {
    let mut i = 0;
    // Legacy prefixes carry no meaning for MOV to CR (operand size is fixed).
    while i < 4 && matches!(bytes.get(i)?, 0x66 | 0x67 | 0xF2 | 0xF3 | 0x2E | 0x3E | 0x26 | 0x36 | 0x64 | 0x65) {
        i += 1;
    }
    let mut rex = 0u8;
    if long && (0x40..=0x4F).contains(bytes.get(i)?) {
        rex = bytes[i];
        i += 1;
    }
    if bytes.get(i..i + 2)? != [0x0F, 0x22] {
        return None;
    }
    let modrm = *bytes.get(i + 2)?;
    let reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    if reg != 4 {
        return None;
    }
    // MOV to CR always uses the register form, whatever ModRM.mod says.
    let rm = (modrm & 7) | ((rex & 1) << 3);
    Some((i + 3, rm))
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

/// Decodes the length of a MOV store to memory, the forms guests use for
/// MMIO writes: `mov r/m8, r8` (88), `mov r/m, r` (89), `mov r/m8, imm8`
/// (C6 /0), `mov r/m, imm16/32` (C7 /0) and `mov moffs, al/eAX` (A2/A3),
/// after operand-size (66), address-size (67) and segment prefixes and, in
/// 64-bit mode, a REX prefix; ModRM with SIB, disp8/16/32 and RIP-relative
/// addressing. Register-destination forms (ModRM.mod = 3) cannot touch
/// memory and are refused, as is anything else (`None`).
pub fn decode_mov_store_len(bytes: &[u8], mode: CodeSize) -> Option<usize> {
    let (mut opsize16, mut addrsize_override) = (mode == CodeSize::Bits16, false);
    let mut i = 0;
    loop {
        match *bytes.get(i)? {
            0x66 => opsize16 = mode != CodeSize::Bits16,
            0x67 => addrsize_override = true,
            0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 => {}
            _ => break,
        }
        i += 1;
        if i >= MAX_INSN_LEN {
            return None;
        }
    }
    let mut rex_w = false;
    if mode == CodeSize::Bits64 && (0x40..=0x4F).contains(bytes.get(i)?) {
        rex_w = bytes[i] & 8 != 0;
        i += 1;
    }
    // Effective address size, in bytes.
    let addr = match (mode, addrsize_override) {
        (CodeSize::Bits64, false) => 8,
        (CodeSize::Bits64, true) | (CodeSize::Bits32, false) | (CodeSize::Bits16, true) => 4,
        (CodeSize::Bits32, true) | (CodeSize::Bits16, false) => 2,
    };
    let opcode = *bytes.get(i)?;
    i += 1;
    let imm = match opcode {
        0x88 | 0x89 => 0,
        0xC6 => 1,
        // imm32 even with REX.W (sign-extended to 64 bits).
        0xC7 if opsize16 && !rex_w => 2,
        0xC7 => 4,
        0xA2 | 0xA3 => return (i + addr <= MAX_INSN_LEN).then_some(i + addr),
        _ => return None,
    };
    let modrm = *bytes.get(i)?;
    i += 1;
    let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 || (imm != 0 && reg != 0) {
        return None;
    }
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
    let len = i + disp + imm;
    (len <= MAX_INSN_LEN).then_some(len)
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
            (&[0xC7, 0x05, 0, 0], Bits64, Some(10)),                           // bytes past the end are not read
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
