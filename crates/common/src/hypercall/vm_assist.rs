//! `vm_assist`: the per-domain assists a guest turns on and off.

use super::Call;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::vmasst;

/// `HYPERVISOR_vm_assist(cmd, type)`. Both arguments are C `unsigned int`s:
/// the upper halves of the registers are not part of them. A type outside
/// the arch's valid mask is `-EINVAL` whatever the command; an unknown
/// command for a valid type is `-ENOSYS`.
pub(super) fn vm_assist(call: &mut Call<'_>, cmd: u64, ty: u64) -> XenResult<i64> {
    let (cmd, ty) = (cmd as u32 as u64, ty as u32);
    let valid = call.caller()?.vm_assist_valid_mask();
    if ty >= u64::BITS || valid & (1 << ty) == 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        vmasst::CMD_ENABLE => call.domain.set_vm_assist(ty, true),
        vmasst::CMD_DISABLE => call.domain.set_vm_assist(ty, false),
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}
