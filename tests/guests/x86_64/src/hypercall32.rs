//! The 32-bit build's hypercall convention: arguments in ebx, ecx, edx,
//! esi, edi, the result in eax, through a stub of the hypercall page.

use core::arch::asm;

use lantern_guest_scenario::UNUSED_HYPERCALL;

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
