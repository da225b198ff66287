//! The smaller hypercalls: `xen_version`, `console_io`, `sched_op`,
//! `memory_op` (add_to_physmap of shared_info), `event_channel_op`, `hvm_op`.

use super::{hvm, le_u16, le_u32, le_u64, schedop, Call};
use crate::errno::{Errno, XenResult};
use crate::evtchn;
use crate::memory::DOMID_SELF;

/// Xen version Lantern reports (the interface it follows).
pub const XEN_VERSION_MAJOR: u32 = 4;
/// Minor version.
pub const XEN_VERSION_MINOR: u32 = 19;

const XENVER_VERSION: u64 = 0;
const XENVER_EXTRAVERSION: u64 = 1;
const XENVER_COMPILE_INFO: u64 = 2;
const XENVER_CAPABILITIES: u64 = 3;
const XENVER_CHANGESET: u64 = 4;
const XENVER_PLATFORM_PARAMETERS: u64 = 5;
const XENVER_GET_FEATURES: u64 = 6;
const XENVER_PAGESIZE: u64 = 7;
const XENVER_GUEST_HANDLE: u64 = 8;
const XENVER_COMMANDLINE: u64 = 9;

pub(super) fn xen_version(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    match cmd {
        XENVER_VERSION => Ok(((XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR) as i64),
        XENVER_EXTRAVERSION => copy_strings(call, arg, &[(b"-lantern", 16)]),
        XENVER_CHANGESET => copy_strings(call, arg, &[(b"lantern", 64)]),
        XENVER_CAPABILITIES => copy_strings(call, arg, &[(b"hvm-3.0", 1024)]),
        XENVER_COMMANDLINE => copy_strings(call, arg, &[(b"", 1024)]),
        // struct xen_compile_info { char compiler[64], compile_by[16],
        //   compile_domain[32], compile_date[32]; }
        XENVER_COMPILE_INFO => copy_strings(call, arg, &[(b"rustc", 64), (b"lantern", 16), (b"", 32), (b"", 32)]),
        // struct xen_platform_parameters { xen_ulong_t virt_start; }: no
        // hypervisor hole in an HVM guest's address space.
        XENVER_PLATFORM_PARAMETERS => {
            let w = call.domain.abi().xen_ulong_size();
            call.copy_to_guest(arg, &[0u8; 8][..w]).map(|_| 0)
        }
        XENVER_GUEST_HANDLE => call.copy_to_guest(arg, &[0u8; 16]).map(|_| 0),
        XENVER_GET_FEATURES => {
            // struct xen_feature_info { unsigned int submap_idx; uint32_t submap; }
            let b: [u8; 8] = call.read_arg(arg)?;
            let idx = le_u32(&b, 0);
            // XENFEAT_hvm_callback_vector (8) and XENFEAT_hvm_safe_pvclock (9).
            let submap: u32 = if idx == 0 { (1 << 8) | (1 << 9) } else { 0 };
            call.copy_to_guest(arg + 4, &submap.to_le_bytes()).map(|_| 0)
        }
        XENVER_PAGESIZE => Ok(crate::memory::PAGE_SIZE as i64),
        _ => Err(Errno::ENOSYS),
    }
}

/// Copies fixed-size, NUL-padded string fields (Xen clears each whole field,
/// so a guest never sees stale bytes past the string).
fn copy_strings(call: &mut Call<'_>, arg: u64, fields: &[(&[u8], usize)]) -> XenResult<i64> {
    let mut buf = [0u8; 1024];
    let mut at = 0;
    for (text, size) in fields {
        let n = text.len().min(size - 1);
        buf[at..at + n].copy_from_slice(&text[..n]);
        at += size;
    }
    call.copy_to_guest(arg, &buf[..at]).map(|_| 0)
}

const CONSOLEIO_WRITE: u64 = 0;
const CONSOLEIO_READ: u64 = 1;
/// Longest single console write accepted in one go (Xen chunks likewise).
const CONSOLE_CHUNK: usize = 256;

pub(super) fn console_io(call: &mut Call<'_>, cmd: u64, count: u64, buf: u64) -> XenResult<i64> {
    match cmd {
        CONSOLEIO_WRITE => {
            let count = usize::try_from(count).map_err(|_| Errno::EINVAL)?;
            if count > 64 * 1024 {
                return Err(Errno::EINVAL);
            }
            let mut chunk = [0u8; CONSOLE_CHUNK];
            let mut done = 0;
            while done < count {
                let n = (count - done).min(CONSOLE_CHUNK);
                call.copy_from_guest(buf + done as u64, &mut chunk[..n])?;
                call.domain.console.lock().write(&chunk[..n]);
                done += n;
            }
            Ok(0)
        }
        CONSOLEIO_READ => Ok(0),
        _ => Err(Errno::ENOSYS),
    }
}

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
            // struct sched_shutdown { unsigned int reason; }
            let b: [u8; 4] = call.read_arg(arg)?;
            d.shutdown(le_u32(&b, 0));
            call.deschedule();
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
const XENMEM_CURRENT_RESERVATION: u64 = 3;
const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// The low bits of a memory_op command; the rest carry continuation state.
const MEMOP_CMD_MASK: u64 = (1 << 6) - 1;

fn check_self(call: &Call<'_>, domid: u16) -> XenResult<()> {
    if domid == DOMID_SELF || domid == call.domain.id {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

pub(super) fn memory_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd & MEMOP_CMD_MASK {
        XENMEM_ADD_TO_PHYSMAP => {
            // struct xen_add_to_physmap { domid_t domid; uint16_t size;
            //   unsigned int space; xen_ulong_t idx; xen_pfn_t gpfn; }
            // idx/gpfn are xen_ulong_t-sized: 8 bytes native, 4 in compat.
            let w = d.abi().xen_ulong_size();
            let mut b = [0u8; 24];
            call.copy_from_guest(arg, &mut b[..8 + 2 * w])?;
            check_self(call, le_u16(&b, 0))?;
            let space = le_u32(&b, 4);
            let (idx, gpfn) =
                if w == 8 { (le_u64(&b, 8), le_u64(&b, 16)) } else { (le_u32(&b, 8) as u64, le_u32(&b, 12) as u64) };
            if space != XENMAPSPACE_SHARED_INFO {
                return Err(Errno::ENOSYS);
            }
            if idx != 0 {
                return Err(Errno::EINVAL);
            }
            d.map_shared_info(gpfn).map(|_| 0)
        }
        XENMEM_MAXIMUM_RAM_PAGE => Ok(d.p2m.lock().iter().map(|(g, _)| g).max().unwrap_or(0) as i64),
        XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
            let b: [u8; 2] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            Ok(d.p2m.lock().len() as i64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
const EVTCHNOP_BIND_VIRQ: u64 = 1;
const EVTCHNOP_CLOSE: u64 = 3;
const EVTCHNOP_SEND: u64 = 4;
const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
const EVTCHNOP_BIND_IPI: u64 = 7;
const EVTCHNOP_BIND_VCPU: u64 = 8;
const EVTCHNOP_UNMASK: u64 = 9;

pub(super) fn event_channel_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => {
            // { domid_t dom, remote_dom; evtchn_port_t port (out); }
            let b: [u8; 8] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            let remote = match le_u16(&b, 2) {
                DOMID_SELF => d.id,
                r => r,
            };
            let port = evtchn::alloc_unbound(d, remote)?;
            call.copy_to_guest(arg + 4, &port.to_le_bytes()).map(|_| 0)
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            // { domid_t remote_dom; evtchn_port_t remote_port; evtchn_port_t local_port (out); }
            let b: [u8; 12] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            let port = evtchn::bind_loopback(d, le_u32(&b, 4))?;
            call.copy_to_guest(arg + 8, &port.to_le_bytes()).map(|_| 0)
        }
        EVTCHNOP_BIND_VIRQ => {
            // { uint32_t virq; uint32_t vcpu; evtchn_port_t port (out); }
            let b: [u8; 12] = call.read_arg(arg)?;
            let port = evtchn::bind_virq(d, le_u32(&b, 0), le_u32(&b, 4))?;
            call.copy_to_guest(arg + 8, &port.to_le_bytes()).map(|_| 0)
        }
        EVTCHNOP_BIND_IPI => {
            // { uint32_t vcpu; evtchn_port_t port (out); }
            let b: [u8; 8] = call.read_arg(arg)?;
            let port = evtchn::bind_ipi(d, le_u32(&b, 0))?;
            call.copy_to_guest(arg + 4, &port.to_le_bytes()).map(|_| 0)
        }
        EVTCHNOP_BIND_VCPU => {
            let b: [u8; 8] = call.read_arg(arg)?;
            evtchn::bind_vcpu(d, le_u32(&b, 0), le_u32(&b, 4)).map(|_| 0)
        }
        EVTCHNOP_SEND | EVTCHNOP_CLOSE | EVTCHNOP_UNMASK => {
            let b: [u8; 4] = call.read_arg(arg)?;
            let port = le_u32(&b, 0);
            match cmd {
                EVTCHNOP_SEND => evtchn::send(d, port),
                EVTCHNOP_CLOSE => evtchn::close(d, port),
                _ => evtchn::unmask(d, port),
            }
            .map(|_| 0)
        }
        _ => Err(Errno::ENOSYS),
    }
}

pub(super) fn hvm_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        hvm::SET_PARAM | hvm::GET_PARAM => {
            // struct xen_hvm_param { domid_t domid; uint32_t index; uint64_t value; }
            let b: [u8; 16] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            let index = le_u32(&b, 4) as usize;
            if cmd == hvm::SET_PARAM {
                d.set_hvm_param(index, le_u64(&b, 8))?;
                Ok(0)
            } else {
                let v = d.hvm_param(index)?;
                // There is no PV console backend: an unset console ring or
                // port is reported absent, so guests fall back to console_io
                // instead of driving a ring at pfn 0.
                if v == 0 && (index == hvm::PARAM_CONSOLE_PFN || index == hvm::PARAM_CONSOLE_EVTCHN) {
                    return Err(Errno::ENOENT);
                }
                call.copy_to_guest(arg + 8, &v.to_le_bytes()).map(|_| 0)
            }
        }
        hvm::SET_EVTCHN_UPCALL_VECTOR => {
            // struct xen_hvm_evtchn_upcall_vector { uint32_t vcpu; uint8_t vector; }
            let b: [u8; 5] = call.read_arg(arg)?;
            let vector = b[4];
            // Vectors below 0x10 are exceptions, not interrupts.
            if vector < 0x10 {
                return Err(Errno::EINVAL);
            }
            d.vcpu(le_u32(&b, 0))?.set_upcall_vector(vector);
            Ok(0)
        }
        _ => Err(Errno::ENOSYS),
    }
}
