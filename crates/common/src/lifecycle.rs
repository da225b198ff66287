//! Domain-wide lifecycle operations: kill, soft reset and fork. Each tears
//! down or copies every vCPU's guest areas through the guest-area mechanism,
//! so page references always return to their baseline.

use alloc::string::String;
use alloc::sync::Arc;

use crate::domain::{Domain, DomainConfig, Lifecycle};
use crate::guest_area::{self, AreaKind};
use crate::memory::DomId;
use xen_abi::errno::XenResult;

/// `domain_kill`: pauses the domain, unmaps every guest area (dropping their
/// page references), closes all event channels and releases all memory.
pub fn kill(d: &Domain) {
    d.pause();
    guest_area::unmap_all(d);
    crate::evtchn::reset(d);
    d.p2m.lock().clear();
    d.set_lifecycle(Lifecycle::Dead);
    let _ = d.unpause();
}

/// `domain_soft_reset`: unmaps every guest area and closes every event
/// channel but keeps memory; vCPUs return to their creation state (vCPU 0 up,
/// the rest down) so the guest can boot again.
pub fn soft_reset(d: &Domain) {
    d.pause();
    guest_area::unmap_all(d);
    crate::evtchn::reset(d);
    for v in d.vcpus() {
        if v.id == 0 {
            let _ = d.vcpu_up(v);
        } else {
            d.vcpu_down(v);
        }
    }
    d.set_lifecycle(Lifecycle::Running);
    let _ = d.unpause();
}

/// Forks `parent` into a new domain `child_id`: same vCPUs and ABI, every
/// registered area copied with [`guest_area::copy_guest_area`]. The child's
/// memory starts empty and receives the pages the areas need, each gfn once —
/// so areas sharing a page in the parent share one page in the child.
pub fn fork(parent: &Domain, child_id: DomId, clock: Arc<dyn crate::arch::Clock>) -> XenResult<Arc<Domain>> {
    let child = Domain::new(DomainConfig {
        id: child_id,
        name: String::from(parent.name.as_str()) + "-fork",
        max_vcpus: parent.max_vcpus(),
        ram_pages: 0,
        abi: parent.abi(),
        clock,
    })?;
    parent.pause();
    let result = (|| {
        for (pv, cv) in parent.vcpus().iter().zip(child.vcpus()) {
            for kind in AreaKind::ALL {
                guest_area::copy_guest_area_inner(&child, cv, parent, pv, kind, false)?;
            }
        }
        if let Some(gfn) = parent.shared_info_gfn() {
            child.map_shared_info(gfn)?;
        }
        child.shared_info().copy_from_page(parent.shared_info());
        Ok(())
    })();
    let _ = parent.unpause();
    result.map(|_| child)
}
