//! Arch-neutral hypercall dispatch in Xen's numbering. The arch backend only
//! extracts the number and arguments from the guest's registers (its calling
//! convention) and stores the result; everything else happens here.

mod misc;
mod vcpu_op;

use alloc::boxed::Box;

use crate::arch::ArchVcpu;
use crate::domain::Domain;
use xen_abi::errno::{Errno, XenResult};

use xen_abi::nr::hypercall as nr;

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
    Outcome { ret: xen_abi::errno::hypercall_ret(r), deschedule: call.deschedule }
}
