//! 64-bit guest: PVH entry (32-bit protected mode, paging off) → identity
//! paging → long mode, plus the 64-bit hypercall convention.

use core::arch::{asm, global_asm};

use lantern_guest_scenario::UNUSED_HYPERCALL;

// PVH entry for vCPU 0 and the VCPUOP_initialise entry of secondaries.
//
// Both arrive in 32-bit flat protected mode with paging off (vCPU 0 with
// ebx → hvm_start_info, secondaries with esp = their stack and edi = their
// id). vCPU 0 clears .bss and builds the page tables (1 GiB identity map
// with 2 MiB pages); everyone then enables SSE (Rust uses it), loads our
// GDT, turns on PAE + EFER.LME + paging and far-returns into 64-bit code.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .code32
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
    mov eax, offset guest_pdpt
    or eax, 3
    mov dword ptr [guest_pml4], eax
    mov eax, offset guest_pd
    or eax, 3
    mov dword ptr [guest_pdpt], eax
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [guest_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 512
    jne 2b
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
    or eax, 0x620
    mov cr4, eax
    lgdt [guest_gdt_ptr]
    mov eax, offset guest_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
    push 0x18
    mov eax, offset guest_long_mode
    push eax
    retf

    .code64
guest_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov esp, esp
    mov edi, edi
    mov esi, esi
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
    .quad 0x00af9a000000ffff
guest_gdt_end:
    .balign 4
guest_gdt_ptr:
    .short guest_gdt_end - guest_gdt - 1
    .long guest_gdt

    .section .bss.guest_pages, "aw", @nobits
    .balign 4096
guest_pml4:
    .skip 4096
guest_pdpt:
    .skip 4096
guest_pd:
    .skip 4096
    .global guest_stacks
guest_stacks:
    .skip {stacks}
    .code64
    .text
"#,
    stack = const super::STACK_SIZE,
    stacks = const super::STACK_SIZE * super::MAX_VCPUS,
    boot = sym super::boot_main,
    ap = sym super::ap_main,
);

/// Call the hypercall stub at `stub`: rdi, rsi, rdx, r10, r8 carry the
/// arguments, rax the result (the stub loads the number into eax itself).
///
/// # Safety
/// `stub` must be a stub of an installed hypercall page and the arguments
/// must be valid for that hypercall (pointers to live guest memory).
pub unsafe fn hypercall(stub: usize, a: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: per the function contract; the stub only executes VMMCALL and
    // returns. The argument registers are declared clobbered because Xen may
    // scribble on them.
    unsafe {
        asm!(
            "call {stub}",
            stub = in(reg) stub,
            lateout("rax") ret,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => _,
            inlateout("r10") a[3] => _,
            inlateout("r8") a[4] => _,
            clobber_abi("C"),
        );
    }
    ret
}

/// A raw VMMCALL with [`UNUSED_HYPERCALL`]: the baseline trap.
///
/// # Safety
/// Only meaningful under a hypervisor that handles VMMCALL (else #UD).
pub unsafe fn bare_vmmcall() -> i64 {
    let ret: i64;
    // SAFETY: per the function contract; no memory is named.
    unsafe {
        asm!("vmmcall", inlateout("rax") UNUSED_HYPERCALL => ret, lateout("rdi") _, lateout("rsi") _,
             lateout("rdx") _, lateout("r10") _, lateout("r8") _, options(nostack));
    }
    ret
}
