//! `sched_op`: yield, block and shutdown.

use super::Call;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::schedop;
use xen_abi::public::SchedShutdown;

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
            d.shutdown(r.reason);
            call.deschedule();
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
