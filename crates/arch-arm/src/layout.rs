//! The Xen arm64 guest ABI layout (`xen.h`, `vcpu.h`, `memory.h`,
//! `arch-arm.h`).
//!
//! On arm `xen_ulong_t` is always 64 bits, `arch_vcpu_info` and
//! `arch_shared_info` are empty, there is no `evtchn_upcall_mask` (the byte is
//! padding) and only one vcpu_info slot lives in shared_info
//! (`XEN_LEGACY_MAX_VCPUS` = 1): every vCPU but 0 starts on the dummy area.
//! riscv64's header says the same, so the `#[repr(C)]` mirrors and their
//! checks live once in `xen_abi::layout_nomask64`; this names arm's
//! instance.

use xen_abi::layout_nomask64::NoMask64Abi;
pub use xen_abi::layout_nomask64::{SharedInfo, VcpuInfo};

/// `XEN_LEGACY_MAX_VCPUS` on arm.
pub const LEGACY_MAX_VCPUS: usize = xen_abi::arch_arm::XEN_LEGACY_MAX_VCPUS;

const _: () = assert!(LEGACY_MAX_VCPUS == xen_abi::layout_nomask64::ONE_SLOT);

/// The arm64 layout.
pub type Arm64Abi = NoMask64Abi;

/// The one arm64 guest ABI.
pub static ARM64: Arm64Abi = NoMask64Abi::new("arm64");

#[cfg(test)]
mod tests {
    use super::*;
    use xen_abi::layout::{Field, GuestAbi};

    #[test]
    fn arm64_layout_is_xens() {
        assert_eq!(ARM64.name(), "arm64");
        assert_eq!(ARM64.vcpu_info().size, 48);
        assert!(!ARM64.has_upcall_mask());
        assert_eq!(ARM64.vcpu_info().pending_sel, Field::new(8, 8));
        assert_eq!(ARM64.legacy_max_vcpus(), 1);
        let vi = ARM64.struct_layout("vcpu_info").unwrap();
        assert_eq!(vi.field("time.system_time"), Some(Field::new(32, 8)));
        assert!(vi.field("evtchn_upcall_mask").is_none());
    }
}
