//! Guest virtual → guest physical (IPA) translation through the guest's own
//! stage-1 tables (TTBR0_EL1/TTBR1_EL1, 4 KiB granule), for hypercall
//! arguments and the gdb stub. The tables are read through a callback so the
//! walk works on any guest-memory accessor (and in host unit tests).

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The address is outside both halves, a descriptor is invalid, or the
    /// translation regime uses a granule other than 4 KiB.
    NotMapped,
    /// A table could not be read (not guest RAM).
    BadTable,
    /// The mapping is read-only and a write was asked for.
    ReadOnly,
}

/// The EL1 stage-1 translation registers of a vCPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stage1Regs {
    /// SCTLR_EL1 (bit 0: MMU on).
    pub sctlr: u64,
    /// TCR_EL1.
    pub tcr: u64,
    /// TTBR0_EL1.
    pub ttbr0: u64,
    /// TTBR1_EL1.
    pub ttbr1: u64,
}

const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Translates `va` for a `write` (or read) access. `read_u64(ipa)` reads one
/// descriptor of guest memory.
pub fn translate(
    regs: &Stage1Regs,
    va: u64,
    write: bool,
    mut read_u64: impl FnMut(u64) -> Option<u64>,
) -> Result<u64, WalkError> {
    if regs.sctlr & 1 == 0 {
        // MMU off: flat.
        return Ok(va);
    }
    let tcr = regs.tcr;
    let upper = va >> 63 == 1;
    let (tsz, granule_ok, disabled, ttbr) = if upper {
        ((tcr >> 16) & 0x3f, (tcr >> 30) & 3 == 2, tcr & (1 << 23) != 0, regs.ttbr1)
    } else {
        ((tcr & 0x3f), (tcr >> 14) & 3 == 0, tcr & (1 << 7) != 0, regs.ttbr0)
    };
    if !granule_ok || disabled || !(16..=39).contains(&tsz) {
        return Err(WalkError::NotMapped);
    }
    let va_bits = 64 - tsz as u32;
    // The unused top bits must all equal the half's sign.
    let top = if va_bits == 64 { 0 } else { va >> va_bits };
    let want = if upper { (1u64 << (64 - va_bits)) - 1 } else { 0 };
    if top != want {
        return Err(WalkError::NotMapped);
    }
    let levels = (va_bits - 12).div_ceil(9);
    let mut level = 4 - levels;
    let mut table = ttbr & ADDR_MASK & !(0xffff << 48);
    let mut read_only = false;
    loop {
        let shift = 12 + 9 * (3 - level);
        let idx = (va >> shift) & 0x1ff;
        let idx = if level == 4 - levels {
            // The first level may use fewer index bits.
            idx & ((1u64 << (va_bits - shift)) - 1).min(0x1ff)
        } else {
            idx
        };
        let desc = read_u64(table + idx * 8).ok_or(WalkError::BadTable)?;
        if desc & 1 == 0 {
            return Err(WalkError::NotMapped);
        }
        let is_table = desc & 2 != 0;
        if level < 3 && is_table {
            // APTable[1] (bit 62): no writes below this table.
            read_only |= desc & (1 << 62) != 0;
            table = desc & ADDR_MASK;
            level += 1;
            continue;
        }
        if level == 3 && !is_table {
            return Err(WalkError::NotMapped);
        }
        if level == 0 {
            // No blocks at level 0 with a 4 KiB granule.
            return Err(WalkError::NotMapped);
        }
        // AP[2] (bit 7): read-only.
        read_only |= desc & (1 << 7) != 0;
        if write && read_only {
            return Err(WalkError::ReadOnly);
        }
        let offset_mask = (1u64 << shift) - 1;
        return Ok((desc & ADDR_MASK & !offset_mask) | (va & offset_mask));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Builds 4-level tables (T0SZ = 16) in a fake guest memory.
    struct Mem(HashMap<u64, u64>);

    impl Mem {
        fn set(&mut self, table: u64, idx: u64, desc: u64) {
            self.0.insert(table + idx * 8, desc);
        }
    }

    const TCR_48: u64 = 16 | (16 << 16) | (2 << 30);

    #[test]
    fn mmu_off_is_flat() {
        let r = Stage1Regs::default();
        assert_eq!(translate(&r, 0x1234, true, |_| None), Ok(0x1234));
    }

    #[test]
    fn four_level_page_and_block() {
        let mut m = Mem(HashMap::new());
        // va 0x0000_0080_4020_3123: l0 idx 1, l1 idx 1, l2 idx 1, l3 idx 3
        m.set(0x1000, 1, 0x2000 | 3);
        m.set(0x2000, 1, 0x3000 | 3);
        m.set(0x3000, 1, 0x4000 | 3);
        m.set(0x4000, 3, 0x9_9000 | 3 | (1 << 10));
        // A 2 MiB block at l2 idx 2, read-only.
        m.set(0x3000, 2, 0x20_0000 | 1 | (1 << 7));
        let r = Stage1Regs { sctlr: 1, tcr: TCR_48, ttbr0: 0x1000, ttbr1: 0 };
        let rd = |a| m.0.get(&a).copied().or(Some(0));
        assert_eq!(translate(&r, 0x0080_4020_3123, false, rd), Ok(0x9_9123));
        let rd = |a| m.0.get(&a).copied().or(Some(0));
        assert_eq!(translate(&r, 0x0080_4045_6789, false, rd), Ok(0x25_6789));
        let rd = |a| m.0.get(&a).copied().or(Some(0));
        assert_eq!(translate(&r, 0x0080_4045_6789, true, rd), Err(WalkError::ReadOnly));
        let rd = |a| m.0.get(&a).copied().or(Some(0));
        assert_eq!(translate(&r, 0x0080_4060_0000, false, rd), Err(WalkError::NotMapped));
    }

    #[test]
    fn upper_half_three_levels() {
        let mut m = Mem(HashMap::new());
        // T1SZ = 25 (39-bit): start at level 1.
        let tcr = 16 | (25 << 16) | (2 << 30);
        let va = 0xffff_ff80_0000_5008u64;
        // l1 idx 0, l2 idx 0, l3 idx 5
        m.set(0x8000, 0, 0xa000 | 3);
        m.set(0xa000, 0, 0xb000 | 3);
        m.set(0xb000, 5, 0x7_7000 | 3);
        let r = Stage1Regs { sctlr: 1, tcr, ttbr0: 0, ttbr1: 0x8000 };
        let rd = |a| m.0.get(&a).copied().or(Some(0));
        assert_eq!(translate(&r, va, false, rd), Ok(0x7_7008));
        // Non-canonical.
        let rd = |a| m.0.get(&a).copied().or(Some(0));
        assert_eq!(translate(&r, 0xff00_0000_0000_0000, false, rd), Err(WalkError::NotMapped));
    }

    #[test]
    fn bad_table_and_granule() {
        let r = Stage1Regs { sctlr: 1, tcr: TCR_48, ttbr0: 0x1000, ttbr1: 0 };
        assert_eq!(translate(&r, 0x1000, false, |_| None), Err(WalkError::BadTable));
        let r64k = Stage1Regs { tcr: 16 | (1 << 14), ..r };
        assert_eq!(translate(&r64k, 0x1000, false, |_| Some(3)), Err(WalkError::NotMapped));
    }
}
