//! The PVH boot protocol (`arch-x86/hvm/start_info.h`), both ways: the
//! `hvm_start_info` mirrors Lantern reads when QEMU boots it, and the ones it
//! writes for a guest it boots — the start info with command line and memory
//! map at a guest-physical address, handed over in `ebx` by
//! [`VcpuInitContext::PowerOn`](lantern_common::arch::VcpuInitContext).

use alloc::vec::Vec;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use lantern_common::addr::Gpa;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use xen_abi::errno::{Errno, XenResult};

/// `XEN_HVM_START_MAGIC_VALUE`, the first word of `hvm_start_info`.
pub const START_MAGIC: u32 = 0x336e_c578;
/// The `hvm_start_info` version with a memory map.
pub const START_INFO_VERSION_MEMMAP: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RAM` (E820 usable RAM).
pub const MEMMAP_TYPE_RAM: u32 = 1;

/// `struct hvm_start_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmStartInfo {
    /// [`START_MAGIC`].
    pub magic: u32,
    /// Version of the structure.
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of modules.
    pub nr_modules: u32,
    /// Address of the `hvm_modlist_entry` array.
    pub modlist_paddr: u64,
    /// Address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Address of the `hvm_memmap_table_entry` array (version >= 1).
    pub memmap_paddr: u64,
    /// Number of memory-map entries.
    pub memmap_entries: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmModlistEntry {
    /// Module address.
    pub paddr: u64,
    /// Module size in bytes.
    pub size: u64,
    /// The module's command line.
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmMemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`.
    pub kind: u32,
    /// Reserved.
    pub reserved: u32,
}

const _: () = {
    assert!(core::mem::size_of::<HvmStartInfo>() == 56);
    assert!(core::mem::size_of::<HvmModlistEntry>() == 32);
    assert!(core::mem::size_of::<HvmMemmapTableEntry>() == 24);
};

/// Writes a guest's `hvm_start_info` at `at`, followed by its command line
/// and a one-entry memory map (all of `mem_bytes` RAM from 0); returns the
/// start info's address, which the boot vCPU gets in `ebx`.
pub fn write_start_info(d: &Domain, at: Gpa, mem_bytes: u64, cmdline: &str) -> XenResult<Gpa> {
    let start_info_size = core::mem::size_of::<HvmStartInfo>() as u64;
    let cmdline_at = at.checked_add(start_info_size.next_multiple_of(16)).ok_or(Errno::EFAULT)?;
    let memmap_at = cmdline_at.checked_add((cmdline.len() as u64 + 1).next_multiple_of(16)).ok_or(Errno::EFAULT)?;
    let info = HvmStartInfo {
        magic: START_MAGIC,
        version: START_INFO_VERSION_MEMMAP,
        cmdline_paddr: cmdline_at.0,
        memmap_paddr: memmap_at.0,
        memmap_entries: 1,
        ..HvmStartInfo::default()
    };
    let ram = HvmMemmapTableEntry { addr: 0, size: mem_bytes, kind: MEMMAP_TYPE_RAM, reserved: 0 };
    let mut line: Vec<u8> = cmdline.as_bytes().to_vec();
    line.push(0);
    let mem = PhysMem::new(d);
    mem.write_obj(at, &info)?;
    mem.write_bytes(cmdline_at, &line)?;
    mem.write_obj(memmap_at, &ram)?;
    Ok(at)
}
