//! Reading the PVH `hvm_start_info` QEMU hands us in `ebx`: memory map,
//! command line and the (single) boot module.

use core::ptr::read_unaligned;

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;

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
    if rd::<u32>(pa) != HVM_START_MAGIC {
        return None;
    }
    let version = rd::<u32>(pa + 4);
    let nr_modules = rd::<u32>(pa + 12);
    let modlist = rd::<u64>(pa + 16);
    let cmdline = rd::<u64>(pa + 24);
    let mut info = StartInfo { cmdline: c_str(cmdline), module: None, memmap: [(0, 0, 0); 32], memmap_len: 0 };
    if nr_modules > 0 && modlist != 0 {
        info.module = Some((rd::<u64>(modlist), rd::<u64>(modlist + 8)));
    }
    if version >= 1 {
        let memmap = rd::<u64>(pa + 40);
        let entries = rd::<u32>(pa + 48) as usize;
        for i in 0..entries.min(32) {
            let e = memmap + 24 * i as u64;
            info.memmap[i] = (rd::<u64>(e), rd::<u64>(e + 8), rd::<u32>(e + 16));
        }
        info.memmap_len = entries.min(32);
    }
    Some(info)
}
