//! The x86 `VCPUOP_initialise` argument: `#[repr(C)]` mirrors of Xen's
//! `struct vcpu_hvm_context` (`public/hvm/hvm_vcpu.h`), decoded from the
//! bytes the core copied from the guest, and the VMCB state each mode loads.
//!
//! The context is a `mode` word, a pad word and the `cpu_regs` union of a
//! 32-bit and a 64-bit register set (128 bytes in all, the same for native
//! and compat guests). A 32-bit context names every segment's cached state;
//! a 64-bit one starts the vCPU directly in long mode with flat segments.

use zerocopy::FromBytes;

pub use xen_abi::arch_x86::{
    VcpuHvmContext, VcpuHvmCpuRegs, VcpuHvmX86_32, VcpuHvmX86_64, VCPU_HVM_CONTEXT_SIZE, VCPU_HVM_MODE_32B,
    VCPU_HVM_MODE_64B,
};
use xen_abi::errno::{Errno, XenResult};

use crate::svm::{GuestRegs, StartMode};
use crate::vmcb::{
    cr0, cr4, efer, rflags, VmcbSave, VmcbSegment, ATTR_CODE32, ATTR_CODE64, ATTR_DATA32, ATTR_TSS_BUSY,
};

/// A decoded, checked `vcpu_hvm_context`: the arm its `mode` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvmContext {
    /// [`VCPU_HVM_MODE_32B`].
    X86_32(VcpuHvmX86_32),
    /// [`VCPU_HVM_MODE_64B`].
    X86_64(VcpuHvmX86_64),
}

impl HvmContext {
    /// Reads a context from the `VCPUOP_initialise` argument bytes. Fails
    /// with `EINVAL` on a short buffer, an unknown mode, or a 64-bit context
    /// that is not in long mode (paging, PAE and EFER.LME all required).
    pub fn decode(bytes: &[u8]) -> XenResult<Self> {
        let (ctx, _) = VcpuHvmContext::read_from_prefix(bytes).map_err(|_| Errno::EINVAL)?;
        // The arms fit the union (asserted above), so these reads succeed.
        let regs = ctx.cpu_regs.0.as_slice();
        match ctx.mode {
            VCPU_HVM_MODE_32B => {
                let (r, _) = VcpuHvmX86_32::read_from_prefix(regs).map_err(|_| Errno::EINVAL)?;
                Ok(HvmContext::X86_32(r))
            }
            VCPU_HVM_MODE_64B => {
                let (r, _) = VcpuHvmX86_64::read_from_prefix(regs).map_err(|_| Errno::EINVAL)?;
                if r.cr0 & cr0::PG == 0 || r.efer & efer::LME == 0 || r.cr4 & cr4::PAE == 0 {
                    return Err(Errno::EINVAL);
                }
                Ok(HvmContext::X86_64(r))
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// The reset the vCPU goes through before [`Self::load`], and its RIP.
    pub fn start(&self) -> (StartMode, u64) {
        match self {
            HvmContext::X86_32(r) => (StartMode::Flat32, r.eip as u64),
            HvmContext::X86_64(r) => (StartMode::Long64 { cr3: r.cr3 }, r.rip),
        }
    }

    /// Loads the context over a freshly reset vCPU state (see
    /// [`Self::start`]). CR0.ET is forced on and EFER.SVME kept, as VMRUN
    /// requires; a zero segment attribute means Lantern's flat default.
    pub fn load(&self, s: &mut VmcbSave, regs: &mut GuestRegs) {
        match self {
            HvmContext::X86_32(r) => {
                let seg = |sel: u16, ar: u16, default: u16, limit: u32, base: u32| {
                    VmcbSegment::new(sel, if ar == 0 { default } else { ar }, limit, base as u64)
                };
                s.cs = seg(0x08, r.cs_ar, ATTR_CODE32, r.cs_limit, r.cs_base);
                s.ds = seg(0x10, r.ds_ar, ATTR_DATA32, r.ds_limit, r.ds_base);
                s.ss = seg(0x10, r.ss_ar, ATTR_DATA32, r.ss_limit, r.ss_base);
                s.es = seg(0x10, r.es_ar, ATTR_DATA32, r.es_limit, r.es_base);
                s.tr = seg(0, r.tr_ar, ATTR_TSS_BUSY, r.tr_limit, r.tr_base);
                s.cr0 = r.cr0 as u64 | cr0::ET;
                s.cr3 = r.cr3 as u64;
                s.cr4 = r.cr4 as u64;
                s.efer = r.efer | efer::SVME;
                s.rflags = r.eflags as u64 | rflags::FIXED;
                s.rax = r.eax as u64;
                s.rsp = r.esp as u64;
                regs.rcx = r.ecx as u64;
                regs.rdx = r.edx as u64;
                regs.rbx = r.ebx as u64;
                regs.rbp = r.ebp as u64;
                regs.rsi = r.esi as u64;
                regs.rdi = r.edi as u64;
            }
            HvmContext::X86_64(r) => {
                s.cs = VmcbSegment::new(0x08, ATTR_CODE64, 0xFFFF_FFFF, 0);
                s.cr0 = r.cr0 | cr0::ET;
                s.cr4 = r.cr4;
                s.efer = r.efer | efer::LMA | efer::SVME;
                s.rflags = r.rflags | rflags::FIXED;
                s.rax = r.rax;
                s.rsp = r.rsp;
                regs.rcx = r.rcx;
                regs.rdx = r.rdx;
                regs.rbx = r.rbx;
                regs.rbp = r.rbp;
                regs.rsi = r.rsi;
                regs.rdi = r.rdi;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcb::Vmcb;
    use zerocopy::IntoBytes;

    /// A 32-bit context written at Xen's byte offsets, independently of the
    /// mirror (the layout the x86 test guest builds for its secondaries).
    fn context_32_bytes() -> [u8; VCPU_HVM_CONTEXT_SIZE] {
        let mut c = [0u8; VCPU_HVM_CONTEXT_SIZE];
        let mut put32 = |off: usize, v: u32| c[8 + off..12 + off].copy_from_slice(&v.to_le_bytes());
        put32(0, 0xA0); // eax
        put32(4, 0xC0); // ecx
        put32(8, 0xD0); // edx
        put32(12, 0xB0); // ebx
        put32(16, 0x20_0000); // esp
        put32(20, 0xBB); // ebp
        put32(24, 0x51); // esi
        put32(28, 7); // edi
        put32(32, 0x10_0040); // eip
        put32(36, 0x2); // eflags
        put32(40, 0x11); // cr0: PE | ET
        put32(44, 0x9000); // cr3
        put32(48, 0x10); // cr4: PSE
        put32(64, 0x1000); // cs_base
        put32(72, 0x3000); // ss_base
        put32(84, 0xFFFF_FFFF); // cs_limit
        put32(88, 0xFFFF_FFFF); // ds_limit
        put32(100, 0x67); // tr_limit
        let mut put16 = |off: usize, v: u16| c[8 + off..10 + off].copy_from_slice(&v.to_le_bytes());
        put16(104, 0xC9B); // cs_ar
        put16(106, 0xC93); // ds_ar; ss/es/tr left 0: Lantern's defaults
        c[8 + 56..8 + 64].copy_from_slice(&efer::LME.to_le_bytes());
        c
    }

    #[test]
    fn decode_32() {
        let ctx = HvmContext::decode(&context_32_bytes()).unwrap();
        let HvmContext::X86_32(r) = ctx else { panic!("not a 32-bit context: {ctx:?}") };
        assert_eq!((r.eax, r.ecx, r.edx, r.ebx), (0xA0, 0xC0, 0xD0, 0xB0));
        assert_eq!((r.esp, r.ebp, r.esi, r.edi, r.eip), (0x20_0000, 0xBB, 0x51, 7, 0x10_0040));
        assert_eq!((r.cr0, r.cr3, r.cr4, r.efer), (0x11, 0x9000, 0x10, efer::LME));
        assert_eq!((r.cs_base, r.ss_base, r.cs_limit, r.tr_limit), (0x1000, 0x3000, 0xFFFF_FFFF, 0x67));
        assert_eq!((r.cs_ar, r.ds_ar, r.ss_ar), (0xC9B, 0xC93, 0));
        assert_eq!(ctx.start(), (StartMode::Flat32, 0x10_0040));

        let (mut vmcb, mut regs) = (Vmcb::zeroed(), GuestRegs::default());
        ctx.load(&mut vmcb.save, &mut regs);
        let s = &vmcb.save;
        assert_eq!(s.cs, VmcbSegment::new(0x08, 0xC9B, 0xFFFF_FFFF, 0x1000));
        assert_eq!(s.ds, VmcbSegment::new(0x10, 0xC93, 0xFFFF_FFFF, 0));
        assert_eq!(s.ss, VmcbSegment::new(0x10, ATTR_DATA32, 0, 0x3000), "zero attributes: the default");
        assert_eq!(s.tr, VmcbSegment::new(0, ATTR_TSS_BUSY, 0x67, 0));
        assert_eq!((s.cr0, s.cr3, s.cr4), (0x11, 0x9000, 0x10));
        assert_eq!(s.efer, efer::LME | efer::SVME);
        assert_eq!((s.rflags, s.rax, s.rsp), (0x2, 0xA0, 0x20_0000));
        assert_eq!((regs.rcx, regs.rdx, regs.rbx, regs.rbp, regs.rsi, regs.rdi), (0xC0, 0xD0, 0xB0, 0xBB, 0x51, 7));
    }

    #[test]
    fn decode_64() {
        let r = VcpuHvmX86_64 {
            rax: 1,
            rcx: 2,
            rdx: 3,
            rbx: 4,
            rsp: 0x30_0000,
            rbp: 6,
            rsi: 7,
            rdi: 8,
            rip: 0xFFFF_8000_0020_0000,
            rflags: 0x200,
            cr0: 0x8000_0001,
            cr3: 0x9000,
            cr4: 0x20,
            efer: efer::LME,
        };
        let ctx = VcpuHvmContext { mode: VCPU_HVM_MODE_64B, pad: 0, cpu_regs: r.into() };
        let bytes = ctx.as_bytes();
        assert_eq!(bytes.len(), 128);
        assert_eq!(&bytes[8 + 64..8 + 72], &0xFFFF_8000_0020_0000u64.to_le_bytes(), "rip at Xen's offset");
        let decoded = HvmContext::decode(bytes).unwrap();
        assert_eq!(decoded, HvmContext::X86_64(r));
        assert_eq!(decoded.start(), (StartMode::Long64 { cr3: 0x9000 }, 0xFFFF_8000_0020_0000));

        let (mut vmcb, mut regs) = (Vmcb::zeroed(), GuestRegs::default());
        decoded.load(&mut vmcb.save, &mut regs);
        let s = &vmcb.save;
        assert_eq!(s.cs, VmcbSegment::new(0x08, ATTR_CODE64, 0xFFFF_FFFF, 0));
        assert_eq!((s.cr0, s.cr4), (0x8000_0011, 0x20));
        assert_eq!(s.efer, efer::LME | efer::LMA | efer::SVME);
        assert_eq!((s.rflags, s.rax, s.rsp), (0x202, 1, 0x30_0000));
        assert_eq!((regs.rcx, regs.rdx, regs.rbx, regs.rbp, regs.rsi, regs.rdi), (2, 3, 4, 6, 7, 8));

        // Long mode needs paging, PAE and EFER.LME.
        for broken in [VcpuHvmX86_64 { cr0: 0x11, ..r }, VcpuHvmX86_64 { cr4: 0, ..r }, VcpuHvmX86_64 { efer: 0, ..r }]
        {
            let ctx = VcpuHvmContext { mode: VCPU_HVM_MODE_64B, pad: 0, cpu_regs: broken.into() };
            assert_eq!(HvmContext::decode(ctx.as_bytes()), Err(Errno::EINVAL));
        }
    }

    #[test]
    fn bad_mode() {
        let mut c = context_32_bytes();
        for mode in [2u32, 3, 0xFFFF_FFFF] {
            c[..4].copy_from_slice(&mode.to_le_bytes());
            assert_eq!(HvmContext::decode(&c), Err(Errno::EINVAL), "mode {mode}");
        }
    }

    #[test]
    fn short_and_long_buffers() {
        let c = context_32_bytes();
        assert_eq!(HvmContext::decode(&c[..VCPU_HVM_CONTEXT_SIZE - 1]), Err(Errno::EINVAL));
        assert_eq!(HvmContext::decode(&c[..8]), Err(Errno::EINVAL));
        assert_eq!(HvmContext::decode(&[]), Err(Errno::EINVAL));
        // Bytes past the struct are not Xen's concern either.
        let mut longer = [0xEEu8; 200];
        longer[..VCPU_HVM_CONTEXT_SIZE].copy_from_slice(&c);
        assert_eq!(HvmContext::decode(&longer), HvmContext::decode(&c));
    }
}
