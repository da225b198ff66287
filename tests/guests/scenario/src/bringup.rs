//! Secondary vCPUs: counting them (`VCPUOP_is_up`), their main loop, and the
//! bring-up checks — a vCPU still on the dummy vcpu_info (x86: refused by
//! `VCPUOP_initialise`; registered while down, then started), and a vCPU
//! started on its default area whose vcpu_info vCPU 0 then registers while
//! it runs, on the same page as its own.

use core::sync::atomic::Ordering;

use xen_abi::Errno;

use crate::context::{expect_errno, CheckResult, Ctx, WAIT_YIELDS};
use crate::hypercall::{self, rc_name};
use crate::layout::{self, Layout};
use crate::upcall;
use crate::vcpu_info::{self, MARKER};
use crate::{Guest, MAX_VCPUS, VCPUS};

/// Where the dummy-area vCPU's vcpu_info goes on the shared vcpu_info page,
/// in vcpu_info sizes (vCPU 0 is at 0, the remote vCPU at 1).
const DUMMY_SLOT: u32 = 2;
/// Where the remote vCPU's vcpu_info goes, in vcpu_info sizes.
const REMOTE_SLOT: u32 = 1;

/// Count the domain's vCPUs with `VCPUOP_is_up` (-ENOENT past the end),
/// falling back to what the arch crate knows from its boot information.
pub(crate) fn probe_vcpus(g: &dyn Guest) -> u32 {
    let hinted = g.vcpu_count().clamp(1, MAX_VCPUS as u32);
    let n = (0..MAX_VCPUS as u32).find(|&v| hypercall::vcpu_is_up(g, v) < 0).unwrap_or(MAX_VCPUS as u32);
    if n == 0 {
        hinted
    } else {
        n
    }
}

/// The dummy-area vCPU (x86: the first id past the legacy slots; arm64:
/// vCPU 1) and the remote vCPU, started first and registered while it runs.
pub(crate) fn dummy_and_remote(l: &Layout) -> (u32, u32) {
    if l.legacy_vcpus > 1 {
        (l.legacy_vcpus, 1)
    } else {
        (1, 2)
    }
}

/// Main loop of every secondary vCPU: prove liveness, take upcalls, yield.
pub fn secondary_main(g: &dyn Guest, vcpu: u32) -> ! {
    if crate::fuzz::active() {
        crate::fuzz::secondary_idle(g, vcpu);
    }
    g.upcalls_enabled(true);
    let l = g.layout();
    loop {
        let v = (vcpu as usize).min(MAX_VCPUS - 1);
        VCPUS.alive[v].fetch_add(1, Ordering::AcqRel);
        // After a (remote) registration the upcall mask may have been copied
        // as 1 or set to 1 by the hypervisor; a Xen guest unmasks itself.
        let gpa = VCPUS.vcpu_info_gpa[v].load(Ordering::Acquire);
        if gpa != 0 {
            upcall::unmask(g, l, gpa);
        }
        crate::debuggee::tick(vcpu);
        g.busy_wait(2_000);
        hypercall::sched_yield(g);
    }
}

/// Fail `names`, checks that need vCPU `id`: the domain has too few.
fn fail_too_few(cx: &mut Ctx, names: &[&str], id: u32) {
    let have = cx.vcpus;
    cx.fail_all(names, format_args!("needs at least {} vCPUs, domain has {have}", id + 1));
}

/// x86: a vCPU >= 32 on the dummy area cannot be initialised until its
/// vcpu_info is registered. arm64: register, then PSCI CPU_ON.
pub(crate) fn dummy_vcpu(cx: &mut Ctx, d: u32) {
    let refused = cx.g.dummy_start_refused();
    if d >= cx.vcpus {
        let names: &[&str] = if refused {
            &["initialise_on_dummy_refused", "register_dummy_then_start"]
        } else {
            &["register_dummy_then_start"]
        };
        fail_too_few(cx, names, d);
        cx.fail_all(&["dummy_vcpu_upcall_delivered"], format_args!("no vCPU {d}"));
        return;
    }
    if refused {
        let rc = cx.g.start_secondary(d);
        cx.check("initialise_on_dummy_refused", expect_errno(rc, Errno::EINVAL));
        if rc == 0 {
            cx.started[d as usize] = true;
        }
    }
    let res = register_then_start(cx, d);
    let running = res.is_ok();
    cx.check("register_dummy_then_start", res);
    cx.check("dummy_vcpu_upcall_delivered", dummy_upcall(cx, d, running));
}

/// Register the dummy-area vCPU's vcpu_info while it is down, then start it.
fn register_then_start(cx: &mut Ctx, d: u32) -> CheckResult {
    let since = cx.alive(d);
    let rc = vcpu_info::register_and_track(cx, d, cx.pages.vcpu_info, DUMMY_SLOT * cx.layout.vcpu_info_size);
    ensure!(rc == 0, "register_vcpu_info(vcpu {d}) rc={rc} ({})", rc_name(rc));
    ensure!(!cx.started[d as usize], "vCPU {d} was already started on the dummy area");
    let rc = cx.g.start_secondary(d);
    ensure!(rc == 0, "start vCPU {d} rc={rc} ({})", rc_name(rc));
    cx.started[d as usize] = true;
    ensure!(cx.wait_alive(d, since), "vCPU {d} started but never ran");
    Ok(())
}

/// The registration marked events pending while the vCPU was down: nothing
/// may be lost, so once it runs (interrupts enabled) it must take that upcall.
fn dummy_upcall(cx: &Ctx, d: u32, running: bool) -> CheckResult {
    ensure!(running, "vCPU {d} not running");
    if upcall::wait_for_upcall(cx, d, 0) {
        return Ok(());
    }
    let gpa = VCPUS.vcpu_info_gpa[d as usize].load(Ordering::Acquire);
    Err(reason!(
        "vCPU {d} took no upcall within {WAIT_YIELDS} yields (upcall_pending={} upcall_mask={})",
        cx.read::<u8>(gpa + layout::VI_UPCALL_PENDING),
        cx.read::<u8>(gpa + layout::VI_UPCALL_MASK)
    ))
}

/// Start a vCPU on its default area, then register its vcpu_info from
/// vCPU 0 while it runs — on the same page as vCPU 0's.
pub(crate) fn remote_vcpu(cx: &mut Ctx, r: u32) {
    if r >= cx.vcpus {
        fail_too_few(cx, &["secondary_vcpu_started"], r);
        let names = ["register_remote_running", "two_vcpus_one_page", "remote_upcall_delivered"];
        cx.fail_all(&names, format_args!("no vCPU {r}"));
        return;
    }
    let since = cx.alive(r);
    let rc = cx.g.start_secondary(r);
    let up = rc == 0 && {
        cx.started[r as usize] = true;
        cx.wait_alive(r, since)
    };
    let res = if up { Ok(()) } else { Err(reason!("start vCPU {r} rc={rc} ({})", rc_name(rc))) };
    cx.check("secondary_vcpu_started", res);

    let upcalls_before = upcall::count(r);
    let rc = vcpu_info::register_and_track(cx, r, cx.pages.vcpu_info, REMOTE_SLOT * cx.layout.vcpu_info_size);
    let registered = rc == 0;
    cx.check("register_remote_running", keeps_running(cx, r, rc, up));
    cx.check("two_vcpus_one_page", two_vcpus_one_page(cx, r, registered));
    let res = if !registered || !up {
        Err(reason!("vCPU {r} not registered/running"))
    } else if upcall::wait_for_upcall(cx, r, upcalls_before) {
        Ok(())
    } else {
        Err(reason!("vCPU {r} took no upcall within {WAIT_YIELDS} yields"))
    };
    cx.check("remote_upcall_delivered", res);
}

/// The remote registration (result `rc`) succeeded and the vCPU, running
/// before (`up`), still runs after it.
fn keeps_running(cx: &Ctx, r: u32, rc: i64, up: bool) -> CheckResult {
    let after = cx.alive(r);
    ensure!(rc == 0, "rc={rc} ({})", rc_name(rc));
    ensure!(up, "vCPU {r} was not running");
    ensure!(cx.wait_alive(r, after), "vCPU {r} stopped running after the registration");
    Ok(())
}

/// Both areas now share the vcpu_info page: vCPU 0's must be intact, the
/// remote vCPU's must show the registration's `evtchn_pending_sel`.
fn two_vcpus_one_page(cx: &Ctx, r: u32, registered: bool) -> CheckResult {
    ensure!(registered, "vCPU {r} not registered");
    let l = cx.layout;
    let page = cx.pages.vcpu_info;
    if let Some(m) = vcpu_info::marker(l, &cx.read_vcpu_info(page)) {
        ensure!(m == MARKER || !cx.shared_info_mapped, "vCPU 0's area clobbered: marker {m:#x}");
    }
    let off = REMOTE_SLOT * l.vcpu_info_size;
    let sel = l.pending_sel(&cx.read_vcpu_info(page + off as u64));
    // The remote vCPU may already have taken its upcall and cleared
    // upcall_pending, but pending_sel stays all ones (nobody clears it).
    ensure!(sel == l.pending_sel_all_ones(), "vCPU {r}'s pending_sel={sel:#x} at offset {off:#x}");
    Ok(())
}
