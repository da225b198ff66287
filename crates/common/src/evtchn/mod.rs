//! Event channels in Xen's numbering and semantics: the `EVTCHNOP_*`
//! operations on a domain's port table ([`crate::ports`]), loopback and true
//! interdomain channels, VIRQ and IPI bindings, status, and the two
//! event-channel ABIs — `two_level` (the default) and FIFO (`fifo` here for
//! its set-up operations, [`crate::fifo`] for its state; once the guest
//! calls `init_control`) — behind [`EvtchnAbi`], so `send`, `unmask` and
//! `close` never ask which one is in force.
//!
//! Locking: an operation holds its domain's event-channel lock; one that
//! changes both ends of an interdomain channel holds both domains' locks,
//! taken in domain-id order. Raising an event takes the target vCPU's area
//! lock (to find its vcpu_info) under the event-channel lock.

mod fifo;
mod two_level;

use alloc::vec::Vec;

use crate::directory::{lookup, DomainDirectory, NoDomains};
use crate::domain::{Domain, Lifecycle};
use crate::memory::{DomId, PageRef};
pub use crate::ports::EvtchnAbi;
use crate::ports::{Channel, ChannelState, EventChannels};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::{evtchnstat, virq as nr_virq};
use xen_abi::public::EvtchnStatus;

pub use self::fifo::{expand_array, init_control, set_priority};

/// How a VIRQ is bound (Xen's `get_virq_type`): per vCPU, or once per
/// domain (global and per-domain VIRQs, bound on vCPU 0 and movable).
fn virq_is_per_vcpu(virq: u32) -> bool {
    matches!(virq, nr_virq::TIMER | nr_virq::DEBUG | nr_virq::XENOPROF | nr_virq::XENPMU)
}

/// The channel at `port` if the port is valid (`-EINVAL` otherwise); the
/// reserved port 0 reads as free.
fn channel(t: &EventChannels, port: u32) -> XenResult<Channel> {
    if !t.is_valid(port) {
        return Err(Errno::EINVAL);
    }
    Ok(t.get(port).unwrap_or(Channel { state: ChannelState::Free, notify_vcpu: 0 }))
}

/// Raises `port` of `d` (whose table `t` the caller holds) on the vCPU it
/// notifies, through the ABI in force.
fn raise(d: &Domain, t: &mut EventChannels, port: u32) {
    let vcpu = t.ports[port as usize].notify_vcpu;
    match &mut t.abi {
        EvtchnAbi::TwoLevel => {
            let _ = two_level::set_pending(d, port, vcpu);
        }
        EvtchnAbi::Fifo(f) => {
            if f.set_pending(port, vcpu) {
                mark_events_pending(d, vcpu);
            }
        }
    }
    check_pollers(d, port);
}

/// `evtchn_check_pollers`: `port` of `d` was just raised; wakes every vCPU
/// polling on it (or on any port). Masked or not, a poller wakes.
fn check_pollers(d: &Domain, port: u32) {
    for v in d.vcpus() {
        if v.timers.lock().take_poll_for(port) {
            d.vcpu_unblock(v);
        }
    }
}

/// `evtchn_port_poll`: whether `port` is pending in the ABI in force;
/// `-EINVAL` for a port the table has no slot for.
pub fn poll_port(d: &Domain, port: u32) -> XenResult<bool> {
    let t = d.evtchn.lock();
    if !t.is_valid(port) {
        return Err(Errno::EINVAL);
    }
    Ok(bits(d, &t, port).0)
}

/// `port`'s (pending, masked) bits in the ABI in force (`t` is `d`'s table,
/// held by the caller).
fn bits(d: &Domain, t: &EventChannels, port: u32) -> (bool, bool) {
    match &t.abi {
        EvtchnAbi::TwoLevel => two_level::pending_and_masked(d, port),
        EvtchnAbi::Fifo(f) => {
            let w = f.event_word(port);
            let bit = |b: u32| w & (1 << b) != 0;
            (bit(xen_abi::nr::evtchn_fifo::PENDING), bit(xen_abi::nr::evtchn_fifo::MASKED))
        }
    }
}

/// The upcall for `vcpu` of `d` (FIFO: a queue became ready).
fn mark_events_pending(d: &Domain, vcpu: u32) {
    if let Ok(v) = d.vcpu(vcpu) {
        d.vcpu_mark_events_pending(v);
    }
}

/// `evtchn_free`: clears the port's pending state and frees it (notify
/// vCPU back to 0).
fn free(d: &Domain, t: &mut EventChannels, port: u32) {
    match &mut t.abi {
        EvtchnAbi::TwoLevel => two_level::clear_pending(d, port),
        EvtchnAbi::Fifo(f) => f.clear_pending(port),
    }
    t.ports[port as usize] = Channel { state: ChannelState::Free, notify_vcpu: 0 };
}

/// A live domain `id` as `d` sees it (a dead one is gone for event channels).
fn live<'a>(d: &'a Domain, dir: &'a dyn DomainDirectory, id: DomId) -> Option<&'a Domain> {
    lookup(d, dir, id).filter(|x| x.lifecycle() != Lifecycle::Dead)
}

/// Locks the tables of two different domains in domain-id order; returns
/// them as (`a`'s, `b`'s).
fn lock_two<'a>(
    a: &'a Domain,
    b: &'a Domain,
) -> (spin::MutexGuard<'a, EventChannels>, spin::MutexGuard<'a, EventChannels>) {
    if a.id < b.id {
        let ta = a.evtchn.lock();
        (ta, b.evtchn.lock())
    } else {
        let tb = b.evtchn.lock();
        (a.evtchn.lock(), tb)
    }
}

/// `EVTCHNOP_alloc_unbound`: a port `remote` may bind (the remote domain
/// need not exist yet, as in Xen).
pub fn alloc_unbound(d: &Domain, remote: DomId) -> XenResult<u32> {
    d.evtchn.lock().alloc(ChannelState::Unbound { remote }, 0)
}

/// `EVTCHNOP_bind_interdomain` to `remote_port` of the same domain.
pub fn bind_loopback(d: &Domain, remote_port: u32) -> XenResult<u32> {
    bind_interdomain(d, &NoDomains, d.id, remote_port)
}

/// `EVTCHNOP_bind_interdomain`: connects a new local port to `remote_port`
/// of `remote_dom` (`-ESRCH` if no such live domain), which must be
/// unbound for us (`-EINVAL` otherwise, the local port given back). The
/// new local port is raised once, as Xen does: an event sent to the
/// unbound end may have been lost.
pub fn bind_interdomain(d: &Domain, dir: &dyn DomainDirectory, remote_dom: DomId, remote_port: u32) -> XenResult<u32> {
    let rd = live(d, dir, remote_dom).ok_or(Errno::ESRCH)?;
    // The new port is allocated first (so `-ENOSPC` wins, as in Xen) in a
    // placeholder state no one sees (we hold the lock), then connected or
    // freed.
    let placeholder = ChannelState::Unbound { remote: d.id };
    let wants_us = |t: &EventChannels| t.get(remote_port).is_some_and(|c| c.state == placeholder);
    if rd.id == d.id {
        let mut t = d.evtchn.lock();
        let local = t.alloc(placeholder, 0)?;
        if local == remote_port || !wants_us(&t) {
            t.ports[local as usize].state = ChannelState::Free;
            return Err(Errno::EINVAL);
        }
        t.ports[local as usize].state = ChannelState::Loopback { peer: remote_port };
        t.ports[remote_port as usize].state = ChannelState::Loopback { peer: local };
        raise(d, &mut t, local);
        return Ok(local);
    }
    let (mut lt, mut rt) = lock_two(d, rd);
    let local = lt.alloc(placeholder, 0)?;
    if !wants_us(&rt) {
        lt.ports[local as usize].state = ChannelState::Free;
        return Err(Errno::EINVAL);
    }
    lt.ports[local as usize].state = ChannelState::Interdomain { remote_dom: rd.id, remote_port };
    rt.ports[remote_port as usize].state = ChannelState::Interdomain { remote_dom: d.id, remote_port: local };
    raise(d, &mut lt, local);
    Ok(local)
}

/// `EVTCHNOP_bind_virq`: `-EINVAL` for an unknown VIRQ or a global one on
/// a vCPU other than 0, `-ENOENT` for no such vCPU, `-EEXIST` if bound.
pub fn bind_virq(d: &Domain, virq: u32, vcpu: u32) -> XenResult<u32> {
    if virq >= nr_virq::NR_VIRQS {
        return Err(Errno::EINVAL);
    }
    let per_vcpu = virq_is_per_vcpu(virq);
    if !per_vcpu && vcpu != 0 {
        return Err(Errno::EINVAL);
    }
    d.vcpu(vcpu)?;
    let mut t = d.evtchn.lock();
    if t.iter().any(|(_, c)| c.state == ChannelState::Virq { virq } && (!per_vcpu || c.notify_vcpu == vcpu)) {
        return Err(Errno::EEXIST);
    }
    t.alloc(ChannelState::Virq { virq }, vcpu)
}

/// `EVTCHNOP_bind_ipi`.
pub fn bind_ipi(d: &Domain, vcpu: u32) -> XenResult<u32> {
    d.vcpu(vcpu)?;
    d.evtchn.lock().alloc(ChannelState::Ipi, vcpu)
}

/// `EVTCHNOP_bind_vcpu`: moves notifications of `port` to `vcpu`. Only
/// unbound, interdomain and global-VIRQ ports move; IPIs and per-vCPU VIRQs
/// are tied to their vCPU (`-EINVAL`, as for a free or invalid port).
pub fn bind_vcpu(d: &Domain, port: u32, vcpu: u32) -> XenResult<()> {
    d.vcpu(vcpu)?;
    let mut t = d.evtchn.lock();
    let movable = match channel(&t, port)?.state {
        ChannelState::Virq { virq } => !virq_is_per_vcpu(virq),
        ChannelState::Unbound { .. }
        | ChannelState::Loopback { .. }
        | ChannelState::Interdomain { .. }
        | ChannelState::ConsoleBackend => true,
        _ => false,
    };
    if !movable {
        return Err(Errno::EINVAL);
    }
    t.ports[port as usize].notify_vcpu = vcpu;
    Ok(())
}

/// `EVTCHNOP_close` of a domain that sees no other domain.
pub fn close(d: &Domain, port: u32) -> XenResult<()> {
    close_among(d, &NoDomains, port)
}

/// `EVTCHNOP_close`: `-EINVAL` for an invalid, free or reserved port. The
/// peer end of an interdomain (or loopback) channel goes back to unbound,
/// bindable again by this domain.
pub fn close_among(d: &Domain, dir: &dyn DomainDirectory, port: u32) -> XenResult<()> {
    let c = channel(&d.evtchn.lock(), port)?;
    match c.state {
        ChannelState::Free => Err(Errno::EINVAL),
        ChannelState::Interdomain { remote_dom, remote_port } => {
            let Some(rd) = lookup(d, dir, remote_dom).filter(|rd| rd.id != d.id) else {
                // The peer is out of sight (a directory without it): only
                // our end can go.
                let mut t = d.evtchn.lock();
                free(d, &mut t, port);
                return Ok(());
            };
            let (mut lt, mut rt) = lock_two(d, rd);
            // Re-checked under both locks: the port may have changed.
            if lt.get(port).map(|c| c.state) != Some(c.state) {
                return Err(Errno::EINVAL);
            }
            let back = ChannelState::Interdomain { remote_dom: d.id, remote_port: port };
            if rt.get(remote_port).is_some_and(|p| p.state == back) {
                rt.ports[remote_port as usize].state = ChannelState::Unbound { remote: d.id };
            }
            free(d, &mut lt, port);
            Ok(())
        }
        state => {
            let mut t = d.evtchn.lock();
            if let ChannelState::Loopback { peer } = state {
                t.ports[peer as usize].state = ChannelState::Unbound { remote: d.id };
            }
            free(d, &mut t, port);
            Ok(())
        }
    }
}

/// Closes every port of a domain no other domain can see (kill, soft reset).
pub fn reset(d: &Domain) {
    reset_among(d, &NoDomains);
}

/// Closes every port (kill, soft reset) — the peer ends in `dir`'s domains
/// go back to unbound — returns the domain to the 2-level ABI (dropping the
/// FIFO pages' references) and clears every pending and mask bit in
/// shared_info, so no event of the old ports survives into new ones.
pub fn reset_among(d: &Domain, dir: &dyn DomainDirectory) {
    let ports: Vec<u32> = d.evtchn.lock().iter().map(|(p, _)| p).collect();
    for p in ports {
        let _ = close_among(d, dir, p);
    }
    let old = core::mem::replace(&mut *d.evtchn.lock(), EventChannels::with_word_size(d.abi().xen_ulong_size()));
    drop(old);
    let si = d.abi().shared_info();
    let page = d.shared_info();
    let _ = page.fill(si.evtchn_pending.offset, si.evtchn_pending.size, 0);
    let _ = page.fill(si.evtchn_mask.offset, si.evtchn_mask.size, 0);
}

/// `EVTCHNOP_send` of a domain that sees no other domain.
pub fn send(d: &Domain, port: u32) -> XenResult<()> {
    send_among(d, &NoDomains, port)
}

/// `EVTCHNOP_send`: raises the peer of an interdomain or loopback port (in
/// its own domain, waking its vCPU), or the IPI port itself. An unbound
/// port drops the event, as in Xen; a free, reserved or VIRQ port is
/// `-EINVAL`.
pub fn send_among(d: &Domain, dir: &dyn DomainDirectory, port: u32) -> XenResult<()> {
    let mut t = d.evtchn.lock();
    match channel(&t, port)?.state {
        ChannelState::Ipi => raise(d, &mut t, port),
        ChannelState::Loopback { peer } => raise(d, &mut t, peer),
        ChannelState::Interdomain { remote_dom, remote_port } => {
            drop(t);
            let Some(rd) = live(d, dir, remote_dom) else { return Ok(()) };
            let mut rt = rd.evtchn.lock();
            let back = ChannelState::Interdomain { remote_dom: d.id, remote_port: port };
            if rt.get(remote_port).is_some_and(|c| c.state == back) {
                raise(rd, &mut rt, remote_port);
            }
        }
        // Nobody bound yet: dropped, as in Xen. The console backend is
        // told by the caller (`pv_console::kick`), which sits above here.
        ChannelState::Unbound { .. } | ChannelState::ConsoleBackend => {}
        ChannelState::Free | ChannelState::Virq { .. } => return Err(Errno::EINVAL),
    }
    Ok(())
}

/// Raises a VIRQ the guest bound: a per-vCPU one on `vcpu`, a global one
/// wherever its port notifies.
pub fn send_virq(d: &Domain, virq: u32, vcpu: u32) {
    let per_vcpu = virq_is_per_vcpu(virq);
    let mut t = d.evtchn.lock();
    let port = t
        .iter()
        .find(|(_, c)| c.state == ChannelState::Virq { virq } && (!per_vcpu || c.notify_vcpu == vcpu))
        .map(|(p, _)| p);
    if let Some(port) = port {
        raise(d, &mut t, port);
    }
}

/// `EVTCHNOP_unmask`: `-EINVAL` for an invalid port; unmasks the port and
/// re-raises it if it is pending, in the ABI in force.
pub fn unmask(d: &Domain, port: u32) -> XenResult<()> {
    let mut t = d.evtchn.lock();
    let c = channel(&t, port)?;
    match &mut t.abi {
        EvtchnAbi::TwoLevel => two_level::unmask(d, port, c.notify_vcpu),
        EvtchnAbi::Fifo(f) => {
            if f.unmask(port, c.notify_vcpu) {
                mark_events_pending(d, c.notify_vcpu);
            }
            Ok(())
        }
    }
}

/// A hypervisor backend (the PV console) notifies its guest on `port`, if
/// the port is still bound to a backend (the guest may have closed it).
pub fn raise_from_backend(d: &Domain, port: u32) {
    let mut t = d.evtchn.lock();
    if t.get(port).is_some_and(|c| c.state == ChannelState::ConsoleBackend) {
        raise(d, &mut t, port);
    }
}

/// Whether `port` is pending and whether it is masked, in the ABI in force
/// (for the debug keys).
pub fn pending_and_masked(d: &Domain, port: u32) -> (bool, bool) {
    bits(d, &d.evtchn.lock(), port)
}

/// `EVTCHNOP_status` of `port` in `d` (the caller checked it may ask).
pub fn status(d: &Domain, port: u32) -> XenResult<EvtchnStatus> {
    let c = channel(&d.evtchn.lock(), port)?;
    let (status, u0, u1) = match c.state {
        ChannelState::Free => (evtchnstat::CLOSED, 0, 0),
        ChannelState::Unbound { remote } => (evtchnstat::UNBOUND, remote as u32, 0),
        ChannelState::Loopback { peer } => (evtchnstat::INTERDOMAIN, d.id as u32, peer),
        ChannelState::Interdomain { remote_dom, remote_port } => {
            (evtchnstat::INTERDOMAIN, remote_dom as u32, remote_port)
        }
        ChannelState::Virq { virq } => (evtchnstat::VIRQ, virq, 0),
        ChannelState::Ipi => (evtchnstat::IPI, 0, 0),
        // In Xen an interdomain channel to the console daemon in domain 0.
        ChannelState::ConsoleBackend => (evtchnstat::INTERDOMAIN, 0, 0),
    };
    Ok(EvtchnStatus { dom: 0, pad: 0, port, status, vcpu: c.notify_vcpu, u0, u1 })
}

/// Name of the ABI in force (`2-level`, `fifo`), for the monitor.
pub fn abi_name(d: &Domain) -> &'static str {
    d.evtchn.lock().abi_name()
}

/// Every guest frame the event channels hold a reference on (FIFO control
/// blocks and array pages), for reference accounting.
pub fn held_pages(d: &Domain) -> Vec<PageRef> {
    match &d.evtchn.lock().abi {
        EvtchnAbi::TwoLevel => Vec::new(),
        EvtchnAbi::Fifo(f) => f.held_pages(),
    }
}

/// The FIFO event word of `port` and its priority, if the domain uses FIFO
/// (tests and the monitor look at them).
pub fn fifo_port(d: &Domain, port: u32) -> Option<(u32, u32)> {
    match &d.evtchn.lock().abi {
        EvtchnAbi::TwoLevel => None,
        EvtchnAbi::Fifo(f) => Some((f.event_word(port), f.priority(port))),
    }
}
