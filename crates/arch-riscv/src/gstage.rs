//! The G-stage (second-stage) tables of one domain: Sv39x4, a 41-bit
//! guest-physical space in three levels of 4 KiB pages under a 16 KiB root,
//! kept in step with the core's p2m by [`crate::vcpu::RiscvDomain`].
//!
//! The hypervisor runs with its own translation off (`satp` bare), so a
//! table's address in memory is its physical address.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Guest-physical address bits Sv39x4 translates.
pub const GPA_BITS: u32 = 41;
/// `hgatp.MODE` for Sv39x4.
const MODE_SV39X4: u64 = 8;

/// PTE bits.
mod pte {
    pub const V: u64 = 1 << 0;
    pub const R: u64 = 1 << 1;
    pub const W: u64 = 1 << 2;
    pub const X: u64 = 1 << 3;
    /// G-stage leaves must be user pages: every guest access is checked as
    /// a U-mode one.
    pub const U: u64 = 1 << 4;
    pub const A: u64 = 1 << 6;
    pub const D: u64 = 1 << 7;
    pub const PPN_SHIFT: u32 = 10;
    pub const PPN_MASK: u64 = ((1 << 44) - 1) << PPN_SHIFT;
}

/// A guest-physical address outside the 41-bit space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// A mapping's permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GPerm {
    /// Ordinary RAM: read, write, execute.
    Ram,
    /// RAM the guest may read and run but not write (read-only grants).
    RamReadOnly,
}

/// The 16 KiB root: four pages, 16 KiB aligned, as `hgatp` requires.
#[repr(C, align(16384))]
struct Root([u64; 2048]);

/// An inner or leaf table.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// One domain's G-stage tables.
pub struct GStage {
    root: Box<Root>,
    /// Every table below the root, owned here (PTEs hold their addresses).
    tables: Vec<Box<Table>>,
    mapped: usize,
}

// SAFETY: the raw table addresses in the PTEs point into boxes this value
// owns; it is only ever used behind the domain's lock.
unsafe impl Send for GStage {}

impl Default for GStage {
    fn default() -> Self {
        Self::new()
    }
}

fn index(gpa: u64, level: u32) -> usize {
    match level {
        2 => ((gpa >> 30) & 0x7ff) as usize,
        1 => ((gpa >> 21) & 0x1ff) as usize,
        _ => ((gpa >> 12) & 0x1ff) as usize,
    }
}

impl GStage {
    /// Empty tables: every guest access faults.
    pub fn new() -> Self {
        GStage { root: Box::new(Root([0; 2048])), tables: Vec::new(), mapped: 0 }
    }

    /// Physical address of the root table.
    pub fn root_pa(&self) -> u64 {
        self.root.0.as_ptr() as u64
    }

    /// `hgatp` for these tables, tagged `vmid`.
    pub fn hgatp(&self, vmid: u16) -> u64 {
        (MODE_SV39X4 << 60) | (u64::from(vmid) << 44) | (self.root_pa() >> 12)
    }

    /// Pages mapped.
    pub fn mapped_pages(&self) -> usize {
        self.mapped
    }

    /// The level-0 table covering `gpa`, made if `create`.
    fn leaf_table(&mut self, gpa: u64, create: bool) -> Option<*mut u64> {
        let mut table: *mut u64 = self.root.0.as_mut_ptr();
        for level in [2u32, 1] {
            // SAFETY: `table` is the root or a table of `self.tables` (the
            // only addresses PTEs here hold), and the index is below its
            // length (11 bits at the root, 9 below).
            let entry = unsafe { &mut *table.add(index(gpa, level)) };
            if *entry & pte::V == 0 {
                if !create {
                    return None;
                }
                let mut t = Box::new(Table([0; 512]));
                let pa = t.0.as_mut_ptr() as u64;
                self.tables.push(t);
                *entry = ((pa >> 12) << pte::PPN_SHIFT) | pte::V;
            }
            table = (((*entry & pte::PPN_MASK) >> pte::PPN_SHIFT) << 12) as *mut u64;
        }
        Some(table)
    }

    /// Maps the page at `gpa` to host-physical `hpa`; `Err` outside the
    /// 41-bit space.
    pub fn map(&mut self, gpa: u64, hpa: u64, perm: GPerm) -> Result<(), OutOfRange> {
        if gpa >> GPA_BITS != 0 {
            return Err(OutOfRange);
        }
        let bits = match perm {
            GPerm::Ram => pte::R | pte::W | pte::X | pte::D,
            GPerm::RamReadOnly => pte::R | pte::X,
        } | pte::V
            | pte::U
            | pte::A;
        let table = self.leaf_table(gpa, true).ok_or(OutOfRange)?;
        // SAFETY: a level-0 table of ours, index below 512.
        let entry = unsafe { &mut *table.add(index(gpa, 0)) };
        if *entry & pte::V == 0 {
            self.mapped += 1;
        }
        *entry = (((hpa >> 12) << pte::PPN_SHIFT) & pte::PPN_MASK) | bits;
        Ok(())
    }

    /// Unmaps the page at `gpa` (nothing if it was not mapped).
    pub fn unmap(&mut self, gpa: u64) {
        if gpa >> GPA_BITS != 0 {
            return;
        }
        if let Some(table) = self.leaf_table(gpa, false) {
            // SAFETY: as in `map`.
            let entry = unsafe { &mut *table.add(index(gpa, 0)) };
            if *entry & pte::V != 0 {
                self.mapped -= 1;
            }
            *entry = 0;
        }
    }

    /// Where `gpa` maps (host-physical address, writable), if anywhere.
    pub fn lookup(&mut self, gpa: u64) -> Option<(u64, bool)> {
        if gpa >> GPA_BITS != 0 {
            return None;
        }
        let table = self.leaf_table(gpa, false)?;
        // SAFETY: as in `map`.
        let entry = unsafe { *table.add(index(gpa, 0)) };
        let hpa = (((entry & pte::PPN_MASK) >> pte::PPN_SHIFT) << 12) | (gpa & 0xfff);
        (entry & pte::V != 0).then_some((hpa, entry & pte::W != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lookup_unmap() {
        let mut g = GStage::new();
        assert_eq!(g.root_pa() & 0x3fff, 0, "16 KiB aligned root");
        assert_eq!(g.lookup(0x1000), None);
        g.map(0x1000, 0x8040_0000, GPerm::Ram).unwrap();
        g.map(0x1_8000_0000, 0x8050_0000, GPerm::RamReadOnly).unwrap();
        assert_eq!(g.lookup(0x1234), Some((0x8040_0234, true)));
        assert_eq!(g.lookup(0x1_8000_0010), Some((0x8050_0010, false)));
        assert_eq!(g.mapped_pages(), 2);
        // Remapping a page does not count it twice.
        g.map(0x1000, 0x8060_0000, GPerm::Ram).unwrap();
        assert_eq!(g.mapped_pages(), 2);
        assert_eq!(g.lookup(0x1000), Some((0x8060_0000, true)));
        g.unmap(0x1000);
        g.unmap(0x7000);
        assert_eq!(g.lookup(0x1000), None);
        assert_eq!(g.mapped_pages(), 1);
        // The top of the 41-bit space is reachable (root index 2047), above it is not.
        let top = (1u64 << GPA_BITS) - 0x1000;
        g.map(top, 0x8070_0000, GPerm::Ram).unwrap();
        assert_eq!(g.lookup(top), Some((0x8070_0000, true)));
        assert_eq!(g.map(1 << GPA_BITS, 0x8070_0000, GPerm::Ram), Err(OutOfRange));
        assert_eq!(g.lookup(1 << GPA_BITS), None);
    }

    #[test]
    fn leaves_are_user_accessed_and_hgatp_names_the_root() {
        let mut g = GStage::new();
        g.map(0x2000, 0x8040_0000, GPerm::Ram).unwrap();
        let table = g.leaf_table(0x2000, false).unwrap();
        // SAFETY: the leaf table just made; index 2.
        let e = unsafe { *table.add(2) };
        assert_eq!(e & 0xff, pte::V | pte::R | pte::W | pte::X | pte::U | pte::A | pte::D);
        assert_eq!(e >> 10, 0x8040_0000 >> 12);
        let h = g.hgatp(5);
        assert_eq!(h >> 60, 8);
        assert_eq!((h >> 44) & 0x3fff, 5);
        assert_eq!(h & ((1 << 44) - 1), g.root_pa() >> 12);
    }
}
