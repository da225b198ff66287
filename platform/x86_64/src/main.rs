//! Lantern on QEMU q35: the x86_64 board. Boots through PVH, brings up the
//! console, heap, interrupts and SVM, then runs the domains named on the
//! command line and ends QEMU with a verdict through isa-debug-exit.

#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod clock;
mod domains;
mod gdb_line;

mod heap;
mod hpet;
mod interrupts;
mod selftest;
mod serial;
mod start_info;

use core::panic::PanicInfo;

/// isa-debug-exit port (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
const DEBUG_EXIT_PORT: u16 = 0xF4;

/// The scheduler's time slice, in microseconds. Every vCPU shares QEMU's
/// one CPU, and a guest spinning without PAUSE on another of its vCPUs
/// (Linux's boot CPU loops on `schedule()` while an application processor
/// comes up and calibrates its delay loop on the boot CPU's ticks) keeps
/// the CPU for a whole slice: 2 ms instead of 10 cut a 4-vCPU Debian boot's
/// CPU bring-up by about a third, while a slice still costs one world
/// switch per 2 ms of guest time.
const SLICE_US: u64 = 2_000;
/// Value written for "every domain ended cleanly": QEMU exits with 33.
pub const EXIT_SUCCESS: u32 = 0x10;
/// Value written for failure: QEMU exits with 35.
pub const EXIT_FAILURE: u32 = 0x11;

/// Ends the QEMU run with the hypervisor's verdict.
pub fn exit_qemu(success: bool) -> ! {
    let code = if success { EXIT_SUCCESS } else { EXIT_FAILURE };
    // SAFETY: writing the isa-debug-exit port terminates QEMU; on a machine
    // without the device the write is ignored and we halt below.
    unsafe { x86::io::outl(DEBUG_EXIT_PORT, code) };
    loop {
        // SAFETY: halting with interrupts off parks the CPU for good.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

extern "C" {
    static __image_end: u8;
}

#[no_mangle]
extern "C" fn kmain(start_info_pa: u64) -> ! {
    serial::init();
    println!("(lantern) Lantern x86_64 (QEMU q35, AMD SVM)");
    let Some(info) = start_info::parse(start_info_pa) else {
        println!("(lantern) FATAL: no PVH start info (magic mismatch) at {start_info_pa:#x}");
        exit_qemu(false);
    };
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    let (heap_start, heap_end) = heap_range(&info, image_end);
    heap::init(heap_start as usize, heap_end as usize);
    log::info!(
        "cmdline '{}', heap {:#x}-{:#x} ({} MiB), module {:x?}",
        info.cmdline,
        heap_start,
        heap_end,
        (heap_end - heap_start) >> 20,
        info.module
    );
    interrupts::init();
    interrupts::start_timer(SLICE_US);
    if hpet::pit_absent() {
        // q35 with pit=off: the PIT's ports decode nothing, so guests may
        // reach them directly once each access has been logged.
        lantern_arch_x86::vcpu::declare_undecoded_ports(&hpet::PIT_PORTS);
        log::info!("no PIT: ports 0x40-0x43 are let through to guests after their first access");
    }
    let cfg = match lantern_common::boot_config::parse(info.cmdline) {
        Ok(c) => c,
        Err(e) => {
            println!("(lantern) FATAL: bad boot configuration: {}", e.0);
            exit_qemu(false);
        }
    };
    if let Some(level) = cfg.log_level {
        log::set_max_level(level);
    }
    if cfg.unknown.iter().any(|w| w == "selftest") {
        selftest::run(&info);
    }
    let archive: &[u8] = match info.module {
        // SAFETY: QEMU loaded the module at this identity-mapped physical
        // range, which the heap excludes and nothing writes.
        Some((pa, len)) => unsafe { core::slice::from_raw_parts(pa as *const u8, len as usize) },
        None => &[],
    };
    domains::run(&cfg, archive)
}

/// Picks the heap: the biggest piece of RAM above the image and below 4 GiB
/// (the identity map's reach) that does not overlap the boot module.
fn heap_range(info: &start_info::StartInfo, image_end: u64) -> (u64, u64) {
    let mut best = (0u64, 0u64);
    let mut consider = |s: u64, e: u64| {
        if e > s && e - s > best.1 - best.0 {
            best = (s, e);
        }
    };
    for &(addr, size, ty) in &info.memmap[..info.memmap_len] {
        if ty != start_info::E820_RAM {
            continue;
        }
        let start = addr.max(image_end);
        let end = (addr + size).min(0xC000_0000);
        if end <= start {
            continue;
        }
        match info.module {
            Some((m, len)) if m < end && m + len > start => {
                consider(start, m & !0xFFF);
                consider((m + len + 0xFFF) & !0xFFF, end);
            }
            _ => consider(start, end),
        }
    }
    best
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    println!("(lantern) PANIC: {info}");
    exit_qemu(false)
}
