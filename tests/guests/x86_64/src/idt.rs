//! Interrupt descriptor table: a diagnostic handler for every exception
//! and the event-upcall handler on [`super::UPCALL_VECTOR`], for both the
//! 64-bit and the 32-bit build.

use core::arch::{asm, global_asm};

use lantern_guest_scenario::{console, Guest};

use super::GUEST;

/// Bytes per exception stub: stub `n` sits at `guest_exc_stubs + n * 16`,
/// so no table of their addresses is needed.
const EXC_STUB_SIZE: usize = 16;

// One stub per exception vector, the same in both builds: push the vector
// number and join the build's common path (`guest_exc_common`), which hands
// the frame to Rust. Each stub (push imm8 + jmp) is well under 16 bytes.
macro_rules! exception_stubs {
    () => {
        r#"
    .text
    .balign {stub_size}
    .global guest_exc_stubs
guest_exc_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign {stub_size}
    push \n
    jmp guest_exc_common
    .endr
"#
    };
}

// The upcall stub saves the caller-saved registers and the FPU/SSE state
// (the Rust handler may use SSE), calls Rust and returns with iret.
#[cfg(target_arch = "x86_64")]
global_asm!(
    exception_stubs!(),
    r#"
guest_exc_common:
    mov rdi, rsp
    and rsp, -16
    call {exc}
    ud2

    .global guest_upcall_entry
guest_upcall_entry:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    push rbp
    mov rbp, rsp
    and rsp, -16
    sub rsp, 512
    fxsave [rsp]
    call {upcall}
    fxrstor [rsp]
    mov rsp, rbp
    pop rbp
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
"#,
    stub_size = const EXC_STUB_SIZE,
    exc = sym exception,
    upcall = sym upcall,
);

#[cfg(target_arch = "x86")]
global_asm!(
    exception_stubs!(),
    r#"
guest_exc_common:
    mov eax, esp
    and esp, -16
    sub esp, 12
    push eax
    call {exc}
    ud2

    .global guest_upcall_entry
guest_upcall_entry:
    push eax
    push ecx
    push edx
    push ebp
    mov ebp, esp
    and esp, -16
    sub esp, 512
    fxsave [esp]
    call {upcall}
    fxrstor [esp]
    mov esp, ebp
    pop ebp
    pop edx
    pop ecx
    pop eax
    iretd
"#,
    stub_size = const EXC_STUB_SIZE,
    exc = sym exception,
    upcall = sym upcall,
);

extern "C" {
    /// The first of the 32 exception stubs.
    static guest_exc_stubs: u8;
    fn guest_upcall_entry();
}

/// Exception vectors (0..32) the CPU reserves, each with a stub.
const EXCEPTION_VECTORS: usize = 32;
/// Words per gate: 16-byte gates in long mode, 8-byte in protected mode.
const GATE_WORDS: usize = if cfg!(target_arch = "x86_64") { 2 } else { 1 };
/// Our code selector (see the GDT in the entry asm).
const CODE_SEL: u64 = super::entry::CODE_SELECTOR as u64;

/// The IDT (shared by all vCPUs; written once by vCPU 0 before any secondary runs).
static mut IDT: [u64; 256 * GATE_WORDS] = [0; 256 * GATE_WORDS];

fn set_gate(idt: &mut [u64; 256 * GATE_WORDS], vector: usize, handler: usize) {
    let off = handler as u64;
    // Present, DPL 0, interrupt gate (0xe) — interrupts stay off inside.
    let low = (off & 0xffff) | (CODE_SEL << 16) | (0x8e << 40) | (((off >> 16) & 0xffff) << 48);
    idt[vector * GATE_WORDS] = low;
    if GATE_WORDS == 2 {
        idt[vector * GATE_WORDS + 1] = off >> 32;
    }
}

/// Fill the IDT and load it on vCPU 0.
pub fn init() {
    // SAFETY: runs once on vCPU 0 before any secondary is started, so no
    // other reference to IDT exists.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    let stubs = core::ptr::addr_of!(guest_exc_stubs) as usize;
    for v in 0..EXCEPTION_VECTORS {
        set_gate(idt, v, stubs + v * EXC_STUB_SIZE);
    }
    set_gate(idt, super::UPCALL_VECTOR as usize, guest_upcall_entry as *const () as usize);
    load();
}

/// Load the IDT on the calling vCPU.
pub fn load() {
    #[repr(C, packed)]
    struct Ptr {
        limit: u16,
        base: usize,
    }
    let p = Ptr {
        limit: (core::mem::size_of::<[u64; 256 * GATE_WORDS]>() - 1) as u16,
        base: core::ptr::addr_of!(IDT) as usize,
    };
    // SAFETY: IDT is a static that lives forever and holds valid gates.
    unsafe { asm!("lidt [{}]", in(reg) &p, options(readonly, nostack)) };
}

/// Rust side of the upcall vector.
extern "C" fn upcall() {
    lantern_guest_scenario::on_upcall(&GUEST, super::current_vcpu());
}

/// Rust side of every exception: report and crash the domain.
extern "C" fn exception(frame: *const usize) -> ! {
    // SAFETY: the stub passes its stack pointer: vector, [error code], ip.
    let vector = unsafe { *frame };
    let has_err = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
    let (err, ip) = if has_err {
        // SAFETY: the CPU pushed an error code and then the return frame.
        unsafe { (*frame.add(1), *frame.add(2)) }
    } else {
        // SAFETY: the CPU pushed the return frame right above the vector.
        unsafe { (0, *frame.add(1)) }
    };
    let vcpu = super::current_vcpu();
    let report = format_args!("EXCEPTION vcpu={vcpu} vector={vector} error={err:#x} ip={ip:#x}");
    if !super::HYPERCALLS_READY.load(core::sync::atomic::Ordering::Acquire) {
        // No hypervisor to shut us down: report on the debug port and stop.
        console::line(&|b| GUEST.console(b), report);
        super::halt_forever();
    }
    lantern_guest_scenario::crash(&GUEST, report)
}
