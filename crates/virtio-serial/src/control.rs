//! The virtio-serial multiport control protocol (virtio spec 5.3.6.2),
//! without any device access: messages to and from the control queues and
//! what the driver tracks of each port, so it can be tested on the host.
//!
//! The conversation: the driver says DEVICE_READY; the device announces each
//! port with PORT_ADD; the driver answers PORT_READY; the device names the
//! port (PORT_NAME) and says whether the host side is open (PORT_OPEN); the
//! driver opens the port it wants (PORT_OPEN 1) and from then on hears the
//! host side opening (1) and closing (0) it.

use alloc::vec::Vec;

/// VIRTIO_CONSOLE_DEVICE_READY: the driver is ready (value 1).
pub const DEVICE_READY: u16 = 0;
/// VIRTIO_CONSOLE_DEVICE_ADD: the device added a port.
pub const PORT_ADD: u16 = 1;
/// VIRTIO_CONSOLE_DEVICE_REMOVE: the device removed a port.
pub const PORT_REMOVE: u16 = 2;
/// VIRTIO_CONSOLE_PORT_READY: the driver set the port up (value 1) or not (0).
pub const PORT_READY: u16 = 3;
/// VIRTIO_CONSOLE_CONSOLE_PORT: the port is a console.
pub const CONSOLE_PORT: u16 = 4;
/// VIRTIO_CONSOLE_RESIZE: a console's size changed.
pub const RESIZE: u16 = 5;
/// VIRTIO_CONSOLE_PORT_OPEN: one side opened (1) or closed (0) the port.
pub const PORT_OPEN: u16 = 6;
/// VIRTIO_CONSOLE_PORT_NAME: the port's name follows the header.
pub const PORT_NAME: u16 = 7;

/// Size of a control message's header (`struct virtio_console_control`).
pub const HEADER_LEN: usize = 8;

/// Longest port name kept (QEMU's names are short strings).
pub const MAX_NAME: usize = 64;

/// One control message's header: `{ le32 id; le16 event; le16 value; }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlMsg {
    /// The port it is about.
    pub id: u32,
    /// One of the event numbers above.
    pub event: u16,
    /// The event's value (1/0 for open, ready).
    pub value: u16,
}

impl ControlMsg {
    /// The header at the start of `bytes` and what follows it (a name).
    pub fn parse(bytes: &[u8]) -> Option<(ControlMsg, &[u8])> {
        let head = bytes.get(..HEADER_LEN)?;
        let id = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let event = u16::from_le_bytes([head[4], head[5]]);
        let value = u16::from_le_bytes([head[6], head[7]]);
        Some((ControlMsg { id, event, value }, &bytes[HEADER_LEN..]))
    }

    /// The header as the device reads it (little-endian).
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        b[..4].copy_from_slice(&self.id.to_le_bytes());
        b[4..6].copy_from_slice(&self.event.to_le_bytes());
        b[6..].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}

/// What a control message meant for the port the driver wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortEvent {
    /// The wanted port was named: the driver now owns it.
    Found(u32),
    /// The host side opened the wanted port (a client connected).
    HostOpened,
    /// The host side closed the wanted port (its client went away), or the
    /// device removed the port.
    HostClosed,
}

/// The driver's view of the ports: which one is wanted (by name), whether
/// its host side is open.
pub struct Multiport {
    wanted: &'static str,
    /// Ports whose data queues the driver set up (ids below this).
    ports_with_queues: u32,
    /// The wanted port, once named.
    port: Option<u32>,
    /// Host side open, per port id (it may open before the name arrives).
    host_open: Vec<u32>,
    /// Whether the wanted port's host side is open.
    open: bool,
}

impl Multiport {
    /// Looks for the port named `wanted` among the first `ports_with_queues`.
    pub fn new(wanted: &'static str, ports_with_queues: u32) -> Multiport {
        Multiport { wanted, ports_with_queues, port: None, host_open: Vec::new(), open: false }
    }

    /// The first message the driver sends.
    pub fn device_ready() -> ControlMsg {
        ControlMsg { id: 0, event: DEVICE_READY, value: 1 }
    }

    /// The wanted port's id, once the device named it.
    pub fn port(&self) -> Option<u32> {
        self.port
    }

    /// Whether the wanted port's host side is open.
    pub fn host_open(&self) -> bool {
        self.open
    }

    /// Handles one message from the device's control queue: replies go to
    /// `replies` (in order), and what it meant for the wanted port is
    /// returned.
    pub fn on_message(&mut self, bytes: &[u8], replies: &mut Vec<ControlMsg>) -> Option<PortEvent> {
        let (msg, rest) = ControlMsg::parse(bytes)?;
        let id = msg.id;
        match msg.event {
            PORT_ADD => {
                // Ports without data queues cannot be used: say so, and the
                // device leaves them alone.
                let ok = id < self.ports_with_queues;
                replies.push(ControlMsg { id, event: PORT_READY, value: ok as u16 });
                None
            }
            PORT_NAME => {
                let name = rest.iter().position(|&b| b == 0).map_or(rest, |n| &rest[..n]);
                let name = &name[..name.len().min(MAX_NAME)];
                if self.port.is_some() || name != self.wanted.as_bytes() || id >= self.ports_with_queues {
                    return None;
                }
                self.port = Some(id);
                // The guest side opens it now: the device passes host data
                // only to a port the guest has open.
                replies.push(ControlMsg { id, event: PORT_OPEN, value: 1 });
                self.open = self.host_open.contains(&id);
                Some(PortEvent::Found(id))
            }
            PORT_OPEN => {
                let now_open = msg.value != 0;
                self.host_open.retain(|&p| p != id);
                if now_open {
                    self.host_open.push(id);
                }
                if self.port != Some(id) || self.open == now_open {
                    return None;
                }
                self.open = now_open;
                Some(if now_open { PortEvent::HostOpened } else { PortEvent::HostClosed })
            }
            PORT_REMOVE => {
                self.host_open.retain(|&p| p != id);
                if self.port != Some(id) {
                    return None;
                }
                self.port = None;
                let was_open = core::mem::take(&mut self.open);
                was_open.then_some(PortEvent::HostClosed)
            }
            CONSOLE_PORT => {
                // A console port is opened by the driver at once (the device
                // expects it); its data is not ours.
                replies.push(ControlMsg { id, event: PORT_OPEN, value: 1 });
                None
            }
            // RESIZE and anything newer: nothing to do.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u32, event: u16, value: u16) -> Vec<u8> {
        ControlMsg { id, event, value }.to_bytes().to_vec()
    }

    fn named(id: u32, name: &str) -> Vec<u8> {
        let mut m = msg(id, PORT_NAME, 1);
        m.extend_from_slice(name.as_bytes());
        m
    }

    #[test]
    fn header_round_trips_little_endian() {
        let m = ControlMsg { id: 0x0102_0304, event: PORT_OPEN, value: 1 };
        assert_eq!(m.to_bytes(), [4, 3, 2, 1, 6, 0, 1, 0]);
        assert_eq!(ControlMsg::parse(&m.to_bytes()), Some((m, &[][..])));
        assert_eq!(ControlMsg::parse(&[1, 2, 3]), None);
        assert_eq!(Multiport::device_ready().to_bytes(), [0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn finds_the_named_port_and_hears_it_open_and_close() {
        let mut mp = Multiport::new("org.lantern.gdb.0", 4);
        let mut out = Vec::new();
        assert_eq!(mp.on_message(&msg(1, PORT_ADD, 0), &mut out), None);
        assert_eq!(out, [ControlMsg { id: 1, event: PORT_READY, value: 1 }]);
        out.clear();
        // The host side is already connected before the name arrives.
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 1), &mut out), None);
        assert_eq!(mp.on_message(&named(1, "org.lantern.gdb.0\0"), &mut out), Some(PortEvent::Found(1)));
        assert_eq!(out, [ControlMsg { id: 1, event: PORT_OPEN, value: 1 }]);
        assert!(mp.host_open());
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 0), &mut out), Some(PortEvent::HostClosed));
        assert!(!mp.host_open());
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 0), &mut out), None, "a repeat is no news");
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 1), &mut out), Some(PortEvent::HostOpened));
        assert_eq!(mp.on_message(&msg(1, PORT_REMOVE, 0), &mut out), Some(PortEvent::HostClosed));
        assert_eq!(mp.port(), None);
    }

    #[test]
    fn other_ports_and_ports_without_queues_are_left_alone() {
        let mut mp = Multiport::new("org.lantern.gdb.0", 2);
        let mut out = Vec::new();
        mp.on_message(&msg(5, PORT_ADD, 0), &mut out);
        assert_eq!(out, [ControlMsg { id: 5, event: PORT_READY, value: 0 }]);
        out.clear();
        assert_eq!(mp.on_message(&named(5, "org.lantern.gdb.0"), &mut out), None, "no queues for port 5");
        assert_eq!(mp.on_message(&named(1, "org.other"), &mut out), None);
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 0), &mut out), None);
        assert!(out.is_empty());
        assert_eq!(mp.on_message(&msg(0, CONSOLE_PORT, 1), &mut out), None);
        assert_eq!(out, [ControlMsg { id: 0, event: PORT_OPEN, value: 1 }]);
        assert_eq!(mp.on_message(&msg(1, RESIZE, 0), &mut out), None);
        assert_eq!(mp.on_message(&[0; 3], &mut out), None, "a cut-off message is ignored");
    }
}
