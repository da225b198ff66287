//! Per-domain console: guest output (console_io, debug port) split into
//! lines, kept in a short history for tools and handed to the board's sink,
//! which prints them prefixed `(dN) `.

use alloc::collections::VecDeque;
use alloc::string::String;

use crate::memory::DomId;

/// Lines of history kept per domain.
pub const HISTORY_LINES: usize = 256;
/// Longest line; longer output is split.
pub const MAX_LINE: usize = 512;

/// A board's console sink: receives each complete line of a domain.
pub type Sink = fn(DomId, &str);

static SINK: spin::RwLock<Option<Sink>> = spin::RwLock::new(None);

/// Installs the board's console sink.
pub fn set_sink(sink: Sink) {
    *SINK.write() = Some(sink);
}

/// A domain's console state.
pub struct Console {
    dom: DomId,
    partial: String,
    history: VecDeque<String>,
}

impl Console {
    /// An empty console for domain `dom`.
    pub fn new(dom: DomId) -> Self {
        Console { dom, partial: String::new(), history: VecDeque::new() }
    }

    /// Appends guest output; emits every completed line.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => self.flush_line(),
                b'\r' => {}
                // Keep the console printable: escape control bytes.
                0x20..=0x7e | b'\t' => self.partial.push(b as char),
                _ => {
                    use core::fmt::Write;
                    let _ = write!(self.partial, "\\x{b:02x}");
                }
            }
            if self.partial.len() >= MAX_LINE {
                self.flush_line();
            }
        }
    }

    fn flush_line(&mut self) {
        let line = core::mem::take(&mut self.partial);
        if let Some(sink) = *SINK.read() {
            sink(self.dom, &line);
        }
        if self.history.len() == HISTORY_LINES {
            self.history.pop_front();
        }
        self.history.push_back(line);
    }

    /// The last complete lines, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(|s| s.as_str())
    }
}
