//! The gdb stub's lines on virt: the ports of a virtio-serial device
//! (`-device virtio-serial-pci` with `virtserialport`s named
//! `org.lantern.gdb.0` for the whole system and `org.lantern.gdb.dN` for
//! domain N's own session) when QEMU has one, else the PCI 16550 (`-device
//! pci-serial`; the whole system only). Both sit behind the PCIe host
//! bridge, so one ECAM probe serves both and the virtio device uses the same
//! virtio-pci transport as on q35; its BARs, which nothing assigned, go into
//! the bridge's 32-bit memory window (mapped Device by the boot identity
//! map, unlike the 64-bit window above 512 GiB).

use alloc::boxed::Box;

use lantern_virtio_serial::hal::IdentityHal;
use lantern_virtio_serial::pci::{probe, BarWindow, ProbeError};
use lantern_virtio_serial::sessions::{self, ByteUart};
use lantern_virtio_serial::GDB_PORT_PREFIX;
use virtio_drivers::transport::pci::bus::{Cam, MmioCam, PciRoot};

use super::dt::BoardInfo;
use super::pci_uart::PciUart;

/// The gdb stub's line, once probed (the board's loop takes it from here
/// into its [`GdbSessions`]).
pub static GDB_LINE: spin::Mutex<Option<GdbLine>> = spin::Mutex::new(None);

/// The gdb stub's line: the virtio-serial device or the PCI 16550.
pub type GdbLine = sessions::GdbLine<PciUart>;
/// The sessions on it (shared with q35: `lantern_virtio_serial::sessions`).
pub type GdbSessions = sessions::GdbSessions<PciUart>;

impl ByteUart for PciUart {
    fn poll_read(&mut self) -> Option<u8> {
        PciUart::poll_read(self)
    }

    fn write(&mut self, data: &[u8]) {
        PciUart::write(self, data)
    }
}

/// The virtio-serial device if QEMU has one, else the PCI 16550, else
/// nothing; says which.
pub fn probe_line(info: &BoardInfo) -> Option<GdbLine> {
    let ecam = info.ecam?;
    // SAFETY: the ECAM window comes from the DTB, is mapped Device, and
    // only the boot path (before the scheduler loop) uses it.
    let cam = unsafe { MmioCam::new(ecam.0 as *mut u8, Cam::Ecam) };
    let mut root = PciRoot::new(cam);
    let window = info.pci_mem32.map(|(base, size)| BarWindow::new(base, size));
    match probe::<IdentityHal, _>(&mut root, 0, window, GDB_PORT_PREFIX) {
        Ok((dev, df)) => return Some(GdbLine::Virtio(Box::new(dev), df)),
        Err(ProbeError::Absent) => {}
        Err(e) => log::warn!("gdb line: the virtio-serial device did not come up: {e:?}"),
    }
    let u = PciUart::probe(ecam, info.pci_io?)?;
    log::info!("gdb line: pci-serial at {:02x}:{:02x}.{} io {:#x}", u.bdf.0, u.bdf.1, u.bdf.2, u.base);
    Some(GdbLine::Uart(u, "the PCI 16550"))
}
