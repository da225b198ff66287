//! The bare-metal HS-mode part of the backend: the trap vector, the world
//! switch into VS/VU and back, the hypervisor CSRs, G-stage fences and the
//! host timer (SBI `set_timer` to the firmware). [`HsHart`] is them as a
//! [`Hart`].
//!
//! The trap vector serves two cases, told apart by `sscratch`: while a
//! guest runs it holds the address of the guest's register array (the trap
//! saves the guest's registers there and returns into
//! [`lantern_rv_enter`]'s caller with the host's callee-saved registers
//! back); in the hypervisor itself it is 0, and a trap there is a
//! hypervisor bug: it panics with the trap's CSRs.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use super::Hart;
use crate::context::{hvip, VcpuContext};
use crate::trap::Trap;

/// Hypervisor CSR numbers (written as numbers: not every assembler names
/// the H extension's CSRs).
macro_rules! csr_read {
    ($csr:literal) => {{
        let v: u64;
        // SAFETY: reading a CSR of HS-mode has no side effect.
        unsafe { asm!(concat!("csrr {0}, ", $csr), out(reg) v, options(nomem, nostack)) };
        v
    }};
}
macro_rules! csr_write {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the callers write the CSRs of a guest about to be
        // entered, or HS configuration; none affects the hypervisor's own
        // memory.
        unsafe { asm!(concat!("csrw ", $csr, ", {0}"), in(reg) v, options(nomem, nostack)) };
    }};
}

/// `hstatus` bits.
const HSTATUS_SPV: u64 = 1 << 7;
const HSTATUS_SPVP: u64 = 1 << 8;
const HSTATUS_VTW: u64 = 1 << 21;
const HSTATUS_VSXL_64: u64 = 2 << 32;
/// `sstatus` bits.
const SSTATUS_SPP: u64 = 1 << 8;
const SSTATUS_SPIE: u64 = 1 << 5;
const SSTATUS_FS_DIRTY: u64 = 3 << 13;
/// `sie.STIE`: the host timer interrupt ends a guest's run.
const SIE_STIE: u64 = 1 << 5;

/// The host stack pointer while a guest runs (one hart).
#[unsafe(no_mangle)]
static mut LANTERN_RV_HOST_SP: u64 = 0;

global_asm!(
    r#"
.section .text
.global lantern_rv_enter
.align 2
lantern_rv_enter:
    addi sp, sp, -128
    sd ra, 0(sp)
    sd gp, 8(sp)
    sd tp, 16(sp)
    sd s0, 24(sp)
    sd s1, 32(sp)
    sd s2, 40(sp)
    sd s3, 48(sp)
    sd s4, 56(sp)
    sd s5, 64(sp)
    sd s6, 72(sp)
    sd s7, 80(sp)
    sd s8, 88(sp)
    sd s9, 96(sp)
    sd s10, 104(sp)
    sd s11, 112(sp)
    la t0, LANTERN_RV_HOST_SP
    sd sp, 0(t0)
    csrw sscratch, a0
    ld x1, 8(a0)
    ld x2, 16(a0)
    ld x3, 24(a0)
    ld x4, 32(a0)
    ld x5, 40(a0)
    ld x6, 48(a0)
    ld x7, 56(a0)
    ld x8, 64(a0)
    ld x9, 72(a0)
    ld x11, 88(a0)
    ld x12, 96(a0)
    ld x13, 104(a0)
    ld x14, 112(a0)
    ld x15, 120(a0)
    ld x16, 128(a0)
    ld x17, 136(a0)
    ld x18, 144(a0)
    ld x19, 152(a0)
    ld x20, 160(a0)
    ld x21, 168(a0)
    ld x22, 176(a0)
    ld x23, 184(a0)
    ld x24, 192(a0)
    ld x25, 200(a0)
    ld x26, 208(a0)
    ld x27, 216(a0)
    ld x28, 224(a0)
    ld x29, 232(a0)
    ld x30, 240(a0)
    ld x31, 248(a0)
    ld x10, 80(a0)
    sret

.global lantern_rv_trap
.align 4
lantern_rv_trap:
    csrrw t6, sscratch, t6
    beqz t6, 1f
    sd x1, 8(t6)
    sd x2, 16(t6)
    sd x3, 24(t6)
    sd x4, 32(t6)
    sd x5, 40(t6)
    sd x6, 48(t6)
    sd x7, 56(t6)
    sd x8, 64(t6)
    sd x9, 72(t6)
    sd x10, 80(t6)
    sd x11, 88(t6)
    sd x12, 96(t6)
    sd x13, 104(t6)
    sd x14, 112(t6)
    sd x15, 120(t6)
    sd x16, 128(t6)
    sd x17, 136(t6)
    sd x18, 144(t6)
    sd x19, 152(t6)
    sd x20, 160(t6)
    sd x21, 168(t6)
    sd x22, 176(t6)
    sd x23, 184(t6)
    sd x24, 192(t6)
    sd x25, 200(t6)
    sd x26, 208(t6)
    sd x27, 216(t6)
    sd x28, 224(t6)
    sd x29, 232(t6)
    sd x30, 240(t6)
    csrr t5, sscratch
    sd t5, 248(t6)
    csrw sscratch, zero
    la t0, LANTERN_RV_HOST_SP
    ld sp, 0(t0)
    ld ra, 0(sp)
    ld gp, 8(sp)
    ld tp, 16(sp)
    ld s0, 24(sp)
    ld s1, 32(sp)
    ld s2, 40(sp)
    ld s3, 48(sp)
    ld s4, 56(sp)
    ld s5, 64(sp)
    ld s6, 72(sp)
    ld s7, 80(sp)
    ld s8, 88(sp)
    ld s9, 96(sp)
    ld s10, 104(sp)
    ld s11, 112(sp)
    addi sp, sp, 128
    ret
1:
    csrrw t6, sscratch, t6
    j lantern_rv_hs_trap
"#
);

// SAFETY: defined by the assembly above; `lantern_rv_enter` takes the
// address of 32 saved registers, enters the guest with them and returns
// once it traps, with the guest's registers saved back.
unsafe extern "C" {
    fn lantern_rv_enter(regs: *mut u64);
    fn lantern_rv_trap();
}

/// A trap taken in HS-mode itself: a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn lantern_rv_hs_trap() -> ! {
    // QEMU 7.2 leaves hstatus.SPV as the last guest trap set it; nothing
    // here returns with sret, but a handler that did would enter a guest.
    csr_write!("0x600", csr_read!("0x600") & !HSTATUS_SPV);
    panic!(
        "trap in the hypervisor: scause {:#x} sepc {:#x} stval {:#x}",
        csr_read!("scause"),
        csr_read!("sepc"),
        csr_read!("stval")
    );
}

/// Whether the hart has the H extension: `hstatus` reads without a trap.
/// Called before [`init`], with the firmware's trap vector (an illegal
/// instruction there is not recoverable), so it probes under a vector of
/// its own that skips the faulting instruction.
pub fn has_h_extension() -> bool {
    let ok: u64;
    // SAFETY: a temporary stvec that, on the illegal-instruction trap of
    // the `csrr` (4 bytes), clears the flag and resumes after it; the old
    // stvec comes back before Rust continues. Interrupts are off in HS.
    unsafe {
        asm!(
            "la {tmp}, 2f",
            "csrrw {old}, stvec, {tmp}",
            "li {ok}, 1",
            "csrr {tmp}, 0x600",
            "j 3f",
            ".align 2",
            "2:",
            "li {ok}, 0",
            "csrr {tmp}, sepc",
            "addi {tmp}, {tmp}, 4",
            "csrw sepc, {tmp}",
            "sret",
            "3:",
            "csrw stvec, {old}",
            tmp = out(reg) _,
            old = out(reg) _,
            ok = out(reg) ok,
        );
    }
    ok != 0
}

/// HS configuration: the trap vector, the VS interrupts delegated to the
/// guest, `time` readable in VS, no Sstc for guests (their timer is SBI),
/// FP usable (the world switch loads the guest's), the host timer's
/// interrupt enabled (taken only from a guest: `sstatus.SIE` stays 0).
pub fn init() {
    csr_write!("stvec", lantern_rv_trap as *const () as u64);
    csr_write!("sscratch", 0);
    // hideleg: VSSIP, VSTIP, VSEIP.
    csr_write!("0x603", hvip::ALL);
    // hcounteren: TM.
    csr_write!("0x606", 1 << 1);
    // henvcfg: 0 (STCE off: the guest's stimecmp traps; it uses SBI).
    csr_write!("0x60a", 0);
    // htimedelta.
    csr_write!("0x605", 0);
    csr_write!("0x645", 0);
    // SAFETY: setting FS and STIE changes nothing the compiler relies on.
    unsafe {
        asm!("csrs sstatus, {0}", in(reg) SSTATUS_FS_DIRTY, options(nomem, nostack));
        asm!("csrs sie, {0}", in(reg) SIE_STIE, options(nomem, nostack));
    }
}

/// Reads the `time` counter.
pub fn now() -> u64 {
    csr_read!("time")
}

/// Arms the supervisor timer through the firmware (SBI TIME set_timer);
/// `u64::MAX` never fires.
pub fn set_timer(deadline: u64) {
    // SAFETY: an SBI call to the firmware; it clobbers a0 and a1 only.
    unsafe {
        asm!("ecall", inlateout("a0") deadline => _, lateout("a1") _, in("a6") 0u64, in("a7") 0x5449_4d45u64, options(nostack));
    }
}

/// Waits for an interrupt (the host timer), interrupts masked in HS: the
/// pending timer ends the wait without a trap.
pub fn wait_for_interrupt() {
    // SAFETY: wfi only waits.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

/// The last context entered (another one flushes the VS-stage TLB).
static LAST_KEY: AtomicU64 = AtomicU64::new(0);

fn load_fp(ctx: &VcpuContext) {
    let f = ctx.f.as_ptr();
    // SAFETY: reads the 32 saved FP registers (FS is on since `init`).
    unsafe {
        asm!(
        "fld f0, 0({f})",
        "fld f1, 8({f})",
        "fld f2, 16({f})",
        "fld f3, 24({f})",
        "fld f4, 32({f})",
        "fld f5, 40({f})",
        "fld f6, 48({f})",
        "fld f7, 56({f})",
        "fld f8, 64({f})",
        "fld f9, 72({f})",
        "fld f10, 80({f})",
        "fld f11, 88({f})",
        "fld f12, 96({f})",
        "fld f13, 104({f})",
        "fld f14, 112({f})",
        "fld f15, 120({f})",
        "fld f16, 128({f})",
        "fld f17, 136({f})",
        "fld f18, 144({f})",
        "fld f19, 152({f})",
        "fld f20, 160({f})",
        "fld f21, 168({f})",
        "fld f22, 176({f})",
        "fld f23, 184({f})",
        "fld f24, 192({f})",
        "fld f25, 200({f})",
        "fld f26, 208({f})",
        "fld f27, 216({f})",
        "fld f28, 224({f})",
        "fld f29, 232({f})",
        "fld f30, 240({f})",
        "fld f31, 248({f})",
            f = in(reg) f,
            options(nostack, readonly),
        );
    }
    csr_write!("fcsr", ctx.fcsr);
}

fn save_fp(ctx: &mut VcpuContext) {
    let f = ctx.f.as_mut_ptr();
    // SAFETY: writes the 32 FP registers into the context's array.
    unsafe {
        asm!(
        "fsd f0, 0({f})",
        "fsd f1, 8({f})",
        "fsd f2, 16({f})",
        "fsd f3, 24({f})",
        "fsd f4, 32({f})",
        "fsd f5, 40({f})",
        "fsd f6, 48({f})",
        "fsd f7, 56({f})",
        "fsd f8, 64({f})",
        "fsd f9, 72({f})",
        "fsd f10, 80({f})",
        "fsd f11, 88({f})",
        "fsd f12, 96({f})",
        "fsd f13, 104({f})",
        "fsd f14, 112({f})",
        "fsd f15, 120({f})",
        "fsd f16, 128({f})",
        "fsd f17, 136({f})",
        "fsd f18, 144({f})",
        "fsd f19, 152({f})",
        "fsd f20, 160({f})",
        "fsd f21, 168({f})",
        "fsd f22, 176({f})",
        "fsd f23, 184({f})",
        "fsd f24, 192({f})",
        "fsd f25, 200({f})",
        "fsd f26, 208({f})",
        "fsd f27, 216({f})",
        "fsd f28, 224({f})",
        "fsd f29, 232({f})",
        "fsd f30, 240({f})",
        "fsd f31, 248({f})",
            f = in(reg) f,
            options(nostack),
        );
    }
    ctx.fcsr = csr_read!("fcsr");
}

/// This hart in HS-mode as a [`Hart`].
pub struct HsHart;

impl Hart for HsHart {
    fn run(&self, ctx: &mut VcpuContext, hgatp: u64, key: u64) -> Trap {
        csr_write!("0x680", hgatp);
        if LAST_KEY.swap(key, Ordering::Relaxed) != key {
            // hfence.vvma zero, zero (this VMID's VS-stage entries).
            // SAFETY: a TLB fence.
            unsafe { asm!(".word 0x22000073", options(nostack)) };
        }
        let s = &ctx.vs;
        csr_write!("0x200", s.vsstatus);
        csr_write!("0x204", s.vsie);
        csr_write!("0x205", s.vstvec);
        csr_write!("0x240", s.vsscratch);
        csr_write!("0x241", s.vsepc);
        csr_write!("0x242", s.vscause);
        csr_write!("0x243", s.vstval);
        csr_write!("0x280", s.vsatp);
        csr_write!("0x645", ctx.hvip & hvip::ALL);
        csr_write!("0x602", ctx.hedeleg);
        let spvp = if ctx.supervisor { HSTATUS_SPVP } else { 0 };
        csr_write!("0x600", HSTATUS_VSXL_64 | HSTATUS_VTW | HSTATUS_SPV | spvp);
        let mut sstatus = csr_read!("sstatus") & !(SSTATUS_SPP | SSTATUS_SPIE);
        if ctx.supervisor {
            sstatus |= SSTATUS_SPP;
        }
        csr_write!("sstatus", sstatus | SSTATUS_FS_DIRTY);
        load_fp(ctx);
        csr_write!("sepc", ctx.pc);
        // SAFETY: the context's register array outlives the call; the
        // trap vector saves the guest's registers into it and restores the
        // host's callee-saved registers and stack before returning here.
        unsafe { lantern_rv_enter(ctx.x.as_mut_ptr()) };
        ctx.x[0] = 0;
        let trap = Trap {
            scause: csr_read!("scause"),
            stval: csr_read!("stval"),
            htval: csr_read!("0x643"),
            htinst: csr_read!("0x64a"),
        };
        ctx.pc = csr_read!("sepc");
        ctx.supervisor = csr_read!("sstatus") & SSTATUS_SPP != 0;
        let s = &mut ctx.vs;
        s.vsstatus = csr_read!("0x200");
        s.vsie = csr_read!("0x204");
        s.vstvec = csr_read!("0x205");
        s.vsscratch = csr_read!("0x240");
        s.vsepc = csr_read!("0x241");
        s.vscause = csr_read!("0x242");
        s.vstval = csr_read!("0x243");
        s.vsatp = csr_read!("0x280");
        ctx.hvip = csr_read!("0x645") & hvip::ALL;
        save_fp(ctx);
        trap
    }

    fn fence_gvma(&self) {
        // hfence.gvma zero, zero.
        // SAFETY: a TLB fence.
        unsafe { asm!(".word 0x62000073", options(nostack)) };
    }

    fn sync_instructions(&self) {
        // fence.i (as a word: not every assembler takes Zifencei's name).
        // SAFETY: an instruction-fetch fence.
        unsafe { asm!(".word 0x0000100f", options(nostack)) };
    }

    fn now(&self) -> u64 {
        now()
    }

    fn set_timer(&self, deadline: u64) {
        set_timer(deadline);
    }
}
