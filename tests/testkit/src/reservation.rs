//! Helpers for the reservation (ballooning) tests: the
//! `xen_memory_reservation` argument and the `xen_pfn_t` extent list in the
//! width of the layout in force, and the page count the domain should have.

use std::collections::HashSet;

use lantern_common::domain::Domain;
use xen_abi::layout::GuestAbi;
use xen_abi::public::{XenMemoryReservation, XenMemoryReservationCompat};
use zerocopy::IntoBytes;

/// A `xen_memory_reservation` to encode with [`Reservation::bytes`].
#[derive(Clone, Copy, Debug)]
pub struct Reservation {
    /// Guest address of the extent list (0: null handle).
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// log2 of the pages per extent.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    /// Target domain.
    pub domid: u16,
}

impl Reservation {
    /// `nr_extents` order-0 extents listed at `extent_start`, for `domid`.
    pub fn new(extent_start: u64, nr_extents: u64, domid: u16) -> Self {
        Reservation { extent_start, nr_extents, extent_order: 0, mem_flags: 0, domid }
    }

    /// The argument's bytes in `abi`'s layout (64-bit or compat), the
    /// fields truncated to the compat widths there as a 32-bit guest would.
    pub fn bytes(&self, abi: &dyn GuestAbi) -> Vec<u8> {
        if abi.xen_ulong_size() == 8 {
            XenMemoryReservation {
                extent_start: self.extent_start,
                nr_extents: self.nr_extents,
                extent_order: self.extent_order,
                mem_flags: self.mem_flags,
                domid: self.domid,
                pad: [0; 6],
            }
            .as_bytes()
            .to_vec()
        } else {
            XenMemoryReservationCompat {
                extent_start: self.extent_start as u32,
                nr_extents: self.nr_extents as u32,
                extent_order: self.extent_order,
                mem_flags: self.mem_flags,
                domid: self.domid,
                pad: 0,
            }
            .as_bytes()
            .to_vec()
        }
    }
}

/// The `xen_pfn_t` array holding `gfns`, in `abi`'s width.
pub fn pfn_list(abi: &dyn GuestAbi, gfns: &[u64]) -> Vec<u8> {
    let w = abi.xen_ulong_size();
    gfns.iter().flat_map(|g| g.to_le_bytes()[..w].to_vec()).collect()
}

/// How many frames of its own memory `d` should have in its account: the
/// distinct RAM frames its p2m maps that are its own, plus the ones it
/// keeps unmapped. (Frames pinned only by a registered area are not seen
/// here; tests that need them count them themselves.)
pub fn expected_tot_pages(d: &Domain) -> u64 {
    let mapped: HashSet<u64> = d
        .p2m
        .lock()
        .iter()
        .filter(|(_, e)| e.page.is_ram() && e.page.owner() == d.id)
        .map(|(_, e)| e.page.host_addr())
        .collect();
    mapped.len() as u64 + d.unmapped_pages()
}
