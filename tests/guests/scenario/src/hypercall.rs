//! The hypercalls the test guests make, each a small named function over
//! [`Guest::hypercall`]: Xen's numbers from `xen_abi::nr`, arguments built as
//! the `xen_abi::public` mirrors, and [`rc_name`] to name a result.

use core::fmt;

use xen_abi::nr::{consoleio, domid, evtchnop, hvmop, hypercall, memop, schedop, vcpuop, xenver};
use xen_abi::public::{
    EvtchnBindVirq, EvtchnPort, SchedPoll, SchedPollHandle32, SchedShutdown, VcpuRegisterArea, VcpuRegisterVcpuInfo,
    VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, VcpuSetSingleshotTimerAlign4, XenHvmParam,
};
use xen_abi::Errno;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

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

/// `VCPUOP_register_runstate_memory_area`: `vcpu`'s runstate area at
/// guest-virtual `va` (0 unregisters). A compat guest's handle is the low 4
/// bytes of the little-endian union, which this argument gives it.
pub fn register_runstate_memory_area(g: &dyn Guest, vcpu: u32, va: u64) -> i64 {
    vcpu_op(g, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, vcpu, VcpuRegisterArea { addr: va }.as_bytes())
}

/// `VCPUOP_register_vcpu_time_memory_area`: `vcpu`'s time area at
/// guest-virtual `va` (0 unregisters).
pub fn register_vcpu_time_memory_area(g: &dyn Guest, vcpu: u32, va: u64) -> i64 {
    vcpu_op(g, vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, vcpu, VcpuRegisterArea { addr: va }.as_bytes())
}

/// `vm_assist(cmd, type)` (`xen_abi::nr::vmasst`).
pub fn vm_assist(g: &dyn Guest, cmd: u64, ty: u32) -> i64 {
    g.hypercall(hypercall::VM_ASSIST, [cmd, ty as u64, 0, 0, 0])
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

/// `EVTCHNOP_bind_virq`: `virq` delivered to `vcpu`; the new port, or a
/// negative errno.
pub fn bind_virq(g: &dyn Guest, virq: u32, vcpu: u32) -> i64 {
    let arg = EvtchnBindVirq { virq, vcpu, port: 0 };
    let gpa = g.gpa_of(arg.as_bytes().as_ptr());
    let rc = g.hypercall(hypercall::EVENT_CHANNEL_OP, [evtchnop::BIND_VIRQ, gpa, 0, 0, 0]);
    if rc != 0 {
        return rc;
    }
    // The hypervisor wrote the port behind the compiler's back: read it
    // back through guest memory, not through `arg`.
    let mut out = EvtchnBindVirq::new_zeroed();
    g.read(gpa, out.as_mut_bytes());
    out.port as i64
}

/// `VCPUOP_set_singleshot_timer` for `vcpu` at absolute system time
/// `timeout_abs_ns`, the struct in `layout`'s shape (12 bytes in x86_32).
pub fn set_singleshot_timer(g: &dyn Guest, layout: &Layout, vcpu: u32, timeout_abs_ns: u64, flags: u32) -> i64 {
    if layout.xen_ulong_size == 4 {
        let arg = VcpuSetSingleshotTimerAlign4 { timeout_abs_ns, flags };
        vcpu_op(g, vcpuop::SET_SINGLESHOT_TIMER, vcpu, arg.as_bytes())
    } else {
        let arg = VcpuSetSingleshotTimer { timeout_abs_ns, flags, pad: 0 };
        vcpu_op(g, vcpuop::SET_SINGLESHOT_TIMER, vcpu, arg.as_bytes())
    }
}

/// `VCPUOP_set_periodic_timer` for `vcpu`.
pub fn set_periodic_timer(g: &dyn Guest, vcpu: u32, period_ns: u64) -> i64 {
    vcpu_op(g, vcpuop::SET_PERIODIC_TIMER, vcpu, VcpuSetPeriodicTimer { period_ns }.as_bytes())
}

/// `VCPUOP_stop_periodic_timer` for `vcpu`.
pub fn stop_periodic_timer(g: &dyn Guest, vcpu: u32) -> i64 {
    vcpu_op(g, vcpuop::STOP_PERIODIC_TIMER, vcpu, &[])
}

/// `set_timer_op(timeout)`: the 64-bit deadline in one register, or as
/// low and high halves in two where the layout is the 32-bit one.
pub fn set_timer_op(g: &dyn Guest, layout: &Layout, timeout: u64) -> i64 {
    let args = if layout.xen_ulong_size == 4 {
        [timeout & 0xFFFF_FFFF, timeout >> 32, 0, 0, 0]
    } else {
        [timeout, 0, 0, 0, 0]
    };
    g.hypercall(hypercall::SET_TIMER_OP, args)
}

/// `sched_op(SCHEDOP_block)`: sleep until an event.
pub fn sched_block(g: &dyn Guest) -> i64 {
    g.hypercall(hypercall::SCHED_OP, [schedop::BLOCK, 0, 0, 0, 0])
}

/// `sched_op(SCHEDOP_poll)` on the one `port`: blocks until it is pending
/// (at once if it already is) or the absolute system time `timeout_ns`.
pub fn sched_poll(g: &dyn Guest, layout: &Layout, port: u32, timeout_ns: u64) -> i64 {
    let ports = [port];
    let list = g.gpa_of(ports.as_bytes().as_ptr());
    if layout.xen_ulong_size == 4 {
        let arg = SchedPollHandle32 { ports: list as u32, nr_ports: 1, timeout: timeout_ns };
        g.hypercall(hypercall::SCHED_OP, [schedop::POLL, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
    } else {
        let arg = SchedPoll { ports: list, nr_ports: 1, pad: 0, timeout: timeout_ns };
        g.hypercall(hypercall::SCHED_OP, [schedop::POLL, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
    }
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

/// `event_channel_op(cmd, &arg)`: the result and the argument struct as
/// the hypervisor left it (read back from guest memory, since it wrote
/// there behind the compiler's back).
pub fn evtchn_op<T: IntoBytes + FromBytes + Immutable>(g: &dyn Guest, cmd: u64, arg: T) -> (i64, T) {
    let gpa = g.gpa_of(arg.as_bytes().as_ptr());
    let rc = g.hypercall(hypercall::EVENT_CHANNEL_OP, [cmd, gpa, 0, 0, 0]);
    let mut out = T::new_zeroed();
    g.read(gpa, out.as_mut_bytes());
    (rc, out)
}

/// `EVTCHNOP_send`, `EVTCHNOP_close` or `EVTCHNOP_unmask` of `port`.
pub fn evtchn_port_op(g: &dyn Guest, cmd: u64, port: u32) -> i64 {
    evtchn_op(g, cmd, EvtchnPort { port }).0
}

/// `memory_op(op)` (`XENMEM_increase_reservation`, `decrease_reservation`,
/// `populate_physmap`) of the calling domain over the order-0 extents at
/// `gfns` (increase_reservation: `count` extents, no list); returns the
/// extents done.
pub fn reservation(g: &dyn Guest, layout: &Layout, op: u64, gfns: &[u64], count: u64) -> i64 {
    // The extent list (up to four) in the layout's xen_pfn_t width.
    let n = gfns.len().min(4);
    let w = layout.xen_ulong_size as usize;
    let mut bytes = [0u8; 32];
    for (i, gfn) in gfns[..n].iter().enumerate() {
        bytes[i * w..(i + 1) * w].copy_from_slice(&gfn.to_le_bytes()[..w]);
    }
    let (start, count) = if n == 0 { (0, count) } else { (g.gpa_of(bytes.as_ptr()), n as u64) };
    let arg = layout.memory_reservation(start, count);
    g.hypercall(hypercall::MEMORY_OP, [op, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
}

/// `memory_op(XENMEM_current_reservation)` or `XENMEM_maximum_reservation`
/// of the calling domain.
pub fn reservation_query(g: &dyn Guest, op: u64) -> i64 {
    let dom = xen_abi::nr::domid::SELF;
    g.hypercall(hypercall::MEMORY_OP, [op, g.gpa_of(dom.as_bytes().as_ptr()), 0, 0, 0])
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
