//! The PV timers seen from vCPU 0: `VIRQ_TIMER` bound, a single-shot timer
//! waking the vCPU out of `SCHEDOP_block` (upcalls enabled) within its
//! deadline, a periodic timer ticking repeatedly and falling silent once
//! stopped, a past deadline with `VCPU_SSHOTTMR_future` firing at once, and
//! `set_timer_op` (x86; Xen has none on arm).
//!
//! Time is the vcpu_info's `vcpu_time_info` extrapolated with the guest's
//! counter (the pvclock formula), i.e. the hypervisor's system time.

use core::sync::atomic::Ordering;

use xen_abi::nr::{vcpuop, virq};
use xen_abi::Errno;

use crate::context::{expect_ok, CheckResult, Ctx};
use crate::hypercall::{self, rc_name};
use crate::time_area::read_time;
use crate::{upcall, Guest, VCPUS};

const MS: u64 = 1_000_000;

/// How far ahead the single-shot deadline is set.
const SINGLESHOT_AHEAD_NS: u64 = 20 * MS;

/// How late a timer may fire and still pass: the hypervisor fires PV timers
/// at slice boundaries (10 ms slices on both boards) and, on x86, idles
/// until its next 10 ms tick; under TCG on a loaded host the QEMU process
/// itself may lose the CPU for tens of ms. 250 ms covers that with room
/// while still telling a timer that fires from one that never does.
const LATE_SLACK_NS: u64 = 250 * MS;

/// How early a wake-up may look: the guest's extrapolation of the time
/// record and the hypervisor's clock round differently (a few ns per ms).
const EARLY_SLACK_NS: u64 = 100_000;

/// The periodic timer's period, how many ticks the check wants, and how
/// long it waits for them (10 periods: the slack above, and then some).
const PERIOD_NS: u64 = 10 * MS;
const PERIODIC_TICKS: u32 = 3;
const PERIODIC_WINDOW_NS: u64 = PERIODIC_TICKS as u64 * PERIOD_NS + 2 * LATE_SLACK_NS;

/// How long a stopped periodic timer must stay quiet (5 periods).
const QUIET_NS: u64 = 5 * PERIOD_NS;

/// Run the checks on vCPU 0 (after the vcpu_info registration, so its
/// upcalls arrive in the vCPU's own area).
pub(crate) fn checks(cx: &mut Ctx) {
    let rc = hypercall::bind_virq(cx.g, virq::TIMER, 0);
    cx.check("pv_timer_virq_timer_bound", if rc > 0 { Ok(()) } else { Err(reason!("rc={rc} ({})", rc_name(rc))) });
    let Ok(port) = u32::try_from(rc) else { return };
    cx.g.upcalls_enabled(true);
    let r = singleshot_wakes(cx, port);
    cx.check("pv_timer_singleshot_wakes_polling_vcpu", r);
    let r = periodic(cx, port);
    cx.check("pv_timer_periodic_ticks_and_stops", r);
    let r = past_deadline(cx, port);
    cx.check("pv_timer_past_deadline_future_flag_fires_at_once", r);
    let r = set_timer_op(cx, port);
    cx.check("pv_timer_set_timer_op", r);
}

/// System time now, from vCPU 0's vcpu_info time record and the counter.
pub(crate) fn now_ns(g: &dyn Guest) -> Option<u64> {
    let gpa = VCPUS.vcpu_info_gpa[0].load(Ordering::Acquire);
    if gpa == 0 {
        return None;
    }
    let t = read_time(g, gpa + g.layout().vcpu_info_time_offset as u64)?;
    let delta = g.ticks().wrapping_sub(t.tsc_timestamp);
    // A counter read before the record's timestamp (or no counter) adds 0.
    let delta = if t.tsc_to_system_mul == 0 || delta > u64::MAX / 2 { 0 } else { delta };
    let d = if t.tsc_shift >= 0 { delta << t.tsc_shift } else { delta >> -t.tsc_shift };
    Some(t.system_time + ((d as u128 * t.tsc_to_system_mul as u128) >> 32) as u64)
}

/// What a guest's event handler does for `port`: clear vCPU 0's
/// `evtchn_pending_sel` (so the next event raises an upcall again) and
/// take `port`'s pending bit; returns whether it was pending.
fn take_event(g: &dyn Guest, port: u32) -> bool {
    let l = g.layout();
    let vi = VCPUS.vcpu_info_gpa[0].load(Ordering::Acquire);
    if vi != 0 {
        g.write(vi + l.pending_sel_offset as u64, &[0u8; 8][..l.xen_ulong_size as usize]);
    }
    let bits = l.xen_ulong_size * 8;
    let word = g.shared_info_page() + l.evtchn_pending_offset() + (port / bits * l.xen_ulong_size) as u64;
    let mut b = [0u8; 8];
    g.read(word, &mut b[..l.xen_ulong_size as usize]);
    let v = u64::from_le_bytes(b);
    let bit = 1u64 << (port % bits);
    if v & bit == 0 {
        return false;
    }
    g.write(word, &(v & !bit).to_le_bytes()[..l.xen_ulong_size as usize]);
    true
}

/// Arm the single-shot timer 20 ms ahead and block in `SCHEDOP_poll` on
/// its port until it fires: the wake-up comes with `VIRQ_TIMER` pending and
/// an upcall taken, no earlier than the deadline and at most
/// [`LATE_SLACK_NS`] after it. Poll, unlike `SCHEDOP_block`, looks at the
/// port itself, so a timer that fires before the vCPU blocks (its upcall
/// already taken) returns at once instead of blocking for good; its timeout
/// bounds the wait if the timer never fires.
fn singleshot_wakes(cx: &Ctx, port: u32) -> CheckResult {
    let g = cx.g;
    take_event(g, port);
    let Some(t0) = now_ns(g) else { return Err(reason!("no system time")) };
    let deadline = t0 + SINGLESHOT_AHEAD_NS;
    let upcalls = upcall::count(0);
    expect_ok(hypercall::set_singleshot_timer(g, cx.layout, 0, deadline, 0))?;
    let rc = hypercall::sched_poll(g, cx.layout, port, deadline + LATE_SLACK_NS);
    ensure!(rc == 0, "SCHEDOP_poll rc={rc} ({})", rc_name(rc));
    ensure!(take_event(g, port), "no VIRQ_TIMER by the poll's timeout, {} ms after the deadline", LATE_SLACK_NS / MS);
    let Some(woke) = now_ns(g) else { return Err(reason!("no system time")) };
    ensure!(woke + EARLY_SLACK_NS >= deadline, "woken {} ns before the deadline", deadline - woke);
    ensure!(woke <= deadline + LATE_SLACK_NS, "woken {} ms after the deadline", (woke - deadline) / MS);
    ensure!(cx.wait_for(|| upcall::count(0) > upcalls), "VIRQ_TIMER pending but no upcall taken");
    cx.say(format_args!("REPORT pv_timer singleshot late_us={}", woke.saturating_sub(deadline) / 1000));
    Ok(())
}

/// A 10 ms periodic timer ticks at least three times while vCPU 0 keeps
/// yielding (it only ticks for a scheduled vCPU, as in Xen), and not at all
/// in the 50 ms after `VCPUOP_stop_periodic_timer`.
fn periodic(cx: &Ctx, port: u32) -> CheckResult {
    let g = cx.g;
    take_event(g, port);
    expect_ok(hypercall::set_periodic_timer(g, 0, PERIOD_NS))?;
    let (ticks, _) = count_events(g, port, PERIODIC_WINDOW_NS, PERIODIC_TICKS);
    let stop = hypercall::stop_periodic_timer(g, 0);
    ensure!(ticks >= PERIODIC_TICKS, "{ticks} ticks of a 10 ms timer in {} ms", PERIODIC_WINDOW_NS / MS);
    expect_ok(stop)?;
    take_event(g, port);
    let (after, _) = count_events(g, port, QUIET_NS, u32::MAX);
    ensure!(after == 0, "{after} ticks after stop_periodic_timer");
    Ok(())
}

/// Yield for up to `window` ns of system time, counting `port`'s events,
/// until there are `enough`; returns the count and the system time of the
/// last look (by which every event counted had fired).
fn count_events(g: &dyn Guest, port: u32, window: u64, enough: u32) -> (u32, u64) {
    let Some(start) = now_ns(g) else { return (0, 0) };
    let mut n = 0;
    loop {
        if take_event(g, port) {
            n += 1;
        }
        // Read after looking: an event seen was pending by now, so `now`
        // bounds the moment it fired from above.
        let now = now_ns(g).unwrap_or(start);
        if n >= enough || now >= start + window {
            return (n, now);
        }
        hypercall::sched_yield(g);
    }
}

/// A deadline already passed, with `VCPU_SSHOTTMR_future`: Xen since 4.18
/// ignores the flag (older Xen answered `-ETIME`, which old Linux mishandled)
/// and fires the timer at once, so the call succeeds and the event is there.
fn past_deadline(cx: &Ctx, port: u32) -> CheckResult {
    let g = cx.g;
    take_event(g, port);
    let Some(now) = now_ns(g) else { return Err(reason!("no system time")) };
    let rc = hypercall::set_singleshot_timer(g, cx.layout, 0, now.saturating_sub(MS), vcpuop::SSHOTTMR_FUTURE);
    ensure!(rc != Errno::ETIME.to_hypercall_ret(), "-ETIME: Xen since 4.18 ignores VCPU_SSHOTTMR_future");
    expect_ok(rc)?;
    ensure!(take_event(g, port), "no VIRQ_TIMER on return");
    Ok(())
}

/// `set_timer_op` 5 ms ahead fires within the slack on x86 (the 32-bit guest
/// passing the deadline in two registers); arm has no `set_timer_op`.
fn set_timer_op(cx: &Ctx, port: u32) -> CheckResult {
    let g = cx.g;
    take_event(g, port);
    let Some(now) = now_ns(g) else { return Err(reason!("no system time")) };
    let deadline = now + 5 * MS;
    let rc = hypercall::set_timer_op(g, cx.layout, deadline);
    if let Some(errno) = cx.layout.set_timer_op_errno {
        ensure!(
            rc == errno.to_hypercall_ret(),
            "rc={rc} ({}), want {errno:?}: the arch has no set_timer_op",
            rc_name(rc)
        );
        return Ok(());
    }
    expect_ok(rc)?;
    let (n, seen_by) = count_events(g, port, 5 * MS + LATE_SLACK_NS, 1);
    ensure!(n == 1, "no VIRQ_TIMER within {} ms", (5 * MS + LATE_SLACK_NS) / MS);
    // Pending already at `seen_by`: firing before the deadline shows as a
    // `seen_by` before it (the time the call took does not count).
    ensure!(
        seen_by + EARLY_SLACK_NS >= deadline,
        "pending {} ns before its deadline",
        deadline.saturating_sub(seen_by)
    );
    Ok(())
}
