//! The CPUID exit: Xen's hypervisor leaves answered by [`crate::cpuid`], every
//! other leaf the host's with what Lantern does not virtualize masked out.

use xen_abi::nr::xenver;

use crate::cpuid;
use crate::vcpu::SvmVcpu;

impl SvmVcpu {
    /// Emulates CPUID (leaf in EAX, subleaf in ECX) and skips the 2-byte
    /// instruction.
    pub(in crate::vcpu) fn handle_cpuid(&mut self) {
        let leaf = self.vmcb.save.rax as u32;
        let sub = self.regs.rcx as u32;
        let r = self.guest_cpuid(leaf, sub);
        self.vmcb.save.rax = r.eax as u64;
        self.regs.rbx = r.ebx as u64;
        self.regs.rcx = r.ecx as u64;
        self.regs.rdx = r.edx as u64;
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(2);
    }
}

impl SvmVcpu {
    /// What CPUID leaf `leaf`, subleaf `sub` answers this vCPU: the one
    /// source for the CPUID exit and for the checks that must agree with it
    /// (the CR4 bits a guest may set).
    pub(in crate::vcpu) fn guest_cpuid(&self, leaf: u32, sub: u32) -> cpuid::Regs {
        cpuid::xen_leaf(leaf, self.vcpu_id, self.domid, (xenver::LANTERN_MAJOR, xenver::LANTERN_MINOR)).unwrap_or_else(
            || {
                let h = core::arch::x86_64::__cpuid_count(leaf, sub);
                let r = cpuid::Regs { eax: h.eax, ebx: h.ebx, ecx: h.ecx, edx: h.edx };
                cpuid::filter_host_leaf(leaf, sub, r, self.vcpu_id)
            },
        )
    }

    /// The CR4 bits this vCPU may set, derived from its CPUID leaves 1 and 7.
    pub(in crate::vcpu) fn cr4_valid_bits(&self) -> u64 {
        let leaf7 = if self.guest_cpuid(0, 0).eax >= 7 { self.guest_cpuid(7, 0) } else { cpuid::Regs::default() };
        cpuid::cr4_valid_bits(self.guest_cpuid(1, 0), leaf7)
    }
}

#[cfg(test)]
mod tests {
    use crate::vcpu::testing::vcpu;
    use xen_abi::arch_x86::{CPUID_FIRST_LEAF, CPUID_LEAF_HVM};

    #[test]
    fn cpuid_xen_leaves() {
        let mut v = vcpu(5);
        v.vmcb.save.rax = u64::from(CPUID_FIRST_LEAF + CPUID_LEAF_HVM);
        v.handle_cpuid();
        assert_eq!((v.regs.rbx, v.regs.rcx), (5, 3));
        assert_eq!(v.vmcb.save.rip, 0x1002);
    }
}
