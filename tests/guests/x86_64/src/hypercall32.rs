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

/// A VMMCALL of hypercall `nr` without the hypercall page (any number,
/// including those the page has no stub for), the 32-bit convention: eax
/// the number, ebx, ecx, edx, esi, edi the arguments (truncated to 32 bits).
///
/// # Safety
/// Only under a hypervisor that handles VMMCALL; the arguments must not
/// name memory the hypervisor may write and Rust relies on.
pub unsafe fn raw_vmmcall(nr: u64, a: [u64; 5]) -> i64 {
    let words: [u32; 6] = [nr as u32, a[0] as u32, a[1] as u32, a[2] as u32, a[3] as u32, a[4] as u32];
    let ret: u32;
    // SAFETY: per the function contract. As in `hypercall`, ebx/esi/edi/ebp
    // are saved and loaded by hand from `words` (eax points at it, and
    // becomes the number last).
    unsafe {
        asm!(
            "push ebp",
            "push ebx",
            "push esi",
            "push edi",
            "mov ebx, dword ptr [eax + 4]",
            "mov ecx, dword ptr [eax + 8]",
            "mov edx, dword ptr [eax + 12]",
            "mov esi, dword ptr [eax + 16]",
            "mov edi, dword ptr [eax + 20]",
            "mov eax, dword ptr [eax]",
            "vmmcall",
            "pop edi",
            "pop esi",
            "pop ebx",
            "pop ebp",
            inlateout("eax") words.as_ptr() => ret,
            clobber_abi("C"),
        );
    }
    ret as i32 as i64
}
