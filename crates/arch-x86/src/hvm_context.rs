//! The x86 `VCPUOP_initialise` argument: `#[repr(C)]` mirrors of Xen's
//! `struct vcpu_hvm_context` (`public/hvm/hvm_vcpu.h`), decoded from the
//! bytes the core copied from the guest, and the VMCB state each mode loads.
//!
//! The context is a `mode` word, a pad word and the `cpu_regs` union of a
//! 32-bit and a 64-bit register set (128 bytes in all, the same for native
//! and compat guests). A 32-bit context names every segment's cached state;
//! a 64-bit one starts the vCPU directly in long mode with flat segments.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use xen_abi::errno::{Errno, XenResult};

use crate::svm::{GuestRegs, StartMode};
use crate::vmcb::{
    cr0, cr4, efer, rflags, VmcbSave, VmcbSegment, ATTR_CODE32, ATTR_CODE64, ATTR_DATA32, ATTR_TSS_BUSY,
};

/// `VCPU_HVM_MODE_32B`: `cpu_regs.x86_32` is in force.
pub const VCPU_HVM_MODE_32B: u32 = 0;
/// `VCPU_HVM_MODE_64B`: `cpu_regs.x86_64` is in force.
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `struct vcpu_hvm_x86_32`: general registers, control registers, EFER and
/// the cached base, limit and attributes (VMCB format, see
/// [`VmcbSegment::attrib`]) of cs, ds, ss, es and tr.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmX86_32 {
    /// eax
    pub eax: u32,
    /// ecx
    pub ecx: u32,
    /// edx
    pub edx: u32,
    /// ebx
    pub ebx: u32,
    /// esp
    pub esp: u32,
    /// ebp
    pub ebp: u32,
    /// esi
    pub esi: u32,
    /// edi
    pub edi: u32,
    /// eip
    pub eip: u32,
    /// eflags
    pub eflags: u32,
    /// cr0
    pub cr0: u32,
    /// cr3
    pub cr3: u32,
    /// cr4
    pub cr4: u32,
    /// Padding before the 64-bit `efer`.
    pub pad1: u32,
    /// EFER (LME may be set; the vCPU then enters long mode when it turns
    /// paging on).
    pub efer: u64,
    /// cs base
    pub cs_base: u32,
    /// ds base
    pub ds_base: u32,
    /// ss base
    pub ss_base: u32,
    /// es base
    pub es_base: u32,
    /// tr base
    pub tr_base: u32,
    /// cs limit
    pub cs_limit: u32,
    /// ds limit
    pub ds_limit: u32,
    /// ss limit
    pub ss_limit: u32,
    /// es limit
    pub es_limit: u32,
    /// tr limit
    pub tr_limit: u32,
    /// cs attributes (0: Lantern's flat 32-bit code default)
    pub cs_ar: u16,
    /// ds attributes (0: flat 32-bit data default)
    pub ds_ar: u16,
    /// ss attributes (0: flat 32-bit data default)
    pub ss_ar: u16,
    /// es attributes (0: flat 32-bit data default)
    pub es_ar: u16,
    /// tr attributes (0: busy TSS default)
    pub tr_ar: u16,
    /// Padding to the union's size.
    pub pad2: [u16; 3],
}

/// `struct vcpu_hvm_x86_64`: general registers, control registers and EFER;
/// the segments are implied (flat, 64-bit code).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmX86_64 {
    /// rax
    pub rax: u64,
    /// rcx
    pub rcx: u64,
    /// rdx
    pub rdx: u64,
    /// rbx
    pub rbx: u64,
    /// rsp
    pub rsp: u64,
    /// rbp
    pub rbp: u64,
    /// rsi
    pub rsi: u64,
    /// rdi
    pub rdi: u64,
    /// rip
    pub rip: u64,
    /// rflags
    pub rflags: u64,
    /// cr0 (PG must be set)
    pub cr0: u64,
    /// cr3
    pub cr3: u64,
    /// cr4 (PAE must be set)
    pub cr4: u64,
    /// EFER (LME must be set)
    pub efer: u64,
}

/// The `cpu_regs` union of `vcpu_hvm_context`, as its bytes: `mode` says
/// which arm to read ([`VcpuHvmX86_32`] fills it, [`VcpuHvmX86_64`] is a
/// prefix). Kept as bytes so reading an arm needs no `unsafe`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmCpuRegs(pub [u8; size_of::<VcpuHvmX86_32>()]);

impl From<VcpuHvmX86_32> for VcpuHvmCpuRegs {
    fn from(r: VcpuHvmX86_32) -> Self {
        VcpuHvmCpuRegs(zerocopy::transmute!(r))
    }
}

impl From<VcpuHvmX86_64> for VcpuHvmCpuRegs {
    fn from(r: VcpuHvmX86_64) -> Self {
        let mut u = VcpuHvmCpuRegs([0; size_of::<VcpuHvmX86_32>()]);
        u.0[..size_of::<VcpuHvmX86_64>()].copy_from_slice(r.as_bytes());
        u
    }
}

/// `struct vcpu_hvm_context`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmContext {
    /// [`VCPU_HVM_MODE_32B`] or [`VCPU_HVM_MODE_64B`].
    pub mode: u32,
    /// Padding (not checked, as in Xen).
    pub pad: u32,
    /// The register set `mode` selects.
    pub cpu_regs: VcpuHvmCpuRegs,
}

/// `sizeof(struct vcpu_hvm_context)`: what `VCPUOP_initialise` copies in.
pub const VCPU_HVM_CONTEXT_SIZE: usize = size_of::<VcpuHvmContext>();

// The layout of Xen's header (x86_64 and compat alike).
const _: () = {
    assert!(size_of::<VcpuHvmX86_32>() == 120);
    assert!(offset_of!(VcpuHvmX86_32, eip) == 32);
    assert!(offset_of!(VcpuHvmX86_32, eflags) == 36);
    assert!(offset_of!(VcpuHvmX86_32, cr0) == 40);
    assert!(offset_of!(VcpuHvmX86_32, cr4) == 48);
    assert!(offset_of!(VcpuHvmX86_32, efer) == 56);
    assert!(offset_of!(VcpuHvmX86_32, cs_base) == 64);
    assert!(offset_of!(VcpuHvmX86_32, tr_base) == 80);
    assert!(offset_of!(VcpuHvmX86_32, cs_limit) == 84);
    assert!(offset_of!(VcpuHvmX86_32, tr_limit) == 100);
    assert!(offset_of!(VcpuHvmX86_32, cs_ar) == 104);
    assert!(offset_of!(VcpuHvmX86_32, tr_ar) == 112);
    assert!(offset_of!(VcpuHvmX86_32, pad2) == 114);
    assert!(size_of::<VcpuHvmX86_64>() == 112);
    assert!(offset_of!(VcpuHvmX86_64, rip) == 64);
    assert!(offset_of!(VcpuHvmX86_64, rflags) == 72);
    assert!(offset_of!(VcpuHvmX86_64, cr0) == 80);
    assert!(offset_of!(VcpuHvmX86_64, efer) == 104);
    assert!(size_of::<VcpuHvmCpuRegs>() == 120);
    assert!(size_of::<VcpuHvmX86_64>() <= size_of::<VcpuHvmCpuRegs>());
    assert!(offset_of!(VcpuHvmContext, pad) == 4);
    assert!(offset_of!(VcpuHvmContext, cpu_regs) == 8);
    assert!(size_of::<VcpuHvmContext>() == 128);
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
