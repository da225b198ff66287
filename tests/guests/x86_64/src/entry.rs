//! PVH entry of both builds: from 32-bit flat protected mode with paging
//! off into the build's own mode — long mode with an identity map (64-bit
//! build), or protected mode with paging still off (32-bit build, so the
//! hypervisor latches the compat layout) — and on into Rust.
//!
//! vCPU 0 enters at `pvh_start32` (the PVH note's address, `ebx` →
//! hvm_start_info); secondaries enter at `ap_start32` (their
//! `VCPUOP_initialise` context: `esp` = their stack, `edi` = their id).
//! vCPU 0 clears `.bss` (and, in the 64-bit build, builds the page tables:
//! 4 GiB identity map with 2 MiB pages) and takes the first stack; everyone
//! then enables SSE (Rust uses it), loads our GDT, switches mode and calls
//! `boot_main` (vCPU 0) or `ap_main` with (vCPU id, start_info).

use core::arch::global_asm;

/// GDT selector of the code segment Rust runs in (see `guest_gdt` below:
/// 0x08 flat 32-bit code, 0x10 flat data, 0x18 64-bit code).
#[cfg(target_arch = "x86_64")]
pub const CODE_SELECTOR: u16 = 0x18;
#[cfg(target_arch = "x86")]
pub const CODE_SELECTOR: u16 = 0x08;
/// GDT selector of the flat data segment.
const DATA_SELECTOR: u16 = 0x10;

/// CR4.OSFXSR | CR4.OSXMMEXCPT: SSE on.
const CR4_SSE: u32 = (1 << 9) | (1 << 10);
/// CR4.PAE, needed for long mode.
#[cfg(target_arch = "x86_64")]
const CR4_PAE: u32 = 1 << 5;
/// The CR4 bits this build sets.
#[cfg(target_arch = "x86_64")]
const CR4_BITS: u32 = CR4_SSE | CR4_PAE;
#[cfg(target_arch = "x86")]
const CR4_BITS: u32 = CR4_SSE;

// 64-bit build: vCPU 0 fills the page tables (PML4[0] → PDPT[0..4] → four
// PDs of 512 2 MiB pages each: present | writable | large), the low 4 GiB,
// which reaches the console ring Xen's toolstack puts just below 4 GiB.
#[cfg(target_arch = "x86_64")]
macro_rules! build_page_tables {
    () => {
        r#"
    mov eax, offset guest_pdpt
    or eax, 3
    mov dword ptr [guest_pml4], eax
    xor ecx, ecx
3:
    mov eax, ecx
    shl eax, 12
    add eax, offset guest_pd
    or eax, 3
    mov dword ptr [guest_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 3b
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83
    mov dword ptr [guest_pd + ecx * 8], eax
    inc ecx
    cmp ecx, 2048
    jne 2b
"#
    };
}
#[cfg(target_arch = "x86")]
macro_rules! build_page_tables {
    () => {
        ""
    };
}

// 64-bit build: page tables, EFER.LME, paging on (the far return that
// follows lands in the 64-bit code segment). 32-bit build: nothing to do.
#[cfg(target_arch = "x86_64")]
macro_rules! enter_mode {
    () => {
        r#"
    mov eax, offset guest_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100
    wrmsr
    mov eax, cr0
    or eax, 0x80000001
    mov cr0, eax
"#
    };
}
#[cfg(target_arch = "x86")]
macro_rules! enter_mode {
    () => {
        ""
    };
}

// The code that runs in the build's mode: `.code64`, or stay `.code32`.
#[cfg(target_arch = "x86_64")]
macro_rules! mode_directive {
    () => {
        ".code64\n"
    };
}
#[cfg(target_arch = "x86")]
macro_rules! mode_directive {
    () => {
        ".code32\n"
    };
}

// Hand (vCPU id, start_info) to Rust: in rdi/rsi, zero-extended (64-bit),
// or on a 16-byte aligned stack (32-bit cdecl).
#[cfg(target_arch = "x86_64")]
macro_rules! rust_call_args {
    () => {
        r#"
    mov esp, esp
    mov edi, edi
    mov esi, esi
"#
    };
}
#[cfg(target_arch = "x86")]
macro_rules! rust_call_args {
    () => {
        r#"
    sub esp, 8
    push esi
    push edi
"#
    };
}

// The 64-bit build's page tables.
#[cfg(target_arch = "x86_64")]
macro_rules! page_table_pages {
    () => {
        r#"
guest_pml4:
    .skip 4096
guest_pdpt:
    .skip 4096
guest_pd:
    .skip 4096 * 4
"#
    };
}
#[cfg(target_arch = "x86")]
macro_rules! page_table_pages {
    () => {
        ""
    };
}

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
"#,
    build_page_tables!(),
    r#"
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
    or eax, {cr4}
    mov cr4, eax
    lgdt [guest_gdt_ptr]
"#,
    enter_mode!(),
    r#"
    push {code}
    mov eax, offset guest_mode_entry
    push eax
    retf
"#,
    mode_directive!(),
    r#"
guest_mode_entry:
    mov ax, {data}
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
"#,
    rust_call_args!(),
    r#"
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
"#,
    page_table_pages!(),
    r#"
    .global guest_stacks
guest_stacks:
    .skip {stacks}
"#,
    mode_directive!(),
    "    .text",
    stack = const super::STACK_SIZE,
    stacks = const super::STACK_SIZE * super::MAX_VCPUS,
    cr4 = const CR4_BITS,
    code = const CODE_SELECTOR,
    data = const DATA_SELECTOR,
    boot = sym super::boot_main,
    ap = sym super::ap_main,
);
