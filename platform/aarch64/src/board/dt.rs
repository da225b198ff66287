//! Reads what the board needs from QEMU's device tree (with the `fdt` crate):
//! RAM, the PL011, the GICv3 frames, the timer, PCIe ECAM and /chosen.

use fdt::Fdt;
use lantern_board::dt::LanternArgs;

/// What the board found in the DTB.
pub struct BoardInfo {
    /// RAM base and size.
    pub ram: (u64, u64),
    /// PL011 base.
    pub uart: u64,
    /// GIC distributor base.
    pub gicd: u64,
    /// GIC redistributor region base.
    pub gicr: u64,
    /// PCIe ECAM base and size.
    pub ecam: Option<(u64, u64)>,
    /// PCI I/O window: CPU address and size.
    pub pci_io: Option<(u64, u64)>,
    /// The 32-bit PCI memory window, where bus and CPU addresses agree:
    /// address and size (BARs the board assigns go there).
    pub pci_mem32: Option<(u64, u64)>,
    /// /chosen/bootargs.
    pub bootargs: &'static str,
    /// The guest-module archive (`lantern.modules=ADDR,SIZE` in bootargs).
    pub modules: Option<(u64, u64)>,
    /// Whether semihosting is enabled (`lantern.semihosting` in bootargs):
    /// then power-off also reports the exit status to QEMU.
    pub semihosting: bool,
    /// Log level (`lantern.log=debug|info|warn`).
    pub log_level: log::LevelFilter,
}

/// Parses the DTB at `addr`.
///
/// # Safety
/// `addr` must point at a valid flattened device tree that stays in place and
/// unmodified for the rest of the run.
pub unsafe fn parse(addr: u64) -> BoardInfo {
    // SAFETY: the caller promises a valid, permanent DTB.
    let fdt: Fdt<'static> = match unsafe { Fdt::from_ptr(addr as *const u8) } {
        Ok(f) => f,
        Err(_) => super::power::off_raw(4),
    };
    let ram = fdt
        .memory()
        .regions()
        .next()
        .map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64))
        .unwrap_or((0x4000_0000, 0x800_0000));
    let reg0 = |compat: &[&str]| -> Option<u64> {
        fdt.find_compatible(compat).and_then(|n| n.reg()).and_then(|mut r| r.next()).map(|r| r.starting_address as u64)
    };
    let uart = reg0(&["arm,pl011"]).unwrap_or(0x0900_0000);
    let (gicd, gicr) = fdt
        .find_compatible(&["arm,gic-v3"])
        .and_then(|n| n.reg())
        .map(|mut r| {
            let d = r.next().map(|x| x.starting_address as u64);
            let rd = r.next().map(|x| x.starting_address as u64);
            (d.unwrap_or(0x0800_0000), rd.unwrap_or(0x080a_0000))
        })
        .unwrap_or((0x0800_0000, 0x080a_0000));
    let windows = lantern_board::dt::pci_windows(&fdt);
    let (ecam, pci_io, pci_mem32) =
        (windows.map(|w| w.ecam), windows.and_then(|w| w.io), windows.and_then(|w| w.mem32));
    let bootargs = fdt.chosen().bootargs().unwrap_or("");
    let LanternArgs { modules, log_level } = lantern_board::dt::lantern_args(bootargs);
    let semihosting = bootargs.split_ascii_whitespace().any(|t| t == "lantern.semihosting");
    BoardInfo { ram, uart, gicd, gicr, ecam, pci_io, pci_mem32, bootargs, modules, semihosting, log_level }
}
