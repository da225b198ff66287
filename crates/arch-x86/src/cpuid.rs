//! What a guest sees from CPUID: the Xen hypervisor leaves at 0x40000000
//! ("XenVMMXenVMM", version, hypercall-page MSR, HVM features) and the host's
//! leaves with the features Lantern does not virtualize masked out.

use xen_abi::arch_x86::{
    CPUID_FIRST_LEAF, CPUID_HVM_DOMID_PRESENT, CPUID_HVM_VCPU_ID_PRESENT, CPUID_LEAF_HVM, CPUID_LEAF_HYPERCALL,
    CPUID_LEAF_VERSION, CPUID_SIGNATURE, HYPERCALL_STUB_SIZE,
};

/// The MSR a guest writes its hypercall page's address to (leaf 0x40000002 EBX).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
/// Highest hypervisor leaf.
pub const MAX_XEN_LEAF: u32 = 0x4000_0005;

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
        0x4000_0003 | 0x4000_0005 => Regs::default(),
        0x4000_0006..=0x4000_00FF => Regs::default(),
        _ => return None,
    };
    Some(r)
}

/// Masks a host leaf for the guest: sets the hypervisor bit, hides SVM,
/// XSAVE/AVX (only FXSAVE state is switched), MONITOR, x2APIC and the local
/// APIC (none is emulated), and reports `vcpu_id` as the initial APIC id.
pub fn filter_host_leaf(leaf: u32, subleaf: u32, mut r: Regs, vcpu_id: u32) -> Regs {
    match leaf {
        1 => {
            r.ecx &= !((1 << 3) | (1 << 5) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28));
            r.ecx |= 1 << 31;
            r.edx &= !(1 << 9);
            r.ebx = (r.ebx & 0x00FF_FFFF) | (vcpu_id << 24);
        }
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

    #[test]
    fn signature() {
        let r = xen_leaf(0x4000_0000, 0, 1, (4, 19)).unwrap();
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..12].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(xen_leaf(0x4000_0001, 0, 1, (4, 19)).unwrap().eax, 0x0004_0013);
        assert_eq!(xen_leaf(0x4000_0002, 0, 1, (4, 19)).unwrap().ebx, 0x4000_0000);
        assert!(xen_leaf(1, 0, 1, (4, 19)).is_none());
    }

    #[test]
    fn stub_bytes() {
        let s = hypercall_stub(17);
        assert_eq!(&s[..9], &[0xB8, 17, 0, 0, 0, 0x0F, 0x01, 0xD9, 0xC3]);
        assert_eq!(&hypercall_stub(23)[..2], &[0x0F, 0x0B]);
    }

    #[test]
    fn hypervisor_bit_and_no_svm() {
        let r = filter_host_leaf(1, 0, Regs { ecx: 1 << 5, ..Regs::default() }, 3);
        assert_eq!(r.ecx, 1 << 31);
        assert_eq!(r.ebx >> 24, 3);
        let r = filter_host_leaf(0x8000_0001, 0, Regs { ecx: 4, ..Regs::default() }, 0);
        assert_eq!(r.ecx, 0);
    }
}
