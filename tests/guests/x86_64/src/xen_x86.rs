//! The x86-only parts of Xen's guest ABI this guest uses, each named once:
//! the CPUID leaves, the hypercall page, `hvm_start_info` and
//! `vcpu_hvm_context` come from `xen_abi::arch_x86` (shared with the
//! hypervisor); the flat 32-bit start context and the PVH entry note
//! (`elfnote.h`) are built here.

use core::mem::size_of;

use xen_abi::nr::elfnote;

pub use xen_abi::arch_x86::{
    HvmStartInfo, VcpuHvmContext, VcpuHvmX86_32, VcpuHvmX86_64, CPUID_BASE_END as XEN_CPUID_BASE_END,
    CPUID_FIRST_LEAF as XEN_CPUID_FIRST_LEAF, CPUID_LEAF_HYPERCALL as XEN_CPUID_LEAF_HYPERCALL,
    CPUID_LEAF_STRIDE as XEN_CPUID_LEAF_STRIDE, CPUID_LEAF_VERSION as XEN_CPUID_LEAF_VERSION,
    CPUID_SIGNATURE as XEN_CPUID_SIGNATURE, HYPERCALL_STUB_SIZE, START_MAGIC as XEN_HVM_START_MAGIC_VALUE,
    VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B,
};

/// Stubs in one (4 KiB) hypercall page: hypercall numbers below this.
pub const HYPERCALL_STUBS: u64 = (lantern_guest_scenario::PAGE_SIZE as usize / HYPERCALL_STUB_SIZE) as u64;

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

/// A vCPU started in 32-bit flat protected mode with paging off
/// (`VCPU_HVM_MODE_32B`): 4 GiB code and data segments, a busy 32-bit TSS,
/// and the given `eip`, `esp` and `edi`.
pub fn flat32_context(eip: u32, esp: u32, edi: u32) -> VcpuHvmContext {
    VcpuHvmContext { mode: VCPU_HVM_MODE_32B, pad: 0, cpu_regs: flat32_regs(eip, esp, edi).into() }
}

/// The register set of [`flat32_context`].
pub fn flat32_regs(eip: u32, esp: u32, edi: u32) -> VcpuHvmX86_32 {
    VcpuHvmX86_32 {
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
    }
}

/// `VCPUOP_initialise` contexts Xen refuses with `-EINVAL`, each a small
/// change to a good flat 32-bit start at `eip` (the `attack` word): what
/// each one breaks, and the context.
pub fn refused_contexts(eip: u32, esp: u32) -> [(&'static str, VcpuHvmContext); 8] {
    let r = flat32_regs(eip, esp, 0);
    let ctx = |regs: VcpuHvmX86_32| VcpuHvmContext { mode: VCPU_HVM_MODE_32B, pad: 0, cpu_regs: regs.into() };
    let long = VcpuHvmX86_64 {
        rip: 0x0000_8000_0000_0000,
        cr0: (1 << 31) | 1,
        cr4: 1 << 5,
        efer: 1 << 8,
        ..Default::default()
    };
    [
        ("a null CS", ctx(VcpuHvmX86_32 { cs_ar: 0, ..r })),
        ("a data segment as CS", ctx(VcpuHvmX86_32 { cs_ar: AR_DATA32, ..r })),
        // Byte-granular CS of 64 KiB, EIP above it.
        ("EIP past CS's limit", ctx(VcpuHvmX86_32 { cs_ar: AR_CODE32 & !(1 << 11), cs_limit: 0xffff, ..r })),
        ("CR4.VMXE (no VMX offered)", ctx(VcpuHvmX86_32 { cr4: 1 << 13, ..r })),
        ("EFER.SVME (the hypervisor's)", ctx(VcpuHvmX86_32 { efer: 1 << 12, ..r })),
        ("an unknown mode", VcpuHvmContext { mode: 5, ..ctx(r) }),
        ("nonzero padding", VcpuHvmContext { pad: 1, ..ctx(r) }),
        ("a non-canonical 64-bit RIP", VcpuHvmContext { mode: VCPU_HVM_MODE_64B, pad: 0, cpu_regs: long.into() }),
    ]
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
