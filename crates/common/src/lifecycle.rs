//! Domain-wide lifecycle operations: kill, soft reset and fork. Each tears
//! down or copies every vCPU's guest areas through the guest-area mechanism,
//! so page references always return to their baseline.

use alloc::string::String;
use alloc::sync::Arc;

use crate::arch::ArchDomain;
use crate::area::AreaKind;
use crate::clock::Clock;
use crate::directory::{DomainDirectory, NoDomains};
use crate::domain::VPF_DOWN;
use crate::domain::{Domain, DomainConfig, Lifecycle, Vcpu};
use crate::guest_area;
use crate::memory::DomId;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::runstate;

/// `domain_kill` of a domain no other domain can see: [`kill_among`] with
/// an empty directory (its own grant mappings are still torn down).
pub fn kill(d: &Domain) {
    kill_among(d, &NoDomains);
}

/// `domain_kill`: pauses the domain, stops its vCPUs' PV timers, unmaps every guest area (dropping their
/// page references), tears down its grant mappings and the mappings the
/// domains of `others` hold of its grants, closes all event channels (the
/// peer ends in `others` go back to unbound; FIFO pages are released) and
/// releases all memory.
pub fn kill_among(d: &Domain, others: &dyn DomainDirectory) {
    d.pause();
    d.vcpus().iter().for_each(crate::pv_timer::stop_all);
    guest_area::unmap_all(d);
    crate::grant_table::release_all(d, others);
    crate::evtchn::reset_among(d, others);
    d.p2m.lock().clear();
    d.release_unmapped();
    d.set_lifecycle(Lifecycle::Dead);
    let _ = d.unpause();
}

/// `domain_soft_reset`, after Xen: only where the arch offers it (`arch`
/// says, else its errno), and only once every vCPU is paused for shutdown —
/// the domain has shut down (`SCHEDOP_shutdown`), else `-EINVAL`. Then every
/// event channel is closed (pending and mask bits cleared in shared_info
/// too, the ABI back to 2-level), every guest area unmapped, and the RAM at shared_info's gfn given
/// back as a fresh page (the shared_info frame itself stays the domain's,
/// unmapped until the guest maps it again), so the new kernel finds no hole.
/// Memory and vCPU states are kept; the domain resumes where its vCPUs were.
pub fn soft_reset(d: &Domain, arch: &dyn ArchDomain) -> XenResult<()> {
    soft_reset_among(d, arch, &NoDomains)
}

/// [`soft_reset`] of a domain whose interdomain peers are in `others`:
/// their ends go back to unbound when its ports close.
pub fn soft_reset_among(d: &Domain, arch: &dyn ArchDomain, others: &dyn DomainDirectory) -> XenResult<()> {
    arch.soft_reset_supported()?;
    if !matches!(d.lifecycle(), Lifecycle::Shutdown(_)) {
        return Err(Errno::EINVAL);
    }
    d.pause();
    crate::evtchn::reset_among(d, others);
    // The toolstack's console stays: its backend port is bound again.
    crate::pv_console::rebind(d);
    guest_area::unmap_all(d);
    let result = d.replace_shared_info_gfn();
    match result {
        Ok(()) => d.set_lifecycle(Lifecycle::Running),
        Err(_) => d.crash(),
    }
    let _ = d.unpause();
    result
}

/// Forks `parent` into a new domain `child_id`: same vCPUs and ABI, every
/// registered area copied with [`guest_area::copy_guest_area`]. The child's
/// memory starts empty and receives the pages the areas need, each gfn once —
/// so areas sharing a page in the parent share one page in the child.
pub fn fork(parent: &Domain, child_id: DomId, clock: Arc<dyn Clock>) -> XenResult<Arc<Domain>> {
    let child = Domain::new(DomainConfig {
        id: child_id,
        name: String::from(parent.name.as_str()) + "-fork",
        max_vcpus: parent.max_vcpus(),
        ram_pages: 0,
        abi: parent.abi(),
        clock,
        console: parent.console.lock().sink(),
    })?;
    child.set_max_pages(parent.max_pages());
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

/// Brings `v` up (`VCPUOP_up`, a firmware CPU-on call): `-EINVAL` if it has
/// no initial context.
pub fn vcpu_up(d: &Domain, v: &Vcpu) -> XenResult<()> {
    if !v.is_initialised() {
        return Err(Errno::EINVAL);
    }
    if v.is_up() {
        return Ok(());
    }
    v.clear_flag(VPF_DOWN);
    crate::runstate::change(d, v, runstate::RUNNABLE);
    Ok(())
}

/// Takes `v` down (`VCPUOP_down`, a firmware CPU-off call).
pub fn vcpu_down(d: &Domain, v: &Vcpu) {
    if v.is_up() {
        v.set_flag(VPF_DOWN);
        crate::runstate::change(d, v, runstate::OFFLINE);
    }
}
