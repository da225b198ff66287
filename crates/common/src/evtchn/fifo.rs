//! The FIFO ABI's set-up operations: `EVTCHNOP_init_control` (the switch
//! from 2-level), `EVTCHNOP_expand_array` and `EVTCHNOP_set_priority`. The
//! FIFO state and event-word logic they act on are in [`crate::fifo`].

use alloc::boxed::Box;

use super::{channel, raise, two_level};
use crate::addr::PAGE_SIZE;
use crate::domain::Domain;
use crate::fifo::Fifo;
use crate::memory::Gfn;
use crate::ports::EvtchnAbi;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::evtchn_fifo;

/// `EVTCHNOP_init_control`: maps `vcpu`'s FIFO control block at `offset` of
/// `gfn` (8-aligned, inside the page, else `-EINVAL`; `-ENOENT` for no such
/// vCPU; `-EINVAL` for a frame that is not our writable RAM or a vCPU that
/// has one). The first call switches the domain to FIFO: every port keeps
/// its binding, gets the default priority, and a 2-level pending bit is
/// carried over (re-raised once the array covers the port). Returns
/// `EVTCHN_FIFO_LINK_BITS` (as the `uint8_t` of `evtchn_init_control`).
pub fn init_control(d: &Domain, gfn: u64, offset: u32, vcpu: u32) -> XenResult<u8> {
    d.vcpu(vcpu)?;
    if offset as usize > PAGE_SIZE - evtchn_fifo::CONTROL_BLOCK_SIZE
        || !offset.is_multiple_of(evtchn_fifo::CONTROL_BLOCK_ALIGN)
    {
        return Err(Errno::EINVAL);
    }
    if matches!(&d.evtchn.lock().abi, EvtchnAbi::Fifo(f) if f.has_control_block(vcpu)) {
        return Err(Errno::EINVAL);
    }
    let page = d.get_writable_page(Gfn(gfn)).map_err(|_| Errno::EINVAL)?;
    let mut t = d.evtchn.lock();
    if let EvtchnAbi::TwoLevel = t.abi {
        let mut f = Fifo::new(d.max_vcpus());
        for (port, _) in t.iter() {
            f.init_port(port);
            if two_level::is_pending(d, port) {
                f.save_pending(port);
            }
        }
        t.abi = EvtchnAbi::Fifo(Box::new(f));
    }
    let EvtchnAbi::Fifo(f) = &mut t.abi else { unreachable!("switched to FIFO above") };
    f.map_control_block(vcpu, page, offset as usize)?;
    const LINK_BITS: u8 = {
        assert!(evtchn_fifo::LINK_BITS <= u8::MAX as u32);
        evtchn_fifo::LINK_BITS as u8
    };
    Ok(LINK_BITS)
}

/// `EVTCHNOP_expand_array`: adds `gfn` as the next event-array page
/// (`-EOPNOTSUPP` before `init_control`, `-ENOSPC` when the array is
/// full, `-EINVAL` for a frame that is not our writable RAM), then raises
/// the newly covered ports that were raised while uncovered.
pub fn expand_array(d: &Domain, gfn: u64) -> XenResult<()> {
    let mut t = d.evtchn.lock();
    let EvtchnAbi::Fifo(f) = &mut t.abi else { return Err(Errno::EOPNOTSUPP) };
    if f.array_full() {
        return Err(Errno::ENOSPC);
    }
    let page = d.get_writable_page(Gfn(gfn)).map_err(|_| Errno::EINVAL)?;
    let covered = f.add_array_page(page)?;
    for port in covered {
        if !t.is_valid(port) {
            break;
        }
        let EvtchnAbi::Fifo(f) = &mut t.abi else { break };
        if f.take_saved_pending(port) && t.get(port).is_some() {
            raise(d, &mut t, port);
        }
    }
    Ok(())
}

/// `EVTCHNOP_set_priority`: `-EINVAL` for an invalid port or a priority
/// above `EVTCHN_FIFO_PRIORITY_MIN`; `-ENOSYS` under 2-level, which has no
/// priorities.
pub fn set_priority(d: &Domain, port: u32, priority: u32) -> XenResult<()> {
    let mut t = d.evtchn.lock();
    channel(&t, port)?;
    match &mut t.abi {
        EvtchnAbi::TwoLevel => Err(Errno::ENOSYS),
        EvtchnAbi::Fifo(f) => f.set_priority(port, priority),
    }
}
