//! Guest page-table walks (what a hypercall's guest-virtual argument pointer
//! refers to): no paging, 32-bit two-level (with 4 MiB PSE pages), PAE
//! three-level and long-mode four-level tables, read through a callback that
//! loads one 64-bit or 32-bit entry from guest-physical memory.

use xen_abi::errno::{Errno, XenResult};

/// The control-register state a walk depends on.
#[derive(Clone, Copy, Debug)]
pub struct PagingState {
    /// CR0 (PG = bit 31).
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4 (PSE = bit 4, PAE = bit 5).
    pub cr4: u64,
    /// EFER (LMA = bit 10).
    pub efer: u64,
}

const P: u64 = 1;
const RW: u64 = 2;
const PS: u64 = 1 << 7;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

/// Translates `gva` to a guest-physical address. `read` loads the entry of
/// `size` bytes (4 or 8) at a guest-physical address. Fails with `EFAULT` on
/// a non-present entry or a write through a read-only one.
pub fn translate(
    st: &PagingState,
    gva: u64,
    write: bool,
    read: &mut dyn FnMut(u64, usize) -> XenResult<u64>,
) -> XenResult<u64> {
    if st.cr0 & (1 << 31) == 0 {
        // Paging off: physical addressing (truncated outside long mode).
        return Ok(gva & 0xFFFF_FFFF);
    }
    let check = |e: u64| -> XenResult<()> {
        if e & P == 0 || (write && e & RW == 0) {
            Err(Errno::EFAULT)
        } else {
            Ok(())
        }
    };
    if st.efer & (1 << 10) != 0 {
        // Long mode: four levels, 1 GiB and 2 MiB leaves. A non-canonical
        // address (bits 63..47 not all equal) names nothing: the CPU would
        // fault on it, Xen's copy to or from it fails. Walking it anyway
        // would drop bits 63..48 and reach the low half's memory (found by
        // the in-guest fuzzer: a shutdown argument at 0x8000_0000_0000_xxxx
        // read the guest's page 0 and powered the domain off).
        if (gva as i64) >> 47 != 0 && (gva as i64) >> 47 != -1 {
            return Err(Errno::EFAULT);
        }
        let mut table = st.cr3 & ADDR;
        for level in (0..4).rev() {
            let shift = 12 + 9 * level;
            let e = read(table + ((gva >> shift) & 0x1FF) * 8, 8)?;
            check(e)?;
            if level == 0 || (level <= 2 && e & PS != 0) {
                let mask = (1u64 << shift) - 1;
                return Ok((e & ADDR & !mask) | (gva & mask));
            }
            table = e & ADDR;
        }
        unreachable!("level 0 always returns")
    } else if st.cr4 & (1 << 5) != 0 {
        // PAE: a 4-entry PDPT, then two levels of 8-byte entries.
        let gva = gva & 0xFFFF_FFFF;
        let pdpte = read((st.cr3 & 0xFFFF_FFE0) + (gva >> 30) * 8, 8)?;
        if pdpte & P == 0 {
            return Err(Errno::EFAULT);
        }
        let pde = read((pdpte & ADDR) + ((gva >> 21) & 0x1FF) * 8, 8)?;
        check(pde)?;
        if pde & PS != 0 {
            return Ok((pde & ADDR & !0x1F_FFFF) | (gva & 0x1F_FFFF));
        }
        let pte = read((pde & ADDR) + ((gva >> 12) & 0x1FF) * 8, 8)?;
        check(pte)?;
        Ok((pte & ADDR) | (gva & 0xFFF))
    } else {
        // Legacy 32-bit paging: 4-byte entries, 4 MiB pages with CR4.PSE.
        let gva = gva & 0xFFFF_FFFF;
        let pde = read((st.cr3 & 0xFFFF_F000) + (gva >> 22) * 4, 4)?;
        check(pde)?;
        if pde & PS != 0 && st.cr4 & (1 << 4) != 0 {
            // PSE-36: bits 13..20 give physical address bits 32..39.
            let high = ((pde >> 13) & 0xFF) << 32;
            return Ok(high | (pde & 0xFFC0_0000) | (gva & 0x3F_FFFF));
        }
        let pte = read((pde & 0xFFFF_F000) + ((gva >> 12) & 0x3FF) * 4, 4)?;
        check(pte)?;
        Ok((pte & 0xFFFF_F000) | (gva & 0xFFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mem_reader(mem: &HashMap<u64, u64>) -> impl FnMut(u64, usize) -> XenResult<u64> + '_ {
        move |gpa, _| Ok(*mem.get(&gpa).unwrap_or(&0))
    }

    #[test]
    fn paging_off_is_identity() {
        let st = PagingState { cr0: 0x11, cr3: 0, cr4: 0, efer: 0 };
        let mem = HashMap::new();
        assert_eq!(translate(&st, 0x1234, true, &mut mem_reader(&mem)), Ok(0x1234));
    }

    #[test]
    fn long_mode_4k_and_2m() {
        let mut mem = HashMap::new();
        mem.insert(0x1000, 0x2000 | 3); // PML4[0]
        mem.insert(0x2000, 0x3000 | 3); // PDPT[0]
        mem.insert(0x3000, 0x4000 | 3); // PD[0] -> PT
        mem.insert(0x3008, 0x0060_0000 | 0x81); // PD[1]: 2 MiB read-only
        mem.insert(0x4000 + 5 * 8, 0x9000 | 3); // PT[5]
        let st = PagingState { cr0: 0x8000_0011, cr3: 0x1000, cr4: 0x20, efer: 0x500 };
        assert_eq!(translate(&st, 0x5123, false, &mut mem_reader(&mem)), Ok(0x9123));
        assert_eq!(translate(&st, 0x20_0042, false, &mut mem_reader(&mem)), Ok(0x60_0042));
        assert_eq!(translate(&st, 0x20_0042, true, &mut mem_reader(&mem)), Err(Errno::EFAULT));
        assert_eq!(translate(&st, 0x6000, false, &mut mem_reader(&mem)), Err(Errno::EFAULT));
    }

    #[test]
    fn long_mode_refuses_non_canonical_addresses() {
        let mut mem = HashMap::new();
        mem.insert(0x1000, 0x2000 | 3); // PML4[0]
        mem.insert(0x1000 + 511 * 8, 0x2000 | 3); // PML4[511]
        mem.insert(0x2000, 0x0000_0083); // PDPT[0]: 1 GiB at 0
        mem.insert(0x2000 + 511 * 8, 0x4000_0083); // PDPT[511]: 1 GiB at 1 GiB
        let st = PagingState { cr0: 0x8000_0011, cr3: 0x1000, cr4: 0x20, efer: 0x500 };
        let t = |gva| translate(&st, gva, false, &mut mem_reader(&mem));
        assert_eq!(t(0x1234), Ok(0x1234));
        assert_eq!(t(0xFFFF_FFFF_FFFF_F000), Ok(0x7FFF_F000), "the high half is canonical");
        for gva in [0x8000_0000_0000_1234, 0x0000_8000_0000_0000, 0x0001_0000_0000_1234, 0xFFFF_7FFF_FFFF_F000] {
            assert_eq!(t(gva), Err(Errno::EFAULT), "{gva:#x}");
        }
    }

    #[test]
    fn pae_and_legacy() {
        let mut mem = HashMap::new();
        mem.insert(0x1000 + 3 * 8, 0x2000 | 1); // PDPT[3]
        mem.insert(0x2000 + 8, 0x0040_0000 | 0x83); // PD[1], 2 MiB
        let st = PagingState { cr0: 0x8000_0011, cr3: 0x1000, cr4: 0x20, efer: 0 };
        assert_eq!(translate(&st, 0xC020_0010, true, &mut mem_reader(&mem)), Ok(0x40_0010));

        let mut mem = HashMap::new();
        mem.insert(0x1000 + 4, 0x0080_0000 | 0x83); // PDE[1], 4 MiB
        mem.insert(0x1000 + 8, 0x3000 | 3); // PDE[2] -> PT
        mem.insert(0x3000 + 4, 0x7000 | 3);
        let st = PagingState { cr0: 0x8000_0011, cr3: 0x1000, cr4: 0x10, efer: 0 };
        assert_eq!(translate(&st, 0x0040_1234, false, &mut mem_reader(&mem)), Ok(0x80_1234));
        assert_eq!(translate(&st, 0x0080_1234, false, &mut mem_reader(&mem)), Ok(0x7234));
    }
}
