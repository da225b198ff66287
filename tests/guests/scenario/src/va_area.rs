//! `vm_assist` and the areas registered by guest-virtual address
//! (`VCPUOP_register_runstate_memory_area`,
//! `VCPUOP_register_vcpu_time_memory_area`) on vCPU 0. The guests map their
//! memory 1:1, so a scratch page's guest-physical address is also its
//! virtual one; the hypervisor still translates it through the vCPU's page
//! tables at every update.

use xen_abi::nr::runstate::RUNNING;
use xen_abi::nr::vmasst;
use xen_abi::Errno;

use crate::context::{expect_errno, expect_ok, CheckResult, Ctx};
use crate::hypercall;
use crate::runstate::read_runstate;
use crate::time_area::read_time;

/// Where the VA-registered runstate area goes on the spare page (the time
/// area takes offset 0).
const RUNSTATE_VA_OFFSET: u64 = 64;

/// Runs the checks; vCPU 0's physical runstate and time areas (if
/// registered) are dropped while its VA areas are watched, as a physical
/// area takes precedence, and put back afterwards.
pub(crate) fn checks(cx: &mut Ctx) {
    let rc = hypercall::vm_assist(cx.g, vmasst::CMD_ENABLE, vmasst::TYPE_RUNSTATE_UPDATE_FLAG);
    cx.check("vm_assist_runstate_update_flag", expect_ok(rc));
    let rc = hypercall::vm_assist(cx.g, vmasst::CMD_ENABLE, vmasst::TYPE_WRITABLE_PAGETABLES);
    cx.check("vm_assist_pv_only_type_einval", expect_errno(rc, Errno::EINVAL));

    let phys = cx.runstate_gpa[0];
    if phys != 0 {
        hypercall::register_runstate_phys_area(cx.g, 0, !0);
    }
    let res = runstate_by_va(cx);
    cx.check("runstate_area_by_va_advancing", res);
    if phys != 0 {
        hypercall::register_runstate_phys_area(cx.g, 0, phys);
    }

    let phys = cx.time_gpa[0];
    if phys != 0 {
        hypercall::register_vcpu_time_phys_area(cx.g, 0, !0);
    }
    let res = time_by_va(cx);
    cx.check("time_area_by_va", res);
    if phys != 0 {
        hypercall::register_vcpu_time_phys_area(cx.g, 0, phys);
    }
}

/// Registered by VA, the area says running and, across yields (each one a
/// trip through the scheduler that rewrites it), its entry time and
/// running time move on.
fn runstate_by_va(cx: &Ctx) -> CheckResult {
    let va = cx.pages.spare + RUNSTATE_VA_OFFSET;
    expect_ok(hypercall::register_runstate_memory_area(cx.g, 0, va))?;
    let res = (|| {
        let first = read_runstate(cx.g, va).ok_or_else(|| reason!("area never consistent"))?;
        ensure!(first.state == RUNNING && first.entry != 0, "state={} entry={}", first.state, first.entry);
        let mut last = first;
        let moved = cx.wait_for(|| {
            cx.g.busy_wait(10_000);
            if let Some(r) = read_runstate(cx.g, va) {
                last = r;
            }
            last.entry > first.entry && last.time[RUNNING as usize] > first.time[RUNNING as usize]
        });
        ensure!(moved, "entry {}->{} running {}->{}", first.entry, last.entry, first.time[0], last.time[0]);
        Ok(())
    })();
    hypercall::register_runstate_memory_area(cx.g, 0, 0);
    res
}

/// x86: the time area by VA is registered, consistent and advancing; arm:
/// the op does not exist there (its errno).
fn time_by_va(cx: &Ctx) -> CheckResult {
    let va = cx.pages.spare;
    let rc = hypercall::register_vcpu_time_memory_area(cx.g, 0, va);
    if let Some(e) = cx.layout.time_area_by_va_errno {
        return expect_errno(rc, e);
    }
    expect_ok(rc)?;
    let res = (|| {
        let first = read_time(cx.g, va).ok_or_else(|| reason!("version stayed odd/unstable"))?;
        ensure!(first.system_time != 0, "system_time 0 (version {})", first.version);
        let mut last = first.system_time;
        let moved = cx.wait_for(|| {
            cx.g.busy_wait(10_000);
            if let Some(t) = read_time(cx.g, va) {
                last = t.system_time;
            }
            last > first.system_time
        });
        ensure!(moved, "system_time stuck at {}", first.system_time);
        Ok(())
    })();
    hypercall::register_vcpu_time_memory_area(cx.g, 0, 0);
    res
}
