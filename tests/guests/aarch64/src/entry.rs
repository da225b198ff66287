//! arm64 guest entry: the Linux Image header, self-relocation, .bss, the
//! EL1 identity-mapped MMU, FP/SIMD enable, per-vCPU stacks, the EL1
//! exception vectors and the secondary (PSCI CPU_ON) entry point.

use core::arch::global_asm;

// vCPU 0 enters like a Linux Image: EL1, MMU off, x0 = DTB. Secondaries
// enter at `guest_secondary_entry` (PSCI CPU_ON) with x0 = context id,
// which we set to the vCPU id.
//
// Page tables: one level-1 table, 4 × 1 GiB blocks (T0SZ = 32): the low
// 3 GiB normal write-back memory (RAM starts at IPA 0 on Lantern and 1 GiB
// on other layouts), the top 1 GiB (GIC and other devices) Device-nGnRnE.
global_asm!(
    r#"
    // The address of `sym` in `reg`, PC-relative (works wherever we run).
    .macro adr_l reg, sym
    adrp \reg, \sym
    add \reg, \reg, :lo12:\sym
    .endm

    .section .text.head, "ax"
    .global _start
_start:
    b guest_primary_entry
    .long 0
    .quad 0x80000
    .quad __image_size
    .quad 0xa
    .quad 0
    .quad 0
    .quad 0
    .long 0x644d5241
    .long 0

guest_primary_entry:
    mov x19, x0
    adr x20, _start
    adr_l x1, __rela_start
    adr_l x2, __rela_end
2:
    cmp x1, x2
    b.hs 3f
    ldp x3, x4, [x1], #16
    ldr x5, [x1], #8
    cmp w4, #{r_aarch64_relative}
    b.ne 2b
    add x5, x5, x20
    str x5, [x3, x20]
    b 2b
3:
    adr_l x1, __bss_start
    adr_l x2, __bss_end
4:
    cmp x1, x2
    b.hs 5f
    stp xzr, xzr, [x1], #16
    b 4b
5:
    adr_l x1, guest_l1_table
    mov x2, #0x705
    str x2, [x1]
    mov x3, #0x40000000
    add x2, x2, x3
    str x2, [x1, #8]
    add x2, x2, x3
    str x2, [x1, #16]
    mov x2, #0x401
    movk x2, #0xc000, lsl #16
    orr x2, x2, #(3 << 53)
    str x2, [x1, #24]
    dsb ish
    mov x0, #0
    mov x1, x19
    b guest_common_entry

    .global guest_secondary_entry
guest_secondary_entry:
    mov x1, #0
    b guest_common_entry

guest_common_entry:
    mov x21, x0
    mov x22, x1
    mov x2, #(3 << 20)
    msr cpacr_el1, x2
    mov x2, #0xff00
    msr mair_el1, x2
    ldr x2, ={tcr}
    msr tcr_el1, x2
    adr_l x2, guest_l1_table
    msr ttbr0_el1, x2
    isb
    tlbi vmalle1
    dsb nsh
    isb
    mrs x2, sctlr_el1
    orr x2, x2, #(1 << 0)
    orr x2, x2, #(1 << 2)
    orr x2, x2, #(1 << 12)
    bic x2, x2, #(1 << 1)
    msr sctlr_el1, x2
    isb
    adr_l x2, guest_vectors
    msr vbar_el1, x2
    msr tpidr_el1, x21
    adr_l x2, guest_stacks
    add x3, x21, #1
    mov x4, #{stack}
    madd x2, x3, x4, x2
    mov sp, x2
    isb
    mov x0, x21
    mov x1, x22
    bl {main}
6:
    wfi
    b 6b

    .section .text.vectors, "ax"
    .balign 2048
guest_vectors:
    .irp kind, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 128
    sub sp, sp, #(32 * 8 + 32 * 16)
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b guest_exception_common
    .endr

guest_exception_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x29, [sp, #144]
    mrs x1, elr_el1
    stp x30, x1, [sp, #160]
    mrs x1, spsr_el1
    str x1, [sp, #176]
    add x1, sp, #256
    stp q0, q1, [x1, #0]
    stp q2, q3, [x1, #32]
    stp q4, q5, [x1, #64]
    stp q6, q7, [x1, #96]
    stp q16, q17, [x1, #128]
    stp q18, q19, [x1, #160]
    stp q20, q21, [x1, #192]
    stp q22, q23, [x1, #224]
    stp q24, q25, [x1, #256]
    stp q26, q27, [x1, #288]
    stp q28, q29, [x1, #320]
    stp q30, q31, [x1, #352]
    mov x1, sp
    bl {exc}
    add x1, sp, #256
    ldp q0, q1, [x1, #0]
    ldp q2, q3, [x1, #32]
    ldp q4, q5, [x1, #64]
    ldp q6, q7, [x1, #96]
    ldp q16, q17, [x1, #128]
    ldp q18, q19, [x1, #160]
    ldp q20, q21, [x1, #192]
    ldp q22, q23, [x1, #224]
    ldp q24, q25, [x1, #256]
    ldp q26, q27, [x1, #288]
    ldp q28, q29, [x1, #320]
    ldp q30, q31, [x1, #352]
    ldr x1, [sp, #176]
    msr spsr_el1, x1
    ldp x30, x1, [sp, #160]
    msr elr_el1, x1
    ldp x18, x29, [sp, #144]
    ldp x16, x17, [sp, #128]
    ldp x14, x15, [sp, #112]
    ldp x12, x13, [sp, #96]
    ldp x10, x11, [sp, #80]
    ldp x8, x9, [sp, #64]
    ldp x6, x7, [sp, #48]
    ldp x4, x5, [sp, #32]
    ldp x2, x3, [sp, #16]
    ldp x0, x1, [sp, #0]
    add sp, sp, #(32 * 8 + 32 * 16)
    eret

    .section .bss.guest_pages, "aw", @nobits
    .balign 4096
guest_l1_table:
    .skip 4096
    .balign 16
    .global guest_stacks
guest_stacks:
    .skip {stacks}
    .text
"#,
    tcr = const TCR_EL1,
    r_aarch64_relative = const R_AARCH64_RELATIVE,
    stack = const super::STACK_SIZE,
    stacks = const super::STACK_SIZE * super::MAX_VCPUS,
    main = sym super::vcpu_main,
    exc = sym super::exception,
);

/// `R_AARCH64_RELATIVE`: the only relocation type a static PIE image has
/// (the entry code applies them itself).
const R_AARCH64_RELATIVE: u32 = 1027;

/// TCR_EL1: T0SZ = 32 (4 GiB), inner/outer write-back, inner shareable,
/// 4 KiB granule, TTBR1 walks disabled (EPD1), 32-bit IPS.
const TCR_EL1: u64 = 32 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23);

extern "C" {
    /// Secondary entry point handed to PSCI CPU_ON.
    pub fn guest_secondary_entry();
}
