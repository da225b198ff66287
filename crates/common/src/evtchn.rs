//! A minimal 2-level event-channel implementation: enough ports, VIRQ and
//! IPI bindings, send and unmask for guests to receive upcalls.

use crate::domain::{Domain, Vcpu};
use crate::memory::DomId;
use crate::ports::{Channel, ChannelState, EventChannels};
use xen_abi::errno::{Errno, XenResult};

/// `EVTCHNOP_alloc_unbound`.
pub fn alloc_unbound(d: &Domain, remote: DomId) -> XenResult<u32> {
    d.evtchn.lock().alloc(ChannelState::Unbound { remote }, 0)
}

/// `EVTCHNOP_bind_interdomain` to a port of the same domain (the only
/// interdomain case supported).
pub fn bind_loopback(d: &Domain, remote_port: u32) -> XenResult<u32> {
    let mut t = d.evtchn.lock();
    match t.get(remote_port) {
        Some(Channel { state: ChannelState::Unbound { remote }, .. }) if remote == d.id => {}
        _ => return Err(Errno::EINVAL),
    }
    let local = t.alloc(ChannelState::Loopback { peer: remote_port }, 0)?;
    t.ports[remote_port as usize].state = ChannelState::Loopback { peer: local };
    Ok(local)
}

/// `EVTCHNOP_bind_virq`.
pub fn bind_virq(d: &Domain, virq: u32, vcpu: u32) -> XenResult<u32> {
    if virq >= xen_abi::nr::virq::NR_VIRQS {
        return Err(Errno::EINVAL);
    }
    d.vcpu(vcpu)?;
    let mut t = d.evtchn.lock();
    if t.iter().any(|(_, c)| c.state == ChannelState::Virq { virq } && c.notify_vcpu == vcpu) {
        return Err(Errno::EEXIST);
    }
    t.alloc(ChannelState::Virq { virq }, vcpu)
}

/// `EVTCHNOP_bind_ipi`.
pub fn bind_ipi(d: &Domain, vcpu: u32) -> XenResult<u32> {
    d.vcpu(vcpu)?;
    d.evtchn.lock().alloc(ChannelState::Ipi, vcpu)
}

/// `EVTCHNOP_bind_vcpu`: moves notifications of `port` to `vcpu`.
pub fn bind_vcpu(d: &Domain, port: u32, vcpu: u32) -> XenResult<()> {
    d.vcpu(vcpu)?;
    let mut t = d.evtchn.lock();
    t.get(port).ok_or(Errno::EINVAL)?;
    t.ports[port as usize].notify_vcpu = vcpu;
    Ok(())
}

/// `EVTCHNOP_close`.
pub fn close(d: &Domain, port: u32) -> XenResult<()> {
    let mut t = d.evtchn.lock();
    let c = t.get(port).ok_or(Errno::EINVAL)?;
    if let ChannelState::Loopback { peer } = c.state {
        t.ports[peer as usize].state = ChannelState::Unbound { remote: d.id };
    }
    t.ports[port as usize].state = ChannelState::Free;
    Ok(())
}

/// Closes every port (kill, soft reset) and clears every pending and mask
/// bit in shared_info, so no event of the old ports survives into new ones.
pub fn reset(d: &Domain) {
    *d.evtchn.lock() = EventChannels::new();
    let si = d.abi().shared_info();
    let page = d.shared_info();
    let _ = page.fill(si.evtchn_pending.offset, si.evtchn_pending.size, 0);
    let _ = page.fill(si.evtchn_mask.offset, si.evtchn_mask.size, 0);
}

/// `EVTCHNOP_send`.
pub fn send(d: &Domain, port: u32) -> XenResult<()> {
    let c = d.evtchn.lock().get(port).ok_or(Errno::EINVAL)?;
    match c.state {
        ChannelState::Ipi | ChannelState::Virq { .. } => set_pending(d, port, c.notify_vcpu),
        ChannelState::Loopback { peer } => {
            let target = d.evtchn.lock().get(peer).map(|p| p.notify_vcpu).unwrap_or(0);
            set_pending(d, peer, target)
        }
        // The backend is told by the caller (`pv_console::kick`), which
        // sits above this module.
        ChannelState::ConsoleBackend => Ok(()),
        // Nobody bound yet: the event is dropped, as in Xen.
        ChannelState::Unbound { .. } | ChannelState::Free => Ok(()),
    }
}

/// Raises a VIRQ on `vcpu` if the guest bound it.
pub fn send_virq(d: &Domain, virq: u32, vcpu: u32) {
    let port = d
        .evtchn
        .lock()
        .iter()
        .find(|(_, c)| c.state == ChannelState::Virq { virq } && c.notify_vcpu == vcpu)
        .map(|(p, _)| p);
    if let Some(port) = port {
        let _ = set_pending(d, port, vcpu);
    }
}

fn word_of(d: &Domain, port: u32) -> (usize, usize, u64) {
    let w = d.abi().xen_ulong_size();
    let bits = (w * 8) as u32;
    ((port / bits) as usize, w, 1u64 << (port % bits))
}

/// 2-level `evtchn_set_pending`: pending bit in shared_info; unless masked,
/// the word's bit in the vCPU's `evtchn_pending_sel`, and the upcall.
pub fn set_pending(d: &Domain, port: u32, vcpu: u32) -> XenResult<()> {
    let v = d.vcpu(vcpu)?;
    let si = d.abi().shared_info();
    let (word, w, bit) = word_of(d, port);
    let page = d.shared_info();
    let old = page.fetch_or(si.evtchn_pending.offset + word * w, w, bit)?;
    if old & bit != 0 {
        return Ok(());
    }
    if page.read_uint(si.evtchn_mask.offset + word * w, w)? & bit != 0 {
        return Ok(());
    }
    mark_word_pending(d, v, word)
}

fn mark_word_pending(d: &Domain, v: &Vcpu, word: usize) -> XenResult<()> {
    let vi = d.abi().vcpu_info();
    let area = v.areas.lock().vcpu_info.clone();
    let old = area.page.fetch_or(area.offset + vi.pending_sel.offset, vi.pending_sel.size, 1u64 << word)?;
    if old & (1u64 << word) == 0 {
        d.vcpu_mark_events_pending(v);
    }
    Ok(())
}

/// Whether `port`'s pending and mask bits are set in shared_info (the
/// 2-level ABI), for the debug keys.
pub fn pending_and_masked(d: &Domain, port: u32) -> (bool, bool) {
    let si = d.abi().shared_info();
    let (word, w, bit) = word_of(d, port);
    let page = d.shared_info();
    let pending = page.read_uint(si.evtchn_pending.offset + word * w, w).is_ok_and(|x| x & bit != 0);
    let masked = page.read_uint(si.evtchn_mask.offset + word * w, w).is_ok_and(|x| x & bit != 0);
    (pending, masked)
}

/// `EVTCHNOP_unmask`: clears the mask bit and re-raises the event if it is
/// pending.
pub fn unmask(d: &Domain, port: u32) -> XenResult<()> {
    let c = d.evtchn.lock().get(port).ok_or(Errno::EINVAL)?;
    let si = d.abi().shared_info();
    let (word, w, bit) = word_of(d, port);
    let page = d.shared_info();
    let old = page.fetch_and_not(si.evtchn_mask.offset + word * w, w, bit)?;
    let pending = page.read_uint(si.evtchn_pending.offset + word * w, w)? & bit != 0;
    if old & bit != 0 && pending {
        mark_word_pending(d, d.vcpu(c.notify_vcpu)?, word)?;
    }
    Ok(())
}
