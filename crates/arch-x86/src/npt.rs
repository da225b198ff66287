//! Nested page tables (AMD NPT, long-mode 4-level format) mapping a domain's
//! guest-physical addresses to host-physical frames, 4 KiB at a time.
//!
//! Tables are page-aligned heap allocations; on the boards host virtual ==
//! host physical, so a table's address is what the entries and nCR3 hold.
//! Every level carries U/S = 1 because nested walks are user accesses.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_RW: u64 = 1 << 1;
/// User (required at every nested level).
pub const PTE_US: u64 = 1 << 2;
/// Physical-address bits of an entry.
pub const PTE_ADDR: u64 = 0x000F_FFFF_FFFF_F000;
/// Bits of guest-physical address the four levels translate (above them
/// the indices would wrap onto lower addresses).
pub const GPA_BITS: u32 = 48;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// One domain's nested page tables.
pub struct NestedPageTable {
    root: Box<Table>,
    tables: Vec<Box<Table>>,
}

impl Default for NestedPageTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NestedPageTable {
    /// Empty tables (nothing mapped).
    pub fn new() -> Self {
        NestedPageTable { root: Box::new(Table([0; 512])), tables: Vec::new() }
    }

    /// The value for the VMCB's nCR3.
    pub fn root_pa(&self) -> u64 {
        &*self.root as *const Table as u64
    }

    fn index(gpa: u64, level: u32) -> usize {
        ((gpa >> (12 + 9 * level)) & 0x1FF) as usize
    }

    /// Returns the level-0 table covering `gpa`, creating tables if `create`.
    fn leaf_table(&mut self, gpa: u64, create: bool) -> Option<*mut Table> {
        let mut table: *mut Table = &mut *self.root;
        for level in (1..4).rev() {
            let idx = Self::index(gpa, level);
            // SAFETY: `table` points at a live table owned by `self` (the root
            // or an element of `self.tables`), and `&mut self` makes this the
            // only access.
            let entry = unsafe { &mut (*table).0[idx] };
            if *entry & PTE_P == 0 {
                if !create {
                    return None;
                }
                let mut new = Box::new(Table([0; 512]));
                let ptr: *mut Table = &mut *new;
                self.tables.push(new);
                *entry = ptr as u64 | PTE_P | PTE_RW | PTE_US;
            }
            table = (*entry & PTE_ADDR) as *mut Table;
        }
        Some(table)
    }

    /// Maps the 4 KiB guest frame at `gpa` to host-physical `hpa`.
    pub fn map(&mut self, gpa: u64, hpa: u64, writable: bool) {
        let leaf = self.leaf_table(gpa, true).expect("created");
        let flags = PTE_P | PTE_US | if writable { PTE_RW } else { 0 };
        // SAFETY: `leaf` is a live table owned by `self` (see leaf_table).
        unsafe { (*leaf).0[Self::index(gpa, 0)] = (hpa & PTE_ADDR) | flags };
    }

    /// Removes the mapping of the frame at `gpa`, if any.
    pub fn unmap(&mut self, gpa: u64) {
        if let Some(leaf) = self.leaf_table(gpa, false) {
            // SAFETY: as in `map`.
            unsafe { (*leaf).0[Self::index(gpa, 0)] = 0 };
        }
    }

    /// Looks up the host-physical address and writability for `gpa`.
    pub fn lookup(&mut self, gpa: u64) -> Option<(u64, bool)> {
        let leaf = self.leaf_table(gpa, false)?;
        // SAFETY: as in `map`.
        let e = unsafe { (*leaf).0[Self::index(gpa, 0)] };
        (e & PTE_P != 0).then_some(((e & PTE_ADDR) | (gpa & 0xFFF), e & PTE_RW != 0))
    }

    /// Number of table pages in use (root included).
    pub fn table_pages(&self) -> usize {
        1 + self.tables.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lookup_unmap() {
        let mut npt = NestedPageTable::new();
        npt.map(0x1234_5000, 0xABC000, true);
        npt.map(0x8000_0000_0000 - 0x1000, 0x5000, false);
        assert_eq!(npt.lookup(0x1234_5678), Some((0xABC678, true)));
        assert_eq!(npt.lookup(0x7FFF_FFFF_FFF0), Some((0x5FF0, false)));
        assert_eq!(npt.lookup(0x1234_6000), None);
        npt.unmap(0x1234_5000);
        assert_eq!(npt.lookup(0x1234_5000), None);
        assert_eq!(npt.table_pages(), 1 + 3 + 3);
    }

    #[test]
    fn every_level_is_user() {
        let mut npt = NestedPageTable::new();
        npt.map(0, 0x1000, true);
        assert_eq!(npt.root.0[0] & (PTE_P | PTE_RW | PTE_US), PTE_P | PTE_RW | PTE_US);
    }
}
