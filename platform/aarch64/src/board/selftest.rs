//! A self-test of the EL2 mechanics with a tiny raw EL1 guest (a few
//! instructions copied into guest memory): HVC, WFI, a list-register
//! interrupt, timer preemption and a stage-2 fault that crashes only it.

use alloc::alloc::{alloc_zeroed, Layout};
use core::arch::global_asm;

use lantern_arch_arm::context::VcpuContext;
use lantern_arch_arm::esr::{self, ec, Esr};
use lantern_arch_arm::hw::{el2, gic, intid, timer, ExitKind};
use lantern_arch_arm::stage2::{S2Perm, Stage2};
use xen_abi::arch_arm::HYPERCALL_HVC_IMM;

use super::Machine;

// The guest. Position independent; copied to IPA 0x4000_0000. Demo
// hypercall numbers (x16): 1 hello(x0), 2 loop start, 3 null, 4 loop end,
// 5 inject PPI 31, 6 irq seen(x0 = intid), 7 spin for preemption.
global_asm!(
    r#"
.section .rodata.lantern_selftest_guest, "a"
.balign 2048
.global lantern_selftest_guest_start
lantern_selftest_guest_start:
    mov x16, #1
    mov x0, #42
    hvc #{tag}
    wfi
    mov x16, #2
    hvc #{tag}
    mov x5, #1000
1:  mov x16, #3
    hvc #{tag}
    subs x5, x5, #1
    b.ne 1b
    mov x16, #4
    hvc #{tag}
    adr x1, 3f
    msr vbar_el1, x1
    mov x1, #0xff
    msr S3_0_C4_C6_0, x1
    mov x1, #1
    msr S3_0_C12_C12_7, x1
    isb
    mov x16, #5
    hvc #{tag}
    msr daifclr, #2
    isb
    wfi
    msr daifset, #2
    mov x16, #7
    hvc #{tag}
2:  b 2b
    mov x1, #0x10000000
    ldr x2, [x1]
    b .
.balign 2048
3:  .space 0x280
    mrs x6, S3_0_C12_C12_0
    mov x0, x6
    mov x16, #6
    hvc #{tag}
    msr S3_0_C12_C12_1, x6
    eret
.global lantern_selftest_guest_end
lantern_selftest_guest_end:
"#,
    tag = const HYPERCALL_HVC_IMM,
);

// SAFETY: both symbols are defined (once) by the `global_asm!` above, around
// the guest's code in .rodata; they are only used for their addresses, so
// declaring them as `u8` is sound.
unsafe extern "C" {
    static lantern_selftest_guest_start: u8;
    static lantern_selftest_guest_end: u8;
}

const GUEST_BASE: u64 = 0x4000_0000;

fn page() -> u64 {
    // SAFETY: non-zero size; the page is leaked on purpose (self-test domain).
    unsafe { alloc_zeroed(Layout::from_size_align(4096, 4096).unwrap()) as u64 }
}

/// Runs the self-test; returns whether every step behaved.
pub fn run(m: &Machine) -> bool {
    let mut s2 = Stage2::new();
    // SAFETY: linker symbols bracketing the guest code.
    let (start, end) =
        unsafe { (&lantern_selftest_guest_start as *const u8, &lantern_selftest_guest_end as *const u8) };
    let len = end as usize - start as usize;
    for i in 0..len.div_ceil(4096) as u64 {
        let p = page();
        let n = (len - (i as usize * 4096)).min(4096);
        // SAFETY: `p` is a fresh 4 KiB page; the source range is the guest
        // code inside the image.
        unsafe { core::ptr::copy_nonoverlapping(start.add(i as usize * 4096), p as *mut u8, n) };
        s2.map(GUEST_BASE + i * 4096, p, S2Perm::Ram).unwrap();
    }
    el2::flush_guest_tlbs();
    let mut ctx = VcpuContext::new(GUEST_BASE, 0, 0);
    let vttbr = s2.vttbr(1);
    let nr_lrs = m.gic.nr_lrs();
    let mut steps = 0u32;
    let mut loop_start = 0u64;
    let mut wfi_count = 0;
    let mut ok = true;
    loop {
        let kind = el2::run_context(&mut ctx, 1, vttbr, nr_lrs);
        match kind {
            ExitKind::Irq => {
                let irq = gic::ack();
                if irq == intid::SPURIOUS {
                    continue;
                }
                gic::eoi(irq);
                if irq == intid::PPI_HYP_TIMER {
                    timer::disarm_hyp_timer();
                    log::info!("selftest: preempted by the EL2 timer at pc {:#x}", ctx.regs.pc);
                    steps |= 1 << 7;
                    // Skip the guest's `b .` so it goes on to the fault test.
                    ctx.regs.pc += 4;
                } else {
                    log::info!("selftest: host irq {}", irq);
                }
                continue;
            }
            ExitKind::Sync => {}
            other => {
                log::error!("selftest: unexpected exit {:?}", other);
                return false;
            }
        }
        let syn = el2::syndrome();
        let e = Esr(syn.esr);
        match e.ec() {
            ec::HVC64 if e.imm16() == HYPERCALL_HVC_IMM => {
                let nr = ctx.regs.x[16];
                let x0 = ctx.regs.x[0];
                ctx.regs.x[0] = 0;
                match nr {
                    1 => {
                        log::info!("selftest: hvc #0xEA1 from EL1, x16 = 1, x0 = {}", x0);
                        ok &= x0 == 42;
                        steps |= 1 << 1;
                    }
                    2 => loop_start = timer::now(),
                    3 => {}
                    4 => {
                        let ticks = timer::now() - loop_start;
                        let ns = ticks * 1_000_000_000 / m.freq / 1000;
                        log::info!("selftest: hvc round trip {} ns (1000 calls)", ns);
                        steps |= 1 << 3;
                    }
                    5 => {
                        ok &= ctx.vgic.inject(intid::PPI_EVTCHN, 0xa0, nr_lrs);
                    }
                    6 => {
                        log::info!("selftest: guest took virtual irq {} through a list register", x0);
                        ok &= x0 == intid::PPI_EVTCHN as u64;
                        steps |= 1 << 5;
                    }
                    7 => {
                        timer::arm_hyp_timer(m.freq / 1000);
                    }
                    _ => ok = false,
                }
            }
            ec::WFX => {
                wfi_count += 1;
                log::info!("selftest: guest {} #{}", if e.is_wfe() { "wfe" } else { "wfi" }, wfi_count);
                ctx.regs.pc += 4;
                steps |= 1 << 2;
            }
            ec::DABT_LOWER | ec::IABT_LOWER => {
                let ipa = esr::fault_ipa(syn.hpfar, syn.far);
                log::info!(
                    "selftest: (d1) crashed: unhandled {} esr {:#x} elr {:#x} ipa {:#x}",
                    e.ec_name(),
                    syn.esr,
                    ctx.regs.pc,
                    ipa
                );
                ok &= ipa == 0x1000_0000;
                steps |= 1 << 8;
                break;
            }
            _ => {
                log::error!("selftest: unexpected {} esr {:#x} elr {:#x}", e.ec_name(), syn.esr, ctx.regs.pc);
                return false;
            }
        }
    }
    let want = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 7) | (1 << 8);
    log::info!("selftest: steps {:#x} (want {:#x}), ok {}", steps, want, ok);
    ok && steps == want
}
