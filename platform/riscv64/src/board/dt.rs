//! Reads what the board needs from QEMU's device tree (with the `fdt`
//! crate): RAM, the 16550, the finisher, the timebase, PCIe ECAM and
//! /chosen.

use fdt::Fdt;
use lantern_virtio_serial::ecam_line::EcamWindows;

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

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
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
    let pci = fdt.find_compatible(&["pci-host-ecam-generic"]);
    let ecam = pci
        .and_then(|n| n.reg())
        .and_then(|mut r| r.next())
        .map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64));
    let ranges = pci.and_then(|n| n.property("ranges")).map_or(&[][..], |p| p.value);
    let windows = ecam.map(|e| EcamWindows::from_ranges(e, ranges));
    let (pci_io, pci_mem32) = (windows.and_then(|w| w.io), windows.and_then(|w| w.mem32));
    let bootargs = fdt.chosen().bootargs().unwrap_or("");
    let mut modules = None;
    let mut log_level = log::LevelFilter::Info;
    for tok in bootargs.split_ascii_whitespace() {
        if let Some(v) = tok.strip_prefix("lantern.modules=") {
            let mut it = v.split(',');
            if let (Some(a), Some(s)) = (it.next().and_then(parse_num), it.next().and_then(parse_num)) {
                modules = Some((a, s));
            }
        } else if let Some(v) = tok.strip_prefix("lantern.log=") {
            log_level = match v {
                "trace" => log::LevelFilter::Trace,
                "debug" => log::LevelFilter::Debug,
                "warn" => log::LevelFilter::Warn,
                "error" => log::LevelFilter::Error,
                _ => log::LevelFilter::Info,
            };
        }
    }
    let dtb = (addr, fdt.total_size() as u64);
    Some(BoardInfo { ram, uart, finisher, timebase_hz, ecam, pci_io, pci_mem32, bootargs, modules, log_level, dtb })
}
