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
use crate::vmcb::{cr0, cr4, efer, rflags, VmcbSave, VmcbSegment, ATTR_CODE64};

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
    ///
    /// The checks are Xen's (`arch_set_info_hvm_guest`), so a context Xen
    /// refuses is refused here before anything about the vCPU changes, and
    /// no state VMRUN would reject reaches the VMCB: nonzero padding; in a
    /// 32-bit context, segment attributes that do not describe what each
    /// register must hold ([`check_segment`]), an EIP beyond CS's limit,
    /// SS.DPL ≠ CS.DPL, a DS/ES more privileged than CS, EFER.LMA without
    /// LME; in a 64-bit one, a non-canonical RIP; in both, CR4 or EFER bits
    /// the vCPU does not offer ([`CR4_VALID`], [`EFER_VALID`]).
    pub fn decode(bytes: &[u8]) -> XenResult<Self> {
        let (ctx, _) = VcpuHvmContext::read_from_prefix(bytes).map_err(|_| Errno::EINVAL)?;
        if ctx.pad != 0 {
            return Err(Errno::EINVAL);
        }
        // The arms fit the union (asserted above), so these reads succeed.
        let regs = ctx.cpu_regs.0.as_slice();
        let decoded = match ctx.mode {
            VCPU_HVM_MODE_32B => {
                let (r, _) = VcpuHvmX86_32::read_from_prefix(regs).map_err(|_| Errno::EINVAL)?;
                check_32(&r)?;
                HvmContext::X86_32(r)
            }
            VCPU_HVM_MODE_64B => {
                let (r, _) = VcpuHvmX86_64::read_from_prefix(regs).map_err(|_| Errno::EINVAL)?;
                if r.cr0 & cr0::PG == 0 || r.efer & efer::LME == 0 || r.cr4 & cr4::PAE == 0 || !canonical(r.rip) {
                    return Err(Errno::EINVAL);
                }
                HvmContext::X86_64(r)
            }
            _ => return Err(Errno::EINVAL),
        };
        let (cr4_bits, efer_bits) = match &decoded {
            HvmContext::X86_32(r) => (r.cr4 as u64, r.efer),
            HvmContext::X86_64(r) => (r.cr4, r.efer),
        };
        if cr4_bits & !CR4_VALID != 0 || efer_bits & !EFER_VALID != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(decoded)
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
    /// requires.
    pub fn load(&self, s: &mut VmcbSave, regs: &mut GuestRegs) {
        match self {
            HvmContext::X86_32(r) => {
                // The attributes as checked by `decode` (a null DS/ES stays
                // null), with Xen's accessed and busy bits.
                let seg = |sel: u16, ar: u16, which: Seg, limit: u32, base: u32| {
                    VmcbSegment::new(sel, loaded_attr(ar, which), limit, base as u64)
                };
                s.cs = seg(0x08, r.cs_ar, Seg::Cs, r.cs_limit, r.cs_base);
                s.ds = seg(0x10, r.ds_ar, Seg::Ds, r.ds_limit, r.ds_base);
                s.ss = seg(0x10, r.ss_ar, Seg::Ss, r.ss_limit, r.ss_base);
                s.es = seg(0x10, r.es_ar, Seg::Es, r.es_limit, r.es_base);
                s.tr = seg(0, r.tr_ar, Seg::Tr, r.tr_limit, r.tr_base);
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

/// CR4 bits a `VCPUOP_initialise` context may set: what the vCPU's CPUID
/// offers (VME to OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, OSXSAVE, SMEP, SMAP).
/// Xen derives its set from the domain's CPUID policy the same way; VMXE
/// (no VMX here), LA57, SMXE, PKE and CET are not offered.
pub const CR4_VALID: u64 = 0x7ff | 1 << 11 | cr4::FSGSBASE | cr4::PCIDE | 1 << 18 | cr4::SMEP | cr4::SMAP;

/// EFER bits a context may set: SCE, LME, LMA (set by Xen itself with
/// LME), NXE and FFXSR. SVME is the hypervisor's (no nested SVM).
pub const EFER_VALID: u64 = efer::SCE | efer::LME | efer::LMA | efer::NXE | 1 << 14;

/// A segment attribute word's fields (the VMCB's / Xen's 12-bit format).
mod attr {
    /// Type: code (vs data).
    pub const CODE: u16 = 1 << 3;
    /// Type: writable data / readable code.
    pub const RW: u16 = 1 << 1;
    /// Type: accessed.
    pub const ACCESSED: u16 = 1 << 0;
    /// The type field.
    pub const TYPE: u16 = 0xf;
    /// Code or data (vs system) descriptor.
    pub const S: u16 = 1 << 4;
    /// Present.
    pub const P: u16 = 1 << 7;
    /// Granularity: the limit counts 4 KiB pages.
    pub const G: u16 = 1 << 11;
    /// Bits 12–15, which must be zero.
    pub const PAD: u16 = 0xf000;
    /// System type of a busy 32-bit TSS.
    pub const TSS_BUSY: u16 = 0xb;
    /// The DPL of `a`.
    pub fn dpl(a: u16) -> u16 {
        (a >> 5) & 3
    }
}

/// The segment registers a 32-bit context loads, for [`check_segment`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seg {
    Cs,
    Ds,
    Ss,
    Es,
    Tr,
}

/// Whether attribute word `a` may be loaded into `seg` (Xen's
/// `check_segment`): bits 12–15 clear; only DS and ES may be null (0);
/// TR a busy 32-bit TSS, the others code/data; present; CS code, SS
/// writable data, DS/ES data or readable code.
fn check_segment(a: u16, seg: Seg) -> XenResult<()> {
    let ok = if a & attr::PAD != 0 {
        false
    } else if a == 0 {
        matches!(seg, Seg::Ds | Seg::Es)
    } else {
        let ty = a & attr::TYPE;
        let kind_ok = match seg {
            Seg::Tr => a & attr::S == 0 && ty == attr::TSS_BUSY,
            _ => a & attr::S != 0,
        };
        kind_ok
            && a & attr::P != 0
            && match seg {
                Seg::Cs => ty & attr::CODE != 0,
                Seg::Ss => ty & attr::CODE == 0 && ty & attr::RW != 0,
                Seg::Ds | Seg::Es => ty & attr::CODE == 0 || ty & attr::RW != 0,
                Seg::Tr => true,
            }
    };
    if ok {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// The attributes Xen loads for `a`: a present segment gets its accessed
/// bit; TR is loaded busy.
fn loaded_attr(a: u16, seg: Seg) -> u16 {
    match seg {
        Seg::Tr => a | 2,
        _ if a & attr::P != 0 => a | attr::ACCESSED,
        _ => a,
    }
}

/// Xen's checks of a 32-bit context's segments, EIP and EFER.
fn check_32(r: &VcpuHvmX86_32) -> XenResult<()> {
    if r.pad1 != 0 || r.pad2 != [0; 3] {
        return Err(Errno::EINVAL);
    }
    let segs = [(r.cs_ar, Seg::Cs), (r.ds_ar, Seg::Ds), (r.ss_ar, Seg::Ss), (r.es_ar, Seg::Es), (r.tr_ar, Seg::Tr)];
    for (a, seg) in segs {
        check_segment(loaded_attr(a, seg), seg)?;
    }
    let limit = if r.cs_ar & attr::G != 0 { (r.cs_limit << 12) | 0xfff } else { r.cs_limit };
    let cs_dpl = attr::dpl(r.cs_ar);
    let data_above_cs = |a: u16| a & attr::P != 0 && attr::dpl(a) > cs_dpl;
    if r.eip > limit
        || attr::dpl(r.ss_ar) != cs_dpl
        || data_above_cs(r.ds_ar)
        || data_above_cs(r.es_ar)
        || (r.efer & efer::LMA != 0 && r.efer & efer::LME == 0)
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Whether `va` is canonical for 48-bit virtual addresses.
pub(crate) fn canonical(va: u64) -> bool {
    ((va as i64) << 16 >> 16) as u64 == va
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcb::Vmcb;
    use crate::vmcb::{ATTR_DATA32, ATTR_TSS_BUSY};
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
        put16(106, 0xC93); // ds_ar
        put16(108, 0xC93); // ss_ar
        put16(112, 0x8B); // tr_ar: busy 32-bit TSS; es_ar left 0: a null segment
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
        assert_eq!((r.cs_ar, r.ds_ar, r.ss_ar, r.es_ar), (0xC9B, 0xC93, 0xC93, 0));
        assert_eq!(ctx.start(), (StartMode::Flat32, 0x10_0040));

        let (mut vmcb, mut regs) = (Vmcb::zeroed(), GuestRegs::default());
        ctx.load(&mut vmcb.save, &mut regs);
        let s = &vmcb.save;
        assert_eq!(s.cs, VmcbSegment::new(0x08, 0xC9B, 0xFFFF_FFFF, 0x1000));
        assert_eq!(s.ds, VmcbSegment::new(0x10, 0xC93, 0xFFFF_FFFF, 0));
        assert_eq!(s.ss, VmcbSegment::new(0x10, ATTR_DATA32, 0, 0x3000));
        assert_eq!(s.es, VmcbSegment::new(0x10, 0, 0, 0), "zero attributes: a null segment");
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
    fn contexts_xen_refuses_are_refused() {
        let good = HvmContext::decode(&context_32_bytes()).unwrap();
        let HvmContext::X86_32(r) = good else { unreachable!() };
        let ctx32 = |r: VcpuHvmX86_32| VcpuHvmContext { mode: VCPU_HVM_MODE_32B, pad: 0, cpu_regs: r.into() };
        assert_eq!(HvmContext::decode(ctx32(r).as_bytes()), Ok(good));
        let refused: [(&str, VcpuHvmX86_32); 14] = [
            ("null CS", VcpuHvmX86_32 { cs_ar: 0, ..r }),
            ("null SS", VcpuHvmX86_32 { ss_ar: 0, ..r }),
            ("null TR", VcpuHvmX86_32 { tr_ar: 0, ..r }),
            ("data segment as CS", VcpuHvmX86_32 { cs_ar: 0xC93, ..r }),
            ("code segment as SS", VcpuHvmX86_32 { ss_ar: 0xC9B, ..r }),
            ("read-only SS", VcpuHvmX86_32 { ss_ar: 0xC91, ..r }),
            ("execute-only code as DS", VcpuHvmX86_32 { ds_ar: 0xC99, ..r }),
            ("system segment as DS", VcpuHvmX86_32 { ds_ar: 0xC82, ..r }),
            ("non-present CS", VcpuHvmX86_32 { cs_ar: 0xC1B, ..r }),
            ("attribute bits 12-15", VcpuHvmX86_32 { ds_ar: 0x1C93, ..r }),
            ("a data segment as TR", VcpuHvmX86_32 { tr_ar: 0xC93, ..r }),
            ("EIP past a byte-granular CS limit", VcpuHvmX86_32 { cs_ar: 0x49B, cs_limit: 0xFFFF, eip: 0x10000, ..r }),
            ("SS.DPL 3 under CS.DPL 0", VcpuHvmX86_32 { ss_ar: 0xCF3, ..r }),
            ("EFER.LMA without LME", VcpuHvmX86_32 { efer: efer::LMA, ..r }),
        ];
        for (what, bad) in refused {
            assert_eq!(HvmContext::decode(ctx32(bad).as_bytes()), Err(Errno::EINVAL), "{what}");
        }
        for (what, bad) in [
            ("CR4.VMXE", VcpuHvmX86_32 { cr4: cr4::VMXE as u32, ..r }),
            ("CR4.PKE", VcpuHvmX86_32 { cr4: 1 << 22, ..r }),
            ("EFER.SVME", VcpuHvmX86_32 { efer: efer::SVME, ..r }),
            ("an EFER reserved bit", VcpuHvmX86_32 { efer: 1 << 40, ..r }),
            ("pad1", VcpuHvmX86_32 { pad1: 1, ..r }),
            ("pad2", VcpuHvmX86_32 { pad2: [0, 0, 7], ..r }),
        ] {
            assert_eq!(HvmContext::decode(ctx32(bad).as_bytes()), Err(Errno::EINVAL), "{what}");
        }
        let padded = VcpuHvmContext { pad: 1, ..ctx32(r) };
        assert_eq!(HvmContext::decode(padded.as_bytes()), Err(Errno::EINVAL), "the context's pad");
        // A null DS (and a page-granular CS limit covering EIP) is fine.
        let ok = VcpuHvmX86_32 { ds_ar: 0, cs_limit: 0xF_FFFF, ..r };
        assert!(HvmContext::decode(ctx32(ok).as_bytes()).is_ok());

        let r64 =
            VcpuHvmX86_64 { rip: 0x20_0000, cr0: 0x8000_0011, cr4: cr4::PAE, efer: efer::LME, ..Default::default() };
        let ctx64 = |r: VcpuHvmX86_64| VcpuHvmContext { mode: VCPU_HVM_MODE_64B, pad: 0, cpu_regs: r.into() };
        assert!(HvmContext::decode(ctx64(r64).as_bytes()).is_ok());
        for (what, bad) in [
            ("non-canonical RIP", VcpuHvmX86_64 { rip: 0x0000_8000_0000_0000, ..r64 }),
            ("CR4.LA57", VcpuHvmX86_64 { cr4: cr4::PAE | 1 << 12, ..r64 }),
            ("EFER.SVME", VcpuHvmX86_64 { efer: efer::LME | efer::SVME, ..r64 }),
        ] {
            assert_eq!(HvmContext::decode(ctx64(bad).as_bytes()), Err(Errno::EINVAL), "{what}");
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
