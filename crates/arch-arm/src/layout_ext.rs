//! The argument structs of the arm64 layout beyond the shared-memory ones:
//! the native table `xen_abi::public_ext` shares with x86_64 (arm guest
//! handles are 64-bit and 8-aligned, `xen_ulong_t` and `xen_pfn_t` 64-bit),
//! after arm's empty `arch_vcpu_info`.

use xen_abi::layout::{concat_structs, StructLayout};
use xen_abi::public_ext::{NATIVE_ARGS, SAME_EVERYWHERE};

/// `struct arch_vcpu_info` (arm: empty).
#[repr(C)]
pub struct ArchVcpuInfo {}

const ARCH_VCPU_INFO: &[StructLayout] = &[xen_abi::struct_layout!("arch_vcpu_info", ArchVcpuInfo, {})];

/// Everything arm64 adds to its shared-memory structs.
pub const EXT: &[StructLayout] = &concat_structs::<{ 1 + SAME_EVERYWHERE.len() + NATIVE_ARGS.len() }>(
    &concat_structs::<{ 1 + SAME_EVERYWHERE.len() }>(ARCH_VCPU_INFO, SAME_EVERYWHERE),
    NATIVE_ARGS,
);
