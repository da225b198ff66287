//! The QEMU virt board (riscv64): entry assembly, the H-extension check,
//! console, heap and boot sequence.

mod clock;
mod console;
mod domains;
mod dt;
mod gdb_line;
mod power;

use core::arch::global_asm;
use core::panic::PanicInfo;

use lantern_arch_riscv::hw::hs;
use lantern_common::heap::Heap;

pub use console::print_fmt;

/// Prints to the console (no newline).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::board::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::board::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Exit statuses besides the verdict's 0 and 1.
pub mod status {
    /// The boot configuration did not parse.
    pub const BAD_BOOT_CONFIG: u32 = 2;
    /// The CPU has no H extension.
    pub const NO_H_EXTENSION: u32 = 3;
    /// The hypervisor panicked.
    pub const PANIC: u32 = 101;
}

/// The hypervisor heap (also the source of guest frames and G-stage tables).
#[global_allocator]
static HEAP: Heap = Heap::new(lantern_common::heap::write_zeroes);

// Entry from OpenSBI in HS-mode, translation off, a0 = hart id, a1 = the
// DTB: the stack, .bss zeroed, the FP unit on (Rust may use its registers),
// then Rust.
global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    la sp, __stack_top
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  li t0, (3 << 13)
    csrs sstatus, t0
    call lantern_main
3:  wfi
    j 3b
"#
);

// SAFETY: both symbols are defined by link.ld at the first and past the last
// byte of the image; only their addresses are used.
unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Facts about the machine the board found at boot.
pub struct Machine {
    /// Parsed device tree.
    pub dt: dt::BoardInfo,
    /// `time`'s rate.
    pub freq: u64,
    /// `time` at entry.
    pub boot_ticks: u64,
}

// SAFETY: the name is unique in the image and the entry assembly's
// `call lantern_main` is its only caller, with a0/a1 as OpenSBI left them.
#[unsafe(no_mangle)]
extern "C" fn lantern_main(_hartid: u64, dtb: u64) -> ! {
    let boot_ticks = hs::now();
    // SAFETY: OpenSBI passes QEMU's DTB, which stays in place (the heap
    // stops below it).
    let Some(info) = (unsafe { dt::parse(dtb) }) else {
        console::emergency(format_args!("(lantern) no device tree at {dtb:#x}\n"));
        power::off(status::BAD_BOOT_CONFIG)
    };
    console::init(info.uart);
    power::set_finisher(info.finisher);
    println!(
        "(lantern) riscv64 HS-mode on QEMU virt, RAM {:#x}..{:#x}, bootargs \"{}\"",
        info.ram.0,
        info.ram.0 + info.ram.1,
        info.bootargs
    );
    if !hs::has_h_extension() {
        println!("(lantern) error: this CPU has no H extension (run QEMU with -cpu rv64,h=true)");
        power::off(status::NO_H_EXTENSION)
    }
    hs::init();

    // Heap: from the end of the image, stopping below the module archive
    // and QEMU's DTB, whichever comes first.
    // SAFETY: linker symbols; only their addresses are used.
    let (img_start, img_end) = unsafe { (&__image_start as *const u8 as u64, &__image_end as *const u8 as u64) };
    let ram_end = info.ram.0 + info.ram.1;
    let mut heap_end = ram_end;
    for (addr, _) in [info.modules, Some(info.dtb)].into_iter().flatten() {
        if addr > img_end && addr < heap_end {
            heap_end = addr & !0xfff;
        }
    }
    // SAFETY: [img_end, heap_end) is RAM that nothing else uses: above the
    // image and its stack, below the module archive and the DTB.
    unsafe { HEAP.init(img_end as usize, heap_end as usize) };
    log::set_logger(&console::LOGGER).ok();
    log::set_max_level(info.log_level);
    log::info!(
        "image {:#x}..{:#x}, heap {} MiB, dtb {:#x}, pcie ecam {:x?} io {:x?}",
        img_start,
        img_end,
        (heap_end - img_end) >> 20,
        info.dtb.0,
        info.ecam,
        info.pci_io
    );
    let line = gdb_line::probe_line(&info);
    let freq = info.timebase_hz;
    // The platform states the rate (the DTB's /cpus/timebase-frequency), so
    // nothing is calibrated; said once so tests can hold it against the
    // rate guests observe.
    log::info!("timebase {}.{:03} MHz (the DTB's timebase-frequency)", freq / 1_000_000, freq / 1000 % 1000);
    let m = Machine { dt: info, freq, boot_ticks };
    let cfg = match lantern_common::boot_config::parse(m.dt.bootargs) {
        Ok(c) => c,
        Err(e) => {
            log::error!("boot configuration: {}", e.0);
            power::off(status::BAD_BOOT_CONFIG)
        }
    };
    if let Some(level) = cfg.log_level {
        log::set_max_level(level);
    }
    for w in &cfg.unknown {
        let w = w.strip_prefix("lantern.").unwrap_or(w);
        if !w.starts_with("modules=") {
            log::warn!("ignoring unknown boot word '{}'", w);
        }
    }
    if cfg.domains.is_empty() {
        log::error!("no domain= in the boot configuration");
        power::off(status::BAD_BOOT_CONFIG)
    }
    domains::run(&m, &cfg, line)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    console::emergency(format_args!("(lantern) PANIC: {}\n", info));
    power::off(status::PANIC)
}
