//! Packet framing in front of `gdbstub`: turns the raw byte stream of a
//! serial line into whole, checksum-verified packets, so that line noise,
//! truncated and oversized packets never reach (and never kill) the
//! protocol engine.
//!
//! A serial line has no hang-up: a gdb that vanished mid-packet leaves half a
//! packet behind, and the next gdb starts with `+$qSupported...`. So a `$`
//! inside a packet body abandons the old packet and starts a new one (gdb
//! escapes `$` in binary data, so a raw `$` never belongs to a body).

use alloc::vec::Vec;

/// What a byte (or the end of a packet) amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete packet with a good checksum; the body is in
    /// [`Framer::body`] until the next call.
    Packet,
    /// `0x03` outside a packet: gdb's interrupt (Ctrl-C).
    Interrupt,
    /// `+` outside a packet.
    Ack,
    /// `-` outside a packet: gdb wants the last reply again.
    Nack,
    /// A packet whose checksum did not match (answer `-`).
    BadChecksum,
    /// A packet longer than the buffer (dropped; answer `-`).
    Oversized,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between packets.
    Idle,
    /// Inside `$...`.
    Body,
    /// Inside an over-long body: discard until `#`.
    Overflow,
    /// After `#`: first checksum digit.
    Sum1,
    /// Second checksum digit.
    Sum2,
}

/// Counters for diagnostics (`monitor stats` and the tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Good packets.
    pub packets: u64,
    /// Bytes outside packets that were neither `+`, `-` nor `0x03`.
    pub garbage: u64,
    /// Packets abandoned because a new `$` started before their `#`.
    pub truncated: u64,
    /// Packets with a bad checksum.
    pub bad_checksum: u64,
    /// Packets longer than the buffer.
    pub oversized: u64,
}

/// The framing state machine.
pub struct Framer {
    state: State,
    body: Vec<u8>,
    max_body: usize,
    sum_hi: u8,
    /// The body in hand outgrew the buffer (state went through Overflow).
    overflowed: bool,
    /// Counters.
    pub stats: FrameStats,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Framer {
    /// A framer accepting bodies of at most `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Framer {
            state: State::Idle,
            body: Vec::with_capacity(max_body),
            max_body,
            sum_hi: 0,
            overflowed: false,
            stats: FrameStats::default(),
        }
    }

    /// The body (between `$` and `#`) of the packet just completed.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether a packet is partly received.
    pub fn in_packet(&self) -> bool {
        self.state != State::Idle
    }

    /// Consumes one byte; returns an event when one is complete.
    pub fn push(&mut self, b: u8) -> Option<Event> {
        match self.state {
            State::Idle => match b {
                b'$' => {
                    self.start();
                    None
                }
                b'+' => Some(Event::Ack),
                b'-' => Some(Event::Nack),
                0x03 => Some(Event::Interrupt),
                _ => {
                    self.stats.garbage += 1;
                    None
                }
            },
            State::Body | State::Overflow if b == b'$' => {
                // The previous packet never finished: its sender is gone.
                self.stats.truncated += 1;
                self.start();
                None
            }
            State::Body | State::Overflow if b == b'#' => {
                self.state = State::Sum1;
                None
            }
            State::Body => {
                if self.body.len() >= self.max_body {
                    self.state = State::Overflow;
                    self.overflowed = true;
                } else {
                    self.body.push(b);
                }
                None
            }
            State::Overflow => None,
            State::Sum1 if self.overflowed => {
                self.state = State::Sum2;
                None
            }
            State::Sum2 if self.overflowed => {
                self.state = State::Idle;
                self.overflowed = false;
                self.stats.oversized += 1;
                self.body.clear();
                Some(Event::Oversized)
            }
            State::Sum1 => match hex_val(b) {
                Some(v) => {
                    self.sum_hi = v;
                    self.state = State::Sum2;
                    None
                }
                None => self.bad_sum(b),
            },
            State::Sum2 => {
                let Some(lo) = hex_val(b) else { return self.bad_sum(b) };
                self.state = State::Idle;
                let sum = self.body.iter().fold(0u8, |a, x| a.wrapping_add(*x));
                if sum == (self.sum_hi << 4) | lo {
                    self.stats.packets += 1;
                    Some(Event::Packet)
                } else {
                    self.stats.bad_checksum += 1;
                    Some(Event::BadChecksum)
                }
            }
        }
    }

    fn start(&mut self) {
        self.body.clear();
        self.overflowed = false;
        self.state = State::Body;
    }

    fn bad_sum(&mut self, b: u8) -> Option<Event> {
        self.stats.bad_checksum += 1;
        self.state = State::Idle;
        // A malformed checksum digit may itself start the next packet.
        if b == b'$' {
            self.start();
        }
        Some(Event::BadChecksum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Framer, s: &[u8]) -> Vec<Event> {
        s.iter().filter_map(|b| f.push(*b)).collect()
    }

    #[test]
    fn good_bad_and_truncated() {
        let mut f = Framer::new(16);
        assert_eq!(feed(&mut f, b"+$g#67"), [Event::Ack, Event::Packet]);
        assert_eq!(f.body(), b"g");
        assert_eq!(feed(&mut f, b"$g#68"), [Event::BadChecksum]);
        assert_eq!(feed(&mut f, b"$m1234$g#67"), [Event::Packet]);
        assert_eq!(f.body(), b"g");
        assert_eq!(f.stats.truncated, 1);
        assert_eq!(feed(&mut f, b"xyz\x03-"), [Event::Interrupt, Event::Nack]);
        assert_eq!(f.stats.garbage, 3);
    }

    #[test]
    fn oversized() {
        let mut f = Framer::new(4);
        assert_eq!(feed(&mut f, b"$abcdefgh#00"), [Event::Oversized]);
        assert_eq!(feed(&mut f, b"$abcd#8a"), [Event::Packet]);
        assert_eq!(f.body(), b"abcd");
    }
}
