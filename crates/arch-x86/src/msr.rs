//! Model-specific register indices Lantern reads, writes or emulates, named
//! once (AMD64 APM vol. 2 appendix A, Intel SDM vol. 4). Xen's own MSR, the
//! hypercall page, is [`crate::cpuid::HYPERCALL_PAGE_MSR`]: CPUID leaf
//! 0x40000002 names it.

/// `IA32_TIME_STAMP_COUNTER`.
pub const TSC: u32 = 0x10;
/// `IA32_APIC_BASE` (no local APIC is emulated: it faults).
pub const APIC_BASE: u32 = 0x1B;
/// `IA32_SPEC_CTRL`.
pub const SPEC_CTRL: u32 = 0x48;
/// `IA32_PRED_CMD` (write-only).
pub const PRED_CMD: u32 = 0x49;
/// `IA32_BIOS_SIGN_ID`: the microcode signature.
pub const BIOS_SIGN_ID: u32 = 0x8B;
/// `IA32_MTRRCAP`.
pub const MTRR_CAP: u32 = 0xFE;
/// `IA32_SYSENTER_CS`.
pub const SYSENTER_CS: u32 = 0x174;
/// `IA32_SYSENTER_ESP`.
pub const SYSENTER_ESP: u32 = 0x175;
/// `IA32_SYSENTER_EIP`.
pub const SYSENTER_EIP: u32 = 0x176;
/// `IA32_MCG_CAP`.
pub const MCG_CAP: u32 = 0x179;
/// `IA32_MISC_ENABLE`.
pub const MISC_ENABLE: u32 = 0x1A0;
/// `IA32_DEBUGCTL`.
pub const DEBUGCTL: u32 = 0x1D9;
/// `IA32_PAT`.
pub const PAT: u32 = 0x277;
/// `IA32_MTRR_DEF_TYPE`.
pub const MTRR_DEF_TYPE: u32 = 0x2FF;
/// `EFER`: extended feature enables (bits in [`crate::vmcb::efer`]).
pub const EFER: u32 = 0xC000_0080;
/// `STAR`: SYSCALL/SYSRET segment selectors (and legacy target).
pub const STAR: u32 = 0xC000_0081;
/// `LSTAR`: 64-bit SYSCALL target.
pub const LSTAR: u32 = 0xC000_0082;
/// `CSTAR`: compatibility-mode SYSCALL target.
pub const CSTAR: u32 = 0xC000_0083;
/// `SFMASK`: RFLAGS bits SYSCALL clears.
pub const SFMASK: u32 = 0xC000_0084;
/// `FS.base`.
pub const FS_BASE: u32 = 0xC000_0100;
/// `GS.base`.
pub const GS_BASE: u32 = 0xC000_0101;
/// `KernelGSbase`: what SWAPGS exchanges with `GS.base`.
pub const KERNEL_GS_BASE: u32 = 0xC000_0102;
/// `TSC_AUX`: what RDTSCP returns in ECX.
pub const TSC_AUX: u32 = 0xC000_0103;
/// `VM_CR`: SVM control (bit 4, SVMDIS, is the firmware's lock).
pub const VM_CR: u32 = 0xC001_0114;
/// `VM_HSAVE_PA`: where VMRUN saves the host state.
pub const VM_HSAVE_PA: u32 = 0xC001_0117;
