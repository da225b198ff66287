//! The first checks: the hypervisor answers (`xen_version`), maps
//! shared_info onto a guest page (`XENMEM_add_to_physmap`), and keeps vCPU
//! 0's default vcpu_info slot in it up to date.

use core::sync::atomic::Ordering;

use crate::context::{CheckResult, Ctx};
use crate::hypercall::{self, rc_name, Version};
use crate::time_area;
use crate::{PAGE_SIZE, VCPUS};

/// `xen_version`, `map_shared_info`, `default_vcpu_info_in_shared_info`.
pub(crate) fn checks(cx: &mut Ctx) {
    cx.run("xen_version", xen_version);
    cx.run("map_shared_info", map_shared_info);
    cx.run("default_vcpu_info_in_shared_info", default_vcpu_info);
}

/// `XENVER_version` succeeds; the version goes into a REPORT line.
fn xen_version(cx: &mut Ctx) -> CheckResult {
    let rc = hypercall::xen_version(cx.g);
    ensure!(rc >= 0, "xen_version rc={rc} ({})", rc_name(rc));
    cx.say(format_args!("REPORT xen_version={}", Version(rc as u64)));
    Ok(())
}

/// shared_info replaces the guest's page; the legacy vcpu_info slots in it
/// become the vCPUs' areas.
fn map_shared_info(cx: &mut Ctx) -> CheckResult {
    let gpa = cx.g.shared_info_page();
    let rc = hypercall::add_to_physmap_shared_info(cx.g, cx.layout, gpa / PAGE_SIZE);
    ensure!(rc == 0, "add_to_physmap rc={rc} ({})", rc_name(rc));
    cx.shared_info_mapped = true;
    for v in 0..cx.vcpus.min(cx.layout.legacy_vcpus) {
        let slot = gpa + (v * cx.layout.vcpu_info_size) as u64;
        VCPUS.vcpu_info_gpa[v as usize].store(slot, Ordering::Release);
    }
    cx.say(format_args!("REPORT shared_info_gfn={:#x}", gpa / PAGE_SIZE));
    Ok(())
}

/// vCPU 0's vcpu_info starts out in shared_info slot 0: the hypervisor
/// keeps its time fields up to date there.
fn default_vcpu_info(cx: &mut Ctx) -> CheckResult {
    ensure!(cx.shared_info_mapped, "shared_info not mapped");
    let slot_time = cx.g.shared_info_page() + cx.layout.vcpu_info_time_offset as u64;
    let mut last = None;
    let ok = cx.wait_for(|| {
        last = time_area::read_time(cx.g, slot_time);
        matches!(last, Some(t) if t.system_time != 0)
    });
    ensure!(ok, "shared_info slot 0 time never updated (last {:?})", last.map(|t| (t.version, t.system_time)));
    Ok(())
}
