//! Arch-neutral hypercall dispatch in Xen's numbering. The arch backend only
//! extracts the number and arguments from the guest's registers (its calling
//! convention) and stores the result; everything else happens here.

mod evtchn_op;
mod grant_table;
mod hvm_op;
mod memory_op;
mod sched_op;
mod vcpu_op;
mod version;
mod vm_assist;

use alloc::boxed::Box;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::addr::Gva;
use crate::arch::ArchVcpu;
use crate::diag::Unhandled;
use crate::directory::{DomainDirectory, NoDomains};
use crate::domain::Domain;
use crate::guest_memory::{GuestMemory, VirtMem};
use xen_abi::errno::{Errno, XenResult};

use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::hypercall as nr;

/// What the scheduler should do after a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Value for the guest's return register.
    pub ret: i64,
    /// The calling vCPU gave up the CPU (yield, block, shutdown, down).
    pub deschedule: bool,
}

/// One hypercall in flight: the calling domain and vCPU, the arch contexts
/// of all the domain's vCPUs (the caller's translates guest-virtual argument
/// pointers; `VCPUOP_initialise` loads another's), and the other domains it
/// may name (grant maps and copies).
pub struct Call<'a> {
    /// Calling domain.
    pub domain: &'a Domain,
    /// Calling vCPU id.
    pub vcpu: u32,
    /// Arch contexts of the domain's vCPUs, indexed by vCPU id.
    pub vcpus: &'a mut [Box<dyn ArchVcpu>],
    /// The other domains, by id.
    pub domains: &'a dyn DomainDirectory,
    deschedule: bool,
}

impl<'a> Call<'a> {
    /// A call from `vcpu` of `domain`, which sees no other domain.
    pub fn new(domain: &'a Domain, vcpu: u32, vcpus: &'a mut [Box<dyn ArchVcpu>]) -> Self {
        Self::with_domains(domain, vcpu, vcpus, &NoDomains)
    }

    /// A call from `vcpu` of `domain` that finds other domains in `domains`.
    pub fn with_domains(
        domain: &'a Domain,
        vcpu: u32,
        vcpus: &'a mut [Box<dyn ArchVcpu>],
        domains: &'a dyn DomainDirectory,
    ) -> Self {
        Call { domain, vcpu, vcpus, domains, deschedule: false }
    }

    /// The calling vCPU's arch context.
    pub fn caller(&self) -> XenResult<&dyn ArchVcpu> {
        self.vcpus.get(self.vcpu as usize).map(|b| &**b).ok_or(Errno::EFAULT)
    }

    /// The caller's guest-virtual memory (`copy_{from,to}_guest`'s view).
    pub fn guest(&self) -> XenResult<VirtMem<'_>> {
        Ok(VirtMem::new(self.domain, self.caller()?))
    }

    /// `copy_from_guest` of a whole argument struct.
    pub fn read<T: FromBytes + IntoBytes>(&self, arg: u64) -> XenResult<T> {
        self.guest()?.read_obj(Gva(arg))
    }

    /// `copy_to_guest` of a whole struct.
    pub fn write<T: IntoBytes + Immutable>(&self, arg: u64, value: &T) -> XenResult<()> {
        self.guest()?.write_obj(Gva(arg), value)
    }

    /// `copy_from_guest` of bytes.
    pub fn copy_from_guest(&self, arg: u64, out: &mut [u8]) -> XenResult<()> {
        self.guest()?.read_bytes(Gva(arg), out)
    }

    /// `copy_to_guest` of bytes.
    pub fn copy_to_guest(&self, arg: u64, data: &[u8]) -> XenResult<()> {
        self.guest()?.write_bytes(Gva(arg), data)
    }

    /// Marks the caller as giving up the CPU.
    pub fn deschedule(&mut self) {
        self.deschedule = true;
    }
}

/// Dispatches hypercall `nr` with `args` for `call`. Never panics on guest
/// input: unknown numbers give `-ENOSYS`, bad arguments their Xen errno.
pub fn dispatch(call: &mut Call<'_>, nr: u64, args: [u64; 6]) -> Outcome {
    let r = match nr {
        nr::VCPU_OP => vcpu_op::vcpu_op(call, args[0], args[1], args[2]),
        nr::XEN_VERSION => version::xen_version(call, args[0], args[1]),
        nr::CONSOLE_IO => version::console_io(call, args[0], args[1], args[2]),
        nr::SCHED_OP => sched_op::sched_op(call, args[0], args[1]),
        nr::MEMORY_OP => memory_op::memory_op(call, args[0], args[1]),
        nr::EVENT_CHANNEL_OP => evtchn_op::event_channel_op(call, args[0], args[1]),
        nr::HVM_OP => hvm_op::hvm_op(call, args[0], args[1]),
        nr::GRANT_TABLE_OP => grant_table::grant_table_op(call, args[0], args[1], args[2]),
        nr::VM_ASSIST => vm_assist::vm_assist(call, args[0], args[1]),
        nr::SET_TIMER_OP => set_timer_op(call, &args),
        _ => Err(Errno::ENOSYS),
    };
    if r == Err(Errno::ENOSYS) {
        call.domain.note_unhandled(Some(call.vcpu), Unhandled::Hypercall { nr, sub: args[0] });
    }
    Outcome { ret: xen_abi::errno::hypercall_ret(r), deschedule: call.deschedule }
}

/// `set_timer_op(timeout)`: the caller's single-shot timer, the 64-bit
/// deadline taken as the arch's calling convention passes it.
fn set_timer_op(call: &mut Call<'_>, args: &[u64; 6]) -> XenResult<i64> {
    let timeout = call.caller()?.set_timer_op_timeout(args)?;
    crate::pv_timer::set_timer_op(call.domain, call.domain.vcpu(call.vcpu)?, timeout);
    Ok(0)
}

/// Whether the caller's layout is the narrow one: 32-bit `xen_ulong_t` and
/// guest handles, `uint64_t` only 4-aligned (x86_32 compat; every other
/// layout has 64-bit handles and natural alignment).
pub(super) fn narrow_layout(call: &Call<'_>) -> XenResult<bool> {
    Ok(call.caller()?.guest_abi(call.domain).xen_ulong_size() == 4)
}

/// Xen's rule for a `domid` argument an unprivileged caller may only
/// point at itself: the domain lookup first (`-ESRCH` for one that does not
/// exist), then XSM's target check (`-EPERM` for any other that does).
pub(super) fn check_self(call: &Call<'_>, domid: u16) -> XenResult<()> {
    if domid == DOMID_SELF || domid == call.domain.id {
        Ok(())
    } else if call.domains.find(domid).is_some() {
        Err(Errno::EPERM)
    } else {
        Err(Errno::ESRCH)
    }
}
