//! The guest's view of the layouts the scenario checks against (x86_64
//! native, x86_32 compat, arm64, riscv64): `#[repr(C)]` mirrors of what
//! differs per layout in Xen's public headers (`vcpu_info`, the compat
//! `vcpu_runstate_info`), the shared structs from `xen_abi::public`, and one
//! [`Layout`] table per layout whose offsets and sizes are all measured from
//! those mirrors.

use core::mem::{align_of, offset_of, size_of};

use xen_abi::nr::{domid, mapspace};
use xen_abi::public::{
    VcpuRunstateInfo, VcpuTimeInfo, XenAddToPhysmap, XenAddToPhysmapUlong32, XenMemoryReservation,
    XenMemoryReservationCompat,
};
use xen_abi::{arch_arm, arch_riscv, arch_x86, Errno};
use zerocopy::IntoBytes;

/// `struct arch_vcpu_info` of x86_64: `unsigned long cr2, pad;`.
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C)]
struct ArchVcpuInfoX86_64 {
    cr2: u64,
    pad: u64,
}

/// `struct vcpu_info` of x86_64 (native layout). The padding is spelled
/// out and the alignment forced, so the mirror has the 64-bit layout even
/// where `u64` is only 4-aligned (the scenario is also built for i686).
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C, align(8))]
struct VcpuInfoX86_64 {
    evtchn_upcall_pending: u8,
    evtchn_upcall_mask: u8,
    pad: [u8; 6],
    evtchn_pending_sel: u64,
    arch: ArchVcpuInfoX86_64,
    time: VcpuTimeInfo,
}

/// `struct arch_vcpu_info` of x86_32 (compat): `unsigned long cr2; unsigned long pad[5];`.
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C)]
struct ArchVcpuInfoX86_32 {
    cr2: u32,
    pad: [u32; 5],
}

/// `struct vcpu_info` of x86_32 (compat layout: 32-bit `xen_ulong_t`, and
/// `uint64_t` only 4-aligned, as the i386 ABI has it).
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C, packed(4))]
struct VcpuInfoX86_32 {
    evtchn_upcall_pending: u8,
    evtchn_upcall_mask: u8,
    evtchn_pending_sel: u32,
    arch: ArchVcpuInfoX86_32,
    time: VcpuTimeInfo,
}

/// `struct vcpu_info` of arm64 (`struct arch_vcpu_info` is empty); padding
/// and alignment as for [`VcpuInfoX86_64`].
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C, align(8))]
struct VcpuInfoArm64 {
    evtchn_upcall_pending: u8,
    evtchn_upcall_mask: u8,
    pad: [u8; 6],
    evtchn_pending_sel: u64,
    time: VcpuTimeInfo,
}

/// `struct vcpu_info` of riscv64: Xen's `arch-riscv.h` has an empty
/// `struct arch_vcpu_info` and, as on arm, does not define
/// `XEN_HAVE_PV_UPCALL_MASK`, so the byte after `evtchn_upcall_pending` is
/// padding (`pad0`) rather than a mask; padding and alignment as for
/// [`VcpuInfoX86_64`].
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C, align(8))]
struct VcpuInfoRiscv64 {
    evtchn_upcall_pending: u8,
    pad0: u8,
    pad: [u8; 6],
    evtchn_pending_sel: u64,
    time: VcpuTimeInfo,
}

/// `struct vcpu_runstate_info` of x86_32 (compat): `state_entry_time` and
/// `time[]` only 4-aligned, so the struct is packed to 44 bytes.
#[allow(dead_code, reason = "a mirror only measured with offset_of!")]
#[repr(C, packed(4))]
struct VcpuRunstateInfoX86_32 {
    state: i32,
    state_entry_time: u64,
    time: [u64; 4],
}

// Sizes Xen's headers promise, and the offsets the scenario assumes are the
// same in every layout.
const _: () = {
    assert!(size_of::<VcpuInfoX86_64>() == 64 && size_of::<VcpuInfoX86_32>() == 64);
    assert!(size_of::<VcpuInfoArm64>() == 48);
    assert!(size_of::<VcpuInfoRiscv64>() == 48);
    assert!(size_of::<VcpuRunstateInfoX86_32>() == 44);
    assert!(offset_of!(VcpuInfoX86_32, evtchn_upcall_pending) == VI_UPCALL_PENDING as usize);
    assert!(offset_of!(VcpuInfoArm64, evtchn_upcall_pending) == VI_UPCALL_PENDING as usize);
    assert!(offset_of!(VcpuInfoX86_32, evtchn_upcall_mask) == VI_UPCALL_MASK as usize);
    assert!(offset_of!(VcpuInfoArm64, evtchn_upcall_mask) == VI_UPCALL_MASK as usize);
    assert!(offset_of!(VcpuInfoRiscv64, evtchn_upcall_pending) == VI_UPCALL_PENDING as usize);
    // The scenario writes the mask byte of every layout; on riscv64 it is
    // the padding at the same place, which the hypervisor must ignore.
    assert!(offset_of!(VcpuInfoRiscv64, pad0) == VI_UPCALL_MASK as usize);
    assert!(VCPU_INFO_MAX >= size_of::<VcpuInfoX86_64>() && VCPU_INFO_MAX >= size_of::<VcpuInfoArm64>());
    assert!(VCPU_INFO_MAX >= size_of::<VcpuInfoRiscv64>());
};

/// Byte offset of `evtchn_upcall_pending` in every vcpu_info layout.
pub const VI_UPCALL_PENDING: u64 = offset_of!(VcpuInfoX86_64, evtchn_upcall_pending) as u64;
/// Byte offset of `evtchn_upcall_mask` in every vcpu_info layout.
pub const VI_UPCALL_MASK: u64 = offset_of!(VcpuInfoX86_64, evtchn_upcall_mask) as u64;
/// Room for a vcpu_info of any layout (buffers the scenario reads one into).
pub const VCPU_INFO_MAX: usize = 64;

/// One guest ABI layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Name printed in REPORT lines: Xen's layout name (`x86_64`, `x86_32`,
    /// `arm64`), as the gdb stub names it.
    pub name: &'static str,
    /// `sizeof(struct vcpu_info)`.
    pub vcpu_info_size: u32,
    /// Alignment the hypervisor requires of a registered vcpu_info.
    pub vcpu_info_align: u32,
    /// Offset of `evtchn_pending_sel`.
    pub pending_sel_offset: u32,
    /// Width of `xen_ulong_t` in bytes: of `evtchn_pending_sel`, and of
    /// `idx` / `gpfn` in `struct xen_add_to_physmap`.
    pub xen_ulong_size: u32,
    /// Whether `evtchn_upcall_mask` is honoured (x86 yes, arm64 no).
    pub has_upcall_mask: bool,
    /// Offset of `vcpu_info.time`.
    pub vcpu_info_time_offset: u32,
    /// Offset of a spare arch field (`arch.pad`) the scenario writes a marker
    /// into to see the contents carried over on registration; `None` where
    /// `struct arch_vcpu_info` is empty (arm64).
    pub arch_marker_offset: Option<u32>,
    /// `XEN_LEGACY_MAX_VCPUS`: vcpu_info slots in shared_info.
    pub legacy_vcpus: u32,
    /// `sizeof(struct vcpu_runstate_info)`.
    pub runstate_size: u32,
    /// Offset of `state_entry_time` in the runstate area.
    pub runstate_entry_offset: u32,
    /// Offset of `time[4]` in the runstate area.
    pub runstate_time_offset: u32,
    /// What `VCPUOP_register_vcpu_time_memory_area` gives: `None` where the
    /// arch has it (x86), the errno otherwise (arm: -EINVAL).
    pub time_area_by_va_errno: Option<Errno>,
    /// What `HYPERVISOR_set_timer_op` gives: `None` where the arch's
    /// hypercall table has it (x86), the errno otherwise (arm: -ENOSYS).
    pub set_timer_op_errno: Option<Errno>,
    /// Whether a read of RAM the guest ballooned out takes a data abort
    /// (arm: Xen injects one for an access nothing handles) rather than
    /// reading all ones (x86: an HVM guest's unbacked read).
    pub ballooned_read_aborts: bool,
}

/// A [`Layout`] measured from its mirrors: `vcpu_info` type, runstate
/// type, `xen_ulong_t` type, and what the mirrors cannot say.
macro_rules! layout_of {
    ($name:literal, $vcpu_info:ty, $runstate:ty, $xen_ulong:ty,
     upcall_mask: $mask:expr, arch_marker: $marker:expr, legacy_vcpus: $legacy:expr, time_area_by_va_errno: $tva:expr,
     set_timer_op_errno: $sto:expr, ballooned_read_aborts: $bra:expr) => {
        Layout {
            name: $name,
            vcpu_info_size: size_of::<$vcpu_info>() as u32,
            vcpu_info_align: align_of::<$vcpu_info>() as u32,
            pending_sel_offset: offset_of!($vcpu_info, evtchn_pending_sel) as u32,
            xen_ulong_size: size_of::<$xen_ulong>() as u32,
            has_upcall_mask: $mask,
            vcpu_info_time_offset: offset_of!($vcpu_info, time) as u32,
            arch_marker_offset: $marker,
            legacy_vcpus: $legacy,
            runstate_size: size_of::<$runstate>() as u32,
            runstate_entry_offset: offset_of!($runstate, state_entry_time) as u32,
            runstate_time_offset: offset_of!($runstate, time) as u32,
            time_area_by_va_errno: $tva,
            set_timer_op_errno: $sto,
            ballooned_read_aborts: $bra,
        }
    };
}

/// x86_64 guests (and any 64-bit HVM guest): Xen's native layout.
pub const X86_64: Layout = layout_of!("x86_64", VcpuInfoX86_64, VcpuRunstateInfo, u64,
    upcall_mask: true, arch_marker: Some(offset_of!(VcpuInfoX86_64, arch.pad) as u32), legacy_vcpus: arch_x86::XEN_LEGACY_MAX_VCPUS as u32,
    time_area_by_va_errno: None, set_timer_op_errno: None, ballooned_read_aborts: false);

/// 32-bit x86 guests: Xen's compat (x86_32) layout.
pub const X86_32: Layout = layout_of!("x86_32", VcpuInfoX86_32, VcpuRunstateInfoX86_32, u32,
    upcall_mask: true, arch_marker: Some(offset_of!(VcpuInfoX86_32, arch.pad) as u32), legacy_vcpus: arch_x86::XEN_LEGACY_MAX_VCPUS as u32,
    time_area_by_va_errno: None, set_timer_op_errno: None, ballooned_read_aborts: false);

/// arm64 guests (`evtchn_upcall_mask` is there but Xen on arm ignores it;
/// `struct arch_vcpu_info` is empty, so there is no spare field to mark).
pub const ARM64: Layout = layout_of!("arm64", VcpuInfoArm64, VcpuRunstateInfo, u64,
    upcall_mask: false, arch_marker: None, legacy_vcpus: arch_arm::XEN_LEGACY_MAX_VCPUS as u32,
    time_area_by_va_errno: Some(Errno::EINVAL), set_timer_op_errno: Some(Errno::ENOSYS), ballooned_read_aborts: true);

/// riscv64 guests: Xen's `arch-riscv.h` (64-bit `xen_ulong_t`, one legacy
/// slot, empty `arch_vcpu_info`, no upcall mask). Xen on riscv has no
/// hypercall convention yet; Lantern's (`xen_abi::arch_riscv`) answers as
/// on arm: no `set_timer_op` and no time area by VA, and a read of a
/// ballooned-out page takes an access fault.
pub const RISCV64: Layout = layout_of!("riscv64", VcpuInfoRiscv64, VcpuRunstateInfo, u64,
    upcall_mask: false, arch_marker: None, legacy_vcpus: arch_riscv::XEN_LEGACY_MAX_VCPUS as u32,
    time_area_by_va_errno: Some(Errno::EINVAL), set_timer_op_errno: Some(Errno::ENOSYS), ballooned_read_aborts: true);

/// `struct xen_add_to_physmap` in the shape of one layout's `xen_ulong_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddToPhysmap {
    /// 64-bit `xen_ulong_t` (x86_64, arm64).
    Ulong64(XenAddToPhysmap),
    /// 32-bit `xen_ulong_t` (x86_32 compat).
    Ulong32(XenAddToPhysmapUlong32),
}

impl AddToPhysmap {
    /// The argument as the hypervisor reads it.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            AddToPhysmap::Ulong64(a) => a.as_bytes(),
            AddToPhysmap::Ulong32(a) => a.as_bytes(),
        }
    }
}

/// `struct xen_memory_reservation` in the shape of one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReservation {
    /// 64-bit handle, `xen_pfn_t` and `xen_ulong_t` (x86_64, arm64).
    Native(XenMemoryReservation),
    /// The x86_32 compat shape: all three 32-bit.
    Compat(XenMemoryReservationCompat),
}

impl MemoryReservation {
    /// The argument as the hypervisor reads it.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            MemoryReservation::Native(a) => a.as_bytes(),
            MemoryReservation::Compat(a) => a.as_bytes(),
        }
    }
}

impl Layout {
    /// Offset of `evtchn_pending[]` in shared_info: right after the legacy
    /// vcpu_info slots (their size is a multiple of 8 in every layout, so
    /// the `xen_ulong_t` array needs no padding).
    pub const fn evtchn_pending_offset(&self) -> u64 {
        (self.legacy_vcpus * self.vcpu_info_size) as u64
    }

    /// `struct xen_memory_reservation` for the calling domain: `nr_extents`
    /// order-0 extents listed at guest address `extent_start` (0: none).
    pub fn memory_reservation(&self, extent_start: u64, nr_extents: u64) -> MemoryReservation {
        if self.xen_ulong_size == size_of::<u64>() as u32 {
            MemoryReservation::Native(XenMemoryReservation {
                extent_start,
                nr_extents,
                domid: domid::SELF,
                ..Default::default()
            })
        } else {
            // A compat guest's addresses and counts fit 32 bits.
            MemoryReservation::Compat(XenMemoryReservationCompat {
                extent_start: extent_start as u32,
                nr_extents: nr_extents as u32,
                domid: domid::SELF,
                ..Default::default()
            })
        }
    }

    /// `struct xen_add_to_physmap` mapping shared_info (`XENMAPSPACE_shared_info`,
    /// idx 0: the shared_info frame itself) at `gfn` of the calling domain.
    pub fn add_to_physmap_shared_info(&self, gfn: u64) -> AddToPhysmap {
        self.add_to_physmap(mapspace::SHARED_INFO, 0, gfn)
    }

    /// `struct xen_add_to_physmap` mapping frame `idx` of `space`
    /// (`XENMAPSPACE_*`) at `gfn` of the calling domain.
    pub fn add_to_physmap(&self, space: u32, idx: u64, gfn: u64) -> AddToPhysmap {
        if self.xen_ulong_size == size_of::<u64>() as u32 {
            AddToPhysmap::Ulong64(XenAddToPhysmap { domid: domid::SELF, space, idx, gpfn: gfn, ..Default::default() })
        } else {
            // A compat guest's frames are below 16 TiB (the gfn fits) and
            // the spaces' indices are small.
            AddToPhysmap::Ulong32(XenAddToPhysmapUlong32 {
                domid: domid::SELF,
                space,
                idx: idx as u32,
                gpfn: gfn as u32,
                ..Default::default()
            })
        }
    }

    /// The all-ones value of `evtchn_pending_sel` in this layout.
    pub fn pending_sel_all_ones(&self) -> u64 {
        if self.xen_ulong_size == size_of::<u64>() as u32 {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    /// Decode `evtchn_pending_sel` from the raw bytes of a vcpu_info.
    pub fn pending_sel(&self, vi: &[u8]) -> u64 {
        let o = self.pending_sel_offset as usize;
        let width = self.xen_ulong_size as usize;
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(&vi[o..o + width]);
        u64::from_le_bytes(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_info_fits_legacy_slots() {
        // shared_info starts with vcpu_info[XEN_LEGACY_MAX_VCPUS]; x86 2 KiB.
        assert_eq!(X86_64.vcpu_info_size * X86_64.legacy_vcpus, 2048);
        assert_eq!(X86_32.vcpu_info_size * X86_32.legacy_vcpus, 2048);
        assert_eq!(ARM64.vcpu_info_size * ARM64.legacy_vcpus, 48);
        assert_eq!(RISCV64.vcpu_info_size * RISCV64.legacy_vcpus, 48);
    }

    #[test]
    fn table_matches_xen_headers() {
        // The offsets Xen's public headers give, spelled out once more so a
        // change to a mirror cannot go unnoticed.
        let native = (X86_64.vcpu_info_align, X86_64.pending_sel_offset, X86_64.vcpu_info_time_offset);
        assert_eq!(native, (8, 8, 32));
        assert_eq!(X86_64.arch_marker_offset, Some(24));
        let compat = (X86_32.vcpu_info_align, X86_32.pending_sel_offset, X86_32.vcpu_info_time_offset);
        assert_eq!(compat, (4, 4, 32));
        assert_eq!(X86_32.arch_marker_offset, Some(12));
        assert_eq!((ARM64.vcpu_info_align, ARM64.pending_sel_offset, ARM64.vcpu_info_time_offset), (8, 8, 16));
        assert_eq!((RISCV64.vcpu_info_align, RISCV64.pending_sel_offset, RISCV64.vcpu_info_time_offset), (8, 8, 16));
        assert_eq!((RISCV64.runstate_size, RISCV64.runstate_entry_offset, RISCV64.runstate_time_offset), (48, 8, 16));
        assert_eq!((RISCV64.has_upcall_mask, RISCV64.arch_marker_offset, RISCV64.xen_ulong_size), (false, None, 8));
        assert_eq!((X86_64.runstate_size, X86_64.runstate_entry_offset, X86_64.runstate_time_offset), (48, 8, 16));
        assert_eq!((X86_32.runstate_size, X86_32.runstate_entry_offset, X86_32.runstate_time_offset), (44, 4, 12));
        assert_eq!((VI_UPCALL_PENDING, VI_UPCALL_MASK), (0, 1));
    }

    #[test]
    fn physmap_encoding_per_width() {
        let arg = X86_64.add_to_physmap_shared_info(0x1234);
        let b = arg.as_bytes();
        assert_eq!(b.len(), 24);
        assert_eq!(&b[0..2], &[0xf0, 0x7f]);
        assert_eq!(&b[4..8], &[0; 4], "XENMAPSPACE_shared_info");
        assert_eq!(&b[8..16], &[0; 8]);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0x1234);
        let arg = X86_32.add_to_physmap_shared_info(0x1234);
        let b = arg.as_bytes();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[0..2], &[0xf0, 0x7f]);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 0x1234);
    }

    #[test]
    fn reservation_encoding_per_width() {
        let b = X86_64.memory_reservation(0x5000, 3);
        let b = b.as_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x5000);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 3);
        assert_eq!(&b[16..24], &[0; 8], "order and flags");
        assert_eq!(&b[24..26], &[0xf0, 0x7f]);
        let b = X86_32.memory_reservation(0x5000, 3);
        let b = b.as_bytes();
        assert_eq!(b.len(), 20);
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0x5000);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 3);
        assert_eq!(&b[16..18], &[0xf0, 0x7f]);
    }

    #[test]
    fn pending_sel_widths() {
        let mut vi = [0u8; 64];
        vi[4..8].copy_from_slice(&[0xff; 4]);
        assert_eq!(X86_32.pending_sel(&vi), X86_32.pending_sel_all_ones());
        assert_eq!(X86_64.pending_sel(&vi), 0);
        vi[8..16].copy_from_slice(&[0xff; 8]);
        assert_eq!(X86_64.pending_sel(&vi), u64::MAX);
        assert_eq!(ARM64.pending_sel(&vi), ARM64.pending_sel_all_ones());
    }

    #[test]
    fn runstate_compat_is_packed() {
        assert_eq!(X86_32.runstate_time_offset + 32, X86_32.runstate_size);
        assert_eq!(X86_64.runstate_time_offset + 32, X86_64.runstate_size);
    }
}
