//! `sched_op`: yield, block, shutdown, poll, and the refused remote_shutdown.

use super::{check_self, narrow_layout, Call};
use crate::evtchn;
use crate::pv_timer;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::schedop;
use xen_abi::public::{SchedPoll, SchedPollHandle32, SchedRemoteShutdown, SchedShutdown};

pub(super) fn sched_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        schedop::YIELD => {
            call.deschedule();
            Ok(0)
        }
        schedop::BLOCK => {
            d.vcpu_block(d.vcpu(call.vcpu)?);
            call.deschedule();
            Ok(0)
        }
        schedop::SHUTDOWN => {
            let r: SchedShutdown = call.read(arg)?;
            // Which vCPU asked (a shutdown nobody expected is then traceable).
            log::info!("d{}v{}: SCHEDOP_shutdown ({})", d.id, call.vcpu, xen_abi::nr::shutdown::name(r.reason));
            d.shutdown(r.reason);
            call.deschedule();
            Ok(0)
        }
        schedop::POLL => {
            let (ports, nr_ports, timeout) = if narrow_layout(call)? {
                let a: SchedPollHandle32 = call.read(arg)?;
                (a.ports as u64, a.nr_ports, a.timeout)
            } else {
                let a: SchedPoll = call.read(arg)?;
                (a.ports, a.nr_ports, a.timeout)
            };
            poll(call, ports, nr_ports, timeout)
        }
        schedop::REMOTE_SHUTDOWN => {
            // Xen's lookup by id (-ESRCH; DOMID_SELF names no domain
            // there), then xsm_schedop_shutdown, which no unprivileged
            // domain passes, for itself neither.
            let r: SchedRemoteShutdown = call.read(arg)?;
            if r.domain_id == DOMID_SELF {
                return Err(Errno::ESRCH);
            }
            check_self(call, r.domain_id)?;
            Err(Errno::EPERM)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// `do_poll`: blocks the caller until one of the `nr_ports` ports at
/// `ports` is pending (any event upcall ends it too) or system time reaches
/// `timeout` (0: no timeout). Returns at once when an event already waits
/// or a listed port is pending; `-EINVAL` for more than
/// [`schedop::POLL_MAX_PORTS`] ports or a port the table has no slot for,
/// `-EFAULT` for an unreadable array.
fn poll(call: &mut Call<'_>, ports: u64, nr_ports: u32, timeout: u64) -> XenResult<i64> {
    let d = call.domain;
    let v = d.vcpu(call.vcpu)?;
    if nr_ports > schedop::POLL_MAX_PORTS {
        return Err(Errno::EINVAL);
    }
    // Blocked first, then the checks: an event that arrives from here on
    // wakes the poll instead of being missed.
    v.set_flag(crate::domain::VPF_BLOCKED);
    pv_timer::start_poll(v, None, None);
    let done = (|| {
        if d.events_need_delivery(v) {
            return Some(Ok(0));
        }
        let mut last = 0;
        for i in 0..nr_ports as u64 {
            let port: u32 = match call.read(ports.wrapping_add(i * 4)) {
                Ok(p) => p,
                Err(e) => return Some(Err(e)),
            };
            match evtchn::poll_port(d, port) {
                Ok(false) => last = port,
                Ok(true) => return Some(Ok(0)),
                Err(e) => return Some(Err(e)),
            }
        }
        pv_timer::start_poll(v, (nr_ports == 1).then_some(last), (timeout != 0).then_some(timeout));
        None
    })();
    match done {
        Some(r) => {
            pv_timer::cancel_poll(v);
            v.clear_flag(crate::domain::VPF_BLOCKED);
            r
        }
        None => {
            call.deschedule();
            Ok(0)
        }
    }
}
