//! The VMMCALL exit: a Xen hypercall, its number and arguments taken from
//! the registers of the guest's calling convention (32-bit: eax; ebx, ecx,
//! edx, esi, edi, ebp. 64-bit: rax; rdi, rsi, rdx, r10, r8, r9). The core
//! runs it; [`ArchVcpu::complete_hypercall`] stores the result.

use lantern_common::arch::{ArchVcpu, VcpuExit};
use xen_abi::errno::Errno;

use crate::vcpu::SvmVcpu;

impl SvmVcpu {
    /// The hypercall to hand to the core, or `None` when it was refused here.
    pub(in crate::vcpu) fn hypercall_exit(&mut self) -> Option<VcpuExit> {
        if self.vmcb.save.cpl != 0 {
            // Xen refuses hypercalls from guest user mode.
            self.complete_hypercall(-(Errno::EPERM.0 as i64));
            return None;
        }
        let r = &self.regs;
        let (nr, args) = if self.is_long() {
            (self.vmcb.save.rax, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9])
        } else {
            let m = 0xFFFF_FFFF;
            (self.vmcb.save.rax & m, [r.rbx & m, r.rcx & m, r.rdx & m, r.rsi & m, r.rdi & m, r.rbp & m])
        };
        Some(VcpuExit::Hypercall { nr, args })
    }

    /// The one 64-bit argument of a hypercall whose first argument is one
    /// (`set_timer_op`): a register in 64-bit mode; in 32-bit mode Xen's
    /// compat entry takes it as two, the low half first (ebx, ecx).
    pub(in crate::vcpu) fn wide_hypercall_arg(&self, args: &[u64; 6]) -> u64 {
        if self.is_long() {
            args[0]
        } else {
            (args[0] & 0xFFFF_FFFF) | (args[1] << 32)
        }
    }
}

#[cfg(test)]
mod tests {
    use lantern_common::arch::{ArchVcpu, VcpuExit};

    use crate::svm::GuestRegs;
    use crate::vcpu::testing::vcpu;
    use crate::vmcb::{efer, ATTR_CODE64};
    use xen_abi::errno::Errno;
    use xen_abi::nr::hypercall::{VCPU_OP, XEN_VERSION};

    #[test]
    fn hypercall_conventions() {
        let mut v = vcpu(0);
        // 32-bit: eax, ebx, ecx, edx, esi, edi, ebp (upper halves ignored).
        v.vmcb.save.rax = 0xFFFF_0000_0000_0000 | XEN_VERSION;
        v.regs = GuestRegs { rbx: 1, rcx: 2, rdx: 3, rsi: 4, rdi: 5, rbp: 0x1_0000_0006, ..GuestRegs::default() };
        assert_eq!(v.hypercall_exit(), Some(VcpuExit::Hypercall { nr: XEN_VERSION, args: [1, 2, 3, 4, 5, 6] }));
        v.complete_hypercall(Errno::ENOSYS.to_hypercall_ret());
        assert_eq!(v.vmcb.save.rax, u64::from(Errno::ENOSYS.to_hypercall_ret() as u32));
        assert_eq!(v.vmcb.save.rip, 0x1003);
        // ... and two in 32-bit mode, the low half first (Xen's compat
        // set_timer_op(lo, hi)).
        assert_eq!(v.set_timer_op_timeout(&[0x8765_4321, 0x12, 0, 0, 0, 0]), Ok(0x12_8765_4321));
        // 64-bit: rax, rdi, rsi, rdx, r10, r8.
        v.vmcb.save.efer |= efer::LMA;
        v.vmcb.save.cs.attrib = ATTR_CODE64;
        v.vmcb.save.rax = VCPU_OP;
        v.regs = GuestRegs { rdi: 10, rsi: 11, rdx: 12, r10: 13, r8: 14, r9: 15, ..GuestRegs::default() };
        assert_eq!(v.hypercall_exit(), Some(VcpuExit::Hypercall { nr: VCPU_OP, args: [10, 11, 12, 13, 14, 15] }));
        v.complete_hypercall(Errno::ENOSYS.to_hypercall_ret());
        assert_eq!(v.vmcb.save.rax as i64, Errno::ENOSYS.to_hypercall_ret());
        // set_timer_op's 64-bit deadline: one register in 64-bit mode ...
        assert_eq!(v.set_timer_op_timeout(&[0x1_2345_6789, 7, 0, 0, 0, 0]), Ok(0x1_2345_6789));
        // From guest user mode: -EPERM without reaching the core.
        v.vmcb.save.cpl = 3;
        assert_eq!(v.hypercall_exit(), None);
        assert_eq!(v.vmcb.save.rax as i64, -1);
    }
}
