//! Single-step emulated with breakpoints: riscv has no single-step a
//! supervisor-level hypervisor can arm (the trigger module is M-mode's), so
//! a step plants `c.ebreak` at every address the instruction at the PC can
//! continue at — the next instruction, a branch's or jump's target,
//! `sret`'s return address, and the guest's trap vector (for an exception
//! the instruction raises) — runs the guest with its interrupts held back,
//! and takes the planted bytes out again on the exit.

use alloc::vec::Vec;

use crate::context::VsCsrs;
use crate::trap::insn_len;

/// `c.ebreak`: two bytes, so it fits wherever an instruction may start.
pub const C_EBREAK: [u8; 2] = 0x9002u16.to_le_bytes();
/// `sret`.
const SRET: u32 = 0x1020_0073;

fn sext(value: u64, bits: u32) -> u64 {
    let shift = 64 - bits;
    (((value << shift) as i64) >> shift) as u64
}

fn bit(insn: u32, from: u32, to: u32) -> u64 {
    u64::from((insn >> from) & 1) << to
}

/// Where execution can continue after the instruction `insn` (its first
/// halfword decides its length) at `pc`, given the registers `x` and the
/// guest's trap CSRs `vs`; without duplicates, and never inside the
/// instruction itself.
pub fn successors(insn: u32, pc: u64, x: &[u64; 32], vs: &VsCsrs) -> Vec<u64> {
    let len = insn_len(insn as u16);
    let mut out = alloc::vec![pc.wrapping_add(len)];
    if len == 4 {
        let rs1 = ((insn >> 15) & 31) as usize;
        match insn & 0x7f {
            // JAL.
            0x6f => {
                let imm = bit(insn, 31, 20)
                    | (u64::from((insn >> 21) & 0x3ff) << 1)
                    | bit(insn, 20, 11)
                    | (u64::from((insn >> 12) & 0xff) << 12);
                out = alloc::vec![pc.wrapping_add(sext(imm, 21))];
            }
            // JALR.
            0x67 => {
                let imm = sext(u64::from(insn >> 20), 12);
                out = alloc::vec![x[rs1].wrapping_add(imm) & !1];
            }
            // Conditional branches.
            0x63 => {
                let imm = bit(insn, 31, 12)
                    | bit(insn, 7, 11)
                    | (u64::from((insn >> 25) & 0x3f) << 5)
                    | (u64::from((insn >> 8) & 0xf) << 1);
                out.push(pc.wrapping_add(sext(imm, 13)));
            }
            _ if insn == SRET => out = alloc::vec![vs.vsepc],
            _ => {}
        }
    } else {
        let insn = insn & 0xffff;
        let (quadrant, funct3) = (insn & 3, insn >> 13);
        match (quadrant, funct3) {
            // c.j.
            (1, 5) => {
                let imm = bit(insn, 12, 11)
                    | bit(insn, 11, 4)
                    | (u64::from((insn >> 9) & 3) << 8)
                    | bit(insn, 8, 10)
                    | bit(insn, 7, 6)
                    | bit(insn, 6, 7)
                    | (u64::from((insn >> 3) & 7) << 1)
                    | bit(insn, 2, 5);
                out = alloc::vec![pc.wrapping_add(sext(imm, 12))];
            }
            // c.beqz, c.bnez.
            (1, 6 | 7) => {
                let imm = bit(insn, 12, 8)
                    | (u64::from((insn >> 10) & 3) << 3)
                    | (u64::from((insn >> 5) & 3) << 6)
                    | (u64::from((insn >> 3) & 3) << 1)
                    | bit(insn, 2, 5);
                out.push(pc.wrapping_add(sext(imm, 9)));
            }
            // c.jr, c.jalr (rs2 = 0, rs1 != 0).
            (2, 4) if (insn >> 2) & 31 == 0 && (insn >> 7) & 31 != 0 => {
                out = alloc::vec![x[((insn >> 7) & 31) as usize] & !1];
            }
            _ => {}
        }
    }
    if vs.vstvec != 0 {
        out.push(vs.vstvec & !3);
    }
    let mut unique: Vec<u64> = Vec::new();
    for a in out {
        if !unique.contains(&a) && !(pc..pc.wrapping_add(len)).contains(&a) {
            unique.push(a);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs() -> VsCsrs {
        VsCsrs { vstvec: 0x9000, vsepc: 0x5000, ..VsCsrs::default() }
    }

    #[test]
    fn straight_line_code_continues_after_the_instruction_or_at_the_trap_vector() {
        let x = [0; 32];
        // addi a0, a0, 1 (4 bytes) and c.addi a0, 1 (2 bytes).
        assert_eq!(successors(0x0015_0513, 0x1000, &x, &vs()), vec![0x1004, 0x9000]);
        assert_eq!(successors(0x0505, 0x1000, &x, &vs()), vec![0x1002, 0x9000]);
        // No trap vector yet: only the next instruction.
        assert_eq!(successors(0x0505, 0x1000, &x, &VsCsrs::default()), vec![0x1002]);
    }

    #[test]
    fn jumps_and_branches() {
        let mut x = [0; 32];
        x[1] = 0x4321; // ra
        let v = VsCsrs::default();
        // jal ra, -16  (0xff1ff0ef)
        assert_eq!(successors(0xff1f_f0ef, 0x1000, &x, &v), vec![0xff0]);
        // jalr zero, 8(ra) (ret-like): 0x00808067; bit 0 cleared.
        assert_eq!(successors(0x0080_8067, 0x1000, &x, &v), vec![0x4328]);
        // beq a0, a1, +16: 0x00b50863.
        assert_eq!(successors(0x00b5_0863, 0x1000, &x, &v), vec![0x1004, 0x1010]);
        // bne a0, a1, -4 (a loop back): 0xfeb51ee3.
        assert_eq!(successors(0xfeb5_1ee3, 0x1000, &x, &v), vec![0x1004, 0xffc]);
        // c.j -2 (0xbffd): a jump to itself plants nothing inside it... at pc-2.
        assert_eq!(successors(0xbffd, 0x1000, &x, &v), vec![0xffe]);
        // c.beqz a0, +8: 0xc501.
        assert_eq!(successors(0xc501, 0x1000, &x, &v), vec![0x1002, 0x1008]);
        // c.jr ra (ret): 0x8082.
        assert_eq!(successors(0x8082, 0x1000, &x, &v), vec![0x4320]);
        // c.jalr a1: 0x9582 with a1 = 0x7777 -> 0x7776.
        x[11] = 0x7777;
        assert_eq!(successors(0x9582, 0x1000, &x, &v), vec![0x7776]);
        // c.ebreak (0x9002) is not a c.jalr.
        assert_eq!(successors(0x9002, 0x1000, &x, &v), vec![0x1002]);
        // sret returns to vsepc.
        assert_eq!(successors(SRET, 0x1000, &x, &vs()), vec![0x5000, 0x9000]);
        // j . (jump to itself): nothing may be planted in the instruction.
        assert_eq!(successors(0x0000_006f, 0x1000, &x, &v), Vec::<u64>::new());
    }
}
