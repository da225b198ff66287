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
use alloc::vec::Vec;

use lantern_common::sched::Hypervisor;
use lantern_gdb::{GdbStub, Transport};
use lantern_virtio_serial::hal::IdentityHal;
use lantern_virtio_serial::pci::{probe, BarWindow, ProbeError};
use lantern_virtio_serial::{port_scope, PortScope, VirtioSerial, GDB_PORT_PREFIX};
use virtio_drivers::transport::pci::bus::{Cam, DeviceFunction, MmioCam, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

use super::dt::BoardInfo;
use super::pci_uart::PciUart;

/// The gdb stub's line, once probed (the board's loop takes it from here
/// into its [`GdbSessions`]).
pub static GDB_LINE: spin::Mutex<Option<GdbLine>> = spin::Mutex::new(None);

/// The gdb stub's line.
pub enum GdbLine {
    /// The virtio-serial device (and where it sits on the bus): lossless,
    /// one port per session, and it sees gdb go away.
    Virtio(Box<VirtioSerial<IdentityHal, PciTransport>>, DeviceFunction),
    /// The PCI 16550: one trap per byte, no hang-up, one session.
    Uart(PciUart),
}

impl GdbLine {
    /// The virtio-serial device if QEMU has one, else the PCI 16550, else
    /// nothing; says which.
    pub fn probe(info: &BoardInfo) -> Option<GdbLine> {
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
        Some(GdbLine::Uart(u))
    }

    /// The line's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            GdbLine::Virtio(..) => "the virtio-serial port",
            GdbLine::Uart(_) => "the PCI 16550",
        }
    }
}

/// One session's view of the line: a virtio-serial port, or all of the
/// 16550.
struct Line<'a> {
    line: &'a mut GdbLine,
    port: u32,
}

impl Transport for Line<'_> {
    fn read_byte(&mut self) -> Option<u8> {
        match self.line {
            GdbLine::Virtio(v, _) => v.read_byte(self.port),
            GdbLine::Uart(u) => u.poll_read(),
        }
    }

    fn write_all(&mut self, data: &[u8]) {
        match self.line {
            GdbLine::Virtio(v, _) => v.write(self.port, data),
            GdbLine::Uart(u) => u.write(data),
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
            GdbLine::Uart(_) => false,
        }
    }
}

/// The gdb sessions on the line: the whole system's, and on the
/// virtio-serial device one per domain port.
pub struct GdbSessions {
    line: GdbLine,
    /// The whole-system stub (the only one that holds for `--wait-gdb`).
    system: GdbStub,
    /// Its port, once named (the 16550: always, as port 0).
    system_port: Option<u32>,
    /// Each domain port's stub, by port id.
    domains: Vec<(GdbStub, u32)>,
    /// Ports of the prefix that name no session (said once).
    unused: Vec<u32>,
}

impl GdbSessions {
    /// The sessions on `line`, with the ports named so far; says which
    /// port is which.
    pub fn new(line: GdbLine) -> GdbSessions {
        let system_port = matches!(line, GdbLine::Uart(_)).then_some(0);
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
