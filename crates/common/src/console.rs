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
    /// One complete line of domain `dom`'s output (no newline) — or, after
    /// [`Self::partial`] showed its beginning, the rest of it.
    fn line(&self, dom: DomId, line: &str);
    /// The beginning of a line not ended yet (a shell's prompt, what a
    /// person types echoed back), shown now because someone is typing at
    /// that domain; more of it follows in `partial` or `line`. Returns
    /// whether it was shown: a sink that prints whole lines only returns
    /// `false` (the default), and `line` then gets the whole line.
    fn partial(&self, dom: DomId, text: &str) -> bool {
        let _ = (dom, text);
        false
    }
}

/// Prefixes domain output with `(dN) ` on a line-oriented console, keeping
/// track of a line left open by [`ConsoleSink::partial`] so that its rest,
/// or another domain's line, continues or starts cleanly.
#[derive(Default)]
pub struct LinePrefixer {
    open: spin::Mutex<Option<DomId>>,
}

impl LinePrefixer {
    /// A prefixer with no line open.
    pub const fn new() -> Self {
        LinePrefixer { open: spin::Mutex::new(None) }
    }

    /// Prints (through `print`, raw text) the complete line, or the rest of
    /// `dom`'s open line, and a newline.
    pub fn line(&self, dom: DomId, text: &str, print: &dyn Fn(core::fmt::Arguments<'_>)) {
        self.emit(dom, text, true, print);
    }

    /// Prints the beginning (or more) of `dom`'s unfinished line.
    pub fn partial(&self, dom: DomId, text: &str, print: &dyn Fn(core::fmt::Arguments<'_>)) {
        self.emit(dom, text, false, print);
    }

    /// `text` of `dom`: continuing its open line, or on a line of its own
    /// (ending another domain's open one first); `ends` closes it.
    fn emit(&self, dom: DomId, text: &str, ends: bool, print: &dyn Fn(core::fmt::Arguments<'_>)) {
        let mut open = self.open.lock();
        let (before, prefix) = match *open {
            Some(d) if d == dom => ("", false),
            Some(_) => ("\n", true),
            None => ("", true),
        };
        let end = if ends { "\n" } else { "" };
        if prefix {
            print(format_args!("{before}(d{dom}) {text}{end}"));
        } else {
            print(format_args!("{text}{end}"));
        }
        *open = (!ends).then_some(dom);
    }

    /// Ends an open line before the hypervisor prints one of its own.
    pub fn close(&self, print: &dyn Fn(core::fmt::Arguments<'_>)) {
        if self.open.lock().take().is_some() {
            print(format_args!("\n"));
        }
    }
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
    /// How much of `partial` the sink has shown already.
    shown: usize,
    history: VecDeque<String>,
}

impl Console {
    /// An empty console for domain `dom` whose lines go to `sink`.
    pub fn new(dom: DomId, sink: Arc<dyn ConsoleSink>) -> Self {
        Console { dom, sink, partial: String::new(), shown: 0, history: VecDeque::new() }
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

    /// Shows the unfinished line's new text now (the domain has someone
    /// typing at it: a prompt must not wait for its newline).
    pub fn show_partial(&mut self) {
        if self.partial.len() > self.shown && self.sink.partial(self.dom, &self.partial[self.shown..]) {
            self.shown = self.partial.len();
        }
    }

    fn flush_line(&mut self) {
        let line = core::mem::take(&mut self.partial);
        let shown = core::mem::take(&mut self.shown);
        self.sink.line(self.dom, &line[shown..]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A sink printing through a [`LinePrefixer`] into a string.
    #[derive(Default)]
    struct Screen {
        lines: LinePrefixer,
        text: spin::Mutex<String>,
    }

    impl Screen {
        fn print(&self) -> impl Fn(core::fmt::Arguments<'_>) + '_ {
            |a| {
                use core::fmt::Write;
                let _ = self.text.lock().write_fmt(a);
            }
        }
    }

    impl ConsoleSink for Screen {
        fn line(&self, dom: DomId, line: &str) {
            self.lines.line(dom, line, &self.print());
        }
        fn partial(&self, dom: DomId, text: &str) -> bool {
            self.lines.partial(dom, text, &self.print());
            true
        }
    }

    #[test]
    fn an_unfinished_line_shows_when_asked_and_completes_in_place() {
        let screen = Arc::new(Screen::default());
        let mut d1 = Console::new(1, screen.clone());
        let mut d2 = Console::new(2, screen.clone());
        d1.write(b"boot done\n~ # ");
        assert_eq!(*screen.text.lock(), "(d1) boot done\n", "a partial line waits to be asked");
        d1.show_partial();
        d1.write(b"ec");
        d1.show_partial();
        d1.show_partial();
        d1.write(b"ho hi\nhi\n");
        assert_eq!(*screen.text.lock(), "(d1) boot done\n(d1) ~ # echo hi\n(d1) hi\n");
        // Another domain's line breaks an open one cleanly.
        d1.write(b"~ # ");
        d1.show_partial();
        d2.write(b"tick\n");
        d1.write(b"\n");
        assert!(screen.text.lock().ends_with("(d1) ~ # \n(d2) tick\n(d1) \n"), "{}", screen.text.lock());
        // The history keeps whole lines.
        let h: Vec<String> = d1.history().map(|l| l.to_string()).collect();
        assert_eq!(h, ["boot done", "~ # echo hi", "hi", "~ # "]);
    }

    #[test]
    fn a_whole_line_sink_gets_whole_lines() {
        struct Lines(spin::Mutex<Vec<String>>);
        impl ConsoleSink for Lines {
            fn line(&self, _dom: DomId, line: &str) {
                self.0.lock().push(line.to_string());
            }
        }
        let sink = Arc::new(Lines(spin::Mutex::new(Vec::new())));
        let mut c = Console::new(1, sink.clone());
        c.write(b"~ # ");
        c.show_partial();
        c.write(b"ls\n");
        assert_eq!(*sink.0.lock(), ["~ # ls"]);
    }
}
