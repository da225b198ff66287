//! The gdb stub's line on virt: a virtio-serial port (`-device
//! virtio-serial-pci` with a `virtserialport` named [`GDB_PORT_NAME`]) when
//! QEMU has one, else the PCI 16550 (`-device pci-serial`). Both sit behind
//! the PCIe host bridge, so one ECAM probe serves both and the virtio device
//! uses the same virtio-pci transport as on q35; its BARs, which nothing
//! assigned, go into the bridge's 32-bit memory window (mapped Device by
//! the boot identity map, unlike the 64-bit window above 512 GiB).

use alloc::boxed::Box;

use lantern_gdb::Transport;
use lantern_virtio_serial::hal::IdentityHal;
use lantern_virtio_serial::pci::{probe, BarWindow, ProbeError};
use lantern_virtio_serial::{VirtioSerial, GDB_PORT_NAME};
use virtio_drivers::transport::pci::bus::{Cam, MmioCam, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

use super::dt::BoardInfo;
use super::pci_uart::PciUart;

/// The gdb stub's line, once probed (the board's loop takes it from here).
pub static GDB_LINE: spin::Mutex<Option<GdbLine>> = spin::Mutex::new(None);

/// The gdb stub's line.
pub enum GdbLine {
    /// The virtio-serial port: lossless, and it sees gdb go away.
    Virtio(Box<VirtioSerial<IdentityHal, PciTransport>>),
    /// The PCI 16550: one trap per byte, and no hang-up.
    Uart(PciUart),
}

impl GdbLine {
    /// The virtio-serial port if QEMU has the device, else the PCI 16550,
    /// else nothing; says which.
    pub fn probe(info: &BoardInfo) -> Option<GdbLine> {
        let ecam = info.ecam?;
        // SAFETY: the ECAM window comes from the DTB, is mapped Device, and
        // only the boot path (before the scheduler loop) uses it.
        let cam = unsafe { MmioCam::new(ecam.0 as *mut u8, Cam::Ecam) };
        let mut root = PciRoot::new(cam);
        let window = info.pci_mem32.map(|(base, size)| BarWindow::new(base, size));
        match probe::<IdentityHal, _>(&mut root, 0, window, GDB_PORT_NAME) {
            Ok((dev, df)) => {
                log::info!(
                    "gdb line: virtio-serial at {df}, port {:?} '{GDB_PORT_NAME}', host side {}",
                    dev.port(),
                    if dev.host_open() { "open" } else { "closed" }
                );
                return Some(GdbLine::Virtio(Box::new(dev)));
            }
            Err(ProbeError::Absent) => {}
            Err(e) => log::warn!("gdb line: the virtio-serial device did not come up: {e:?}"),
        }
        let u = PciUart::probe(ecam, info.pci_io?)?;
        log::info!("gdb line: pci-serial at {:02x}:{:02x}.{} io {:#x}", u.bdf.0, u.bdf.1, u.bdf.2, u.base);
        Some(GdbLine::Uart(u))
    }

    /// The line's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            GdbLine::Virtio(_) => "the virtio-serial port",
            GdbLine::Uart(_) => "the PCI 16550",
        }
    }
}

impl Transport for GdbLine {
    fn read_byte(&mut self) -> Option<u8> {
        match self {
            GdbLine::Virtio(v) => v.read_byte(),
            GdbLine::Uart(u) => u.poll_read(),
        }
    }

    fn write_all(&mut self, data: &[u8]) {
        match self {
            GdbLine::Virtio(v) => v.write(data),
            GdbLine::Uart(u) => u.write(data),
        }
    }

    fn flush(&mut self) {
        if let GdbLine::Virtio(v) = self {
            v.flush();
        }
    }

    fn take_hangup(&mut self) -> bool {
        match self {
            GdbLine::Virtio(v) => v.take_hangup(),
            GdbLine::Uart(_) => false,
        }
    }
}
