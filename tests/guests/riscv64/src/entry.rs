//! riscv64 guest entry: vCPU 0's entry at the image base (clears .bss),
//! the secondary (SBI HSM `hart_start`) entry, FP enable, per-vCPU stacks
//! and the trap vector (`stvec`, direct mode) that saves a register frame
//! and hands every trap to `guest::trap`.

use core::arch::global_asm;

/// Slots of the trap frame, in 8-byte words: `x0`..`x31` at their register
/// numbers (the slots of `x0` and `sp` unused), then `sepc`, `sstatus`,
/// `fcsr`, one word of padding, and `f0`..`f31`.
pub const FRAME_SEPC: usize = 32;
/// `sstatus` slot of the trap frame.
pub const FRAME_SSTATUS: usize = 33;
const FRAME_FCSR: usize = 34;
const FRAME_F0: usize = 36;
/// Words in a trap frame (a multiple of two: the stack stays 16-aligned).
const FRAME_WORDS: usize = FRAME_F0 + 32;

// vCPU 0 enters at `_start` in VS-mode, MMU off (vsatp = 0), a0 = hart id,
// a1 = the guest DTB. Secondaries enter at `guest_secondary_entry` with
// a0 = hart id and a1 = the opaque word `hart_start` passed, which we set
// to the vCPU id. Both reach `guest_common_entry` with a0 = vCPU id,
// a1 = DTB (0 on secondaries), a2 = hart id.
//
// `tp` holds the vCPU id for the whole run (nothing else uses it in a
// bare-metal image without thread-locals); the trap handler reads it.
//
// LLVM assembles module-level asm without the target's extensions, so
// the block turns on M (the stack offset) and D (with F: the FP frame) itself.
global_asm!(
    r#"
    .option push
    .option arch, +m, +d
    .section .text.head, "ax"
    .global _start
_start:
    csrw sie, zero
    csrci sstatus, 2
    la t0, __bss_start
    la t1, __bss_end
1:
    bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:
    fence
    mv a2, a0
    li a0, 0
    j guest_common_entry

    .global guest_secondary_entry
    .balign 4
guest_secondary_entry:
    csrw sie, zero
    csrci sstatus, 2
    mv a2, a0
    mv a0, a1
    li a1, 0
    j guest_common_entry

guest_common_entry:
    mv tp, a0
    li t0, {max_vcpus}
    bgeu a0, t0, 4f
    li t0, {sstatus_fs_initial}
    csrs sstatus, t0
    fscsr zero
    la t0, guest_trap_vector
    csrw stvec, t0
    la t0, guest_stacks
    addi t1, a0, 1
    li t2, {stack}
    mul t1, t1, t2
    add sp, t0, t1
    call {main}
    // A vCPU id we have no stack for: park (wfi traps to the hypervisor,
    // which blocks the vCPU).
4:
    wfi
    j 4b

    .section .text.trap, "ax"
    .balign 4
guest_trap_vector:
    addi sp, sp, -{frame_bytes}
    sd x1, 1*8(sp)
    sd x3, 3*8(sp)
    sd x4, 4*8(sp)
    sd x5, 5*8(sp)
    sd x6, 6*8(sp)
    sd x7, 7*8(sp)
    sd x8, 8*8(sp)
    sd x9, 9*8(sp)
    sd x10, 10*8(sp)
    sd x11, 11*8(sp)
    sd x12, 12*8(sp)
    sd x13, 13*8(sp)
    sd x14, 14*8(sp)
    sd x15, 15*8(sp)
    sd x16, 16*8(sp)
    sd x17, 17*8(sp)
    sd x18, 18*8(sp)
    sd x19, 19*8(sp)
    sd x20, 20*8(sp)
    sd x21, 21*8(sp)
    sd x22, 22*8(sp)
    sd x23, 23*8(sp)
    sd x24, 24*8(sp)
    sd x25, 25*8(sp)
    sd x26, 26*8(sp)
    sd x27, 27*8(sp)
    sd x28, 28*8(sp)
    sd x29, 29*8(sp)
    sd x30, 30*8(sp)
    sd x31, 31*8(sp)
    csrr t0, sepc
    sd t0, {sepc}*8(sp)
    csrr t0, sstatus
    sd t0, {sstatus}*8(sp)
    frcsr t0
    sd t0, {fcsr}*8(sp)
    addi t0, sp, {f0}*8
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fsd f\n, \n*8(t0)
    .endr
    mv a0, sp
    call {trap}
    addi t0, sp, {f0}*8
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    fld f\n, \n*8(t0)
    .endr
    ld t0, {fcsr}*8(sp)
    fscsr t0
    ld t0, {sstatus}*8(sp)
    csrw sstatus, t0
    ld t0, {sepc}*8(sp)
    csrw sepc, t0
    ld x1, 1*8(sp)
    ld x3, 3*8(sp)
    ld x4, 4*8(sp)
    ld x5, 5*8(sp)
    ld x6, 6*8(sp)
    ld x7, 7*8(sp)
    ld x8, 8*8(sp)
    ld x9, 9*8(sp)
    ld x10, 10*8(sp)
    ld x11, 11*8(sp)
    ld x12, 12*8(sp)
    ld x13, 13*8(sp)
    ld x14, 14*8(sp)
    ld x15, 15*8(sp)
    ld x16, 16*8(sp)
    ld x17, 17*8(sp)
    ld x18, 18*8(sp)
    ld x19, 19*8(sp)
    ld x20, 20*8(sp)
    ld x21, 21*8(sp)
    ld x22, 22*8(sp)
    ld x23, 23*8(sp)
    ld x24, 24*8(sp)
    ld x25, 25*8(sp)
    ld x26, 26*8(sp)
    ld x27, 27*8(sp)
    ld x28, 28*8(sp)
    ld x29, 29*8(sp)
    ld x30, 30*8(sp)
    ld x31, 31*8(sp)
    addi sp, sp, {frame_bytes}
    sret

    .section .bss.guest_stacks, "aw", @nobits
    .balign 16
    .global guest_stacks
guest_stacks:
    .skip {stacks}
    .text
    .option pop
"#,
    max_vcpus = const super::MAX_VCPUS,
    sstatus_fs_initial = const SSTATUS_FS_INITIAL,
    stack = const super::STACK_SIZE,
    stacks = const super::STACK_SIZE * super::MAX_VCPUS,
    frame_bytes = const FRAME_WORDS * 8,
    sepc = const FRAME_SEPC,
    sstatus = const FRAME_SSTATUS,
    fcsr = const FRAME_FCSR,
    f0 = const FRAME_F0,
    main = sym super::vcpu_main,
    trap = sym super::trap,
);

/// `sstatus.FS` = Initial: the FP registers usable (the compiler may use
/// them; the trap frame saves them).
const SSTATUS_FS_INITIAL: u64 = 1 << 13;

extern "C" {
    /// Secondary entry point handed to SBI HSM `hart_start`.
    pub fn guest_secondary_entry();
}
