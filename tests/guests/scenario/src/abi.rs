//! Xen public-ABI numbers the scenario uses (from xen/include/public/*.h).

/// Hypercall numbers (`__HYPERVISOR_*` in xen.h).
pub mod hc {
    /// `memory_op`
    pub const MEMORY_OP: u32 = 12;
    /// `xen_version`
    pub const XEN_VERSION: u32 = 17;
    /// `console_io`
    pub const CONSOLE_IO: u32 = 18;
    /// `vcpu_op`
    pub const VCPU_OP: u32 = 24;
    /// `sched_op`
    pub const SCHED_OP: u32 = 29;
    /// `event_channel_op`
    pub const EVENT_CHANNEL_OP: u32 = 32;
    /// `hvm_op`
    pub const HVM_OP: u32 = 34;
}

/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u64 = 0;
/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u64 = 0;
/// `SCHEDOP_block`.
pub const SCHEDOP_BLOCK: u64 = 1;
/// `SCHEDOP_shutdown` (argument: `struct sched_shutdown { unsigned int reason; }`).
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// `SHUTDOWN_poweroff`.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;

/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMAPSPACE_shared_info`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `DOMID_SELF`.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `VCPUOP_initialise`.
pub const VCPUOP_INITIALISE: u64 = 0;
/// `VCPUOP_up`.
pub const VCPUOP_UP: u64 = 1;
/// `VCPUOP_down`.
pub const VCPUOP_DOWN: u64 = 2;
/// `VCPUOP_is_up`.
pub const VCPUOP_IS_UP: u64 = 3;
/// `VCPUOP_register_vcpu_info`.
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
/// `VCPUOP_register_runstate_phys_area`.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
/// `VCPUOP_register_vcpu_time_phys_area`.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;

/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u64 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u64 = 1;
/// `HVMOP_set_evtchn_upcall_vector`.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
/// `HVM_PARAM_CALLBACK_IRQ`.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR` (in bits 63:56 of the parameter value).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;

/// Xen errno values (xen/include/public/errno.h), as positive numbers.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i64 = 1;
    /// No such entry.
    pub const ENOENT: i64 = 2;
    /// No such device or address (misaligned / page-crossing area).
    pub const ENXIO: i64 = 6;
    /// Device or resource busy (area already registered).
    pub const EBUSY: i64 = 16;
    /// Invalid argument.
    pub const EINVAL: i64 = 22;
    /// Function not implemented.
    pub const ENOSYS: i64 = 38;
}

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: u32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: u32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: u32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: u32 = 3;

/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while Xen rewrites the area.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// Encode `struct vcpu_register_vcpu_info { uint64_t mfn; uint32_t offset; uint32_t rsvd; }`.
pub fn register_vcpu_info_arg(gfn: u64, offset: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&gfn.to_le_bytes());
    b[8..12].copy_from_slice(&offset.to_le_bytes());
    b
}

/// `struct vcpu_hvm_context` (hvm/hvm_vcpu.h) for a vCPU started in 32-bit
/// flat protected mode with paging off (`VCPU_HVM_MODE_32B`): `cs` a 4 GiB
/// code segment, `ds`/`ss`/`es` 4 GiB data segments, a busy 32-bit TSS, cr0 =
/// PE | ET, and the given `eip`, `esp` and `edi`. `{ u32 mode; u32 pad;
/// struct vcpu_hvm_x86_32 }`: 8 + 120 bytes.
pub fn vcpu_hvm_context_32(eip: u32, esp: u32, edi: u32) -> [u8; 128] {
    let mut c = [0u8; 128];
    // Offsets within `struct vcpu_hvm_x86_32`, which starts at byte 8.
    let mut put32 = |off: usize, v: u32| c[8 + off..12 + off].copy_from_slice(&v.to_le_bytes());
    put32(16, esp);
    put32(28, edi);
    put32(32, eip);
    put32(36, 0x2); // eflags: reserved bit 1
    put32(40, 0x11); // cr0: PE | ET
    for off in [84, 88, 92, 96] {
        put32(off, 0xffff_ffff); // cs/ds/ss/es limits
    }
    put32(100, 0x67); // tr_limit
    let mut put16 = |off: usize, v: u16| c[8 + off..10 + off].copy_from_slice(&v.to_le_bytes());
    put16(104, 0xc9b); // cs_ar: code exec/read, accessed, S, present, D/B, G
    put16(106, 0xc93); // ds_ar: data read/write, accessed, S, present, D/B, G
    put16(108, 0xc93); // ss_ar
    put16(110, 0xc93); // es_ar
    put16(112, 0x8b); // tr_ar: busy 32-bit TSS, present
    c
}

/// Encode `struct xen_hvm_param { domid_t domid; uint32_t index; uint64_t value; }`.
pub fn hvm_param_arg(index: u32, value: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    b[4..8].copy_from_slice(&index.to_le_bytes());
    b[8..16].copy_from_slice(&value.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn hvm_context_32_layout() {
        let c = vcpu_hvm_context_32(0x10_0040, 0x20_0000, 7);
        assert_eq!(u32_at(&c, 0), 0, "VCPU_HVM_MODE_32B");
        // eip is the 9th u32 of the register block, esp the 5th, edi the 8th.
        assert_eq!(u32_at(&c, 8 + 8 * 4), 0x10_0040);
        assert_eq!(u32_at(&c, 8 + 4 * 4), 0x20_0000);
        assert_eq!(u32_at(&c, 8 + 7 * 4), 7);
        // cs_base..tr_base (5 × u32) follow efer (u64 at 56), then the limits.
        assert_eq!(u32_at(&c, 8 + 64), 0, "cs_base");
        assert_eq!(u32_at(&c, 8 + 84), 0xffff_ffff, "cs_limit");
        assert_eq!(u16::from_le_bytes([c[8 + 104], c[8 + 105]]), 0xc9b, "cs_ar");
        assert_eq!(u16::from_le_bytes([c[8 + 112], c[8 + 113]]), 0x8b, "tr_ar");
    }

    #[test]
    fn register_vcpu_info_encoding() {
        let b = register_vcpu_info_arg(0x1234, 0x40);
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x1234);
        assert_eq!(u32_at(&b, 8), 0x40);
        assert_eq!(u32_at(&b, 12), 0, "rsvd");
    }

    #[test]
    fn hvm_param_encoding() {
        let b = hvm_param_arg(HVM_PARAM_CALLBACK_IRQ, (HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | 0xf3);
        assert_eq!(&b[0..2], &DOMID_SELF.to_le_bytes());
        assert_eq!(u32_at(&b, 4), 0);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x0200_0000_0000_00f3);
    }
}
