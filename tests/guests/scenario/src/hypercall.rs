//! The hypercalls the test guests make, each a small named function over
//! [`Guest::hypercall`]: Xen's numbers from `xen_abi::nr`, arguments built as
//! the `xen_abi::public` mirrors, and [`rc_name`] to name a result.

use core::fmt;

use xen_abi::nr::{consoleio, domid, evtchnop, hvmop, hypercall, memop, schedop, vcpuop, xenver};
use xen_abi::public::{EvtchnPort, SchedShutdown, VcpuRegisterArea, VcpuRegisterVcpuInfo, XenHvmParam};
use xen_abi::Errno;
use zerocopy::IntoBytes;

use crate::{Guest, Layout};

/// `vcpu_op(cmd, vcpu, arg)`; an empty `arg` is passed as a null handle.
pub fn vcpu_op(g: &dyn Guest, cmd: u64, vcpu: u32, arg: &[u8]) -> i64 {
    let p = if arg.is_empty() { 0 } else { g.gpa_of(arg.as_ptr()) };
    g.hypercall(hypercall::VCPU_OP, [cmd, vcpu as u64, p, 0, 0])
}

/// `VCPUOP_register_vcpu_info`: `vcpu`'s vcpu_info at `offset` in frame `gfn`.
pub fn register_vcpu_info(g: &dyn Guest, vcpu: u32, gfn: u64, offset: u32) -> i64 {
    let arg = VcpuRegisterVcpuInfo { mfn: gfn, offset, rsvd: 0 };
    vcpu_op(g, vcpuop::REGISTER_VCPU_INFO, vcpu, arg.as_bytes())
}

/// `VCPUOP_register_runstate_phys_area`: `vcpu`'s runstate area at `gpa`.
pub fn register_runstate_phys_area(g: &dyn Guest, vcpu: u32, gpa: u64) -> i64 {
    vcpu_op(g, vcpuop::REGISTER_RUNSTATE_PHYS_AREA, vcpu, VcpuRegisterArea { addr: gpa }.as_bytes())
}

/// `VCPUOP_register_vcpu_time_phys_area`: `vcpu`'s time area at `gpa`.
pub fn register_vcpu_time_phys_area(g: &dyn Guest, vcpu: u32, gpa: u64) -> i64 {
    vcpu_op(g, vcpuop::REGISTER_VCPU_TIME_PHYS_AREA, vcpu, VcpuRegisterArea { addr: gpa }.as_bytes())
}

/// `VCPUOP_is_up`: 1 or 0, `-ENOENT` past the domain's last vCPU.
pub fn vcpu_is_up(g: &dyn Guest, vcpu: u32) -> i64 {
    vcpu_op(g, vcpuop::IS_UP, vcpu, &[])
}

/// `VCPUOP_up`.
pub fn vcpu_up(g: &dyn Guest, vcpu: u32) -> i64 {
    vcpu_op(g, vcpuop::UP, vcpu, &[])
}

/// `VCPUOP_down`.
pub fn vcpu_down(g: &dyn Guest, vcpu: u32) -> i64 {
    vcpu_op(g, vcpuop::DOWN, vcpu, &[])
}

/// `sched_op(SCHEDOP_yield)`.
pub fn sched_yield(g: &dyn Guest) -> i64 {
    g.hypercall(hypercall::SCHED_OP, [schedop::YIELD, 0, 0, 0, 0])
}

/// `sched_op(SCHEDOP_shutdown)` with a `SHUTDOWN_*` reason; returns only if
/// the hypervisor refuses.
pub fn sched_shutdown(g: &dyn Guest, reason: u32) -> i64 {
    let arg = SchedShutdown { reason };
    g.hypercall(hypercall::SCHED_OP, [schedop::SHUTDOWN, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
}

/// `xen_version(XENVER_version)`: `major << 16 | minor`.
pub fn xen_version(g: &dyn Guest) -> i64 {
    g.hypercall(hypercall::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0])
}

/// A `XENVER_version` result (or the x86 CPUID version leaf, which
/// encodes it the same way), displayed as `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minor_mask = (1 << xenver::VERSION_MAJOR_SHIFT) - 1;
        write!(f, "{}.{}", self.0 >> xenver::VERSION_MAJOR_SHIFT, self.0 & minor_mask)
    }
}

/// `hvm_op(HVMOP_get_param)` of our own parameter `index`: its value, or
/// the failing result.
pub fn hvm_get_param(g: &dyn Guest, index: u32) -> Result<u64, i64> {
    let arg = XenHvmParam { domid: domid::SELF, pad: 0, index, value: 0 };
    let gpa = g.gpa_of(arg.as_bytes().as_ptr());
    let rc = g.hypercall(hypercall::HVM_OP, [hvmop::GET_PARAM, gpa, 0, 0, 0]);
    // Read back through guest memory: the hypervisor wrote `value` behind
    // the compiler's back.
    let mut out = XenHvmParam::default();
    g.read(gpa, out.as_mut_bytes());
    if rc == 0 {
        Ok(out.value)
    } else {
        Err(rc)
    }
}

/// `event_channel_op(EVTCHNOP_send)` on `port`.
pub fn evtchn_send(g: &dyn Guest, port: u32) -> i64 {
    let arg = EvtchnPort { port };
    g.hypercall(hypercall::EVENT_CHANNEL_OP, [evtchnop::SEND, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
}

/// `console_io(CONSOLEIO_write)` of `bytes`.
pub fn console_write(g: &dyn Guest, bytes: &[u8]) -> i64 {
    g.hypercall(hypercall::CONSOLE_IO, [consoleio::WRITE, bytes.len() as u64, g.gpa_of(bytes.as_ptr()), 0, 0])
}

/// `memory_op(XENMEM_add_to_physmap)`: map shared_info at frame `gfn`, with
/// the argument in `layout`'s shape.
pub fn add_to_physmap_shared_info(g: &dyn Guest, layout: &Layout, gfn: u64) -> i64 {
    let arg = layout.add_to_physmap_shared_info(gfn);
    g.hypercall(hypercall::MEMORY_OP, [memop::ADD_TO_PHYSMAP, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
}

/// A hypercall result as failure reasons name it: `0`, `-EINVAL` (any errno
/// Xen defines), `positive`, or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcName(pub i64);

/// Name the result `rc` (for `{}` in failure reasons).
pub fn rc_name(rc: i64) -> RcName {
    RcName(rc)
}

impl fmt::Display for RcName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("0"),
            rc if rc > 0 => f.write_str("positive"),
            rc => match Errno::from_hypercall_ret(rc).filter(|e| Errno::ALL.contains(e)) {
                Some(e) => write!(f, "-{}", e.name()),
                None => f.write_str("other"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_vcpu_info_encoding() {
        // The mirror this module sends must be Xen's byte layout:
        // `{ uint64_t mfn; uint32_t offset; uint32_t rsvd; }`.
        let arg = VcpuRegisterVcpuInfo { mfn: 0x1234, offset: 0x40, rsvd: 0 };
        let b = arg.as_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x1234);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 0x40);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 0, "rsvd");
    }

    #[test]
    fn version_as_major_dot_minor() {
        assert_eq!(
            format!(
                "{}",
                Version(u64::from((xenver::LANTERN_MAJOR << xenver::VERSION_MAJOR_SHIFT) | xenver::LANTERN_MINOR))
            ),
            "4.19"
        );
    }

    #[test]
    fn rc_names() {
        assert_eq!(format!("{}", rc_name(0)), "0");
        assert_eq!(format!("{}", rc_name(3)), "positive");
        assert_eq!(format!("{}", rc_name(Errno::ENXIO.to_hypercall_ret())), "-ENXIO");
        assert_eq!(format!("{}", rc_name(Errno::EBUSY.to_hypercall_ret())), "-EBUSY");
        assert_eq!(format!("{}", rc_name(-4000)), "other", "in the errno range, but not an errno Xen defines");
        assert_eq!(format!("{}", rc_name(-5000)), "other");
    }
}
