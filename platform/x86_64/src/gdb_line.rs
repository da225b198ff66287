//! The gdb stub's lines on q35: the ports of a virtio-serial device
//! (`-device virtio-serial-pci` with `virtserialport`s named
//! `org.lantern.gdb.0` for the whole system and `org.lantern.gdb.dN` for
//! domain N's own session) when QEMU has one, else COM2 (the whole system
//! only). The virtio device is found on PCI bus 0 through the 0xCF8/0xCFC
//! configuration mechanism; SeaBIOS has placed its BARs below 4 GiB, inside
//! the identity map.

use alloc::boxed::Box;
use alloc::vec::Vec;

use lantern_common::sched::Hypervisor;
use lantern_gdb::{GdbStub, Transport};
use lantern_virtio_serial::hal::IdentityHal;
use lantern_virtio_serial::pci::{probe, ProbeError};
use lantern_virtio_serial::{port_scope, PortScope, VirtioSerial, GDB_PORT_PREFIX};
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
    /// The virtio-serial device (and where it sits on the bus): lossless,
    /// one port per session, and it sees gdb go away.
    Virtio(Box<VirtioSerial<IdentityHal, PciTransport>>, DeviceFunction),
    /// COM2, a 16550: one trap per byte, no hang-up, one session.
    Com2(uart_16550::SerialPort),
}

impl GdbLine {
    /// The virtio-serial device if QEMU has one, else COM2; says which.
    pub fn probe() -> GdbLine {
        let mut root = PciRoot::new(PortIoCam);
        match probe::<IdentityHal, _>(&mut root, 0, None, GDB_PORT_PREFIX) {
            Ok((dev, df)) => return GdbLine::Virtio(Box::new(dev), df),
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
            GdbLine::Virtio(..) => "the virtio-serial port",
            GdbLine::Com2(_) => "COM2",
        }
    }
}

/// One session's view of the line: a virtio-serial port, or all of COM2.
struct Line<'a> {
    line: &'a mut GdbLine,
    port: u32,
}

impl Transport for Line<'_> {
    fn read_byte(&mut self) -> Option<u8> {
        match self.line {
            GdbLine::Virtio(v, _) => v.read_byte(self.port),
            GdbLine::Com2(u) => u.try_receive().ok(),
        }
    }

    fn write_all(&mut self, data: &[u8]) {
        match self.line {
            GdbLine::Virtio(v, _) => v.write(self.port, data),
            // send_raw: `send` would rewrite 0x08/0x7F, corrupting packets.
            GdbLine::Com2(u) => data.iter().for_each(|&b| u.send_raw(b)),
        }
    }

    fn flush(&mut self) {
        if let GdbLine::Virtio(v, _) = self.line {
            v.flush(self.port);
        }
    }

    fn take_hangup(&mut self) -> bool {
        match self.line {
            GdbLine::Virtio(v, _) => v.take_hangup(self.port),
            GdbLine::Com2(_) => false,
        }
    }
}

/// The gdb sessions on the line: the whole system's, and on the
/// virtio-serial device one per domain port.
pub struct GdbSessions {
    line: GdbLine,
    /// The whole-system stub (the only one that holds for `--wait-gdb`).
    system: GdbStub,
    /// Its port, once named (COM2: always, as port 0).
    system_port: Option<u32>,
    /// Each domain port's stub, by port id.
    domains: Vec<(GdbStub, u32)>,
    /// Ports of the prefix that name no session (said once).
    unused: Vec<u32>,
}

impl GdbSessions {
    /// Probes the line (see [`GdbLine::probe`]) and takes the ports named
    /// so far; says which line is which.
    pub fn probe() -> GdbSessions {
        let line = GdbLine::probe();
        let system_port = matches!(line, GdbLine::Com2(_)).then_some(0);
        let mut s = GdbSessions { line, system: GdbStub::new(), system_port, domains: Vec::new(), unused: Vec::new() };
        s.adopt_ports();
        s
    }

    /// The line's name for messages.
    pub fn name(&self) -> &'static str {
        self.line.name()
    }

    /// `--wait-gdb`: the whole-system stub holds every vCPU until gdb
    /// attaches there and continues.
    pub fn wait_for_gdb(&mut self, hv: &Hypervisor) {
        self.system.wait_for_gdb(hv);
    }

    /// Whether any stub holds the system or a domain stopped (the board
    /// then spins instead of sleeping, to answer gdb at once).
    pub fn holding(&self) -> bool {
        self.system.holding() || self.domains.iter().any(|(s, _)| s.holding())
    }

    /// Services every session: ports named since the last poll get their
    /// stub first.
    pub fn poll(&mut self, hv: &mut Hypervisor) {
        self.adopt_ports();
        for (stub, port) in &mut self.domains {
            stub.poll(hv, &mut Line { line: &mut self.line, port: *port });
        }
        // The whole-system stub last: its poll sets `hv.stopped`, and that
        // word is the whole-system session's.
        if let Some(port) = self.system_port {
            self.system.poll(hv, &mut Line { line: &mut self.line, port });
        }
    }

    /// Gives each newly named gdb port its session, and logs it.
    fn adopt_ports(&mut self) {
        let GdbLine::Virtio(dev, df) = &self.line else { return };
        // At most a few ports (`MAX_PORTS`): a look on every poll is cheap.
        for (port, name) in dev.ports() {
            if self.system_port == Some(port)
                || self.domains.iter().any(|(_, p)| *p == port)
                || self.unused.contains(&port)
            {
                continue;
            }
            let open = if dev.host_open(port) { "open" } else { "closed" };
            match port_scope(name) {
                Some(PortScope::System) => {
                    log::info!(
                        "gdb line: virtio-serial at {df}, port {port} '{name}' (whole system), host side {open}"
                    );
                    self.system_port = Some(port);
                }
                Some(PortScope::Domain(d)) => {
                    log::info!("gdb line: virtio-serial at {df}, port {port} '{name}' (domain {d}), host side {open}");
                    self.domains.push((GdbStub::for_domain(d), port));
                }
                None => {
                    log::warn!("gdb line: virtio-serial port {port} '{name}' names no session; unused");
                    self.unused.push(port);
                }
            }
        }
    }
}
