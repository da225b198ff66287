//! The PL011 console (output and polled input) and the `log` backend that
//! writes to it.

use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};

const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;
const LCR_H: usize = 0x2c;
const CR: usize = 0x30;
const IMSC: usize = 0x38;
const ICR: usize = 0x44;

/// A PL011 UART at a fixed MMIO address.
pub struct Console {
    base: usize,
}

impl Console {
    fn reg(&self, off: usize) -> *mut u32 {
        (self.base + off) as *mut u32
    }

    fn init(&self) {
        // SAFETY: `base` is the PL011 from the DTB, mapped Device; these are
        // its documented registers.
        unsafe {
            write_volatile(self.reg(CR), 0);
            write_volatile(self.reg(IMSC), 0);
            write_volatile(self.reg(ICR), 0x7ff);
            // 8N1, FIFOs on.
            write_volatile(self.reg(LCR_H), (3 << 5) | (1 << 4));
            // UARTEN | TXE | RXE.
            write_volatile(self.reg(CR), (1 << 0) | (1 << 8) | (1 << 9));
        }
    }

    /// Sends one byte, waiting while the FIFO is full.
    pub fn putc(&self, c: u8) {
        // SAFETY: PL011 registers, as in `init`.
        unsafe {
            while read_volatile(self.reg(FR)) & FR_TXFF != 0 {}
            write_volatile(self.reg(DR), c as u32);
        }
    }

    /// Receives one byte if one is waiting.
    pub fn getc(&self) -> Option<u8> {
        // SAFETY: PL011 registers, as in `init`.
        unsafe {
            if read_volatile(self.reg(FR)) & FR_RXFE != 0 {
                None
            } else {
                Some(read_volatile(self.reg(DR)) as u8)
            }
        }
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
static BASE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Initialises the console at `base`.
pub fn init(base: u64) {
    let c = Console { base: base as usize };
    c.init();
    BASE.store(base as usize, core::sync::atomic::Ordering::Release);
    *CONSOLE.lock() = Some(c);
}

/// The next byte typed at the console, if one is waiting (polled: the
/// PL011's receive interrupt stays masked).
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
    let base = BASE.load(core::sync::atomic::Ordering::Acquire);
    let base = if base == 0 { 0x0900_0000 } else { base };
    let mut c = Console { base };
    let _ = c.write_fmt(args);
}

/// The `log` backend: one line per record on the console.
pub static LOGGER: lantern_common::log_filter::ConsoleLogger = lantern_common::log_filter::ConsoleLogger(print_fmt);
