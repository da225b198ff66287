//! `event_channel_op`: decodes each `EVTCHNOP_*` argument struct and hands
//! the operation to [`crate::evtchn`].

use super::{check_self, Call};
use crate::directory::lookup;
use crate::{evtchn, pv_console};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::evtchnop;
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq, EvtchnExpandArray,
    EvtchnInitControl, EvtchnPort, EvtchnSetPriority, EvtchnStatus,
};

pub(super) fn event_channel_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    let own = |dom: u16| if dom == DOMID_SELF { d.id } else { dom };
    match cmd {
        evtchnop::ALLOC_UNBOUND => {
            let mut a: EvtchnAllocUnbound = call.read(arg)?;
            check_self(call, a.dom)?;
            a.port = evtchn::alloc_unbound(d, own(a.remote_dom))?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_INTERDOMAIN => {
            let mut a: EvtchnBindInterdomain = call.read(arg)?;
            a.local_port = evtchn::bind_interdomain(d, call.domains, own(a.remote_dom), a.remote_port)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_VIRQ => {
            let mut a: EvtchnBindVirq = call.read(arg)?;
            a.port = evtchn::bind_virq(d, a.virq, a.vcpu)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_IPI => {
            let mut a: EvtchnBindIpi = call.read(arg)?;
            a.port = evtchn::bind_ipi(d, a.vcpu)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_VCPU => {
            let a: EvtchnBindVcpu = call.read(arg)?;
            evtchn::bind_vcpu(d, a.port, a.vcpu).map(|_| 0)
        }
        evtchnop::STATUS => {
            let a: EvtchnStatus = call.read(arg)?;
            // Xen's order: an unknown domain, then an invalid port, then the
            // permission check (a guest may only ask about itself).
            let target = lookup(d, call.domains, own(a.dom)).ok_or(Errno::ESRCH)?;
            let st = evtchn::status(target, a.port)?;
            if target.id != d.id {
                return Err(Errno::EPERM);
            }
            call.write(arg, &EvtchnStatus { dom: a.dom, pad: a.pad, ..st }).map(|_| 0)
        }
        evtchnop::SEND | evtchnop::CLOSE | evtchnop::UNMASK => {
            let EvtchnPort { port } = call.read(arg)?;
            match cmd {
                evtchnop::SEND => evtchn::send_among(d, call.domains, port).map(|_| pv_console::kick(d, port)),
                evtchnop::CLOSE => evtchn::close_among(d, call.domains, port),
                _ => evtchn::unmask(d, port),
            }
            .map(|_| 0)
        }
        evtchnop::INIT_CONTROL => {
            let mut a: EvtchnInitControl = call.read(arg)?;
            a.link_bits = evtchn::init_control(d, a.control_gfn, a.offset, a.vcpu)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::EXPAND_ARRAY => {
            let a: EvtchnExpandArray = call.read(arg)?;
            evtchn::expand_array(d, a.array_gfn).map(|_| 0)
        }
        evtchnop::SET_PRIORITY => {
            let a: EvtchnSetPriority = call.read(arg)?;
            evtchn::set_priority(d, a.port, a.priority).map(|_| 0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
