//! The gdb stub's line on a board whose PCI host bridge is a generic ECAM
//! one (QEMU virt on arm64 and riscv64, found in the DTB): the ports of a
//! virtio-serial device when QEMU has one, else QEMU's `pci-serial` (a
//! 16550 behind the bridge: virt has one console UART, so this is how a
//! second one gets in). The 16550's I/O BAR gets an address in the bridge's
//! I/O window, which the CPU reaches as memory; the virtio device's BARs
//! go into the 32-bit memory window. Naming no architecture: the boards
//! pass the windows their DTB gives.
//!
//! The 16550 is driven here rather than with `uart_16550` 0.3: that crate's
//! MMIO port uses plain (non-volatile) pointer accesses, which the optimiser
//! may merge or drop (its init's DLAB write was lost, sending a stray byte).

use alloc::boxed::Box;
use core::ptr::{read_volatile, write_volatile};

use virtio_drivers::transport::pci::bus::{Cam, MmioCam, PciRoot};

use crate::hal::IdentityHal;
use crate::pci::{probe, BarWindow, ProbeError};
use crate::sessions::{ByteUart, GdbLine};
use crate::GDB_PORT_PREFIX;

/// Red Hat / QEMU vendor id.
const VENDOR_REDHAT: u16 = 0x1b36;
/// QEMU's PCI 16550 (`pci-serial`).
const DEVICE_PCI_SERIAL: u16 = 0x0002;
/// PCI I/O address given to BAR0 (inside the bridge's I/O window; low
/// addresses are left for legacy decoders).
const BAR0_IO: u32 = 0x1000;

const DATA: u64 = 0;
const IER: u64 = 1;
const FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;

/// The gdb line on an ECAM bridge: the virtio-serial device or the PCI 16550.
pub type EcamGdbLine = GdbLine<PciUart>;

/// The PCI bridge's windows, as the board's DTB gives them (CPU addresses
/// and sizes).
#[derive(Clone, Copy, Debug)]
pub struct EcamWindows {
    /// The ECAM configuration space.
    pub ecam: (u64, u64),
    /// The I/O window.
    pub io: Option<(u64, u64)>,
    /// The 32-bit memory window where bus and CPU addresses agree.
    pub mem32: Option<(u64, u64)>,
}

impl EcamWindows {
    /// The windows of a generic ECAM host bridge from its DTB node: `ecam`
    /// (its `reg`) and the raw `ranges` property, whose entries are a
    /// 3-cell child (bus) address, a 2-cell parent (CPU) address and a
    /// 2-cell size. Space code 1 in the child's high cell is I/O; 2 is
    /// 32-bit memory, taken only where bus and CPU addresses agree (the
    /// device's BARs are programmed with CPU addresses).
    pub fn from_ranges(ecam: (u64, u64), ranges: &[u8]) -> Self {
        let window = |code: u64, identity: bool| {
            ranges.chunks_exact(28).find_map(|e| {
                let be = |i: usize| u32::from_be_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]) as u64;
                let space = (be(0) >> 24) & 3;
                let (bus, cpu) = ((be(4) << 32) | be(8), (be(12) << 32) | be(16));
                (space == code && (!identity || bus == cpu)).then(|| (cpu, (be(20) << 32) | be(24)))
            })
        };
        EcamWindows { ecam, io: window(1, false), mem32: window(2, true) }
    }
}

/// The virtio-serial device if QEMU has one, else the PCI 16550, else
/// nothing; says which.
///
/// # Safety
/// The windows must be the bridge's, mapped as device memory (or reached
/// with translation off), used by nothing else while the line lives.
pub unsafe fn probe_line(w: EcamWindows) -> Option<EcamGdbLine> {
    // SAFETY: the caller vouches for the ECAM window.
    let cam = unsafe { MmioCam::new(w.ecam.0 as *mut u8, Cam::Ecam) };
    let mut root = PciRoot::new(cam);
    let window = w.mem32.map(|(base, size)| BarWindow::new(base, size));
    match probe::<IdentityHal, _>(&mut root, 0, window, GDB_PORT_PREFIX) {
        Ok((dev, df)) => return Some(GdbLine::Virtio(Box::new(dev), df)),
        Err(ProbeError::Absent) => {}
        Err(e) => log::warn!("gdb line: the virtio-serial device did not come up: {e:?}"),
    }
    let Some(u) = w.io.and_then(|io| PciUart::probe(w.ecam, io)) else {
        log::info!("gdb line: none (no virtio-serial or pci-serial device)");
        return None;
    };
    log::info!("gdb line: pci-serial at {:02x}:{:02x}.{} io {:#x}", u.bdf.0, u.bdf.1, u.bdf.2, u.base);
    Some(GdbLine::Uart(u, "the PCI 16550"))
}

impl ByteUart for PciUart {
    fn poll_read(&mut self) -> Option<u8> {
        PciUart::poll_read(self)
    }

    fn write(&mut self, data: &[u8]) {
        PciUart::write(self, data)
    }
}

/// The gdb serial line.
pub struct PciUart {
    /// CPU address of the 16550's registers.
    pub base: u64,
    /// Bus/device/function of the device.
    pub bdf: (u8, u8, u8),
}

fn cfg_addr(ecam: u64, bus: u8, dev: u8, func: u8, off: u64) -> u64 {
    ecam + ((bus as u64) << 20) + ((dev as u64) << 15) + ((func as u64) << 12) + off
}

fn cfg_read32(addr: u64) -> u32 {
    // SAFETY: `addr` is inside the ECAM window from the DTB (see `probe_line`).
    unsafe { read_volatile(addr as *const u32) }
}

fn cfg_write32(addr: u64, v: u32) {
    // SAFETY: as in `cfg_read32`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

impl PciUart {
    /// Finds and brings up the first `pci-serial` on bus 0 of the ECAM at
    /// `ecam`, placing its BAR in the I/O window at CPU address `io_cpu`.
    pub fn probe(ecam: (u64, u64), io: (u64, u64)) -> Option<PciUart> {
        if io.1 <= BAR0_IO as u64 + 8 {
            return None;
        }
        // Bus 0 only: QEMU puts -device pci-serial there by default.
        for dev in 0..32u8 {
            let id = cfg_read32(cfg_addr(ecam.0, 0, dev, 0, 0));
            if id & 0xffff != VENDOR_REDHAT as u32 || (id >> 16) as u16 != DEVICE_PCI_SERIAL {
                continue;
            }
            // BAR0 is an I/O BAR (bit 0 set): assign it, then turn on I/O
            // decoding (command bit 0).
            let bar = cfg_addr(ecam.0, 0, dev, 0, 0x10);
            if cfg_read32(bar) & 1 == 0 {
                return None;
            }
            cfg_write32(bar, BAR0_IO);
            let cmd = cfg_addr(ecam.0, 0, dev, 0, 0x04);
            cfg_write32(cmd, (cfg_read32(cmd) & 0xffff) | 1);
            let u = PciUart { base: io.0 + BAR0_IO as u64, bdf: (0, dev, 0) };
            u.init();
            return Some(u);
        }
        None
    }

    fn rd(&self, reg: u64) -> u8 {
        // SAFETY: one of the 8 registers of the 16550 decoded at `base`
        // (inside the bridge's I/O window); only this driver uses it.
        unsafe { read_volatile((self.base + reg) as *const u8) }
    }

    fn wr(&self, reg: u64, v: u8) {
        // SAFETY: as in `rd`.
        unsafe { write_volatile((self.base + reg) as *mut u8, v) }
    }

    fn init(&self) {
        self.wr(IER, 0);
        // Divisor 1 (115200 baud; QEMU ignores the rate), then 8N1.
        self.wr(LCR, LCR_DLAB);
        self.wr(DATA, 1);
        self.wr(IER, 0);
        self.wr(LCR, LCR_8N1);
        // FIFOs on and cleared; DTR, RTS, OUT2.
        self.wr(FCR, 0xc7);
        self.wr(MCR, 0x0b);
    }

    /// Sends one byte (waits while the transmitter holding register is full).
    pub fn write_byte(&mut self, b: u8) {
        while self.rd(LSR) & LSR_THRE == 0 {
            core::hint::spin_loop();
        }
        self.wr(DATA, b);
    }

    /// Sends bytes.
    pub fn write(&mut self, data: &[u8]) {
        for &b in data {
            self.write_byte(b);
        }
    }

    /// Receives one byte if one has arrived.
    pub fn poll_read(&mut self) -> Option<u8> {
        (self.rd(LSR) & LSR_DR != 0).then(|| self.rd(DATA))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `ranges` entry: child (space code in the high cell, 64-bit bus
    /// address), parent (64-bit CPU address), 64-bit size, big-endian cells.
    fn entry(code: u32, bus: u64, cpu: u64, size: u64) -> [u8; 28] {
        let cells = [
            code << 24,
            (bus >> 32) as u32,
            bus as u32,
            (cpu >> 32) as u32,
            cpu as u32,
            (size >> 32) as u32,
            size as u32,
        ];
        let mut e = [0u8; 28];
        for (i, c) in cells.iter().enumerate() {
            e[4 * i..4 * i + 4].copy_from_slice(&c.to_be_bytes());
        }
        e
    }

    #[test]
    fn windows_come_from_the_bridges_ranges() {
        // QEMU virt's: I/O at bus 0, 32-bit memory identity-mapped, 64-bit
        // memory (code 3) ignored; a 32-bit window whose bus and CPU
        // addresses differ is skipped for the identity one after it.
        let mut ranges = alloc::vec::Vec::new();
        ranges.extend_from_slice(&entry(1, 0, 0x3eff_0000, 0x1_0000));
        ranges.extend_from_slice(&entry(2, 0x1000, 0x4000_0000, 0x100));
        ranges.extend_from_slice(&entry(2, 0x1000_0000, 0x1000_0000, 0x2eff_0000));
        ranges.extend_from_slice(&entry(3, 0x80_0000_0000, 0x80_0000_0000, 0x80_0000_0000));
        let w = EcamWindows::from_ranges((0x40_1000_0000, 0x1000_0000), &ranges);
        assert_eq!(w.ecam, (0x40_1000_0000, 0x1000_0000));
        assert_eq!(w.io, Some((0x3eff_0000, 0x1_0000)));
        assert_eq!(w.mem32, Some((0x1000_0000, 0x2eff_0000)));
        assert!(EcamWindows::from_ranges((0, 0), &[]).io.is_none());
    }
}
