//! Per-domain console: guest output (console_io, debug port, the PV console
//! ring) split into lines, kept in a short history for tools and handed to
//! the board's [`ConsoleSink`], which prints them prefixed `(dN) `; and where
//! the domain's PV console ring is ([`PvConsole`], driven by `pv_console`).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;

use crate::memory::{DomId, Gfn, PageRef};

/// Lines of history kept per domain.
pub const HISTORY_LINES: usize = 256;
/// Longest line; longer output is split.
pub const MAX_LINE: usize = 512;

/// Where a domain's complete console lines go: the board prints them on its
/// console as `(dN) line`. Called with the domain's console lock held, from
/// whatever context wrote the output.
pub trait ConsoleSink: Send + Sync {
    /// One complete line of domain `dom`'s output (no newline).
    fn line(&self, dom: DomId, line: &str);
}

/// A sink that drops every line (the lines stay in the history).
pub struct NoSink;

impl ConsoleSink for NoSink {
    fn line(&self, _dom: DomId, _line: &str) {}
}

/// A domain's PV console: where its ring is and which port is bound to us.
#[derive(Clone)]
pub struct PvConsole {
    /// The gfn the ring page is mapped at (`HVM_PARAM_CONSOLE_PFN`).
    pub gfn: Gfn,
    /// The domain's port bound to this backend (`HVM_PARAM_CONSOLE_EVTCHN`).
    pub port: u32,
    pub(crate) page: PageRef,
}

impl PvConsole {
    /// The ring page.
    pub fn page(&self) -> &PageRef {
        &self.page
    }
}

/// A domain's console state.
pub struct Console {
    dom: DomId,
    sink: Arc<dyn ConsoleSink>,
    partial: String,
    history: VecDeque<String>,
}

impl Console {
    /// An empty console for domain `dom` whose lines go to `sink`.
    pub fn new(dom: DomId, sink: Arc<dyn ConsoleSink>) -> Self {
        Console { dom, sink, partial: String::new(), history: VecDeque::new() }
    }

    /// Where this console's lines go (a forked domain's go to the same place).
    pub fn sink(&self) -> Arc<dyn ConsoleSink> {
        self.sink.clone()
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
        self.sink.line(self.dom, &line);
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
