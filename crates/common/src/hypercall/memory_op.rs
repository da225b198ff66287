//! `memory_op`: mapping shared_info and grant frames into the physmap, and
//! the reservation queries.

use super::{check_self, Call};
use crate::addr::Gfn;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::{mapspace, memop};
use xen_abi::public::{XenAddToPhysmap, XenAddToPhysmapUlong32};

pub(super) fn memory_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd & memop::CMD_MASK {
        memop::ADD_TO_PHYSMAP => {
            // Xen latches the shared_info layout (native or compat) from the
            // caller's mode when shared_info is mapped; the argument's shape
            // (xen_ulong_t idx and gpfn) follows the same mode.
            let abi = call.caller()?.guest_abi(d);
            let (domid, space, idx, gpfn) = if abi.xen_ulong_size() == 8 {
                let a: XenAddToPhysmap = call.read(arg)?;
                (a.domid, a.space, a.idx, a.gpfn)
            } else {
                let a: XenAddToPhysmapUlong32 = call.read(arg)?;
                (a.domid, a.space, a.idx as u64, a.gpfn as u64)
            };
            check_self(call, domid)?;
            if space == mapspace::GRANT_TABLE {
                return crate::grant_table::map_frame(d, idx, Gfn(gpfn)).map(|_| 0);
            }
            if space != mapspace::SHARED_INFO {
                return Err(Errno::ENOSYS);
            }
            if idx != 0 {
                return Err(Errno::EINVAL);
            }
            if let Ok(true) = d.latch_abi(abi) {
                log::info!("d{}: {} guest ABI latched", d.id, abi.name());
            }
            d.map_shared_info(Gfn(gpfn)).map(|_| 0)
        }
        memop::MAXIMUM_RAM_PAGE => Ok(d.p2m.lock().iter().map(|(g, _)| g.0).max().unwrap_or(0) as i64),
        memop::CURRENT_RESERVATION | memop::MAXIMUM_RESERVATION => {
            let domid: u16 = call.read(arg)?;
            check_self(call, domid)?;
            Ok(d.p2m.lock().len() as i64)
        }
        _ => Err(Errno::ENOSYS),
    }
}
