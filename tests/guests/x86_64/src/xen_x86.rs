//! The x86-only parts of Xen's guest ABI this guest uses, each named once:
//! the CPUID leaves that find Xen (`arch-x86/cpuid.h`), the hypercall page,
//! the PVH entry note (`elfnote.h`), `struct hvm_start_info`
//! (`arch-x86/hvm/start_info.h`) and `struct vcpu_hvm_context`
//! (`hvm/hvm_vcpu.h`) as `#[repr(C)]` mirrors.

use core::mem::{offset_of, size_of};

use xen_abi::nr::elfnote;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_CPUID_FIRST_LEAF`: the lowest base Xen's leaves may have.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Xen's leaves may sit higher (behind another hypervisor's) in steps of this.
pub const XEN_CPUID_LEAF_STRIDE: u32 = 0x100;
/// End (exclusive) of the range of bases searched.
pub const XEN_CPUID_BASE_END: u32 = 0x4001_0000;
/// `XEN_CPUID_SIGNATURE_EBX/ECX/EDX` of the base leaf, in register order.
pub const XEN_CPUID_SIGNATURE: &str = "XenVMMXenVMM";
/// Leaf base + 1: eax = Xen's version (as `XENVER_version` encodes it).
pub const XEN_CPUID_LEAF_VERSION: u32 = 1;
/// Leaf base + 2: eax = number of hypercall pages, ebx = the MSR that
/// installs them.
pub const XEN_CPUID_LEAF_HYPERCALL: u32 = 2;

/// Bytes per hypercall stub in the hypercall page: stub `nr` is at
/// `nr * 32`.
pub const HYPERCALL_STUB_SIZE: usize = 32;
/// Stubs in one (4 KiB) hypercall page: hypercall numbers below this.
pub const HYPERCALL_STUBS: u64 = (lantern_guest_scenario::PAGE_SIZE as usize / HYPERCALL_STUB_SIZE) as u64;

/// `XEN_HVM_START_MAGIC_VALUE`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `struct hvm_start_info`, version 0 (the fields every version has).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvmStartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of this structure.
    pub version: u32,
    /// `SIF_xxx` flags.
    pub flags: u32,
    /// Number of modules passed.
    pub nr_modules: u32,
    /// Physical address of the module list.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line (0 = none).
    pub cmdline_paddr: u64,
    /// Physical address of the RSDP ACPI table.
    pub rsdp_paddr: u64,
}

/// `VCPU_HVM_MODE_32B`: start in 32-bit protected mode.
pub const VCPU_HVM_MODE_32B: u32 = 0;

/// `struct vcpu_hvm_x86_32`: the state of a vCPU started in 32-bit mode
/// (the fields are the registers they name; `*_ar` are access rights in
/// the VMCB's packed format).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmX86_32 {
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    pub ebx: u32,
    pub esp: u32,
    pub ebp: u32,
    pub esi: u32,
    pub edi: u32,
    pub eip: u32,
    pub eflags: u32,
    pub cr0: u32,
    pub cr3: u32,
    pub cr4: u32,
    pub pad1: u32,
    pub efer: u64,
    pub cs_base: u32,
    pub ds_base: u32,
    pub ss_base: u32,
    pub es_base: u32,
    pub tr_base: u32,
    pub cs_limit: u32,
    pub ds_limit: u32,
    pub ss_limit: u32,
    pub es_limit: u32,
    pub tr_limit: u32,
    pub cs_ar: u16,
    pub ds_ar: u16,
    pub ss_ar: u16,
    pub es_ar: u16,
    pub tr_ar: u16,
    pub pad2: [u16; 3],
}

/// `struct vcpu_hvm_context` (the `VCPUOP_initialise` argument of an HVM
/// vCPU) with the 32-bit member of its register union, the larger one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuHvmContext {
    /// `VCPU_HVM_MODE_*`.
    pub mode: u32,
    /// Padding.
    pub pad: u32,
    /// `cpu_regs.x86_32`.
    pub x86_32: VcpuHvmX86_32,
}

// The layout of Xen's headers (offsets inside `vcpu_hvm_x86_32`; the union
// starts at 8 and is 120 bytes).
const _: () = {
    assert!(size_of::<HvmStartInfo>() == 40 && offset_of!(HvmStartInfo, cmdline_paddr) == 24);
    assert!(size_of::<VcpuHvmContext>() == 128 && offset_of!(VcpuHvmContext, x86_32) == 8);
    assert!(offset_of!(VcpuHvmX86_32, esp) == 16 && offset_of!(VcpuHvmX86_32, edi) == 28);
    assert!(offset_of!(VcpuHvmX86_32, eip) == 32 && offset_of!(VcpuHvmX86_32, efer) == 56);
    assert!(offset_of!(VcpuHvmX86_32, cs_base) == 64 && offset_of!(VcpuHvmX86_32, cs_limit) == 84);
    assert!(offset_of!(VcpuHvmX86_32, cs_ar) == 104 && offset_of!(VcpuHvmX86_32, tr_ar) == 112);
};

/// EFLAGS with only the always-one reserved bit 1.
const EFLAGS_RESERVED: u32 = 1 << 1;
/// CR0.PE | CR0.ET: protected mode, paging off.
const CR0_PE_ET: u32 = (1 << 0) | (1 << 4);
/// A 4 GiB segment limit.
const LIMIT_4G: u32 = 0xffff_ffff;
/// Limit of a minimal 32-bit TSS (104 bytes).
const TSS_LIMIT: u32 = 0x67;
/// Access rights (VMCB layout): code, exec/read, accessed, S, present, D/B, G.
const AR_CODE32: u16 = 0xc9b;
/// Access rights: data, read/write, accessed, S, present, D/B, G.
const AR_DATA32: u16 = 0xc93;
/// Access rights: busy 32-bit TSS, present.
const AR_TSS32_BUSY: u16 = 0x8b;

impl VcpuHvmContext {
    /// A vCPU started in 32-bit flat protected mode with paging off
    /// (`VCPU_HVM_MODE_32B`): 4 GiB code and data segments, a busy 32-bit
    /// TSS, and the given `eip`, `esp` and `edi`.
    pub fn flat32(eip: u32, esp: u32, edi: u32) -> Self {
        VcpuHvmContext {
            mode: VCPU_HVM_MODE_32B,
            pad: 0,
            x86_32: VcpuHvmX86_32 {
                esp,
                edi,
                eip,
                eflags: EFLAGS_RESERVED,
                cr0: CR0_PE_ET,
                cs_limit: LIMIT_4G,
                ds_limit: LIMIT_4G,
                ss_limit: LIMIT_4G,
                es_limit: LIMIT_4G,
                tr_limit: TSS_LIMIT,
                cs_ar: AR_CODE32,
                ds_ar: AR_DATA32,
                ss_ar: AR_DATA32,
                es_ar: AR_DATA32,
                tr_ar: AR_TSS32_BUSY,
                ..Default::default()
            },
        }
    }
}

/// Size of the note's name field: Xen's owner name, NUL-terminated, padded
/// to 4 bytes.
const NOTE_NAME_SIZE: usize = (elfnote::OWNER.len() + 1).next_multiple_of(4);

/// The ELF note (`.note.Xen`, type `XEN_ELFNOTE_PHYS32_ENTRY`) by which a
/// PVH loader finds the 32-bit entry point: its descriptor is the entry's
/// address, pointer-sized (8 bytes in the ELF64 build, 4 in the ELF32 one).
#[repr(C, packed(4))]
pub struct Phys32EntryNote {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; NOTE_NAME_SIZE],
    entry: unsafe extern "C" fn(),
}

impl Phys32EntryNote {
    /// The note naming `entry`.
    pub const fn new(entry: unsafe extern "C" fn()) -> Self {
        let mut name = [0u8; NOTE_NAME_SIZE];
        let owner = elfnote::OWNER.as_bytes();
        let mut i = 0;
        while i < owner.len() {
            name[i] = owner[i];
            i += 1;
        }
        Phys32EntryNote {
            namesz: owner.len() as u32 + 1,
            descsz: size_of::<usize>() as u32,
            kind: elfnote::PHYS32_ENTRY,
            name,
            entry,
        }
    }
}
