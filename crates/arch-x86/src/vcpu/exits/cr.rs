//! The CR4-write exit: `mov cr4, reg` decoded from guest memory (no decode
//! assists under TCG) and checked against the features the guest sees, so a
//! bit QEMU would let through cannot fail VMRUN later.

use lantern_common::addr::Gva;
use lantern_common::arch::VcpuExit;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, VirtMem};

use crate::decode::{decode_mov_to_cr4, gpr};
use crate::vcpu::SvmVcpu;
use crate::vmcb::{cr4, efer, vector};

impl SvmVcpu {
    /// Emulates `mov cr4, reg` (the only CR4 write form): decodes the
    /// instruction at RIP and loads the value if every bit is one the guest
    /// may set — those whose feature the guest's own CPUID shows, see
    /// [`crate::cpuid::CR4_FEATURES`] — else raises #GP. As on hardware,
    /// clearing PAE in long mode and turning PCIDE on outside long mode or
    /// with a non-zero CR3[11:0] raise #GP too.
    pub(in crate::vcpu) fn handle_cr4_write(&mut self, d: &Domain) -> Option<VcpuExit> {
        // Up to 15 bytes, as far as they are readable (the instruction may
        // end just before an unmapped page).
        let mut bytes = [0u8; 15];
        let rip = self.vmcb.save.cs.base.wrapping_add(self.vmcb.save.rip);
        let n = VirtMem::new(d, self).read_prefix(Gva(rip), &mut bytes);
        let Some((len, reg)) = decode_mov_to_cr4(&bytes[..n], self.is_long()) else {
            return Some(self.crash(d, "CR4 write by an instruction the hypervisor cannot decode"));
        };
        let mut value = gpr(&self.vmcb.save, &self.regs, reg);
        if !self.is_long() {
            value &= 0xFFFF_FFFF;
        }
        let long_active = self.vmcb.save.efer & efer::LMA != 0;
        let pae_off_in_long = long_active && value & cr4::PAE == 0;
        let pcide_on = value & cr4::PCIDE != 0 && self.vmcb.save.cr4 & cr4::PCIDE == 0;
        let bad_pcide = pcide_on && (!long_active || self.vmcb.save.cr3 & 0xFFF != 0);
        if value & !self.cr4_valid_bits() != 0 || pae_off_in_long || bad_pcide {
            self.inject_exception(vector::GP, Some(0));
            return None;
        }
        self.vmcb.save.cr4 = value;
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(len as u64);
        None
    }
}

#[cfg(test)]
mod tests {
    use lantern_common::addr::Gpa;
    use lantern_common::guest_memory::{GuestMemory, PhysMem};

    use crate::vcpu::testing::{domain, vcpu};
    use crate::vmcb::{cr4, event};

    #[test]
    fn cr4_write_checked() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.vmcb.save.rip = 0x3000;
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x0F, 0x22, 0xE0]).unwrap();
        v.vmcb.save.rax = 0x20 | 0x200;
        assert_eq!(v.handle_cr4_write(&d), None);
        assert_eq!((v.vmcb.save.cr4, v.vmcb.save.rip), (0x220, 0x3003));
        v.vmcb.save.rip = 0x3000;
        v.vmcb.save.rax = cr4::VMXE;
        assert_eq!(v.handle_cr4_write(&d), None);
        assert_eq!(v.vmcb.control.eventinj, event::exception(13, Some(0)));
        assert_eq!(v.vmcb.save.rip, 0x3000);
    }

    #[test]
    fn cr4_umip_refused_while_cpuid_hides_it() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.vmcb.save.rip = 0x3000;
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x0F, 0x22, 0xE0]).unwrap();
        // The guest's CPUID hides UMIP (leaf 7 ECX bit 2) ...
        assert_eq!(v.guest_cpuid(7, 0).ecx & (1 << 2), 0);
        assert_eq!(v.cr4_valid_bits() & (1 << 11), 0);
        // ... so setting CR4.UMIP faults and CR4 keeps its value.
        let before = v.vmcb.save.cr4;
        v.vmcb.save.rax = 0x20 | (1 << 11);
        assert_eq!(v.handle_cr4_write(&d), None);
        assert_eq!(v.vmcb.control.eventinj, event::exception(13, Some(0)));
        assert_eq!((v.vmcb.save.cr4, v.vmcb.save.rip), (before, 0x3000));
    }

    #[test]
    fn cr4_pcide_needs_long_mode() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.vmcb.save.rip = 0x3000;
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x0F, 0x22, 0xE0]).unwrap();
        v.vmcb.save.rax = 0x20 | cr4::PCIDE;
        assert_eq!(v.handle_cr4_write(&d), None);
        assert_eq!(v.vmcb.control.eventinj, event::exception(13, Some(0)));
    }
}
