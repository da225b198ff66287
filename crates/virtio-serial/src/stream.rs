//! One port's byte streams, without any device access: the received bytes
//! not yet read (and where in them the host side hung up), the bytes waiting
//! to go to the device, and the port's counters — so that what each port
//! guarantees (lossless, the hang-up after the departed client's last byte,
//! bounded memory) can be tested on the host, ports side by side.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// The largest buffer handed to the device at once.
pub const TX_CHUNK: usize = 64 * 1024;
/// Bytes kept per port while the host does not read; beyond this output is
/// dropped.
pub const OUTBOX_LIMIT: usize = 1 << 20;
/// Received bytes kept unread per port before the driver stops taking that
/// port's receive buffers: then the device holds the rest and the host's
/// writer waits (a flood is paced by the reader, and memory stays bounded).
pub const INBOX_LIMIT: usize = 64 * 1024;

/// Counters of one port, for diagnostics.
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

/// One port's streams.
#[derive(Debug, Default)]
pub struct PortStream {
    /// Received bytes not yet read.
    inbox: VecDeque<u8>,
    /// Bytes read so far (a position in the received stream).
    read_pos: u64,
    /// Where in the received stream the host side closed the port, until
    /// [`PortStream::take_hangup`] reports it: bytes received later belong
    /// to the next client and wait until then.
    hangup_at: Option<u64>,
    /// Bytes waiting to be handed to the device.
    outbox: Vec<u8>,
    /// Counters.
    pub stats: Stats,
}

impl PortStream {
    /// Nothing received, nothing to send.
    pub fn new() -> PortStream {
        PortStream::default()
    }

    /// Whether the inbox takes more (below [`INBOX_LIMIT`]).
    pub fn has_room(&self) -> bool {
        self.inbox.len() < INBOX_LIMIT
    }

    /// Bytes the device delivered.
    pub fn receive(&mut self, data: &[u8]) {
        self.inbox.extend(data);
        self.stats.received += data.len() as u64;
    }

    /// The next received byte, if one is waiting and belongs to the current
    /// client (after a hang-up, see [`PortStream::take_hangup`]).
    pub fn read_byte(&mut self) -> Option<u8> {
        if self.hangup_at.is_some_and(|at| self.read_pos >= at) {
            return None;
        }
        let b = self.inbox.pop_front()?;
        self.read_pos += 1;
        Some(b)
    }

    /// Whether nothing received waits to be read.
    pub fn inbox_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// The host side closed the port, after everything received so far (the
    /// caller takes the device's queued data first): output for the
    /// departed client is dropped.
    pub fn hang_up(&mut self) {
        self.stats.hangups += 1;
        let end = self.read_pos + self.inbox.len() as u64;
        // A second close before the first was taken: the first one's
        // position stands (its client's bytes end there).
        self.hangup_at.get_or_insert(end);
        self.drop_outbox();
    }

    /// Whether a hang-up is reported and not yet taken.
    pub fn hangup_pending(&self) -> bool {
        self.hangup_at.is_some()
    }

    /// Whether the host side closed the port since the last call, once
    /// everything its client sent has been read.
    pub fn take_hangup(&mut self) -> bool {
        match self.hangup_at {
            Some(at) if self.read_pos >= at => {
                self.hangup_at = None;
                true
            }
            _ => false,
        }
    }

    /// Queues bytes to send when `open` (the host side is open); dropped
    /// otherwise, and while a hang-up is pending (output then answers the
    /// departed client: it must not reach the next one), and beyond
    /// [`OUTBOX_LIMIT`]. True when a whole [`TX_CHUNK`] waits.
    pub fn queue(&mut self, data: &[u8], open: bool) -> bool {
        if !open || self.hangup_at.is_some() {
            self.stats.dropped += data.len() as u64;
            return false;
        }
        let room = OUTBOX_LIMIT.saturating_sub(self.outbox.len());
        let n = data.len().min(room);
        self.outbox.extend_from_slice(&data[..n]);
        self.stats.dropped += (data.len() - n) as u64;
        self.outbox.len() >= TX_CHUNK
    }

    /// The next buffer for the device: up to [`TX_CHUNK`] bytes from the
    /// front of the outbox.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.outbox.is_empty() {
            return None;
        }
        let n = self.outbox.len().min(TX_CHUNK);
        let rest = self.outbox.split_off(n);
        Some(core::mem::replace(&mut self.outbox, rest))
    }

    /// Drops what waits to be sent (counted).
    pub fn drop_outbox(&mut self) {
        self.stats.dropped += self.outbox.len() as u64;
        self.outbox.clear();
    }

    /// Bytes waiting to be sent.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(s: &mut PortStream) -> Vec<u8> {
        core::iter::from_fn(|| s.read_byte()).collect()
    }

    #[test]
    fn the_hang_up_falls_after_the_departed_clients_last_byte() {
        let mut s = PortStream::new();
        s.receive(b"$g#67");
        s.hang_up();
        // The next client's bytes arrive before the hang-up is taken.
        s.receive(b"$qSupported");
        assert!(!s.take_hangup(), "not before the old client's bytes are read");
        assert_eq!(read_all(&mut s), b"$g#67");
        assert!(!s.queue(b"reply to the old client", true));
        assert_eq!(s.outbox_len(), 0, "dropped while the hang-up is pending");
        assert!(s.take_hangup());
        assert!(!s.take_hangup(), "reported once");
        assert_eq!(read_all(&mut s), b"$qSupported");
        assert_eq!(s.stats.hangups, 1);
        assert_eq!(s.stats.received, 16);
    }

    #[test]
    fn output_is_chunked_bounded_and_dropped_while_closed() {
        let mut s = PortStream::new();
        assert!(!s.queue(b"closed", false));
        assert_eq!(s.stats.dropped, 6);
        let big = vec![7u8; TX_CHUNK + 10];
        assert!(s.queue(&big, true), "a whole chunk waits");
        assert_eq!(s.next_chunk().map(|c| c.len()), Some(TX_CHUNK));
        assert_eq!(s.next_chunk().map(|c| c.len()), Some(10));
        assert_eq!(s.next_chunk(), None);
        let flood = vec![1u8; OUTBOX_LIMIT + 5];
        s.queue(&flood, true);
        assert_eq!(s.outbox_len(), OUTBOX_LIMIT);
        assert_eq!(s.stats.dropped, 6 + 5);
        s.hang_up();
        assert_eq!((s.outbox_len(), s.stats.dropped), (0, 6 + 5 + OUTBOX_LIMIT as u64));
        let mut r = PortStream::new();
        r.receive(&vec![0; INBOX_LIMIT]);
        assert!(!r.has_room(), "the inbox is full: the device keeps the rest");
    }

    #[test]
    fn two_ports_interleaved_and_one_hangs_up() {
        // The whole-system port and a domain's: each client's traffic stays
        // on its own port, and one client leaving ends nothing on the other.
        let (mut sys, mut dom) = (PortStream::new(), PortStream::new());
        sys.receive(b"$qSup");
        dom.receive(b"$?#3f");
        sys.receive(b"ported#37");
        sys.queue(b"+", true);
        dom.queue(b"$S05#b8", true);
        dom.receive(b"$D#44");
        dom.hang_up();
        dom.receive(b"$qSupported#37");
        sys.receive(b"$g#67");
        assert!(!sys.hangup_pending() && dom.hangup_pending());
        assert!(!sys.take_hangup());
        assert_eq!(read_all(&mut sys), b"$qSupported#37$g#67");
        assert!(!sys.take_hangup(), "the other port's hang-up is not this one's");
        sys.queue(b"$00#60", true);
        assert_eq!(sys.outbox_len(), 7);
        assert_eq!(dom.outbox_len(), 0, "the departed domain client's reply is dropped");
        assert_eq!(read_all(&mut dom), b"$?#3f$D#44");
        assert!(dom.take_hangup());
        assert_eq!(read_all(&mut dom), b"$qSupported#37");
        assert_eq!(sys.next_chunk().as_deref(), Some(&b"+$00#60"[..]));
        assert_eq!((sys.stats.hangups, dom.stats.hangups), (0, 1));
    }
}
