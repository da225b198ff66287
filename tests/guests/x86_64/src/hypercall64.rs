//! The 64-bit build's hypercall convention: arguments in rdi, rsi, rdx,
//! r10, r8, the result in rax, through a stub of the hypercall page.

use core::arch::asm;

use lantern_guest_scenario::UNUSED_HYPERCALL;

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

/// A VMMCALL of hypercall `nr` without the hypercall page (any number,
/// including those the page has no stub for): rax the number, rdi, rsi,
/// rdx, r10, r8 the arguments.
///
/// # Safety
/// Only under a hypervisor that handles VMMCALL; the arguments must not
/// name memory the hypervisor may write and Rust relies on.
pub unsafe fn raw_vmmcall(nr: u64, a: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: per the function contract; Xen may scribble on the argument
    // registers, so they are all clobbered.
    unsafe {
        asm!(
            "vmmcall",
            inlateout("rax") nr => ret,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => _,
            inlateout("r10") a[3] => _,
            inlateout("r8") a[4] => _,
            options(nostack),
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
