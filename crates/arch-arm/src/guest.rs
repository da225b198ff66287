//! The guest-physical layout every arm64 domain sees, and which virtual GIC
//! frame an access falls in (the frames' registers are [`crate::vgic`]'s).

use crate::vgic::Frame;

/// Xen's event-channel upcall PPI on arm (`GUEST_EVTCHN_PPI`).
pub use xen_abi::arch_arm::EVTCHN_PPI;
/// The EL1 virtual timer PPI.
pub const VTIMER_PPI: u32 = 27;
/// Priority the host test double's injections use.
pub const VIRQ_PRIORITY: u8 = 0xa0;

/// Guest-physical (IPA) map of an arm64 domain.
pub struct GuestMap;

impl GuestMap {
    /// RAM starts here (the core populates RAM from gfn 0).
    pub const RAM_BASE: u64 = 0;
    /// Largest RAM a domain may have (everything above is devices).
    pub const RAM_MAX: u64 = 0xe000_0000;
    /// Grant-table window named in the `/hypervisor` node (unused so far).
    pub const GRANT_BASE: u64 = 0xe000_0000;
    /// Its size.
    pub const GRANT_SIZE: u64 = 0x0100_0000;
    /// The PV console ring page, in the magic-page window after the grant
    /// window: outside RAM (and so outside the DTB's memory node) whatever
    /// the domain's size. Xen's toolstack uses `GUEST_MAGIC_BASE`
    /// (0x3900_0000) for it, which on Lantern's map, with RAM from 0, would
    /// fall inside a large domain's RAM.
    pub const CONSOLE_RING: u64 = 0xe100_0000;
    /// Virtual GIC distributor.
    pub const GICD_BASE: u64 = 0xf000_0000;
    /// Distributor frame size.
    pub const GICD_SIZE: u64 = 0x1_0000;
    /// First virtual redistributor (one per vCPU, [`Self::GICR_STRIDE`] apart).
    pub const GICR_BASE: u64 = 0xf010_0000;
    /// Size of one redistributor (RD + SGI frames).
    pub const GICR_STRIDE: u64 = 0x2_0000;
}

/// The virtual GIC frame a faulting IPA falls in, for a domain with
/// `vcpus` vCPUs.
pub fn classify(ipa: u64, vcpus: u32) -> Option<Frame> {
    if (GuestMap::GICD_BASE..GuestMap::GICD_BASE + GuestMap::GICD_SIZE).contains(&ipa) {
        return Some(Frame::Dist(ipa - GuestMap::GICD_BASE));
    }
    let end = GuestMap::GICR_BASE + GuestMap::GICR_STRIDE * vcpus as u64;
    if (GuestMap::GICR_BASE..end).contains(&ipa) {
        let off = ipa - GuestMap::GICR_BASE;
        return Some(Frame::Redist((off / GuestMap::GICR_STRIDE) as u32, off % GuestMap::GICR_STRIDE));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_ranges() {
        assert_eq!(classify(0xf000_0004, 2), Some(Frame::Dist(4)));
        assert_eq!(classify(0xf012_0008, 2), Some(Frame::Redist(1, 8)));
        assert_eq!(classify(0xf014_0000, 2), None);
        assert_eq!(classify(0x1000, 2), None);
    }
}
