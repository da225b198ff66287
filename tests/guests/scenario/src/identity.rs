//! Guest-memory access for guests whose RAM is identity-mapped (virtual ==
//! guest-physical): both real test guests are, so they share these.

/// Reads `buf.len()` bytes at guest-physical `gpa`, volatile so updates the
/// hypervisor makes behind the compiler's back are seen.
///
/// # Safety
/// `gpa..gpa + buf.len()` must be identity-mapped RAM of this guest that no
/// Rust reference aliases mutably (pages handed to the hypervisor, or
/// shared_info).
pub unsafe fn read(gpa: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: per the function contract; these pages are not Rust objects.
        *b = unsafe { core::ptr::read_volatile((gpa as usize + i) as *const u8) };
    }
}

/// Writes `data` at guest-physical `gpa`, volatile.
///
/// # Safety
/// As for [`read`].
pub unsafe fn write(gpa: u64, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        // SAFETY: per the function contract.
        unsafe { core::ptr::write_volatile((gpa as usize + i) as *mut u8, *b) };
    }
}
