//! Reads what the board needs from QEMU's device tree (with the `fdt`
//! crate): RAM, the 16550, the finisher, the timebase, PCIe ECAM and
//! /chosen.

use fdt::Fdt;
use lantern_board::dt::LanternArgs;

/// What the board found in the DTB.
pub struct BoardInfo {
    /// RAM base and size.
    pub ram: (u64, u64),
    /// The 16550 console.
    pub uart: u64,
    /// The `sifive_test` finisher.
    pub finisher: u64,
    /// `time`'s rate (`/cpus/timebase-frequency`).
    pub timebase_hz: u64,
    /// PCIe ECAM base and size.
    pub ecam: Option<(u64, u64)>,
    /// PCI I/O window: CPU address and size.
    pub pci_io: Option<(u64, u64)>,
    /// The 32-bit PCI memory window where bus and CPU addresses agree.
    pub pci_mem32: Option<(u64, u64)>,
    /// /chosen/bootargs.
    pub bootargs: &'static str,
    /// The guest-module archive (`lantern.modules=ADDR,SIZE` in bootargs).
    pub modules: Option<(u64, u64)>,
    /// Log level (`lantern.log=debug|info|warn`).
    pub log_level: log::LevelFilter,
    /// The DTB's own extent (the heap stays clear of it).
    pub dtb: (u64, u64),
}

/// Parses the DTB at `addr`; `None` if it is not one.
///
/// # Safety
/// `addr` must point at a valid flattened device tree that stays in place and
/// unmodified for the rest of the run.
pub unsafe fn parse(addr: u64) -> Option<BoardInfo> {
    // SAFETY: the caller promises a valid, permanent DTB.
    let fdt: Fdt<'static> = unsafe { Fdt::from_ptr(addr as *const u8) }.ok()?;
    let ram = fdt
        .memory()
        .regions()
        .next()
        .map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64))
        .unwrap_or((0x8000_0000, 0x800_0000));
    let reg0 = |compat: &[&str]| -> Option<u64> {
        fdt.find_compatible(compat).and_then(|n| n.reg()).and_then(|mut r| r.next()).map(|r| r.starting_address as u64)
    };
    let uart = reg0(&["ns16550a", "ns16550"]).unwrap_or(0x1000_0000);
    let finisher = reg0(&["sifive,test1", "sifive,test0"]).unwrap_or(0x10_0000);
    let timebase_hz = fdt
        .find_node("/cpus")
        .and_then(|n| n.property("timebase-frequency"))
        .and_then(|p| p.as_usize())
        .map_or(10_000_000, |v| v as u64);
    let windows = lantern_board::dt::pci_windows(&fdt);
    let (ecam, pci_io, pci_mem32) =
        (windows.map(|w| w.ecam), windows.and_then(|w| w.io), windows.and_then(|w| w.mem32));
    let bootargs = fdt.chosen().bootargs().unwrap_or("");
    let LanternArgs { modules, log_level } = lantern_board::dt::lantern_args(bootargs);
    let dtb = (addr, fdt.total_size() as u64);
    Some(BoardInfo { ram, uart, finisher, timebase_hz, ecam, pci_io, pci_mem32, bootargs, modules, log_level, dtb })
}
