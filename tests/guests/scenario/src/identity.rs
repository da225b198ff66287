//! Guest memory for guests whose RAM is identity-mapped (virtual ==
//! guest-physical): both real test guests and the host mock are, so they
//! share the accessors, and the real guests share the pages they hand out.

use core::cell::UnsafeCell;

use crate::PAGE_SIZE;

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

/// Reads the aligned `u32` at guest-physical `gpa` with one volatile load
/// (a ring index the hypervisor reads and writes whole).
///
/// # Safety
/// As for [`read`], and `gpa` is 4-byte aligned.
pub unsafe fn read_u32(gpa: u64) -> u32 {
    // SAFETY: per the function contract.
    unsafe { core::ptr::read_volatile(gpa as usize as *const u32) }
}

/// Writes the aligned `u32` at guest-physical `gpa` with one volatile store.
///
/// # Safety
/// As for [`read_u32`].
pub unsafe fn write_u32(gpa: u64, v: u32) {
    // SAFETY: per the function contract.
    unsafe { core::ptr::write_volatile(gpa as usize as *mut u32, v) }
}

/// One page of guest RAM that the guest hands to the hypervisor. Its
/// contents are only ever reached through raw pointers ([`read`] /
/// [`write`], or the hypervisor itself), never through a Rust reference.
#[repr(C, align(4096))]
pub struct Page(UnsafeCell<[u8; PAGE_SIZE as usize]>);

impl Page {
    /// A zeroed page (a `static` of these lands in `.bss`).
    pub const fn new() -> Self {
        Page(UnsafeCell::new([0; PAGE_SIZE as usize]))
    }

    /// Guest-physical address of the page (identity mapping).
    pub fn gpa(&self) -> u64 {
        self.0.get() as usize as u64
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: no Rust reference to the contents is ever created (see `Page`), so
// sharing a page between vCPUs cannot race on anything the compiler sees;
// the accesses through raw pointers are volatile.
unsafe impl Sync for Page {}

/// The pages every real test guest gives the scenario
/// ([`Guest::shared_info_page`](crate::Guest::shared_info_page) and
/// [`Guest::scratch_pages`](crate::Guest::scratch_pages)).
#[repr(C)]
pub struct GuestPages {
    /// The RAM page that `XENMEM_add_to_physmap` replaces with shared_info.
    shared_info: Page,
    /// Four zeroed pages for the vcpu_info, runstate and time areas.
    scratch: [Page; 4],
    /// Two pages nothing else uses, for the balloon checks to give back to
    /// the hypervisor and take again.
    balloon: [Page; 2],
}

impl GuestPages {
    /// All pages zeroed.
    pub const fn new() -> Self {
        GuestPages {
            shared_info: Page::new(),
            scratch: [Page::new(), Page::new(), Page::new(), Page::new()],
            balloon: [Page::new(), Page::new()],
        }
    }

    /// Guest-physical address of the page to replace with shared_info.
    pub fn shared_info(&self) -> u64 {
        self.shared_info.gpa()
    }

    /// Guest-physical addresses of the scratch pages.
    pub fn scratch(&self) -> [u64; 4] {
        self.scratch.each_ref().map(Page::gpa)
    }

    /// Guest-physical addresses of the balloon pages.
    pub fn balloon(&self) -> [u64; 2] {
        self.balloon.each_ref().map(Page::gpa)
    }
}

impl Default for GuestPages {
    fn default() -> Self {
        Self::new()
    }
}
