//! The few x86 instructions the guest needs in both its 32-bit and 64-bit
//! builds (CPUID, WRMSR, RDTSC), written once over `core::arch`.

use core::arch::asm;
#[cfg(target_arch = "x86")]
use core::arch::x86 as arch;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64 as arch;

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    #[allow(unused_unsafe)]
    // SAFETY: every CPU this guest runs on (32-bit protected mode or long
    // mode under SVM) has CPUID, which has no side effects.
    let r = unsafe { arch::__cpuid_count(leaf, 0) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Write MSR `msr`.
///
/// # Safety
/// The caller must know what writing this MSR does.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: per the function contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack));
    }
}

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    #[allow(unused_unsafe)]
    // SAFETY: RDTSC has no side effects (CR4.TSD is clear).
    unsafe {
        arch::_rdtsc()
    }
}
