//! `memcpy` & co. for the 32-bit build: the i686 Linux target expects them
//! from libc, which a freestanding guest does not have. String instructions
//! keep the compiler from turning these bodies back into calls to themselves.

use core::arch::asm;

/// Copy `n` bytes from `src` to `dst` (non-overlapping).
///
/// # Safety
/// Standard `memcpy` contract: both ranges valid, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: per the memcpy contract (esi is reserved by LLVM, so it is
    // swapped in and back by hand); DF is clear (cld at entry, and the
    // ABI requires it clear at calls).
    unsafe {
        asm!("xchg esi, {s}", "rep movsb", "xchg esi, {s}",
             s = inout(reg) src => _, inout("ecx") n => _, inout("edi") dst => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// Copy `n` bytes from `src` to `dst`; the ranges may overlap.
///
/// # Safety
/// Standard `memmove` contract: both ranges valid.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: copying forward is correct when dst starts before src or
        // the ranges do not overlap.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: overlapping with dst above src: copy backwards from the last
    // byte with DF set, then clear DF again as the ABI requires.
    unsafe {
        asm!("xchg esi, {s}", "std", "rep movsb", "cld", "xchg esi, {s}",
             s = inout(reg) src.add(n - 1) => _, inout("ecx") n => _, inout("edi") dst.add(n - 1) => _,
             options(nostack));
    }
    dst
}

/// Fill `n` bytes at `dst` with `c`.
///
/// # Safety
/// Standard `memset` contract: the range is valid.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: per the memset contract.
    unsafe {
        asm!("rep stosb", inout("ecx") n => _, inout("edi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// Compare `n` bytes.
///
/// # Safety
/// Standard `memcmp` contract: both ranges valid.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n and both ranges are valid for n bytes.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// Equality-only `memcmp`.
///
/// # Safety
/// Standard `bcmp` contract: both ranges valid.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled i686 `core` refers to the unwinding personality routine
/// even under `panic=abort`; nothing ever unwinds in this guest, so it is
/// never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
