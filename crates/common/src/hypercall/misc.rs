//! The smaller hypercalls: `xen_version`, `console_io`, `sched_op`,
//! `memory_op` (add_to_physmap of shared_info), `event_channel_op`, `hvm_op`.

use zerocopy::IntoBytes;

use super::Call;
use crate::addr::Gfn;
use crate::evtchn;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::{consoleio, evtchnop, hvm_param, hvmop, mapspace, memop, schedop, xenfeat, xenver};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq, EvtchnPort,
    SchedShutdown, XenAddToPhysmap, XenAddToPhysmapUlong32, XenFeatureInfo, XenHvmEvtchnUpcallVector, XenHvmParam,
};

const COMPILE: [usize; 4] = xenver::COMPILE_INFO_FIELDS;

pub(super) fn xen_version(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    match cmd {
        xenver::VERSION => Ok(((xenver::LANTERN_MAJOR << xenver::VERSION_MAJOR_SHIFT) | xenver::LANTERN_MINOR) as i64),
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
            let info: XenFeatureInfo = call.read(arg)?;
            // Like Xen: only the submaps that exist; their bits are the
            // arch's (and guest type's) to say.
            if info.submap_idx >= xenfeat::NR_SUBMAPS {
                return Err(Errno::EINVAL);
            }
            let submap = call.caller()?.xen_features(info.submap_idx);
            // Like Xen, only the `submap` field goes back to the guest.
            let at = core::mem::offset_of!(XenFeatureInfo, submap) as u64;
            call.copy_to_guest(arg.wrapping_add(at), submap.as_bytes()).map(|_| 0)
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
            let r: SchedShutdown = call.read(arg)?;
            d.shutdown(r.reason);
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

pub(super) fn event_channel_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    match cmd {
        evtchnop::ALLOC_UNBOUND => {
            let mut a: EvtchnAllocUnbound = call.read(arg)?;
            check_self(call, a.dom)?;
            let remote = match a.remote_dom {
                DOMID_SELF => d.id,
                r => r,
            };
            a.port = evtchn::alloc_unbound(d, remote)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_INTERDOMAIN => {
            let mut a: EvtchnBindInterdomain = call.read(arg)?;
            check_self(call, a.remote_dom)?;
            a.local_port = evtchn::bind_loopback(d, a.remote_port)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_VIRQ => {
            let mut a: EvtchnBindVirq = call.read(arg)?;
            a.port = evtchn::bind_virq(d, a.virq, a.vcpu)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_IPI => {
            let mut a: EvtchnBindIpi = call.read(arg)?;
            a.port = evtchn::bind_ipi(d, a.vcpu)?;
            call.write(arg, &a).map(|_| 0)
        }
        evtchnop::BIND_VCPU => {
            let a: EvtchnBindVcpu = call.read(arg)?;
            evtchn::bind_vcpu(d, a.port, a.vcpu).map(|_| 0)
        }
        evtchnop::SEND | evtchnop::CLOSE | evtchnop::UNMASK => {
            let EvtchnPort { port } = call.read(arg)?;
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
            let mut p: XenHvmParam = call.read(arg)?;
            check_self(call, p.domid)?;
            let index = p.index as usize;
            if cmd == hvmop::SET_PARAM {
                d.set_hvm_param(index, p.value)?;
                Ok(0)
            } else {
                let v = d.hvm_param(index)?;
                // There is no PV console backend: an unset console ring or
                // port is reported absent, so guests fall back to console_io
                // instead of driving a ring at pfn 0.
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
