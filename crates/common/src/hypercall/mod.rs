//! Arch-neutral hypercall dispatch in Xen's numbering. The arch backend only
//! extracts the number and arguments from the guest's registers (its calling
//! convention) and stores the result; everything else happens here.

mod misc;
mod vcpu_op;

use alloc::boxed::Box;

use crate::arch::ArchVcpu;
use crate::domain::Domain;
use crate::errno::{Errno, XenResult};

pub use misc::{XEN_VERSION_MAJOR, XEN_VERSION_MINOR};

/// Hypercall numbers (`__HYPERVISOR_*`).
pub mod nr {
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u64 = 12;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u64 = 17;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u64 = 18;
    /// `__HYPERVISOR_vm_assist`.
    pub const VM_ASSIST: u64 = 21;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u64 = 24;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: u64 = 29;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// `__HYPERVISOR_hvm_op`.
    pub const HVM_OP: u64 = 34;
}

/// `VCPUOP_*` sub-commands.
pub mod vcpuop {
    /// `VCPUOP_initialise`.
    pub const INITIALISE: u64 = 0;
    /// `VCPUOP_up`.
    pub const UP: u64 = 1;
    /// `VCPUOP_down`.
    pub const DOWN: u64 = 2;
    /// `VCPUOP_is_up`.
    pub const IS_UP: u64 = 3;
    /// `VCPUOP_get_runstate_info`.
    pub const GET_RUNSTATE_INFO: u64 = 4;
    /// `VCPUOP_register_vcpu_info`.
    pub const REGISTER_VCPU_INFO: u64 = 10;
    /// `VCPUOP_register_runstate_phys_area`.
    pub const REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
    /// `VCPUOP_register_vcpu_time_phys_area`.
    pub const REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;
}

/// `SCHEDOP_*` and `SHUTDOWN_*`.
pub mod schedop {
    /// `SCHEDOP_yield`.
    pub const YIELD: u64 = 0;
    /// `SCHEDOP_block`.
    pub const BLOCK: u64 = 1;
    /// `SCHEDOP_shutdown`.
    pub const SHUTDOWN: u64 = 2;
    /// `SHUTDOWN_poweroff`: a clean exit.
    pub const SHUTDOWN_POWEROFF: u32 = 0;
    /// `SHUTDOWN_reboot`.
    pub const SHUTDOWN_REBOOT: u32 = 1;
    /// `SHUTDOWN_crash`.
    pub const SHUTDOWN_CRASH: u32 = 3;

    /// Xen's name of a `SHUTDOWN_*` reason.
    pub fn shutdown_reason_name(reason: u32) -> &'static str {
        match reason {
            0 => "poweroff",
            1 => "reboot",
            2 => "suspend",
            3 => "crash",
            4 => "watchdog",
            5 => "soft_reset",
            _ => "unknown",
        }
    }
}

/// HVM parameter indices and `HVMOP_*`.
pub mod hvm {
    /// `HVMOP_set_param`.
    pub const SET_PARAM: u64 = 0;
    /// `HVMOP_get_param`.
    pub const GET_PARAM: u64 = 1;
    /// `HVMOP_set_evtchn_upcall_vector`.
    pub const SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
    /// `HVM_PARAM_CALLBACK_IRQ`: bits 63:56 the type (2 = vector on x86,
    /// 3 = PPI on arm), low bits the vector/PPI.
    pub const PARAM_CALLBACK_IRQ: usize = 0;
    /// `HVM_PARAM_STORE_PFN`.
    pub const PARAM_STORE_PFN: usize = 1;
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub const PARAM_STORE_EVTCHN: usize = 2;
    /// `HVM_PARAM_CONSOLE_PFN`.
    pub const PARAM_CONSOLE_PFN: usize = 17;
    /// `HVM_PARAM_CONSOLE_EVTCHN`.
    pub const PARAM_CONSOLE_EVTCHN: usize = 18;
}

/// What the scheduler should do after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Value for the guest's return register.
    pub ret: i64,
    /// The calling vCPU gave up the CPU (yield, block, shutdown, down).
    pub deschedule: bool,
}

/// One hypercall in flight: the calling domain and vCPU, and the arch
/// contexts of all the domain's vCPUs (the caller's translates guest-virtual
/// argument pointers; `VCPUOP_initialise` loads another's).
pub struct Call<'a> {
    /// Calling domain.
    pub domain: &'a Domain,
    /// Calling vCPU id.
    pub vcpu: u32,
    /// Arch contexts of the domain's vCPUs, indexed by vCPU id.
    pub arch: &'a mut [Box<dyn ArchVcpu>],
    deschedule: bool,
}

impl<'a> Call<'a> {
    /// A call from `vcpu` of `domain`.
    pub fn new(domain: &'a Domain, vcpu: u32, arch: &'a mut [Box<dyn ArchVcpu>]) -> Self {
        Call { domain, vcpu, arch, deschedule: false }
    }

    fn caller_arch(&self) -> XenResult<&dyn ArchVcpu> {
        self.arch.get(self.vcpu as usize).map(|b| &**b).ok_or(Errno::EFAULT)
    }

    /// `copy_from_guest`: reads through the caller's page tables.
    pub fn copy_from_guest(&self, gva: u64, out: &mut [u8]) -> XenResult<()> {
        let arch = self.caller_arch()?;
        let mut done = 0;
        while done < out.len() {
            let va = gva.checked_add(done as u64).ok_or(Errno::EFAULT)?;
            let chunk = (crate::memory::PAGE_SIZE - (va as usize & 0xfff)).min(out.len() - done);
            let gpa = arch.translate(self.domain, va, false).map_err(|_| Errno::EFAULT)?;
            self.domain.read_gpa(gpa, &mut out[done..done + chunk]).map_err(|_| Errno::EFAULT)?;
            done += chunk;
        }
        Ok(())
    }

    /// `copy_to_guest`: writes through the caller's page tables.
    pub fn copy_to_guest(&self, gva: u64, data: &[u8]) -> XenResult<()> {
        let arch = self.caller_arch()?;
        let mut done = 0;
        while done < data.len() {
            let va = gva.checked_add(done as u64).ok_or(Errno::EFAULT)?;
            let chunk = (crate::memory::PAGE_SIZE - (va as usize & 0xfff)).min(data.len() - done);
            let gpa = arch.translate(self.domain, va, true).map_err(|_| Errno::EFAULT)?;
            self.domain.write_gpa(gpa, &data[done..done + chunk]).map_err(|_| Errno::EFAULT)?;
            done += chunk;
        }
        Ok(())
    }

    /// Reads a fixed-size argument struct.
    pub fn read_arg<const N: usize>(&self, gva: u64) -> XenResult<[u8; N]> {
        let mut b = [0u8; N];
        self.copy_from_guest(gva, &mut b)?;
        Ok(b)
    }

    /// Marks the caller as giving up the CPU.
    pub fn deschedule(&mut self) {
        self.deschedule = true;
    }
}

/// Little-endian field readers for argument structs.
pub(crate) fn le_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
pub(crate) fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap_or([0; 4]))
}
pub(crate) fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]))
}

/// Dispatches hypercall `nr` with `args` for `call`. Never panics on guest
/// input: unknown numbers give `-ENOSYS`, bad arguments their Xen errno.
pub fn dispatch(call: &mut Call<'_>, nr: u64, args: [u64; 6]) -> Outcome {
    let r = match nr {
        nr::VCPU_OP => vcpu_op::vcpu_op(call, args[0], args[1], args[2]),
        nr::XEN_VERSION => misc::xen_version(call, args[0], args[1]),
        nr::CONSOLE_IO => misc::console_io(call, args[0], args[1], args[2]),
        nr::SCHED_OP => misc::sched_op(call, args[0], args[1]),
        nr::MEMORY_OP => misc::memory_op(call, args[0], args[1]),
        nr::EVENT_CHANNEL_OP => misc::event_channel_op(call, args[0], args[1]),
        nr::HVM_OP => misc::hvm_op(call, args[0], args[1]),
        _ => Err(Errno::ENOSYS),
    };
    Outcome { ret: crate::errno::hypercall_ret(r), deschedule: call.deschedule }
}
