//! The gdb stub's line on q35: a virtio-serial port (`-device
//! virtio-serial-pci` with a `virtserialport` named
//! [`GDB_PORT_NAME`]) when QEMU has one, else COM2. The virtio device is
//! found on PCI bus 0 through the 0xCF8/0xCFC configuration mechanism;
//! SeaBIOS has placed its BARs below 4 GiB, inside the identity map.

use alloc::boxed::Box;

use lantern_gdb::Transport;
use lantern_virtio_serial::hal::IdentityHal;
use lantern_virtio_serial::pci::{probe, ProbeError};
use lantern_virtio_serial::{VirtioSerial, GDB_PORT_NAME};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

/// PCI configuration mechanism #1: the address port...
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// ... and the data port.
const PCI_CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: the access is enabled.
const PCI_CONFIG_ENABLE: u32 = 1 << 31;
/// COM2's I/O base, the fallback line (COM1 is the console).
const COM2_BASE: u16 = 0x2f8;

/// Configuration space through I/O ports 0xCF8/0xCFC.
struct PortIoCam;

fn config_address(df: DeviceFunction, offset: u8) -> u32 {
    PCI_CONFIG_ENABLE
        | (df.bus as u32) << 16
        | (df.device as u32) << 11
        | (df.function as u32) << 8
        | (offset as u32 & 0xfc)
}

impl ConfigurationAccess for PortIoCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        // SAFETY: the configuration ports are the chipset's; only the boot
        // path (one CPU, before the scheduler loop) uses them.
        unsafe {
            x86::io::outl(PCI_CONFIG_ADDRESS, config_address(df, offset));
            x86::io::inl(PCI_CONFIG_DATA)
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        // SAFETY: as in `read_word`.
        unsafe {
            x86::io::outl(PCI_CONFIG_ADDRESS, config_address(df, offset));
            x86::io::outl(PCI_CONFIG_DATA, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortIoCam
    }
}

/// The gdb stub's line.
pub enum GdbLine {
    /// The virtio-serial port: lossless, and it sees gdb go away.
    Virtio(Box<VirtioSerial<IdentityHal, PciTransport>>),
    /// COM2, a 16550: one trap per byte, and no hang-up.
    Com2(uart_16550::SerialPort),
}

impl GdbLine {
    /// The virtio-serial port if QEMU has the device, else COM2; says which.
    pub fn probe() -> GdbLine {
        let mut root = PciRoot::new(PortIoCam);
        match probe::<IdentityHal, _>(&mut root, 0, None, GDB_PORT_NAME) {
            Ok((dev, df)) => {
                log::info!(
                    "gdb line: virtio-serial at {df}, port {:?} '{GDB_PORT_NAME}', host side {}",
                    dev.port(),
                    if dev.host_open() { "open" } else { "closed" }
                );
                return GdbLine::Virtio(Box::new(dev));
            }
            Err(ProbeError::Absent) => log::info!("gdb line: COM2 (no virtio-serial device)"),
            Err(e) => log::warn!("gdb line: COM2 (the virtio-serial device did not come up: {e:?})"),
        }
        // SAFETY: COM2's ports on q35; only the gdb stub touches them.
        let mut com2 = unsafe { uart_16550::SerialPort::new(COM2_BASE) };
        com2.init();
        GdbLine::Com2(com2)
    }

    /// The line's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            GdbLine::Virtio(_) => "the virtio-serial port",
            GdbLine::Com2(_) => "COM2",
        }
    }
}

impl Transport for GdbLine {
    fn read_byte(&mut self) -> Option<u8> {
        match self {
            GdbLine::Virtio(v) => v.read_byte(),
            GdbLine::Com2(u) => u.try_receive().ok(),
        }
    }

    fn write_all(&mut self, data: &[u8]) {
        match self {
            GdbLine::Virtio(v) => v.write(data),
            // send_raw: `send` would rewrite 0x08/0x7F, corrupting packets.
            GdbLine::Com2(u) => data.iter().for_each(|&b| u.send_raw(b)),
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
            GdbLine::Com2(_) => false,
        }
    }
}
