//! The state of a vCPU's guest areas (vcpu_info, runstate, time): where each
//! lives ([`AreaMap`], [`Placement`]) and the per-vCPU slots
//! ([`VcpuAreas`]). The operations on them are in `guest_area` (areas
//! registered by guest-physical address) and `va_area` (by guest-virtual
//! address).

use crate::addr::Gva;
use crate::memory::{Gfn, PageRef};
use xen_abi::errno::XenResult;
use xen_abi::layout::GuestAbi;

/// Which of a vCPU's areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AreaKind {
    /// `vcpu_info` (`VCPUOP_register_vcpu_info`).
    VcpuInfo,
    /// `vcpu_runstate_info` (`VCPUOP_register_runstate_phys_area`).
    Runstate,
    /// `vcpu_time_info` (`VCPUOP_register_vcpu_time_phys_area`).
    Time,
}

impl AreaKind {
    /// All kinds, in display order.
    pub const ALL: [AreaKind; 3] = [AreaKind::VcpuInfo, AreaKind::Runstate, AreaKind::Time];

    /// Size of the area in the layout in force.
    pub fn size(self, abi: &dyn GuestAbi) -> usize {
        match self {
            AreaKind::VcpuInfo => abi.vcpu_info().size,
            AreaKind::Runstate => abi.runstate().size,
            AreaKind::Time => abi.time_info().size,
        }
    }

    /// Required alignment in the layout in force.
    pub fn align(self, abi: &dyn GuestAbi) -> usize {
        match self {
            AreaKind::VcpuInfo => abi.vcpu_info().align,
            AreaKind::Runstate => abi.runstate().align,
            AreaKind::Time => abi.time_info().align,
        }
    }

    /// Name used by tools (`vcpu_info`, `runstate`, `time`).
    pub fn name(self) -> &'static str {
        match self {
            AreaKind::VcpuInfo => "vcpu_info",
            AreaKind::Runstate => "runstate",
            AreaKind::Time => "time",
        }
    }
}

/// Where an area lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The vCPU's slot in the domain's shared_info page (vcpu_info only).
    SharedInfoSlot,
    /// The per-domain dummy area: writes go nowhere a guest can see
    /// (vcpu_info only, for vCPUs beyond the legacy limit).
    Dummy,
    /// A guest page registered by the guest; references held.
    Guest,
}

impl Placement {
    /// Name used by tools.
    pub fn name(self) -> &'static str {
        match self {
            Placement::SharedInfoSlot => "shared_info",
            Placement::Dummy => "dummy",
            Placement::Guest => "guest",
        }
    }
}

/// Where an area is, as tools describe it: its placement, the gfn it is
/// reached at (a guest page's, or where shared_info is mapped), the offset
/// in that frame and, for a vcpu_info in shared_info, its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaLocation {
    /// Kind of placement.
    pub placement: Placement,
    /// The gfn, if the guest can reach the frame.
    pub gfn: Option<u64>,
    /// Byte offset in the frame.
    pub offset: usize,
    /// vcpu_info slot in shared_info.
    pub slot: Option<u64>,
}

impl core::fmt::Display for AreaLocation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let offset = self.offset;
        match (self.placement, self.gfn) {
            (Placement::Guest, g) => write!(f, "gfn {:#x} offset {offset:#x}", g.unwrap_or(0)),
            (Placement::Dummy, _) => f.write_str("dummy area (not guest-visible)"),
            (Placement::SharedInfoSlot, Some(g)) => {
                write!(f, "shared_info slot {} (gfn {g:#x} offset {offset:#x})", self.slot.unwrap_or(0))
            }
            (Placement::SharedInfoSlot, None) => {
                write!(f, "shared_info slot {} (shared_info not mapped by the guest)", self.slot.unwrap_or(0))
            }
        }
    }
}

/// A mapped area: the frame, the byte offset in it, and where it came from.
#[derive(Clone, Debug)]
pub struct AreaMap {
    /// The frame.
    pub page: PageRef,
    /// Byte offset of the area in the frame.
    pub offset: usize,
    /// Kind of placement.
    pub placement: Placement,
    /// The gfn (guest placements only).
    pub gfn: Option<Gfn>,
}

impl AreaMap {
    pub(crate) fn dummy(page: PageRef) -> Self {
        AreaMap { page, offset: 0, placement: Placement::Dummy, gfn: None }
    }

    pub(crate) fn shared_info_slot(page: PageRef, offset: usize) -> Self {
        AreaMap { page, offset, placement: Placement::SharedInfoSlot, gfn: None }
    }

    pub(crate) fn guest(page: PageRef, offset: usize, gfn: Gfn) -> Self {
        AreaMap { page, offset, placement: Placement::Guest, gfn: Some(gfn) }
    }

    /// Reads `out.len()` bytes of the area.
    pub fn read(&self, out: &mut [u8]) -> XenResult<()> {
        self.page.read(self.offset, out)
    }

    /// Drops the references a guest placement holds.
    pub(crate) fn release(self) {
        if self.placement == Placement::Guest {
            self.page.put_writable();
            self.page.put();
        }
    }
}

/// A vCPU's area slots.
#[derive(Clone, Debug)]
pub struct VcpuAreas {
    /// vcpu_info: always somewhere (slot, dummy or guest page).
    pub vcpu_info: AreaMap,
    /// Runstate area, if registered.
    pub runstate: Option<AreaMap>,
    /// Time area, if registered.
    pub time: Option<AreaMap>,
    /// Runstate area registered by guest-virtual address
    /// (`VCPUOP_register_runstate_memory_area`), if any. No page is held: it
    /// is translated at each update. A physical [`Self::runstate`] area,
    /// when also registered, is the one updated.
    pub runstate_va: Option<Gva>,
    /// Time area registered by guest-virtual address
    /// (`VCPUOP_register_vcpu_time_memory_area`), under the same rules.
    pub time_va: Option<Gva>,
}

impl VcpuAreas {
    pub(crate) fn new(vcpu_info: AreaMap) -> Self {
        VcpuAreas { vcpu_info, runstate: None, time: None, runstate_va: None, time_va: None }
    }

    /// Whether any area is on a guest page (the guest-virtual registrations
    /// hold none).
    pub fn has_guest_areas(&self) -> bool {
        self.vcpu_info.placement == Placement::Guest || self.runstate.is_some() || self.time.is_some()
    }

    /// The area of `kind`, if mapped.
    pub fn get(&self, kind: AreaKind) -> Option<&AreaMap> {
        match kind {
            AreaKind::VcpuInfo => Some(&self.vcpu_info),
            AreaKind::Runstate => self.runstate.as_ref(),
            AreaKind::Time => self.time.as_ref(),
        }
    }
}
