//! The 16550 console (output and polled input) and the `log` backend that
//! writes to it.

use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicUsize, Ordering};

const DATA: usize = 0;
const IER: usize = 1;
const FCR: usize = 2;
const LCR: usize = 3;
const LSR: usize = 5;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;

/// The 16550 at a fixed MMIO address (QEMU virt: byte registers).
pub struct Console {
    base: usize,
}

impl Console {
    fn rd(&self, reg: usize) -> u8 {
        // SAFETY: one of the 16550's registers from the DTB; translation is
        // off in HS, so the address is the device's.
        unsafe { read_volatile((self.base + reg) as *const u8) }
    }

    fn wr(&self, reg: usize, v: u8) {
        // SAFETY: as in `rd`.
        unsafe { write_volatile((self.base + reg) as *mut u8, v) }
    }

    fn init(&self) {
        self.wr(IER, 0);
        self.wr(LCR, 0x03);
        self.wr(FCR, 0x07);
    }

    /// Sends one byte, waiting while the transmitter is full.
    pub fn putc(&self, c: u8) {
        while self.rd(LSR) & LSR_THRE == 0 {
            core::hint::spin_loop();
        }
        self.wr(DATA, c);
    }

    /// Receives one byte if one is waiting.
    pub fn getc(&self) -> Option<u8> {
        (self.rd(LSR) & LSR_DR != 0).then(|| self.rd(DATA))
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.putc(b'\r');
            }
            self.putc(b);
        }
        Ok(())
    }
}

static CONSOLE: spin::Mutex<Option<Console>> = spin::Mutex::new(None);
/// The console's address, for the panic path (which must not take the lock).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// QEMU virt's 16550, before the DTB says otherwise.
const DEFAULT_BASE: usize = 0x1000_0000;

/// Initialises the console at `base`.
pub fn init(base: u64) {
    let c = Console { base: base as usize };
    c.init();
    BASE.store(base as usize, Ordering::Release);
    *CONSOLE.lock() = Some(c);
}

/// The next byte typed at the console, if one is waiting.
pub fn try_read() -> Option<u8> {
    CONSOLE.lock().as_ref().and_then(Console::getc)
}

/// Writes formatted text to the console.
pub fn print_fmt(args: fmt::Arguments) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        let _ = c.write_fmt(args);
    }
}

/// Writes formatted text without taking the console lock (panic path).
pub fn emergency(args: fmt::Arguments) {
    let base = BASE.load(Ordering::Acquire);
    let mut c = Console { base: if base == 0 { DEFAULT_BASE } else { base } };
    let _ = c.write_fmt(args);
}

/// The `log` backend: one line per record on the console.
pub static LOGGER: lantern_common::log_filter::ConsoleLogger = lantern_common::log_filter::ConsoleLogger(print_fmt);
