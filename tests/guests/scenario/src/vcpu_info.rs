//! vcpu_info registration on vCPU 0 (`VCPUOP_register_vcpu_info`): the
//! refusals (misaligned, page-crossing, outside the domain), a fresh page
//! and what it must hold afterwards, the refused second registration, and
//! the upcall the registration leaves pending.

use core::sync::atomic::Ordering;

use xen_abi::Errno;

use crate::context::{expect_errno, expect_ok, CheckResult, Ctx, WAIT_YIELDS};
use crate::hypercall;
use crate::layout::{self, Layout, VCPU_INFO_MAX};
use crate::upcall;
use crate::{MAX_VCPUS, PAGE_SIZE, VCPUS};

/// A gfn far beyond any test domain's memory (16 GiB).
const GFN_OUTSIDE: u64 = 0x40_0000;

/// Marker written into the spare arch field of a vcpu_info before
/// re-registering it, to see the contents carried over.
pub(crate) const MARKER: u32 = 0x4c41_4e54; // "LANT"

/// Register `vcpu`'s vcpu_info at `page + offset`; on success remember
/// where it lives (for the upcall handler and the REPORT lines).
pub(crate) fn register_and_track(cx: &Ctx, vcpu: u32, page: u64, offset: u32) -> i64 {
    let rc = hypercall::register_vcpu_info(cx.g, vcpu, page / PAGE_SIZE, offset);
    if rc == 0 && (vcpu as usize) < MAX_VCPUS {
        VCPUS.vcpu_info_gpa[vcpu as usize].store(page + offset as u64, Ordering::Release);
    }
    rc
}

/// The marker in a vcpu_info's spare arch field, where the layout has one.
pub(crate) fn marker(layout: &Layout, vi: &[u8; VCPU_INFO_MAX]) -> Option<u32> {
    let o = layout.arch_marker_offset? as usize;
    Some(u32::from_le_bytes([vi[o], vi[o + 1], vi[o + 2], vi[o + 3]]))
}

/// Registrations the hypervisor must refuse, each with its errno.
pub(crate) fn refusals(cx: &mut Ctx) {
    let l = cx.layout;
    let gfn = cx.pages.vcpu_info / PAGE_SIZE;
    // Offset 2 is misaligned in every layout (alignment 4 or 8).
    let rc = hypercall::register_vcpu_info(cx.g, 0, gfn, 2);
    cx.check("register_vcpu_info_misaligned_enxio", expect_errno(rc, Errno::ENXIO));
    // Aligned, but the area would run past the end of the page.
    let off = (PAGE_SIZE as u32) - l.vcpu_info_size + l.vcpu_info_align;
    let rc = hypercall::register_vcpu_info(cx.g, 0, gfn, off);
    cx.check("register_vcpu_info_page_crossing_enxio", expect_errno(rc, Errno::ENXIO));
    let rc = hypercall::register_vcpu_info(cx.g, 0, GFN_OUTSIDE, 0);
    cx.check("register_vcpu_info_gfn_outside_einval", expect_errno(rc, Errno::EINVAL));
}

/// Move vCPU 0 from its shared_info slot to offset 0 of a fresh page and
/// check what the hypervisor must do around that.
pub(crate) fn register_vcpu0(cx: &mut Ctx) {
    let l = cx.layout;
    let slot = cx.g.shared_info_page();
    let page = cx.pages.vcpu_info;
    // Leave a trace in the old area that must be carried across.
    if cx.shared_info_mapped {
        cx.g.write(slot + layout::VI_UPCALL_MASK, &[1]);
        if let Some(o) = l.arch_marker_offset {
            cx.g.write(slot + o as u64, &MARKER.to_le_bytes());
        }
    }
    cx.g.upcalls_enabled(false);
    let before = upcall::count(0);
    let rc = register_and_track(cx, 0, page, 0);
    let registered = rc == 0;
    cx.check("register_vcpu_info_fresh_page", expect_ok(rc));

    let vi = cx.read_vcpu_info(page);
    cx.check("vcpu_info_contents_carried_over", contents_carried_over(cx, registered, &vi));
    cx.check("pending_sel_all_ones", pending_sel_all_ones(cx, registered, &vi));

    let rc = hypercall::register_vcpu_info(cx.g, 0, cx.pages.second_vcpu_info / PAGE_SIZE, 0);
    cx.check("register_vcpu_info_again_ebusy", expect_errno(rc, Errno::EBUSY));

    // Unmask and let the pending upcall in.
    if registered {
        upcall::unmask(cx.g, l, page);
    }
    cx.g.upcalls_enabled(true);
    let got = upcall::wait_for_upcall(cx, 0, before);
    let res = if !registered {
        Err(reason!("vcpu_info not registered"))
    } else if got {
        Ok(())
    } else {
        Err(reason!(
            "no upcall within {WAIT_YIELDS} yields (upcall_pending={})",
            cx.read::<u8>(page + layout::VI_UPCALL_PENDING)
        ))
    };
    cx.check("upcall_delivered_after_register", res);
}

/// The new area holds what the shared_info slot held.
fn contents_carried_over(cx: &Ctx, registered: bool, vi: &[u8; VCPU_INFO_MAX]) -> CheckResult {
    ensure!(registered, "vcpu_info not registered");
    ensure!(cx.shared_info_mapped, "shared_info not mapped: nothing to carry over");
    let mask = vi[layout::VI_UPCALL_MASK as usize];
    ensure!(mask == 1, "evtchn_upcall_mask={mask} (expected 1 carried from the shared_info slot)");
    if let Some(m) = marker(cx.layout, vi) {
        ensure!(m == MARKER, "arch pad marker {m:#x} != {MARKER:#x}");
    }
    Ok(())
}

fn pending_sel_all_ones(cx: &Ctx, registered: bool, vi: &[u8; VCPU_INFO_MAX]) -> CheckResult {
    ensure!(registered, "vcpu_info not registered");
    check_pending_sel(cx.layout, vi)
}

/// After a registration `evtchn_pending_sel` is all ones in the layout's
/// width — and only that width (compat must not spill into `arch.cr2`).
fn check_pending_sel(l: &Layout, vi: &[u8; VCPU_INFO_MAX]) -> CheckResult {
    let sel = l.pending_sel(vi);
    ensure!(sel == l.pending_sel_all_ones(), "evtchn_pending_sel={sel:#x}");
    let after = (l.pending_sel_offset + l.xen_ulong_size) as usize;
    let spill = u32::from_le_bytes([vi[after], vi[after + 1], vi[after + 2], vi[after + 3]]);
    ensure!(spill != u32::MAX, "all-ones spilled past pending_sel (offset {after:#x})");
    let pending = vi[layout::VI_UPCALL_PENDING as usize];
    ensure!(pending == 1, "evtchn_upcall_pending={pending} (expected 1)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ARM64, X86_32, X86_64};

    #[test]
    fn pending_sel_right_width() {
        let mut vi = [0u8; 64];
        vi[0] = 1;
        vi[4..8].copy_from_slice(&[0xff; 4]);
        assert!(check_pending_sel(&X86_32, &vi).is_ok());
        assert!(check_pending_sel(&X86_64, &vi).is_err());
        // Native width written into a compat guest's area spills into cr2.
        vi[8..12].copy_from_slice(&[0xff; 4]);
        assert!(check_pending_sel(&X86_32, &vi).is_err());
        let mut vi = [0u8; 64];
        vi[0] = 1;
        vi[8..16].copy_from_slice(&[0xff; 8]);
        assert!(check_pending_sel(&X86_64, &vi).is_ok());
        assert!(check_pending_sel(&ARM64, &vi).is_ok());
        vi[0] = 0;
        assert!(check_pending_sel(&ARM64, &vi).is_err());
    }

    #[test]
    fn marker_where_the_layout_has_one() {
        let mut vi = [0u8; 64];
        vi[24..28].copy_from_slice(&MARKER.to_le_bytes());
        assert_eq!(marker(&X86_64, &vi), Some(MARKER));
        assert_eq!(marker(&X86_32, &vi), Some(0));
        assert_eq!(marker(&ARM64, &vi), None);
    }
}
