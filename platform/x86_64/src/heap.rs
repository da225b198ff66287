//! The hypervisor heap: the core's size-class heap (`lantern_common::heap`)
//! over the RAM that `hvm_start_info` reports free, zeroing with `rep stosq`.
//! The identity map makes every pointer it returns a host-physical address
//! too.

use lantern_common::heap::Heap;

#[global_allocator]
static HEAP: Heap = Heap::new(zero);

/// Zeroes `len` bytes at `p`: guest RAM is zeroed page by page at domain
/// creation, and under emulation one `rep stosq` per page is several times
/// faster than the generic byte-oriented memset.
///
/// # Safety
/// `p` must be valid for writes of `len` bytes.
unsafe fn zero(p: *mut u8, len: usize) {
    // SAFETY: the caller's contract: the asm writes exactly `len / 8` words
    // then `len % 8` bytes from `p`.
    unsafe {
        core::arch::asm!(
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            tail = in(reg) len % 8,
            inout("rcx") len / 8 => _,
            inout("rdi") p => _,
            in("rax") 0u64,
            options(nostack),
        );
    }
}

/// Hands the physical range `[start, end)` (identity mapped, unused) to the heap.
pub fn init(start: usize, end: usize) {
    // SAFETY: the caller (boot) passes RAM above the image that nothing
    // else uses, identity mapped.
    unsafe { HEAP.init(start, end) };
}
