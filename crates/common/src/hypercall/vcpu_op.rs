//! `vcpu_op`: vCPU bring-up, the guest-area registrations and the PV
//! timers.

use alloc::vec;

use super::{narrow_layout, Call};
use crate::addr::{Gfn, Gva};
use crate::arch::VcpuInitContext;
use crate::area::Placement;
use crate::guest_area;
use crate::lifecycle;
use crate::pv_timer;
use crate::va_area;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::pv_timer::{PERIOD_MIN_NS, STIME_DELTA_MAX};
use xen_abi::nr::vcpuop;
use xen_abi::public::{
    VcpuRegisterArea, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, VcpuSetSingleshotTimerAlign4,
};

/// The guest handle of a `vcpu_register_{runstate,time}_memory_area`
/// argument, as wide as the caller's layout makes it (`addr.h`): Xen's
/// compat handler copies only the 4-byte handle of a 32-bit caller, so the
/// rest of the union is neither read nor required to be mapped.
fn read_area_handle(call: &Call<'_>, arg: u64) -> XenResult<Gva> {
    let abi = call.caller()?.guest_abi(call.domain);
    let handle =
        abi.struct_layout("vcpu_register_runstate_memory_area").and_then(|s| s.field("addr.h")).ok_or(Errno::ENOSYS)?;
    let mut buf = [0u8; 8];
    call.copy_from_guest(arg, &mut buf[..handle.size])?;
    Ok(Gva(u64::from_le_bytes(buf)))
}

/// `HYPERVISOR_vcpu_op(cmd, vcpuid, arg)`.
pub(super) fn vcpu_op(call: &mut Call<'_>, cmd: u64, vcpuid: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    let vcpuid = u32::try_from(vcpuid).map_err(|_| Errno::ENOENT)?;
    let v = d.vcpu(vcpuid)?;
    match cmd {
        vcpuop::INITIALISE => {
            // A vCPU still on the dummy vcpu_info could never see events.
            if v.areas.lock().vcpu_info.placement == Placement::Dummy {
                return Err(Errno::EINVAL);
            }
            let size = call.vcpus.get(vcpuid as usize).ok_or(Errno::ENOENT)?.initialise_arg_size();
            if size == 0 {
                return Err(Errno::ENOSYS);
            }
            // The arch's context struct, copied once; the arch decodes it.
            let mut buf = vec![0u8; size];
            call.copy_from_guest(arg, &mut buf)?;
            let _domain_lock = d.lock.lock();
            if v.is_initialised() {
                return Err(Errno::EEXIST);
            }
            call.vcpus[vcpuid as usize].initialise(&VcpuInitContext::XenInitialise(&buf))?;
            v.set_initialised();
            Ok(0)
        }
        vcpuop::UP => lifecycle::vcpu_up(d, v).map(|_| 0),
        vcpuop::DOWN => {
            lifecycle::vcpu_down(d, v);
            if vcpuid == call.vcpu {
                call.deschedule();
            }
            Ok(0)
        }
        vcpuop::IS_UP => Ok(v.is_up() as i64),
        vcpuop::GET_RUNSTATE_INFO => {
            // Laid out by the layout in force (the compat record is packed).
            let (buf, size) = crate::runstate::encode(d.abi(), &v.runstate());
            call.copy_to_guest(arg, &buf[..size])?;
            Ok(0)
        }
        vcpuop::REGISTER_VCPU_INFO => {
            // `rsvd` is never read, as in Xen: Linux leaves it
            // uninitialised and treats any failure here as fatal.
            let r: VcpuRegisterVcpuInfo = call.read(arg)?;
            guest_area::register_vcpu_info(d, Some(call.vcpu), v, Gfn(r.mfn), r.offset as u64).map(|_| 0)
        }
        vcpuop::REGISTER_RUNSTATE_PHYS_AREA => {
            let r: VcpuRegisterArea = call.read(arg)?;
            guest_area::register_runstate_area(d, Some(call.vcpu), v, r.addr).map(|_| 0)
        }
        vcpuop::REGISTER_RUNSTATE_MEMORY_AREA => {
            let va = read_area_handle(call, arg)?;
            va_area::register_runstate(d, v, va, call.caller()?);
            Ok(0)
        }
        vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA => {
            call.caller()?.time_area_by_va_supported()?;
            let va = read_area_handle(call, arg)?;
            va_area::register_time(d, v, va, call.caller()?);
            Ok(0)
        }
        vcpuop::REGISTER_VCPU_TIME_PHYS_AREA => {
            let r: VcpuRegisterArea = call.read(arg)?;
            guest_area::register_time_area(d, Some(call.vcpu), v, r.addr).map(|_| 0)
        }
        vcpuop::SET_PERIODIC_TIMER => {
            // Any vCPU of the domain may set any one's periodic timer.
            let VcpuSetPeriodicTimer { period_ns } = call.read(arg)?;
            if !(PERIOD_MIN_NS..=STIME_DELTA_MAX).contains(&period_ns) {
                return Err(Errno::EINVAL);
            }
            pv_timer::set_periodic(d, v, period_ns);
            Ok(0)
        }
        vcpuop::STOP_PERIODIC_TIMER => {
            pv_timer::set_periodic(d, v, 0);
            Ok(0)
        }
        vcpuop::SET_SINGLESHOT_TIMER => {
            // Only a vCPU's own single-shot timer. The compat entry reads its
            // narrower struct before the native op checks the vCPU, so a bad
            // pointer wins there; natively the vCPU check comes first.
            let timeout = if narrow_layout(call)? {
                let a: VcpuSetSingleshotTimerAlign4 = call.read(arg)?;
                own_vcpu(call, vcpuid)?;
                a.timeout_abs_ns
            } else {
                own_vcpu(call, vcpuid)?;
                let a: VcpuSetSingleshotTimer = call.read(arg)?;
                a.timeout_abs_ns
            };
            // `flags` (VCPU_SSHOTTMR_future) is ignored, as Xen ignores it.
            pv_timer::set_singleshot(d, v, timeout);
            Ok(0)
        }
        vcpuop::STOP_SINGLESHOT_TIMER => {
            own_vcpu(call, vcpuid)?;
            pv_timer::stop_singleshot(v);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Xen's `v != current` rule of the single-shot ops: `-EINVAL`.
fn own_vcpu(call: &Call<'_>, vcpuid: u32) -> XenResult<()> {
    if vcpuid == call.vcpu {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}
