//! The QEMU virt board: entry assembly, early MMU, boot sequence and power-off.

mod clock;
mod console;
mod domains;
mod dt;
mod gdb_line;
mod power;
mod selftest;

use core::arch::global_asm;
use core::panic::PanicInfo;

use lantern_arch_arm::hw::{el2, gic, intid, timer};
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

/// Where QEMU puts the DTB for an ELF image (x0 is 0 then).
const QEMU_ELF_DTB: u64 = 0x4000_0000;

/// The hypervisor heap (also the source of guest frames and stage-2 tables):
/// the core's size-class heap, O(1) to free a frame (a buddy allocator's
/// merging scan took minutes to free a 256 MiB domain under TCG).
#[global_allocator]
static HEAP: Heap = Heap::new(lantern_common::heap::write_zeroes);

/// One 4 KiB translation table for the boot-time EL2 identity map.
#[repr(C, align(4096))]
pub struct BootTable([u64; 512]);

/// Level-0 table of the EL2 identity map (filled by the entry assembly).
// SAFETY: the symbol name is unique in the image; only the entry assembly
// refers to it (by address, before any Rust runs), as a 4 KiB-aligned table.
#[unsafe(no_mangle)]
static mut LANTERN_BOOT_L0: BootTable = BootTable([0; 512]);
/// Level-1 table of the EL2 identity map: 512 × 1 GiB blocks.
// SAFETY: the symbol name is unique in the image; only the entry assembly
// refers to it (by address, before any Rust runs), as a 4 KiB-aligned table.
#[unsafe(no_mangle)]
static mut LANTERN_BOOT_L1: BootTable = BootTable([0; 512]);

// Entry from QEMU at EL2, MMU off, x0 = DTB (or 0 for an ELF image).
// Sets the stack, zeroes .bss, allows FP/SIMD (Rust emits NEON), builds an
// identity map (1 GiB blocks: 1..256 GiB is RAM territory on virt and mapped
// Normal write-back, everything else Device-nGnRE, never executable) and turns
// the EL2 MMU on, so Rust never runs with the strict-alignment Device-memory
// rules of MMU-off.
global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mov x19, x0
    adrp x1, __stack_top
    add x1, x1, :lo12:__stack_top
    mov sp, x1
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
1:  cmp x1, x2
    b.hs 2f
    str xzr, [x1], #8
    b 1b
2:  mrs x1, cptr_el2
    bic x1, x1, #(1 << 10)
    msr cptr_el2, x1
    isb
    adrp x1, LANTERN_BOOT_L1
    add x1, x1, :lo12:LANTERN_BOOT_L1
    mov x2, #0
    ldr x6, ={normal}
    ldr x7, ={device}
3:  lsl x3, x2, #30
    mov x4, x7
    cbz x2, 4f
    cmp x2, #256
    b.hs 4f
    mov x4, x6
4:  orr x3, x3, x4
    str x3, [x1, x2, lsl #3]
    add x2, x2, #1
    cmp x2, #512
    b.lo 3b
    adrp x5, LANTERN_BOOT_L0
    add x5, x5, :lo12:LANTERN_BOOT_L0
    orr x3, x1, #3
    str x3, [x5]
    ldr x1, ={mair}
    msr mair_el2, x1
    mrs x1, id_aa64mmfr0_el1
    and x1, x1, #0xf
    cmp x1, #5
    mov x2, #5
    csel x1, x1, x2, lo
    lsl x1, x1, #16
    ldr x2, ={tcr}
    orr x1, x1, x2
    msr tcr_el2, x1
    msr ttbr0_el2, x5
    isb
    tlbi alle2
    dsb sy
    isb
    mrs x1, sctlr_el2
    ldr x2, ={sctlr_set}
    orr x1, x1, x2
    bic x1, x1, #(1 << 1)
    bic x1, x1, #(1 << 19)
    msr sctlr_el2, x1
    isb
    mov x0, x19
    bl lantern_main
5:  wfe
    b 5b
.ltorg
"#,
    // Block, AttrIndx 1 (Normal WB), inner shareable, AF.
    normal = const 0x705u64,
    // Block, AttrIndx 2 (Device-nGnRE), AF, XN.
    device = const (1u64 << 54) | 0x409,
    // Attr0 Device-nGnRnE, Attr1 Normal WB RA/WA, Attr2 Device-nGnRE.
    mair = const 0x04_ff_00u64,
    // RES1 (31, 23), SH0 inner, ORGN0/IRGN0 WB, T0SZ 16 (48-bit VA, level 0 start).
    tcr = const (1u64 << 31) | (1 << 23) | (3 << 12) | (1 << 10) | (1 << 8) | 16,
    // M, C, I.
    sctlr_set = const (1u64 << 0) | (1 << 2) | (1 << 12),
);

// SAFETY: both symbols are defined by link.ld at the first and past the last
// byte of the image; they are only ever used for their addresses, never read,
// so declaring them as `u8` is sound.
unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Facts about the machine the board found at boot.
pub struct Machine {
    /// Parsed device tree.
    pub dt: dt::BoardInfo,
    /// The physical GIC.
    pub gic: gic::Gic,
    /// Counter frequency.
    pub freq: u64,
    /// Counter value at entry.
    pub boot_ticks: u64,
}

// SAFETY: the name is unique in the image and the entry assembly's
// `bl lantern_main` is its only caller, with the C ABI this signature has:
// x0 = the DTB address (or 0), and it never returns.
#[unsafe(no_mangle)]
extern "C" fn lantern_main(x0: u64) -> ! {
    let boot_ticks = timer::now();
    let dtb = if x0 == 0 { QEMU_ELF_DTB } else { x0 };
    // SAFETY: QEMU placed a valid DTB there and nothing overwrites it (the
    // image and heap start above 0x40200000).
    let info = unsafe { dt::parse(dtb) };
    console::init(info.uart);
    println!(
        "(lantern) arm64 EL2 on QEMU virt, RAM {:#x}..{:#x}, bootargs \"{}\"",
        info.ram.0,
        info.ram.0 + info.ram.1,
        info.bootargs
    );
    power::set_semihosting(info.semihosting);

    // Heap: from the end of the image to the end of RAM, stopping below the
    // guest-module archive when QEMU loaded one there.
    // SAFETY: linker symbols; only their addresses are used.
    let (img_start, img_end) = unsafe { (&__image_start as *const u8 as u64, &__image_end as *const u8 as u64) };
    let ram_end = info.ram.0 + info.ram.1;
    let heap_end = match info.modules {
        Some((addr, _)) if addr > img_end && addr < ram_end => addr & !0xfff,
        _ => ram_end,
    };
    // SAFETY: [img_end, heap_end) is RAM that nothing else uses: above the
    // image (and its stack), below the module archive or the end of RAM.
    unsafe { HEAP.init(img_end as usize, heap_end as usize) };
    log::set_logger(&console::LOGGER).ok();
    log::set_max_level(info.log_level);
    log::info!(
        "image {:#x}..{:#x}, heap {} MiB, gic dist {:#x} redist {:#x}, pcie ecam {:x?} io {:x?}",
        img_start,
        img_end,
        (heap_end - img_end) >> 20,
        info.gicd,
        info.gicr,
        info.ecam,
        info.pci_io
    );

    el2::init();
    let mpidr = aarch64_cpu::registers::MPIDR_EL1.get();
    // SAFETY: the GIC frames come from the DTB and are mapped Device.
    let gic = unsafe { gic::Gic::init(info.gicd as usize, info.gicr as usize, mpidr) };
    gic.enable_ppi(intid::PPI_HYP_TIMER, 0x80);
    gic.enable_ppi(intid::PPI_VTIMER, 0x80);
    gic.enable_ppi(intid::PPI_MAINTENANCE, 0x80);
    log::info!("gicv3: {} list registers", gic.nr_lrs());
    if let Some(mut line) = gdb_line::probe_line(&info) {
        if let gdb_line::GdbLine::Uart(u, _) = &mut line {
            if info.bootargs.split_ascii_whitespace().any(|w| w == "lantern.gdb-uart-hello") {
                // Diagnostic: say hello, then echo to the console whatever
                // arrives within a second.
                u.write(b"lantern gdb serial line\n");
                let end = timer::now() + timer::frequency();
                let mut got = alloc::vec::Vec::new();
                while timer::now() < end && got.len() < 64 {
                    if let Some(b) = u.poll_read() {
                        got.push(b);
                        u.write_byte(b);
                    }
                }
                log::info!("gdb serial line received {:?}", core::str::from_utf8(&got).unwrap_or("<binary>"));
            }
        }
        *gdb_line::GDB_LINE.lock() = Some(line);
    }

    let freq = timer::frequency();
    // The platform states the counter's rate (the firmware, here QEMU, sets
    // CNTFRQ_EL0), so nothing is calibrated and a loaded host cannot skew
    // it; said once so tests can hold it against the rate guests observe.
    log::info!(
        "generic counter {}.{:03} MHz (CNTFRQ_EL0, as the platform states it)",
        freq / 1_000_000,
        freq / 1000 % 1000
    );
    let m = Machine { dt: info, gic, freq, boot_ticks };
    // The boot configuration (same syntax as on x86); the board's own words
    // (`lantern.modules=`, `lantern.semihosting`, `lantern.log=`) are not
    // domain options.
    let cfg = match lantern_common::boot_config::parse(m.dt.bootargs) {
        Ok(c) => c,
        Err(e) => {
            log::error!("boot configuration: {}", e.0);
            power::off(2, &m)
        }
    };
    if let Some(level) = cfg.log_level {
        log::set_max_level(level);
    }
    for w in &cfg.unknown {
        let w = w.strip_prefix("lantern.").unwrap_or(w);
        if !(w.starts_with("modules=") || w == "semihosting" || w == "gdb-uart-hello") {
            log::warn!("ignoring unknown boot word '{}'", w);
        }
    }
    if cfg.domains.is_empty() {
        log::info!("no domain= in the boot configuration: running the EL2 self-test");
        let ok = selftest::run(&m);
        power::off(if ok { 0 } else { 1 }, &m)
    }
    domains::run(&m, &cfg)
}

use aarch64_cpu::registers::Readable;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    console::emergency(format_args!("(lantern) PANIC: {}\n", info));
    power::off_raw(3)
}
