//! The arm64 guest boot protocol: an image (ELF, or a Linux arm64 `Image`
//! placed per the arm64 boot protocol) loaded into guest RAM, the generated
//! guest DTB at the top of RAM, and the boot vCPU entered with `x0` = the
//! DTB's address ([`VcpuInitContext::PowerOn`](lantern_common::arch::VcpuInitContext)).

use alloc::format;
use alloc::string::{String, ToString};

use lantern_common::addr::Gpa;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::loader;

use crate::fdt_gen::{self, GuestDtConfig};
use crate::guest::GuestMap;
use lantern_common::addr::PAGE_SIZE;

/// Guest page size, as an address quantity.
const PAGE: u64 = PAGE_SIZE as u64;

/// `e_machine` of AArch64 ELF files.
const EM_AARCH64: u16 = 183;
/// arm64 Image header magic ("ARM\x64") at offset 56.
const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Offset of the magic in the Image header.
const IMAGE_MAGIC_OFFSET: usize = 56;
/// Offsets of `text_offset` and `image_size` in the Image header.
const IMAGE_TEXT_OFFSET: usize = 8;
const IMAGE_SIZE: usize = 16;
/// An Image is placed 2 MiB-aligned (+ text_offset) above the start of RAM.
const IMAGE_ALIGN: u64 = 2 << 20;
/// Room reserved at the top of guest RAM for the guest DTB.
pub const DTB_RESERVE: u64 = 2 << 20;

/// Where a booted guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Entry IPA.
    pub entry: u64,
    /// IPA of the guest DTB (the boot vCPU's `x0`).
    pub dtb: Gpa,
    /// Size of the DTB.
    pub dtb_len: usize,
    /// Where the initrd went, `[start, end)`.
    pub initrd: Option<(u64, u64)>,
}

/// Loads `image` into `d` (whose RAM is `ram` bytes from
/// [`GuestMap::RAM_BASE`]), places `initrd` (if any) just below the DTB, and
/// builds and places the DTB for `vcpus` vCPUs and `bootargs`, naming the
/// initrd in `/chosen`.
pub fn load(
    d: &Domain,
    image: &[u8],
    initrd: Option<&[u8]>,
    ram: u64,
    vcpus: u32,
    bootargs: &str,
) -> Result<BootInfo, String> {
    let (entry, high) = load_image(d, image, ram)?;
    let dtb_ipa = GuestMap::RAM_BASE + ram - DTB_RESERVE;
    let initrd_range = match initrd {
        Some(data) => {
            // Page-aligned below the DTB; it must not reach into the image
            // (the kernel's own memory, bss included).
            let start = dtb_ipa.checked_sub(data.len() as u64).map(|a| a & !(PAGE - 1)).filter(|&a| a >= high);
            let Some(start) = start else {
                return Err(format!(
                    "the initrd ({} KiB) does not fit between the image (ends {high:#x}) and the DTB at {dtb_ipa:#x}: give the domain more memory",
                    data.len() >> 10
                ));
            };
            PhysMem::new(d).write_bytes(Gpa(start), data).map_err(|e| format!("loading the initrd: {e:?}"))?;
            Some((start, start + data.len() as u64))
        }
        None => None,
    };
    let cfg = GuestDtConfig { vcpus, ram_size: ram, bootargs: bootargs.to_string(), initrd: initrd_range };
    let dtb = fdt_gen::build(&cfg).map_err(|e| format!("guest DTB: {e:?}"))?;
    if high > dtb_ipa || dtb.len() as u64 > DTB_RESERVE || PhysMem::new(d).write_bytes(Gpa(dtb_ipa), &dtb).is_err() {
        return Err(format!("no room for the guest DTB below {ram:#x}"));
    }
    Ok(BootInfo { entry, dtb: Gpa(dtb_ipa), dtb_len: dtb.len(), initrd: initrd_range })
}

/// Loads `image` (ELF or arm64 Image) into `d`; returns the entry IPA and the
/// end of the loaded range.
fn load_image(d: &Domain, image: &[u8], ram: u64) -> Result<(u64, u64), String> {
    if image.starts_with(b"\x7fELF") {
        // xmas-elf reads headers in place and insists on their natural
        // alignment; a cpio member is only 4-byte aligned, so copy it to an
        // 8-byte aligned buffer first.
        let mut aligned = alloc::vec![0u64; image.len().div_ceil(8)];
        let bytes = &mut zerocopy::IntoBytes::as_mut_bytes(aligned.as_mut_slice())[..image.len()];
        bytes.copy_from_slice(image);
        let li = loader::load_elf(d, bytes).map_err(|e| format!("{e:?}"))?;
        if li.machine != EM_AARCH64 || !li.elf64 {
            return Err(format!("not an AArch64 ELF64 (e_machine {})", li.machine));
        }
        return Ok((li.entry, li.high));
    }
    let rd32 = |o: usize| image.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let rd64 = |o: usize| image.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if rd32(IMAGE_MAGIC_OFFSET) == Some(IMAGE_MAGIC) {
        let text_offset = rd64(IMAGE_TEXT_OFFSET).unwrap_or(0);
        let image_size = rd64(IMAGE_SIZE).unwrap_or(0).max(image.len() as u64);
        let load = GuestMap::RAM_BASE + IMAGE_ALIGN + text_offset;
        if load.saturating_add(image_size).saturating_add(DTB_RESERVE) > GuestMap::RAM_BASE + ram {
            return Err(String::from("Image does not fit in guest RAM"));
        }
        PhysMem::new(d).write_bytes(Gpa(load), image).map_err(|e| format!("write: {e:?}"))?;
        return Ok((load, load + image_size));
    }
    Err(String::from("neither an ELF file nor an arm64 Image"))
}
