//! A virtio-serial device (a virtio console with VIRTIO_CONSOLE_F_MULTIPORT)
//! driven over `virtio-drivers`' transports and split virtqueues, exposing one
//! named port as a lossless byte pipe that also reports the host side opening
//! and closing it (QEMU's `virtserialport` on a socket chardev: a client
//! connecting and going away). Naming no architecture: the boards bring the
//! transport (PCI or MMIO) and the [`Hal`].
//!
//! Sending never waits for the host: bytes collect in an outbox and go to the
//! device as one buffer per [`VirtioSerial::flush`], and when the host side is
//! closed they are dropped (as the device itself would).

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod control;
pub mod hal;
pub mod pci;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use alloc::boxed::Box;
use bitflags::bitflags;

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::Hal;

pub use control::PortEvent;
use control::{ControlMsg, Multiport};

/// The port name the gdb stub's transport is looked up by
/// (`-device virtserialport,name=...`).
pub const GDB_PORT_NAME: &str = "org.lantern.gdb.0";

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
/// Ports given data queues (the device may offer 31): enough for the gdb
/// port and a few more.
const MAX_PORTS: u32 = 4;
/// The largest buffer handed to the device at once.
const TX_CHUNK: usize = 64 * 1024;
/// Bytes kept while the host does not read; beyond this output is dropped.
const OUTBOX_LIMIT: usize = 1 << 20;
/// Received bytes kept unread before the driver stops taking receive
/// buffers: then the device holds the rest and the host's writer waits (a
/// flood is paced by the reader, and memory stays bounded).
const INBOX_LIMIT: usize = 64 * 1024;

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

/// The receive and transmit queues of one port.
struct PortQueues<H: Hal> {
    rx: RxQueue<H, DATA_QUEUE_SIZE, RX_BUF>,
    tx: VirtQueue<H, DATA_QUEUE_SIZE>,
    tx_index: u16,
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

/// Counters, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes received on the port.
    pub received: u64,
    /// Bytes handed to the device.
    pub sent: u64,
    /// Bytes dropped: the host side was closed, or it stopped reading.
    pub dropped: u64,
    /// Times the host side closed the port.
    pub hangups: u64,
}

/// A virtio-serial device with one port in use, found by name.
pub struct VirtioSerial<H: Hal, T: Transport> {
    transport: T,
    control_rx: RxQueue<H, CONTROL_QUEUE_SIZE, CONTROL_BUF>,
    control_tx: VirtQueue<H, CONTROL_QUEUE_SIZE>,
    ports: Vec<PortQueues<H>>,
    multiport: Multiport,
    /// Received bytes not yet read.
    inbox: VecDeque<u8>,
    /// Bytes read so far (a position in the received stream).
    read_pos: u64,
    /// Where in the received stream the host side closed the port, until
    /// [`VirtioSerial::take_hangup`] reports it: bytes received later
    /// belong to the next client and wait until then.
    hangup_at: Option<u64>,
    /// Bytes waiting to be handed to the device.
    outbox: Vec<u8>,
    /// Buffers the device has not used yet, by descriptor token.
    in_flight: Vec<(u16, Vec<u8>)>,
    stats: Stats,
}

impl<H: Hal, T: Transport> VirtioSerial<H, T> {
    /// Brings the device up, and the port named `name` when the device has
    /// it (it may also appear later: QEMU adds ports when the driver says
    /// it is ready, which this does).
    pub fn new(mut transport: T, name: &'static str) -> Result<Self, Error> {
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
            ports.push(PortQueues { rx, tx, tx_index: rx_index + 1 });
        }
        let control_rx = RxQueue::new(&mut transport, CONTROL_RX_QUEUE)?;
        let control_tx = VirtQueue::new(&mut transport, CONTROL_TX_QUEUE, false, false)?;
        transport.finish_init();
        // Receive buffers were queued before DRIVER_OK: tell the device.
        for p in &ports {
            transport.notify(p.rx.index);
        }
        transport.notify(CONTROL_RX_QUEUE);
        let mut dev = VirtioSerial {
            transport,
            control_rx,
            control_tx,
            ports,
            multiport: Multiport::new(name, nr_ports),
            inbox: VecDeque::new(),
            read_pos: 0,
            hangup_at: None,
            outbox: Vec::new(),
            in_flight: Vec::new(),
            stats: Stats::default(),
        };
        dev.send_control(Multiport::device_ready());
        dev.poll();
        Ok(dev)
    }

    /// The port in use, once the device named it.
    pub fn port(&self) -> Option<u32> {
        self.multiport.port()
    }

    /// Whether the host side of the port is open (a client is connected).
    pub fn host_open(&self) -> bool {
        self.multiport.host_open()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Takes what the device has used: control messages, then received data
    /// into the inbox, then spent transmit buffers. Never waits.
    pub fn poll(&mut self) {
        self.poll_control();
        self.poll_data(false);
        self.reclaim_tx();
    }

    /// The next received byte, if one is waiting and belongs to the current
    /// client (after a hang-up, see [`VirtioSerial::take_hangup`]).
    pub fn read_byte(&mut self) -> Option<u8> {
        if self.inbox.is_empty() {
            self.poll();
        }
        if self.hangup_at.is_some_and(|at| self.read_pos >= at) {
            return None;
        }
        let b = self.inbox.pop_front()?;
        self.read_pos += 1;
        Some(b)
    }

    /// Whether the host side closed the port since the last call, once
    /// everything its client sent has been read.
    pub fn take_hangup(&mut self) -> bool {
        self.poll();
        match self.hangup_at {
            Some(at) if self.read_pos >= at => {
                self.hangup_at = None;
                true
            }
            _ => false,
        }
    }

    /// Queues bytes to send (see [`VirtioSerial::flush`]); dropped while the
    /// host side is closed.
    pub fn write(&mut self, data: &[u8]) {
        // While a hang-up is pending, output answers the departed client:
        // it must not reach the next one.
        if !self.host_open() || self.port().is_none() || self.hangup_at.is_some() {
            self.stats.dropped += data.len() as u64;
            return;
        }
        let room = OUTBOX_LIMIT.saturating_sub(self.outbox.len());
        let n = data.len().min(room);
        self.outbox.extend_from_slice(&data[..n]);
        self.stats.dropped += (data.len() - n) as u64;
        if self.outbox.len() >= TX_CHUNK {
            self.flush();
        }
    }

    /// Hands the outbox to the device, as far as it has descriptors free.
    pub fn flush(&mut self) {
        self.reclaim_tx();
        let Some(p) = self.port_queues() else {
            self.outbox.clear();
            return;
        };
        let mut notify = false;
        while !self.outbox.is_empty() && self.in_flight.len() < DATA_QUEUE_SIZE {
            let n = self.outbox.len().min(TX_CHUNK);
            let rest = self.outbox.split_off(n);
            let buf = core::mem::replace(&mut self.outbox, rest);
            let q = &mut self.ports[p];
            // SAFETY: `buf` is kept in `in_flight` untouched (a Vec's heap
            // block does not move with the Vec) until `reclaim_tx` pops
            // this token and hands the same slice to `pop_used`.
            match unsafe { q.tx.add(&[&buf], &mut []) } {
                Ok(token) => {
                    self.stats.sent += buf.len() as u64;
                    self.in_flight.push((token, buf));
                    notify |= q.tx.should_notify();
                }
                Err(e) => {
                    log::debug!("virtio-serial: transmit queue: {e:?}");
                    self.stats.dropped += buf.len() as u64;
                    break;
                }
            }
        }
        if notify {
            let idx = self.ports[p].tx_index;
            self.transport.notify(idx);
        }
    }

    fn port_queues(&self) -> Option<usize> {
        let id = self.multiport.port()? as usize;
        (id < self.ports.len()).then_some(id)
    }

    /// Moves received data into the inbox, up to [`INBOX_LIMIT`] unless
    /// `all` (everything the device has queued).
    fn poll_data(&mut self, all: bool) {
        let Some(p) = self.port_queues() else { return };
        let q = &mut self.ports[p];
        while all || self.inbox.len() < INBOX_LIMIT {
            let inbox = &mut self.inbox;
            let received = &mut self.stats.received;
            match q.rx.take(&mut self.transport, |data| {
                inbox.extend(data);
                *received += data.len() as u64;
            }) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    log::debug!("virtio-serial: receive queue: {e:?}");
                    break;
                }
            }
        }
        // Other ports' data is not ours: recycle their buffers.
        for (i, q) in self.ports.iter_mut().enumerate() {
            if i != p {
                while let Ok(true) = q.rx.take(&mut self.transport, |_| {}) {}
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
                PortEvent::Found(id) => log::debug!("virtio-serial: port {id} is '{}'", GDB_PORT_NAME),
                PortEvent::HostOpened => log::debug!("virtio-serial: host side opened"),
                PortEvent::HostClosed => {
                    self.stats.hangups += 1;
                    // The device queued the departed client's last bytes
                    // before it said so: take them all first, so the
                    // hang-up falls after them in the stream.
                    self.poll_data(true);
                    let end = self.read_pos + self.inbox.len() as u64;
                    self.hangup_at.get_or_insert(end);
                    self.stats.dropped += self.outbox.len() as u64;
                    self.outbox.clear();
                }
            }
        }
    }

    fn reclaim_tx(&mut self) {
        let Some(p) = self.port_queues() else { return };
        let q = &mut self.ports[p];
        while let Some(token) = q.tx.peek_used() {
            let Some(i) = self.in_flight.iter().position(|(t, _)| *t == token) else { break };
            let (_, buf) = self.in_flight.swap_remove(i);
            // SAFETY: the token's buffer is `buf`, exactly as added in `flush`.
            if let Err(e) = unsafe { q.tx.pop_used(token, &[&buf], &mut []) } {
                log::debug!("virtio-serial: transmit queue: {e:?}");
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
