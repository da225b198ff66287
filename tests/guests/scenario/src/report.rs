//! `REPORT` lines: the facts about the run that xtask and an attached
//! debugger compare against — the guest and its layout, then per vCPU where
//! its vcpu_info lives and what it holds, and its runstate and time areas.

use core::fmt::Write;
use core::sync::atomic::Ordering;

use xen_abi::nr::runstate;

use crate::console::Buf;
use crate::context::Ctx;
use crate::layout::{self, VCPU_INFO_MAX};
use crate::runstate::read_runstate;
use crate::time_area::read_time;
use crate::{upcall, PAGE_SIZE, VCPUS};

/// `REPORT guest=.. layout=.. vcpus=..` and the layout's key numbers.
pub(crate) fn guest(cx: &Ctx) {
    let l = cx.layout;
    cx.say(format_args!(
        "REPORT guest={} layout={} vcpus={} vcpu_info_size={} pending_sel_offset={} pending_sel_width={} legacy_vcpus={}",
        cx.g.name(),
        l.name,
        cx.vcpus,
        l.vcpu_info_size,
        l.pending_sel_offset,
        l.xen_ulong_size,
        l.legacy_vcpus
    ));
}

/// One `vcpu_info` REPORT line per vCPU, and runstate / time lines for the
/// vCPUs that registered those areas.
pub(crate) fn vcpus(cx: &Ctx) {
    for v in 0..cx.vcpus {
        vcpu_info(cx, v);
        runstate(cx, v);
        time(cx, v);
    }
}

/// Where `v`'s vcpu_info lives (`shared_info` slot, a `guest` page, or the
/// `dummy` area) and, where readable, what it holds.
fn vcpu_info(cx: &Ctx, v: u32) {
    let l = cx.layout;
    let vi_gpa = VCPUS.vcpu_info_gpa[v as usize].load(Ordering::Acquire);
    let slot = cx.g.shared_info_page() + (v * l.vcpu_info_size) as u64;
    let in_slot = cx.shared_info_mapped && v < l.legacy_vcpus && vi_gpa == slot;
    let kind = if vi_gpa == 0 {
        "dummy"
    } else if in_slot {
        "shared_info"
    } else {
        "guest"
    };
    let up = v == 0 || cx.started[v as usize];
    let mut line = Buf::<256>::new();
    let _ = write!(line, "REPORT vcpu={v} up={} vcpu_info={kind}", up as u8);
    if vi_gpa != 0 {
        let vi: [u8; VCPU_INFO_MAX] = cx.read_vcpu_info(vi_gpa);
        let _ = write!(
            line,
            " vcpu_info_gfn={:#x} vcpu_info_offset={:#x} pending_sel={:#x} upcall_pending={} upcall_mask={}",
            vi_gpa / PAGE_SIZE,
            vi_gpa % PAGE_SIZE,
            l.pending_sel(&vi),
            vi[layout::VI_UPCALL_PENDING as usize],
            vi[layout::VI_UPCALL_MASK as usize]
        );
    }
    let _ = write!(line, " upcalls={}", upcall::count(v));
    cx.say(format_args!("{}", line.as_str()));
}

/// `v`'s runstate area, if it registered one.
fn runstate(cx: &Ctx, v: u32) {
    let gpa = cx.runstate_gpa[v as usize];
    if gpa == 0 {
        return;
    }
    if let Some(r) = read_runstate(cx.g, gpa) {
        cx.say(format_args!(
            "REPORT vcpu={v} runstate_gpa={gpa:#x} runstate_state={} runstate_entry={} runstate_running={} runstate_runnable={} runstate_blocked={} runstate_offline={}",
            r.state,
            r.entry,
            r.time[runstate::RUNNING as usize],
            r.time[runstate::RUNNABLE as usize],
            r.time[runstate::BLOCKED as usize],
            r.time[runstate::OFFLINE as usize]
        ));
    }
}

/// `v`'s time area, if it registered one.
fn time(cx: &Ctx, v: u32) {
    let gpa = cx.time_gpa[v as usize];
    if gpa == 0 {
        return;
    }
    if let Some(t) = read_time(cx.g, gpa) {
        cx.say(format_args!(
            "REPORT vcpu={v} time_gpa={gpa:#x} time_version={} time_system_time={}",
            t.version, t.system_time
        ));
    }
}
