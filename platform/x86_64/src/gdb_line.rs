//! The gdb stub's lines on q35: the ports of a virtio-serial device
//! (`-device virtio-serial-pci` with `virtserialport`s named
//! `org.lantern.gdb.0` for the whole system and `org.lantern.gdb.dN` for
//! domain N's own session) when QEMU has one, else COM2 (the whole system
//! only) when there is one, else none. The virtio device is found on PCI bus 0 through the 0xCF8/0xCFC
//! configuration mechanism; SeaBIOS has placed its BARs below 4 GiB, inside
//! the identity map.

use alloc::boxed::Box;

use lantern_virtio_serial::hal::IdentityHal;
use lantern_virtio_serial::pci::{probe, ProbeError};
use lantern_virtio_serial::sessions::{self, ByteUart};
use lantern_virtio_serial::GDB_PORT_PREFIX;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};

/// PCI configuration mechanism #1: the address port...
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
/// ... and the data port.
const PCI_CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: the access is enabled.
const PCI_CONFIG_ENABLE: u32 = 1 << 31;
/// COM2's I/O base, the fallback line (COM1 is the console).
const COM2_BASE: u16 = 0x2f8;
/// The 16550's scratch register (offset 7): it keeps what is written.
const UART_SCRATCH: u16 = 7;

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

/// COM2, a 16550 (COM1 is the console): the fallback line.
pub struct Com2(uart_16550::SerialPort);

impl ByteUart for Com2 {
    fn poll_read(&mut self) -> Option<u8> {
        self.0.try_receive().ok()
    }

    fn write(&mut self, data: &[u8]) {
        // send_raw: `send` would rewrite 0x08/0x7F, corrupting packets.
        data.iter().for_each(|&b| self.0.send_raw(b));
    }
}

/// The gdb stub's line: the virtio-serial device or COM2.
pub type GdbLine = sessions::GdbLine<Com2>;
/// The sessions on it (shared with virt: `lantern_virtio_serial::sessions`).
pub type GdbSessions = sessions::GdbSessions<Com2>;

/// The virtio-serial device if QEMU has one, else COM2 if it is there,
/// else none; says which.
pub fn probe_line() -> Option<GdbLine> {
    let mut root = PciRoot::new(PortIoCam);
    let why = match probe::<IdentityHal, _>(&mut root, 0, None, GDB_PORT_PREFIX) {
        Ok((dev, df)) => return Some(GdbLine::Virtio(Box::new(dev), df)),
        Err(ProbeError::Absent) => "no virtio-serial device",
        Err(e) => {
            log::warn!("gdb line: the virtio-serial device did not come up: {e:?}");
            "the virtio-serial device failed"
        }
    };
    if !com2_present() {
        // An absent UART reads all ones: its line status would say a byte
        // is always waiting, and the stub would parse 0xff forever.
        log::info!("gdb line: none ({why}, no COM2)");
        return None;
    }
    log::info!("gdb line: COM2 ({why})");
    // SAFETY: COM2's ports on q35, present; only the gdb stub touches them.
    let mut com2 = unsafe { uart_16550::SerialPort::new(COM2_BASE) };
    com2.init();
    Some(GdbLine::Uart(Com2(com2), "COM2"))
}

/// Whether a 16550 answers at COM2: its scratch register keeps two
/// patterns written to it (ports without a device read all ones).
fn com2_present() -> bool {
    [0x5a, 0xa5].iter().all(|&pattern| {
        // SAFETY: the scratch register has no effect on the UART; on q35
        // nothing else decodes COM2's ports.
        unsafe {
            x86::io::outb(COM2_BASE + UART_SCRATCH, pattern);
            x86::io::inb(COM2_BASE + UART_SCRATCH) == pattern
        }
    })
}
