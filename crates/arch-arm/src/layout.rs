//! The Xen arm64 guest ABI layout, as `#[repr(C)]` mirrors of Xen's public
//! headers (`xen.h`, `vcpu.h`, `memory.h`, `arch-arm.h`) with compile-time
//! size and offset checks.
//!
//! On arm `xen_ulong_t` is always 64 bits, `arch_vcpu_info` and
//! `arch_shared_info` are empty, there is no `evtchn_upcall_mask` (the byte is
//! padding) and only one vcpu_info slot lives in shared_info
//! (`XEN_LEGACY_MAX_VCPUS` = 1): every vCPU but 0 starts on the dummy area.

use xen_abi::layout::concat_structs;
use xen_abi::layout::{GuestAbi, RunstateLayout, SharedInfoLayout, StructLayout, TimeInfoLayout, VcpuInfoLayout};
use xen_abi::public::{
    VcpuRegisterVcpuInfo as RegisterVcpuInfo, VcpuRunstateInfo as Runstate, VcpuTimeInfo,
    XenAddToPhysmap as AddToPhysmap, XenHvmParam as HvmParam,
};
use xen_abi::{field_of, struct_layout};

/// `XEN_LEGACY_MAX_VCPUS` on arm.
pub const LEGACY_MAX_VCPUS: usize = xen_abi::arch_arm::XEN_LEGACY_MAX_VCPUS;

/// `struct vcpu_info` (arm64: no upcall mask, empty arch part).
#[repr(C)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: u8,
    pub pad0: u8,
    pub evtchn_pending_sel: u64,
    pub time: VcpuTimeInfo,
}

/// `struct shared_info` (arm64).
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u64; 64],
    pub evtchn_mask: [u64; 64],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VcpuTimeInfo>() == 32);
    assert!(size_of::<VcpuInfo>() == 48);
    assert!(offset_of!(VcpuInfo, evtchn_pending_sel) == 8);
    assert!(offset_of!(VcpuInfo, time) == 16);
    assert!(offset_of!(SharedInfo, evtchn_pending) == 48);
    assert!(offset_of!(SharedInfo, evtchn_mask) == 560);
    assert!(offset_of!(SharedInfo, wc_version) == 1072);
    assert!(size_of::<SharedInfo>() == 1088);
    assert!(size_of::<Runstate>() == 48);
    assert!(size_of::<AddToPhysmap>() == 24);
};

const BASE: &[StructLayout] = &[
    struct_layout!("vcpu_time_info", VcpuTimeInfo, {
        "version" => version: u32,
        "tsc_timestamp" => tsc_timestamp: u64,
        "system_time" => system_time: u64,
        "tsc_to_system_mul" => tsc_to_system_mul: u32,
        "tsc_shift" => tsc_shift: i8,
        "flags" => flags: u8,
    }),
    struct_layout!("vcpu_info", VcpuInfo, {
        "evtchn_upcall_pending" => evtchn_upcall_pending: u8,
        "evtchn_pending_sel" => evtchn_pending_sel: u64,
        "time.version" => time.version: u32,
        "time.tsc_timestamp" => time.tsc_timestamp: u64,
        "time.system_time" => time.system_time: u64,
        "time.tsc_to_system_mul" => time.tsc_to_system_mul: u32,
        "time.tsc_shift" => time.tsc_shift: i8,
        "time.flags" => time.flags: u8,
    }),
    struct_layout!("shared_info", SharedInfo, {
        "vcpu_info[0]" => vcpu_info[0]: VcpuInfo,
        "evtchn_pending" => evtchn_pending: [u64; 64],
        "evtchn_mask" => evtchn_mask: [u64; 64],
        "wc_version" => wc_version: u32,
        "wc_sec" => wc_sec: u32,
        "wc_nsec" => wc_nsec: u32,
        "wc_sec_hi" => wc_sec_hi: u32,
    }),
    struct_layout!("vcpu_runstate_info", Runstate, {
        "state" => state: u32,
        "state_entry_time" => state_entry_time: u64,
        "time[0]" => time[0]: u64,
        "time[1]" => time[1]: u64,
        "time[2]" => time[2]: u64,
        "time[3]" => time[3]: u64,
    }),
    struct_layout!("vcpu_register_vcpu_info", RegisterVcpuInfo, {
        "mfn" => mfn: u64,
        "offset" => offset: u32,
        "rsvd" => rsvd: u32,
    }),
    struct_layout!("xen_add_to_physmap", AddToPhysmap, {
        "domid" => domid: u16,
        "size" => size: u16,
        "space" => space: u32,
        "idx" => idx: u64,
        "gpfn" => gpfn: u64,
    }),
    struct_layout!("xen_hvm_param", HvmParam, {
        "domid" => domid: u16,
        "index" => index: u32,
        "value" => value: u64,
    }),
];

// The shared-memory structs, then the argument structs of `layout_ext`.
static STRUCTS: [StructLayout; BASE.len() + crate::layout_ext::EXT.len()] =
    concat_structs(BASE, crate::layout_ext::EXT);

/// The arm64 layout.
pub struct Arm64Abi {
    vcpu_info: VcpuInfoLayout,
    shared_info: SharedInfoLayout,
    runstate: RunstateLayout,
    time: TimeInfoLayout,
}

/// The one arm64 guest ABI.
pub static ARM64: Arm64Abi = Arm64Abi {
    vcpu_info: VcpuInfoLayout {
        size: core::mem::size_of::<VcpuInfo>(),
        align: core::mem::align_of::<VcpuInfo>(),
        upcall_pending: field_of!(VcpuInfo, evtchn_upcall_pending: u8),
        upcall_mask: None,
        pending_sel: field_of!(VcpuInfo, evtchn_pending_sel: u64),
        time: core::mem::offset_of!(VcpuInfo, time),
    },
    shared_info: SharedInfoLayout {
        size: core::mem::size_of::<SharedInfo>(),
        vcpu_info: core::mem::offset_of!(SharedInfo, vcpu_info),
        evtchn_pending: field_of!(SharedInfo, evtchn_pending: [u64; 64]),
        evtchn_mask: field_of!(SharedInfo, evtchn_mask: [u64; 64]),
        wc_version: field_of!(SharedInfo, wc_version: u32),
        wc_sec: field_of!(SharedInfo, wc_sec: u32),
        wc_nsec: field_of!(SharedInfo, wc_nsec: u32),
    },
    runstate: RunstateLayout {
        size: core::mem::size_of::<Runstate>(),
        align: core::mem::align_of::<Runstate>(),
        state: field_of!(Runstate, state: i32),
        state_entry_time: field_of!(Runstate, state_entry_time: u64),
        time: field_of!(Runstate, time: [u64; 4]),
    },
    time: TimeInfoLayout {
        size: core::mem::size_of::<VcpuTimeInfo>(),
        align: core::mem::align_of::<VcpuTimeInfo>(),
        version: field_of!(VcpuTimeInfo, version: u32),
        tsc_timestamp: field_of!(VcpuTimeInfo, tsc_timestamp: u64),
        system_time: field_of!(VcpuTimeInfo, system_time: u64),
        tsc_to_system_mul: field_of!(VcpuTimeInfo, tsc_to_system_mul: u32),
        tsc_shift: field_of!(VcpuTimeInfo, tsc_shift: i8),
        flags: field_of!(VcpuTimeInfo, flags: u8),
    },
};

impl GuestAbi for Arm64Abi {
    fn name(&self) -> &'static str {
        "arm64"
    }
    fn legacy_max_vcpus(&self) -> u32 {
        LEGACY_MAX_VCPUS as u32
    }
    fn xen_ulong_size(&self) -> usize {
        8
    }
    fn vcpu_info(&self) -> &VcpuInfoLayout {
        &self.vcpu_info
    }
    fn shared_info(&self) -> &SharedInfoLayout {
        &self.shared_info
    }
    fn runstate(&self) -> &RunstateLayout {
        &self.runstate
    }
    fn time_info(&self) -> &TimeInfoLayout {
        &self.time
    }
    fn structs(&self) -> &'static [StructLayout] {
        &STRUCTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_abi::layout::Field;

    #[test]
    fn arm64_layout_is_xens() {
        assert_eq!(ARM64.vcpu_info().size, 48);
        assert!(!ARM64.has_upcall_mask());
        assert_eq!(ARM64.vcpu_info().pending_sel, Field::new(8, 8));
        assert_eq!(ARM64.legacy_max_vcpus(), 1);
        let vi = ARM64.struct_layout("vcpu_info").unwrap();
        assert_eq!(vi.field("time.system_time"), Some(Field::new(32, 8)));
        assert!(vi.field("evtchn_upcall_mask").is_none());
    }
}
