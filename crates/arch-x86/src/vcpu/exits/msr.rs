//! The MSR exit: RDMSR/WRMSR emulated against the VMCB (every access is
//! intercepted, none reaches the real MSRs), Xen's hypercall-page MSR, and
//! benign answers for the MSRs guests probe; anything else is #GP.

use lantern_common::addr::Gpa;
use lantern_common::arch::ArchVcpu;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::memory::PAGE_SIZE;

use crate::cpuid;
use crate::hvm_context::canonical;
use lantern_common::diag::Unhandled;

use crate::msr;
use crate::vcpu::SvmVcpu;
use crate::vmcb::{cr0, efer, vector};

impl SvmVcpu {
    /// The MSR exit (EXITINFO1 bit 0: WRMSR): emulates the access or raises
    /// #GP.
    pub(in crate::vcpu) fn msr_exit(&mut self, d: &Domain) {
        let write = self.vmcb.control.exitinfo1 & 1 != 0;
        if !self.handle_msr(d, write) {
            self.note_msr(d, write, "#GP");
            self.inject_exception(vector::GP, Some(0));
        }
    }

    /// Counts an MSR access answered with a default or refused.
    fn note_msr(&self, d: &Domain, write: bool, answer: &'static str) {
        let kind = Unhandled::Access { space: "MSR", index: self.regs.rcx & 0xFFFF_FFFF, write, answer };
        d.note_unhandled(Some(self.vcpu_id), kind);
    }

    /// Emulates RDMSR/WRMSR; `false` means "raise #GP".
    fn handle_msr(&mut self, d: &Domain, write: bool) -> bool {
        let index = self.regs.rcx as u32;
        let value = (self.regs.rdx << 32) | (self.vmcb.save.rax & 0xFFFF_FFFF);
        if index == msr::APIC_BASE || super::apic::X2APIC_MSRS.contains(&index) {
            let Some(v) = self.apic_msr(d, index, write, value) else { return false };
            return self.complete_msr(write, v);
        }
        // PAT entries are memory types 0, 1 and 4-7: another is a #GP, as on
        // hardware and in Xen's hvm_set_guest_pat (VMRUN refuses it in G_PAT).
        if write && index == msr::PAT && !pat_valid(value) {
            return false;
        }
        // The address MSRs take canonical addresses only (a #GP otherwise,
        // as on hardware and in Xen's svm_msr_write_intercept).
        let address = matches!(
            index,
            msr::SYSENTER_ESP
                | msr::SYSENTER_EIP
                | msr::LSTAR
                | msr::CSTAR
                | msr::FS_BASE
                | msr::GS_BASE
                | msr::KERNEL_GS_BASE
        );
        if write && address && !canonical(value) {
            return false;
        }
        let s = &mut self.vmcb.save;
        // MSRs the VMCB holds for the guest: read and written as they are.
        let slot: Option<&mut u64> = match index {
            msr::STAR => Some(&mut s.star),
            msr::LSTAR => Some(&mut s.lstar),
            msr::CSTAR => Some(&mut s.cstar),
            msr::SFMASK => Some(&mut s.sfmask),
            msr::FS_BASE => Some(&mut s.fs.base),
            msr::GS_BASE => Some(&mut s.gs.base),
            msr::KERNEL_GS_BASE => Some(&mut s.kernel_gs_base),
            msr::SYSENTER_CS => Some(&mut s.sysenter_cs),
            msr::SYSENTER_ESP => Some(&mut s.sysenter_esp),
            msr::SYSENTER_EIP => Some(&mut s.sysenter_eip),
            msr::PAT => Some(&mut s.g_pat),
            msr::DEBUGCTL => Some(&mut s.dbgctl),
            _ => None,
        };
        let result: Option<u64> = if let Some(slot) = slot {
            if write {
                *slot = value;
            }
            Some(*slot)
        } else {
            match (index, write) {
                (msr::EFER, false) => Some(s.efer & !efer::SVME),
                // Only SCE, LME and NXE are the guest's to set (LMA is
                // hardware's, SVME is ours): anything else is a #GP, as it
                // would otherwise fail VMRUN's checks and crash the domain.
                (msr::EFER, true) if value & !(efer::SCE | efer::LME | efer::LMA | efer::NXE) == 0 => {
                    // LME changes only while paging is off (hardware and
                    // Xen's hvm_set_efer #GP otherwise): set under 32-bit
                    // paging it would fail VMRUN, cleared in long mode it
                    // would leave LMA without LME.
                    if (value ^ s.efer) & efer::LME != 0 && s.cr0 & cr0::PG != 0 {
                        return false;
                    }
                    s.efer = (value & !efer::LMA) | (s.efer & efer::LMA) | efer::SVME;
                    Some(0)
                }
                (cpuid::HYPERCALL_PAGE_MSR, true) => {
                    if !self.write_hypercall_page(d, value) {
                        return false;
                    }
                    Some(0)
                }
                (msr::TSC, false) => {
                    // SAFETY: RDTSC has no side effects.
                    Some(unsafe { core::arch::x86_64::_rdtsc() })
                }
                // MTRR capabilities/default
                // type, MISC_ENABLE, microcode signature, MCG_CAP (no
                // banks) and MCG_STATUS (no machine check in progress),
                // SPEC_CTRL, TSC_AUX: benign zeros.
                (
                    msr::MTRR_CAP
                    | msr::MTRR_DEF_TYPE
                    | msr::MISC_ENABLE
                    | msr::BIOS_SIGN_ID
                    | msr::MCG_CAP
                    | msr::MCG_STATUS
                    | msr::SPEC_CTRL
                    | msr::TSC_AUX,
                    false,
                ) => {
                    self.note_msr(d, false, "reads as zero");
                    Some(0)
                }
                // Writes dropped: MTRR default type, SPEC_CTRL, PRED_CMD, the
                // microcode signature, TSC_AUX, MISC_ENABLE, MCG_STATUS.
                (
                    msr::MTRR_DEF_TYPE
                    | msr::MCG_STATUS
                    | msr::SPEC_CTRL
                    | msr::PRED_CMD
                    | msr::BIOS_SIGN_ID
                    | msr::TSC_AUX
                    | msr::MISC_ENABLE,
                    true,
                ) => {
                    self.note_msr(d, true, "dropped");
                    Some(0)
                }
                // As Xen answers an HVM guest on AMD: with no vPMU the
                // legacy and family-15h counters read zero and drop writes;
                // SYSCFG, TOP_MEM/TOP_MEM2, VM_CR and EX_CFG read zero and
                // drop writes; HWCR, C1E and NB_CFG read zero; DE_CFG reads
                // "LFENCE serialising" and drops writes (OpenBSD panics on a
                // #GP there).
                (i, _) if (msr::K7_EVNTSEL0..msr::K7_PERFCTR0 + 4).contains(&i) => {
                    self.note_msr(d, write, if write { "dropped" } else { "reads as zero" });
                    Some(0)
                }
                (msr::FAM15H_PERF_FIRST..=msr::FAM15H_PERF_LAST, _)
                | (msr::K8_SYSCFG | msr::K8_TOP_MEM1 | msr::K8_TOP_MEM2 | msr::VM_CR | msr::AMD64_EX_CFG, _) => {
                    self.note_msr(d, write, if write { "dropped" } else { "reads as zero" });
                    Some(0)
                }
                (msr::K8_HWCR | msr::K8_ENABLE_C1E | msr::AMD64_NB_CFG, false) => {
                    self.note_msr(d, false, "reads as zero");
                    Some(0)
                }
                (msr::AMD64_NB_CFG, true) => {
                    self.note_msr(d, true, "dropped");
                    Some(0)
                }
                (msr::AMD64_DE_CFG, false) => Some(msr::DE_CFG_LFENCE_SERIALISE),
                (msr::AMD64_DE_CFG, true) => {
                    self.note_msr(d, true, "dropped");
                    Some(0)
                }
                _ => None,
            }
        };
        let Some(v) = result else { return false };
        self.complete_msr(write, v)
    }

    /// Finishes an emulated RDMSR (`v` into EDX:EAX) or WRMSR and moves
    /// past the 2-byte instruction.
    fn complete_msr(&mut self, write: bool, v: u64) -> bool {
        if !write {
            self.vmcb.save.rax = v & 0xFFFF_FFFF;
            self.regs.rdx = v >> 32;
        }
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(2);
        true
    }

    /// Xen's hypercall-page MSR: fills the page-aligned guest frame at
    /// `value` with one 32-byte stub per hypercall and latches the guest ABI
    /// from the current mode, as Xen does. `false` means "raise #GP".
    fn write_hypercall_page(&mut self, d: &Domain, value: u64) -> bool {
        if value & 0xFFF != 0 {
            return false;
        }
        let mut page = [0u8; PAGE_SIZE];
        for (i, chunk) in page.chunks_exact_mut(xen_abi::arch_x86::HYPERCALL_STUB_SIZE).enumerate() {
            chunk.copy_from_slice(&cpuid::hypercall_stub(i as u32));
        }
        if PhysMem::new(d).write_bytes(Gpa(value), &page).is_err() {
            return false;
        }
        self.latch_abi(d);
        true
    }

    fn latch_abi(&self, d: &Domain) {
        let abi = self.guest_abi(d);
        if let Ok(true) = d.latch_abi(abi) {
            log::info!("d{}: {} guest ABI latched", d.id, abi.name());
        }
    }
}

/// Whether every byte of a PAT value is a memory type (not 2, 3 or above 7).
fn pat_valid(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|&t| matches!(t, 0 | 1 | 4..=7))
}

#[cfg(test)]
mod tests {
    use lantern_common::addr::Gpa;
    use lantern_common::guest_memory::{GuestMemory, PhysMem};

    use crate::cpuid;
    use crate::vcpu::testing::{domain, vcpu};
    use crate::vmcb::{cr0, cr4, efer, event};
    use xen_abi::arch_x86::HYPERCALL_STUB_SIZE;
    use xen_abi::nr::hypercall::XEN_VERSION;

    #[test]
    fn hypercall_page_latches_compat_in_32bit_mode() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.regs.rcx = cpuid::HYPERCALL_PAGE_MSR as u64;
        v.vmcb.save.rax = 0x5000;
        assert!(v.handle_msr(&d, true));
        let mut stub = [0u8; 9];
        PhysMem::new(&d)
            .read_bytes(Gpa(0x5000 + (XEN_VERSION as usize * HYPERCALL_STUB_SIZE) as u64), &mut stub)
            .unwrap();
        assert_eq!(stub, [0xB8, XEN_VERSION as u8, 0, 0, 0, 0x0F, 0x01, 0xD9, 0xC3]);
        assert_eq!(d.abi().name(), "x86_32");
        // Outside guest memory or not page aligned: #GP (false).
        v.vmcb.save.rax = 0x10_0000;
        assert!(!v.handle_msr(&d, true));
        v.vmcb.save.rax = 0x5001;
        assert!(!v.handle_msr(&d, true));
    }

    #[test]
    fn msrs() {
        let d = domain(1);
        let mut v = vcpu(0);
        // EFER keeps SVME hidden and set; LMA stays hardware-owned.
        v.regs.rcx = 0xC000_0080;
        v.vmcb.save.rax = efer::LME;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.efer, efer::LME | efer::SVME);
        assert!(v.handle_msr(&d, false));
        assert_eq!(v.vmcb.save.rax, efer::LME);
        v.vmcb.save.rax = 1 << 20;
        assert!(!v.handle_msr(&d, true), "reserved EFER bit");
        // FS base lives in the VMCB.
        v.regs.rcx = 0xC000_0100;
        v.vmcb.save.rax = 0x1234;
        v.regs.rdx = 0xFFFF_8000;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.fs.base, 0xFFFF_8000_0000_1234);
        // Unknown MSRs fault.
        v.regs.rcx = 0x1C;
        assert!(!v.handle_msr(&d, false));
    }

    /// EFER.LME changes only while paging is off, as on hardware and in
    /// Xen's `hvm_set_efer`: LME set under 32-bit paging would fail VMRUN
    /// (LME and PG with PAE clear) and crash the domain, LME cleared in
    /// long mode would leave LMA without LME.
    #[test]
    fn efer_lme_does_not_change_while_paging_is_on() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.regs.rcx = 0xC000_0080;
        // 32-bit paging, no PAE: setting LME is a #GP and changes nothing.
        v.vmcb.save.cr0 |= cr0::PG;
        v.vmcb.save.cr4 = 0;
        v.vmcb.save.efer = efer::SVME;
        v.vmcb.save.rax = efer::LME;
        assert!(!v.handle_msr(&d, true), "LME set with paging on");
        assert_eq!(v.vmcb.save.efer, efer::SVME);
        // Other bits still change with paging on.
        v.vmcb.save.rax = efer::NXE;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.efer, efer::NXE | efer::SVME);
        // Long mode: clearing LME is a #GP; writing it back as it is is not.
        v.vmcb.save.cr4 = cr4::PAE;
        v.vmcb.save.efer = efer::LME | efer::LMA | efer::SVME;
        v.vmcb.save.rax = 0;
        assert!(!v.handle_msr(&d, true), "LME cleared in long mode");
        assert_eq!(v.vmcb.save.efer, efer::LME | efer::LMA | efer::SVME);
        v.vmcb.save.rax = efer::LME | efer::LMA | efer::SCE;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.efer, efer::LME | efer::LMA | efer::SCE | efer::SVME);
        // Paging off: LME is the guest's to set (the way into long mode).
        v.vmcb.save.cr0 &= !cr0::PG;
        v.vmcb.save.efer = efer::SVME;
        v.vmcb.save.rax = efer::LME;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.efer, efer::LME | efer::SVME);
    }

    /// A PAT entry with a reserved memory type (2, 3, 8 and above) is a
    /// #GP, as on hardware and in Xen (`hvm_set_guest_pat`): the VMCB's
    /// G_PAT would otherwise hold it, which VMRUN refuses.
    #[test]
    fn pat_with_a_reserved_type_is_refused() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.regs.rcx = 0x277;
        let power_on = 0x0007_0406_0007_0406;
        v.vmcb.save.g_pat = power_on;
        for bad in [0x0007_0406_0007_0402, 0x0307_0406_0007_0406, 0x0007_0406_0008_0406, 0xFF00_0000_0000_0000] {
            v.vmcb.save.rax = bad & 0xFFFF_FFFF;
            v.regs.rdx = bad >> 32;
            assert!(!v.handle_msr(&d, true), "{bad:#x}");
            assert_eq!(v.vmcb.save.g_pat, power_on);
        }
        // Every valid type: UC, WC, WT, WP, WB, UC-.
        let good = 0x0706_0504_0100_0607;
        v.vmcb.save.rax = good & 0xFFFF_FFFF;
        v.regs.rdx = good >> 32;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.g_pat, good);
    }

    /// The MSRs that hold addresses take canonical ones only, as on
    /// hardware and in Xen's `svm_msr_write_intercept`: a WRMSR of another
    /// is a #GP and leaves the register as it was.
    #[test]
    fn address_msrs_take_canonical_addresses_only() {
        let d = domain(1);
        let mut v = vcpu(0);
        // SYSENTER_ESP/EIP, LSTAR, CSTAR, FS/GS base, KernelGSbase.
        for index in [0x175u32, 0x176, 0xC000_0082, 0xC000_0083, 0xC000_0100, 0xC000_0101, 0xC000_0102] {
            v.regs.rcx = index as u64;
            for good in [0x1234, 0x0000_7FFF_FFFF_F000, 0xFFFF_8000_0000_0000] {
                v.vmcb.save.rax = good & 0xFFFF_FFFF;
                v.regs.rdx = good >> 32;
                assert!(v.handle_msr(&d, true), "{index:#x} <- {good:#x}");
            }
            for bad in [0x0000_8000_0000_0000u64, 0x8000_0000_0000_1234, 0xFFFF_7FFF_FFFF_F000] {
                v.vmcb.save.rax = bad & 0xFFFF_FFFF;
                v.regs.rdx = bad >> 32;
                assert!(!v.handle_msr(&d, true), "{index:#x} <- {bad:#x}");
            }
            assert!(v.handle_msr(&d, false));
            assert_eq!((v.regs.rdx << 32) | v.vmcb.save.rax, 0xFFFF_8000_0000_0000, "{index:#x} kept");
        }
        // STAR and SFMASK are not addresses.
        v.regs.rcx = 0xC000_0081;
        v.vmcb.save.rax = 0;
        v.regs.rdx = 0x8000_0000;
        assert!(v.handle_msr(&d, true));
    }

    #[test]
    fn amd_msrs_answer_as_xen() {
        let d = domain(1);
        let mut v = vcpu(0);
        let access = |v: &mut crate::vcpu::SvmVcpu, index: u32, write: bool| {
            v.regs.rcx = index as u64;
            v.vmcb.save.rax = 0x5A5A;
            v.handle_msr(&d, write).then_some(v.vmcb.save.rax)
        };
        // Read zero, writes dropped: the counters, SYSCFG, TOP_MEM, EX_CFG.
        for index in [0xC001_0000, 0xC001_0003, 0xC001_0007, 0xC001_0010, 0xC001_001A, 0xC001_0201, 0xC001_102C] {
            assert_eq!(access(&mut v, index, false), Some(0), "{index:#x}");
            assert!(access(&mut v, index, true).is_some(), "{index:#x} write");
        }
        // Read zero, writes #GP: HWCR and C1E.
        for index in [0xC001_0015, 0xC001_0055] {
            assert_eq!(access(&mut v, index, false), Some(0), "{index:#x}");
            assert_eq!(access(&mut v, index, true), None, "{index:#x} write");
        }
        assert_eq!(access(&mut v, 0xC001_1029, false), Some(2), "DE_CFG: LFENCE serialising");
        assert!(access(&mut v, 0xC001_1029, true).is_some());
        assert_eq!(access(&mut v, 0xC001_0008, false), None, "past the legacy counters");
    }

    #[test]
    fn msr_exit_raises_gp() {
        let d = domain(1);
        let mut v = vcpu(0);
        // WRMSR (EXITINFO1 = 1) to the read-only MTRR capabilities.
        v.regs.rcx = 0xFE;
        v.vmcb.control.exitinfo1 = 1;
        v.msr_exit(&d);
        assert_eq!(v.vmcb.control.eventinj, event::exception(13, Some(0)));
        assert_eq!(v.vmcb.save.rip, 0x1000);
        // RDMSR (EXITINFO1 = 0) of it reads zero and moves on.
        v.vmcb.control.eventinj = 0;
        v.vmcb.control.exitinfo1 = 0;
        v.vmcb.save.rax = 0xAA;
        v.msr_exit(&d);
        assert_eq!((v.vmcb.control.eventinj, v.vmcb.save.rax, v.vmcb.save.rip), (0, 0, 0x1002));
    }
}
