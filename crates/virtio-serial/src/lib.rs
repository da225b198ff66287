//! A virtio-serial device (a virtio console with VIRTIO_CONSOLE_F_MULTIPORT)
//! driven over `virtio-drivers`' transports and split virtqueues, exposing
//! every port whose name starts with a prefix as a lossless byte pipe of its
//! own that also reports the host side opening and closing it (QEMU's
//! `virtserialport` on a socket chardev: a client connecting and going
//! away). Naming no architecture: the boards bring the transport (PCI or
//! MMIO) and the [`Hal`].
//!
//! The gdb lines are such ports: [`GDB_PORT_NAME`] carries the whole-system
//! session and [`domain_port_name`] one domain's own ([`port_scope`] tells
//! which a name is). QEMU names ports after the driver says it is ready, so
//! a port may appear on any [`VirtioSerial::poll`]; each one is used by its
//! id ([`VirtioSerial::ports`] lists them).
//!
//! Sending never waits for the host: bytes collect in a port's outbox and go
//! to the device as one buffer per [`VirtioSerial::flush`], and when the
//! host side is closed they are dropped (as the device itself would).

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod control;
#[cfg(feature = "sessions")]
pub mod ecam_line;
pub mod hal;
pub mod names;
pub mod pci;
#[cfg(feature = "sessions")]
pub mod sessions;
pub mod stream;

use alloc::vec::Vec;

use alloc::boxed::Box;
use bitflags::bitflags;

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::Hal;

pub use control::PortEvent;
use control::{ControlMsg, Multiport};
pub use names::{domain_port_name, port_scope, PortScope, GDB_PORT_NAME, GDB_PORT_PREFIX, MAX_PORTS};
use stream::PortStream;
pub use stream::Stats;

bitflags! {
    /// The device features this driver takes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Features: u64 {
        /// VIRTIO_CONSOLE_F_MULTIPORT: ports beyond 0 and the control queues.
        const MULTIPORT = 1 << 1;
        /// VIRTIO_F_VERSION_1: the modern (virtio 1.0) interface.
        const VERSION_1 = 1 << 32;
    }
}

/// Offset of `max_nr_ports` (le32) in the console's config space, after
/// `cols` and `rows` (le16 each).
const CONFIG_MAX_NR_PORTS: usize = 4;
/// The control queues' indices (receive, transmit) with MULTIPORT.
const CONTROL_RX_QUEUE: u16 = 2;
const CONTROL_TX_QUEUE: u16 = 3;
/// Descriptors per control queue (QEMU offers 32).
const CONTROL_QUEUE_SIZE: usize = 8;
/// A control message buffer: the header and a port name.
const CONTROL_BUF: usize = 128;
/// Descriptors per data queue (QEMU offers 128); on the receive side, also
/// the number of receive buffers.
const DATA_QUEUE_SIZE: usize = 8;
/// One receive buffer (host to guest): gdb's packets are at most a few KiB.
const RX_BUF: usize = 4096;

/// A receive queue with a buffer of `BUF` bytes in every descriptor, each
/// handed back to the device as soon as its data has been taken.
/// (`virtio-drivers`' `OwningQueue` does the same, but only with its
/// `alloc` feature, which turns on `zerocopy/alloc` for every crate of a
/// build, the allocator-less test guests included.)
struct RxQueue<H: Hal, const SIZE: usize, const BUF: usize> {
    queue: VirtQueue<H, SIZE>,
    index: u16,
    /// The buffers, by descriptor token.
    buffers: Vec<(u16, Box<[u8; BUF]>)>,
}

impl<H: Hal, const SIZE: usize, const BUF: usize> RxQueue<H, SIZE, BUF> {
    /// Queue `index` with all its buffers given to the device (notify it
    /// once the device is live).
    fn new<T: Transport>(transport: &mut T, index: u16) -> Result<Self, Error> {
        let queue = VirtQueue::new(transport, index, false, false)?;
        let mut rx = RxQueue { queue, index, buffers: Vec::new() };
        for _ in 0..SIZE {
            let mut buf = Box::new([0u8; BUF]);
            // SAFETY: the buffer lives in `buffers` (a Box's block does not
            // move) and is not touched until `take` pops its token.
            let token = unsafe { rx.queue.add(&[], &mut [&mut buf[..]]) }?;
            rx.buffers.push((token, buf));
        }
        Ok(rx)
    }

    /// Hands the next filled buffer's data to `f` and gives the buffer back
    /// to the device; false when none is filled.
    fn take<T: Transport>(&mut self, transport: &mut T, f: impl FnOnce(&[u8])) -> Result<bool, Error> {
        let Some(token) = self.queue.peek_used() else { return Ok(false) };
        let Some(i) = self.buffers.iter().position(|(t, _)| *t == token) else {
            return Err(Error::Queue(virtio_drivers::Error::WrongToken));
        };
        let (_, mut buf) = self.buffers.swap_remove(i);
        // SAFETY: `buf` is the buffer added with this token.
        let len = unsafe { self.queue.pop_used(token, &[], &mut [&mut buf[..]]) }? as usize;
        f(&buf[..len.min(BUF)]);
        // SAFETY: as in `new`.
        let token = unsafe { self.queue.add(&[], &mut [&mut buf[..]]) }?;
        self.buffers.push((token, buf));
        if self.queue.should_notify() {
            transport.notify(self.index);
        }
        Ok(true)
    }
}

/// One port: its receive and transmit queues, its streams, and the
/// transmit buffers the device has not used yet.
struct Port<H: Hal> {
    rx: RxQueue<H, DATA_QUEUE_SIZE, RX_BUF>,
    tx: VirtQueue<H, DATA_QUEUE_SIZE>,
    tx_index: u16,
    stream: PortStream,
    /// Buffers the device has not used yet, by descriptor token.
    in_flight: Vec<(u16, Vec<u8>)>,
}

/// Why the device could not be brought up.
#[derive(Debug)]
pub enum Error {
    /// The transport is not a console device.
    NotAConsole,
    /// The device does not offer VIRTIO_CONSOLE_F_MULTIPORT.
    NoMultiport,
    /// A virtqueue could not be set up.
    Queue(virtio_drivers::Error),
}

impl From<virtio_drivers::Error> for Error {
    fn from(e: virtio_drivers::Error) -> Self {
        Error::Queue(e)
    }
}

/// A virtio-serial device whose ports of one name prefix are in use.
pub struct VirtioSerial<H: Hal, T: Transport> {
    transport: T,
    control_rx: RxQueue<H, CONTROL_QUEUE_SIZE, CONTROL_BUF>,
    control_tx: VirtQueue<H, CONTROL_QUEUE_SIZE>,
    /// Every port with data queues, by port id.
    ports: Vec<Port<H>>,
    multiport: Multiport,
}

impl<H: Hal, T: Transport> VirtioSerial<H, T> {
    /// Brings the device up, with every port whose name starts with
    /// `prefix` that the device has named by then (more may be named later:
    /// QEMU names ports when the driver says it is ready, which this does).
    pub fn new(mut transport: T, prefix: &'static str) -> Result<Self, Error> {
        if transport.device_type() != DeviceType::Console {
            return Err(Error::NotAConsole);
        }
        let features = transport.begin_init(Features::MULTIPORT | Features::VERSION_1);
        if !features.contains(Features::MULTIPORT) {
            return Err(Error::NoMultiport);
        }
        let max_ports: u32 = transport.read_config_space(CONFIG_MAX_NR_PORTS).map_err(Error::Queue)?;
        let nr_ports = max_ports.clamp(1, MAX_PORTS);
        let mut ports = Vec::new();
        for p in 0..nr_ports as u16 {
            // Port 0 keeps queues 0 and 1; the control queues come next,
            // then two per further port.
            let rx_index = if p == 0 { 0 } else { 2 * p + 2 };
            let rx = RxQueue::new(&mut transport, rx_index)?;
            let tx = VirtQueue::new(&mut transport, rx_index + 1, false, false)?;
            ports.push(Port { rx, tx, tx_index: rx_index + 1, stream: PortStream::new(), in_flight: Vec::new() });
        }
        let control_rx = RxQueue::new(&mut transport, CONTROL_RX_QUEUE)?;
        let control_tx = VirtQueue::new(&mut transport, CONTROL_TX_QUEUE, false, false)?;
        transport.finish_init();
        // Receive buffers were queued before DRIVER_OK: tell the device.
        for p in &ports {
            transport.notify(p.rx.index);
        }
        transport.notify(CONTROL_RX_QUEUE);
        let mut dev =
            VirtioSerial { transport, control_rx, control_tx, ports, multiport: Multiport::new(prefix, nr_ports) };
        dev.send_control(Multiport::device_ready());
        dev.poll();
        Ok(dev)
    }

    /// The ports in use, named so far: `(port id, name)`, in the order the
    /// device named them.
    pub fn ports(&self) -> impl Iterator<Item = (u32, &str)> {
        self.multiport.ports()
    }

    /// The port in use named exactly `name`.
    pub fn port_named(&self, name: &str) -> Option<u32> {
        self.multiport.port_named(name)
    }

    /// Port `port`'s name, if it is in use.
    pub fn port_name(&self, port: u32) -> Option<&str> {
        self.multiport.name(port)
    }

    /// Whether the host side of port `port` is open (a client is connected).
    pub fn host_open(&self, port: u32) -> bool {
        self.multiport.host_open(port)
    }

    /// Port `port`'s counters.
    pub fn stats(&self, port: u32) -> Stats {
        self.port(port).map(|p| p.stream.stats).unwrap_or_default()
    }

    /// Takes what the device has used: control messages, then received data
    /// into the ports' inboxes, then spent transmit buffers. Never waits.
    pub fn poll(&mut self) {
        self.poll_control();
        self.poll_data();
        for p in 0..self.ports.len() {
            self.reclaim_tx(p);
        }
    }

    /// The next byte received on `port`, if one is waiting and belongs to
    /// its current client (after a hang-up, see
    /// [`VirtioSerial::take_hangup`]).
    pub fn read_byte(&mut self, port: u32) -> Option<u8> {
        if self.port(port)?.stream.inbox_empty() {
            self.poll();
        }
        self.port_mut(port)?.stream.read_byte()
    }

    /// Whether the host side closed `port` since the last call, once
    /// everything its client sent has been read.
    pub fn take_hangup(&mut self, port: u32) -> bool {
        self.poll();
        self.port_mut(port).is_some_and(|p| p.stream.take_hangup())
    }

    /// Queues bytes to send on `port` (see [`VirtioSerial::flush`]); dropped
    /// while its host side is closed.
    pub fn write(&mut self, port: u32, data: &[u8]) {
        let open = self.host_open(port);
        let Some(p) = self.port_mut(port) else { return };
        if p.stream.queue(data, open) {
            self.flush(port);
        }
    }

    /// Hands `port`'s outbox to the device, as far as it has descriptors
    /// free.
    pub fn flush(&mut self, port: u32) {
        let Some(i) = self.index(port) else { return };
        if self.multiport.name(port).is_none() {
            self.ports[i].stream.drop_outbox();
            return;
        }
        self.reclaim_tx(i);
        let q = &mut self.ports[i];
        let mut notify = false;
        while q.in_flight.len() < DATA_QUEUE_SIZE {
            let Some(buf) = q.stream.next_chunk() else { break };
            // SAFETY: `buf` is kept in `in_flight` untouched (a Vec's heap
            // block does not move with the Vec) until `reclaim_tx` pops
            // this token and hands the same slice to `pop_used`.
            match unsafe { q.tx.add(&[&buf], &mut []) } {
                Ok(token) => {
                    q.stream.stats.sent += buf.len() as u64;
                    q.in_flight.push((token, buf));
                    notify |= q.tx.should_notify();
                }
                Err(e) => {
                    log::debug!("virtio-serial: port {port} transmit queue: {e:?}");
                    q.stream.stats.dropped += buf.len() as u64;
                    break;
                }
            }
        }
        if notify {
            let idx = q.tx_index;
            self.transport.notify(idx);
        }
    }

    /// The index of port `port` in `ports`, when it has queues.
    fn index(&self, port: u32) -> Option<usize> {
        let i = usize::try_from(port).ok()?;
        (i < self.ports.len()).then_some(i)
    }

    fn port(&self, port: u32) -> Option<&Port<H>> {
        self.ports.get(self.index(port)?)
    }

    fn port_mut(&mut self, port: u32) -> Option<&mut Port<H>> {
        let i = self.index(port)?;
        self.ports.get_mut(i)
    }

    /// Moves received data into every port's inbox, up to its limit; data
    /// of ports not in use is not ours: their buffers are recycled.
    fn poll_data(&mut self) {
        for i in 0..self.ports.len() {
            let used = self.multiport.name(i as u32).is_some();
            self.take_received(i, !used, false);
        }
    }

    /// Takes port `i`'s filled receive buffers into its inbox (or discards
    /// them), up to the inbox's limit unless `all` (everything the device
    /// has queued).
    fn take_received(&mut self, i: usize, discard: bool, all: bool) {
        let q = &mut self.ports[i];
        while discard || all || q.stream.has_room() {
            let stream = &mut q.stream;
            match q.rx.take(&mut self.transport, |data| {
                if !discard {
                    stream.receive(data);
                }
            }) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    log::debug!("virtio-serial: port {i} receive queue: {e:?}");
                    break;
                }
            }
        }
    }

    fn poll_control(&mut self) {
        let mut events = Vec::new();
        // A reply may draw an answer at once (PORT_READY: the port's name
        // and state): take it in the same poll.
        loop {
            let mut replies = Vec::new();
            loop {
                let mp = &mut self.multiport;
                let r =
                    self.control_rx.take(&mut self.transport, |msg| events.extend(mp.on_message(msg, &mut replies)));
                match r {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        log::debug!("virtio-serial: control queue: {e:?}");
                        break;
                    }
                }
            }
            if replies.is_empty() {
                break;
            }
            for m in replies {
                self.send_control(m);
            }
        }
        for ev in events {
            match ev {
                PortEvent::Found(id) => {
                    log::debug!("virtio-serial: port {id} is '{}'", self.multiport.name(id).unwrap_or("?"))
                }
                PortEvent::HostOpened(id) => log::debug!("virtio-serial: port {id}: host side opened"),
                PortEvent::Removed(id) => log::debug!("virtio-serial: port {id} removed"),
                PortEvent::HostClosed(id) => {
                    let Some(i) = self.index(id) else { continue };
                    // The device queued the departed client's last bytes
                    // before it said so: take them all first, so the
                    // hang-up falls after them in the stream.
                    self.take_received(i, false, true);
                    self.ports[i].stream.hang_up();
                }
            }
        }
    }

    /// Takes back port `i`'s transmit buffers the device has used.
    fn reclaim_tx(&mut self, i: usize) {
        let q = &mut self.ports[i];
        while let Some(token) = q.tx.peek_used() {
            let Some(j) = q.in_flight.iter().position(|(t, _)| *t == token) else { break };
            let (_, buf) = q.in_flight.swap_remove(j);
            // SAFETY: the token's buffer is `buf`, exactly as added in `flush`.
            if let Err(e) = unsafe { q.tx.pop_used(token, &[&buf], &mut []) } {
                log::debug!("virtio-serial: port {i} transmit queue: {e:?}");
                break;
            }
        }
    }

    /// Sends one control message and waits for the device to take it (the
    /// device handles the control queue as soon as it is notified).
    fn send_control(&mut self, m: ControlMsg) {
        let bytes = m.to_bytes();
        if let Err(e) = self.control_tx.add_notify_wait_pop(&[&bytes], &mut [], &mut self.transport) {
            log::debug!("virtio-serial: control message {m:?}: {e:?}");
        }
    }
}
