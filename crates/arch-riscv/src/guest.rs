//! The guest-physical layout every riscv64 domain sees: RAM from 0 (the
//! guest image at [`GUEST_IMAGE_BASE`]), then the grant-table window the
//! guest DTB's `hypervisor` node names, then the PV console ring.

pub use xen_abi::arch_riscv::{GUEST_DTB_BELOW_RAM_TOP, GUEST_IMAGE_BASE, GUEST_RAM_BASE};

/// Guest-physical map of a riscv64 domain.
pub struct GuestMap;

impl GuestMap {
    /// RAM starts here (the core populates RAM from gfn 0).
    pub const RAM_BASE: u64 = GUEST_RAM_BASE;
    /// Largest RAM a domain may have.
    pub const RAM_MAX: u64 = 0xe000_0000;
    /// The grant-table window named in the `hypervisor` node.
    pub const GRANT_BASE: u64 = 0xe000_0000;
    /// Its size.
    pub const GRANT_SIZE: u64 = 0x0100_0000;
    /// The PV console ring page, after the grant window: outside RAM
    /// whatever the domain's size.
    pub const CONSOLE_RING: u64 = 0xe100_0000;
}
