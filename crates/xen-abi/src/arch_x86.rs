//! The x86 parts of Xen's public headers that a guest and the hypervisor
//! both speak, named once: the CPUID leaves that find Xen
//! (`arch-x86/cpuid.h`), the hypercall page's geometry, the PVH start info
//! (`arch-x86/hvm/start_info.h`) and the HVM vCPU context of
//! `VCPUOP_initialise` (`hvm/hvm_vcpu.h`), the vcpu_info slot count of
//! shared_info (`arch-x86/xen.h`) and the HVM debug console port. Like Xen's
//! `public/arch-x86/` (and [`crate::arch_arm`] for arm), the hypervisor's
//! x86 backend and the x86 test guest both build on it.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_CPUID_FIRST_LEAF`: the lowest base Xen's leaves may have.
pub const CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Xen's leaves may sit higher (behind another hypervisor's) in steps of this.
pub const CPUID_LEAF_STRIDE: u32 = 0x100;
/// End (exclusive) of the range of bases a guest searches.
pub const CPUID_BASE_END: u32 = 0x4001_0000;
/// `XEN_CPUID_SIGNATURE_EBX/ECX/EDX` of the base leaf, in register order.
pub const CPUID_SIGNATURE: &str = "XenVMMXenVMM";
/// `XEN_CPUID_MAX_NUM_LEAVES`: the base leaf's eax is base + this, the
/// highest Xen leaf.
pub const CPUID_MAX_NUM_LEAVES: u32 = 5;
/// Leaf base + 1: eax = Xen's version (as `XENVER_version` encodes it).
pub const CPUID_LEAF_VERSION: u32 = 1;
/// Leaf base + 2: eax = number of hypercall pages, ebx = the MSR that
/// installs them.
pub const CPUID_LEAF_HYPERCALL: u32 = 2;
/// Leaf base + 4: HVM-specific features, the vCPU and domain ids.
pub const CPUID_LEAF_HVM: u32 = 4;
/// `XEN_HVM_CPUID_VCPU_ID_PRESENT` (leaf base + 4, eax): ebx holds the vCPU id.
pub const CPUID_HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
/// `XEN_HVM_CPUID_DOMID_PRESENT` (leaf base + 4, eax): ecx holds the domain id.
pub const CPUID_HVM_DOMID_PRESENT: u32 = 1 << 4;

/// `XEN_LEGACY_MAX_VCPUS` on x86: vCPUs below this id have a vcpu_info slot
/// in shared_info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// The HVM debug console port (`XEN_HVM_DEBUGCONS_IOPORT`; QEMU's
/// `-debugcon`): bytes written to it become the domain's console output.
pub const DEBUG_PORT: u16 = 0xe9;

/// Bytes per hypercall stub in the hypercall page: stub `nr` is at
/// `nr * 32`.
pub const HYPERCALL_STUB_SIZE: usize = 32;

/// `XEN_HVM_START_MAGIC_VALUE`, the first word of `hvm_start_info`.
pub const START_MAGIC: u32 = 0x336e_c578;
/// The `hvm_start_info` version with a memory map.
pub const START_INFO_VERSION_MEMMAP: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RAM` (E820 usable RAM).
pub const MEMMAP_TYPE_RAM: u32 = 1;
/// `XEN_HVM_MEMMAP_TYPE_RESERVED` (E820 reserved: not RAM the guest may
/// allocate).
pub const MEMMAP_TYPE_RESERVED: u32 = 2;
/// `X86_HVM_END_SPECIAL_REGION` (`xenguest.h`): the toolstack's special
/// pages (xenstore, console, ...) end below this gfn, just under 4 GiB.
pub const HVM_END_SPECIAL_REGION: u64 = 0xff000;
/// `X86_HVM_NR_SPECIAL_PAGES`: how many special pages sit below it.
pub const HVM_NR_SPECIAL_PAGES: u64 = 8;
/// `SPECIALPAGE_CONSOLE` (`xg_dom_x86.c`): the console ring's index among
/// the special pages.
pub const SPECIALPAGE_CONSOLE: u64 = 7;
/// The gfn of an HVM/PVH guest's console ring, where Xen's toolstack puts
/// it (`special_pfn(SPECIALPAGE_CONSOLE)`).
pub const HVM_CONSOLE_GFN: u64 = HVM_END_SPECIAL_REGION - HVM_NR_SPECIAL_PAGES + SPECIALPAGE_CONSOLE;

/// `struct hvm_start_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmStartInfo {
    /// [`START_MAGIC`].
    pub magic: u32,
    /// Version of the structure.
    pub version: u32,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Number of modules.
    pub nr_modules: u32,
    /// Address of the `hvm_modlist_entry` array.
    pub modlist_paddr: u64,
    /// Address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Address of the `hvm_memmap_table_entry` array (version >= 1).
    pub memmap_paddr: u64,
    /// Number of memory-map entries.
    pub memmap_entries: u32,
    /// Reserved.
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmModlistEntry {
    /// Module address.
    pub paddr: u64,
    /// Module size in bytes.
    pub size: u64,
    /// The module's command line.
    pub cmdline_paddr: u64,
    /// Reserved.
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmMemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`.
    pub kind: u32,
    /// Reserved.
    pub reserved: u32,
}

const _: () = {
    assert!(size_of::<HvmStartInfo>() == 56 && offset_of!(HvmStartInfo, cmdline_paddr) == 24);
    assert!(size_of::<HvmModlistEntry>() == 32);
    assert!(size_of::<HvmMemmapTableEntry>() == 24);
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
    /// cs attributes (never 0: CS must be a present code segment)
    pub cs_ar: u16,
    /// ds attributes (0: a null segment)
    pub ds_ar: u16,
    /// ss attributes (never 0: SS must be a present, writable data segment)
    pub ss_ar: u16,
    /// es attributes (0: a null segment)
    pub es_ar: u16,
    /// tr attributes (never 0: TR must be a 32-bit TSS; loaded busy)
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
    /// Padding: must be 0 (Xen refuses anything else with EINVAL).
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
