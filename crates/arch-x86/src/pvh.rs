//! The PVH boot protocol (`arch-x86/hvm/start_info.h`), both ways: the
//! `hvm_start_info` mirrors Lantern reads when QEMU boots it, and the ones it
//! writes for a guest it boots — the start info with command line and memory
//! map at a guest-physical address, handed over in `ebx` by
//! [`VcpuInitContext::PowerOn`](lantern_common::arch::VcpuInitContext).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use lantern_common::addr::{Gpa, PAGE_SIZE};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
pub use xen_abi::arch_x86::{
    HvmMemmapTableEntry, HvmModlistEntry, HvmStartInfo, MEMMAP_TYPE_RAM, MEMMAP_TYPE_RESERVED,
    START_INFO_VERSION_MEMMAP, START_MAGIC,
};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::e820;
use xen_abi::public::E820Entry;

/// Guest page size, as an address quantity.
const PAGE: u64 = PAGE_SIZE as u64;
/// Alignment of each table after the start info (the command line, the
/// memory map, the module list).
const TABLE_ALIGN: u64 = 16;

/// What a PVH guest boots with besides its image.
#[derive(Clone, Copy, Debug)]
pub struct BootInputs<'a> {
    /// The first byte above the loaded image (its last segment's end, bss
    /// included): everything below is the kernel's.
    pub image_end: Gpa,
    /// The domain's RAM, from guest-physical 0.
    pub mem_bytes: u64,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// The toolstack's special pages (e.g. the console ring) and the ACPI
    /// tables' pages, listed reserved in the memory map so the guest never
    /// hands them out as RAM.
    pub reserved: &'a [Gpa],
    /// The ACPI root pointer (`rsdp_paddr`; 0: none).
    pub rsdp: Gpa,
    /// The initial ramdisk, handed over as the module list's one module.
    pub initrd: Option<&'a [u8]>,
}

/// Where [`write_start_info`] put the guest's boot data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The `hvm_start_info`, which the boot vCPU gets in `ebx`.
    pub start_info: Gpa,
    /// The initrd, `[start, end)`.
    pub initrd: Option<(Gpa, Gpa)>,
}

/// Lays out and writes a guest's boot data where Xen's toolstack puts a
/// PVH guest's: the initrd (if any) page-aligned right above the image,
/// then, on the next page, the `hvm_start_info` followed by its command
/// line, its memory map (all of `mem_bytes` RAM from 0, then each
/// `reserved` page as reserved) and its module list (the initrd, without a
/// command line). All of it must end below the end of RAM: an error says
/// what does not fit.
pub fn write_start_info(d: &Domain, boot: &BootInputs<'_>) -> Result<Placed, String> {
    let image_end = boot.image_end.0.next_multiple_of(PAGE);
    let initrd = boot.initrd.map(|data| (Gpa(image_end), Gpa(image_end + data.len() as u64)));
    let at = Gpa(initrd.map_or(image_end, |(_, end)| end.0.next_multiple_of(PAGE)));
    let layout = Layout::new(at, boot.cmdline.len(), boot.reserved.len(), initrd.is_some());
    if layout.end > boot.mem_bytes {
        let what = match boot.initrd {
            Some(data) => format!("the initrd ({} KiB) and the start info do", data.len().div_ceil(1024)),
            None => String::from("the start info does"),
        };
        return Err(format!(
            "{what} not fit between the image (ends {:#x}) and the end of RAM ({:#x}): give the domain more memory",
            boot.image_end.0, boot.mem_bytes
        ));
    }
    let mem = PhysMem::new(d);
    if let (Some(data), Some((start, _))) = (boot.initrd, initrd) {
        mem.write_bytes(start, data).map_err(|e| format!("loading the initrd: {e:?}"))?;
    }
    write_tables(d, &layout, boot, initrd).map_err(|e| format!("writing the start info: {e:?}"))?;
    Ok(Placed { start_info: at, initrd })
}

/// Where the start info's tables go, from the start info at `at`.
struct Layout {
    at: Gpa,
    cmdline: Gpa,
    memmap: Gpa,
    modlist: Gpa,
    /// The first byte above the last table.
    end: u64,
}

impl Layout {
    fn new(at: Gpa, cmdline_len: usize, reserved: usize, module: bool) -> Layout {
        let start_info_size = core::mem::size_of::<HvmStartInfo>() as u64;
        let cmdline = at.0 + start_info_size.next_multiple_of(TABLE_ALIGN);
        let memmap = cmdline + (cmdline_len as u64 + 1).next_multiple_of(TABLE_ALIGN);
        let memmap_size = (1 + reserved as u64) * core::mem::size_of::<HvmMemmapTableEntry>() as u64;
        let modlist = memmap + memmap_size.next_multiple_of(TABLE_ALIGN);
        let end = modlist + u64::from(module) * core::mem::size_of::<HvmModlistEntry>() as u64;
        Layout { at, cmdline: Gpa(cmdline), memmap: Gpa(memmap), modlist: Gpa(modlist), end }
    }
}

/// Writes the start info and its tables per `layout`, and gives the domain
/// the same memory map for `XENMEM_memory_map`.
fn write_tables(d: &Domain, layout: &Layout, boot: &BootInputs<'_>, initrd: Option<(Gpa, Gpa)>) -> XenResult<()> {
    let info = HvmStartInfo {
        magic: START_MAGIC,
        version: START_INFO_VERSION_MEMMAP,
        nr_modules: u32::from(initrd.is_some()),
        modlist_paddr: if initrd.is_some() { layout.modlist.0 } else { 0 },
        cmdline_paddr: layout.cmdline.0,
        memmap_paddr: layout.memmap.0,
        memmap_entries: 1 + boot.reserved.len() as u32,
        rsdp_paddr: boot.rsdp.0,
        ..HvmStartInfo::default()
    };
    let ram = HvmMemmapTableEntry { addr: 0, size: boot.mem_bytes, kind: MEMMAP_TYPE_RAM, reserved: 0 };
    let mut line: Vec<u8> = boot.cmdline.as_bytes().to_vec();
    line.push(0);
    // XENMEM_memory_map answers the guest with the same map.
    d.set_memory_map(alloc::vec![E820Entry::new(ram.addr, ram.size, e820::RAM)]);
    let mem = PhysMem::new(d);
    mem.write_obj(layout.at, &info)?;
    mem.write_bytes(layout.cmdline, &line)?;
    mem.write_obj(layout.memmap, &ram)?;
    let entry_size = core::mem::size_of::<HvmMemmapTableEntry>() as u64;
    for (i, r) in boot.reserved.iter().enumerate() {
        let e = HvmMemmapTableEntry { addr: r.0, size: PAGE, kind: MEMMAP_TYPE_RESERVED, reserved: 0 };
        mem.write_obj(layout.memmap.checked_add((i as u64 + 1) * entry_size).ok_or(Errno::EFAULT)?, &e)?;
    }
    if let Some((start, end)) = initrd {
        let module = HvmModlistEntry { paddr: start.0, size: end.0 - start.0, cmdline_paddr: 0, reserved: 0 };
        mem.write_obj(layout.modlist, &module)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use lantern_testkit::TestDomain;

    use super::*;

    /// RAM pages of the test domains: 256 KiB.
    const RAM_PAGES: u64 = 64;
    const MEM: u64 = RAM_PAGES * PAGE;
    /// A console-ring-like special page above RAM.
    const SPECIAL: Gpa = Gpa(0xfeff_c000);

    fn domain() -> alloc::sync::Arc<Domain> {
        TestDomain::new(&crate::layout::X86_64).ram_pages(RAM_PAGES).build()
    }

    fn inputs<'a>(image_end: u64, cmdline: &'a str, initrd: Option<&'a [u8]>) -> BootInputs<'a> {
        BootInputs { image_end: Gpa(image_end), mem_bytes: MEM, cmdline, reserved: &[SPECIAL], rsdp: Gpa(0), initrd }
    }

    fn read_cstr(d: &Domain, at: u64) -> String {
        let mut buf = [0u8; 64];
        PhysMem::new(d).read_bytes(Gpa(at), &mut buf).unwrap();
        let n = buf.iter().position(|&b| b == 0).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn without_an_initrd_the_start_info_follows_the_image_with_no_modules() {
        let d = domain();
        let placed = write_start_info(&d, &inputs(0x1_0123, "console=hvc0", None)).unwrap();
        assert_eq!(placed, Placed { start_info: Gpa(0x1_1000), initrd: None });
        let mem = PhysMem::new(&d);
        let si: HvmStartInfo = mem.read_obj(placed.start_info).unwrap();
        assert_eq!((si.magic, si.version), (START_MAGIC, START_INFO_VERSION_MEMMAP));
        assert_eq!((si.nr_modules, si.modlist_paddr), (0, 0));
        assert_eq!(read_cstr(&d, si.cmdline_paddr), "console=hvc0");
        assert_eq!(si.memmap_entries, 2);
        let ram: HvmMemmapTableEntry = mem.read_obj(Gpa(si.memmap_paddr)).unwrap();
        assert_eq!((ram.addr, ram.size, ram.kind), (0, MEM, MEMMAP_TYPE_RAM));
        let special: HvmMemmapTableEntry = mem.read_obj(Gpa(si.memmap_paddr + 24)).unwrap();
        assert_eq!((special.addr, special.size, special.kind), (SPECIAL.0, PAGE, MEMMAP_TYPE_RESERVED));
        assert_eq!(d.memory_map(), [E820Entry::new(0, MEM, e820::RAM)]);
    }

    #[test]
    fn the_initrd_is_the_one_module_page_aligned_above_the_image_and_below_the_start_info() {
        let d = domain();
        let initrd: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let placed = write_start_info(&d, &inputs(0x2_0400, "root=/dev/ram0 quiet", Some(&initrd))).unwrap();
        // The initrd on the page above the image; the start info on the
        // page above the initrd.
        assert_eq!(placed.initrd, Some((Gpa(0x2_1000), Gpa(0x2_1000 + 5000))));
        assert_eq!(placed.start_info, Gpa(0x2_3000));
        let mem = PhysMem::new(&d);
        let mut loaded = alloc::vec![0u8; initrd.len()];
        mem.read_bytes(Gpa(0x2_1000), &mut loaded).unwrap();
        assert_eq!(loaded, initrd);
        let si: HvmStartInfo = mem.read_obj(placed.start_info).unwrap();
        assert_eq!(si.nr_modules, 1);
        let module: HvmModlistEntry = mem.read_obj(Gpa(si.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size, module.cmdline_paddr), (0x2_1000, 5000, 0));
        // The tables follow one another inside RAM without overlapping.
        assert_eq!(read_cstr(&d, si.cmdline_paddr), "root=/dev/ram0 quiet");
        assert!(si.cmdline_paddr >= placed.start_info.0 + core::mem::size_of::<HvmStartInfo>() as u64);
        assert!(si.memmap_paddr > si.cmdline_paddr + "root=/dev/ram0 quiet".len() as u64);
        assert!(si.modlist_paddr >= si.memmap_paddr + 2 * 24);
        assert!(si.modlist_paddr + 32 <= MEM);
        let ram: HvmMemmapTableEntry = mem.read_obj(Gpa(si.memmap_paddr)).unwrap();
        assert_eq!((ram.size, ram.kind), (MEM, MEMMAP_TYPE_RAM));
    }

    #[test]
    fn an_initrd_too_big_for_the_ram_above_the_image_is_an_error() {
        let d = domain();
        // It fits, with its start info, in what is left...
        let left = MEM - 0x1_0000 - PAGE;
        let fits = alloc::vec![1u8; left as usize];
        assert!(write_start_info(&d, &inputs(0x1_0000, "", Some(&fits))).is_ok());
        // ...and one byte more pushes the start info past the end of RAM.
        let big = alloc::vec![1u8; left as usize + 1];
        let e = write_start_info(&d, &inputs(0x1_0000, "", Some(&big))).unwrap_err();
        assert!(e.starts_with("the initrd (") && e.contains("give the domain more memory"), "{e}");
        let e = write_start_info(&d, &inputs(MEM, "", None)).unwrap_err();
        assert!(e.starts_with("the start info does not fit"), "{e}");
    }
}
