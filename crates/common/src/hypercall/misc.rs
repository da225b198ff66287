//! The smaller hypercalls: `xen_version`, `console_io`, `sched_op`,
//! `memory_op` (add_to_physmap of shared_info), `event_channel_op`, `hvm_op`.

use super::{le_u16, le_u32, le_u64, Call};
use crate::evtchn;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::{consoleio, evtchnop, hvm_param, hvmop, mapspace, memop, schedop, xenfeat, xenver};

const COMPILE: [usize; 4] = xenver::COMPILE_INFO_FIELDS;

pub(super) fn xen_version(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    match cmd {
        xenver::VERSION => Ok(((xenver::LANTERN_MAJOR << 16) | xenver::LANTERN_MINOR) as i64),
        xenver::EXTRAVERSION => copy_strings(call, arg, &[(b"-lantern", xenver::EXTRAVERSION_LEN)]),
        xenver::CHANGESET => copy_strings(call, arg, &[(b"lantern", xenver::CHANGESET_LEN)]),
        xenver::CAPABILITIES => copy_strings(call, arg, &[(b"hvm-3.0", xenver::CAPABILITIES_LEN)]),
        xenver::COMMANDLINE => copy_strings(call, arg, &[(b"", xenver::COMMANDLINE_LEN)]),
        // struct xen_compile_info { char compiler[64], compile_by[16],
        //   compile_domain[32], compile_date[32]; }
        xenver::COMPILE_INFO => copy_strings(
            call,
            arg,
            &[(b"rustc", COMPILE[0]), (b"lantern", COMPILE[1]), (b"", COMPILE[2]), (b"", COMPILE[3])],
        ),
        // struct xen_platform_parameters { xen_ulong_t virt_start; }: no
        // hypervisor hole in an HVM guest's address space.
        xenver::PLATFORM_PARAMETERS => {
            let w = call.domain.abi().xen_ulong_size();
            call.copy_to_guest(arg, &[0u8; 8][..w]).map(|_| 0)
        }
        xenver::GUEST_HANDLE => call.copy_to_guest(arg, &[0u8; xenver::GUEST_HANDLE_LEN]).map(|_| 0),
        xenver::GET_FEATURES => {
            // struct xen_feature_info { unsigned int submap_idx; uint32_t submap; }
            let b: [u8; 8] = call.read_arg(arg)?;
            let idx = le_u32(&b, 0);
            // XENFEAT_hvm_callback_vector (8) and XENFEAT_hvm_safe_pvclock (9).
            let submap: u32 =
                if idx == 0 { (1 << xenfeat::HVM_CALLBACK_VECTOR) | (1 << xenfeat::HVM_SAFE_PVCLOCK) } else { 0 };
            call.copy_to_guest(arg + 4, &submap.to_le_bytes()).map(|_| 0)
        }
        xenver::PAGESIZE => Ok(crate::memory::PAGE_SIZE as i64),
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

/// Longest single console write accepted in one go (Xen chunks likewise).
const CONSOLE_CHUNK: usize = 256;

pub(super) fn console_io(call: &mut Call<'_>, cmd: u64, count: u64, buf: u64) -> XenResult<i64> {
    match cmd {
        consoleio::WRITE => {
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
        consoleio::READ => Ok(0),
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

fn check_self(call: &Call<'_>, domid: u16) -> XenResult<()> {
    if domid == DOMID_SELF || domid == call.domain.id {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

pub(super) fn memory_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd & memop::CMD_MASK {
        memop::ADD_TO_PHYSMAP => {
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
            if space != mapspace::SHARED_INFO {
                return Err(Errno::ENOSYS);
            }
            if idx != 0 {
                return Err(Errno::EINVAL);
            }
            d.map_shared_info(gpfn).map(|_| 0)
        }
        memop::MAXIMUM_RAM_PAGE => Ok(d.p2m.lock().iter().map(|(g, _)| g).max().unwrap_or(0) as i64),
        memop::CURRENT_RESERVATION | memop::MAXIMUM_RESERVATION => {
            let b: [u8; 2] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            Ok(d.p2m.lock().len() as i64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

pub(super) fn event_channel_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        evtchnop::ALLOC_UNBOUND => {
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
        evtchnop::BIND_INTERDOMAIN => {
            // { domid_t remote_dom; evtchn_port_t remote_port; evtchn_port_t local_port (out); }
            let b: [u8; 12] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            let port = evtchn::bind_loopback(d, le_u32(&b, 4))?;
            call.copy_to_guest(arg + 8, &port.to_le_bytes()).map(|_| 0)
        }
        evtchnop::BIND_VIRQ => {
            // { uint32_t virq; uint32_t vcpu; evtchn_port_t port (out); }
            let b: [u8; 12] = call.read_arg(arg)?;
            let port = evtchn::bind_virq(d, le_u32(&b, 0), le_u32(&b, 4))?;
            call.copy_to_guest(arg + 8, &port.to_le_bytes()).map(|_| 0)
        }
        evtchnop::BIND_IPI => {
            // { uint32_t vcpu; evtchn_port_t port (out); }
            let b: [u8; 8] = call.read_arg(arg)?;
            let port = evtchn::bind_ipi(d, le_u32(&b, 0))?;
            call.copy_to_guest(arg + 4, &port.to_le_bytes()).map(|_| 0)
        }
        evtchnop::BIND_VCPU => {
            let b: [u8; 8] = call.read_arg(arg)?;
            evtchn::bind_vcpu(d, le_u32(&b, 0), le_u32(&b, 4)).map(|_| 0)
        }
        evtchnop::SEND | evtchnop::CLOSE | evtchnop::UNMASK => {
            let b: [u8; 4] = call.read_arg(arg)?;
            let port = le_u32(&b, 0);
            match cmd {
                evtchnop::SEND => evtchn::send(d, port),
                evtchnop::CLOSE => evtchn::close(d, port),
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
        hvmop::SET_PARAM | hvmop::GET_PARAM => {
            // struct xen_hvm_param { domid_t domid; uint32_t index; uint64_t value; }
            let b: [u8; 16] = call.read_arg(arg)?;
            check_self(call, le_u16(&b, 0))?;
            let index = le_u32(&b, 4) as usize;
            if cmd == hvmop::SET_PARAM {
                d.set_hvm_param(index, le_u64(&b, 8))?;
                Ok(0)
            } else {
                let v = d.hvm_param(index)?;
                // There is no PV console backend: an unset console ring or
                // port is reported absent, so guests fall back to console_io
                // instead of driving a ring at pfn 0.
                if v == 0 && (index == hvm_param::CONSOLE_PFN as usize || index == hvm_param::CONSOLE_EVTCHN as usize) {
                    return Err(Errno::ENOENT);
                }
                call.copy_to_guest(arg + 8, &v.to_le_bytes()).map(|_| 0)
            }
        }
        hvmop::SET_EVTCHN_UPCALL_VECTOR => {
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
