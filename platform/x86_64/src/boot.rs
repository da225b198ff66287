//! PVH entry: the Xen ELF note QEMU looks for, and the 32-bit → 64-bit switch
//! that builds the hypervisor's identity map before any Rust code runs.
//!
//! QEMU enters at `pvh_start32` in 32-bit flat protected mode with paging off,
//! no stack and `ebx` pointing at `hvm_start_info`. We zero .bss (the page
//! tables and boot stack live there), map the low 4 GiB 1:1 with 2 MiB pages
//! (so a heap pointer is also a physical address; the top GiB, where the local
//! APIC and other MMIO live, is mapped uncached), enable PAE + long mode, and
//! call `kmain(start_info_pa)` on the boot stack.

use core::arch::global_asm;

/// Size of the boot stack (the only host stack: one physical CPU).
pub const BOOT_STACK_SIZE: usize = 256 * 1024;

global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long {phys32_entry}
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .popsection

    .pushsection .bss.boot, "aw", @nobits
    .balign 4096
    boot_pml4: .skip 4096
    boot_pdpt: .skip 4096
    boot_pd: .skip 4096 * 4
    .balign 16
    boot_stack_bottom: .skip {stack_size}
    .global boot_stack_top
    boot_stack_top:
    .popsection

    .pushsection .rodata.boot_gdt, "a"
    .balign 16
    boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF
    .quad 0x00CF92000000FFFF
    boot_gdt_end:
    boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
    .popsection

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_start32
    pvh_start32:
    cli
    cld
    mov esi, ebx

    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    shr ecx, 2
    xor eax, eax
    rep stosd

    mov esp, offset boot_stack_top

    mov eax, offset boot_pdpt
    or eax, 3
    mov dword ptr [boot_pml4], eax

    mov eax, offset boot_pd
    or eax, 3
    xor ecx, ecx
.Lpdpt_loop:
    mov dword ptr [boot_pdpt + ecx * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jb .Lpdpt_loop

    xor ecx, ecx
.Lpd_loop:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    cmp ecx, 1536
    jb .Lpd_cached
    or eax, 0x18
.Lpd_cached:
    mov dword ptr [boot_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jb .Lpd_loop

    mov eax, offset boot_pml4
    mov cr3, eax
    mov eax, cr4
    or eax, 0x620
    mov cr4, eax
    mov ecx, 0xC0000080
    rdmsr
    or eax, 0x900
    wrmsr
    mov eax, cr0
    or eax, 0x80010001
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    mov eax, offset .Llong_entry
    push 0x08
    push eax
    retf

    .code64
.Llong_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, offset boot_stack_top
    mov edi, esi
    call kmain
.Lhang:
    cli
    hlt
    jmp .Lhang
    .popsection
    "#,
    stack_size = const BOOT_STACK_SIZE,
    phys32_entry = const xen_abi::nr::elfnote::PHYS32_ENTRY,
);
