//! `event_channel_op`: decodes each `EVTCHNOP_*` argument struct and hands
//! the operation to [`crate::evtchn`].

use super::{check_self, Call};
use crate::{evtchn, pv_console};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::evtchnop;
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq, EvtchnPort,
};

pub(super) fn event_channel_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        evtchnop::ALLOC_UNBOUND => {
            let mut a: EvtchnAllocUnbound = call.read(arg)?;
            check_self(call, a.dom)?;
            let remote = match a.remote_dom {
                DOMID_SELF => d.id,
                r => r,
            };
            a.port = evtchn::alloc_unbound(d, remote)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_INTERDOMAIN => {
            let mut a: EvtchnBindInterdomain = call.read(arg)?;
            check_self(call, a.remote_dom)?;
            a.local_port = evtchn::bind_loopback(d, a.remote_port)?;
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
        evtchnop::SEND | evtchnop::CLOSE | evtchnop::UNMASK => {
            let EvtchnPort { port } = call.read(arg)?;
            match cmd {
                evtchnop::SEND => evtchn::send(d, port).map(|_| pv_console::kick(d, port)),
                evtchnop::CLOSE => evtchn::close(d, port),
                _ => evtchn::unmask(d, port),
            }
            .map(|_| 0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
