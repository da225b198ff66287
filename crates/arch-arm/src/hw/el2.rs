//! The EL2 world switch: exception vectors, guest entry/exit assembly, EL1
//! system-register and virtual-GIC save/restore, and EL2 configuration.
//!
//! Model: the host runs at EL2 with interrupts masked. [`enter`] saves the
//! host's callee-saved registers on its stack, loads the guest's registers
//! from a [`GuestRegs`] and `eret`s. Any exception from EL1/EL0 (sync, IRQ,
//! FIQ, SError) lands in the lower-EL vectors, which store the guest's
//! registers back into the same [`GuestRegs`] (found through TPIDR_EL2) and
//! return from [`enter`] with the exception kind. The syndrome registers
//! (ESR/FAR/HPFAR_EL2) are still intact then, so Rust reads them directly.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::*;

use super::gic;
use super::{ExitKind, Syndrome};
use crate::context::{
    El1Sysregs, GuestRegs, VcpuContext, VgicState, LR_STATE_SHIFT, OFF_FPCR, OFF_FPSR, OFF_HOST_SP, OFF_PC, OFF_PSTATE,
    OFF_V,
};
use crate::debug::{DebugRegs, HW_SLOTS, MDCR_TDE};

global_asm!(
    r#"
.section .text.lantern_el2, "ax"
.balign 2048
.global lantern_el2_vectors
lantern_el2_vectors:
// One vector entry per exception kind, 0x80 bytes apart. Entries 0..7 are
// the hypervisor's own exceptions (current EL with SP_EL0, then with SP_ELx):
// the vector index goes to the host-trap reporter in x0. Entries 8..15 are
// guest exits (lower EL in AArch64: sync, IRQ, FIQ, SError; then AArch32,
// never entered on purpose as HCR_EL2.RW = 1): the guest's x0/x1 go on the
// host stack and the exit kind (0..3, 4 for every AArch32 entry) in x1.
.macro lantern_host_trap_vector index
.balign 0x80
    mov x0, #\index
    b lantern_el2_host_trap_asm
.endm
.macro lantern_guest_exit_vector kind
.balign 0x80
    stp x0, x1, [sp, #-16]!
    mov x1, #\kind
    b lantern_guest_exit
.endm
.irp index, 0, 1, 2, 3, 4, 5, 6, 7
    lantern_host_trap_vector \index
.endr
.irp kind, 0, 1, 2, 3
    lantern_guest_exit_vector \kind
.endr
.rept 4
    lantern_guest_exit_vector 4
.endr
.purgem lantern_host_trap_vector
.purgem lantern_guest_exit_vector

.balign 4
lantern_el2_host_trap_asm:
    mov x1, sp
    b lantern_el2_host_trap

// u64 lantern_run_guest(GuestRegs *regs)
.global lantern_run_guest
lantern_run_guest:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x1, sp
    str x1, [x0, #{host_sp}]
    msr tpidr_el2, x0
    add x2, x0, #{v}
    ldp q0, q1, [x2, #0]
    ldp q2, q3, [x2, #32]
    ldp q4, q5, [x2, #64]
    ldp q6, q7, [x2, #96]
    ldp q8, q9, [x2, #128]
    ldp q10, q11, [x2, #160]
    ldp q12, q13, [x2, #192]
    ldp q14, q15, [x2, #224]
    ldp q16, q17, [x2, #256]
    ldp q18, q19, [x2, #288]
    ldp q20, q21, [x2, #320]
    ldp q22, q23, [x2, #352]
    ldp q24, q25, [x2, #384]
    ldp q26, q27, [x2, #416]
    ldp q28, q29, [x2, #448]
    ldp q30, q31, [x2, #480]
    ldr x3, [x0, #{fpsr}]
    msr fpsr, x3
    ldr x3, [x0, #{fpcr}]
    msr fpcr, x3
    ldr x1, [x0, #{pc}]
    msr elr_el2, x1
    ldr x1, [x0, #{pstate}]
    msr spsr_el2, x1
    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0, #0]
    eret
    dsb nsh
    isb

// Entered from the lower-EL vectors with the guest's x0/x1 pushed on the host
// stack and the exit kind in x1.
lantern_guest_exit:
    mrs x0, tpidr_el2
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str x30, [x0, #240]
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0, #0]
    mrs x2, elr_el2
    str x2, [x0, #{pc}]
    mrs x2, spsr_el2
    str x2, [x0, #{pstate}]
    add x2, x0, #{v}
    stp q0, q1, [x2, #0]
    stp q2, q3, [x2, #32]
    stp q4, q5, [x2, #64]
    stp q6, q7, [x2, #96]
    stp q8, q9, [x2, #128]
    stp q10, q11, [x2, #160]
    stp q12, q13, [x2, #192]
    stp q14, q15, [x2, #224]
    stp q16, q17, [x2, #256]
    stp q18, q19, [x2, #288]
    stp q20, q21, [x2, #320]
    stp q22, q23, [x2, #352]
    stp q24, q25, [x2, #384]
    stp q26, q27, [x2, #416]
    stp q28, q29, [x2, #448]
    stp q30, q31, [x2, #480]
    mrs x3, fpsr
    str x3, [x0, #{fpsr}]
    mrs x3, fpcr
    str x3, [x0, #{fpcr}]
    ldr x2, [x0, #{host_sp}]
    mov sp, x2
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    mov x0, x1
    ret
"#,
    host_sp = const OFF_HOST_SP,
    v = const OFF_V,
    fpsr = const OFF_FPSR,
    fpcr = const OFF_FPCR,
    pc = const OFF_PC,
    pstate = const OFF_PSTATE,
);

// SAFETY: both symbols are defined by the assembly above with these types:
// the vector table (only its address is taken) and the entry stub, which
// follows the C calling convention.
unsafe extern "C" {
    static lantern_el2_vectors: u8;
    fn lantern_run_guest(regs: *mut GuestRegs) -> u64;
}

/// Called (never returns) when the hypervisor itself takes an exception: a
/// bug, reported as a panic (the board's panic handler prints it and powers
/// off), with the syndrome registers.
// SAFETY: no other symbol of this name exists; the vectors' host-trap stub
// branches here with the vector index and the stack pointer.
#[unsafe(no_mangle)]
extern "C" fn lantern_el2_host_trap(kind: u64, sp: u64) -> ! {
    let t = HostTrap { kind, esr: ESR_EL2.get(), elr: ELR_EL2.get(), far: FAR_EL2.get(), sp };
    panic!(
        "hypervisor fault: vector {} esr {:#x} ({}) elr {:#x} far {:#x} sp {:#x}",
        t.kind,
        t.esr,
        crate::esr::Esr(t.esr).ec_name(),
        t.elr,
        t.far,
        t.sp
    )
}

/// What the hypervisor knows about an exception it took itself.
#[derive(Clone, Copy, Debug)]
pub struct HostTrap {
    /// Vector index (0..8: SP_EL0 sync/irq/fiq/serror, SP_EL2 sync/irq/fiq/serror).
    pub kind: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// ELR_EL2.
    pub elr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// SP at the time.
    pub sp: u64,
}

/// HCR_EL2 while guests run: AArch64 EL1, stage 2 on, physical IRQ/FIQ/SError
/// routed to EL2, WFI/WFE and SMC trapped, set/way invalidation upgraded.
pub const HCR_GUEST: u64 = (1 << 31) // RW
    | (1 << 19) // TSC
    | (1 << 14) // TWE
    | (1 << 13) // TWI
    | (1 << 5) // AMO
    | (1 << 4) // IMO
    | (1 << 3) // FMO
    | (1 << 1) // SWIO
    | 1; // VM

/// HCR_EL2.APK | HCR_EL2.API: with them set, a guest's pointer-authentication
/// instructions and key registers do not trap. Lantern passes PAuth through
/// (Linux enables it at its first instructions when the ID registers, which
/// are not trapped, say the CPU has it) and switches the keys per vCPU.
const HCR_PAUTH: u64 = (1 << 41) | (1 << 40);

/// Whether the CPU implements pointer authentication (set once by [`init`]).
static HAS_PAUTH: AtomicBool = AtomicBool::new(false);
/// Whether the CPU implements SVE (set once by [`init`]).
static HAS_SVE: AtomicBool = AtomicBool::new(false);

/// MDCR_EL2 trap bits: TPMCR (5) and TPM (6) trap every PMU register, TDA
/// (9), TDOSA (10) and TDRA (11) every debug register. Neither is switched
/// per vCPU, so a guest's accesses are emulated instead (see
/// `crate::vcpu::EmulatedSysreg` and docs/arm64-el1-state.md).
const MDCR_TRAP_PMU_AND_DEBUG: u64 = (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11);
/// MDCR_EL2.HPMN (the counters EL1 may use) is kept as reset put it.
const MDCR_HPMN: u64 = 0x1f;
/// CPTR_EL2 (HCR_EL2.E2H = 0 layout): TZ (8), TFP (10), TTA (20), TCPAC (31)
/// cleared, so SVE, FP/SIMD and trace do not trap; TSM (12), which traps
/// SME, set. SME's state (ZA, SVCR, SMCR_EL1, TPIDR2_EL0) is not switched.
const CPTR_CLEAR: u64 = (1 << 8) | (1 << 10) | (1 << 20) | (1 << 31);
const CPTR_SET: u64 = 1 << 12;

/// A 4-bit ID register field.
fn id_field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// Whether ID_AA64ISAR1_EL1 (APA, API, GPA, GPI) or ID_AA64ISAR2_EL1 (APA3,
/// GPA3) report any pointer-authentication algorithm.
fn cpu_has_pauth() -> bool {
    let isar1 = ID_AA64ISAR1_EL1.get();
    let isar2: u64;
    // SAFETY: reading an ID register (S3_0_C0_C6_2 = ID_AA64ISAR2_EL1, RAZ
    // on CPUs before it was defined) has no side effect.
    unsafe { asm!("mrs {}, s3_0_c0_c6_2", out(reg) isar2, options(nomem, nostack)) };
    let field = |v: u64, shift: u32| (v >> shift) & 0xf != 0;
    field(isar1, 4) || field(isar1, 8) || field(isar1, 24) || field(isar1, 28) || field(isar2, 12) || field(isar2, 8)
}

/// Configures EL2 for running guests: vectors, HCR_EL2, VTCR_EL2, the
/// counter/timer controls and FP access. Call once at boot.
pub fn init() {
    // SAFETY: the symbol is the 2 KiB-aligned vector table defined above.
    let vbar = unsafe { &lantern_el2_vectors as *const u8 as u64 };
    VBAR_EL2.set(vbar);
    let pauth = cpu_has_pauth();
    HAS_PAUTH.store(pauth, Ordering::Relaxed);
    HCR_EL2.set(HCR_GUEST | if pauth { HCR_PAUTH } else { 0 });
    let (pfr0, pfr1, dfr0) = (ID_AA64PFR0_EL1.get(), id_aa64pfr1(), ID_AA64DFR0_EL1.get());
    let sve = id_field(pfr0, 32) != 0;
    HAS_SVE.store(sve, Ordering::Relaxed);
    log::info!(
        "el2: cpu pauth={} sve={} sme={} mte={} pmuver={:#x} brps={} wrps={}",
        pauth as u8,
        id_field(pfr0, 32),
        id_field(pfr1, 24),
        id_field(pfr1, 8),
        id_field(dfr0, 8),
        id_field(dfr0, 12) + 1,
        id_field(dfr0, 20) + 1
    );
    let mdcr: u64;
    // SAFETY: reading MDCR_EL2 at EL2 has no side effect.
    unsafe { asm!("mrs {}, mdcr_el2", out(reg) mdcr, options(nomem, nostack)) };
    let mdcr = (mdcr & MDCR_HPMN) | MDCR_TRAP_PMU_AND_DEBUG;
    MDCR_GUEST.store(mdcr, Ordering::Relaxed);
    // SAFETY: traps for lower ELs only; no guest runs yet.
    unsafe { asm!("msr mdcr_el2, {}", in(reg) mdcr, options(nomem, nostack)) };
    // The OS lock is set at reset and would keep the debugger's breakpoints,
    // watchpoints and steps from being taken; guests' OSLAR_EL1 writes trap
    // (TDOSA) and are ignored, so EL2 unlocks it once for everyone.
    // SAFETY: OSLAR_EL1 only gates debug exceptions, which only the
    // debugger arms.
    unsafe { asm!("msr oslar_el1, xzr", options(nomem, nostack)) };
    let parange = ID_AA64MMFR0_EL1.get() & 0xf;
    VTCR_EL2.set(crate::stage2::vtcr(parange));
    // EL1 may read the physical counter (EL1PCTEN) but not use the physical
    // timer (EL1PCEN = 0): guests get the virtual timer.
    CNTHCTL_EL2.set(1);
    CNTVOFF_EL2.set(0);
    // No SVE, FP/SIMD or trace traps; SME traps; RES1 bits kept.
    CPTR_EL2.set((CPTR_EL2.get() & !CPTR_CLEAR) | CPTR_SET);
    if sve {
        // ZCR_EL2.LEN = 0: every guest's vector length is 128 bits, so the
        // Z registers are the V registers the world switch already moves,
        // and only the predicates, FFR and ZCR_EL1 are switched on top.
        // SAFETY: ZCR_EL2 (S3_4_C1_C2_0) exists when SVE does; it only
        // bounds the vector length of EL2 and below.
        unsafe { asm!("isb", "msr s3_4_c1_c2_0, xzr", options(nomem, nostack)) };
    }
    // SAFETY: barriers only.
    unsafe { asm!("isb", options(nostack)) };
}

/// ID_AA64PFR1_EL1 (S3_0_C0_C4_1; named by number for older assemblers).
fn id_aa64pfr1() -> u64 {
    let v: u64;
    // SAFETY: reading an ID register has no side effect.
    unsafe { asm!("mrs {}, s3_0_c0_c4_1", out(reg) v, options(nomem, nostack)) };
    v
}

/// Invalidates all stage-1 and stage-2 TLB entries for EL1&0 (every VMID),
/// after stage-2 tables changed.
pub fn flush_guest_tlbs() {
    // SAFETY: TLB maintenance has no memory-safety effect on the host.
    unsafe { asm!("dsb ishst", "tlbi alle1is", "dsb ish", "isb", options(nostack)) };
}

/// Runs the guest described by `regs` until it exits to EL2. The EL1 system
/// registers, stage-2 (VTTBR_EL2) and virtual GIC state must already be loaded.
pub fn enter(regs: &mut GuestRegs) -> ExitKind {
    // SAFETY: `regs` is a valid, exclusively borrowed GuestRegs; the assembly
    // saves and restores every callee-saved register of the host and returns
    // on the host stack it was called on.
    let k = unsafe { lantern_run_guest(regs) };
    ExitKind::from_vector(k)
}

/// Reads the syndrome of the exception that just exited the guest.
pub fn syndrome() -> Syndrome {
    Syndrome { esr: ESR_EL2.get(), far: FAR_EL2.get(), hpfar: HPFAR_EL2.get() }
}

/// Loads a vCPU's EL1 registers into the CPU.
pub fn load_sysregs(s: &El1Sysregs, vmpidr: u64) {
    SCTLR_EL1.set(s.sctlr_el1);
    TTBR0_EL1.set(s.ttbr0_el1);
    TTBR1_EL1.set(s.ttbr1_el1);
    TCR_EL1.set(s.tcr_el1);
    MAIR_EL1.set(s.mair_el1);
    AMAIR_EL1.set(s.amair_el1);
    VBAR_EL1.set(s.vbar_el1);
    CONTEXTIDR_EL1.set(s.contextidr_el1);
    TPIDR_EL1.set(s.tpidr_el1);
    TPIDR_EL0.set(s.tpidr_el0);
    TPIDRRO_EL0.set(s.tpidrro_el0);
    SP_EL0.set(s.sp_el0);
    SP_EL1.set(s.sp_el1);
    ELR_EL1.set(s.elr_el1);
    SPSR_EL1.set(s.spsr_el1);
    ESR_EL1.set(s.esr_el1);
    FAR_EL1.set(s.far_el1);
    AFSR0_EL1.set(s.afsr0_el1);
    AFSR1_EL1.set(s.afsr1_el1);
    PAR_EL1.set(s.par_el1);
    CPACR_EL1.set(s.cpacr_el1);
    CNTKCTL_EL1.set(s.cntkctl_el1);
    CNTV_CVAL_EL0.set(s.cntv_cval_el0);
    CNTV_CTL_EL0.set(s.cntv_ctl_el0);
    CSSELR_EL1.set(s.csselr_el1);
    if HAS_PAUTH.load(Ordering::Relaxed) {
        load_pauth_keys(&s.pauth_keys);
    }
    if HAS_SVE.load(Ordering::Relaxed) {
        load_sve(&s.sve_predicates, s.zcr_el1);
    }
    VMPIDR_EL2.set(vmpidr);
    // SAFETY: barrier only; the new context must be in force before eret.
    unsafe { asm!("isb", options(nostack)) };
}

/// Saves the CPU's EL1 registers into `s` after an exit.
pub fn save_sysregs(s: &mut El1Sysregs) {
    s.sctlr_el1 = SCTLR_EL1.get();
    s.ttbr0_el1 = TTBR0_EL1.get();
    s.ttbr1_el1 = TTBR1_EL1.get();
    s.tcr_el1 = TCR_EL1.get();
    s.mair_el1 = MAIR_EL1.get();
    s.amair_el1 = AMAIR_EL1.get();
    s.vbar_el1 = VBAR_EL1.get();
    s.contextidr_el1 = CONTEXTIDR_EL1.get();
    s.tpidr_el1 = TPIDR_EL1.get();
    s.tpidr_el0 = TPIDR_EL0.get();
    s.tpidrro_el0 = TPIDRRO_EL0.get();
    s.sp_el0 = SP_EL0.get();
    s.sp_el1 = SP_EL1.get();
    s.elr_el1 = ELR_EL1.get();
    s.spsr_el1 = SPSR_EL1.get();
    s.esr_el1 = ESR_EL1.get();
    s.far_el1 = FAR_EL1.get();
    s.afsr0_el1 = AFSR0_EL1.get();
    s.afsr1_el1 = AFSR1_EL1.get();
    s.par_el1 = PAR_EL1.get();
    s.cpacr_el1 = CPACR_EL1.get();
    s.cntkctl_el1 = CNTKCTL_EL1.get();
    s.cntv_ctl_el0 = CNTV_CTL_EL0.get();
    s.cntv_cval_el0 = CNTV_CVAL_EL0.get();
    s.csselr_el1 = CSSELR_EL1.get();
    if HAS_PAUTH.load(Ordering::Relaxed) {
        save_pauth_keys(&mut s.pauth_keys);
    }
    if HAS_SVE.load(Ordering::Relaxed) {
        s.zcr_el1 = save_sve(&mut s.sve_predicates);
    }
}

/// Loads SVE's state beyond the V registers: P0..P15 and FFR from `p`
/// (2 bytes each at the 128-bit vector length [`init`] pins) and ZCR_EL1.
/// Only called when the CPU has SVE.
fn load_sve(p: &[u16; 17], zcr_el1: u64) {
    // SAFETY: SVE is implemented (HAS_SVE) and not trapped at EL2 (CPTR_EL2.TZ
    // clear); `p` is 34 readable bytes, 17 predicates of 2 bytes at the
    // pinned vector length. P0 is loaded last, after carrying FFR.
    unsafe {
        asm!(
            ".arch_extension sve",
            "msr s3_0_c1_c2_0, {zcr}",
            "ldr p0, [{p}, #16, mul vl]",
            "wrffr p0.b",
            "ldr p0, [{p}, #0, mul vl]", "ldr p1, [{p}, #1, mul vl]",
            "ldr p2, [{p}, #2, mul vl]", "ldr p3, [{p}, #3, mul vl]",
            "ldr p4, [{p}, #4, mul vl]", "ldr p5, [{p}, #5, mul vl]",
            "ldr p6, [{p}, #6, mul vl]", "ldr p7, [{p}, #7, mul vl]",
            "ldr p8, [{p}, #8, mul vl]", "ldr p9, [{p}, #9, mul vl]",
            "ldr p10, [{p}, #10, mul vl]", "ldr p11, [{p}, #11, mul vl]",
            "ldr p12, [{p}, #12, mul vl]", "ldr p13, [{p}, #13, mul vl]",
            "ldr p14, [{p}, #14, mul vl]", "ldr p15, [{p}, #15, mul vl]",
            p = in(reg) p.as_ptr(),
            zcr = in(reg) zcr_el1,
            options(readonly, nostack),
        )
    };
}

/// Saves P0..P15 and FFR into `p` (see [`load_sve`]) and returns ZCR_EL1.
/// The CPU keeps the guest's values (P0 is reloaded after carrying FFR),
/// since the same vCPU may be re-entered without [`load_sve`].
fn save_sve(p: &mut [u16; 17]) -> u64 {
    let zcr: u64;
    // SAFETY: as in `load_sve`; `p` is 34 writable bytes.
    unsafe {
        asm!(
            ".arch_extension sve",
            "mrs {zcr}, s3_0_c1_c2_0",
            "str p0, [{p}, #0, mul vl]", "str p1, [{p}, #1, mul vl]",
            "str p2, [{p}, #2, mul vl]", "str p3, [{p}, #3, mul vl]",
            "str p4, [{p}, #4, mul vl]", "str p5, [{p}, #5, mul vl]",
            "str p6, [{p}, #6, mul vl]", "str p7, [{p}, #7, mul vl]",
            "str p8, [{p}, #8, mul vl]", "str p9, [{p}, #9, mul vl]",
            "str p10, [{p}, #10, mul vl]", "str p11, [{p}, #11, mul vl]",
            "str p12, [{p}, #12, mul vl]", "str p13, [{p}, #13, mul vl]",
            "str p14, [{p}, #14, mul vl]", "str p15, [{p}, #15, mul vl]",
            "rdffr p0.b",
            "str p0, [{p}, #16, mul vl]",
            "ldr p0, [{p}, #0, mul vl]",
            p = in(reg) p.as_mut_ptr(),
            zcr = out(reg) zcr,
            options(nostack),
        )
    };
    zcr
}

/// Writes the ten key registers (APIAKeyLo_EL1 = S3_0_C2_C1_0 ... APGAKeyHi_EL1
/// = S3_0_C2_C3_1, in [`El1Sysregs::pauth_keys`] order). Only called when the
/// CPU has PAuth; the hypervisor itself does not sign pointers, so changing
/// the keys under it is harmless.
fn load_pauth_keys(k: &[u64; 10]) {
    // SAFETY: writes of the EL1 key registers, which only EL1 code (the
    // guest about to be entered) uses; the registers exist (HAS_PAUTH).
    unsafe {
        asm!(
            "msr s3_0_c2_c1_0, {0}", "msr s3_0_c2_c1_1, {1}",
            "msr s3_0_c2_c1_2, {2}", "msr s3_0_c2_c1_3, {3}",
            "msr s3_0_c2_c2_0, {4}", "msr s3_0_c2_c2_1, {5}",
            "msr s3_0_c2_c2_2, {6}", "msr s3_0_c2_c2_3, {7}",
            "msr s3_0_c2_c3_0, {8}", "msr s3_0_c2_c3_1, {9}",
            in(reg) k[0], in(reg) k[1], in(reg) k[2], in(reg) k[3], in(reg) k[4],
            in(reg) k[5], in(reg) k[6], in(reg) k[7], in(reg) k[8], in(reg) k[9],
            options(nomem, nostack),
        )
    };
}

/// Reads the ten key registers into `k` (see [`load_pauth_keys`]).
fn save_pauth_keys(k: &mut [u64; 10]) {
    let [a, b, c, d, e, f, g, h, i, j] = k;
    // SAFETY: reads of the EL1 key registers, which exist (HAS_PAUTH).
    unsafe {
        asm!(
            "mrs {0}, s3_0_c2_c1_0",
            "mrs {1}, s3_0_c2_c1_1",
            "mrs {2}, s3_0_c2_c1_2",
            "mrs {3}, s3_0_c2_c1_3",
            "mrs {4}, s3_0_c2_c2_0",
            "mrs {5}, s3_0_c2_c2_1",
            "mrs {6}, s3_0_c2_c2_2",
            "mrs {7}, s3_0_c2_c2_3",
            "mrs {8}, s3_0_c2_c3_0",
            "mrs {9}, s3_0_c2_c3_1",
            out(reg) * a,
            out(reg) * b,
            out(reg) * c,
            out(reg) * d,
            out(reg) * e,
            out(reg) * f,
            out(reg) * g,
            out(reg) * h,
            out(reg) * i,
            out(reg) * j,
            options(nomem, nostack),
        )
    };
}

/// Loads the virtual GIC interface state (list registers, VMCR, APRs).
pub fn load_vgic(v: &VgicState, nr_lrs: usize) {
    for (i, lr) in v.lr.iter().enumerate().take(nr_lrs) {
        gic::write_lr(i, *lr);
    }
    ICH_VMCR_EL2.set(v.vmcr);
    ICH_AP0R0_EL2.set(v.ap0r0);
    ICH_AP1R0_EL2.set(v.ap1r0);
}

/// Saves the virtual GIC interface state after an exit.
pub fn save_vgic(v: &mut VgicState, nr_lrs: usize) {
    for (i, lr) in v.lr.iter_mut().enumerate().take(nr_lrs) {
        *lr = gic::read_lr(i);
        // An invalid LR that asked for an EOI maintenance interrupt keeps the
        // maintenance line asserted until it is rewritten: free it now.
        if *lr >> LR_STATE_SHIFT == 0 && *lr != 0 {
            *lr = 0;
            gic::write_lr(i, 0);
        }
    }
    v.vmcr = ICH_VMCR_EL2.get();
    v.ap0r0 = ICH_AP0R0_EL2.get();
    v.ap1r0 = ICH_AP1R0_EL2.get();
    v.dirty = false;
}

/// MDCR_EL2 while a guest runs without the debugger (set by [`init`]).
static MDCR_GUEST: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The debug state live in the CPU; `None` until the first entry (the
/// registers' reset values are unknown).
static DEBUG_LOADED: spin::Mutex<Option<LoadedDebug>> = spin::Mutex::new(None);

/// What [`load_debug`] last put in the CPU.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LoadedDebug {
    tde: bool,
    mdscr: u64,
    breakpoints: [(u64, u64); HW_SLOTS],
    watchpoints: [(u64, u64); HW_SLOTS],
    hold_interrupts: bool,
}

/// Writes debug register pair `n` (a literal 0..3) of a kind: `$v`/`$c` the
/// value and control registers' names.
macro_rules! write_debug_pair {
    ($n:expr, $value:expr, $ctrl:expr, $($v:literal, $c:literal),+) => {{
        let mut i = 0;
        $(
            if i == $n {
                // SAFETY: debug value/control registers only arm breakpoints
                // and watchpoints, which only the debugger enables and whose
                // exceptions go to EL2 while it does.
                unsafe { asm!(concat!("msr ", $v, ", {v}"), concat!("msr ", $c, ", {c}"), v = in(reg) $value, c = in(reg) $ctrl, options(nomem, nostack)) };
            }
            i += 1;
        )+
        let _ = i;
    }};
}

/// Loads the debugger's state for the vCPU about to run (or the guest's
/// MDSCR_EL1 and nothing armed), writing only what changed.
fn load_debug(d: &DebugRegs, guest_mdscr: u64) {
    let want = LoadedDebug {
        tde: d.armed,
        mdscr: if d.armed { d.mdscr } else { guest_mdscr },
        breakpoints: if d.armed { d.breakpoints } else { [(0, 0); HW_SLOTS] },
        watchpoints: if d.armed { d.watchpoints } else { [(0, 0); HW_SLOTS] },
        hold_interrupts: d.armed && d.hold_interrupts,
    };
    let mut loaded = DEBUG_LOADED.lock();
    let had = *loaded;
    if had == Some(want) {
        return;
    }
    if had.map(|h| h.tde) != Some(want.tde) {
        let mdcr = MDCR_GUEST.load(Ordering::Relaxed) | if want.tde { MDCR_TDE } else { 0 };
        // SAFETY: MDCR_EL2 routes and traps lower ELs' debug events only.
        unsafe { asm!("msr mdcr_el2, {}", in(reg) mdcr, options(nomem, nostack)) };
    }
    if had.map(|h| h.mdscr) != Some(want.mdscr) {
        MDSCR_EL1.set(want.mdscr);
    }
    for n in 0..HW_SLOTS {
        if had.map(|h| h.breakpoints[n]) != Some(want.breakpoints[n]) {
            let (v, c) = want.breakpoints[n];
            write_debug_pair!(
                n,
                v,
                c,
                "dbgbvr0_el1",
                "dbgbcr0_el1",
                "dbgbvr1_el1",
                "dbgbcr1_el1",
                "dbgbvr2_el1",
                "dbgbcr2_el1",
                "dbgbvr3_el1",
                "dbgbcr3_el1"
            );
        }
        if had.map(|h| h.watchpoints[n]) != Some(want.watchpoints[n]) {
            let (v, c) = want.watchpoints[n];
            write_debug_pair!(
                n,
                v,
                c,
                "dbgwvr0_el1",
                "dbgwcr0_el1",
                "dbgwvr1_el1",
                "dbgwcr1_el1",
                "dbgwvr2_el1",
                "dbgwcr2_el1",
                "dbgwvr3_el1",
                "dbgwcr3_el1"
            );
        }
    }
    if had.map(|h| h.hold_interrupts) != Some(want.hold_interrupts) {
        // ICH_HCR_EL2.En off: no virtual interrupt reaches the guest while
        // the list registers keep them.
        ICH_HCR_EL2.set(!want.hold_interrupts as u64);
    }
    // SAFETY: a context synchronisation event, so the debug registers
    // written above apply to the guest entry that follows.
    unsafe { asm!("isb", options(nomem, nostack)) };
    *loaded = Some(want);
}

/// Key of the vCPU context whose EL1 registers are live in the CPU (0: none).
static LOADED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Forgets which context is live, so the next [`run_context`] reloads every
/// EL1 register (call after editing a saved [`El1Sysregs`] from outside).
pub fn invalidate_loaded() {
    LOADED.store(0, core::sync::atomic::Ordering::Relaxed);
}

/// Runs a whole vCPU context once: loads EL1 and vGIC state, enters the guest
/// with stage-2 `vttbr`, and saves everything back on exit.
///
/// `key` identifies the context (non-zero, unique per vCPU). Writing the
/// translation-control registers is expensive (TLB maintenance, and under
/// QEMU a full translation flush), and every list-register write makes the
/// GIC re-evaluate the virtual interface, so when the same vCPU runs again
/// the state still in the CPU is reused: EL1 registers always, list
/// registers unless an interrupt was injected since the exit.
///
/// The guest's virtual timer stays armed in the CPU after an exit; switching
/// to another vCPU overwrites it, and an idle host must mask PPI 27 itself.
pub fn run_context(ctx: &mut VcpuContext, key: u64, vttbr: u64, nr_lrs: usize) -> ExitKind {
    use core::sync::atomic::Ordering;
    VTTBR_EL2.set(vttbr);
    let same = key != 0 && LOADED.load(Ordering::Relaxed) == key;
    if !same {
        load_sysregs(&ctx.sys, ctx.vmpidr);
        LOADED.store(key, Ordering::Relaxed);
    }
    if !same || ctx.vgic.dirty {
        load_vgic(&ctx.vgic, nr_lrs);
    }
    load_debug(&ctx.debug, ctx.sys.mdscr_el1);
    let k = enter(&mut ctx.regs);
    save_vgic(&mut ctx.vgic, nr_lrs);
    save_sysregs(&mut ctx.sys);
    k
}
