//! The 2-level event-channel ABI: one pending and one mask bit per port in
//! shared_info, a per-vCPU selector word (`evtchn_pending_sel`) naming the
//! pending words, and the upcall. The default until a guest asks for FIFO.

use crate::domain::{Domain, Vcpu};
use xen_abi::errno::XenResult;

/// Word index, word size and bit of `port` in the layout in force, or `None`
/// if the port lies beyond the two levels (`bits * bits` ports).
fn word_of(d: &Domain, port: u32) -> Option<(usize, usize, u64)> {
    let w = d.abi().xen_ulong_size();
    let bits = (w * 8) as u32;
    (port < bits * bits).then(|| ((port / bits) as usize, w, 1u64 << (port % bits)))
}

/// `evtchn_2l_set_pending`: the pending bit in shared_info; unless it was
/// already set or the port is masked, the word's bit in the vCPU's
/// `evtchn_pending_sel`, and the upcall.
pub(super) fn set_pending(d: &Domain, port: u32, vcpu: u32) -> XenResult<()> {
    let v = d.vcpu(vcpu)?;
    let Some((word, w, bit)) = word_of(d, port) else { return Ok(()) };
    let si = d.abi().shared_info();
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

/// Clears the pending bit (a freed port must not look pending when rebound).
pub(super) fn clear_pending(d: &Domain, port: u32) {
    if let Some((word, w, bit)) = word_of(d, port) {
        let si = d.abi().shared_info();
        let _ = d.shared_info().fetch_and_not(si.evtchn_pending.offset + word * w, w, bit);
    }
}

/// Whether `port`'s pending and mask bits are set in shared_info.
pub(super) fn pending_and_masked(d: &Domain, port: u32) -> (bool, bool) {
    let Some((word, w, bit)) = word_of(d, port) else { return (false, false) };
    let si = d.abi().shared_info();
    let page = d.shared_info();
    let pending = page.read_uint(si.evtchn_pending.offset + word * w, w).is_ok_and(|x| x & bit != 0);
    let masked = page.read_uint(si.evtchn_mask.offset + word * w, w).is_ok_and(|x| x & bit != 0);
    (pending, masked)
}

/// Whether the port's pending bit is set (carried over into FIFO).
pub(super) fn is_pending(d: &Domain, port: u32) -> bool {
    pending_and_masked(d, port).0
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

/// `evtchn_2l_unmask`: clears the mask bit and, if that unmasked a pending
/// port, re-raises its word on `vcpu`.
pub(super) fn unmask(d: &Domain, port: u32, vcpu: u32) -> XenResult<()> {
    let Some((word, w, bit)) = word_of(d, port) else { return Ok(()) };
    let si = d.abi().shared_info();
    let page = d.shared_info();
    let old = page.fetch_and_not(si.evtchn_mask.offset + word * w, w, bit)?;
    let pending = page.read_uint(si.evtchn_pending.offset + word * w, w)? & bit != 0;
    if old & bit != 0 && pending {
        mark_word_pending(d, d.vcpu(vcpu)?, word)?;
    }
    Ok(())
}
