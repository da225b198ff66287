//! The guest-physical layout every arm64 domain sees, and the small
//! register-level model of the virtual GICv3 distributor/redistributors that
//! lets a guest probe them (the interrupts themselves travel through the list
//! registers; the emulated frames are read-as-described, writes ignored).

/// Xen's event-channel upcall PPI on arm (`GUEST_EVTCHN_PPI`).
pub use xen_abi::arch_arm::EVTCHN_PPI;
/// The EL1 virtual timer PPI.
pub const VTIMER_PPI: u32 = 27;
/// Priority given to injected virtual interrupts.
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

/// Which emulated device an IPA falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mmio {
    /// The distributor, at this offset.
    Gicd(u64),
    /// Redistributor of vCPU `.0`, at offset `.1` within it.
    Gicr(u32, u64),
}

/// Classifies a faulting IPA for a domain with `vcpus` vCPUs.
pub fn classify(ipa: u64, vcpus: u32) -> Option<Mmio> {
    if (GuestMap::GICD_BASE..GuestMap::GICD_BASE + GuestMap::GICD_SIZE).contains(&ipa) {
        return Some(Mmio::Gicd(ipa - GuestMap::GICD_BASE));
    }
    let end = GuestMap::GICR_BASE + GuestMap::GICR_STRIDE * vcpus as u64;
    if (GuestMap::GICR_BASE..end).contains(&ipa) {
        let off = ipa - GuestMap::GICR_BASE;
        return Some(Mmio::Gicr((off / GuestMap::GICR_STRIDE) as u32, off % GuestMap::GICR_STRIDE));
    }
    None
}

const PIDR2: u64 = 0xffe8;
/// PIDR2 with ArchRev = 3 (GICv3).
const PIDR2_GICV3: u64 = 0x3b;

/// The value a guest reads from an emulated GIC register (aligned offset).
pub fn vgic_read(dev: Mmio, vcpus: u32) -> u64 {
    match dev {
        Mmio::Gicd(off) => match off {
            // CTLR: affinity routing enabled, RWP clear.
            0x0000 => 1 << 4,
            // TYPER: 64 interrupt IDs (ITLinesNumber 1), 10 ID bits.
            0x0004 => (9 << 19) | 1,
            // IIDR: ARM.
            0x0008 => 0x43b,
            PIDR2 => PIDR2_GICV3,
            _ => 0,
        },
        Mmio::Gicr(n, off) => match off {
            0x0004 => 0x43b,
            // TYPER (64-bit; the high word is read at 0x000c by 32-bit accesses).
            0x0008 => {
                let last = (n + 1 == vcpus) as u64;
                ((n as u64) << 32) | ((n as u64) << 8) | (last << 4)
            }
            0x000c => n as u64,
            // WAKER: awake.
            0x0014 => 0,
            PIDR2 => PIDR2_GICV3,
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_ranges() {
        assert_eq!(classify(0xf000_0004, 2), Some(Mmio::Gicd(4)));
        assert_eq!(classify(0xf012_0008, 2), Some(Mmio::Gicr(1, 8)));
        assert_eq!(classify(0xf014_0000, 2), None);
        assert_eq!(classify(0x1000, 2), None);
    }

    #[test]
    fn redistributor_typer() {
        let t = vgic_read(Mmio::Gicr(1, 8), 2);
        assert_eq!(t >> 32, 1);
        assert_ne!(t & (1 << 4), 0, "last");
        let t0 = vgic_read(Mmio::Gicr(0, 8), 2);
        assert_eq!(t0 & (1 << 4), 0);
        assert_eq!(vgic_read(Mmio::Gicd(0xffe8), 2) >> 4 & 0xf, 3);
    }
}
