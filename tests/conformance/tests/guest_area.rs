//! The guest-area rules (map/unmap/copy, vcpu_info semantics), each checked
//! in every layout of the kit's list (x86_64 native, x86_32 compat and
//! arm64 today).

use lantern_common::addr::{Gfn, Gpa};
use lantern_common::area::{AreaKind, Placement};
use lantern_common::domain::Domain;
use lantern_common::guest_area::{
    self, map_guest_area, register_runstate_area, register_time_area, register_vcpu_info,
};
use lantern_common::lifecycle;
use lantern_common::memory::{P2mType, Page, PAGE_SIZE};
use lantern_conformance::*;
use xen_abi::errno::Errno;

#[test]
fn page_crossing_offsets_are_enxio() {
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let v = d.vcpu(0).unwrap();
        for kind in AreaKind::ALL {
            let size = kind.size(abi);
            let align = kind.align(abi);
            // The last aligned offset that still fits is fine for runstate/time
            // (vcpu_info is tested separately as it can't be re-registered).
            let last_fit = (PAGE_SIZE - size) / align * align;
            let crossing = last_fit + align;
            let r = map_guest_area(&d, Some(0), v, kind, Some(Gpa(gaddr(5, crossing))), None);
            assert_eq!(r, Err(Errno::ENXIO), "{} {}: offset {crossing}", abi.name(), kind.name());
            if kind != AreaKind::VcpuInfo {
                assert_eq!(map_guest_area(&d, Some(0), v, kind, Some(Gpa(gaddr(5, last_fit))), None), Ok(()));
            }
        }
        assert_eq!(
            register_vcpu_info(&d, Some(0), v, Gfn(5), (PAGE_SIZE - abi.vcpu_info().size + 1) as u64),
            Err(Errno::ENXIO)
        );
        assert_eq!(
            register_vcpu_info(&d, Some(0), v, Gfn(5), (PAGE_SIZE - abi.vcpu_info().size) as u64),
            Ok(()),
            "{}: a vcpu_info ending exactly at the page end fits",
            abi.name()
        );
    }
}

#[test]
fn misaligned_offsets_are_enxio_in_the_layout_in_force() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let v = d.vcpu(0).unwrap();
        let align = abi.vcpu_info().align;
        for off in [1usize, 2, 3, align / 2 + align / 4 + 1] {
            if off % align != 0 {
                assert_eq!(
                    register_vcpu_info(&d, Some(0), v, Gfn(3), off as u64),
                    Err(Errno::ENXIO),
                    "{} off {off}",
                    abi.name()
                );
            }
        }
        // 4-byte aligned but not 8: only the x86_32 compat layout accepts it.
        let r = register_vcpu_info(&d, Some(0), v, Gfn(3), 4);
        if align == 4 {
            assert_eq!(r, Ok(()), "compat accepts 4-aligned");
        } else {
            assert_eq!(r, Err(Errno::ENXIO), "{} refuses 4-aligned", abi.name());
        }
        for kind in [AreaKind::Runstate, AreaKind::Time] {
            assert_eq!(map_guest_area(&d, Some(0), v, kind, Some(Gpa(gaddr(6, 2))), None), Err(Errno::ENXIO));
        }
    }
}

#[test]
fn bad_frames_are_einval_and_take_no_references() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let v = d.vcpu(0).unwrap();
        // Outside the domain's RAM.
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(RAM_PAGES + 10), 0), Err(Errno::EINVAL));
        assert_eq!(register_runstate_area(&d, Some(0), v, gaddr(1 << 30, 0)), Err(Errno::EINVAL));
        // Read-only RAM.
        let ro = Page::alloc(d.id).unwrap();
        d.p2m.lock().set(Gfn(RAM_PAGES), ro.clone(), P2mType::RamRo);
        assert_eq!(register_time_area(&d, Some(0), v, gaddr(RAM_PAGES, 0)), Err(Errno::EINVAL));
        assert_eq!((ro.refs(), ro.writable_refs()), (1, 0));
        // Another domain's page mapped here (foreign).
        let foreign = Page::alloc(d.id + 1).unwrap();
        d.p2m.lock().set(Gfn(RAM_PAGES + 1), foreign.clone(), P2mType::RamRw);
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(RAM_PAGES + 1), 0), Err(Errno::EINVAL));
        assert_eq!((foreign.refs(), foreign.writable_refs()), (1, 0));
        // An offset that leaves the frame is a malformed request, not a crossing.
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(2), PAGE_SIZE as u64), Err(Errno::EINVAL));
        // Still on the default placement.
        assert_eq!(v.areas().vcpu_info.placement, Placement::SharedInfoSlot);
    }
}

#[test]
fn vcpu_info_reregistration_is_ebusy_and_keeps_the_first() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let v = d.vcpu(0).unwrap();
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(7), 64), Ok(()));
        let p7 = page(&d, 7);
        assert_eq!((p7.refs(), p7.writable_refs()), (2, 1));
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(8), 0), Err(Errno::EBUSY));
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(7), 64), Err(Errno::EBUSY));
        // The core path (without the preliminary check) refuses too, and
        // drops the references it took for the refused page.
        let r = map_guest_area(&d, Some(0), v, AreaKind::VcpuInfo, Some(Gpa(gaddr(8, 0))), None);
        assert_eq!(r, Err(Errno::EBUSY));
        let p8 = page(&d, 8);
        assert_eq!((p8.refs(), p8.writable_refs()), (1, 0));
        let a = v.areas().vcpu_info;
        assert_eq!((a.placement, a.gfn, a.offset), (Placement::Guest, Some(Gfn(7)), 64));
        // Runstate and time areas may be moved freely.
        assert_eq!(register_runstate_area(&d, Some(0), v, gaddr(9, 0)), Ok(()));
        assert_eq!(register_runstate_area(&d, Some(0), v, gaddr(10, 0)), Ok(()));
        assert_eq!((page(&d, 9).refs(), page(&d, 9).writable_refs()), (1, 0));
        assert_eq!((page(&d, 10).refs(), page(&d, 10).writable_refs()), (2, 1));
    }
}

#[test]
fn remote_vcpu_is_paused_for_the_swap_then_resumed() {
    for abi in layouts() {
        let (d, _) = domain(abi, 3);
        let v1 = d.vcpu(1).unwrap();
        v1.set_initialised();
        lifecycle::vcpu_up(&d, v1).unwrap();
        assert!(d.vcpu_runnable(v1));
        let mut seen = None;
        let mut populate = |d: &Domain,
                            v: &lantern_common::domain::Vcpu,
                            _: &lantern_common::area::VcpuAreas,
                            _: &lantern_common::area::AreaMap| {
            seen = Some((v.pause_count(), d.lock.is_locked(), d.vcpu_runnable(v)));
        };
        // vCPU 0 registers an area for vCPU 1.
        map_guest_area(&d, Some(0), v1, AreaKind::Runstate, Some(Gpa(gaddr(4, 0))), Some(&mut populate)).unwrap();
        assert_eq!(seen, Some((1, true, false)), "{}: paused and under the domain lock during populate", abi.name());
        assert_eq!(v1.pause_count(), 0);
        assert!(d.vcpu_runnable(v1), "resumed afterwards");
        // A vCPU registering for itself is not paused.
        let v0 = d.vcpu(0).unwrap();
        let mut self_seen = None;
        let mut populate = |_: &Domain,
                            v: &lantern_common::domain::Vcpu,
                            _: &lantern_common::area::VcpuAreas,
                            _: &lantern_common::area::AreaMap| {
            self_seen = Some(v.pause_count());
        };
        map_guest_area(&d, Some(0), v0, AreaKind::Time, Some(Gpa(gaddr(4, 512))), Some(&mut populate)).unwrap();
        assert_eq!(self_seen, Some(0));
        // Failure paths resume the vCPU too.
        assert_eq!(register_vcpu_info(&d, Some(0), v1, Gfn(4), 1), Err(Errno::ENXIO));
        d.vcpu(1).unwrap();
        assert_eq!(register_vcpu_info(&d, Some(0), v1, Gfn(4), 1024), Ok(()));
        assert_eq!(
            map_guest_area(&d, Some(0), v1, AreaKind::VcpuInfo, Some(Gpa(gaddr(4, 2048))), None),
            Err(Errno::EBUSY)
        );
        assert_eq!(v1.pause_count(), 0);
    }
}

#[test]
fn two_vcpus_share_one_page() {
    for abi in layouts() {
        let (d, _) = domain(abi, 4);
        let size = abi.vcpu_info().size;
        for id in 0..4u32 {
            let v = d.vcpu(id).unwrap();
            register_vcpu_info(&d, Some(0), v, Gfn(12), (id as usize * size) as u64).unwrap();
        }
        let p = page(&d, 12);
        assert_eq!((p.refs(), p.writable_refs()), (5, 4), "{}: one p2m ref + one per area", abi.name());
        // Each has its own slot: pending_sel all ones in each, nothing between.
        let sel = abi.vcpu_info().pending_sel;
        for id in 0..4 {
            let base = id * size;
            assert_eq!(p.read_uint(base + sel.offset, sel.size).unwrap(), u64::MAX >> (64 - 8 * sel.size));
        }
        // Unmapping one leaves the others' references alone.
        guest_area::unmap_guest_area(&d, d.vcpu(2).unwrap(), AreaKind::VcpuInfo);
        assert_eq!((p.refs(), p.writable_refs()), (4, 3));
    }
}

#[test]
fn contents_carried_over_from_the_shared_info_slot() {
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let vi = abi.vcpu_info();
        let slot = abi.shared_info().vcpu_info; // vCPU 0's slot
        let si = d.shared_info().clone();
        // The guest had an event pending and (x86) events masked; byte 1 is
        // evtchn_upcall_mask on x86, padding on arm — carried either way.
        si.write_uint(slot + vi.upcall_pending.offset, 1, 1).unwrap();
        si.write_uint(slot + 1, 1, 1).unwrap();
        si.write_uint(slot + vi.pending_sel.offset, vi.pending_sel.size, 0b1010).unwrap();
        let v = d.vcpu(0).unwrap();
        register_vcpu_info(&d, Some(0), v, Gfn(20), 0).unwrap();
        assert_eq!(read(&d, 20, vi.upcall_pending.offset, 1), 1);
        assert_eq!(read(&d, 20, 1, 1), 1, "{}: byte 1 carried", abi.name());
        if abi.name() == "x86_64" {
            // arch.cr2 is carried too.
            si.write_uint(slot + 16, 8, 0xdead_beef).unwrap();
            let v1 = d.vcpu(1).unwrap();
            let slot1 = slot + vi.size;
            si.write_uint(slot1 + 16, 8, 0x1234_5678).unwrap();
            register_vcpu_info(&d, Some(0), v1, Gfn(20), 64).unwrap();
            assert_eq!(read(&d, 20, 64 + 16, 8), 0x1234_5678);
        }
        // The guest's view now lives on the new page: events go there.
        assert_eq!(v.areas().vcpu_info.placement, Placement::Guest);
    }
}

#[test]
fn from_the_dummy_area_zeroed_and_upcall_masked_where_the_abi_has_a_mask() {
    for abi in layouts() {
        let vcpus = abi.legacy_max_vcpus() + 2;
        let (d, _) = domain(abi, vcpus);
        let vi = abi.vcpu_info();
        let id = abi.legacy_max_vcpus(); // first vCPU without a shared_info slot
        let v = d.vcpu(id).unwrap();
        assert_eq!(v.areas().vcpu_info.placement, Placement::Dummy);
        let p = page(&d, 30);
        p.fill(0, PAGE_SIZE, 0xEE).unwrap();
        register_vcpu_info(&d, Some(0), v, Gfn(30), 128).unwrap();
        let mut got = vec![0u8; vi.size];
        p.read(128, &mut got).unwrap();
        let mask = got[1];
        if abi.has_upcall_mask() {
            assert_eq!(mask, 1, "{}: evtchn_upcall_mask set", abi.name());
        } else {
            assert_eq!(mask, 0, "{}: no mask, byte stays zero", abi.name());
        }
        assert_eq!(got[vi.upcall_pending.offset], 1, "events marked pending");
        let sel = &got[vi.pending_sel.offset..vi.pending_sel.offset + vi.pending_sel.size];
        assert!(sel.iter().all(|b| *b == 0xff));
        // Everything outside the written fields was zeroed (no 0xEE left).
        assert!(got.iter().all(|b| *b != 0xEE), "{}: {got:?}", abi.name());
        // Bytes around the area untouched.
        assert_eq!(p.read_uint(127, 1).unwrap(), 0xEE);
        assert_eq!(p.read_uint(128 + vi.size, 1).unwrap(), 0xEE);
    }
}

#[test]
fn pending_sel_is_all_ones_in_the_width_of_the_layout() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let vi = abi.vcpu_info();
        register_vcpu_info(&d, Some(0), d.vcpu(0).unwrap(), Gfn(40), 256).unwrap();
        let p = page(&d, 40);
        let (off, size) = (vi.pending_sel.offset, vi.pending_sel.size);
        let expect_size = if abi.name() == "x86_32" { 4 } else { 8 };
        let expect_off = if abi.name() == "x86_32" { 4 } else { 8 };
        assert_eq!((off, size), (expect_off, expect_size));
        assert_eq!(p.read_uint(256 + off, size).unwrap(), u64::MAX >> (64 - 8 * size));
        // Nothing past the field: in compat, bytes 8..12 are arch.cr2 and
        // must not be hit by a native-width write.
        if abi.name() == "x86_32" {
            assert_eq!(p.read_uint(256 + 8, 4).unwrap(), 0);
        }
        // Time was force-updated: version even and non-zero, system time set.
        let t = vi.time;
        let version = p.read_uint(256 + t + abi.time_info().version.offset, 4).unwrap();
        assert!(version > 0 && version.is_multiple_of(2));
        assert_eq!(p.read_uint(256 + t + abi.time_info().system_time.offset, 8).unwrap(), 1_000_000);
        // And an upcall was requested.
        assert!(d.vcpu(0).unwrap().take_upcall_request());
    }
}

#[test]
fn unmapping_vcpu_info_resets_to_slot_or_dummy() {
    for abi in layouts() {
        let n = abi.legacy_max_vcpus() + 1;
        let (d, _) = domain(abi, n);
        for id in [0, n - 1] {
            let v = d.vcpu(id).unwrap();
            register_vcpu_info(&d, Some(0), v, Gfn(50), 0).unwrap_or_else(|_| {
                register_vcpu_info(&d, Some(0), v, Gfn(51), 0).unwrap();
            });
            guest_area::unmap_guest_area(&d, v, AreaKind::VcpuInfo);
            let want = if id < abi.legacy_max_vcpus() { Placement::SharedInfoSlot } else { Placement::Dummy };
            assert_eq!(v.areas().vcpu_info.placement, want, "{} vcpu {id}", abi.name());
        }
        assert_eq!((page(&d, 50).refs(), page(&d, 50).writable_refs()), (1, 0));
        // Unregistering runstate with !0 drops it.
        let v = d.vcpu(0).unwrap();
        register_runstate_area(&d, Some(0), v, gaddr(52, 0)).unwrap();
        register_runstate_area(&d, Some(0), v, !0).unwrap();
        assert!(v.areas().runstate.is_none());
        assert_eq!(page(&d, 52).writable_refs(), 0);
        assert_eq!(register_vcpu_info(&d, Some(0), v, Gfn(u64::MAX >> 12), 4095), Err(Errno::EINVAL));
    }
}

fn register_everything(d: &Domain, abi: &'static dyn xen_abi::layout::GuestAbi) {
    let size = abi.vcpu_info().size;
    for v in d.vcpus() {
        register_vcpu_info(d, Some(0), v, Gfn(16), (v.id as usize * size) as u64).unwrap();
        register_runstate_area(d, Some(0), v, gaddr(17, v.id as usize * 64)).unwrap();
        register_time_area(d, Some(0), v, gaddr(18, v.id as usize * 32)).unwrap();
    }
}

#[test]
fn kill_and_soft_reset_return_page_counts_to_baseline() {
    for abi in layouts() {
        let (d, _) = domain(abi, 3);
        d.map_shared_info(Gfn(60)).unwrap();
        let pages: Vec<_> = (16..19).map(|g| page(&d, g)).collect();
        let si = d.shared_info().clone();
        assert_eq!((si.refs(), si.writable_refs()), (2, 0));
        register_everything(&d, abi);
        assert!(pages.iter().all(|p| p.refs() == 4 && p.writable_refs() == 3));
        d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        lifecycle::soft_reset(&d, &FakeDomain).unwrap();
        assert!(pages.iter().all(|p| (p.refs(), p.writable_refs()) == (1, 0)), "{}", abi.name());
        // shared_info left gfn 60 (a fresh RAM page took its place).
        assert_eq!((si.refs(), si.writable_refs()), (1, 0));
        assert!(d.vcpus().iter().all(|v| !v.areas().has_guest_areas()));
        assert!(d.vcpu(0).unwrap().is_up() && !d.vcpu(1).unwrap().is_up());
        // Registering again works after a soft reset (no stale EBUSY).
        register_everything(&d, abi);
        lifecycle::kill(&d);
        assert!(pages.iter().all(|p| (p.refs(), p.writable_refs()) == (0, 0)), "{}", abi.name());
        assert_eq!((si.refs(), si.writable_refs()), (1, 0), "only the domain's own reference");
        assert!(d.p2m.lock().is_empty());
    }
}

#[test]
fn fork_keeps_shared_pages_shared_and_copies_contents() {
    for abi in layouts() {
        let (parent, clock) = domain(abi, 3);
        register_everything(&parent, abi);
        let marker = page(&parent, 16);
        marker.write_uint(4000, 8, 0x1122_3344_5566_7788).unwrap();
        let child = lifecycle::fork(&parent, 9, clock).unwrap();
        let areas: Vec<_> = child.vcpus().iter().map(|v| v.areas()).collect();
        for a in &areas {
            assert_eq!(a.vcpu_info.placement, Placement::Guest);
            assert_eq!(a.vcpu_info.gfn, Some(Gfn(16)));
            assert!(std::sync::Arc::ptr_eq(&a.vcpu_info.page, &areas[0].vcpu_info.page), "{}: one page", abi.name());
            assert!(std::sync::Arc::ptr_eq(
                &a.runstate.as_ref().unwrap().page,
                &areas[0].runstate.as_ref().unwrap().page
            ));
        }
        let cp = &areas[0].vcpu_info.page;
        assert!(!std::sync::Arc::ptr_eq(cp, &marker), "child has its own frame");
        assert_eq!(cp.owner(), 9);
        assert_eq!(cp.read_uint(4000, 8).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!((cp.refs(), cp.writable_refs()), (4, 3));
        // Exactly the three area pages were given to the child.
        assert_eq!(child.p2m.lock().len(), 3);
        // Parent untouched.
        assert_eq!((marker.refs(), marker.writable_refs()), (4, 3));
        assert_eq!(parent.pause_count(), 0);
        lifecycle::kill(&child);
        assert_eq!((cp.refs(), cp.writable_refs()), (0, 0));
    }
}

#[test]
fn fork_of_an_unregistered_domain_keeps_default_placements() {
    for abi in layouts() {
        let (parent, clock) = domain(abi, 2);
        let child = lifecycle::fork(&parent, 3, clock).unwrap();
        assert_eq!(child.vcpu(0).unwrap().areas().vcpu_info.placement, Placement::SharedInfoSlot);
        assert!(child.p2m.lock().is_empty());
    }
}

#[test]
fn fork_applies_the_registration_post_steps_after_the_copy() {
    use lantern_common::time;
    for abi in layouts() {
        let (parent, clock) = domain(abi, 3);
        register_everything(&parent, abi);
        let vi = abi.vcpu_info();
        let tv = abi.time_info().version.offset;
        for _ in 0..5 {
            for v in parent.vcpus() {
                time::update_vcpu_system_time(&parent, v);
            }
        }
        // The guest has consumed everything it had pending.
        for v in parent.vcpus() {
            let a = v.areas().vcpu_info;
            a.page.write_uint(a.offset + vi.pending_sel.offset, vi.pending_sel.size, 0).unwrap();
            a.page.write_uint(a.offset + vi.upcall_pending.offset, 1, 0).unwrap();
        }
        let parent_versions: Vec<(u64, u64)> = parent
            .vcpus()
            .iter()
            .map(|v| {
                let a = v.areas();
                let t = a.time.unwrap();
                (
                    a.vcpu_info.page.read_uint(a.vcpu_info.offset + vi.time + tv, 4).unwrap(),
                    t.page.read_uint(t.offset + tv, 4).unwrap(),
                )
            })
            .collect();
        clock.advance(5_000);
        let now = lantern_common::clock::Clock::now_ns(&*clock);
        let child = lifecycle::fork(&parent, 9, clock).unwrap();
        let all_ones = if vi.pending_sel.size == 8 { u64::MAX } else { u32::MAX as u64 };
        for (v, (pvi, pta)) in child.vcpus().iter().zip(parent_versions) {
            let a = v.areas();
            let n = abi.name();
            let sel = a.vcpu_info.page.read_uint(a.vcpu_info.offset + vi.pending_sel.offset, vi.pending_sel.size);
            assert_eq!(sel.unwrap(), all_ones, "{n} v{}: pending_sel", v.id);
            assert!(child.upcall_pending(v), "{n} v{}: upcall pending", v.id);
            let rec = time::read_record(&child, &a.vcpu_info, a.vcpu_info.offset + vi.time);
            assert_eq!(rec.system_time, now, "{n} v{}: fresh time in vcpu_info", v.id);
            assert!(
                rec.version.is_multiple_of(2) && rec.version as u64 > pvi,
                "{n} v{}: {pvi} -> {}",
                v.id,
                rec.version
            );
            let t = a.time.unwrap();
            let rec = time::read_record(&child, &t, t.offset);
            assert!(
                rec.version.is_multiple_of(2) && rec.version as u64 > pta,
                "{n} v{}: {pta} -> {}",
                v.id,
                rec.version
            );
        }
    }
}

/// An arch without soft reset (as arm in Xen).
struct NoSoftReset;

impl lantern_common::arch::ArchDomain for NoSoftReset {
    fn create_vcpu(&self, d: &Domain, id: u32) -> Box<dyn lantern_common::arch::ArchVcpu> {
        FakeDomain.create_vcpu(d, id)
    }
    fn sync_p2m(&self, d: &Domain) {
        FakeDomain.sync_p2m(d)
    }
    fn timer_deadline(&self, _vcpu: u32) -> Option<u64> {
        None
    }
    fn exits(&self) -> u64 {
        0
    }
    fn soft_reset_supported(&self) -> xen_abi::errno::XenResult<()> {
        Err(Errno::ENOSYS)
    }
}

#[test]
fn soft_reset_needs_the_arch_and_a_shut_down_domain() {
    use lantern_common::domain::Lifecycle;
    for abi in layouts() {
        let n = abi.name();
        let (d, _) = domain(abi, 2);
        register_everything(&d, abi);
        let port = lantern_common::evtchn::bind_ipi(&d, 0).unwrap();
        // Running: every vCPU is not paused for shutdown.
        assert_eq!(lifecycle::soft_reset(&d, &FakeDomain), Err(Errno::EINVAL), "{n}");
        d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        // An arch without soft reset refuses it even then.
        assert_eq!(lifecycle::soft_reset(&d, &NoSoftReset), Err(Errno::ENOSYS), "{n}");
        // Nothing was torn down by the refusals.
        assert!(d.vcpus().iter().all(|v| v.areas().vcpu_info.placement == Placement::Guest), "{n}");
        assert_eq!(lantern_common::evtchn::send(&d, port), Ok(()), "{n}: port still bound");
        assert_eq!(d.lifecycle(), Lifecycle::Shutdown(xen_abi::nr::shutdown::SOFT_RESET));
        assert_eq!(d.pause_count(), 0);
    }
}

#[test]
fn soft_reset_clears_event_bits_replaces_shared_info_ram_and_keeps_vcpu_states() {
    for abi in layouts() {
        let n = abi.name();
        let (d, _) = domain(abi, 2);
        d.map_shared_info(Gfn(40)).unwrap();
        let si = abi.shared_info();
        let w = abi.xen_ulong_size();
        let page = d.shared_info().clone();
        page.fill(si.evtchn_pending.offset, si.evtchn_pending.size, 0xff).unwrap();
        page.fill(si.evtchn_mask.offset, si.evtchn_mask.size, 0xff).unwrap();
        // vCPU 1 up, vCPU 0 down: a soft reset keeps both as they are.
        let (v0, v1) = (d.vcpu(0).unwrap(), d.vcpu(1).unwrap());
        v1.set_initialised();
        lifecycle::vcpu_up(&d, v1).unwrap();
        lifecycle::vcpu_down(&d, v0);
        d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        assert_eq!(lifecycle::soft_reset(&d, &FakeDomain), Ok(()), "{n}");
        assert!(!d.is_finished(), "{n}: the domain resumes");
        assert_eq!(d.pause_count(), 0);
        for i in 0..si.evtchn_pending.size / w {
            assert_eq!(page.read_uint(si.evtchn_pending.offset + i * w, w).unwrap(), 0, "{n}: pending word {i}");
            assert_eq!(page.read_uint(si.evtchn_mask.offset + i * w, w).unwrap(), 0, "{n}: mask word {i}");
        }
        // gfn 40 is RAM again, a fresh zeroed page; shared_info is the same
        // frame, mapped nowhere, holding only the domain's own reference.
        let ram = page_at(&d, 40);
        assert!(!std::sync::Arc::ptr_eq(&ram, &page), "{n}: a new page at the old gfn");
        assert_eq!(ram.owner(), d.id);
        assert_eq!(ram.read_uint(si.evtchn_pending.offset, 8).unwrap(), 0);
        assert!(std::sync::Arc::ptr_eq(d.shared_info(), &page));
        assert_eq!(d.shared_info_gfn(), None);
        assert_eq!((page.refs(), page.writable_refs()), (1, 0));
        assert!(!v0.is_up() && v1.is_up(), "{n}: vCPU states are kept");
        // The guest maps shared_info again where it likes.
        d.map_shared_info(Gfn(41)).unwrap();
        assert_eq!(d.shared_info_gfn(), Some(Gfn(41)));
    }
}

fn page_at(d: &Domain, gfn: u64) -> lantern_common::memory::PageRef {
    d.p2m.lock().get(Gfn(gfn)).expect("RAM at gfn").page.clone()
}
