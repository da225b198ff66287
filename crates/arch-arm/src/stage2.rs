//! Stage-2 translation tables (IPA → host PA), 4 KiB granule, 32-bit IPA
//! space starting at level 1 (VTCR_EL2.T0SZ = 32, SL0 = 1).
//!
//! Tables are page-aligned heap allocations; the boards identity-map the heap,
//! so a table's address is its physical address. On the host (unit tests) the
//! same code builds the same tables in ordinary heap memory.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Bits of IPA the tables cover (4 GiB).
pub const IPA_BITS: u32 = 32;

const ENTRIES: usize = 512;
const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Stage-2 MemAttr: Normal, inner and outer write-back.
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// Stage-2 MemAttr: Device-nGnRE.
const MEMATTR_DEVICE: u64 = 0b0001 << 2;
/// S2AP: read-only.
const S2AP_RO: u64 = 0b01 << 6;
/// S2AP: read/write.
const S2AP_RW: u64 = 0b11 << 6;
/// Inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag: must be set or the first access faults (no hardware AF update).
const AF: u64 = 1 << 10;
/// Execute-never (XN[1:0] = 0b10: no execution at EL1 or EL0).
const XN: u64 = 0b10 << 53;

/// How the guest may use a mapped page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S2Perm {
    /// Normal RAM, read/write/execute.
    Ram,
    /// Normal memory, read-only (writes fault to EL2).
    RamReadOnly,
    /// Device memory passed through (read/write, never executable).
    Device,
}

impl S2Perm {
    fn bits(self) -> u64 {
        match self {
            S2Perm::Ram => MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF,
            S2Perm::RamReadOnly => MEMATTR_NORMAL_WB | S2AP_RO | SH_INNER | AF,
            S2Perm::Device => MEMATTR_DEVICE | S2AP_RW | AF | XN,
        }
    }
}

/// Errors from stage-2 operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage2Error {
    /// The IPA lies outside the 32-bit IPA space.
    OutOfRange,
    /// An address is not page aligned.
    Unaligned,
}

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

impl Table {
    fn new() -> Box<Table> {
        Box::new(Table([0; ENTRIES]))
    }
}

/// One domain's stage-2 tables.
pub struct Stage2 {
    root: Box<Table>,
    tables: Vec<Box<Table>>,
    mapped: usize,
}

impl Default for Stage2 {
    fn default() -> Self {
        Self::new()
    }
}

impl Stage2 {
    /// Empty tables: every IPA faults.
    pub fn new() -> Self {
        Stage2 { root: Table::new(), tables: Vec::new(), mapped: 0 }
    }

    /// Physical address of the level-1 table (for VTTBR_EL2).
    pub fn root_pa(&self) -> u64 {
        &*self.root as *const Table as u64
    }

    /// VTTBR_EL2 value for these tables with `vmid`.
    pub fn vttbr(&self, vmid: u16) -> u64 {
        ((vmid as u64 & 0xff) << 48) | self.root_pa()
    }

    /// Number of pages currently mapped.
    pub fn mapped_pages(&self) -> usize {
        self.mapped
    }

    fn indices(ipa: u64) -> [usize; 3] {
        [((ipa >> 30) & 0x1ff) as usize, ((ipa >> 21) & 0x1ff) as usize, ((ipa >> 12) & 0x1ff) as usize]
    }

    fn check(ipa: u64, pa: u64) -> Result<(), Stage2Error> {
        if ipa >> IPA_BITS != 0 {
            return Err(Stage2Error::OutOfRange);
        }
        if ipa & 0xfff != 0 || pa & 0xfff != 0 {
            return Err(Stage2Error::Unaligned);
        }
        Ok(())
    }

    /// Pointer to the level-3 table for `ipa`, creating tables on the way
    /// when `create`.
    fn leaf_table(&mut self, ipa: u64, create: bool) -> Option<*mut Table> {
        let idx = Self::indices(ipa);
        let mut table: *mut Table = &mut *self.root;
        for &i in &idx[..2] {
            // SAFETY: `table` points at a live table owned by `self` (the root
            // or one in `self.tables`); the boxes never move their contents.
            let entry = unsafe { &mut (*table).0[i] };
            if *entry & VALID == 0 {
                if !create {
                    return None;
                }
                let mut t = Table::new();
                let pa = &mut *t as *mut Table as u64;
                self.tables.push(t);
                *entry = pa | TABLE_OR_PAGE | VALID;
            }
            table = (*entry & ADDR_MASK) as *mut Table;
        }
        Some(table)
    }

    /// Maps the page at `ipa` to host-physical `pa`.
    pub fn map(&mut self, ipa: u64, pa: u64, perm: S2Perm) -> Result<(), Stage2Error> {
        Self::check(ipa, pa)?;
        let leaf = self.leaf_table(ipa, true).ok_or(Stage2Error::OutOfRange)?;
        let i = Self::indices(ipa)[2];
        // SAFETY: `leaf` is a live level-3 table owned by `self`.
        let entry = unsafe { &mut (*leaf).0[i] };
        if *entry & VALID == 0 {
            self.mapped += 1;
        }
        *entry = pa | perm.bits() | TABLE_OR_PAGE | VALID;
        Ok(())
    }

    /// Unmaps the page at `ipa`; returns whether it was mapped. The caller
    /// invalidates the TLB before the guest runs again.
    pub fn unmap(&mut self, ipa: u64) -> bool {
        if Self::check(ipa, 0).is_err() {
            return false;
        }
        let Some(leaf) = self.leaf_table(ipa, false) else {
            return false;
        };
        let i = Self::indices(ipa)[2];
        // SAFETY: `leaf` is a live level-3 table owned by `self`.
        let entry = unsafe { &mut (*leaf).0[i] };
        let was = *entry & VALID != 0;
        if was {
            self.mapped -= 1;
        }
        *entry = 0;
        was
    }

    /// Removes every mapping (tables are freed).
    pub fn clear(&mut self) {
        self.root.0.fill(0);
        self.tables.clear();
        self.mapped = 0;
    }

    /// The host-physical address `ipa` maps to, and whether it is writable.
    pub fn lookup(&self, ipa: u64) -> Option<(u64, bool)> {
        if ipa >> IPA_BITS != 0 {
            return None;
        }
        let idx = Self::indices(ipa);
        let mut table: *const Table = &*self.root;
        for &i in &idx[..2] {
            // SAFETY: `table` is a live table owned by `self`.
            let entry = unsafe { (*table).0[i] };
            if entry & VALID == 0 {
                return None;
            }
            table = (entry & ADDR_MASK) as *const Table;
        }
        // SAFETY: as above, a live level-3 table.
        let entry = unsafe { (*table).0[idx[2]] };
        (entry & VALID != 0).then_some(((entry & ADDR_MASK) | (ipa & 0xfff), entry & S2AP_RW == S2AP_RW))
    }
}

/// VTCR_EL2 for these tables: T0SZ = 32, SL0 = 1 (start at level 1), 4 KiB
/// granule, inner-shareable write-back walks, PS from the CPU's `parange`
/// (ID_AA64MMFR0_EL1.PARange), bit 31 RES1.
pub fn vtcr(parange: u64) -> u64 {
    let t0sz = 64 - IPA_BITS as u64;
    let sl0 = 1 << 6;
    let irgn0 = 1 << 8;
    let orgn0 = 1 << 10;
    let sh0 = 3 << 12;
    let tg0 = 0 << 14;
    let ps = (parange.min(5) & 7) << 16;
    (1 << 31) | ps | tg0 | sh0 | orgn0 | irgn0 | sl0 | t0sz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lookup_unmap() {
        let mut s = Stage2::new();
        assert_eq!(s.lookup(0x4000_0000), None);
        s.map(0x4000_0000, 0x8_1234_5000, S2Perm::Ram).unwrap();
        s.map(0x4000_1000, 0x9000, S2Perm::RamReadOnly).unwrap();
        assert_eq!(s.lookup(0x4000_0010), Some((0x8_1234_5010, true)));
        assert_eq!(s.lookup(0x4000_1ff8), Some((0x9ff8, false)));
        assert_eq!(s.lookup(0x4000_2000), None);
        assert_eq!(s.mapped_pages(), 2);
        // Two intermediate tables (level 2, level 3) for one 2 MiB region.
        assert_eq!(s.tables.len(), 2);
        assert!(s.unmap(0x4000_0000));
        assert!(!s.unmap(0x4000_0000));
        assert_eq!(s.lookup(0x4000_0000), None);
        assert_eq!(s.mapped_pages(), 1);
    }

    #[test]
    fn descriptor_bits() {
        let mut s = Stage2::new();
        s.map(0x1000, 0x2000, S2Perm::Ram).unwrap();
        let l1 = s.root.0[0];
        assert_eq!(l1 & 3, 3);
        // SAFETY: the descriptors point at tables owned by `s` (host heap).
        let l2 = unsafe { (*((l1 & ADDR_MASK) as *const Table)).0[0] };
        // SAFETY: as above.
        let l3 = unsafe { (*((l2 & ADDR_MASK) as *const Table)).0[1] };
        assert_eq!(l3 & ADDR_MASK, 0x2000);
        assert_eq!(l3 & 3, 3, "page descriptor");
        assert_ne!(l3 & AF, 0, "AF must be set");
        assert_eq!((l3 >> 2) & 0xf, 0xf, "normal WB");
        assert_eq!((l3 >> 6) & 3, 3, "RW");
    }

    #[test]
    fn errors() {
        let mut s = Stage2::new();
        assert_eq!(s.map(1 << 32, 0, S2Perm::Ram), Err(Stage2Error::OutOfRange));
        assert_eq!(s.map(0x1001, 0, S2Perm::Ram), Err(Stage2Error::Unaligned));
        assert_eq!(s.lookup(1 << 33), None);
    }

    #[test]
    fn vtcr_value() {
        let v = vtcr(5);
        assert_eq!(v & 0x3f, 32);
        assert_eq!((v >> 6) & 3, 1);
        assert_eq!((v >> 16) & 7, 5);
        assert_ne!(v & (1 << 31), 0);
    }
}
