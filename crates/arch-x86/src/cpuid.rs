//! What a guest sees from CPUID: the Xen hypervisor leaves at 0x40000000
//! ("XenVMMXenVMM", version, hypercall-page MSR, HVM features) and the host's
//! leaves with the features Lantern does not virtualize masked out.

use xen_abi::arch_x86::{
    CPUID_FIRST_LEAF, CPUID_HVM_DOMID_PRESENT, CPUID_HVM_VCPU_ID_PRESENT, CPUID_LEAF_HVM, CPUID_LEAF_HYPERCALL,
    CPUID_LEAF_STRIDE, CPUID_LEAF_VERSION, CPUID_MAX_NUM_LEAVES, CPUID_SIGNATURE, HYPERCALL_STUB_SIZE,
};

/// The MSR a guest writes its hypercall page's address to (leaf 0x40000002 EBX).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
/// Highest hypervisor leaf.
pub const MAX_XEN_LEAF: u32 = CPUID_FIRST_LEAF + CPUID_MAX_NUM_LEAVES;

/// CPUID results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// eax
    pub eax: u32,
    /// ebx
    pub ebx: u32,
    /// ecx
    pub ecx: u32,
    /// edx
    pub edx: u32,
}

/// Answers a hypervisor leaf (0x40000000..=0x400000FF); `None` for others.
pub fn xen_leaf(leaf: u32, vcpu_id: u32, domid: u16, version: (u32, u32)) -> Option<Regs> {
    let r = match leaf {
        CPUID_FIRST_LEAF => {
            let sig = CPUID_SIGNATURE.as_bytes();
            let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
            Regs { eax: MAX_XEN_LEAF, ebx: word(0), ecx: word(4), edx: word(8) }
        }
        l if l == CPUID_FIRST_LEAF + CPUID_LEAF_VERSION => {
            Regs { eax: (version.0 << xen_abi::nr::xenver::VERSION_MAJOR_SHIFT) | version.1, ..Regs::default() }
        }
        // One hypercall page, installed through MSR 0x40000000.
        l if l == CPUID_FIRST_LEAF + CPUID_LEAF_HYPERCALL => {
            Regs { eax: 1, ebx: HYPERCALL_PAGE_MSR, ..Regs::default() }
        }
        l if l == CPUID_FIRST_LEAF + CPUID_LEAF_HVM => {
            Regs { eax: CPUID_HVM_VCPU_ID_PRESENT | CPUID_HVM_DOMID_PRESENT, ebx: vcpu_id, ecx: domid as u32, edx: 0 }
        }
        // The time and PV leaves, and the rest of Xen's range: all zero.
        l if (CPUID_FIRST_LEAF..CPUID_FIRST_LEAF + CPUID_LEAF_STRIDE).contains(&l) => Regs::default(),
        _ => return None,
    };
    Some(r)
}

/// Masks a host leaf for the guest: sets the hypervisor bit, hides SVM,
/// XSAVE/AVX (only FXSAVE state is switched), MONITOR and the APIC timer's
/// TSC-deadline mode (not emulated), offers the local APIC and x2APIC (both
/// emulated, as Xen offers them to a PVH domU), and reports the vCPU's APIC
/// id as its initial (leaf 1), x2APIC (leaf 0xB) and extended (leaf
/// 0x8000001E) APIC id.
pub fn filter_host_leaf(leaf: u32, subleaf: u32, mut r: Regs, vcpu_id: u32) -> Regs {
    let apic_id = crate::acpi::apic_id(vcpu_id);
    match leaf {
        1 => {
            r.ecx &= !((1 << 3) | (1 << 5) | (1 << 24) | (1 << 26) | (1 << 27) | (1 << 28));
            r.ecx |= (1 << 31) | (1 << 21);
            r.edx |= 1 << 9;
            r.ebx = (r.ebx & 0x00FF_FFFF) | (apic_id << 24);
        }
        0xB => r.edx = apic_id,
        0x8000_001E => r.eax = apic_id,
        7 if subleaf == 0 => {
            // AVX2, AVX-512 and friends need XSAVE.
            r.ebx &= !((1 << 5) | 0xFFFF_0000);
            r.ecx = 0;
        }
        0xD => r = Regs::default(),
        0x8000_0001 => r.ecx &= !(1 << 2),
        0x8000_000A => r = Regs::default(),
        _ => {}
    }
    r
}

/// A CPUID register, for [`CR4_FEATURES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// ebx
    Ebx,
    /// ecx
    Ecx,
    /// edx
    Edx,
}

impl Regs {
    /// The value of register `r`.
    pub fn get(&self, r: Reg) -> u32 {
        match r {
            Reg::Ebx => self.ebx,
            Reg::Ecx => self.ecx,
            Reg::Edx => self.edx,
        }
    }
}

/// CR4 bits a guest may set whatever CPUID says: PCE has no feature flag.
pub const CR4_ALWAYS_VALID: u64 = 1 << 8;

/// The CR4 bits Lantern lets a guest set, each with the CPUID feature
/// (leaf 1 or leaf 7 subleaf 0, register, bit) that announces it: the bit is
/// valid only while the guest's CPUID shows the feature, as Xen decides.
/// CR4 bits not listed (VMXE, SMXE, OSXSAVE, LA57, PKE, CET, PKS) are
/// always reserved here; their features are hidden or not virtualized.
pub const CR4_FEATURES: &[(u64, u32, Reg, u32)] = &[
    (1 << 0, 1, Reg::Edx, 1),   // VME: VME
    (1 << 1, 1, Reg::Edx, 1),   // PVI: VME
    (1 << 2, 1, Reg::Edx, 4),   // TSD: TSC
    (1 << 3, 1, Reg::Edx, 2),   // DE: DE
    (1 << 4, 1, Reg::Edx, 3),   // PSE: PSE
    (1 << 5, 1, Reg::Edx, 6),   // PAE: PAE
    (1 << 6, 1, Reg::Edx, 7),   // MCE: MCE
    (1 << 7, 1, Reg::Edx, 13),  // PGE: PGE
    (1 << 9, 1, Reg::Edx, 24),  // OSFXSR: FXSR
    (1 << 10, 1, Reg::Edx, 25), // OSXMMEXCPT: SSE
    (1 << 11, 7, Reg::Ecx, 2),  // UMIP: UMIP
    (1 << 16, 7, Reg::Ebx, 0),  // FSGSBASE: FSGSBASE
    (1 << 17, 1, Reg::Ecx, 17), // PCIDE: PCID
    (1 << 20, 7, Reg::Ebx, 7),  // SMEP: SMEP
    (1 << 21, 7, Reg::Ebx, 20), // SMAP: SMAP
];

/// The CR4 bits valid for a guest whose CPUID answers `leaf1` and `leaf7`
/// (subleaf 0) — pass the filtered leaves the guest itself sees, so CR4
/// and CPUID cannot disagree.
pub fn cr4_valid_bits(leaf1: Regs, leaf7: Regs) -> u64 {
    CR4_FEATURES.iter().fold(CR4_ALWAYS_VALID, |acc, &(cr4, leaf, reg, bit)| {
        let regs = if leaf == 1 { leaf1 } else { leaf7 };
        if regs.get(reg) & (1 << bit) != 0 {
            acc | cr4
        } else {
            acc
        }
    })
}

/// The 32-byte hypercall stub for hypercall `nr`: `mov eax, nr; vmmcall; ret`,
/// padded with `int3`. (`__HYPERVISOR_iret`, 23, is `ud2` as in Xen.)
pub fn hypercall_stub(nr: u32) -> [u8; HYPERCALL_STUB_SIZE] {
    let mut s = [0xCCu8; HYPERCALL_STUB_SIZE];
    if u64::from(nr) == xen_abi::nr::hypercall::IRET {
        s[0] = 0x0F;
        s[1] = 0x0B;
        return s;
    }
    s[0] = 0xB8;
    s[1..5].copy_from_slice(&nr.to_le_bytes());
    s[5..8].copy_from_slice(&[0x0F, 0x01, 0xD9]);
    s[8] = 0xC3;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_abi::nr::hypercall::XEN_VERSION;

    #[test]
    fn signature() {
        let r = xen_leaf(CPUID_FIRST_LEAF, 0, 1, (4, 19)).unwrap();
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..12].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(xen_leaf(CPUID_FIRST_LEAF + CPUID_LEAF_VERSION, 0, 1, (4, 19)).unwrap().eax, 0x0004_0013);
        assert_eq!(xen_leaf(CPUID_FIRST_LEAF + CPUID_LEAF_HYPERCALL, 0, 1, (4, 19)).unwrap().ebx, HYPERCALL_PAGE_MSR);
        assert!(xen_leaf(1, 0, 1, (4, 19)).is_none());
    }

    #[test]
    fn stub_bytes() {
        let s = hypercall_stub(XEN_VERSION as u32);
        assert_eq!(&s[..9], &[0xB8, XEN_VERSION as u8, 0, 0, 0, 0x0F, 0x01, 0xD9, 0xC3]);
        assert_eq!(&hypercall_stub(xen_abi::nr::hypercall::IRET as u32)[..2], &[0x0F, 0x0B]);
    }

    #[test]
    fn hypervisor_bit_and_no_svm() {
        let r = filter_host_leaf(1, 0, Regs { ecx: (1 << 5) | (1 << 24), ..Regs::default() }, 3);
        assert_eq!(r.ecx, (1 << 31) | (1 << 21), "hypervisor and x2APIC; no SVM, no TSC deadline");
        assert_eq!(r.edx, 1 << 9, "a local APIC");
        assert_eq!(r.ebx >> 24, 3);
        assert_eq!(filter_host_leaf(0xB, 1, ALL, 7).edx, 7, "x2APIC id");
        assert_eq!(filter_host_leaf(0x8000_001E, 0, ALL, 9).eax, 9, "extended APIC id");
        let r = filter_host_leaf(0x8000_0001, 0, Regs { ecx: 4, ..Regs::default() }, 0);
        assert_eq!(r.ecx, 0);
    }

    const ALL: Regs = Regs { eax: !0, ebx: !0, ecx: !0, edx: !0 };

    #[test]
    fn cr4_bits_follow_the_filtered_cpuid() {
        let (l1, l7) = (filter_host_leaf(1, 0, ALL, 0), filter_host_leaf(7, 0, ALL, 0));
        let valid = cr4_valid_bits(l1, l7);
        // Every CR4 bit allowed has its feature shown to the guest.
        for bit in 0..64 {
            let cr4 = 1u64 << bit;
            if valid & cr4 == 0 || cr4 & CR4_ALWAYS_VALID != 0 {
                continue;
            }
            let features: alloc::vec::Vec<_> = CR4_FEATURES.iter().filter(|f| f.0 == cr4).collect();
            assert!(!features.is_empty(), "CR4 bit {bit} allowed without a CPUID feature");
            for &&(_, leaf, reg, fbit) in &features {
                let r = if leaf == 1 { l1 } else { l7 };
                assert_ne!(r.get(reg) & (1 << fbit), 0, "CR4 bit {bit} allowed but its feature is hidden");
            }
        }
        // UMIP (leaf 7 ECX bit 2) is hidden, so CR4.UMIP is refused; the
        // features the filter keeps stay usable.
        assert_eq!(l7.ecx & (1 << 2), 0);
        assert_eq!(valid & (1 << 11), 0);
        assert_eq!(valid & (1 << 13 | 1 << 18), 0, "VMXE and OSXSAVE stay reserved");
        // The filter drops leaf 7 EBX's upper half (AVX-512 and more), SMAP
        // (bit 20) with it: CR4.SMAP is refused too.
        assert_eq!(valid, 0x07FF | 1 << 16 | 1 << 17 | 1 << 20);
        // A host without a feature: its CR4 bit goes.
        let no_pcid = Regs { ecx: l1.ecx & !(1 << 17), ..l1 };
        assert_eq!(cr4_valid_bits(no_pcid, l7) & (1 << 17), 0);
        // Were UMIP shown, CR4.UMIP would be valid.
        assert_ne!(cr4_valid_bits(l1, Regs { ecx: 1 << 2, ..l7 }) & (1 << 11), 0);
    }
}
