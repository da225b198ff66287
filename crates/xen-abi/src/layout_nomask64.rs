//! The guest ABI layout Xen gives every 64-bit arch without an upcall mask
//! (arm64's `arch-arm.h`, riscv64's `arch-riscv.h`): `xen_ulong_t` is 64
//! bits, `arch_vcpu_info` and `arch_shared_info` are empty, the byte after
//! `evtchn_upcall_pending` is padding, and shared_info holds one vcpu_info
//! slot (`XEN_LEGACY_MAX_VCPUS` = 1), so every vCPU but 0 starts on the
//! dummy area. One set of `#[repr(C)]` mirrors with compile-time size and
//! offset checks, shared by the arches whose headers agree, so their
//! layouts cannot drift apart; each arch names its instance
//! ([`NoMask64Abi::new`]).

use crate::layout::{
    concat_structs, GuestAbi, RunstateLayout, SharedInfoLayout, StructLayout, TimeInfoLayout, VcpuInfoLayout,
};
use crate::public::{
    VcpuRegisterVcpuInfo as RegisterVcpuInfo, VcpuRunstateInfo as Runstate, VcpuTimeInfo,
    XenAddToPhysmap as AddToPhysmap, XenHvmParam as HvmParam,
};
use crate::public_ext::{NATIVE_ARGS, SAME_EVERYWHERE};
use crate::{field_of, struct_layout};

/// `XEN_LEGACY_MAX_VCPUS` of these arches: one vcpu_info slot.
pub const ONE_SLOT: usize = 1;

/// `struct arch_vcpu_info` (empty).
#[repr(C)]
pub struct ArchVcpuInfo {}

const ARCH_VCPU_INFO: &[StructLayout] = &[struct_layout!("arch_vcpu_info", ArchVcpuInfo, {})];

/// The argument structs beyond the shared-memory ones: the native table
/// shared with x86_64 (guest handles 64-bit and 8-aligned, `xen_ulong_t` and
/// `xen_pfn_t` 64-bit), after the empty `arch_vcpu_info`.
pub const EXT: &[StructLayout] = &concat_structs::<{ 1 + SAME_EVERYWHERE.len() + NATIVE_ARGS.len() }>(
    &concat_structs::<{ 1 + SAME_EVERYWHERE.len() }>(ARCH_VCPU_INFO, SAME_EVERYWHERE),
    NATIVE_ARGS,
);

#[repr(C)]
#[allow(missing_docs)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: u8,
    pub pad0: u8,
    pub evtchn_pending_sel: u64,
    pub time: VcpuTimeInfo,
}

/// `struct shared_info` (one vcpu_info slot, empty arch part).
#[repr(C)]
#[allow(missing_docs)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; ONE_SLOT],
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

// The shared-memory structs, then the argument structs of [`EXT`].
static STRUCTS: [StructLayout; BASE.len() + EXT.len()] = concat_structs(BASE, EXT);

/// A layout of this shape, under its arch's Xen name.
pub struct NoMask64Abi {
    name: &'static str,
    vcpu_info: VcpuInfoLayout,
    shared_info: SharedInfoLayout,
    runstate: RunstateLayout,
    time: TimeInfoLayout,
}

impl NoMask64Abi {
    /// The layout named `name` (Xen's name for the arch: "arm64", "riscv64").
    pub const fn new(name: &'static str) -> Self {
        NoMask64Abi {
            name,
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
        }
    }
}

impl GuestAbi for NoMask64Abi {
    fn name(&self) -> &'static str {
        self.name
    }
    fn legacy_max_vcpus(&self) -> u32 {
        ONE_SLOT as u32
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
    use crate::layout::Field;

    #[test]
    fn the_layout_is_xens_under_its_name() {
        static ABI: NoMask64Abi = NoMask64Abi::new("riscv64");
        assert_eq!(ABI.name(), "riscv64");
        assert_eq!(ABI.vcpu_info().size, 48);
        assert!(!ABI.has_upcall_mask());
        assert_eq!(ABI.vcpu_info().pending_sel, Field::new(8, 8));
        assert_eq!(ABI.legacy_max_vcpus(), 1);
        assert_eq!(ABI.xen_ulong_size(), 8);
        let vi = ABI.struct_layout("vcpu_info").unwrap();
        assert_eq!(vi.field("time.system_time"), Some(Field::new(32, 8)));
        assert!(vi.field("evtchn_upcall_mask").is_none());
        assert_eq!(ABI.struct_layout("arch_vcpu_info").unwrap().size, 0);
    }
}
