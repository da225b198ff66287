//! 32-bit guest: PVH entry that stays in 32-bit protected mode with paging
//! off (so the hypervisor latches the compat layout), plus the 32-bit
//! hypercall convention.

use core::arch::{asm, global_asm};

use lantern_guest_scenario::UNUSED_HYPERCALL;

// PVH entry for vCPU 0 and the VCPUOP_initialise entry of secondaries, both
// in 32-bit flat protected mode with paging off. vCPU 0 clears .bss and
// takes the first stack; everyone enables SSE (Rust on i686 uses SSE2),
// loads our GDT and calls Rust with (vcpu id, start_info) on the stack.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov esi, ebx
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb
    mov esp, offset guest_stacks + {stack}
    xor edi, edi
    jmp 3f

    .global ap_start32
ap_start32:
    cli
    cld
    xor esi, esi
3:
    mov eax, cr0
    and eax, 0xfffffffb
    or eax, 0x2
    mov cr0, eax
    mov eax, cr4
    or eax, 0x600
    mov cr4, eax
    lgdt [guest_gdt_ptr]
    push 0x08
    mov eax, offset guest_flat32
    push eax
    retf
guest_flat32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    sub esp, 8
    push esi
    push edi
    test edi, edi
    jnz 5f
    call {boot}
    ud2
5:
    call {ap}
    ud2

    .section .rodata.gdt, "a"
    .balign 16
guest_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
guest_gdt_end:
    .balign 4
guest_gdt_ptr:
    .short guest_gdt_end - guest_gdt - 1
    .long guest_gdt

    .section .bss.guest_pages, "aw", @nobits
    .balign 4096
    .global guest_stacks
guest_stacks:
    .skip {stacks}
    .text
"#,
    stack = const super::STACK_SIZE,
    stacks = const super::STACK_SIZE * super::MAX_VCPUS,
    boot = sym super::boot_main,
    ap = sym super::ap_main,
);

/// Call the hypercall stub at `stub` with the 32-bit convention: ebx, ecx,
/// edx, esi, edi carry the arguments, eax the result.
///
/// # Safety
/// `stub` must be a stub of an installed hypercall page and the arguments
/// must be valid for that hypercall (pointers to live guest memory).
pub unsafe fn hypercall(stub: usize, a: [u64; 5]) -> i64 {
    let args: [u32; 5] = [a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32];
    let ret: u32;
    // SAFETY: per the function contract. ebx/esi/edi/ebp may be reserved by
    // the compiler, so they are saved and loaded by hand from `args`; the
    // stub address is pushed first so loading the arguments cannot clobber it.
    unsafe {
        asm!(
            "push ebp",
            "push ebx",
            "push esi",
            "push edi",
            "push {stub}",
            "mov ebx, dword ptr [eax]",
            "mov ecx, dword ptr [eax + 4]",
            "mov edx, dword ptr [eax + 8]",
            "mov esi, dword ptr [eax + 12]",
            "mov edi, dword ptr [eax + 16]",
            "call dword ptr [esp]",
            "add esp, 4",
            "pop edi",
            "pop esi",
            "pop ebx",
            "pop ebp",
            stub = in(reg) stub,
            inlateout("eax") args.as_ptr() => ret,
            clobber_abi("C"),
        );
    }
    ret as i32 as i64
}

/// A raw VMMCALL with [`UNUSED_HYPERCALL`]: the baseline trap.
///
/// # Safety
/// Only meaningful under a hypervisor that handles VMMCALL (else #UD).
pub unsafe fn bare_vmmcall() -> i64 {
    let ret: u32;
    // SAFETY: per the function contract; no memory is named. ebx/esi/edi
    // carry no arguments here, so nothing reserved needs saving.
    unsafe {
        asm!("vmmcall", inlateout("eax") UNUSED_HYPERCALL as u32 => ret, lateout("ecx") _, lateout("edx") _,
             options(nostack));
    }
    ret as i32 as i64
}
