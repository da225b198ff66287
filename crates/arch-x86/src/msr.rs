//! Model-specific register indices Lantern reads, writes or emulates, named
//! once (AMD64 APM vol. 2 appendix A, Intel SDM vol. 4). Xen's own MSR, the
//! hypercall page, is [`crate::cpuid::HYPERCALL_PAGE_MSR`]: CPUID leaf
//! 0x40000002 names it.

/// `IA32_TIME_STAMP_COUNTER`.
pub const TSC: u32 = 0x10;
/// `IA32_APIC_BASE`: the local APIC's base, enable and x2APIC mode bits.
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
/// `IA32_MCG_STATUS`.
pub const MCG_STATUS: u32 = 0x17A;
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
/// `PerfEvtSel0`..3 (legacy AMD counters' event selects; the counters
/// follow at `PERF_CTR0`).
pub const K7_EVNTSEL0: u32 = 0xC001_0000;
/// `PerfCtr0`..3.
pub const K7_PERFCTR0: u32 = 0xC001_0004;
/// `SYSCFG`: system configuration.
pub const K8_SYSCFG: u32 = 0xC001_0010;
/// `HWCR`: hardware configuration.
pub const K8_HWCR: u32 = 0xC001_0015;
/// `TOP_MEM`: top of memory below 4 GiB.
pub const K8_TOP_MEM1: u32 = 0xC001_001A;
/// `TOP_MEM2`: top of memory above 4 GiB.
pub const K8_TOP_MEM2: u32 = 0xC001_001D;
/// `NB_CFG`: northbridge configuration.
pub const AMD64_NB_CFG: u32 = 0xC001_001F;
/// `Interrupt Pending and CMP-Halt` (C1E enable on family 0Fh–11h).
pub const K8_ENABLE_C1E: u32 = 0xC001_0055;
/// Family 15h performance event selects and counters, interleaved
/// (`PERF_CTL0`, `PERF_CTR0`, … `PERF_CTR5`).
pub const FAM15H_PERF_FIRST: u32 = 0xC001_0200;
/// The last of them.
pub const FAM15H_PERF_LAST: u32 = 0xC001_020B;
/// `DE_CFG`: decode configuration.
pub const AMD64_DE_CFG: u32 = 0xC001_1029;
/// `DE_CFG` bit 1: LFENCE is dispatch-serialising.
pub const DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;
/// `EX_CFG`: execution-unit configuration.
pub const AMD64_EX_CFG: u32 = 0xC001_102C;
/// `VM_CR`: SVM control (bit 4, SVMDIS, is the firmware's lock).
pub const VM_CR: u32 = 0xC001_0114;
/// `VM_HSAVE_PA`: where VMRUN saves the host state.
pub const VM_HSAVE_PA: u32 = 0xC001_0117;
