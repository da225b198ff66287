//! IDT, trap entry stubs, the legacy PIC (masked), the local APIC timer that
//! preempts guests, and TSC calibration against the HPET.
//!
//! The host normally runs with IF = 0. A timer interrupt that arrives while a
//! guest runs causes an INTR #VMEXIT and stays pending; the run loop then opens
//! a one-instruction interrupt window so the handler below acknowledges it.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use x86::io::outb;

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x20;
/// Spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
const APIC_BASE: usize = 0xFEE0_0000;

/// Number of timer interrupts taken so far.
pub static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per second (calibrated at boot).
pub static TSC_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
/// APIC timer counts per second (calibrated at boot, divide-by-16).
static APIC_HZ: AtomicU64 = AtomicU64::new(1_000_000);
/// The slice in TSC ticks: the latest the one-shot timer is ever armed for.
pub static SLICE_TSC: AtomicU64 = AtomicU64::new(u64::MAX);

/// Register state pushed by the trap stubs (lowest address first).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

// 256 entry stubs of 16 bytes each; vectors without a CPU error code push a
// dummy 0 so every frame has the same shape.
global_asm!(
    r#"
    .pushsection .text.traps, "ax"
    .balign 16
    .global trap_stubs
    trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    .byte 0x6a, 0
    .endif
    .if vec < 128
    .byte 0x6a, vec
    .else
    .byte 0x68
    .long vec
    .endif
    jmp trap_common
    .set vec, vec + 1
    .endr

    trap_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    call trap_dispatch
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
    .popsection
    "#
);

extern "C" {
    static trap_stubs: u8;
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    match frame.vector as u8 {
        TIMER_VECTOR => {
            TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
            apic_eoi();
        }
        SPURIOUS_VECTOR => {}
        v if v >= 32 => apic_eoi(),
        _ => {
            let cr2: u64;
            // SAFETY: reading CR2 has no side effects.
            unsafe { asm!("mov {}, cr2", out(reg) cr2) };
            crate::println!(
                "(lantern) FATAL: hypervisor exception {} err={:#x} rip={:#x} cr2={:#x}\n{:x?}",
                frame.vector,
                frame.error,
                frame.rip,
                cr2,
                frame
            );
            crate::exit_qemu(false);
        }
    }
}

fn apic_write(reg: usize, value: u32) {
    // SAFETY: the xAPIC page at 0xFEE00000 is identity mapped uncached; `reg`
    // is an architectural register offset.
    unsafe { core::ptr::write_volatile((APIC_BASE + reg) as *mut u32, value) }
}

fn apic_read(reg: usize) -> u32 {
    // SAFETY: as in `apic_write`.
    unsafe { core::ptr::read_volatile((APIC_BASE + reg) as *const u32) }
}

fn apic_eoi() {
    apic_write(0xB0, 0);
}

/// Loads the IDT and masks the 8259 PICs (SeaBIOS leaves IRQ0 live on vector 8).
pub fn init() {
    // SAFETY: remapping and masking the legacy PICs through their
    // architectural ports; nothing else uses them.
    unsafe {
        // Remap to 0x70..0x7F first so a stray legacy IRQ can never look like
        // a CPU exception, then mask everything.
        outb(0x20, 0x11);
        outb(0xA0, 0x11);
        outb(0x21, 0x70);
        outb(0xA1, 0x78);
        outb(0x21, 4);
        outb(0xA1, 2);
        outb(0x21, 1);
        outb(0xA1, 1);
        outb(0x21, 0xFF);
        outb(0xA1, 0xFF);
    }
    let base = core::ptr::addr_of!(trap_stubs) as u64;
    // SAFETY: single CPU, called once before interrupts are enabled; nothing
    // else references IDT.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for v in 0..256 {
        let handler = base + 16 * v as u64;
        let low = (handler & 0xFFFF) | (0x08 << 16) | (0x8E00u64 << 32) | ((handler >> 16) & 0xFFFF) << 48;
        idt.0[2 * v] = low;
        idt.0[2 * v + 1] = handler >> 32;
    }
    let ptr = x86::dtables::DescriptorTablePointer::new(&idt.0);
    // SAFETY: the IDT is a static with valid 64-bit interrupt gates.
    unsafe { x86::dtables::lidt(&ptr) };
}

/// How long the TSC and APIC timer are measured against the HPET. The
/// result does not depend on the host being idle: each end of the window is
/// a (TSC, HPET, APIC) triple read back to back, kept from the tightest of a
/// few tries, and a preemption between the two ends lengthens the window for
/// all three counters alike.
const CALIBRATION_US: u64 = 20_000;
/// Tries per end of the window; the one whose two TSC reads are closest wins.
const SAMPLE_TRIES: usize = 8;

/// One end of the calibration window.
struct Sample {
    tsc: u64,
    hpet: u64,
    apic_elapsed: u64,
}

/// The (TSC, HPET, APIC count) triple read closest together.
fn sample(hpet: &crate::hpet::Hpet) -> Sample {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..SAMPLE_TRIES {
        let before = crate::clock::rdtsc();
        let count = hpet.counter();
        let apic_elapsed = (u32::MAX - apic_read(0x390)) as u64;
        let after = crate::clock::rdtsc();
        let spread = after - before;
        if best.as_ref().is_none_or(|(s, _)| spread < *s) {
            best = Some((spread, Sample { tsc: before + spread / 2, hpet: count, apic_elapsed }));
        }
    }
    best.map(|(_, s)| s).expect("SAMPLE_TRIES > 0")
}

/// `delta` counts of a counter over `hpet_ticks` HPET ticks, as a rate.
fn rate(delta: u64, hpet_ticks: u64, hpet_hz: u64) -> u64 {
    (delta as u128 * hpet_hz as u128 / hpet_ticks.max(1) as u128) as u64
}

/// Calibrates the TSC and the APIC timer against the HPET (which states its
/// own period), then sets the APIC timer up one-shot and arms it for a first
/// slice of `slice_us`. Each slice and each idle wait arms it again
/// ([`arm_timer_at`]): for the end of the slice, or sooner where a blocked
/// vCPU's timer is due — a periodic tick would make every guest timer wait
/// for the next tick, up to a whole slice late.
pub fn start_timer(slice_us: u64) {
    apic_write(0xF0, 0x100 | SPURIOUS_VECTOR as u32);
    apic_write(0x3E0, 0x3); // divide by 16
    apic_write(0x320, 1 << 16); // masked while calibrating
    let Some(hpet) = crate::hpet::Hpet::start() else {
        panic!("no HPET at the board's address: the x86 board needs QEMU's q35 HPET (do not pass hpet=off)");
    };
    apic_write(0x380, u32::MAX);
    let first = sample(&hpet);
    let window = hpet.ticks_in_us(CALIBRATION_US);
    while hpet.counter().wrapping_sub(first.hpet) < window {
        core::hint::spin_loop();
    }
    let last = sample(&hpet);
    let hpet_ticks = last.hpet.wrapping_sub(first.hpet);
    let tsc_hz = rate(last.tsc - first.tsc, hpet_ticks, hpet.hz());
    let apic_hz = rate(last.apic_elapsed - first.apic_elapsed, hpet_ticks, hpet.hz());
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    let initial = (apic_hz * slice_us / 1_000_000).clamp(1000, u32::MAX as u64);
    log::info!(
        "TSC {}.{:03} MHz, APIC timer {}.{:03} MHz (against the HPET over {} us), slice {} us",
        tsc_hz / 1_000_000,
        tsc_hz / 1000 % 1000,
        apic_hz / 1_000_000,
        apic_hz / 1000 % 1000,
        CALIBRATION_US,
        slice_us
    );
    APIC_HZ.store(apic_hz.max(1), Ordering::Relaxed);
    SLICE_TSC.store(tsc_hz * slice_us / 1_000_000, Ordering::Relaxed);
    // One-shot (LVT timer mode 0).
    apic_write(0x320, TIMER_VECTOR as u32);
    apic_write(0x380, initial as u32);
}

/// The fewest APIC counts the timer is armed for (a deadline already past
/// still gets an interrupt, a moment later).
const MIN_TIMER_COUNT: u64 = 16;

/// The shortest a slice is cut to for a vCPU's due timer, in microseconds
/// (as Xen's sched_ratelimit_us): with many vCPUs' timers due one after
/// another, slices cut at each would spend the CPU on switching.
pub const RATELIMIT_US: u64 = 1000;

/// The longest a boosted slice lasts (`SliceKind::Boost`: a vCPU whose
/// timer fired, ahead of its turn), in microseconds: Linux's tick, with
/// the hypercall that sets the next one, takes ~100 us of TCG time, and
/// the vCPU it interrupted waits no more than this for the jiffy the tick
/// advances (delay calibration gives up on one seen ~1.5 ms late).
pub const BOOST_US: u64 = 250;

/// `us` microseconds in TSC counts.
pub fn tsc_for_us(us: u64) -> u64 {
    TSC_HZ.load(Ordering::Relaxed) * us / 1_000_000
}

/// A slice's length in TSC counts.
pub fn slice_tsc() -> u64 {
    SLICE_TSC.load(Ordering::Relaxed)
}

/// Arms the one-shot APIC timer to fire at TSC value `deadline` but not
/// sooner than `least_us` from now, or at TSC value `latest`, whichever
/// comes first (writing the initial count restarts the countdown, so this
/// replaces whatever was armed).
pub fn arm_timer_at(deadline: Option<u64>, least_us: u64, latest: u64) {
    // SAFETY: RDTSC has no side effects.
    let now = unsafe { core::arch::x86_64::_rdtsc() };
    let tsc_hz = TSC_HZ.load(Ordering::Relaxed).max(1);
    let latest = latest.saturating_sub(now);
    let least = tsc_for_us(least_us);
    // A deadline already past (its vCPU due but not woken) is no reason to
    // cut the slice short.
    let delta = deadline.filter(|&d| d > now).map_or(latest, |d| (d - now).max(least).min(latest));
    let count = (delta as u128 * APIC_HZ.load(Ordering::Relaxed) as u128 / tsc_hz as u128) as u64;
    apic_write(0x380, count.clamp(MIN_TIMER_COUNT, u32::MAX as u64) as u32);
}

/// Lets a pending host interrupt (e.g. the timer that caused an INTR exit) in.
pub fn take_pending() {
    // SAFETY: briefly opening the interrupt window; handlers only touch
    // atomics and the APIC.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Waits for the next interrupt with interrupts enabled (idle).
pub fn wait_for_interrupt() {
    // SAFETY: `sti; hlt` is atomic with respect to interrupt delivery, so the
    // wake-up cannot be missed; IF is cleared again before returning.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
