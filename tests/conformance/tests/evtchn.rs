//! Event channels through the hypercall, in every layout: `EVTCHNOP_status`
//! of every state, true interdomain channels between two domains (bind,
//! send waking the peer, close of either end, kill), `bind_vcpu`'s rules,
//! the per-ABI port limits, and the FIFO ABI (init_control, expand_array,
//! set_priority, priority queues, masking, and a property test of the queue
//! links against a model).

use std::collections::VecDeque;
use std::sync::Arc;

use lantern_common::arch::ArchVcpu;
use lantern_common::domain::{Domain, VPF_BLOCKED};
use lantern_common::evtchn;
use lantern_common::hypercall::{dispatch, Call};
use lantern_common::lifecycle;
use lantern_common::memory::PageRef;
use lantern_conformance::*;
use proptest::prelude::*;
use xen_abi::errno::Errno;
use xen_abi::layout::GuestAbi;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::{domid, evtchn_fifo as ff, evtchnop, evtchnstat, virq};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq, EvtchnExpandArray,
    EvtchnInitControl, EvtchnPort, EvtchnSetPriority, EvtchnStatus,
};
use zerocopy::{FromBytes, IntoBytes};

/// gfn 1 holds argument structs; gfn 2 the FIFO control block; gfns 3.. the
/// event-array pages.
const ARG: u64 = 0x1000;
const CB_GFN: u64 = 2;
const ARRAY_GFN: u64 = 3;

/// Domains 1 and 2 (two vCPUs each), each seeing the other.
struct World {
    abi: &'static dyn GuestAbi,
    d: [Arc<Domain>; 2],
    arch: [Vec<Box<dyn ArchVcpu>>; 2],
}

impl World {
    fn new(abi: &'static dyn GuestAbi) -> World {
        let d = [1, 2].map(|id| TestDomain::new(abi).id(id).vcpus(2).build());
        World { abi, d, arch: [fake_vcpus(2), fake_vcpus(2)] }
    }

    /// `event_channel_op(cmd, ARG)` from vCPU 0 of domain index `i` with
    /// `arg` at ARG; the result and the struct read back.
    fn op<T: IntoBytes + FromBytes + zerocopy::Immutable>(&mut self, i: usize, cmd: u64, arg: T) -> (i64, T) {
        write_phys(&self.d[i], ARG, arg.as_bytes()).unwrap();
        let others = vec![self.d[1 - i].clone()];
        let d = self.d[i].clone();
        let r = dispatch(
            &mut Call::with_domains(&d, 0, &mut self.arch[i], &others),
            nr::EVENT_CHANNEL_OP,
            [cmd, ARG, 0, 0, 0, 0],
        )
        .ret;
        let mut out = T::new_zeroed();
        read_phys(&self.d[i], ARG, out.as_mut_bytes()).unwrap();
        (r, out)
    }

    fn ok<T: IntoBytes + FromBytes + zerocopy::Immutable>(&mut self, i: usize, cmd: u64, arg: T) -> T {
        let (r, out) = self.op(i, cmd, arg);
        assert_eq!(r, 0, "{}: cmd {cmd} from d{}", self.abi.name(), self.d[i].id);
        out
    }

    fn err<T: IntoBytes + FromBytes + zerocopy::Immutable>(&mut self, i: usize, cmd: u64, arg: T) -> Option<Errno> {
        Errno::from_hypercall_ret(self.op(i, cmd, arg).0)
    }

    fn alloc_unbound(&mut self, i: usize, remote: u16) -> u32 {
        self.ok(i, evtchnop::ALLOC_UNBOUND, EvtchnAllocUnbound { dom: domid::SELF, remote_dom: remote, port: 0 }).port
    }

    fn bind_interdomain(&mut self, i: usize, remote_dom: u16, remote_port: u32) -> Result<u32, Option<Errno>> {
        let (r, out) = self.op(
            i,
            evtchnop::BIND_INTERDOMAIN,
            EvtchnBindInterdomain { remote_dom, pad: 0, remote_port, local_port: 0 },
        );
        if r == 0 {
            Ok(out.local_port)
        } else {
            Err(Errno::from_hypercall_ret(r))
        }
    }

    fn port_op(&mut self, i: usize, cmd: u64, port: u32) -> Option<Errno> {
        self.err(i, cmd, EvtchnPort { port })
    }

    fn status(&mut self, i: usize, dom: u16, port: u32) -> Result<EvtchnStatus, Option<Errno>> {
        let (r, out) = self.op(i, evtchnop::STATUS, EvtchnStatus { dom, port, ..Default::default() });
        if r == 0 {
            Ok(out)
        } else {
            Err(Errno::from_hypercall_ret(r))
        }
    }

    fn bind_ipi(&mut self, i: usize, vcpu: u32) -> u32 {
        self.ok(i, evtchnop::BIND_IPI, EvtchnBindIpi { vcpu, port: 0 }).port
    }

    /// Whether `port` of domain index `i` is pending in its 2-level bitmap.
    fn pending_2l(&self, i: usize, port: u32) -> bool {
        let si = self.abi.shared_info();
        let w = self.abi.xen_ulong_size();
        let bits = (w * 8) as u32;
        let word = self.d[i].shared_info().read_uint(si.evtchn_pending.offset + (port / bits) as usize * w, w).unwrap();
        word & (1 << (port % bits)) != 0
    }
}

fn for_each_layout(f: impl Fn(&mut World)) {
    for abi in layouts() {
        f(&mut World::new(abi));
    }
}

#[test]
fn status_reports_every_state() {
    for_each_layout(|w| {
        let name = w.abi.name();
        // Port 0 is reserved and reads as closed; past the table is -EINVAL.
        let s = w.status(0, domid::SELF, 0).unwrap();
        assert_eq!((s.status, s.vcpu), (evtchnstat::CLOSED, 0), "{name}");
        assert_eq!(w.status(0, domid::SELF, 4096).unwrap_err(), Some(Errno::EINVAL), "{name}");
        // Unbound, with the remote domain; DOMID_SELF and our own id alike.
        let unbound = w.alloc_unbound(0, 2);
        let s = w.status(0, 1, unbound).unwrap();
        assert_eq!((s.status, s.u0, s.port, s.dom), (evtchnstat::UNBOUND, 2, unbound, 1), "{name}");
        // Interdomain, with the peer's domain and port, from both ends.
        let local = w.bind_interdomain(1, 1, unbound).unwrap();
        let s = w.status(1, domid::SELF, local).unwrap();
        assert_eq!((s.status, s.u0, s.u1), (evtchnstat::INTERDOMAIN, 1, unbound), "{name}");
        let s = w.status(0, domid::SELF, unbound).unwrap();
        assert_eq!((s.status, s.u0, s.u1), (evtchnstat::INTERDOMAIN, 2, local), "{name}");
        // Loopback is interdomain with ourselves.
        let lo = w.alloc_unbound(0, domid::SELF);
        let lo2 = w.bind_interdomain(0, domid::SELF, lo).unwrap();
        let s = w.status(0, domid::SELF, lo2).unwrap();
        assert_eq!((s.status, s.u0, s.u1), (evtchnstat::INTERDOMAIN, 1, lo), "{name}");
        // VIRQ with its number and vCPU; IPI with its vCPU.
        let v = w.ok(0, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::TIMER, vcpu: 1, port: 0 }).port;
        let s = w.status(0, domid::SELF, v).unwrap();
        assert_eq!((s.status, s.u0, s.vcpu), (evtchnstat::VIRQ, virq::TIMER, 1), "{name}");
        let ipi = w.bind_ipi(0, 1);
        let s = w.status(0, domid::SELF, ipi).unwrap();
        assert_eq!((s.status, s.vcpu), (evtchnstat::IPI, 1), "{name}");
        // Closed again after close.
        assert_eq!(w.port_op(0, evtchnop::CLOSE, ipi), None, "{name}");
        assert_eq!(w.status(0, domid::SELF, ipi).unwrap().status, evtchnstat::CLOSED, "{name}");
        // Another domain's ports: -EPERM (it exists), -ESRCH (it does not).
        assert_eq!(w.status(0, 2, local).unwrap_err(), Some(Errno::EPERM), "{name}");
        assert_eq!(w.status(0, 7, 1).unwrap_err(), Some(Errno::ESRCH), "{name}");
    });
}

#[test]
fn interdomain_send_raises_the_peer_and_wakes_it() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let p1 = w.alloc_unbound(0, 2);
        // Sending on an unbound port drops the event.
        assert_eq!(w.port_op(0, evtchnop::SEND, p1), None, "{name}");
        let p2 = w.bind_interdomain(1, 1, p1).unwrap();
        // Binding raises the new local end once (a lost event is possible).
        assert!(w.pending_2l(1, p2), "{name}: bind raises the local port");
        assert!(!w.pending_2l(0, p1), "{name}");
        // Clear it, block d2's vCPU 0, and send from d1.
        assert_eq!(w.port_op(1, evtchnop::CLOSE, p2), None);
        let p2 = w.bind_interdomain(1, 1, p1).unwrap();
        let si = w.abi.shared_info();
        w.d[1].shared_info().fill(si.evtchn_pending.offset, si.evtchn_pending.size, 0).unwrap();
        let vi = w.abi.vcpu_info();
        let d2 = w.d[1].clone();
        let v = d2.vcpu(0).unwrap();
        let area = v.areas().vcpu_info;
        area.page.fill(area.offset, vi.size, 0).unwrap();
        v.take_upcall_request();
        d2.vcpu_block(v);
        assert_ne!(v.pause_flags() & VPF_BLOCKED, 0, "{name}");
        assert_eq!(w.port_op(0, evtchnop::SEND, p1), None, "{name}");
        assert!(w.pending_2l(1, p2), "{name}: the peer's port is pending");
        assert!(!w.pending_2l(0, p1), "{name}: not the sender's");
        assert_eq!(v.pause_flags() & VPF_BLOCKED, 0, "{name}: the peer vCPU woke");
        assert!(v.take_upcall_request(), "{name}: upcall requested");
        // And the other way.
        assert_eq!(w.port_op(1, evtchnop::SEND, p2), None, "{name}");
        assert!(w.pending_2l(0, p1), "{name}");
    });
}

#[test]
fn interdomain_misuse_gets_xens_errnos() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let for_other = w.alloc_unbound(0, 5);
        // Not unbound for us, no such domain, no such port, already bound.
        assert_eq!(w.bind_interdomain(1, 1, for_other), Err(Some(Errno::EINVAL)), "{name}");
        assert_eq!(w.bind_interdomain(1, 9, 1), Err(Some(Errno::ESRCH)), "{name}");
        assert_eq!(w.bind_interdomain(1, 1, 4000), Err(Some(Errno::EINVAL)), "{name}");
        assert_eq!(w.bind_interdomain(1, 1, 0), Err(Some(Errno::EINVAL)), "{name}: reserved port");
        let p1 = w.alloc_unbound(0, 2);
        w.bind_interdomain(1, 1, p1).unwrap();
        assert_eq!(w.bind_interdomain(1, 1, p1), Err(Some(Errno::EINVAL)), "{name}: bound already");
        // A failed bind gives its local port back.
        let next = w.bind_ipi(1, 0);
        assert_eq!(w.port_op(1, evtchnop::CLOSE, next), None);
        assert_eq!(w.bind_interdomain(1, 1, for_other), Err(Some(Errno::EINVAL)));
        assert_eq!(w.bind_ipi(1, 0), next, "{name}: the failed bind's port was freed");
        // Allocating in another domain's table: Xen looks the domain up
        // (-ESRCH when there is none), then XSM refuses (-EPERM).
        let (r, _) = w.op(0, evtchnop::ALLOC_UNBOUND, EvtchnAllocUnbound { dom: 2, remote_dom: 2, port: 0 });
        assert_eq!(Errno::from_hypercall_ret(r), Some(Errno::EPERM), "{name}");
        let (r, _) = w.op(0, evtchnop::ALLOC_UNBOUND, EvtchnAllocUnbound { dom: 9, remote_dom: 2, port: 0 });
        assert_eq!(Errno::from_hypercall_ret(r), Some(Errno::ESRCH), "{name}");
        // Close: port 0, a free port, past the table.
        assert_eq!(w.port_op(0, evtchnop::CLOSE, 0), Some(Errno::EINVAL), "{name}");
        assert_eq!(w.port_op(0, evtchnop::CLOSE, 4000), Some(Errno::EINVAL), "{name}");
        let ipi = w.bind_ipi(0, 0);
        assert_eq!(w.port_op(0, evtchnop::CLOSE, ipi), None);
        assert_eq!(w.port_op(0, evtchnop::CLOSE, ipi), Some(Errno::EINVAL), "{name}: closed twice");
        // Send: a free port, port 0, a VIRQ port.
        assert_eq!(w.port_op(0, evtchnop::SEND, ipi), Some(Errno::EINVAL), "{name}");
        assert_eq!(w.port_op(0, evtchnop::SEND, 0), Some(Errno::EINVAL), "{name}");
        let v = w.ok(0, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::TIMER, vcpu: 0, port: 0 }).port;
        assert_eq!(w.port_op(0, evtchnop::SEND, v), Some(Errno::EINVAL), "{name}");
        // Unmask past the table.
        assert_eq!(w.port_op(0, evtchnop::UNMASK, 4000), Some(Errno::EINVAL), "{name}");
    });
}

#[test]
fn closing_either_end_leaves_the_other_unbound() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let p1 = w.alloc_unbound(0, 2);
        let p2 = w.bind_interdomain(1, 1, p1).unwrap();
        // d1 closes: d2's end is unbound for d1, which may bind it again.
        assert_eq!(w.port_op(0, evtchnop::CLOSE, p1), None, "{name}");
        let s = w.status(1, domid::SELF, p2).unwrap();
        assert_eq!((s.status, s.u0), (evtchnstat::UNBOUND, 1), "{name}");
        let q1 = w.bind_interdomain(0, 2, p2).unwrap();
        // d2 closes: d1's end is unbound for d2.
        assert_eq!(w.port_op(1, evtchnop::CLOSE, p2), None, "{name}");
        let s = w.status(0, domid::SELF, q1).unwrap();
        assert_eq!((s.status, s.u0), (evtchnstat::UNBOUND, 2), "{name}");
        // Loopback: closing one end leaves the other unbound for ourselves.
        let a = w.alloc_unbound(0, domid::SELF);
        let b = w.bind_interdomain(0, domid::SELF, a).unwrap();
        assert_eq!(w.port_op(0, evtchnop::SEND, b), None);
        assert!(w.pending_2l(0, a), "{name}: loopback delivers to the other end");
        assert_eq!(w.port_op(0, evtchnop::CLOSE, b), None);
        let s = w.status(0, domid::SELF, a).unwrap();
        assert_eq!((s.status, s.u0), (evtchnstat::UNBOUND, 1), "{name}");
    });
}

#[test]
fn a_killed_domain_leaves_no_binding_behind() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let p1 = w.alloc_unbound(0, 2);
        let p2 = w.bind_interdomain(1, 1, p1).unwrap();
        lifecycle::kill_among(&w.d[0], &vec![w.d[1].clone()]);
        let s = w.status(1, domid::SELF, p2).unwrap();
        assert_eq!((s.status, s.u0), (evtchnstat::UNBOUND, 1), "{name}: the peer end is unbound");
        assert_eq!(w.port_op(1, evtchnop::SEND, p2), None, "{name}: sending to the dead is dropped");
        // The dead domain can no longer be bound to.
        assert_eq!(w.bind_interdomain(1, 1, p1), Err(Some(Errno::ESRCH)), "{name}");
    });
}

#[test]
fn bind_vcpu_moves_only_movable_channels() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let mv = |w: &mut World, port, vcpu| w.err(0, evtchnop::BIND_VCPU, EvtchnBindVcpu { port, vcpu });
        let ipi = w.bind_ipi(0, 0);
        assert_eq!(mv(w, ipi, 1), Some(Errno::EINVAL), "{name}: IPI");
        let timer = w.ok(0, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::TIMER, vcpu: 0, port: 0 }).port;
        assert_eq!(mv(w, timer, 1), Some(Errno::EINVAL), "{name}: per-vCPU VIRQ");
        // A global VIRQ binds on vCPU 0 only, and then moves.
        let bad = w.err(0, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::CONSOLE, vcpu: 1, port: 0 });
        assert_eq!(bad, Some(Errno::EINVAL), "{name}: global VIRQ on vCPU 1");
        let con = w.ok(0, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::CONSOLE, vcpu: 0, port: 0 }).port;
        assert_eq!(mv(w, con, 1), None, "{name}: global VIRQ");
        assert_eq!(w.status(0, domid::SELF, con).unwrap().vcpu, 1);
        let again = w.err(0, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::CONSOLE, vcpu: 0, port: 0 });
        assert_eq!(again, Some(Errno::EEXIST), "{name}: bound once per domain");
        // Unbound and interdomain move; the peer's event lands on vCPU 1.
        let p1 = w.alloc_unbound(0, 2);
        assert_eq!(mv(w, p1, 1), None, "{name}: unbound");
        let p2 = w.bind_interdomain(1, 1, p1).unwrap();
        let v1 = w.d[0].vcpu(1).unwrap();
        let sel = w.abi.vcpu_info().pending_sel;
        let area = v1.areas().vcpu_info;
        area.page.fill(area.offset + sel.offset, sel.size, 0).unwrap();
        assert_eq!(w.port_op(1, evtchnop::SEND, p2), None);
        let bits = (w.abi.xen_ulong_size() * 8) as u32;
        let got = area.page.read_uint(area.offset + sel.offset, sel.size).unwrap();
        assert_eq!(got, 1 << (p1 / bits), "{name}: vCPU 1's selector");
        assert_eq!(mv(w, p1, 0), None, "{name}: interdomain");
        // Free, reserved and invalid ports; no such vCPU.
        assert_eq!(mv(w, 0, 0), Some(Errno::EINVAL), "{name}");
        assert_eq!(mv(w, 4000, 0), Some(Errno::EINVAL), "{name}");
        assert_eq!(mv(w, p1, 9), Some(Errno::ENOENT), "{name}");
    });
}

#[test]
fn port_limits_follow_the_abi() {
    for abi in layouts() {
        let mut w = World::new(abi);
        let bits = (abi.xen_ulong_size() * 8) as u32;
        let mut n = 0;
        while evtchn::alloc_unbound(&w.d[0], 1).is_ok() {
            n += 1;
        }
        // Every port but the reserved port 0.
        assert_eq!(n, bits * bits - 1, "{}: 2-level ports", abi.name());
        assert_eq!(evtchn::alloc_unbound(&w.d[0], 1), Err(Errno::ENOSPC));
        // FIFO lifts the limit to Lantern's cap.
        w.ok(0, evtchnop::INIT_CONTROL, init(CB_GFN, 0, 0));
        while evtchn::alloc_unbound(&w.d[0], 1).is_ok() {
            n += 1;
        }
        assert_eq!(n, lantern_common::ports::MAX_PORTS - 1, "{}: FIFO ports", abi.name());
    }
}

fn init(gfn: u64, offset: u32, vcpu: u32) -> EvtchnInitControl {
    EvtchnInitControl { control_gfn: gfn, offset, vcpu, link_bits: 0, pad: [0; 7] }
}

#[test]
fn fifo_setup_ops_and_their_errnos() {
    for_each_layout(|w| {
        let name = w.abi.name();
        // Before init_control: expand is not supported, priorities do not exist.
        let x = w.err(0, evtchnop::EXPAND_ARRAY, EvtchnExpandArray { array_gfn: ARRAY_GFN });
        assert_eq!(x, Some(Errno::EOPNOTSUPP), "{name}");
        let ipi = w.bind_ipi(0, 0);
        let sp = |w: &mut World, port, priority| w.err(0, evtchnop::SET_PRIORITY, EvtchnSetPriority { port, priority });
        assert_eq!(sp(w, ipi, 3), Some(Errno::ENOSYS), "{name}: 2-level has no priorities");
        assert_eq!(evtchn::abi_name(&w.d[0]), "2-level");
        // init_control: no such vCPU, misaligned, past the page, not RAM.
        assert_eq!(w.err(0, evtchnop::INIT_CONTROL, init(CB_GFN, 0, 5)), Some(Errno::ENOENT), "{name}");
        assert_eq!(w.err(0, evtchnop::INIT_CONTROL, init(CB_GFN, 4, 0)), Some(Errno::EINVAL), "{name}");
        let past = (4096 - ff::CONTROL_BLOCK_SIZE + 8) as u32;
        assert_eq!(w.err(0, evtchnop::INIT_CONTROL, init(CB_GFN, past, 0)), Some(Errno::EINVAL), "{name}");
        assert_eq!(w.err(0, evtchnop::INIT_CONTROL, init(RAM_PAGES + 5, 0, 0)), Some(Errno::EINVAL), "{name}");
        assert_eq!(evtchn::abi_name(&w.d[0]), "2-level", "{name}: failures switch nothing");
        let cb = page(&w.d[0], CB_GFN);
        let before = (cb.refs(), cb.writable_refs());
        let last = (4096 - ff::CONTROL_BLOCK_SIZE) as u32;
        let out = w.ok(0, evtchnop::INIT_CONTROL, init(CB_GFN, last, 0));
        assert_eq!(u32::from(out.link_bits), ff::LINK_BITS, "{name}");
        assert_eq!(evtchn::abi_name(&w.d[0]), "fifo");
        assert_eq!((cb.refs(), cb.writable_refs()), (before.0 + 1, before.1 + 1), "{name}: the block is held");
        assert_eq!(w.err(0, evtchnop::INIT_CONTROL, init(CB_GFN, 0, 0)), Some(Errno::EINVAL), "{name}: twice");
        w.ok(0, evtchnop::INIT_CONTROL, init(CB_GFN, 0, 1));
        // expand_array: not RAM, then fine; set_priority's range.
        let x = w.err(0, evtchnop::EXPAND_ARRAY, EvtchnExpandArray { array_gfn: RAM_PAGES + 5 });
        assert_eq!(x, Some(Errno::EINVAL), "{name}");
        w.ok(0, evtchnop::EXPAND_ARRAY, EvtchnExpandArray { array_gfn: ARRAY_GFN });
        assert_eq!(sp(w, ipi, ff::PRIORITY_MIN + 1), Some(Errno::EINVAL), "{name}");
        assert_eq!(sp(w, 4000 * 4, 3), Some(Errno::EINVAL), "{name}: invalid port");
        assert_eq!(sp(w, ipi, ff::PRIORITY_MAX), None, "{name}");
        assert_eq!(evtchn::fifo_port(&w.d[0], ipi).unwrap().1, ff::PRIORITY_MAX);
        // Kill drops every FIFO page reference.
        let arr = page(&w.d[0], ARRAY_GFN);
        lifecycle::kill(&w.d[0]);
        assert_eq!((cb.refs(), cb.writable_refs()), (0, 0), "{name}: control block released");
        assert_eq!((arr.refs(), arr.writable_refs()), (0, 0), "{name}: array page released");
        assert_eq!(evtchn::abi_name(&w.d[0]), "2-level");
    });
}

/// A FIFO guest as Linux's `events_fifo.c` consumes: a control block on
/// vCPU 0 at gfn [`CB_GFN`], array pages from [`ARRAY_GFN`], a local head
/// per queue, and the ports it handled, in order.
struct FifoGuest {
    cb: PageRef,
    array: Vec<PageRef>,
    heads: [u32; ff::MAX_QUEUES],
    handled: Vec<u32>,
}

impl FifoGuest {
    fn new(w: &mut World, pages: u64) -> FifoGuest {
        w.ok(0, evtchnop::INIT_CONTROL, init(CB_GFN, 0, 0));
        for i in 0..pages {
            w.ok(0, evtchnop::EXPAND_ARRAY, EvtchnExpandArray { array_gfn: ARRAY_GFN + i });
        }
        let array = (0..pages).map(|i| page(&w.d[0], ARRAY_GFN + i)).collect();
        FifoGuest { cb: page(&w.d[0], CB_GFN), array, heads: [0; ff::MAX_QUEUES], handled: Vec::new() }
    }

    fn word_at(&self, port: u32) -> (&PageRef, usize) {
        (&self.array[(port / 1024) as usize], (port % 1024) as usize * 4)
    }

    fn word(&self, port: u32) -> u32 {
        let (p, o) = self.word_at(port);
        p.read_uint(o, 4).unwrap() as u32
    }

    fn set_bits(&self, port: u32, bits: u32, on: bool) {
        let (p, o) = self.word_at(port);
        if on {
            p.fetch_or(o, 4, bits as u64).unwrap();
        } else {
            p.fetch_and_not(o, 4, bits as u64).unwrap();
        }
    }

    fn ready(&self) -> u32 {
        self.cb.read_uint(ff::CONTROL_BLOCK_READY, 4).unwrap() as u32
    }

    fn cb_head(&self, q: usize) -> u32 {
        self.cb.read_uint(ff::CONTROL_BLOCK_HEAD + 4 * q, 4).unwrap() as u32
    }

    /// The ports linked on queue `q`, from the guest's view of its head:
    /// its own while it has one, else the control block's if the queue is
    /// READY (a drained queue's head there is stale).
    fn queue(&self, q: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut port = match self.heads[q] {
            0 if self.ready() & (1 << q) == 0 => 0,
            0 => self.cb_head(q),
            h => h,
        };
        while port != 0 && self.word(port) & (1 << ff::LINKED) != 0 {
            assert!(!out.contains(&port), "queue {q} loops at port {port}: {out:?}");
            out.push(port);
            port = self.word(port) & ff::LINK_MASK;
        }
        out
    }

    /// Consumes one event from the most urgent ready queue, if any:
    /// unlinks the head (clearing LINKED and the link), clears the queue's
    /// READY bit when it empties, and handles it if pending and unmasked
    /// (clearing PENDING, as the guest's acknowledgement does).
    fn consume_one(&mut self) -> bool {
        let ready = self.ready();
        if ready == 0 {
            return false;
        }
        let q = ready.trailing_zeros() as usize;
        let port = if self.heads[q] != 0 { self.heads[q] } else { self.cb_head(q) };
        let (p, o) = self.word_at(port);
        let old = p.fetch_and_not(o, 4, ((1 << ff::LINKED) | ff::LINK_MASK) as u64).unwrap() as u32;
        let next = old & ff::LINK_MASK;
        if next == 0 {
            self.cb.fetch_and_not(ff::CONTROL_BLOCK_READY, 4, 1 << q).unwrap();
        }
        self.heads[q] = next;
        if old & (1 << ff::PENDING) != 0 && old & (1 << ff::MASKED) == 0 {
            self.set_bits(port, 1 << ff::PENDING, false);
            self.handled.push(port);
        }
        true
    }

    fn drain(&mut self) {
        for _ in 0..10_000 {
            if !self.consume_one() {
                return;
            }
        }
        panic!("queues never drained");
    }
}

#[test]
fn fifo_delivers_by_priority_and_masks_and_relinks() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let mut g = FifoGuest::new(w, 1);
        let low = w.bind_ipi(0, 0);
        let high = w.bind_ipi(0, 0);
        let sp = |w: &mut World, port, priority| w.ok(0, evtchnop::SET_PRIORITY, EvtchnSetPriority { port, priority });
        sp(w, low, 9);
        sp(w, high, 3);
        let d1 = w.d[0].clone();
        let v = d1.vcpu(0).unwrap();
        v.take_upcall_request();
        assert_eq!(w.port_op(0, evtchnop::SEND, low), None);
        assert_eq!(w.port_op(0, evtchnop::SEND, high), None);
        assert!(v.take_upcall_request(), "{name}: upcall requested");
        assert_eq!(g.ready(), (1 << 3) | (1 << 9), "{name}: READY");
        assert_eq!((g.queue(3), g.queue(9)), (vec![high], vec![low]), "{name}");
        g.drain();
        assert_eq!(g.handled, vec![high, low], "{name}: the urgent one first");
        // FIFO order within a priority.
        let third = w.bind_ipi(0, 0);
        sp(w, third, 9);
        for p in [third, low] {
            w.port_op(0, evtchnop::SEND, p);
        }
        assert_eq!(g.queue(9), vec![third, low], "{name}");
        g.drain();
        // A masked port is marked pending but not linked; unmask links it.
        g.set_bits(high, 1 << ff::MASKED, true);
        w.port_op(0, evtchnop::SEND, high);
        let word = g.word(high);
        assert_ne!(word & (1 << ff::PENDING), 0, "{name}");
        assert_eq!(word & (1 << ff::LINKED), 0, "{name}: masked is not linked");
        assert_eq!(g.ready(), 0, "{name}");
        g.set_bits(high, 1 << ff::MASKED, false);
        assert_eq!(w.port_op(0, evtchnop::UNMASK, high), None);
        assert_eq!(g.queue(3), vec![high], "{name}: unmask re-links");
        g.drain();
        // Close clears PENDING.
        g.set_bits(low, 1 << ff::MASKED, true);
        w.port_op(0, evtchnop::SEND, low);
        w.port_op(0, evtchnop::CLOSE, low);
        assert_eq!(g.word(low) & (1 << ff::PENDING), 0, "{name}: close clears PENDING");
    });
}

#[test]
fn fifo_ports_above_the_array_wait_for_expand() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let mut g = FifoGuest::new(w, 1);
        // Fill the first array page's ports, then bind one above it.
        while evtchn::alloc_unbound(&w.d[0], 9).unwrap() < 1023 {}
        let high = w.bind_ipi(0, 0);
        assert_eq!(high, 1024, "{name}: the lowest free port");
        assert_eq!(w.port_op(0, evtchnop::SEND, high), None);
        assert_eq!(g.ready(), 0, "{name}: nothing to see without its array page");
        w.ok(0, evtchnop::EXPAND_ARRAY, EvtchnExpandArray { array_gfn: ARRAY_GFN + 1 });
        g.array.push(page(&w.d[0], ARRAY_GFN + 1));
        assert_eq!(g.queue(ff::PRIORITY_DEFAULT as usize), vec![high], "{name}: re-raised on expansion");
        g.drain();
        assert_eq!(g.handled, vec![high]);
        w.port_op(0, evtchnop::SEND, high);
        g.drain();
        assert_eq!(g.handled, vec![high, high], "{name}: works after expansion");
    });
}

#[test]
fn switching_to_fifo_keeps_2level_pending_ports() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let ipi = w.bind_ipi(0, 0);
        w.port_op(0, evtchnop::SEND, ipi);
        assert!(w.pending_2l(0, ipi));
        let mut g = FifoGuest::new(w, 1);
        assert_eq!(g.queue(ff::PRIORITY_DEFAULT as usize), vec![ipi], "{name}");
        g.drain();
        assert_eq!(g.handled, vec![ipi]);
    });
}

#[test]
fn soft_reset_closes_the_ends_and_returns_to_2level() {
    for_each_layout(|w| {
        let name = w.abi.name();
        let p1 = w.alloc_unbound(0, 2);
        let p2 = w.bind_interdomain(1, 1, p1).unwrap();
        let g = FifoGuest::new(w, 1);
        let baseline = (1, 0); // the p2m's reference only
        assert_ne!((g.cb.refs(), g.cb.writable_refs()), baseline);
        w.d[0].shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        lifecycle::soft_reset_among(&w.d[0], &FakeDomain, &vec![w.d[1].clone()]).unwrap();
        let s = w.status(1, domid::SELF, p2).unwrap();
        assert_eq!((s.status, s.u0), (evtchnstat::UNBOUND, 1), "{name}: the peer end is unbound");
        assert_eq!(evtchn::abi_name(&w.d[0]), "2-level", "{name}");
        assert_eq!((g.cb.refs(), g.cb.writable_refs()), baseline, "{name}: control block released");
        assert_eq!((g.array[0].refs(), g.array[0].writable_refs()), baseline, "{name}: array page released");
        // The reset domain may bind the peer's end again, on 2-level.
        let q1 = w.bind_interdomain(0, 2, p2).unwrap();
        assert_eq!(w.port_op(1, evtchnop::SEND, p2), None);
        assert!(w.pending_2l(0, q1), "{name}");
    });
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Step {
    Send(usize),
    Consume,
    Mask(usize),
    Unmask(usize),
    Priority(usize, u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0usize..6).prop_map(Step::Send),
        3 => Just(Step::Consume),
        1 => (0usize..6).prop_map(Step::Mask),
        1 => (0usize..6).prop_map(Step::Unmask),
        1 => (0usize..6, 0u32..4).prop_map(|(p, q)| Step::Priority(p, q)),
    ]
}

/// The model: per port pending/masked/linked-on, per queue the order.
#[derive(Default)]
struct Model {
    pending: [bool; 6],
    masked: [bool; 6],
    linked: [Option<usize>; 6],
    priority: [usize; 6],
    queues: [VecDeque<usize>; 4],
    handled: Vec<usize>,
}

impl Model {
    fn link(&mut self, i: usize) {
        if self.pending[i] && !self.masked[i] && self.linked[i].is_none() {
            let q = self.priority[i];
            self.queues[q].push_back(i);
            self.linked[i] = Some(q);
        }
    }

    fn step(&mut self, s: &Step) {
        match *s {
            Step::Send(i) => {
                self.pending[i] = true;
                self.link(i);
            }
            Step::Consume => {
                if let Some(q) = (0..4).find(|&q| !self.queues[q].is_empty()) {
                    let i = self.queues[q].pop_front().unwrap();
                    self.linked[i] = None;
                    if self.pending[i] && !self.masked[i] {
                        self.pending[i] = false;
                        self.handled.push(i);
                    }
                }
            }
            Step::Mask(i) => self.masked[i] = true,
            Step::Unmask(i) => {
                self.masked[i] = false;
                self.link(i);
            }
            Step::Priority(i, q) => self.priority[i] = q as usize,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random sends, consumption, masking, unmasking and priority changes on
    /// six ports: the queues the guest can walk, the READY bits and the
    /// handled order always match the model.
    #[test]
    fn fifo_queues_match_a_model(which in 0..LAYOUTS.len(), steps in prop::collection::vec(step(), 1..60)) {
        let mut w = World::new(layouts()[which]);
        let mut g = FifoGuest::new(&mut w, 1);
        let ports: Vec<u32> = (0..6).map(|_| w.bind_ipi(0, 0)).collect();
        let mut m = Model { priority: [2; 6], ..Model::default() };
        for &p in &ports {
            w.ok(0, evtchnop::SET_PRIORITY, EvtchnSetPriority { port: p, priority: 2 });
        }
        for s in &steps {
            match *s {
                Step::Send(i) => prop_assert_eq!(w.port_op(0, evtchnop::SEND, ports[i]), None),
                Step::Consume => {
                    g.consume_one();
                }
                Step::Mask(i) => g.set_bits(ports[i], 1 << ff::MASKED, true),
                Step::Unmask(i) => {
                    g.set_bits(ports[i], 1 << ff::MASKED, false);
                    prop_assert_eq!(w.port_op(0, evtchnop::UNMASK, ports[i]), None);
                }
                Step::Priority(i, q) => {
                    w.ok(0, evtchnop::SET_PRIORITY, EvtchnSetPriority { port: ports[i], priority: q });
                }
            }
            m.step(s);
            for q in 0..4 {
                let want: Vec<u32> = m.queues[q].iter().map(|&i| ports[i]).collect();
                prop_assert_eq!(g.queue(q), want, "queue {} after {:?}", q, s);
                prop_assert_eq!(g.ready() & (1 << q) != 0, !m.queues[q].is_empty(), "READY {} after {:?}", q, s);
            }
            let handled: Vec<u32> = m.handled.iter().map(|&i| ports[i]).collect();
            prop_assert_eq!(&g.handled, &handled);
        }
    }
}
