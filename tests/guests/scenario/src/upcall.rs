//! Event upcalls: the handler the guests' interrupt code calls
//! ([`on_upcall`]), asking the hypervisor for them (`upcall_callback_set`),
//! unmasking them, and waiting until a vCPU has taken one.

use core::sync::atomic::Ordering;

use crate::context::{expect_ok, Ctx};
use crate::layout::{self, Layout};
use crate::{Guest, MAX_VCPUS, VCPUS};

/// Called by an arch crate's upcall interrupt handler on vCPU `vcpu`.
///
/// Acknowledges the upcall the way Xen guests do — clear
/// `evtchn_upcall_pending` in the vCPU's current vcpu_info — and counts it.
/// The callback-vector upcall is level-like (re-raised while
/// `evtchn_upcall_pending` is set), so clearing it is what stops the flood.
/// `evtchn_pending_sel` is left alone: the scenario inspects it.
pub fn on_upcall(g: &dyn Guest, vcpu: u32) {
    let v = vcpu as usize;
    if v >= MAX_VCPUS {
        return;
    }
    let gpa = VCPUS.vcpu_info_gpa[v].load(Ordering::Acquire);
    if gpa != 0 {
        g.write(gpa + layout::VI_UPCALL_PENDING, &[0]);
    }
    // Under FIFO the events are consumed here (2-level ones are left for
    // the checks to inspect).
    crate::fifo::consume(g, vcpu);
    VCPUS.upcalls[v].fetch_add(1, Ordering::AcqRel);
}

/// `upcall_callback_set`: the guest's upcall path is set up.
pub(crate) fn callback_set(cx: &mut Ctx) {
    let rc = cx.g.setup_upcall();
    cx.check("upcall_callback_set", expect_ok(rc));
}

/// Upcalls `vcpu` has taken so far.
pub(crate) fn count(vcpu: u32) -> u32 {
    VCPUS.upcalls[vcpu as usize].load(Ordering::Acquire)
}

/// Wait until `vcpu` has taken more than `since` upcalls.
pub(crate) fn wait_for_upcall(cx: &Ctx, vcpu: u32, since: u32) -> bool {
    cx.wait_for(|| count(vcpu) > since)
}

/// Clear `evtchn_upcall_mask` in the vcpu_info at `vcpu_info_gpa`, as a Xen
/// guest does once it can take upcalls (where the layout has the mask).
pub(crate) fn unmask(g: &dyn Guest, layout: &Layout, vcpu_info_gpa: u64) {
    if layout.has_upcall_mask {
        g.write(vcpu_info_gpa + layout::VI_UPCALL_MASK, &[0]);
    }
}
