//! COM1 console (16550 at I/O port 0x3F8): output, polled input, and the
//! `log` backend writing to it.
//!
//! One physical CPU and interrupt handlers that never print, so a spin lock
//! around the port is enough; `print!`/`println!` go straight to the UART.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::SerialPort;

static COM1: Mutex<Option<SerialPort>> = Mutex::new(None);

/// Initialises COM1 (115200 8N1, FIFOs on).
pub fn init() {
    // SAFETY: 0x3F8 is COM1 on q35; nothing else in the hypervisor touches
    // those ports.
    let mut port = unsafe { SerialPort::new(0x3F8) };
    port.init();
    *COM1.lock() = Some(port);
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text to the console (used by the print macros).
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut guard = COM1.lock();
    if let Some(port) = guard.as_mut() {
        let _ = port.write_fmt(args);
    }
}

/// The next byte typed at COM1, if one is waiting (polled: COM1 raises no
/// interrupt here).
pub fn try_read() -> Option<u8> {
    COM1.lock().as_mut().and_then(|p| p.try_receive().ok())
}

/// `print!` to COM1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!($($arg)*)) };
}

/// `println!` to COM1.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The `log` backend: one line per record on COM1.
static LOGGER: lantern_common::log_filter::ConsoleLogger = lantern_common::log_filter::ConsoleLogger(write_fmt);
