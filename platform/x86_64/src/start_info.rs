//! Reading the PVH `hvm_start_info` QEMU hands us in `ebx`: memory map,
//! command line and the (single) boot module.

use core::ptr::read_unaligned;

use lantern_arch_x86::pvh::{HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, START_MAGIC};

pub use lantern_arch_x86::pvh::MEMMAP_TYPE_RAM as E820_RAM;

/// What the board needs from `hvm_start_info`, copied out of guest-ABI memory.
pub struct StartInfo {
    /// Kernel command line (`-append`), empty when absent.
    pub cmdline: &'static str,
    /// The first boot module (`-initrd`): physical address and size.
    pub module: Option<(u64, u64)>,
    /// Up to 32 E820 entries: (address, size, type).
    pub memmap: [(u64, u64, u32); 32],
    /// Number of valid entries in `memmap`.
    pub memmap_len: usize,
}

fn rd<T: Copy>(addr: u64) -> T {
    // SAFETY: the low 4 GiB are identity mapped and QEMU placed the start
    // info structures in RAM below 4 GiB; unaligned reads are fine on x86.
    unsafe { read_unaligned(addr as *const T) }
}

fn c_str(addr: u64) -> &'static str {
    if addr == 0 {
        return "";
    }
    let mut len = 0usize;
    while len < 4096 && rd::<u8>(addr + len as u64) != 0 {
        len += 1;
    }
    // SAFETY: `len` bytes starting at `addr` are identity-mapped RAM that
    // nothing writes after boot (QEMU's start-of-day data, outside the heap).
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}

/// Parses `hvm_start_info` at physical address `pa`; `None` on a bad magic.
pub fn parse(pa: u64) -> Option<StartInfo> {
    let si: HvmStartInfo = rd(pa);
    if si.magic != START_MAGIC {
        return None;
    }
    let mut info = StartInfo { cmdline: c_str(si.cmdline_paddr), module: None, memmap: [(0, 0, 0); 32], memmap_len: 0 };
    if si.nr_modules > 0 && si.modlist_paddr != 0 {
        let m: HvmModlistEntry = rd(si.modlist_paddr);
        info.module = Some((m.paddr, m.size));
    }
    if si.version >= 1 {
        let entries = (si.memmap_entries as usize).min(32);
        for (i, slot) in info.memmap[..entries].iter_mut().enumerate() {
            let e: HvmMemmapTableEntry = rd(si.memmap_paddr + (core::mem::size_of::<HvmMemmapTableEntry>() * i) as u64);
            *slot = (e.addr, e.size, e.kind);
        }
        info.memmap_len = entries;
    }
    Some(info)
}
