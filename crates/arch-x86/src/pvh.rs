//! The PVH boot protocol (`arch-x86/hvm/start_info.h`), both ways: the
//! `hvm_start_info` mirrors Lantern reads when QEMU boots it, and the ones it
//! writes for a guest it boots — the start info with command line and memory
//! map at a guest-physical address, handed over in `ebx` by
//! [`VcpuInitContext::PowerOn`](lantern_common::arch::VcpuInitContext).

use alloc::vec::Vec;

use lantern_common::addr::Gpa;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
pub use xen_abi::arch_x86::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, MEMMAP_TYPE_RAM, MEMMAP_TYPE_RESERVED,
    START_INFO_VERSION_MEMMAP, START_MAGIC,
};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::e820;
use xen_abi::public::E820Entry;

/// Writes a guest's `hvm_start_info` at `at`, followed by its command line
/// and its memory map: all of `mem_bytes` RAM from 0, then each page of
/// `reserved` (the toolstack's special pages, e.g. the console ring, and
/// the ACPI tables) as reserved, so the guest never hands those frames out
/// as RAM; `rsdp` (0: none) is the ACPI root pointer. Returns the start
/// info's address, which the boot vCPU gets in `ebx`.
pub fn write_start_info(
    d: &Domain,
    at: Gpa,
    mem_bytes: u64,
    cmdline: &str,
    reserved: &[Gpa],
    rsdp: Gpa,
) -> XenResult<Gpa> {
    let start_info_size = core::mem::size_of::<HvmStartInfo>() as u64;
    let cmdline_at = at.checked_add(start_info_size.next_multiple_of(16)).ok_or(Errno::EFAULT)?;
    let memmap_at = cmdline_at.checked_add((cmdline.len() as u64 + 1).next_multiple_of(16)).ok_or(Errno::EFAULT)?;
    let info = HvmStartInfo {
        magic: START_MAGIC,
        version: START_INFO_VERSION_MEMMAP,
        cmdline_paddr: cmdline_at.0,
        memmap_paddr: memmap_at.0,
        memmap_entries: 1 + reserved.len() as u32,
        rsdp_paddr: rsdp.0,
        ..HvmStartInfo::default()
    };
    let ram = HvmMemmapTableEntry { addr: 0, size: mem_bytes, kind: MEMMAP_TYPE_RAM, reserved: 0 };
    let mut line: Vec<u8> = cmdline.as_bytes().to_vec();
    line.push(0);
    // XENMEM_memory_map answers the guest with the same map.
    d.set_memory_map(alloc::vec![E820Entry::new(ram.addr, ram.size, e820::RAM)]);
    let mem = PhysMem::new(d);
    mem.write_obj(at, &info)?;
    mem.write_bytes(cmdline_at, &line)?;
    mem.write_obj(memmap_at, &ram)?;
    let entry_size = core::mem::size_of::<HvmMemmapTableEntry>() as u64;
    for (i, r) in reserved.iter().enumerate() {
        let e = HvmMemmapTableEntry { addr: r.0, size: 4096, kind: MEMMAP_TYPE_RESERVED, reserved: 0 };
        mem.write_obj(memmap_at.checked_add((i as u64 + 1) * entry_size).ok_or(Errno::EFAULT)?, &e)?;
    }
    Ok(at)
}
