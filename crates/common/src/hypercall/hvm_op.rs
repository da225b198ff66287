//! `hvm_op`: HVM parameters and the per-vCPU upcall vector.

use super::{check_self, Call};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::{hvm_param, hvmop};
use xen_abi::public::{XenHvmEvtchnUpcallVector, XenHvmParam};

pub(super) fn hvm_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        hvmop::SET_PARAM | hvmop::GET_PARAM => {
            let mut p: XenHvmParam = call.read(arg)?;
            if p.index >= hvm_param::NR_PARAMS {
                return Err(Errno::EINVAL);
            }
            check_self(call, p.domid)?;
            call.caller()?.hvm_param_access(p.index, cmd == hvmop::SET_PARAM)?;
            let index = p.index as usize;
            if cmd == hvmop::SET_PARAM {
                d.set_hvm_param(index, p.value)?;
                Ok(0)
            } else {
                let v = d.hvm_param(index)?;
                // A domain built without a PV console (`pv_console::attach`)
                // has these unset: reported absent, so the guest falls back
                // to console_io instead of driving a ring at pfn 0. The
                // backend keeps its own copy, so a guest rewriting them
                // changes only what it reads back.
                if v == 0 && (index == hvm_param::CONSOLE_PFN as usize || index == hvm_param::CONSOLE_EVTCHN as usize) {
                    return Err(Errno::ENOENT);
                }
                p.value = v;
                call.write(arg, &p).map(|_| 0)
            }
        }
        hvmop::SET_EVTCHN_UPCALL_VECTOR => {
            let XenHvmEvtchnUpcallVector { vcpu, vector, .. } = call.read(arg)?;
            // Whether the vector can carry upcalls, and whether the arch
            // has per-vCPU upcall vectors at all, is the arch's to say.
            call.caller()?.check_upcall_vector(vector)?;
            d.vcpu(vcpu)?.set_upcall_vector(vector);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
