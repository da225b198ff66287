//! Guest areas: the one mechanism (`map_guest_area`, `unmap_guest_area`,
//! `copy_guest_area`) behind the vcpu_info, runstate and time areas a guest
//! registers with `VCPUOP_register_*`.
//!
//! The rules, after Xen's conversion of vcpu_info registration to the common
//! guest-area mapping (see `shared/reference/`):
//! * the area must lie inside one page and be aligned for the layout in
//!   force, else `-ENXIO`;
//! * the frame must be read/write RAM of the domain; a general and a writable
//!   type reference are taken and dropped again on unmap, else `-EINVAL`;
//! * a vCPU other than the caller is paused for the swap, and the domain lock
//!   covers only the populate + swap;
//! * vcpu_info cannot be registered twice: `-EBUSY`;
//! * after a vcpu_info registration `evtchn_pending_sel` is all ones in the
//!   layout in force, events are marked pending and system time is updated;
//! * unmapping vcpu_info falls back to the shared_info slot or the dummy area.

use crate::addr::{Gfn, Gpa, PAGE_SIZE};
use crate::area::{AreaKind, AreaLocation, AreaMap, Placement, VcpuAreas};
use crate::domain::{Domain, Vcpu};
use crate::memory::P2mType;
use xen_abi::errno::{Errno, XenResult};

/// Where `a`, `d`'s area of `kind`, lives as a guest (and a person) sees
/// it: a guest page's gfn, or shared_info's gfn and the vcpu_info slot.
pub fn location(d: &Domain, kind: AreaKind, a: &AreaMap) -> AreaLocation {
    let (gfn, slot) = match a.placement {
        Placement::Guest => (a.gfn.map(|g| g.0), None),
        Placement::Dummy => (None, None),
        Placement::SharedInfoSlot => {
            let abi = d.abi();
            let slot = if kind == AreaKind::VcpuInfo {
                a.offset.checked_sub(abi.shared_info().vcpu_info).map(|o| (o / abi.vcpu_info().size) as u64)
            } else {
                None
            };
            (d.shared_info_gfn().map(|g| g.0), slot)
        }
    };
    AreaLocation { placement: a.placement, gfn, offset: a.offset, slot }
}

/// The populate hook run under the domain lock, before the swap: it fills
/// the new area (`new`) given the vCPU's current areas.
pub type Populate<'a> = &'a mut dyn FnMut(&Domain, &Vcpu, &VcpuAreas, &AreaMap);

/// `map_guest_area`: maps the area of `kind` for `v` at guest-physical
/// address `gaddr` (`None` unregisters a runstate or time area).
///
/// `caller` is the vCPU making the request (`None` for the hypervisor or the
/// debugger); any other vCPU is paused for the swap. `populate` runs under
/// the domain lock before the swap.
pub fn map_guest_area(
    d: &Domain,
    caller: Option<u32>,
    v: &Vcpu,
    kind: AreaKind,
    gaddr: Option<Gpa>,
    populate: Option<Populate<'_>>,
) -> XenResult<()> {
    let size = kind.size(d.abi());
    map_guest_area_sized(d, caller, v, kind, gaddr, size, populate)
}

fn map_guest_area_sized(
    d: &Domain,
    caller: Option<u32>,
    v: &Vcpu,
    kind: AreaKind,
    gaddr: Option<Gpa>,
    size: usize,
    populate: Option<Populate<'_>>,
) -> XenResult<()> {
    let abi = d.abi();
    let new = if let Some(gaddr) = gaddr {
        let gfn = gaddr.gfn();
        let offset = gaddr.page_offset();
        if offset > PAGE_SIZE - size {
            return Err(Errno::ENXIO);
        }
        if !offset.is_multiple_of(kind.align(abi)) {
            return Err(Errno::ENXIO);
        }
        let page = d.get_writable_page(gfn)?;
        Some(AreaMap::guest(page, offset, gfn))
    } else {
        // De-registration: only meaningful for the physically registered
        // runstate and time areas; vcpu_info has no way back.
        if kind == AreaKind::VcpuInfo {
            return Err(Errno::EINVAL);
        }
        None
    };

    let remote = caller != Some(v.id);
    if remote {
        d.vcpu_pause(v);
    }

    let swapped = {
        let _domain_lock = d.lock.lock();
        let mut areas = v.areas.lock();
        match kind {
            AreaKind::VcpuInfo if areas.vcpu_info.placement == Placement::Guest => Err(Errno::EBUSY),
            _ => {
                if let (Some(new), Some(populate)) = (&new, populate) {
                    populate(d, v, &areas, new);
                }
                Ok(match kind {
                    // `new` is always Some here: checked above.
                    AreaKind::VcpuInfo => new.clone().map(|n| core::mem::replace(&mut areas.vcpu_info, n)),
                    AreaKind::Runstate => core::mem::replace(&mut areas.runstate, new.clone()),
                    AreaKind::Time => core::mem::replace(&mut areas.time, new.clone()),
                })
            }
        }
    };

    let result = match swapped {
        Ok(old) => {
            if kind == AreaKind::VcpuInfo {
                vcpu_info_registered(d, v);
            }
            if let Some(old) = old {
                old.release();
            }
            Ok(())
        }
        Err(e) => {
            if let Some(new) = new {
                new.release();
            }
            Err(e)
        }
    };

    if remote {
        d.vcpu_unpause(v);
    }
    result
}

/// Steps after a successful vcpu_info swap, outside the domain lock: mark
/// everything pending so nothing the guest had pending is lost (it gets a
/// spurious event at worst), and refresh system time in the new area.
fn vcpu_info_registered(d: &Domain, v: &Vcpu) {
    let abi = d.abi();
    let vi = abi.vcpu_info();
    let area = v.areas.lock().vcpu_info.clone();
    let _ = area.page.write_uint(area.offset + vi.pending_sel.offset, vi.pending_sel.size, u64::MAX);
    d.vcpu_mark_events_pending(v);
    crate::time::update_vcpu_system_time(d, v);
}

/// The vcpu_info populate hook: from the dummy area the new area is zeroed
/// (and, where the ABI has one, `evtchn_upcall_mask` set so the guest is not
/// interrupted before it is ready); otherwise the current contents (its
/// shared_info slot) are carried across.
pub fn vcpu_info_populate(d: &Domain, _v: &Vcpu, areas: &VcpuAreas, new: &AreaMap) {
    let abi = d.abi();
    let vi = abi.vcpu_info();
    let cur = &areas.vcpu_info;
    if cur.placement == Placement::Dummy {
        let _ = new.page.fill(new.offset, vi.size, 0);
        if let Some(mask) = vi.upcall_mask {
            let _ = new.page.write_uint(new.offset + mask.offset, mask.size, 1);
        }
    } else {
        // Through a buffer: the new area may be on the very page (even at
        // the very offset) of the current one.
        let mut buf = [0u8; 128];
        let buf = &mut buf[..vi.size];
        let _ = cur.page.read(cur.offset, buf);
        let _ = new.page.write(new.offset, buf);
    }
}

/// The runstate populate hook: the area starts with the current runstate.
pub fn runstate_populate(d: &Domain, v: &Vcpu, _areas: &VcpuAreas, new: &AreaMap) {
    crate::runstate::write_area(d.abi(), new, &v.runstate());
}

/// The time populate hook: the area starts with a fresh time record.
pub fn time_populate(d: &Domain, v: &Vcpu, _areas: &VcpuAreas, new: &AreaMap) {
    crate::time::write_time_area(d, v, new);
}

/// `unmap_guest_area`: drops the area of `kind`. vcpu_info goes back to its
/// default placement (`vcpu_info_reset`). The caller has paused `v` or its
/// domain (kill, soft reset) or is `v` itself.
pub fn unmap_guest_area(d: &Domain, v: &Vcpu, kind: AreaKind) {
    let old = {
        let _domain_lock = d.lock.lock();
        let mut areas = v.areas.lock();
        match kind {
            AreaKind::VcpuInfo => Some(core::mem::replace(&mut areas.vcpu_info, d.default_vcpu_info(v.id))),
            AreaKind::Runstate => areas.runstate.take(),
            AreaKind::Time => areas.time.take(),
        }
    };
    if let Some(old) = old {
        old.release();
    }
}

/// `copy_guest_area` (domain fork): maps the child's area of `kind` on the
/// page with the same gfn in the child — allocating that page if the child
/// has none there yet — and copies the parent's page contents as the
/// populate step, so the registration post-steps then apply on top of the
/// copy. Two vCPUs whose areas share a page in the parent thus share one page
/// in the child.
pub fn copy_guest_area(child: &Domain, cv: &Vcpu, parent: &Domain, pv: &Vcpu, kind: AreaKind) -> XenResult<()> {
    copy_guest_area_inner(child, cv, parent, pv, kind, true)
}

/// [`copy_guest_area`], optionally skipping the page copy when the child's
/// frame already existed: a fork whose child starts with no memory knows such
/// a frame was filled by an earlier area on the same gfn.
pub(crate) fn copy_guest_area_inner(
    child: &Domain,
    cv: &Vcpu,
    parent: &Domain,
    pv: &Vcpu,
    kind: AreaKind,
    copy_existing: bool,
) -> XenResult<()> {
    debug_assert!(parent.vcpu(pv.id).is_ok_and(|p| core::ptr::eq(p, pv)), "pv is a vCPU of parent");
    let src = match pv.areas.lock().get(kind) {
        Some(a) if a.placement == Placement::Guest => a.clone(),
        _ => return Ok(()),
    };
    let gfn = src.gfn.ok_or(Errno::EINVAL)?;
    let existing = cv.areas.lock().get(kind).filter(|a| a.placement == Placement::Guest).cloned();
    match existing {
        Some(a) => {
            if copy_existing {
                a.page.copy_from_page(&src.page);
            }
            copy_post_steps(child, cv, kind, &a);
        }
        None => {
            let mut fresh = false;
            {
                let mut p2m = child.p2m.lock();
                match p2m.get(gfn) {
                    None => {
                        p2m.set(gfn, child.alloc_ram()?, P2mType::RamRw);
                        fresh = true;
                    }
                    Some(e) if e.p2mt != P2mType::RamRw || e.page.owner() != child.id => {
                        return Err(Errno::EBUSY);
                    }
                    Some(_) => {}
                }
            }
            // The copy is the populate step, so it lands before the swap and
            // the registration's post-steps (vcpu_info: pending_sel all ones,
            // events pending, fresh time) apply to the copied contents, as in
            // Xen's fork.
            let copy = fresh || copy_existing;
            let mut populate = |d: &Domain, v: &Vcpu, _: &VcpuAreas, new: &AreaMap| {
                if copy {
                    new.page.copy_from_page(&src.page);
                }
                if kind == AreaKind::Time {
                    crate::time::write_time_area(d, v, new);
                }
            };
            // The whole rest of the page as size: all the check needs is that
            // the area fits, which it did in the parent.
            let gaddr = gfn.gpa().and_then(|a| a.checked_add(src.offset as u64)).ok_or(Errno::EINVAL)?;
            map_guest_area_sized(child, None, cv, kind, Some(gaddr), PAGE_SIZE - src.offset, Some(&mut populate))?;
        }
    }
    Ok(())
}

/// The registration post-steps for an area [`copy_guest_area`] filled
/// without a new mapping (the child's area was already on that page).
fn copy_post_steps(d: &Domain, v: &Vcpu, kind: AreaKind, area: &AreaMap) {
    match kind {
        AreaKind::VcpuInfo => vcpu_info_registered(d, v),
        AreaKind::Time => crate::time::write_time_area(d, v, area),
        AreaKind::Runstate => {}
    }
}

/// Registers `v`'s vcpu_info at `gfn`/`offset` (`VCPUOP_register_vcpu_info`).
pub fn register_vcpu_info(d: &Domain, caller: Option<u32>, v: &Vcpu, gfn: Gfn, offset: u64) -> XenResult<()> {
    let gaddr = gfn.gpa().and_then(|g| g.checked_add(offset)).ok_or(Errno::EINVAL)?;
    // Like Xen: an offset that moves the address into another frame is not
    // a page-crossing area but a malformed request.
    if gaddr.0 == !0 || gaddr.gfn() != gfn {
        return Err(Errno::EINVAL);
    }
    // Preliminary check: avoid taking page references just to drop them.
    if v.areas.lock().vcpu_info.placement == Placement::Guest {
        return Err(Errno::EBUSY);
    }
    map_guest_area(d, caller, v, AreaKind::VcpuInfo, Some(gaddr), Some(&mut vcpu_info_populate))
}

/// The guest's "unregister" address for the phys-area registrations.
const UNREGISTER: u64 = !0;

/// Registers (or with `!0` unregisters) `v`'s runstate area.
pub fn register_runstate_area(d: &Domain, caller: Option<u32>, v: &Vcpu, gaddr: u64) -> XenResult<()> {
    let gaddr = (gaddr != UNREGISTER).then_some(Gpa(gaddr));
    map_guest_area(d, caller, v, AreaKind::Runstate, gaddr, Some(&mut runstate_populate))
}

/// Registers (or with `!0` unregisters) `v`'s time area.
pub fn register_time_area(d: &Domain, caller: Option<u32>, v: &Vcpu, gaddr: u64) -> XenResult<()> {
    let gaddr = (gaddr != UNREGISTER).then_some(Gpa(gaddr));
    map_guest_area(d, caller, v, AreaKind::Time, gaddr, Some(&mut time_populate))
}

/// Unmaps every area of every vCPU (domain kill and soft reset), and forgets
/// the areas registered by guest-virtual address, as Xen's soft reset resets
/// their handles.
pub fn unmap_all(d: &Domain) {
    for v in d.vcpus() {
        {
            let mut a = v.areas.lock();
            a.runstate_va = None;
            a.time_va = None;
        }
        for kind in AreaKind::ALL {
            unmap_guest_area(d, v, kind);
        }
    }
}
