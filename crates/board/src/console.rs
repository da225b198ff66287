//! The domains' consoles on the board's one serial console, as
//! `(dN) line`, with the hypervisor's own `(lantern) ` lines between them.

use core::fmt::Arguments;

use lantern_common::console::{ConsoleSink, LinePrefixer};
use lantern_common::memory::DomId;

/// Every domain's console lines, on one serial line.
pub struct SerialConsole {
    /// The line's open-line state (shared by every domain).
    lines: LinePrefixer,
    /// Prints raw text on the board's console.
    print: fn(Arguments<'_>),
}

impl SerialConsole {
    /// The console printing through `print` (raw text: the board's UART
    /// driver turns `\n` into the line's newline).
    pub const fn new(print: fn(Arguments<'_>)) -> Self {
        SerialConsole { lines: LinePrefixer::new(), print }
    }

    /// Prints one of the hypervisor's own lines, `(lantern) line`, ending a
    /// domain's open line first.
    pub fn lantern_line(&self, line: &str) {
        self.lines.close(&self.print);
        (self.print)(format_args!("(lantern) {}\n", line));
    }
}

impl ConsoleSink for SerialConsole {
    fn line(&self, dom: DomId, line: &str) {
        self.lines.line(dom, line, &self.print);
    }

    fn partial(&self, dom: DomId, text: &str) -> bool {
        self.lines.partial(dom, text, &self.print);
        true
    }
}
