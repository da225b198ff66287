//! The PV timers, after Xen: the single-shot timer
//! (`VCPUOP_set_singleshot_timer`, `set_timer_op`), the periodic timer
//! (`VCPUOP_set_periodic_timer`) and the timeout of a `SCHEDOP_poll`, over
//! each vCPU's [`VcpuTimers`]. A timer that fires raises `VIRQ_TIMER` on its
//! vCPU through [`evtchn::send_virq`] (which wakes it if it bound the VIRQ).
//!
//! There is no host timer per PV timer: the scheduler fires what has expired
//! between slices ([`fire_expired`]), idles no longer than the earliest
//! deadline that can wake a blocked vCPU ([`wake_deadline`]), and runs the
//! periodic timer of the vCPU it schedules ([`periodic_work`]). As in Xen the
//! periodic timer only ticks for a scheduled vCPU: it never wakes a blocked
//! one (Linux uses the single-shot timer for that). Domain kill stops the
//! timers ([`stop_all`]); soft reset and `VCPUOP_down` keep them, as Xen
//! does (after a soft reset they find no bound `VIRQ_TIMER` to raise until
//! the new kernel binds one).
//!
//! [`VcpuTimers`]: crate::pv_timer_state::VcpuTimers

use crate::domain::{Domain, Vcpu, VPF_BLOCKED};
use crate::evtchn;
use xen_abi::nr::pv_timer::{HUGE_TIMEOUT_DELAY_NS, HUGE_TIMEOUT_SHIFT};
use xen_abi::nr::virq;

/// `send_timer_event`: `VIRQ_TIMER` on `v`, if the guest bound it there.
fn send_timer_event(d: &Domain, v: &Vcpu) {
    evtchn::send_virq(d, virq::TIMER, v.id);
}

/// `VCPUOP_set_singleshot_timer`: arms the single-shot timer at
/// `deadline`; one already passed fires at once (Xen ignores
/// `VCPU_SSHOTTMR_future` and never returns `-ETIME`).
pub fn set_singleshot(d: &Domain, v: &Vcpu, deadline: u64) {
    let fire_now = deadline < d.clock().now_ns();
    v.timers.lock().set_singleshot((!fire_now).then_some(deadline));
    if fire_now {
        send_timer_event(d, v);
    }
}

/// `VCPUOP_stop_singleshot_timer` (and `set_timer_op(0)`).
pub fn stop_singleshot(v: &Vcpu) {
    v.timers.lock().set_singleshot(None);
}

/// `set_timer_op(timeout)`: 0 stops the single-shot timer; a deadline that
/// wrapped negative or lies 2^50 ns (about 13 days) or more ahead is taken
/// for a guest's wrapped jiffies and fires in 100 ms instead; any other arms
/// the timer (one already passed fires at the next check, before the guest
/// runs again).
pub fn set_timer_op(d: &Domain, v: &Vcpu, timeout: u64) {
    if timeout == 0 {
        stop_singleshot(v);
        return;
    }
    let now = d.clock().now_ns();
    let ahead = (timeout as i64).wrapping_sub(now as i64);
    let deadline = if (timeout as i64) < 0 || (ahead > 0 && (ahead >> HUGE_TIMEOUT_SHIFT) != 0) {
        now.saturating_add(HUGE_TIMEOUT_DELAY_NS)
    } else {
        timeout
    };
    v.timers.lock().set_singleshot(Some(deadline));
}

/// `vcpu_set_periodic_timer`: runs the periodic timer every `period` ns (0
/// stops it). As in Xen, a timer whose next deadline (one period after the
/// last it fired for) has passed fires at once.
pub fn set_periodic(d: &Domain, v: &Vcpu, period: u64) {
    v.timers.lock().set_period(period);
    if period != 0 {
        periodic_work(d, v, d.clock().now_ns());
    }
}

/// The periodic timer's turn (each time the scheduler gives `v` a slice):
/// fires once if its deadline has passed by `now`, the next deadline staying
/// on the timer's grid.
pub fn periodic_work(d: &Domain, v: &Vcpu, now: u64) {
    let tick = v.timers.lock().take_periodic_tick(now);
    if tick {
        send_timer_event(d, v);
    }
}

/// Fires `v`'s single-shot timer and ends its poll if their deadlines have
/// passed by `now`, whatever the vCPU's state (a timer of a vCPU that is
/// down still marks its event pending, as in Xen). Returns whether either
/// fired.
pub fn fire_expired(d: &Domain, v: &Vcpu, now: u64) -> bool {
    let (singleshot, poll) = {
        let mut t = v.timers.lock();
        (t.take_expired_singleshot(now), t.take_expired_poll(now))
    };
    if singleshot {
        send_timer_event(d, v);
    }
    if poll {
        // `poll_timer_fn`: the poll is over, so is the block.
        d.vcpu_unblock(v);
    }
    singleshot || poll
}

/// The earliest deadline that wakes `v`, if it is blocked: its single-shot
/// timer or its poll's timeout.
pub fn wake_deadline(v: &Vcpu) -> Option<u64> {
    if v.pause_flags() & VPF_BLOCKED == 0 {
        return None;
    }
    v.timers.lock().wake_deadline()
}

/// `v`'s single-shot timer deadline, if armed, whatever the vCPU's state.
pub fn singleshot_deadline(v: &Vcpu) -> Option<u64> {
    v.timers.lock().singleshot()
}

/// Stops every timer of `v` and forgets its poll (domain kill).
pub fn stop_all(v: &Vcpu) {
    *v.timers.lock() = Default::default();
}

/// Starts a poll of `v` (the caller has blocked it): woken by `port` if
/// given, by any port of the domain otherwise, and at `timeout` if given.
pub fn start_poll(v: &Vcpu, port: Option<u32>, timeout: Option<u64>) {
    v.timers.lock().start_poll(port, timeout);
}

/// Ends `v`'s poll, if any; returns whether it was polling.
pub fn cancel_poll(v: &Vcpu) -> bool {
    v.timers.lock().end_poll()
}
