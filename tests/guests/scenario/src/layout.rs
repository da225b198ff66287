//! The guest-visible layouts the scenario checks against: x86_64 native,
//! x86_32 compat and arm64 (facts from Xen's public headers).

/// Byte offset of `evtchn_upcall_pending` in every vcpu_info layout.
pub const VI_UPCALL_PENDING: u64 = 0;
/// Byte offset of `evtchn_upcall_mask` in every vcpu_info layout.
pub const VI_UPCALL_MASK: u64 = 1;

/// Byte offset of `version` in `struct vcpu_time_info`.
pub const TIME_VERSION: u64 = 0;
/// Byte offset of `system_time` in `struct vcpu_time_info` (same in compat).
pub const TIME_SYSTEM_TIME: u64 = 16;
/// Byte offset of `tsc_to_system_mul` in `struct vcpu_time_info`.
pub const TIME_TSC_TO_SYSTEM_MUL: u64 = 24;
/// Byte offset of `tsc_shift` (signed) in `struct vcpu_time_info`.
pub const TIME_TSC_SHIFT: u64 = 28;
/// Size of `struct vcpu_time_info` (same in compat).
pub const TIME_SIZE: u64 = 32;

/// One guest ABI layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Name printed in REPORT lines: `native`, `compat` or `arm64`.
    pub name: &'static str,
    /// `sizeof(struct vcpu_info)`.
    pub vcpu_info_size: u32,
    /// Alignment the hypervisor requires of a registered vcpu_info.
    pub vcpu_info_align: u32,
    /// Offset of `evtchn_pending_sel`.
    pub pending_sel_offset: u32,
    /// Width of `evtchn_pending_sel` in bytes (`xen_ulong_t`).
    pub pending_sel_width: u32,
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
    /// Width of `xen_ulong_t` / `xen_pfn_t` in `struct xen_add_to_physmap`.
    pub physmap_word: u32,
}

/// x86_64 guests (and any 64-bit HVM guest): Xen's native layout.
pub const X86_64: Layout = Layout {
    name: "native",
    vcpu_info_size: 64,
    vcpu_info_align: 8,
    pending_sel_offset: 8,
    pending_sel_width: 8,
    has_upcall_mask: true,
    vcpu_info_time_offset: 32,
    arch_marker_offset: Some(24),
    legacy_vcpus: 32,
    runstate_size: 48,
    runstate_entry_offset: 8,
    runstate_time_offset: 16,
    physmap_word: 8,
};

/// 32-bit x86 guests: Xen's compat (x86_32) layout.
pub const X86_32: Layout = Layout {
    name: "compat",
    vcpu_info_size: 64,
    vcpu_info_align: 4,
    pending_sel_offset: 4,
    pending_sel_width: 4,
    has_upcall_mask: true,
    vcpu_info_time_offset: 32,
    arch_marker_offset: Some(12),
    legacy_vcpus: 32,
    runstate_size: 44,
    runstate_entry_offset: 4,
    runstate_time_offset: 12,
    physmap_word: 4,
};

/// arm64 guests.
pub const ARM64: Layout = Layout {
    name: "arm64",
    vcpu_info_size: 48,
    vcpu_info_align: 8,
    pending_sel_offset: 8,
    pending_sel_width: 8,
    has_upcall_mask: false,
    vcpu_info_time_offset: 16,
    arch_marker_offset: None,
    legacy_vcpus: 1,
    runstate_size: 48,
    runstate_entry_offset: 8,
    runstate_time_offset: 16,
    physmap_word: 8,
};

impl Layout {
    /// Encode `struct xen_add_to_physmap` for mapping shared_info at `gfn`:
    /// `{ domid_t domid; uint16_t size; unsigned int space; xen_ulong_t idx; xen_pfn_t gpfn; }`.
    /// Returns the buffer and its used length.
    pub fn add_to_physmap_shared_info(&self, gfn: u64) -> ([u8; 24], usize) {
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&crate::abi::DOMID_SELF.to_le_bytes());
        b[4..8].copy_from_slice(&crate::abi::XENMAPSPACE_SHARED_INFO.to_le_bytes());
        let w = self.physmap_word as usize;
        // idx = 0 (the shared_info frame itself), then gpfn.
        b[8 + w..8 + 2 * w].copy_from_slice(&gfn.to_le_bytes()[..w]);
        (b, 8 + 2 * w)
    }

    /// The all-ones value of `evtchn_pending_sel` in this layout.
    pub fn pending_sel_all_ones(&self) -> u64 {
        if self.pending_sel_width == 8 {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    /// Decode `evtchn_pending_sel` from the raw bytes of a vcpu_info.
    pub fn pending_sel(&self, vi: &[u8]) -> u64 {
        let o = self.pending_sel_offset as usize;
        let mut w = [0u8; 8];
        w[..self.pending_sel_width as usize].copy_from_slice(&vi[o..o + self.pending_sel_width as usize]);
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
    }

    #[test]
    fn physmap_encoding_per_width() {
        let (b, n) = X86_64.add_to_physmap_shared_info(0x1234);
        assert_eq!(n, 24);
        assert_eq!(&b[0..2], &[0xf0, 0x7f]);
        assert_eq!(&b[8..16], &[0; 8]);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0x1234);
        let (b, n) = X86_32.add_to_physmap_shared_info(0x1234);
        assert_eq!(n, 16);
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 0x1234);
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
