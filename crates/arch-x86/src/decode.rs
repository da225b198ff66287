//! The little x86 instruction decoding the exits need: QEMU's TCG offers no
//! SVM decode assists, so an intercepted `mov cr4, reg` is read back from
//! guest memory and decoded here, and its source register is found by its
//! ModRM/REX number.

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
