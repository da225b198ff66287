//! The gdb sessions on a board's gdb line: the virtio-serial device, one
//! port per session (the whole system's, and each domain's own), or a
//! 16550 fallback that carries the whole-system session alone. Both boards
//! find the line their own way (PCI through ECAM or I/O ports, their UART)
//! and hand it here; what a session does with it is the same everywhere.

use alloc::boxed::Box;
use alloc::vec::Vec;

use lantern_common::sched::Hypervisor;
use lantern_gdb::{GdbStub, Transport};
use virtio_drivers::transport::pci::bus::DeviceFunction;
use virtio_drivers::transport::pci::PciTransport;

use crate::hal::IdentityHal;
use crate::{port_scope, PortScope, VirtioSerial};

/// A board's fallback gdb line: a byte UART with no ports and no hang-up.
pub trait ByteUart {
    /// The next received byte, if one is waiting.
    fn poll_read(&mut self) -> Option<u8>;
    /// Sends `data` as it is (no newline translation: it carries packets).
    fn write(&mut self, data: &[u8]);
}

/// The gdb stub's line.
pub enum GdbLine<U> {
    /// The virtio-serial device (and where it sits on the bus): lossless,
    /// one port per session, and it sees gdb go away.
    Virtio(Box<VirtioSerial<IdentityHal, PciTransport>>, DeviceFunction),
    /// The board's 16550 (its name for messages): one trap per byte, no
    /// hang-up, one session.
    Uart(U, &'static str),
}

impl<U> GdbLine<U> {
    /// The line's name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            GdbLine::Virtio(..) => "the virtio-serial port",
            GdbLine::Uart(_, name) => name,
        }
    }
}

/// One session's view of the line: a virtio-serial port, or all of the
/// UART.
struct Line<'a, U> {
    line: &'a mut GdbLine<U>,
    port: u32,
}

impl<U: ByteUart> Transport for Line<'_, U> {
    fn read_byte(&mut self) -> Option<u8> {
        match self.line {
            GdbLine::Virtio(v, _) => v.read_byte(self.port),
            GdbLine::Uart(u, _) => u.poll_read(),
        }
    }

    fn write_all(&mut self, data: &[u8]) {
        match self.line {
            GdbLine::Virtio(v, _) => v.write(self.port, data),
            GdbLine::Uart(u, _) => u.write(data),
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
            GdbLine::Uart(..) => false,
        }
    }
}

/// The gdb sessions on the line: the whole system's, and on the
/// virtio-serial device one per domain port.
pub struct GdbSessions<U> {
    line: GdbLine<U>,
    /// The whole-system stub (the only one that holds for `--wait-gdb`).
    system: GdbStub,
    /// Its port, once named (the UART: always, as port 0).
    system_port: Option<u32>,
    /// Each domain port's stub, by port id.
    domains: Vec<(GdbStub, u32)>,
    /// Ports of the prefix that name no session (said once).
    unused: Vec<u32>,
}

impl<U: ByteUart> GdbSessions<U> {
    /// The sessions on `line`, with the ports named so far; says which
    /// port is which.
    pub fn new(line: GdbLine<U>) -> Self {
        let system_port = matches!(line, GdbLine::Uart(..)).then_some(0);
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
