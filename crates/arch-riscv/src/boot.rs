//! The riscv64 guest boot protocol: the ELF image loaded at its link
//! addresses (from [`GUEST_IMAGE_BASE`]), the generated guest DTB
//! [`GUEST_DTB_BELOW_RAM_TOP`] below the top of RAM, and the boot vCPU
//! entered in VS-mode with `a0` = its hart id and `a1` = the DTB
//! ([`VcpuInitContext::PowerOn`](lantern_common::arch::VcpuInitContext)'s
//! `context_id`).

use alloc::format;
use alloc::string::{String, ToString};

use lantern_common::addr::Gpa;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::loader;

use crate::fdt_gen::{self, GuestDtConfig};
use crate::guest::{GuestMap, GUEST_DTB_BELOW_RAM_TOP, GUEST_IMAGE_BASE};

/// `e_machine` of RISC-V ELF files.
const EM_RISCV: u16 = 243;

/// Where a booted guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Entry address (guest-physical: the MMU is off).
    pub entry: u64,
    /// Guest-physical address of the DTB (the boot vCPU's `a1`).
    pub dtb: Gpa,
    /// Size of the DTB.
    pub dtb_len: usize,
    /// Where the initrd went, `[start, end)`.
    pub initrd: Option<(u64, u64)>,
}

/// Loads the ELF `image` into `d` (whose RAM is `ram` bytes), `initrd`
/// page-aligned just below the DTB, and the DTB for `vcpus` and `bootargs`.
pub fn load(
    d: &Domain,
    image: &[u8],
    initrd: Option<&[u8]>,
    ram: u64,
    vcpus: u32,
    bootargs: &str,
) -> Result<BootInfo, String> {
    if !image.starts_with(b"\x7fELF") {
        return Err(String::from("not an ELF file"));
    }
    // The ELF reader wants its headers naturally aligned; a cpio member is
    // only 4-byte aligned.
    let mut aligned = alloc::vec![0u64; image.len().div_ceil(8)];
    let bytes = &mut zerocopy::IntoBytes::as_mut_bytes(aligned.as_mut_slice())[..image.len()];
    bytes.copy_from_slice(image);
    let li = loader::load_elf(d, bytes).map_err(|e| format!("{e:?}"))?;
    if li.machine != EM_RISCV || !li.elf64 {
        return Err(format!("not a RISC-V ELF64 (e_machine {})", li.machine));
    }
    if li.entry < GUEST_IMAGE_BASE {
        return Err(format!("entry {:#x} below the image base {GUEST_IMAGE_BASE:#x}", li.entry));
    }
    let Some(dtb_gpa) = (GuestMap::RAM_BASE + ram).checked_sub(GUEST_DTB_BELOW_RAM_TOP) else {
        return Err(format!("{ram:#x} bytes of RAM leave no room for the DTB"));
    };
    let initrd_range = match initrd {
        Some(data) => {
            let start = dtb_gpa.checked_sub(data.len() as u64).map(|a| a & !0xfff).filter(|&a| a >= li.high);
            let Some(start) = start else {
                return Err(format!(
                    "the initrd ({} KiB) does not fit between the image (ends {:#x}) and the DTB at {dtb_gpa:#x}",
                    data.len() >> 10,
                    li.high
                ));
            };
            PhysMem::new(d).write_bytes(Gpa(start), data).map_err(|e| format!("loading the initrd: {e:?}"))?;
            Some((start, start + data.len() as u64))
        }
        None => None,
    };
    let cfg = GuestDtConfig { vcpus, ram_size: ram, bootargs: bootargs.to_string(), initrd: initrd_range };
    let dtb = fdt_gen::build(&cfg).map_err(|e| format!("guest DTB: {e:?}"))?;
    if li.high > dtb_gpa
        || dtb.len() as u64 > GUEST_DTB_BELOW_RAM_TOP
        || PhysMem::new(d).write_bytes(Gpa(dtb_gpa), &dtb).is_err()
    {
        return Err(format!("no room for the guest DTB below {ram:#x}"));
    }
    Ok(BootInfo { entry: li.entry, dtb: Gpa(dtb_gpa), dtb_len: dtb.len(), initrd: initrd_range })
}
