//! The Xen x86 guest ABI layouts: x86_64 native and x86_32 compat, as
//! `#[repr(C)]` mirrors of Xen's public headers (`xen.h`, `vcpu.h`,
//! `memory.h`, `hvm/params.h`, `arch-x86/xen-x86_64.h`,
//! `arch-x86/xen-x86_32.h`) with compile-time size and offset checks.
//!
//! The compat mirrors are `packed(4)`: on i386 a `uint64_t` is only 4-byte
//! aligned, which is what moves `evtchn_pending_sel` to offset 4 and shrinks
//! `vcpu_runstate_info` to 44 bytes.

use xen_abi::layout::concat_structs;
use xen_abi::layout::{GuestAbi, RunstateLayout, SharedInfoLayout, StructLayout, TimeInfoLayout, VcpuInfoLayout};
use xen_abi::public::{
    VcpuRegisterVcpuInfo, VcpuRunstateInfo, VcpuTimeInfo, XenAddToPhysmap, XenAddToPhysmapUlong32, XenHvmParam,
};
use xen_abi::{field_of, struct_layout};

use crate::layout_ext::{RegisterVcpuInfo32, EXT_32, EXT_64};

// The x86_64 layout uses the natural-alignment mirrors every native ABI shares.
type VcpuTimeInfo64 = VcpuTimeInfo;
type Runstate64 = VcpuRunstateInfo;
type AddToPhysmap64 = XenAddToPhysmap;
type HvmParam64 = XenHvmParam;
// x86_32's `xen_add_to_physmap` is the 32-bit-`xen_ulong_t` mirror the core decodes.
type AddToPhysmap32 = XenAddToPhysmapUlong32;

/// `XEN_LEGACY_MAX_VCPUS` on x86.
pub const LEGACY_MAX_VCPUS: usize = xen_abi::arch_x86::XEN_LEGACY_MAX_VCPUS;

/// `struct arch_vcpu_info` (x86_64).
#[repr(C)]
pub struct ArchVcpuInfo64 {
    pub cr2: u64,
    pub pad: u64,
}

/// `struct vcpu_info` (x86_64).
#[repr(C)]
pub struct VcpuInfo64 {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo64,
    pub time: VcpuTimeInfo64,
}

/// `struct arch_shared_info` (x86_64).
#[repr(C)]
pub struct ArchSharedInfo64 {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// `struct shared_info` (x86_64).
#[repr(C)]
pub struct SharedInfo64 {
    pub vcpu_info: [VcpuInfo64; LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u64; 64],
    pub evtchn_mask: [u64; 64],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo64,
}

/// `struct vcpu_time_info` (x86_32 compat).
#[repr(C, packed(4))]
pub struct VcpuTimeInfo32 {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (x86_32 compat).
#[repr(C)]
pub struct ArchVcpuInfo32 {
    pub cr2: u32,
    pub pad: [u32; 5],
}

/// `struct vcpu_info` (x86_32 compat).
#[repr(C)]
pub struct VcpuInfo32 {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub evtchn_pending_sel: u32,
    pub arch: ArchVcpuInfo32,
    pub time: VcpuTimeInfo32,
}

/// `struct arch_shared_info` (x86_32 compat).
#[repr(C)]
pub struct ArchSharedInfo32 {
    pub max_pfn: u32,
    pub pfn_to_mfn_frame_list_list: u32,
    pub nmi_reason: u32,
    pub p2m_cr3: u32,
    pub p2m_vaddr: u32,
    pub p2m_generation: u32,
    pub wc_sec_hi: u32,
}

/// `struct shared_info` (x86_32 compat).
#[repr(C)]
pub struct SharedInfo32 {
    pub vcpu_info: [VcpuInfo32; LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u32; 32],
    pub evtchn_mask: [u32; 32],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub arch: ArchSharedInfo32,
}

/// `struct vcpu_runstate_info` (x86_32 compat).
#[repr(C, packed(4))]
pub struct Runstate32 {
    pub state: i32,
    pub state_entry_time: u64,
    pub time: [u64; 4],
}

/// `struct xen_hvm_param` (x86_32 compat).
#[repr(C, packed(4))]
pub struct HvmParam32 {
    pub domid: u16,
    pub index: u32,
    pub value: u64,
}

// The sizes and offsets Xen's headers promise (and guests rely on).
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<VcpuTimeInfo64>() == 32 && size_of::<VcpuTimeInfo32>() == 32);
    assert!(size_of::<VcpuInfo64>() == 64 && align_of::<VcpuInfo64>() == 8);
    assert!(size_of::<VcpuInfo32>() == 64 && align_of::<VcpuInfo32>() == 4);
    assert!(offset_of!(VcpuInfo64, evtchn_pending_sel) == 8);
    assert!(offset_of!(VcpuInfo32, evtchn_pending_sel) == 4);
    assert!(offset_of!(VcpuInfo64, time) == 32 && offset_of!(VcpuInfo32, time) == 32);
    assert!(size_of::<SharedInfo64>() == 3136);
    assert!(offset_of!(SharedInfo64, evtchn_pending) == 2048);
    assert!(offset_of!(SharedInfo64, wc_version) == 3072);
    assert!(size_of::<SharedInfo32>() == 2344);
    assert!(offset_of!(SharedInfo32, evtchn_mask) == 2176);
    assert!(offset_of!(SharedInfo32, wc_version) == 2304);
    assert!(size_of::<Runstate64>() == 48 && size_of::<Runstate32>() == 44);
    assert!(offset_of!(Runstate32, state_entry_time) == 4);
    assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);
    assert!(size_of::<AddToPhysmap64>() == 24 && size_of::<AddToPhysmap32>() == 16);
    assert!(size_of::<HvmParam64>() == 16 && size_of::<HvmParam32>() == 16);
};

macro_rules! x86_structs {
    ($time:ty, $vi:ty, $si:ty, $rs:ty, $rvi:ty, $atp:ty, $hp:ty, $ulong:ty, $wc_sec_hi:literal => $($hi:ident).+) => {
        &[
            struct_layout!("vcpu_time_info", $time, {
                "version" => version: u32,
                "tsc_timestamp" => tsc_timestamp: u64,
                "system_time" => system_time: u64,
                "tsc_to_system_mul" => tsc_to_system_mul: u32,
                "tsc_shift" => tsc_shift: i8,
                "flags" => flags: u8,
            }),
            struct_layout!("vcpu_info", $vi, {
                "evtchn_upcall_pending" => evtchn_upcall_pending: u8,
                "evtchn_upcall_mask" => evtchn_upcall_mask: u8,
                "evtchn_pending_sel" => evtchn_pending_sel: $ulong,
                "arch.cr2" => arch.cr2: $ulong,
                "time.version" => time.version: u32,
                "time.tsc_timestamp" => time.tsc_timestamp: u64,
                "time.system_time" => time.system_time: u64,
                "time.tsc_to_system_mul" => time.tsc_to_system_mul: u32,
                "time.tsc_shift" => time.tsc_shift: i8,
                "time.flags" => time.flags: u8,
            }),
            struct_layout!("shared_info", $si, {
                "vcpu_info[0]" => vcpu_info[0]: $vi, "vcpu_info[1]" => vcpu_info[1]: $vi,
                "vcpu_info[2]" => vcpu_info[2]: $vi, "vcpu_info[3]" => vcpu_info[3]: $vi,
                "vcpu_info[4]" => vcpu_info[4]: $vi, "vcpu_info[5]" => vcpu_info[5]: $vi,
                "vcpu_info[6]" => vcpu_info[6]: $vi, "vcpu_info[7]" => vcpu_info[7]: $vi,
                "vcpu_info[8]" => vcpu_info[8]: $vi, "vcpu_info[9]" => vcpu_info[9]: $vi,
                "vcpu_info[10]" => vcpu_info[10]: $vi, "vcpu_info[11]" => vcpu_info[11]: $vi,
                "vcpu_info[12]" => vcpu_info[12]: $vi, "vcpu_info[13]" => vcpu_info[13]: $vi,
                "vcpu_info[14]" => vcpu_info[14]: $vi, "vcpu_info[15]" => vcpu_info[15]: $vi,
                "vcpu_info[16]" => vcpu_info[16]: $vi, "vcpu_info[17]" => vcpu_info[17]: $vi,
                "vcpu_info[18]" => vcpu_info[18]: $vi, "vcpu_info[19]" => vcpu_info[19]: $vi,
                "vcpu_info[20]" => vcpu_info[20]: $vi, "vcpu_info[21]" => vcpu_info[21]: $vi,
                "vcpu_info[22]" => vcpu_info[22]: $vi, "vcpu_info[23]" => vcpu_info[23]: $vi,
                "vcpu_info[24]" => vcpu_info[24]: $vi, "vcpu_info[25]" => vcpu_info[25]: $vi,
                "vcpu_info[26]" => vcpu_info[26]: $vi, "vcpu_info[27]" => vcpu_info[27]: $vi,
                "vcpu_info[28]" => vcpu_info[28]: $vi, "vcpu_info[29]" => vcpu_info[29]: $vi,
                "vcpu_info[30]" => vcpu_info[30]: $vi, "vcpu_info[31]" => vcpu_info[31]: $vi,
                "evtchn_pending" => evtchn_pending: [$ulong; 8 * core::mem::size_of::<$ulong>()],
                "evtchn_mask" => evtchn_mask: [$ulong; 8 * core::mem::size_of::<$ulong>()],
                "wc_version" => wc_version: u32,
                "wc_sec" => wc_sec: u32,
                "wc_nsec" => wc_nsec: u32,
                $wc_sec_hi => $($hi).+: u32,
                "arch.max_pfn" => arch.max_pfn: $ulong,
                "arch.pfn_to_mfn_frame_list_list" => arch.pfn_to_mfn_frame_list_list: $ulong,
                "arch.nmi_reason" => arch.nmi_reason: $ulong,
                "arch.p2m_cr3" => arch.p2m_cr3: $ulong,
                "arch.p2m_vaddr" => arch.p2m_vaddr: $ulong,
                "arch.p2m_generation" => arch.p2m_generation: $ulong,
            }),
            struct_layout!("vcpu_runstate_info", $rs, {
                "state" => state: u32,
                "state_entry_time" => state_entry_time: u64,
                "time[0]" => time[0]: u64,
                "time[1]" => time[1]: u64,
                "time[2]" => time[2]: u64,
                "time[3]" => time[3]: u64,
            }),
            struct_layout!("vcpu_register_vcpu_info", $rvi, {
                "mfn" => mfn: u64,
                "offset" => offset: u32,
                "rsvd" => rsvd: u32,
            }),
            struct_layout!("xen_add_to_physmap", $atp, {
                "domid" => domid: u16,
                "size" => size: u16,
                "space" => space: u32,
                "idx" => idx: $ulong,
                "gpfn" => gpfn: $ulong,
            }),
            struct_layout!("xen_hvm_param", $hp, {
                "domid" => domid: u16,
                "index" => index: u32,
                "value" => value: u64,
            }),
        ]
    };
}

const BASE_64: &[StructLayout] = x86_structs!(
    VcpuTimeInfo64, VcpuInfo64, SharedInfo64, Runstate64, VcpuRegisterVcpuInfo,
    AddToPhysmap64, HvmParam64, u64, "wc_sec_hi" => wc_sec_hi
);
const BASE_32: &[StructLayout] = x86_structs!(
    VcpuTimeInfo32, VcpuInfo32, SharedInfo32, Runstate32, RegisterVcpuInfo32,
    AddToPhysmap32, HvmParam32, u32, "arch.wc_sec_hi" => arch.wc_sec_hi
);
const ARCH_VCPU_INFO_64: &[StructLayout] = &[struct_layout!("arch_vcpu_info", ArchVcpuInfo64, {
    "cr2" => cr2: u64,
    "pad" => pad: u64,
})];
const ARCH_VCPU_INFO_32: &[StructLayout] = &[struct_layout!("arch_vcpu_info", ArchVcpuInfo32, {
    "cr2" => cr2: u32,
    "pad" => pad: [u32; 5],
})];
// The shared-memory structs and `arch_vcpu_info`, then the argument structs
// of `layout_ext`.
static STRUCTS_64: [StructLayout; BASE_64.len() + 1 + EXT_64.len()] =
    concat_structs(&concat_structs::<{ BASE_64.len() + 1 }>(BASE_64, ARCH_VCPU_INFO_64), EXT_64);
static STRUCTS_32: [StructLayout; BASE_32.len() + 1 + EXT_32.len()] =
    concat_structs(&concat_structs::<{ BASE_32.len() + 1 }>(BASE_32, ARCH_VCPU_INFO_32), EXT_32);

/// Everything the core needs of one x86 layout.
pub struct X86Abi {
    name: &'static str,
    ulong: usize,
    vcpu_info: VcpuInfoLayout,
    shared_info: SharedInfoLayout,
    runstate: RunstateLayout,
    time: TimeInfoLayout,
    structs: &'static [StructLayout],
}

macro_rules! x86_abi {
    ($name:literal, $time:ty, $vi:ty, $si:ty, $rs:ty, $ulong:ty, $structs:expr) => {
        X86Abi {
            name: $name,
            ulong: core::mem::size_of::<$ulong>(),
            vcpu_info: VcpuInfoLayout {
                size: core::mem::size_of::<$vi>(),
                align: core::mem::align_of::<$vi>(),
                upcall_pending: field_of!($vi, evtchn_upcall_pending: u8),
                upcall_mask: Some(field_of!($vi, evtchn_upcall_mask: u8)),
                pending_sel: field_of!($vi, evtchn_pending_sel: $ulong),
                time: core::mem::offset_of!($vi, time),
            },
            shared_info: SharedInfoLayout {
                size: core::mem::size_of::<$si>(),
                vcpu_info: core::mem::offset_of!($si, vcpu_info),
                evtchn_pending: field_of!($si, evtchn_pending: [$ulong; 8 * core::mem::size_of::<$ulong>()]),
                evtchn_mask: field_of!($si, evtchn_mask: [$ulong; 8 * core::mem::size_of::<$ulong>()]),
                wc_version: field_of!($si, wc_version: u32),
                wc_sec: field_of!($si, wc_sec: u32),
                wc_nsec: field_of!($si, wc_nsec: u32),
            },
            runstate: RunstateLayout {
                size: core::mem::size_of::<$rs>(),
                align: core::mem::align_of::<$rs>(),
                state: field_of!($rs, state: i32),
                state_entry_time: field_of!($rs, state_entry_time: u64),
                time: field_of!($rs, time: [u64; 4]),
            },
            time: TimeInfoLayout {
                size: core::mem::size_of::<$time>(),
                align: core::mem::align_of::<$time>(),
                version: field_of!($time, version: u32),
                tsc_timestamp: field_of!($time, tsc_timestamp: u64),
                system_time: field_of!($time, system_time: u64),
                tsc_to_system_mul: field_of!($time, tsc_to_system_mul: u32),
                tsc_shift: field_of!($time, tsc_shift: i8),
                flags: field_of!($time, flags: u8),
            },
            structs: $structs,
        }
    };
}

/// The x86_64 native layout.
pub static X86_64: X86Abi = x86_abi!("x86_64", VcpuTimeInfo64, VcpuInfo64, SharedInfo64, Runstate64, u64, &STRUCTS_64);

/// The x86_32 compat layout (a domain whose guest runs in 32-bit mode).
pub static X86_32: X86Abi = x86_abi!("x86_32", VcpuTimeInfo32, VcpuInfo32, SharedInfo32, Runstate32, u32, &STRUCTS_32);

impl GuestAbi for X86Abi {
    fn name(&self) -> &'static str {
        self.name
    }
    fn legacy_max_vcpus(&self) -> u32 {
        LEGACY_MAX_VCPUS as u32
    }
    fn xen_ulong_size(&self) -> usize {
        self.ulong
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
        self.structs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_and_compat_differ_where_xen_says() {
        assert_eq!(X86_64.vcpu_info().pending_sel, xen_abi::layout::Field::new(8, 8));
        assert_eq!(X86_32.vcpu_info().pending_sel, xen_abi::layout::Field::new(4, 4));
        assert_eq!(X86_64.vcpu_info().size, 64);
        assert_eq!(X86_32.vcpu_info().size, 64);
        assert_eq!(X86_64.vcpu_info().align, 8);
        assert_eq!(X86_32.vcpu_info().align, 4);
        assert_eq!(X86_32.runstate().size, 44);
        assert_eq!(X86_32.runstate().state_entry_time.offset, 4);
        assert!(X86_64.has_upcall_mask() && X86_32.has_upcall_mask());
        assert_eq!(X86_64.legacy_max_vcpus(), 32);
    }

    #[test]
    fn tables_agree_with_typed_layouts() {
        for abi in [&X86_64, &X86_32] {
            let vi = abi.struct_layout("vcpu_info").unwrap();
            assert_eq!(vi.size, abi.vcpu_info().size);
            assert_eq!(vi.field("evtchn_pending_sel"), Some(abi.vcpu_info().pending_sel));
            assert_eq!(vi.field("time.version").unwrap().offset, abi.vcpu_info().time);
            let si = abi.struct_layout("shared_info").unwrap();
            assert_eq!(si.field("vcpu_info[31]").unwrap().offset, 31 * 64);
            assert_eq!(si.size, abi.shared_info().size);
            let fields_in_bounds =
                abi.structs().iter().all(|s| s.fields.iter().all(|f| f.field.offset + f.field.size <= s.size));
            assert!(fields_in_bounds);
        }
        assert!(X86_32.struct_layout("shared_info").unwrap().field("arch.wc_sec_hi").is_some());
    }
}
