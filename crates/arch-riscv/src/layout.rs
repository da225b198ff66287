//! The Xen riscv64 guest ABI layout (`arch-riscv.h`): `xen_ulong_t` 64-bit,
//! `XEN_LEGACY_MAX_VCPUS` = 1, empty `arch_vcpu_info` and
//! `arch_shared_info`, so no `evtchn_upcall_mask`. That is arm64's layout
//! struct for struct, so it is the shared `xen_abi::layout_nomask64` one
//! under riscv's name.

use xen_abi::layout_nomask64::NoMask64Abi;

const _: () = assert!(xen_abi::arch_riscv::XEN_LEGACY_MAX_VCPUS == xen_abi::layout_nomask64::ONE_SLOT);

/// The one riscv64 guest ABI.
pub static RISCV64: NoMask64Abi = NoMask64Abi::new("riscv64");

#[cfg(test)]
mod tests {
    use super::*;
    use xen_abi::layout::{Field, GuestAbi};

    #[test]
    fn riscv64_layout_is_xens() {
        assert_eq!(RISCV64.name(), "riscv64");
        assert_eq!(RISCV64.vcpu_info().size, 48);
        assert!(!RISCV64.has_upcall_mask());
        assert_eq!(RISCV64.legacy_max_vcpus(), 1);
        assert_eq!(RISCV64.xen_ulong_size(), 8);
        assert_eq!(RISCV64.shared_info().size, 1088);
        let vi = RISCV64.struct_layout("vcpu_info").unwrap();
        assert_eq!(vi.field("time.system_time"), Some(Field::new(32, 8)));
    }
}
