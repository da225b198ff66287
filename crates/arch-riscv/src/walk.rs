//! The guest's own (VS-stage) translation, walked in software for the core
//! (hypercall arguments by virtual address, gdb) and for reading a trapping
//! instruction: bare, Sv39 or Sv48 from `vsatp`; each table entry is read
//! through `read_pte` (guest-physical).

/// Why a walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// A `vsatp` mode Lantern does not walk (Sv57).
    Mode,
    /// An invalid, misaligned or unreadable entry, or no permission.
    Fault,
}

const V: u64 = 1;
const R: u64 = 2;
const W: u64 = 4;
const X: u64 = 8;

/// Translates guest-virtual `va` under `vsatp`.
pub fn translate(vsatp: u64, va: u64, write: bool, read_pte: impl Fn(u64) -> Option<u64>) -> Result<u64, WalkError> {
    let levels = match vsatp >> 60 {
        0 => return Ok(va),
        8 => 3,
        9 => 4,
        _ => return Err(WalkError::Mode),
    };
    // The address must be the sign extension of its top translated bit.
    let va_bits = 12 + 9 * levels;
    let top = (va as i64) >> (va_bits - 1);
    if top != 0 && top != -1 {
        return Err(WalkError::Fault);
    }
    let mut table = (vsatp & ((1 << 44) - 1)) << 12;
    for level in (0..levels).rev() {
        let idx = (va >> (12 + 9 * level)) & 0x1ff;
        let pte = read_pte(table + idx * 8).ok_or(WalkError::Fault)?;
        if pte & V == 0 || (pte & W != 0 && pte & R == 0) {
            return Err(WalkError::Fault);
        }
        let ppn = (pte >> 10) & ((1 << 44) - 1);
        if pte & (R | X) == 0 {
            table = ppn << 12;
            continue;
        }
        if write && pte & W == 0 {
            return Err(WalkError::Fault);
        }
        let span = 12 + 9 * level;
        let low_ppn = (1u64 << (9 * level)) - 1;
        if ppn & low_ppn != 0 {
            return Err(WalkError::Fault);
        }
        return Ok((ppn << 12) | (va & ((1 << span) - 1)));
    }
    Err(WalkError::Fault)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn table(entries: &[(u64, u64)]) -> HashMap<u64, u64> {
        entries.iter().copied().collect()
    }

    #[test]
    fn bare_is_identity() {
        assert_eq!(translate(0, 0x1234, true, |_| None), Ok(0x1234));
    }

    #[test]
    fn sv39_pages_and_megapages() {
        // root at 0x10000: entry 2 (VA 0x8000_0000) -> table 0x11000;
        // that table's entry 0 -> leaf table 0x12000, entry 1 a 2 MiB page.
        let mem = table(&[
            (0x10000 + 2 * 8, (0x11 << 10) | V),
            (0x11000, (0x12 << 10) | V),
            (0x11000 + 8, ((0x40_0000 >> 12) << 10) | V | R | W),
            (0x12000 + 3 * 8, ((0x5_0000 >> 12) << 10) | V | R | X),
            // A misaligned megapage.
            (0x11000 + 16, ((0x40_1000 >> 12) << 10) | V | R),
        ]);
        let satp = (8 << 60) | 0x10;
        let rd = |a| mem.get(&a).copied();
        assert_eq!(translate(satp, 0x8000_3010, false, rd), Ok(0x5_0010));
        assert_eq!(translate(satp, 0x8000_3010, true, rd), Err(WalkError::Fault), "read-only");
        assert_eq!(translate(satp, 0x8020_1234, true, rd), Ok(0x40_1234));
        assert_eq!(translate(satp, 0x8040_0000, false, rd), Err(WalkError::Fault), "misaligned superpage");
        assert_eq!(translate(satp, 0x4000_0000, false, rd), Err(WalkError::Fault), "unmapped");
        assert_eq!(translate(satp, 0x40_0000_0000, false, rd), Err(WalkError::Fault), "not sign-extended");
        assert_eq!(translate(10 << 60, 0, false, rd), Err(WalkError::Mode));
    }
}
