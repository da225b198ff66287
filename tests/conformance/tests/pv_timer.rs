//! The PV timers and `SCHEDOP_poll` in every layout, driven as a guest would
//! (argument structs in guest memory, hypercalls through dispatch) with the
//! test clock moved by hand: `VCPUOP_{set,stop}_{periodic,singleshot}_timer`
//! and `set_timer_op` with Xen's errnos and edge cases, `VIRQ_TIMER` fired
//! once per single-shot and on a drift-free periodic grid, blocked vCPUs
//! woken through the scheduler (and its idle deadline), polls that return,
//! block, wake on their port or time out.

use std::sync::Arc;

use lantern_common::arch::ArchVcpu;
use lantern_common::clock::Clock;
use lantern_common::domain::{Domain, Vcpu, VPF_BLOCKED};
use lantern_common::evtchn;
use lantern_common::hypercall::{dispatch, Call, Outcome};
use lantern_common::lifecycle;
use lantern_common::pv_timer;
use lantern_common::sched::Hypervisor;
use lantern_conformance::*;
use xen_abi::errno::Errno;
use xen_abi::layout::GuestAbi;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::pv_timer::{HUGE_TIMEOUT_DELAY_NS, HUGE_TIMEOUT_SHIFT, PERIOD_MIN_NS, STIME_DELTA_MAX};
use xen_abi::nr::{schedop, vcpuop, virq};
use xen_abi::public::{
    SchedPoll, SchedPollHandle32, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, VcpuSetSingleshotTimerAlign4,
};
use zerocopy::IntoBytes;

/// Where the argument structs go (gfn 1) and the port arrays (gfn 2).
const ARG: u64 = 0x1000;
const PORTS: u64 = 0x2000;
/// Past the end of RAM: every read there faults.
const UNMAPPED: u64 = RAM_PAGES * 4096 + 8;
const MS: u64 = 1_000_000;

fn err(e: Errno) -> i64 {
    e.to_hypercall_ret()
}

/// Whether `abi` is the narrow layout (32-bit handles and calling
/// convention, 4-aligned `uint64_t`).
fn narrow(abi: &dyn GuestAbi) -> bool {
    abi.xen_ulong_size() == 4
}

/// `n` fake vCPUs passing 64-bit arguments as `abi`'s guests do.
fn vcpus_for(abi: &dyn GuestAbi, n: u32) -> Vec<Box<dyn ArchVcpu>> {
    (0..n)
        .map(|_| {
            let mut v = FakeVcpu::identity(RAM_PAGES);
            v.split_wide_args = narrow(abi);
            v.boxed()
        })
        .collect()
}

fn hc(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], vcpu: u32, nr: u64, args: [u64; 6]) -> Outcome {
    dispatch(&mut Call::new(d, vcpu, arch), nr, args)
}

/// `vcpu_op(cmd, target, ARG)` from `caller`, `arg` written at `ARG` first.
fn vcpu_op(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], caller: u32, cmd: u64, target: u64, arg: &[u8]) -> i64 {
    write_phys(d, ARG, arg).unwrap();
    hc(d, arch, caller, nr::VCPU_OP, [cmd, target, ARG, 0, 0, 0]).ret
}

fn periodic(period_ns: u64) -> Vec<u8> {
    VcpuSetPeriodicTimer { period_ns }.as_bytes().to_vec()
}

/// `vcpu_set_singleshot_timer` in `abi`'s shape.
fn singleshot(abi: &dyn GuestAbi, timeout_abs_ns: u64, flags: u32) -> Vec<u8> {
    if narrow(abi) {
        VcpuSetSingleshotTimerAlign4 { timeout_abs_ns, flags }.as_bytes().to_vec()
    } else {
        VcpuSetSingleshotTimer { timeout_abs_ns, flags, pad: 0 }.as_bytes().to_vec()
    }
}

/// `sched_poll` in `abi`'s shape.
fn poll_arg(abi: &dyn GuestAbi, ports: u64, nr_ports: u32, timeout: u64) -> Vec<u8> {
    if narrow(abi) {
        SchedPollHandle32 { ports: ports as u32, nr_ports, timeout }.as_bytes().to_vec()
    } else {
        SchedPoll { ports, nr_ports, pad: 0, timeout }.as_bytes().to_vec()
    }
}

/// `SCHEDOP_poll` from vCPU 0 on `ports`.
fn poll(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], ports: &[u32], timeout: u64) -> Outcome {
    write_phys(d, PORTS, ports.as_bytes()).unwrap();
    write_phys(d, ARG, &poll_arg(d.abi(), PORTS, ports.len() as u32, timeout)).unwrap();
    hc(d, arch, 0, nr::SCHED_OP, [schedop::POLL, ARG, 0, 0, 0, 0])
}

/// `set_timer_op(timeout)` from vCPU 0, the deadline in the registers as
/// `abi`'s guests pass it.
fn set_timer_op(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], timeout: u64) -> i64 {
    let args =
        if narrow(d.abi()) { [timeout & 0xFFFF_FFFF, timeout >> 32, 0, 0, 0, 0] } else { [timeout, 0, 0, 0, 0, 0] };
    hc(d, arch, 0, nr::SET_TIMER_OP, args).ret
}

fn bind_timer(d: &Domain, vcpu: u32) -> u32 {
    evtchn::bind_virq(d, virq::TIMER, vcpu).unwrap()
}

/// What a guest's upcall handler does: takes `port`'s event (whether it
/// was pending) and clears `v`'s selector and `evtchn_upcall_pending`, so
/// the next event raises a fresh upcall.
fn ack(d: &Domain, v: &Vcpu, port: u32) -> bool {
    let si = d.abi().shared_info();
    let w = d.abi().xen_ulong_size();
    let bits = w as u32 * 8;
    let bit = 1u64 << (port % bits);
    let off = si.evtchn_pending.offset + (port / bits) as usize * w;
    let was = d.shared_info().fetch_and_not(off, w, bit).unwrap() & bit != 0;
    let vi = d.abi().vcpu_info();
    let area = v.areas().vcpu_info;
    area.page.write_uint(area.offset + vi.pending_sel.offset, vi.pending_sel.size, 0).unwrap();
    area.page.write_uint(area.offset + vi.upcall_pending.offset, 1, 0).unwrap();
    v.take_upcall_request();
    was
}

fn mask(d: &Domain, port: u32) {
    let si = d.abi().shared_info();
    let w = d.abi().xen_ulong_size();
    let bits = w as u32 * 8;
    d.shared_info().fetch_or(si.evtchn_mask.offset + (port / bits) as usize * w, w, 1 << (port % bits)).unwrap();
}

fn blocked(v: &Vcpu) -> bool {
    v.pause_flags() & VPF_BLOCKED != 0
}

/// A scheduler over `d` alone, with fake vCPUs.
fn hypervisor(d: &Arc<Domain>) -> Hypervisor {
    Hypervisor::new(vec![slot(d.clone(), fake_vcpus(d.max_vcpus()))])
}

#[test]
fn periodic_timer_errnos_in_every_layout() {
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let a = &mut vcpus_for(abi, 2)[..];
        let set = vcpuop::SET_PERIODIC_TIMER;
        assert_eq!(vcpu_op(&d, a, 0, set, 0, &periodic(PERIOD_MIN_NS - 1)), err(Errno::EINVAL), "{}", abi.name());
        assert_eq!(vcpu_op(&d, a, 0, set, 0, &periodic(STIME_DELTA_MAX + 1)), err(Errno::EINVAL));
        assert_eq!(vcpu_op(&d, a, 0, set, 0, &periodic(0)), err(Errno::EINVAL));
        assert_eq!(d.vcpu(0).unwrap().timers().periodic(), None, "a refused period arms nothing");
        assert_eq!(vcpu_op(&d, a, 0, set, 7, &periodic(PERIOD_MIN_NS)), err(Errno::ENOENT));
        write_phys(&d, ARG, &periodic(PERIOD_MIN_NS)).unwrap();
        assert_eq!(hc(&d, a, 0, nr::VCPU_OP, [set, 0, UNMAPPED, 0, 0, 0]).ret, err(Errno::EFAULT));
        assert_eq!(vcpu_op(&d, a, 0, set, 0, &periodic(STIME_DELTA_MAX)), 0);
        assert_eq!(vcpu_op(&d, a, 0, set, 0, &periodic(PERIOD_MIN_NS)), 0);
        // Any vCPU of the domain may set (and stop) another's periodic timer.
        assert_eq!(vcpu_op(&d, a, 0, set, 1, &periodic(10 * MS)), 0);
        assert_eq!(d.vcpu(1).unwrap().timers().periodic().map(|p| p.0), Some(10 * MS));
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::STOP_PERIODIC_TIMER, 1, &[]), 0);
        assert_eq!(d.vcpu(1).unwrap().timers().periodic(), None);
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::STOP_PERIODIC_TIMER, 7, &[]), err(Errno::ENOENT));
    }
}

#[test]
fn singleshot_timer_errnos_in_every_layout() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 2);
        let a = &mut vcpus_for(abi, 2)[..];
        let set = vcpuop::SET_SINGLESHOT_TIMER;
        let later = clock.now_ns() + 5 * MS;
        // Only a vCPU's own single-shot timer.
        assert_eq!(vcpu_op(&d, a, 0, set, 1, &singleshot(abi, later, 0)), err(Errno::EINVAL), "{}", abi.name());
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::STOP_SINGLESHOT_TIMER, 1, &[]), err(Errno::EINVAL));
        assert_eq!(vcpu_op(&d, a, 0, set, 9, &singleshot(abi, later, 0)), err(Errno::ENOENT));
        assert_eq!(hc(&d, a, 0, nr::VCPU_OP, [set, 0, UNMAPPED, 0, 0, 0]).ret, err(Errno::EFAULT));
        // Compat reads its struct before the vCPU check, native after.
        let foreign_bad_ptr = hc(&d, a, 0, nr::VCPU_OP, [set, 1, UNMAPPED, 0, 0, 0]).ret;
        assert_eq!(foreign_bad_ptr, err(if narrow(abi) { Errno::EFAULT } else { Errno::EINVAL }));
        assert_eq!(d.vcpu(1).unwrap().timers().singleshot(), None);
        assert_eq!(vcpu_op(&d, a, 1, set, 1, &singleshot(abi, later, 0)), 0);
        assert_eq!(d.vcpu(1).unwrap().timers().singleshot(), Some(later));
        assert_eq!(vcpu_op(&d, a, 1, vcpuop::STOP_SINGLESHOT_TIMER, 1, &[]), 0);
        assert_eq!(d.vcpu(1).unwrap().timers().singleshot(), None);
        // The struct's size is the layout's: 12 bytes in compat, so one in
        // the last 12 bytes of RAM reads whole there and faults natively.
        let end = RAM_PAGES * 4096 - 12;
        write_phys(&d, end, &VcpuSetSingleshotTimerAlign4 { timeout_abs_ns: later, flags: 0 }.as_bytes()[..12])
            .unwrap();
        let r = hc(&d, a, 0, nr::VCPU_OP, [set, 0, end, 0, 0, 0]).ret;
        assert_eq!(r, if narrow(abi) { 0 } else { err(Errno::EFAULT) }, "{}", abi.name());
    }
}

#[test]
fn a_singleshot_timer_fires_once_at_its_deadline() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let mut hv = hypervisor(&d);
        let v = d.vcpu(0).unwrap();
        let port = bind_timer(&d, 0);
        let deadline = clock.now_ns() + 5 * MS;
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_SINGLESHOT_TIMER, 0, &singleshot(abi, deadline, 0)), 0);
        clock.advance(5 * MS - 1);
        hv.wake_expired_timers(0);
        assert!(!ack(&d, v, port), "{}: fired before its deadline", abi.name());
        clock.advance(1);
        hv.wake_expired_timers(0);
        assert!(ack(&d, v, port), "{}: not fired at its deadline", abi.name());
        assert_eq!(v.timers().singleshot(), None);
        clock.advance(100 * MS);
        hv.wake_expired_timers(0);
        assert!(!ack(&d, v, port), "{}: a single-shot timer fired twice", abi.name());
    }
}

#[test]
fn a_past_deadline_fires_at_once_even_with_the_future_flag() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let port = bind_timer(&d, 0);
        let past = clock.now_ns() - 1;
        for flags in [0, vcpuop::SSHOTTMR_FUTURE] {
            // Xen (since 4.18) ignores VCPU_SSHOTTMR_future: no -ETIME.
            assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_SINGLESHOT_TIMER, 0, &singleshot(abi, past, flags)), 0);
            assert!(ack(&d, v, port), "{}: flags {flags}: no event for a past deadline", abi.name());
            assert_eq!(v.timers().singleshot(), None, "the event was the timer firing");
        }
    }
}

#[test]
fn stopping_a_singleshot_timer_stops_it() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let mut hv = hypervisor(&d);
        let port = bind_timer(&d, 0);
        let deadline = clock.now_ns() + MS;
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_SINGLESHOT_TIMER, 0, &singleshot(abi, deadline, 0)), 0);
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::STOP_SINGLESHOT_TIMER, 0, &[]), 0);
        clock.advance(10 * MS);
        hv.wake_expired_timers(0);
        assert!(!ack(&d, d.vcpu(0).unwrap(), port), "{}", abi.name());
    }
}

#[test]
fn a_periodic_timer_fires_every_period_without_drift() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let port = bind_timer(&d, 0);
        let period = 10 * MS;
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_PERIODIC_TIMER, 0, &periodic(period)), 0);
        // The clock starts at 1 ms: the first deadline is one period after
        // the (never) last event, 10 ms.
        assert!(!ack(&d, v, port));
        let (mut fired, mut grid) = (0, 0);
        // The scheduler looks at irregular times, sometimes late by more
        // than a period; the deadlines stay on the 10 ms grid.
        for step in [9, 2, 13, 4, 7, 25, 1, 10, 10, 3] {
            clock.advance(step * MS);
            pv_timer::periodic_work(&d, v, clock.now_ns());
            let now = clock.now_ns();
            let due = now / period;
            if ack(&d, v, port) {
                fired += 1;
                assert!(due > grid, "{}: fired twice in one period", abi.name());
            } else {
                assert_eq!(due, grid, "{}: a period passed without an event at {now}", abi.name());
            }
            grid = due;
            assert_eq!(v.timers().periodic(), Some((period, (due + 1) * period)), "{}: drifted", abi.name());
        }
        assert_eq!(fired, 6, "{}: one event per period crossed", abi.name());
        // Stopped, it stays quiet.
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::STOP_PERIODIC_TIMER, 0, &[]), 0);
        clock.advance(5 * period);
        pv_timer::periodic_work(&d, v, clock.now_ns());
        assert!(!ack(&d, v, port), "{}: fired after stop", abi.name());
        assert_eq!(v.timers().periodic(), None);
        // Set again, a timer whose period has passed since its last event
        // fires at once (Xen's vcpu_set_periodic_timer).
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_PERIODIC_TIMER, 0, &periodic(period)), 0);
        assert!(ack(&d, v, port), "{}", abi.name());
    }
}

#[test]
fn the_scheduler_runs_the_periodic_timer_of_the_vcpu_it_schedules() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let mut hv = hypervisor(&d);
        let v = d.vcpu(0).unwrap();
        let port = bind_timer(&d, 0);
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_PERIODIC_TIMER, 0, &periodic(10 * MS)), 0);
        clock.advance(20 * MS);
        // Blocked, the periodic timer neither fires nor bounds the idle
        // (as in Xen, it only ticks for a scheduled vCPU) ...
        d.vcpu_block(v);
        hv.wake_expired_timers(0);
        assert!(blocked(v) && !ack(&d, v, port));
        assert_eq!(hv.next_timer_deadline(), None);
        // ... and it fires as soon as the vCPU is scheduled again.
        d.vcpu_unblock(v);
        hv.run_slice(0, 0, &mut NoPreemption);
        assert!(ack(&d, v, port), "{}: a slice did not run the periodic timer", abi.name());
    }
}

/// The slice timer of the tests that run one slice by hand.
struct NoPreemption;

impl lantern_common::arch::Preemption for NoPreemption {
    fn slice_deadline(&self) -> Option<u64> {
        None
    }
    fn host_interrupt(&mut self) -> bool {
        true
    }
}

#[test]
fn a_blocked_vcpu_wakes_at_its_singleshot_deadline() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 2);
        let a = &mut vcpus_for(abi, 2)[..];
        let mut hv = hypervisor(&d);
        let v = d.vcpu(0).unwrap();
        let port = bind_timer(&d, 0);
        let deadline = clock.now_ns() + 3 * MS;
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_SINGLESHOT_TIMER, 0, &singleshot(abi, deadline, 0)), 0);
        // Running, its timer already bounds the slice (its VIRQ_TIMER is
        // due then); blocked, it also bounds the idle.
        assert_eq!(hv.next_timer_deadline(), Some(d.clock().counter_at(deadline)), "{}", abi.name());
        assert_eq!(hc(&d, a, 0, nr::SCHED_OP, [schedop::BLOCK, 0, 0, 0, 0, 0]).ret, 0);
        assert!(blocked(v));
        // The board idles until the deadline, in its counter's ticks.
        assert_eq!(hv.next_timer_deadline(), Some(d.clock().counter_at(deadline)), "{}", abi.name());
        clock.advance(3 * MS - 1);
        hv.wake_expired_timers(0);
        assert!(blocked(v), "{}: woken early", abi.name());
        clock.advance(1);
        hv.wake_expired_timers(0);
        assert!(!blocked(v), "{}: not woken at its deadline", abi.name());
        assert!(ack(&d, v, port));
        assert_eq!(hv.next_timer_deadline(), None);
    }
}

#[test]
fn set_timer_op_arms_stops_and_tames_absurd_deadlines() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let mut hv = hypervisor(&d);
        let v = d.vcpu(0).unwrap();
        let port = bind_timer(&d, 0);
        let now = clock.now_ns();
        // A deadline above 4 s needs both halves in a 32-bit guest's registers.
        let far = now + (5u64 << 32);
        assert_eq!(set_timer_op(&d, a, far), 0);
        assert_eq!(v.timers().singleshot(), Some(far), "{}", abi.name());
        assert_eq!(set_timer_op(&d, a, 0), 0);
        assert_eq!(v.timers().singleshot(), None);
        // Wrapped negative, or 2^50 ns ahead and more: 100 ms from now.
        for absurd in [1u64 << 63, u64::MAX, now + (1 << HUGE_TIMEOUT_SHIFT)] {
            assert_eq!(set_timer_op(&d, a, absurd), 0);
            assert_eq!(v.timers().singleshot(), Some(now + HUGE_TIMEOUT_DELAY_NS), "{}: {absurd:#x}", abi.name());
        }
        let just_under = now + (1 << HUGE_TIMEOUT_SHIFT) - 1;
        assert_eq!(set_timer_op(&d, a, just_under), 0);
        assert_eq!(v.timers().singleshot(), Some(just_under));
        // A past deadline fires at the next look, before the guest runs.
        assert_eq!(set_timer_op(&d, a, now - 1), 0);
        hv.wake_expired_timers(0);
        assert!(ack(&d, v, port), "{}", abi.name());
    }
}

#[test]
fn poll_returns_at_once_on_a_pending_port() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let (p1, p2) = (evtchn::bind_ipi(&d, 0).unwrap(), evtchn::bind_ipi(&d, 0).unwrap());
        mask(&d, p2);
        evtchn::send(&d, p2).unwrap();
        let out = poll(&d, a, &[p1, p2], 0);
        assert_eq!((out.ret, out.deschedule), (0, false), "{}", abi.name());
        assert!(!blocked(v) && !v.timers().polling());
    }
}

#[test]
fn poll_blocks_until_its_port_is_pending_masked_or_not() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let (p1, other) = (evtchn::bind_ipi(&d, 0).unwrap(), evtchn::bind_ipi(&d, 0).unwrap());
        mask(&d, p1);
        mask(&d, other);
        let out = poll(&d, a, &[p1], 0);
        assert_eq!((out.ret, out.deschedule), (0, true), "{}", abi.name());
        assert!(blocked(v) && v.timers().polling());
        // A poll of one port ignores the others (masked: no upcall either).
        evtchn::send(&d, other).unwrap();
        assert!(blocked(v), "{}: woken by another port", abi.name());
        // Its own port wakes it, though masked.
        evtchn::send(&d, p1).unwrap();
        assert!(!blocked(v) && !v.timers().polling(), "{}", abi.name());
    }
}

#[test]
fn a_poll_of_several_ports_wakes_on_any_event() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let ports: Vec<u32> = (0..3).map(|_| evtchn::bind_ipi(&d, 0).unwrap()).collect();
        ports.iter().for_each(|p| mask(&d, *p));
        assert!(poll(&d, a, &ports[..2], 0).deschedule);
        evtchn::send(&d, ports[2]).unwrap();
        assert!(!blocked(v), "{}: Xen wakes a multi-port poller on any port", abi.name());
    }
}

#[test]
fn poll_times_out() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let mut hv = hypervisor(&d);
        let v = d.vcpu(0).unwrap();
        let p = evtchn::bind_ipi(&d, 0).unwrap();
        let timeout = clock.now_ns() + 2 * MS;
        assert!(poll(&d, a, &[p], timeout).deschedule);
        assert_eq!(v.timers().poll_timeout(), Some(timeout));
        assert_eq!(hv.next_timer_deadline(), Some(d.clock().counter_at(timeout)), "{}", abi.name());
        clock.advance(2 * MS - 1);
        hv.wake_expired_timers(0);
        assert!(blocked(v));
        clock.advance(1);
        hv.wake_expired_timers(0);
        assert!(!blocked(v) && !v.timers().polling(), "{}", abi.name());
        assert_eq!(hv.next_timer_deadline(), None);
        // A timeout already passed ends the poll at the next look.
        assert!(poll(&d, a, &[p], clock.now_ns() - 1).deschedule);
        hv.wake_expired_timers(0);
        assert!(!blocked(v), "{}", abi.name());
    }
}

#[test]
fn poll_errnos_in_every_layout() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let p = evtchn::bind_ipi(&d, 0).unwrap();
        let unblocked = |what: &str| {
            assert!(!blocked(v) && !v.timers().polling(), "{}: {what} left the vCPU blocked", abi.name());
        };
        let too_many = vec![p; schedop::POLL_MAX_PORTS as usize + 1];
        assert_eq!(poll(&d, a, &too_many, 0).ret, err(Errno::EINVAL), "{}", abi.name());
        unblocked("too many ports");
        // A port the table has no slot for; port 0 and free slots are valid.
        assert_eq!(poll(&d, a, &[p, 1000], 0).ret, err(Errno::EINVAL));
        unblocked("a bad port");
        assert_eq!(poll(&d, a, &[p, 5000], 0).ret, err(Errno::EINVAL));
        evtchn::close(&d, p).unwrap();
        let max = vec![0; schedop::POLL_MAX_PORTS as usize];
        let out = poll(&d, a, &max, 0);
        assert_eq!((out.ret, out.deschedule), (0, true), "{}: 128 valid ports block", abi.name());
        d.vcpu_unblock(v);
        assert_eq!(poll(&d, a, &[p], 0).ret, 0, "a closed port's slot is still valid");
        d.vcpu_unblock(v);
        // Unreadable struct, unreadable array.
        assert_eq!(hc(&d, a, 0, nr::SCHED_OP, [schedop::POLL, UNMAPPED, 0, 0, 0, 0]).ret, err(Errno::EFAULT));
        write_phys(&d, ARG, &poll_arg(abi, UNMAPPED, 1, 0)).unwrap();
        assert_eq!(hc(&d, a, 0, nr::SCHED_OP, [schedop::POLL, ARG, 0, 0, 0, 0]).ret, err(Errno::EFAULT));
        unblocked("a fault");
    }
}

#[test]
fn poll_and_block_wake_ups() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let v = d.vcpu(0).unwrap();
        let (masked, live) = (evtchn::bind_ipi(&d, 0).unwrap(), evtchn::bind_ipi(&d, 0).unwrap());
        mask(&d, masked);
        // An upcall already waiting: poll returns without blocking.
        evtchn::send(&d, live).unwrap();
        let out = poll(&d, a, &[masked], 0);
        assert_eq!((out.ret, out.deschedule), (0, false), "{}", abi.name());
        assert!(!blocked(v));
        assert!(ack(&d, v, live));
        // Any wake-up ends a poll: an upcall for another port does.
        assert!(poll(&d, a, &[masked], 0).deschedule);
        evtchn::send(&d, live).unwrap();
        assert!(!blocked(v) && !v.timers().polling(), "{}", abi.name());
        assert!(ack(&d, v, live));
        // SCHEDOP_block is no poll: a masked port's event does not wake it.
        assert_eq!(hc(&d, a, 0, nr::SCHED_OP, [schedop::BLOCK, 0, 0, 0, 0, 0]).ret, 0);
        evtchn::send(&d, masked).unwrap();
        assert!(blocked(v), "{}: a blocked vCPU woke for a masked event", abi.name());
        evtchn::send(&d, live).unwrap();
        assert!(!blocked(v));
    }
}

#[test]
fn killing_a_domain_stops_its_timers() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let a = &mut vcpus_for(abi, 1)[..];
        let later = clock.now_ns() + MS;
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_SINGLESHOT_TIMER, 0, &singleshot(abi, later, 0)), 0);
        assert_eq!(vcpu_op(&d, a, 0, vcpuop::SET_PERIODIC_TIMER, 0, &periodic(10 * MS)), 0);
        lifecycle::kill(&d);
        let t = d.vcpu(0).unwrap().timers();
        assert_eq!((t.singleshot(), t.periodic(), t.polling()), (None, None, false), "{}", abi.name());
    }
}
