//! The virtio-serial multiport control protocol (virtio spec 5.3.6.2),
//! without any device access: messages to and from the control queues and
//! what the driver tracks of each port, so it can be tested on the host.
//!
//! The conversation: the driver says DEVICE_READY; the device announces each
//! port with PORT_ADD; the driver answers PORT_READY; the device names the
//! port (PORT_NAME) and says whether the host side is open (PORT_OPEN); the
//! driver opens each port it wants (PORT_OPEN 1; here, every port whose name
//! starts with a prefix) and from then on hears the host side opening (1)
//! and closing (0) it.

use alloc::string::String;
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

/// What a control message meant for the ports the driver wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortEvent {
    /// A wanted port was named: the driver now owns it (its name is in
    /// [`Multiport::name`]).
    Found(u32),
    /// The host side opened a wanted port (a client connected).
    HostOpened(u32),
    /// The host side closed a wanted port (its client went away), or the
    /// device removed the port while it was open.
    HostClosed(u32),
    /// The device removed a wanted port whose host side was closed (an open
    /// one's removal is a [`PortEvent::HostClosed`]); it is no longer named.
    Removed(u32),
}

/// A wanted port the device has named.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NamedPort {
    id: u32,
    name: String,
    /// Whether its host side is open.
    open: bool,
}

/// The driver's view of the ports: which ones are wanted (their names start
/// with a prefix), whether each one's host side is open.
pub struct Multiport {
    prefix: &'static str,
    /// Ports whose data queues the driver set up (ids below this).
    ports_with_queues: u32,
    /// The wanted ports named so far, in the order they were named.
    named: Vec<NamedPort>,
    /// Host side open, per port id (it may open before the name arrives).
    host_open: Vec<u32>,
}

impl Multiport {
    /// Looks for the ports whose names start with `prefix` among the first
    /// `ports_with_queues`.
    pub fn new(prefix: &'static str, ports_with_queues: u32) -> Multiport {
        Multiport { prefix, ports_with_queues, named: Vec::new(), host_open: Vec::new() }
    }

    /// The first message the driver sends.
    pub fn device_ready() -> ControlMsg {
        ControlMsg { id: 0, event: DEVICE_READY, value: 1 }
    }

    /// The wanted ports named so far: `(port id, name)`, in naming order.
    pub fn ports(&self) -> impl Iterator<Item = (u32, &str)> {
        self.named.iter().map(|p| (p.id, p.name.as_str()))
    }

    /// The name of wanted port `id`, once the device named it.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.find(id).map(|p| p.name.as_str())
    }

    /// The wanted port named exactly `name`.
    pub fn port_named(&self, name: &str) -> Option<u32> {
        self.named.iter().find(|p| p.name == name).map(|p| p.id)
    }

    /// Whether wanted port `id`'s host side is open (false for a port not
    /// named, or not wanted).
    pub fn host_open(&self, id: u32) -> bool {
        self.find(id).is_some_and(|p| p.open)
    }

    fn find(&self, id: u32) -> Option<&NamedPort> {
        self.named.iter().find(|p| p.id == id)
    }

    /// Handles one message from the device's control queue: replies go to
    /// `replies` (in order), and what it meant for a wanted port is
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
                // A port is named once; a repeat (or a rename) changes
                // nothing the driver already handed out.
                if self.find(id).is_some() || !name.starts_with(self.prefix.as_bytes()) || id >= self.ports_with_queues
                {
                    return None;
                }
                let Ok(name) = core::str::from_utf8(name) else { return None };
                // Two ports of one name: the first keeps it (a second
                // session on the same line would be ambiguous).
                if self.port_named(name).is_some() {
                    return None;
                }
                let open = self.host_open.contains(&id);
                self.named.push(NamedPort { id, name: name.into(), open });
                // The guest side opens it now: the device passes host data
                // only to a port the guest has open.
                replies.push(ControlMsg { id, event: PORT_OPEN, value: 1 });
                Some(PortEvent::Found(id))
            }
            PORT_OPEN => {
                let now_open = msg.value != 0;
                self.host_open.retain(|&p| p != id);
                if now_open {
                    self.host_open.push(id);
                }
                let port = self.named.iter_mut().find(|p| p.id == id)?;
                if port.open == now_open {
                    return None;
                }
                port.open = now_open;
                Some(if now_open { PortEvent::HostOpened(id) } else { PortEvent::HostClosed(id) })
            }
            PORT_REMOVE => {
                self.host_open.retain(|&p| p != id);
                let i = self.named.iter().position(|p| p.id == id)?;
                let port = self.named.remove(i);
                // An open port's session ends with it: that is the news.
                Some(if port.open { PortEvent::HostClosed(id) } else { PortEvent::Removed(id) })
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
        let mut mp = Multiport::new("org.lantern.gdb.", 4);
        let mut out = Vec::new();
        assert_eq!(mp.on_message(&msg(1, PORT_ADD, 0), &mut out), None);
        assert_eq!(out, [ControlMsg { id: 1, event: PORT_READY, value: 1 }]);
        out.clear();
        // The host side is already connected before the name arrives.
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 1), &mut out), None);
        assert_eq!(mp.on_message(&named(1, "org.lantern.gdb.0\0"), &mut out), Some(PortEvent::Found(1)));
        assert_eq!(out, [ControlMsg { id: 1, event: PORT_OPEN, value: 1 }]);
        assert_eq!(mp.ports().collect::<Vec<_>>(), [(1, "org.lantern.gdb.0")]);
        assert_eq!(mp.port_named("org.lantern.gdb.0"), Some(1));
        assert!(mp.host_open(1));
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 0), &mut out), Some(PortEvent::HostClosed(1)));
        assert!(!mp.host_open(1));
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 0), &mut out), None, "a repeat is no news");
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 1), &mut out), Some(PortEvent::HostOpened(1)));
        assert_eq!(mp.on_message(&msg(1, PORT_REMOVE, 0), &mut out), Some(PortEvent::HostClosed(1)));
        assert_eq!(mp.name(1), None);
        assert_eq!(mp.ports().count(), 0);
    }

    #[test]
    fn several_ports_of_the_prefix_are_tracked_apart() {
        let mut mp = Multiport::new("org.lantern.gdb.", 8);
        let mut out = Vec::new();
        for id in 1..=3 {
            mp.on_message(&msg(id, PORT_ADD, 0), &mut out);
        }
        assert_eq!(mp.on_message(&named(1, "org.lantern.gdb.0"), &mut out), Some(PortEvent::Found(1)));
        assert_eq!(mp.on_message(&named(2, "org.other.port"), &mut out), None, "not of the prefix");
        // Opened before it is named: it is open from the start.
        assert_eq!(mp.on_message(&msg(3, PORT_OPEN, 1), &mut out), None);
        assert_eq!(mp.on_message(&named(3, "org.lantern.gdb.d2"), &mut out), Some(PortEvent::Found(3)));
        assert_eq!(mp.ports().collect::<Vec<_>>(), [(1, "org.lantern.gdb.0"), (3, "org.lantern.gdb.d2")]);
        assert!(!mp.host_open(1) && mp.host_open(3) && !mp.host_open(2));
        assert_eq!(mp.on_message(&msg(1, PORT_OPEN, 1), &mut out), Some(PortEvent::HostOpened(1)));
        assert_eq!(mp.on_message(&msg(3, PORT_OPEN, 0), &mut out), Some(PortEvent::HostClosed(3)));
        assert!(mp.host_open(1) && !mp.host_open(3), "one port's close leaves the other open");
        assert_eq!(mp.on_message(&msg(2, PORT_OPEN, 1), &mut out), None, "not ours");
        // A repeated or clashing name hands out nothing new.
        out.clear();
        assert_eq!(mp.on_message(&named(3, "org.lantern.gdb.d9"), &mut out), None);
        mp.on_message(&msg(4, PORT_ADD, 0), &mut out);
        assert_eq!(mp.on_message(&named(4, "org.lantern.gdb.0"), &mut out), None, "name taken by port 1");
        assert_eq!(mp.name(3), Some("org.lantern.gdb.d2"));
        assert_eq!(mp.on_message(&msg(3, PORT_REMOVE, 0), &mut out), Some(PortEvent::Removed(3)));
        assert_eq!(mp.ports().collect::<Vec<_>>(), [(1, "org.lantern.gdb.0")]);
    }

    #[test]
    fn other_ports_and_ports_without_queues_are_left_alone() {
        let mut mp = Multiport::new("org.lantern.gdb.", 2);
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
